//! One `simulate` run: Φ(θ_init), the λ-flow with its observers, the grokking times, and the
//! run directory (summary.json, trajectory.csv, states.json, trajectory.png).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use grokflow_engine::{
    grokking_times, integrate, log_time_grid, phi, BlowUpGuard, GradientFlow, LinearSolver, Method,
    Options, PhiOptions, Recorder, TimeScale, FIT_RATIO,
};
use grokflow_plots::{
    function_figure, render, singular_values_figure, trajectory_figure, FunctionTable,
    TrajectoryFigure,
};
use grokflow_systems::System;

use crate::output::{
    function_csv, prepare_dir, trajectory_csv, write_atomic, write_json, InstanceSummary,
    LimitingSummary, PhiSummary, PointSummary, RunSummary, States, SystemReports,
};
use crate::progress::{Interrupt, ProgressObserver};

/// Everything a run needs besides the system.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Weight decay λ.
    pub lambda: f64,
    /// Integration clock.
    pub time: TimeScale,
    /// End of the run in fast time.
    pub t_end: f64,
    /// Integration method.
    pub method: Method,
    /// Linear solver of the BDF.
    pub linear_solver: LinearSolver,
    /// Highest order of the BDF (None: its default).
    pub max_order: Option<usize>,
    /// Relative tolerance.
    pub rtol: f64,
    /// Absolute tolerance.
    pub atol: f64,
    /// Step budget.
    pub max_steps: usize,
    /// First positive sample time.
    pub t_min: f64,
    /// Samples per decade.
    pub per_decade: usize,
    /// Output directory.
    pub out: PathBuf,
    /// Render trajectory.png.
    pub plot: bool,
    /// Also integrate the limiting flow (None: do not).
    pub limiting: Option<LimitingConfig>,
    /// Show progress bars.
    pub progress: bool,
}

/// Settings of the limiting flow beside a run.
#[derive(Clone, Debug)]
pub struct LimitingConfig {
    /// τ₀ of the uniform comparison on [τ₀, τ_end].
    pub tau0: f64,
    /// KKT tolerance of θ_M^∞.
    pub kkt_tol: f64,
    /// Local error tolerance of the Runge–Kutta steps.
    pub rtol: f64,
}

/// What a run produced.
pub struct RunResult {
    /// summary.json's contents.
    pub summary: RunSummary,
    /// The files written.
    pub files: Vec<PathBuf>,
}

/// The default output directory: `runs/<system>-lambda<λ>` (λ in short exponent form).
/// Methods other than BDF get a suffix, so that comparing methods does not overwrite runs.
pub fn default_out_dir(system: &str, lambda: f64, method: Method) -> PathBuf {
    let suffix = match method {
        Method::Bdf => String::new(),
        other => format!("-{}", other.name()),
    };
    Path::new("runs").join(format!("{system}-lambda{lambda:e}{suffix}"))
}

impl RunConfig {
    /// Checks the configuration before any work is done.
    pub fn validate(&self) -> Result<()> {
        check_config(self)
    }
}

