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

/// What `vane SUBCOMMAND` prints, which must succeed.
fn printed_by(subcommand: &str) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_vane"))
        .arg(subcommand)
        .output()
        .unwrap();
    assert!(output.status.success(), "vane {subcommand} failed");
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn crdgen_prints_the_committed_crd() {
    assert_eq!(printed_by("crdgen"), vane::api::crd_yaml());
}

/// Every flag is in README's tables, and each default the README shows in backticks is the one
/// the code has (the Flags table and the Limits table alike).
#[test]
fn readme_flag_defaults_match_the_code() {
    use clap::CommandFactory;
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let command = vane::args::Args::command();
    let mut shown = std::collections::HashSet::new();
    for row in readme.lines().filter(|line| line.starts_with("| ")) {
        let cells: Vec<&str> = row
            .split(" | ")
            .map(|c| c.trim_matches(['|', ' ']))
            .collect();
        let Some(at) = cells.iter().position(|c| c.starts_with("`--")) else {
            continue;
        };
        let flag = cells[at].trim_matches('`').split(' ').next().unwrap();
        let argument = command
            .get_arguments()
            .find(|a| a.get_long() == flag.strip_prefix("--"))
            .unwrap_or_else(|| panic!("README names {flag}, which vane does not have"));
        shown.insert(flag.to_owned());
        // A default shown as one code span; prose such as "`$X`, else `y`" is not checked.
        let single = |cell: &str| -> Option<String> {
            let inner = cell.strip_prefix('`')?.strip_suffix('`')?;
            (!inner.contains('`')).then(|| inner.to_owned())
        };
        let Some(default) = cells.get(at + 1).and_then(|cell| single(cell)) else {
            continue;
        };
        let defaults: Vec<String> = argument
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        assert_eq!(defaults, [default], "README's default of {flag}");
    }
    for argument in command.get_arguments() {
        if let Some(long) = argument
            .get_long()
            .filter(|l| !["help", "version"].contains(l))
        {
            assert!(
                shown.contains(&format!("--{long}")),
                "README's Flags table lacks --{long}"
            );
        }
    }
}

/// README's annotation table, between its markers.
fn readme_annotation_table() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let begin = "<!-- BEGIN generated: vane annotations -->\n";
    let start = readme.find(begin).expect("README has the begin marker") + begin.len();
    let end = readme[start..]
        .find("<!-- END generated: vane annotations -->")
        .expect("README has the end marker");
    readme[start..start + end].to_owned()
}

#[test]
fn readme_annotation_table_matches_the_code() {
    assert!(
        readme_annotation_table() == vane::api::compat::markdown_table(),
        "README's annotation table is stale: run `make manifests` and commit the result"
    );
}

#[test]
fn annotations_prints_the_readme_table() {
    assert_eq!(printed_by("annotations"), readme_annotation_table());
}
