//! grokflow's benchmark: every method on the systems with closed forms, every system's
//! default instance across λ, the routes to non-smooth limits, work–precision against scipy,
//! large d and the factorisations. Speed is measured here and written to BENCHMARKS.md,
//! never asserted in tests.

pub mod derived;
pub mod manifold;
pub mod methods;
pub mod report;
pub mod scaling;
pub mod workprec;
mod workprec_report;

pub use report::{run, Cli};
