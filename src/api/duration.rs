//! Durations as Gateway API writes them: `1h`, `30s`, `500ms`, `1m30s`.
//!
//! The schema carries the pattern, so the API server rejects malformed values; vane parses
//! again on its own, since standalone manifests never pass an API server.

use std::borrow::Cow;
use std::fmt;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

/// The Gateway API `Duration` pattern: one to four number-unit pairs.
pub const DURATION_PATTERN: &str = "^([0-9]{1,5}(h|m|s|ms)){1,4}$";

/// A duration as written in a manifest. Deserializing never fails on the format (so one bad
/// value does not hide the whole object); [`Duration::parse`] validates.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Duration(pub String);

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a duration like 500ms, 30s, 5m or 1h30m")]
pub struct InvalidDuration(pub String);

impl Duration {
    pub fn parse(&self) -> Result<std::time::Duration, InvalidDuration> {
        parse(&self.0).ok_or_else(|| InvalidDuration(self.0.clone()))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Duration {
    fn from(value: &str) -> Self {
        Duration(value.to_owned())
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            // What the pattern allows at most; it also bounds the cost of CEL rules on it.
            "maxLength": 28,
            "description": "A duration such as 500ms, 30s, 5m or 1h30m.",
        })
    }
}

/// Parses `DURATION_PATTERN` by hand (no regex engine on this path).
pub fn parse(text: &str) -> Option<std::time::Duration> {
    let mut rest = text;
    let mut total = std::time::Duration::ZERO;
    let mut pairs = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 5 {
            return None;
        }
        let number: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (std::time::Duration::from_millis(1), 2)
        } else if rest.starts_with('h') {
            (std::time::Duration::from_secs(3600), 1)
        } else if rest.starts_with('m') {
            (std::time::Duration::from_secs(60), 1)
        } else if rest.starts_with('s') {
            (std::time::Duration::from_secs(1), 1)
        } else {
            return None;
        };
        rest = &rest[len..];
        total += unit * u32::try_from(number).ok()?;
        pairs += 1;
    }
    (1..=4).contains(&pairs).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration as D;

    #[test]
    fn parses_gateway_api_durations() {
        for (text, expected) in [
            ("500ms", Some(D::from_millis(500))),
            ("30s", Some(D::from_secs(30))),
            ("1h30m", Some(D::from_secs(5400))),
            ("1m1s1ms", Some(D::from_millis(61_001))),
            ("0s", Some(D::ZERO)),
            ("", None),
            ("10", None),
            ("1.5s", None),
            ("-1s", None),
            ("123456s", None),
            ("1s1s1s1s1s", None),
            ("5d", None),
        ] {
            assert_eq!(parse(text), expected, "{text:?}");
        }
    }
}
