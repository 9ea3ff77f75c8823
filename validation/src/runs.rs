//! The runs behind a validation: the references computed once per system (Φ, θ₀, θ_M and
//! its limit) and the λ-flows of one λ against them.

use std::time::Instant;

use grokflow_engine::la::{all_finite, distance, norm, Factorisation, MatMut};
use grokflow_engine::{
    integrate, kkt_info, limiting_flow, log_time_grid, phi, Control, GradientFlow, LimitingOptions,
    LimitingProblem, Loss, Method, Observer, Options, PhiOptions, Recorder, StepView, StopReason,
    Time, TimeScale, Trajectory,
};
use grokflow_systems::System;

use crate::config::{Defect, ValidationConfig, ValidationError};
use crate::report::LambdaRow;
use crate::watch::{StopWhen, Watch};

/// F + shift·‖θ‖²/2 + drift·⟨u, θ⟩ (u = (1, …, 1)/√d): the injected defects of the λ-flow.
struct Shifted<'a> {
    inner: &'a dyn Loss,
    shift: f64,
    drift: f64,
}

impl Shifted<'_> {
    fn u(&self) -> f64 {
        1.0 / (self.inner.dim() as f64).sqrt()
    }
}

impl Loss for Shifted<'_> {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn value(&self, t: &[f64]) -> f64 {
        self.inner.value(t)
            + 0.5 * self.shift * t.iter().map(|x| x * x).sum::<f64>()
            + self.drift * self.u() * t.iter().sum::<f64>()
    }
    fn gradient_into(&self, t: &[f64], g: &mut [f64]) {
        self.inner.gradient_into(t, g);
        let push = self.drift * self.u();
        g.iter_mut()
            .zip(t)
            .for_each(|(gi, ti)| *gi += self.shift * ti + push);
    }
    fn hessian_into(&self, t: &[f64], mut h: MatMut<'_, f64>) {
        self.inner.hessian_into(t, h.as_mut());
        for i in 0..t.len() {
            h[(i, i)] += self.shift;
        }
    }
}

/// Stops once ‖∇F(θ) + λθ‖ ≤ max(tol·λ·max(‖θ‖, 1), floor): θ_λ^∞ is reached. The floor,
/// 10⁻¹³ max(‖∇F(θ_init)‖, 1), is where rounding in ∇F stops the test from being met.
struct Stationary<'a> {
    loss: &'a dyn Loss,
    lambda: f64,
    tol: f64,
    floor: f64,
}

impl Observer for Stationary<'_> {
    fn step(&mut self, view: &StepView<'_>) -> Control {
        let mut g = self.loss.gradient(view.theta);
        g.iter_mut()
            .zip(view.theta)
            .for_each(|(gi, t)| *gi += self.lambda * t);
        if norm(&g) <= (self.tol * self.lambda * norm(view.theta).max(1.0)).max(self.floor) {
            Control::Stop(StopReason::Converged {
                grad_norm: norm(&g),
            })
        } else {
            Control::Continue
        }
    }
}

/// Up to four Newton steps on ∇loss(θ) + λθ = 0, each kept only if it lowers the residual;
/// returns the point and the size of the next correction (its distance to the root, to
/// first order). A singular or non-finite Newton system leaves ‖g‖/λ as that distance.
fn polish(loss: &dyn Loss, lambda: f64, mut theta: Vec<f64>) -> (Vec<f64>, f64) {
    let residual = |t: &[f64]| {
        let mut g = loss.gradient(t);
        g.iter_mut().zip(t).for_each(|(gi, x)| *gi += lambda * x);
        g
    };
    let correction = |t: &[f64], g: &[f64]| {
        let mut h = loss.hessian(t);
        for i in 0..t.len() {
            h[(i, i)] += lambda;
        }
        let mut delta = g.to_vec();
        Factorisation::new(&h).solve_vec(&mut delta);
        all_finite(&delta).then_some(delta)
    };
    let mut g = residual(&theta);
    for _ in 0..4 {
        let Some(delta) = correction(&theta, &g) else {
            return (theta, norm(&g) / lambda);
        };
        let next: Vec<f64> = theta.iter().zip(&delta).map(|(t, d)| t - d).collect();
        let g_next = residual(&next);
        let better = norm(&g_next) < norm(&g);
        if !better {
            return (theta, norm(&delta));
        }
        theta = next;
        g = g_next;
    }
    let floor = correction(&theta, &g).map_or(norm(&g) / lambda, |d| norm(&d));
    (theta, floor)
}

