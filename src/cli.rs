//! The command line of `simulate` (clap derive). Engine and systems never see clap: the
//! structs here are resolved into their plain parameter types. Options a preset may set are
//! optional here, so that the precedence is: what the user typed, then the preset, then the
//! default written in the help.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use grokflow_engine::{LinearSolver, Method, TimeScale};
use grokflow_systems::{
    Activation, CompletionParams, DiagonalParams, LinearParams, LinearTeacher, ReluParams,
    SensingParams,
};

/// Simulate gradient flow with small weight decay, dθ/dt = −∇F(θ) − λθ, on the paper's
/// examples: the fast phase to the interpolating manifold, then the slow drift along it that
/// lowers ‖θ‖ and makes the test loss drop at t ~ 1/λ (grokking).
#[derive(Debug, Parser)]
#[command(name = "simulate", version, about, long_about = None)]
#[command(after_help = "Examples:
  simulate linear --lambda 1e-4
  simulate matrix-completion --lambda 1e-6
  simulate diagonal --preset paper-fig4
  simulate relu --activation relu --method gd --lr 1e-3 --lambda 1e-3
  simulate linear --save-instance inst.json   (then: simulate linear --instance inst.json)

`simulate <SYSTEM> --help` lists the system's options.")]
pub struct SimulateCli {
    /// The system to simulate.
    #[command(subcommand)]
    pub system: SystemCommand,
}

/// The systems.
#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Linear regression ‖Xθ − y‖²/(2n), n < d (paper §5): the slow phase drifts from the
    /// projection of θ_init onto {Xθ = y} to the min-norm solution.
    Linear {
        /// Instance generation.
        #[command(flatten)]
        params: LinearArgs,
        /// The run.
        #[command(flatten)]
        run: RunArgs,
    },
    /// Matrix completion ½Σ_Ω((UVᵀ)ᵢⱼ − M*ᵢⱼ)² (paper eq. 8, Fig. 2): the slow phase lowers
    /// ‖U‖² + ‖V‖² ≥ 2‖UVᵀ‖_*, and the learned matrix becomes low rank.
    MatrixCompletion {
        /// Instance generation.
        #[command(flatten)]
        params: CompletionArgs,
        /// The run.
        #[command(flatten)]
        run: RunArgs,
    },
    /// Symmetric matrix sensing (1/2m)Σₖ(⟨Aₖ, UUᵀ⟩ − bₖ)² (paper App. C): the slow phase
    /// lowers ‖U‖² = ‖UUᵀ‖_*.
    MatrixSensing {
        /// Instance generation.
        #[command(flatten)]
        params: SensingArgs,
        /// The run.
        #[command(flatten)]
        run: RunArgs,
    },
    /// Diagonal linear network β = u⊙v on Fourier features (paper App. C, Fig. 4): the slow
    /// phase lowers ‖u‖² + ‖v‖² ≥ 2‖β‖₁ and recovers the sparse teacher.
    Diagonal {
        /// Instance generation.
        #[command(flatten)]
        params: DiagonalArgs,
        /// The run.
        #[command(flatten)]
        run: RunArgs,
    },
    /// Two-layer network Σⱼaⱼσ(wⱼx + bⱼ) on 1-D data (paper Fig. 3), with the ReLU or a
    /// smooth softplus: the slow phase leaves a function with few kinks.
    Relu {
        /// Instance generation.
        #[command(flatten)]
        params: ReluArgs,
        /// The run.
        #[command(flatten)]
        run: RunArgs,
    },
}

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
    /// fewer residuals than parameters (matrix completion); else structured where its
    /// factorisation costs less than the dense one (the default instances of every built-in
    /// system below 1000 parameters); dense otherwise.
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

    /// Worker threads of a sweep [default: all cores]. Results do not depend on it.
    #[arg(long)]
    pub threads: Option<usize>,

    /// Integrate in fast time t or slow time τ = λt.
    #[arg(long, value_enum, default_value_t = TimeArg::Slow)]
    pub time: TimeArg,

    /// End of the run in slow time τ = λt, so t_end = τ_end/λ [default: 10, or the preset's].
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

    /// Relative tolerance of the adaptive methods.
    #[arg(long, default_value_t = 1e-8, allow_hyphen_values = true)]
    pub rtol: f64,

    /// Absolute tolerance of the adaptive methods.
    #[arg(long, default_value_t = 1e-10, allow_hyphen_values = true)]
    pub atol: f64,

    /// Stop after this many steps [default: 10⁶ for ODE methods, 10⁹ iterations for gd].
    #[arg(long)]
    pub max_steps: Option<usize>,

    /// First positive sample time t (samples are log-spaced from here to the end, plus t = 0).
    #[arg(long, default_value_t = 1e-2, allow_hyphen_values = true)]
    pub t_min: f64,

    /// Samples per decade of t.
    #[arg(long, default_value_t = 20)]
    pub per_decade: usize,

    /// Output directory [default: runs/<system>-lambda<λ>, plus -<method> for methods other
    /// than bdf and -<preset> for presets].
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
    #[arg(long, default_value_t = 1e-8, allow_hyphen_values = true)]
    pub kkt_tol: f64,

    /// Local error tolerance of the limiting flow's Runge–Kutta steps.
    #[arg(long, default_value_t = 1e-9, allow_hyphen_values = true)]
    pub limiting_rtol: f64,

    /// Do not render the figures.
    #[arg(long)]
    pub no_plot: bool,

    /// No progress bar and no summary on the terminal.
    #[arg(long, short)]
    pub quiet: bool,
}

