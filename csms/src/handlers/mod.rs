//! Dispatch of calls a charging station makes, one module per functional block.
//!
//! Every payload is validated against the schema of its action before a handler
//! sees it; handlers work on typed messages. Anything answered "Accepted" is
//! committed to the store before the answer is returned.

mod provisioning;
mod security;

use std::sync::Arc;
use std::time::Instant;

use ocpp::v201::{Action, Direction, Initiator};
use ocpp::{Call, CallError, CallResult, ErrorCode, Frame};
use serde_json::Value;

use crate::app::App;
use crate::store::{Registration, StoreError};

/// What the session knows about its station between calls.
#[derive(Debug, Clone)]
pub struct SessionState {
    pub station_id: String,
    pub tenant_id: Arc<str>,
    /// How the station's last BootNotification was answered; `None` if it never booted.
    pub registration: Option<Registration>,
    /// B02.FR.09: what a Pending station may send besides BootNotification,
    /// because this CSMS asked for it (TriggerMessage, GetBaseReport, GetReport
    /// answered Accepted on this connection).
    pub requested_while_pending: Vec<Action>,
    /// Serial of the client certificate the station authenticated with.
    pub certificate_serial: Option<String>,
    /// Certificate requests accepted by the call just handled, to deliver once
    /// its answer has been sent (A02/A03).
    pub deliveries: Vec<i64>,
}

impl SessionState {
    pub fn new(station_id: String, tenant_id: Arc<str>, registration: Option<Registration>) -> Self {
        SessionState {
            station_id,
            tenant_id,
            registration,
            requested_while_pending: Vec::new(),
            certificate_serial: None,
            deliveries: Vec::new(),
        }
    }

    /// May the station send `action` now (B02.FR.09, B03.FR.07)?
    fn may_send(&self, action: Action) -> bool {
        action == Action::BootNotification
            || match self.registration {
                Some(Registration::Accepted) => true,
                Some(Registration::Pending) => self.requested_while_pending.contains(&action),
                Some(Registration::Rejected) | None => false,
            }
    }

    /// Called when the station accepted a CSMS call; `solicited` is what the
    /// call asks the station to send (see [`solicited_by`]).
    pub fn station_accepted(&mut self, solicited: Option<Action>) {
        if let Some(a) = solicited
            && self.registration == Some(Registration::Pending)
            && !self.requested_while_pending.contains(&a)
        {
            self.requested_while_pending.push(a);
        }
    }
}

/// The message a CSMS-initiated call asks the station to send in return
/// (TriggerMessage's requestedMessage; NotifyReport for the report requests).
pub fn solicited_by(action: Action, payload: &Value) -> Option<Action> {
    match action {
        Action::GetBaseReport | Action::GetReport => Some(Action::NotifyReport),
        Action::TriggerMessage => match payload.get("requestedMessage")?.as_str()? {
            "SignChargingStationCertificate" | "SignV2GCertificate" | "SignCombinedCertificate" => {
                Some(Action::SignCertificate)
            }
            other => Action::from_name(other),
        },
        _ => None,
    }
}

/// A handler's refusal, turned into a CALLERROR.
#[derive(Debug)]
pub struct HandlerError {
    pub code: ErrorCode,
    pub description: String,
}

impl HandlerError {
    pub fn new(code: ErrorCode, description: impl Into<String>) -> Self {
        HandlerError { code, description: description.into() }
    }
}

impl From<StoreError> for HandlerError {
    fn from(e: StoreError) -> Self {
        // The cause is logged; the station learns only that we could not persist.
        tracing::error!(error = %e, "storage failure while handling a call");
        HandlerError::new(ErrorCode::InternalError, "the CSMS could not store the message; retry later")
    }
}

impl From<ocpp::v201::Violation> for HandlerError {
    fn from(v: ocpp::v201::Violation) -> Self {
        HandlerError::new(v.code, format!("{}: {}", v.path, v.message))
    }
}

pub type HandlerResult = Result<Value, HandlerError>;

/// Reports whose answer carries nothing: they are validated, stored verbatim
/// and acknowledged; the engines of their functional blocks read them later.
pub const RECORDED_NOTIFICATIONS: &[Action] = &[
    Action::NotifyReport,
    Action::NotifyEvent,
    Action::NotifyMonitoringReport,
    Action::MeterValues,
    Action::FirmwareStatusNotification,
    Action::PublishFirmwareStatusNotification,
    Action::LogStatusNotification,
    Action::NotifyCustomerInformation,
    Action::NotifyDisplayMessages,
    Action::ReservationStatusUpdate,
    Action::NotifyChargingLimit,
    Action::ClearedChargingLimit,
    Action::ReportChargingProfiles,
];

