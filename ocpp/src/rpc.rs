//! OCPP-J RPC framing (OCPP 2.0.1 part 4, section 4).
//!
//! Three frame kinds travel over the WebSocket, each a JSON array:
//!
//! | kind       | shape                                                   |
//! |------------|---------------------------------------------------------|
//! | CALL       | `[2, "<messageId>", "<action>", {payload}]`             |
//! | CALLRESULT | `[3, "<messageId>", {payload}]`                         |
//! | CALLERROR  | `[4, "<messageId>", "<errorCode>", "<description>", {details}]` |
//!
//! # Classification of malformed frames
//!
//! [`Frame::parse`] never panics. It rejects a frame with a [`FrameError`] whose
//! code is chosen as follows, checked in this order:
//!
//! 1. Text that is not JSON (including nesting deeper than serde_json's
//!    recursion limit of 128, the frame's array included), not a JSON array,
//!    or an empty array:
//!    [`ErrorCode::RpcFrameworkError`], `id: None`.
//! 2. A message type number other than the integers 2, 3 or 4 (or not a number
//!    at all): [`ErrorCode::MessageTypeNotSupported`], with the id if element 1
//!    is a valid message id.
//! 3. Wrong arity for the message type (CALL 4, CALLRESULT 3, CALLERROR 5
//!    elements): [`ErrorCode::RpcFrameworkError`], with the id if readable.
//! 4. A message id that is not a string of 1..=36 characters:
//!    [`ErrorCode::RpcFrameworkError`], `id: None`.
//! 5. A CALL action, a CALLERROR error code or a CALLERROR description that is
//!    not a string: [`ErrorCode::RpcFrameworkError`], with the id.
//! 6. A CALL or CALLRESULT payload, or CALLERROR details, that is not a JSON
//!    object: [`ErrorCode::FormatViolation`], with the id.
//!
//! A CALLERROR whose error code string is unknown is still parsed; its code
//! becomes [`ErrorCode::GenericError`]. The action name of a CALL is not checked
//! here: mapping it to an [`crate::v201::Action`] (and answering
//! `NotImplemented` for unknown ones) is the caller's job.
//!
//! When a frame error has to be answered, [`FrameError::to_call_error`] builds
//! the CALLERROR, using the message id `"-1"` when the id could not be read.

use serde_json::{Map, Value};

use crate::error::ErrorCode;

/// Longest message id allowed by OCPP-J (characters).
pub const MAX_MESSAGE_ID_LEN: usize = 36;

/// Longest CALLERROR description sent (characters); longer ones are truncated.
pub const MAX_ERROR_DESCRIPTION_LEN: usize = 255;

/// The message id used in a CALLERROR answering a frame whose id was unreadable.
pub const UNREADABLE_ID: &str = "-1";

const CALL: u64 = 2;
const CALL_RESULT: u64 = 3;
const CALL_ERROR: u64 = 4;

/// An OCPP-J message id: a string of 1 to [`MAX_MESSAGE_ID_LEN`] characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MessageId(String);

impl MessageId {
    /// Checks the length (1..=36 characters) and wraps the id.
    pub fn new(s: impl Into<String>) -> Result<Self, FrameError> {
        let s = s.into();
        let len = s.chars().count();
        if (1..=MAX_MESSAGE_ID_LEN).contains(&len) {
            Ok(MessageId(s))
        } else {
            Err(FrameError {
                is_reply: false,
                id: None,
                code: ErrorCode::RpcFrameworkError,
                description: format!("message id must be 1 to {MAX_MESSAGE_ID_LEN} characters, got {len}"),
            })
        }
    }

    /// The id `"-1"`, used to answer a frame whose id could not be read.
    pub fn unreadable() -> Self {
        MessageId(UNREADABLE_ID.to_owned())
    }

    /// The id as sent on the wire.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for MessageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One OCPP-J frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Call(Call),
    CallResult(CallResult),
    CallError(CallError),
}

/// A request: `[2, id, action, payload]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub id: MessageId,
    pub action: String,
    /// Always a JSON object when produced by [`Frame::parse`].
    pub payload: Value,
}

/// A successful response: `[3, id, payload]`.
#[derive(Debug, Clone, PartialEq)]
pub struct CallResult {
    pub id: MessageId,
    /// Always a JSON object when produced by [`Frame::parse`].
    pub payload: Value,
}

