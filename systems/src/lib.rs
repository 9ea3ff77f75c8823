//! The paper's example losses for grokflow, each with seeded instance generation, a JSON
//! instance file that round-trips, its test metric, its report, and its known truth where
//! there is one. `registry()` lists them all.

pub mod curve;
pub mod data;
pub mod diagonal;
pub mod error;
pub mod linear;
pub mod matrix_completion;
pub mod matrix_sensing;
pub mod relu;
pub mod scratch;
pub mod spectral;
pub mod system;

pub use curve::Curve;
pub use diagonal::{DiagonalNetwork, DiagonalParams};
pub use error::SystemError;
pub use linear::{LinearInstanceFile, LinearParams, LinearRegression, LinearTeacher, LinearTruth};
pub use matrix_completion::{CompletionParams, MatrixCompletion};
pub use matrix_sensing::{MatrixSensing, SensingParams};
pub use relu::{Activation, ReluParams, TwoLayerNetwork};
pub use system::{load_instance, registry, Entry, System};
