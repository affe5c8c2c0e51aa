//! The report for people: one block per Ingress, then what concerns other objects, then a
//! summary line.

use std::fmt::Write;

use super::{IngressReport, Report, Verdict};
use crate::compile::reasons;

pub(super) fn render(report: &Report) -> String {
    let mut out = String::new();
    for ingress in &report.ingresses {
        ingress_block(&mut out, ingress);
    }
    if !report.other_diagnostics.is_empty() {
        out.push_str("Other objects:\n");
        for diagnostic in &report.other_diagnostics {
            let _ = writeln!(out, "  {diagnostic}");
        }
        out.push('\n');
    }
    if !report.load_errors.is_empty() {
        out.push_str("Not read:\n");
        for error in &report.load_errors {
            let _ = writeln!(out, "  {error}");
        }
        out.push('\n');
    }
    let count = |verdict| {
        report
            .ingresses
            .iter()
            .filter(|i| i.verdict == verdict)
            .count()
    };
    let _ = writeln!(
        out,
        "{} Ingresses of class {}: {} served as written, {} with warnings, {} with errors, {} \
         refused; {} of other classes skipped.",
        report.ingresses.len(),
        report.ingress_class,
        count(Verdict::Honoured),
        count(Verdict::Warnings),
        count(Verdict::Errors),
        count(Verdict::Refused),
        report.other_classes,
    );
    out
}

fn ingress_block(out: &mut String, ingress: &IngressReport) {
    let verdict = match ingress.verdict {
        Verdict::Honoured => "served as written",
        Verdict::Warnings => "served, with warnings",
        Verdict::Errors => "served in part or otherwise than written (errors)",
        Verdict::Refused => "REFUSED: its routes answer 503",
    };
    let _ = writeln!(
        out,
        "Ingress {}/{}: {verdict}",
        ingress.namespace, ingress.name
    );
    for route in &ingress.routes {
        let _ = writeln!(out, "  route     {route}");
    }
    for route in &ingress.canary_of {
        let _ = writeln!(out, "  canary of {route}");
    }
    let annotations = &ingress.annotations;
    for name in &annotations.honoured {
        let _ = writeln!(out, "  honoured  {name}");
    }
    for (label, list) in [
        ("ignored ", &annotations.ignored),
        ("refused ", &annotations.refused),
    ] {
        for entry in list {
            let _ = writeln!(out, "  {label}  {}: {}", entry.name, entry.reason);
        }
    }
    for name in &annotations.unknown {
        let _ = writeln!(out, "  unknown   {name}");
    }
    // The annotation lines above already say what these diagnostics say.
    let said = [
        reasons::IGNORED_ANNOTATION,
        reasons::REFUSED_ANNOTATION,
        reasons::UNKNOWN_ANNOTATION,
    ];
    for finding in ingress
        .diagnostics
        .iter()
        .filter(|f| !said.contains(&f.reason))
    {
        let _ = writeln!(out, "  {}: {}", finding.reason, finding.message);
    }
    out.push('\n');
}
