//! grokflow's engine: the [`Loss`] trait, the gradient flows of gradient descent with weight
//! decay, their integration in one step loop ([`stepping`]) by grokflow's BDF (with dense,
//! matrix-free or structured Newton solves), gradient descent or diffsol's solvers, the limit
//! map Φ, the manifold M and the limiting flow on it, and the derivative check.
//!
//! The engine knows no concrete system and no command line. A run is
//! `integrate(&flow, θ₀, method, &options, &mut observers) -> Outcome`.

pub mod autodiff;
pub mod check;
pub mod error;
pub mod flow;
pub mod grokking;
mod integrate;
pub mod la;
pub mod limiting;
pub mod loss;
pub mod manifold;
pub mod method;
mod newton;
pub mod phi;
mod steppers;
pub mod stepping;
pub mod switching;

pub use autodiff::{Derived, DerivedScalar, ResidualModel, Scalar, ScalarModel};
pub use check::{check_derivatives, DerivativeReport};
pub use error::EngineError;
pub use flow::{rounding_floor, Clock, GradientFlow, Time, TimeScale, LAMBDA_RANGE};
pub use grokking::{grokking_times, GrokkingTimes, FIT_RATIO};
pub use integrate::integrate;
pub use limiting::{
    limiting_flow, tangent_projection, LimitingOptions, LimitingProblem, LimitingResult,
    LimitingStats, Projector,
};
pub use loss::{Loss, NoObservables, Observables, Residuals};
pub use manifold::{kkt_info, KktInfo};
pub use method::{
    LinearCapabilities, LinearSolver, Method, Options, BDF_MAX_ORDER, MATRIX_FREE_MIN_DIM,
};
pub use phi::{phi, PhiOptions, PhiResult};
pub use stepping::{
    drive, log_time_grid, BlowUpGuard, Control, DenseOutput, GradientBelow, Limits, Observer,
    Outcome, Recorder, RisingObjective, RunInfo, Sample, SolverStats, StepView, Stepper,
    StopReason, Trajectory,
};
pub use switching::Switching;
