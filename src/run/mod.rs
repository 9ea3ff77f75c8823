//! One run: Φ(θ_init), the λ-flow with its observers, the grokking times, and optionally
//! the limiting flow on M, gathered into a [`RunRecord`].

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use grokflow_engine::{
    grokking_times, integrate, log_time_grid, phi, BlowUpGuard, GradientFlow, LimitingResult,
    LinearSolver, Method, Options, PhiOptions, Recorder, RisingObjective, Time, TimeScale,
    Trajectory, FIT_RATIO, LAMBDA_RANGE,
};
use grokflow_systems::System;

use crate::progress::{Interrupt, ProgressObserver};
use crate::summary::{
    InstanceSummary, LimitingSummary, PhiSummary, PointSummary, RunSummary, States, SystemReports,
};

/// Everything a run needs besides the system.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Weight decay λ.
    pub lambda: f64,
    /// Integration clock.
    pub time: TimeScale,
    /// When the run ends, in fast or slow time.
    pub end: Time,
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
    /// How the normal space of M is reached.
    pub projector: grokflow_engine::Projector,
    /// Stop where μ falls below this fraction of its start value (0: never).
    pub mu_collapse: f64,
}

/// What a run produced: its summary, the states that matter, the recorded trajectory and
/// the limiting flow.
pub struct RunRecord {
    /// summary.json's contents.
    pub summary: RunSummary,
    /// states.json's contents.
    pub states: States,
    /// The λ-flow's samples.
    pub trajectory: Trajectory,
    /// The limiting flow, with --limiting-flow.
    pub limiting: Option<LimitingResult>,
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

impl Default for RunConfig {
    /// λ = 1e-4 in slow time up to τ = 10, grokflow's BDF at rtol 1e-8, atol 1e-10, samples
    /// from t = 0.01 at 20 per decade, into runs/run with its figures and a progress bar.
    fn default() -> Self {
        Self {
            lambda: 1e-4,
            time: TimeScale::Slow,
            end: Time::Slow(10.0),
            method: Method::Bdf,
            linear_solver: LinearSolver::Auto,
            max_order: None,
            rtol: 1e-8,
            atol: 1e-10,
            max_steps: 1_000_000,
            t_min: 1e-2,
            per_decade: 20,
            out: PathBuf::from("runs/run"),
            plot: true,
            limiting: None,
            progress: true,
        }
    }
}

impl RunConfig {
    /// The end of the run in fast time.
    pub fn t_end(&self) -> f64 {
        match self.end {
            Time::Fast(t) => t,
            Time::Slow(tau) => tau / self.lambda,
        }
    }

    /// With weight decay λ.
    pub fn lambda(mut self, lambda: f64) -> Self {
        self.lambda = lambda;
        self
    }

    /// Ending at slow time τ = λt.
    pub fn tau_end(mut self, tau: f64) -> Self {
        self.end = Time::Slow(tau);
        self
    }

    /// Ending at fast time t.
    pub fn t_end_at(mut self, t: f64) -> Self {
        self.end = Time::Fast(t);
        self
    }

    /// With this method.
    pub fn method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }

    /// With these tolerances.
    pub fn tolerances(mut self, rtol: f64, atol: f64) -> Self {
        self.rtol = rtol;
        self.atol = atol;
        self
    }

    /// With the limiting flow on M beside the λ-flow (τ₀ = 1, KKT tolerance 1e-8, local
    /// tolerance 1e-9).
    pub fn limiting_flow(mut self) -> Self {
        self.limiting = Some(LimitingConfig {
            tau0: 1.0,
            kkt_tol: 1e-8,
            rtol: 1e-9,
            projector: grokflow_engine::Projector::Auto,
            mu_collapse: 0.0,
        });
        self
    }

    /// Writing into `dir`.
    pub fn out(mut self, dir: impl Into<PathBuf>) -> Self {
        self.out = dir.into();
        self
    }

    /// Without figures.
    pub fn no_plot(mut self) -> Self {
        self.plot = false;
        self
    }

    /// Without a progress bar.
    pub fn quiet(mut self) -> Self {
        self.progress = false;
        self
    }

    /// Checks the configuration before any work is done.
    pub fn validate(&self) -> Result<()> {
        check_config(self)
    }
}

/// The most samples per decade of t.
pub const MAX_PER_DECADE: usize = 1000;

