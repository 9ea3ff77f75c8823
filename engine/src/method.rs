//! Integration methods and their options: values separate from the flow they integrate.

use serde::{Deserialize, Serialize};

use crate::error::EngineError;
use crate::flow::Time;

/// How a flow is integrated.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Method {
    /// grokflow's variable-order BDF/NDF (orders 1–6; by default 1–5 matrix-free without
    /// residuals) with the analytic Jacobian, re-evaluated at the predicted end of a step
    /// when Newton fails.
    Bdf,
    /// diffsol's variable-order BDF with the analytic Jacobian (for comparison: its Newton
    /// iteration needs many more steps on nonlinear systems at small λ).
    DiffsolBdf,
    /// diffsol's ESDIRK34 (order 3, embedded 4) with the analytic Jacobian.
    Esdirk34,
    /// diffsol's TR-BDF2 (order 2) with the analytic Jacobian.
    TrBdf2,
    /// diffsol's explicit Tsit5(4): stability-limited on stiff flows, for comparison only.
    Tsit45,
    /// Gradient descent θ ← θ − η(∇F(θ) + λθ), one step of fast time η per iteration:
    /// what the paper's figures ran.
    GradientDescent {
        /// The step η.
        lr: f64,
    },
}

impl Method {
    /// A short stable name ("bdf", "esdirk34", "tr_bdf2", "tsit45", "gd").
    pub fn name(&self) -> &'static str {
        match self {
            Method::Bdf => "bdf",
            Method::DiffsolBdf => "bdf_diffsol",
            Method::Esdirk34 => "esdirk34",
            Method::TrBdf2 => "tr_bdf2",
            Method::Tsit45 => "tsit45",
            Method::GradientDescent { .. } => "gd",
        }
    }

    /// The nominal order of accuracy (BDF: its maximum order).
    pub fn nominal_order(&self) -> u32 {
        match self {
            Method::Bdf | Method::DiffsolBdf => 5,
            Method::Esdirk34 => 3,
            Method::TrBdf2 => 2,
            Method::Tsit45 => 5,
            Method::GradientDescent { .. } => 1,
        }
    }

    /// True for the methods that solve a linear system with the Jacobian at each step.
    pub fn is_implicit(&self) -> bool {
        matches!(
            self,
            Method::Bdf | Method::DiffsolBdf | Method::Esdirk34 | Method::TrBdf2
        )
    }
}

/// How grokflow's BDF solves the linear systems of its Newton iteration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinearSolver {
    /// Matrix-free from [`MATRIX_FREE_MIN_DIM`] parameters when the loss has fewer residuals
    /// than parameters with structured products (the preconditioner needs them); else
    /// structured when the loss has block-diagonal residual curvature and few enough
    /// residuals for it to pay ([`LinearCapabilities::structured_pays`]); dense otherwise.
    #[default]
    Auto,
    /// The Hessian assembled and the Newton matrix factorised (Cholesky, LU fallback).
    Dense,
    /// Hessian-vector products and preconditioned MINRES: no d×d matrix is stored when the
    /// loss has fewer residuals than parameters.
    MatrixFree,
    /// The Newton matrix B + βJᵀJ (B block diagonal) solved exactly through the m×m matrix
    /// of Woodbury's identity: O(dm²) per factorisation instead of O(d³), for losses with
    /// [`crate::Residuals::curvature_groups`].
    Structured,
}

/// The dimension from which [`LinearSolver::Auto`] chooses the matrix-free solve
/// (BENCHMARKS.md, "Large d").
pub const MATRIX_FREE_MIN_DIM: usize = 1000;

/// What a loss offers the linear solvers of grokflow's BDF (see [`LinearSolver::choose`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinearCapabilities {
    /// The number of parameters d.
    pub dim: usize,
    /// Fewer residuals than parameters, with structured products.
    pub structured_products: bool,
    /// Fewer residuals than parameters, with block-diagonal residual curvature.
    pub curvature_blocks: bool,
    /// The curvature blocks are all one block, and the loss forms J(I ⊗ C)Jᵀ itself
    /// ([`crate::Residuals::has_shared_block_gram`]).
    pub shared_block: bool,
    /// The number of residuals m (0 without residuals).
    pub residuals: usize,
    /// Σ k² over the curvature blocks the structured solve inverts (their sizes k; one block
    /// when shared).
    pub block_entries: usize,
    /// Σ k³ over those blocks.
    pub block_cubes: usize,
}