/// Answers one CALL from a station with a CALLRESULT or CALLERROR.
pub async fn dispatch(app: &App, state: &mut SessionState, call: Call) -> Frame {
    let started = Instant::now();
    let action = Action::from_name(&call.action);
    let label = action.map(|a| a.as_str()).unwrap_or("-");
    let result = handle(app, state, action, &call).await;
    if let Some(a) = action {
        app.metrics
            .handler_latency
            .get_or_create(&crate::metrics::ActionLabels { action: a.as_str() })
            .observe(started.elapsed().as_secs_f64());
    }
    match result {
        Ok(payload) => {
            app.metrics.frame("in", label, "ok");
            Frame::CallResult(CallResult { id: call.id, payload })
        }
        Err(e) => {
            tracing::info!(station = %state.station_id, action = %call.action, code = e.code.as_str(), description = %e.description, "call refused");
            app.metrics.frame("in", label, e.code.as_str());
            Frame::CallError(CallError::new(call.id, e.code, e.description))
        }
    }
}

async fn handle(app: &App, state: &mut SessionState, action: Option<Action>, call: &Call) -> HandlerResult {
    let Some(action) = action else {
        return Err(HandlerError::new(
            ErrorCode::NotImplemented,
            format!("unknown action '{}'", truncate(&call.action, 64)),
        ));
    };
    if action.initiated_by() == Initiator::Csms {
        return Err(HandlerError::new(
            ErrorCode::NotSupported,
            format!("{} is sent by the CSMS, not by a charging station", action.as_str()),
        ));
    }
    ocpp::v201::validate(action, Direction::Request, &call.payload)?;
    // B02.FR.09, B03.FR.07: until a BootNotification was accepted, only
    // BootNotification, and what the CSMS asked a Pending station for, is answered.
    if !state.may_send(action) {
        return Err(HandlerError::new(
            ErrorCode::SecurityError,
            "the charging station is not accepted: send BootNotification first",
        ));
    }
    let payload = call.payload.clone();
    let response = match action {
        Action::BootNotification => provisioning::boot_notification(app, state, payload).await?,
        Action::Heartbeat => provisioning::heartbeat(app, state).await?,
        Action::StatusNotification => provisioning::status_notification(app, state, payload).await?,
        a if RECORDED_NOTIFICATIONS.contains(&a) => {
            provisioning::store_verbatim(app, state, action, &call.payload).await?
        }
        Action::DataTransfer => {
            // P01: no vendor extensions are registered yet; the message is kept.
            provisioning::store_verbatim(app, state, action, &call.payload).await?;
            serde_json::json!({ "status": "UnknownVendorId" })
        }
        Action::SecurityEventNotification => security::security_event(app, state, payload).await?,
        Action::SignCertificate => security::sign_certificate(app, state, payload).await?,
        _ => {
            return Err(HandlerError::new(
                ErrorCode::NotImplemented,
                format!("{} is not implemented by this CSMS yet", action.as_str()),
            ));
        }
    };
    // Our own answers must satisfy the schema too; a failure here is our bug.
    if let Err(v) = ocpp::v201::validate(action, Direction::Response, &response) {
        tracing::error!(action = action.as_str(), violation = %v, "response failed schema validation");
        return Err(HandlerError::new(ErrorCode::InternalError, "the CSMS produced an invalid response"));
    }
    Ok(response)
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// RFC 3339 text of an OCPP enum or date-time value, via its serde form.
fn enum_text<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(registration: Option<Registration>) -> SessionState {
        SessionState::new("CS1".into(), Arc::from("t"), registration)
    }

    #[test]
    fn pending_station_may_send_only_what_was_requested() {
        let mut s = state(Some(Registration::Pending));
        assert!(s.may_send(Action::BootNotification));
        assert!(!s.may_send(Action::NotifyReport));
        assert!(!s.may_send(Action::Heartbeat));
        s.station_accepted(solicited_by(
            Action::GetBaseReport,
            &serde_json::json!({"requestId": 1, "reportBase": "FullInventory"}),
        ));
        assert!(s.may_send(Action::NotifyReport));
        s.station_accepted(solicited_by(
            Action::TriggerMessage,
            &serde_json::json!({"requestedMessage": "SignChargingStationCertificate"}),
        ));
        assert!(s.may_send(Action::SignCertificate));
        s.station_accepted(solicited_by(
            Action::TriggerMessage,
            &serde_json::json!({"requestedMessage": "StatusNotification"}),
        ));
        assert!(s.may_send(Action::StatusNotification));
        assert!(!s.may_send(Action::Heartbeat));
        assert!(!s.may_send(Action::TransactionEvent));
    }

    #[test]
    fn rejected_or_unbooted_station_may_send_only_boot_notification() {
        for reg in [Some(Registration::Rejected), None] {
            let mut s = state(reg);
            s.station_accepted(Some(Action::NotifyReport));
            assert!(s.may_send(Action::BootNotification));
            assert!(!s.may_send(Action::NotifyReport), "{reg:?}");
        }
        let s = state(Some(Registration::Accepted));
        assert!(s.may_send(Action::TransactionEvent));
    }

    #[test]
    fn recorded_notifications_are_answered_with_a_valid_empty_response() {
        for a in RECORDED_NOTIFICATIONS {
            assert!(a.initiated_by() == Initiator::ChargingStation, "{a}");
            assert_eq!(ocpp::v201::validate(*a, Direction::Response, &serde_json::json!({})), Ok(()), "{a}");
        }
        let dt = serde_json::json!({ "status": "UnknownVendorId" });
        assert_eq!(ocpp::v201::validate(Action::DataTransfer, Direction::Response, &dt), Ok(()));
    }
}
