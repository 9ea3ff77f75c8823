//! The engine on losses with known flows: methods against closed forms, gradient descent
//! against its discrete solution, the two clocks, observers, Φ, the grokking times, and the
//! derivative check's power to fail.

mod common;

use common::{DeclaredConvexQuadratic, DoubleWell, Quadratic};
use grokflow_engine::la::{distance, MatMut};
use grokflow_engine::{
    check_derivatives, grokking_times, integrate, log_time_grid, phi, BlowUpGuard, Control,
    GradientFlow, LinearSolver, Loss, Method, Observer, Options, PhiOptions, Recorder, Sample,
    StepView, StopReason, Time, TimeScale, Trajectory,
};

fn quadratic() -> Quadratic {
    // Two stiff directions, one slow one, two in the kernel (a = 0).
    Quadratic {
        a: vec![30.0, 4.0, 0.5, 0.0, 0.0],
        b: vec![1.0, -2.0, 0.5, 0.0, 0.0],
    }
}
const THETA0: [f64; 5] = [0.3, 1.0, -1.0, 2.0, -3.0];

fn opts(rtol: f64, end: Time) -> Options {
    Options {
        rtol,
        atol: rtol * 1e-2,
        end,
        max_steps: 100_000,
        ..Default::default()
    }
}

#[test]
fn every_implicit_method_follows_the_exact_flow_in_both_clocks() {
    let q = quadratic();
    for method in [Method::Bdf, Method::Esdirk34, Method::TrBdf2] {
        for (time, lambda) in [
            (TimeScale::Fast, 1e-2),
            (TimeScale::Slow, 1e-2),
            (TimeScale::Slow, 1e-7),
        ] {
            let flow = GradientFlow::regularised(&q, lambda, time).unwrap();
            let t_end = 5.0 / lambda;
            let out = integrate(
                &flow,
                &THETA0,
                method,
                &opts(1e-9, Time::Fast(t_end)),
                &mut [],
            )
            .unwrap();
            assert_eq!(out.stop, StopReason::Finished);
            let exact = q.exact(&THETA0, lambda, t_end);
            let err = distance(&out.theta_final, &exact);
            assert!(
                err < 1e-6,
                "{} {time:?} λ={lambda}: error {err}",
                method.name()
            );
        }
    }
}

#[test]
fn matrix_free_bdf_follows_the_exact_flow_without_residuals() {
    // The quadratic has no residual structure: the Krylov solve runs on Hessian-vector
    // products with no preconditioner and must still meet the tolerance, in about the
    // dense solve's number of steps with the same formulas (the dense solve's default goes
    // to order 6, the unpreconditioned matrix-free solve's to 5).
    let q = quadratic();
    for (time, lambda) in [
        (TimeScale::Fast, 1e-2),
        (TimeScale::Slow, 1e-2),
        (TimeScale::Slow, 1e-7),
    ] {
        let flow = GradientFlow::regularised(&q, lambda, time).unwrap();
        let t_end = 5.0 / lambda;
        let run = |linear_solver| {
            let o = Options {
                linear_solver,
                max_order: Some(5),
                ..opts(1e-9, Time::Fast(t_end))
            };
            integrate(&flow, &THETA0, Method::Bdf, &o, &mut []).unwrap()
        };
        let (free, dense) = (run(LinearSolver::MatrixFree), run(LinearSolver::Dense));
        assert_eq!(free.stop, StopReason::Finished);
        assert_eq!(free.stats.linear_solver, "matrix_free");
        assert_eq!(dense.stats.linear_solver, "dense");
        assert!(free.stats.krylov_iterations > 0, "{:?}", free.stats);
        assert_eq!(dense.stats.krylov_iterations, 0);
        let err = distance(&free.theta_final, &q.exact(&THETA0, lambda, t_end));
        assert!(err < 1e-6, "{time:?} λ={lambda}: error {err}");
        let (a, b) = (free.stats.steps as f64, dense.stats.steps as f64);
        assert!(
            (a - b).abs() <= 0.1 * b,
            "{time:?} λ={lambda}: {a} matrix-free steps against {b} dense"
        );
    }
}

