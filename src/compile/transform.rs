//! An Ingress's route transforms, from ingress-nginx's annotations (under either prefix):
//! regex paths, `rewrite-target`, the redirects, `upstream-vhost`, `x-forwarded-prefix`,
//! `proxy-body-size`, CORS (parsed in `cors.rs`), error pages; and vane's header changes (in
//! `header_changes.rs`). Each is parsed into a typed value once; a value that cannot be used
//! is reported and that setting alone is dropped.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, StatusCode};

use super::header_changes::{self, Side};
use super::secrets::{SecretInput, Secrets};
use super::{basic_auth, compat, cors, external_auth, ingress, Annotations, Sink};
use crate::api::annotations::{self, keys, Satisfy};
use crate::table::{
    IpSet, Location, ObjectRef, PathKind, PathRegex, PathRule, RateLimits, Redirect, RequestRate,
    Rewrite, SourceRanges, Template, TemplatePart, Transforms, Variable,
};

/// Longest template (a rewrite target or redirect URL) vane accepts.
const MAX_TEMPLATE_LEN: usize = 2048;

/// ingress-nginx's `http-redirect-code`, the code of its www redirects.
const WWW_REDIRECT_CODE: StatusCode = StatusCode::PERMANENT_REDIRECT;

/// What applies where an Ingress sets nothing: the flags.
#[derive(Clone, Copy, Debug)]
pub(super) struct Defaults {
    /// `--proxy-body-size`.
    pub(super) body_limit: Option<u64>,
    /// `--limit-req-status-code`.
    pub(super) limit_status: StatusCode,
}

impl Defaults {
    pub(super) fn of(options: &super::Options) -> Self {
        Self {
            body_limit: options.proxy_body_size,
            limit_status: options.limit_req_status_code,
        }
    }
}

/// What one Ingress's annotations say about its routes beyond where they go.
#[derive(Clone, Debug, Default)]
pub(super) struct IngressTransforms {
    /// Whether `ImplementationSpecific` paths are regular expressions.
    pub(super) regex_paths: bool,
    pub(super) rewrite_target: Option<Template>,
    /// `from-to-www-redirect`.
    pub(super) www_redirect: bool,
    /// Shared by every route of the Ingress; `None` when there is nothing to apply.
    pub(super) transforms: Option<Arc<Transforms>>,
    /// `custom-http-errors`.
    pub(super) error_codes: Option<Box<[StatusCode]>>,
    /// `default-backend`: a Service of the Ingress's namespace.
    pub(super) default_backend: Option<String>,
    /// The Secret of `auth-secret`, which the routes depend on.
    pub(super) auth_secret: Option<SecretInput>,
}

