//! Modular addition: the split, the accuracy bookkeeping, the instance file, and the
//! residual structure the Newton solves and the limiting flow rely on.

use grokflow_engine::la::norm;
use grokflow_engine::{
    check_derivatives, integrate, log_time_grid, phi, GradientFlow, Loss, Method, Observables,
    Options, PhiOptions, Recorder, Residuals, StopReason, Time, TimeScale,
};
use grokflow_systems::modular::{ModularActivation, ModularAddition, ModularParams};
use grokflow_systems::System;

fn small(p: usize, width: usize, seed: u64) -> ModularAddition {
    ModularAddition::generate(&ModularParams {
        p,
        width,
        seed,
        ..ModularParams::default()
    })
    .unwrap()
}

#[test]
fn the_split_partitions_every_pair_in_the_stated_proportion() {
    for (p, f) in [(5, 0.6), (13, 0.6), (11, 0.3)] {
        let m = ModularAddition::generate(&ModularParams {
            p,
            width: 4,
            train_fraction: f,
            ..ModularParams::default()
        })
        .unwrap();
        let file = m.to_file();
        let mut all: Vec<(usize, usize)> = file.train.iter().chain(&file.test).copied().collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), p * p, "p = {p}: every pair once");
        assert_eq!(file.train.len() + file.test.len(), p * p);
        assert_eq!(file.train.len(), (f * (p * p) as f64).round() as usize);
        assert_eq!(Residuals::count(&m), file.train.len() * p);
        assert_eq!(m.dim(), 3 * p * 4);
    }
}

#[test]
fn accuracies_count_the_argmax_of_the_outputs() {
    let m = small(7, 12, 3);
    let theta: Vec<f64> = m.theta_init().to_vec();
    let file = m.to_file();
    let count = |pairs: &[(usize, usize)]| {
        pairs
            .iter()
            .filter(|&&(a, b)| {
                let o = m.logits(&theta, a, b);
                let best = (0..7).max_by(|&x, &y| o[x].total_cmp(&o[y])).unwrap();
                best == (a + b) % 7
            })
            .count() as f64
            / pairs.len() as f64
    };
    let (train, test) = m.accuracies(&theta);
    assert_eq!(train, count(&file.train));
    assert_eq!(test, count(&file.test));
    // The columns and the report say the same.
    let mut cols = Vec::new();
    m.extra_values(&theta, &mut cols);
    assert_eq!(m.extra_columns(), vec!["train_accuracy", "test_accuracy"]);
    assert_eq!(cols, vec![train, test]);
    let report = System::report(&m, &theta);
    assert_eq!(report["train_accuracy"], train);
    assert_eq!(report["test_accuracy"], test);
    // The loss: Σ‖o − e_c‖²/2N over the training pairs, the test loss the same on the rest.
    let loss = |pairs: &[(usize, usize)]| {
        pairs
            .iter()
            .map(|&(a, b)| {
                let o = m.logits(&theta, a, b);
                (0..7)
                    .map(|k| (o[k] - f64::from(u8::from(k == (a + b) % 7))).powi(2))
                    .sum::<f64>()
                    / 2.0
            })
            .sum::<f64>()
            / pairs.len() as f64
    };
    assert!((m.value(&theta) - loss(&file.train)).abs() < 1e-12 * loss(&file.train));
    let test_loss = m.test_loss(&theta).unwrap();
    assert!((test_loss - loss(&file.test)).abs() < 1e-12 * test_loss);
}

#[test]
fn a_network_that_outputs_the_answer_scores_one() {
    // w = p hidden units, σ(z) = z²: E₁ = 0 and E₂_{b,i} = δ_{i,b} give hᵢ = δ_{i,b}, and
    // W_{k,i} = 1 for k = i + 2 (mod p) gives o = e_{b+2}: the answer exactly on the pairs
    // with a = 2.
    let p = 5;
    let m = small(p, p, 0);
    let mut theta = vec![0.0; 3 * p * p];
    for b in 0..p {
        theta[(p + b) * p + b] = 1.0; // E₂_{b,b}
    }
    for k in 0..p {
        let i = (k + p - 2) % p; // W_{k,i} = 1 for k = i + 2: the answer when a = 2
        theta[(2 * p + k) * p + i] = 1.0;
    }
    let file = m.to_file();
    let with_a2 = |pairs: &[(usize, usize)]| {
        pairs.iter().filter(|(a, _)| *a == 2).count() as f64 / pairs.len() as f64
    };
    let (train, test) = m.accuracies(&theta);
    assert_eq!(train, with_a2(&file.train));
    assert_eq!(test, with_a2(&file.test));
}

