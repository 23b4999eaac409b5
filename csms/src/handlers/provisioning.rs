//! Block B (provisioning) and the station's status reports.

use ocpp::v201::{self, Action, BootNotificationRequest, StatusNotificationRequest};
use serde_json::{Value, json};

use ocpp::ErrorCode;

use super::{HandlerError, HandlerResult, SessionState, enum_text};
use crate::app::App;
use crate::clock::unix_millis;
use crate::store::{BootRecord, ConnectorStatus, Registration, StationWrite};

/// The CSMS time for `currentTime`: UTC, at most millisecond precision.
fn now_rfc3339(app: &App) -> String {
    v201::DateTime::from(app.clock.now()).to_string()
}

/// B01-B03: the answer follows the registration the operator set for the station.
pub(super) async fn boot_notification(app: &App, state: &mut SessionState, payload: Value) -> HandlerResult {
    let req: BootNotificationRequest = v201::decode_request(payload.clone())?;
    let station = app.store.station(&state.tenant_id, &state.station_id).await?;
    let status = station.map(|s| s.registration).unwrap_or(Registration::Rejected);
    let now = app.clock.now_millis();
    let cs = &req.charging_station;
    app.writes
        .write(StationWrite::Boot(BootRecord {
            tenant_id: state.tenant_id.to_string(),
            station_id: state.station_id.clone(),
            received_at: now,
            reason: enum_text(&req.reason),
            status,
            vendor: cs.vendor_name.clone(),
            model: cs.model.clone(),
            serial_number: cs.serial_number.clone(),
            firmware_version: cs.firmware_version.clone(),
            payload: payload.to_string(),
        }))
        .await?;
    state.registration = Some(status);
    let interval = match status {
        Registration::Accepted => app.config.heartbeat_interval_secs,
        Registration::Pending | Registration::Rejected => app.config.boot_retry_interval_secs,
    };
    Ok(json!({ "currentTime": now_rfc3339(app), "interval": interval, "status": status.as_str() }))
}

pub(super) async fn heartbeat(app: &App, state: &SessionState) -> HandlerResult {
    app.writes
        .write(StationWrite::Heartbeat {
            tenant_id: state.tenant_id.to_string(),
            station_id: state.station_id.clone(),
            at: app.clock.now_millis(),
        })
        .await?;
    Ok(json!({ "currentTime": now_rfc3339(app) }))
}

pub(super) async fn status_notification(app: &App, state: &SessionState, payload: Value) -> HandlerResult {
    let req: StatusNotificationRequest = v201::decode_request(payload)?;
    if req.evse_id < 0 || req.connector_id < 0 {
        return Err(HandlerError::new(
            ErrorCode::PropertyConstraintViolation,
            "evseId and connectorId must not be negative",
        ));
    }
    let status = ConnectorStatus {
        evse_id: req.evse_id,
        connector_id: req.connector_id,
        status: enum_text(&req.connector_status),
        reported_at: unix_millis(req.timestamp.into_inner()),
        received_at: app.clock.now_millis(),
    };
    let event = json!({ "evseId": status.evse_id, "connectorId": status.connector_id, "status": status.status });
    app.writes
        .write(StationWrite::ConnectorStatus {
            tenant_id: state.tenant_id.to_string(),
            station_id: state.station_id.clone(),
            status,
        })
        .await?;
    app.publish(&state.tenant_id, "status", &state.station_id, event);
    Ok(json!({}))
}

/// NotifyReport, NotifyEvent: kept verbatim for the operator; their content
/// drives later engines (device model, monitoring).
pub(super) async fn store_verbatim(app: &App, state: &SessionState, action: Action, payload: &Value) -> HandlerResult {
    app.writes
        .write(StationWrite::Message {
            tenant_id: state.tenant_id.to_string(),
            station_id: state.station_id.clone(),
            action: action.as_str(),
            payload: payload.to_string(),
            at: app.clock.now_millis(),
        })
        .await?;
    Ok(json!({}))
}
