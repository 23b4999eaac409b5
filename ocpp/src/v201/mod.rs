//! OCPP 2.0.1 messages: typed request/response structs, the [`Action`] list,
//! and schema validation.
//!
//! The types and the schema descriptors in [`generated`] are generated from the
//! official OCA JSON schemas by `ocpp/codegen/generate.py`. A payload arriving
//! from the network goes through [`decode_request`] / [`decode_response`]:
//! first [`validate`] (equivalent to the OCA schema; see [`crate::validate`]
//! for the error-code mapping), then deserialisation into the typed struct.

mod datetime;
pub mod generated;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use datetime::{DateTime, DateTimeError};
pub use generated::*;

use crate::error::ErrorCode;
use crate::validate::{ObjectSchema, normalize_payload, validate_payload};

/// Which side starts an exchange of an [`Action`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Initiator {
    ChargingStation,
    Csms,
    /// Either side (only `DataTransfer`).
    Both,
}

impl Initiator {
    /// Whether a CALL of this action may arrive at the CSMS from a station.
    pub fn charging_station_may_send(&self) -> bool {
        matches!(self, Initiator::ChargingStation | Initiator::Both)
    }

    /// Whether the CSMS may send a CALL of this action to a station.
    pub fn csms_may_send(&self) -> bool {
        matches!(self, Initiator::Csms | Initiator::Both)
    }
}

/// The request (CALL payload) or the response (CALLRESULT payload) of an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    Request,
    Response,
}

/// A payload that does not conform to its OCA schema.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code} at {path}: {message}")]
pub struct Violation {
    /// The CALLERROR code to answer with.
    pub code: ErrorCode,
    /// JSON pointer of the offending value (for a missing property, the pointer
    /// it should have had; for the whole payload, the empty string).
    pub path: String,
    pub message: String,
}

/// A request message type; implemented for every `<Action>Request` struct.
pub trait Request: Serialize + DeserializeOwned + Send + Sync + 'static {
    const ACTION: Action;
    type Response: Serialize + DeserializeOwned + Send + Sync + 'static;
}

impl Action {
    /// The schema descriptor of the request or response payload.
    pub fn schema(&self, direction: Direction) -> &'static ObjectSchema {
        match direction {
            Direction::Request => self.request_schema(),
            Direction::Response => self.response_schema(),
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Checks a payload against the OCA schema of `action` in `direction`.
pub fn validate(action: Action, direction: Direction, payload: &Value) -> Result<(), Violation> {
    validate_payload(action.schema(direction), payload)
}

/// Validates a CALL payload, then deserialises it.
pub fn decode_request<T: Request>(payload: Value) -> Result<T, Violation> {
    decode(T::ACTION.request_schema(), payload)
}

/// Validates a CALLRESULT payload answering a `T`, then deserialises it.
pub fn decode_response<T: Request>(payload: Value) -> Result<T::Response, Violation> {
    decode(T::ACTION.response_schema(), payload)
}

/// Serialises a message into a payload.
///
/// Never fails for the generated types (their maps have string keys and every
/// [`DateTime`] serialises). For a type whose `Serialize` fails, the result is
/// `Value::Null`, which no schema accepts.
pub fn encode<T: Serialize>(msg: &T) -> Value {
    serde_json::to_value(msg).unwrap_or(Value::Null)
}

fn decode<T: DeserializeOwned>(
    schema: &'static ObjectSchema,
    mut payload: Value,
) -> Result<T, Violation> {
    validate_payload(schema, &payload)?;
    normalize_payload(schema, &mut payload);
    // Unreachable for payloads that passed validation; kept typed all the same.
    serde_json::from_value(payload).map_err(|e| Violation {
        code: ErrorCode::FormatViolation,
        path: String::new(),
        message: format!("{} does not deserialise: {e}", schema.name),
    })
}

/// Deserialises an optional property whose schema is `{}` (any JSON value),
/// keeping an explicit `null` as `Some(Value::Null)` so that it round-trips.
pub(crate) fn any_present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Value>, D::Error> {
    <Value as serde::Deserialize>::deserialize(deserializer).map(Some)
}