#[test]
fn matrix_free_bdf_handles_indefinite_newton_matrices() {
    // MINRES needs symmetry, not definiteness: the saddle of the double well again.
    let f = SaddlePlusDecay;
    let flow = GradientFlow::unregularised(&f);
    let o = Options {
        linear_solver: LinearSolver::MatrixFree,
        ..opts(1e-10, Time::Fast(300.0))
    };
    let out = integrate(&flow, &[0.0, 1.0], Method::Bdf, &o, &mut []).unwrap();
    assert_eq!(out.stop, StopReason::Finished);
    assert_eq!(out.theta_final[0], 0.0);
    let exact_y = (-300.0f64).exp();
    assert!((out.theta_final[1] - exact_y).abs() < 1e-11);
}

#[test]
fn a_declared_convex_quadratic_converges_on_its_contraction_bound() {
    // With the contraction bound |1 − c/c′| known (c′ within 30% of c, the dense
    // factorisation kept), a corrector can be accepted after its first iteration: fewer
    // gradients than with measured rates (which need two iterations), as accurate. The
    // structured solve's one iteration per attempt is tested on linear regression.
    for linear_solver in [LinearSolver::Dense, LinearSolver::MatrixFree] {
        for lambda in [1e-2, 1e-7] {
            let (q, declared) = (quadratic(), DeclaredConvexQuadratic(quadratic()));
            let run = |loss: &dyn Loss| {
                let flow = GradientFlow::regularised(loss, lambda, TimeScale::Slow).unwrap();
                let o = Options {
                    linear_solver,
                    ..opts(1e-9, Time::Slow(5.0))
                };
                integrate(&flow, &THETA0, Method::Bdf, &o, &mut []).unwrap()
            };
            let (plain, fast) = (run(&q), run(&declared));
            let exact = q.exact(&THETA0, lambda, 5.0 / lambda);
            let (e_plain, e_fast) = (
                distance(&plain.theta_final, &exact),
                distance(&fast.theta_final, &exact),
            );
            let s = &fast.stats;
            eprintln!(
                "{linear_solver:?} λ={lambda:e}: errors {e_plain:.2e} → {e_fast:.2e}, \
                 gradients {} → {}, steps {} → {}",
                plain.stats.rhs_evals, s.rhs_evals, plain.stats.steps, s.steps
            );
            assert_eq!(fast.stop, StopReason::Finished);
            assert!(
                e_fast < 1e-6 && e_fast <= 4.0 * e_plain + 1e-12,
                "{linear_solver:?} λ={lambda}: error {e_fast} (measured rates: {e_plain})"
            );
            let attempts = s.steps + s.error_test_failures + s.nonlinear_failures;
            if linear_solver == LinearSolver::MatrixFree {
                // Krylov solves are inexact: the bound is not used, nothing changes.
                assert_eq!(s.rhs_evals, plain.stats.rhs_evals);
                continue;
            }
            assert_eq!(s.nonlinear_failures, 0, "{s:?}");
            // Two iterations per attempt or more without the bound; with it, an attempt takes
            // one where b/(1 − b)·‖dy‖ is small enough (always right after a refactorisation,
            // c′ = c): 5% of them or more here.
            let plain_attempts = plain.stats.steps + plain.stats.error_test_failures;
            assert!(plain.stats.nonlinear_iterations >= 2 * plain_attempts);
            assert!(20 * s.nonlinear_iterations <= 39 * attempts, "{s:?}");
            assert!(
                (s.rhs_evals as f64) < 0.9 * plain.stats.rhs_evals as f64,
                "{} gradients against {}",
                s.rhs_evals,
                plain.stats.rhs_evals
            );
        }
    }
}