/// The per-system references, computed once.
pub(crate) struct References {
    pub(crate) theta_init: Vec<f64>,
    pub(crate) phi: Vec<f64>,
    pub(crate) t_grid: Vec<f64>,
    pub(crate) theta0: Vec<Vec<f64>>,
    pub(crate) tau_grid: Vec<f64>,
    pub(crate) theta_m: Vec<Vec<f64>>,
    pub(crate) theta_m_limit: Option<Vec<f64>>,
    pub(crate) test_phi: Option<f64>,
}

fn max_distance(a: &[Vec<f64>], b: &[Vec<f64>], from: usize) -> f64 {
    a.iter()
        .zip(b)
        .skip(from)
        .map(|(x, y)| distance(x, y))
        .fold(0.0, f64::max)
}

/// The first τ at which log m(τ) falls to ½(log m_Φ + log m_end), linearly interpolated
/// between samples; m_end is the last sample.
pub(crate) fn tau_grok(curve: &[(f64, f64)], test_phi: f64) -> Option<f64> {
    let last = curve.last()?.1;
    if !(test_phi > last && last > 0.0) {
        return None;
    }
    let mid = 0.5 * (test_phi.ln() + last.ln());
    for w in curve.windows(2) {
        let (a, b) = (
            w[0].1.max(f64::MIN_POSITIVE).ln(),
            w[1].1.max(f64::MIN_POSITIVE).ln(),
        );
        if a > mid && b <= mid {
            let s = (a - mid) / (a - b);
            return Some(w[0].0 + s * (w[1].0 - w[0].0));
        }
    }
    None
}

#[allow(clippy::too_many_arguments)]
fn run(
    flow: &GradientFlow<'_>,
    theta0: &[f64],
    end: Time,
    rtol: f64,
    atol: f64,
    grid_t: &[f64],
    watch: &dyn Watch,
) -> Result<(Trajectory, usize, Vec<f64>), String> {
    let mut rec = Recorder::new(*flow, &grokflow_engine::NoObservables, grid_t).keep_states(true);
    let mut stop = StopWhen(watch);
    let out = integrate(
        flow,
        theta0,
        Method::Bdf,
        &Options {
            rtol,
            atol,
            end,
            max_steps: 1_000_000,
            ..Default::default()
        },
        &mut [&mut rec, &mut stop],
    )
    .map_err(|e| e.to_string())?;
    if out.stop != StopReason::Finished {
        return Err(out.stop.describe());
    }
    Ok((rec.into_trajectory(), out.stats.steps, out.theta_final))
}