/// The run options a preset sets (the user's flags still win).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunPreset {
    /// λ.
    pub lambda: Option<f64>,
    /// Method.
    pub method: Option<MethodArg>,
    /// Gradient-descent step.
    pub lr: Option<f64>,
    /// End in fast time.
    pub t_end: Option<f64>,
    /// End in slow time.
    pub tau_end: Option<f64>,
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
        let lr = self.lr.or(preset.lr).unwrap_or(0.01);
        let method = match self.method.or(preset.method).unwrap_or(MethodArg::Bdf) {
            MethodArg::Bdf => Method::Bdf,
            MethodArg::BdfDiffsol => Method::DiffsolBdf,
            MethodArg::Esdirk34 => Method::Esdirk34,
            MethodArg::TrBdf2 => Method::TrBdf2,
            MethodArg::Tsit45 => Method::Tsit45,
            MethodArg::Gd => Method::GradientDescent { lr },
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

/// Teachers of linear regression.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LinearTeacherArg {
    /// θ_true ~ N(0, I/d).
    Gaussian,
    /// --teacher-k entries ±1/√k.
    Sparse,
}

/// Generation of a linear-regression instance (ignored with --instance).
#[derive(Debug, Clone, Args)]
pub struct LinearArgs {
    /// Samples n.
    #[arg(long, default_value_t = 20)]
    pub n: usize,
    /// Dimension d (> n).
    #[arg(long, default_value_t = 200)]
    pub d: usize,
    /// Seed of the instance generator.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// θ_init ~ N(0, σ²I) with σ = init-scale.
    #[arg(long, default_value_t = 1.0, allow_hyphen_values = true)]
    pub init_scale: f64,
    /// Ground truth.
    #[arg(long, value_enum, default_value_t = LinearTeacherArg::Gaussian)]
    pub teacher: LinearTeacherArg,
    /// Non-zeros of a sparse teacher.
    #[arg(long, default_value_t = 3)]
    pub teacher_k: usize,
    /// Label noise level: y = Xθ_true + noise·ε.
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    pub noise: f64,
}

impl From<&LinearArgs> for LinearParams {
    fn from(a: &LinearArgs) -> Self {
        LinearParams {
            n: a.n,
            d: a.d,
            seed: a.seed,
            init_scale: a.init_scale,
            teacher: match a.teacher {
                LinearTeacherArg::Gaussian => LinearTeacher::Gaussian,
                LinearTeacherArg::Sparse => LinearTeacher::Sparse { k: a.teacher_k },
            },
            noise: a.noise,
        }
    }
}

/// Presets of matrix completion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CompletionPreset {
    /// The paper's Figure 2: 20×20, rank 3, width 10, 50% observed, N(0, 1) initialisation,
    /// λ = 1e-3, gradient descent with step 0.01 up to t = 2·10⁴.
    PaperFig2,
}

