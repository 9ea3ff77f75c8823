//! The matrix-free Newton solve (Hessian-vector products, MINRES preconditioned by
//! Gauss–Newton) against the closed form of linear regression and against the dense solve
//! on matrix completion, whose residual products are structured.

use grokflow_engine::la::{distance, norm};
use grokflow_engine::{
    integrate, GradientFlow, LinearSolver, Loss, Method, Options, Outcome, StopReason, Time,
    TimeScale,
};
use grokflow_systems::linear::{LinearParams, LinearRegression};
use grokflow_systems::matrix_completion::{CompletionParams, MatrixCompletion};
use grokflow_systems::registry;

/// A BDF run to τ = 10 with the default orders (up to 6 with either solve, the matrix-free
/// one being preconditioned on these losses).
fn run(loss: &dyn Loss, theta0: &[f64], lambda: f64, rtol: f64, ls: LinearSolver) -> Outcome {
    let flow = GradientFlow::regularised(loss, lambda, TimeScale::Slow).unwrap();
    let opts = Options {
        rtol,
        atol: rtol * 1e-2,
        end: Time::Slow(10.0),
        max_steps: 100_000,
        linear_solver: ls,
        ..Options::default()
    };
    let out = integrate(&flow, theta0, Method::Bdf, &opts, &mut []).unwrap();
    assert_eq!(out.stop, StopReason::Finished);
    out
}

#[test]
fn matrix_free_linear_regression_follows_the_exact_flow() {
    let lr = LinearRegression::generate(&LinearParams::default()).unwrap();
    let truth = lr.truth().unwrap();
    for lambda in [1e-2, 1e-5, 1e-8] {
        let out = run(&lr, lr.theta_init(), lambda, 1e-9, LinearSolver::MatrixFree);
        assert_eq!(out.stats.linear_solver, "matrix_free");
        let exact = truth.exact_flow(lr.theta_init(), lambda, 10.0 / lambda);
        let err = distance(&out.theta_final, &exact) / norm(&exact);
        let dense = run(&lr, lr.theta_init(), lambda, 1e-9, LinearSolver::Dense);
        eprintln!(
            "linear λ={lambda:e}: error {err:.2e}, steps {} (dense {}), MINRES iterations {}",
            out.stats.steps, dense.stats.steps, out.stats.krylov_iterations
        );
        assert!(err < 1e-6, "λ={lambda}: relative error {err}");
        let (a, b) = (out.stats.steps as f64, dense.stats.steps as f64);
        assert!((a - b).abs() <= 0.1 * b, "{a} steps against {b} dense");
    }
}

#[test]
fn the_preconditioned_matrix_free_solve_goes_to_order_six() {
    // With residuals MINRES is preconditioned by Gauss–Newton and the default cap is 6, as
    // for the direct solves (only an unpreconditioned solve stays at 5).
    let lr = LinearRegression::generate(&LinearParams::default()).unwrap();
    let flow = GradientFlow::regularised(&lr, 1e-6, TimeScale::Slow).unwrap();
    let steps = |max_order| {
        let opts = Options {
            rtol: 1e-8,
            atol: 1e-10,
            end: Time::Slow(10.0),
            max_steps: 100_000,
            linear_solver: LinearSolver::MatrixFree,
            max_order,
        };
        let out = integrate(&flow, lr.theta_init(), Method::Bdf, &opts, &mut []).unwrap();
        assert_eq!(out.stop, StopReason::Finished);
        out.stats.steps
    };
    let (default, six, five) = (steps(None), steps(Some(6)), steps(Some(5)));
    eprintln!("matrix-free steps: {default} by default, {six} at order ≤ 6, {five} at ≤ 5");
    assert_eq!(default, six);
    assert!(six < five, "{six} steps at order ≤ 6 against {five} at ≤ 5");
}

