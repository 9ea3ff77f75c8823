//! Sweeps: λ × seeds × the values of one system parameter, every run in parallel into its
//! own directory, then the combined summary (sweep_summary.json and .csv) and, for a
//! parameter sweep of a 1-D model, the final functions side by side (sweep.png).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use grokflow_plots::{collapse_figure, function_figure, render, FunctionTable};
use grokflow_systems::System;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::cli::SimulateRequest;
use crate::output::{function_table, prepare_dir, write_atomic, write_json, write_run};
use crate::request::{build_system, run_config};
use crate::run::{run_system, RunConfig};
use crate::summary::{InstanceSummary, RunSummary};

/// One run of a sweep, as the combined summary lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepEntry {
    /// λ.
    pub lambda: f64,
    /// The instance seed.
    pub seed: Option<u64>,
    /// The swept parameter's value, if a parameter is swept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The run directory.
    pub dir: PathBuf,
    /// Whether it reached its end.
    pub complete: bool,
    /// Why it ended.
    pub stop_reason: grokflow_engine::StopReason,
    /// Steps of the λ-flow.
    pub steps: usize,
    /// Wall time of the λ-flow.
    pub wall_s: f64,
    /// Test metric at Φ(θ_init).
    pub test_phi: Option<f64>,
    /// Final test metric.
    pub test_final: Option<f64>,
    /// Final ‖θ‖.
    pub norm_final: f64,
    /// Fitting time.
    pub t_fit: Option<f64>,
    /// Grokking time.
    pub t_grok: Option<f64>,
    /// Grokking time in slow time.
    pub tau_grok: Option<f64>,
    /// For a parameter sweep of a 1-D model: sup over the plotting grid of the change of
    /// the final learned function from the previous value's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sup_change: Option<f64>,
    /// The system's report at the end (rank, support, kinks…).
    #[serde(default)]
    pub report: serde_json::Value,
}

impl SweepEntry {
    /// The entry of a finished run.
    pub fn of(s: &RunSummary, dir: &Path, value: Option<String>) -> Self {
        Self {
            lambda: s.lambda,
            seed: s.seed,
            value,
            dir: dir.to_path_buf(),
            complete: s.complete,
            stop_reason: s.stop_reason.clone(),
            steps: s.stats.steps,
            wall_s: s.stats.wall_s,
            test_phi: s.phi.as_ref().and_then(|p| p.test_loss),
            test_final: s.final_state.test_loss,
            norm_final: s.final_state.norm,
            t_fit: s.grokking.t_fit,
            t_grok: s.grokking.t_grok,
            tau_grok: s.grokking.tau_grok,
            sup_change: None,
            report: s.report.final_state.clone(),
        }
    }
}

/// The swept parameter and its values, from `--sweep NAME=V1,V2,…`.
fn parse_sweep(req: &SimulateRequest) -> Result<Option<(&'static str, Vec<String>)>> {
    let Some(text) = &req.run.sweep else {
        return Ok(None);
    };
    let Some((name, values)) = text.split_once('=') else {
        bail!("--sweep takes NAME=V1,V2,… (e.g. sharpness=10,100), got \"{text}\"");
    };
    let spec = req.spec;
    let Some(param) = spec.params.iter().find(|p| p.name == name.trim()) else {
        let names: Vec<&str> = spec.params.iter().map(|p| p.name).collect();
        bail!(
            "--sweep: {} has no parameter \"{}\"; its parameters are {}",
            spec.name,
            name.trim(),
            names.join(", ")
        );
    };
    if req.run.instance.is_some() && !param.model {
        bail!(
            "--sweep {}: with --instance only a parameter that applies to a loaded instance can \
             be swept (it would change the data)",
            param.name
        );
    }
    let values: Vec<String> = values.split(',').map(|v| v.trim().to_string()).collect();
    if values.iter().any(|v| v.is_empty()) {
        bail!("--sweep {}: an empty value in \"{text}\"", param.name);
    }
    Ok(Some((param.name, values)))
}

/// `--shard K/N` as (K, N), 1 ≤ K ≤ N.
fn parse_shard(text: Option<&str>) -> Result<Option<(usize, usize)>> {
    let Some(text) = text else {
        return Ok(None);
    };
    let parsed = text.split_once('/').and_then(|(k, n)| {
        Some((
            k.trim().parse::<usize>().ok()?,
            n.trim().parse::<usize>().ok()?,
        ))
    });
    match parsed {
        Some((k, n)) if (1..=n).contains(&k) && n <= 100_000 => Ok(Some((k, n))),
        _ => bail!("--shard takes K/N with 1 ≤ K ≤ N ≤ 100000 (for example 3/16), got \"{text}\""),
    }
}