fn check_config(cfg: &RunConfig) -> Result<()> {
    if let Some(l) = &cfg.limiting {
        for (name, v) in [
            ("--tau0", l.tau0),
            ("--kkt-tol", l.kkt_tol),
            ("--limiting-rtol", l.rtol),
        ] {
            if !(v.is_finite() && v > 0.0) {
                bail!("{name} must be a positive finite number, got {v}");
            }
        }
    }
    if !(cfg.lambda.is_finite() && cfg.lambda > 0.0) {
        bail!(
            "--lambda must be a positive finite number, got {}",
            cfg.lambda
        );
    }
    if !(cfg.t_end.is_finite() && cfg.t_end > 0.0) {
        bail!(
            "the end time must be a positive finite number (got t_end = {})",
            cfg.t_end
        );
    }
    if !(cfg.t_min.is_finite() && cfg.t_min > 0.0) {
        bail!(
            "--t-min must be a positive finite number, got {}",
            cfg.t_min
        );
    }
    if cfg.per_decade == 0 {
        bail!("--per-decade must be at least 1");
    }
    if cfg.max_steps == 0 {
        bail!("--max-steps must be at least 1");
    }
    // What the engine would refuse (tolerances, solver and order against the method), refused
    // before Φ runs.
    Options {
        rtol: cfg.rtol,
        atol: cfg.atol,
        s_end: cfg.t_end,
        max_steps: cfg.max_steps,
        linear_solver: cfg.linear_solver,
        max_order: cfg.max_order,
    }
    .validate(&cfg.method)?;
    if let Method::GradientDescent { lr } = cfg.method {
        if !(lr.is_finite() && lr > 0.0) {
            bail!("--lr must be a positive finite number, got {lr}");
        }
        let iterations = cfg.t_end / lr;
        if iterations > cfg.max_steps as f64 {
            bail!(
                "gradient descent needs {iterations:.3e} iterations to reach t = {:.3e} with step {lr} \
                 (more than --max-steps {}); use an implicit method (--method bdf), a larger --lr, \
                 a shorter run, or raise --max-steps",
                cfg.t_end,
                cfg.max_steps
            );
        }
    }
    Ok(())
}

fn point(system: &dyn System, t: f64, lambda: f64, theta: &[f64]) -> PointSummary {
    PointSummary {
        t,
        tau: lambda * t,
        train_loss: system.value(theta),
        test_loss: system.test_loss(theta),
        norm: grokflow_engine::la::norm(theta),
        grad_norm: grokflow_engine::la::norm(&system.gradient(theta)),
    }
}

/// The smallest rtol worth asking for at λ: 0.1·ε/λ. The λ-flow's right-hand side is
/// −(∇F + λθ)/λ in slow time (and its drift along M is λ-sized in fast time), so the rounding
/// error of ∇F enters the slow drift multiplied by 1/λ (matrix sensing at λ = 1e-8: 591 131 BDF
/// steps at rtol 1e-11 against 1357 at 1e-9, the end states 3e-9 apart).
pub fn rounding_floor(lambda: f64) -> f64 {
    0.1 * f64::EPSILON / lambda
}

