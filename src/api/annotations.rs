//! `vane.dev/` annotations on Ingresses, and their typed parsers. An annotation is parsed into
//! a typed value or rejected with a message; nothing is ever pasted into configuration text.
//! Every number is bounded (see [`bounds`]), so no annotation can ask for an unbounded amount
//! of anything.

use super::bounds;

/// The prefix of vane's own annotations.
pub const VANE_PREFIX: &str = "vane.dev/";
/// ingress-nginx's prefix, read where vane gives an annotation ingress-nginx's meaning.
pub const NGINX_PREFIX: &str = "nginx.ingress.kubernetes.io/";

/// An annotation vane reads: its full name under `vane.dev/`, and under ingress-nginx's prefix
/// when vane honours that name too. Where both are set, `vane.dev/` wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key {
    pub vane: &'static str,
    pub nginx: Option<&'static str>,
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.vane)
    }
}

macro_rules! key {
    ($name:literal) => {
        Key {
            vane: concat!("vane.dev/", $name),
            nginx: None,
        }
    };
    ($name:literal, nginx) => {
        key!($name, nginx = $name)
    };
    // ingress-nginx's name for the same setting differs from vane's.
    ($name:literal, nginx = $nginx:literal) => {
        Key {
            vane: concat!("vane.dev/", $name),
            nginx: Some(concat!("nginx.ingress.kubernetes.io/", $nginx)),
        }
    };
}