/// The most samples of one run.
pub const MAX_SAMPLES: f64 = 1e6;

fn check_config(cfg: &RunConfig) -> Result<()> {
    if let Some(l) = &cfg.limiting {
        for (name, v) in [
            ("--tau0", l.tau0),
            ("--kkt-tol", l.kkt_tol),
            ("--limiting-rtol", l.rtol),
        ] {
            if !(v.is_finite() && v > 0.0) {
                bail!("{name} must be a positive finite number, got {v:e}");
            }
        }
        if !(0.0..1.0).contains(&l.mu_collapse) {
            bail!(
                "--mu-collapse is a fraction of μ at the start, in [0, 1) (0: never stop on \
                 μ), got {:e}",
                l.mu_collapse
            );
        }
    }
    if !(cfg.lambda.is_finite() && (LAMBDA_RANGE.0..=LAMBDA_RANGE.1).contains(&cfg.lambda)) {
        bail!(
            "--lambda must lie in [{:e}, {:e}], got {:e}: below, the rounding of ∇F amplified \
             by 1/λ in slow time (0.1·ε/λ > 2·10⁻⁵) exceeds any useful tolerance; above, \
             weight decay dominates every loss",
            LAMBDA_RANGE.0,
            LAMBDA_RANGE.1,
            cfg.lambda
        );
    }
    let rtol_ok = cfg.rtol > 0.0 && cfg.rtol <= 0.1;
    let atol_ok = cfg.atol > 0.0 && cfg.atol <= 1.0;
    if !(rtol_ok && atol_ok) {
        bail!(
            "--rtol must lie in (0, 0.1] and --atol in (0, 1], got {:e} and {:e}",
            cfg.rtol,
            cfg.atol
        );
    }
    if !(cfg.t_end().is_finite() && cfg.t_end() > 0.0) {
        bail!(
            "the end time must be a positive finite number (got t_end = {})",
            cfg.t_end()
        );
    }
    if !(cfg.t_min.is_finite() && cfg.t_min > 0.0) {
        bail!(
            "--t-min must be a positive finite number, got {:e}",
            cfg.t_min
        );
    }
    if !(1..=MAX_PER_DECADE).contains(&cfg.per_decade) {
        bail!(
            "--per-decade must lie in [1, {MAX_PER_DECADE}], got {}",
            cfg.per_decade
        );
    }
    if cfg.t_min >= cfg.t_end() {
        bail!(
            "--t-min {} must be below the end time t_end = {:e}",
            cfg.t_min,
            cfg.t_end()
        );
    }
    let samples = cfg.per_decade as f64 * (cfg.t_end() / cfg.t_min).log10();
    if samples > MAX_SAMPLES {
        bail!(
            "{samples:.2e} samples asked ({} per decade from t = {} to {:e}); at most {MAX_SAMPLES:e}: \
             lower --per-decade or raise --t-min",
            cfg.per_decade,
            cfg.t_min,
            cfg.t_end()
        );
    }
    if cfg.max_steps == 0 || cfg.max_steps as f64 > 1e12 {
        bail!("--max-steps must lie in [1, 1e12], got {}", cfg.max_steps);
    }
    // What the engine would refuse (tolerances, solver and order against the method), refused
    // before Φ runs.
    Options {
        rtol: cfg.rtol,
        atol: cfg.atol,
        end: Time::Fast(cfg.t_end()),
        max_steps: cfg.max_steps,
        linear_solver: cfg.linear_solver,
        max_order: cfg.max_order,
    }
    .validate(&cfg.method)?;
    if let Method::GradientDescent { lr } = cfg.method {
        if !(lr.is_finite() && lr > 0.0) {
            bail!("--lr must be a positive finite number, got {lr:e}");
        }
        let iterations = cfg.t_end() / lr;
        if iterations > cfg.max_steps as f64 {
            bail!(
                "gradient descent needs {iterations:.3e} iterations to reach t = {:.3e} with step {lr} \
                 (more than --max-steps {}); use an implicit method (--method bdf), a larger --lr, \
                 a shorter run, or raise --max-steps",
                cfg.t_end(),
                cfg.max_steps
            );
        }
    }
    Ok(())
}

