//! `vane check`, the built binary on a manifests directory and on stdin: what it prints and its
//! exit status.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use crate::support::fixtures::{annotate, backend, docs, ingress};

/// ingress-nginx's class and the Ingresses of a migration: one honoured, one with an ignored
/// and an unknown annotation, one refused.
fn fixture() -> String {
    let nginx = |yaml: String| yaml.replace("ingressClassName: vane", "ingressClassName: nginx");
    docs(&[
        backend("app", 8080, &["10.0.0.1".parse().unwrap()]),
        nginx(annotate(
            &ingress("plain", Some("plain.example.com"), "/", "app"),
            &[("nginx.ingress.kubernetes.io/rewrite-target", "/")],
        )),
        nginx(annotate(
            &ingress("tuned", Some("tuned.example.com"), "/", "app"),
            &[
                ("nginx.ingress.kubernetes.io/proxy-buffer-size", "16k"),
                ("vane.dev/hashby", "path"),
            ],
        )),
        nginx(annotate(
            &ingress("guarded", Some("guarded.example.com"), "/", "app"),
            &[("nginx.ingress.kubernetes.io/limit-connections", "10")],
        )),
        ingress("elsewhere", Some("other.example.com"), "/", "app"),
    ])
}

fn check(args: &[&str], stdin: Option<&str>) -> (Output, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vane"))
        .arg("check")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input
        .write_all(stdin.unwrap_or_default().as_bytes())
        .unwrap();
    drop(input);
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(output.stdout.clone()).unwrap();
    (output, stdout)
}

#[test]
fn check_reports_each_ingress_and_fails_when_one_would_be_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("apps.yaml"), fixture()).unwrap();
    let dir = dir.path().to_str().unwrap();
    let (output, text) = check(&["--ingress-class", "nginx", dir], None);
    assert_eq!(output.status.code(), Some(2), "{text}");
    for line in [
        "Ingress default/plain: served as written",
        "  route     plain.example.com Prefix / -> default/app:80",
        "  honoured  nginx.ingress.kubernetes.io/rewrite-target",
        "Ingress default/tuned: served, with warnings",
        "  ignored   nginx.ingress.kubernetes.io/proxy-buffer-size: vane streams bodies",
        "  unknown   vane.dev/hashby",
        "Ingress default/guarded: REFUSED: its routes answer 503",
        "  refused   nginx.ingress.kubernetes.io/limit-connections: a connection limit",
        "3 Ingresses of class nginx: 1 served as written, 1 with warnings, 0 with errors, 1 \
         refused; 1 of other classes skipped.",
    ] {
        assert!(text.contains(line), "{line:?} not in:\n{text}");
    }

    let (output, json) = check(&["--ingress-class", "nginx", "-o", "json", dir], None);
    assert_eq!(output.status.code(), Some(2));
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["verdict"], "refused");
    let verdicts: Vec<(&str, &str)> = json["ingresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["name"].as_str().unwrap(), i["verdict"].as_str().unwrap()))
        .collect();
    assert_eq!(
        verdicts,
        [
            ("guarded", "refused"),
            ("plain", "honoured"),
            ("tuned", "warnings")
        ]
    );
}

/// `kubectl get -o yaml` prints a `kind: List`; `-` reads it from stdin. Warnings alone exit 0,
/// or 1 with --strict.
#[test]
fn check_reads_a_kubectl_list_from_stdin_and_warnings_fail_only_when_strict() {
    let items: String = fixture()
        .split("---\n")
        .filter(|document| !document.contains("name: guarded"))
        .map(|document| {
            let indented: Vec<String> = document
                .lines()
                .enumerate()
                .map(|(i, line)| format!("{}{line}", if i == 0 { "- " } else { "  " }))
                .collect();
            indented.join("\n") + "\n"
        })
        .collect();
    let list = format!("apiVersion: v1\nkind: List\nitems:\n{items}");
    let (output, text) = check(&["--ingress-class", "nginx", "-"], Some(&list));
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(
        text.contains("Ingress default/tuned: served, with warnings"),
        "{text}"
    );
    let (output, _) = check(&["--ingress-class", "nginx", "--strict", "-"], Some(&list));
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn check_counts_what_it_cannot_read_as_an_error() {
    let (output, text) = check(&["/nonexistent/manifests"], None);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(
        text.contains("Not read:\n  /nonexistent/manifests: "),
        "{text}"
    );
}
