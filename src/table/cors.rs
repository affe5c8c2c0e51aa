//! An Ingress's CORS policy (ingress-nginx's `enable-cors` and `cors-*` annotations) as compile
//! leaves it: the allowed origins in a form a request's `Origin` is compared with, and every
//! header value already built, so that a request costs one comparison.

use std::borrow::Cow;

use foldhash::HashSet;
use http::HeaderValue;

/// What vane answers cross-origin requests to a route with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cors {
    pub origins: AllowedOrigins,
    /// `Access-Control-Allow-Credentials: true` to allowed origins. Never with
    /// [`AllowedOrigins::Any`]: browsers refuse credentials with `Access-Control-Allow-Origin: *`,
    /// and answering any origin's credentialed requests would hand every site the user's session.
    pub allow_credentials: bool,
    /// `Access-Control-Allow-Methods` of a preflight's answer.
    pub allow_methods: HeaderValue,
    /// `Access-Control-Allow-Headers` of a preflight's answer.
    pub allow_headers: HeaderValue,
    /// `Access-Control-Expose-Headers` of other answers, if any.
    pub expose_headers: Option<HeaderValue>,
    /// `Access-Control-Max-Age` of a preflight's answer, in seconds.
    pub max_age: HeaderValue,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// `*`: every origin, answered with `*`, so the answer does not depend on `Origin`.
    Any,
    /// Only these, each answered with its own `Origin` (hence `Vary: Origin`).
    Listed(OriginList),
}

/// The listed origins, lowercase (nginx compares them without regard to case).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OriginList {
    /// `scheme://host[:port]`, and `null`.
    pub exact: HashSet<Box<str>>,
    /// `scheme://*.parent[:port]`.
    pub wildcards: Vec<WildcardOrigin>,
}

/// An origin whose host is any one label (letters, digits, `-`) under a parent, with a given
/// scheme and port: ingress-nginx's `https://*.example.com`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WildcardOrigin {
    /// `https://`.
    pub scheme: Box<str>,
    /// What follows the label: `.example.com`, `.example.com:8443`.
    pub parent: Box<str>,
}

impl AllowedOrigins {
    /// Whether a request with this `Origin` gets CORS headers. Exact, both ends anchored
    /// (ingress-nginx's expression is anchored only at the end, a slip vane does not copy).
    pub fn allows(&self, origin: &str) -> bool {
        let list = match self {
            Self::Any => return true,
            Self::Listed(list) => list,
        };
        // Browsers send origins lowercase; only other clients pay for the copy.
        let origin = match origin.bytes().any(|b| b.is_ascii_uppercase()) {
            true => Cow::Owned(origin.to_ascii_lowercase()),
            false => Cow::Borrowed(origin),
        };
        list.exact.contains(&*origin) || list.wildcards.iter().any(|w| w.matches(&origin))
    }
}

impl WildcardOrigin {
    /// `origin` is lowercase.
    fn matches(&self, origin: &str) -> bool {
        origin
            .strip_prefix(&*self.scheme)
            .and_then(|rest| rest.strip_suffix(&*self.parent))
            .is_some_and(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_origins_match_exactly_or_by_one_label() {
        let origins = AllowedOrigins::Listed(OriginList {
            exact: ["https://app.example.com".into(), "null".into()]
                .into_iter()
                .collect(),
            wildcards: vec![WildcardOrigin {
                scheme: "https://".into(),
                parent: ".example.org:8443".into(),
            }],
        });
        for allowed in [
            "https://app.example.com",
            "HTTPS://App.Example.com",
            "null",
            "https://a-1.example.org:8443",
        ] {
            assert!(origins.allows(allowed), "{allowed}");
        }
        for refused in [
            "http://app.example.com",
            "https://app.example.com:443",
            "https://evil.com/https://app.example.com",
            "https://app.example.com.evil.com",
            "https://example.org:8443",
            "https://.example.org:8443",
            "https://a.b.example.org:8443",
            "https://a.example.org",
            "http://a.example.org:8443",
            "",
        ] {
            assert!(!origins.allows(refused), "{refused}");
        }
        assert!(AllowedOrigins::Any.allows("https://anything.test"));
    }
}
