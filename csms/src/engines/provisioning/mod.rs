//! Block B (provisioning): BootNotification answered as the operator
//! registered the station (B01-B03), Heartbeat, and the connector statuses a
//! station reports (StatusNotification, G01).

use std::sync::Arc;

use ocpp::ErrorCode;
use ocpp::v201::{
    Action, BootNotificationRequest, BootNotificationResponse, DateTime, HeartbeatRequest, HeartbeatResponse,
    RegistrationStatusEnumType, StatusNotificationRequest, StatusNotificationResponse,
};
use serde_json::json;

use super::{Answer, ConnectedStation, Engine, EngineContext, HandlerError, StationCall};
use crate::clock::unix_millis;
use crate::link::BoxFuture;
use crate::store::{BootRecord, ConnectorStatus, Registration, StationWrite};

pub struct Provisioning {
    ctx: Arc<EngineContext>,
}

impl Provisioning {
    pub fn new(ctx: Arc<EngineContext>) -> Provisioning {
        Provisioning { ctx }
    }

    /// The CSMS time for `currentTime`: UTC, at most millisecond precision.
    fn now(&self) -> DateTime {
        DateTime::from(self.ctx.clock.now())
    }

    /// B01-B03: the answer follows the registration the operator set for the station.
    async fn boot(
        &self,
        station: &ConnectedStation,
        payload: String,
        req: BootNotificationRequest,
    ) -> Result<(BootNotificationResponse, Registration), HandlerError> {
        let ctx = &self.ctx;
        let known = ctx.store.station(&station.tenant_id, &station.station_id).await?;
        let status = known.map(|s| s.registration).unwrap_or(Registration::Rejected);
        let now = ctx.clock.now_millis();
        let cs = &req.charging_station;
        ctx.writes
            .write(StationWrite::Boot(BootRecord {
                tenant_id: station.tenant_id.to_string(),
                station_id: station.station_id.clone(),
                received_at: now,
                reason: req.reason.as_str().to_owned(),
                status,
                vendor: cs.vendor_name.clone(),
                model: cs.model.clone(),
                serial_number: cs.serial_number.clone(),
                firmware_version: cs.firmware_version.clone(),
                payload,
                keep_last: Some(ctx.config.boot_history_per_station),
            }))
            .await?;
        let (status_enum, interval) = match status {
            Registration::Accepted => (RegistrationStatusEnumType::Accepted, ctx.config.heartbeat_interval_secs),
            Registration::Pending => (RegistrationStatusEnumType::Pending, ctx.config.boot_retry_interval_secs),
            Registration::Rejected => (RegistrationStatusEnumType::Rejected, ctx.config.boot_retry_interval_secs),
        };
        let response = BootNotificationResponse {
            custom_data: None,
            current_time: self.now(),
            interval: i64::from(interval),
            status: status_enum,
            status_info: None,
        };
        Ok((response, status))
    }

    async fn heartbeat(&self, station: &ConnectedStation) -> Result<HeartbeatResponse, HandlerError> {
        self.ctx
            .writes
            .write(StationWrite::Heartbeat {
                tenant_id: station.tenant_id.to_string(),
                station_id: station.station_id.clone(),
                at: self.ctx.clock.now_millis(),
            })
            .await?;
        Ok(HeartbeatResponse { custom_data: None, current_time: self.now() })
    }

    async fn status(
        &self,
        station: &ConnectedStation,
        req: StatusNotificationRequest,
    ) -> Result<StatusNotificationResponse, HandlerError> {
        if req.evse_id < 0 || req.connector_id < 0 {
            return Err(HandlerError::new(
                ErrorCode::PropertyConstraintViolation,
                "evseId and connectorId must not be negative",
            ));
        }
        let status = ConnectorStatus {
            evse_id: req.evse_id,
            connector_id: req.connector_id,
            status: req.connector_status.as_str().to_owned(),
            reported_at: unix_millis(req.timestamp.into_inner()),
            received_at: self.ctx.clock.now_millis(),
        };
        let event = json!({ "evseId": status.evse_id, "connectorId": status.connector_id, "status": status.status });
        self.ctx
            .writes
            .write(StationWrite::ConnectorStatus {
                tenant_id: station.tenant_id.to_string(),
                station_id: station.station_id.clone(),
                status,
            })
            .await?;
        self.ctx.events.publish(&station.tenant_id, "status", &station.station_id, event);
        Ok(StatusNotificationResponse { custom_data: None })
    }
}

impl Engine for Provisioning {
    fn name(&self) -> &'static str {
        "provisioning"
    }

    fn actions(&self) -> &'static [Action] {
        &[Action::BootNotification, Action::Heartbeat, Action::StatusNotification]
    }

    fn handle<'a>(&'a self, mut call: StationCall<'a>) -> BoxFuture<'a, Result<Answer, HandlerError>> {
        // One boxed future per action, each only as large as its own work: a
        // Heartbeat does not allocate room for a BootNotification.
        match call.action {
            Action::BootNotification => Box::pin(async move {
                // The boot is kept as it came, for the operator.
                let payload = call.payload.to_string();
                let req = call.decode::<BootNotificationRequest>()?;
                let (response, registration) = self.boot(call.station, payload, req).await?;
                *call.registration = Some(registration);
                Ok(Answer::new::<BootNotificationRequest>(response))
            }),
            Action::Heartbeat => Box::pin(async move {
                let _: HeartbeatRequest = call.decode()?;
                Ok(Answer::new::<HeartbeatRequest>(self.heartbeat(call.station).await?))
            }),
            Action::StatusNotification => Box::pin(async move {
                let req = call.decode::<StatusNotificationRequest>()?;
                Ok(Answer::new::<StatusNotificationRequest>(self.status(call.station, req).await?))
            }),
            other => Box::pin(async move {
                Err(HandlerError::new(ErrorCode::InternalError, format!("{other} routed to provisioning")))
            }),
        }
    }
}
