//! The bounds of every number and duration vane accepts in a BackendPolicy (and in the
//! annotations that set the same things), in one place: the CRD schema (`range` attributes
//! and CEL rules) and vane's own validation both read them, so the API server and standalone
//! mode reject the same values. Each upper bound keeps what a value can cost (memory, build
//! time, a timer far in the future) small, whoever wrote it.

use std::fmt;
use std::time::Duration;

/// An inclusive range of allowed values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bound<T> {
    pub min: T,
    pub max: T,
}

impl<T: PartialOrd + Copy> Bound<T> {
    pub fn contains(&self, value: T) -> bool {
        self.min <= value && value <= self.max
    }
}

macro_rules! display_numbers {
    ($($number:ty),*) => {$(
        impl fmt::Display for Bound<$number> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "between {} and {}", self.min, self.max)
            }
        }
    )*};
}
display_numbers!(u16, u32, usize, f64);

impl fmt::Display for Bound<Duration> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "between {} and {}",
            go_duration(self.min),
            go_duration(self.max)
        )
    }
}

impl Bound<Duration> {
    /// The CEL rule that enforces this bound on a duration string in the CRD. The Gateway API
    /// duration pattern is a subset of what CEL's `duration()` parses.
    pub fn rule(&self) -> kube::core::Rule {
        kube::core::Rule::new(format!(
            "duration(self) >= duration('{}') && duration(self) <= duration('{}')",
            go_duration(self.min),
            go_duration(self.max)
        ))
        .message(kube::core::Message::Message(format!("must be {self}")))
    }
}

/// A whole number of milliseconds in the largest unit that writes it exactly (`24h`, `1ms`).
fn go_duration(duration: Duration) -> String {
    let ms = duration.as_millis();
    match () {
        _ if ms == 0 => "0s".into(),
        _ if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        _ if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        _ if ms % 1000 == 0 => format!("{}s", ms / 1000),
        _ => format!("{ms}ms"),
    }
}

const fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

// === numbers ===

/// Maglev lookup table size. The Maglev paper keeps the imbalance under 1% with a table of at
/// least 100 × the endpoints, so the maximum, the prime 1,310,719 (about 20 × the default
/// 65537), serves some 13,000 endpoints at 5 MiB per backend and builds in well under a
/// second. Envoy's cap, 5,000,011, costs four times that at every table rebuild, for every
/// backend using it; more than that (the CRD never had a bound in vane's own validation) cost
/// seconds and hundreds of MiB per reload.
pub const MAGLEV_TABLE_SIZE: Bound<u32> = Bound {
    min: 251,
    max: 1_310_719,
};
/// Bounded-load factor of consistent hashing.
pub const BOUNDED_LOAD_FACTOR: Bound<f64> = Bound {
    min: 1.0,
    max: 10.0,
};
/// Endpoint weight: the ratio of the heaviest to the lightest endpoint.
pub const ENDPOINT_WEIGHT: Bound<u32> = Bound { min: 1, max: 1000 };
/// How fast slow start ramps up (1.0 is linear).
pub const SLOW_START_AGGRESSION: Bound<f64> = Bound {
    min: 0.1,
    max: 10.0,
};
/// The weight a joining endpoint starts at, in percent.
pub const SLOW_START_MIN_WEIGHT_PERCENT: Bound<u32> = Bound { min: 1, max: 100 };
/// Any percentage.
pub const PERCENT: Bound<u32> = Bound { min: 0, max: 100 };
/// Consecutive probe results that change an endpoint's verdict.
pub const PROBE_THRESHOLD: Bound<u32> = Bound { min: 1, max: 100 };
/// Consecutive errors that eject an endpoint.
pub const OUTLIER_THRESHOLD: Bound<u32> = Bound { min: 1, max: 1000 };
/// Total tries of a request, the first included.
pub const RETRY_ATTEMPTS: Bound<u32> = Bound { min: 1, max: 10 };
/// Retries a retry budget always allows per second.
pub const MIN_RETRIES_PER_SECOND: Bound<u32> = Bound {
    min: 0,
    max: 10_000,
};
/// `maxConnections` and `maxRequests` of a circuit breaker. A million is far beyond what one
/// vane serves (16,384 client connections) and well inside what tokio's semaphore can count
/// on any platform.
pub const CIRCUIT_BREAKER_LIMIT: Bound<u32> = Bound {
    min: 1,
    max: 1_000_000,
};
/// `maxPendingRequests` of a circuit breaker: 0 means none may wait.
pub const CIRCUIT_BREAKER_PENDING: Bound<u32> = Bound {
    min: 0,
    max: 1_000_000,
};

