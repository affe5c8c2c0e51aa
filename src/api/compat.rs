//! What vane does with each annotation it may meet on an Ingress: its own (`vane.dev/`, every
//! key of [`keys::ALL`]) and every one of ingress-nginx's (its documented list, plus the few its
//! source reads without documenting them), as data. Compile reports and refuses from it, `vane
//! check` prints it, and README's annotation table is generated from it.
//!
//! An ingress-nginx annotation is one of three:
//! - **honoured**: vane gives it ingress-nginx's meaning and value syntax; it is then a key read
//!   under both prefixes (`key!(.., nginx)`), which a test holds this table to;
//! - **ignored**: tuning, logging, or an extra whose absence is visible and harmless; the
//!   Ingress is served, with an `IgnoredAnnotation` diagnostic;
//! - **refused**: without it vane would serve requests the annotation stops or guards
//!   (authentication, connection limits, a WAF), or serve them otherwise than asked
//!   (to another backend, in another protocol), or it is nginx configuration text (snippets);
//!   the Ingress's routes answer 503 (fail closed) with a `RefusedAnnotation` diagnostic.
//!
//! A `vane.dev/` name vane does not read is unknown (a typo, most likely), except where
//! ingress-nginx's table refuses the same name: whoever swapped the prefix of a `limit-connections`
//! must not lose the protection silently.

use super::annotations::{keys, NGINX_PREFIX, VANE_PREFIX};

/// What vane does with an annotation it recognizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Treatment {
    Honoured,
    /// Served without it, for this reason.
    Ignored(&'static str),
    /// The Ingress is not served, for this reason.
    Refused(&'static str),
}

/// What vane does with one annotation of an Ingress, by its full name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Known(Treatment),
    /// Under `vane.dev/` or ingress-nginx's prefix, but no annotation vane knows there.
    Unknown,
}

/// ingress-nginx's `*-snippet` annotations, documented or not.
const SNIPPET: &str = "nginx configuration text, which vane never runs; it often carries \
                       access rules (allow, deny, auth_request)";
const BUFFERING: &str = "vane streams bodies and buffers at most 64 KiB of a request (for retries)";
const AUTH_CACHE: &str = "vane asks auth-url on every request: no answer is cached, so none is \
                          stale";
const AUTH_KEEPALIVE: &str = "vane's client to auth-url keeps connections alive and reuses them \
                              itself";
const CONNECTION_LIMIT: &str = "a connection limit protects the backend; vane has none yet";
const MODSECURITY: &str = "a web application firewall screens requests; vane has none";
const RUSTLS_DEFAULTS: &str = "vane's TLS is rustls with its defaults: TLS 1.2 and 1.3, modern \
                               cipher suites only";
const UPSTREAM_TLS: &str = "how vane talks TLS to endpoints comes from a BackendPolicy's spec.tls \
                            (CA, server name, client certificate); without it the backend would \
                            be spoken to otherwise than asked";
const OPENTELEMETRY: &str = "vane's spans are set for all Ingresses (--otlp-endpoint, \
                             --trace-sample-ratio)";
const AFFINITY: &str = "a detail of cookie affinity that vane does not have; the affinity \
                        itself is honoured";
const CANARY: &str = "without it the canary's traffic would be decided otherwise than asked";
const NGINX_REDIRECTS: &str = "about the Location of redirects nginx itself writes; vane's are \
                               absolute, with the port the client used";

