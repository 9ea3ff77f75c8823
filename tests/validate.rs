//! End-to-end test of the `validate` binary in its quick mode: the report files, the fields
//! of report.json, and a clean error on bad input.

use std::process::Command;

#[test]
fn quick_validation_writes_its_report_and_passes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("quick");
    let o = Command::new(env!("CARGO_BIN_EXE_validate"))
        .args(["--quick", "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    // Nothing fails; a check whose window holds too few points leaves the run inconclusive,
    // and the exit code says which (0 passed, 4 inconclusive).
    let code = o.status.code();
    match report["outcome"].as_str().unwrap() {
        "passed" => assert_eq!(code, Some(0)),
        "inconclusive" => assert_eq!(code, Some(4)),
        other => panic!(
            "quick validation {other}: {}",
            String::from_utf8_lossy(&o.stdout)
        ),
    }
    let systems = report["systems"].as_array().unwrap();
    // Every registered system, and the regular-point matrix completion instance.
    assert_eq!(systems.len(), grokflow_systems::registry().len() + 1);
    for s in systems {
        for key in [
            "system",
            "lambdas",
            "prop1_errors",
            "prop2_errors",
            "prop1_order",
            "prop2_order",
            "passed",
        ] {
            assert!(s.get(key).is_some(), "{} lacks {key}", s["system"]);
        }
        let name = s["system"].as_str().unwrap();
        assert_eq!(
            s["lambdas"].as_array().unwrap().len(),
            s["prop1_errors"].as_array().unwrap().len()
        );
        // Props 1 and 2 are assessed and hold at first order on every system.
        let p1 = s["prop1_order"]
            .as_f64()
            .unwrap_or_else(|| panic!("{name}: E₁ not assessed"));
        assert!((p1 - 1.0).abs() <= 0.1, "{name}: order of E₁ = {p1}");
        let p2 = s["prop2_order"]
            .as_f64()
            .unwrap_or_else(|| panic!("{name}: E₂ not assessed"));
        assert!((p2 - 1.0).abs() <= 0.2, "{name}: order of E₂ = {p2}");
        for check in s["checks"].as_array().unwrap() {
            if check["name"] == "prop1" || check["name"] == "prop2" {
                assert_eq!(check["verdict"], "passed", "{name}: {}", check["detail"]);
            }
        }
        for fig in ["errors", "collapse"] {
            assert!(
                out.join(format!("{name}-{fig}.png")).exists(),
                "{name}-{fig}.png"
            );
        }
    }
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("criterion (fixed in advance)") && md.contains("## linear"));
}

#[test]
fn bad_validation_options_are_one_line_errors() {
    for args in [vec!["--systems", "quadratic"], vec!["--lambdas", "0.1,-1"]] {
        let o = Command::new(env!("CARGO_BIN_EXE_validate"))
            .args(&args)
            .args(["--out", "/tmp/grokflow-never"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.starts_with("error: ") && err.trim_end().lines().count() == 1,
            "{args:?}: {err}"
        );
    }
}

#[test]
fn ctrl_c_stops_validation_and_keeps_the_systems_finished() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    // linear takes a fraction of a second, relu several.
    let child = Command::new(env!("CARGO_BIN_EXE_validate"))
        .args(["--systems", "linear,relu", "--no-plot", "--out"])
        .arg(&out)
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let ok = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["interrupted"], "relu");
    assert_eq!(report["passed"], false);
    let systems = report["systems"].as_array().unwrap();
    assert_eq!(systems.len(), 1);
    assert_eq!(systems[0]["system"], "linear");
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("Interrupted"), "{md}");
}

/// A sweep too short to assess anything is inconclusive (exit 4), not a pass; and a thread
/// count is accepted.
#[test]
fn a_sweep_that_assesses_nothing_is_inconclusive() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("one");
    let o = Command::new(env!("CARGO_BIN_EXE_validate"))
        .args([
            "--quick",
            "--systems",
            "linear",
            "--lambdas",
            "1e-2",
            "--threads",
            "1",
        ])
        .args(["--no-plot", "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["outcome"], "inconclusive");
    assert_eq!(report["passed"], false);
    assert!(String::from_utf8_lossy(&o.stdout).contains("inconclusive"));
}

/// A usage error exits with 1 (an error), never with 2, which means a check failed.
#[test]
fn a_usage_error_is_an_error_not_a_failed_check() {
    let o = Command::new(env!("CARGO_BIN_EXE_validate"))
        .args(["--no-such-flag"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--no-such-flag"));
}
