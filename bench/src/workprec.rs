//! The work–precision benchmark: every system and λ, grokflow's methods, gradient descent,
//! scipy's `solve_ivp` (BDF, Radau, LSODA) and SUNDIALS' CVODE (through scikit-sundae), the
//! last two through bench/scipy_bench.py on the same instance file, at several tolerances,
//! each against one tight reference; speed-ups at equal accuracy and the targets are computed
//! from these points. Each system also runs on a second instance (another seed and size)
//! against LSODA and CVODE only. Speed is measured here, never asserted in tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result};
use grokflow_engine::la::{distance, norm};
use grokflow_engine::{
    integrate, Control, GradientFlow, LinearSolver, Method, Observer, Options, StepView,
    StopReason, Time, TimeScale,
};
use grokflow_systems::System;
use serde::{Deserialize, Serialize};

use crate::methods::{reference_rtol, reference_run, top_eigenvalue};
pub use crate::workprec_report::{
    figures, markdown, speedup_vs_peers, speedup_vs_scipy, targets_markdown,
};

/// Settings of the work–precision benchmark.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WpConfig {
    /// The λ's.
    pub lambdas: Vec<f64>,
    /// rtol of each point (atol = rtol/100).
    pub tolerances: Vec<f64>,
    /// End of every run in slow time.
    pub tau_end: f64,
    /// Repeats of each grokflow run at least (min, median, max wall time); runs longer than
    /// `repeat_below_s` are timed once.
    pub repeats: usize,
    /// Runs at least this long are not repeated.
    pub repeat_below_s: f64,
    /// Short runs, grokflow's and scipy's alike, are repeated beyond `repeats` until
    /// their times add up to this many seconds (at most `max_repeats` runs): a median of
    /// three millisecond-long runs moves with the machine's load.
    #[serde(default)]
    pub repeat_for_s: f64,
    /// The most runs of one point.
    #[serde(default)]
    pub max_repeats: usize,
    /// A grokflow run is stopped after this many seconds (reported, not dropped).
    pub grokflow_timeout_s: f64,
    /// Repeats of each scipy run.
    pub scipy_repeats: usize,
    /// A scipy run is abandoned after this many seconds.
    pub scipy_timeout_s: f64,
    /// Gradient descent is run up to this many iterations, extrapolated beyond.
    pub gd_max_iterations: f64,
    /// Where the scipy script lives.
    pub scipy_script: PathBuf,
}

impl Default for WpConfig {
    fn default() -> Self {
        Self {
            lambdas: vec![1e-2, 1e-4, 1e-6, 1e-8],
            tolerances: vec![1e-4, 1e-6, 1e-8],
            tau_end: 10.0,
            repeats: 3,
            repeat_below_s: 2.0,
            repeat_for_s: 0.3,
            max_repeats: 100,
            grokflow_timeout_s: 20.0,
            scipy_repeats: 3,
            scipy_timeout_s: 20.0,
            gd_max_iterations: 2e6,
            scipy_script: PathBuf::from("bench/scipy_bench.py"),
        }
    }
}

impl WpConfig {
    /// A few minutes instead of about 25: two λ, two tolerances, no repeats.
    pub fn quick() -> Self {
        Self {
            lambdas: vec![1e-2, 1e-6],
            tolerances: vec![1e-5, 1e-8],
            repeats: 1,
            scipy_repeats: 1,
            repeat_for_s: 0.0,
            grokflow_timeout_s: 10.0,
            scipy_timeout_s: 10.0,
            gd_max_iterations: 2e5,
            ..Self::default()
        }
    }
}

/// The grokflow methods of the benchmark: (label, method, linear solver). "grokflow bdf" is
/// the default (`auto`: structured where it pays, else dense or matrix-free).
pub fn grokflow_methods() -> Vec<(&'static str, Method, LinearSolver)> {
    vec![
        ("grokflow bdf", Method::Bdf, LinearSolver::Auto),
        ("grokflow bdf dense", Method::Bdf, LinearSolver::Dense),
        (
            "grokflow bdf matrix-free",
            Method::Bdf,
            LinearSolver::MatrixFree,
        ),
        ("grokflow esdirk34", Method::Esdirk34, LinearSolver::Dense),
        ("grokflow tr_bdf2", Method::TrBdf2, LinearSolver::Dense),
    ]
}