/// Runs `system` as `cfg` says and writes the run directory. A run that stops early still
/// writes everything it recorded (`summary.complete` is then false).
pub fn run_system(
    system: &dyn System,
    instance: InstanceSummary,
    cfg: &RunConfig,
) -> Result<RunResult> {
    check_config(cfg)?;
    prepare_dir(&cfg.out)?;
    let theta_init = system.theta_init();
    let mut warnings = Vec::new();
    let floor = rounding_floor(cfg.lambda);
    if cfg.method.is_implicit() && cfg.rtol < floor {
        let w = format!(
            "--rtol {:e} is below the attainable accuracy at λ = {:e} (about 0.1·ε/λ = {floor:.1e}): \
             rounding in ∇F is multiplied by 1/λ, Newton stalls and the steps collapse; use --rtol {floor:.0e} or more",
            cfg.rtol, cfg.lambda
        );
        if cfg.progress {
            eprintln!("warning: {w}");
        }
        warnings.push(w);
    }

    // Φ(θ_init): the end point of the fast phase.
    let mut phi_progress = ProgressObserver::new("Φ(θ_init)", cfg.t_min, cfg.progress);
    let phi_opts = match cfg.method {
        // A gradient-descent run's Φ is the limit of unregularised descent with its step:
        // the runs it is used for (the exact ReLU) are not smooth enough for BDF.
        Method::GradientDescent { lr } => PhiOptions {
            method: cfg.method,
            rel_tol: 1e-8,
            max_steps: cfg.max_steps.min(100_000_000),
            t_max: lr * cfg.max_steps.min(100_000_000) as f64,
            ..PhiOptions::default()
        },
        _ => PhiOptions {
            linear_solver: cfg.linear_solver,
            max_order: cfg.max_order,
            ..PhiOptions::default()
        },
    };
    let phi_res = match phi(
        system,
        theta_init,
        &phi_opts,
        &mut [&mut phi_progress, &mut Interrupt],
    ) {
        Ok(p) => Some(p),
        Err(e) => {
            warnings.push(format!("Φ(θ_init) was not computed: {e}"));
            None
        }
    };

    // The λ-flow.
    let flow = GradientFlow::regularised(system, cfg.lambda, cfg.time)?;
    let opts = Options {
        rtol: cfg.rtol,
        atol: cfg.atol,
        s_end: flow.clock(cfg.t_end),
        max_steps: cfg.max_steps,
        linear_solver: cfg.linear_solver,
        max_order: cfg.max_order,
    };
    let grid = log_time_grid(cfg.t_min, cfg.t_end, cfg.per_decade);
    let marks: Vec<f64> = [1.0 / cfg.lambda]
        .into_iter()
        .filter(|t| *t < cfg.t_end)
        .collect();
    let mut recorder = Recorder::new(flow, system, &grid)
        .with_marks(&marks)
        .keep_states(cfg.limiting.is_some());
    let mut guard = BlowUpGuard::for_start(theta_init);
    let mut progress = ProgressObserver::new("λ-flow", flow.clock(cfg.t_min), cfg.progress);
    let outcome = integrate(
        &flow,
        theta_init,
        cfg.method,
        &opts,
        &mut [&mut recorder, &mut guard, &mut progress, &mut Interrupt],
    )?;
    let trajectory = recorder.into_trajectory();
    let complete = outcome.stop.is_success();

    // The limiting flow on M from Φ(θ_init), recorded at the same slow times.
    let limiting = match (&cfg.limiting, &phi_res) {
        (Some(lc), Some(p)) => {
            let taus: Vec<f64> = grid.iter().map(|t| cfg.lambda * t).collect();
            let opts = grokflow_engine::LimitingOptions {
                tau_end: cfg.lambda * cfg.t_end,
                kkt_tol: lc.kkt_tol,
                rtol: lc.rtol,
                ..grokflow_engine::LimitingOptions::default()
            };
            let g0 = grokflow_engine::la::norm(&system.gradient(theta_init));
            let problem = grokflow_engine::LimitingProblem {
                loss: system,
                observables: system,
                start: &p.theta,
                grad_scale: g0,
                taus: &taus,
                lambda: cfg.lambda,
            };
            match grokflow_engine::limiting_flow(&problem, &opts, &mut [&mut Interrupt]) {
                Ok(res) => Some(res),
                Err(e) => {
                    warnings.push(format!("the limiting flow could not run: {e}"));
                    None
                }
            }
        }
        (Some(_), None) => {
            warnings.push(
                "the limiting flow was not run: it starts at Φ(θ_init), which was not computed"
                    .into(),
            );
            None
        }
        _ => None,
    };
    let limiting_summary = limiting
        .as_ref()
        .map(|res| limiting_summary(system, res, &trajectory, &outcome.theta_final, cfg));

    let phi_summary = phi_res.as_ref().map(|p| {
        let pt = point(system, p.t, 0.0, &p.theta);
        PhiSummary {
            train_loss: pt.train_loss,
            test_loss: pt.test_loss,
            norm: pt.norm,
            grad_norm: p.grad_norm,
            tolerance: p.tolerance,
            t: p.t,
            stats: p.stats.clone(),
        }
    });
    let test_at_phi = phi_summary.as_ref().and_then(|p| p.test_loss);
    let mut grokking = grokking_times(&trajectory, test_at_phi, cfg.lambda, FIT_RATIO);
    if !complete {
        // The grokking time compares with the final test metric, which an early stop lacks.
        grokking.t_grok = None;
        grokking.tau_grok = None;
    }
    let t_final = flow.fast_time(outcome.s_final);
    let lr = match cfg.method {
        Method::GradientDescent { lr } => Some(lr),
        _ => None,
    };
    let summary = RunSummary {
        grokflow_version: env!("CARGO_PKG_VERSION").to_string(),
        system: system.name().to_string(),
        lambda: cfg.lambda,
        seed: system.seed(),
        method: cfg.method.name().to_string(),
        lr,
        time: cfg.time,
        rtol: cfg.rtol,
        atol: cfg.atol,
        max_order: cfg.max_order,
        t_end: cfg.t_end,
        tau_end: cfg.lambda * cfg.t_end,
        instance,
        stats: outcome.stats.clone(),
        phi: phi_summary,
        final_state: point(system, t_final, cfg.lambda, &outcome.theta_final),
        grokking,
        stop_reason: outcome.stop.clone(),
        complete,
        warnings,
        report: SystemReports {
            phi: phi_res
                .as_ref()
                .map(|p| system.report(&p.theta))
                .unwrap_or(serde_json::Value::Null),
            final_state: system.report(&outcome.theta_final),
        },
        limiting_flow: limiting_summary,
    };
    let states = States {
        theta_init: theta_init.to_vec(),
        phi: phi_res.map(|p| p.theta),
        theta_final: outcome.theta_final.clone(),
        theta_limit: limiting.as_ref().and_then(|l| l.theta_limit.clone()),
    };
    let function = system
        .curve()
        .map(|curve| function_table(curve, &states, &trajectory, t_final));

    let dir = &cfg.out;
    let mut files = Vec::new();
    let csv = dir.join("trajectory.csv");
    write_atomic(&csv, trajectory_csv(&trajectory).as_bytes())?;
    files.push(csv);
    let st = dir.join("states.json");
    write_json(&st, &states)?;
    files.push(st);
    let sm = dir.join("summary.json");
    write_json(&sm, &summary)?;
    files.push(sm);
    if cfg.plot {
        let png = dir.join("trajectory.png");
        let fig = trajectory_figure(&TrajectoryFigure {
            title: format!(
                "{} · λ = {:e} · {}{}",
                summary.system,
                cfg.lambda,
                summary.method,
                if complete { "" } else { " (stopped early)" }
            ),
            trajectory: &trajectory,
            lambda: cfg.lambda,
            t_fit: summary.grokking.t_fit,
            t_grok: summary.grokking.t_grok,
            overlay: limiting.as_ref().map(|l| ("limiting flow", &l.trajectory)),
        });
        render(&fig, &png).with_context(|| "rendering trajectory.png")?;
        files.push(png);
        let title = format!(
            "{} · λ = {:e} · {}",
            summary.system, cfg.lambda, summary.method
        );
        if let Some(fig) = singular_values_figure(&title, &trajectory, cfg.lambda) {
            let png = dir.join("singular_values.png");
            render(&fig, &png).with_context(|| "rendering singular_values.png")?;
            files.push(png);
        }
        if let Some((table, _)) = &function {
            // The function at t = 0 (the first curve) stays in the CSV but not in the
            // figure: with a large initialisation it dwarfs the rest.
            let shown = FunctionTable {
                curves: table.curves[1..].to_vec(),
                ..table.clone()
            };
            let png = dir.join("function.png");
            render(&function_figure(&title, &shown), &png)
                .with_context(|| "rendering function.png")?;
            files.push(png);
        }
    }
    if let Some(l) = &limiting {
        let csv = dir.join("limiting_flow.csv");
        write_atomic(&csv, trajectory_csv(&l.trajectory).as_bytes())?;
        files.push(csv);
    }
    if let Some((table, columns)) = &function {
        let csv = dir.join("function.csv");
        write_atomic(&csv, function_csv(table, columns).as_bytes())?;
        files.push(csv);
    }
    Ok(RunResult { summary, files })
}

