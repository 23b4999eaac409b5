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

/// A CALL payload that conforms to its action's request schema.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload<'a> {
    /// The text as the station sent it ([`check_request_text`]); no object in
    /// it names a property twice, so it means the same to every reader.
    Text(&'a str),
    /// A parsed payload: from a frame read by [`crate::Frame::parse`], or a
    /// text that names a property twice (the last one counts, as everywhere
    /// a `Value` is read, and as in Python's `json`).
    Value(Value),
}

/// What [`check_request_text`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum TextCheck<'a> {
    /// It conforms.
    Conforms(Payload<'a>),
    /// It is JSON and breaks the schema, as [`validate`] names it.
    Violates(Violation),
    /// It is not JSON as [`crate::Frame::parse`] reads a payload (a broken
    /// string or number, nesting deeper than the frame allows): the frame is
    /// for `Frame::parse` to refuse.
    NotJson,
}

/// Checks the text of a CALL payload (as [`crate::RawCall::parse`] hands it
/// over) against `action`'s request schema.
///
/// A conforming text is checked as it is read, with no `Value` built, and
/// handed back as it is ([`Payload::Text`]). Anything else is parsed and
/// walked by [`validate`], so a refusal names the violation as precisely as
/// [`validate`] does, and a text that conforms but names a property twice is
/// kept parsed ([`Payload::Value`]).
pub fn check_request_text(action: Action, text: &str) -> TextCheck<'_> {
    let schema = action.request_schema();
    if crate::validate_text::conforms(schema, text) {
        return TextCheck::Conforms(Payload::Text(text));
    }
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        return TextCheck::NotJson;
    };
    if crate::validate_text::depth(&value) > crate::validate_text::MAX_PAYLOAD_DEPTH {
        return TextCheck::NotJson;
    }
    match validate_payload(schema, &value) {
        Ok(()) => TextCheck::Conforms(Payload::Value(value)),
        Err(v) => TextCheck::Violates(v),
    }
}

impl<'a> Payload<'a> {
    /// Checks a parsed CALL payload against `action`'s request schema.
    pub fn validated(action: Action, value: Value) -> Result<Payload<'static>, Violation> {
        validate(action, Direction::Request, &value)?;
        Ok(Payload::Value(value))
    }

    /// The payload as JSON text: the station's own text when it was kept.
    pub fn text(&self) -> std::borrow::Cow<'a, str> {
        match self {
            Payload::Text(t) => std::borrow::Cow::Borrowed(*t),
            Payload::Value(v) => std::borrow::Cow::Owned(v.to_string()),
        }
    }

    /// The payload parsed. A text from [`check_request_text`] was read as
    /// strictly as into a `Value` (strings, numbers, depth), so it parses;
    /// any other text may not.
    pub fn to_value(&self) -> Result<Value, serde_json::Error> {
        match self {
            Payload::Text(t) => serde_json::from_str(t),
            Payload::Value(v) => Ok(v.clone()),
        }
    }

    /// Takes the payload out, leaving `null`.
    pub fn take(&mut self) -> Payload<'a> {
        std::mem::replace(self, Payload::Value(Value::Null))
    }

    /// Deserialises the payload as `T`, whose action's schema it was checked
    /// against (see [`decode_validated_request`]).
    pub fn decode<T: Request>(self) -> Result<T, Violation> {
        match self {
            // A text is read straight into `T` without a Value; an integer
            // written with a zero fraction (5.0, which conforms) is not, and
            // goes through the Value walk's normalisation.
            Payload::Text(t) => match serde_json::from_str::<T>(t) {
                Ok(typed) => Ok(typed),
                Err(_) => match serde_json::from_str::<Value>(t) {
                    Ok(value) => decode_validated_request(value),
                    Err(e) => Err(Violation {
                        code: ErrorCode::FormatViolation,
                        path: String::new(),
                        message: format!("payload of {} is not valid JSON: {e}", T::ACTION.as_str()),
                    }),
                },
            },
            Payload::Value(v) => decode_validated_request(v),
        }
    }
}

