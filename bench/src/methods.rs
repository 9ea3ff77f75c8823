//! The benchmark behind BENCHMARKS.md: the default linear-regression instance in slow time
//! for λ = 1e-2 … 1e-8, every method, against the exact flow. Speed is measured here and
//! written to a file, never asserted in tests.

use std::time::Instant;

use anyhow::Result;
use grokflow_engine::la::{distance, norm};
use grokflow_engine::{
    integrate, log_time_grid, GradientFlow, Method, Options, Recorder, StopReason, Time, TimeScale,
};
use grokflow_systems::{Settings, System, Truth};
use serde::{Deserialize, Serialize};

/// Settings of a benchmark run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BenchConfig {
    /// The λ sweep.
    pub lambdas: Vec<f64>,
    /// End of every run in slow time.
    pub tau_end: f64,
    /// Tolerances of the adaptive methods.
    pub rtol: f64,
    /// Tolerances of the adaptive methods.
    pub atol: f64,
    /// The explicit method runs only where it needs fewer steps than this.
    pub explicit_max_steps: usize,
    /// Gradient descent runs only up to this many iterations; beyond, its time is extrapolated.
    pub gd_max_iterations: usize,
    /// Repeats of each timed run (the median wall time is reported).
    pub repeats: usize,
}

impl Default for BenchConfig {
    fn default() -> Self {
        Self {
            lambdas: vec![1e-2, 1e-4, 1e-6, 1e-8],
            tau_end: 10.0,
            rtol: 1e-8,
            atol: 1e-10,
            explicit_max_steps: 300_000,
            gd_max_iterations: 20_000_000,
            repeats: 3,
        }
    }
}

/// One row of the benchmark.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BenchRow {
    /// System name.
    pub system: String,
    /// λ.
    pub lambda: f64,
    /// Method name.
    pub method: String,
    /// "measured", "extrapolated" or "skipped".
    pub status: String,
    /// Steps (iterations for gd).
    pub steps: f64,
    /// Gradient evaluations.
    pub rhs_evals: f64,
    /// Hessian assemblies.
    pub jac_evals: usize,
    /// Newton-matrix factorisations.
    pub lu_factorisations: usize,
    /// Median wall time over the repeats (seconds).
    pub wall_s: f64,
    /// max over the samples of ‖θ − θ_exact‖/‖θ_exact‖.
    pub max_rel_error: Option<f64>,
    /// What else a reader should know.
    pub note: String,
}

/// The median of `v` (the upper one for an even count).
pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Runs one method at one λ `repeats` times; returns the row of the last run with the median time.
/// A system with its closed forms.
struct Explicit<'a> {
    name: &'a str,
    system: &'a dyn System,
    truth: &'a dyn Truth,
}

fn measure(
    ex: &Explicit<'_>,
    lambda: f64,
    method: Method,
    cfg: &BenchConfig,
    max_steps: usize,
) -> Result<BenchRow> {
    let (lr, truth) = (ex.system, ex.truth);
    let flow = GradientFlow::regularised(lr, lambda, TimeScale::Slow)?;
    let t_end = cfg.tau_end / lambda;
    let grid = log_time_grid(1e-2, t_end, 10);
    let opts = Options {
        rtol: cfg.rtol,
        atol: cfg.atol,
        end: Time::Slow(cfg.tau_end),
        max_steps,
        ..Default::default()
    };
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..cfg.repeats.max(1) {
        let mut rec = Recorder::new(flow, lr, &grid).keep_states(true);
        let started = Instant::now();
        let out = integrate(&flow, lr.theta_init(), method, &opts, &mut [&mut rec])?;
        times.push(started.elapsed().as_secs_f64());
        last = Some((out, rec.into_trajectory()));
    }
    let (out, traj) = last.expect("at least one repeat");
    let err = traj
        .samples
        .iter()
        .zip(&traj.states)
        .map(|(s, th)| {
            let exact = truth.exact_flow(lr.theta_init(), lambda, s.t);
            distance(th, &exact) / norm(&exact)
        })
        .fold(0.0f64, f64::max);
    let finished = out.stop == StopReason::Finished;
    Ok(BenchRow {
        system: ex.name.into(),
        lambda,
        method: method.name().into(),
        status: if finished { "measured" } else { "stopped" }.into(),
        steps: out.stats.steps as f64,
        rhs_evals: out.stats.rhs_evals as f64,
        jac_evals: out.stats.jac_evals,
        lu_factorisations: out.stats.lu_factorisations,
        wall_s: median(times),
        max_rel_error: finished.then_some(err),
        note: if finished {
            String::new()
        } else {
            out.stop.describe()
        },
    })
}