/// Generation of a matrix-completion instance (ignored with --instance).
#[derive(Debug, Clone, Args)]
pub struct CompletionArgs {
    /// Paper settings (your other flags still apply on top).
    #[arg(long, value_enum)]
    pub preset: Option<CompletionPreset>,
    /// Rows n₁ [default: 20].
    #[arg(long)]
    pub n1: Option<usize>,
    /// Columns n₂ [default: 20].
    #[arg(long)]
    pub n2: Option<usize>,
    /// Width r of the factors U, V [default: 10].
    #[arg(long)]
    pub width: Option<usize>,
    /// Rank of the ground truth [default: 3].
    #[arg(long)]
    pub rank: Option<usize>,
    /// Its singular values, comma separated [default: 20,15,10 for rank 3; else 20, 15, 10,
    /// 5, 5, …].
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    pub singular_values: Option<Vec<f64>>,
    /// Fraction of observed entries, in (0, 1] [default: 0.7; the paper's 0.5 with the preset].
    #[arg(long, allow_hyphen_values = true)]
    pub observed: Option<f64>,
    /// Entries of U, V at θ_init ~ N(0, σ²) [default: 1].
    #[arg(long, allow_hyphen_values = true)]
    pub init_scale: Option<f64>,
    /// Seed [default: 0].
    #[arg(long)]
    pub seed: Option<u64>,
}

fn default_values(rank: usize, first: &[f64]) -> Vec<f64> {
    (0..rank)
        .map(|k| first.get(k).copied().unwrap_or(5.0))
        .collect()
}

impl CompletionArgs {
    /// The parameters and run preset.
    pub fn resolve(&self) -> (CompletionParams, RunPreset) {
        let (mut p, run) = match self.preset {
            Some(CompletionPreset::PaperFig2) => (
                CompletionParams {
                    observed: 0.5,
                    ..CompletionParams::default()
                },
                RunPreset {
                    lambda: Some(1e-3),
                    method: Some(MethodArg::Gd),
                    lr: Some(0.01),
                    t_end: Some(2e4),
                    tau_end: None,
                },
            ),
            None => (CompletionParams::default(), RunPreset::default()),
        };
        p.n1 = self.n1.unwrap_or(p.n1);
        p.n2 = self.n2.unwrap_or(p.n2);
        p.width = self.width.unwrap_or(p.width);
        p.rank = self.rank.unwrap_or(p.rank);
        p.singular_values = self
            .singular_values
            .clone()
            .unwrap_or_else(|| default_values(p.rank, &[20.0, 15.0, 10.0]));
        p.observed = self.observed.unwrap_or(p.observed);
        p.init_scale = self.init_scale.unwrap_or(p.init_scale);
        p.seed = self.seed.unwrap_or(p.seed);
        (p, run)
    }
}

/// Generation of a matrix-sensing instance (ignored with --instance).
#[derive(Debug, Clone, Args)]
pub struct SensingArgs {
    /// Size n of the matrix.
    #[arg(long, default_value_t = SensingParams::default().n)]
    pub n: usize,
    /// Width r of U [default: n].
    #[arg(long)]
    pub width: Option<usize>,
    /// Rank of the ground truth.
    #[arg(long, default_value_t = SensingParams::default().rank)]
    pub rank: usize,
    /// Its eigenvalues, comma separated [default: 4,2 for rank 2; else 4, 2, 1, 1, …].
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    pub eigenvalues: Option<Vec<f64>>,
    /// Number of Gaussian measurements m.
    #[arg(long, default_value_t = SensingParams::default().measurements)]
    pub measurements: usize,
    /// Entries of U at θ_init ~ N(0, σ²).
    #[arg(long, default_value_t = SensingParams::default().init_scale, allow_hyphen_values = true)]
    pub init_scale: f64,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl From<&SensingArgs> for SensingParams {
    fn from(a: &SensingArgs) -> Self {
        SensingParams {
            n: a.n,
            width: a.width.unwrap_or(a.n),
            rank: a.rank,
            eigenvalues: a
                .eigenvalues
                .clone()
                .unwrap_or_else(|| default_values(a.rank, &[4.0, 2.0, 1.0])),
            measurements: a.measurements,
            init_scale: a.init_scale,
            seed: a.seed,
        }
    }
}

/// Presets of the diagonal network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DiagonalPreset {
    /// The paper's Figure 4: λ = 1e-4, initialisation variance 0.1 (the feature count and
    /// the teacher are not given; DESIGN.md's p = 100, n = 30, 3-sparse).
    PaperFig4,
}