#[test]
fn a_wrong_convex_quadratic_declaration_is_refused_before_the_run() {
    // The BDF would accept correctors on a contraction bound that does not hold: it probes
    // the declaration first and says what is wrong.
    let run = |loss: &dyn Loss, theta0: &[f64]| {
        let flow = GradientFlow::regularised(loss, 1e-3, TimeScale::Slow).unwrap();
        integrate(
            &flow,
            theta0,
            Method::Bdf,
            &opts(1e-8, Time::Slow(1.0)),
            &mut [],
        )
    };
    let moving = run(&DeclaredConvexQuadratic(DoubleWell), &[0.5]).unwrap_err();
    assert!(
        moving.to_string().contains("Hessian changes with θ"),
        "{moving}"
    );
    let concave = Quadratic {
        a: vec![-1.0, -2.0, -0.5],
        b: vec![0.0; 3],
    };
    let negative = run(&DeclaredConvexQuadratic(concave), &[1.0, 1.0, 1.0]).unwrap_err();
    assert!(
        negative.to_string().contains("negative curvature"),
        "{negative}"
    );
    assert!(
        negative.to_string().contains("check_derivatives"),
        "{negative}"
    );
    // The Hessian is the quadratic's but the gradient is not (a cubic term added).
    let cubic = run(
        &DeclaredConvexQuadratic(Tampered(quadratic(), plus_cubic)),
        &THETA0,
    )
    .unwrap_err();
    assert!(
        cubic.to_string().contains("gradient does not change"),
        "{cubic}"
    );
    // The gradient stops being finite a unit away from θ₀ = 0 (outside the ball of radius ½).
    let zero = [0.0; 5];
    let nan = run(
        &DeclaredConvexQuadratic(Tampered(quadratic(), nan_outside_half_ball)),
        &zero,
    )
    .unwrap_err();
    assert!(nan.to_string().contains("not finite"), "{nan}");
    // A true declaration runs, a semidefinite one (a kernel direction) included. With the
    // matrix-free solve the bound is not used and the declaration not probed: the tampered
    // loss starts (its run fails later, once the flow leaves the ball).
    let fine = run(&DeclaredConvexQuadratic(quadratic()), &THETA0).unwrap();
    assert_eq!(fine.stop, StopReason::Finished);
    let mf = Options {
        linear_solver: LinearSolver::MatrixFree,
        ..opts(1e-8, Time::Slow(1e-3))
    };
    let declared = DeclaredConvexQuadratic(Tampered(quadratic(), nan_outside_half_ball));
    let flow_nan = GradientFlow::regularised(&declared, 1e-3, TimeScale::Slow).unwrap();
    let unprobed = integrate(&flow_nan, &zero, Method::Bdf, &mf, &mut []).unwrap();
    assert!(
        matches!(unprobed.stop, StopReason::SolverFailed { .. }),
        "{:?}",
        unprobed.stop
    );
}

/// The quadratic with its gradient tampered with by the function it carries (in place, after
/// the quadratic's gradient); the Hessian is the quadratic's.
struct Tampered(Quadratic, fn(&[f64], &mut [f64]));

impl Loss for Tampered {
    fn name(&self) -> &str {
        "tampered"
    }
    fn dim(&self) -> usize {
        self.0.dim()
    }
    fn value(&self, th: &[f64]) -> f64 {
        self.0.value(th)
    }
    fn gradient_into(&self, th: &[f64], g: &mut [f64]) {
        self.0.gradient_into(th, g);
        (self.1)(th, g);
    }
    fn hessian_into(&self, th: &[f64], h: MatMut<'_, f64>) {
        self.0.hessian_into(th, h)
    }
}

/// One coordinate of the gradient 1% off.
fn one_percent_off(_th: &[f64], g: &mut [f64]) {
    g[1] *= 1.01;
}