/// Declares each key once: its constant, and its place in `keys::ALL`.
macro_rules! keys {
    ($($(#[$doc:meta])* $name:ident = $key:literal $(, nginx $(= $alias:literal)?)?;)*) => {
        $($(#[$doc])* pub const $name: Key = key!($key $(, nginx $(= $alias)?)?);)*

        /// Every annotation vane reads, in the order declared.
        pub const ALL: &[Key] = &[$($name),*];
    };
}

/// Annotation keys. `key!("name")` is `vane.dev/name` alone; `key!("name", nginx)` is also
/// read as `nginx.ingress.kubernetes.io/name`, with ingress-nginx's meaning.
pub mod keys {
    use super::Key;

    keys! {
        /// `round-robin`, `random`, `least-connections`, `least-response-time`, `consistent-hash`;
        /// ingress-nginx's `round_robin` and `ewma` (least response time) too.
        LOAD_BALANCE = "load-balance", nginx;
        /// `source-ip`, `header:NAME`, `cookie:NAME`, `query:NAME` or `path`, or one nginx
        /// variable as ingress-nginx's `upstream-hash-by` takes it (`$remote_addr`, `$uri`,
        /// `$request_uri`, `$http_NAME`, `$cookie_NAME`, `$arg_NAME`); alone, it also turns on
        /// consistent hashing, as `upstream-hash-by` does.
        HASH_BY = "hash-by", nginx = "upstream-hash-by";
        /// A duration (`30s`, `2m`): joining endpoints ramp up over it (round robin, least
        /// connections, least response time).
        SLOW_START = "slow-start";
        /// `cookie`: keep each client on one endpoint with a cookie.
        AFFINITY = "affinity", nginx;
        /// The affinity cookie's name (default `vane-affinity`).
        SESSION_COOKIE_NAME = "session-cookie-name", nginx;
        /// The affinity cookie's Path (default `/`).
        SESSION_COOKIE_PATH = "session-cookie-path", nginx;
        /// The affinity cookie's Domain (default: none, the request's host only).
        SESSION_COOKIE_DOMAIN = "session-cookie-domain", nginx;
        /// The affinity cookie's Max-Age in seconds (default: a session cookie).
        SESSION_COOKIE_MAX_AGE = "session-cookie-max-age", nginx;
        /// Seconds until the affinity cookie expires: its Max-Age where
        /// `session-cookie-max-age` is not set.
        SESSION_COOKIE_EXPIRES = "session-cookie-expires", nginx;
        /// `Strict`, `Lax` or `None`.
        SESSION_COOKIE_SAMESITE = "session-cookie-samesite", nginx;
        /// `true` or `false`.
        SESSION_COOKIE_SECURE = "session-cookie-secure", nginx;
        /// `"true"`: this Ingress is a canary of the Ingress serving the same host and path.
        CANARY = "canary", nginx;
        /// Percentage (0-100) of requests, not decided by header or cookie, that go to the canary.
        CANARY_WEIGHT = "canary-weight", nginx;
        /// A request header: `always` sends to the canary, `never` keeps away from it.
        CANARY_BY_HEADER = "canary-by-header", nginx;
        /// With `canary-by-header`: the header value that sends to the canary (instead of
        /// `always`).
        CANARY_BY_HEADER_VALUE = "canary-by-header-value", nginx;
        /// A cookie: `always` sends to the canary, `never` keeps away from it.
        CANARY_BY_COOKIE = "canary-by-cookie", nginx;
        /// Timeout to connect to an endpoint: seconds (`5`, as ingress-nginx) or a duration (`5s`).
        PROXY_CONNECT_TIMEOUT = "proxy-connect-timeout", nginx;
        /// Timeout for the response headers, and between two reads of the response body.
        PROXY_READ_TIMEOUT = "proxy-read-timeout", nginx;
        /// Timeout between two writes of the request body to the endpoint.
        PROXY_SEND_TIMEOUT = "proxy-send-timeout", nginx;
        /// Timeout of the whole exchange, retries included (not for upgraded connections).
        PROXY_REQUEST_TIMEOUT = "proxy-request-timeout";
        /// `"false"`: hosts with TLS do not redirect plain HTTP to HTTPS (default `"true"`).
        SSL_REDIRECT = "ssl-redirect", nginx;
        /// `"true"`: redirect plain HTTP to HTTPS even for hosts without a `spec.tls` entry.
        FORCE_SSL_REDIRECT = "force-ssl-redirect", nginx;
        /// `max-age=SECONDS[; includeSubDomains][; preload]`: the Strict-Transport-Security of
        /// HTTPS responses.
        HSTS = "hsts";
        /// `NAME` or `NAMESPACE/NAME` (the Ingress's own namespace): a Secret whose `ca.crt`
        /// verifies client certificates.
        AUTH_TLS_SECRET = "auth-tls-secret";
        /// `on` (required, the default with `auth-tls-secret`), `optional` or `off`.
        AUTH_TLS_VERIFY_CLIENT = "auth-tls-verify-client";
        /// `HTTP`, `HTTPS`, `H2C`, `GRPC` or `GRPCS`: how vane talks to the endpoints.
        BACKEND_PROTOCOL = "backend-protocol";
        /// Comma-separated `Upgrade` protocols the Ingress's routes tunnel besides `websocket`
        /// (`SPDY/3.1` for `kubectl exec` through a proxied API server, say); never `h2c`.
        UPGRADE_PROTOCOLS = "upgrade-protocols";
        /// `"false"`: the Ingress's requests are not written to the access log (default `"true"`;
        /// `--access-log off` turns it off for every Ingress).
        ENABLE_ACCESS_LOG = "enable-access-log", nginx;

        // Route transforms, with ingress-nginx's names and meaning.

        /// `"true"`: the Ingress's `ImplementationSpecific` paths are regular expressions,
        /// case-insensitive and anchored at the start.
        USE_REGEX = "use-regex", nginx;
        /// The path sent upstream instead of the request's, with `$1`..`$9` from the path's
        /// expression (`/$2`); also makes `ImplementationSpecific` paths expressions.
        REWRITE_TARGET = "rewrite-target", nginx;
        /// The `X-Forwarded-Prefix` header sent upstream.
        X_FORWARDED_PREFIX = "x-forwarded-prefix", nginx;
        /// The `Host` header sent upstream instead of the request's.
        UPSTREAM_VHOST = "upstream-vhost", nginx;
        /// A URL every request is redirected to, with code `permanent-redirect-code` (301).
        PERMANENT_REDIRECT = "permanent-redirect", nginx;
        /// 300-308: the code of `permanent-redirect`.
        PERMANENT_REDIRECT_CODE = "permanent-redirect-code", nginx;
        /// A URL every request is redirected to, with code `temporal-redirect-code` (302); wins
        /// over `permanent-redirect`.
        TEMPORAL_REDIRECT = "temporal-redirect", nginx;
        /// 300-307: the code of `temporal-redirect`.
        TEMPORAL_REDIRECT_CODE = "temporal-redirect-code", nginx;
        /// A path: requests for `/` are redirected (302) to it.
        APP_ROOT = "app-root", nginx;
        /// `"true"`: requests for `www.HOST` are redirected (308) to `HOST`, or the other way
        /// round for a host that starts with `www.`, unless an Ingress serves that name.
        FROM_TO_WWW_REDIRECT = "from-to-www-redirect", nginx;
        /// The largest request body: bytes, or with a unit `k`, `m`, `g` (`8m`); `0` is no
        /// limit. Larger bodies get 413.
        PROXY_BODY_SIZE = "proxy-body-size", nginx;
        /// Comma-separated status codes (`404,503`): responses with them, the endpoint's or
        /// vane's own, are replaced by the error page of `default-backend` (or
        /// `--default-backend-service`).
        CUSTOM_HTTP_ERRORS = "custom-http-errors", nginx;
        /// A Service of the Ingress's namespace (its first port) that answers the error pages of
        /// `custom-http-errors`.
        DEFAULT_BACKEND = "default-backend", nginx;
        /// Comma-separated CIDRs or addresses, IPv4 and IPv6: only these clients reach the
        /// routes; others get 403. An invalid value fails closed (the routes answer 503).
        ALLOWLIST_SOURCE_RANGE = "allowlist-source-range", nginx;
        /// ingress-nginx's older name of `allowlist-source-range` (which wins if both are set).
        WHITELIST_SOURCE_RANGE = "whitelist-source-range", nginx;
        /// Comma-separated CIDRs or addresses whose clients get 403; checked before the allow list.
        DENYLIST_SOURCE_RANGE = "denylist-source-range", nginx;
        /// Requests per second per client address (local to each replica); refused requests get
        /// 503, or `--limit-req-status-code`.
        LIMIT_RPS = "limit-rps", nginx;
        /// Requests per minute per client address, likewise.
        LIMIT_RPM = "limit-rpm", nginx;
        /// How many times the rate a client may send at once (default 5).
        LIMIT_BURST_MULTIPLIER = "limit-burst-multiplier", nginx;
        /// CIDRs whose clients are not rate limited.
        LIMIT_ALLOWLIST = "limit-allowlist", nginx;
        /// ingress-nginx's older name of `limit-allowlist` (which wins if both are set).
        LIMIT_WHITELIST = "limit-whitelist", nginx;
        /// `basic`: requests need a user and password of `auth-secret` (401 otherwise);
        /// `digest` is refused (the routes answer 503).
        AUTH_TYPE = "auth-type", nginx;
        /// `NAME` or `NAMESPACE/NAME` (the Ingress's own namespace only): the Secret of
        /// `auth-type`'s users. Missing, empty or unusable, the routes answer 503.
        AUTH_SECRET = "auth-secret", nginx;
        /// `auth-file` (the default: key `auth` holds htpasswd lines) or `auth-map` (each key
        /// is a user, its value the password hash).
        AUTH_SECRET_TYPE = "auth-secret-type", nginx;
        /// The realm of `auth-type`'s `WWW-Authenticate` (default empty, as ingress-nginx's).
        AUTH_REALM = "auth-realm", nginx;
        /// `all` (the default) or `any`: with `any`, a client passes when the allow and deny
        /// lists or authentication (`auth-type`, `auth-url`) let it; with `all`, it needs both.
        SATISFY = "satisfy", nginx;
        /// An `http://` or `https://` URL (nginx variables such as `$host` allowed) that each
        /// request is first sent to, without its body: 2xx lets it through, 401 and 403 go to
        /// the client, anything else (or no answer) is a 500. Unusable, the routes answer 503.
        AUTH_URL = "auth-url", nginx;
        /// The method of the request to `auth-url` (default `GET`).
        AUTH_METHOD = "auth-method", nginx;
        /// Comma-separated headers of `auth-url`'s answer that are set on the upstream request
        /// (removed there when the answer has none).
        AUTH_RESPONSE_HEADERS = "auth-response-headers", nginx;
        /// A URL (nginx variables allowed) the client is redirected to (302) when `auth-url`
        /// answers 401, with the request's URL in `rd=` (or `auth-signin-redirect-param`).
        AUTH_SIGNIN = "auth-signin", nginx;
        /// The query parameter of `auth-signin` that carries the original URL (default `rd`).
        AUTH_SIGNIN_REDIRECT_PARAM = "auth-signin-redirect-param", nginx;
        /// The `X-Auth-Request-Redirect` sent to `auth-url` (default: the request URI).
        AUTH_REQUEST_REDIRECT = "auth-request-redirect", nginx;
        /// `"true"`: `auth-url`'s `Set-Cookie` goes on every answer, errors included (default:
        /// on answers below 400 only).
        AUTH_ALWAYS_SET_COOKIE = "auth-always-set-cookie", nginx;
        /// A YAML map of `set`, `add` (header: value) and `remove` (a list of names): changes
        /// to the request before it goes upstream.
        REQUEST_HEADERS = "request-headers";
        /// The same for the endpoint's response before it goes to the client.
        RESPONSE_HEADERS = "response-headers";

        // CORS, with ingress-nginx's names, defaults and meaning.

        /// `"true"`: vane answers CORS preflights for the Ingress's routes and adds CORS headers
        /// to their responses.
        ENABLE_CORS = "enable-cors", nginx;
        /// `*` (the default: any origin), or comma-separated origins: `https://app.example.com`,
        /// `http://localhost:3000`, `https://*.example.com` (one label), `null`.
        CORS_ALLOW_ORIGIN = "cors-allow-origin", nginx;
        /// Comma-separated methods a preflight allows (default
        /// `GET, PUT, POST, DELETE, PATCH, OPTIONS`).
        CORS_ALLOW_METHODS = "cors-allow-methods", nginx;
        /// Comma-separated request headers a preflight allows (default ingress-nginx's list).
        CORS_ALLOW_HEADERS = "cors-allow-headers", nginx;
        /// Comma-separated response headers (or `*`) scripts may read (default none).
        CORS_EXPOSE_HEADERS = "cors-expose-headers", nginx;
        /// `"false"`: no `Access-Control-Allow-Credentials: true` (default `"true"`).
        CORS_ALLOW_CREDENTIALS = "cors-allow-credentials", nginx;
        /// Seconds a browser may cache a preflight's answer (default 1728000).
        CORS_MAX_AGE = "cors-max-age", nginx;
    }
}

/// Most protocols one `upgrade-protocols` annotation may list.
const MAX_UPGRADE_PROTOCOLS: usize = 8;

/// `upgrade-protocols`: protocol names as `Upgrade` writes them (RFC 9110 section 7.8: a token,
/// optionally `/` and a version token), compared without regard to case. `h2c` is refused: a
/// switch to cleartext HTTP/2 would let the client send the endpoint requests for any path,
/// past routing and every rule of vane's.
pub fn parse_upgrade_protocols(value: &str) -> Result<Box<[Box<str>]>, String> {
    let is_token = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    let protocols: Vec<Box<str>> = value
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|protocol| {
            let (name, version) = protocol.split_once('/').unwrap_or((protocol, "x"));
            if !is_token(name) || !is_token(version) {
                return Err(format!("{protocol:?} is not a protocol name like SPDY/3.1"));
            }
            if name.eq_ignore_ascii_case("h2c") {
                return Err("h2c is never tunnelled (it would bypass routing)".into());
            }
            Ok(protocol.to_ascii_lowercase().into_boxed_str())
        })
        .collect::<Result<_, _>>()?;
    if protocols.is_empty() || protocols.len() > MAX_UPGRADE_PROTOCOLS {
        return Err(format!(
            "{value:?} is not a list of 1 to {MAX_UPGRADE_PROTOCOLS} protocols"
        ));
    }
    Ok(protocols.into())
}

/// A percentage, 0 to 100.
pub fn parse_percent(value: &str) -> Result<u32, String> {
    match value.trim().parse::<u32>() {
        Ok(percent) if bounds::PERCENT.contains(percent) => Ok(percent),
        _ => Err(format!("{value:?} is not a whole number from 0 to 100")),
    }
}

/// A request header name.
pub fn parse_header_name(value: &str) -> Result<http::HeaderName, String> {
    http::HeaderName::from_bytes(value.trim().as_bytes())
        .map_err(|_| format!("{value:?} is not a header name"))
}

/// A header value to compare with (visible ASCII, at most 256 bytes).
pub fn parse_header_value(value: &str) -> Result<http::HeaderValue, String> {
    let valid =
        !value.is_empty() && value.len() <= 256 && value.bytes().all(|b| (0x20..0x7f).contains(&b));
    valid
        .then(|| http::HeaderValue::from_str(value).ok())
        .flatten()
        .ok_or_else(|| {
            format!("{value:?} is not a header value of at most 256 printable characters")
        })
}

/// A cookie name: an RFC 6265 token.
pub fn parse_cookie_name(value: &str) -> Result<String, String> {
    let valid = !value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if valid {
        Ok(value.to_owned())
    } else {
        Err(format!(
            "{value:?} is not a cookie name (1-128 token characters)"
        ))
    }
}

/// A cookie Path: starts with `/`, no `;`, no control characters.
pub fn parse_cookie_path(value: &str) -> Result<String, String> {
    let valid = value.starts_with('/')
        && value.len() <= 1024
        && value
            .bytes()
            .all(|b| (0x21..0x7f).contains(&b) && b != b';');
    if valid {
        Ok(value.to_owned())
    } else {
        Err(format!("{value:?} is not a cookie path"))
    }
}

/// A cookie Domain: a host name (letters, digits, `-` and `.`), at most 253 bytes.
pub fn parse_cookie_domain(value: &str) -> Result<String, String> {
    let valid = !value.is_empty()
        && value.len() <= 253
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b));
    if valid {
        Ok(value.to_owned())
    } else {
        Err(format!("{value:?} is not a cookie domain (a host name)"))
    }
}

/// Max-Age in whole seconds, within [`bounds::COOKIE_LIFETIME`] (up to a year).
pub fn parse_max_age(value: &str) -> Result<std::time::Duration, String> {
    let bound = bounds::COOKIE_LIFETIME;
    match value
        .trim()
        .parse::<u64>()
        .map(std::time::Duration::from_secs)
    {
        Ok(max_age) if bound.contains(max_age) => Ok(max_age),
        _ => Err(format!(
            "{value:?} is not a number of seconds between {} and {}",
            bound.min.as_secs(),
            bound.max.as_secs()
        )),
    }
}

/// `cookie`, the only affinity there is.
pub fn parse_affinity(value: &str) -> Result<(), String> {
    match value.trim() {
        "cookie" => Ok(()),
        other => Err(format!("{other:?} is not cookie")),
    }
}

/// `Strict`, `Lax` or `None`.
pub fn parse_same_site(value: &str) -> Result<super::SameSite, String> {
    match value.trim() {
        "Strict" => Ok(super::SameSite::Strict),
        "Lax" => Ok(super::SameSite::Lax),
        "None" => Ok(super::SameSite::None),
        other => Err(format!("{other:?} is not Strict, Lax or None")),
    }
}

/// Most codes one `custom-http-errors` may list.
const MAX_ERROR_CODES: usize = 32;

/// Status codes, comma-separated, each from 400 to 599 (`404,503`).
pub fn parse_error_codes(value: &str) -> Result<Vec<u16>, String> {
    parse_list(value, (MAX_ERROR_CODES, "codes"), |code| {
        code.parse::<u16>()
            .ok()
            .filter(|c| (400..=599).contains(c))
            .ok_or_else(|| format!("{code:?} is not a status code from 400 to 599"))
    })
}

/// A Service name (a DNS-1035 label), as `default-backend` names one.
pub fn parse_service_name(value: &str) -> Result<String, String> {
    let value = value.trim();
    let valid = !value.is_empty()
        && value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && value.starts_with(|c: char| c.is_ascii_lowercase())
        && !value.ends_with('-');
    if valid {
        Ok(value.to_owned())
    } else {
        Err(format!("{value:?} is not a Service name"))
    }
}

/// Most CIDRs one source-range annotation may list.
const MAX_CIDRS: usize = 10_000;

/// Comma-separated CIDRs (`10.0.0.0/8`) or single addresses (`192.0.2.7`, taken as /32 or
/// /128), IPv4 and IPv6, as ingress-nginx's source ranges.
pub fn parse_cidrs(value: &str) -> Result<Vec<ipnet::IpNet>, String> {
    parse_list(value, (MAX_CIDRS, "CIDRs"), |cidr| {
        cidr.parse::<ipnet::IpNet>()
            .or_else(|_| cidr.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
            .map_err(|_| format!("{cidr:?} is not a CIDR like 10.0.0.0/8 or an address"))
    })
}

/// The user file format of `auth-secret-type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthSecretType {
    /// Key `auth` holds htpasswd lines, `user:hash`.
    File,
    /// Each key is a user, its value the hash.
    Map,
}

/// `auth-type`: `basic`. `digest` is refused out loud: vane has no Digest authentication, and
/// serving the routes without it would drop the protection asked for.
pub fn parse_auth_type(value: &str) -> Result<(), String> {
    match value.trim() {
        "basic" => Ok(()),
        "digest" => Err("digest authentication is not supported (use basic over HTTPS)".into()),
        other => Err(format!("{other:?} is not basic")),
    }
}

/// `auth-secret-type`: `auth-file` or `auth-map`.
pub fn parse_auth_secret_type(value: &str) -> Result<AuthSecretType, String> {
    match value.trim() {
        "auth-file" => Ok(AuthSecretType::File),
        "auth-map" => Ok(AuthSecretType::Map),
        other => Err(format!("{other:?} is not auth-file or auth-map")),
    }
}

/// `auth-realm`: at most 128 printable characters without `"` or `\`, since it is written
/// into `WWW-Authenticate` as a quoted string.
pub fn parse_realm(value: &str) -> Result<String, String> {
    let valid = value.len() <= 128
        && value
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\');
    if valid {
        Ok(value.to_owned())
    } else {
        Err(format!(
            "{value:?} is not a realm of at most 128 printable characters without \" or \\"
        ))
    }
}

/// `satisfy`: whether a request needs every access check (`all`) or one (`any`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Satisfy {
    #[default]
    All,
    Any,
}

