//! Three tiny HTTP origins for `make run`: 127.0.0.1, 127.0.0.2 and 127.0.0.3, each on port
//! 5678 (or the port given as the first argument), answering every request with their name.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let port: u16 = match std::env::args().nth(1) {
        Some(port) => port
            .parse()
            .map_err(|_| std::io::Error::other("port must be a number"))?,
        None => 5678,
    };
    for n in 1..=3u8 {
        let address = SocketAddr::from((Ipv4Addr::new(127, 0, 0, n), port));
        let listener = TcpListener::bind(address).await?;
        println!("origin-{n} listening on http://{address}");
        tokio::spawn(serve(listener, format!("origin-{n}")));
    }
    tokio::signal::ctrl_c().await
}

async fn serve(listener: TcpListener, name: String) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let name = name.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                let body = format!(
                    "{name} answered {} {}\n",
                    request.method(),
                    request.uri().path()
                );
                async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body)))) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
