//! The command line of `simulate` (clap derive). Engine and systems never see clap: the
//! structs here are turned into their plain parameter types.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use grokflow_engine::{Method, TimeScale};
use grokflow_systems::{LinearParams, LinearTeacher};

/// Simulate gradient flow with small weight decay, dθ/dt = −∇F(θ) − λθ, on the paper's
/// examples: the fast phase to the interpolating manifold, then the slow drift along it that
/// lowers ‖θ‖ and makes the test loss drop at t ~ 1/λ (grokking).
#[derive(Debug, Parser)]
#[command(name = "simulate", version, about, long_about = None)]
#[command(
    after_help = "Examples:\n  simulate linear --lambda 1e-4\n  simulate linear --lambda 1e-8 --tau-end 12\n  simulate linear --method gd --lr 0.05 --lambda 1e-2\n  simulate linear --save-instance inst.json   (then: simulate linear --instance inst.json)"
)]
pub struct SimulateCli {
    /// The system to simulate.
    #[command(subcommand)]
    pub system: SystemCommand,
}

/// The systems.
#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Linear regression F(θ) = ‖Xθ − y‖²/(2n) with n < d (paper §5): Φ(θ_init) is the
    /// projection of θ_init onto {Xθ = y}; the slow phase drifts to the min-norm solution.
    Linear {
        /// Instance generation.
        #[command(flatten)]
        params: LinearArgs,
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
    /// Weight decay λ > 0.
    #[arg(long, default_value_t = 1e-4, allow_hyphen_values = true)]
    pub lambda: f64,

    /// Integrate in fast time t or slow time τ = λt.
    #[arg(long, value_enum, default_value_t = TimeArg::Slow)]
    pub time: TimeArg,

    /// End of the run in slow time τ = λt (the run ends at t = τ_end/λ).
    #[arg(
        long,
        default_value_t = 10.0,
        allow_hyphen_values = true,
        conflicts_with = "t_end"
    )]
    pub tau_end: f64,

    /// End of the run in fast time t (instead of --tau-end).
    #[arg(long, allow_hyphen_values = true)]
    pub t_end: Option<f64>,

    /// Integration method.
    #[arg(long, value_enum, default_value_t = MethodArg::Bdf)]
    pub method: MethodArg,

    /// Step η of gradient descent (--method gd); stable for η < 2/(L + λ).
    #[arg(long, default_value_t = 0.01, allow_hyphen_values = true)]
    pub lr: f64,

    /// Relative tolerance of the adaptive methods.
    #[arg(long, default_value_t = 1e-8, allow_hyphen_values = true)]
    pub rtol: f64,

    /// Absolute tolerance of the adaptive methods.
    #[arg(long, default_value_t = 1e-10, allow_hyphen_values = true)]
    pub atol: f64,

    /// Stop after this many steps (default: 10⁶ for ODE methods, 10⁹ iterations for gd).
    #[arg(long)]
    pub max_steps: Option<usize>,

    /// First positive sample time t (samples are log-spaced from here to the end, plus t = 0).
    #[arg(long, default_value_t = 1e-2, allow_hyphen_values = true)]
    pub t_min: f64,

    /// Samples per decade of t.
    #[arg(long, default_value_t = 20)]
    pub per_decade: usize,

    /// Output directory [default: runs/<system>-lambda<λ>].
    #[arg(long)]
    pub out: Option<PathBuf>,

    /// Run on this instance file (data, θ_init, θ_true) instead of generating one.
    #[arg(long, value_name = "FILE")]
    pub instance: Option<PathBuf>,

    /// Write the instance (generated or read) to this JSON file.
    #[arg(long, value_name = "FILE")]
    pub save_instance: Option<PathBuf>,

    /// Do not render trajectory.png.
    #[arg(long)]
    pub no_plot: bool,

    /// No progress bar and no summary on the terminal.
    #[arg(long, short)]
    pub quiet: bool,
}

impl RunArgs {
    /// The engine's method value.
    pub fn method(&self) -> Method {
        match self.method {
            MethodArg::Bdf => Method::Bdf,
            MethodArg::BdfDiffsol => Method::DiffsolBdf,
            MethodArg::Esdirk34 => Method::Esdirk34,
            MethodArg::TrBdf2 => Method::TrBdf2,
            MethodArg::Tsit45 => Method::Tsit45,
            MethodArg::Gd => Method::GradientDescent { lr: self.lr },
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
