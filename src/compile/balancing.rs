//! The load balancing of a backend. Precedence: the Ingress's `vane.dev/` annotations, then the
//! BackendPolicy targeting the Service port, then one targeting the whole Service, then round
//! robin. An invalid annotation is reported and ignored (that setting falls back to the next
//! level); invalid policies are never attached (see `policy`).

use std::time::Duration;

use k8s_openapi::api::discovery::v1::Endpoint as SliceEndpoint;

use super::{Annotations, Sink};
use crate::api::annotations::{self, keys, Algorithm, HashBy};
use crate::api::{self, BackendPolicy, EndpointWeight, HashOn, LoadBalancerType};
use crate::table::{
    ConsistentHash, CookieAffinity, HashKey, HashRing, LoadBalancing, SameSite, SlowStart,
    DEFAULT_DECAY,
};

/// Maglev's default table size: a prime well above 100 × the endpoints of most backends.
pub const DEFAULT_MAGLEV_TABLE_SIZE: u32 = 65537;
/// The affinity cookie's name unless configured.
pub const DEFAULT_COOKIE: &str = "vane-affinity";
/// Where slow start begins, in percent of the full weight, unless a policy says otherwise.
pub const DEFAULT_SLOW_START_MIN_PERCENT: u32 = 10;
/// Ring hash's points per unit of weight (Ketama's classic 160).
pub const DEFAULT_RING_POINTS: u32 = 160;

/// What an Ingress's annotations say about balancing (parsed once per Ingress).
#[derive(Debug, Default)]
pub struct IngressBalancing {
    algorithm: Option<Algorithm>,
    hash_by: Option<HashBy>,
    slow_start: Option<Duration>,
    cookie: CookieAnnotations,
}

/// The `affinity` and `session-cookie-*` annotations.
#[derive(Debug, Default)]
struct CookieAnnotations {
    enabled: bool,
    name: Option<String>,
    path: Option<String>,
    domain: Option<String>,
    /// `session-cookie-max-age`, else `session-cookie-expires` (ingress-nginx sends both as
    /// Expires and Max-Age; browsers go by Max-Age).
    max_age: Option<Duration>,
    same_site: Option<SameSite>,
    secure: Option<bool>,
}

impl IngressBalancing {
    pub fn parse(annotations: &Annotations<'_>, sink: &mut Sink) -> Self {
        Self {
            algorithm: annotations.parse(keys::LOAD_BALANCE, annotations::parse_algorithm, sink),
            hash_by: annotations.parse(keys::HASH_BY, annotations::parse_hash_by, sink),
            slow_start: annotations.parse(keys::SLOW_START, annotations::parse_slow_start, sink),
            cookie: CookieAnnotations {
                enabled: annotations
                    .parse(keys::AFFINITY, annotations::parse_affinity, sink)
                    .is_some(),
                name: annotations.parse(
                    keys::SESSION_COOKIE_NAME,
                    annotations::parse_cookie_name,
                    sink,
                ),
                path: annotations.parse(
                    keys::SESSION_COOKIE_PATH,
                    annotations::parse_cookie_path,
                    sink,
                ),
                domain: annotations.parse(
                    keys::SESSION_COOKIE_DOMAIN,
                    annotations::parse_cookie_domain,
                    sink,
                ),
                max_age: annotations
                    .parse(
                        keys::SESSION_COOKIE_MAX_AGE,
                        annotations::parse_max_age,
                        sink,
                    )
                    .or_else(|| {
                        annotations.parse(
                            keys::SESSION_COOKIE_EXPIRES,
                            annotations::parse_max_age,
                            sink,
                        )
                    }),
                same_site: annotations
                    .parse(
                        keys::SESSION_COOKIE_SAMESITE,
                        annotations::parse_same_site,
                        sink,
                    )
                    .map(same_site),
                secure: annotations.parse(
                    keys::SESSION_COOKIE_SECURE,
                    annotations::parse_bool,
                    sink,
                ),
            },
        }
    }

