//! A real hyper client for tests.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

pub type TestClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// The name of the origin that answered (from its `x-origin` header).
    pub fn origin(&self) -> Option<String> {
        self.headers
            .get("x-origin")
            .map(|v| v.to_str().unwrap().to_owned())
    }
}

pub async fn send(client: &TestClient, request: Request<Full<Bytes>>) -> Reply {
    let response = client.request(request).await.expect("request failed");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body failed").to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// GET `path` from the proxy at `addr` with the given Host header.
pub async fn get(client: &TestClient, addr: SocketAddr, host: &str, path: &str) -> Reply {
    let request = Request::get(format!("http://{addr}{path}"))
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .unwrap();
    send(client, request).await
}

/// The status of a GET through the proxy at `addr`.
pub async fn status_of(
    client: &TestClient,
    addr: SocketAddr,
    host: &str,
    path: &str,
) -> StatusCode {
    get(client, addr, host, path).await.status
}
