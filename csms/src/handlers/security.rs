//! Block A (security): events the station reports.

use ocpp::v201::{self, SecurityEventNotificationRequest};
use serde_json::{Value, json};

use super::{HandlerResult, SessionState};
use crate::app::App;
use crate::clock::unix_millis;
use crate::store::StationWrite;

pub(super) async fn security_event(app: &App, state: &SessionState, payload: Value) -> HandlerResult {
    let req: SecurityEventNotificationRequest = v201::decode_request(payload)?;
    tracing::info!(station = %state.station_id, kind = %req.r#type, "security event");
    let event = json!({ "type": req.r#type, "techInfo": req.tech_info, "occurredAt": req.timestamp.to_string() });
    app.writes
        .write(StationWrite::SecurityEvent {
            tenant_id: state.tenant_id.to_string(),
            station_id: state.station_id.clone(),
            kind: req.r#type,
            occurred_at: unix_millis(req.timestamp.into_inner()),
            tech_info: req.tech_info,
            at: app.clock.now_millis(),
        })
        .await?;
    app.publish(&state.tenant_id, "security", &state.station_id, event);
    Ok(json!({}))
}

/// A02/A03: the CSR is checked before the answer; Accepted only once recorded.
pub(super) async fn sign_certificate(app: &App, state: &mut SessionState, payload: Value) -> HandlerResult {
    let req: v201::SignCertificateRequest = v201::decode_request(payload)?;
    let (answer, delivery) = crate::lifecycle::sign_certificate(app, &state.tenant_id, &state.station_id, req).await?;
    state.deliveries.extend(delivery);
    Ok(answer)
}
