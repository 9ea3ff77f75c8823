//! Linear regression against its closed forms: derivatives, the integrated λ-flow, Φ, the
//! large-τ limit, and the cost of stiffness.

use grokflow_engine::la::distance;
use grokflow_engine::{
    check_derivatives, integrate, log_time_grid, phi, GradientFlow, LinearSolver, Loss, Method,
    Options, PhiOptions, Recorder, StopReason, Time, TimeScale,
};
use grokflow_systems::linear::{LinearParams, LinearRegression};

fn instance() -> LinearRegression {
    LinearRegression::generate(&LinearParams::default()).expect("default parameters are valid")
}

#[test]
fn derivatives_match_finite_differences_at_random_points() {
    let lr = instance();
    let mut r = grokflow_systems::data::rng(7);
    for _ in 0..3 {
        let theta = grokflow_systems::data::gaussian_vec(&mut r, lr.dim(), 1.0);
        let rep = check_derivatives(&lr, &theta, 1e-8);
        assert!(rep.gradient < 1e-7, "{rep:?}");
        assert!(rep.hessian < 1e-7, "{rep:?}");
        assert!(rep.asymmetry < 1e-14, "{rep:?}");
        // The quadratic's gradient is linear, so its differences carry only rounding.
        assert!(rep.hvp < 1e-9, "{rep:?}");
        assert!(rep.passed, "{:?}", rep.failures());
        // The product is exactly H·v.
        let v = grokflow_systems::data::gaussian_vec(&mut r, lr.dim(), 1.0);
        let mut hv = vec![0.0; lr.dim()];
        lr.hvp_into(&theta, &v, &mut hv);
        let mut exact = vec![0.0; lr.dim()];
        grokflow_engine::la::matvec_into(lr.hessian(&theta).as_ref(), &v, &mut exact);
        let err = distance(&hv, &exact) / grokflow_engine::la::norm(&exact);
        assert!(err < 1e-13, "H·v off by {err:e}");
        // It declares itself a convex quadratic, and is one.
        assert!(rep.convex_quadratic.unwrap() < 1e-14, "{rep:?}");
    }
}

/// Max over the recorded samples of ‖θ_num(τ) − θ_exact(τ)‖ / ‖θ_exact(τ)‖, and the steps.
fn slow_time_error(lr: &LinearRegression, lambda: f64, method: Method, rtol: f64) -> (f64, usize) {
    let truth = lr.truth().unwrap();
    let flow = GradientFlow::regularised(lr, lambda, TimeScale::Slow).unwrap();
    let tau_end = 10.0;
    let grid = log_time_grid(1e-3, tau_end / lambda, 10);
    let mut rec = Recorder::new(flow, lr, &grid).keep_states(true);
    let opts = Options {
        rtol,
        atol: rtol * 1e-2,
        end: Time::Slow(tau_end),
        max_steps: 100_000,
        ..Default::default()
    };
    let out = integrate(&flow, lr.theta_init(), method, &opts, &mut [&mut rec]).unwrap();
    assert_eq!(out.stop, StopReason::Finished);
    let traj = rec.into_trajectory();
    assert_eq!(traj.samples.len(), grid.len());
    let mut worst = 0.0f64;
    for (s, th) in traj.samples.iter().zip(&traj.states) {
        let exact = truth.exact_flow(lr.theta_init(), lambda, s.t);
        worst = worst.max(distance(th, &exact) / grokflow_engine::la::norm(&exact));
    }
    (worst, out.stats.steps)
}

#[test]
fn slow_time_flow_matches_the_exact_flow_for_every_lambda() {
    let lr = instance();
    for method in [Method::Bdf, Method::Esdirk34] {
        for lambda in [1e-2, 1e-4, 1e-6, 1e-8] {
            let (err, steps) = slow_time_error(&lr, lambda, method, 1e-9);
            eprintln!(
                "{} λ={lambda:e}: max rel err {err:.3e}, {steps} steps",
                method.name()
            );
            assert!(
                err <= 1e-6,
                "{} at λ = {lambda}: error {err}",
                method.name()
            );
        }
    }
}