pub(crate) fn references(
    system: &dyn System,
    cfg: &ValidationConfig,
    watch: &dyn Watch,
) -> Result<(References, grokflow_engine::LimitingResult, f64), ValidationError> {
    let name = system.name().to_string();
    let err = |what: String| ValidationError::Reference {
        system: name.clone(),
        what,
    };
    let theta_init = system.theta_init().to_vec();
    let tight = cfg.rtol / cfg.tight_factor;
    let phi = phi(
        system,
        &theta_init,
        &PhiOptions {
            rtol: tight.min(1e-10),
            atol: cfg.atol / cfg.tight_factor,
            ..PhiOptions::default()
        },
        &mut [&mut StopWhen(watch)],
    )
    .map_err(|e| err(format!("Φ(θ_init): {e}")))?;
    let t_grid = log_time_grid(1e-3, cfg.t_fast, 40);
    let flow0 = GradientFlow::unregularised(system);
    let (traj0, _, _) = run(
        &flow0,
        &theta_init,
        Time::Fast(cfg.t_fast),
        tight,
        cfg.atol / cfg.tight_factor,
        &t_grid,
        watch,
    )
    .map_err(|e| err(format!("unregularised flow: {e}")))?;
    let mut tau_grid: Vec<f64> = vec![0.0];
    tau_grid.extend(
        log_time_grid(1e-4, cfg.tau0, 10)
            .into_iter()
            .filter(|t| *t > 0.0 && *t < cfg.tau0),
    );
    tau_grid.extend((0..=200).map(|k| cfg.tau0 + (cfg.tau_end - cfg.tau0) * k as f64 / 200.0));
    let lim_opts = LimitingOptions {
        tau_end: cfg.tau_end,
        rtol: cfg.limiting_rtol,
        projector: cfg.projector,
        ..LimitingOptions::default()
    };
    let problem = LimitingProblem {
        loss: system,
        observables: system,
        start: &phi.theta,
        theta_init: &theta_init,
        taus: &tau_grid,
        lambda: 1.0,
    };
    let lim = limiting_flow(&problem, &lim_opts, &mut [&mut StopWhen(watch)])
        .map_err(|e| err(format!("limiting flow: {e}")))?;
    // The limiting flow's own floor: its change at a 100× tighter tolerance.
    let tighter = LimitingOptions {
        rtol: cfg.limiting_rtol / 100.0,
        tau_limit_max: cfg.tau_end,
        ..lim_opts
    };
    let lim_tight = limiting_flow(&problem, &tighter, &mut [&mut StopWhen(watch)])
        .map_err(|e| err(format!("limiting flow: {e}")))?;
    let floor = max_distance(&lim.trajectory.states, &lim_tight.trajectory.states, 0);
    let refs = References {
        theta_init,
        test_phi: system.test_loss(&phi.theta),
        phi: phi.theta,
        t_grid,
        theta0: traj0.states,
        tau_grid: lim.trajectory.samples.iter().map(|s| s.tau).collect(),
        theta_m: lim.trajectory.states.clone(),
        theta_m_limit: lim.theta_limit.clone(),
    };
    Ok((refs, lim, floor))
}

