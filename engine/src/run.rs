//! One integration of a flow: the dispatcher over methods and the plain result types.

use serde::{Deserialize, Serialize};

use crate::error::EngineError;
use crate::flow::GradientFlow;
use crate::method::{Method, Options};
use crate::observe::{Observer, StopReason};

/// Work done by a run. Counts are stable across machines; `wall_s` is not.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SolverStats {
    /// The method's name.
    pub method: String,
    /// Accepted steps (gradient-descent iterations for `gd`).
    pub steps: usize,
    /// Steps rejected by the local error test.
    pub error_test_failures: usize,
    /// Newton iterations.
    pub nonlinear_iterations: usize,
    /// Newton convergence failures.
    pub nonlinear_failures: usize,
    /// Right-hand-side evaluations (gradient evaluations).
    pub rhs_evals: usize,
    /// Jacobian-vector products (Hessian-vector products).
    pub jvp_evals: usize,
    /// Jacobian evaluations: Hessian assemblies (dense), evaluations of the residual
    /// Jacobian J and the blocks of R (structured), linearisation points (matrix-free).
    pub jac_evals: usize,
    /// Factorisations of the Newton matrix I − γJ ("LU setups"), of either kind; for the
    /// structured solve, of its m×m matrix K (or of I − γJ on a fallback), for the
    /// matrix-free one, of the preconditioner's Gram matrix.
    pub lu_factorisations: usize,
    /// How many of those were Cholesky factorisations (the rest fell back to a
    /// partial-pivot LU because the factorised matrix was not positive definite; K is when
    /// B = αI + γR is).
    pub cholesky_factorisations: usize,
    /// MINRES iterations of the matrix-free Newton solve (each one Hessian-vector product).
    #[serde(default)]
    pub krylov_iterations: usize,
    /// Factorisations of the structured solve with a block of B = αI + γR too
    /// ill-conditioned for Woodbury's identity: the assembled d×d matrix was factorised
    /// instead, or (one shared block) nothing was and the step was retried smaller.
    #[serde(default)]
    pub structured_fallbacks: usize,
    /// "dense", "matrix_free" or "structured" (what [`crate::LinearSolver::Auto`] chose);
    /// empty for the explicit methods.
    #[serde(default)]
    pub linear_solver: String,
    /// Wall time in seconds.
    pub wall_s: f64,
}

impl SolverStats {
    /// Adds the counts of `other` to these (for runs made of several integrations).
    pub fn accumulate(&mut self, other: &SolverStats) {
        self.steps += other.steps;
        self.error_test_failures += other.error_test_failures;
        self.nonlinear_iterations += other.nonlinear_iterations;
        self.nonlinear_failures += other.nonlinear_failures;
        self.rhs_evals += other.rhs_evals;
        self.jvp_evals += other.jvp_evals;
        self.jac_evals += other.jac_evals;
        self.cholesky_factorisations += other.cholesky_factorisations;
        self.lu_factorisations += other.lu_factorisations;
        self.krylov_iterations += other.krylov_iterations;
        self.structured_fallbacks += other.structured_fallbacks;
        if self.linear_solver.is_empty() {
            self.linear_solver.clone_from(&other.linear_solver);
        }
        self.wall_s += other.wall_s;
    }
}

/// How an integration ended and where.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// Why it ended.
    pub stop: StopReason,
    /// The flow's clock at the end.
    pub s_final: f64,
    /// θ at the end (the last finite state if the run diverged).
    pub theta_final: Vec<f64>,
    /// Work done.
    pub stats: SolverStats,
}

/// Integrates `flow` from `theta0` to `opts.s_end` with `method`, calling the observers
/// at the start, after every accepted step and at the end.
///
/// Errors are returned only when the run cannot start (bad options, wrong length of θ₀);
/// a failure during the run ends it with a [`StopReason`] and keeps what was observed.
pub fn integrate(
    flow: &GradientFlow<'_>,
    theta0: &[f64],
    method: Method,
    opts: &Options,
    observers: &mut [&mut dyn Observer],
) -> Result<Outcome, EngineError> {
    opts.validate(&method)?;
    if theta0.len() != flow.dim() {
        return Err(EngineError::InvalidInput(format!(
            "θ₀ has length {} but the loss has dimension {}",
            theta0.len(),
            flow.dim()
        )));
    }
    if !crate::la::all_finite(theta0) {
        return Err(EngineError::InvalidInput(
            "θ₀ has a non-finite entry".into(),
        ));
    }
    match method {
        Method::GradientDescent { lr } => {
            crate::gd::gradient_descent(flow, theta0, lr, opts, observers)
        }
        Method::Bdf => crate::bdf::integrate_bdf(flow, theta0, opts, observers),
        _ => crate::ode::integrate_diffsol(flow, theta0, method, opts, observers),
    }
}