/// The tolerances of one grokflow method at one λ: the configured ones, and for the default
/// BDF one tighter point, a hundred times tighter than the tightest (λ ≥ 1e-4 here), else
/// ten times (λ = 1e-6), where the reference is at least ten times tighter still, so that
/// its curve reaches the accuracy of scipy's tightest runs and the speed-up is read off it
/// rather than off a slower method that happens to go further (at λ = 1e-6 scipy's BDF at
/// rtol 1e-8 was 1.9e-8 from the reference, grokflow's BDF 3.2e-8, and without its rtol 1e-9
/// point the ratio came from ESDIRK34: 1.5×).
pub fn grokflow_tolerances(cfg: &WpConfig, label: &str, lambda: f64) -> Vec<f64> {
    let mut t = cfg.tolerances.clone();
    if let Some(tightest) = t.iter().cloned().reduce(f64::min) {
        let extra = [tightest / 100.0, tightest / 10.0]
            .into_iter()
            .find(|&e| e >= 9.99 * reference_rtol(lambda));
        if let (true, Some(e)) = (label == "grokflow bdf", extra) {
            t.push(e);
        }
    }
    t
}

/// Stops a run once its wall-clock budget is spent.
struct Deadline {
    started: Instant,
    budget_s: f64,
}

impl Observer for Deadline {
    fn step(&mut self, _view: &StepView<'_>) -> Control {
        if self.started.elapsed().as_secs_f64() > self.budget_s {
            Control::Stop(StopReason::Stopped {
                reason: format!("wall-clock budget of {:.0} s spent", self.budget_s),
            })
        } else {
            Control::Continue
        }
    }
}

/// One run at one tolerance.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WpPoint {
    /// System.
    pub system: String,
    /// Dimension d.
    pub dim: usize,
    /// λ.
    pub lambda: f64,
    /// "grokflow bdf", "scipy LSODA", "gd", …
    pub method: String,
    /// rtol (η for gradient descent).
    pub rtol: f64,
    /// "success", "failed", "timeout", "extrapolated", "not run".
    pub status: String,
    /// Steps (iterations), where known.
    pub steps: Option<f64>,
    /// Right-hand-side evaluations.
    pub rhs_evals: Option<f64>,
    /// Jacobian (Hessian) evaluations.
    pub jac_evals: Option<f64>,
    /// Factorisations.
    pub factorisations: Option<f64>,
    /// Wall time [min, median, max] over the repeats.
    pub wall_s: [f64; 3],
    /// How many runs were timed (a run that failed or ran out of budget counts as one when
    /// no run finished; 0: extrapolated or not run).
    #[serde(default)]
    pub runs: usize,
    /// ‖θ(τ_end) − θ_ref‖/‖θ_ref‖.
    pub rel_error: Option<f64>,
    /// What else to know.
    pub note: String,
}

impl WpConfig {
    /// Whether a point timed `times` (in order) so far is run again: always at first, then
    /// `repeats` times unless its first run took over `repeat_below_s`, then until the runs
    /// add up to `repeat_for_s` or number `max_repeats`. bench/scipy_bench.py applies the
    /// same rule to scipy's runs.
    fn run_again(&self, times: &[f64], repeats: usize) -> bool {
        match times.first() {
            None => true,
            Some(&first) if first > self.repeat_below_s => false,
            Some(_) => {
                times.len() < repeats.max(1)
                    || (times.len() < self.max_repeats
                        && times.iter().sum::<f64>() < self.repeat_for_s)
            }
        }
    }
}

fn wall(times: &mut [f64]) -> [f64; 3] {
    times.sort_by(|a, b| a.total_cmp(b));
    [times[0], times[times.len() / 2], times[times.len() - 1]]
}

