//! One `simulate` run: Φ(θ_init), the λ-flow with its observers, the grokking times, and the
//! run directory (summary.json, trajectory.csv, states.json, trajectory.png).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use grokflow_engine::{
    grokking_times, integrate, log_time_grid, phi, BlowUpGuard, GradientFlow, Method, Options,
    PhiOptions, Recorder, TimeScale, FIT_RATIO,
};
use grokflow_plots::{render, trajectory_figure, TrajectoryFigure};
use grokflow_systems::System;

use crate::output::{
    prepare_dir, trajectory_csv, write_atomic, write_json, InstanceSummary, PhiSummary,
    PointSummary, RunSummary, States,
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
    /// Show progress bars.
    pub progress: bool,
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

    // Φ(θ_init): the end point of the fast phase.
    let mut phi_progress = ProgressObserver::new("Φ(θ_init)", cfg.t_min, cfg.progress);
    let phi_res = match phi(
        system,
        theta_init,
        &PhiOptions::default(),
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
    };
    let grid = log_time_grid(cfg.t_min, cfg.t_end, cfg.per_decade);
    let mut recorder = Recorder::new(flow, system, &grid);
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
    };
    let states = States {
        theta_init: theta_init.to_vec(),
        phi: phi_res.map(|p| p.theta),
        theta_final: outcome.theta_final.clone(),
    };

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
            overlay: None,
        });
        render(&fig, &png).with_context(|| "rendering trajectory.png")?;
        files.push(png);
    }
    Ok(RunResult { summary, files })
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
        "  solver     {} steps, {} gradient evals, {} Hessians, {} factorisations ({} Cholesky), {:.3} s\n",
        st.steps, st.rhs_evals, st.jac_evals, st.lu_factorisations, st.cholesky_factorisations, st.wall_s
    );
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
