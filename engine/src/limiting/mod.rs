//! The limiting slow flow on the critical manifold M (DESIGN.md §1): dθ/dτ = −P(θ)θ from
//! θ(0) = Φ(θ_init), kept on M, with P(θ) the orthogonal projector onto T_θM = ker ∇²F(θ).
//! −P(θ)θ is the Riemannian gradient of −½‖θ‖² on M, so ‖θ‖ decreases along the flow and
//! its limits are KKT points of min ½‖θ‖² on M (P(θ)θ = 0).
//!
//! It runs in the one step loop ([`crate::stepping::drive`]) with the stepper of
//! `stepper`, so progress, recording and interruption are observers as for every flow.
//! Where the spectral gap collapses (a singular point of M, where the Morse–Bott assumption
//! fails) the flow stops and says so.

mod on_manifold;
mod stepper;

use serde::{Deserialize, Serialize};

use crate::error::EngineError;
use crate::flow::{Clock, TimeScale};
use crate::la::all_finite;
use crate::loss::{Loss, Observables};
use crate::manifold::{kkt_residual, KktInfo};
use crate::stepping::{drive, Limits, Observer, Recorder, StopReason, Trajectory};
use on_manifold::OnManifold;
pub use on_manifold::Projector;
use stepper::{DormandPrince, LimitSeeker, ManifoldColumns, StepControl};

/// Options of the limiting flow.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LimitingOptions {
    /// Local error tolerance of the Runge–Kutta pair (relative; absolute is 1e-2 of it).
    pub rtol: f64,
    /// Retract until ‖∇F‖ ≤ `retraction_tol` · max(‖∇F(θ_init)‖, 1), or until Newton's
    /// steps stop reducing it (the rest of ∇F lies along directions of vanishing curvature).
    pub retraction_tol: f64,
    /// The flow fails if ‖∇F‖ stays above `drift_limit` · max(‖∇F(θ_init)‖, 1) after a
    /// retraction.
    pub drift_limit: f64,
    /// Integrate up to this slow time (the samples requested must lie below it).
    pub tau_end: f64,
    /// θ_M^∞ is declared once ‖P(θ)θ‖ ≤ `kkt_tol` · max(‖θ‖, 1); the flow goes on past
    /// `tau_end` up to `tau_limit_max` to find it.
    pub kkt_tol: f64,
    /// How far to go looking for θ_M^∞.
    pub tau_limit_max: f64,
    /// Warn when the spectral gap (μ_{k+1}/noise) falls below this.
    pub gap_warn: f64,
    /// Stop at a singular point when the gap falls below this.
    pub gap_stop: f64,
    /// Stop when μ falls below this fraction of its value at the start (0: never). Where J
    /// keeps full rank the gap (μ against rounding) says nothing until μ is at rounding
    /// level; a flow that meets a rank drop of J at a finite time (modular addition) grinds
    /// ever smaller steps towards it, where one whose limit lies there (the diagonal
    /// network) approaches it only as τ → ∞ and must go on.
    #[serde(default)]
    pub mu_collapse: f64,
    /// Step budget.
    pub max_steps: usize,
    /// How the normal space is reached.
    #[serde(default)]
    pub projector: Projector,
    /// With the Gram projector, from this rank ρ of J on: one Cholesky factor of J_R J_Rᵀ
    /// (refreshed at accepted steps, at most every 4 steps while the solves stay fast)
    /// preconditions the conjugate-gradient solves at the points around it, where below it
    /// every point gets its own factor. Between refreshes μ is tracked by a Rayleigh
    /// quotient and the samples take the last step's gap and μ.
    #[serde(default = "default_factor_reuse_from")]
    pub factor_reuse_from: usize,
}

fn default_factor_reuse_from() -> usize {
    1000
}

impl Default for LimitingOptions {
    fn default() -> Self {
        Self {
            rtol: 1e-9,
            retraction_tol: 1e-12,
            drift_limit: 1e-8,
            tau_end: 10.0,
            kkt_tol: 1e-8,
            tau_limit_max: 200.0,
            gap_warn: 1e4,
            gap_stop: 1e2,
            mu_collapse: 0.0,
            max_steps: 100_000,
            projector: Projector::Auto,
            factor_reuse_from: default_factor_reuse_from(),
        }
    }
}