#[test]
fn the_instance_file_round_trips_and_bad_ones_are_refused() {
    let m = small(7, 6, 11);
    let json = m.instance_json();
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    let back = (grokflow_systems::find("modular").unwrap().load)(value.clone()).unwrap();
    assert_eq!(back.instance_json(), json);
    assert_eq!(back.theta_init(), m.theta_init());
    let theta = m.theta_init();
    assert_eq!(back.value(theta), m.value(theta));
    for (field, bad, says) in [
        ("p", serde_json::json!(1), "between 2"),
        ("train", serde_json::json!([[7, 0]]), "outside"),
        ("train", serde_json::json!([]), "no training pairs"),
        ("theta_init", serde_json::json!([1.0, 2.0]), "3pw"),
    ] {
        let mut v = value.clone();
        v[field] = bad;
        let err = (grokflow_systems::find("modular").unwrap().load)(v)
            .err()
            .unwrap_or_else(|| panic!("{field} accepted"))
            .to_string();
        assert!(err.contains(says), "{field}: {err}");
    }
}

#[test]
fn derivatives_and_curvature_blocks_pass_the_check_for_both_activations() {
    let base = small(5, 6, 2);
    for act in [
        ModularActivation::Quadratic,
        ModularActivation::Softplus { beta: 4.0 },
    ] {
        let m = base.with_activation(act);
        let theta: Vec<f64> = m.theta_init().iter().map(|x| 0.7 * x + 0.05).collect();
        let rep = check_derivatives(&m, &theta, 1e-8);
        assert!(rep.passed, "{act:?}: {:?}", rep.failures());
        assert!(rep.hvp < 1e-6 && rep.hessian < 1e-6, "{act:?}: {rep:?}");
        assert!(norm(&m.gradient(&theta)) > 0.0);
    }
}

/// The default instance groks at λ = 1e-3 (the claim): every training pair right by
/// t = 100, test accuracy at Φ(θ_init) no better than chance 1/p, and ≥ 0.95 at τ = 30.
#[test]
fn the_default_instance_groks_at_lambda_1e_3() {
    let system = ModularAddition::generate(&ModularParams::default()).unwrap();
    let p = ModularParams::default().p as f64;
    let theta0 = system.theta_init();
    let phi = phi(&system, theta0, &PhiOptions::default(), &mut []).expect("Φ converges");
    let (_, test_phi) = system.accuracies(&phi.theta);
    assert!(
        test_phi <= 1.0 / p,
        "test accuracy at Φ {test_phi} above chance"
    );
    let lambda = 1e-3;
    let flow = GradientFlow::regularised(&system, lambda, TimeScale::Slow).unwrap();
    let grid = log_time_grid(1e-2, 30.0 / lambda, 10);
    let mut rec = Recorder::new(flow, &system, &grid);
    let opts = Options {
        rtol: 1e-6,
        atol: 1e-8,
        end: Time::Slow(30.0),
        ..Default::default()
    };
    let out = integrate(&flow, theta0, Method::Bdf, &opts, &mut [&mut rec]).unwrap();
    assert_eq!(out.stop, StopReason::Finished);
    let traj = rec.into_trajectory();
    let col = traj
        .extra_columns
        .iter()
        .position(|c| c == "train_accuracy")
        .expect("a train accuracy column");
    let fitted = traj
        .samples
        .iter()
        .find(|s| s.extra[col] == 1.0)
        .map(|s| s.t)
        .expect("every training pair is fitted");
    assert!(fitted <= 100.0, "train accuracy 1.0 only at t = {fitted}");
    let (train_end, test_end) = system.accuracies(&out.theta_final);
    eprintln!("modular λ = 1e-3: fitted at t = {fitted:.1}, test accuracy {test_phi:.3} at Φ, {test_end:.3} at τ = 30, {} steps", out.stats.steps);
    assert_eq!(train_end, 1.0);
    assert!(test_end >= 0.95, "test accuracy {test_end} at τ = 30");
}
