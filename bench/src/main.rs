//! `bench`: regenerates BENCHMARKS.md (and benchmarks.json) from measured runs, with the
//! work–precision figures in docs/figures/.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    grokflow_bench::run(&grokflow_bench::Cli::parse())
}