/// Work done by the limiting flow.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LimitingStats {
    /// Accepted steps.
    pub steps: usize,
    /// Rejected steps.
    pub rejected: usize,
    /// The projector used: "gram" or "spectral".
    #[serde(default)]
    pub projector: String,
    /// Spectral decompositions: SVDs of the residual Jacobian, or symmetric
    /// eigendecompositions of the Hessian for losses without residuals.
    pub decompositions: usize,
    /// Cholesky factorisations of J_R J_Rᵀ (the Gram projector).
    #[serde(default)]
    pub factorisations: usize,
    /// Conjugate-gradient iterations of the Gram projector's solves.
    #[serde(default)]
    pub cg_iterations: usize,
    /// Spectral decompositions that checked the Gram projector's gap near a singular point.
    #[serde(default)]
    pub spectral_checks: usize,
    /// Times the Gram projector chose its rows of J afresh.
    #[serde(default)]
    pub reselections: usize,
    /// 1 if the flow handed over from the Gram projector to the spectral one (near a
    /// singular point, where the kept rows' Gram matrix is too ill-conditioned).
    #[serde(default)]
    pub switches: usize,
    /// Newton iterations of the retractions.
    pub retraction_iterations: usize,
    /// Wall time, seconds.
    pub wall_s: f64,
}

/// The limiting flow and what it found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LimitingResult {
    /// Samples at the requested slow times: the observables' columns, then
    /// `kkt_residual, spectral_gap, mu, kernel_dim`.
    pub trajectory: Trajectory,
    /// Why it ended.
    pub stop: StopReason,
    /// θ where the flow stopped (past the recorded τ_end when it went on to find θ_M^∞).
    pub theta_stopped: Vec<f64>,
    /// Slow time where it stopped.
    pub tau_stopped: f64,
    /// θ_M^∞, if the KKT residual fell below its tolerance.
    pub theta_limit: Option<Vec<f64>>,
    /// The slow time at which it did.
    pub tau_limit: Option<f64>,
    /// max over the flow of ‖∇F(θ_M)‖ / ‖∇F(θ_init)‖: the drift off M.
    pub max_drift: f64,
    /// ‖P(θ)θ‖ where the flow ended.
    pub kkt_residual: f64,
    /// The smallest Morse–Bott constant μ (smallest non-zero Hessian eigenvalue) seen.
    pub min_mu: f64,
    /// The smallest spectral gap seen.
    pub min_gap: f64,
    /// Things a reader should know (small gaps…).
    pub warnings: Vec<String>,
    /// Work done.
    pub stats: LimitingStats,
}

/// What the limiting flow integrates and records.
pub struct LimitingProblem<'a> {
    /// The loss whose critical set is M.
    pub loss: &'a dyn Loss,
    /// The columns recorded beside the manifold's own.
    pub observables: &'a dyn Observables,
    /// Where the flow starts: Φ(θ_init) (it is retracted onto M first).
    pub start: &'a [f64],
    /// θ_init: ‖∇F(θ_init)‖ scales the drift and retraction tolerances.
    pub theta_init: &'a [f64],
    /// The slow times τ at which samples are recorded (ascending, within `tau_end`).
    pub taus: &'a [f64],
    /// λ of the recorded fast times t = τ/λ.
    pub lambda: f64,
}

/// P(θ)θ, the projection of θ onto the tangent space of M at θ (a point on or near M), and
/// the KKT structure there, with the normal space split afresh at its largest gap and
/// reached through `projector`.
pub fn tangent_projection(
    loss: &dyn Loss,
    theta: &[f64],
    projector: Projector,
) -> Result<(Vec<f64>, KktInfo), EngineError> {
    if theta.len() != loss.dim() || !all_finite(theta) {
        return Err(EngineError::InvalidInput(
            "the projection needs a finite θ of the loss's dimension".into(),
        ));
    }
    let on = OnManifold::new(loss, projector, 0.0, 1.0, 0.0, usize::MAX)?;
    on.start(theta)?;
    let (mut f, here) = on.inspect(theta)?;
    f.iter_mut().for_each(|x| *x = -*x);
    let info = KktInfo {
        residual: kkt_residual(theta, &f),
        mu: here.mu,
        gap: here.gap,
        kernel_dim: here.kernel_dim,
    };
    Ok((f, info))
}

