//! Block B (provisioning): BootNotification answered as the operator
//! registered the station (B01-B03), Heartbeat, and the connector statuses a
//! station reports (StatusNotification, G01).

use std::sync::Arc;

use ocpp::ErrorCode;
use ocpp::v201::{
    Action, BootNotificationRequest, BootNotificationResponse, DateTime, HeartbeatRequest, HeartbeatResponse,
    RegistrationStatusEnumType, StatusInfoType, StatusNotificationRequest, StatusNotificationResponse,
};
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{Answer, ConnectedStation, Engine, EngineContext, HandlerError, StationCall};
use crate::clock::unix_millis;
use crate::link::BoxFuture;
use crate::store::{BootRecord, ConnectorStatus, Registration, StationWrite};

pub struct Provisioning {
    ctx: Arc<EngineContext>,
    /// BootNotifications being handled; at `max_concurrent_boots` the next is
    /// deferred (answered Pending) instead of queued.
    boots: Arc<Semaphore>,
}

impl Provisioning {
    pub fn new(ctx: Arc<EngineContext>) -> Provisioning {
        let boots = Arc::new(Semaphore::new(ctx.config.max_concurrent_boots.max(1)));
        Provisioning { ctx, boots }
    }

    /// B02 under overload: the station is told to come back after a random
    /// interval around `overload_boot_interval_secs`. Nothing is stored, the
    /// registration the operator set is unchanged, and so is the session's:
    /// until its next BootNotification the station may send only that (or
    /// what this CSMS asked of it while it was Pending).
    fn deferred(&self) -> BootNotificationResponse {
        let base = self.ctx.config.overload_boot_interval_secs.max(1);
        let interval = jitter(base, random_u32());
        self.ctx.metrics.boots_deferred.inc();
        BootNotificationResponse {
            custom_data: None,
            current_time: self.now(),
            interval: i64::from(interval),
            status: RegistrationStatusEnumType::Pending,
            status_info: Some(StatusInfoType {
                custom_data: None,
                reason_code: "Overloaded".into(),
                additional_info: Some(format!("the CSMS is handling many boots; retry in {interval} s")),
            }),
        }
    }

    /// The CSMS time for `currentTime`: UTC, at most millisecond precision.
    fn now(&self) -> DateTime {
        DateTime::from(self.ctx.clock.now())
    }

    /// B01-B03: the answer follows the registration the operator set for the station.
    ///
    /// A boot that is the connection's first call, within two seconds of its
    /// admission, is answered from the registration read then (`at_admission`);
    /// any other (later, or a Pending station booting again) reads it anew, so
    /// an operator's change is seen at the next boot.
    async fn boot(
        &self,
        station: &ConnectedStation,
        at_admission: Option<Registration>,
        payload: String,
        req: BootNotificationRequest,
    ) -> Result<(BootNotificationResponse, Registration), HandlerError> {
        let ctx = &self.ctx;
        let status = match at_admission {
            Some(r) => r,
            None => ctx
                .store
                .station(&station.tenant_id, &station.station_id)
                .await?
                .map(|s| s.registration)
                .unwrap_or(Registration::Rejected),
        };
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

/// A BootNotification being handled: its permit, and the in-progress gauge.
struct BootSlot {
    _permit: OwnedSemaphorePermit,
    gauge: prometheus_client::metrics::gauge::Gauge,
}

impl BootSlot {
    fn new(permit: OwnedSemaphorePermit, ctx: &EngineContext) -> BootSlot {
        let gauge = ctx.metrics.boots_in_progress.clone();
        gauge.inc();
        BootSlot { _permit: permit, gauge }
    }
}

impl Drop for BootSlot {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// A value in `[base/2, base*3/2]` picked by `r` (at least 1).
fn jitter(base: u32, r: u32) -> u32 {
    let low = (base / 2).max(1);
    let span = base.saturating_sub(low).saturating_add(base / 2).saturating_add(1);
    low.saturating_add(r % span)
}

fn random_u32() -> u32 {
    use aws_lc_rs::rand::SecureRandom;
    let mut b = [0u8; 4];
    // Without randomness every interval is the shortest one: still a valid answer.
    let _ = aws_lc_rs::rand::SystemRandom::new().fill(&mut b);
    u32::from_le_bytes(b)
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
                // Taken by the first boot, deferred or not: a deferred station
                // boots again seconds later and is answered from a new read.
                let at_admission = call.registration_at_admission.take();
                let slot = self.boots.clone().try_acquire_owned().ok().map(|p| BootSlot::new(p, &self.ctx));
                // Only a station not yet accepted on this connection is deferred: one
                // that was accepted (or rejected) keeps that state and is answered.
                if slot.is_none() && matches!(*call.registration, None | Some(Registration::Pending)) {
                    let _: BootNotificationRequest = call.decode()?;
                    tracing::info!(station = %call.station.station_id, "boot deferred: max_concurrent_boots reached");
                    // The session's state stays as it was: still only a
                    // BootNotification (or what was asked of a Pending station).
                    return Ok(Answer::new::<BootNotificationRequest>(self.deferred()));
                }
                // The boot is kept as it came, for the operator.
                let payload = call.payload.text().into_owned();
                let req = call.decode::<BootNotificationRequest>()?;
                let (response, registration) = self.boot(call.station, at_admission, payload, req).await?;
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

#[cfg(test)]
mod tests {
    use super::jitter;

    #[test]
    fn overload_interval_spreads_around_the_base() {
        for base in [1u32, 2, 3, 10, 60, u32::MAX] {
            let (low, high) = ((base / 2).max(1), base.saturating_add(base / 2));
            let seen: Vec<u32> = (0..1000u32).map(|r| jitter(base, r.wrapping_mul(2_654_435_761))).collect();
            assert!(seen.iter().all(|&i| (low..=high).contains(&i)), "{base}: {low}..={high}");
            if (10..=3600).contains(&base) {
                assert!(seen.contains(&low) || seen.iter().any(|&i| i < base), "{base}: never below the base");
                assert!(seen.iter().any(|&i| i > base), "{base}: never above the base");
            }
        }
        assert_eq!(jitter(10, 0), 5);
        assert_eq!(jitter(10, 10), 15);
    }
}