fn point(system: &dyn System, t: f64, lambda: f64, theta: &[f64]) -> PointSummary {
    let (train_accuracy, test_accuracy) = accuracies(system, theta);
    PointSummary {
        t,
        tau: lambda * t,
        train_loss: system.value(theta),
        test_loss: system.test_loss(theta),
        norm: grokflow_engine::la::norm(theta),
        grad_norm: grokflow_engine::la::norm(&system.gradient(theta)),
        train_accuracy,
        test_accuracy,
    }
}

/// The system's `train_accuracy` and `test_accuracy` columns at θ, where it has them.
fn accuracies(system: &dyn System, theta: &[f64]) -> (Option<f64>, Option<f64>) {
    let columns = system.extra_columns();
    let at = |name: &str| columns.iter().position(|c| c == name);
    if at("train_accuracy").is_none() && at("test_accuracy").is_none() {
        return (None, None);
    }
    let mut values = Vec::new();
    system.extra_values(theta, &mut values);
    let get = |name: &str| at(name).and_then(|i| values.get(i).copied());
    (get("train_accuracy"), get("test_accuracy"))
}

/// Runs `system` as `cfg` says: Φ(θ_init), the λ-flow and, if asked, the limiting flow. A
/// run that stops early still returns everything it recorded (`summary.complete` is then
/// false). Nothing is written: see [`crate::output::write_run`].
pub fn run_system(
    system: &dyn System,
    instance: InstanceSummary,
    cfg: &RunConfig,
) -> Result<RunRecord> {
    check_config(cfg)?;
    let theta_init = system.theta_init();
    let mut warnings = Vec::new();
    let floor = grokflow_engine::rounding_floor(cfg.lambda);
    // Only slow time divides the gradient by λ (fast time integrates −∇F − λθ as it is).
    if cfg.method.is_implicit() && cfg.time == TimeScale::Slow && cfg.rtol < floor {
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
        // the runs it is used for (losses with kinks) are not smooth enough for BDF.
        Method::GradientDescent { lr } => PhiOptions {
            method: cfg.method,
            rel_tol: 1e-8,
            max_steps: cfg.max_steps.min(100_000_000),
            t_max: lr * cfg.max_steps.min(100_000_000) as f64,
            ..PhiOptions::default()
        },
        // The fast phase at the run's own tolerances: Φ costs what the λ-flow's fast phase
        // does, and is as accurate as the run it is compared with.
        _ => PhiOptions {
            linear_solver: cfg.linear_solver,
            max_order: cfg.max_order,
            rtol: cfg.rtol,
            atol: cfg.atol,
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
        end: Time::Fast(cfg.t_end()),
        max_steps: cfg.max_steps,
        linear_solver: cfg.linear_solver,
        max_order: cfg.max_order,
    };
    let grid = log_time_grid(cfg.t_min, cfg.t_end(), cfg.per_decade);
    let marks: Vec<f64> = [1.0 / cfg.lambda]
        .into_iter()
        .filter(|t| *t < cfg.t_end())
        .collect();
    let mut recorder = Recorder::new(flow, system, &grid)
        .with_marks(&marks)
        .keep_states(cfg.limiting.is_some());
    let mut guard = BlowUpGuard::for_start(theta_init);
    let mut rising = RisingObjective::new(system, cfg.lambda, 10.0);
    let mut progress = ProgressObserver::new("λ-flow", flow.clock(cfg.t_min), cfg.progress);
    let outcome = integrate(
        &flow,
        theta_init,
        cfg.method,
        &opts,
        &mut [
            &mut recorder,
            &mut guard,
            &mut rising,
            &mut progress,
            &mut Interrupt,
        ],
    )?;
    let trajectory = recorder.into_trajectory();
    let complete = outcome.stop.is_success();

    // The limiting flow on M from Φ(θ_init), recorded at the same slow times.
    let limiting = match (&cfg.limiting, &phi_res) {
        (Some(lc), Some(p)) => {
            let taus: Vec<f64> = grid.iter().map(|t| cfg.lambda * t).collect();
            let opts = grokflow_engine::LimitingOptions {
                tau_end: cfg.lambda * cfg.t_end(),
                kkt_tol: lc.kkt_tol,
                rtol: lc.rtol,
                projector: lc.projector,
                mu_collapse: lc.mu_collapse,
                ..grokflow_engine::LimitingOptions::default()
            };
            let problem = grokflow_engine::LimitingProblem {
                loss: system,
                observables: system,
                start: &p.theta,
                theta_init,
                taus: &taus,
                lambda: cfg.lambda,
            };
            let mut progress =
                ProgressObserver::new("limiting", cfg.lambda * cfg.t_min, cfg.progress)
                    .until(opts.tau_end, ", past τ_end: looking for θ_M^∞");
            match grokflow_engine::limiting_flow(
                &problem,
                &opts,
                &mut [&mut progress, &mut Interrupt],
            ) {
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

    let mu_at_phi = phi_res
        .as_ref()
        .and_then(|p| morse_bott_constant(system, &p.theta));
    if let Some(mu) = mu_at_phi.filter(|&mu| cfg.lambda > mu / 10.0) {
        let w = format!(
            "λ = {:e} is not small against the Morse–Bott constant μ = {mu:.2e} at Φ(θ_init) \
             (λ/μ = {:.2}): the fast and slow phases separate only for λ ≪ μ; take λ below \
             μ/10 = {:.1e} to see them apart",
            cfg.lambda,
            cfg.lambda / mu,
            mu / 10.0
        );
        if cfg.progress {
            eprintln!("warning: {w}");
        }
        warnings.push(w);
    }
    let phi_summary = phi_res.as_ref().map(|p| {
        let pt = point(system, p.t, 0.0, &p.theta);
        PhiSummary {
            train_loss: pt.train_loss,
            test_loss: pt.test_loss,
            norm: pt.norm,
            grad_norm: p.grad_norm,
            tolerance: p.tolerance,
            t: p.t,
            mu: mu_at_phi,
            train_accuracy: pt.train_accuracy,
            test_accuracy: pt.test_accuracy,
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
        t_end: cfg.t_end(),
        tau_end: cfg.lambda * cfg.t_end(),
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
    Ok(RunRecord {
        summary,
        states,
        trajectory,
        limiting,
    })
}

/// The most work [`morse_bott_constant`] does (operations), about a second here.
const MORSE_BOTT_BUDGET: f64 = 2e10;

/// μ at θ (the smallest non-zero curvature of F, from the spectrum split at its largest
/// gap), when reading it costs less than about 2·10¹⁰ operations: for m residuals the
/// cheaper of an SVD of J (min(d,m)²·max(d,m)) and a Cholesky factor of JJᵀ (m³/3 plus
/// forming JJᵀ), for other losses an eigendecomposition of ∇²F (d³).
pub fn morse_bott_constant(system: &dyn System, theta: &[f64]) -> Option<f64> {
    let d = system.dim() as f64;
    let cost = match system.residuals() {
        Some(r) => {
            let m = r.count() as f64;
            let gram = if r.has_structured_products() {
                m * m
            } else {
                m * m * d
            };
            (m.min(d).powi(2) * m.max(d)).min(m.powi(3) / 3.0 + gram)
        }
        None => d.powi(3),
    };
    if cost > MORSE_BOTT_BUDGET {
        return None;
    }
    grokflow_engine::kkt_info(system, theta)
        .ok()
        .map(|k| k.mu)
        .filter(|mu| mu.is_finite() && *mu > 0.0)
}

/// Runs `system` as `cfg` says (see [`run_system`]), its instance described as a model's.
pub fn run(system: &dyn System, cfg: &RunConfig) -> Result<RunRecord> {
    let instance = InstanceSummary {
        source: "model".into(),
        path: None,
        dim: system.dim(),
        params: Some(system.params_json()),
    };
    run_system(system, instance, cfg)
}

impl RunRecord {
    /// Writes the run directory into `cfg.out` (see [`crate::output::write_run`]); returns
    /// the files written.
    pub fn write(&self, system: &dyn System, cfg: &RunConfig) -> Result<Vec<PathBuf>> {
        crate::output::write_run(system, self, cfg)
    }

    /// The summary printed after a run that wrote `files` into `dir`.
    pub fn text(&self, files: &[PathBuf], dir: &Path) -> String {
        crate::output::human_summary(&self.summary, files, dir)
    }
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
        norm: grokflow_engine::la::norm(&res.theta_stopped),
        test_loss: system.test_loss(&res.theta_stopped),
        max_drift: res.max_drift,
        kkt_residual: res.kkt_residual,
        tau_stopped: res.tau_stopped,
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