/// An error response: `[4, id, errorCode, errorDescription, errorDetails]`.
#[derive(Debug, Clone, PartialEq)]
pub struct CallError {
    /// The id of the CALL this answers, or `"-1"` when that id was unreadable.
    pub id: MessageId,
    pub code: ErrorCode,
    pub description: String,
    /// Always a JSON object when produced by [`Frame::parse`] or [`CallError::new`].
    pub details: Value,
}

/// Why a text could not be parsed as a [`Frame`]; see the module docs for the
/// classification.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code}: {description}")]
pub struct FrameError {
    /// The message id, when it could be read.
    pub id: Option<MessageId>,
    /// The frame declared itself a CALLRESULT or CALLERROR. OCPP-J never
    /// answers a reply, so such an error is logged, not sent back.
    pub is_reply: bool,
    pub code: ErrorCode,
    pub description: String,
}

impl Frame {
    /// Parses one WebSocket text message. Never panics.
    pub fn parse(text: &str) -> Result<Frame, FrameError> {
        // serde_json's default recursion limit (128) stays on: it bounds the
        // stack used for hostile, deeply nested input.
        let value: Value = serde_json::from_str(text).map_err(|e| FrameError {
            is_reply: false,
            id: None,
            code: ErrorCode::RpcFrameworkError,
            description: format!("frame is not valid JSON: {e}"),
        })?;
        let Value::Array(items) = value else {
            return Err(FrameError {
                is_reply: false,
                id: None,
                code: ErrorCode::RpcFrameworkError,
                description: "frame is not a JSON array".to_owned(),
            });
        };
        let mut items = items.into_iter();
        let Some(kind) = items.next() else {
            return Err(FrameError {
                is_reply: false,
                id: None,
                code: ErrorCode::RpcFrameworkError,
                description: "frame is an empty array".to_owned(),
            });
        };
        let rest: Vec<Value> = items.collect();
        let is_reply = matches!(kind.as_u64(), Some(CALL_RESULT | CALL_ERROR));
        Self::parse_body(&kind, rest).map_err(|mut e| {
            e.is_reply = is_reply;
            e
        })
    }

    /// Everything after the message type: arity, id, and the type's own elements.
    fn parse_body(kind: &Value, rest: Vec<Value>) -> Result<Frame, FrameError> {
        let readable_id = rest.first().and_then(read_id);
        let expected_len = match kind.as_u64() {
            Some(CALL) => 3,
            Some(CALL_RESULT) => 2,
            Some(CALL_ERROR) => 4,
            _ => {
                return Err(FrameError {
                    is_reply: false,
                    id: readable_id,
                    code: ErrorCode::MessageTypeNotSupported,
                    description: format!("message type {} is not supported", short(kind)),
                });
            }
        };
        if rest.len() != expected_len {
            return Err(FrameError {
                is_reply: false,
                id: readable_id,
                code: ErrorCode::RpcFrameworkError,
                description: format!(
                    "message type {} needs {} elements, got {}",
                    short(kind),
                    expected_len + 1,
                    rest.len() + 1
                ),
            });
        }
        let mut rest = rest.into_iter();
        let raw_id = rest.next().unwrap_or(Value::Null);
        let id = match raw_id {
            Value::String(s) => MessageId::new(s)?,
            other => {
                return Err(FrameError {
                    is_reply: false,
                    id: None,
                    code: ErrorCode::RpcFrameworkError,
                    description: format!("message id must be a string, got {}", type_name(&other)),
                });
            }
        };
        let fail = |id: &MessageId, code, description: String| FrameError {
            is_reply: false,
            id: Some(id.clone()),
            code,
            description,
        };

        match kind.as_u64() {
            Some(CALL) => {
                let action = match rest.next() {
                    Some(Value::String(s)) => s,
                    other => {
                        return Err(fail(
                            &id,
                            ErrorCode::RpcFrameworkError,
                            format!("action must be a string, got {}", opt_type_name(&other)),
                        ));
                    }
                };
                let payload = object(rest.next(), &id, "payload")?;
                Ok(Frame::Call(Call { id, action, payload }))
            }
            Some(CALL_RESULT) => {
                let payload = object(rest.next(), &id, "payload")?;
                Ok(Frame::CallResult(CallResult { id, payload }))
            }
            _ => {
                let code = match rest.next() {
                    Some(Value::String(s)) => ErrorCode::from_name(&s).unwrap_or(ErrorCode::GenericError),
                    other => {
                        return Err(fail(
                            &id,
                            ErrorCode::RpcFrameworkError,
                            format!("error code must be a string, got {}", opt_type_name(&other)),
                        ));
                    }
                };
                let description = match rest.next() {
                    Some(Value::String(s)) => s,
                    other => {
                        return Err(fail(
                            &id,
                            ErrorCode::RpcFrameworkError,
                            format!("error description must be a string, got {}", opt_type_name(&other)),
                        ));
                    }
                };
                let details = object(rest.next(), &id, "error details")?;
                Ok(Frame::CallError(CallError { id, code, description, details }))
            }
        }
    }

