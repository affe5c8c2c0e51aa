//! Watches: a chunked stream of newline-delimited JSON events, started from a resourceVersion
//! (replaying the history after it) or from the current state, with BOOKMARKs and a timeout,
//! ended when the server stops.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::future::pending;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::resource::metadata_mut;
use crate::selectors::Filter;
use crate::server::{full, is_true, parse_rv, Body, Shared};
use crate::store::{Change, ChangeType};

/// How often a watch with `allowWatchBookmarks=true` gets a BOOKMARK.
const BOOKMARK_EVERY: Duration = Duration::from_secs(1);

/// What a filter makes of the store's changes, for a watch.
impl Filter {
    /// What a watch sends for a change, if anything.
    fn translate(&self, change: &Change) -> Option<(&'static str, Value)> {
        if !self.in_scope(change.kind, &change.namespace) {
            return None;
        }
        match change.change {
            ChangeType::Added => self.project(&change.object).map(|o| ("ADDED", o)),
            ChangeType::Deleted => self.project(&change.object).map(|o| ("DELETED", o)),
            ChangeType::Modified => {
                let now = self.project(&change.object);
                let before = change.previous.as_ref().and_then(|p| self.project(p));
                match (now, before) {
                    (Some(now), Some(_)) => Some(("MODIFIED", now)),
                    (Some(now), None) => Some(("ADDED", now)),
                    (None, Some(mut before)) => {
                        metadata_mut(&mut before)
                            .insert("resourceVersion".into(), change.rv.to_string().into());
                        Some(("DELETED", before))
                    }
                    (None, None) => None,
                }
            }
        }
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Value {
        let (api_version, kind) = if self.meta_only {
            ("meta.k8s.io/v1".to_string(), "PartialObjectMetadata")
        } else {
            (self.res.api_version(), self.res.kind)
        };
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        json!({"apiVersion": api_version, "kind": kind, "metadata": metadata})
    }
}

fn event_line(kind: &str, object: Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).expect("JSON");
    line.push(b'\n');
    line.into()
}

/// One open watch: the events not yet sent, and where in the history it is.
struct WatchStream {
    shared: Arc<Shared>,
    filter: Filter,
    /// Every change up to this version has been sent (or filtered out).
    last: u64,
    pending: VecDeque<Bytes>,
    changes: watch::Receiver<u64>,
    stop: CancellationToken,
    deadline: Option<Instant>,
    bookmarks: Option<Interval>,
}

impl WatchStream {
    fn scan(&mut self) {
        let store = self.shared.store.lock().unwrap();
        let start = store.history.partition_point(|c| c.rv <= self.last);
        for change in &store.history[start..] {
            if let Some((kind, object)) = self.filter.translate(change) {
                self.pending.push_back(event_line(kind, object));
            }
        }
        self.last = store.rv;
    }

    async fn next(mut self) -> Option<(Result<Frame<Bytes>, Infallible>, Self)> {
        loop {
            if let Some(chunk) = self.pending.pop_front() {
                return Some((Ok(Frame::data(chunk)), self));
            }
            // Mark the current version seen before reading the history, so that no write is
            // missed between the two.
            self.changes.borrow_and_update();
            self.scan();
            if !self.pending.is_empty() {
                continue;
            }
            let deadline = self.deadline;
            let timeout = async move {
                match deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => pending().await,
                }
            };
            let bookmark_due = async {
                match self.bookmarks.as_mut() {
                    Some(interval) => {
                        interval.tick().await;
                    }
                    None => pending().await,
                }
            };
            let bookmark = tokio::select! {
                _ = self.stop.cancelled() => return None,
                _ = timeout => return None,
                changed = self.changes.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                    false
                }
                _ = bookmark_due => true,
            };
            if bookmark {
                let object = self.filter.bookmark(self.last, false);
                self.pending.push_back(event_line("BOOKMARK", object));
            }
        }
    }
}

/// Answers a watch request: a stream, or (for a compacted version) the single ERROR event.
pub(crate) fn start_watch(
    shared: &Arc<Shared>,
    stop: &CancellationToken,
    filter: Filter,
    query: &HashMap<String, String>,
) -> Result<Response<Body>, ApiError> {
    let rv = query
        .get("resourceVersion")
        .map(String::as_str)
        .filter(|v| !v.is_empty() && *v != "0");
    let initial_events = is_true(query, "sendInitialEvents");
    let timeout = match query.get("timeoutSeconds") {
        Some(t) => {
            let seconds: u64 = t
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds {t:?}")))?;
            (seconds > 0).then(|| Instant::now() + Duration::from_secs(seconds))
        }
        None => None,
    };
    let mut pending = VecDeque::new();
    let store = shared.store.lock().unwrap();
    let last = match rv {
        Some(rv) if !initial_events => {
            let rv = parse_rv(rv)?;
            if rv < store.compacted {
                // The real server answers 200 and sends the error as the only event.
                let status = ApiError::expired(rv, store.compacted).status();
                let mut response = Response::new(full(event_line("ERROR", status)));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("application/json"),
                );
                return Ok(response);
            }
            rv
        }
        _ => {
            // No version (or 0), or a streaming list: start with the current state.
            for object in store.objects_of(filter.res) {
                if let Some(object) = filter.project(object) {
                    pending.push_back(event_line("ADDED", object));
                }
            }
            if initial_events {
                pending.push_back(event_line("BOOKMARK", filter.bookmark(store.rv, true)));
            }
            store.rv
        }
    };
    let changes = store.notify.subscribe();
    drop(store);
    let bookmarks = is_true(query, "allowWatchBookmarks").then(|| {
        let mut interval =
            tokio::time::interval_at(Instant::now() + BOOKMARK_EVERY, BOOKMARK_EVERY);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        interval
    });
    let stream = WatchStream {
        shared: shared.clone(),
        filter,
        last,
        pending,
        changes,
        stop: stop.clone(),
        deadline: timeout,
        bookmarks,
    };
    let body = StreamBody::new(futures_util::stream::unfold(stream, WatchStream::next));
    let mut response = Response::new(BodyExt::boxed_unsync(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}
