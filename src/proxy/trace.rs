//! Request IDs and W3C trace context (`traceparent`, `tracestate`).
//!
//! Every request goes upstream with an `X-Request-ID`: the client's when it is a sane value
//! (1 to 200 visible ASCII bytes), else a new random one (32 hex digits, like ingress-nginx's
//! `$req_id`).
//!
//! Trace context depends on whether vane exports spans (`--otlp-endpoint`):
//! - Off: a well-formed `traceparent` passes through with its `tracestate`; a malformed one is
//!   replaced by a new trace, not sampled, never forwarded, and its `tracestate` dropped (W3C
//!   Trace Context section 3.3: tracestate means nothing without a valid traceparent). vane
//!   records no spans then, so it does not make itself the parent: an upstream span whose parent
//!   was never exported would hang in the trace.
//! - On: vane records its own span, parent-based: for a sampled `traceparent` always, for an
//!   unsampled one never (it passes through unchanged), and for a request without a usable one
//!   (none, malformed, repeated) with the sample ratio. A recorded span is the parent of the
//!   upstream request ([`propagate`]); an unrecorded new trace goes upstream as a new unsampled
//!   `traceparent`, so that the services behind vane follow its decision.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::Context;

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
/// they are left, and returns them. `rng` makes new IDs and sampling decisions. With
/// `sample_ratio` (spans are exported), also returns the parent of vane's span when the request
/// is to be recorded: then start the span and [`propagate`] it.
pub fn identify(
    headers: &mut HeaderMap,
    rng: &mut fastrand::Rng,
    sample_ratio: Option<f64>,
) -> (RequestIds, Option<Context>) {
    let request_id = match headers.get(&X_REQUEST_ID) {
        Some(id) if is_sane_request_id(id) && !repeated(headers, &X_REQUEST_ID) => id.clone(),
        _ => {
            let id = hex_value::<16, 32>(&rng.u128(..).to_be_bytes());
            headers.insert(X_REQUEST_ID.clone(), id.clone());
            id
        }
    };
    // The request's traceparent: none, usable (its trace ID, and vane's parent if recorded), or
    // unusable (malformed or repeated).
    let given = headers.get(&TRACEPARENT).map(|parent| {
        let parsed = (!repeated(headers, &TRACEPARENT))
            .then(|| TraceParent::parse(parent))
            .flatten();
        parsed.map(|parent| {
            let recorded = sample_ratio.is_some() && parent.is_sampled();
            let remote = recorded.then(|| parent.remote_parent()).flatten();
            (parent.trace_id_value(), remote)
        })
    });
    let (trace_id, parent) = match (given, sample_ratio) {
        (Some(Some((trace_id, parent))), _) => {
            let oversized = headers
                .get_all(&TRACESTATE)
                .iter()
                .map(|v| v.len() + 1)
                .sum::<usize>()
                > MAX_TRACESTATE_BYTES;
            if oversized {
                headers.remove(&TRACESTATE);
            }
            (Some(trace_id), parent)
        }
        (None, None) => (None, None),
        // A new trace, recorded: vane's span is its root, and `propagate` writes its context.
        (_, Some(ratio)) if rng.f64() < ratio => {
            headers.remove(&TRACEPARENT);
            headers.remove(&TRACESTATE);
            (None, Some(Context::new()))
        }
        _ => (Some(restart(headers, rng)), None),
    };
    (
        RequestIds {
            request_id,
            trace_id,
        },
        parent,
    )
}

/// Makes vane's recorded span, `span`, the parent of the upstream request (a `tracestate`
/// passes on with it); returns the trace ID for the logs.
pub fn propagate(headers: &mut HeaderMap, span: &SpanContext) -> HeaderValue {
    let trace_id = span.trace_id().to_string();
    // The sampled flag only: version 00 defines no other (W3C Trace Context section 3.2.2.5).
    let flags = (span.trace_flags() & TraceFlags::SAMPLED).to_u8();
    let parent = format!("00-{trace_id}-{}-{flags:02x}", span.span_id());
    headers.insert(
        TRACEPARENT.clone(),
        HeaderValue::from_str(&parent).expect("hex digits and dashes"),
    );
    HeaderValue::from_str(&trace_id).expect("hex digits")
}

