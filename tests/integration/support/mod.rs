//! Test support: real origins, fixtures, the in-process proxy and a client.
#![allow(
    dead_code,
    reason = "each test module uses a different part of the support code"
)]

pub mod binary;
pub mod client;
pub mod collector;
pub mod fixtures;
pub mod grpc;
pub mod origin;
pub mod proxy;
pub mod tls;
pub mod wait;
