//! The error responses routes document, as reusable sets: each is an RFC 9457
//! problem document (`application/problem+json`).

#![allow(dead_code)] // only their derived `IntoResponses` is used

use utoipa::IntoResponses;

use crate::problem::Problem;

/// No token, or an expired, tampered or foreign one.
#[derive(IntoResponses)]
#[response(status = 401, description = "No valid bearer token", content_type = "application/problem+json")]
pub struct Unauthenticated(Problem);

/// The token's role may not do this (a viewer mutating, a tenant token managing
/// tenants, a platform token reading a tenant's resources).
#[derive(IntoResponses)]
#[response(
    status = 403,
    description = "The token's role does not allow this",
    content_type = "application/problem+json"
)]
pub struct Forbidden(Problem);

/// No such resource, or one of another tenant.
#[derive(IntoResponses)]
#[response(status = 404, description = "No such resource", content_type = "application/problem+json")]
pub struct NotFound(Problem);

/// The name or id is taken.
#[derive(IntoResponses)]
#[response(
    status = 409,
    description = "Conflicts with an existing resource",
    content_type = "application/problem+json"
)]
pub struct Conflict(Problem);

/// A query parameter is invalid; `field` names it.
#[derive(IntoResponses)]
#[response(status = 422, description = "Invalid parameter", content_type = "application/problem+json")]
pub struct ParamRejected(Problem);

/// The body was not accepted.
#[derive(IntoResponses)]
pub enum BodyRejected {
    #[response(status = 413, description = "Body larger than 64 KiB", content_type = "application/problem+json")]
    TooLarge(Problem),
    #[response(status = 415, description = "Body is not JSON", content_type = "application/problem+json")]
    NotJson(Problem),
    #[response(
        status = 422,
        description = "Invalid body; `field` names the failing member",
        content_type = "application/problem+json"
    )]
    Invalid(Problem),
}

/// What can go wrong between the CSMS and the station.
#[derive(IntoResponses)]
pub enum CommandFailures {
    #[response(
        status = 409,
        description = "Not sent (`station-not-connected`): the station is not connected, or its connection closed while the call was queued; or the station is Rejected (`conflict`)",
        content_type = "application/problem+json"
    )]
    NotConnected(Problem),
    #[response(
        status = 502,
        description = "The station answered with a CALLERROR or an invalid response",
        content_type = "application/problem+json"
    )]
    StationError(Problem),
    #[response(
        status = 503,
        description = "Too many calls queued for the station",
        content_type = "application/problem+json"
    )]
    Busy(Problem),
    #[response(
        status = 504,
        description = "Sent, outcome unknown (`call-outcome-unknown`): the station received the call but did not answer in time, or its connection closed before the answer; it may have acted on it, so check before retrying",
        content_type = "application/problem+json"
    )]
    Timeout(Problem),
}

/// Temporarily unavailable.
#[derive(IntoResponses)]
#[response(
    status = 503,
    description = "Temporarily unavailable; retry later",
    content_type = "application/problem+json"
)]
pub struct Unavailable(Problem);
