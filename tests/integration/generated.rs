//! Committed files that are generated from code must not drift from it.

#[test]
fn committed_crd_matches_the_rust_type() {
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crds/backendpolicy.yaml"
    ))
    .unwrap();
    assert!(
        committed == vane::api::crd_yaml(),
        "crds/backendpolicy.yaml is stale: run `make manifests` and commit the result"
    );
}

#[test]
fn crdgen_prints_the_committed_crd() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_vane"))
        .arg("crdgen")
        .output()
        .unwrap();
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        vane::api::crd_yaml()
    );
}
