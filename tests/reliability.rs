//! Bad and extreme inputs, one test per class: every user number bounded, sizes refused
//! before they are allocated, sweeps without repeated runs, shards that merge into the
//! unsharded sweep, a diverging method that says so, and instance files held to their
//! generation.

mod common;

use std::path::Path;

use common::{assert_clean_failure, read_json, simulate};

use serde_json::Value;

/// A clean refusal (see `common`) in a readable message.
fn refused(args: &[&str], needle: &str) {
    let err = assert_clean_failure(args, needle);
    assert!(err.len() < 400, "{args:?}: an unreadable message: {err}");
}

#[test]
fn every_user_number_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x");
    let out = out.to_str().unwrap();
    for (args, needle) in [
        (vec!["linear", "--lambda", "1e-300"], "[1e-12, 1e6]"),
        (vec!["linear", "--lambda", "5e-324"], "[1e-12, 1e6]"),
        (vec!["linear", "--lambda", "1e7"], "[1e-12, 1e6]"),
        (vec!["linear", "--rtol", "0.5"], "--rtol"),
        (vec!["linear", "--atol", "10"], "--atol"),
        (vec!["linear", "--per-decade", "100000000"], "--per-decade"),
        (
            vec!["linear", "--max-steps", "10000000000000"],
            "--max-steps",
        ),
        (vec!["linear", "--t-min", "1e9"], "--t-min"),
        (
            vec!["linear", "--tau-end", "1e300", "--lambda", "1e-12"],
            "t_end",
        ),
        (
            vec!["linear", "--lambdas", "1e-2,1e-3", "--threads", "100000"],
            "--threads",
        ),
        (
            vec!["linear", "--lambdas", "1e-2,1e-3", "--threads", "0"],
            "--threads",
        ),
        (vec!["relu", "--sharpness", "1e308"], "sharpness"),
        // The exact ReLU by diffsol's methods would grind through 10⁶ steps; grokflow's
        // BDF takes it event by event.
        (
            vec!["relu", "--activation", "relu", "--method", "esdirk34"],
            "non-smooth",
        ),
        (
            vec!["relu", "--activation", "relu", "--method", "tsit45"],
            "--method bdf",
        ),
        (vec!["linear", "--lr", "0.1"], "--method gd"),
        (
            vec!["linear", "--lambda", "1e-2", "--shard", "1/2"],
            "sweep",
        ),
        (
            vec!["linear", "--lambdas", "1e-2,1e-3", "--shard", "3/2"],
            "--shard",
        ),
    ] {
        let mut a = args.clone();
        a.extend(["--out", out, "-q"]);
        refused(&a, needle);
        assert!(!Path::new(out).exists(), "{a:?} created {out}");
    }
}

#[test]
fn a_run_too_large_for_memory_is_refused_before_it_allocates() {
    for args in [
        vec!["linear", "--d", "1000000"],
        vec!["linear", "--n", "100000000"],
        vec!["matrix-sensing", "--n", "100000"],
        vec!["diagonal", "--frequencies", "1000000"],
        vec!["matrix-completion", "--n1", "3000", "--n2", "3000"],
        vec!["modular", "--p", "5000"],
        vec!["relu", "--width", "100000000"],
    ] {
        refused(&[args.as_slice(), &["-q"]].concat(), "GB");
    }
    // Where the matrix-free solver fits, the message names it.
    refused(
        &["matrix-sensing", "--n", "3000", "-q"],
        "--linear-solver matrix-free",
    );
}

#[test]
fn a_sweep_never_repeats_a_run() {
    for (flag, list, needle) in [
        ("--lambdas", "1e-2,1e-2,1e-4", "twice"),
        ("--lambdas", "0.01,1e-2", "twice"),
        ("--seeds", "1,1", "twice"),
    ] {
        refused(
            &["linear", flag, list, "-q", "--out", "/tmp/grokflow-never"],
            needle,
        );
    }
}