    /// Serialises the frame as OCPP-J text.
    ///
    /// A CALLERROR description longer than 255 characters is truncated.
    pub fn to_json(&self) -> String {
        // Serialised in place: the payload is written, never copied.
        let text = match self {
            Frame::Call(c) => serde_json::to_string(&(CALL, &c.id.0, &c.action, &c.payload)),
            Frame::CallResult(r) => serde_json::to_string(&(CALL_RESULT, &r.id.0, &r.payload)),
            Frame::CallError(e) => serde_json::to_string(&(
                CALL_ERROR,
                &e.id.0,
                e.code.as_str(),
                truncate(&e.description, MAX_ERROR_DESCRIPTION_LEN),
                &e.details,
            )),
        };
        // A Value with string keys always serialises.
        text.unwrap_or_default()
    }

    /// The message id of the frame.
    pub fn id(&self) -> &MessageId {
        match self {
            Frame::Call(c) => &c.id,
            Frame::CallResult(r) => &r.id,
            Frame::CallError(e) => &e.id,
        }
    }
}

/// A CALL whose payload is kept as the text it was sent as: what
/// [`RawCall::parse`] reads without building the payload.
#[derive(Debug, Clone, PartialEq)]
pub struct RawCall<'a> {
    pub id: MessageId,
    pub action: &'a str,
    /// A JSON object's text, exactly as sent (whitespace around it excluded).
    pub payload: &'a str,
}

impl<'a> RawCall<'a> {
    /// Reads `text` as a CALL with an object payload, without building the
    /// payload (it stays a slice of `text`, skipped over, not yet read: see
    /// [`RawCall::payload_is_json`]). `None` for anything else, including an
    /// action name written with escapes: [`Frame::parse`] then reads the
    /// frame, or says precisely what is wrong with it.
    pub fn parse(text: &'a str) -> Option<RawCall<'a>> {
        let (kind, id, action, payload): (u64, String, &'a str, &'a serde_json::value::RawValue) =
            serde_json::from_str(text).ok()?;
        let payload = payload.get();
        if kind != CALL || !payload.starts_with('{') {
            return None;
        }
        Some(RawCall { id: MessageId::new(id).ok()?, action, payload })
    }

    /// Whether the payload is JSON as [`Frame::parse`] reads it in the frame.
    /// [`RawCall::parse`] only skips over it (serde_json then checks neither
    /// its strings, nor its numbers' range, nor its depth): a frame whose
    /// payload fails here is for [`Frame::parse`] to refuse. Checking the
    /// payload against its schema (`v201::check_request_text`) reads it as
    /// strictly; this is for a call refused before its payload is looked at.
    pub fn payload_is_json(&self) -> bool {
        crate::validate_text::is_json_object(self.payload)
    }
}

impl Call {
    pub fn new(id: MessageId, action: impl Into<String>, payload: Value) -> Self {
        Call { id, action: action.into(), payload }
    }
}

impl CallResult {
    pub fn new(id: MessageId, payload: Value) -> Self {
        CallResult { id, payload }
    }
}

impl CallError {
    /// A CALLERROR with empty details (`{}`); the description is truncated to
    /// 255 characters on a character boundary.
    pub fn new(id: MessageId, code: ErrorCode, description: impl Into<String>) -> Self {
        let mut description = description.into();
        let keep = truncate(&description, MAX_ERROR_DESCRIPTION_LEN).len();
        description.truncate(keep);
        CallError { id, code, description, details: Value::Object(Map::new()) }
    }

