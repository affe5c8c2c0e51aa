//! Checking Basic credentials against a route's users, without stalling the proxy.
//!
//! A bcrypt or SHA-crypt verification costs milliseconds to a second of CPU by design. Run on
//! an async worker it would stall every connection of that worker meanwhile, and a flood of
//! wrong passwords would stall them all. So:
//! - costly hashes are verified on tokio's blocking pool, at most [`Credentials::parallel`]
//!   at once (a semaphore; the rest wait their turn), so that password checks can take at most
//!   that many cores whatever the flood, and the workers keep serving;
//! - a verified credential is remembered in a bounded LRU of [`CACHE_CAPACITY`] entries, so a
//!   logged-in client (whose browser sends the same `Authorization` on every request) pays the
//!   hash once, not per request. An entry is the SHA-256 of the route's
//!   [`BasicAuth::identity`] and the `Authorization` value: neither password nor user name is
//!   kept, and a rotated Secret (a new identity) matches none of the old entries. Entries
//!   pushed out at the bound are counted ([`Credentials::evictions`]).
//!
//! Failures are not remembered: a wrong password costs a verification each time, but within
//! the semaphore's bound.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use http::HeaderValue;
use lru::LruCache;
use sha2::{Digest as _, Sha256};
use tokio::sync::Semaphore;

use crate::table::BasicAuth;

/// Verified credentials remembered, across all routes. One entry is 32 bytes and a link.
pub const CACHE_CAPACITY: usize = 4096;

/// What a credential is remembered by.
type Key = [u8; 32];

/// The cache of verified credentials and the bound on verifications in progress. One per
/// process (on the [`super::TableHandle`]), so it outlives table swaps.
#[derive(Debug)]
pub struct Credentials {
    verified: Mutex<LruCache<Key, ()>>,
    permits: Arc<Semaphore>,
    parallel: usize,
    evictions: AtomicU64,
    verifications: AtomicU64,
}

impl Default for Credentials {
    /// Half the cores verify at most, so that the proxy keeps the other half.
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
        Self::new(CACHE_CAPACITY, (cores / 2).max(1))
    }
}

impl Credentials {
    pub fn new(capacity: usize, parallel: usize) -> Self {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Self {
            verified: Mutex::new(LruCache::new(capacity)),
            permits: Arc::new(Semaphore::new(parallel.max(1))),
            parallel: parallel.max(1),
            evictions: AtomicU64::new(0),
            verifications: AtomicU64::new(0),
        }
    }

    /// How many costly verifications may run at once.
    pub fn parallel(&self) -> usize {
        self.parallel
    }