#[test]
fn shards_merge_into_the_unsharded_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let (sharded, whole) = (dir.path().join("sharded"), dir.path().join("whole"));
    let lambdas = ["--lambdas", "1e-2,1e-3,1e-4", "--no-plot", "-q"];
    for k in ["1/2", "2/2"] {
        let o = simulate(
            &[
                &["linear", "--shard", k, "--out", sharded.to_str().unwrap()],
                &lambdas[..],
            ]
            .concat(),
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    assert!(!sharded.join("sweep_summary.json").exists());
    // Merging before every shard is there is refused.
    let partial = dir.path().join("partial");
    std::fs::create_dir(&partial).unwrap();
    std::fs::copy(
        sharded.join("sweep_summary.shard-1-of-2.json"),
        partial.join("sweep_summary.shard-1-of-2.json"),
    )
    .unwrap();
    refused(&["merge", partial.to_str().unwrap()], "missing");
    let o = simulate(&["merge", sharded.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = simulate(&[&["linear", "--out", whole.to_str().unwrap()], &lambdas[..]].concat());
    assert!(o.status.success());
    let a = read_json(&sharded.join("sweep_summary.json"));
    let b = read_json(&whole.join("sweep_summary.json"));
    let (a, b) = (a.as_array().unwrap(), b.as_array().unwrap());
    assert_eq!(a.len(), 3);
    for (x, y) in a.iter().zip(b) {
        for key in [
            "lambda",
            "seed",
            "steps",
            "test_final",
            "norm_final",
            "tau_grok",
        ] {
            assert_eq!(x[key], y[key], "{key}");
        }
    }
    // A shard of another sweep is refused.
    let other = dir.path().join("other");
    let o = simulate(&[
        "linear",
        "--lambdas",
        "1e-2,1e-3,1e-5",
        "--shard",
        "1/2",
        "--no-plot",
        "-q",
        "--out",
        other.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    std::fs::copy(
        other.join("sweep_summary.shard-1-of-2.json"),
        partial.join("sweep_summary.shard-1-of-2.json"),
    )
    .unwrap();
    std::fs::copy(
        sharded.join("sweep_summary.shard-2-of-2.json"),
        partial.join("sweep_summary.shard-2-of-2.json"),
    )
    .unwrap();
    refused(&["merge", partial.to_str().unwrap()], "different sweeps");
}

#[test]
fn gradient_descent_that_diverges_in_one_step_is_not_complete() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("gd");
    let o = simulate(&[
        "linear",
        "--method",
        "gd",
        "--lr",
        "1e9",
        "--no-plot",
        "-q",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let s = read_json(&out.join("summary.json"));
    assert_eq!(s["complete"], false);
    assert_eq!(s["stop_reason"]["kind"], "diverged", "{}", s["stop_reason"]);
}

#[test]
fn the_time_one_over_lambda_is_sampled_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    // 1/λ = 100 lies on the grid of 20 points per decade from 1e-2.
    let o = simulate(&[
        "linear",
        "--lambda",
        "1e-2",
        "--no-plot",
        "-q",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    let csv = std::fs::read_to_string(out.join("trajectory.csv")).unwrap();
    let times: Vec<f64> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[1] > w[0] * (1.0 + 1e-9)),
        "repeated or unordered times"
    );
    assert_eq!(
        times.iter().filter(|t| (**t - 100.0).abs() < 1e-6).count(),
        1
    );
}

#[test]
fn instance_files_are_held_to_their_numbers_and_their_generation() {
    let dir = tempfile::tempdir().unwrap();
    // --save-instance creates the folder it writes into.
    let file = dir.path().join("new/folder/linear.json");
    let o = simulate(&[
        "linear",
        "--save-instance",
        file.to_str().unwrap(),
        "--no-plot",
        "-q",
        "--out",
        dir.path().join("run").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&file).unwrap();
    // A size beside --instance is a generation parameter the file already fixes.
    refused(
        &[
            "linear",
            "--instance",
            file.to_str().unwrap(),
            "--d",
            "50",
            "-q",
        ],
        "--d",
    );
    // Numbers beyond ±1e100 are refused, not run into overflow.
    let mut v: Value = serde_json::from_str(&text).unwrap();
    v["y"][0] = serde_json::json!(1e200);
    let huge = dir.path().join("huge.json");
    std::fs::write(&huge, v.to_string()).unwrap();
    refused(
        &["linear", "--instance", huge.to_str().unwrap(), "-q"],
        "1e100",
    );
}
