//! A hand-rolled gRPC origin (HTTP/2 in the clear) and gRPC framing, to test gRPC through vane
//! without a gRPC library: a message is a 5-byte prefix (compressed flag, big-endian length)
//! and its bytes; the status travels in trailers.
//!
//! - `/test.Echo/Unary`: answers the request's messages, then `grpc-status: 0` and the trailer
//!   `x-echo-trailer: kept`;
//! - `/test.Echo/Stream`: echoes each message as soon as it arrives (bidirectional), then
//!   `grpc-status: 0`;
//! - anything else: `grpc-status: 12` (unimplemented).

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// Frames `message` for gRPC.
pub fn frame(message: &[u8]) -> Bytes {
    let mut framed = BytesMut::with_capacity(5 + message.len());
    framed.put_u8(0);
    framed.put_u32(message.len() as u32);
    framed.put_slice(message);
    framed.freeze()
}

fn trailers(status: &'static str) -> HeaderMap {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static(status));
    trailers
}

/// Starts the origin on a fresh loopback port; it runs until the test ends.
pub async fn start(ip: std::net::IpAddr) -> SocketAddr {
    let listener = TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service_fn(respond)),
            );
        }
    });
    addr
}

async fn respond(request: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let (tx, rx) = mpsc::unbounded_channel::<Frame<Bytes>>();
    let path = request.uri().path().to_owned();
    let mut body = request.into_body();
    tokio::spawn(async move {
        let mut status = "0";
        match path.as_str() {
            "/test.Echo/Unary" | "/test.Echo/Stream" => {
                while let Some(Ok(frame)) = body.frame().await {
                    if let Ok(data) = frame.into_data() {
                        let _ = tx.send(Frame::data(data));
                    }
                }
            }
            _ => status = "12",
        }
        let mut trailers = trailers(status);
        if path == "/test.Echo/Unary" {
            trailers.insert("x-echo-trailer", HeaderValue::from_static("kept"));
        }
        let _ = tx.send(Frame::trailers(trailers));
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|frame| (Ok::<_, Infallible>(frame), rx))
    });
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("application/grpc"));
    Ok(response)
}