#[test]
fn matrix_free_matrix_completion_agrees_with_the_dense_solve() {
    let entry = registry()
        .into_iter()
        .find(|e| e.name == "matrix-completion")
        .unwrap();
    let mc = entry.default_instance().unwrap();
    assert!(mc.residuals().unwrap().has_structured_products());
    for lambda in [1e-4, 1e-8] {
        let free = run(
            mc.as_ref(),
            mc.theta_init(),
            lambda,
            1e-8,
            LinearSolver::MatrixFree,
        );
        let dense = run(
            mc.as_ref(),
            mc.theta_init(),
            lambda,
            1e-8,
            LinearSolver::Dense,
        );
        let gap = distance(&free.theta_final, &dense.theta_final) / norm(&dense.theta_final);
        eprintln!(
            "matrix completion λ={lambda:e}: gap {gap:.2e}, steps {} (dense {}), \
             MINRES iterations {}, preconditioner factorisations {}",
            free.stats.steps,
            dense.stats.steps,
            free.stats.krylov_iterations,
            free.stats.lu_factorisations
        );
        assert!(
            gap < 1e-5,
            "λ={lambda}: matrix-free and dense differ by {gap}"
        );
        let (a, b) = (free.stats.steps as f64, dense.stats.steps as f64);
        assert!((a - b).abs() <= 0.1 * b, "{a} steps against {b} dense");
        // The preconditioner keeps MINRES short: a bound on the average, in iterations.
        let per_newton =
            free.stats.krylov_iterations as f64 / free.stats.nonlinear_iterations as f64;
        assert!(
            per_newton < 20.0,
            "{per_newton} MINRES iterations per Newton iteration"
        );
    }
}

#[test]
fn auto_goes_matrix_free_on_large_structured_problems_only() {
    let small = registry()
        .into_iter()
        .find(|e| e.name == "matrix-completion")
        .map(|e| e.default_instance().unwrap())
        .unwrap();
    let out = run(
        small.as_ref(),
        small.theta_init(),
        1e-4,
        1e-6,
        LinearSolver::Auto,
    );
    // d = 400 below the threshold: the structured solve through its shared block.
    assert_eq!(out.stats.linear_solver, "structured", "d = {}", small.dim());
    // d = (n₁ + n₂)·r = 1000: the threshold.
    let large = MatrixCompletion::generate(&CompletionParams {
        n1: 25,
        n2: 25,
        width: 20,
        ..CompletionParams::default()
    })
    .unwrap();
    assert_eq!(large.dim(), grokflow_engine::MATRIX_FREE_MIN_DIM);
    let out = run(&large, large.theta_init(), 1e-4, 1e-6, LinearSolver::Auto);
    assert_eq!(out.stats.linear_solver, "matrix_free");
    // More residuals than parameters: the preconditioner would be d×d, so Auto stays dense.
    let tall = MatrixCompletion::generate(&CompletionParams {
        n1: 50,
        n2: 50,
        width: 10,
        ..CompletionParams::default()
    })
    .unwrap();
    assert_eq!(tall.dim(), 1000);
    assert!(tall.residuals().unwrap().count() > tall.dim());
    let flow = GradientFlow::regularised(&tall, 1e-4, TimeScale::Slow).unwrap();
    let short = Options {
        rtol: 1e-6,
        atol: 1e-8,
        end: Time::Slow(0.01),
        max_steps: 100_000,
        linear_solver: LinearSolver::Auto,
        ..Options::default()
    };
    let out = integrate(&flow, tall.theta_init(), Method::Bdf, &short, &mut []).unwrap();
    assert_eq!(out.stats.linear_solver, "dense");
    // Without structured residual products Auto never goes matrix-free, whatever the size:
    // linear regression (block curvature R = 0) gets the structured solve instead.
    let lr = LinearRegression::generate(&LinearParams {
        n: 20,
        d: 1200,
        ..LinearParams::default()
    })
    .unwrap();
    assert!(!lr.residuals().unwrap().has_structured_products());
    let out = run(&lr, lr.theta_init(), 1e-4, 1e-6, LinearSolver::Auto);
    assert_eq!(out.stats.linear_solver, "structured");
}