pub fn parse_satisfy(value: &str) -> Result<Satisfy, String> {
    match value.trim() {
        "all" => Ok(Satisfy::All),
        "any" => Ok(Satisfy::Any),
        other => Err(format!("{other:?} is not all or any")),
    }
}

/// An HTTP method (`auth-method`): a token such as `GET` or `POST`.
pub fn parse_method(value: &str) -> Result<http::Method, String> {
    let value = value.trim();
    let valid =
        !value.is_empty() && value.len() <= 32 && value.bytes().all(|b| b.is_ascii_uppercase());
    valid
        .then(|| http::Method::from_bytes(value.as_bytes()).ok())
        .flatten()
        .ok_or_else(|| format!("{value:?} is not a method like GET or POST"))
}

/// Most headers one header list annotation may name.
const MAX_HEADER_NAMES: usize = 32;

/// Comma-separated header names (`auth-response-headers`).
pub fn parse_header_names(value: &str) -> Result<Vec<http::HeaderName>, String> {
    parse_list(value, (MAX_HEADER_NAMES, "header names"), parse_header_name)
}

/// Comma-separated items (empty ones skipped), each parsed by `item`: at least one, and at
/// most `max` (`what` names them in the message).
fn parse_list<T>(
    value: &str,
    (max, what): (usize, &str),
    item: impl FnMut(&str) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    let items: Vec<T> = value
        .split(',')
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .map(item)
        .collect::<Result<_, _>>()?;
    if items.is_empty() || items.len() > max {
        return Err(format!("{value:?} is not a list of 1 to {max} {what}"));
    }
    Ok(items)
}