/// Every method against the closed form, on the default instance of each system that has
/// one (see the module documentation).
pub fn bench_linear(cfg: &BenchConfig, mut progress: impl FnMut(&str)) -> Result<Vec<BenchRow>> {
    let mut rows = Vec::new();
    for spec in grokflow_systems::registry() {
        let system = spec.default_instance()?;
        if let Some(truth) = system.truth() {
            let ex = Explicit {
                name: spec.name,
                system: system.as_ref(),
                truth: truth.as_ref(),
            };
            rows.extend(bench_explicit(&ex, cfg, &mut progress)?);
        }
    }
    Ok(rows)
}

fn bench_explicit(
    ex: &Explicit<'_>,
    cfg: &BenchConfig,
    progress: &mut impl FnMut(&str),
) -> Result<Vec<BenchRow>> {
    let top = ex.truth.top_curvature();
    // The step of gradient descent: 1/L, the classical safe choice (stable below 2/(L + λ)).
    let lr_gd = 1.0 / top;
    let mut rows = Vec::new();
    let mut gd_seconds_per_iteration = None;
    let mut explicit_steps_per_unit_t = None;
    for &lambda in &cfg.lambdas {
        for method in [
            Method::Bdf,
            Method::DiffsolBdf,
            Method::Esdirk34,
            Method::TrBdf2,
        ] {
            progress(&format!("{} λ = {lambda:e}", method.name()));
            rows.push(measure(ex, lambda, method, cfg, 1_000_000)?);
        }
        // The explicit method is stability-limited: its steps grow like t_end = τ/λ.
        let t_end = cfg.tau_end / lambda;
        let predicted = explicit_steps_per_unit_t.map(|r: f64| r * t_end);
        if predicted.is_none_or(|p| p < cfg.explicit_max_steps as f64) {
            progress(&format!("tsit45 λ = {lambda:e}"));
            let row = measure(
                ex,
                lambda,
                Method::Tsit45,
                &BenchConfig {
                    repeats: 1,
                    ..cfg.clone()
                },
                cfg.explicit_max_steps,
            )?;
            explicit_steps_per_unit_t = Some(row.steps / t_end);
            rows.push(row);
        } else {
            let p = predicted.expect("checked above");
            rows.push(BenchRow {
                system: ex.name.into(),
                lambda,
                method: "tsit45".into(),
                status: "skipped".into(),
                steps: p,
                rhs_evals: 6.0 * p,
                jac_evals: 0,
                lu_factorisations: 0,
                wall_s: f64::NAN,
                max_rel_error: None,
                note: format!(
                    "not run: about {p:.2e} steps predicted (stability limit, steps ∝ 1/λ)"
                ),
            });
        }
        // Gradient descent needs τ/(λη) iterations.
        let iterations = t_end / lr_gd;
        if iterations <= cfg.gd_max_iterations as f64 {
            progress(&format!("gd λ = {lambda:e}"));
            let mut row = measure(
                ex,
                lambda,
                Method::GradientDescent { lr: lr_gd },
                &BenchConfig {
                    repeats: 1,
                    ..cfg.clone()
                },
                usize::MAX,
            )?;
            gd_seconds_per_iteration = Some(row.wall_s / row.steps);
            row.note = format!("η = 1/L = {lr_gd:.4}");
            rows.push(row);
        } else {
            let per = gd_seconds_per_iteration.unwrap_or(f64::NAN);
            rows.push(BenchRow {
                system: ex.name.into(),
                lambda,
                method: "gd".into(),
                status: "extrapolated".into(),
                steps: iterations,
                rhs_evals: iterations,
                jac_evals: 0,
                lu_factorisations: 0,
                wall_s: per * iterations,
                max_rel_error: None,
                note: format!(
                    "η = 1/L = {lr_gd:.4}; time = iterations × measured {per:.2e} s/iteration"
                ),
            });
        }
    }
    Ok(rows)
}