impl IngressTransforms {
    /// `defaults` apply where the Ingress sets nothing; `secrets` hold the users of
    /// `auth-secret`.
    pub(super) fn parse(
        annotations: &Annotations<'_>,
        object: &ObjectRef,
        (defaults, secrets): (Defaults, &Secrets<'_>),
        sink: &mut Sink,
    ) -> Self {
        let rewrite_target = annotations.parse(keys::REWRITE_TARGET, parse_rewrite_target, sink);
        let use_regex = annotations
            .parse(keys::USE_REGEX, annotations::parse_bool, sink)
            .unwrap_or(false);
        let (source_ranges, unusable) = match source_ranges(annotations, sink) {
            Ok(ranges) => (ranges, None),
            Err(why) => (None, Some(why.into_boxed_str())),
        };
        let (rate_limits, unusable) = match rate_limits(annotations, defaults.limit_status, sink) {
            Ok(limits) => (limits, unusable),
            Err(why) => (None, unusable.or(Some(why.into_boxed_str()))),
        };
        let auth = basic_auth::parse(annotations, object, secrets, sink);
        let (basic_auth, unusable) = match auth.auth {
            Ok(users) => (users, unusable),
            Err(why) => (None, unusable.or(Some(why.into_boxed_str()))),
        };
        let (external_auth, unusable) = match external_auth::parse(annotations, sink) {
            Ok(auth) => (auth, unusable),
            Err(why) => (None, unusable.or(Some(why.into_boxed_str()))),
        };
        let (satisfy, unusable) =
            match annotations.parse_or_refuse(keys::SATISFY, annotations::parse_satisfy, sink) {
                Ok(satisfy) => (satisfy.unwrap_or_default(), unusable),
                Err(why) => (Satisfy::All, unusable.or(Some(why.into_boxed_str()))),
            };
        let transforms = Transforms {
            refused: compat::screen(annotations, object, sink).or(unusable),
            // `any` only means something where both kinds of check apply.
            satisfy_any: satisfy == Satisfy::Any
                && source_ranges.is_some()
                && (basic_auth.is_some() || external_auth.is_some()),
            source_ranges,
            rate_limits,
            basic_auth,
            external_auth,
            redirect: redirect(annotations, sink),
            app_root: annotations.parse(keys::APP_ROOT, parse_app_root, sink),
            upstream_host: annotations.parse(keys::UPSTREAM_VHOST, parse_upstream_vhost, sink),
            forwarded_prefix: annotations.parse(
                keys::X_FORWARDED_PREFIX,
                annotations::parse_header_value,
                sink,
            ),
            body_limit: match annotations.parse(
                keys::PROXY_BODY_SIZE,
                annotations::parse_body_size,
                sink,
            ) {
                Some(0) => None,
                Some(limit) => Some(limit),
                None => defaults.body_limit,
            },
            request_headers: annotations
                .parse(
                    keys::REQUEST_HEADERS,
                    |v| header_changes::parse(v, Side::Request),
                    sink,
                )
                .unwrap_or_default(),
            response_headers: annotations
                .parse(
                    keys::RESPONSE_HEADERS,
                    |v| header_changes::parse(v, Side::Response),
                    sink,
                )
                .unwrap_or_default(),
            cors: cors::parse(annotations, sink),
        };
        Self {
            regex_paths: use_regex || rewrite_target.is_some(),
            rewrite_target,
            www_redirect: annotations
                .parse(keys::FROM_TO_WWW_REDIRECT, annotations::parse_bool, sink)
                .unwrap_or(false),
            transforms: (!transforms.is_empty()).then(|| Arc::new(transforms)),
            error_codes: annotations
                .parse(
                    keys::CUSTOM_HTTP_ERRORS,
                    annotations::parse_error_codes,
                    sink,
                )
                .map(|codes| status_codes(&codes)),
            default_backend: annotations.parse(
                keys::DEFAULT_BACKEND,
                annotations::parse_service_name,
                sink,
            ),
            auth_secret: auth.secret,
        }
    }

    /// Why the Ingress, as a canary, takes no traffic: what refuses its routes, or access
    /// rules of its own. A canary's requests pass its main route's checks, as in ingress-nginx,
    /// so a stricter allow list or rate limit of the canary's would go unapplied (fail closed).
    pub(super) fn refused_as_canary(&self) -> Option<&str> {
        let transforms = self.transforms.as_ref()?;
        if let Some(why) = &transforms.refused {
            return Some(why);
        }
        let own_access = transforms.source_ranges.is_some()
            || transforms.rate_limits.is_some()
            || transforms.basic_auth.is_some()
            || transforms.external_auth.is_some();
        own_access.then_some(
            "its own allow lists, rate limits and authentication are not applied (a canary's \
             requests pass its main Ingress's)",
        )
    }

    /// The rewrite of a route with `path` (none for the default backend, which has no path
    /// to match captures against, as in ingress-nginx).
    pub(super) fn rewrite(&self, path: Option<&PathRule>) -> Option<Arc<Rewrite>> {
        let target = self.rewrite_target.as_ref()?;
        let path = path?;
        let pattern = match (path.kind(), path.compiled()) {
            (PathKind::Regex, Some(regex)) => regex.clone(),
            _ => PathRegex::literal(path.display_path()),
        };
        Some(Arc::new(Rewrite {
            pattern,
            target: target.clone(),
        }))
    }
}

/// The allow and deny lists, or why they cannot be applied (reported).
fn source_ranges(
    annotations: &Annotations<'_>,
    sink: &mut Sink,
) -> Result<Option<SourceRanges>, String> {
    let list = |key, sink: &mut Sink| {
        annotations
            .parse_or_refuse(key, annotations::parse_cidrs, sink)
            .map(|cidrs| cidrs.map(IpSet::new))
    };
    let allow = match list(keys::ALLOWLIST_SOURCE_RANGE, sink)? {
        Some(allow) => Some(allow),
        None => list(keys::WHITELIST_SOURCE_RANGE, sink)?,
    };
    let deny = list(keys::DENYLIST_SOURCE_RANGE, sink)?;
    Ok((allow.is_some() || deny.is_some()).then_some(SourceRanges { allow, deny }))
}

/// ingress-nginx's default `limit-burst-multiplier`.
const DEFAULT_BURST_MULTIPLIER: u32 = 5;

/// The rate limits, or why they cannot be applied (reported): a limit that cannot be read
/// fails closed, since serving without it would let a client through that was to be held.
fn rate_limits(
    annotations: &Annotations<'_>,
    status: StatusCode,
    sink: &mut Sink,
) -> Result<Option<RateLimits>, String> {
    let rps = annotations.parse_or_refuse(keys::LIMIT_RPS, annotations::parse_rate, sink)?;
    let rpm = annotations.parse_or_refuse(keys::LIMIT_RPM, annotations::parse_rate, sink)?;
    if rps.is_none() && rpm.is_none() {
        return Ok(None);
    }
    let multiplier = annotations
        .parse_or_refuse(keys::LIMIT_BURST_MULTIPLIER, annotations::parse_rate, sink)?
        .unwrap_or(DEFAULT_BURST_MULTIPLIER);
    let rates = [
        (rps, Duration::from_secs(1)),
        (rpm, Duration::from_secs(60)),
    ]
    .into_iter()
    .filter_map(|(n, period)| {
        let n = n?;
        RequestRate::new(n, period, n.saturating_mul(multiplier))
    })
    .collect();
    let exempt =
        match annotations.parse_or_refuse(keys::LIMIT_ALLOWLIST, annotations::parse_cidrs, sink)? {
            Some(cidrs) => Some(cidrs),
            None => annotations.parse_or_refuse(
                keys::LIMIT_WHITELIST,
                annotations::parse_cidrs,
                sink,
            )?,
        };
    Ok(Some(RateLimits {
        rates,
        exempt: exempt.map(IpSet::new),
        status,
    }))
}

/// Status codes parsed as 400-599 (so each is one).
pub(super) fn status_codes(codes: &[u16]) -> Box<[StatusCode]> {
    codes
        .iter()
        .filter_map(|&code| StatusCode::from_u16(code).ok())
        .collect()
}

/// The redirect of `temporal-redirect` (which wins, as in ingress-nginx) or
/// `permanent-redirect`, with its code.
fn redirect(annotations: &Annotations<'_>, sink: &mut Sink) -> Option<Redirect> {
    let (url, code, default, codes) =
        match annotations.parse(keys::TEMPORAL_REDIRECT, parse_redirect_url, sink) {
            Some(url) => (
                url,
                keys::TEMPORAL_REDIRECT_CODE,
                StatusCode::FOUND,
                300..=307,
            ),
            None => (
                annotations.parse(keys::PERMANENT_REDIRECT, parse_redirect_url, sink)?,
                keys::PERMANENT_REDIRECT_CODE,
                StatusCode::MOVED_PERMANENTLY,
                300..=308,
            ),
        };
    let code = annotations
        .parse(
            code,
            |value| {
                value
                    .trim()
                    .parse::<u16>()
                    .ok()
                    .filter(|code| codes.contains(code))
                    .and_then(|code| StatusCode::from_u16(code).ok())
                    .ok_or_else(|| {
                        format!(
                            "{value:?} is not a redirect code from {} to {}",
                            codes.start(),
                            codes.end()
                        )
                    })
            },
            sink,
        )
        .unwrap_or(default);
    Some(Redirect {
        code,
        location: Location::Url(url),
    })
}

/// The redirect of a `from-to-www-redirect` route on `host`: the other name, and a redirect
/// to `host`. `None` for wildcard hosts and names that have no other (`www.` alone).
pub(super) fn www_redirect(host: &str) -> Option<(String, Transforms)> {
    let from = match host.strip_prefix("www.") {
        Some(bare) if !bare.is_empty() => bare.to_owned(),
        Some(_) => return None,
        None => format!("www.{host}"),
    };
    ingress::validate_host(&from).ok()?;
    let transforms = Transforms {
        redirect: Some(Redirect {
            code: WWW_REDIRECT_CODE,
            location: Location::Host(host.into()),
        }),
        ..Transforms::default()
    };
    Some((from, transforms))
}

/// Whether `b` may appear in a path or URL vane writes: RFC 3986's unreserved, sub-delims,
/// `:`, `@`, `/`, `?` and `%` (escapes), which keeps header values and request targets valid.
fn is_url_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!&'()*+,;=:@/?%".contains(&b)
}

