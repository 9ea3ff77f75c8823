//! The run directory: summary.json, states.json, trajectory.csv, the limiting flow's and
//! the learned function's CSVs, and the figures.

use std::path::PathBuf;

use anyhow::{Context, Result};
use grokflow_plots::{
    function_figure, render, singular_values_figure, spectrum_figure, trajectory_figure,
    FunctionTable, TrajectoryFigure,
};
use grokflow_systems::System;

use crate::output::{function_csv, prepare_dir, trajectory_csv, write_atomic, write_json};
use crate::run::{RunConfig, RunRecord};
use crate::summary::States;

/// Every file a run directory may hold: a rerun removes those it does not write again, so
/// no stale file of an earlier run stays beside the new ones.
const RUN_FILES: [&str; 10] = [
    "trajectory.csv",
    "states.json",
    "summary.json",
    "trajectory.png",
    "singular_values.png",
    "fourier.png",
    "function.png",
    "limiting_flow.csv",
    "function.csv",
    "trajectory.json",
];

/// Writes the run directory of `record` into `cfg.out` and returns the files written.
pub fn write_run(system: &dyn System, record: &RunRecord, cfg: &RunConfig) -> Result<Vec<PathBuf>> {
    prepare_dir(&cfg.out)?;
    for f in RUN_FILES {
        let p = cfg.out.join(f);
        if p.is_file() {
            std::fs::remove_file(&p)
                .with_context(|| format!("removing the stale {}", p.display()))?;
        }
    }
    let RunRecord {
        summary,
        states,
        trajectory,
        limiting,
    } = record;
    let complete = summary.complete;
    let t_final = summary.final_state.t;
    let function = system
        .curve()
        .map(|curve| function_table(curve, states, trajectory, t_final));
    let dir = &cfg.out;
    let mut files = Vec::new();
    let csv = dir.join("trajectory.csv");
    write_atomic(&csv, trajectory_csv(trajectory).as_bytes())?;
    files.push(csv);
    let st = dir.join("states.json");
    write_json(&st, &states)?;
    files.push(st);
    let sm = dir.join("summary.json");
    write_json(&sm, &summary)?;
    files.push(sm);
    if cfg.plot {
        let png = dir.join("trajectory.png");
        let fig = trajectory_figure(&TrajectoryFigure {
            title: format!(
                "{} · λ = {:e} · {}{}",
                summary.system,
                cfg.lambda,
                summary.method,
                if complete { "" } else { " (stopped early)" }
            ),
            trajectory,
            lambda: cfg.lambda,
            t_fit: summary.grokking.t_fit,
            t_grok: summary.grokking.t_grok,
            overlay: limiting.as_ref().map(|l| ("limiting flow", &l.trajectory)),
        });
        render(&fig, &png).with_context(|| "rendering trajectory.png")?;
        files.push(png);
        let title = format!(
            "{} · λ = {:e} · {}",
            summary.system, cfg.lambda, summary.method
        );
        if let Some(fig) = singular_values_figure(&title, trajectory, cfg.lambda) {
            let png = dir.join("singular_values.png");
            render(&fig, &png).with_context(|| "rendering singular_values.png")?;
            files.push(png);
        }
        // The Fourier spectrum of learned embeddings (modular arithmetic), at Φ(θ_init) and
        // at the end.
        let power = |v: &serde_json::Value| -> Vec<f64> {
            v["fourier_power"]
                .as_array()
                .map(|a| a.iter().filter_map(|x| x.as_f64()).collect())
                .unwrap_or_default()
        };
        let spectra = [
            ("at Φ(θ_init)".to_string(), power(&summary.report.phi)),
            (
                format!("at t = {t_final:.2e}"),
                power(&summary.report.final_state),
            ),
        ];
        if let Some(fig) = spectrum_figure(&title, &spectra) {
            let png = dir.join("fourier.png");
            render(&fig, &png).with_context(|| "rendering fourier.png")?;
            files.push(png);
        }
        if let Some((table, _)) = &function {
            // The function at t = 0 (the first curve) stays in the CSV but not in the
            // figure: with a large initialisation it dwarfs the rest.
            let shown = FunctionTable {
                curves: table.curves[1..].to_vec(),
                ..table.clone()
            };
            let png = dir.join("function.png");
            render(&function_figure(&title, &shown), &png)
                .with_context(|| "rendering function.png")?;
            files.push(png);
        }
    }
    if let Some(l) = &limiting {
        let csv = dir.join("limiting_flow.csv");
        write_atomic(&csv, trajectory_csv(&l.trajectory).as_bytes())?;
        files.push(csv);
    }
    if let Some((table, columns)) = &function {
        let csv = dir.join("function.csv");
        write_atomic(&csv, function_csv(table, columns).as_bytes())?;
        files.push(csv);
    }
    Ok(files)
}

/// The learned function on a 401-point grid at t = 0, Φ(θ_init), t = 1/λ (if reached) and
/// the end, with the CSV column name of each.
pub fn function_table(
    curve: &dyn grokflow_systems::Curve,
    states: &States,
    trajectory: &grokflow_engine::Trajectory,
    t_final: f64,
) -> (FunctionTable, Vec<String>) {
    let (lo, hi) = curve.domain();
    let x = grokflow_systems::curve::grid(lo, hi, 401);
    let eval = |theta: &[f64]| {
        x.iter()
            .map(|&v| curve.predict(theta, v))
            .collect::<Vec<f64>>()
    };
    let mut curves = vec![("t = 0".to_string(), eval(&states.theta_init))];
    let mut columns = vec!["f_init".to_string()];
    if let Some(phi) = &states.phi {
        curves.push(("Φ(θ_init)".into(), eval(phi)));
        columns.push("f_phi".into());
    }
    for (t, theta) in &trajectory.marked {
        curves.push((format!("t = 1/λ = {t:.1e}"), eval(theta)));
        columns.push("f_one_over_lambda".into());
    }
    curves.push((format!("end, t = {t_final:.1e}"), eval(&states.theta_final)));
    columns.push("f_final".into());
    let teacher = x
        .iter()
        .map(|&v| curve.teacher_at(v))
        .collect::<Option<Vec<f64>>>();
    let (train_x, train_y) = curve.training_points();
    (
        FunctionTable {
            x,
            teacher,
            curves,
            train_x,
            train_y,
        },
        columns,
    )
}