fn fmt_count(x: f64) -> String {
    if x >= 1e6 {
        format!("{x:.2e}")
    } else {
        format!("{}", x.round() as u64)
    }
}

/// BENCHMARKS.md from the rows.
pub fn markdown(cfg: &BenchConfig, rows: &[BenchRow], machine: &str) -> String {
    let mut s = String::from("# grokflow benchmarks\n\n");
    s += "Regenerate with `cargo run --release --bin bench` (about 40 minutes on 2 cores; `--quick` \
          for a few minutes, `--no-scipy` to leave scipy out). The scipy comparison runs \
          bench/scipy_bench.py and needs python3 with numpy, scipy and scikit-sundae (`pip install numpy scipy scikit-sundae`); \
          without them it is skipped and the targets say so. Counts are stable; wall times depend on \
          the machine and its load. Sections: every method against a closed form; every system by λ; \
          non-smooth models; the targets; large d; one factorisation; the work–precision table and \
          figures.\n\n";
    let names: Vec<&str> = rows
        .iter()
        .map(|r| r.system.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    s +=
        &format!(
        "Machine: {machine}. Problem: the default instance (seed 0) of every system with a closed \
         form ({}), slow time τ ∈ [0, {}], rtol = {:e}, atol = {:e}; error = max over the \
         log-spaced samples of ‖θ − θ_exact‖/‖θ_exact‖ against the closed-form flow. Wall time: \
         median of {} runs (one run for tsit45 and gd).\n\n",
        names.join(", "), cfg.tau_end, cfg.rtol, cfg.atol, cfg.repeats
    );
    s += "| λ | method | status | steps | gradient evals | Jacobians | factorisations | wall s | max rel. error | note |\n";
    s += "|---|---|---|---:|---:|---:|---:|---:|---:|---|\n";
    for r in rows {
        s += &format!(
            "| {:e} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.lambda,
            r.method,
            r.status,
            fmt_count(r.steps),
            fmt_count(r.rhs_evals),
            r.jac_evals,
            r.lu_factorisations,
            if r.wall_s.is_finite() {
                format!("{:.4}", r.wall_s)
            } else {
                "—".into()
            },
            r.max_rel_error
                .map(|e| format!("{e:.1e}"))
                .unwrap_or_else(|| "—".into()),
            r.note
        );
    }
    // The headline: BDF against gradient descent at each λ.
    s += "\n## BDF against gradient descent\n\n| λ | BDF steps | gd iterations | BDF s | gd s | speed-up |\n|---|---:|---:|---:|---:|---:|\n";
    for &lambda in &cfg.lambdas {
        let find = |m: &str| rows.iter().find(|r| r.lambda == lambda && r.method == m);
        if let (Some(b), Some(g)) = (find("bdf"), find("gd")) {
            s += &format!(
                "| {:e} | {} | {}{} | {:.4} | {:.3} | {:.0}× |\n",
                lambda,
                fmt_count(b.steps),
                fmt_count(g.steps),
                if g.status == "extrapolated" {
                    " (extrapolated)"
                } else {
                    ""
                },
                b.wall_s,
                g.wall_s,
                g.wall_s / b.wall_s
            );
        }
    }
    s
}

/// One system at one λ with one method, against a tight-tolerance reference.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SystemRow {
    /// System name.
    pub system: String,
    /// Dimension d.
    pub dim: usize,
    /// λ.
    pub lambda: f64,
    /// Method name.
    pub method: String,
    /// Stop reason.
    pub status: String,
    /// Accepted steps.
    pub steps: usize,
    /// Newton convergence failures.
    pub newton_failures: usize,
    /// Hessian assemblies.
    pub jac_evals: usize,
    /// Newton-matrix factorisations.
    pub lu_factorisations: usize,
    /// Wall time (seconds).
    pub wall_s: f64,
    /// ‖θ_end − θ_ref‖/‖θ_ref‖ against BDF at rtol 1e-11.
    pub rel_error: Option<f64>,
    /// Gradient-descent iterations to reach the same τ with η = 1/L, L = ‖∇²F(θ_init)‖₂.
    pub gd_iterations: f64,
}

