//! The grokflow application: the command line built from the registry, runs and sweeps,
//! the run directory and the validation report. The binaries in `src/bin` only parse, call
//! this crate, and print.

pub mod cli;
pub mod output;
pub mod progress;
pub mod request;
pub mod run;
pub mod simulate;
pub mod summary;
pub mod sweep;
pub mod validate;