/// 0.1·θᵢ³ added: a quartic term the Hessian does not show.
fn plus_cubic(th: &[f64], g: &mut [f64]) {
    g.iter_mut()
        .zip(th)
        .for_each(|(gi, x)| *gi += 0.1 * x.powi(3));
}

/// 0·√(¼ − ‖θ‖²) added: finite inside the ball of radius ½, NaN outside.
fn nan_outside_half_ball(th: &[f64], g: &mut [f64]) {
    let edge = 0.0 * (0.25 - th.iter().map(|x| x * x).sum::<f64>()).sqrt();
    g.iter_mut().for_each(|gi| *gi += edge);
}

#[test]
fn explicit_method_is_accurate_where_it_is_affordable() {
    let q = quadratic();
    let flow = GradientFlow::regularised(&q, 0.1, TimeScale::Fast).unwrap();
    let out = integrate(
        &flow,
        &THETA0,
        Method::Tsit45,
        &opts(1e-9, Time::Fast(20.0)),
        &mut [],
    )
    .unwrap();
    assert_eq!(out.stop, StopReason::Finished);
    assert!(distance(&out.theta_final, &q.exact(&THETA0, 0.1, 20.0)) < 1e-6);
}

#[test]
fn fast_and_slow_clocks_give_the_same_state() {
    let q = quadratic();
    let lambda = 1e-3;
    let fast = GradientFlow::regularised(&q, lambda, TimeScale::Fast).unwrap();
    let slow = GradientFlow::regularised(&q, lambda, TimeScale::Slow).unwrap();
    let a = integrate(
        &fast,
        &THETA0,
        Method::Bdf,
        &opts(1e-10, Time::Fast(3000.0)),
        &mut [],
    )
    .unwrap();
    let b = integrate(
        &slow,
        &THETA0,
        Method::Bdf,
        &opts(1e-10, Time::Slow(3.0)),
        &mut [],
    )
    .unwrap();
    assert!(distance(&a.theta_final, &b.theta_final) < 1e-7);
    assert!((slow.fast_time(b.s_final) - 3000.0).abs() < 1e-9);
}

#[test]
fn gradient_descent_matches_its_discrete_solution() {
    // θ_k = θ∞ + (1 − η(a + λ))^k (θ₀ − θ∞) in each coordinate.
    let q = quadratic();
    let (lambda, lr, k) = (0.05, 0.01, 1000usize);
    let flow = GradientFlow::regularised(&q, lambda, TimeScale::Fast).unwrap();
    let out = integrate(
        &flow,
        &THETA0,
        Method::GradientDescent { lr },
        &opts(1e-8, Time::Fast(lr * k as f64)),
        &mut [],
    )
    .unwrap();
    assert_eq!(out.stop, StopReason::Finished);
    assert_eq!(out.stats.steps, k);
    for i in 0..5 {
        let (a, b) = (q.a[i], q.b[i]);
        let inf = a * b / (a + lambda);
        let exact = inf + (1.0 - lr * (a + lambda)).powi(k as i32) * (THETA0[i] - inf);
        assert!((out.theta_final[i] - exact).abs() < 1e-12, "coordinate {i}");
    }
}

#[test]
fn gradient_descent_in_slow_time_ends_exactly_at_the_end() {
    let q = quadratic();
    let flow = GradientFlow::regularised(&q, 1e-2, TimeScale::Slow).unwrap();
    // τ_end / (λη) = 0.1 / (1e-2 · 0.03) = 333.3 iterations: the last one is partial.
    let out = integrate(
        &flow,
        &THETA0,
        Method::GradientDescent { lr: 0.03 },
        &opts(1e-8, Time::Slow(0.1)),
        &mut [],
    )
    .unwrap();
    assert_eq!(out.stats.steps, 334);
    assert_eq!(out.s_final, 0.1);
}

