//! `simulate`: runs one system at one λ and writes a run directory.
//! Exit codes: 0 success, 1 bad input or I/O error, 3 the run stopped early (partial results
//! written).

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use grokflow::cli::{ResolvedRun, RunArgs, RunPreset, SimulateCli, SystemCommand};
use grokflow::output::InstanceSummary;
use grokflow::simulate::{default_out_dir, human_summary, run_system, LimitingConfig, RunConfig};
use grokflow_engine::Method;
use grokflow_systems::{
    load_instance, CompletionParams, DiagonalNetwork, DiagonalParams, LinearParams,
    LinearRegression, MatrixCompletion, MatrixSensing, ReluParams, SensingParams, System,
    TwoLayerNetwork,
};
use serde::Serialize;

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

type Generated = Result<(Box<dyn System>, serde_json::Value)>;

fn boxed<S: System + 'static, P: Serialize>(system: S, params: &P) -> Generated {
    Ok((Box::new(system), serde_json::to_value(params)?))
}

/// What the binary needs of a subcommand.
struct Parts<'a> {
    name: &'static str,
    run: &'a RunArgs,
    preset: RunPreset,
    preset_name: Option<String>,
    /// Generates the instance, with its seed replaced when one is given.
    generate: Box<dyn Fn(Option<u64>) -> Generated + Sync + 'a>,
}

fn preset_name<P: ValueEnum>(p: Option<P>) -> Option<String> {
    p.and_then(|p| p.to_possible_value())
        .map(|v| v.get_name().to_string())
}

/// The generator of a system whose parameters have a `seed` field.
macro_rules! generator {
    ($params:expr, $ty:ident, $system:ident) => {{
        let p = $params;
        Box::new(move |seed: Option<u64>| {
            let p = $ty {
                seed: seed.unwrap_or(p.seed),
                ..p.clone()
            };
            boxed($system::generate(&p)?, &p)
        })
    }};
}

fn parts(cmd: &SystemCommand) -> Parts<'_> {
    match cmd {
        SystemCommand::Linear { params, run } => Parts {
            name: "linear",
            run,
            preset: RunPreset::default(),
            preset_name: None,
            generate: generator!(LinearParams::from(params), LinearParams, LinearRegression),
        },
        SystemCommand::MatrixCompletion { params, run } => {
            let (p, preset) = params.resolve();
            Parts {
                name: "matrix-completion",
                run,
                preset,
                preset_name: preset_name(params.preset),
                generate: generator!(p, CompletionParams, MatrixCompletion),
            }
        }
        SystemCommand::MatrixSensing { params, run } => Parts {
            name: "matrix-sensing",
            run,
            preset: RunPreset::default(),
            preset_name: None,
            generate: generator!(SensingParams::from(params), SensingParams, MatrixSensing),
        },
        SystemCommand::Diagonal { params, run } => {
            let (p, preset) = params.resolve();
            Parts {
                name: "diagonal",
                run,
                preset,
                preset_name: preset_name(params.preset),
                generate: generator!(p, DiagonalParams, DiagonalNetwork),
            }
        }
        SystemCommand::Relu { params, run } => {
            let (p, preset) = params.resolve();
            Parts {
                name: "relu",
                run,
                preset,
                preset_name: preset_name(params.preset),
                generate: generator!(p, ReluParams, TwoLayerNetwork),
            }
        }
    }
}

/// Reads `--instance` (checking it is of the right system) or generates an instance.
fn build_system(
    name: &str,
    run: &RunArgs,
    generate: &dyn Fn() -> Generated,
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

fn config(
    name: &str,
    run: &RunArgs,
    resolved: &ResolvedRun,
    preset: Option<&str>,
) -> Result<RunConfig> {
    if let Some(tau) = run.tau_end {
        if !(tau.is_finite() && tau > 0.0) {
            bail!("--tau-end must be a positive finite number, got {tau}");
        }
    }
    let max_steps = run.max_steps.unwrap_or(match resolved.method {
        Method::GradientDescent { .. } => 1_000_000_000,
        _ => 1_000_000,
    });
    let out = run.out.clone().unwrap_or_else(|| {
        let dir = default_out_dir(name, resolved.lambda, resolved.method);
        match preset {
            Some(p) => dir.with_file_name(format!(
                "{}-{p}",
                dir.file_name().unwrap_or_default().to_string_lossy()
            )),
            None => dir,
        }
    });
    Ok(RunConfig {
        lambda: resolved.lambda,
        time: run.time.into(),
        t_end: resolved.t_end,
        method: resolved.method,
        linear_solver: run.linear_solver.into(),
        max_order: run.max_order,
        rtol: run.rtol,
        atol: run.atol,
        max_steps,
        t_min: run.t_min,
        per_decade: run.per_decade,
        out,
        plot: !run.no_plot,
        progress: !run.quiet,
        limiting: run.limiting_flow.then_some(LimitingConfig {
            tau0: run.tau0,
            kkt_tol: run.kkt_tol,
            rtol: run.limiting_rtol,
        }),
    })
}

fn run(cli: SimulateCli) -> Result<ExitCode> {
    let Parts {
        name,
        run,
        preset,
        preset_name,
        generate,
    } = parts(&cli.system);
    let resolved = run.resolve(&preset, 10.0);
    // Check the run's options before building or writing anything.
    let cfg = config(name, run, &resolved, preset_name.as_deref())?;
    cfg.validate()?;
    if run.lambdas.is_some() || run.seeds.is_some() {
        return sweep(
            name,
            run,
            &preset,
            preset_name.as_deref(),
            generate.as_ref(),
        );
    }
    let (mut system, instance) = build_system(name, run, &|| generate(None))?;
    if let (SystemCommand::Relu { params, .. }, Some(_)) = (&cli.system, &run.instance) {
        // A loaded two-layer network runs with the activation asked for on the command line.
        if params.activation.is_some() {
            if let Some(swapped) = system.with_activation(params.activation()) {
                system = swapped;
            }
        }
    }
    if let SystemCommand::Relu { params, .. } = &cli.system {
        if let Some(betas) = &params.sharpness_sweep {
            let (rows, files) =
                grokflow::simulate::sharpness_sweep(system.as_ref(), instance, &cfg, betas)?;
            if !run.quiet {
                println!("softplus sharpness sweep · λ = {:e}", cfg.lambda);
                println!(
                    "  {:>8} {:>7} {:>8} {:>11} {:>6} {:>13}",
                    "β", "steps", "wall s", "test loss", "kinks", "sup |Δf|"
                );
                for r in &rows {
                    println!(
                        "  {:>8} {:>7} {:>8.3} {:>11.3e} {:>6} {:>13}",
                        r.beta,
                        r.steps,
                        r.wall_s,
                        r.test_loss.unwrap_or(f64::NAN),
                        r.kinks.map(|k| k.to_string()).unwrap_or_default(),
                        r.sup_change
                            .map(|d| format!("{d:.3e}"))
                            .unwrap_or_else(|| "—".into())
                    );
                }
                let names: Vec<String> = files
                    .iter()
                    .filter_map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned()))
                    .collect();
                println!(
                    "  wrote {}/{{{}}} and one run directory per β",
                    cfg.out.display(),
                    names.join(", ")
                );
            }
            return Ok(if rows.iter().all(|r| r.complete) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            });
        }
    }
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

