//! Anchorpoint CSMS server. The `csms` binary (`src/main.rs`, with its command
//! line in `src/cli.rs`) is a thin layer over this library.
//!
//! Layers, each using only those below it:
//! 1. leaves: [`store`], [`clock`], [`metrics`], [`config`], [`events`], [`ids`],
//!    [`password`], [`group_commit`], [`error`]; the PKI side: [`authority`]
//!    (the key backend and issuance) and [`station_ca`];
//! 2. the seams: [`link`] (typed calls to a station) and the [`engines`] trait
//!    with the narrow context an engine gets;
//! 3. the engines, one folder each under `engines/`;
//! 4. [`session`] and [`gateway`]: route each frame to the engine registered for
//!    its action;
//! 5. [`services`]: every operator change, validated once;
//! 6. [`runtime`]: builds the capabilities and registers the engines;
//! 7. [`rest`], [`http`] and the public [`revocation`] endpoints;
//! 8. [`serve`], which starts the listeners; the command line of the binary on top.
//!
//! `tests/layering.rs` checks this order on the sources.

#![forbid(unsafe_code)]

pub mod authority;
pub mod clock;
pub mod config;
pub mod engines;
pub mod error;
pub mod events;
pub mod gateway;
pub mod group_commit;
pub mod http;
pub mod ids;
pub mod link;
pub mod metrics;
pub mod password;
pub mod rest;
pub mod revocation;
pub mod runtime;
pub mod serve;
pub mod services;
pub mod session;
pub mod station_ca;
pub mod store;
