//! The Gram projector of the limiting flow (rows of J, a Cholesky factor of J_R J_Rᵀ,
//! conjugate gradients) against the spectral one (an SVD of J at every evaluation): the same
//! P(θ)θ where both apply, the same flow on M and the same stop at a singular point, and the
//! shared-factor path of large problems exercised on small ones.

use grokflow_engine::la::{distance, norm, MatMut};
use grokflow_engine::{
    limiting_flow, phi, tangent_projection, LimitingOptions, LimitingProblem, LimitingResult, Loss,
    NoObservables, PhiOptions, Projector, Residuals, StopReason,
};
use grokflow_systems::matrix_completion::{CompletionParams, MatrixCompletion};
use grokflow_systems::System;

fn flow(system: &dyn System, opts: &LimitingOptions, taus: &[f64]) -> LimitingResult {
    let start = phi(system, system.theta_init(), &PhiOptions::default(), &mut []).unwrap();
    let problem = LimitingProblem {
        loss: system,
        observables: &NoObservables,
        start: &start.theta,
        theta_init: system.theta_init(),
        taus,
        lambda: 1.0,
    };
    limiting_flow(&problem, opts, &mut []).unwrap()
}

fn with(projector: Projector) -> LimitingOptions {
    LimitingOptions {
        projector,
        ..LimitingOptions::default()
    }
}

/// Matrix completion with n₁ = n₂ = 10, width 5, 70% observed: J has rank 67 of its 70 rows
/// on the branch from Φ(θ_init) (kernel 33), and the flow runs into a singular point of M
/// (kernel 41) near τ = 16.
fn rank_deficient() -> MatrixCompletion {
    MatrixCompletion::generate(&CompletionParams {
        n1: 10,
        n2: 10,
        width: 5,
        observed: 0.7,
        ..CompletionParams::default()
    })
    .unwrap()
}

/// The paper's fully overparameterised case on a small size (n₁ = n₂ = r = 8, 80% observed):
/// J has full row rank, every row is kept.
fn full_row_rank() -> MatrixCompletion {
    MatrixCompletion::generate(&CompletionParams {
        n1: 8,
        n2: 8,
        width: 8,
        rank: 2,
        singular_values: vec![4.0, 2.0],
        observed: 0.8,
        ..CompletionParams::default()
    })
    .unwrap()
}

#[test]
fn the_gram_projection_is_the_svds_on_m_for_every_system_with_residuals() {
    let mut systems: Vec<(String, Box<dyn System>)> =
        vec![("rank-deficient".into(), Box::new(rank_deficient()))];
    for spec in grokflow_systems::registry() {
        systems.push((spec.name.into(), (spec.validation)(true).unwrap()));
    }
    for (name, system) in &systems {
        if system.residuals().is_none() {
            continue;
        }
        // Points on M: the limiting flow's samples (retracted onto M).
        let res = flow(
            system.as_ref(),
            &with(Projector::Spectral),
            &[0.0, 0.5, 1.0],
        );
        for theta in &res.trajectory.states {
            let (gram, gi) = tangent_projection(system.as_ref(), theta, Projector::Gram).unwrap();
            let (svd, si) =
                tangent_projection(system.as_ref(), theta, Projector::Spectral).unwrap();
            let err = distance(&gram, &svd) / norm(theta).max(1.0);
            eprintln!(
                "{name}: |P_gram θ − P_svd θ|/|θ| = {err:.2e}, kernel {} / {}, μ {:.4e} / {:.4e}",
                gi.kernel_dim, si.kernel_dim, gi.mu, si.mu
            );
            assert!(err <= 1e-10, "{name}: the projections differ by {err:e}");
            assert_eq!(gi.kernel_dim, si.kernel_dim, "{name}");
            assert!(
                (gi.mu - si.mu).abs() <= 1e-6 * si.mu,
                "{name}: μ {} against {}",
                gi.mu,
                si.mu
            );
        }
    }
}

/// The samples of two runs agree to `tol` relative up to τ = `upto`.
fn assert_same_flow(a: &LimitingResult, b: &LimitingResult, upto: f64, tol: f64, label: &str) {
    let mut worst = 0.0f64;
    for ((sa, ta), tb) in a
        .trajectory
        .samples
        .iter()
        .zip(&a.trajectory.states)
        .zip(&b.trajectory.states)
        .filter(|((s, _), _)| s.tau <= upto)
    {
        let _ = sa;
        worst = worst.max(distance(ta, tb) / norm(ta));
    }
    eprintln!("{label}: samples up to τ = {upto} agree to {worst:.2e}");
    assert!(worst <= tol, "{label}: the flows differ by {worst:e}");
}

