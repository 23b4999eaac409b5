//! OCPP 2.0.1-J wire protocol: RPC frames, typed messages, schema validation.
//!
//! No I/O happens here. A WebSocket text message goes through
//! [`Frame::parse`] ([`rpc`]), then the payload of a CALL or CALLRESULT through
//! [`v201::decode_request`] / [`v201::decode_response`], which validate it
//! against the official OCA schema before handing out a typed message. Every
//! rejection carries the OCPP-J [`ErrorCode`] to answer with.
#![forbid(unsafe_code)]

pub mod error;
pub mod rpc;
pub mod v201;
pub mod validate;
mod validate_text;

pub use error::ErrorCode;
pub use rpc::{Call, CallError, CallResult, Frame, FrameError, MessageId, RawCall};
