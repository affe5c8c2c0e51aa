//! gRPC: errors vane generates for a gRPC request are gRPC responses (HTTP 200,
//! `application/grpc`, a `grpc-status` and `grpc-message`, no body), as Envoy sends them, so
//! gRPC clients report a status instead of a protocol error.

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::Full;

use super::ProxyError;

/// gRPC status codes vane uses.
const DEADLINE_EXCEEDED: &str = "4";
const PERMISSION_DENIED: &str = "7";
const RESOURCE_EXHAUSTED: &str = "8";
const UNIMPLEMENTED: &str = "12";
const INTERNAL: &str = "13";
const UNAVAILABLE: &str = "14";
const UNAUTHENTICATED: &str = "16";

/// Whether a request is gRPC (`content-type: application/grpc` or `application/grpc+...`).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.strip_prefix("application/grpc")
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['+', ';']))
        })
}

/// The gRPC form of `error`. A 421 stays a 421: it asks the client for a new connection, which
/// gRPC clients do on their own. Malformed requests (400, 405, 414) stay HTTP errors too: they
/// are the client's protocol errors, not the service's answer.
pub fn error_response(error: &ProxyError) -> Response<Full<Bytes>> {
    let code = match error {
        ProxyError::Misdirected
        | ProxyError::BadHost(_)
        | ProxyError::ConnectMethod
        | ProxyError::UriTooLong => return error.to_response(),
        ProxyError::NoRoute => UNIMPLEMENTED,
        ProxyError::UpstreamTimeout(_) | ProxyError::ClientBodyTimeout => DEADLINE_EXCEEDED,
        ProxyError::ClientBody(_) | ProxyError::BadRewrite => INTERNAL,
        ProxyError::PayloadTooLarge | ProxyError::RateLimited { .. } => RESOURCE_EXHAUSTED,
        ProxyError::Forbidden => PERMISSION_DENIED,
        ProxyError::Unauthorized(_) | ProxyError::SignIn { .. } => UNAUTHENTICATED,
        ProxyError::AuthFailed => INTERNAL,
        ProxyError::CircuitOpen(_)
        | ProxyError::Refused
        | ProxyError::NotReady
        | ProxyError::InvalidBackend(_)
        | ProxyError::NoEndpoint
        | ProxyError::UpstreamConnect(_)
        | ProxyError::Upstream(_)
        | ProxyError::UnexpectedUpgrade => UNAVAILABLE,
    };
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert("grpc-status", HeaderValue::from_static(code));
    // The fixed texts of the error bodies: ASCII without '%', so no percent-encoding, and
    // nothing from the request or the configuration.
    headers.insert(
        "grpc-message",
        HeaderValue::from_static(error.body().trim_end()),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_content_types_are_recognized() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, value.parse().unwrap());
            is_grpc(&headers)
        };
        assert!(with("application/grpc"));
        assert!(with("application/grpc+proto"));
        assert!(!with("application/grpc-web"));
        assert!(!with("application/json"));
        assert!(!is_grpc(&HeaderMap::new()));
    }

    #[test]
    fn vane_errors_become_grpc_statuses() {
        for (error, code) in [
            (ProxyError::NoRoute, "12"),
            (ProxyError::NoEndpoint, "14"),
            (
                ProxyError::UpstreamTimeout(std::time::Duration::from_secs(1)),
                "4",
            ),
        ] {
            let response = error_response(&error);
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(response.headers()["content-type"], "application/grpc");
            assert_eq!(response.headers()["grpc-status"], code);
        }
        assert_eq!(
            error_response(&ProxyError::Misdirected).status(),
            StatusCode::MISDIRECTED_REQUEST
        );
    }
}