/// Puts a new trace, not sampled, in place of the request's trace context (an unusable one, or
/// none where vane chose not to record a new trace); returns its trace ID.
fn restart(headers: &mut HeaderMap, rng: &mut fastrand::Rng) -> HeaderValue {
    headers.remove(&TRACESTATE);
    let mut trace_id = [0u8; 16];
    rng.fill(&mut trace_id);
    trace_id[0] |= 1; // never the invalid all-zero ID
    let mut span_id = [0u8; 8];
    rng.fill(&mut span_id);
    span_id[0] |= 1;
    let trace_id = hex::<16, 32>(&trace_id);
    let span_id = hex::<8, 16>(&span_id);
    let parent = format!("00-{}-{}-00", str_of(&trace_id), str_of(&span_id));
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
struct TraceParent<'h> {
    trace_id: &'h [u8],
    parent_id: &'h [u8],
    flags: &'h [u8],
}

impl<'h> TraceParent<'h> {
    /// Version 00 exactly as specified; a later version by its version-00 prefix (followed by
    /// the end or a `-`), as the spec asks of parsers; version `ff` never. IDs of all zeros are
    /// invalid, and hex digits must be lowercase.
    fn parse(value: &'h HeaderValue) -> Option<Self> {
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
        valid.then_some(Self {
            trace_id,
            parent_id,
            flags,
        })
    }

    fn trace_id_value(&self) -> HeaderValue {
        HeaderValue::from_bytes(self.trace_id).expect("hex digits")
    }

    /// The sampled flag (the low bit of the flags).
    fn is_sampled(&self) -> bool {
        u8::from_str_radix(str_of(self.flags), 16).is_ok_and(|flags| flags & 1 == 1)
    }

    /// The span this `traceparent` names, as the parent of vane's span. `None` only for what
    /// `parse` never returns.
    fn remote_parent(&self) -> Option<Context> {
        let trace_id = TraceId::from_hex(str_of(self.trace_id)).ok()?;
        let span_id = SpanId::from_hex(str_of(self.parent_id)).ok()?;
        let span = SpanContext::new(
            trace_id,
            span_id,
            TraceFlags::SAMPLED,
            true,
            TraceState::NONE,
        );
        Some(Context::new().with_remote_span_context(span))
    }
}

fn hex_value<const N: usize, const HEX: usize>(bytes: &[u8; N]) -> HeaderValue {
    HeaderValue::from_bytes(&hex::<N, HEX>(bytes)).expect("hex digits")
}

/// `bytes` as lowercase hex digits (`HEX` = 2 × `N`), on the stack: the request ID is made for
/// every request that comes without one, and this keeps it to the header value's allocation.
fn hex<const N: usize, const HEX: usize>(bytes: &[u8; N]) -> [u8; HEX] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    const { assert!(HEX == 2 * N) };
    let mut digits = [0; HEX];
    for (pair, byte) in digits.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0xf)];
    }
    digits
}