/// Generation of a diagonal-network instance (ignored with --instance).
#[derive(Debug, Clone, Args)]
pub struct DiagonalArgs {
    /// Paper settings (your other flags still apply on top).
    #[arg(long, value_enum)]
    pub preset: Option<DiagonalPreset>,
    /// Frequencies K: features cos kx, sin kx for k = 1..K (p = 2K).
    #[arg(long, default_value_t = DiagonalParams::default().frequencies)]
    pub frequencies: usize,
    /// Training points n (< p).
    #[arg(long, default_value_t = DiagonalParams::default().n)]
    pub n: usize,
    /// Non-zero teacher coefficients.
    #[arg(long, default_value_t = DiagonalParams::default().teacher_sparsity)]
    pub teacher_sparsity: usize,
    /// Their magnitude [default: 2; 1 with the preset].
    #[arg(long, allow_hyphen_values = true)]
    pub teacher_scale: Option<f64>,
    /// Variance of u, v at θ_init [default: 0.5; the paper's 0.1 with the preset].
    #[arg(long, allow_hyphen_values = true)]
    pub init_variance: Option<f64>,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl DiagonalArgs {
    /// The parameters and run preset.
    pub fn resolve(&self) -> (DiagonalParams, RunPreset) {
        let p = DiagonalParams {
            frequencies: self.frequencies,
            n: self.n,
            teacher_sparsity: self.teacher_sparsity,
            teacher_scale: self
                .teacher_scale
                .unwrap_or(DiagonalParams::default().teacher_scale),
            init_variance: self
                .init_variance
                .unwrap_or(DiagonalParams::default().init_variance),
            seed: self.seed,
        };
        let run = match self.preset {
            Some(DiagonalPreset::PaperFig4) => RunPreset {
                lambda: Some(1e-4),
                ..RunPreset::default()
            },
            None => RunPreset::default(),
        };
        let p = match self.preset {
            Some(DiagonalPreset::PaperFig4) => DiagonalParams {
                init_variance: self.init_variance.unwrap_or(0.1),
                teacher_scale: self.teacher_scale.unwrap_or(1.0),
                ..p
            },
            None => p,
        };
        (p, run)
    }
}

/// Activations of the two-layer network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ActivationArg {
    /// The ReLU (almost-everywhere derivatives; outside the theory).
    Relu,
    /// softplus log(1 + e^{βz})/β with sharpness --sharpness (smooth: the theory holds).
    Softplus,
}

/// Presets of the two-layer network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReluPreset {
    /// The paper's Figure 3: m = 100, n = 10, x ~ U[−2, 2], variance 4, λ = 1e-3, the exact
    /// ReLU, gradient descent with a small step (0.002 here; the paper gives none).
    PaperFig3,
}

/// Generation of a two-layer-network instance (ignored with --instance, except
/// --activation and --sharpness, which apply to a loaded instance too).
#[derive(Debug, Clone, Args)]
pub struct ReluArgs {
    /// Paper settings (your other flags still apply on top).
    #[arg(long, value_enum)]
    pub preset: Option<ReluPreset>,
    /// Hidden neurons m.
    #[arg(long, default_value_t = ReluParams::default().width)]
    pub width: usize,
    /// Training points n.
    #[arg(long, default_value_t = ReluParams::default().n)]
    pub n: usize,
    /// Variance of θ_init.
    #[arg(long, default_value_t = ReluParams::default().init_variance, allow_hyphen_values = true)]
    pub init_variance: f64,
    /// Activation [default: softplus; relu with the preset].
    #[arg(long, value_enum)]
    pub activation: Option<ActivationArg>,
    /// Sharpness β of the softplus.
    #[arg(long, default_value_t = 10.0, allow_hyphen_values = true)]
    pub sharpness: f64,
    /// Run the softplus at each of these sharpnesses (comma separated, e.g. 10,30,100,300,1000)
    /// on the same instance, one run directory each, and compare the learned functions as β
    /// grows towards the ReLU (sweep.csv, sweep.png).
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    pub sharpness_sweep: Option<Vec<f64>>,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl ReluArgs {
    /// The activation chosen, after the preset.
    pub fn activation(&self) -> Activation {
        let default = match self.preset {
            Some(ReluPreset::PaperFig3) => ActivationArg::Relu,
            None => ActivationArg::Softplus,
        };
        match self.activation.unwrap_or(default) {
            ActivationArg::Relu => Activation::Relu,
            ActivationArg::Softplus => Activation::Softplus {
                beta: self.sharpness,
            },
        }
    }

    /// The parameters and run preset.
    pub fn resolve(&self) -> (ReluParams, RunPreset) {
        let p = ReluParams {
            width: self.width,
            n: self.n,
            init_variance: self.init_variance,
            activation: self.activation(),
            seed: self.seed,
        };
        let run = match self.preset {
            Some(ReluPreset::PaperFig3) => RunPreset {
                lambda: Some(1e-3),
                method: Some(MethodArg::Gd),
                lr: Some(2e-3),
                tau_end: Some(10.0),
                t_end: None,
            },
            None => RunPreset::default(),
        };
        (p, run)
    }
}