/// What identifies a sweep: the system, its parameters, the lists and the run settings.
/// Shards of one sweep carry the same signature; `merge` refuses shards that do not.
fn signature(
    req: &SimulateRequest,
    base: &RunConfig,
    lambdas: &[Option<f64>],
    seeds: &[Option<u64>],
    values: &[Option<String>],
) -> String {
    let params: Vec<(String, String)> = req
        .typed
        .given()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    serde_json::json!({
        "system": req.spec.name,
        "preset": req.preset.map(|p| p.name),
        "params": params,
        "sweep": req.run.sweep,
        "instance": req.run.instance,
        "lambdas": lambdas,
        "seeds": seeds,
        "values": values,
        "method": base.method.name(),
        "time": format!("{:?}", base.time),
        "rtol": base.rtol,
        "atol": base.atol,
        "tau_end": req.run.tau_end,
        "t_end": req.run.t_end,
        "linear_solver": base.linear_solver.name(),
        "limiting_flow": req.run.limiting_flow,
        "derivatives": format!("{:?}", req.run.derivatives),
    })
    .to_string()
}

/// One shard's part of a sweep summary.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ShardFile {
    /// The sweep's signature (see `signature`).
    pub signature: String,
    /// (K, N).
    pub shard: (usize, usize),
    /// Runs in the whole sweep.
    pub jobs: usize,
    /// This shard's runs, with their places in the sweep.
    pub entries: Vec<(usize, SweepEntry)>,
}

/// Joins the shard summaries found in `dirs` into one sweep summary written to `out`
/// (sweep_summary.json and .csv); refuses shards of different sweeps, a shard given twice
/// and a missing one.
pub fn merge(dirs: &[PathBuf], out: &Path) -> Result<Vec<PathBuf>> {
    let mut parts: Vec<(PathBuf, ShardFile)> = Vec::new();
    for dir in dirs {
        let listing = std::fs::read_dir(dir)
            .with_context(|| format!("reading the shard directory {}", dir.display()))?;
        for f in listing {
            let path = f?.path();
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            if name.starts_with("sweep_summary.shard-") && name.ends_with(".json") {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                let part: ShardFile = serde_json::from_str(&text)
                    .with_context(|| format!("{} is not a shard summary", path.display()))?;
                parts.push((path, part));
            }
        }
    }
    let Some((first_path, first)) = parts.first() else {
        bail!("no shard summaries (sweep_summary.shard-K-of-N.json) in the directories given");
    };
    let n = first.shard.1;
    let mut seen: Vec<Option<PathBuf>> = vec![None; n];
    for (path, part) in &parts {
        if part.signature != first.signature || part.shard.1 != n || part.jobs != first.jobs {
            bail!(
                "{} and {} are shards of different sweeps (their systems, lists or settings \
                 differ); merge the shards of one sweep at a time",
                first_path.display(),
                path.display()
            );
        }
        let k = part.shard.0;
        if let Some(other) = &seen[k - 1] {
            bail!(
                "shard {k} of {n} is given twice ({} and {})",
                other.display(),
                path.display()
            );
        }
        seen[k - 1] = Some(path.clone());
    }
    let missing: Vec<String> = (1..=n)
        .filter(|k| seen[k - 1].is_none())
        .map(|k| k.to_string())
        .collect();
    if !missing.is_empty() {
        bail!(
            "shard(s) {} of {n} are missing: merge once every part has finished",
            missing.join(", ")
        );
    }
    let mut entries: Vec<(usize, SweepEntry)> =
        parts.into_iter().flat_map(|(_, p)| p.entries).collect();
    entries.sort_by_key(|(i, _)| *i);
    let entries: Vec<SweepEntry> = entries.into_iter().map(|(_, e)| e).collect();
    prepare_dir(out)?;
    write_sweep(out, &entries)
}

/// Refuses a list that names the same run twice (the runs would share a directory).
fn distinct<T: PartialEq + std::fmt::Display>(flag: &str, values: &[T]) -> Result<()> {
    for (i, v) in values.iter().enumerate() {
        if values[..i].contains(v) {
            bail!("{flag} lists {v} twice: each run needs its own value");
        }
    }
    Ok(())
}

/// One instance of a sweep: its seed and swept value, the system and its summary.
type Instance = (
    Option<u64>,
    Option<String>,
    Box<dyn System>,
    InstanceSummary,
);

/// One job of a sweep.
struct Job {
    seed: Option<u64>,
    value: Option<String>,
    cfg: RunConfig,
}