/// The limiting flow's summary, and its distance to the λ-flow at the shared slow times.
fn limiting_summary(
    system: &dyn System,
    res: &grokflow_engine::LimitingResult,
    trajectory: &grokflow_engine::Trajectory,
    theta_final: &[f64],
    cfg: &RunConfig,
) -> LimitingSummary {
    let tau0 = cfg.limiting.as_ref().map(|l| l.tau0).unwrap_or(1.0);
    let mut max_distance: Option<f64> = None;
    let mut from_zero: Option<f64> = None;
    for (s, th) in res.trajectory.samples.iter().zip(&res.trajectory.states) {
        let j = trajectory.samples.iter().position(|x| x.tau == s.tau);
        if let Some(j) = j.filter(|&j| j < trajectory.states.len()) {
            let dist = grokflow_engine::la::distance(th, &trajectory.states[j]);
            from_zero = Some(from_zero.map_or(dist, |m: f64| m.max(dist)));
            if s.tau >= tau0 {
                max_distance = Some(max_distance.map_or(dist, |m: f64| m.max(dist)));
            }
        }
    }
    LimitingSummary {
        norm: grokflow_engine::la::norm(&res.theta_end),
        test_loss: system.test_loss(&res.theta_end),
        max_drift: res.max_drift,
        kkt_residual: res.kkt_residual,
        tau_end: res.tau_end,
        max_distance,
        tau0,
        max_distance_from_zero: from_zero,
        tau_limit: res.tau_limit,
        limit_norm: res
            .theta_limit
            .as_ref()
            .map(|t| grokflow_engine::la::norm(t)),
        limit_test_loss: res.theta_limit.as_ref().and_then(|t| system.test_loss(t)),
        distance_final_to_limit: res
            .theta_limit
            .as_ref()
            .map(|t| grokflow_engine::la::distance(t, theta_final)),
        min_mu: res.min_mu,
        min_gap: res.min_gap,
        stop_reason: res.stop.clone(),
        warnings: res.warnings.clone(),
        stats: res.stats.clone(),
    }
}