/// ingress-nginx's annotations (without the prefix), sorted by name, each with its treatment.
pub const NGINX: &[(&str, Treatment)] = {
    use Treatment::{Honoured, Ignored, Refused};
    &[
        ("affinity", Honoured),
        ("affinity-canary-behavior", Ignored(AFFINITY)),
        ("affinity-mode", Ignored("vane's cookie affinity is always persistent: a client stays on its endpoint while that endpoint is ready; balanced mode's moving of some sessions to endpoints added by a scale-up does not happen")),
        ("allowlist-source-range", Honoured),
        ("app-root", Honoured),
        ("auth-always-set-cookie", Honoured),
        ("auth-cache-duration", Ignored(AUTH_CACHE)),
        ("auth-cache-key", Ignored(AUTH_CACHE)),
        ("auth-keepalive", Ignored(AUTH_KEEPALIVE)),
        ("auth-keepalive-requests", Ignored(AUTH_KEEPALIVE)),
        ("auth-keepalive-share-vars", Ignored(AUTH_KEEPALIVE)),
        ("auth-keepalive-timeout", Ignored(AUTH_KEEPALIVE)),
        ("auth-method", Honoured),
        ("auth-proxy-set-headers", Refused("headers from a ConfigMap sent to auth-url, which its decision may rest on; vane reads no ConfigMaps")),
        ("auth-realm", Honoured),
        ("auth-request-redirect", Honoured),
        ("auth-response-headers", Honoured),
        ("auth-secret", Honoured),
        ("auth-secret-type", Honoured),
        ("auth-signin", Honoured),
        ("auth-signin-redirect-param", Honoured),
        ("auth-snippet", Refused(SNIPPET)),
        ("auth-tls-error-page", Ignored("a client without a valid certificate gets vane's own answer, not a redirect to this page")),
        ("auth-tls-match-cn", Refused("a client certificate whose subject does not match would be let in")),
        ("auth-tls-pass-certificate-to-upstream", Ignored("vane sends ssl-client-subject-dn and ssl-client-verify upstream, never the certificate itself (ssl-client-cert)")),
        ("auth-tls-secret", Refused("clients would not have to present a certificate; vane.dev/auth-tls-secret takes NAME or NAMESPACE/NAME")),
        ("auth-tls-verify-client", Refused("client certificate verification would not be as asked; vane.dev/auth-tls-verify-client takes on, optional or off")),
        ("auth-tls-verify-depth", Ignored("vane accepts any chain of the client certificate up to the Secret's CAs")),
        ("auth-type", Honoured),
        ("auth-url", Honoured),
        ("backend-protocol", Refused("the endpoints would be spoken to in another protocol; vane.dev/backend-protocol takes HTTP, HTTPS, H2C, GRPC or GRPCS")),
        ("canary", Honoured),
        ("canary-by-cookie", Honoured),
        ("canary-by-header", Honoured),
        ("canary-by-header-pattern", Refused(CANARY)),
        ("canary-by-header-value", Honoured),
        ("canary-weight", Honoured),
        ("canary-weight-total", Refused(CANARY)),
        ("client-body-buffer-size", Ignored(BUFFERING)),
        ("configuration-snippet", Refused(SNIPPET)),
        ("connection-proxy-header", Ignored("vane manages upstream connections itself (keep-alive pools, upgrades)")),
        ("cors-allow-credentials", Honoured),
        ("cors-allow-headers", Honoured),
        ("cors-allow-methods", Honoured),
        ("cors-allow-origin", Honoured),
        ("cors-expose-headers", Honoured),
        ("cors-max-age", Honoured),
        ("custom-headers", Refused("response headers from a ConfigMap (often security headers such as Content-Security-Policy) would be missing; use vane.dev/response-headers")),
        ("custom-http-errors", Honoured),
        ("default-backend", Honoured),
        ("denylist-source-range", Honoured),
        ("disable-proxy-intercept-errors", Ignored("with custom-http-errors, vane replaces the endpoint's error answers too")),
        ("enable-access-log", Honoured),
        ("enable-cors", Honoured),
        ("enable-global-auth", Ignored("vane has no global external authentication to opt out of")),
        ("enable-modsecurity", Refused(MODSECURITY)),
        ("enable-opentelemetry", Ignored(OPENTELEMETRY)),
        ("enable-owasp-core-rules", Refused(MODSECURITY)),
        ("enable-rewrite-log", Ignored("nginx's debug log of rewrites; vane's access log has the request's own path")),
        ("fastcgi-index", Ignored("a setting of backend-protocol FCGI, which vane does not speak")),
        ("fastcgi-params-configmap", Ignored("a setting of backend-protocol FCGI, which vane does not speak")),
        ("force-ssl-redirect", Honoured),
        ("from-to-www-redirect", Honoured),
        ("http2-push-preload", Ignored("HTTP/2 server push, which browsers no longer support")),
        ("limit-allowlist", Honoured),
        ("limit-burst-multiplier", Honoured),
        ("limit-connections", Refused(CONNECTION_LIMIT)),
        ("limit-rate", Ignored("a bandwidth cap on responses; vane sends at the client's pace")),
        ("limit-rate-after", Ignored("a bandwidth cap on responses; vane sends at the client's pace")),
        ("limit-rpm", Honoured),
        ("limit-rps", Honoured),
        ("limit-whitelist", Honoured),
        ("load-balance", Honoured),
        ("mirror-host", Ignored("a setting of mirror-target, which vane refuses; alone it does nothing")),
        ("mirror-request-body", Ignored("a setting of mirror-target, which vane refuses; alone it does nothing")),
        ("mirror-target", Refused("requests would not be copied to the mirror, which audits or shadow tests rely on; vane has no mirroring yet")),
        ("modsecurity-snippet", Refused(SNIPPET)),
        ("modsecurity-transaction-id", Ignored("a setting of enable-modsecurity, which vane refuses; alone it does nothing")),
        ("opentelemetry-operation-name", Ignored(OPENTELEMETRY)),
        ("opentelemetry-trust-incoming-span", Ignored(OPENTELEMETRY)),
        ("permanent-redirect", Honoured),
        ("permanent-redirect-code", Honoured),
        ("preserve-trailing-slash", Ignored("vane's HTTPS redirect keeps the request URI as it is, trailing slash included")),
        ("proxy-body-size", Honoured),
        ("proxy-buffer-size", Ignored(BUFFERING)),
        ("proxy-buffering", Ignored(BUFFERING)),
        ("proxy-buffers-number", Ignored(BUFFERING)),
        ("proxy-busy-buffers-size", Ignored(BUFFERING)),
        ("proxy-connect-timeout", Honoured),
        ("proxy-cookie-domain", Refused("Set-Cookie would keep the endpoint's Domain, which can widen where browsers send the cookie")),
        ("proxy-cookie-path", Refused("Set-Cookie would keep the endpoint's Path, which can widen where browsers send the cookie")),
        ("proxy-http-version", Ignored("vane speaks HTTP/1.1 to endpoints, or HTTP/2 for the h2c and gRPC protocols")),
        ("proxy-max-temp-file-size", Ignored(BUFFERING)),
        ("proxy-next-upstream", Ignored("retries are a BackendPolicy's spec.retry")),
        ("proxy-next-upstream-timeout", Ignored("retries are a BackendPolicy's spec.retry")),
        ("proxy-next-upstream-tries", Ignored("retries are a BackendPolicy's spec.retry")),
        ("proxy-read-timeout", Honoured),
        ("proxy-redirect-from", Ignored("the endpoint's Location headers are passed on as written")),
        ("proxy-redirect-to", Ignored("the endpoint's Location headers are passed on as written")),
        ("proxy-request-buffering", Ignored(BUFFERING)),
        ("proxy-send-timeout", Honoured),
        ("proxy-ssl-ciphers", Ignored(RUSTLS_DEFAULTS)),
        ("proxy-ssl-name", Refused(UPSTREAM_TLS)),
        ("proxy-ssl-protocols", Ignored(RUSTLS_DEFAULTS)),
        ("proxy-ssl-secret", Refused(UPSTREAM_TLS)),
        ("proxy-ssl-server-name", Refused(UPSTREAM_TLS)),
        ("proxy-ssl-verify", Refused(UPSTREAM_TLS)),
        ("proxy-ssl-verify-depth", Ignored("vane accepts any chain of the endpoint's certificate up to the trusted CAs")),
        ("relative-redirects", Ignored(NGINX_REDIRECTS)),
        ("rewrite-target", Honoured),
        ("satisfy", Honoured),
        ("server-alias", Ignored("the extra host names are not served (404); add them as rules")),
        ("server-snippet", Refused(SNIPPET)),
        ("service-upstream", Ignored("vane balances over the Service's ready endpoints itself: the same Pods")),
        ("session-cookie-change-on-failure", Ignored(AFFINITY)),
        ("session-cookie-conditional-samesite-none", Ignored(AFFINITY)),
        ("session-cookie-domain", Honoured),
        ("session-cookie-expires", Honoured),
        ("session-cookie-max-age", Honoured),
        ("session-cookie-name", Honoured),
        ("session-cookie-path", Honoured),
        ("session-cookie-samesite", Honoured),
        ("session-cookie-secure", Honoured),
        ("ssl-ciphers", Ignored(RUSTLS_DEFAULTS)),
        ("ssl-passthrough", Refused("TLS would end at vane, with vane's certificate, instead of at the endpoint")),
        ("ssl-prefer-server-ciphers", Ignored(RUSTLS_DEFAULTS)),
        ("ssl-redirect", Honoured),
        ("stream-snippet", Refused(SNIPPET)),
        ("temporal-redirect", Honoured),
        ("temporal-redirect-code", Honoured),
        ("upstream-hash-by", Honoured),
        ("upstream-hash-by-subset", Ignored("a setting of upstream-hash-by")),
        ("upstream-hash-by-subset-size", Ignored("a setting of upstream-hash-by")),
        ("upstream-vhost", Honoured),
        ("use-port-in-redirects", Ignored(NGINX_REDIRECTS)),
        ("use-regex", Honoured),
        ("whitelist-source-range", Honoured),
        ("x-forwarded-prefix", Honoured),
    ]
};

