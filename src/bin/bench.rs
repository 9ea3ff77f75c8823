//! `bench`: regenerates BENCHMARKS.md (and benchmarks.json) from measured runs.

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;
use grokflow::bench::{
    bench_linear, bench_relu, bench_systems, markdown, relu_markdown, systems_markdown, BenchConfig,
};
use grokflow::output::{write_atomic, write_json};

/// Measure grokflow's methods against each other and against gradient descent.
#[derive(Debug, Parser)]
#[command(name = "bench", version, about)]
struct Cli {
    /// Markdown report.
    #[arg(long, default_value = "BENCHMARKS.md")]
    out: PathBuf,
    /// Raw results (JSON).
    #[arg(long, default_value = "benchmarks.json")]
    json: PathBuf,
    /// Repeats of each timed run.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
}

fn machine() -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cpu}, {cores} cores")
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let cfg = BenchConfig {
        repeats: cli.repeats,
        ..BenchConfig::default()
    };
    let rows = bench_linear(&cfg, |what| eprintln!("bench: {what}"))?;
    let systems = bench_systems(&cfg.lambdas, 50_000, |what| eprintln!("bench: {what}"))?;
    let relu = bench_relu(|what| eprintln!("bench: {what}"))?;
    let mut text = markdown(&cfg, &rows, &machine());
    text += &systems_markdown(&systems);
    text += &relu_markdown(&relu);
    write_atomic(&cli.out, text.as_bytes())?;
    write_json(
        &cli.json,
        &serde_json::json!({ "config": cfg, "linear": rows, "systems": systems, "relu": relu }),
    )?;
    eprintln!(
        "bench: wrote {} and {}",
        cli.out.display(),
        cli.json.display()
    );
    Ok(())
}
