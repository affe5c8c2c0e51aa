//! An Ingress's CORS policy, from ingress-nginx's `enable-cors` and `cors-*` annotations (under
//! either prefix), with ingress-nginx's defaults. Each setting is parsed once into origins to
//! compare with and header values to send; one that cannot be used is reported and falls back
//! to its default. CORS only tells browsers which cross-origin reads to allow, so a fallback
//! does not fail closed (the default origin is `*`, which never carries credentials).

use std::sync::Arc;

use http::HeaderValue;

use super::{Annotations, Sink};
use crate::api::annotations::{self, keys};
use crate::table::{AllowedOrigins, Cors, OriginList, WildcardOrigin};

/// ingress-nginx's `cors-allow-methods` default.
const DEFAULT_ALLOW_METHODS: &str = "GET, PUT, POST, DELETE, PATCH, OPTIONS";
/// ingress-nginx's `cors-allow-headers` default.
const DEFAULT_ALLOW_HEADERS: &str = "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization";
/// ingress-nginx's `cors-max-age` default, in seconds (20 days).
const DEFAULT_MAX_AGE: u32 = 1_728_000;

/// Most items one list annotation may have.
const MAX_ITEMS: usize = 256;

/// The CORS policy of an Ingress with `enable-cors: "true"`; `None` otherwise (the `cors-*`
/// annotations are then not read, as they mean nothing).
pub(super) fn parse(annotations: &Annotations<'_>, sink: &mut Sink) -> Option<Arc<Cors>> {
    let enabled = annotations.parse(keys::ENABLE_CORS, annotations::parse_bool, sink);
    if enabled != Some(true) {
        return None;
    }
    let origins = annotations
        .parse(keys::CORS_ALLOW_ORIGIN, parse_origins, sink)
        .unwrap_or(AllowedOrigins::Any);
    let allow_credentials = annotations
        .parse(keys::CORS_ALLOW_CREDENTIALS, annotations::parse_bool, sink)
        .unwrap_or(true);
    Some(Arc::new(Cors {
        allow_credentials: allow_credentials && origins != AllowedOrigins::Any,
        origins,
        allow_methods: annotations
            .parse(keys::CORS_ALLOW_METHODS, parse_methods, sink)
            .unwrap_or(HeaderValue::from_static(DEFAULT_ALLOW_METHODS)),
        allow_headers: annotations
            .parse(keys::CORS_ALLOW_HEADERS, parse_allow_headers, sink)
            .unwrap_or(HeaderValue::from_static(DEFAULT_ALLOW_HEADERS)),
        expose_headers: annotations.parse(keys::CORS_EXPOSE_HEADERS, parse_expose_headers, sink),
        max_age: HeaderValue::from(
            annotations
                .parse(keys::CORS_MAX_AGE, parse_max_age, sink)
                .unwrap_or(DEFAULT_MAX_AGE),
        ),
    }))
}

/// The non-empty items of a comma-separated list, trimmed: 1 to [`MAX_ITEMS`] of them.
fn items(value: &str) -> Result<Vec<&str>, String> {
    let items: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .collect();
    if items.is_empty() || items.len() > MAX_ITEMS {
        return Err(format!(
            "{value:?} is not a comma-separated list of 1 to {MAX_ITEMS} items"
        ));
    }
    Ok(items)
}

/// A list whose items all pass `valid` (`what` names one in the message), written back as
/// `a, b, c`.
fn header_list(value: &str, what: &str, valid: fn(&str) -> bool) -> Result<HeaderValue, String> {
    let items = items(value)?;
    if let Some(bad) = items.iter().find(|item| !valid(item)) {
        return Err(format!("{bad:?} is not {what}"));
    }
    HeaderValue::from_str(&items.join(", ")).map_err(|_| format!("{value:?} is not {what}s"))
}

