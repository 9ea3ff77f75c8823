//! `validate`: measures the theory's claims as λ → 0 on every system and writes a report.
//! Exit codes: 0 every check passed (or was not assessed), 1 an error, 2 a check failed.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Parser;
use grokflow::output::{prepare_dir, write_atomic, write_json};
use grokflow::validation_figures::{collapse_figure, errors_figure};
use grokflow_plots::render;
use grokflow_validation::markdown::report_markdown;
use grokflow_validation::{instances, validate, ValidationConfig};

/// Check the two-phase theory numerically as λ → 0: Props 1–4, the grokking gap and τ_grok,
/// with solver floors and fitted orders, on every system.
#[derive(Debug, Parser)]
#[command(name = "validate", version, about)]
struct Cli {
    /// Small instances and λ ∈ {1e-1, …, 1e-4}: under a minute (what the test suite runs).
    #[arg(long)]
    quick: bool,
    /// Report name [default: "default", or "quick" with --quick].
    #[arg(long)]
    name: Option<String>,
    /// Output directory [default: validation/reports/<name>].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Only these systems (comma separated).
    #[arg(long, value_delimiter = ',')]
    systems: Option<Vec<String>>,
    /// The λ sweep (comma separated) [default: 10^{-k/2}, k = 2…10; quick: 1e-1 … 1e-4].
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    lambdas: Option<Vec<f64>>,
    /// Worker threads [default: all cores]. Results do not depend on it.
    #[arg(long)]
    threads: Option<usize>,
    /// Skip the figures.
    #[arg(long)]
    no_plot: bool,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let name = cli.name.clone().unwrap_or_else(|| {
        if cli.quick {
            "quick".into()
        } else {
            "default".into()
        }
    });
    let out = cli
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("validation/reports").join(&name));
    let mut cfg = ValidationConfig::default();
    if cli.quick {
        cfg.lambdas = vec![1e-1, 1e-2, 1e-3, 1e-4];
    }
    if let Some(l) = &cli.lambdas {
        cfg.lambdas = l.clone();
    }
    cfg.validate()?;
    let mut systems = instances(cli.quick)?;
    if let Some(only) = &cli.systems {
        for s in only {
            if !systems.iter().any(|(n, _)| n == s) {
                bail!("unknown system \"{s}\"; the systems are linear, matrix-completion, matrix-sensing, diagonal, relu");
            }
        }
        systems.retain(|(n, _)| only.contains(n));
    }
    prepare_dir(&out)?;
    if let Some(t) = cli.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(t.max(1))
            .build_global()
            .context("setting up the thread pool")?;
    }
    let report = validate(&systems, &cfg, |s| eprintln!("validate: {s}"))?;
    let mut figures = std::collections::HashMap::new();
    if !cli.no_plot {
        for s in &report.systems {
            let errors = format!("{}-errors.png", s.system);
            let collapse = format!("{}-collapse.png", s.system);
            render(&errors_figure(s), &out.join(&errors)).context("rendering the error figure")?;
            render(&collapse_figure(s), &out.join(&collapse))
                .context("rendering the collapse figure")?;
            figures.insert(s.system.clone(), vec![errors, collapse]);
        }
    }
    let md = report_markdown(&report, |s| figures.get(s).cloned().unwrap_or_default());
    write_atomic(&out.join("report.md"), md.as_bytes())?;
    write_json(&out.join("report.json"), &report)?;
    for s in &report.systems {
        eprintln!(
            "validate: {:<18} {}  order E₁ {}  order E₂ {}  ({:.1} s)",
            s.system,
            if s.passed { "passed" } else { "FAILED" },
            s.prop1_order
                .map(|p| format!("{p:.3}"))
                .unwrap_or_else(|| "—".into()),
            s.prop2_order
                .map(|p| format!("{p:.3}"))
                .unwrap_or_else(|| "—".into()),
            s.wall_s
        );
    }
    println!(
        "validation {} — wrote {}/report.md",
        if report.passed { "passed" } else { "FAILED" },
        out.display()
    );
    Ok(if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}
