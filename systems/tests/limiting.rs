//! The limiting Riemannian flow on M: against the closed form of linear regression, on the
//! nonlinear systems (drift, monotone norm, KKT residual, agreement with the λ-flow at small
//! λ), and its stop at a singular point of M.

use grokflow_engine::la::{distance, norm, MatMut};
use grokflow_engine::{
    integrate, limiting_flow, phi, GradientFlow, LimitingOptions, LimitingProblem, Loss, Method,
    NoObservables, Observables, Options, PhiOptions, StopReason, Time, TimeScale,
};
use grokflow_systems::diagonal::{DiagonalNetwork, DiagonalParams};
use grokflow_systems::linear::{LinearParams, LinearRegression};
use grokflow_systems::matrix_completion::{CompletionParams, MatrixCompletion};
use grokflow_systems::System;

fn problem<'a>(
    loss: &'a dyn Loss,
    observables: &'a dyn Observables,
    start: &'a [f64],
    theta_init: &'a [f64],
    taus: &'a [f64],
) -> LimitingProblem<'a> {
    LimitingProblem {
        loss,
        observables,
        start,
        theta_init,
        taus,
        lambda: 1.0,
    }
}

fn taus() -> Vec<f64> {
    (0..=40).map(|k| 10.0 * k as f64 / 40.0).collect()
}

#[test]
fn linear_regression_limiting_flow_is_the_closed_form() {
    let lr = LinearRegression::generate(&LinearParams::default()).unwrap();
    let truth = lr.truth().unwrap();
    let start = truth.phi(lr.theta_init());
    let opts = LimitingOptions {
        rtol: 1e-11,
        ..LimitingOptions::default()
    };
    let res = limiting_flow(
        &problem(&lr, &lr, &start, lr.theta_init(), &taus()),
        &opts,
        &mut [],
    )
    .unwrap();
    assert_eq!(res.stop, StopReason::Finished, "{}", res.stop.describe());
    assert_eq!(res.trajectory.samples.len(), taus().len());
    let mut worst = 0.0f64;
    for (s, th) in res.trajectory.samples.iter().zip(&res.trajectory.states) {
        let exact = truth.limiting_flow(lr.theta_init(), s.tau);
        worst = worst.max(distance(th, &exact) / norm(&exact));
    }
    eprintln!(
        "linear limiting flow: max rel error {worst:.3e}, {:?}",
        res.stats
    );
    assert!(worst <= 1e-8, "max relative error {worst}");
    let limit = res.theta_limit.expect("θ_M^∞ found");
    let star = truth.min_norm_solution();
    assert!(
        distance(&limit, star) <= 1e-7 * norm(star),
        "limit is {} from θ*",
        distance(&limit, star)
    );
}

fn check_nonlinear(system: &dyn System, label: &str, lambda: f64) {
    let theta0 = system.theta_init();
    let start = phi(system, theta0, &PhiOptions::default(), &mut []).unwrap();
    let opts = LimitingOptions::default();
    let taus = taus();
    let problem = problem(system, system, &start.theta, theta0, &taus);
    let res = limiting_flow(&problem, &opts, &mut []).unwrap();
    eprintln!(
        "{label}: {} drift {:.2e}, kkt {:.2e}, min μ {:.2e}, min gap {:.2e}, limit at τ = {:?}, {:?}",
        res.stop.describe(),
        res.max_drift,
        res.kkt_residual,
        res.min_mu,
        res.min_gap,
        res.tau_limit,
        res.stats
    );
    assert_eq!(
        res.stop,
        StopReason::Finished,
        "{label}: {}",
        res.stop.describe()
    );
    assert!(res.max_drift <= 1e-9, "{label}: drift {}", res.max_drift);
    let norms: Vec<f64> = res
        .trajectory
        .samples
        .iter()
        .map(|s| s.theta_norm)
        .collect();
    for w in norms.windows(2) {
        assert!(
            w[1] <= w[0] * (1.0 + 1e-12),
            "{label}: ‖θ‖ rose from {} to {}",
            w[0],
            w[1]
        );
    }
    assert!(
        res.kkt_residual <= 1e-6,
        "{label}: KKT residual {}",
        res.kkt_residual
    );
    let limit = res.theta_limit.as_ref().expect("θ_M^∞ found");
    // The λ-flow at small λ ends near θ_M^∞ (Prop. 4).
    let flow = GradientFlow::regularised(system, lambda, TimeScale::Slow).unwrap();
    let out = integrate(
        &flow,
        theta0,
        Method::Bdf,
        &Options {
            rtol: 1e-9,
            atol: 1e-11,
            end: Time::Slow(res.tau_limit.unwrap().max(10.0) + 10.0),
            max_steps: 100_000,
            ..Default::default()
        },
        &mut [],
    )
    .unwrap();
    let gap = distance(&out.theta_final, limit) / norm(limit);
    eprintln!("{label}: ‖θ_λ^∞ − θ_M^∞‖/‖θ_M^∞‖ = {gap:.2e} at λ = {lambda:e}");
    assert!(gap <= 1e-2, "{label}: the λ-flow ends {gap} from θ_M^∞");
}