/// The learned function on a 401-point grid at t = 0, Φ(θ_init), t = 1/λ (if reached) and
/// the end, with the CSV column name of each.
fn function_table(
    curve: &dyn grokflow_systems::Curve,
    states: &States,
    trajectory: &grokflow_engine::Trajectory,
    t_final: f64,
) -> (FunctionTable, Vec<String>) {
    let (lo, hi) = curve.domain();
    let x = grokflow_systems::curve::grid(lo, hi, 401);
    let eval = |theta: &[f64]| {
        x.iter()
            .map(|&v| curve.predict(theta, v))
            .collect::<Vec<f64>>()
    };
    let mut curves = vec![("t = 0".to_string(), eval(&states.theta_init))];
    let mut columns = vec!["f_init".to_string()];
    if let Some(phi) = &states.phi {
        curves.push(("Φ(θ_init)".into(), eval(phi)));
        columns.push("f_phi".into());
    }
    for (t, theta) in &trajectory.marked {
        curves.push((format!("t = 1/λ = {t:.1e}"), eval(theta)));
        columns.push("f_one_over_lambda".into());
    }
    curves.push((format!("end, t = {t_final:.1e}"), eval(&states.theta_final)));
    columns.push("f_final".into());
    let teacher = x
        .iter()
        .map(|&v| curve.teacher_at(v))
        .collect::<Option<Vec<f64>>>();
    let (train_x, train_y) = curve.training_points();
    (
        FunctionTable {
            x,
            teacher,
            curves,
            train_x,
            train_y,
        },
        columns,
    )
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.3e}")).unwrap_or_else(|| "—".into())
}