/// What vane does with the annotation named `name` (in full); `None` for names under neither
/// prefix, which are other tools' business.
pub fn classify(name: &str) -> Option<Status> {
    if let Some(rest) = name.strip_prefix(NGINX_PREFIX) {
        return Some(match nginx(rest) {
            Some(treatment) => Status::Known(treatment),
            None if rest.ends_with("-snippet") => Status::Known(Treatment::Refused(SNIPPET)),
            None => Status::Unknown,
        });
    }
    let rest = name.strip_prefix(VANE_PREFIX)?;
    Some(if keys::ALL.iter().any(|key| key.vane == name) {
        Status::Known(Treatment::Honoured)
    } else if rest.ends_with("-snippet") {
        Status::Known(Treatment::Refused(SNIPPET))
    } else {
        match nginx(rest) {
            Some(refused @ Treatment::Refused(_)) => Status::Known(refused),
            _ => Status::Unknown,
        }
    })
}

/// ingress-nginx's annotation `name` (without the prefix), if it has one by that name.
fn nginx(name: &str) -> Option<Treatment> {
    NGINX
        .binary_search_by(|(entry, _)| entry.cmp(&name))
        .ok()
        .map(|at| NGINX[at].1)
}

/// README's annotation table: every annotation under either prefix, by name, with what vane
/// does with it (`vane annotations` prints it; `make manifests` writes it into README.md).
pub fn markdown_table() -> String {
    let mut names: Vec<&str> = NGINX.iter().map(|(name, _)| *name).collect();
    names.extend(
        keys::ALL
            .iter()
            .map(|key| key.vane.strip_prefix(VANE_PREFIX).unwrap_or(key.vane)),
    );
    names.sort_unstable();
    names.dedup();
    let mut table = format!(
        "| annotation | `{VANE_PREFIX}` | `{NGINX_PREFIX}` | why |\n| --- | --- | --- | --- |\n"
    );
    for name in names {
        let vane = keys::ALL
            .iter()
            .any(|key| key.vane.strip_prefix(VANE_PREFIX) == Some(name));
        let (nginx, why) = match nginx(name) {
            None => ("—", ""),
            Some(Treatment::Honoured) => ("honoured", ""),
            Some(Treatment::Ignored(why)) => ("ignored", why),
            Some(Treatment::Refused(why)) => ("**refused**", why),
        };
        let vane = if vane { "honoured" } else { "—" };
        // Reasons name annotations such as `proxy-*-timeout`; their stars are not emphasis.
        let why = why.replace('*', "\\*");
        table.push_str(&format!("| `{name}` | {vane} | {nginx} | {why} |\n"));
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nginx_table_is_sorted_without_repeats() {
        for pair in NGINX.windows(2) {
            assert!(pair[0].0 < pair[1].0, "{} before {}", pair[0].0, pair[1].0);
        }
    }

    /// Honoured means read: an ingress-nginx name is honoured exactly when vane reads it under
    /// ingress-nginx's prefix.
    #[test]
    fn honoured_nginx_annotations_are_the_keys_vane_reads_under_their_prefix() {
        let mut honoured: Vec<&str> = NGINX
            .iter()
            .filter(|(_, treatment)| *treatment == Treatment::Honoured)
            .map(|(name, _)| *name)
            .collect();
        let mut read: Vec<&str> = keys::ALL
            .iter()
            .filter_map(|key| key.nginx?.strip_prefix(NGINX_PREFIX))
            .collect();
        honoured.sort_unstable();
        read.sort_unstable();
        assert_eq!(honoured, read);
    }

    #[test]
    fn names_are_classified_under_both_prefixes() {
        use Status::{Known, Unknown};
        use Treatment::{Honoured, Ignored, Refused};
        let status = |name: &str| classify(name);
        assert_eq!(
            status("nginx.ingress.kubernetes.io/rewrite-target"),
            Some(Known(Honoured))
        );
        assert_eq!(status("vane.dev/hash-by"), Some(Known(Honoured)));
        assert!(matches!(
            status("nginx.ingress.kubernetes.io/proxy-buffering"),
            Some(Known(Ignored(_)))
        ));
        for refused in [
            "nginx.ingress.kubernetes.io/auth-snippet",
            "nginx.ingress.kubernetes.io/limit-connections",
            "nginx.ingress.kubernetes.io/configuration-snippet",
            // Undocumented snippets, and snippets or refused names under vane's prefix.
            "nginx.ingress.kubernetes.io/location-snippet",
            "vane.dev/server-snippet",
            "vane.dev/limit-connections",
        ] {
            assert!(
                matches!(status(refused), Some(Known(Refused(_)))),
                "{refused}"
            );
        }
        for unknown in [
            "nginx.ingress.kubernetes.io/rewrite-targett",
            "vane.dev/hashby",
            // Ignored by ingress-nginx's name, but vane reads no such key of its own.
            "vane.dev/proxy-buffering",
        ] {
            assert_eq!(status(unknown), Some(Unknown), "{unknown}");
        }
        assert_eq!(
            status("kubectl.kubernetes.io/last-applied-configuration"),
            None
        );
        assert_eq!(status("kubernetes.io/ingress.class"), None);
    }
}