#[test]
fn unstable_gradient_descent_is_stopped_by_the_guard() {
    let q = quadratic();
    let flow = GradientFlow::regularised(&q, 1e-2, TimeScale::Fast).unwrap();
    let mut guard = BlowUpGuard::for_start(&THETA0);
    // η(a + λ) = 0.1 · 30 = 3 > 2: the stiff coordinate grows like 2^k.
    let out = integrate(
        &flow,
        &THETA0,
        Method::GradientDescent { lr: 0.1 },
        &opts(1e-8, Time::Fast(100.0)),
        &mut [&mut guard],
    )
    .unwrap();
    assert!(
        matches!(out.stop, StopReason::Diverged { .. }),
        "{:?}",
        out.stop
    );
    assert!(out.theta_final.iter().all(|x| x.is_finite()));
}

#[test]
fn indefinite_newton_matrices_fall_back_to_lu_and_stay_accurate() {
    // x sits on the top of the double well (a saddle, H = −1) while y decays like e^{−t}:
    // once BDF's steps exceed 1, the Newton matrix 1 + γ·H_xx = 1 − γ is then negative in x.
    let f = SaddlePlusDecay;
    let flow = GradientFlow::unregularised(&f);
    let theta0 = [0.0, 1.0];
    let out = integrate(
        &flow,
        &theta0,
        Method::Bdf,
        &opts(1e-10, Time::Fast(300.0)),
        &mut [],
    )
    .unwrap();
    assert_eq!(out.theta_final[0], 0.0);
    let exact_y = (-300.0f64).exp();
    assert!(
        (out.theta_final[1] - exact_y).abs() < 1e-11,
        "{} vs {exact_y}",
        out.theta_final[1]
    );
    let lu = out.stats.lu_factorisations - out.stats.cholesky_factorisations;
    assert!(
        lu > 0,
        "expected LU fallbacks once the steps are long, got {:?}",
        out.stats
    );
    assert!(
        out.stats.cholesky_factorisations > 0,
        "expected Cholesky while the steps are short"
    );
}

#[test]
fn the_double_well_flow_leaves_the_saddle_as_its_closed_form_says() {
    let dw = DoubleWell;
    let flow = GradientFlow::unregularised(&dw);
    let theta0 = [1e-3];
    let out = integrate(
        &flow,
        &theta0,
        Method::Bdf,
        &opts(1e-10, Time::Fast(12.0)),
        &mut [],
    )
    .unwrap();
    let exact = DoubleWell::exact(theta0[0], 12.0);
    assert!(
        (out.theta_final[0] - exact).abs() < 1e-7,
        "{} vs {exact}",
        out.theta_final[0]
    );
}

/// F(x, y) = −x²/2 + x⁴/4 + y²/2.
struct SaddlePlusDecay;
impl Loss for SaddlePlusDecay {
    fn name(&self) -> &str {
        "saddle"
    }
    fn dim(&self) -> usize {
        2
    }
    fn value(&self, th: &[f64]) -> f64 {
        DoubleWell.value(&th[..1]) + 0.5 * th[1] * th[1]
    }
    fn gradient_into(&self, th: &[f64], g: &mut [f64]) {
        DoubleWell.gradient_into(&th[..1], &mut g[..1]);
        g[1] = th[1];
    }
    fn hessian_into(&self, th: &[f64], mut h: MatMut<'_, f64>) {
        h.fill(0.0);
        h[(0, 0)] = -1.0 + 3.0 * th[0] * th[0];
        h[(1, 1)] = 1.0;
    }
}

#[test]
fn recorder_samples_the_grid_from_dense_output() {
    let q = quadratic();
    let lambda = 1e-3;
    let flow = GradientFlow::regularised(&q, lambda, TimeScale::Slow).unwrap();
    let grid = log_time_grid(1e-2, 5.0 / lambda, 7);
    let mut rec = Recorder::new(flow, &q, &grid).keep_states(true);
    integrate(
        &flow,
        &THETA0,
        Method::Esdirk34,
        &opts(1e-10, Time::Slow(5.0)),
        &mut [&mut rec],
    )
    .unwrap();
    let traj = rec.into_trajectory();
    assert_eq!(traj.samples.len(), grid.len());
    for ((s, th), t) in traj.samples.iter().zip(&traj.states).zip(&grid) {
        assert!((s.t - t).abs() <= 1e-12 * t.max(1.0));
        assert!((s.tau - lambda * s.t).abs() <= 1e-15 * s.t.max(1.0));
        assert!(
            distance(th, &q.exact(&THETA0, lambda, s.t)) < 1e-6,
            "at t = {t}"
        );
        assert!((s.train_loss - q.value(th)).abs() <= 1e-14);
    }
}