/// `rewrite-target`: a path (`/`, `/api/$2`), with `$1`..`$9` for capture groups.
fn parse_rewrite_target(value: &str) -> Result<Template, String> {
    let value = value.trim();
    if !value.starts_with('/') {
        return Err(format!("{value:?} is not a path starting with /"));
    }
    parse_template(value, &|_| None)
}

/// `permanent-redirect`, `temporal-redirect`: an absolute http(s) URL, with nginx variables
/// (`https://example.com$request_uri`).
pub(super) fn parse_redirect_url(value: &str) -> Result<Template, String> {
    let value = value.trim();
    let rest = ["https://", "http://", "$scheme://"]
        .iter()
        .find_map(|scheme| value.strip_prefix(scheme))
        .ok_or_else(|| format!("{value:?} is not an http:// or https:// URL"))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("{value:?} has no host"));
    }
    parse_template(value, &variable)
}

/// nginx's variables that a redirect may use.
fn variable(name: &str) -> Option<Variable> {
    Some(match name {
        "request_uri" => Variable::RequestUri,
        "uri" => Variable::Uri,
        "args" | "query_string" => Variable::Args,
        "is_args" => Variable::IsArgs,
        "scheme" => Variable::Scheme,
        "host" => Variable::Host,
        "http_host" => Variable::HttpHost,
        "escaped_request_uri" => Variable::EscapedRequestUri,
        _ => return None,
    })
}

