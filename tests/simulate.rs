//! End-to-end tests of the `simulate` binary: the files of a run, their fields, the
//! instance round trip, and a one-line error with a non-zero exit for every bad input.

mod common;

use std::path::Path;
use std::process::Command;

use common::{assert_clean_failure, read_json, simulate};

use serde_json::Value;

fn num(v: &Value, path: &str) -> f64 {
    let mut cur = v;
    for key in path.split('.') {
        cur = &cur[key];
    }
    cur.as_f64()
        .unwrap_or_else(|| panic!("{path} is not a number: {cur}"))
}

#[test]
fn default_linear_run_writes_every_documented_file_and_shows_grokking() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let o = simulate(&["linear", "--lambda", "1e-4", "--out", out.to_str().unwrap()]);
    assert!(
        o.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("grokking"), "{stdout}");

    let s = read_json(&out.join("summary.json"));
    assert_eq!(s["system"], "linear");
    assert_eq!(s["method"], "bdf");
    assert_eq!(num(&s, "lambda"), 1e-4);
    assert_eq!(s["seed"], 0);
    assert_eq!(num(&s, "rtol"), 1e-8);
    assert_eq!(num(&s, "atol"), 1e-10);
    for key in [
        "steps",
        "rhs_evals",
        "jac_evals",
        "lu_factorisations",
        "wall_s",
    ] {
        assert!(num(&s, &format!("stats.{key}")) > 0.0, "stats.{key}");
    }
    for key in ["train_loss", "test_loss", "norm"] {
        num(&s, &format!("phi.{key}"));
    }
    for key in ["t", "tau", "train_loss", "test_loss", "norm", "grad_norm"] {
        num(&s, &format!("final.{key}"));
    }
    assert!((num(&s, "final.tau") - 10.0).abs() < 1e-9);
    let (t_fit, t_grok, tau_grok) = (
        num(&s, "grokking.t_fit"),
        num(&s, "grokking.t_grok"),
        num(&s, "grokking.tau_grok"),
    );
    assert!(t_fit < 1e2 && t_grok > 1e3 && (tau_grok - 1e-4 * t_grok).abs() < 1e-12 * t_grok);
    assert_eq!(s["stop_reason"]["kind"], "finished");
    assert_eq!(s["complete"], true);
    // The default instance shows grokking plainly.
    assert!(num(&s, "phi.test_loss") >= 10.0 * num(&s, "final.test_loss"));
    // The fast phase interpolates: F(Φ(θ_init)) ≈ 0.
    assert!(num(&s, "phi.train_loss") < 1e-12);

    let csv = std::fs::read_to_string(out.join("trajectory.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "t,tau,train_loss,test_loss,theta_norm,grad_norm"
    );
    let rows: Vec<Vec<f64>> = lines
        .map(|l| l.split(',').map(|x| x.parse::<f64>().unwrap()).collect())
        .collect();
    assert!(rows.len() > 100);
    assert_eq!(rows[0][0], 0.0);
    assert!((rows.last().unwrap()[1] - 10.0).abs() < 1e-9);
    assert!(rows.windows(2).all(|w| w[1][0] > w[0][0]), "times increase");

    let st = read_json(&out.join("states.json"));
    for key in ["theta_init", "phi", "theta_final"] {
        assert_eq!(st[key].as_array().map(|a| a.len()), Some(200), "{key}");
    }
    let png = std::fs::read(out.join("trajectory.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
}

#[test]
fn instance_round_trip_and_both_clocks_give_the_same_run() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let inst = p("inst.json");
    let a = simulate(&[
        "linear",
        "--lambda",
        "1e-3",
        "--seed",
        "5",
        "--n",
        "10",
        "--d",
        "40",
        "--save-instance",
        &inst,
        "--out",
        &p("a"),
        "--no-plot",
        "-q",
    ]);
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    let b = simulate(&[
        "linear",
        "--lambda",
        "1e-3",
        "--instance",
        &inst,
        "--out",
        &p("b"),
        "--no-plot",
        "-q",
    ]);
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    let c = simulate(&[
        "linear",
        "--lambda",
        "1e-3",
        "--instance",
        &inst,
        "--time",
        "fast",
        "--rtol",
        "1e-10",
        "--atol",
        "1e-12",
        "--out",
        &p("c"),
        "--no-plot",
        "-q",
    ]);
    assert!(c.status.success(), "{}", String::from_utf8_lossy(&c.stderr));
    let sa = read_json(&dir.path().join("a/states.json"));
    let sb = read_json(&dir.path().join("b/states.json"));
    let sc = read_json(&dir.path().join("c/states.json"));
    // The file reproduces the generated instance exactly: identical runs.
    assert_eq!(sa["theta_init"], sb["theta_init"]);
    assert_eq!(sa["theta_final"], sb["theta_final"]);
    let fa: Vec<f64> = serde_json::from_value(sa["theta_final"].clone()).unwrap();
    let fc: Vec<f64> = serde_json::from_value(sc["theta_final"].clone()).unwrap();
    let diff = fa
        .iter()
        .zip(&fc)
        .map(|(x, y)| (x - y).powi(2))
        .sum::<f64>()
        .sqrt();
    assert!(diff < 1e-6, "slow and fast clocks differ by {diff}");
    let summary = read_json(&dir.path().join("b/summary.json"));
    assert_eq!(summary["instance"]["source"], "file");
}

#[test]
fn a_run_that_stops_early_writes_what_it_recorded_and_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("gd");
    // η(L + λ) > 2: gradient descent diverges.
    let o = simulate(&[
        "linear",
        "--lambda",
        "1e-2",
        "--method",
        "gd",
        "--lr",
        "1",
        "--out",
        out.to_str().unwrap(),
        "-q",
    ]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let s = read_json(&out.join("summary.json"));
    assert_eq!(s["complete"], false);
    assert_eq!(s["stop_reason"]["kind"], "diverged");
    assert!(out.join("trajectory.csv").exists() && out.join("states.json").exists());
}

#[test]
fn bad_input_gets_a_one_line_error_and_a_nonzero_exit() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x");
    let out = out.to_str().unwrap();
    for (args, needle) in [
        (vec!["--lambda", "0"], "--lambda"),
        (vec!["--lambda", "-1e-3"], "--lambda"),
        (vec!["--lambda", "NaN"], "--lambda"),
        (vec!["--lambda", "inf"], "--lambda"),
        (vec!["--n", "50", "--d", "50"], "n < d"),
        (vec!["--n", "0"], "at least 1"),
        (vec!["--d", "0"], "at least 1"),
        (vec!["--tau-end", "0"], "--tau-end"),
        (vec!["--rtol", "-1"], "rtol"),
        (
            vec!["--method", "esdirk34", "--linear-solver", "matrix-free"],
            "matrix-free",
        ),
        (
            vec!["--method", "tr-bdf2", "--linear-solver", "structured"],
            "structured",
        ),
        (
            vec!["--method", "gd", "--lr", "0.01", "--lambda", "1e-8"],
            "iterations",
        ),
        (vec!["--max-order", "7"], "1 to 6"),
        (
            vec!["--method", "esdirk34", "--max-order", "5"],
            "bdf method only",
        ),
        (vec!["--max-steps", "0"], "--max-steps"),
    ] {
        let mut a = vec!["linear"];
        a.extend(args);
        a.extend(["--out", out, "-q"]);
        assert_clean_failure(&a, needle);
        // Refused before any work: no run directory, no Φ.
        assert!(!Path::new(out).exists(), "{a:?} created {out}");
    }

    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let cases = [
        (
            dir.path()
                .join("missing.json")
                .to_str()
                .unwrap()
                .to_string(),
            "cannot read",
        ),
        (
            write("trunc.json", r#"{"system":"linear","x":[[1,2"#),
            "not valid JSON",
        ),
        (
            write(
                "shape.json",
                r#"{"system":"linear","x":[[1,2]],"y":[1],"theta_init":[1,2,3]}"#,
            ),
            "row 0 has 2 entries",
        ),
        (
            write(
                "y.json",
                r#"{"system":"linear","x":[[1,2,3]],"y":[1,2],"theta_init":[1,2,3]}"#,
            ),
            "y has 2 entries",
        ),
        (
            write(
                "nan.json",
                r#"{"system":"linear","x":[[1,2,3]],"y":[NaN],"theta_init":[1,2,3]}"#,
            ),
            "not valid JSON",
        ),
        (
            write(
                "null.json",
                r#"{"system":"linear","x":[[1,2,3]],"y":[null],"theta_init":[1,2,3]}"#,
            ),
            "invalid type",
        ),
        (
            write(
                "square.json",
                r#"{"system":"linear","x":[[1,0],[0,1]],"y":[1,1],"theta_init":[1,2]}"#,
            ),
            "n < d",
        ),
        (
            write("other.json", r#"{"system":"quadratic"}"#),
            "unknown system",
        ),
        (write("nosys.json", r#"{"x":[[1,2,3]]}"#), "no \"system\""),
        (
            write(
                "extra.json",
                r#"{"system":"linear","x":[[1,2,3]],"y":[1],"theta_init":[1,2,3],"typo":1}"#,
            ),
            "unknown field",
        ),
    ];
    for (path, needle) in cases {
        assert_clean_failure(&["linear", "--instance", &path, "--out", out, "-q"], needle);
    }

    // An output directory that cannot be created.
    let blocker = write("file", "not a directory");
    assert_clean_failure(
        &["linear", "--out", &format!("{blocker}/sub"), "-q"],
        "output directory",
    );
}

#[test]
fn every_system_runs_end_to_end_with_its_own_outputs() {
    let dir = tempfile::tempdir().unwrap();
    for (system, extra_file) in [
        ("matrix-completion", "singular_values.png"),
        ("matrix-sensing", "singular_values.png"),
        ("diagonal", "function.csv"),
        ("relu", "function.csv"),
    ] {
        let out = dir.path().join(system);
        let o = simulate(&[
            system,
            "--lambda",
            "1e-3",
            "--out",
            out.to_str().unwrap(),
            "-q",
        ]);
        assert!(
            o.status.success(),
            "{system}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let s = read_json(&out.join("summary.json"));
        assert_eq!(s["system"], system);
        assert_eq!(s["complete"], true);
        assert!(
            num(&s, "phi.test_loss") >= 10.0 * num(&s, "final.test_loss"),
            "{system}: no grokking"
        );
        assert!(
            s["report"]["final"].is_object() && s["report"]["phi"].is_object(),
            "{system}: report"
        );
        assert!(
            out.join(extra_file).exists(),
            "{system}: {extra_file} missing"
        );
        assert!(out.join("trajectory.png").exists());
        let header = std::fs::read_to_string(out.join("trajectory.csv")).unwrap();
        let header = header.lines().next().unwrap().to_string();
        assert!(
            header.starts_with("t,tau,train_loss,test_loss,theta_norm,grad_norm,"),
            "{system}: {header}"
        );
        match system {
            "matrix-completion" | "matrix-sensing" => {
                assert!(
                    header.contains(",sv_1,") && header.contains("weight_sq_norm"),
                    "{header}"
                );
                assert!(s["report"]["final"]["effective_rank"].as_u64().is_some());
            }
            "diagonal" => {
                assert!(
                    header.contains("beta_l1") && header.contains("beta_nnz"),
                    "{header}"
                );
                assert_eq!(s["report"]["final"]["support_recovered"], true);
            }
            _ => {
                assert!(header.contains("kinks"), "{header}");
                let f = std::fs::read_to_string(out.join("function.csv")).unwrap();
                assert!(
                    f.starts_with("x,teacher,f_init,f_phi,f_one_over_lambda,f_final\n"),
                    "{}",
                    &f[..80]
                );
                assert_eq!(f.lines().count(), 402);
                // Fewer kinks after the slow phase than at Φ(θ_init).
                let kinks = |k: &str| s["report"][k]["kink_count"].as_u64().unwrap();
                assert!(
                    kinks("final") < kinks("phi"),
                    "kinks {} → {}",
                    kinks("phi"),
                    kinks("final")
                );
            }
        }
        // Instance round trip through the binary.
        let inst = dir.path().join(format!("{system}.json"));
        let o = simulate(&[
            system,
            "--save-instance",
            inst.to_str().unwrap(),
            "--lambda",
            "1e-2",
            "--tau-end",
            "1",
            "--out",
            dir.path().join("x").to_str().unwrap(),
            "-q",
            "--no-plot",
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let o = simulate(&[
            system,
            "--instance",
            inst.to_str().unwrap(),
            "--lambda",
            "1e-2",
            "--tau-end",
            "1",
            "--out",
            dir.path().join("y").to_str().unwrap(),
            "-q",
            "--no-plot",
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(
            read_json(&dir.path().join("x/states.json"))["theta_final"],
            read_json(&dir.path().join("y/states.json"))["theta_final"],
            "{system}: the saved instance does not reproduce the run"
        );
    }
}

/// Runs `system` at λ = 1e-4 with `--linear-solver choice` into `dir/choice` and returns its
/// summary.json.
fn run_with_linear_solver(dir: &Path, system: &str, choice: &str) -> serde_json::Value {
    let out = dir.join(choice);
    let o = simulate(&[
        system,
        "--lambda",
        "1e-4",
        "--linear-solver",
        choice,
        "--no-plot",
        "--out",
        out.to_str().unwrap(),
        "-q",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    read_json(&out.join("summary.json"))
}

#[test]
fn the_linear_solver_is_selectable_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let mut finals = Vec::new();
    for choice in ["dense", "matrix-free"] {
        let s = run_with_linear_solver(dir.path(), "matrix-completion", choice);
        assert_eq!(s["stats"]["linear_solver"], choice.replace('-', "_"));
        let krylov = num(&s, "stats.krylov_iterations");
        assert_eq!(krylov > 0.0, choice == "matrix-free", "{}", s["stats"]);
        finals.push(num(&s, "final.norm"));
    }
    let gap = (finals[0] - finals[1]).abs() / finals[0];
    assert!(gap < 1e-6, "final norms {finals:?}");
}

#[test]
fn the_bdf_order_cap_is_selectable_and_recorded() {
    // Order 6 by default; ode15s's and scipy's cap of 5 on request, which takes more steps
    // (linear regression at λ = 1e-4, rtol 1e-8: 310 against 364).
    let dir = tempfile::tempdir().unwrap();
    let run = |cap: Option<&str>| {
        let out = dir.path().join(cap.unwrap_or("default"));
        let mut a = vec!["linear", "--lambda", "1e-4", "--no-plot", "-q"];
        a.extend(cap.map(|q| ["--max-order", q]).into_iter().flatten());
        a.extend(["--out", out.to_str().unwrap()]);
        let o = simulate(&a);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        read_json(&out.join("summary.json"))
    };
    let (six, five) = (run(None), run(Some("5")));
    assert!(six["max_order"].is_null(), "{}", six["max_order"]);
    assert_eq!(five["max_order"], 5);
    let (a, b) = (num(&six, "stats.steps"), num(&five, "stats.steps"));
    assert!(a < 0.9 * b, "{a} steps by default against {b} at order ≤ 5");
    let gap = (num(&six, "final.norm") - num(&five, "final.norm")).abs() / num(&five, "final.norm");
    assert!(gap < 1e-6, "final norms differ by {gap}");
}

#[test]
fn the_structured_solver_is_the_default_where_the_loss_allows_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut finals = Vec::new();
    for choice in ["auto", "dense", "structured"] {
        let s = run_with_linear_solver(dir.path(), "relu", choice);
        let want = if choice == "dense" {
            "dense"
        } else {
            "structured"
        };
        assert_eq!(s["stats"]["linear_solver"], want);
        finals.push(num(&s, "final.norm"));
    }
    for f in &finals[1..] {
        let gap = (f - finals[0]).abs() / finals[0];
        assert!(gap < 1e-8, "final norms {finals:?}");
    }
}

#[test]
fn a_tolerance_below_the_rounding_floor_is_warned_about() {
    // At λ = 1e-8 the attainable accuracy is about 0.1·ε/λ ≈ 2e-9: rtol 1e-12 is refused
    // by the arithmetic, and the user is told so (in the summary and on stderr).
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("floor");
    let o = simulate(&[
        "linear",
        "--lambda",
        "1e-8",
        "--rtol",
        "1e-12",
        "--tau-end",
        "1e-3",
        "--no-plot",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = read_json(&out.join("summary.json"));
    let warnings = s["warnings"].to_string();
    assert!(warnings.contains("attainable accuracy"), "{warnings}");
    // The default tolerance at the default λ draws no such warning.
    let out = dir.path().join("fine");
    let o = simulate(&["linear", "--no-plot", "-q", "--out", out.to_str().unwrap()]);
    assert!(o.status.success());
    let s = read_json(&out.join("summary.json"));
    assert!(
        !s["warnings"].to_string().contains("attainable"),
        "{}",
        s["warnings"]
    );
}

#[test]
fn presets_and_a_parameter_sweep_run() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sweep");
    let o = simulate(&[
        "relu",
        "--lambda",
        "1e-3",
        "--sweep",
        "sharpness=5,20",
        "--out",
        out.to_str().unwrap(),
        "-q",
        "--no-plot",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let csv = std::fs::read_to_string(out.join("sweep_summary.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
    let (five, twenty) = (
        out.join("lambda1e-3-sharpness5/summary.json"),
        out.join("lambda1e-3-sharpness20/summary.json"),
    );
    assert!(five.exists() && twenty.exists());
    // The same instance at both sharpnesses, and the second's final function compared with
    // the first's.
    let (a, b) = (read_json(&five), read_json(&twenty));
    assert_eq!(a["report"]["final"]["activation"]["beta"], 5.0);
    assert_eq!(b["report"]["final"]["activation"]["beta"], 20.0);
    let entries = read_json(&out.join("sweep_summary.json"));
    assert!(entries[0]["sup_change"].is_null());
    assert!(entries[1]["sup_change"]
        .as_f64()
        .is_some_and(|d| d > 0.0 && d.is_finite()));
    // The diagonal preset: the paper's λ and initialisation variance.
    let out = dir.path().join("fig4");
    let o = simulate(&[
        "diagonal",
        "--preset",
        "paper-fig4",
        "--tau-end",
        "1",
        "--out",
        out.to_str().unwrap(),
        "-q",
        "--no-plot",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = read_json(&out.join("summary.json"));
    assert_eq!(num(&s, "lambda"), 1e-4);
    assert_eq!(num(&s, "instance.params.init_variance"), 0.1);
    // A flag beats the preset.
    let o = simulate(&[
        "matrix-completion",
        "--preset",
        "paper-fig2",
        "--method",
        "bdf",
        "--lambda",
        "1e-2",
        "--tau-end",
        "1",
        "--out",
        out.to_str().unwrap(),
        "-q",
        "--no-plot",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = read_json(&out.join("summary.json"));
    assert_eq!(s["method"], "bdf");
    assert_eq!(num(&s, "lambda"), 1e-2);
    assert_eq!(num(&s, "instance.params.observed"), 0.5);
}

#[test]
fn bad_system_parameters_get_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x");
    let out = out.to_str().unwrap();
    for (args, needle) in [
        (vec!["matrix-completion", "--rank", "30"], "rank"),
        (vec!["matrix-completion", "--width", "0"], "width"),
        (
            vec!["matrix-completion", "--observed", "0"],
            "observed fraction",
        ),
        (
            vec!["matrix-completion", "--observed", "1.5"],
            "observed fraction",
        ),
        (
            vec!["matrix-completion", "--singular-values", "1,2"],
            "singular value",
        ),
        (
            vec!["matrix-completion", "--init-scale", "nan"],
            "init scale",
        ),
        (vec!["matrix-sensing", "--measurements", "0"], "measurement"),
        (vec!["matrix-sensing", "--rank", "11"], "rank"),
        (vec!["matrix-sensing", "--width", "0"], "at least 1"),
        (vec!["diagonal", "--n", "200"], "overparameterised"),
        (vec!["diagonal", "--teacher-sparsity", "0"], "non-zeros"),
        (vec!["diagonal", "--init-variance", "-1"], "init variance"),
        (vec!["relu", "--width", "0"], "neuron"),
        (vec!["relu", "--sharpness", "0"], "sharpness"),
        (vec!["relu", "--sweep", "sharpness=10,-1"], "sharpness"),
        (vec!["relu", "--sweep", "beta=10,100"], "no parameter"),
        (vec!["linear", "--lambdas", "1e-2,0.01"], "twice"),
    ] {
        let mut a = args.clone();
        a.extend(["--out", out, "-q"]);
        assert_clean_failure(&a, needle);
    }
}

#[test]
fn the_limiting_flow_runs_beside_the_lambda_flow() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("lim");
    let o = simulate(&[
        "linear",
        "--lambda",
        "1e-4",
        "--limiting-flow",
        "--out",
        out.to_str().unwrap(),
        "-q",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = read_json(&out.join("summary.json"));
    for key in [
        "norm",
        "test_loss",
        "max_drift",
        "kkt_residual",
        "tau_stopped",
        "max_distance",
        "tau0",
    ] {
        num(&s, &format!("limiting_flow.{key}"));
    }
    assert_eq!(s["limiting_flow"]["stop_reason"]["kind"], "finished");
    // On linear regression the flows agree to O(λ) on τ ≥ τ₀ and the limit is reached.
    assert!(
        num(&s, "limiting_flow.max_distance") < 1e-4,
        "{}",
        s["limiting_flow"]
    );
    assert!(num(&s, "limiting_flow.max_drift") < 1e-12);
    assert!(num(&s, "limiting_flow.kkt_residual") < 1e-8);
    let st = read_json(&out.join("states.json"));
    assert_eq!(st["theta_limit"].as_array().map(|a| a.len()), Some(200));
    let csv = std::fs::read_to_string(out.join("limiting_flow.csv")).unwrap();
    assert!(
        csv.lines()
            .next()
            .unwrap()
            .ends_with("kkt_residual,spectral_gap,mu,kernel_dim"),
        "{}",
        &csv[..120]
    );
    assert!(csv.lines().count() > 100);
    assert_clean_failure(
        &[
            "linear",
            "--limiting-flow",
            "--tau0",
            "-1",
            "--out",
            out.to_str().unwrap(),
            "-q",
        ],
        "--tau0",
    );
}

#[test]
fn a_parallel_sweep_gives_the_same_runs_on_any_number_of_threads() {
    let dir = tempfile::tempdir().unwrap();
    let run = |threads: &str, out: &str| {
        let o = simulate(&[
            "linear",
            "--n",
            "10",
            "--d",
            "40",
            "--lambdas",
            "1e-2,1e-4,1e-6",
            "--seeds",
            "1,2",
            "--threads",
            threads,
            "--out",
            dir.path().join(out).to_str().unwrap(),
            "-q",
            "--no-plot",
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    run("1", "one");
    run("2", "two");
    let summary = read_json(&dir.path().join("two/sweep_summary.json"));
    assert_eq!(summary.as_array().map(|a| a.len()), Some(6));
    for seed in [1, 2] {
        for lambda in ["1e-2", "1e-4", "1e-6"] {
            let sub = format!("lambda{lambda}-seed{seed}/states.json");
            let a = read_json(&dir.path().join("one").join(&sub));
            let b = read_json(&dir.path().join("two").join(&sub));
            assert_eq!(
                a["theta_final"], b["theta_final"],
                "{sub} differs between 1 and 2 threads"
            );
        }
    }
    let csv = std::fs::read_to_string(dir.path().join("one/sweep_summary.csv")).unwrap();
    assert!(csv.starts_with("lambda,seed,value,complete,steps,"));
    assert_eq!(csv.lines().count(), 7);
}

/// Sends SIGINT (Ctrl-C) to a running child.
fn interrupt(child: &std::process::Child) {
    let ok = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(ok.success());
}

#[test]
fn ctrl_c_stops_the_limiting_flow_and_keeps_what_it_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    // The spectral projector takes over ten seconds for this limiting flow; Φ and the
    // λ-flow take a fraction of one.
    let child = Command::new(env!("CARGO_BIN_EXE_simulate"))
        .args(["matrix-completion", "--lambda", "1e-4", "--limiting-flow"])
        .args(["--projector", "spectral", "--quiet", "--no-plot", "--out"])
        .arg(&out)
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2500));
    interrupt(&child);
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(3), "a stopped run exits with 3");
    let s = read_json(&out.join("summary.json"));
    assert_eq!(s["complete"], true, "the λ-flow had finished");
    assert_eq!(s["limiting_flow"]["stop_reason"]["kind"], "stopped");
    let rows = std::fs::read_to_string(out.join("limiting_flow.csv"))
        .unwrap()
        .lines()
        .count();
    let samples = std::fs::read_to_string(out.join("trajectory.csv"))
        .unwrap()
        .lines()
        .count();
    assert!(rows > 2 && rows < samples, "{rows} of {samples} rows");
}

#[test]
fn the_exact_relu_runs_through_its_kinks_and_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("exact");
    let o = common::simulate(&[
        "relu",
        "--activation",
        "relu",
        "--width",
        "12",
        "--n",
        "6",
        "--lambda",
        "1e-4",
        "--no-plot",
        "-q",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = common::read_json(&out.join("summary.json"));
    assert_eq!(s["method"], "bdf");
    assert_eq!(s["complete"], true);
    let stats = &s["stats"];
    let crossings = stats["kink_crossings"].as_u64().unwrap();
    let slides = stats["sliding_modes"].as_u64().unwrap();
    let sliding = stats["sliding_time"].as_f64().unwrap();
    assert!(crossings + slides > 0, "{stats}");
    assert!((0.0..=10.0).contains(&sliding), "{stats}");
    // Φ(θ_init) by the same event-driven flow.
    assert!(s["phi"].is_object(), "{}", s["phi"]);
}
