//! The benchmark: every section run in turn, BENCHMARKS.md and benchmarks.json written.

use std::path::PathBuf;

use crate::methods::{
    bench_limits, bench_linear, bench_systems, limits_markdown, markdown, systems_markdown,
    BenchConfig,
};
use crate::{scaling, workprec};
use anyhow::Result;
use clap::Parser;

/// Writes `bytes` to `path` (the report files).
fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Writes a serde value as pretty JSON.
fn write_json<T: serde::Serialize>(path: &std::path::Path, value: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}
use grokflow_plots::render;

/// Measure grokflow's methods against each other, gradient descent and scipy's solve_ivp.
///
/// The scipy and CVODE comparison needs python3 with numpy, scipy and scikit-sundae
/// (`pip install numpy scipy scikit-sundae`); without them it is skipped and the report says
/// so. The full run takes about 40 minutes
/// on 2 cores; --quick a few minutes.
#[derive(Debug, Parser)]
#[command(name = "bench", version, about)]
pub struct Cli {
    /// Directory of the report: BENCHMARKS.md, benchmarks.json and the work–precision figures
    /// (figures/).
    #[arg(long, default_value = "runs/bench")]
    pub out: PathBuf,
    /// Write the committed report instead: BENCHMARKS.md and benchmarks.json at the
    /// repository root, the figures in docs/figures (run from the root).
    #[arg(long)]
    pub committed: bool,
    /// Repeats of each timed run (runs over 2 s are timed once; in the work–precision
    /// section, grokflow's and scipy's shorter runs are repeated further, until their runs
    /// add up to 0.3 s, at most 100 runs).
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// A smaller run: two λ, two tolerances, no repeats, sizes up to d = 1800.
    #[arg(long)]
    pub quick: bool,
    /// Skip scipy even where it is installed.
    #[arg(long)]
    pub no_scipy: bool,
    /// Internal: make one run of the limiting-flow section in this process (JSON spec) and
    /// print what it measured.
    #[arg(long, hide = true)]
    pub limiting_run: Option<String>,
}

impl Cli {
    /// (markdown, JSON, figures directory, how the markdown links the figures).
    fn paths(&self) -> (PathBuf, PathBuf, PathBuf, PathBuf) {
        if self.committed {
            let figures = PathBuf::from("docs/figures");
            let md = PathBuf::from("BENCHMARKS.md");
            (
                md,
                PathBuf::from("benchmarks.json"),
                figures.clone(),
                figures,
            )
        } else {
            let o = &self.out;
            (
                o.join("BENCHMARKS.md"),
                o.join("benchmarks.json"),
                o.join("figures"),
                PathBuf::from("figures"),
            )
        }
    }
}

