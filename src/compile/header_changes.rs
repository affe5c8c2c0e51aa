//! `vane.dev/request-headers` and `vane.dev/response-headers`: a YAML map of `set`, `add` and
//! `remove`, parsed into typed names and values. Headers vane owns cannot be changed this
//! way: hop-by-hop headers, message framing, and the forwarding headers vane sets from the
//! connection (a rule could otherwise forge the client address an origin trusts).

use std::collections::BTreeMap;

use http::{HeaderName, HeaderValue};
use serde::Deserialize;

use crate::table::{HeaderChanges, HOP_BY_HOP};

/// Longest annotation value, and most changes in one.
const MAX_SPEC_BYTES: usize = 16 * 1024;
const MAX_CHANGES: usize = 64;
/// Longest header value a change may set.
const MAX_VALUE_BYTES: usize = 4096;

/// Which side a change applies to: each has headers of its own that vane owns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Side {
    Request,
    Response,
}

impl Side {
    /// Why `name` may not be changed on this side, if it may not.
    fn refuses(self, name: &HeaderName) -> Option<&'static str> {
        let name = name.as_str();
        if HOP_BY_HOP.iter().any(|h| h == name) {
            return Some("a hop-by-hop header");
        }
        if name == "content-length" {
            return Some("message framing, which vane keeps right");
        }
        match self {
            Side::Request if name == "host" => Some("the Host (use upstream-vhost)"),
            Side::Request
                if name.starts_with("x-forwarded-")
                    || matches!(
                        name,
                        "x-real-ip" | "forwarded" | "ssl-client-subject-dn" | "ssl-client-verify"
                    ) =>
            {
                Some("set by vane from the connection")
            }
            _ => None,
        }
    }
}

/// The annotation's shape. `add` takes a list for headers that repeat.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Spec {
    #[serde(default)]
    set: BTreeMap<String, String>,
    #[serde(default)]
    add: BTreeMap<String, OneOrMany>,
    #[serde(default)]
    remove: Vec<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// Parses a header-changes annotation for `side`.
pub(super) fn parse(value: &str, side: Side) -> Result<HeaderChanges, String> {
    if value.len() > MAX_SPEC_BYTES {
        return Err(format!("is longer than {MAX_SPEC_BYTES} bytes"));
    }
    let spec: Spec = serde_yaml_ng::from_str(value).map_err(|e| {
        format!("is not a map of set, add (header: value) and remove (a list of names): {e}")
    })?;
    let name = |text: &str| {
        let name = HeaderName::from_bytes(text.trim().as_bytes())
            .map_err(|_| format!("{text:?} is not a header name"))?;
        match side.refuses(&name) {
            Some(why) => Err(format!("{name} cannot be changed: it is {why}")),
            None => Ok(name),
        }
    };
    let header =
        |(text, value): (&String, &String)| Ok::<_, String>((name(text)?, header_value(value)?));
    let changes = HeaderChanges {
        remove: spec
            .remove
            .iter()
            .map(|n| name(n))
            .collect::<Result<_, _>>()?,
        set: spec.set.iter().map(header).collect::<Result<_, _>>()?,
        add: spec
            .add
            .iter()
            .flat_map(|(n, values)| {
                let values = match values {
                    OneOrMany::One(v) => std::slice::from_ref(v),
                    OneOrMany::Many(vs) => vs.as_slice(),
                };
                values.iter().map(move |v| (n, v))
            })
            .map(header)
            .collect::<Result<_, _>>()?,
    };
    let count = changes.remove.len() + changes.set.len() + changes.add.len();
    if count > MAX_CHANGES {
        return Err(format!("has {count} changes, more than {MAX_CHANGES}"));
    }
    Ok(changes)
}

/// A header value: printable ASCII, spaces and tabs, at most [`MAX_VALUE_BYTES`].
fn header_value(value: &str) -> Result<HeaderValue, String> {
    let printable = value
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) || b == b'\t');
    match (printable && value.len() <= MAX_VALUE_BYTES).then(|| HeaderValue::from_str(value)) {
        Some(Ok(value)) => Ok(value),
        _ => Err(format!(
            "{value:?} is not a header value (printable ASCII, at most {MAX_VALUE_BYTES} bytes)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_parse_in_order_with_repeated_adds() {
        let changes = parse(
            "set: {X-Env: prod}\nadd: {X-Tag: [a, b], X-One: c}\nremove: [X-Debug]\n",
            Side::Request,
        )
        .unwrap();
        assert_eq!(changes.remove, vec![HeaderName::from_static("x-debug")]);
        assert_eq!(changes.set.len(), 1);
        let added: Vec<_> = changes
            .add
            .iter()
            .map(|(n, v)| format!("{n}={}", v.to_str().unwrap()))
            .collect();
        assert_eq!(added, ["x-one=c", "x-tag=a", "x-tag=b"]);
    }

    #[test]
    fn owned_headers_and_bad_input_are_refused() {
        for bad in [
            "set: {X-Forwarded-For: 1.2.3.4}",
            "set: {X-Real-IP: 1.2.3.4}",
            "remove: [Host]",
            "set: {Transfer-Encoding: chunked}",
            "add: {Connection: close}",
            "set: {Content-Length: '5'}",
            "set: {\"bad name\": x}",
            "set: {X-A: \"a\\r\\nb\"}",
            "replace: {X-A: b}",
            "- just\n- a list",
            "set: [1, 2]",
        ] {
            assert!(parse(bad, Side::Request).is_err(), "{bad:?}");
        }
        assert!(parse("set: {Host: x}", Side::Response).is_ok());
        assert!(parse("add: {Connection: close}", Side::Response).is_err());
        let many: String = (0..65).map(|i| format!("X-{i}: v\n")).collect();
        assert!(parse(
            &format!("set:\n{}", many.replace("X-", "  X-")),
            Side::Response
        )
        .is_err());
    }
}
