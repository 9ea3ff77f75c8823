//! The options of every run, whatever the system, and their resolution against a preset.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use grokflow_engine::{LinearSolver, Method, Projector, TimeScale};
use grokflow_systems::RunPreset;

/// Integration methods.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum MethodArg {
    /// grokflow's variable-order BDF with the analytic Jacobian (default; best on stiff flows).
    Bdf,
    /// diffsol's variable-order BDF, for comparison (more steps on nonlinear systems at small λ).
    BdfDiffsol,
    /// ESDIRK34 (order 3) with the analytic Jacobian.
    Esdirk34,
    /// TR-BDF2 (order 2) with the analytic Jacobian.
    TrBdf2,
    /// Explicit Tsit5(4): stability-limited, needs ~1/λ steps; for comparison only.
    Tsit45,
    /// Gradient descent with step --lr, as in the paper's figures: needs τ/(λ·lr) iterations.
    Gd,
}

/// Linear solvers of the BDF's Newton iteration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LinearSolverArg {
    /// Matrix-free from 1000 parameters for losses with structured residual products and
    /// fewer residuals than parameters; else structured where its factorisation costs less
    /// than the dense one; dense otherwise.
    Auto,
    /// Assemble the Hessian and factorise (Cholesky, LU fallback): best for small d.
    Dense,
    /// Hessian-vector products and MINRES with a Gauss–Newton preconditioner: no d×d
    /// matrix stored when there are fewer residuals than parameters (--method bdf only).
    MatrixFree,
    /// The Newton matrix solved exactly through the m×m matrix of Woodbury's identity:
    /// O(dm²) per factorisation instead of O(d³) (--method bdf, losses with block-diagonal
    /// residual curvature only).
    Structured,
}

impl MethodArg {
    /// The engine's method (with step `lr` for gradient descent).
    pub fn method(self, lr: f64) -> Method {
        match self {
            MethodArg::Bdf => Method::Bdf,
            MethodArg::BdfDiffsol => Method::DiffsolBdf,
            MethodArg::Esdirk34 => Method::Esdirk34,
            MethodArg::TrBdf2 => Method::TrBdf2,
            MethodArg::Tsit45 => Method::Tsit45,
            MethodArg::Gd => Method::GradientDescent { lr },
        }
    }
}

impl From<LinearSolverArg> for LinearSolver {
    fn from(l: LinearSolverArg) -> Self {
        match l {
            LinearSolverArg::Auto => LinearSolver::Auto,
            LinearSolverArg::Dense => LinearSolver::Dense,
            LinearSolverArg::MatrixFree => LinearSolver::MatrixFree,
            LinearSolverArg::Structured => LinearSolver::Structured,
        }
    }
}

/// How the limiting flow reaches the normal space of M.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProjectorArg {
    /// Rows of the residual Jacobian J and a Cholesky factor of their Gram matrix for a
    /// least-squares loss (no SVD per evaluation); a spectral decomposition otherwise.
    Auto,
    /// An SVD of J (or eigendecomposition of ∇²F) at every evaluation: the reference.
    Spectral,
    /// Rows of J and a Cholesky factor of J_R J_Rᵀ (least-squares losses only).
    Gram,
}

impl From<ProjectorArg> for Projector {
    fn from(p: ProjectorArg) -> Self {
        match p {
            ProjectorArg::Auto => Projector::Auto,
            ProjectorArg::Spectral => Projector::Spectral,
            ProjectorArg::Gram => Projector::Gram,
        }
    }
}

/// Where the derivatives come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DerivativesArg {
    /// The system's hand-written gradient, Hessian and residual products.
    Hand,
    /// Derived exactly (automatic differentiation) from the system's residuals written once,
    /// generically: to check the hand-written ones or measure what deriving costs.
    Derived,
}

/// The clock of the integration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TimeArg {
    /// Fast time t.
    Fast,
    /// Slow time τ = λt (default): the step count does not grow as λ → 0.
    Slow,
}

impl From<TimeArg> for TimeScale {
    fn from(t: TimeArg) -> Self {
        match t {
            TimeArg::Fast => TimeScale::Fast,
            TimeArg::Slow => TimeScale::Slow,
        }
    }
}