/// Each system's second instance of the work–precision comparison: another seed and size,
/// labelled with them.
fn second_instance(
    spec: &grokflow_systems::SystemSpec,
) -> Result<Option<(String, Box<dyn grokflow_systems::System>)>> {
    let changes: &[(&str, &str)] = match spec.name {
        "linear" => &[("seed", "1"), ("n", "30"), ("d", "300")],
        "matrix-completion" => &[("seed", "1"), ("n1", "16"), ("n2", "16"), ("width", "8")],
        "matrix-sensing" => &[("seed", "1"), ("n", "12"), ("measurements", "56")],
        "diagonal" => &[("seed", "1"), ("frequencies", "80"), ("n", "40")],
        "relu" => &[("seed", "1"), ("width", "150"), ("n", "12")],
        _ => return Ok(None),
    };
    let mut settings = grokflow_systems::Settings::new(spec.params);
    for (k, v) in changes {
        settings.set(k, *v)?;
    }
    let label = format!(
        "{} ({})",
        spec.name,
        changes
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(Some((label, (spec.generate)(&settings)?)))
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

/// Runs every section of the benchmark and writes its report.
pub fn run(cli: &Cli) -> Result<()> {
    if let Some(spec) = &cli.limiting_run {
        return crate::manifold::child(spec);
    }
    // The report's directories exist before the long runs start.
    let (md_path, json_path, figures_dir, figures_link) = cli.paths();
    std::fs::create_dir_all(&figures_dir)?;
    let started = std::time::Instant::now();
    let stamp = move || format!("{:6.0} s", started.elapsed().as_secs_f64());
    let cfg = BenchConfig {
        repeats: cli.repeats,
        ..BenchConfig::default()
    };
    let rows = bench_linear(&cfg, |what| eprintln!("bench {}: {what}", stamp()))?;
    let (systems, references) = bench_systems(&cfg.lambdas, 50_000, |what| {
        eprintln!("bench {}: {what}", stamp())
    })?;
    let limits = bench_limits(|what| eprintln!("bench {}: {what}", stamp()))?;
    let derived_lambdas: &[f64] = if cli.quick {
        &[1e-4]
    } else {
        &[1e-2, 1e-4, 1e-8]
    };
    let derived = crate::derived::bench_derived(derived_lambdas, cli.repeats, |what| {
        eprintln!("bench {}: {what}", stamp())
    })?;

    let mut wp_cfg = if cli.quick {
        workprec::WpConfig::quick()
    } else {
        workprec::WpConfig::default()
    };
    wp_cfg.repeats = cli.repeats;
    let scipy = !cli.no_scipy && workprec::scipy_available();
    if !scipy && !cli.no_scipy {
        eprintln!("bench: python3 with numpy and scipy not found; the scipy comparison is skipped");
    }
    let scratch = std::env::temp_dir().join(format!("grokflow-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let limiting = crate::manifold::bench_limiting(
        if cli.quick { 30 } else { 70 },
        cli.repeats,
        &scratch,
        |what| eprintln!("bench {}: {what}", stamp()),
    );
    // The default instance (d = 2496, m = 1313). At p = 31 interpolation needs w ≳ 100
    // (m = Np < d = 3pw), so m ≈ 9000 and each renewal of the m×m preconditioner costs
    // ~2·10¹¹ flops, renewed at about half the steps at λ = 1e-6: hours on this machine.
    let modular_settings: &[(&str, &str)] = &[];
    let modular = crate::manifold::bench_modular(modular_settings, &scratch, |what| {
        eprintln!("bench {}: {what}", stamp())
    });
    let cvode = scipy && workprec::cvode_available();
    if scipy && !cvode {
        eprintln!("bench: scikit-sundae not found (pip install scikit-sundae); CVODE is skipped");
    }
    let mut instances = Vec::new();
    for e in grokflow_systems::registry() {
        let system = e.default_instance()?;
        if system.dim() > crate::methods::MAX_COMPARED_DIM {
            continue;
        }
        instances.push((e.name.to_string(), system, workprec::Scope::Full));
    }
    for e in &grokflow_systems::registry() {
        if let Some((label, system)) = second_instance(e)? {
            if system.dim() <= crate::methods::MAX_COMPARED_DIM {
                instances.push((label, system, workprec::Scope::Peers));
            }
        }
    }
    let points = workprec::run(
        &instances,
        &wp_cfg,
        &scratch,
        scipy,
        cvode,
        &references,
        |what| eprintln!("bench {}: {what}", stamp()),
    );
    std::fs::remove_dir_all(&scratch).ok();
    let points = points?;
    let limiting = limiting?;
    let modular = modular?;
    let mut figure_paths = Vec::new();
    for (name, fig) in workprec::figures(&points, &wp_cfg) {
        let path = figures_dir.join(&name);
        render(&fig, &path)?;
        figure_paths.push(figures_link.join(&name).display().to_string());
    }

    let (sizes, large_sizes, dense_max) = if cli.quick {
        (vec![250, 500, 1000], vec![20, 30], 30)
    } else {
        (vec![250, 500, 1000, 2000], vec![20, 30, 40, 70], 40)
    };
    eprintln!("bench {}: factorisations at n = {sizes:?}", stamp());
    let factor_rows = scaling::factorisations(&sizes, cli.repeats);
    let large = scaling::large_d(&large_sizes, dense_max, |what| {
        eprintln!("bench {}: {what}", stamp())
    })?;

    let mut text = markdown(&cfg, &rows, &machine());
    text += &systems_markdown(&systems);
    text += &limits_markdown(&limits);
    text += &crate::derived::derived_markdown(&derived);
    text += &crate::manifold::limiting_markdown(&limiting);
    text += &workprec::targets_markdown(&points, &wp_cfg, scipy);
    text += &scaling::large_d_markdown(&large);
    text += &crate::manifold::modular_markdown(&modular);
    text += &scaling::factorisations_markdown(&factor_rows);
    text += &workprec::markdown(&points, &wp_cfg, &figure_paths);
    write_atomic(&md_path, text.as_bytes())?;
    write_json(
        &json_path,
        &serde_json::json!({
            "config": cfg, "linear": rows, "systems": systems, "limits": limits, "derived": derived,
            "workprecision": { "config": wp_cfg, "scipy": scipy, "cvode": cvode, "points": points },
            "factorisations": factor_rows, "large_d": large, "limiting_flow": limiting, "modular": modular,
        }),
    )?;
    eprintln!(
        "bench: wrote {} and {}",
        md_path.display(),
        json_path.display()
    );
    Ok(())
}