/// A query parameter name (`auth-signin-redirect-param`): letters, digits, `-`, `_`, `.`.
pub fn parse_query_param(value: &str) -> Result<String, String> {
    let value = value.trim();
    let valid = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if valid {
        Ok(value.to_owned())
    } else {
        Err(format!("{value:?} is not a query parameter name"))
    }
}

/// A positive whole number up to a million (a rate, or a burst multiplier).
pub fn parse_rate(value: &str) -> Result<u32, String> {
    match value.trim().parse::<u32>() {
        Ok(n) if (1..=1_000_000).contains(&n) => Ok(n),
        _ => Err(format!("{value:?} is not a whole number from 1 to 1000000")),
    }
}

/// Largest `proxy-body-size`: a terabyte is no limit in practice, and keeps sums in range.
const MAX_BODY_SIZE: u64 = 1 << 40;

/// A size as nginx writes it (`client_max_body_size`): bytes, or a number with `k`, `m` or
/// `g` (binary units, any case), at most 1 TiB.
pub fn parse_body_size(value: &str) -> Result<u64, String> {
    let value = value.trim();
    let (digits, unit) = match value.as_bytes().last().map(u8::to_ascii_lowercase) {
        Some(b'b') => (&value[..value.len() - 1], 1),
        Some(b'k') => (&value[..value.len() - 1], 1 << 10),
        Some(b'm') => (&value[..value.len() - 1], 1 << 20),
        Some(b'g') => (&value[..value.len() - 1], 1 << 30),
        _ => (value, 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .filter(|_| digits.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.checked_mul(unit))
        .filter(|&size| size <= MAX_BODY_SIZE)
        .ok_or_else(|| {
            format!("{value:?} is not a size like 1048576, 512k, 8m or 1g (at most 1024g)")
        })
}

/// `true` or `false`.
pub fn parse_bool(value: &str) -> Result<bool, String> {
    match value.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(format!("{other:?} is not true or false")),
    }
}

/// `Strict-Transport-Security` settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hsts {
    pub max_age_seconds: u64,
    pub include_subdomains: bool,
    pub preload: bool,
}