/// The short human summary printed after a run.
pub fn human_summary(r: &RunResult, dir: &Path) -> String {
    let s = &r.summary;
    let mut out = format!(
        "grokflow · {} · λ = {:e} · {} · {} time, t ∈ [0, {:.3e}] (τ ∈ [0, {}])\n",
        s.system,
        s.lambda,
        s.method,
        match s.time {
            TimeScale::Fast => "fast",
            TimeScale::Slow => "slow",
        },
        s.t_end,
        s.tau_end
    );
    if let Some(p) = &s.phi {
        out += &format!(
            "  Φ(θ_init)  train {:.3e}  test {}  ‖θ‖ {:.4}   (unregularised flow converged at t = {:.3e})\n",
            p.train_loss,
            fmt_opt(p.test_loss),
            p.norm,
            p.t
        );
    }
    let f = &s.final_state;
    out += &format!(
        "  final      train {:.3e}  test {}  ‖θ‖ {:.4}   (t = {:.3e}, τ = {:.4})\n",
        f.train_loss,
        fmt_opt(f.test_loss),
        f.norm,
        f.t,
        f.tau
    );
    let g = &s.grokking;
    out += &format!(
        "  grokking   t_fit = {}, t_grok = {} (τ_grok = {})",
        fmt_opt(g.t_fit),
        fmt_opt(g.t_grok),
        fmt_opt(g.tau_grok)
    );
    if let (Some(p), Some(fl)) = (s.phi.as_ref().and_then(|p| p.test_loss), f.test_loss) {
        if s.complete && fl > 0.0 {
            out += &format!("; test loss fell {:.3}× from Φ(θ_init) to the end", p / fl);
        }
    }
    out.push('\n');
    let st = &s.stats;
    out += &format!(
        "  solver     {} steps, {} gradient evals, {} Jacobians, {} factorisations ({} Cholesky), {:.3} s\n",
        st.steps, st.rhs_evals, st.jac_evals, st.lu_factorisations, st.cholesky_factorisations, st.wall_s
    );
    if let Some(l) = &s.limiting_flow {
        out += &format!(
            "  limiting   θ_M at τ = {:.4}: ‖θ‖ {:.4}, test {}, KKT residual {:.2e}, max drift {:.2e}; max ‖θ_λ − θ_M‖ over τ ≥ {} = {}{}\n",
            l.tau_end,
            l.norm,
            fmt_opt(l.test_loss),
            l.kkt_residual,
            l.max_drift,
            l.tau0,
            fmt_opt(l.max_distance),
            match (l.tau_limit, l.distance_final_to_limit) {
                (Some(tl), Some(dl)) => format!("; θ_M^∞ reached at τ = {tl:.2}, ‖θ_λ(end) − θ_M^∞‖ = {dl:.2e}"),
                _ => String::new(),
            }
        );
        if !matches!(l.stop_reason, grokflow_engine::StopReason::Finished) {
            out += &format!("  limiting   {}\n", l.stop_reason.describe());
        }
        for w in &l.warnings {
            out += &format!("  warning    {w}\n");
        }
    }
    for w in &s.warnings {
        out += &format!("  warning    {w}\n");
    }
    if !s.complete {
        let hint = match (&s.stop_reason, s.lr) {
            (grokflow_engine::StopReason::Diverged { .. }, Some(lr)) => {
                format!(
                    " (gradient descent is stable only for --lr < 2/(L + λ); {lr} is too large)"
                )
            }
            (grokflow_engine::StopReason::MaxSteps { .. }, _) => {
                " (raise --max-steps, or use --method bdf)".into()
            }
            _ => String::new(),
        };
        out += &format!(
            "  STOPPED EARLY: {}{hint}; what was recorded is written.\n",
            s.stop_reason.describe()
        );
    }
    let names: Vec<String> = r
        .files
        .iter()
        .filter_map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    out += &format!("  wrote      {}/{{{}}}\n", dir.display(), names.join(", "));
    out
}

/// One sharpness of a softplus sweep (see [`sharpness_sweep`]).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SweepRow {
    /// The sharpness β.
    pub beta: f64,
    /// Steps of the λ-flow.
    pub steps: usize,
    /// Steps of the unregularised flow to Φ(θ_init).
    pub phi_steps: Option<usize>,
    /// Wall time of the λ-flow, seconds.
    pub wall_s: f64,
    /// Final training loss.
    pub train_loss: f64,
    /// Final test loss.
    pub test_loss: Option<f64>,
    /// Final number of kinks.
    pub kinks: Option<u64>,
    /// sup over the grid of |f_β − f_β'| at the end, β' the previous sharpness.
    pub sup_change: Option<f64>,
    /// Whether the run reached its end.
    pub complete: bool,
}