/// Validates a CALL payload, then deserialises it.
pub fn decode_request<T: Request>(payload: Value) -> Result<T, Violation> {
    decode(T::ACTION.request_schema(), payload)
}

/// Validates a CALLRESULT payload answering a `T`, then deserialises it.
pub fn decode_response<T: Request>(payload: Value) -> Result<T::Response, Violation> {
    decode(T::ACTION.response_schema(), payload)
}

/// Deserialises a CALL payload that already passed [`validate`] for `T`'s
/// action, without validating it a second time. A payload that did not pass
/// still fails to deserialise rather than producing a wrong value, but the
/// error is less precise than [`decode_request`]'s.
pub fn decode_validated_request<T: Request>(mut payload: Value) -> Result<T, Violation> {
    let schema = T::ACTION.request_schema();
    normalize_payload(schema, &mut payload);
    deserialize(schema, payload)
}

/// Deserialises a CALLRESULT payload answering a `T` that already passed
/// [`validate`], without validating it a second time (see
/// [`decode_validated_request`]).
pub fn decode_validated_response<T: Request>(mut payload: Value) -> Result<T::Response, Violation> {
    let schema = T::ACTION.response_schema();
    normalize_payload(schema, &mut payload);
    deserialize(schema, payload)
}

/// Serialises a message into a payload.
///
/// Never fails for the generated types (their maps have string keys and every
/// [`DateTime`] serialises). For a type whose `Serialize` fails, the result is
/// `Value::Null`, which no schema accepts.
pub fn encode<T: Serialize>(msg: &T) -> Value {
    serde_json::to_value(msg).unwrap_or(Value::Null)
}

fn decode<T: DeserializeOwned>(schema: &'static ObjectSchema, mut payload: Value) -> Result<T, Violation> {
    validate_payload(schema, &payload)?;
    normalize_payload(schema, &mut payload);
    deserialize(schema, payload)
}

fn deserialize<T: DeserializeOwned>(schema: &'static ObjectSchema, payload: Value) -> Result<T, Violation> {
    // Unreachable for payloads that passed validation; kept typed all the same.
    serde_json::from_value(payload).map_err(|e| Violation {
        code: ErrorCode::FormatViolation,
        path: String::new(),
        message: format!("{} does not deserialise: {e}", schema.name),
    })
}

