//! The examples run end to end (cargo builds them beside the tests): the user loss of
//! examples/common through one run with the limiting flow, and through a λ sweep and the
//! validation report.

use std::path::PathBuf;
use std::process::Command;

/// The example binary `name`, built by cargo into target/<profile>/examples.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let path = profile.join("examples").join(name);
    assert!(path.exists(), "{} was not built", path.display());
    path
}

fn read_json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn the_own_loss_example_writes_a_full_run_directory() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tanh");
    let o = Command::new(example("tanh_network"))
        .args(["--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for f in [
        "summary.json",
        "trajectory.csv",
        "states.json",
        "limiting_flow.csv",
        "trajectory.png",
        "function.png",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let s = read_json(&out.join("summary.json"));
    assert_eq!(s["complete"], true);
    assert_eq!(s["lambda"], 1e-4);
    let (phi, end) = (
        s["phi"]["test_loss"].as_f64().unwrap(),
        s["final"]["test_loss"].as_f64().unwrap(),
    );
    // Grokking: the test loss falls at least tenfold after the fit.
    assert!(end < 0.1 * phi, "test loss {phi} at Φ, {end} at the end");
    // The limiting flow reaches θ_M^∞, on M (drift at the retraction tolerance).
    let lim = &s["limiting_flow"];
    assert!(lim["tau_limit"].as_f64().is_some(), "{lim}");
    assert!(lim["max_drift"].as_f64().unwrap() < 1e-10, "{lim}");
}

#[test]
fn the_validation_example_fits_first_order_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tanh-validation");
    let o = Command::new(example("tanh_validation"))
        .args(["--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for lambda in ["1e-2", "1e-4", "1e-6"] {
        assert!(out.join(format!("lambda{lambda}/summary.json")).exists());
    }
    let report = read_json(&out.join("report/report.json"));
    let v = &report["systems"][0];
    for key in ["prop1_order", "prop2_order"] {
        let p = v[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} not assessed"));
        assert!((p - 1.0).abs() <= 0.1, "{key} = {p}");
    }
    assert!(out.join("report/report.md").exists());
    assert!(out.join("report/tanh-network-errors.png").exists());
}