    /// Cookie affinity for a backend of this Ingress: on when `vane.dev/affinity: cookie` or
    /// the policy's `sessionPersistence` (of type Cookie) says so. Each cookie attribute comes
    /// from its annotation, else the policy, else the default.
    pub fn affinity(&self, policy: Option<&BackendPolicy>) -> Option<CookieAffinity> {
        let session = policy
            .and_then(|p| p.spec.session_persistence.as_ref())
            .filter(|s| {
                s.type_
                    .is_none_or(|t| t == api::SessionPersistenceType::Cookie)
            });
        if !self.cookie.enabled && session.is_none() {
            return None;
        }
        let config = session.and_then(|s| s.cookie_config.as_ref());
        let permanent = config.and_then(|c| c.lifetime_type) != Some(api::CookieLifetime::Session);
        let policy_max_age = session
            .filter(|_| permanent)
            .and_then(|s| s.absolute_timeout.as_ref())
            .and_then(|d| d.parse().ok());
        let policy_name = session
            .and_then(|s| s.session_name.as_deref())
            .and_then(|n| annotations::parse_cookie_name(n).ok());
        Some(CookieAffinity {
            name: self
                .cookie
                .name
                .clone()
                .or(policy_name)
                .unwrap_or_else(|| DEFAULT_COOKIE.into())
                .into(),
            path: self
                .cookie
                .path
                .clone()
                .or_else(|| {
                    config
                        .and_then(|c| c.path.as_deref())
                        .and_then(|p| annotations::parse_cookie_path(p).ok())
                })
                .unwrap_or_else(|| "/".into())
                .into(),
            domain: self
                .cookie
                .domain
                .clone()
                .or_else(|| {
                    config
                        .and_then(|c| c.domain.as_deref())
                        .and_then(|d| annotations::parse_cookie_domain(d).ok())
                })
                .map(Into::into),
            max_age: self.cookie.max_age.or(policy_max_age),
            secure: self
                .cookie
                .secure
                .or(config.and_then(|c| c.secure))
                .unwrap_or(false),
            http_only: config.and_then(|c| c.http_only).unwrap_or(true),
            same_site: self
                .cookie
                .same_site
                .or(config.and_then(|c| c.same_site).map(|s| match s {
                    api::SameSite::Strict => SameSite::Strict,
                    api::SameSite::Lax => SameSite::Lax,
                    api::SameSite::None => SameSite::None,
                })),
        })
    }

    /// Slow start for a backend of this Ingress: the annotation's window (linear, from 10%),
    /// else the policy's `slowStart` of its algorithm block.
    pub fn slow_start(&self, policy: Option<&BackendPolicy>) -> Option<SlowStart> {
        if let Some(window) = self.slow_start {
            return Some(SlowStart {
                window,
                aggression_percent: 100,
                min_weight_percent: DEFAULT_SLOW_START_MIN_PERCENT,
            });
        }
        let lb = policy?.spec.load_balancer.as_ref()?;
        let block = lb
            .round_robin
            .as_ref()
            .and_then(|s| s.slow_start.as_ref())
            .or_else(|| {
                lb.least_connections
                    .as_ref()
                    .and_then(|s| s.slow_start.as_ref())
            })
            .or_else(|| {
                lb.least_response_time
                    .as_ref()
                    .and_then(|s| s.slow_start.as_ref())
            })?;
        Some(SlowStart {
            window: block.window.parse().ok()?,
            aggression_percent: block
                .aggression
                .map_or(100, |a| (a * 100.0).round().clamp(10.0, 1000.0) as u32),
            min_weight_percent: block
                .min_weight_percent
                .unwrap_or(DEFAULT_SLOW_START_MIN_PERCENT)
                .clamp(1, 100),
        })
    }

    /// The algorithm for a backend of this Ingress, configured by `policy` where the
    /// annotations are silent.
    pub fn load_balancing(&self, policy: Option<&BackendPolicy>) -> LoadBalancing {
        let from_policy = policy.and_then(|p| p.spec.load_balancer.as_ref());
        let hash = |key: HashKey| {
            // Table settings of a policy still apply when an annotation picked hashing.
            let settings = from_policy.and_then(|lb| lb.consistent_hash.as_ref());
            LoadBalancing::ConsistentHash(ConsistentHash {
                key,
                ring: settings.map_or(
                    HashRing::Maglev {
                        table_size: DEFAULT_MAGLEV_TABLE_SIZE,
                    },
                    ring_of,
                ),
                bounded_load_percent: settings.and_then(bounded_load_of),
            })
        };
        let annotated_key = self.hash_by.as_ref().map(hash_key);
        match (self.algorithm, annotated_key) {
            (Some(Algorithm::ConsistentHash), key) => {
                return hash(key.unwrap_or(HashKey::SourceIp))
            }
            (Some(Algorithm::RoundRobin), _) => return LoadBalancing::RoundRobin,
            (Some(Algorithm::Random), _) => return LoadBalancing::Random,
            (Some(Algorithm::LeastConnections), _) => return LoadBalancing::LeastConnections,
            (Some(Algorithm::LeastResponseTime), _) => {
                return LoadBalancing::LeastResponseTime {
                    decay: decay_of(from_policy),
                }
            }
            // `hash-by` alone turns hashing on, as ingress-nginx's upstream-hash-by does.
            (None, Some(key)) => return hash(key),
            (None, None) => {}
        }
        match from_policy {
            Some(lb) => from_policy_block(lb),
            None => LoadBalancing::RoundRobin,
        }
    }
}