/// L = ‖∇²F(θ_init)‖₂: gradient descent is stable for η < 2/L.
pub(crate) fn top_eigenvalue(system: &dyn grokflow_systems::System) -> f64 {
    let h = system.hessian(system.theta_init());
    grokflow_engine::la::symmetric_eigen(h.as_ref())
        .map(|(values, _)| values.iter().cloned().fold(0.0, |m: f64, v| m.max(v.abs())))
        .unwrap_or(f64::NAN)
}

/// The tolerance of a reference run at λ: 1e-11, but never below the rounding floor
/// 0.1·ε/λ ([`grokflow_engine::rounding_floor`]), under which Newton's corrections stall at
/// rounding noise and the step size collapses.
pub fn reference_rtol(lambda: f64) -> f64 {
    grokflow_engine::rounding_floor(lambda).max(1e-11)
}

/// The reference run of every comparison: grokflow's BDF in slow time to τ = `tau_end` at
/// [`reference_rtol`].
pub(crate) fn reference_run(
    system: &dyn grokflow_systems::System,
    lambda: f64,
    tau_end: f64,
) -> Result<grokflow_engine::Outcome> {
    let flow = GradientFlow::regularised(system, lambda, TimeScale::Slow)?;
    let rtol = reference_rtol(lambda);
    let opts = Options {
        rtol,
        atol: 1e-2 * rtol,
        end: Time::Slow(tau_end),
        max_steps: 2_000_000,
        ..Default::default()
    };
    Ok(integrate(
        &flow,
        system.theta_init(),
        Method::Bdf,
        &opts,
        &mut [],
    )?)
}

/// The reference end states of [`bench_systems`]: (system, λ, θ(τ = 10)).
pub type References = Vec<(String, f64, Vec<f64>)>;

/// The largest default instance the method and work–precision comparisons take.
pub const MAX_COMPARED_DIM: usize = 1000;

/// Every system's default instance in slow time, τ ∈ [0, 10], for each λ: grokflow's BDF and
/// diffsol's BDF (capped at `diffsol_max_steps` steps), against a reference at
/// [`reference_rtol`]. Returns the rows and the references.
pub fn bench_systems(
    lambdas: &[f64],
    diffsol_max_steps: usize,
    mut progress: impl FnMut(&str),
) -> Result<(Vec<SystemRow>, References)> {
    let mut rows = Vec::new();
    let mut references = Vec::new();
    for entry in grokflow_systems::registry() {
        let system = entry.default_instance()?;
        // Beyond d = 1000 the dense references and diffsol's dense BDF take tens of minutes;
        // such systems have their own section (modular addition at scale).
        if system.dim() > MAX_COMPARED_DIM {
            continue;
        }
        let l_top = top_eigenvalue(system.as_ref());
        for &lambda in lambdas {
            let flow = GradientFlow::regularised(system.as_ref(), lambda, TimeScale::Slow)?;
            progress(&format!("{} λ = {lambda:e}: reference", entry.name));
            let reference = reference_run(system.as_ref(), lambda, 10.0)?;
            if reference.stop == StopReason::Finished {
                references.push((
                    entry.name.to_string(),
                    lambda,
                    reference.theta_final.clone(),
                ));
            }
            for (method, max_steps) in [
                (Method::Bdf, 1_000_000),
                (Method::DiffsolBdf, diffsol_max_steps),
            ] {
                progress(&format!("{} λ = {lambda:e}: {}", entry.name, method.name()));
                let out = integrate(
                    &flow,
                    system.theta_init(),
                    method,
                    &Options {
                        rtol: 1e-8,
                        atol: 1e-10,
                        end: Time::Slow(10.0),
                        max_steps,
                        ..Default::default()
                    },
                    &mut [],
                )?;
                let finished =
                    out.stop == StopReason::Finished && reference.stop == StopReason::Finished;
                rows.push(SystemRow {
                    system: entry.name.into(),
                    dim: system.dim(),
                    lambda,
                    method: method.name().into(),
                    status: match &out.stop {
                        StopReason::Finished => "finished".into(),
                        other => other.describe(),
                    },
                    steps: out.stats.steps,
                    newton_failures: out.stats.nonlinear_failures,
                    jac_evals: out.stats.jac_evals,
                    lu_factorisations: out.stats.lu_factorisations,
                    wall_s: out.stats.wall_s,
                    rel_error: finished.then(|| {
                        distance(&out.theta_final, &reference.theta_final)
                            / norm(&reference.theta_final)
                    }),
                    gd_iterations: 10.0 / (lambda / l_top),
                });
            }
        }
    }
    Ok((rows, references))
}

