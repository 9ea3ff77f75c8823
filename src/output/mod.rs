//! Writing results: atomic files, JSON, the trajectory and function CSVs, the run
//! directory with its figures, and the human summary.

mod figures;
mod text;
pub mod validation_figures;

use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use grokflow_engine::Trajectory;
use serde::Serialize;

pub use figures::{function_table, write_run};
pub use text::{human_summary, sweep_table};

/// Writes `bytes` to `path` through a temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp~");
    {
        let mut f =
            fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(bytes)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.sync_all().ok();
    }
    fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// Writes a serde value as pretty JSON.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

/// Creates the output directory and checks that it is writable, before any work is done.
pub fn prepare_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the output directory {}", dir.display()))?;
    let probe = dir.join(".grokflow-write-test");
    fs::write(&probe, b"")
        .with_context(|| format!("the output directory {} is not writable", dir.display()))?;
    fs::remove_file(&probe).ok();
    Ok(())
}

fn num(v: f64) -> String {
    format!("{v:e}")
}

/// The trajectory as CSV: `t,tau,train_loss,test_loss,theta_norm,grad_norm` and then the
/// system's extra columns. Numbers use Rust's shortest round-trip form (`1.5e-3`); a missing
/// test metric is an empty field.
pub fn trajectory_csv(traj: &Trajectory) -> String {
    let mut out = String::from("t,tau,train_loss,test_loss,theta_norm,grad_norm");
    for c in &traj.extra_columns {
        out.push(',');
        out.push_str(c);
    }
    out.push('\n');
    for s in &traj.samples {
        let test = s.test_loss.map(num).unwrap_or_default();
        out.push_str(&format!(
            "{},{},{},{},{},{}",
            num(s.t),
            num(s.tau),
            num(s.train_loss),
            test,
            num(s.theta_norm),
            num(s.grad_norm)
        ));
        for v in &s.extra {
            out.push(',');
            out.push_str(&num(*v));
        }
        out.push('\n');
    }
    out
}

/// A learned 1-D function as CSV: `x,teacher,<curve labels…>` (teacher empty if unknown).
pub fn function_csv(table: &grokflow_plots::FunctionTable, columns: &[String]) -> String {
    let mut out = String::from("x,teacher");
    for c in columns {
        out.push(',');
        out.push_str(c);
    }
    out.push('\n');
    for (i, x) in table.x.iter().enumerate() {
        out.push_str(&num(*x));
        out.push(',');
        if let Some(t) = &table.teacher {
            out.push_str(&num(t[i]));
        }
        for (_, values) in &table.curves {
            out.push(',');
            out.push_str(&num(values[i]));
        }
        out.push('\n');
    }
    out
}
