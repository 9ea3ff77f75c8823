//! The paper's example losses for grokflow, each with seeded instance generation, a JSON
//! instance file that round-trips, its test metric, and its known truth where there is one.

pub mod data;
pub mod error;
pub mod linear;
pub mod system;

pub use error::SystemError;
pub use linear::{LinearInstanceFile, LinearParams, LinearRegression, LinearTeacher, LinearTruth};
pub use system::{load_instance, System};