/// Splits `value` into literals, `$1`..`$9` captures and the variables `variables` knows;
/// anything else after `$` is refused rather than passed on literally.
fn parse_template(
    value: &str,
    variables: &dyn Fn(&str) -> Option<Variable>,
) -> Result<Template, String> {
    if value.len() > MAX_TEMPLATE_LEN {
        return Err(format!("is longer than {MAX_TEMPLATE_LEN} bytes"));
    }
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut rest = value;
    while let Some(c) = rest.bytes().next() {
        if c != b'$' {
            if !is_url_byte(c) {
                return Err(format!(
                    "{value:?} has {:?}, which cannot appear in a URL unescaped",
                    char::from(c)
                ));
            }
            literal.push(char::from(c));
            rest = &rest[1..];
            continue;
        }
        let name_len = rest[1..]
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
            .count();
        let name = &rest[1..1 + name_len];
        let part = match name.parse::<usize>() {
            Ok(group @ 1..=9) if name.len() == 1 => TemplatePart::Capture(group),
            _ => match variables(name) {
                Some(variable) => TemplatePart::Variable(variable),
                None => {
                    return Err(format!(
                        "{value:?} uses ${name}, which vane does not substitute here"
                    ))
                }
            },
        };
        if !literal.is_empty() {
            parts.push(TemplatePart::Literal(std::mem::take(&mut literal).into()));
        }
        parts.push(part);
        rest = &rest[1 + name_len..];
    }
    if !literal.is_empty() {
        parts.push(TemplatePart::Literal(literal.into()));
    }
    Ok(Template { parts })
}

