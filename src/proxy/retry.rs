//! When to try a request again (the budget that keeps retries from amplifying an outage is
//! per backend, in `live`).
//!
//! A failed connect is always worth retrying (the request never left). After the request left,
//! a retry could run it twice, so it is retried only if its method is idempotent, or the
//! upstream rejected it before any of its body was sent. A body is replayed only while vane
//! still has all of it (see [`RequestBody`](super::request_body::RequestBody)).

use http::{Method, StatusCode};

use crate::endpoint::RequestOutcome;
use crate::table::{RetryOn, RetryPolicy};

/// How one attempt ended, for the retry decision and outlier detection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The connection could not be made: nothing was sent.
    Connect,
    /// The connection broke before a response (reset, closed, protocol error).
    Reset,
    /// No response headers within the attempt's timeout.
    Timeout,
    /// The upstream answered with this status (a 5xx).
    Status(StatusCode),
}

impl Failure {
    pub fn outcome(self) -> RequestOutcome {
        match self {
            Failure::Connect | Failure::Reset | Failure::Timeout => RequestOutcome::GatewayError,
            Failure::Status(status) => RequestOutcome::of_status(status),
        }
    }

    fn retry_on(self) -> RetryOn {
        match self {
            Failure::Connect => RetryOn::CONNECT_FAILURE,
            Failure::Reset => RetryOn::RESET,
            Failure::Timeout => RetryOn::GATEWAY_TIMEOUT,
            Failure::Status(StatusCode::BAD_GATEWAY) => RetryOn::BAD_GATEWAY,
            Failure::Status(StatusCode::SERVICE_UNAVAILABLE) => RetryOn::SERVICE_UNAVAILABLE,
            Failure::Status(StatusCode::GATEWAY_TIMEOUT) => RetryOn::GATEWAY_TIMEOUT,
            Failure::Status(_) => RetryOn::NONE,
        }
    }
}

/// Whether `failure` may be retried: the policy asks for it, and a second run is safe.
/// `body_sent`: some of the request body already went upstream.
pub fn is_retryable(
    policy: &RetryPolicy,
    failure: Failure,
    method: &Method,
    body_sent: bool,
) -> bool {
    if !policy.retry_on.contains(failure.retry_on()) {
        return false;
    }
    match failure {
        Failure::Connect => true,
        _ => method.is_idempotent() || !body_sent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_safe_retries_are_allowed() {
        let all = RetryPolicy::default();
        let post = Method::POST;
        let get = Method::GET;
        assert!(is_retryable(&all, Failure::Connect, &post, true));
        assert!(is_retryable(&all, Failure::Reset, &get, true));
        assert!(!is_retryable(&all, Failure::Reset, &post, true));
        assert!(is_retryable(
            &all,
            Failure::Status(StatusCode::SERVICE_UNAVAILABLE),
            &post,
            false
        ));
        assert!(!is_retryable(
            &all,
            Failure::Status(StatusCode::INTERNAL_SERVER_ERROR),
            &get,
            false
        ));
        let connect_only = RetryPolicy {
            retry_on: RetryOn::CONNECT_FAILURE,
            ..all
        };
        assert!(!is_retryable(&connect_only, Failure::Timeout, &get, false));
        assert!(is_retryable(&connect_only, Failure::Connect, &get, false));
    }
}