impl Hsts {
    /// The header value, in a canonical form.
    pub fn header_value(&self) -> http::HeaderValue {
        let mut value = format!("max-age={}", self.max_age_seconds);
        if self.include_subdomains {
            value.push_str("; includeSubDomains");
        }
        if self.preload {
            value.push_str("; preload");
        }
        http::HeaderValue::from_str(&value).expect("digits and fixed tokens are a header value")
    }
}

/// `max-age=SECONDS` (at most two years), then optionally `includeSubDomains` and `preload`,
/// separated by `;`. Directive names are case-insensitive, as RFC 6797 says.
pub fn parse_hsts(value: &str) -> Result<Hsts, String> {
    let mut max_age = None;
    let mut hsts = Hsts {
        max_age_seconds: 0,
        include_subdomains: false,
        preload: false,
    };
    for directive in value.split(';').map(str::trim).filter(|d| !d.is_empty()) {
        let (name, argument) = match directive.split_once('=') {
            Some((name, argument)) => (name.trim(), Some(argument.trim())),
            None => (directive, None),
        };
        match (name.to_ascii_lowercase().as_str(), argument) {
            ("max-age", Some(seconds)) if max_age.is_none() => match seconds.parse::<u64>() {
                Ok(seconds) if seconds <= 63_072_000 => max_age = Some(seconds),
                _ => {
                    return Err(format!(
                        "max-age {seconds:?} is not a number of seconds up to 63072000"
                    ))
                }
            },
            ("includesubdomains", None) if !hsts.include_subdomains => {
                hsts.include_subdomains = true
            }
            ("preload", None) if !hsts.preload => hsts.preload = true,
            _ => {
                return Err(format!(
                    "{directive:?} is not max-age=SECONDS, includeSubDomains or preload (each once)"
                ))
            }
        }
    }
    hsts.max_age_seconds = max_age.ok_or_else(|| format!("{value:?} has no max-age"))?;
    Ok(hsts)
}

