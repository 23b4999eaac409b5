//! Block A (security): events the station reports.

use ocpp::v201::{self, SecurityEventNotificationRequest};
use serde_json::{Value, json};

use super::{HandlerResult, SessionState};
use crate::app::App;
use crate::clock::unix_millis;

pub(super) async fn security_event(app: &App, state: &SessionState, payload: Value) -> HandlerResult {
    let req: SecurityEventNotificationRequest = v201::decode_request(payload)?;
    tracing::info!(station = %state.station_id, kind = %req.r#type, "security event");
    app.store
        .record_security_event(
            &state.tenant_id,
            &state.station_id,
            &req.r#type,
            unix_millis(req.timestamp.into_inner()),
            req.tech_info.as_deref(),
            app.clock.now_millis(),
        )
        .await?;
    Ok(json!({}))
}
