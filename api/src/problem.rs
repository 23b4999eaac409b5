//! RFC 9457 problem details: every error the API returns.
//!
//! `type` is a stable URN per kind of problem, `detail` says precisely what
//! went wrong, `field` names the failing request field (a JSON pointer into the
//! body, or a query/path parameter name). Never a stack trace, SQL, or key.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;
use utoipa::ToSchema;

/// Kinds of problem; each has a stable `type` URN and HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Conflict,
    InvalidBody,
    InvalidParameter,
    UnsupportedMediaType,
    PayloadTooLarge,
    StationNotConnected,
    /// The call reached the station (it timed out, or the connection closed
    /// before the answer): the station may have acted on it.
    CallOutcomeUnknown,
    StationError,
    Unavailable,
    Internal,
}

impl Kind {
    pub fn slug(self) -> &'static str {
        match self {
            Kind::Unauthorized => "unauthorized",
            Kind::Forbidden => "forbidden",
            Kind::NotFound => "not-found",
            Kind::MethodNotAllowed => "method-not-allowed",
            Kind::Conflict => "conflict",
            Kind::InvalidBody => "invalid-body",
            Kind::InvalidParameter => "invalid-parameter",
            Kind::UnsupportedMediaType => "unsupported-media-type",
            Kind::PayloadTooLarge => "payload-too-large",
            Kind::StationNotConnected => "station-not-connected",
            Kind::CallOutcomeUnknown => "call-outcome-unknown",
            Kind::StationError => "station-error",
            Kind::Unavailable => "unavailable",
            Kind::Internal => "internal",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Kind::Unauthorized => StatusCode::UNAUTHORIZED,
            Kind::Forbidden => StatusCode::FORBIDDEN,
            Kind::NotFound => StatusCode::NOT_FOUND,
            Kind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Kind::Conflict | Kind::StationNotConnected => StatusCode::CONFLICT,
            Kind::InvalidBody | Kind::InvalidParameter => StatusCode::UNPROCESSABLE_ENTITY,
            Kind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Kind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Kind::CallOutcomeUnknown => StatusCode::GATEWAY_TIMEOUT,
            Kind::StationError => StatusCode::BAD_GATEWAY,
            Kind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Kind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn title(self) -> &'static str {
        match self {
            Kind::Unauthorized => "Missing or invalid bearer token",
            Kind::Forbidden => "The token's role does not allow this",
            Kind::NotFound => "No such resource",
            Kind::MethodNotAllowed => "Method not allowed on this resource",
            Kind::Conflict => "Conflicts with the current state",
            Kind::InvalidBody => "The request body is invalid",
            Kind::InvalidParameter => "A request parameter is invalid",
            Kind::UnsupportedMediaType => "The request body must be application/json",
            Kind::PayloadTooLarge => "The request body is too large",
            Kind::StationNotConnected => "The station is not connected",
            Kind::CallOutcomeUnknown => "The station received the call but did not answer; it may have acted on it",
            Kind::StationError => "The station refused the call or answered invalidly",
            Kind::Unavailable => "Temporarily unavailable",
            Kind::Internal => "Internal error",
        }
    }
}

/// An RFC 9457 problem document (`application/problem+json`).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Problem {
    /// Stable identifier of the kind of problem, `urn:anchorpoint:problem:<kind>`.
    #[serde(rename = "type")]
    pub type_: String,
    pub title: String,
    pub status: u16,
    /// What exactly went wrong with this request.
    pub detail: String,
    /// The failing field: a JSON pointer into the body (`/securityProfile`) or a
    /// parameter name (`limit`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl Problem {
    pub fn new(kind: Kind, detail: impl Into<String>) -> Problem {
        Problem {
            type_: format!("urn:anchorpoint:problem:{}", kind.slug()),
            title: kind.title().to_owned(),
            status: kind.status().as_u16(),
            detail: detail.into(),
            field: None,
        }
    }

    pub fn field(mut self, field: impl Into<String>) -> Problem {
        self.field = Some(field.into());
        self
    }

    pub fn not_found(what: &str, id: &str) -> Problem {
        Problem::new(Kind::NotFound, format!("{what} '{id}' not found"))
    }

    pub fn invalid(field: &str, detail: impl Into<String>) -> Problem {
        Problem::new(Kind::InvalidBody, detail).field(field)
    }

    pub fn internal() -> Problem {
        Problem::new(Kind::Internal, "the server could not complete the request; it has been logged")
    }

    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut res = (status, body).into_response();
        res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if status == StatusCode::UNAUTHORIZED {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"anchorpoint\""));
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_shape() {
        let p = Problem::invalid("/securityProfile", "must be 1, 2 or 3");
        let v = serde_json::to_value(&p).unwrap_or_default();
        assert_eq!(v["type"], "urn:anchorpoint:problem:invalid-body");
        assert_eq!(v["status"], 422);
        assert_eq!(v["field"], "/securityProfile");
        assert_eq!(v["detail"], "must be 1, 2 or 3");
        let v = serde_json::to_value(Problem::not_found("station", "CS1")).unwrap_or_default();
        assert!(v.get("field").is_none());
        assert_eq!(v["status"], 404);
    }
}