#[test]
fn log_time_grid_is_geometric_and_ends_at_the_end() {
    let g = log_time_grid(1e-2, 1e3, 4);
    assert_eq!(g[0], 0.0);
    assert_eq!(g[1], 1e-2);
    assert_eq!(*g.last().unwrap(), 1e3);
    assert_eq!(g.len(), 2 + 5 * 4);
    let ratio = g[2] / g[1];
    assert!((ratio - 10f64.powf(0.25)).abs() < 1e-12);
}

/// Stops the run after a fixed number of steps.
struct StopAfter(usize);
impl Observer for StopAfter {
    fn step(&mut self, view: &StepView<'_>) -> Control {
        if view.steps >= self.0 {
            Control::Stop(StopReason::Stopped {
                reason: "test".into(),
            })
        } else {
            Control::Continue
        }
    }
}

#[test]
fn an_observer_stop_ends_the_run_and_keeps_the_record() {
    let q = quadratic();
    let flow = GradientFlow::regularised(&q, 1e-2, TimeScale::Slow).unwrap();
    let grid = log_time_grid(1e-2, 1e3, 10);
    let mut rec = Recorder::new(flow, &q, &grid);
    let out = integrate(
        &flow,
        &THETA0,
        Method::Bdf,
        &opts(1e-8, Time::Slow(10.0)),
        &mut [&mut rec, &mut StopAfter(25)],
    )
    .unwrap();
    assert_eq!(out.stats.steps, 25);
    assert!(matches!(out.stop, StopReason::Stopped { .. }));
    let traj = rec.into_trajectory();
    // The last sample is the state where the run stopped.
    let last = traj.samples.last().unwrap();
    assert!((last.t - flow.fast_time(out.s_final)).abs() < 1e-9 * last.t);
}

#[test]
fn max_steps_is_a_stop_reason_not_an_error() {
    let q = quadratic();
    let flow = GradientFlow::regularised(&q, 1e-4, TimeScale::Slow).unwrap();
    let o = Options {
        max_steps: 10,
        ..opts(1e-8, Time::Slow(10.0))
    };
    let out = integrate(&flow, &THETA0, Method::Bdf, &o, &mut []).unwrap();
    assert_eq!(out.stop, StopReason::MaxSteps { steps: 10 });
}

