//! Anchorpoint's REST surface. It knows nothing of DER or OCPP framing: the
//! `csms` binary implements the services it needs and mounts it.
//!
//! So far: bearer-token authentication ([`auth`]), which `csms token` uses to
//! mint tokens.

#![forbid(unsafe_code)]

pub mod auth;
