//! The grokflow application: command-line parsing, run orchestration and the run directory.
//! The binaries in `src/bin` only parse, call this crate, and print.

pub mod bench;
pub mod cli;
pub mod output;
pub mod progress;
pub mod scaling;
pub mod simulate;
pub mod validation_figures;
pub mod workprec;
