//! What deriving the derivatives costs: every system's default instance (d ≤ 1000) run with
//! its hand-written derivatives and with the ones derived from its generic twin, side by
//! side in one run.

use std::time::Instant;

use anyhow::Result;
use grokflow_engine::{integrate, GradientFlow, Method, Options, StopReason, Time, TimeScale};
use serde::{Deserialize, Serialize};

use crate::methods::median;

/// One system at one λ, both ways.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DerivedRow {
    /// The system.
    pub system: String,
    /// d.
    pub dim: usize,
    /// λ.
    pub lambda: f64,
    /// Steps with hand-written, with derived derivatives.
    pub steps: [usize; 2],
    /// Linear solvers chosen (hand, derived).
    pub linear_solver: [String; 2],
    /// Median wall time of the λ-flow (hand, derived), seconds.
    pub wall_s: [f64; 2],
    /// Derived over hand.
    pub ratio: f64,
    /// ‖θ_derived − θ_hand‖/‖θ_hand‖ at the end.
    pub end_gap: f64,
}

/// The comparison at λ ∈ `lambdas`, τ ∈ [0, 10], rtol 1e-8, each run timed `repeats` times.
pub fn bench_derived(
    lambdas: &[f64],
    repeats: usize,
    mut progress: impl FnMut(&str),
) -> Result<Vec<DerivedRow>> {
    let mut rows = Vec::new();
    for spec in grokflow_systems::registry() {
        let hand = spec.default_instance()?;
        let Some(derived) = hand.derived() else {
            continue;
        };
        let derived = derived?;
        if hand.dim() > 1000 {
            continue;
        }
        for &lambda in lambdas {
            progress(&format!(
                "{} λ = {lambda:e}: hand-written and derived",
                spec.name
            ));
            let mut outs = Vec::new();
            for system in [hand.as_ref(), derived.as_ref()] {
                let flow = GradientFlow::regularised(system, lambda, TimeScale::Slow)?;
                let opts = Options {
                    rtol: 1e-8,
                    atol: 1e-10,
                    end: Time::Slow(10.0),
                    ..Options::default()
                };
                let mut times = Vec::new();
                let mut last = None;
                for _ in 0..repeats.max(1) {
                    let started = Instant::now();
                    let out = integrate(&flow, system.theta_init(), Method::Bdf, &opts, &mut [])?;
                    times.push(started.elapsed().as_secs_f64());
                    last = Some(out);
                }
                let out = last.expect("at least one run");
                anyhow::ensure!(
                    out.stop == StopReason::Finished,
                    "{}: {}",
                    spec.name,
                    out.stop.describe()
                );
                outs.push((out, median(times)));
            }
            let (h, d) = (&outs[0], &outs[1]);
            let end_gap = grokflow_engine::la::distance(&d.0.theta_final, &h.0.theta_final)
                / grokflow_engine::la::norm(&h.0.theta_final);
            rows.push(DerivedRow {
                system: spec.name.into(),
                dim: hand.dim(),
                lambda,
                steps: [h.0.stats.steps, d.0.stats.steps],
                linear_solver: [
                    h.0.stats.linear_solver.clone(),
                    d.0.stats.linear_solver.clone(),
                ],
                wall_s: [h.1, d.1],
                ratio: d.1 / h.1,
                end_gap,
            });
        }
    }
    Ok(rows)
}

/// The section of BENCHMARKS.md.
pub fn derived_markdown(rows: &[DerivedRow]) -> String {
    let mut s = String::from("\n## Derived derivatives against hand-written ones\n\n");
    s += "Every system's default instance with its hand-written derivatives and with the ones \
          derived (automatic differentiation: reverse sweeps for gradients and Jᵀu, forward \
          passes for J·v, forward over reverse for Hessian-vector products and curvature \
          blocks) from its residuals written once generically (`--derivatives derived`); \
          grokflow's BDF, slow time τ ∈ [0, 10], rtol 1e-8, the λ-flow only, median wall \
          time. The aim was a whole run within 3× of hand-written.\n\n";
    s += "| system | d | λ | steps hand / derived | linear solver | wall s hand | wall s derived | derived/hand | end states apart |\n|---|---:|---:|---|---|---:|---:|---:|---:|\n";
    for r in rows {
        s += &format!(
            "| {} | {} | {:.0e} | {} / {} | {} / {} | {:.4} | {:.4} | {:.1}× | {:.1e} |\n",
            r.system,
            r.dim,
            r.lambda,
            r.steps[0],
            r.steps[1],
            r.linear_solver[0],
            r.linear_solver[1],
            r.wall_s[0],
            r.wall_s[1],
            r.ratio,
            r.end_gap
        );
    }
    s
}