/// Integrates the limiting flow of `problem` and records it at `problem.taus`; `observers`
/// (progress, interruption…) see its steps.
pub fn limiting_flow(
    problem: &LimitingProblem<'_>,
    opts: &LimitingOptions,
    observers: &mut [&mut dyn Observer],
) -> Result<LimitingResult, EngineError> {
    let loss = problem.loss;
    if !all_finite(problem.start) || problem.start.len() != loss.dim() {
        return Err(EngineError::InvalidInput(
            "the limiting flow needs a finite start of the loss's dimension".into(),
        ));
    }
    if problem.theta_init.len() != loss.dim() {
        return Err(EngineError::InvalidInput(
            "θ_init has the wrong length for the loss".into(),
        ));
    }
    let started = std::time::Instant::now();
    let grad_scale = crate::la::norm(&loss.gradient(problem.theta_init));
    let scale = grad_scale.max(1.0);
    let on = OnManifold::new(
        loss,
        opts.projector,
        opts.retraction_tol * scale,
        grad_scale.max(f64::MIN_POSITIVE),
        10.0 * opts.gap_warn,
        opts.factor_reuse_from,
    )?;
    let drift_limit = opts.drift_limit * scale;
    let mut theta = problem.start.to_vec();
    on.start(&theta)?;
    let g0 = on.retract(&mut theta)?;
    let stats = |steps: usize, rejected: usize| {
        let work = on.work();
        LimitingStats {
            steps,
            rejected,
            projector: on.projector().name().into(),
            decompositions: work.decompositions,
            factorisations: work.factorisations,
            cg_iterations: work.cg_iterations,
            spectral_checks: work.spectral_checks,
            reselections: work.reselections,
            switches: work.switches,
            retraction_iterations: work.retraction_iterations,
            wall_s: started.elapsed().as_secs_f64(),
        }
    };
    if g0 > drift_limit {
        return Ok(LimitingResult {
            trajectory: Trajectory::default(),
            stop: StopReason::RetractionFailed {
                tau: 0.0,
                grad_norm: g0,
            },
            theta_stopped: theta,
            tau_stopped: 0.0,
            theta_limit: None,
            tau_limit: None,
            max_drift: on.max_drift(),
            kkt_residual: f64::NAN,
            min_mu: f64::NAN,
            min_gap: f64::INFINITY,
            warnings: Vec::new(),
            stats: stats(0, 0),
        });
    }
    let field = on.inspect(&theta)?;
    let control = StepControl {
        rtol: opts.rtol,
        drift_limit,
        gap_warn: opts.gap_warn,
        gap_stop: opts.gap_stop,
        mu_stop: opts.mu_collapse * field.1.mu,
    };
    let mut stepper = DormandPrince::new(&on, control, theta, field, 0.01f64.min(opts.tau_end));
    let columns = ManifoldColumns {
        on: &on,
        inner: problem.observables,
    };
    let clock = Clock::new(problem.lambda, TimeScale::Slow);
    let mut recorder = Recorder::with_clock(loss, clock, &columns, &[])
        .at_clock_values(problem.taus.to_vec())
        .keep_states(true)
        .without_final_sample();
    let mut seeker = LimitSeeker {
        tol: opts.kkt_tol,
        tau_end: opts.tau_end,
        tau_max: opts.tau_limit_max,
        start_kkt: stepper.kkt_residual(),
        limit: None,
    };
    let mut all: Vec<&mut dyn Observer> = vec![&mut recorder, &mut seeker];
    all.extend(observers.iter_mut().map(|o| &mut **o as &mut dyn Observer));
    let limits = Limits {
        s_end: opts.tau_end.max(opts.tau_limit_max),
        stops: vec![opts.tau_end],
        max_steps: opts.max_steps,
    };
    let outcome = drive(&mut stepper, &limits, &mut all);
    drop(all);
    let (steps, rejected) = stepper.counts();
    let (tau_limit, theta_limit) = seeker.limit.take().unzip();
    Ok(LimitingResult {
        trajectory: recorder.into_trajectory(),
        stop: outcome.stop,
        theta_stopped: outcome.theta_final,
        tau_stopped: outcome.s_final,
        theta_limit,
        tau_limit,
        max_drift: on.max_drift(),
        kkt_residual: stepper.kkt_residual(),
        min_mu: stepper.min_mu,
        min_gap: stepper.min_gap,
        warnings: std::mem::take(&mut stepper.warnings),
        stats: stats(steps, rejected),
    })
}