/// HTTP status codes a probe may expect.
pub const STATUS_CODE: Bound<u16> = Bound { min: 100, max: 599 };
/// A port to probe instead of the endpoint's own.
pub const PORT: Bound<u16> = Bound { min: 1, max: 65535 };

// === list lengths ===

/// `targetRefs`.
pub const TARGET_REFS: Bound<usize> = Bound { min: 1, max: 16 };
/// `loadBalancer.endpointWeights`.
pub const ENDPOINT_WEIGHTS: Bound<usize> = Bound { min: 0, max: 64 };
/// `healthCheck.active.http.expectedStatuses`.
pub const EXPECTED_STATUSES: Bound<usize> = Bound { min: 0, max: 16 };
/// `tls.caCertificateRefs`.
pub const CA_CERTIFICATE_REFS: Bound<usize> = Bound { min: 0, max: 8 };

// === durations ===

/// Every timeout of an exchange (connect, response headers, idle, request, per try), from a
/// policy or an annotation. A day is longer than any sensible exchange and keeps deadlines
/// (`now + timeout`) far from overflowing.
pub const TIMEOUT: Bound<Duration> = Bound {
    min: ms(1),
    max: DAY,
};
/// The interval between active probes; the probe loop never runs faster than 10 ms anyway.
pub const PROBE_INTERVAL: Bound<Duration> = Bound {
    min: ms(10),
    max: HOUR,
};
/// How long a probe may take.
pub const PROBE_TIMEOUT: Bound<Duration> = Bound {
    min: ms(1),
    max: HOUR,
};
/// The spread of the first probes.
pub const PROBE_INITIAL_JITTER: Bound<Duration> = Bound {
    min: Duration::ZERO,
    max: HOUR,
};
/// `baseEjectionTime` and `maxEjectionTime` of outlier detection.
pub const EJECTION_TIME: Bound<Duration> = Bound {
    min: ms(1),
    max: DAY,
};
/// A slow-start window, from a policy or `vane.dev/slow-start`.
pub const SLOW_START_WINDOW: Bound<Duration> = Bound {
    min: Duration::from_secs(1),
    max: HOUR,
};
/// How long a latency sample counts in least-response-time balancing.
pub const LATENCY_DECAY: Bound<Duration> = Bound {
    min: ms(1),
    max: HOUR,
};
/// The lifetime of an affinity cookie (its Max-Age is in whole seconds), up to a year.
pub const COOKIE_LIFETIME: Bound<Duration> = Bound {
    min: Duration::from_secs(1),
    max: Duration::from_secs(365 * 86_400),
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_bounds_are_written_as_the_gateway_api_writes_durations() {
        assert_eq!(TIMEOUT.to_string(), "between 1ms and 24h");
        assert_eq!(COOKIE_LIFETIME.to_string(), "between 1s and 8760h");
        assert_eq!(PROBE_INITIAL_JITTER.to_string(), "between 0s and 1h");
        assert_eq!(
            TIMEOUT.rule().rule,
            "duration(self) >= duration('1ms') && duration(self) <= duration('24h')"
        );
        // Every bound is itself a valid duration, so the rule compiles at the API server.
        for bound in [
            TIMEOUT,
            PROBE_INTERVAL,
            PROBE_TIMEOUT,
            PROBE_INITIAL_JITTER,
            EJECTION_TIME,
            SLOW_START_WINDOW,
            LATENCY_DECAY,
            COOKIE_LIFETIME,
        ] {
            for end in [bound.min, bound.max] {
                assert_eq!(super::super::duration::parse(&go_duration(end)), Some(end));
            }
        }
    }
}
