//! The limit map Φ(θ) = lim_{t→∞} θ₀(t) of the unregularised flow dθ/dt = −∇F(θ).

use serde::{Deserialize, Serialize};

use crate::error::EngineError;
use crate::flow::{GradientFlow, Time};
use crate::integrate::integrate;
use crate::la::norm;
use crate::loss::Loss;
use crate::method::{LinearSolver, Method, Options};
use crate::stepping::{BlowUpGuard, GradientBelow, Observer, SolverStats, StopReason};

/// When the unregularised flow counts as converged, and how it is integrated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhiOptions {
    /// Stop once ‖∇F(θ)‖ ≤ max(`rel_tol`·‖∇F(θ_init)‖, `abs_tol`).
    pub rel_tol: f64,
    /// The absolute floor of the stopping rule.
    pub abs_tol: f64,
    /// Give up (with an error) if the rule has not held by this fast time.
    pub t_max: f64,
    /// Solver tolerances.
    pub rtol: f64,
    /// Solver tolerances.
    pub atol: f64,
    /// The step budget.
    pub max_steps: usize,
    /// The method: BDF, or gradient descent for runs whose flow is not smooth enough for an
    /// implicit method (a loss with kinks), where Φ is then the limit of unregularised descent.
    pub method: Method,
    /// The linear solver of the BDF (auto: matrix-free for large d).
    #[serde(default)]
    pub linear_solver: LinearSolver,
    /// The highest order of the BDF (see [`Options::max_order`]).
    #[serde(default)]
    pub max_order: Option<usize>,
}

impl Default for PhiOptions {
    fn default() -> Self {
        Self {
            rel_tol: 1e-10,
            abs_tol: 1e-13,
            t_max: 1e9,
            rtol: 1e-10,
            atol: 1e-12,
            max_steps: 200_000,
            method: Method::Bdf,
            linear_solver: LinearSolver::Auto,
            max_order: None,
        }
    }
}

/// Φ(θ_init) and how it was reached.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhiResult {
    /// Φ(θ_init).
    pub theta: Vec<f64>,
    /// The fast time at which the stopping rule held.
    pub t: f64,
    /// ‖∇F(Φ(θ_init))‖.
    pub grad_norm: f64,
    /// ‖∇F(θ_init)‖.
    pub grad_norm_init: f64,
    /// The tolerance the rule used.
    pub tolerance: f64,
    /// Work done.
    pub stats: SolverStats,
}

/// Φ(θ_init): integrates the unregularised flow until its gradient is small.
/// `observers` see that integration (a progress bar, a recorder of θ₀(t)…).
pub fn phi(
    loss: &dyn Loss,
    theta_init: &[f64],
    opts: &PhiOptions,
    observers: &mut [&mut dyn Observer],
) -> Result<PhiResult, EngineError> {
    let g0 = norm(&loss.gradient(theta_init));
    let tol = (opts.rel_tol * g0).max(opts.abs_tol);
    if g0 <= tol {
        return Ok(PhiResult {
            theta: theta_init.to_vec(),
            t: 0.0,
            grad_norm: g0,
            grad_norm_init: g0,
            tolerance: tol,
            stats: SolverStats::default(),
        });
    }
    let flow = GradientFlow::unregularised(loss);
    let mut rule = if loss.switching().is_some() {
        GradientBelow::on_field(loss, tol)
    } else {
        GradientBelow::new(loss, tol)
    };
    let mut guard = BlowUpGuard::for_start(theta_init);
    let mut all: Vec<&mut dyn Observer> = vec![&mut rule, &mut guard];
    all.extend(observers.iter_mut().map(|o| &mut **o as &mut dyn Observer));
    let run_opts = Options {
        rtol: opts.rtol,
        atol: opts.atol,
        end: Time::Fast(opts.t_max),
        max_steps: opts.max_steps,
        linear_solver: opts.linear_solver,
        max_order: opts.max_order,
    };
    let out = integrate(&flow, theta_init, opts.method, &run_opts, &mut all)?;
    match out.stop {
        StopReason::Converged { grad_norm } => Ok(PhiResult {
            theta: out.theta_final,
            t: out.s_final,
            grad_norm,
            grad_norm_init: g0,
            tolerance: tol,
            stats: out.stats,
        }),
        other => Err(EngineError::NotConverged(format!(
            "the unregularised flow did not converge (‖∇F‖ ≤ {tol:.2e}) by t = {:.3e}: {}; \
             raise the time bound or loosen the tolerance",
            out.s_final,
            other.describe()
        ))),
    }
}