/// Client certificate verification named by `vane.dev/auth-tls-verify-client`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifyClient {
    On,
    Optional,
    Off,
}

pub fn parse_verify_client(value: &str) -> Result<VerifyClient, String> {
    match value.trim() {
        "on" => Ok(VerifyClient::On),
        "optional" => Ok(VerifyClient::Optional),
        "off" => Ok(VerifyClient::Off),
        other => Err(format!("{other:?} is not on, optional or off")),
    }
}

/// A Secret reference `NAME` or `NAMESPACE/NAME`, as `(namespace, name)`.
pub fn parse_secret_ref(value: &str) -> Result<(Option<String>, String), String> {
    let is_name = |s: &str| {
        !s.is_empty()
            && s.len() <= 253
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.".contains(&b))
    };
    match value.trim().split_once('/') {
        None if is_name(value.trim()) => Ok((None, value.trim().to_owned())),
        Some((namespace, name)) if is_name(namespace) && is_name(name) => {
            Ok((Some(namespace.to_owned()), name.to_owned()))
        }
        _ => Err(format!("{value:?} is not NAME or NAMESPACE/NAME")),
    }
}

pub fn parse_backend_protocol(value: &str) -> Result<super::BackendProtocol, String> {
    use super::BackendProtocol::*;
    Ok(match value.trim() {
        "HTTP" => Http,
        "HTTPS" => Https,
        "H2C" => H2c,
        "GRPC" => Grpc,
        "GRPCS" => Grpcs,
        other => return Err(format!("{other:?} is not HTTP, HTTPS, H2C, GRPC or GRPCS")),
    })
}

/// A balancing algorithm named by `vane.dev/load-balance`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    RoundRobin,
    Random,
    LeastConnections,
    LeastResponseTime,
    ConsistentHash,
}

/// The hash key named by `vane.dev/hash-by`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HashBy {
    SourceIp,
    Header(String),
    Cookie(String),
    Query(String),
    Path,
    /// The path and query as the client sent them (nginx's `$request_uri`).
    RequestUri,
}

pub fn parse_algorithm(value: &str) -> Result<Algorithm, String> {
    Ok(match value.trim() {
        "round-robin" => Algorithm::RoundRobin,
        "random" => Algorithm::Random,
        "least-connections" => Algorithm::LeastConnections,
        "least-response-time" => Algorithm::LeastResponseTime,
        "consistent-hash" => Algorithm::ConsistentHash,
        // ingress-nginx's names.
        "round_robin" => Algorithm::RoundRobin,
        "ewma" => Algorithm::LeastResponseTime,
        other => {
            return Err(format!(
                "{other:?} is not one of round-robin, random, least-connections, least-response-time, consistent-hash (or ingress-nginx's round_robin, ewma)"
            ))
        }
    })
}

