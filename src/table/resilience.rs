//! How a backend copes with failure, as plain data: timeouts, retries, health checking and
//! circuit breaking. `compile` fills these from annotations and BackendPolicy; `proxy` and
//! `health` act on them.

use std::time::Duration;

/// Timeouts of one route (the Ingress's annotations over its backend's policy).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Timeouts {
    /// Establishing a TCP connection to an endpoint.
    pub connect: Duration,
    /// From the request (body included) having been sent to the response headers arriving.
    pub response_headers: Duration,
    /// Longest pause between two reads of the upstream response body; also bounds how long an
    /// upgraded (WebSocket) connection may stay silent in both directions.
    pub read_idle: Duration,
    /// Longest pause between two chunks of the request body sent upstream.
    pub send_idle: Duration,
    /// The whole exchange, retries included, up to the end of the response body. Never applies
    /// to upgraded connections. `None`: unbounded.
    pub request: Option<Duration>,
}

/// ingress-nginx's defaults: `proxy-connect-timeout` 5s, `proxy-read-timeout` and
/// `proxy-send-timeout` 60s, no total.
impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            response_headers: Duration::from_secs(60),
            read_idle: Duration::from_secs(60),
            send_idle: Duration::from_secs(60),
            request: None,
        }
    }
}

/// When a failed attempt is tried again, on another endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RetryPolicy {
    /// Tries in total, the first included (1 = never retry).
    pub attempts: u32,
    /// Bounds each attempt's wait for response headers; `None`: the route's
    /// `response_headers` timeout.
    pub per_try_timeout: Option<Duration>,
    pub retry_on: RetryOn,
    /// Retries may add at most this percentage to the backend's requests (over 10 s) ...
    pub budget_percent: u32,
    /// ... but this many retries per second are always allowed.
    pub budget_min_per_second: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 3,
            per_try_timeout: None,
            retry_on: RetryOn::ALL,
            budget_percent: 20,
            budget_min_per_second: 10,
        }
    }
}

/// The conditions a [`RetryPolicy`] retries on, as a bit set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RetryOn(u8);

impl RetryOn {
    pub const CONNECT_FAILURE: RetryOn = RetryOn(1);
    /// The connection was reset or closed before a response arrived.
    pub const RESET: RetryOn = RetryOn(2);
    pub const BAD_GATEWAY: RetryOn = RetryOn(4);
    pub const SERVICE_UNAVAILABLE: RetryOn = RetryOn(8);
    /// A 504 from the upstream, or the attempt's own timeout.
    pub const GATEWAY_TIMEOUT: RetryOn = RetryOn(16);
    pub const ALL: RetryOn = RetryOn(31);
    pub const NONE: RetryOn = RetryOn(0);

    pub fn contains(self, other: RetryOn) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }

    pub fn with(self, other: RetryOn) -> RetryOn {
        RetryOn(self.0 | other.0)
    }
}

/// Health checking of a backend's endpoints: passive always, active when configured.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct HealthCheck {
    pub active: Option<ActiveCheck>,
    pub passive: OutlierDetection,
}

/// Probes sent to every endpoint of a backend.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ActiveCheck {
    pub probe: Probe,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive successes that bring an unhealthy endpoint back.
    pub healthy_threshold: u32,
    /// Consecutive failures that take a healthy endpoint out.
    pub unhealthy_threshold: u32,
    /// The first probe of an endpoint waits a random time up to this, so a large backend's
    /// probes spread out instead of arriving together.
    pub initial_jitter: Duration,
    /// Probe this port instead of the endpoint's own.
    pub port: Option<u16>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Probe {
    /// Healthy when the TCP connection is accepted.
    Tcp,
    /// Healthy when the response status falls in one of `expected` (inclusive ranges).
    Http {
        method: http::Method,
        path: http::uri::PathAndQuery,
        /// The Host header; `None`: the endpoint's address.
        host: Option<http::HeaderValue>,
        expected: Vec<(u16, u16)>,
    },
}

impl Probe {
    pub fn accepts(&self, status: u16) -> bool {
        match self {
            Probe::Tcp => true,
            Probe::Http { expected, .. } => expected
                .iter()
                .any(|&(min, max)| (min..=max).contains(&status)),
        }
    }
}

/// Passive outlier detection: endpoints that fail live traffic are ejected for a while.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OutlierDetection {
    /// Consecutive 5xx responses (gateway errors included) that eject; `None`: not counted.
    pub consecutive_5xx: Option<u32>,
    /// Consecutive 502/503/504, connect failures and resets that eject; `None`: not counted.
    pub consecutive_gateway_errors: Option<u32>,
    /// An ejection lasts this times the endpoint's ejection count ...
    pub base_ejection_time: Duration,
    /// ... but never longer than this.
    pub max_ejection_time: Duration,
    /// At most this share of a backend's endpoints is ejected at once (but always at least one
    /// may be).
    pub max_ejection_percent: u32,
    /// When fewer than this share of endpoints is healthy, the backend ignores health and uses
    /// all of them (panic mode): better some errors than none served at all.
    pub panic_threshold_percent: u32,
}

/// On for every 5xx, as Envoy's defaults are: an endpoint that answers 5 requests in a row
/// with a 5xx (a 500 included) or a gateway error is taken out for a while. An endpoint that
/// fails everything while its peers serve is broken, and keeping it would fail a share of the
/// traffic forever. When the fault is shared (every endpoint answers 500 because a database is
/// down), `max_ejection_percent` and the panic threshold keep the backend in service.
impl Default for OutlierDetection {
    fn default() -> Self {
        Self {
            consecutive_5xx: Some(5),
            consecutive_gateway_errors: Some(5),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 50,
            panic_threshold_percent: 50,
        }
    }
}

/// Caps on what one backend may have in progress; beyond them vane answers 503 at once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CircuitBreaker {
    /// Upstream exchanges in progress at once (an HTTP/1.1 connection carries one at a time,
    /// so this bounds busy connections).
    pub max_connections: Option<u32>,
    /// Requests waiting for one of those connections.
    pub max_pending_requests: Option<u32>,
    /// Requests in progress, waiting ones included.
    pub max_requests: Option<u32>,
}

impl CircuitBreaker {
    pub fn is_set(&self) -> bool {
        self.max_connections.is_some() || self.max_requests.is_some()
    }
}
