//! `auth-url` (nginx's `auth_request`) with ingress-nginx's `auth-method`,
//! `auth-response-headers`, `auth-signin`, `auth-signin-redirect-param`,
//! `auth-request-redirect` and `auth-always-set-cookie`, compiled into an [`ExternalAuth`].
//!
//! Fail closed, as ingress-nginx denies the location: an `auth-url` that is no http(s) URL, an
//! `auth-method` that is no method or `auth-response-headers` that are no header names refuse
//! the Ingress's routes (503). The redirect settings only change how a refusal is answered, so
//! an unusable one is reported and left out.

use std::sync::Arc;

use super::transform::parse_redirect_url;
use super::{Annotations, Sink};
use crate::api::annotations::{self, keys};
use crate::table::{ExternalAuth, DEFAULT_SIGNIN_REDIRECT_PARAM};

/// The external auth of an Ingress: `Ok(None)` without `auth-url`, `Err` (reported) when it
/// cannot be applied.
pub(super) fn parse(
    annotations: &Annotations<'_>,
    sink: &mut Sink,
) -> Result<Option<Arc<ExternalAuth>>, String> {
    let Some(url) = annotations.parse_or_refuse(keys::AUTH_URL, parse_redirect_url, sink)? else {
        return Ok(None);
    };
    let method = annotations
        .parse_or_refuse(keys::AUTH_METHOD, annotations::parse_method, sink)?
        .unwrap_or(http::Method::GET);
    let response_headers = annotations
        .parse_or_refuse(
            keys::AUTH_RESPONSE_HEADERS,
            annotations::parse_header_names,
            sink,
        )?
        .unwrap_or_default();
    Ok(Some(Arc::new(ExternalAuth {
        url,
        method,
        response_headers: response_headers.into(),
        signin: annotations.parse(keys::AUTH_SIGNIN, parse_redirect_url, sink),
        signin_redirect_param: annotations
            .parse(
                keys::AUTH_SIGNIN_REDIRECT_PARAM,
                annotations::parse_query_param,
                sink,
            )
            .map_or_else(|| DEFAULT_SIGNIN_REDIRECT_PARAM.into(), Into::into),
        request_redirect: annotations.parse(
            keys::AUTH_REQUEST_REDIRECT,
            annotations::parse_header_value,
            sink,
        ),
        always_set_cookie: annotations
            .parse(keys::AUTH_ALWAYS_SET_COOKIE, annotations::parse_bool, sink)
            .unwrap_or(false),
    })))
}