pub(crate) fn run_lambda(
    system: &dyn System,
    refs: &References,
    cfg: &ValidationConfig,
    lambda: f64,
    watch: &dyn Watch,
) -> Result<LambdaRow, String> {
    let started = Instant::now();
    let shifted;
    let loss: &dyn Loss = match cfg.defect {
        None => system,
        Some(d) => {
            let (shift, drift) = match d {
                Defect::DropDecay => (-lambda, 0.0),
                Defect::FlipDecay => (-2.0 * lambda, 0.0),
                Defect::DoubleDecay => (lambda, 0.0),
                Defect::Drift => (
                    0.0,
                    1e-3 * norm(&system.gradient(&refs.theta_init)).max(1.0),
                ),
            };
            shifted = Shifted {
                inner: system,
                shift,
                drift,
            };
            &shifted
        }
    };
    let tight = cfg.rtol / cfg.tight_factor;
    let atol_tight = cfg.atol / cfg.tight_factor;
    // Prop 1, fast time on [0, T₁].
    let fast =
        GradientFlow::regularised(loss, lambda, TimeScale::Fast).map_err(|e| e.to_string())?;
    let (f1, steps_fast, _) = run(
        &fast,
        &refs.theta_init,
        Time::Fast(cfg.t_fast),
        cfg.rtol,
        cfg.atol,
        &refs.t_grid,
        watch,
    )?;
    let (f1t, _, _) = run(
        &fast,
        &refs.theta_init,
        Time::Fast(cfg.t_fast),
        tight,
        atol_tight,
        &refs.t_grid,
        watch,
    )?;
    let e1 = max_distance(&f1.states, &refs.theta0, 0);
    let e1t = max_distance(&f1t.states, &refs.theta0, 0);
    // Prop 2, slow time on the limiting flow's samples.
    let slow =
        GradientFlow::regularised(loss, lambda, TimeScale::Slow).map_err(|e| e.to_string())?;
    let tau_last = *refs.tau_grid.last().unwrap_or(&cfg.tau_end);
    let t_grid: Vec<f64> = refs.tau_grid.iter().map(|tau| tau / lambda).collect();
    let (s2, steps_slow, theta_end) = run(
        &slow,
        &refs.theta_init,
        Time::Slow(tau_last.max(1e-12)),
        cfg.rtol,
        cfg.atol,
        &t_grid,
        watch,
    )?;
    let (s2t, _, _) = run(
        &slow,
        &refs.theta_init,
        Time::Slow(tau_last.max(1e-12)),
        tight,
        atol_tight,
        &t_grid,
        watch,
    )?;
    let from = refs
        .tau_grid
        .iter()
        .position(|t| *t >= cfg.tau0)
        .unwrap_or(refs.tau_grid.len());
    let e2 = max_distance(&s2.states, &refs.theta_m, from);
    let e2t = max_distance(&s2t.states, &refs.theta_m, from);
    let e2_zero = max_distance(&s2.states, &refs.theta_m, 0);
    // τ_grok from the recorded test metric.
    let collapse: Vec<(f64, f64)> = s2
        .states
        .iter()
        .zip(&refs.tau_grid)
        .filter_map(|(th, &tau)| system.test_loss(th).map(|m| (tau, m)))
        .collect();
    let tg = refs.test_phi.and_then(|p| tau_grok(&collapse, p));
    // θ_λ^∞: on from the end, until the regularised gradient vanishes.
    let floor = 1e-13 * norm(&system.gradient(&refs.theta_init)).max(1.0);
    let mut stat = Stationary {
        loss,
        lambda,
        tol: 1e-9,
        floor,
    };
    let out = integrate(
        &slow,
        &theta_end,
        Method::Bdf,
        &Options {
            rtol: tight,
            atol: atol_tight,
            end: Time::Slow(500.0),
            max_steps: 50_000,
            ..Default::default()
        },
        &mut [&mut stat, &mut StopWhen(watch)],
    )
    .map_err(|e| e.to_string())?;
    let stationary = matches!(out.stop, StopReason::Converged { .. });
    // Newton on the flow's own field ∇F + λθ polishes θ_λ^∞ past the stop rule, and the
    // next Newton correction is its floor: near M the tangential curvature of F + λ‖θ‖²/2 is
    // λ times that of ‖θ‖²/2 on M, so a residual g leaves an error g/(λ·c), not g/λ. Measured
    // on the flow that ran (defects included), a wrong flow's stationary point is not
    // counted as floor.
    let (theta_inf, infinity_floor) = if stationary {
        let (t, f) = polish(loss, lambda, out.theta_final.clone());
        (t, Some(f))
    } else {
        (out.theta_final.clone(), None)
    };
    let kkt = if stationary {
        kkt_info(system, &theta_inf).ok().map(|k| k.residual)
    } else {
        None
    };
    let limit_distance = match (&refs.theta_m_limit, stationary) {
        (Some(l), true) => Some(distance(&theta_inf, l)),
        _ => None,
    };
    Ok(LambdaRow {
        lambda,
        prop1_error: e1,
        prop1_floor: (e1 - e1t).abs(),
        prop2_error: e2,
        prop2_floor: (e2 - e2t).abs(),
        prop2_error_from_zero: e2_zero,
        kkt_residual: kkt,
        limit_distance,
        infinity_floor,
        tau_grok: tg,
        stationary,
        steps: [steps_fast, steps_slow, out.stats.steps],
        wall_s: started.elapsed().as_secs_f64(),
        collapse,
    })
}