#[test]
fn matrix_completion_limiting_flow_stays_on_m_and_reaches_a_kkt_point() {
    // The fully overparameterised case r = n the paper analyses, on a cheap size.
    let p = CompletionParams {
        n1: 8,
        n2: 8,
        width: 8,
        rank: 2,
        singular_values: vec![4.0, 2.0],
        observed: 0.8,
        seed: 0,
        ..CompletionParams::default()
    };
    let mc = MatrixCompletion::generate(&p).unwrap();
    check_nonlinear(&mc, "matrix completion", 1e-5);
}

#[test]
fn diagonal_limiting_flow_stays_on_m_and_reaches_a_kkt_point() {
    let p = DiagonalParams {
        frequencies: 10,
        n: 12,
        teacher_sparsity: 2,
        seed: 1,
        ..DiagonalParams::default()
    };
    let dn = DiagonalNetwork::generate(&p).unwrap();
    check_nonlinear(&dn, "diagonal", 1e-5);
}

/// F(x, y, z) = ½(xy)² + ½z²: M = {xy = 0, z = 0} is the union of two axes, singular at the
/// origin, where the kernel of ∇²F grows from one to two dimensions. From (1, 0, 0) the
/// limiting flow runs down the x axis, x(τ) = e^{−τ}, into the origin.
struct Cross;
impl Loss for Cross {
    fn name(&self) -> &str {
        "cross"
    }
    fn dim(&self) -> usize {
        3
    }
    fn value(&self, t: &[f64]) -> f64 {
        0.5 * (t[0] * t[1]).powi(2) + 0.5 * t[2] * t[2]
    }
    fn gradient_into(&self, t: &[f64], g: &mut [f64]) {
        let p = t[0] * t[1];
        g[0] = p * t[1];
        g[1] = p * t[0];
        g[2] = t[2];
    }
    fn hessian_into(&self, t: &[f64], mut h: MatMut<'_, f64>) {
        let (x, y) = (t[0], t[1]);
        h.fill(0.0);
        h[(0, 0)] = y * y;
        h[(1, 1)] = x * x;
        h[(0, 1)] = 2.0 * x * y;
        h[(1, 0)] = 2.0 * x * y;
        h[(2, 2)] = 1.0;
    }
}

#[test]
fn the_flow_stops_at_a_singular_point_and_says_so() {
    let opts = LimitingOptions {
        tau_end: 40.0,
        ..LimitingOptions::default()
    };
    let start = [1.0, 0.0, 0.0];
    let problem = problem(&Cross, &NoObservables, &start, &start, &[0.0, 1.0, 5.0]);
    let res = limiting_flow(&problem, &opts, &mut []).unwrap();
    eprintln!("{} {:?}", res.stop.describe(), res.warnings);
    match res.stop {
        StopReason::SingularPoint { tau, .. } => {
            // The gap μ/noise = x²/(3ε) falls below 10² near x ≈ 3e-7, τ ≈ 15.
            assert!(tau > 10.0 && tau < 20.0, "stopped at τ = {tau}");
        }
        other => panic!("expected a singular-point stop, got {}", other.describe()),
    }
    assert!(
        !res.warnings.is_empty(),
        "the small gap was not warned about"
    );
    // Before it stopped, the flow followed x(τ) = e^{−τ} on M.
    let s = &res.trajectory.samples[2];
    assert!(
        (s.theta_norm - (-5.0f64).exp()).abs() < 1e-8,
        "‖θ(5)‖ = {}",
        s.theta_norm
    );
}

#[test]
fn the_flow_stops_where_mu_has_collapsed_when_asked() {
    // On the x axis μ = x² = e^{−2τ}: a fall by 10⁶ happens at τ = ln(10⁶)/2 = 6.908, long
    // before the gap reaches rounding level (τ ≈ 15, the test above).
    let opts = LimitingOptions {
        tau_end: 40.0,
        mu_collapse: 1e-6,
        ..LimitingOptions::default()
    };
    let start = [1.0, 0.0, 0.0];
    let problem = problem(&Cross, &NoObservables, &start, &start, &[0.0, 1.0, 5.0]);
    let res = limiting_flow(&problem, &opts, &mut []).unwrap();
    match res.stop {
        StopReason::MuCollapsed { tau, mu, mu_start } => {
            assert!((mu_start - 1.0).abs() < 1e-12, "μ at the start {mu_start}");
            assert!(mu < 1e-6 && mu > 1e-6 * 0.5, "μ at the stop {mu}");
            let exact = 1e6f64.ln() / 2.0;
            assert!(tau >= exact && tau < exact + 0.35, "stopped at τ = {tau}");
        }
        other => panic!("expected μ's collapse, got {}", other.describe()),
    }
}