pub fn parse_hash_by(value: &str) -> Result<HashBy, String> {
    let value = value.trim();
    let named = |kind: &str, name: &str, make: fn(String) -> HashBy| {
        let valid = !name.is_empty()
            && name.len() <= 256
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if valid {
            Ok(make(name.to_owned()))
        } else {
            Err(format!(
                "{kind} name {name:?} must be 1-256 letters, digits, '-', '_' or '.'"
            ))
        }
    };
    if let Some(variable) = value.strip_prefix('$') {
        return nginx_hash_variable(variable);
    }
    match value.split_once(':') {
        None if value == "source-ip" => Ok(HashBy::SourceIp),
        None if value == "path" => Ok(HashBy::Path),
        Some(("header", name)) => named("header", name, HashBy::Header),
        Some(("cookie", name)) => named("cookie", name, HashBy::Cookie),
        Some(("query", name)) => named("query", name, HashBy::Query),
        _ => Err(format!(
            "{value:?} is not source-ip, path, header:NAME, cookie:NAME or query:NAME"
        )),
    }
}

/// One nginx variable of ingress-nginx's `upstream-hash-by` (after its `$`, braces allowed):
/// what vane can hash on. ingress-nginx also takes text and combinations of variables
/// (`$host$request_uri`); vane hashes on one key, so those are refused by name rather than
/// hashed on something else.
fn nginx_hash_variable(variable: &str) -> Result<HashBy, String> {
    let name = variable
        .strip_prefix('{')
        .and_then(|v| v.strip_suffix('}'))
        .unwrap_or(variable);
    let named = |name: &str, make: fn(String) -> HashBy| {
        let valid = !name.is_empty()
            && name.len() <= 256
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        valid.then(|| make(name.to_owned()))
    };
    let by = match name {
        "remote_addr" | "binary_remote_addr" => Some(HashBy::SourceIp),
        "uri" | "document_uri" => Some(HashBy::Path),
        "request_uri" => Some(HashBy::RequestUri),
        _ => {
            if let Some(header) = name.strip_prefix("http_") {
                // nginx's `$http_x_user` is the header `X-User`.
                named(header, |h| HashBy::Header(h.replace('_', "-")))
            } else if let Some(cookie) = name.strip_prefix("cookie_") {
                named(cookie, HashBy::Cookie)
            } else if let Some(arg) = name.strip_prefix("arg_") {
                named(arg, HashBy::Query)
            } else {
                None
            }
        }
    };
    by.ok_or_else(|| {
        format!(
            "${variable} is not one nginx variable vane hashes on ($remote_addr, $uri, \
             $request_uri, $http_NAME, $cookie_NAME or $arg_NAME; not text or combinations)"
        )
    })
}

/// A timeout: whole seconds as ingress-nginx writes them (`60`), or a duration (`1m`, `500ms`),
/// within [`bounds::TIMEOUT`], as the policy's timeouts.
pub fn parse_timeout(value: &str) -> Result<std::time::Duration, String> {
    let value = value.trim();
    let timeout = match value.parse::<u64>() {
        Ok(seconds) => Some(std::time::Duration::from_secs(seconds)),
        Err(_) => super::duration::parse(value),
    }
    .ok_or_else(|| {
        format!("{value:?} is not a number of seconds or a duration like 500ms or 30s")
    })?;
    if !bounds::TIMEOUT.contains(timeout) {
        return Err(format!("{value:?} is not {}", bounds::TIMEOUT));
    }
    Ok(timeout)
}