/// The markdown section of [`bench_systems`].
pub fn systems_markdown(rows: &[SystemRow]) -> String {
    let mut s = String::from("\n## Every system, λ = 1e-2 … 1e-8\n\n");
    s += "Default instance of each system, slow time τ ∈ [0, 10], rtol = 1e-8, atol = 1e-10. \
          Error: ‖θ(τ = 10) − θ_ref‖/‖θ_ref‖ against grokflow's BDF at rtol = max(1e-11, 0.1·ε/λ) (2.2e-9 at λ = 1e-8: \
          below that the rounding error of ∇F, multiplied by 1/λ in slow time, stalls Newton), atol = rtol/100. \
          gd iterations: what gradient descent with η = 1/L (L = ‖∇²F(θ_init)‖₂) needs to reach τ = 10. \
          diffsol's BDF is stopped at its step cap where noted. grokflow's BDF runs with its default linear solver \
          (`auto`: the structured solve on every system at these sizes); \
          its Jacobians are then evaluations of J and R's blocks.\n\n";
    s += "| system | d | λ | method | steps | Newton failures | Jacobians | factorisations | wall s | rel. error | gd iterations | status |\n";
    s += "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---|\n";
    for r in rows {
        s += &format!(
            "| {} | {} | {:e} | {} | {} | {} | {} | {} | {:.3} | {} | {:.1e} | {} |\n",
            r.system,
            r.dim,
            r.lambda,
            r.method,
            r.steps,
            r.newton_failures,
            r.jac_evals,
            r.lu_factorisations,
            r.wall_s,
            r.rel_error
                .map(|e| format!("{e:.1e}"))
                .unwrap_or_else(|| "—".into()),
            r.gd_iterations,
            r.status
        );
    }
    s
}

/// One route to a non-smooth model's flow (λ = 1e-3, τ ∈ [0, 10]).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LimitRow {
    /// The system.
    pub system: String,
    /// What was integrated, and how.
    pub route: String,
    /// Stop reason.
    pub status: String,
    /// Steps or iterations.
    pub steps: usize,
    /// Wall time (seconds).
    pub wall_s: f64,
    /// Final test loss.
    pub test_loss: Option<f64>,
    /// The system's report at the end.
    pub report: serde_json::Value,
    /// sup over the plotting grid of |f − f_GD| at the end, f_GD the non-smooth limit by
    /// gradient descent.
    pub sup_to_gd: Option<f64>,
}