    /// Replaces the details object.
    pub fn with_details(mut self, details: Map<String, Value>) -> Self {
        self.details = Value::Object(details);
        self
    }
}

impl FrameError {
    /// The CALLERROR that answers this error; its id is `"-1"` when the id of
    /// the offending frame could not be read.
    pub fn to_call_error(&self) -> CallError {
        let id = self.id.clone().unwrap_or_else(MessageId::unreadable);
        CallError::new(id, self.code, self.description.clone())
    }
}

impl From<Call> for Frame {
    fn from(c: Call) -> Self {
        Frame::Call(c)
    }
}

impl From<CallResult> for Frame {
    fn from(r: CallResult) -> Self {
        Frame::CallResult(r)
    }
}

impl From<CallError> for Frame {
    fn from(e: CallError) -> Self {
        Frame::CallError(e)
    }
}

fn read_id(v: &Value) -> Option<MessageId> {
    v.as_str().and_then(|s| MessageId::new(s).ok())
}

fn object(v: Option<Value>, id: &MessageId, what: &str) -> Result<Value, FrameError> {
    match v {
        Some(v @ Value::Object(_)) => Ok(v),
        other => Err(FrameError {
            is_reply: false,
            id: Some(id.clone()),
            code: ErrorCode::FormatViolation,
            description: format!("{what} must be a JSON object, got {}", opt_type_name(&other)),
        }),
    }
}

/// The longest prefix of `s` with at most `max` characters.
fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((end, _)) => &s[..end],
        None => s,
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn opt_type_name(v: &Option<Value>) -> &'static str {
    v.as_ref().map_or("nothing", type_name)
}

