//! grokflow: gradient flow with small weight decay, dθ/dt = −∇F(θ) − λθ, integrated in slow
//! time through both phases, the limiting flow on the manifold M of interpolating solutions,
//! and the theory's claims measured as λ → 0.
//!
//! As a library: write your loss once, generically ([`ResidualModel`] or [`ScalarModel`]),
//! make it a [`Model`] (every derivative is derived exactly), and run it through the same
//! calls as the built-in systems: [`run()`] and [`RunRecord::write`] for a run directory,
//! [`validate::validate_model`] for the validation report. The binaries in `src/bin` only
//! parse, call this crate, and print.

pub mod cli;
pub mod memory;
pub mod model;
pub mod output;
pub mod progress;
pub mod request;
pub mod run;
pub mod simulate;
pub mod summary;
pub mod sweep;
pub mod validate;

pub use grokflow_engine::{Loss, Method, ResidualModel, Scalar, ScalarModel, Time};
pub use grokflow_systems::{Curve, System};
pub use grokflow_validation::ValidationConfig;
pub use model::{gaussian, Model, ModelError};
pub use run::{run, RunConfig, RunRecord};
