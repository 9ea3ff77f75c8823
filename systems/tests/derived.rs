//! Every system's derived twin (automatic differentiation of its residuals, written once
//! generically) against its hand-written derivatives, to 1e-12 relative, and a run of the
//! derived loss against the hand-written one.

use grokflow_engine::la::{distance, matvec_into, norm, DMat};
use grokflow_engine::{integrate, GradientFlow, Method, Options, StopReason, Time, TimeScale};
use grokflow_systems::data::{gaussian_vec, rng};
use grokflow_systems::{registry, System};

/// ‖a − b‖/max(‖b‖, 1e-300): relative distance.
fn rel(a: &[f64], b: &[f64]) -> f64 {
    distance(a, b) / norm(b).max(1e-300)
}

fn mat(a: &DMat) -> Vec<f64> {
    (0..a.ncols())
        .flat_map(|j| (0..a.nrows()).map(move |i| (i, j)))
        .map(|(i, j)| a[(i, j)])
        .collect()
}

#[test]
fn derived_derivatives_agree_with_the_hand_written_ones() {
    for spec in registry() {
        for seed in [3, 4] {
            let hand = (spec.cheap)(seed).unwrap();
            let derived = hand.derived().expect("every system has a twin").unwrap();
            assert_eq!(derived.derivatives(), "derived");
            let (d, label) = (hand.dim(), format!("{} seed {seed}", spec.name));
            let mut g = rng(seed + 100);
            for k in 0..3 {
                let theta = if k == 0 {
                    hand.theta_init().to_vec()
                } else {
                    gaussian_vec(&mut g, d, 1.0)
                };
                let v = gaussian_vec(&mut g, d, 1.0);
                let tol = 1e-12;
                let check = |what: &str, a: &[f64], b: &[f64]| {
                    let e = rel(a, b);
                    assert!(e <= tol, "{label} point {k}: {what} off by {e:e}");
                };
                check("F", &[derived.value(&theta)], &[hand.value(&theta)]);
                check("∇F", &derived.gradient(&theta), &hand.gradient(&theta));
                check(
                    "∇²F",
                    &mat(&derived.hessian(&theta)),
                    &mat(&hand.hessian(&theta)),
                );
                let (mut hv_d, mut hv_h) = (vec![0.0; d], vec![0.0; d]);
                derived.hvp_into(&theta, &v, &mut hv_d);
                hand.hvp_into(&theta, &v, &mut hv_h);
                check("∇²F·v", &hv_d, &hv_h);
                let (rd, rh) = (derived.residuals().unwrap(), hand.residuals().unwrap());
                let m = rh.count();
                let (mut jd, mut jh) = (DMat::zeros(m, d), DMat::zeros(m, d));
                rd.jacobian_into(&theta, jd.as_mut());
                rh.jacobian_into(&theta, jh.as_mut());
                check("J", &mat(&jd), &mat(&jh));
                let (mut a, mut b) = (vec![0.0; m], vec![0.0; m]);
                rd.jvp_into(&theta, &v, &mut a);
                matvec_into(jh.as_ref(), &v, &mut b);
                check("J·v", &a, &b);
                let u = gaussian_vec(&mut g, m, 1.0);
                let (mut a, mut b) = (vec![0.0; d], vec![0.0; d]);
                rd.vjp_into(&theta, &u, &mut a);
                matvec_into(jh.transpose(), &u, &mut b);
                check("Jᵀ·u", &a, &b);
                let groups = rh.curvature_groups().unwrap();
                assert_eq!(rd.curvature_groups(), Some(groups.clone()));
                let size: usize = groups.iter().map(|x| x.len() * x.len()).sum();
                let (mut a, mut b) = (vec![0.0; size], vec![0.0; size]);
                rd.curvature_blocks_into(&theta, &mut a);
                rh.curvature_blocks_into(&theta, &mut b);
                // R is zero for affine residuals: compare against the Hessian's scale then.
                let scale = norm(&b).max(norm(&mat(&hand.hessian(&theta))));
                assert!(
                    distance(&a, &b) <= tol * scale,
                    "{label} point {k}: curvature blocks off by {:e}",
                    distance(&a, &b) / scale
                );
            }
        }
    }
}

fn run(system: &dyn System, lambda: f64) -> (Vec<f64>, usize) {
    let flow = GradientFlow::regularised(system, lambda, TimeScale::Slow).unwrap();
    let opts = Options {
        rtol: 1e-10,
        atol: 1e-12,
        end: Time::Slow(3.0),
        ..Options::default()
    };
    let out = integrate(&flow, system.theta_init(), Method::Bdf, &opts, &mut []).unwrap();
    assert_eq!(out.stop, StopReason::Finished, "{}", system.name());
    (out.theta_final, out.stats.steps)
}

#[test]
fn a_run_on_the_derived_loss_ends_where_the_hand_written_one_does() {
    for spec in registry() {
        let hand = (spec.cheap)(5).unwrap();
        let derived = hand.derived().unwrap().unwrap();
        for lambda in [1e-2, 1e-5] {
            let (a, steps_a) = run(derived.as_ref(), lambda);
            let (b, steps_b) = run(hand.as_ref(), lambda);
            let e = rel(&a, &b);
            eprintln!(
                "{} λ = {lambda:e}: end states {e:.1e} apart, steps {steps_a} derived, {steps_b} hand",
                spec.name
            );
            assert!(e <= 1e-9, "{} λ = {lambda:e}: {e:e}", spec.name);
        }
    }
}