fn singular(stop: &StopReason) -> (f64, usize, usize) {
    match stop {
        StopReason::SingularPoint {
            tau,
            kernel_dim_before,
            kernel_dim_after,
            ..
        } => (*tau, *kernel_dim_before, *kernel_dim_after),
        other => panic!(
            "expected a stop at a singular point, got {}",
            other.describe()
        ),
    }
}

#[test]
fn both_projectors_follow_the_same_flow_into_the_same_singular_point() {
    let mc = rank_deficient();
    let taus: Vec<f64> = (0..=20).map(|k| 0.5 * k as f64).collect();
    let opts = |p| LimitingOptions {
        tau_end: 10.0,
        ..with(p)
    };
    let svd = flow(&mc, &opts(Projector::Spectral), &taus);
    let gram = flow(&mc, &opts(Projector::Gram), &taus);
    eprintln!("svd: {} {:?}", svd.stop.describe(), svd.stats);
    eprintln!("gram: {} {:?}", gram.stop.describe(), gram.stats);
    let (tau_s, before_s, after_s) = singular(&svd.stop);
    let (tau_g, before_g, after_g) = singular(&gram.stop);
    assert_eq!((before_g, after_g), (before_s, after_s));
    assert_eq!((before_s, after_s), (33, 41));
    assert!(
        (tau_g - tau_s).abs() < 1.0,
        "stopped at τ = {tau_g} and {tau_s}"
    );
    // Near the singular point (μ ≈ 1e-10 from τ ≈ 5) the flow is ill-conditioned; before it
    // the two agree to the integration tolerance.
    assert_same_flow(&svd, &gram, 4.0, 1e-8, "rank-deficient");
    // Near the singular point the kept rows' Gram matrix is too ill-conditioned and the
    // Gram path hands over to the spectral one.
    assert_eq!(gram.stats.switches, 1, "{:?}", gram.stats);
}

#[test]
fn away_from_singular_points_the_gram_path_decomposes_only_at_the_start() {
    // Up to τ = 2, before J's smallest singular value falls towards the low-rank limit
    // (where the flow hands over to the spectral projector).
    let mc = full_row_rank();
    let opts = LimitingOptions {
        tau_end: 2.0,
        tau_limit_max: 2.0,
        ..with(Projector::Gram)
    };
    let res = flow(&mc, &opts, &[0.0, 1.0, 2.0]);
    eprintln!("{} {:?}", res.stop.describe(), res.stats);
    assert_eq!(res.stop, StopReason::Finished);
    assert_eq!(res.stats.switches, 0);
    // One SVD for the split at the start; one Cholesky factor per point evaluated.
    assert_eq!(res.stats.decompositions, 1 + res.stats.spectral_checks);
    assert_eq!(res.stats.spectral_checks, 0);
    assert!(res.stats.factorisations >= 6 * res.stats.steps);
}

#[test]
fn the_shared_factor_path_follows_the_same_flow() {
    // factor_reuse_from = 1: the path of ρ ≥ 1000 (one factor preconditioning the solves
    // around it, μ tracked between refreshes) on problems small enough for the spectral one.
    let taus: Vec<f64> = (0..=20).map(|k| 0.5 * k as f64).collect();
    for (label, mc) in [
        ("full row rank", full_row_rank()),
        ("rank-deficient", rank_deficient()),
    ] {
        let shared = LimitingOptions {
            factor_reuse_from: 1,
            tau_end: 10.0,
            ..with(Projector::Gram)
        };
        let svd = flow(
            &mc,
            &LimitingOptions {
                tau_end: 10.0,
                ..with(Projector::Spectral)
            },
            &taus,
        );
        let res = flow(&mc, &shared, &taus);
        eprintln!("{label}: shared {} {:?}", res.stop.describe(), res.stats);
        eprintln!("{label}: svd {} {:?}", svd.stop.describe(), svd.stats);
        assert_eq!(
            std::mem::discriminant(&res.stop),
            std::mem::discriminant(&svd.stop)
        );
        assert_same_flow(&svd, &res, 4.0, 1e-8, label);
        // Fewer factorisations than evaluations of the field: the factor was shared.
        assert!(
            res.stats.factorisations < res.stats.steps * 2,
            "{label}: {:?}",
            res.stats
        );
    }
}