#[test]
fn each_structured_bdf_step_attempt_costs_one_gradient() {
    // A convex quadratic: with the structured solve (Woodbury through the 20×20 matrix) the
    // Newton matrix is refactorised at each step's own c, so one iteration solves each
    // corrector. The dense solve keeps its factorisation within 30% of c and accepts a
    // corrector after one iteration only where the contraction bound allows.
    let lr = instance();
    for lambda in [1e-2, 1e-8] {
        let flow = GradientFlow::regularised(&lr, lambda, TimeScale::Slow).unwrap();
        let mut ends = Vec::new();
        for linear_solver in [LinearSolver::Structured, LinearSolver::Dense] {
            let opts = Options {
                rtol: 1e-8,
                atol: 1e-10,
                end: Time::Slow(10.0),
                max_steps: 100_000,
                linear_solver,
                ..Options::default()
            };
            let out = integrate(&flow, lr.theta_init(), Method::Bdf, &opts, &mut []).unwrap();
            let s = &out.stats;
            assert_eq!(out.stop, StopReason::Finished);
            assert_eq!(s.linear_solver, linear_solver.name());
            let attempts = s.steps + s.error_test_failures + s.nonlinear_failures;
            if linear_solver == LinearSolver::Structured {
                assert_eq!(s.nonlinear_iterations, attempts, "{lambda:e}: {s:?}");
                assert_eq!(s.rhs_evals, attempts + 2, "{lambda:e}: {s:?}");
            } else {
                assert!(s.nonlinear_iterations < 2 * attempts, "{lambda:e}: {s:?}");
            }
            ends.push(out.theta_final);
        }
        let exact = lr
            .truth()
            .unwrap()
            .exact_flow(lr.theta_init(), lambda, 10.0 / lambda);
        for end in &ends {
            let err = distance(end, &exact) / grokflow_engine::la::norm(&exact);
            assert!(err < 1e-7, "λ = {lambda:e}: error {err}");
        }
    }
}

#[test]
fn bdf_step_count_does_not_grow_with_stiffness() {
    let lr = instance();
    let (_, steps_easy) = slow_time_error(&lr, 1e-2, Method::Bdf, 1e-8);
    let (_, steps_stiff) = slow_time_error(&lr, 1e-8, Method::Bdf, 1e-8);
    eprintln!("BDF steps: λ=1e-2 {steps_easy}, λ=1e-8 {steps_stiff}");
    assert!(
        steps_stiff <= 2 * steps_easy,
        "{steps_stiff} > 2 × {steps_easy}"
    );
}

#[test]
fn phi_is_the_projection_onto_the_interpolating_set() {
    let lr = instance();
    let truth = lr.truth().unwrap();
    let exact = truth.phi(lr.theta_init());
    let res = phi(&lr, lr.theta_init(), &PhiOptions::default(), &mut []).unwrap();
    let err = distance(&res.theta, &exact);
    eprintln!(
        "Φ: error {err:.3e} at t = {:.3e}, {} steps",
        res.t, res.stats.steps
    );
    assert!(err <= 1e-8, "‖Φ_num − Φ_exact‖ = {err}");
    // Φ interpolates: F = ‖r‖²/(2n) ≤ ‖∇F‖²/(2 a_min) since ∇F = Xᵀr/n.
    let a_min = truth
        .eigenvalues()
        .iter()
        .cloned()
        .fold(f64::INFINITY, f64::min);
    let bound = res.grad_norm * res.grad_norm / (2.0 * a_min);
    assert!(
        lr.value(&res.theta) <= bound * (1.0 + 1e-6),
        "F(Φ) = {} > {bound}",
        lr.value(&res.theta)
    );
}

#[test]
fn large_tau_state_is_the_min_norm_solution() {
    let lr = instance();
    let truth = lr.truth().unwrap();
    let lambda = 1e-6;
    let tau_end = 30.0;
    let flow = GradientFlow::regularised(&lr, lambda, TimeScale::Slow).unwrap();
    let opts = Options {
        rtol: 1e-10,
        atol: 1e-12,
        end: Time::Slow(tau_end),
        max_steps: 100_000,
        ..Default::default()
    };
    let out = integrate(&flow, lr.theta_init(), Method::Bdf, &opts, &mut []).unwrap();
    let exact = truth.exact_flow(lr.theta_init(), lambda, tau_end / lambda);
    let star = truth.min_norm_solution();
    let err_exact = distance(&out.theta_final, &exact);
    let err_star = distance(&out.theta_final, star);
    // The closed form predicts a distance to θ* of e^{−τ}‖Φ − θ*‖ + O(λ/a_min)‖z*‖.
    let predicted = distance(&exact, star);
    eprintln!("τ=30: vs exact {err_exact:.3e}, vs θ* {err_star:.3e} (predicted {predicted:.3e})");
    assert!(err_exact <= 1e-8 * grokflow_engine::la::norm(&exact));
    assert!((err_star - predicted).abs() <= 1e-8 + 1e-3 * predicted);
    assert!(err_star <= 1e-5);
}

#[test]
fn instance_file_round_trips_exactly() {
    let lr = instance();
    let text = serde_json::to_string(&lr.to_file()).unwrap();
    let back = LinearRegression::from_file(serde_json::from_str(&text).unwrap()).unwrap();
    assert_eq!(back.x(), lr.x());
    assert_eq!(back.y(), lr.y());
    assert_eq!(back.theta_init(), lr.theta_init());
    assert_eq!(back.theta_true(), lr.theta_true());
    assert_eq!(back.params(), lr.params());
}

#[test]
fn generation_is_reproducible_and_seeded() {
    let a = instance();
    let b = instance();
    assert_eq!(a.x(), b.x());
    let c = LinearRegression::generate(&LinearParams {
        seed: 1,
        ..LinearParams::default()
    })
    .unwrap();
    assert_ne!(a.x(), c.x());
}