fn from_policy_block(lb: &api::LoadBalancer) -> LoadBalancing {
    match lb.type_ {
        LoadBalancerType::RoundRobin => LoadBalancing::RoundRobin,
        LoadBalancerType::Random => LoadBalancing::Random,
        LoadBalancerType::LeastConnections => LoadBalancing::LeastConnections,
        LoadBalancerType::LeastResponseTime => LoadBalancing::LeastResponseTime {
            decay: decay_of(Some(lb)),
        },
        LoadBalancerType::ConsistentHash => match &lb.consistent_hash {
            Some(settings) => LoadBalancing::ConsistentHash(ConsistentHash {
                key: policy_hash_key(settings),
                ring: ring_of(settings),
                bounded_load_percent: bounded_load_of(settings),
            }),
            // Validation rejects this policy, so it is never attached; stay safe regardless.
            None => LoadBalancing::RoundRobin,
        },
    }
}

/// A policy's `leastResponseTime.decay`, else the default.
fn decay_of(lb: Option<&api::LoadBalancer>) -> Duration {
    lb.and_then(|lb| lb.least_response_time.as_ref())
        .and_then(|lrt| lrt.decay.as_ref())
        .and_then(|d| d.parse().ok())
        .unwrap_or(DEFAULT_DECAY)
}

/// A policy's hash key, read as the annotation would say it.
fn policy_hash_key(settings: &api::ConsistentHash) -> HashKey {
    let name = settings.name.clone().unwrap_or_default();
    hash_key(&match settings.hash_on {
        HashOn::SourceIp => HashBy::SourceIp,
        HashOn::Path => HashBy::Path,
        HashOn::Header => HashBy::Header(name),
        HashOn::Cookie => HashBy::Cookie(name),
        HashOn::QueryParameter => HashBy::Query(name),
    })
}

fn hash_key(hash_by: &HashBy) -> HashKey {
    match hash_by {
        HashBy::SourceIp => HashKey::SourceIp,
        HashBy::Path => HashKey::Path,
        HashBy::RequestUri => HashKey::RequestUri,
        // The parser admits only header-safe names.
        HashBy::Header(name) => name.parse().map_or(HashKey::SourceIp, HashKey::Header),
        HashBy::Cookie(name) => HashKey::Cookie(name.as_str().into()),
        HashBy::Query(name) => HashKey::Query(name.as_str().into()),
    }
}

fn ring_of(settings: &api::ConsistentHash) -> HashRing {
    match settings.algorithm {
        Some(api::HashAlgorithm::RingHash) => HashRing::Ring {
            points_per_weight: DEFAULT_RING_POINTS,
        },
        _ => HashRing::Maglev {
            table_size: settings.table_size.unwrap_or(DEFAULT_MAGLEV_TABLE_SIZE),
        },
    }
}

fn bounded_load_of(settings: &api::ConsistentHash) -> Option<u32> {
    settings
        .bounded_load_factor
        .map(|f| (f * 100.0).round().clamp(100.0, 1000.0) as u32)
}

/// An endpoint's weight: the first `endpointWeights` entry of the policy whose every given
/// field (zone, nodeName, hostname, address) matches the endpoint; 1 without a match.
pub fn endpoint_weight(
    policy: Option<&BackendPolicy>,
    endpoint: &SliceEndpoint,
    address: &str,
) -> u32 {
    let Some(weights) = policy
        .and_then(|p| p.spec.load_balancer.as_ref())
        .map(|lb| &lb.endpoint_weights)
    else {
        return 1;
    };
    let matches = |rule: &EndpointWeight| {
        let field = |wanted: &Option<String>, actual: Option<&str>| {
            wanted.as_deref().is_none_or(|w| Some(w) == actual)
        };
        field(&rule.zone, endpoint.zone.as_deref())
            && field(&rule.node_name, endpoint.node_name.as_deref())
            && field(&rule.hostname, endpoint.hostname.as_deref())
            && field(&rule.address, Some(address))
    };
    weights
        .iter()
        .find(|rule| matches(rule))
        .map_or(1, |rule| rule.weight.clamp(1, 1000))
}

/// A cookie Domain attribute: a DNS name, nothing that could smuggle attributes in.
fn same_site(value: api::SameSite) -> SameSite {
    match value {
        api::SameSite::Strict => SameSite::Strict,
        api::SameSite::Lax => SameSite::Lax,
        api::SameSite::None => SameSite::None,
    }
}