fn grokflow_point(
    system: &dyn System,
    lambda: f64,
    (label, method, linear_solver): (&str, Method, LinearSolver),
    rtol: f64,
    cfg: &WpConfig,
    reference: &[f64],
) -> Result<WpPoint> {
    let flow = GradientFlow::regularised(system, lambda, TimeScale::Slow)?;
    let opts = Options {
        rtol,
        atol: rtol * 1e-2,
        end: Time::Slow(cfg.tau_end),
        max_steps: 2_000_000,
        linear_solver,
        max_order: None,
    };
    let mut times: Vec<f64> = Vec::new();
    let mut last = None;
    while cfg.run_again(&times, cfg.repeats) {
        let started = Instant::now();
        let mut deadline = Deadline {
            started,
            budget_s: cfg.grokflow_timeout_s,
        };
        let out = integrate(
            &flow,
            system.theta_init(),
            method,
            &opts,
            &mut [&mut deadline],
        )?;
        let elapsed = started.elapsed().as_secs_f64();
        if out.stop != StopReason::Finished {
            // A repeat that stops after others finished (out of budget on a loaded machine)
            // is dropped, as bench/scipy_bench.py drops one: the point keeps the finished runs.
            if last.is_none() {
                times.push(elapsed);
                last = Some(out);
            }
            break;
        }
        times.push(elapsed);
        last = Some(out);
    }
    let out = last.expect("one repeat");
    let ok = out.stop == StopReason::Finished;
    Ok(WpPoint {
        system: system.name().into(),
        dim: system.dim(),
        lambda,
        method: label.into(),
        rtol,
        status: if ok {
            "success".into()
        } else {
            out.stop.describe()
        },
        steps: Some(out.stats.steps as f64),
        rhs_evals: Some(out.stats.rhs_evals as f64),
        jac_evals: Some(out.stats.jac_evals as f64),
        factorisations: Some(out.stats.lu_factorisations as f64),
        runs: times.len(),
        wall_s: wall(&mut times),
        rel_error: ok.then(|| distance(&out.theta_final, reference) / norm(reference)),
        note: String::new(),
    })
}

/// Gradient descent with η = 1/L: run when affordable, else its time extrapolated from the
/// measured cost of an iteration.
fn gd_point(
    system: &dyn System,
    lambda: f64,
    cfg: &WpConfig,
    reference: &[f64],
    seconds_per_iteration: &mut Option<f64>,
) -> Result<WpPoint> {
    let l_top = top_eigenvalue(system);
    let eta = 1.0 / l_top;
    let iterations = cfg.tau_end / (lambda * eta);
    let base = |status: &str, wall_s: [f64; 3], rel_error: Option<f64>, note: String| WpPoint {
        system: system.name().into(),
        dim: system.dim(),
        lambda,
        method: "gd".into(),
        rtol: eta,
        status: status.into(),
        steps: Some(iterations),
        rhs_evals: Some(iterations),
        jac_evals: Some(0.0),
        factorisations: Some(0.0),
        wall_s,
        runs: usize::from(status != "extrapolated"),
        rel_error,
        note,
    };
    let flow = GradientFlow::regularised(system, lambda, TimeScale::Slow)?;
    // Gradient descent up to slow time `tau_end`, and its wall time.
    let descend = |tau_end: f64| -> Result<(grokflow_engine::Outcome, f64)> {
        let started = Instant::now();
        let opts = Options {
            rtol: 1e-8,
            atol: 1e-10,
            end: Time::Slow(tau_end),
            max_steps: usize::MAX,
            ..Default::default()
        };
        let gd = Method::GradientDescent { lr: eta };
        let out = integrate(&flow, system.theta_init(), gd, &opts, &mut [])?;
        Ok((out, started.elapsed().as_secs_f64()))
    };
    if iterations <= cfg.gd_max_iterations {
        let (out, t) = descend(cfg.tau_end)?;
        *seconds_per_iteration = Some(t / iterations);
        let ok = out.stop == StopReason::Finished;
        return Ok(base(
            if ok { "success" } else { "failed" },
            [t; 3],
            ok.then(|| distance(&out.theta_final, reference) / norm(reference)),
            format!("η = 1/L = {eta:.3e}"),
        ));
    }
    let per = match *seconds_per_iteration {
        Some(p) => p,
        None => {
            // Measure the cost of an iteration on a short run.
            let n = 20_000.0;
            let p = descend(flow.clock(n * eta))?.1 / n;
            *seconds_per_iteration = Some(p);
            p
        }
    };
    Ok(base(
        "extrapolated",
        [per * iterations; 3],
        None,
        format!("η = 1/L = {eta:.3e}; {per:.2e} s per iteration measured"),
    ))
}

