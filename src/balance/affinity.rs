//! Cookie affinity: a request whose cookie names an endpoint in rotation goes back to it; any
//! other request is balanced as usual and the response pins the choice with a cookie.

use foldhash::HashMap;
use http::{HeaderMap, HeaderValue};
use xxhash_rust::xxh3::xxh3_64_with_seed;

use super::Member;
use crate::table::{CookieAffinity, SameSite};

/// Cookie affinity at run time: which token names which member, and each member's cookie.
#[derive(Debug)]
pub(super) struct Affinity {
    pub(super) cookie: Box<str>,
    pub(super) by_token: HashMap<String, usize>,
    pub(super) set_cookie: Vec<HeaderValue>,
}

impl Affinity {
    /// Tokens are a keyed hash of backend and address: opaque (never the IP), and the same on
    /// every replica, so any replica honours any replica's cookie.
    pub(super) fn new(config: &CookieAffinity, backend: &str, members: &[Member]) -> Self {
        let token = |m: &Member| {
            format!(
                "{:016x}",
                xxh3_64_with_seed(format!("{backend}|{}", m.address).as_bytes(), AFFINITY_SEED)
            )
        };
        let attributes = cookie_attributes(config);
        Self {
            cookie: config.name.clone(),
            by_token: members
                .iter()
                .enumerate()
                .map(|(i, m)| (token(m), i))
                .collect(),
            set_cookie: members
                .iter()
                .map(|m| {
                    HeaderValue::from_str(&format!("{}={}{attributes}", config.name, token(m)))
                        .unwrap_or_else(|_| HeaderValue::from_static(""))
                })
                .collect(),
        }
    }
}

const AFFINITY_SEED: u64 = 0x7661_6e65_7374_6b79; // "vanestky"

/// `; Path=/; Max-Age=...; ...`: built from typed, validated settings only.
fn cookie_attributes(config: &CookieAffinity) -> String {
    let mut attributes = format!("; Path={}", config.path);
    if let Some(domain) = &config.domain {
        attributes += &format!("; Domain={domain}");
    }
    if let Some(max_age) = config.max_age {
        attributes += &format!("; Max-Age={}", max_age.as_secs());
    }
    if let Some(same_site) = config.same_site {
        attributes += &format!("; SameSite={same_site:?}");
    }
    // Browsers reject SameSite=None without Secure.
    if config.secure || config.same_site == Some(SameSite::None) {
        attributes += "; Secure";
    }
    if config.http_only {
        attributes += "; HttpOnly";
    }
    attributes
}

/// The value of cookie `name` in the request, if any.
pub(crate) fn cookie_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::test_support::{members, request};
    use crate::balance::{BackendBalancer, PickContext, Picked};
    use crate::table::LoadBalancing;
    use std::time::Duration;
    use tokio::time::Instant;

    fn config() -> CookieAffinity {
        CookieAffinity {
            name: "sticky".into(),
            path: "/app".into(),
            domain: Some("example.com".into()),
            max_age: Some(Duration::from_secs(3600)),
            secure: false,
            http_only: true,
            same_site: Some(SameSite::Lax),
        }
    }

    fn pick_with_cookie<'b>(balancer: &'b BackendBalancer, cookie: Option<&str>) -> Picked<'b> {
        let mut headers = HeaderMap::new();
        if let Some(cookie) = cookie {
            headers.insert(http::header::COOKIE, cookie.parse().unwrap());
        }
        let mut rng = fastrand::Rng::with_seed(5);
        balancer
            .pick(&mut PickContext::new(
                request(&headers, "/"),
                Instant::now(),
                &mut rng,
            ))
            .unwrap()
    }

    #[test]
    fn first_pick_sets_an_opaque_cookie_and_later_picks_follow_it() {
        let m = members(&[1, 1, 1]);
        let balancer = BackendBalancer::with_affinity(
            m.clone(),
            &LoadBalancing::RoundRobin,
            None,
            Some((&config(), "default/app:80")),
        );
        let first = pick_with_cookie(&balancer, None);
        let cookie = first.set_cookie.unwrap().to_str().unwrap().to_owned();
        assert!(cookie.starts_with("sticky="), "{cookie}");
        assert!(
            cookie
                .ends_with("; Path=/app; Domain=example.com; Max-Age=3600; SameSite=Lax; HttpOnly"),
            "{cookie}"
        );
        let address = m[first.index].address;
        assert!(
            !cookie.contains(&address.ip().to_string()),
            "the cookie must not reveal the address: {cookie}"
        );

        let pair = cookie.split(';').next().unwrap();
        for _ in 0..10 {
            let again = pick_with_cookie(&balancer, Some(&format!("other=1; {pair}")));
            assert_eq!(again.index, first.index);
            assert!(again.set_cookie.is_none());
        }
    }

    #[test]
    fn an_unknown_token_picks_again_and_resets_the_cookie() {
        let balancer = BackendBalancer::with_affinity(
            members(&[1, 1]),
            &LoadBalancing::RoundRobin,
            None,
            Some((&config(), "b")),
        );
        let picked = pick_with_cookie(&balancer, Some("sticky=0123456789abcdef"));
        assert!(picked.set_cookie.is_some());
    }

    #[test]
    fn same_site_none_is_always_secure() {
        let config = CookieAffinity {
            same_site: Some(SameSite::None),
            domain: None,
            max_age: None,
            ..config()
        };
        assert_eq!(
            cookie_attributes(&config),
            "; Path=/app; SameSite=None; Secure; HttpOnly"
        );
    }
}