    /// Verified credentials pushed out of the cache by newer ones, so far.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    /// Password hashes computed (cache misses with a known user), so far.
    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    /// Whether `authorization` (the request's header) names a user of `auth` with the right
    /// password.
    pub async fn check(&self, auth: &Arc<BasicAuth>, authorization: Option<&HeaderValue>) -> bool {
        let Some(header) = authorization else {
            return false;
        };
        let Some((user, password)) = basic_credentials(header) else {
            return false;
        };
        let Some(hash) = auth.user(&user) else {
            return false;
        };
        let key = key(auth.identity, header.as_bytes());
        if self.lock().get(&key).is_some() {
            return true;
        }
        self.verifications.fetch_add(1, Ordering::Relaxed);
        let verified = if hash.is_costly() {
            // Closed never: the semaphore lives as long as `self`.
            let Ok(_permit) = self.permits.acquire().await else {
                return false;
            };
            let auth = Arc::clone(auth);
            tokio::task::spawn_blocking(move || {
                auth.user(&user).is_some_and(|hash| hash.verify(&password))
            })
            .await
            .unwrap_or(false)
        } else {
            hash.verify(&password)
        };
        if verified && self.lock().push(key, ()).is_some_and(|(old, _)| old != key) {
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
        verified
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<Key, ()>> {
        self.verified.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The user and password of a `Basic` `Authorization` value (RFC 7617); the scheme's name is
/// case-insensitive, and the password is everything after the first `:`.
fn basic_credentials(header: &HeaderValue) -> Option<(String, Vec<u8>)> {
    let value = header.as_bytes();
    let (scheme, encoded) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"basic ") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim_ascii())
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let user = String::from_utf8(decoded[..colon].to_vec()).ok()?;
    Some((user, decoded[colon + 1..].to_vec()))
}

fn key(identity: u64, authorization: &[u8]) -> Key {
    let mut hasher = Sha256::new();
    hasher.update(identity.to_le_bytes());
    hasher.update(authorization);
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::PasswordHash;

    fn auth(users: &[(&str, &str)], identity: u64) -> Arc<BasicAuth> {
        Arc::new(BasicAuth {
            challenge: HeaderValue::from_static("Basic realm=\"\""),
            users: users
                .iter()
                .map(|(user, hash)| ((*user).into(), PasswordHash::parse(hash).unwrap()))
                .collect(),
            identity,
        })
    }

    fn basic(user_password: &str) -> HeaderValue {
        let encoded = base64::engine::general_purpose::STANDARD.encode(user_password);
        HeaderValue::from_str(&format!("Basic {encoded}")).unwrap()
    }

    #[test]
    fn basic_credentials_are_decoded_or_rejected() {
        assert_eq!(
            basic_credentials(&basic("alice:pa:ss")),
            Some(("alice".into(), b"pa:ss".to_vec()))
        );
        let lower = HeaderValue::from_static("basic YWxpY2U6eA==");
        assert_eq!(basic_credentials(&lower).unwrap().0, "alice");
        for bad in [
            "Bearer YWxpY2U6eA==",
            "Basic !!!",
            "Basic YWxpY2U=",
            "Basic",
        ] {
            assert_eq!(
                basic_credentials(&HeaderValue::from_static(bad)),
                None,
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn a_verified_credential_is_remembered_until_the_users_change() {
        let credentials = Credentials::new(2, 1);
        let bcrypt = "$2y$05$bvIG6Nmid91Mu9RcmmWZfO5HJIMCT8riNW0hEp8f6/FuA2/mHZFpe";
        let users = auth(&[("alice", bcrypt)], 1);
        let right = basic("alice:password");
        assert!(credentials.check(&users, Some(&right)).await);
        assert!(credentials.check(&users, Some(&right)).await);
        assert_eq!(
            credentials.verifications(),
            1,
            "the second check hit the cache"
        );
        assert!(!credentials.check(&users, Some(&basic("alice:wrong"))).await);
        assert!(
            !credentials
                .check(&users, Some(&basic("bob:password")))
                .await
        );
        assert!(!credentials.check(&users, None).await);
        assert_eq!(credentials.verifications(), 2, "unknown users cost no hash");
        // Rotated users: the remembered credential is not theirs.
        let rotated = auth(&[("alice", "{PLAIN}new")], 2);
        assert!(!credentials.check(&rotated, Some(&right)).await);
        assert!(credentials.check(&rotated, Some(&basic("alice:new"))).await);
    }

    /// On one thread: were the hash computed on the worker, the check's first poll would
    /// finish it. It does not, so the worker is free to serve others meanwhile; a cheap hash is
    /// checked at once.
    #[tokio::test(flavor = "current_thread")]
    async fn costly_hashes_are_verified_off_the_worker_and_cheap_ones_on_it() {
        use std::future::Future as _;
        use std::task::Poll;
        let credentials = Credentials::new(8, 1);
        let bcrypt = "$2y$05$bvIG6Nmid91Mu9RcmmWZfO5HJIMCT8riNW0hEp8f6/FuA2/mHZFpe";
        let users = auth(&[("alice", bcrypt), ("bob", "{PLAIN}b")], 3);
        for (login, inline) in [("alice:wrong", false), ("bob:wrong", true)] {
            let header = basic(login);
            let mut check = std::pin::pin!(credentials.check(&users, Some(&header)));
            let first = std::future::poll_fn(|cx| Poll::Ready(check.as_mut().poll(cx))).await;
            assert_eq!(first.is_ready(), inline, "{login}");
            if !inline {
                assert!(!check.await);
            }
        }
    }

    #[tokio::test]
    async fn the_cache_is_bounded_and_counts_what_it_pushes_out() {
        let credentials = Credentials::new(2, 1);
        let users = auth(
            &[("a", "{PLAIN}1"), ("b", "{PLAIN}2"), ("c", "{PLAIN}3")],
            7,
        );
        for login in ["a:1", "b:2", "a:1", "c:3"] {
            assert!(credentials.check(&users, Some(&basic(login))).await);
        }
        assert_eq!(credentials.evictions(), 1);
        assert_eq!(credentials.lock().len(), 2);
    }
}