/// For every system with a smooth family ([`grokflow_systems::SmoothFamily`]): its
/// non-smooth limit by gradient descent and by grokflow's BDF, and the family's members by
/// BDF, each against the gradient-descent function.
pub fn bench_limits(mut progress: impl FnMut(&str)) -> Result<Vec<LimitRow>> {
    let lambda = 1e-3;
    let mut rows = Vec::new();
    for spec in grokflow_systems::registry() {
        let Some(family) = spec.smooth_family else {
            continue;
        };
        let mut limit = Settings::new(spec.params);
        for (k, v) in family.limit {
            limit.set(k, *v)?;
        }
        let label: Vec<String> = family
            .limit
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let label = label.join(", ");
        let mut routes: Vec<(String, Settings, Method)> = vec![
            (
                format!("{label}, gradient descent η = {}", family.gd_step),
                limit.clone(),
                Method::GradientDescent { lr: family.gd_step },
            ),
            (format!("{label}, grokflow BDF"), limit.clone(), Method::Bdf),
        ];
        for v in family.values {
            let member = Settings::new(spec.params).with(family.param, *v)?;
            routes.push((
                format!("{} = {v}, grokflow BDF", family.param),
                member,
                Method::Bdf,
            ));
        }
        let mut gd_values: Option<Vec<f64>> = None;
        for (route, settings, method) in routes {
            progress(&format!("{}: {route}", spec.name));
            let system = (spec.generate)(&settings)?;
            let flow = GradientFlow::regularised(system.as_ref(), lambda, TimeScale::Slow)?;
            let max_steps = if method.is_implicit() {
                200_000
            } else {
                100_000_000
            };
            let out = integrate(
                &flow,
                system.theta_init(),
                method,
                &Options {
                    rtol: 1e-8,
                    atol: 1e-10,
                    end: Time::Slow(10.0),
                    max_steps,
                    ..Default::default()
                },
                &mut [],
            )?;
            let values: Option<Vec<f64>> = system.curve().map(|c| {
                let (lo, hi) = c.domain();
                grokflow_systems::curve::grid(lo, hi, 401)
                    .iter()
                    .map(|&x| c.predict(&out.theta_final, x))
                    .collect()
            });
            let finished = out.stop == StopReason::Finished;
            if matches!(method, Method::GradientDescent { .. }) {
                gd_values = values.clone();
            }
            let sup_to_gd = match (&gd_values, &values) {
                (Some(g), Some(v)) if finished && method.is_implicit() => Some(
                    g.iter()
                        .zip(v)
                        .map(|(a, b)| (a - b).abs())
                        .fold(0.0, f64::max),
                ),
                _ => None,
            };
            rows.push(LimitRow {
                system: spec.name.into(),
                route,
                status: if finished {
                    "finished".into()
                } else {
                    out.stop.describe()
                },
                steps: out.stats.steps,
                wall_s: out.stats.wall_s,
                test_loss: system.test_loss(&out.theta_final),
                report: system.report(&out.theta_final),
                sup_to_gd,
            });
        }
    }
    Ok(rows)
}

/// The section of BENCHMARKS.md on the routes to non-smooth flows.
pub fn limits_markdown(rows: &[LimitRow]) -> String {
    let mut s = String::from("\n## Non-smooth models: routes to the limit flow\n\n");
    s += "Default instance, λ = 1e-3, τ ∈ [0, 10]. sup |f − f_GD| compares the learned function \
          at the end with the one gradient descent gives for the non-smooth limit, on 401 \
          points of the input range. The report column is the system's own (kinks…).\n\n";
    s += "| system | route | status | steps | wall s | test loss | report | sup |f − f_GD| |\n|---|---|---|---:|---:|---:|---|---:|\n";
    for r in rows {
        s += &format!(
            "| {} | {} | {} | {} | {:.3} | {} | {} | {} |\n",
            r.system,
            r.route,
            r.status,
            r.steps,
            r.wall_s,
            r.test_loss
                .map(|x| format!("{x:.3e}"))
                .unwrap_or_else(|| "—".into()),
            compact(&r.report),
            r.sup_to_gd
                .map(|x| format!("{x:.1e}"))
                .unwrap_or_else(|| "—".into())
        );
    }
    s
}

/// The scalar fields of a report, `key value` separated by commas.
fn compact(report: &serde_json::Value) -> String {
    let Some(map) = report.as_object() else {
        return "—".into();
    };
    let parts: Vec<String> = map
        .iter()
        .filter(|(_, v)| v.is_number())
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    if parts.is_empty() {
        "—".into()
    } else {
        parts.join(", ")
    }
}
