//! Anchorpoint CSMS server: TLS/mTLS termination, station sessions, OCPP
//! handlers, storage. The `csms` binary is a thin wrapper over [`cli::run`].

#![forbid(unsafe_code)]

pub mod app;
pub mod authority;
pub mod cli;
pub mod clock;
pub mod config;
pub mod group_commit;
pub mod handlers;
pub mod http;
pub mod identity;
pub mod lifecycle;
pub mod metrics;
pub mod password;
pub mod rest;
pub mod revocation;
pub mod server;
pub mod session;
pub mod station_ca;
pub mod store;
pub mod tls;
pub mod transport;