/// r(x, y, z) = (xy, z): M = {xy = 0, z = 0}, the union of two axes, singular at the origin.
/// From (1, 0, 0) the limiting flow runs down the x axis, x(τ) = e^{−τ}; there J = [[0, x, 0],
/// [0, 0, 1]] loses rank as x → 0, the kernel growing from one to two dimensions.
struct ResidualCross;

impl Loss for ResidualCross {
    fn name(&self) -> &str {
        "residual-cross"
    }
    fn dim(&self) -> usize {
        3
    }
    fn value(&self, t: &[f64]) -> f64 {
        0.5 * ((t[0] * t[1]).powi(2) + t[2] * t[2])
    }
    fn gradient_into(&self, t: &[f64], g: &mut [f64]) {
        let p = t[0] * t[1];
        g.copy_from_slice(&[p * t[1], p * t[0], t[2]]);
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
    fn residuals(&self) -> Option<&dyn Residuals> {
        Some(self)
    }
}

impl Residuals for ResidualCross {
    fn count(&self) -> usize {
        2
    }
    fn scale(&self) -> f64 {
        1.0
    }
    fn residuals_into(&self, t: &[f64], r: &mut [f64]) {
        r.copy_from_slice(&[t[0] * t[1], t[2]]);
    }
    fn jacobian_into(&self, t: &[f64], mut jac: MatMut<'_, f64>) {
        jac.fill(0.0);
        jac[(0, 0)] = t[1];
        jac[(0, 1)] = t[0];
        jac[(1, 2)] = 1.0;
    }
}

#[test]
fn a_residual_cross_stops_at_its_singular_point_on_either_projector() {
    let start = [1.0, 0.0, 0.0];
    let problem = LimitingProblem {
        loss: &ResidualCross,
        observables: &NoObservables,
        start: &start,
        theta_init: &start,
        taus: &[0.0, 1.0, 5.0],
        lambda: 1.0,
    };
    let mut stops = Vec::new();
    for p in [Projector::Spectral, Projector::Gram] {
        // Off the axis the flow is unstable (y/x grows like e^{2τ} from rounding), so the
        // singular point is declared early: at a gap of 1e10, x ≈ 6.7e-6.
        let opts = LimitingOptions {
            tau_end: 40.0,
            gap_stop: 1e10,
            gap_warn: 1e11,
            ..with(p)
        };
        let res = limiting_flow(&problem, &opts, &mut []).unwrap();
        eprintln!("{p:?}: {} {:?}", res.stop.describe(), res.stats);
        // x(5) = e^{−5} on M.
        assert!((res.trajectory.samples[2].theta_norm - (-5.0f64).exp()).abs() < 1e-8);
        stops.push(singular(&res.stop));
    }
    // The gap σ₂/noise = x/(3ε) falls below 10¹⁰ at x ≈ 6.7e-6, τ ≈ 11.9 (so early that
    // a fresh split there still keeps both directions normal).
    for &(tau, before, after) in &stops {
        assert!(tau > 11.5 && tau < 12.5, "stopped at τ = {tau}");
        assert_eq!((before, after), (1, 1));
    }
    assert!((stops[0].0 - stops[1].0).abs() < 0.2, "{stops:?}");
}

#[test]
fn the_gram_projector_needs_residuals() {
    struct Quadratic;
    impl Loss for Quadratic {
        fn name(&self) -> &str {
            "quadratic"
        }
        fn dim(&self) -> usize {
            2
        }
        fn value(&self, t: &[f64]) -> f64 {
            0.5 * t[0] * t[0]
        }
        fn gradient_into(&self, t: &[f64], g: &mut [f64]) {
            g.copy_from_slice(&[t[0], 0.0]);
        }
        fn hessian_into(&self, _t: &[f64], mut h: MatMut<'_, f64>) {
            h.fill(0.0);
            h[(0, 0)] = 1.0;
        }
    }
    let err = tangent_projection(&Quadratic, &[0.0, 1.0], Projector::Gram).unwrap_err();
    assert!(err.to_string().contains("least-squares"), "{err}");
    let (p, info) = tangent_projection(&Quadratic, &[0.0, 1.0], Projector::Auto).unwrap();
    assert_eq!((p, info.kernel_dim), (vec![0.0, 1.0], 1));
}
