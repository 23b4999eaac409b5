//! The OCPP-J CALLERROR error codes (OCPP 2.0.1 part 4, section 4.3).

use std::fmt;

/// An OCPP-J `errorCode`, as carried in a CALLERROR frame.
///
/// The spelling returned by [`ErrorCode::as_str`] is exactly the one of the
/// OCPP 2.0.1-J specification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// Payload for the action is syntactically incorrect.
    FormatViolation,
    /// Any other error not covered by the more specific codes.
    GenericError,
    /// An internal error occurred and the receiver was not able to process the action.
    InternalError,
    /// A message with a message type number unknown to the receiver was received.
    MessageTypeNotSupported,
    /// The requested action is not known by the receiver.
    NotImplemented,
    /// The requested action is recognised but not supported by the receiver.
    NotSupported,
    /// Payload is syntactically correct but at least one field has an occurrence
    /// constraint violation (missing required field, too few or too many array items).
    OccurrenceConstraintViolation,
    /// Payload is syntactically correct but at least one field violates a
    /// value constraint (enum, length, range, date-time format).
    PropertyConstraintViolation,
    /// Payload for the action is not conform the PDU structure (e.g. an unknown property).
    ProtocolError,
    /// Content of the call is not a valid RPC request (e.g. the message id could not be read).
    RpcFrameworkError,
    /// During the processing of the action a security issue occurred.
    SecurityError,
    /// At least one field of the payload has a wrong JSON type.
    TypeConstraintViolation,
}

impl ErrorCode {
    /// Every error code, in specification order.
    pub const ALL: &'static [ErrorCode] = &[
        ErrorCode::FormatViolation,
        ErrorCode::GenericError,
        ErrorCode::InternalError,
        ErrorCode::MessageTypeNotSupported,
        ErrorCode::NotImplemented,
        ErrorCode::NotSupported,
        ErrorCode::OccurrenceConstraintViolation,
        ErrorCode::PropertyConstraintViolation,
        ErrorCode::ProtocolError,
        ErrorCode::RpcFrameworkError,
        ErrorCode::SecurityError,
        ErrorCode::TypeConstraintViolation,
    ];

    /// The exact specification spelling, as sent on the wire.
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorCode::FormatViolation => "FormatViolation",
            ErrorCode::GenericError => "GenericError",
            ErrorCode::InternalError => "InternalError",
            ErrorCode::MessageTypeNotSupported => "MessageTypeNotSupported",
            ErrorCode::NotImplemented => "NotImplemented",
            ErrorCode::NotSupported => "NotSupported",
            ErrorCode::OccurrenceConstraintViolation => "OccurrenceConstraintViolation",
            ErrorCode::PropertyConstraintViolation => "PropertyConstraintViolation",
            ErrorCode::ProtocolError => "ProtocolError",
            ErrorCode::RpcFrameworkError => "RpcFrameworkError",
            ErrorCode::SecurityError => "SecurityError",
            ErrorCode::TypeConstraintViolation => "TypeConstraintViolation",
        }
    }

    /// Parses the wire spelling. Case-sensitive.
    ///
    /// `FormationViolation`, the OCPP 1.6 misspelling that some stations still
    /// send, is accepted as an alias of [`ErrorCode::FormatViolation`].
    pub fn from_name(s: &str) -> Option<Self> {
        if s == "FormationViolation" {
            return Some(ErrorCode::FormatViolation);
        }
        ErrorCode::ALL.iter().copied().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_name(code.as_str()), Some(*code));
            assert_eq!(code.to_string(), code.as_str());
        }
        assert_eq!(ErrorCode::ALL.len(), 12);
        assert_eq!(ErrorCode::from_name("formatviolation"), None);
        assert_eq!(ErrorCode::from_name("FormationViolation"), Some(ErrorCode::FormatViolation));
    }
}
