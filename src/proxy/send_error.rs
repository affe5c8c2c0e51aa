//! How sending a request to an endpoint failed, in the terms retries and error answers need:
//! whether anything was sent, and whose fault it was. Shared by vane's HTTP/1.1 pool and the
//! hyper-util clients of the other protocols.

use std::error::Error as StdError;

type BoxError = Box<dyn StdError + Send + Sync>;

/// How sending a request to an endpoint failed.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be made: nothing was sent.
    Connect(BoxError),
    /// The exchange broke after the request went out (reset, closed, malformed response).
    Broken(BoxError),
    /// The client's request body failed while it was being sent.
    ClientBody(BoxError),
    /// The backend's upstream TLS configuration cannot be built: nothing was sent, and no
    /// endpoint is at fault (compile checks the roots, so this is not expected).
    Unusable(std::sync::Arc<str>),
}

impl SendError {
    /// Classifies an error of hyper's connection-level client (the connection exists).
    pub fn of_hyper(error: hyper::Error) -> Self {
        // A user error here is the request body's: the client went away or stalled.
        if error.is_user() {
            SendError::ClientBody(error.into())
        } else {
            SendError::Broken(error.into())
        }
    }

    pub(super) fn of_legacy(error: hyper_util::client::legacy::Error) -> Self {
        let body_failed = StdError::source(&error)
            .and_then(|source| source.downcast_ref::<hyper::Error>())
            .is_some_and(hyper::Error::is_user);
        if error.is_connect() {
            SendError::Connect(error.into())
        } else if body_failed {
            SendError::ClientBody(error.into())
        } else {
            SendError::Broken(error.into())
        }
    }
}