#[derive(Deserialize)]
struct ScipyResult {
    method: String,
    rtol: f64,
    status: String,
    #[serde(default)]
    message: String,
    nfev: Option<f64>,
    njev: Option<f64>,
    nlu: Option<f64>,
    #[serde(default)]
    nsteps: Option<f64>,
    wall_s: [f64; 3],
    #[serde(default)]
    runs: usize,
    rel_error: Option<f64>,
}

/// Whether python3 with scikit-sundae (CVODE) is available.
pub fn cvode_available() -> bool {
    Command::new("python3")
        .args(["-c", "import sksundae"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// How much of the comparison an instance gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every grokflow method, gradient descent, scipy's BDF, Radau, LSODA and CVODE.
    Full,
    /// grokflow's default BDF against LSODA and CVODE (a second instance per system).
    Peers,
}

/// The peer methods of bench/scipy_bench.py an instance is run with.
fn peer_methods(scope: Scope, cvode: bool) -> Vec<&'static str> {
    let mut m = match scope {
        Scope::Full => vec!["BDF", "Radau", "LSODA"],
        Scope::Peers => vec!["LSODA"],
    };
    if cvode {
        m.push("CVODE");
    }
    m
}

/// The label of a peer's points: "scipy LSODA", "sundials CVODE".
pub fn peer_label(method: &str) -> String {
    if method == "CVODE" {
        "sundials CVODE".into()
    } else {
        format!("scipy {method}")
    }
}

/// Whether python3 with numpy and scipy is available.
pub fn scipy_available() -> bool {
    Command::new("python3")
        .args(["-c", "import numpy, scipy"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn scipy_points(
    system: &dyn System,
    lambda: f64,
    cfg: &WpConfig,
    reference: &[f64],
    instance: &Path,
    methods: &[&str],
) -> Result<Vec<WpPoint>> {
    let runs: Vec<serde_json::Value> = methods
        .iter()
        .flat_map(|m| {
            cfg.tolerances.iter().map(move |&r| {
                serde_json::json!({"method": m, "rtol": r, "atol": r * 1e-2, "repeats": cfg.scipy_repeats, "timeout_s": cfg.scipy_timeout_s, "repeat_below_s": cfg.repeat_below_s, "repeat_for_s": cfg.repeat_for_s, "max_repeats": cfg.max_repeats})
            })
        })
        .collect();
    let job = serde_json::json!({"instance": instance, "lambda": lambda, "tau_end": cfg.tau_end, "reference": reference, "runs": runs});
    let mut child = Command::new("python3")
        .arg(&cfg.scipy_script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting python3")?;
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(job.to_string().as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        anyhow::bail!(
            "scipy_bench.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let results: Vec<ScipyResult> =
        serde_json::from_slice(&out.stdout).context("reading scipy_bench.py's output")?;
    Ok(results
        .into_iter()
        .map(|r| WpPoint {
            system: system.name().into(),
            dim: system.dim(),
            lambda,
            method: peer_label(&r.method),
            rtol: r.rtol,
            status: r.status.clone(),
            steps: r.nsteps,
            rhs_evals: r.nfev,
            jac_evals: r.njev,
            factorisations: r.nlu,
            wall_s: r.wall_s,
            runs: r.runs,
            rel_error: if r.status == "success" {
                r.rel_error
            } else {
                None
            },
            note: if r.status == "success" {
                String::new()
            } else {
                r.message
            },
        })
        .collect())
}

/// Runs the benchmark on `systems` (label, instance, scope); `cvode` adds CVODE to the
/// peers where scipy runs.
#[allow(clippy::too_many_arguments)]
pub fn run(
    systems: &[(String, Box<dyn System>, Scope)],
    cfg: &WpConfig,
    scratch: &Path,
    scipy: bool,
    cvode: bool,
    references: &[(String, f64, Vec<f64>)],
    mut progress: impl FnMut(&str),
) -> Result<Vec<WpPoint>> {
    let mut points = Vec::new();
    for (name, system, scope) in systems {
        let first = points.len();
        let instance = scratch.join(format!("{name}.json"));
        std::fs::write(&instance, system.instance_json())?;
        let mut gd_rate = None;
        for &lambda in &cfg.lambdas {
            let known = references
                .iter()
                .find(|(n, l, _)| n == name && *l == lambda)
                .map(|r| r.2.clone());
            let reference = match known {
                Some(r) => r,
                None => {
                    progress(&format!("{name} λ = {lambda:e}: reference"));
                    reference_run(system.as_ref(), lambda, cfg.tau_end)?.theta_final
                }
            };
            for spec in grokflow_methods()
                .into_iter()
                .filter(|m| *scope == Scope::Full || m.0 == "grokflow bdf")
            {
                let mut stopped = false;
                for rtol in grokflow_tolerances(cfg, spec.0, lambda) {
                    if stopped {
                        // Tolerances run loose to tight: past a failure, tighter costs more.
                        points.push(WpPoint {
                            system: system.name().into(),
                            dim: system.dim(),
                            lambda,
                            method: spec.0.into(),
                            rtol,
                            status: "not run".into(),
                            steps: None,
                            rhs_evals: None,
                            jac_evals: None,
                            factorisations: None,
                            wall_s: [f64::NAN; 3],
                            runs: 0,
                            rel_error: None,
                            note: "stopped at a looser tolerance".into(),
                        });
                        continue;
                    }
                    progress(&format!("{name} λ = {lambda:e}: {} rtol {rtol:e}", spec.0));
                    let p = grokflow_point(system.as_ref(), lambda, spec, rtol, cfg, &reference)?;
                    stopped = p.status != "success";
                    points.push(p);
                }
            }
            if *scope == Scope::Full {
                progress(&format!("{name} λ = {lambda:e}: gradient descent"));
                points.push(gd_point(
                    system.as_ref(),
                    lambda,
                    cfg,
                    &reference,
                    &mut gd_rate,
                )?);
            }
            if scipy {
                let methods = peer_methods(*scope, cvode);
                progress(&format!("{name} λ = {lambda:e}: {}", methods.join(", ")));
                points.extend(scipy_points(
                    system.as_ref(),
                    lambda,
                    cfg,
                    &reference,
                    &instance,
                    &methods,
                )?);
            }
        }
        for p in &mut points[first..] {
            p.system = name.clone();
        }
    }
    Ok(points)
}

/// The time grokflow needs for relative error `error` with the points of one method: log
/// time interpolated linearly in log error between the two tolerances that bracket it; the
/// loosest point's time where `error` is looser than every point; None where it is tighter.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_default_bdf_gets_the_extra_tolerance_and_only_ten_times_above_the_reference() {
        let cfg = WpConfig::default();
        let with = grokflow_tolerances(&cfg, "grokflow bdf", 1e-4);
        assert_eq!(with.len(), 4);
        assert!((with[3] - 1e-10).abs() < 1e-20, "{with:?}");
        // At λ = 1e-6 the reference is at 2.2e-11: 1e-10 is not ten times looser, 1e-9 is.
        let at_1e6 = grokflow_tolerances(&cfg, "grokflow bdf", 1e-6);
        assert_eq!(at_1e6.len(), 4);
        assert!((at_1e6[3] - 1e-9).abs() < 1e-19, "{at_1e6:?}");
        // At λ = 1e-8 it is at 2.2e-9: no tighter point.
        assert_eq!(grokflow_tolerances(&cfg, "grokflow bdf", 1e-8).len(), 3);
        assert_eq!(
            grokflow_tolerances(&cfg, "grokflow esdirk34", 1e-2).len(),
            3
        );
    }

    #[test]
    fn short_runs_are_repeated_until_their_times_add_up_and_long_ones_are_timed_once() {
        let cfg = WpConfig::default();
        assert!(cfg.run_again(&[], 3));
        // A 3 ms run: past the three repeats, on until 0.3 s, at most 100 runs.
        assert!(cfg.run_again(&[0.003; 3], 3));
        assert!(cfg.run_again(&[0.003; 99], 3));
        assert!(!cfg.run_again(&[0.003; 100], 3));
        // A 40 ms run: seven runs make 0.28 s, eight 0.32 s.
        assert!(cfg.run_again(&[0.04; 7], 3));
        assert!(!cfg.run_again(&[0.04; 8], 3));
        // A 0.5 s run: the three repeats only; a 3 s run: once.
        assert!(cfg.run_again(&[0.5; 2], 3));
        assert!(!cfg.run_again(&[0.5; 3], 3));
        assert!(!cfg.run_again(&[3.0], 3));
        // --quick: one run each.
        let quick = WpConfig::quick();
        assert!(!quick.run_again(&[0.003], quick.repeats));
    }

    fn point(method: &str, rtol: f64, wall: f64, error: Option<f64>) -> WpPoint {
        WpPoint {
            system: "s".into(),
            dim: 10,
            lambda: 1e-6,
            method: method.into(),
            rtol,
            status: if error.is_some() { "success" } else { "failed" }.into(),
            steps: None,
            rhs_evals: None,
            jac_evals: None,
            factorisations: None,
            wall_s: [wall; 3],
            runs: 1,
            rel_error: error,
            note: String::new(),
        }
    }

    #[test]
    fn speedups_are_read_off_the_work_precision_curve() {
        // grokflow bdf: error 1e-4 in 0.1 s, 1e-8 in 1 s; esdirk34 slower everywhere.
        let mut pts = vec![
            point("grokflow bdf", 1e-4, 0.1, Some(1e-4)),
            point("grokflow bdf", 1e-8, 1.0, Some(1e-8)),
            point("grokflow esdirk34", 1e-4, 0.5, Some(1e-4)),
            point("grokflow esdirk34", 1e-8, 5.0, Some(1e-8)),
            // scipy at 1e-6 (half-way in log error): grokflow needs 10^-0.5 s there.
            point("scipy LSODA", 1e-6, 2.0, Some(1e-6)),
        ];
        let (r, against) = speedup_vs_scipy(&pts, "s", 1e-6).unwrap();
        assert!((r - 2.0 * 10f64.sqrt()).abs() < 1e-12, "{r}");
        assert_eq!(against, "scipy LSODA at rtol 1e-6");
        // A less accurate scipy point is compared with grokflow's loosest point, and the
        // smallest ratio wins.
        pts.push(point("scipy BDF", 1e-3, 0.15, Some(1e-3)));
        let (r, against) = speedup_vs_scipy(&pts, "s", 1e-6).unwrap();
        assert!((r - 1.5).abs() < 1e-12, "{r}");
        assert_eq!(against, "scipy BDF at rtol 1e-3");
        // More accurate than every grokflow point: no ratio from it; failures are ignored.
        let only_tight = vec![
            pts[0].clone(),
            pts[1].clone(),
            point("scipy Radau", 1e-10, 9.0, Some(1e-12)),
            point("scipy BDF", 1e-6, 0.01, None),
        ];
        assert!(speedup_vs_scipy(&only_tight, "s", 1e-6).is_none());
    }
}