/// A short rendering of a message type element for error descriptions; the
/// element is attacker-controlled, so it is never echoed at length.
fn short(v: &Value) -> String {
    match v {
        Value::Number(n) => truncate(&n.to_string(), 20).to_owned(),
        other => type_name(other).to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn id(s: &str) -> MessageId {
        MessageId::new(s).unwrap()
    }

    fn err(text: &str) -> FrameError {
        Frame::parse(text).unwrap_err()
    }

    #[test]
    fn call_round_trips() {
        let f = Frame::Call(Call::new(id("19223201"), "BootNotification", json!({"a": 1})));
        let text = f.to_json();
        assert_eq!(text, r#"[2,"19223201","BootNotification",{"a":1}]"#);
        assert_eq!(Frame::parse(&text).unwrap(), f);
        assert_eq!(f.id().as_str(), "19223201");
    }

    #[test]
    fn call_result_round_trips() {
        let f = Frame::CallResult(CallResult::new(id("x"), json!({"status": "Accepted"})));
        let text = f.to_json();
        assert_eq!(text, r#"[3,"x",{"status":"Accepted"}]"#);
        assert_eq!(Frame::parse(&text).unwrap(), f);
    }

    #[test]
    fn call_error_round_trips() {
        let mut details = Map::new();
        details.insert("k".into(), json!("v"));
        let f = Frame::CallError(
            CallError::new(id("abc"), ErrorCode::NotImplemented, "no such action").with_details(details),
        );
        let text = f.to_json();
        assert_eq!(text, r#"[4,"abc","NotImplemented","no such action",{"k":"v"}]"#);
        assert_eq!(Frame::parse(&text).unwrap(), f);
        let plain = CallError::new(id("abc"), ErrorCode::InternalError, "");
        assert_eq!(plain.details, json!({}));
        assert_eq!(Frame::parse(&Frame::from(plain.clone()).to_json()).unwrap(), Frame::CallError(plain));
    }

    #[test]
    fn unknown_error_code_is_generic() {
        let f = Frame::parse(r#"[4,"a","Whatever","d",{}]"#).unwrap();
        let Frame::CallError(e) = f else { panic!() };
        assert_eq!(e.code, ErrorCode::GenericError);
        assert_eq!(e.description, "d");
    }

    #[test]
    fn not_json() {
        let e = err("not json");
        assert_eq!(e.code, ErrorCode::RpcFrameworkError);
        assert_eq!(e.id, None);
        assert_eq!(err("").code, ErrorCode::RpcFrameworkError);
        assert_eq!(err("[2,\"a\",\"B\",{}").code, ErrorCode::RpcFrameworkError);
    }

    #[test]
    fn not_an_array() {
        for text in ["{}", "2", "\"x\"", "null"] {
            let e = err(text);
            assert_eq!(e.code, ErrorCode::RpcFrameworkError, "{text}");
            assert_eq!(e.id, None);
        }
    }

    #[test]
    fn wrong_arity() {
        let e = err("[]");
        assert_eq!((e.code, e.id), (ErrorCode::RpcFrameworkError, None));
        let e = err("[2]");
        assert_eq!((e.code, e.id), (ErrorCode::RpcFrameworkError, None));
        let e = err(r#"[2,"id","Heartbeat"]"#);
        assert_eq!(e.code, ErrorCode::RpcFrameworkError);
        assert_eq!(e.id, Some(id("id")));
        let e = err(r#"[2,"id","Heartbeat",{},{}]"#);
        assert_eq!(e.code, ErrorCode::RpcFrameworkError);
        let e = err(r#"[3,"id"]"#);
        assert_eq!(e.code, ErrorCode::RpcFrameworkError);
        let e = err(r#"[4,"id","GenericError","x"]"#);
        assert_eq!(e.code, ErrorCode::RpcFrameworkError);
        assert_eq!(e.id, Some(id("id")));
    }

    #[test]
    fn unsupported_message_type() {
        let e = err(r#"[9,"id","X",{}]"#);
        assert_eq!(e.code, ErrorCode::MessageTypeNotSupported);
        assert_eq!(e.id, Some(id("id")));
        for text in [r#"["2","id","X",{}]"#, r#"[2.0,"id","X",{}]"#, r#"[-2,"id","X",{}]"#, "[null]"] {
            assert_eq!(err(text).code, ErrorCode::MessageTypeNotSupported, "{text}");
        }
        assert_eq!(err("[5]").id, None);
    }

    #[test]
    fn bad_message_id() {
        let e = err(r#"[2,123,"Heartbeat",{}]"#);
        assert_eq!((e.code, e.id), (ErrorCode::RpcFrameworkError, None));
        let long = "a".repeat(37);
        let e = err(&format!(r#"[2,"{long}","Heartbeat",{{}}]"#));
        assert_eq!((e.code, e.id), (ErrorCode::RpcFrameworkError, None));
        let e = err(r#"[2,"","Heartbeat",{}]"#);
        assert_eq!((e.code, e.id), (ErrorCode::RpcFrameworkError, None));
        // 36 characters (72 bytes) is fine.
        let max = "é".repeat(36);
        assert!(Frame::parse(&format!(r#"[2,"{max}","Heartbeat",{{}}]"#)).is_ok());
        assert!(MessageId::new("a".repeat(37)).is_err());
        assert!(MessageId::new("").is_err());
    }

    #[test]
    fn action_not_a_string() {
        let e = err(r#"[2,"id",7,{}]"#);
        assert_eq!(e.code, ErrorCode::RpcFrameworkError);
        assert_eq!(e.id, Some(id("id")));
    }

    #[test]
    fn payload_not_an_object() {
        for text in [
            r#"[2,"id","Heartbeat",[]]"#,
            r#"[2,"id","Heartbeat",null]"#,
            r#"[3,"id","x"]"#,
            r#"[4,"id","GenericError","d",[]]"#,
        ] {
            let e = err(text);
            assert_eq!(e.code, ErrorCode::FormatViolation, "{text}");
            assert_eq!(e.id, Some(id("id")));
        }
        let e = err(r#"[4,"id",1,"d",{}]"#);
        assert_eq!(e.code, ErrorCode::RpcFrameworkError);
        let e = err(r#"[4,"id","GenericError",1,{}]"#);
        assert_eq!(e.code, ErrorCode::RpcFrameworkError);
    }

    #[test]
    fn deep_nesting_does_not_overflow() {
        let depth = 10_000;
        let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert_eq!(err(&text).code, ErrorCode::RpcFrameworkError);
        let text = format!(r#"[2,"id","DataTransfer",{{"data":{}1{}}}]"#, r#"{"a":"#.repeat(depth), "}".repeat(depth));
        assert_eq!(err(&text).code, ErrorCode::RpcFrameworkError);
    }

    #[test]
    fn description_is_truncated_on_a_char_boundary() {
        let long = "é".repeat(300);
        let e = CallError::new(id("a"), ErrorCode::GenericError, long.clone());
        assert_eq!(e.description.chars().count(), 255);
        assert_eq!(e.description, "é".repeat(255));
        let short = "x".repeat(255);
        assert_eq!(CallError::new(id("a"), ErrorCode::GenericError, short.clone()).description, short);
        // Even a hand-built CallError is truncated when sent.
        let mut raw = CallError::new(id("a"), ErrorCode::GenericError, "");
        raw.description = long;
        let Frame::CallError(back) = Frame::parse(&Frame::CallError(raw).to_json()).unwrap() else { panic!() };
        assert_eq!(back.description.chars().count(), 255);
    }

    #[test]
    fn frame_error_to_call_error() {
        let e = err("garbage");
        let ce = e.to_call_error();
        assert_eq!(ce.id.as_str(), "-1");
        assert_eq!(ce.code, ErrorCode::RpcFrameworkError);
        let e = err(r#"[2,"id","Heartbeat",[]]"#);
        let ce = e.to_call_error();
        assert_eq!(ce.id.as_str(), "id");
        assert_eq!(ce.code, ErrorCode::FormatViolation);
        assert_eq!(ce.details, json!({}));
    }

    #[test]
    fn malformed_replies_are_marked_as_replies() {
        for text in
            [r#"[3,"a"]"#, r#"[3,"a",[]]"#, r#"[4,"a",1,"d",{}]"#, r#"[4,"a","GenericError","d"]"#, r#"[3,7,{}]"#]
        {
            assert!(err(text).is_reply, "{text}");
        }
        for text in ["garbage", "[]", r#"[2,"a","Heartbeat",[]]"#, r#"[5,"a",{}]"#, r#"["3","a",{}]"#] {
            assert!(!err(text).is_reply, "{text}");
        }
        assert_eq!(err(r#"[4,"a",1,"d",{}]"#).id, Some(id("a")));
    }

    #[test]
    fn never_panics_on_odd_inputs() {
        let inputs = [
            "[2,\"id\",\"A\",{}]\u{0}",
            "[1e400]",
            "[18446744073709551617,\"a\"]",
            "[4,\"a\",\"x\",\"\\ud800\",{}]",
            "[3,\"a\",{\"a\":1,\"a\":2}]",
            "\u{feff}[3,\"a\",{}]",
        ];
        for text in inputs {
            let _ = Frame::parse(text);
        }
    }

    #[test]
    fn a_raw_call_keeps_the_payload_text_and_leaves_everything_else_to_parse() {
        let text = r#" [2, "m1", "MeterValues", {"evseId": 1,  "meterValue": []} ] "#;
        let raw = RawCall::parse(text).unwrap();
        assert_eq!(
            raw,
            RawCall { id: id("m1"), action: "MeterValues", payload: r#"{"evseId": 1,  "meterValue": []}"# }
        );
        let Frame::Call(call) = Frame::parse(text).unwrap() else { panic!("a call") };
        assert_eq!(serde_json::from_str::<Value>(raw.payload).unwrap(), call.payload);
        for other in [
            r#"[3,"m1",{}]"#,
            r#"[2.0,"m1","Heartbeat",{}]"#,
            r#"[2,"m1","Heartbeat",[]]"#,
            r#"[2,"m1","Heartbeat",{},1]"#,
            r#"[2,"m1","Heartbeat"]"#,
            r#"[2,"","Heartbeat",{}]"#,
            r#"[2,"0123456789012345678901234567890123456","Heartbeat",{}]"#,
            r#"[2,"m1","Heart\u0062eat",{}]"#,
            r#"[2,"m1","Heartbeat",{}] x"#,
            r#"[2,"m1","Heartbeat",{"a":}]"#,
        ] {
            assert_eq!(RawCall::parse(other), None, "{other}");
        }
        // An escaped action name is still a CALL, read by Frame::parse.
        assert!(
            matches!(Frame::parse(r#"[2,"m1","Heart\u0062eat",{}]"#), Ok(Frame::Call(c)) if c.action == "Heartbeat")
        );
    }
}