fn str_of(hex: &[u8]) -> &str {
    std::str::from_utf8(hex).expect("hex digits are ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    /// Identified with spans exported at `sample_ratio`, or not exported.
    fn identified_with(
        pairs: &[(&str, &str)],
        sample_ratio: Option<f64>,
    ) -> (RequestIds, Option<Context>, HeaderMap) {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        let mut rng = fastrand::Rng::with_seed(7);
        let (ids, parent) = identify(&mut headers, &mut rng, sample_ratio);
        (ids, parent, headers)
    }

    /// Identified with spans not exported: vane never records a span then.
    fn identified(pairs: &[(&str, &str)]) -> (RequestIds, HeaderMap) {
        let (ids, parent, headers) = identified_with(pairs, None);
        assert!(parent.is_none());
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
    fn an_oversized_tracestate_is_dropped_and_its_traceparent_kept() {
        let member = format!("k={}", "v".repeat(250));
        let mut pairs = vec![("traceparent", VALID.to_owned())];
        // 34 members of 252 bytes, over the 8,400 bytes 32 members may take.
        pairs.extend(std::iter::repeat_n(("tracestate", member), 34));
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let (ids, headers) = identified(&pairs);
        assert_eq!(headers["traceparent"], VALID);
        assert!(!headers.contains_key("tracestate"));
        assert!(ids.trace_id.is_some());
        // Within the bound, all of it passes.
        let (_, headers) = identified(&pairs[..33]);
        assert_eq!(headers.get_all("tracestate").iter().count(), 32);
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

    #[test]
    fn with_export_a_sampled_traceparent_is_continued_and_an_unsampled_one_passes() {
        // Sampled: vane's span is the client's span's child, whatever the ratio.
        let (ids, parent, headers) = identified_with(&[("traceparent", VALID)], Some(0.0));
        assert_eq!(ids.trace_id.unwrap(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let parent = parent.expect("recorded");
        let span = parent.span().span_context().clone();
        assert_eq!(
            span.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(span.span_id().to_string(), "00f067aa0ba902b7");
        assert!(span.is_remote() && span.is_sampled());
        // Until `propagate`, the header is the client's.
        assert_eq!(headers["traceparent"], VALID);

        // Flags with the sampled bit among others.
        let flags_03 = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03";
        assert!(identified_with(&[("traceparent", flags_03)], Some(0.0))
            .1
            .is_some());

        // Unsampled: no span, and the context passes through untouched, whatever the ratio.
        for unsampled in [
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-02",
        ] {
            let pairs = [("traceparent", unsampled), ("tracestate", "k=v")];
            let (ids, parent, headers) = identified_with(&pairs, Some(1.0));
            assert!(parent.is_none(), "{unsampled}");
            assert_eq!(headers["traceparent"], unsampled);
            assert_eq!(headers["tracestate"], "k=v");
            assert_eq!(ids.trace_id.unwrap(), "4bf92f3577b34da6a3ce929d0e0e4736");
        }
    }

    #[test]
    fn with_export_a_request_without_a_usable_traceparent_is_sampled_by_the_ratio() {
        for pairs in [
            &[][..],
            &[("traceparent", "garbage"), ("tracestate", "k=v")][..],
            &[("traceparent", VALID), ("traceparent", VALID)][..],
        ] {
            // Recorded: a new trace whose root is vane's span, written by `propagate`.
            let (ids, parent, headers) = identified_with(pairs, Some(1.0));
            let parent = parent.expect("ratio 1 records every new trace");
            assert!(!parent.has_active_span(), "a root span: {pairs:?}");
            assert!(ids.trace_id.is_none());
            assert!(!headers.contains_key("traceparent") && !headers.contains_key("tracestate"));

            // Not recorded: a new unsampled trace goes upstream, so services follow the decision.
            let (ids, parent, headers) = identified_with(pairs, Some(0.0));
            assert!(parent.is_none());
            let sent = headers["traceparent"].to_str().unwrap();
            assert!(sent.ends_with("-00"), "{sent}");
            assert_eq!(&sent[3..35], ids.trace_id.unwrap().to_str().unwrap());
            assert!(!headers.contains_key("tracestate"));
        }

        let mut rng = fastrand::Rng::with_seed(1);
        let recorded = (0..10_000)
            .filter(|_| {
                identify(&mut HeaderMap::new(), &mut rng, Some(0.25))
                    .1
                    .is_some()
            })
            .count();
        assert!(
            (2_200..2_800).contains(&recorded),
            "{recorded} of 10,000 at 0.25"
        );
    }

    #[test]
    fn propagate_makes_vanes_span_the_parent_and_keeps_tracestate() {
        let mut headers = HeaderMap::new();
        headers.insert(&TRACEPARENT, HeaderValue::from_static(VALID));
        headers.insert(&TRACESTATE, HeaderValue::from_static("k=v"));
        let vanes = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("0123456789abcdef").unwrap(),
            TraceFlags::new(0x03),
            false,
            TraceState::NONE,
        );
        let trace_id = propagate(&mut headers, &vanes);
        assert_eq!(trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            headers["traceparent"],
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0123456789abcdef-01"
        );
        assert_eq!(headers["tracestate"], "k=v");
        assert!(TraceParent::parse(&headers["traceparent"]).is_some());
    }
}
