//! Block A (security): events the station reports.

use ocpp::v201::{self, SecurityEventNotificationRequest};
use serde_json::{Value, json};

use super::{HandlerResult, SessionState};
use crate::app::App;
use crate::clock::unix_millis;
use crate::store::StationWrite;

/// The security events of OCPP 2.0.1 (Part 2, appendix "Security events") and
/// whether each is critical (to be pushed to the operator at once).
pub const SECURITY_EVENTS: &[(&str, bool)] = &[
    ("FirmwareUpdated", true),
    ("FailedToAuthenticateAtCsms", false),
    ("CsmsFailedToAuthenticate", false),
    ("SettingSystemTime", true),
    ("StartupOfTheDevice", true),
    ("ResetOrReboot", true),
    ("SecurityLogWasCleared", true),
    ("ReconfigurationOfSecurityParameters", false),
    ("MemoryExhaustion", true),
    ("InvalidMessages", false),
    ("AttemptedReplayAttacks", false),
    ("TamperDetectionActivated", true),
    ("InvalidFirmwareSignature", false),
    ("InvalidFirmwareSigningCertificate", false),
    ("InvalidCsmsCertificate", false),
    ("InvalidChargingStationCertificate", false),
    ("InvalidTLSVersion", false),
    ("InvalidTLSCipherSuite", false),
    ("MaintenanceLoginAccepted", true),
    ("MaintenanceLoginFailed", true),
];

/// The metric label for `kind` (vendor types are `other`, so a station cannot
/// grow the label set) and whether it is critical.
pub fn classify(kind: &str) -> (&'static str, bool) {
    SECURITY_EVENTS.iter().find(|(k, _)| *k == kind).map(|(k, c)| (*k, *c)).unwrap_or(("other", false))
}

/// A04: stored, counted by type and criticality, and pushed to live streams.
pub(super) async fn security_event(app: &App, state: &SessionState, payload: Value) -> HandlerResult {
    let req: SecurityEventNotificationRequest = v201::decode_request(payload)?;
    let (label, critical) = classify(&req.r#type);
    if critical {
        tracing::warn!(station = %state.station_id, tenant = %state.tenant_id, kind = %req.r#type, "critical security event");
    } else {
        tracing::info!(station = %state.station_id, kind = %req.r#type, "security event");
    }
    let event = json!({
        "type": req.r#type,
        "critical": critical,
        "techInfo": req.tech_info,
        "occurredAt": req.timestamp.to_string(),
    });
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
    app.metrics.security_event(label, critical);
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