/// `app-root`: a path on the same host (ingress-nginx refuses absolute URLs too).
fn parse_app_root(value: &str) -> Result<Box<str>, String> {
    let value = value.trim();
    let valid = value.starts_with('/')
        && !value.starts_with("//")
        && value.len() <= MAX_TEMPLATE_LEN
        && value.bytes().all(is_url_byte);
    if valid {
        Ok(value.into())
    } else {
        Err(format!("{value:?} is not a path like /app"))
    }
}

/// `upstream-vhost`: a host name or IP address, with an optional port.
fn parse_upstream_vhost(value: &str) -> Result<HeaderValue, String> {
    let value = value.trim();
    let (host, port) = match value.rsplit_once(':') {
        Some((host, _)) if !host.ends_with(']') && host.contains(':') => (value, None),
        Some((host, port)) => (host, Some(port)),
        None => (value, None),
    };
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
    let bracketed = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok());
    let host_ok = bracketed
        || host.parse::<std::net::IpAddr>().is_ok()
        || (!host.starts_with("*.") && ingress::validate_host(host).is_ok());
    match (host_ok && port_ok).then(|| HeaderValue::from_str(value)) {
        Some(Ok(header)) => Ok(header),
        _ => Err(format!(
            "{value:?} is not a host name or address with an optional port"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn literal(text: &str) -> TemplatePart {
        TemplatePart::Literal(text.into())
    }

    #[test]
    fn rewrite_targets_take_captures_and_nothing_else() {
        assert_eq!(
            parse_rewrite_target("/$2").unwrap().parts,
            vec![literal("/"), TemplatePart::Capture(2)]
        );
        assert_eq!(
            parse_rewrite_target("/api/$1/x?a=b").unwrap().parts,
            vec![
                literal("/api/"),
                TemplatePart::Capture(1),
                literal("/x?a=b")
            ]
        );
        for bad in [
            "$1",
            "/$request_uri",
            "/$10",
            "/a b",
            "/\"x",
            "/a\r\nb",
            "/$0",
            "",
        ] {
            assert!(parse_rewrite_target(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn redirect_urls_are_absolute_and_know_nginx_variables() {
        assert_eq!(
            parse_redirect_url("https://example.com$request_uri")
                .unwrap()
                .parts,
            vec![
                literal("https://example.com"),
                TemplatePart::Variable(Variable::RequestUri)
            ]
        );
        assert!(parse_redirect_url("$scheme://$host/new").is_ok());
        for bad in [
            "/relative",
            "ftp://example.com",
            "https://",
            "https:///path",
            "https://example.com$remote_addr",
            "https://example.com/<script>",
        ] {
            assert!(parse_redirect_url(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn app_roots_and_vhosts_parse_or_are_rejected() {
        assert_eq!(parse_app_root("/app1").unwrap().as_ref(), "/app1");
        for bad in ["app", "https://x.com/app", "//x.com", "/a b"] {
            assert!(parse_app_root(bad).is_err(), "{bad:?}");
        }
        for good in [
            "internal.svc",
            "internal.svc:8080",
            "10.0.0.1",
            "[::1]:80",
            "::1",
        ] {
            assert!(parse_upstream_vhost(good).is_ok(), "{good:?}");
        }
        for bad in [
            "",
            "a b",
            "x.com:0",
            "x.com:99999",
            "*.x.com",
            "x.com/path",
            "$host",
        ] {
            assert!(parse_upstream_vhost(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn www_redirects_go_both_ways() {
        let (from, transforms) = www_redirect("example.com").unwrap();
        assert_eq!(from, "www.example.com");
        assert_eq!(
            transforms.redirect.unwrap().location,
            Location::Host("example.com".into())
        );
        assert_eq!(www_redirect("www.example.com").unwrap().0, "example.com");
        assert!(www_redirect("www.").is_none());
    }
}