/// A slow-start window: a Gateway API duration within [`bounds::SLOW_START_WINDOW`], as the
/// policy's.
pub fn parse_slow_start(value: &str) -> Result<std::time::Duration, String> {
    let window = super::duration::parse(value.trim())
        .ok_or_else(|| format!("{value:?} is not a duration like 30s or 2m"))?;
    if !bounds::SLOW_START_WINDOW.contains(window) {
        return Err(format!("{value:?} is not {}", bounds::SLOW_START_WINDOW));
    }
    Ok(window)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_take_seconds_or_durations() {
        use std::time::Duration;
        assert_eq!(parse_timeout("60"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_timeout(" 500ms "), Ok(Duration::from_millis(500)));
        assert_eq!(parse_timeout("1m30s"), Ok(Duration::from_secs(90)));
        for bad in ["0", "-1", "5 s", "1d", "", "100000"] {
            assert!(parse_timeout(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn body_sizes_take_nginx_units() {
        assert_eq!(parse_body_size("0"), Ok(0));
        assert_eq!(parse_body_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_body_size("8m"), Ok(8 << 20));
        assert_eq!(parse_body_size(" 512K "), Ok(512 << 10));
        assert_eq!(parse_body_size("1g"), Ok(1 << 30));
        for bad in ["", "m", "-1", "1.5m", "1t", "2000g", "+5", "1 m"] {
            assert!(parse_body_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn algorithms_parse_or_are_rejected() {
        assert_eq!(
            parse_algorithm("least-connections"),
            Ok(Algorithm::LeastConnections)
        );
        assert_eq!(parse_algorithm(" random "), Ok(Algorithm::Random));
        // ingress-nginx's names.
        assert_eq!(parse_algorithm("round_robin"), Ok(Algorithm::RoundRobin));
        assert_eq!(parse_algorithm("ewma"), Ok(Algorithm::LeastResponseTime));
        for bad in ["", "leastconn", "ROUND-ROBIN", "least_conn", "ewma; drop"] {
            assert!(parse_algorithm(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn slow_start_windows_parse_or_are_rejected() {
        assert_eq!(
            parse_slow_start("30s"),
            Ok(std::time::Duration::from_secs(30))
        );
        for bad in ["", "30", "0s", "2h", "soon"] {
            assert!(parse_slow_start(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hsts_parses_into_a_canonical_header_or_is_rejected() {
        let hsts = parse_hsts("max-age=31536000; includeSubDomains; preload").unwrap();
        assert_eq!(
            hsts.header_value(),
            "max-age=31536000; includeSubDomains; preload"
        );
        assert_eq!(
            parse_hsts(" MAX-AGE=60 ").unwrap().header_value(),
            "max-age=60"
        );
        for bad in [
            "",
            "includeSubDomains",
            "max-age=-1",
            "max-age=99999999999",
            "max-age=1; max-age=2",
            "max-age=1; preload=yes",
            "max-age=1\r\nx: y",
            "max-age=1; evil",
        ] {
            assert!(parse_hsts(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn secret_refs_and_protocols_parse_or_are_rejected() {
        assert_eq!(parse_secret_ref("ca"), Ok((None, "ca".into())));
        assert_eq!(
            parse_secret_ref("web/ca"),
            Ok((Some("web".into()), "ca".into()))
        );
        for bad in ["", "a/b/c", "/ca", "Web/ca", "ca;x"] {
            assert!(parse_secret_ref(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_backend_protocol("GRPCS"),
            Ok(super::super::BackendProtocol::Grpcs)
        );
        assert!(parse_backend_protocol("grpc").is_err());
        assert_eq!(parse_verify_client("optional"), Ok(VerifyClient::Optional));
        assert!(parse_verify_client("optional_no_ca").is_err());
    }

    #[test]
    fn auth_settings_parse_or_are_rejected() {
        assert_eq!(parse_auth_type(" basic "), Ok(()));
        let digest = parse_auth_type("digest").unwrap_err();
        assert!(digest.contains("not supported"), "{digest}");
        assert!(parse_auth_type("Basic").is_err());
        assert_eq!(parse_auth_secret_type("auth-map"), Ok(AuthSecretType::Map));
        assert_eq!(
            parse_auth_secret_type("auth-file"),
            Ok(AuthSecretType::File)
        );
        assert!(parse_auth_secret_type("auth").is_err());
        assert_eq!(
            parse_realm("Authentication Required - foo"),
            Ok("Authentication Required - foo".into())
        );
        assert_eq!(parse_realm(""), Ok(String::new()));
        for bad in ["a\"b", "a\\b", "a\r\nb", &"x".repeat(129)] {
            assert!(parse_realm(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_method("POST"), Ok(http::Method::POST));
        for bad in ["", "get", "GE T", "G\r\nX"] {
            assert!(parse_method(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_header_names("X-User, x-email,").unwrap(),
            ["x-user", "x-email"]
        );
        for bad in ["", ",", "a b", "x:y"] {
            assert!(parse_header_names(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_query_param("redirect_to"), Ok("redirect_to".into()));
        assert!(parse_query_param("a&b=").is_err());
        assert_eq!(parse_satisfy("any"), Ok(Satisfy::Any));
        assert_eq!(parse_satisfy("all"), Ok(Satisfy::All));
        assert!(parse_satisfy("some").is_err());
    }

    #[test]
    fn hash_keys_parse_or_are_rejected() {
        assert_eq!(
            parse_hash_by("header:x-user"),
            Ok(HashBy::Header("x-user".into()))
        );
        assert_eq!(
            parse_hash_by("cookie:session_id"),
            Ok(HashBy::Cookie("session_id".into()))
        );
        assert_eq!(parse_hash_by("query:u"), Ok(HashBy::Query("u".into())));
        assert_eq!(parse_hash_by("source-ip"), Ok(HashBy::SourceIp));
        assert_eq!(parse_hash_by("path"), Ok(HashBy::Path));
        // ingress-nginx's variables, one at a time.
        assert_eq!(parse_hash_by("$request_uri"), Ok(HashBy::RequestUri));
        assert_eq!(parse_hash_by("${remote_addr}"), Ok(HashBy::SourceIp));
        assert_eq!(parse_hash_by("$uri"), Ok(HashBy::Path));
        assert_eq!(
            parse_hash_by("$http_x_user"),
            Ok(HashBy::Header("x-user".into()))
        );
        assert_eq!(
            parse_hash_by("$cookie_session_id"),
            Ok(HashBy::Cookie("session_id".into()))
        );
        assert_eq!(parse_hash_by("$arg_u"), Ok(HashBy::Query("u".into())));
        for bad in [
            "",
            "header:",
            "header:a b",
            "$host$request_uri",
            "${request_uri}-text",
            "$http_",
            "$host",
            "$",
            "cookie:a;b",
            "ip",
            "query:x\ny",
        ] {
            assert!(parse_hash_by(bad).is_err(), "{bad:?}");
        }
    }
}