/// Runs the same two-layer-network instance with the softplus at each sharpness, each into
/// `<out>/beta-<β>/`, and writes sweep.csv, sweep.json and sweep.png (the learned functions
/// at the end, one per β) into `<out>`.
pub fn sharpness_sweep(
    system: &dyn System,
    instance: InstanceSummary,
    cfg: &RunConfig,
    betas: &[f64],
) -> Result<(Vec<SweepRow>, Vec<PathBuf>)> {
    if betas.is_empty() || betas.iter().any(|b| !(b.is_finite() && *b > 0.0)) {
        bail!("--sharpness-sweep needs positive finite sharpnesses, e.g. 10,30,100");
    }
    prepare_dir(&cfg.out)?;
    let mut rows: Vec<SweepRow> = Vec::new();
    let mut table = FunctionTable::default();
    let mut previous: Option<Vec<f64>> = None;
    for &beta in betas {
        let Some(sys) = system.with_activation(grokflow_systems::Activation::Softplus { beta })
        else {
            bail!("--sharpness-sweep applies to the two-layer network only");
        };
        let sub = RunConfig {
            out: cfg.out.join(format!("beta-{beta}")),
            ..cfg.clone()
        };
        let run = run_system(sys.as_ref(), instance.clone(), &sub)?;
        let states: States =
            serde_json::from_str(&std::fs::read_to_string(sub.out.join("states.json"))?)?;
        let curve = sys.curve().expect("the two-layer network is a curve");
        if table.x.is_empty() {
            let (lo, hi) = curve.domain();
            table.x = grokflow_systems::curve::grid(lo, hi, 401);
            table.teacher = table.x.iter().map(|&v| curve.teacher_at(v)).collect();
            (table.train_x, table.train_y) = curve.training_points();
        }
        let values: Vec<f64> = table
            .x
            .iter()
            .map(|&v| curve.predict(&states.theta_final, v))
            .collect();
        let sup_change = previous.as_ref().map(|p| {
            p.iter()
                .zip(&values)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max)
        });
        let s = &run.summary;
        rows.push(SweepRow {
            beta,
            steps: s.stats.steps,
            phi_steps: s.phi.as_ref().map(|p| p.stats.steps),
            wall_s: s.stats.wall_s,
            train_loss: s.final_state.train_loss,
            test_loss: s.final_state.test_loss,
            kinks: s
                .report
                .final_state
                .get("kink_count")
                .and_then(|k| k.as_u64()),
            sup_change,
            complete: s.complete,
        });
        table.curves.push((format!("β = {beta}"), values.clone()));
        previous = Some(values);
    }
    let mut files = Vec::new();
    let mut csv = String::from(
        "beta,steps,phi_steps,wall_s,train_loss,test_loss,kinks,sup_change,complete\n",
    );
    for r in &rows {
        let opt = |v: Option<f64>| v.map(|x| format!("{x:e}")).unwrap_or_default();
        csv += &format!(
            "{:e},{},{},{:e},{:e},{},{},{},{}\n",
            r.beta,
            r.steps,
            r.phi_steps.map(|x| x.to_string()).unwrap_or_default(),
            r.wall_s,
            r.train_loss,
            opt(r.test_loss),
            r.kinks.map(|x| x.to_string()).unwrap_or_default(),
            opt(r.sup_change),
            r.complete
        );
    }
    let path = cfg.out.join("sweep.csv");
    write_atomic(&path, csv.as_bytes())?;
    files.push(path);
    let path = cfg.out.join("sweep.json");
    write_json(&path, &rows)?;
    files.push(path);
    if cfg.plot {
        let path = cfg.out.join("sweep.png");
        let title = format!("relu · softplus sharpness sweep · λ = {:e}", cfg.lambda);
        render(&function_figure(&title, &table), &path).context("rendering sweep.png")?;
        files.push(path);
    }
    Ok((rows, files))
}

