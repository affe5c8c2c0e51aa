//! Client connections by listener (plain HTTP, HTTPS) and protocol (HTTP/1.1, HTTP/2), for
//! `/metrics`. Counted once per connection, never per request.

use std::sync::atomic::{AtomicU64, Ordering};

use super::client_io::Protocol;

/// The listener a connection arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    Http,
    Https,
}

impl Listener {
    pub const ALL: [Listener; 2] = [Listener::Http, Listener::Https];

    pub fn as_str(self) -> &'static str {
        match self {
            Listener::Http => "http",
            Listener::Https => "https",
        }
    }
}

/// The protocols a connection can serve, as labels.
pub const PROTOCOLS: [(&str, Protocol); 2] =
    [("http1", Protocol::Http1), ("http2", Protocol::Http2)];

#[derive(Debug, Default)]
pub struct ListenerStats {
    accepted: [AtomicU64; 2],
    /// Connections that started serving HTTP, and those that stopped, by listener and protocol.
    opened: [[AtomicU64; 2]; 2],
    closed: [[AtomicU64; 2]; 2],
}

/// A connection serving HTTP; dropping it counts it closed.
pub struct Serving<'s> {
    stats: &'s ListenerStats,
    class: (usize, usize),
}

impl Drop for Serving<'_> {
    fn drop(&mut self) {
        let (listener, protocol) = self.class;
        self.stats.closed[listener][protocol].fetch_add(1, Ordering::Relaxed);
    }
}

impl ListenerStats {
    /// A connection was admitted on `listener`.
    pub fn accepted(&self, listener: Listener) {
        self.accepted[listener as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// A connection on `listener` starts serving `protocol`, until the guard is dropped.
    pub fn serving(&self, listener: Listener, protocol: Protocol) -> Serving<'_> {
        let class = (listener as usize, protocol as usize);
        self.opened[class.0][class.1].fetch_add(1, Ordering::Relaxed);
        Serving { stats: self, class }
    }

    pub fn accepted_total(&self, listener: Listener) -> u64 {
        self.accepted[listener as usize].load(Ordering::Relaxed)
    }

    /// Connections on `listener` serving `protocol` now.
    pub fn serving_now(&self, listener: Listener, protocol: Protocol) -> u64 {
        let (l, p) = (listener as usize, protocol as usize);
        // Closed is read first: a connection closing in between is not counted below zero.
        let closed = self.closed[l][p].load(Ordering::Relaxed);
        self.opened[l][p]
            .load(Ordering::Relaxed)
            .saturating_sub(closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_count_by_listener_and_protocol_until_they_close() {
        let stats = ListenerStats::default();
        stats.accepted(Listener::Https);
        let h2 = stats.serving(Listener::Https, Protocol::Http2);
        let h1 = stats.serving(Listener::Http, Protocol::Http1);
        assert_eq!(stats.accepted_total(Listener::Https), 1);
        assert_eq!(stats.accepted_total(Listener::Http), 0);
        assert_eq!(stats.serving_now(Listener::Https, Protocol::Http2), 1);
        assert_eq!(stats.serving_now(Listener::Https, Protocol::Http1), 0);
        drop(h2);
        assert_eq!(stats.serving_now(Listener::Https, Protocol::Http2), 0);
        assert_eq!(stats.serving_now(Listener::Http, Protocol::Http1), 1);
        drop(h1);
    }
}