#[test]
fn bad_inputs_are_errors_before_the_run() {
    let q = quadratic();
    assert!(GradientFlow::regularised(&q, 0.0, TimeScale::Slow).is_err());
    assert!(GradientFlow::regularised(&q, f64::NAN, TimeScale::Slow).is_err());
    assert!(GradientFlow::regularised(&q, -1.0, TimeScale::Fast).is_err());
    let flow = GradientFlow::regularised(&q, 1e-2, TimeScale::Slow).unwrap();
    assert!(integrate(
        &flow,
        &THETA0[..3],
        Method::Bdf,
        &opts(1e-8, Time::Slow(1.0)),
        &mut []
    )
    .is_err());
    assert!(integrate(
        &flow,
        &[f64::NAN; 5],
        Method::Bdf,
        &opts(1e-8, Time::Slow(1.0)),
        &mut []
    )
    .is_err());
    assert!(integrate(
        &flow,
        &THETA0,
        Method::Bdf,
        &opts(0.0, Time::Slow(1.0)),
        &mut []
    )
    .is_err());
    let free = Options {
        linear_solver: LinearSolver::MatrixFree,
        ..opts(1e-8, Time::Slow(1.0))
    };
    let err = integrate(&flow, &THETA0, Method::Esdirk34, &free, &mut []).unwrap_err();
    assert!(err.to_string().contains("matrix-free"), "{err}");
    // The quadratic has no residuals, so no block curvature for the structured solve.
    let structured = Options {
        linear_solver: LinearSolver::Structured,
        ..opts(1e-8, Time::Slow(1.0))
    };
    let err = integrate(&flow, &THETA0, Method::Bdf, &structured, &mut []).unwrap_err();
    assert!(
        err.to_string()
            .contains("block-diagonal residual curvature"),
        "{err}"
    );
    assert!(integrate(
        &flow,
        &THETA0,
        Method::GradientDescent { lr: -1.0 },
        &opts(1e-8, Time::Slow(1.0)),
        &mut []
    )
    .is_err());
    for (method, q, says) in [
        (Method::Bdf, 0, "1 to 6"),
        (Method::Bdf, 7, "1 to 6"),
        (Method::Esdirk34, 5, "bdf method only"),
    ] {
        let o = Options {
            max_order: Some(q),
            ..opts(1e-8, Time::Slow(1.0))
        };
        let err = integrate(&flow, &THETA0, method, &o, &mut []).unwrap_err();
        assert!(err.to_string().contains(says), "{err}");
    }
}

#[test]
fn order_six_takes_fewer_steps_than_order_five_within_the_tolerance() {
    // A gradient flow's Jacobian is symmetric, so BDF6 (unstable only near the imaginary
    // axis) is safe, and pays at tight tolerances. Measured at rtol 1e-9: 436 steps at order
    // 6 and 561 at order 5 in fast time at λ = 1e-2, 481 and 603 in slow time at λ = 1e-7
    // (stiffness ratio 3·10⁸); every cap meets the tolerance.
    let q = quadratic();
    for (time, lambda) in [(TimeScale::Fast, 1e-2), (TimeScale::Slow, 1e-7)] {
        let flow = GradientFlow::regularised(&q, lambda, time).unwrap();
        let t_end = 5.0 / lambda;
        let exact = q.exact(&THETA0, lambda, t_end);
        let run = |max_order| {
            let o = Options {
                max_order,
                linear_solver: LinearSolver::Dense,
                ..opts(1e-9, Time::Fast(t_end))
            };
            let out = integrate(&flow, &THETA0, Method::Bdf, &o, &mut []).unwrap();
            assert_eq!(out.stop, StopReason::Finished);
            let err = distance(&out.theta_final, &exact);
            assert!(err < 1e-6, "{time:?} order ≤ {max_order:?}: error {err}");
            out.stats.steps
        };
        let (six, default, five, two) = (run(Some(6)), run(None), run(Some(5)), run(Some(2)));
        eprintln!("{time:?} λ={lambda:e}: steps {six} (order ≤ 6), {five} (≤ 5), {two} (≤ 2)");
        assert_eq!(
            six, default,
            "{time:?}: the dense solve's default is order 6"
        );
        assert!(
            (six as f64) < 0.85 * five as f64,
            "{time:?}: {six} steps at order 6 against {five} at order 5"
        );
        assert!(
            five < two,
            "{time:?}: {five} steps at order 5 against {two} at order 2"
        );
        // Unpreconditioned (no residuals), the matrix-free solve stays at order 5 by default.
        let free = |max_order| {
            let o = Options {
                max_order,
                linear_solver: LinearSolver::MatrixFree,
                ..opts(1e-9, Time::Fast(t_end))
            };
            integrate(&flow, &THETA0, Method::Bdf, &o, &mut [])
                .unwrap()
                .stats
        };
        let (default, five) = (free(None), free(Some(5)));
        assert_eq!(default.steps, five.steps, "{time:?}: {default:?}");
        assert_eq!(default.krylov_iterations, five.krylov_iterations);
    }
}