/// ingress-nginx's header names: letters, digits, `-` and `_`.
fn is_header_name(item: &str) -> bool {
    item.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `cors-allow-methods`: method names, letters only (as ingress-nginx).
fn parse_methods(value: &str) -> Result<HeaderValue, String> {
    header_list(value, "a method name (letters only)", |item| {
        item.bytes().all(|b| b.is_ascii_alphabetic())
    })
}

/// `cors-allow-headers`: header names.
fn parse_allow_headers(value: &str) -> Result<HeaderValue, String> {
    header_list(
        value,
        "a header name (letters, digits, - and _)",
        is_header_name,
    )
}

/// `cors-expose-headers`: header names, or `*`.
fn parse_expose_headers(value: &str) -> Result<HeaderValue, String> {
    header_list(
        value,
        "a header name (letters, digits, - and _) or *",
        |item| item == "*" || is_header_name(item),
    )
}

/// `cors-max-age`: whole seconds.
fn parse_max_age(value: &str) -> Result<u32, String> {
    value
        .trim()
        .parse::<u32>()
        .map_err(|_| format!("{value:?} is not a whole number of seconds"))
}

/// `cors-allow-origin`: `*` anywhere in the list means any origin (ingress-nginx drops the
/// rest); otherwise every item must be an origin, and one that is not refuses the annotation.
fn parse_origins(value: &str) -> Result<AllowedOrigins, String> {
    let items = items(value)?;
    if items.contains(&"*") {
        return Ok(AllowedOrigins::Any);
    }
    let mut list = OriginList::default();
    for item in items {
        let origin = item.to_ascii_lowercase();
        if origin == "null" {
            list.exact.insert(origin.into());
            continue;
        }
        let Some((scheme, authority)) = origin.split_once("://").filter(|(scheme, _)| {
            !scheme.is_empty() && scheme.bytes().all(|b| b.is_ascii_lowercase())
        }) else {
            return Err(format!(
                "{item:?} is not an origin like https://example.com, *, or null"
            ));
        };
        let (wildcard, host_port) = match authority.strip_prefix("*.") {
            Some(parent) => (true, parent),
            None => (false, authority),
        };
        let (host, port) = host_port.split_once(':').unwrap_or((host_port, "1"));
        let host_ok = !host.is_empty()
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        let port_ok = port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u16>().is_ok_and(|port| port > 0);
        if !host_ok || !port_ok {
            return Err(format!(
                "{item:?} is not an origin: scheme://host[:port], with *. for one label"
            ));
        }
        match wildcard {
            true => list.wildcards.push(WildcardOrigin {
                scheme: format!("{scheme}://").into(),
                parent: format!(".{host_port}").into(),
            }),
            false => {
                list.exact.insert(origin.into());
            }
        }
    }
    Ok(AllowedOrigins::Listed(list))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(value: &str) -> OriginList {
        match parse_origins(value) {
            Ok(AllowedOrigins::Listed(list)) => list,
            other => panic!("{value:?}: {other:?}"),
        }
    }

    #[test]
    fn origins_are_exact_or_one_label_wildcards() {
        let list = listed("https://origin-site.com:4443, http://origin-site.com,null,");
        let mut exact: Vec<&str> = list.exact.iter().map(|o| &**o).collect();
        exact.sort_unstable();
        assert_eq!(
            exact,
            [
                "http://origin-site.com",
                "https://origin-site.com:4443",
                "null"
            ]
        );
        let list = listed("HTTPS://*.Example.com:8080, myprotocol://*.abc.bar.foo");
        assert_eq!(
            list.wildcards,
            [
                WildcardOrigin {
                    scheme: "https://".into(),
                    parent: ".example.com:8080".into()
                },
                WildcardOrigin {
                    scheme: "myprotocol://".into(),
                    parent: ".abc.bar.foo".into()
                },
            ]
        );
        assert!(list.exact.is_empty());
    }

    #[test]
    fn a_star_anywhere_allows_any_origin() {
        assert_eq!(parse_origins("*"), Ok(AllowedOrigins::Any));
        assert_eq!(parse_origins("https://a.com, *"), Ok(AllowedOrigins::Any));
    }

    #[test]
    fn malformed_origins_refuse_the_annotation() {
        for bad in [
            "",
            " , ",
            "example.com",
            "https://",
            "https://*.",
            "https://a.*.com",
            "https://*.*.com",
            "https://a..com",
            "https://a.com:0",
            "https://a.com:99999",
            "https://a.com:",
            "https://a.com/path",
            "https://a.com, $http_origin",
            "1http://a.com",
            "https://user@a.com",
        ] {
            assert!(parse_origins(bad).is_err(), "{bad:?}");
        }
        let many = vec!["https://a.com"; MAX_ITEMS + 1].join(",");
        assert!(parse_origins(&many).is_err());
    }

    #[test]
    fn header_lists_are_validated_and_written_back_evenly() {
        assert_eq!(parse_methods("PUT,GET , post,").unwrap(), "PUT, GET, post");
        assert_eq!(
            parse_allow_headers("X-Forwarded-For, X-app123-XPTO").unwrap(),
            "X-Forwarded-For, X-app123-XPTO"
        );
        assert_eq!(
            parse_expose_headers("*, X-CustomResponseHeader").unwrap(),
            "*, X-CustomResponseHeader"
        );
        for bad in ["", "GET PUT", "GET;", "M-SEARCH", "GET\r\nX: y"] {
            assert!(parse_methods(bad).is_err(), "{bad:?}");
        }
        for bad in ["*", "X Y", "X:Y", "$http_x"] {
            assert!(parse_allow_headers(bad).is_err(), "{bad:?}");
        }
        assert!(parse_expose_headers("X-A, **").is_err());
    }

    #[test]
    fn max_age_is_whole_seconds() {
        assert_eq!(parse_max_age(" 600 "), Ok(600));
        assert_eq!(parse_max_age("0"), Ok(0));
        for bad in ["-1", "1.5", "10m", "", "99999999999"] {
            assert!(parse_max_age(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn defaults_are_ingress_nginx_s_and_valid_header_values() {
        // The defaults are sent as they are; they must be what the parsers would accept.
        assert!(parse_methods(DEFAULT_ALLOW_METHODS).is_ok());
        assert!(parse_allow_headers(DEFAULT_ALLOW_HEADERS).is_ok());
    }
}
