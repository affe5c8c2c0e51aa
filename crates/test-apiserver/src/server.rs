//! The HTTP side: the listener and its connections (stopped together for an outage), the
//! routing of a request path to a [`Target`], the query parameters, and the dispatch of each
//! request to its handler.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::ApiError;
use crate::handlers;
use crate::resource::{Resource, RESOURCES};
use crate::selectors::Filter;
use crate::store::{key, Key, Store};
use crate::watch::start_watch;

pub(crate) type Body = UnsyncBoxBody<Bytes, Infallible>;

pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

pub(crate) fn json_response(code: StatusCode, value: &Value) -> Response<Body> {
    let mut response = Response::new(full(serde_json::to_vec(value).expect("JSON")));
    *response.status_mut() = code;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

/// What every connection shares, and what outlives an outage.
pub(crate) struct Shared {
    pub(crate) store: Mutex<Store>,
    /// Every request's method and path-and-query, as sent.
    pub(crate) requests: Mutex<Vec<(Method, String)>>,
}

/// A listening server: `stop` ends the accept loop and every connection, `tasks` tracks them.
pub(crate) struct Running {
    pub(crate) stop: CancellationToken,
    pub(crate) tasks: TaskTracker,
}

pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

pub(crate) fn serve(shared: Arc<Shared>, listener: TcpListener) -> Running {
    let stop = CancellationToken::new();
    let tasks = TaskTracker::new();
    let (accept_stop, accept_tasks) = (stop.clone(), tasks.clone());
    tasks.spawn(async move {
        loop {
            let stream = tokio::select! {
                _ = accept_stop.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(_) => continue,
                },
            };
            let (shared, stop) = (shared.clone(), accept_stop.clone());
            accept_tasks.spawn(async move {
                let service_stop = stop.clone();
                let service = service_fn(move |request| {
                    handle(shared.clone(), service_stop.clone(), request)
                });
                let builder = auto::Builder::new(TokioExecutor::new());
                let connection = builder.serve_connection(TokioIo::new(stream), service);
                tokio::select! {
                    _ = connection => {}
                    _ = stop.cancelled() => {}
                }
            });
        }
    });
    Running { stop, tasks }
}

/// What a request path names: a collection (no name), an object, or an object's `status`.
pub(crate) struct Target {
    pub(crate) res: &'static Resource,
    pub(crate) namespace: Option<String>,
    pub(crate) name: Option<String>,
    /// The `status` subresource.
    pub(crate) status: bool,
}

impl Target {
    /// The store's key of the object `name` in this target's kind and namespace.
    pub(crate) fn key(&self, name: &str) -> Key {
        key(self.res, self.namespace.as_deref(), name)
    }
}

fn route(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let (namespace, plural, tail) = match rest {
        ["namespaces", namespace, plural, tail @ ..] => (Some(*namespace), *plural, tail),
        [plural, tail @ ..] => (None, *plural, tail),
        [] => return None,
    };
    let res = RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)?;
    let (name, status) = match tail {
        [] => (None, false),
        [name] => (Some(*name), false),
        [name, "status"] if res.status => (Some(*name), true),
        _ => return None,
    };
    if namespace.is_some() && !res.namespaced
        || namespace.is_none() && res.namespaced && name.is_some()
        || namespace.is_some_and(str::is_empty)
        || name.is_some_and(str::is_empty)
    {
        return None;
    }
    Some(Target {
        res,
        namespace: namespace.map(str::to_string),
        name: name.map(str::to_string),
        status,
    })
}

fn parse_query(query: &str) -> HashMap<String, String> {
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

pub(crate) fn is_true(query: &HashMap<String, String>, name: &str) -> bool {
    matches!(query.get(name).map(String::as_str), Some("true" | "1"))
}

pub(crate) fn parse_rv(rv: &str) -> Result<u64, ApiError> {
    rv.parse().map_err(|_| {
        ApiError::invalid(format!(
            "resourceVersion: Invalid value: {rv:?}: must be a valid resource version"
        ))
    })
}

async fn handle(
    shared: Arc<Shared>,
    stop: CancellationToken,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let target = request
        .uri()
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_string();
    shared
        .requests
        .lock()
        .unwrap()
        .push((request.method().clone(), target));
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) => return Ok(ApiError::bad_request(format!("reading body: {e}")).response()),
    };
    Ok(dispatch(&shared, &stop, &parts, &body).unwrap_or_else(|e| e.response()))
}

fn dispatch(
    shared: &Arc<Shared>,
    stop: &CancellationToken,
    parts: &http::request::Parts,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    let path = parts.uri.path();
    match path {
        "/version" => {
            return Ok(json_response(
                StatusCode::OK,
                &json!({
                    "major": "1", "minor": "33", "gitVersion": "v1.33.0-vane-fake",
                    "gitCommit": "", "gitTreeState": "clean", "buildDate": "2025-01-01T00:00:00Z",
                    "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64",
                }),
            ));
        }
        "/healthz" | "/readyz" | "/livez" => return Ok(Response::new(full("ok"))),
        _ => {}
    }
    let Some(target) = route(path) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        ));
    };
    let query = parse_query(parts.uri.query().unwrap_or(""));
    let meta_only = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("as=PartialObjectMetadata"));
    let filter = Filter::new(&target, &query, meta_only)?;
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|c| c.to_str().ok())
        .unwrap_or("");
    match (&target.name, &parts.method) {
        (None, &Method::GET) if is_true(&query, "watch") => {
            start_watch(shared, stop, filter, &query)
        }
        (None, &Method::GET) => handlers::list(shared, &filter, &query),
        (None, &Method::POST) => handlers::create(shared, &target, &filter, body),
        (Some(name), &Method::GET) => handlers::get(shared, &target, name, &filter),
        (Some(name), &Method::PUT) => handlers::replace(shared, &target, name, &filter, body),
        (Some(name), &Method::PATCH) => {
            handlers::patch(shared, &target, name, &filter, content_type, body)
        }
        (Some(name), &Method::DELETE) if !target.status => {
            handlers::delete(shared, &target, name, &filter)
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}
