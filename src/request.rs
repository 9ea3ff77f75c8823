//! What a parsed request resolves to: the configuration of a run and its instance.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use grokflow_engine::{Method, Time};
use grokflow_systems::{load_instance, Settings, System};

use crate::cli::{DerivativesArg, SimulateRequest};
use crate::run::{default_out_dir, LimitingConfig, RunConfig};
use crate::summary::InstanceSummary;

/// The configuration of the run at `lambda` (None: the user's or the preset's λ), checked.
pub fn run_config(req: &SimulateRequest, lambda: Option<f64>) -> Result<RunConfig> {
    let run = &req.run;
    let preset_run = req.preset.map(|p| p.run).unwrap_or_default();
    let args = crate::cli::RunArgs {
        lambda: lambda.or(run.lambda),
        ..run.clone()
    };
    let resolved = args.resolve(&preset_run, req.spec.default_tau_end);
    if run.lr.is_some() && !matches!(resolved.method, Method::GradientDescent { .. }) {
        bail!("--lr is the step of gradient descent; it applies with --method gd only");
    }
    // At the non-smooth limit of a smooth family (the exact ReLU) the gradient jumps where a
    // kink crosses a data point: grokflow's BDF integrates it event by event, diffsol's
    // methods stall there (10⁶ steps, no end).
    if let Some(family) = req.spec.smooth_family {
        let settings = req.settings();
        let at_limit = family
            .limit
            .iter()
            .all(|(k, v)| settings.raw(k).ok().flatten() == Some(*v));
        let exact = matches!(
            resolved.method,
            Method::GradientDescent { .. } | Method::Bdf
        );
        if at_limit && !exact {
            let limit: Vec<String> = family
                .limit
                .iter()
                .map(|(k, v)| format!("--{k} {v}"))
                .collect();
            bail!(
                "{} makes the loss non-smooth: its gradient jumps where a kink crosses a data \
                 point, and diffsol's methods stall there; use --method bdf (event-driven, \
                 exact), --method gd --lr {:e}, or the smooth family that tends to it (--{} {})",
                limit.join(" "),
                family.gd_step,
                family.param,
                family.values.join(", ")
            );
        }
    }
    if let Some(tau) = run.tau_end {
        if !(tau.is_finite() && tau > 0.0) {
            bail!("--tau-end must be a positive finite number, got {tau:e}");
        }
    }
    let max_steps = run.max_steps.unwrap_or(match resolved.method {
        Method::GradientDescent { .. } => 1_000_000_000,
        _ => 1_000_000,
    });
    let sweep = run.lambdas.is_some() || run.seeds.is_some() || run.sweep.is_some();
    let out = run.out.clone().unwrap_or_else(|| {
        let mut dir = default_out_dir(req.spec.name, resolved.lambda, resolved.method);
        if sweep {
            dir = PathBuf::from("runs").join(format!("{}-sweep", req.spec.name));
        }
        match req.preset {
            Some(p) => dir.with_file_name(format!(
                "{}-{}",
                dir.file_name().unwrap_or_default().to_string_lossy(),
                p.name
            )),
            None => dir,
        }
    });
    let cfg = RunConfig {
        lambda: resolved.lambda,
        time: run.time.into(),
        end: Time::Fast(resolved.t_end),
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
            projector: run.projector.into(),
            mu_collapse: run.mu_collapse.unwrap_or(req.spec.limiting_mu_collapse),
        }),
    };
    cfg.validate()?;
    Ok(cfg)
}

/// The instance of `req` (see `instance`), with derived derivatives if asked; refused before
/// it is generated if a run of `cfg` on it (`copies` at once) cannot fit in memory.
pub fn build_system(
    req: &SimulateRequest,
    settings: &Settings,
    seed: Option<u64>,
    cfg: &RunConfig,
    copies: usize,
) -> Result<(Box<dyn System>, InstanceSummary)> {
    let (system, summary) = instance(req, settings, seed, cfg, copies)?;
    if req.run.derivatives == DerivativesArg::Derived {
        let derived = system.derived().ok_or_else(|| {
            anyhow::anyhow!(
                "{} has no generic twin to derive its derivatives from; use --derivatives hand",
                req.spec.name
            )
        })??;
        return Ok((derived, summary));
    }
    Ok((system, summary))
}

/// The instance of `req`: read from --instance (with the model parameters of `settings`
/// applied), or generated from `settings` (with its seed replaced by `seed` if given).
fn instance(
    req: &SimulateRequest,
    settings: &Settings,
    seed: Option<u64>,
    cfg: &RunConfig,
    copies: usize,
) -> Result<(Box<dyn System>, InstanceSummary)> {
    let spec = req.spec;
    if let Some(path) = &req.run.instance {
        let mut system = load_instance(path).context("reading --instance")?;
        if system.name() != spec.name {
            bail!(
                "{} is a \"{}\" instance; run `simulate {} --instance {}`",
                path.display(),
                system.name(),
                system.name(),
                path.display()
            );
        }
        // Generation parameters (sizes, seed…) are fixed by the file: giving one is a mistake.
        if let Some(p) = spec
            .params
            .iter()
            .find(|p| !p.model && settings.is_given(p.name))
        {
            bail!(
                "--{} sets how an instance is generated and does not apply with --instance (the \
                 file fixes it); drop it, or generate the instance without --instance",
                p.name
            );
        }
        let model_given = spec
            .params
            .iter()
            .any(|p| p.model && settings.is_given(p.name));
        if model_given {
            system = system.with_model(settings)?;
        }
        crate::memory::check(&crate::memory::footprint_of(system.as_ref()), cfg, copies)?;
        let dim = system.dim();
        let params = system.params_json();
        let summary = InstanceSummary {
            source: "file".into(),
            path: Some(path.clone()),
            dim,
            params: (!params.is_null()).then_some(params),
        };
        return Ok((system, summary));
    }
    let settings = match seed {
        Some(s) => settings.clone().with("seed", s.to_string())?,
        None => settings.clone(),
    };
    crate::memory::check(&(spec.footprint)(&settings)?, cfg, copies)?;
    let system = (spec.generate)(&settings)?;
    let summary = InstanceSummary {
        source: "generated".into(),
        path: None,
        dim: system.dim(),
        params: Some(system.params_json()),
    };
    Ok((system, summary))
}
