//! The engine's error type. Failures of a run that has started are not errors: they end the
//! run with a [`crate::StopReason`] and keep what was recorded.

use thiserror::Error;

/// What can stop the engine before a run starts, or make a result unusable.
#[derive(Debug, Error)]
pub enum EngineError {
    /// A user-supplied value is out of range (λ ≤ 0, a tolerance ≤ 0, a wrong length…).
    #[error("{0}")]
    InvalidInput(String),
    /// The ODE solver could not be set up.
    #[error("the ODE solver could not start: {0}")]
    SolverSetup(String),
    /// An iteration that must converge did not (Φ, a retraction, …).
    #[error("{0}")]
    NotConverged(String),
    /// A linear-algebra routine failed.
    #[error("linear algebra failed: {0}")]
    LinearAlgebra(String),
}
