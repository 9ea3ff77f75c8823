//! What a run and a sweep print on the terminal.

use std::path::{Path, PathBuf};

use grokflow_engine::{StopReason, TimeScale};

use crate::summary::RunSummary;
use crate::sweep::SweepEntry;

fn fmt_opt(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.3e}")).unwrap_or_else(|| "—".into())
}

/// The short human summary printed after a run that wrote `files` into `dir`.
pub fn human_summary(s: &RunSummary, files: &[PathBuf], dir: &Path) -> String {
    let mut out = format!(
        "grokflow · {} · λ = {:e} · {} · {} time, t ∈ [0, {:.3e}] (τ ∈ [0, {}])\n",
        s.system,
        s.lambda,
        s.method,
        match (s.method.as_str(), s.time) {
            // Gradient descent steps in fast time whatever the clock asked for.
            ("gd", _) | (_, TimeScale::Fast) => "fast",
            (_, TimeScale::Slow) => "slow",
        },
        s.t_end,
        s.tau_end
    );
    if let Some(p) = &s.phi {
        out += &format!(
            "  Φ(θ_init)  train {:.3e}  test {}  ‖θ‖ {:.4}   (unregularised flow converged at t = {:.3e})\n",
            p.train_loss,
            fmt_opt(p.test_loss),
            p.norm,
            p.t
        );
    }
    let f = &s.final_state;
    out += &format!(
        "  final      train {:.3e}  test {}  ‖θ‖ {:.4}   (t = {:.3e}, τ = {:.4})\n",
        f.train_loss,
        fmt_opt(f.test_loss),
        f.norm,
        f.t,
        f.tau
    );
    let g = &s.grokking;
    out += &format!(
        "  grokking   t_fit = {}, t_grok = {} (τ_grok = {})",
        fmt_opt(g.t_fit),
        fmt_opt(g.t_grok),
        fmt_opt(g.tau_grok)
    );
    if let (Some(p), Some(fl)) = (s.phi.as_ref().and_then(|p| p.test_loss), f.test_loss) {
        if s.complete && fl > 0.0 && p > 0.0 {
            if p >= fl {
                out += &format!("; test loss fell {:.3}× from Φ(θ_init) to the end", p / fl);
            } else {
                out += &format!("; test loss rose {:.3}× from Φ(θ_init) to the end", fl / p);
            }
        }
    }
    out.push('\n');
    let st = &s.stats;
    out += &format!(
        "  solver     {} steps, {} gradient evals, {} Jacobians, {} factorisations ({} Cholesky), {:.3} s\n",
        st.steps, st.rhs_evals, st.jac_evals, st.lu_factorisations, st.cholesky_factorisations, st.wall_s
    );
    if let Some(l) = &s.limiting_flow {
        out += &format!(
            "  limiting   θ_M at τ = {:.4}: ‖θ‖ {:.4}, test {}, KKT residual {:.2e}, max drift {:.2e}; max ‖θ_λ − θ_M‖ over τ ≥ {} = {}{}\n",
            l.tau_stopped,
            l.norm,
            fmt_opt(l.test_loss),
            l.kkt_residual,
            l.max_drift,
            l.tau0,
            fmt_opt(l.max_distance),
            match (l.tau_limit, l.distance_final_to_limit) {
                (Some(tl), Some(dl)) => format!("; θ_M^∞ reached at τ = {tl:.2}, ‖θ_λ(end) − θ_M^∞‖ = {dl:.2e}"),
                _ => String::new(),
            }
        );
        if !matches!(l.stop_reason, StopReason::Finished) {
            out += &format!("  limiting   {}\n", l.stop_reason.describe());
        }
        for w in &l.warnings {
            out += &format!("  warning    {w}\n");
        }
    }
    for w in &s.warnings {
        out += &format!("  warning    {w}\n");
    }
    if !s.complete {
        let hint = match (&s.stop_reason, s.lr) {
            (StopReason::Diverged { .. }, Some(lr)) => {
                format!(
                    " (gradient descent is stable only for --lr < 2/(L + λ); {lr} is too large)"
                )
            }
            (StopReason::MaxSteps { .. }, _) => " (raise --max-steps, or use --method bdf)".into(),
            _ => String::new(),
        };
        out += &format!(
            "  STOPPED EARLY: {}{hint}; what was recorded is written.\n",
            s.stop_reason.describe()
        );
    }
    let names: Vec<String> = files
        .iter()
        .filter_map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    out += &format!("  wrote      {}/{{{}}}\n", dir.display(), names.join(", "));
    out
}

/// The sweep's table for the terminal.
pub fn sweep_table(entries: &[SweepEntry]) -> String {
    let mut out = format!(
        "  {:>8} {:>6} {:>7} {:>9} {:>11} {:>11} {:>10}\n",
        "λ", "seed", "steps", "wall s", "test Φ", "test end", "τ_grok"
    );
    for e in entries {
        out += &format!(
            "  {:>8.1e} {:>6} {:>7} {:>9.3} {:>11} {:>11} {:>10}{}\n",
            e.lambda,
            e.seed.map(|s| s.to_string()).unwrap_or_else(|| "—".into()),
            e.steps,
            e.wall_s,
            fmt_opt(e.test_phi),
            fmt_opt(e.test_final),
            fmt_opt(e.tau_grok),
            if e.complete { "" } else { "  (stopped early)" }
        );
    }
    out
}
