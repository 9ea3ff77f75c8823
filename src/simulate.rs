//! What `simulate` does with a parsed request: its configuration, the instance (generated
//! or read), one run or a sweep, the run directory and the text for the terminal.

use anyhow::{bail, Context, Result};

use crate::cli::SimulateRequest;
use crate::output::{human_summary, sweep_table, write_atomic, write_run};
use crate::request::{build_system, run_config};
use crate::run::run_system;
use crate::sweep::run_sweep;

/// What `simulate` reports back: the text to print and the exit code (0 success, 3 a run
/// stopped early; errors are 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finished {
    /// The summary for the terminal (empty with --quiet).
    pub text: String,
    /// The process exit code.
    pub code: u8,
}

/// Runs what `req` asks for and writes its outputs.
pub fn simulate(req: &SimulateRequest) -> Result<Finished> {
    let cfg = run_config(req, None)?;
    let run = &req.run;
    if run.lambdas.is_some() || run.seeds.is_some() || run.sweep.is_some() {
        let (entries, files) = run_sweep(req, &cfg)?;
        let mut text = String::new();
        if !run.quiet {
            text += &sweep_table(&entries);
            let names: Vec<String> = files
                .iter()
                .filter_map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned()))
                .collect();
            text += &format!(
                "  wrote {}/{{{}}} and one run directory per run\n",
                cfg.out.display(),
                names.join(", ")
            );
        }
        let code = if entries.iter().all(|e| e.complete) {
            0
        } else {
            3
        };
        return Ok(Finished { text, code });
    }
    if run.shard.is_some() {
        bail!("--shard splits a sweep; give one with --lambdas, --seeds or --sweep");
    }
    let (system, instance) = build_system(req, &req.settings(), None, &cfg, 1)?;
    if let Some(path) = &run.save_instance {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).with_context(|| {
                format!("creating the folder of --save-instance {}", path.display())
            })?;
        }
        write_atomic(path, system.instance_json().as_bytes())
            .with_context(|| format!("writing --save-instance {}", path.display()))?;
    }
    let record = run_system(system.as_ref(), instance, &cfg)?;
    let files = write_run(system.as_ref(), &record, &cfg)?;
    let s = &record.summary;
    let text = if run.quiet {
        String::new()
    } else {
        human_summary(s, &files, &cfg.out)
    };
    if !s.complete && run.quiet {
        eprintln!("run stopped early: {}", s.stop_reason.describe());
    }
    // A limiting flow stopped by Ctrl-C ended early too.
    let limiting_stopped = s
        .limiting_flow
        .as_ref()
        .is_some_and(|l| matches!(l.stop_reason, grokflow_engine::StopReason::Stopped { .. }));
    Ok(Finished {
        text,
        code: if s.complete && !limiting_stopped {
            0
        } else {
            3
        },
    })
}
