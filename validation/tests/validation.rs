//! Validation measures what the theory claims, and can fail.

use grokflow_systems::linear::{LinearParams, LinearRegression};
use grokflow_systems::System;
use grokflow_validation::{validate_system, Defect, ValidationConfig, Verdict};

fn linear() -> LinearRegression {
    LinearRegression::generate(&LinearParams {
        n: 10,
        d: 60,
        ..LinearParams::default()
    })
    .unwrap()
}

fn quick() -> ValidationConfig {
    ValidationConfig {
        lambdas: vec![1e-1, 1e-2, 1e-3, 1e-4, 1e-5],
        ..ValidationConfig::default()
    }
}

#[test]
fn linear_regression_errors_are_first_order_in_lambda() {
    let v = validate_system(&linear() as &dyn System, &quick()).unwrap();
    for c in &v.checks {
        eprintln!("{}: {:?} {}", c.name, c.verdict, c.detail);
    }
    for r in &v.rows {
        eprintln!(
            "λ={:.0e} E1={:.3e} ({:.1e}) E2={:.3e} ({:.1e}) kkt={:?} lim={:?} τg={:?}",
            r.lambda,
            r.prop1_error,
            r.prop1_floor,
            r.prop2_error,
            r.prop2_floor,
            r.kkt_residual,
            r.limit_distance,
            r.tau_grok
        );
    }
    let p1 = v.prop1_order.expect("E₁ is assessed");
    let p2 = v.prop2_order.expect("E₂ is assessed");
    assert!((p1 - 1.0).abs() <= 0.1, "order of E₁ = {p1}");
    assert!((p2 - 1.0).abs() <= 0.1, "order of E₂ = {p2}");
    assert!(v.passed, "{:#?}", v.checks);
}

#[test]
fn a_wrong_flow_makes_validation_fail() {
    for defect in [Defect::DropDecay, Defect::FlipDecay] {
        let cfg = ValidationConfig {
            defect: Some(defect),
            ..quick()
        };
        let v = validate_system(&linear() as &dyn System, &cfg).unwrap();
        let failed: Vec<&str> = v
            .checks
            .iter()
            .filter(|c| c.verdict == Verdict::Failed)
            .map(|c| c.name.as_str())
            .collect();
        eprintln!("{defect:?}: failed {failed:?}");
        assert!(!v.passed, "{defect:?} was not caught: {:#?}", v.checks);
        assert!(
            failed.contains(&"prop2"),
            "{defect:?}: Prop 2 did not fail ({failed:?})"
        );
    }
}

/// Each check of the report fails on a wrong λ-flow made to break its claim.
#[test]
fn every_check_fails_on_a_defect_made_for_it() {
    let cases = [
        // A drift that does not vanish with λ: E₁ stops being first order.
        (Defect::Drift, "prop1"),
        // No weight decay: the slow phase never moves, θ_λ^∞ stays at Φ(θ_init), which is
        // not a KKT point, not θ_M^∞, and as far from θ_M^∞ as Φ(θ_init) is.
        (Defect::DropDecay, "prop2"),
        (Defect::DropDecay, "prop3"),
        (Defect::DropDecay, "prop4"),
        (Defect::DropDecay, "gap"),
        // Twice the decay: the slow phase runs twice as fast and τ_grok halves.
        (Defect::DoubleDecay, "tau_grok"),
    ];
    for (defect, check) in cases {
        let cfg = ValidationConfig {
            defect: Some(defect),
            ..quick()
        };
        let v = validate_system(&linear() as &dyn System, &cfg).unwrap();
        let c = v
            .checks
            .iter()
            .find(|c| c.name == check)
            .unwrap_or_else(|| panic!("no check {check}"));
        eprintln!("{defect:?} → {check}: {:?} ({})", c.verdict, c.detail);
        assert_eq!(
            c.verdict,
            Verdict::Failed,
            "{defect:?} did not make {check} fail: {}",
            c.detail
        );
        assert!(!v.passed);
    }
}

/// Without the defects every check of linear regression applies and passes.
#[test]
fn on_linear_regression_every_check_is_assessed_and_passes() {
    let v = validate_system(&linear() as &dyn System, &quick()).unwrap();
    for c in &v.checks {
        assert_eq!(c.verdict, Verdict::Passed, "{}: {}", c.name, c.detail);
    }
    assert_eq!(v.outcome, grokflow_validation::Outcome::Passed);
}
