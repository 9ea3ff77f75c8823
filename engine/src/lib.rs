//! grokflow's engine: the [`Loss`] trait, the gradient flows of gradient descent with weight
//! decay, their integration by diffsol's implicit solvers with analytic Jacobians, the limit
//! map Φ, observers of the step loop, and the derivative check.
//!
//! The engine knows no concrete system and no command line. A run is
//! `integrate(&flow, θ₀, method, &options, &mut observers) -> Outcome`.

mod bdf;
pub mod check;
pub mod error;
pub mod flow;
mod gd;
pub mod grokking;
mod krylov;
pub mod la;
pub mod limiting;
mod linsolve;
pub mod loss;
pub mod method;
pub mod observe;
mod ode;
pub mod phi;
pub mod run;
mod woodbury;

pub use check::{check_derivatives, DerivativeReport};
pub use error::EngineError;
pub use flow::{GradientFlow, TimeScale};
pub use grokking::{grokking_times, GrokkingTimes, FIT_RATIO};
pub use limiting::{
    kkt_info, limiting_flow, KktInfo, LimitingOptions, LimitingResult, LimitingStats, LimitingStop,
};
pub use linsolve::{factorisation_counts, factorise_and_solve, FactorisationCounts};
pub use loss::{Loss, NoObservables, Observables, Residuals};
pub use method::{
    LinearCapabilities, LinearSolver, Method, Options, BDF_MAX_ORDER, MATRIX_FREE_MIN_DIM,
};
pub use observe::{
    log_time_grid, BlowUpGuard, Control, DenseOutput, Observer, Recorder, RunInfo, Sample,
    StepView, StopReason, Trajectory,
};
pub use phi::{phi, GradientBelow, PhiOptions, PhiResult};
pub use run::{integrate, Outcome, SolverStats};