/// Runs the sweep `req` asks for; returns the entries (in the order of the lists) and the
/// files written beside the run directories.
pub fn run_sweep(
    req: &SimulateRequest,
    base: &RunConfig,
) -> Result<(Vec<SweepEntry>, Vec<PathBuf>)> {
    let run = &req.run;
    if run.instance.is_some() && run.seeds.is_some() {
        bail!("--seeds generates instances: it cannot be used with --instance");
    }
    if run.save_instance.is_some() {
        bail!("--save-instance saves one instance: it cannot be used in a sweep");
    }
    let param = parse_sweep(req)?;
    let lambdas: Vec<Option<f64>> = match &run.lambdas {
        Some(l) => {
            distinct("--lambdas", l)?;
            l.iter().map(|x| Some(*x)).collect()
        }
        None => vec![None],
    };
    let seeds: Vec<Option<u64>> = match &run.seeds {
        Some(s) => {
            distinct("--seeds", s)?;
            s.iter().map(|x| Some(*x)).collect()
        }
        None => vec![None],
    };
    let values: Vec<Option<String>> = match &param {
        Some((name, v)) => {
            distinct(&format!("--sweep {name}"), v)?;
            v.iter().map(|x| Some(x.clone())).collect()
        }
        None => vec![None],
    };
    let out = base.out.clone();
    // Every job's configuration is checked before anything runs.
    let mut jobs = Vec::new();
    for &seed in &seeds {
        for &lambda in &lambdas {
            for value in &values {
                let mut cfg = run_config(req, lambda)?;
                let mut dir = format!("lambda{:e}", cfg.lambda);
                if let Some(s) = seed {
                    dir += &format!("-seed{s}");
                }
                if let (Some((name, _)), Some(v)) = (&param, value) {
                    dir += &format!("-{name}{v}");
                }
                cfg.out = out.join(dir);
                cfg.progress = false;
                jobs.push(Job {
                    seed,
                    value: value.clone(),
                    cfg,
                });
            }
        }
    }
    let shard = parse_shard(run.shard.as_deref())?;
    let signature = signature(req, base, &lambdas, &seeds, &values);
    let all_jobs = jobs.len();
    let indices: Vec<usize> = (0..all_jobs)
        .filter(|i| shard.is_none_or(|(k, n)| i % n == k - 1))
        .collect();
    let jobs: Vec<Job> = jobs
        .into_iter()
        .enumerate()
        .filter(|(i, _)| indices.contains(i))
        .map(|(_, j)| j)
        .collect();
    if jobs.is_empty() {
        bail!(
            "shard {} has no runs: the sweep has only {all_jobs}",
            run.shard.as_deref().unwrap_or_default()
        );
    }
    let name = param.map(|(n, _)| n);
    // Each instance (seed × value) is built once, before any run: a bad value is refused
    // before anything is written, and the λ's of one instance share it.
    let mut instances: Vec<Instance> = Vec::new();
    for job in &jobs {
        if instances
            .iter()
            .any(|(s, v, _, _)| *s == job.seed && *v == job.value)
        {
            continue;
        }
        let mut settings = req.settings();
        if let (Some(n), Some(v)) = (name, &job.value) {
            settings.set(n, v.clone())?;
        }
        let copies = run
            .threads
            .unwrap_or_else(rayon::current_num_threads)
            .min(jobs.len());
        let (system, summary) = build_system(req, &settings, job.seed, base, copies)?;
        instances.push((job.seed, job.value.clone(), system, summary));
    }
    crate::cli::check_threads(run.threads)?;
    prepare_dir(&out)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(run.threads.unwrap_or(0))
        .build()
        .context("setting up the thread pool")?;
    if !run.quiet {
        eprintln!(
            "sweep: {} runs of {} on {} threads into {}",
            jobs.len(),
            req.spec.name,
            pool.current_num_threads(),
            out.display()
        );
    }
    type Done = (SweepEntry, Option<Vec<f64>>, Option<(f64, Vec<(f64, f64)>)>);
    let results: Vec<Result<Done>> = pool.install(|| {
        jobs.par_iter()
            .map(|job| {
                let (_, _, system, summary) = instances
                    .iter()
                    .find(|(s, v, _, _)| *s == job.seed && *v == job.value)
                    .expect("every job's instance was built");
                let record = run_system(system.as_ref(), summary.clone(), &job.cfg)?;
                write_run(system.as_ref(), &record, &job.cfg)?;
                let entry = SweepEntry::of(&record.summary, &job.cfg.out, job.value.clone());
                let last = final_function(system.as_ref(), &record);
                let accuracy = record
                    .trajectory
                    .extra_columns
                    .iter()
                    .position(|c| c == "test_accuracy")
                    .map(|i| {
                        let pts = record
                            .trajectory
                            .samples
                            .iter()
                            .map(|x| (x.t, x.extra[i]))
                            .collect();
                        (job.cfg.lambda, pts)
                    });
                Ok((entry, last, accuracy))
            })
            .collect()
    });
    let mut entries = Vec::new();
    let mut functions = Vec::new();
    let mut accuracies = Vec::new();
    for r in results {
        let (e, f, a) = r?;
        entries.push(e);
        functions.push(f);
        accuracies.extend(a);
    }
    let mut files = Vec::new();
    if let Some((k, n)) = shard {
        let part = ShardFile {
            signature,
            shard: (k, n),
            jobs: all_jobs,
            entries: indices.into_iter().zip(entries.clone()).collect(),
        };
        let path = out.join(format!("sweep_summary.shard-{k}-of-{n}.json"));
        write_json(&path, &part)?;
        files.push(path);
        return Ok((entries, files));
    }
    if let Some(n) = name {
        let first = instances[0].2.as_ref();
        files.extend(compare_functions(
            req,
            first,
            base,
            n,
            &mut entries,
            &functions,
        )?);
    }
    // A λ sweep of a classification system: its test accuracy against t and against τ.
    let mut lambdas_seen: Vec<f64> = accuracies.iter().map(|a| a.0).collect();
    lambdas_seen.dedup();
    if base.plot && lambdas_seen.len() > 1 {
        accuracies.sort_by(|a, b| b.0.total_cmp(&a.0));
        accuracies.dedup_by(|a, b| a.0 == b.0);
        let path = out.join("sweep_accuracy.png");
        let title = format!("{} · test accuracy over a λ sweep", req.spec.name);
        render(
            &collapse_figure(&title, "test accuracy", &accuracies),
            &path,
        )
        .context("rendering sweep_accuracy.png")?;
        files.push(path);
    }
    files.extend(write_sweep(&out, &entries)?);
    Ok((entries, files))
}

