//! What `validate` does: the theory's claims measured on every registered system, and the
//! report (report.md, report.json, two figures per system) written where asked.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Parser;
use grokflow_plots::render;
use grokflow_systems::System;
use grokflow_validation::markdown::report_markdown;
use grokflow_validation::{
    instances, validate, validate_system_watched, Outcome, ValidationConfig, ValidationReport,
};

use crate::cli::ProjectorArg;
use crate::progress::ValidationProgress;

use crate::output::validation_figures::{collapse_figure, errors_figure};
use crate::output::{prepare_dir, write_atomic, write_json};
use crate::simulate::Finished;

/// Check the two-phase theory numerically as λ → 0: Props 1–4, the grokking gap and τ_grok,
/// with solver floors and fitted orders, on every system.
#[derive(Debug, Parser)]
#[command(name = "validate", version)]
pub struct ValidateArgs {
    /// Small instances and λ ∈ {1e-1, 1e-2, …, 1e-8}: seconds (what the test suite runs).
    #[arg(long)]
    pub quick: bool,
    /// Report name [default: "default", or "quick" with --quick].
    #[arg(long)]
    pub name: Option<String>,
    /// Output directory [default: runs/validation/NAME].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Only these systems (comma separated).
    #[arg(long, value_delimiter = ',')]
    pub systems: Option<Vec<String>>,
    /// The λ sweep (comma separated) [default: 10^{-k/2}, k = 2…16; quick: 1e-1, 1e-2, … 1e-8].
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    pub lambdas: Option<Vec<f64>>,
    /// Worker threads [default: all cores]. Results do not depend on it.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Skip the figures.
    #[arg(long)]
    pub no_plot: bool,
    /// How the reference limiting flows reach the normal space of M.
    #[arg(long, value_enum, default_value_t = ProjectorArg::Auto)]
    pub projector: ProjectorArg,
}

/// Runs the validation `args` asks for and writes its report. Exit codes: 0 every applicable
/// check passed, 2 a check failed, 4 inconclusive (none failed, some could not be assessed),
/// 130 interrupted by Ctrl-C (the report then holds the systems finished before it).
pub fn run_validation(args: &ValidateArgs) -> Result<Finished> {
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| if args.quick { "quick" } else { "default" }.into());
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs/validation").join(&name));
    let mut cfg = ValidationConfig::default();
    if args.quick {
        cfg.lambdas = (1..=8).map(|k| 10f64.powi(-k)).collect();
    }
    if let Some(l) = &args.lambdas {
        cfg.lambdas = l.clone();
    }
    cfg.projector = args.projector.into();
    cfg.validate()?;
    let mut systems = instances(args.quick)?;
    if let Some(only) = &args.systems {
        for s in only {
            if !systems.iter().any(|(n, _)| n == s) {
                let names: Vec<&str> = systems.iter().map(|(n, _)| n.as_str()).collect();
                bail!(
                    "unknown system \"{s}\"; the systems are {}",
                    names.join(", ")
                );
            }
        }
        systems.retain(|(n, _)| only.contains(n));
    }
    crate::cli::check_threads(args.threads)?;
    prepare_dir(&out)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads.unwrap_or(0))
        .build()
        .context("setting up the thread pool")?;
    crate::progress::install_interrupt_handler();
    let watch = ValidationProgress::new((systems.len() * (cfg.lambdas.len() + 1)) as u64);
    let report = pool.install(|| validate(&systems, &cfg, &watch));
    watch.finish();
    let report = report?;
    write_report(&report, &out, !args.no_plot)?;
    let mut text = String::new();
    for s in &report.systems {
        let order = |p: Option<f64>| p.map(|p| format!("{p:.3}")).unwrap_or_else(|| "—".into());
        text += &format!(
            "validate: {:<18} {}  order E₁ {}  order E₂ {}  ({:.1} s)\n",
            s.system,
            s.outcome.word(),
            order(s.prop1_order),
            order(s.prop2_order),
            s.wall_s
        );
    }
    if let Some(system) = &report.interrupted {
        text += &format!(
            "validation interrupted (Ctrl-C) while validating {system} — wrote the report of the \
             {} systems finished to {}/report.md\n",
            report.systems.len(),
            out.display()
        );
        return Ok(Finished { text, code: 130 });
    }
    text += &format!(
        "validation {} — wrote {}/report.md\n",
        report.outcome.word(),
        out.display()
    );
    Ok(Finished {
        text,
        code: match report.outcome {
            Outcome::Passed => 0,
            Outcome::Failed => 2,
            Outcome::Inconclusive => 4,
        },
    })
}

/// Writes `report` into `out`: report.md, report.json and, with `plot`, each system's error
/// and collapse figures.
pub fn write_report(report: &ValidationReport, out: &Path, plot: bool) -> Result<()> {
    prepare_dir(out)?;
    let mut figures = HashMap::new();
    if plot {
        for s in &report.systems {
            let errors = format!("{}-errors.png", s.system);
            let collapse = format!("{}-collapse.png", s.system);
            render(&errors_figure(s), &out.join(&errors)).context("rendering the error figure")?;
            render(&collapse_figure(s), &out.join(&collapse))
                .context("rendering the collapse figure")?;
            figures.insert(s.system.clone(), vec![errors, collapse]);
        }
    }
    let md = report_markdown(report, |s| figures.get(s).cloned().unwrap_or_default());
    write_atomic(&out.join("report.md"), md.as_bytes())?;
    write_json(&out.join("report.json"), report)
}

/// Validates one model (or system) over the λ sweep of `cfg` and writes its report into
/// `out` (see [`write_report`]).
pub fn validate_model(
    model: &dyn System,
    cfg: &ValidationConfig,
    out: &Path,
    plot: bool,
) -> Result<ValidationReport> {
    let started = std::time::Instant::now();
    crate::progress::install_interrupt_handler();
    let watch = ValidationProgress::new((cfg.lambdas.len() + 1) as u64);
    let one = validate_system_watched(model, cfg, &watch);
    watch.finish();
    let one = one?;
    let report = ValidationReport {
        grokflow_version: env!("CARGO_PKG_VERSION").into(),
        config: cfg.clone(),
        passed: one.passed,
        outcome: one.outcome,
        systems: vec![one],
        wall_s: started.elapsed().as_secs_f64(),
        interrupted: None,
    };
    write_report(&report, out, plot)?;
    Ok(report)
}