/// Options of every run, whatever the system.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Weight decay λ > 0 [default: 1e-4, or the preset's].
    #[arg(long, allow_hyphen_values = true)]
    pub lambda: Option<f64>,

    /// A sweep: run every λ of this list (comma separated), in parallel, each into its own
    /// directory, plus a combined summary (instead of --lambda).
    #[arg(
        long,
        value_delimiter = ',',
        allow_hyphen_values = true,
        conflicts_with = "lambda"
    )]
    pub lambdas: Option<Vec<f64>>,

    /// A sweep over instance seeds (comma separated), crossed with --lambdas if given.
    #[arg(long, value_delimiter = ',')]
    pub seeds: Option<Vec<u64>>,

    /// A sweep over one of the system's parameters, NAME=V1,V2,…, crossed with --lambdas and
    /// --seeds; with --instance only a parameter that applies to a loaded instance.
    #[arg(long, value_name = "NAME=V1,V2,…")]
    pub sweep: Option<String>,

    /// Worker threads of a sweep [default: all cores]. Results do not depend on it.
    #[arg(long)]
    pub threads: Option<usize>,

    /// Run only the K-th of N disjoint parts of a sweep (K = 1…N): one line of a cluster's
    /// array job; `simulate merge DIR` then joins the parts' summaries.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<String>,

    /// Integrate in fast time t or slow time τ = λt.
    #[arg(long, value_enum, default_value_t = TimeArg::Slow)]
    pub time: TimeArg,

    /// End of the run in slow time τ = λt, so t_end = τ_end/λ [default: 10 (modular: 30), or
    /// the preset's].
    #[arg(long, allow_hyphen_values = true, conflicts_with = "t_end")]
    pub tau_end: Option<f64>,

    /// End of the run in fast time t (instead of --tau-end).
    #[arg(long, allow_hyphen_values = true)]
    pub t_end: Option<f64>,

    /// Integration method [default: bdf, or the preset's].
    #[arg(long, value_enum)]
    pub method: Option<MethodArg>,

    /// Step η of gradient descent (--method gd); stable for η < 2/(L + λ) [default: 0.01,
    /// or the preset's].
    #[arg(long, allow_hyphen_values = true)]
    pub lr: Option<f64>,

    /// Linear solver of the BDF's Newton iteration.
    #[arg(long, value_enum, default_value_t = LinearSolverArg::Auto)]
    pub linear_solver: LinearSolverArg,

    /// Highest order of the BDF, 1–6 (5 is ode15s's and scipy's cap) [default: 6, or 5 with
    /// the matrix-free solve of a loss without residuals].
    #[arg(long, value_name = "Q")]
    pub max_order: Option<usize>,

    /// Where the derivatives come from.
    #[arg(long, value_enum, default_value_t = DerivativesArg::Hand)]
    pub derivatives: DerivativesArg,

    /// Relative tolerance of the adaptive methods.
    #[arg(long, default_value = "1e-8", allow_hyphen_values = true)]
    pub rtol: f64,

    /// Absolute tolerance of the adaptive methods.
    #[arg(long, default_value = "1e-10", allow_hyphen_values = true)]
    pub atol: f64,

    /// Stop after this many steps [default: 10⁶ for ODE methods, 10⁹ iterations for gd].
    #[arg(long)]
    pub max_steps: Option<usize>,

    /// First positive sample time t (samples are log-spaced from here to the end, plus t = 0).
    #[arg(long, default_value = "1e-2", allow_hyphen_values = true)]
    pub t_min: f64,

    /// Samples per decade of t.
    #[arg(long, default_value_t = 20)]
    pub per_decade: usize,

    /// Output directory [default: runs/SYSTEM-lambdaΛ, plus -METHOD for methods other than
    /// bdf and -PRESET for presets; runs/SYSTEM-sweep for sweeps].
    #[arg(long)]
    pub out: Option<PathBuf>,

    /// Run on this instance file (data, θ_init, truth) instead of generating one.
    #[arg(long, value_name = "FILE")]
    pub instance: Option<PathBuf>,

    /// Write the instance (generated or read) to this JSON file.
    #[arg(long, value_name = "FILE")]
    pub save_instance: Option<PathBuf>,

    /// Also integrate the limiting flow on the manifold from Φ(θ_init), compare it with the
    /// λ-flow in slow time, and find its limit θ_M^∞ (limiting_flow.csv; figure overlay).
    #[arg(long)]
    pub limiting_flow: bool,

    /// Slow time from which the λ-flow is compared with the limiting flow (max_distance).
    #[arg(long, default_value_t = 1.0, allow_hyphen_values = true)]
    pub tau0: f64,

    /// KKT tolerance at which the limiting flow's end counts as its limit θ_M^∞.
    #[arg(long, default_value = "1e-8", allow_hyphen_values = true)]
    pub kkt_tol: f64,

    /// Local error tolerance of the limiting flow's Runge–Kutta steps.
    #[arg(long, default_value = "1e-9", allow_hyphen_values = true)]
    pub limiting_rtol: f64,

    /// Stop the limiting flow where the Morse–Bott constant μ has fallen below this fraction
    /// of its value at the start (0: never): J is about to lose rank there [default: 0
    /// (modular: 1e-6)]
    #[arg(long, value_name = "FRACTION", allow_hyphen_values = true)]
    pub mu_collapse: Option<f64>,

    /// How the limiting flow reaches the normal space of M.
    #[arg(long, value_enum, default_value_t = ProjectorArg::Auto)]
    pub projector: ProjectorArg,

    /// Do not render the figures.
    #[arg(long)]
    pub no_plot: bool,

    /// No progress bar and no summary on the terminal.
    #[arg(long, short)]
    pub quiet: bool,
}

/// The run options once the preset and the defaults are applied.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedRun {
    /// λ.
    pub lambda: f64,
    /// Method.
    pub method: Method,
    /// End in fast time.
    pub t_end: f64,
}

impl RunArgs {
    /// Applies `preset` below the user's flags and above the defaults. τ_end and t_end are
    /// one setting: a user's --tau-end overrides a preset's t_end and vice versa.
    pub fn resolve(&self, preset: &RunPreset, default_tau_end: f64) -> ResolvedRun {
        let lambda = self.lambda.or(preset.lambda).unwrap_or(1e-4);
        let preset_lr = match preset.method {
            Some(Method::GradientDescent { lr }) => Some(lr),
            _ => None,
        };
        let lr = self.lr.or(preset_lr).unwrap_or(0.01);
        let method = match self.method {
            Some(m) => m.method(lr),
            None => match preset.method {
                Some(Method::GradientDescent { .. }) => Method::GradientDescent { lr },
                Some(m) => m,
                None => Method::Bdf,
            },
        };
        let t_end = match (self.t_end, self.tau_end) {
            (Some(t), _) => t,
            (None, Some(tau)) => tau / lambda,
            (None, None) => preset
                .t_end
                .or(preset.tau_end.map(|tau| tau / lambda))
                .unwrap_or(default_tau_end / lambda),
        };
        ResolvedRun {
            lambda,
            method,
            t_end,
        }
    }
}
