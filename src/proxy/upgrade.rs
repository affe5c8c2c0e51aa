//! Protocol switches (WebSocket and other `Upgrade`s): once the upstream answered 101 and the
//! response reached the client, both connections are handed over and bytes are copied both ways
//! until either side closes.

use std::net::SocketAddr;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tracing::debug;

pub fn tunnel(client: OnUpgrade, upstream: OnUpgrade, route: String, endpoint: SocketAddr) {
    tokio::spawn(async move {
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(error) => {
                debug!(route, %endpoint, %error, "upgrade did not complete");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            Ok((to_upstream, to_client)) => {
                debug!(route, %endpoint, to_upstream, to_client, "upgraded connection closed")
            }
            Err(error) => debug!(route, %endpoint, %error, "upgraded connection failed"),
        }
    });
}