impl LinearCapabilities {
    /// True when a structured factorisation (B's blocks inverted, about 2Σk³ operations;
    /// W = B⁻¹Jᵀ, K = I/β + JW and its Cholesky, about m(md + m²/3 + Σk²); with a shared
    /// block K is assembled by the loss in about 4m²) costs less than a dense one (d³/3)
    /// (docs/design.md).
    pub fn structured_pays(&self) -> bool {
        let (m, d) = (self.residuals as f64, self.dim as f64);
        let gram = if self.shared_block { 4.0 * m } else { m * d };
        let structured =
            m * (gram + m * m / 3.0 + self.block_entries as f64) + 2.0 * self.block_cubes as f64;
        self.curvature_blocks && structured < d * d * d / 3.0
    }
}

impl LinearSolver {
    /// A short stable name ("auto", "dense", "matrix_free", "structured").
    pub fn name(&self) -> &'static str {
        match self {
            LinearSolver::Auto => "auto",
            LinearSolver::Dense => "dense",
            LinearSolver::MatrixFree => "matrix_free",
            LinearSolver::Structured => "structured",
        }
    }

    /// The solver a BDF run with these capabilities uses (never `Auto`); an error if
    /// `Structured` was asked of a loss that cannot have it.
    pub fn choose(&self, caps: LinearCapabilities) -> Result<LinearSolver, EngineError> {
        match self {
            LinearSolver::Auto if caps.structured_products && caps.dim >= MATRIX_FREE_MIN_DIM => {
                Ok(LinearSolver::MatrixFree)
            }
            LinearSolver::Auto if caps.structured_pays() => Ok(LinearSolver::Structured),
            LinearSolver::Auto => Ok(LinearSolver::Dense),
            LinearSolver::Structured if !caps.curvature_blocks => Err(EngineError::InvalidInput(
                "the structured linear solver needs a least-squares loss with fewer residuals \
                 than parameters and block-diagonal residual curvature, which this one does \
                 not declare; choose the auto or dense linear solver"
                    .into(),
            )),
            other => Ok(*other),
        }
    }
}

/// The highest order grokflow's BDF offers (see the BDF's module for why 6 and not 5).
pub const BDF_MAX_ORDER: usize = 6;

/// Options of one integration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Options {
    /// Relative tolerance of the adaptive methods.
    pub rtol: f64,
    /// Absolute tolerance of the adaptive methods.
    pub atol: f64,
    /// When the run ends, in fast or slow time (whatever the flow's clock).
    pub end: Time,
    /// The run stops with [`crate::StopReason::MaxSteps`] after this many steps.
    pub max_steps: usize,
    /// The linear solver of grokflow's BDF (the other implicit methods are dense only).
    #[serde(default)]
    pub linear_solver: LinearSolver,
    /// The highest order of grokflow's BDF, 1–6 (`None`: 6, or 5 with the matrix-free
    /// solve of a loss without residuals, unpreconditioned; 5 is ode15s's and scipy's cap).
    #[serde(default)]
    pub max_order: Option<usize>,
}

impl Options {
    /// Checks that the options make sense before a run starts.
    pub fn validate(&self, method: &Method) -> Result<(), EngineError> {
        let positive = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(EngineError::InvalidInput(format!(
                    "{name} must be a positive finite number, got {v}"
                )))
            }
        };
        positive("rtol", self.rtol)?;
        positive("atol", self.atol)?;
        let (Time::Fast(end) | Time::Slow(end)) = self.end;
        positive("the end time", end)?;
        if matches!(
            self.linear_solver,
            LinearSolver::MatrixFree | LinearSolver::Structured
        ) && method.is_implicit()
            && *method != Method::Bdf
        {
            return Err(EngineError::InvalidInput(format!(
                "the {} linear solver works with the bdf method only, not {}; \
                 choose the bdf method or the dense linear solver",
                self.linear_solver.name().replace('_', "-"),
                method.name()
            )));
        }
        if self.max_steps == 0 {
            return Err(EngineError::InvalidInput(
                "the step budget must be at least 1".into(),
            ));
        }
        if let Some(q) = self.max_order {
            if *method != Method::Bdf {
                return Err(EngineError::InvalidInput(format!(
                    "a maximum order applies to the bdf method only, not {}; \
                     choose the bdf method or no maximum order",
                    method.name()
                )));
            }
            if !(1..=BDF_MAX_ORDER).contains(&q) {
                return Err(EngineError::InvalidInput(format!(
                    "the BDF's maximum order must be 1 to {BDF_MAX_ORDER} (BDF7 is unstable), \
                     got {q}"
                )));
            }
        }
        Ok(())
    }
}

impl Default for Options {
    fn default() -> Self {
        Self {
            rtol: 1e-8,
            atol: 1e-10,
            end: Time::Slow(10.0),
            max_steps: 1_000_000,
            linear_solver: LinearSolver::Auto,
            max_order: None,
        }
    }
}
