//! Every system's instance file round-trips: the file read back is the same instance (same
//! loss, gradient and test metric at θ_init, and the same file).

use grokflow_systems::{load_instance, registry};

#[test]
fn every_instance_file_round_trips() {
    let dir = std::env::temp_dir().join(format!("grokflow-instances-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for entry in registry() {
        let system = (entry.cheap)(5).unwrap();
        let text = system.instance_json();
        let path = dir.join(format!("{}.json", entry.name));
        std::fs::write(&path, &text).unwrap();
        let back = load_instance(&path).unwrap_or_else(|e| panic!("{}: {e}", entry.name));
        assert_eq!(back.name(), entry.name);
        assert_eq!(
            back.instance_json(),
            text,
            "{}: the file changed on a round trip",
            entry.name
        );
        let theta = system.theta_init();
        assert_eq!(back.theta_init(), theta);
        assert_eq!(back.value(theta), system.value(theta), "{}", entry.name);
        assert_eq!(
            back.gradient(theta),
            system.gradient(theta),
            "{}",
            entry.name
        );
        assert_eq!(
            back.test_loss(theta),
            system.test_loss(theta),
            "{}",
            entry.name
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn inconsistent_instance_files_are_refused() {
    let dir = std::env::temp_dir().join(format!("grokflow-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases = [
        (
            r#"{"system":"matrix-completion","width":2,"observations":[[5,0,1.0]],"n1":2,"n2":2,"u_init":[[1,2],[3,4]],"v_init":[[1,2],[3,4]]}"#,
            "outside",
        ),
        (
            r#"{"system":"matrix-completion","width":2,"observations":[],"n1":2,"n2":2,"u_init":[[1,2],[3,4]],"v_init":[[1,2],[3,4]]}"#,
            "no observed",
        ),
        (
            r#"{"system":"matrix-sensing","a":[],"b":[],"u_init":[[1]]}"#,
            "no measurements",
        ),
        (
            r#"{"system":"matrix-sensing","a":[[[1,2],[3,4]]],"b":[1],"u_init":[[1],[1]]}"#,
            "not symmetric",
        ),
        (
            r#"{"system":"diagonal","frequencies":2,"x":[0.1],"y":[1,2],"u_init":[1,1,1,1],"v_init":[1,1,1,1]}"#,
            "y has 2",
        ),
        (
            r#"{"system":"relu","activation":{"kind":"relu"},"x":[0.1],"y":[1],"theta_init":[1,2]}"#,
            "3m",
        ),
        (
            r#"{"system":"relu","activation":{"kind":"softplus","beta":-1},"x":[0.1],"y":[1],"theta_init":[1,2,3]}"#,
            "sharpness",
        ),
    ];
    for (i, (text, needle)) in cases.iter().enumerate() {
        let path = dir.join(format!("bad{i}.json"));
        std::fs::write(&path, text).unwrap();
        let err = load_instance(&path)
            .err()
            .unwrap_or_else(|| panic!("case {i} was accepted"))
            .to_string();
        assert!(err.contains(needle), "case {i}: {err:?} lacks {needle:?}");
    }
    std::fs::remove_dir_all(&dir).ok();
}
