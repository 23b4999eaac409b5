//! The typed way to reach a charging station: [`StationLink`].
//!
//! Engines, services and the REST API send CSMS-initiated calls through this
//! trait and nothing else. Today it is implemented over the sessions of this
//! process ([`crate::session::Sessions`]); a cluster implementation (NATS to the
//! node holding the station's WebSocket) can take its place without touching a
//! caller, because nothing here names a session, a socket or a node.
//!
//! Every call names the tenant as well as the station: a station of another
//! tenant is "not connected", never reachable.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use ocpp::ErrorCode;
use ocpp::v201::{Action, Request, Violation};
use serde_json::Value;

/// A boxed future, as trait objects return them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a CSMS-initiated call produced no result.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum CallFailure {
    #[error("station is not connected")]
    NotConnected,
    #[error("too many calls queued for this station")]
    Busy,
    /// The call was sent and no answer came in time: the station may have acted on it.
    #[error("station did not answer within {0:?}; it received the call and may have acted on it")]
    Timeout(Duration),
    #[error("station answered {code}: {description}")]
    Rejected { code: ErrorCode, description: String },
    #[error("invalid request payload: {0}")]
    InvalidRequest(Violation),
    #[error("station's answer violates the schema: {0}")]
    InvalidResponse(Violation),
    #[error("station's answer is not a valid OCPP-J reply: {0}")]
    MalformedResponse(String),
    #[error("the station's registration was rejected; the CSMS sends it nothing")]
    StationRejected,
    /// The connection closed while the call was queued: nothing reached the
    /// station (a frame whose write failed counts as not sent).
    #[error("connection closed before the call was sent")]
    ClosedBeforeSending,
    /// The call was sent and the connection closed before its answer: the
    /// station may have acted on it.
    #[error("connection closed after the call was sent, before its answer; the station may have acted on it")]
    ClosedAfterSending,
}

impl CallFailure {
    /// Whether the station received the call but its outcome is unknown (it may
    /// or may not have acted on it): a caller must not take it as "not done".
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, CallFailure::Timeout(_) | CallFailure::ClosedAfterSending)
    }
}

/// Why the CSMS closes a station's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Its settings changed (profile, password, enabled) or it was deleted: it
    /// must authenticate again under the new ones.
    Reconfigured,
    /// The certificate it authenticated with was revoked.
    CertificateRevoked,
}

/// Reaching connected stations, wherever their connection is held.
pub trait StationLink: Send + Sync + 'static {
    /// Sends `action` with `payload` to the tenant's station and returns its
    /// answer, validated against the action's response schema. The payload is
    /// validated before anything is sent ([`CallFailure::InvalidRequest`]); a
    /// station that is not connected is [`CallFailure::NotConnected`] first.
    /// Prefer the typed [`call`](dyn StationLink::call); this untyped form is for
    /// the API's generic command route, whose action is chosen at run time.
    fn send(
        &self,
        tenant: &str,
        station: &str,
        action: Action,
        payload: Value,
    ) -> BoxFuture<'static, Result<Value, CallFailure>>;

    /// Whether the tenant's station is connected.
    fn is_connected(&self, tenant: &str, station: &str) -> bool;

    /// Closes the tenant's station's connection, if any; whether there was one.
    fn disconnect(&self, tenant: &str, station: &str, why: CloseReason) -> bool;

    /// Closes the tenant's connections that authenticated with certificate
    /// `serial` (it was revoked); how many.
    fn disconnect_certificate(&self, tenant: &str, serial: &str) -> usize;

    /// Stations connected through this link.
    fn connected(&self) -> usize;
}

impl dyn StationLink {
    /// Sends a typed request and returns the station's typed answer.
    pub async fn call<R: Request>(&self, tenant: &str, station: &str, request: R) -> Result<R::Response, CallFailure> {
        let answer = self.send(tenant, station, R::ACTION, ocpp::v201::encode(&request)).await?;
        // `send` validated the answer against the response schema.
        ocpp::v201::decode_validated_response::<R>(answer).map_err(CallFailure::InvalidResponse)
    }
}
