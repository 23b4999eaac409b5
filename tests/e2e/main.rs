//! End-to-end tests: real `csms` processes, real TLS, clients we did not write.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

mod api;
mod api_listener;
mod ca_management;
mod durability;
mod frames;
mod gateway_limits;
mod interop;
mod ops;
mod outcomes;
mod overload;
mod quota;
mod refusals;
mod revocation;
mod services;
mod tenants;
mod variables;
