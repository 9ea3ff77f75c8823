//! The structured Newton solve (Woodbury through the m×m matrix, block-diagonal residual
//! curvature) against the dense one on every system that declares curvature blocks, and the
//! automatic choice.

use grokflow_engine::la::{distance, norm};
use grokflow_engine::{
    integrate, GradientFlow, LinearSolver, Method, Options, Outcome, StopReason, Time, TimeScale,
};
use grokflow_systems::{registry, System};

fn run(system: &dyn System, lambda: f64, ls: LinearSolver) -> Result<Outcome, String> {
    let flow = GradientFlow::regularised(system, lambda, TimeScale::Slow).unwrap();
    let opts = Options {
        rtol: 1e-8,
        atol: 1e-10,
        end: Time::Slow(10.0),
        max_steps: 100_000,
        linear_solver: ls,
        ..Options::default()
    };
    integrate(&flow, system.theta_init(), Method::Bdf, &opts, &mut []).map_err(|e| e.to_string())
}

#[test]
fn the_structured_solve_follows_the_dense_one() {
    let mut compared = 0;
    for entry in registry() {
        let system = entry.default_instance().unwrap();
        let Some(res) = system.residuals() else {
            continue;
        };
        // A dense solve beyond d = 1000 costs minutes here (modular addition: d = 2496).
        if res.curvature_groups().is_none() || res.count() >= system.dim() || system.dim() > 1000 {
            continue;
        }
        for lambda in [1e-4, 1e-8] {
            let st = run(system.as_ref(), lambda, LinearSolver::Structured).unwrap();
            let dense = run(system.as_ref(), lambda, LinearSolver::Dense).unwrap();
            assert_eq!(st.stop, StopReason::Finished, "{}", entry.name);
            assert_eq!(st.stats.linear_solver, "structured");
            let gap = distance(&st.theta_final, &dense.theta_final) / norm(&dense.theta_final);
            eprintln!(
                "{} λ={lambda:e}: gap {gap:.1e}, steps {} (dense {}), factorisations {} ({})",
                entry.name,
                st.stats.steps,
                dense.stats.steps,
                st.stats.lu_factorisations,
                dense.stats.lu_factorisations
            );
            // Same Newton policy, so the same steps and end states to rounding; except for a
            // declared convex quadratic (linear regression), where the structured solve
            // refactorises at every c and the dense one keeps its factorisation within 30%:
            // two step sequences, each within the tolerance (both are checked against the
            // closed form in linear.rs).
            let (gap_max, steps_rel) = if system.is_convex_quadratic() {
                (1e-7, 0.15)
            } else {
                (1e-9, 0.05)
            };
            assert!(gap < gap_max, "{} λ={lambda}: gap {gap}", entry.name);
            // Every factorisation went through Woodbury's identity, not the fallback.
            assert_eq!(st.stats.structured_fallbacks, 0, "{}", entry.name);
            let (a, b) = (st.stats.steps as f64, dense.stats.steps as f64);
            assert!(
                (a - b).abs() <= steps_rel * b,
                "{}: {a} steps against {b}",
                entry.name
            );
            compared += 1;
        }
    }
    assert_eq!(compared, 10, "every system at two λ");
}

#[test]
fn auto_takes_the_structured_solve_where_it_pays() {
    // Few residuals against parameters: the two-layer network (m = 10, d = 300), the
    // diagonal network (30, 200), linear regression (20, 200) and matrix sensing (40, 100,
    // blocks of 10); matrix completion (280, 400) through its shared block. Through its
    // stored Jacobian matrix completion would stay dense (see `LinearCapabilities`).
    // Modular addition (m = 1313, d = 2496, 64 blocks of 39) has too many residuals for an
    // m×m factorisation at each Jacobian: MINRES with the Gauss–Newton preconditioner.
    for entry in registry() {
        let system = entry.default_instance().unwrap();
        let out = run(system.as_ref(), 1e-4, LinearSolver::Auto).unwrap();
        let expected = match entry.name {
            "modular" => "matrix_free",
            _ => "structured",
        };
        assert_eq!(out.stats.linear_solver, expected, "{}", entry.name);
    }
}
