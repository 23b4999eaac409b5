//! Block A (security), A04: the security events stations report.

use std::sync::Arc;

use ocpp::v201::{Action, SecurityEventNotificationRequest, SecurityEventNotificationResponse};
use serde_json::json;

use super::{Answer, ConnectedStation, Engine, EngineContext, HandlerError, StationCall};
use crate::clock::unix_millis;
use crate::link::BoxFuture;
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

pub struct Security {
    ctx: Arc<EngineContext>,
}

impl Security {
    pub fn new(ctx: Arc<EngineContext>) -> Security {
        Security { ctx }
    }

    /// A04: stored, counted by type and criticality, and pushed to live streams.
    async fn event(
        &self,
        station: &ConnectedStation,
        req: SecurityEventNotificationRequest,
    ) -> Result<SecurityEventNotificationResponse, HandlerError> {
        let ctx = &self.ctx;
        let (label, critical) = classify(&req.r#type);
        if critical {
            tracing::warn!(station = %station.station_id, tenant = %station.tenant_id, kind = %req.r#type, "critical security event");
        } else {
            tracing::info!(station = %station.station_id, kind = %req.r#type, "security event");
        }
        let event = json!({
            "type": req.r#type,
            "critical": critical,
            "techInfo": req.tech_info,
            "occurredAt": req.timestamp.to_string(),
        });
        ctx.writes
            .write(StationWrite::SecurityEvent {
                tenant_id: station.tenant_id.to_string(),
                station_id: station.station_id.clone(),
                kind: req.r#type,
                occurred_at: unix_millis(req.timestamp.into_inner()),
                tech_info: req.tech_info,
                at: ctx.clock.now_millis(),
            })
            .await?;
        ctx.metrics.security_event(label, critical);
        ctx.events.publish(&station.tenant_id, "security", &station.station_id, event);
        Ok(SecurityEventNotificationResponse { custom_data: None })
    }
}

impl Engine for Security {
    fn name(&self) -> &'static str {
        "security"
    }

    fn actions(&self) -> &'static [Action] {
        &[Action::SecurityEventNotification]
    }

    fn handle<'a>(&'a self, mut call: StationCall<'a>) -> BoxFuture<'a, Result<Answer, HandlerError>> {
        Box::pin(async move {
            let req = call.decode::<SecurityEventNotificationRequest>()?;
            Ok(Answer::new::<SecurityEventNotificationRequest>(self.event(call.station, req).await?))
        })
    }
}