#[test]
fn phi_converges_to_the_projection_and_reports_failure() {
    let q = quadratic();
    let res = phi(&q, &THETA0, &PhiOptions::default(), &mut []).unwrap();
    let exact = [1.0, -2.0, 0.5, 2.0, -3.0];
    // The stopping rule ‖∇F‖ ≤ tol leaves a distance ≤ tol / a_min to the limit (a_min = 0.5).
    assert!(distance(&res.theta, &exact) <= res.tolerance / 0.5 + 1e-12);
    assert!(res.grad_norm <= res.tolerance);
    let short = PhiOptions {
        t_max: 1.0,
        ..PhiOptions::default()
    };
    assert!(phi(&q, &THETA0, &short, &mut []).is_err());
}

fn sample(t: f64, train: f64, test: f64) -> Sample {
    Sample {
        t,
        tau: 1e-3 * t,
        train_loss: train,
        test_loss: Some(test),
        theta_norm: 1.0,
        grad_norm: 1.0,
        extra: vec![],
    }
}

#[test]
fn grokking_times_follow_their_documented_rule() {
    let traj = Trajectory {
        extra_columns: vec![],
        samples: vec![
            sample(0.0, 1.0, 50.0),
            sample(1.0, 1e-2, 100.0),
            sample(2.0, 1e-4, 100.0), // fitted: 1e-4 ≤ 1e-3 · 1
            sample(500.0, 1e-4, 90.0),
            sample(1000.0, 1e-4, 11.0),
            sample(2000.0, 1e-4, 9.0), // log-midpoint of 100 and 1 is 10
            sample(5000.0, 1e-4, 1.0),
        ],
        states: vec![],
        marked: vec![],
    };
    let g = grokking_times(&traj, Some(100.0), 1e-3, 1e-3);
    assert_eq!(g.t_fit, Some(2.0));
    assert_eq!(g.t_grok, Some(2000.0));
    assert_eq!(g.tau_grok, Some(2.0));
    // No drop, no grokking time.
    assert_eq!(grokking_times(&traj, Some(0.5), 1e-3, 1e-3).t_grok, None);
}

#[test]
fn derivative_check_passes_good_and_fails_wrong_derivatives() {
    let q = quadratic();
    let good = check_derivatives(&q, &THETA0, 1e-8);
    assert!(good.worst() < 1e-8, "{good:?}");
    let bad = check_derivatives(&Tampered(quadratic(), one_percent_off), &THETA0, 1e-8);
    assert!(bad.gradient > 1e-3, "{bad:?}");
    assert!(bad.hessian > 1e-3, "{bad:?}");
    // The convex-quadratic declaration is checked too: true for the quadratic, false for
    // an indefinite quadratic and for the double well (its Hessian moves with θ).
    assert_eq!(good.convex_quadratic, None);
    let declared = check_derivatives(&DeclaredConvexQuadratic(quadratic()), &THETA0, 1e-8);
    assert_eq!(declared.convex_quadratic, Some(0.0), "{declared:?}");
    assert!(declared.worst() < 1e-8, "{declared:?}");
    let saddle = Quadratic {
        a: vec![30.0, -4.0, 0.5],
        b: vec![1.0, 0.0, 0.0],
    };
    let indefinite = check_derivatives(&DeclaredConvexQuadratic(saddle), &[0.1, 0.2, 0.3], 1e-8);
    let defect = indefinite.convex_quadratic.unwrap();
    assert!(
        (defect - 4.0 / 30.0f64.hypot(4.0).hypot(0.5)).abs() < 1e-12,
        "{indefinite:?}"
    );
    let well = check_derivatives(&DeclaredConvexQuadratic(DoubleWell), &[1.5], 1e-8);
    assert!(well.convex_quadratic.unwrap() > 0.5, "{well:?}");
    assert!(well.worst() > 0.5);
}
