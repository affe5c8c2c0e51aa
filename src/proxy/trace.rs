//! Request IDs and W3C trace context (`traceparent`, `tracestate`).
//!
//! Every request goes upstream with an `X-Request-ID`: the client's when it is a sane value
//! (1 to 200 visible ASCII bytes), else a new random one (32 hex digits, like ingress-nginx's
//! `$req_id`). A well-formed `traceparent` passes through with its `tracestate`; a malformed
//! one is replaced by a new trace, never forwarded, and its `tracestate` dropped (W3C Trace
//! Context section 3.3: tracestate means nothing without a valid traceparent). vane records no
//! spans of its own, so it does not make itself the parent: an upstream span whose parent was
//! never exported would hang in the trace.

use http::header::{HeaderMap, HeaderName, HeaderValue};

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// Longest client-sent request ID that is passed on.
const MAX_REQUEST_ID_BYTES: usize = 200;
/// Longest `tracestate` passed on: 32 members of up to 256 bytes each, as the W3C spec bounds
/// it, plus separators.
const MAX_TRACESTATE_BYTES: usize = 8_400;

/// What identifies a request in logs and traces.
#[derive(Clone, Debug)]
pub struct RequestIds {
    pub request_id: HeaderValue,
    /// The 32 hex digits of the trace the request belongs to, when it has one.
    pub trace_id: Option<HeaderValue>,
}

/// Settles the request's `X-Request-ID` and trace context in `headers`, which go upstream as
/// they are left, and returns them. `rng` makes new IDs.
pub fn identify(headers: &mut HeaderMap, rng: &mut fastrand::Rng) -> RequestIds {
    let request_id = match headers.get(&X_REQUEST_ID) {
        Some(id) if is_sane_request_id(id) && !repeated(headers, &X_REQUEST_ID) => id.clone(),
        _ => {
            let id = hex_value(&rng.u128(..).to_be_bytes());
            headers.insert(X_REQUEST_ID.clone(), id.clone());
            id
        }
    };
    let trace_id = match headers.get(&TRACEPARENT) {
        None => None,
        Some(parent) if !repeated(headers, &TRACEPARENT) => match TraceParent::parse(parent) {
            Some(parent) => {
                let oversized = headers
                    .get_all(&TRACESTATE)
                    .iter()
                    .map(|v| v.len() + 1)
                    .sum::<usize>()
                    > MAX_TRACESTATE_BYTES;
                if oversized {
                    headers.remove(&TRACESTATE);
                }
                Some(parent.trace_id)
            }
            None => Some(restart(headers, rng)),
        },
        Some(_) => Some(restart(headers, rng)),
    };
    RequestIds {
        request_id,
        trace_id,
    }
}

/// Replaces an unusable trace context with a new trace (not sampled: the client asked for none
/// that vane could honour); returns its trace ID.
fn restart(headers: &mut HeaderMap, rng: &mut fastrand::Rng) -> HeaderValue {
    headers.remove(&TRACESTATE);
    let mut trace_id = [0u8; 16];
    rng.fill(&mut trace_id);
    trace_id[0] |= 1; // never the invalid all-zero ID
    let mut span_id = [0u8; 8];
    rng.fill(&mut span_id);
    span_id[0] |= 1;
    let trace_id = hex(&trace_id);
    let parent = format!("00-{}-{}-00", str_of(&trace_id), str_of(&hex(&span_id)));
    headers.insert(
        TRACEPARENT.clone(),
        HeaderValue::from_str(&parent).expect("hex digits and dashes"),
    );
    HeaderValue::from_bytes(&trace_id).expect("hex digits")
}

fn repeated(headers: &HeaderMap, name: &HeaderName) -> bool {
    headers.get_all(name).iter().nth(1).is_some()
}

fn is_sane_request_id(id: &HeaderValue) -> bool {
    let bytes = id.as_bytes();
    (1..=MAX_REQUEST_ID_BYTES).contains(&bytes.len()) && bytes.iter().all(u8::is_ascii_graphic)
}

/// A `traceparent` (W3C Trace Context section 3.2): `VERSION-TRACEID-PARENTID-FLAGS`.
struct TraceParent {
    trace_id: HeaderValue,
}