/// The final learned function of a 1-D model on its plotting grid.
fn final_function(system: &dyn System, record: &crate::run::RunRecord) -> Option<Vec<f64>> {
    let curve = system.curve()?;
    let table = function_table(curve, &record.states, &record.trajectory, 0.0);
    table.0.curves.last().map(|(_, v)| v.clone())
}

/// For a parameter sweep of a 1-D model: each value's final function against the previous
/// value's (sup_change), and the final functions side by side in sweep.png.
fn compare_functions(
    req: &SimulateRequest,
    system: &dyn System,
    base: &RunConfig,
    name: &str,
    entries: &mut [SweepEntry],
    functions: &[Option<Vec<f64>>],
) -> Result<Vec<PathBuf>> {
    let Some(first) = functions.iter().flatten().next() else {
        return Ok(Vec::new());
    };
    // The grid, teacher and data come from the first instance (the grid is the model's input
    // range).
    let Some(curve) = system.curve() else {
        return Ok(Vec::new());
    };
    let (lo, hi) = curve.domain();
    let x = grokflow_systems::curve::grid(lo, hi, first.len());
    let mut table = FunctionTable {
        teacher: x.iter().map(|&v| curve.teacher_at(v)).collect(),
        x,
        ..FunctionTable::default()
    };
    (table.train_x, table.train_y) = curve.training_points();
    let mut previous: Option<&Vec<f64>> = None;
    for (e, f) in entries.iter_mut().zip(functions) {
        let Some(f) = f else { continue };
        e.sup_change = previous.map(|p| {
            p.iter()
                .zip(f)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max)
        });
        let label = format!("{name} = {}", e.value.as_deref().unwrap_or("?"));
        table.curves.push((label, f.clone()));
        previous = Some(f);
    }
    if !base.plot {
        return Ok(Vec::new());
    }
    let path = base.out.join("sweep.png");
    let title = format!(
        "{} · sweep of {name} · final learned functions",
        req.spec.name
    );
    render(&function_figure(&title, &table), &path).context("rendering sweep.png")?;
    Ok(vec![path])
}

/// Writes sweep_summary.json and sweep_summary.csv.
pub fn write_sweep(dir: &Path, entries: &[SweepEntry]) -> Result<Vec<PathBuf>> {
    let json = dir.join("sweep_summary.json");
    write_json(&json, &entries)?;
    let o = |v: Option<f64>| v.map(|x| format!("{x:e}")).unwrap_or_default();
    let mut csv = String::from(
        "lambda,seed,value,complete,steps,wall_s,test_phi,test_final,norm_final,t_fit,t_grok,\
         tau_grok,sup_change,dir\n",
    );
    for e in entries {
        csv += &format!(
            "{:e},{},{},{},{},{:e},{},{},{:e},{},{},{},{},{}\n",
            e.lambda,
            e.seed.map(|s| s.to_string()).unwrap_or_default(),
            e.value.as_deref().unwrap_or_default(),
            e.complete,
            e.steps,
            e.wall_s,
            o(e.test_phi),
            o(e.test_final),
            e.norm_final,
            o(e.t_fit),
            o(e.t_grok),
            o(e.tau_grok),
            o(e.sup_change),
            e.dir.display()
        );
    }
    let path = dir.join("sweep_summary.csv");
    write_atomic(&path, csv.as_bytes())?;
    Ok(vec![json, path])
}