/// Deserialises an optional property whose schema is `{}` (any JSON value),
/// keeping an explicit `null` as `Some(Value::Null)` so that it round-trips.
pub(crate) fn any_present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    <Value as serde::Deserialize>::deserialize(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn boot_notification_decodes_and_encodes() {
        let payload = json!({
            "reason": "PowerUp",
            "chargingStation": {"model": "AP-1", "vendorName": "Anchorpoint",
                                "modem": {"iccid": "8931"}}
        });
        let req: BootNotificationRequest = decode_request(payload.clone()).unwrap();
        assert_eq!(req.reason, BootReasonEnumType::PowerUp);
        assert_eq!(req.charging_station.modem.as_ref().unwrap().iccid.as_deref(), Some("8931"));
        assert_eq!(encode(&req), payload);

        let now = DateTime::parse("2024-05-01T10:00:00+02:00").unwrap();
        let resp = BootNotificationResponse {
            custom_data: None,
            current_time: now,
            interval: 300,
            status: RegistrationStatusEnumType::Accepted,
            status_info: None,
        };
        let out = encode(&resp);
        assert_eq!(out, json!({"currentTime": "2024-05-01T08:00:00Z", "interval": 300, "status": "Accepted"}));
        assert_eq!(validate(Action::BootNotification, Direction::Response, &out), Ok(()));
        let back = decode_response::<BootNotificationRequest>(out).unwrap();
        assert_eq!(back, resp);
    }

    #[test]
    fn integer_written_as_float_is_accepted_and_normalised() {
        let payload = json!({"currentTime": "2024-05-01T08:00:00Z", "interval": 300.0,
                             "status": "Pending"});
        let resp = decode_response::<BootNotificationRequest>(payload).unwrap();
        assert_eq!(resp.interval, 300);
        let bad = json!({"currentTime": "2024-05-01T08:00:00Z", "interval": 300.5,
                         "status": "Pending"});
        let v = decode_response::<BootNotificationRequest>(bad).unwrap_err();
        assert_eq!((v.code, v.path.as_str()), (ErrorCode::TypeConstraintViolation, "/interval"));
    }

    #[test]
    fn integers_beyond_i64_are_a_property_violation() {
        for interval in [json!(18_446_744_073_709_551_615u64), json!(1e19), json!(-1e19)] {
            let payload = json!({"currentTime": "2024-05-01T08:00:00Z", "interval": interval,
                                 "status": "Pending"});
            let v = validate(Action::BootNotification, Direction::Response, &payload).unwrap_err();
            assert_eq!(v.code, ErrorCode::PropertyConstraintViolation, "{interval}");
        }
    }

    #[test]
    fn violations_carry_code_and_pointer() {
        let v = validate(Action::Heartbeat, Direction::Request, &json!([])).unwrap_err();
        assert_eq!((v.code, v.path.as_str()), (ErrorCode::FormatViolation, ""));
        let v = validate(Action::Heartbeat, Direction::Request, &json!({"a/b~c": 1})).unwrap_err();
        assert_eq!((v.code, v.path.as_str()), (ErrorCode::ProtocolError, "/a~1b~0c"));
        let v = validate(
            Action::BootNotification,
            Direction::Request,
            &json!({"reason": "PowerUp", "chargingStation": {"model": "m"}}),
        )
        .unwrap_err();
        assert_eq!(
            (v.code, v.path.as_str()),
            (ErrorCode::OccurrenceConstraintViolation, "/chargingStation/vendorName")
        );
        assert_eq!(
            v.to_string(),
            "OccurrenceConstraintViolation at /chargingStation/vendorName: \
             required property vendorName of ChargingStationType is missing"
        );
    }

    #[test]
    fn open_values_round_trip() {
        // DataTransfer `data` is `{}` in the schema: an explicit null survives.
        let payload = json!({"vendorId": "v", "data": null});
        let req: DataTransferRequest = decode_request(payload.clone()).unwrap();
        assert_eq!(req.data, Some(Value::Null));
        assert_eq!(encode(&req), payload);
        let payload = json!({"vendorId": "v"});
        let req: DataTransferRequest = decode_request(payload.clone()).unwrap();
        assert_eq!(req.data, None);
        assert_eq!(encode(&req), payload);
        // CustomDataType keeps vendor properties.
        let payload = json!({"customData": {"vendorId": "acme", "x": [1, {"y": null}]}});
        let req: HeartbeatRequest = decode_request(payload.clone()).unwrap();
        let custom = req.custom_data.as_ref().unwrap();
        assert_eq!(custom.vendor_id, "acme");
        assert_eq!(custom.extra["x"], json!([1, {"y": null}]));
        assert_eq!(encode(&req), payload);
    }

    #[test]
    fn actions_and_initiators() {
        assert_eq!(Action::ALL.len(), 64);
        let count = |i: Initiator| Action::ALL.iter().filter(|a| a.initiated_by() == i).count();
        assert_eq!(count(Initiator::ChargingStation), 24);
        assert_eq!(count(Initiator::Csms), 39);
        assert_eq!(count(Initiator::Both), 1);
        assert_eq!(Action::DataTransfer.initiated_by(), Initiator::Both);
        assert_eq!(Action::Reset.initiated_by(), Initiator::Csms);
        assert!(Action::TransactionEvent.initiated_by().charging_station_may_send());
        assert!(!Action::TransactionEvent.initiated_by().csms_may_send());
        assert_eq!(Action::from_name("Get15118EVCertificate"), Some(Action::Get15118EVCertificate));
        assert_eq!(Action::from_name("heartbeat"), None);
        assert_eq!(<ResetRequest as Request>::ACTION, Action::Reset);
        assert_eq!(ConnectorEnumType::CCCS2.as_str(), "cCCS2");
        assert_eq!(MeasurandEnumType::EnergyActiveImportRegister.to_string(), "Energy.Active.Import.Register");
    }
}
