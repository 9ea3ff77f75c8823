//! `simulate`: runs one system at one λ and writes a run directory.
//! Exit codes: 0 success, 1 bad input or I/O error, 3 the run stopped early (partial results
//! written).

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Parser;
use grokflow::cli::{RunArgs, SimulateCli, SystemCommand};
use grokflow::output::InstanceSummary;
use grokflow::simulate::{default_out_dir, human_summary, run_system, RunConfig};
use grokflow_systems::{load_instance, LinearParams, LinearRegression, System};

fn main() -> ExitCode {
    let cli = SimulateCli::parse();
    grokflow::progress::install_interrupt_handler();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Reads `--instance` (checking it is of the right system) or generates an instance.
fn build_system(
    name: &str,
    run: &RunArgs,
    generate: impl FnOnce() -> Result<(Box<dyn System>, serde_json::Value)>,
) -> Result<(Box<dyn System>, InstanceSummary)> {
    let (system, summary) = if let Some(path) = &run.instance {
        let system = load_instance(path).context("reading --instance")?;
        if system.name() != name {
            bail!(
                "{} is a \"{}\" instance; run `simulate {} --instance {}`",
                path.display(),
                system.name(),
                system.name(),
                path.display()
            );
        }
        let dim = system.dim();
        (
            system,
            InstanceSummary {
                source: "file".into(),
                path: Some(path.clone()),
                dim,
                params: None,
            },
        )
    } else {
        let (system, params) = generate()?;
        let dim = system.dim();
        (
            system,
            InstanceSummary {
                source: "generated".into(),
                path: None,
                dim,
                params: Some(params),
            },
        )
    };
    if let Some(path) = &run.save_instance {
        grokflow::output::write_atomic(path, system.instance_json().as_bytes())
            .with_context(|| format!("writing --save-instance {}", path.display()))?;
    }
    Ok((system, summary))
}

fn config(name: &str, run: &RunArgs) -> Result<RunConfig> {
    if run.t_end.is_none() && !(run.tau_end.is_finite() && run.tau_end > 0.0) {
        bail!(
            "--tau-end must be a positive finite number, got {}",
            run.tau_end
        );
    }
    let t_end = run.t_end.unwrap_or(run.tau_end / run.lambda);
    let method = run.method();
    let max_steps = run.max_steps.unwrap_or(match method {
        grokflow_engine::Method::GradientDescent { .. } => 1_000_000_000,
        _ => 1_000_000,
    });
    Ok(RunConfig {
        lambda: run.lambda,
        time: run.time.into(),
        t_end,
        method,
        rtol: run.rtol,
        atol: run.atol,
        max_steps,
        t_min: run.t_min,
        per_decade: run.per_decade,
        out: run
            .out
            .clone()
            .unwrap_or_else(|| default_out_dir(name, run.lambda, method)),
        plot: !run.no_plot,
        progress: !run.quiet,
    })
}

fn run(cli: SimulateCli) -> Result<ExitCode> {
    let (name, run) = match &cli.system {
        SystemCommand::Linear { run, .. } => ("linear", run),
    };
    // Check the run's options before building or writing anything.
    let cfg = config(name, run)?;
    cfg.validate()?;
    let (system, instance) = match &cli.system {
        SystemCommand::Linear { params, run } => {
            let p = LinearParams::from(params);
            build_system("linear", run, || {
                let lr = LinearRegression::generate(&p)?;
                Ok((Box::new(lr) as Box<dyn System>, serde_json::to_value(&p)?))
            })?
        }
    };
    let result = run_system(system.as_ref(), instance, &cfg)?;
    if !run.quiet {
        print!("{}", human_summary(&result, &cfg.out));
    }
    if result.summary.complete {
        Ok(ExitCode::SUCCESS)
    } else {
        if run.quiet {
            eprintln!(
                "run stopped early: {}",
                result.summary.stop_reason.describe()
            );
        }
        Ok(ExitCode::from(3))
    }
}