/// One run of a sweep, as the combined summary lists it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SweepEntry {
    /// λ.
    pub lambda: f64,
    /// The instance seed.
    pub seed: Option<u64>,
    /// The run directory.
    pub dir: PathBuf,
    /// Whether it reached its end.
    pub complete: bool,
    /// Why it ended.
    pub stop_reason: grokflow_engine::StopReason,
    /// Steps of the λ-flow.
    pub steps: usize,
    /// Wall time of the λ-flow.
    pub wall_s: f64,
    /// Test metric at Φ(θ_init).
    pub test_phi: Option<f64>,
    /// Final test metric.
    pub test_final: Option<f64>,
    /// Final ‖θ‖.
    pub norm_final: f64,
    /// Fitting time.
    pub t_fit: Option<f64>,
    /// Grokking time.
    pub t_grok: Option<f64>,
    /// Grokking time in slow time.
    pub tau_grok: Option<f64>,
}

impl SweepEntry {
    /// The entry of a finished run.
    pub fn of(s: &RunSummary, dir: &Path) -> Self {
        Self {
            lambda: s.lambda,
            seed: s.seed,
            dir: dir.to_path_buf(),
            complete: s.complete,
            stop_reason: s.stop_reason.clone(),
            steps: s.stats.steps,
            wall_s: s.stats.wall_s,
            test_phi: s.phi.as_ref().and_then(|p| p.test_loss),
            test_final: s.final_state.test_loss,
            norm_final: s.final_state.norm,
            t_fit: s.grokking.t_fit,
            t_grok: s.grokking.t_grok,
            tau_grok: s.grokking.tau_grok,
        }
    }
}

/// Writes sweep_summary.json and sweep_summary.csv.
pub fn write_sweep(dir: &Path, entries: &[SweepEntry]) -> Result<Vec<PathBuf>> {
    let json = dir.join("sweep_summary.json");
    write_json(&json, &entries)?;
    let o = |v: Option<f64>| v.map(|x| format!("{x:e}")).unwrap_or_default();
    let mut csv = String::from("lambda,seed,complete,steps,wall_s,test_phi,test_final,norm_final,t_fit,t_grok,tau_grok,dir\n");
    for e in entries {
        csv += &format!(
            "{:e},{},{},{},{:e},{},{},{:e},{},{},{},{}\n",
            e.lambda,
            e.seed.map(|s| s.to_string()).unwrap_or_default(),
            e.complete,
            e.steps,
            e.wall_s,
            o(e.test_phi),
            o(e.test_final),
            e.norm_final,
            o(e.t_fit),
            o(e.t_grok),
            o(e.tau_grok),
            e.dir.display()
        );
    }
    let path = dir.join("sweep_summary.csv");
    write_atomic(&path, csv.as_bytes())?;
    Ok(vec![json, path])
}

/// The sweep's table for the terminal.
pub fn sweep_table(entries: &[SweepEntry]) -> String {
    let mut out = format!(
        "  {:>8} {:>6} {:>7} {:>9} {:>11} {:>11} {:>10}\n",
        "λ", "seed", "steps", "wall s", "test Φ", "test end", "τ_grok"
    );
    for e in entries {
        out += &format!(
            "  {:>8.1e} {:>6} {:>7} {:>9.3} {:>11} {:>11} {:>10}{}\n",
            e.lambda,
            e.seed.map(|s| s.to_string()).unwrap_or_else(|| "—".into()),
            e.steps,
            e.wall_s,
            fmt_opt(e.test_phi),
            fmt_opt(e.test_final),
            fmt_opt(e.tau_grok),
            if e.complete { "" } else { "  (stopped early)" }
        );
    }
    out
}