impl TraceParent {
    /// Version 00 exactly as specified; a later version by its version-00 prefix (followed by
    /// the end or a `-`), as the spec asks of parsers; version `ff` never. IDs of all zeros are
    /// invalid, and hex digits must be lowercase.
    fn parse(value: &HeaderValue) -> Option<Self> {
        let bytes = value.as_bytes();
        let (version, rest) = (bytes.get(..2)?, bytes.get(2..)?);
        let lower_hex = |b: &[u8]| b.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
        let nonzero = |b: &[u8]| b.iter().any(|&c| c != b'0');
        if !lower_hex(version) || version == b"ff" {
            return None;
        }
        let fields = rest.get(..53)?;
        let tail = &rest[53..];
        let tail_ok = match version {
            b"00" => tail.is_empty(),
            _ => tail.is_empty() || tail[0] == b'-',
        };
        if !tail_ok {
            return None;
        }
        let (trace_id, parent_id, flags) = (&fields[1..33], &fields[34..50], &fields[51..53]);
        let dashes = fields[0] == b'-' && fields[33] == b'-' && fields[50] == b'-';
        let valid = dashes
            && lower_hex(trace_id)
            && lower_hex(parent_id)
            && lower_hex(flags)
            && nonzero(trace_id)
            && nonzero(parent_id);
        valid.then(|| Self {
            trace_id: HeaderValue::from_bytes(trace_id).expect("hex digits"),
        })
    }
}

fn hex_value(bytes: &[u8]) -> HeaderValue {
    HeaderValue::from_bytes(&hex(bytes)).expect("hex digits")
}

fn hex(bytes: &[u8]) -> Vec<u8> {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    bytes
        .iter()
        .flat_map(|b| [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 0xf)]])
        .collect()
}

fn str_of(hex: &[u8]) -> &str {
    std::str::from_utf8(hex).expect("hex digits are ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn identified(pairs: &[(&str, &str)]) -> (RequestIds, HeaderMap) {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        let ids = identify(&mut headers, &mut fastrand::Rng::with_seed(7));
        (ids, headers)
    }

    #[test]
    fn a_sane_request_id_is_kept_and_a_missing_or_insane_one_replaced() {
        let (ids, headers) = identified(&[("x-request-id", "abc-123")]);
        assert_eq!(ids.request_id, "abc-123");
        assert_eq!(headers["x-request-id"], "abc-123");

        for bad in [&"x".repeat(201)[..], "has space", ""] {
            let (ids, headers) = identified(&[("x-request-id", bad)]);
            assert_eq!(ids.request_id.len(), 32, "{bad:?}");
            assert!(ids.request_id.as_bytes().iter().all(u8::is_ascii_hexdigit));
            assert_eq!(headers["x-request-id"], ids.request_id);
        }
        let (ids, headers) = identified(&[]);
        assert_eq!(headers["x-request-id"], ids.request_id);
        let (twice, _) = identified(&[("x-request-id", "a"), ("x-request-id", "b")]);
        assert_eq!(twice.request_id.len(), 32);
    }

    #[test]
    fn a_valid_traceparent_passes_with_its_tracestate() {
        let (ids, headers) = identified(&[("traceparent", VALID), ("tracestate", "k=v")]);
        assert_eq!(ids.trace_id.unwrap(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(headers["traceparent"], VALID);
        assert_eq!(headers["tracestate"], "k=v");
        // A later version, by its prefix.
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra";
        let (_, headers) = identified(&[("traceparent", later)]);
        assert_eq!(headers["traceparent"], later);
        let (ids, headers) = identified(&[]);
        assert!(ids.trace_id.is_none() && !headers.contains_key("traceparent"));
    }

    #[test]
    fn a_malformed_traceparent_is_replaced_and_its_tracestate_dropped() {
        let malformed = [
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", // uppercase
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01", // zero trace
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", // zero parent
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // forbidden version
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x", // v00 with a tail
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "garbage",
        ];
        for bad in malformed {
            let (ids, headers) = identified(&[("traceparent", bad), ("tracestate", "k=v")]);
            let parent = headers["traceparent"].to_str().unwrap();
            assert_ne!(parent, bad);
            assert!(
                TraceParent::parse(&headers["traceparent"]).is_some(),
                "{parent}"
            );
            assert!(parent.ends_with("-00"), "not sampled: {parent}");
            assert_eq!(&parent[3..35], ids.trace_id.unwrap().to_str().unwrap());
            assert!(!headers.contains_key("tracestate"));
        }
    }
}