/// A sweep over λ (and seeds): every run in parallel into its own directory, then the
/// combined summary. Each run is independent, so the results do not depend on the threads.
fn sweep(
    name: &str,
    run: &RunArgs,
    preset: &RunPreset,
    preset_name: Option<&str>,
    generate: &(dyn Fn(Option<u64>) -> Generated + Sync),
) -> Result<ExitCode> {
    use rayon::prelude::*;
    if run.instance.is_some() && run.seeds.is_some() {
        bail!("--seeds generates instances: it cannot be used with --instance");
    }
    if run.save_instance.is_some() {
        bail!("--save-instance saves one instance: it cannot be used in a sweep");
    }
    let lambdas: Vec<Option<f64>> = match &run.lambdas {
        Some(l) => l.iter().map(|x| Some(*x)).collect(),
        None => vec![None],
    };
    let seeds: Vec<Option<u64>> = match &run.seeds {
        Some(s) => s.iter().map(|x| Some(*x)).collect(),
        None => vec![None],
    };
    let base = run.resolve(preset, 10.0);
    let out = run.out.clone().unwrap_or_else(|| {
        let dir = default_out_dir(name, base.lambda, base.method);
        let stem = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .replace(&format!("lambda{:e}", base.lambda), "sweep");
        dir.with_file_name(match preset_name {
            Some(p) => format!("{stem}-{p}"),
            None => stem,
        })
    });
    // Every job's configuration is checked before anything runs.
    let mut jobs = Vec::new();
    for &seed in &seeds {
        for &lambda in &lambdas {
            let args = RunArgs {
                lambda: lambda.or(run.lambda),
                lambdas: None,
                out: None,
                quiet: true,
                ..run.clone()
            };
            let resolved = args.resolve(preset, 10.0);
            let dir = out.join(format!(
                "lambda{:e}{}",
                resolved.lambda,
                seed.map(|s| format!("-seed{s}")).unwrap_or_default()
            ));
            let mut cfg = config(name, &args, &resolved, preset_name)?;
            cfg.out = dir;
            cfg.progress = false;
            cfg.validate()?;
            jobs.push((seed, cfg));
        }
    }
    grokflow::output::prepare_dir(&out)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(run.threads.unwrap_or(0))
        .build()
        .context("setting up the thread pool")?;
    if !run.quiet {
        eprintln!(
            "sweep: {} runs of {name} on {} threads into {}",
            jobs.len(),
            pool.current_num_threads(),
            out.display()
        );
    }
    let results: Vec<Result<grokflow::simulate::SweepEntry>> = pool.install(|| {
        jobs.par_iter()
            .map(|(seed, cfg)| {
                let (system, instance) = build_system(name, run, &|| generate(*seed))?;
                let r = run_system(system.as_ref(), instance, cfg)?;
                Ok(grokflow::simulate::SweepEntry::of(&r.summary, &cfg.out))
            })
            .collect()
    });
    let entries: Vec<grokflow::simulate::SweepEntry> =
        results.into_iter().collect::<Result<_>>()?;
    let files = grokflow::simulate::write_sweep(&out, &entries)?;
    if !run.quiet {
        print!("{}", grokflow::simulate::sweep_table(&entries));
        let names: Vec<String> = files
            .iter()
            .filter_map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        println!(
            "  wrote {}/{{{}}} and one run directory per run",
            out.display(),
            names.join(", ")
        );
    }
    Ok(if entries.iter().all(|e| e.complete) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}
