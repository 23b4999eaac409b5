//! End-to-end tests: real `csms` processes, real TLS, clients we did not write.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

mod api;
mod ca_management;
mod durability;
mod frames;
mod interop;
mod ops;
mod outcomes;
mod refusals;
mod revocation;
mod services;
mod tenants;
