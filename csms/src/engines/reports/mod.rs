//! Reports whose functional block has no engine yet: validated, stored verbatim
//! for the operator, and acknowledged. When a block's engine arrives (device
//! model, firmware, transactions, ...), it claims its actions and they leave
//! this list.

pub mod device_limits;
pub mod quota;

use std::sync::Arc;

use ocpp::ErrorCode;
use ocpp::v201::*;

use self::device_limits::DeviceLimits;
use self::quota::{QuotaLimits, Refusal, VerbatimQuota};
use super::{Answer, ConnectedStation, Engine, EngineContext, HandlerError, StationCall, Task};
use crate::link::BoxFuture;
use crate::store::StationWrite;

/// The actions kept verbatim (DataTransfer is kept too, and answered
/// UnknownVendorId: no vendor extension is registered, P01).
pub const RECORDED: &[Action] = &[
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
    Action::DataTransfer,
];

pub struct Reports {
    ctx: Arc<EngineContext>,
    /// B06: what NotifyReport told of the stations' GetVariables/SetVariables limits.
    limits: Arc<DeviceLimits>,
    /// Per-station quotas on what is stored verbatim.
    quota: VerbatimQuota,
}

impl Reports {
    pub fn new(ctx: Arc<EngineContext>) -> Reports {
        let quota = VerbatimQuota::new(QuotaLimits::from_config(&ctx.config));
        Reports { ctx, limits: Arc::new(DeviceLimits::default()), quota }
    }

    /// The stations' ItemsPerMessage / BytesPerMessage as learnt here, for the
    /// services that split GetVariables and SetVariables.
    pub fn device_limits(&self) -> Arc<DeviceLimits> {
        self.limits.clone()
    }

    /// Stores the message if the station's quotas allow it; otherwise says
    /// why not, and nothing is stored.
    async fn keep(&self, station: &ConnectedStation, action: Action, payload: String) -> Result<Keep, HandlerError> {
        let (tenant, id) = (&*station.tenant_id, station.station_id.as_str());
        let size = u64::try_from(payload.len()).unwrap_or(u64::MAX);
        if let Err(refusal) = self.quota.admit(tenant, id, size, self.ctx.clock.now_millis()) {
            tracing::info!(station = id, tenant, action = action.as_str(), size, reason = %refusal, "not stored: quota");
            self.ctx.metrics.quota_refused(refusal.kind());
            return Ok(Keep::Refused(refusal));
        }
        let stored = match self.quota.stored(tenant, id) {
            Some(n) => n,
            None => u64::try_from(self.ctx.store.station_message_bytes(tenant, id).await?).unwrap_or(0),
        };
        let prune_to = self.quota.prune_to(stored, size);
        let written = self
            .ctx
            .writes
            .write(StationWrite::Message {
                tenant_id: tenant.to_owned(),
                station_id: id.to_owned(),
                action: action.as_str(),
                payload,
                at: self.ctx.clock.now_millis(),
                prune_to: prune_to.map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
            })
            .await;
        // After a prune (or a failure) the volume is read again next time.
        let known = (written.is_ok() && prune_to.is_none()).then(|| stored.saturating_add(size));
        self.quota.set_stored(tenant, id, known);
        written?;
        if prune_to.is_some() {
            self.ctx.metrics.verbatim_pruned.inc();
            tracing::info!(
                station = id,
                tenant,
                max = self.quota.limits().max_stored_bytes,
                "oldest verbatim messages pruned"
            );
        }
        Ok(Keep::Stored)
    }
}

/// What became of a message to keep.
enum Keep {
    Stored,
    Refused(Refusal),
}

/// Matches `action` against the recorded reports, giving each its empty typed answer.
macro_rules! empty_answer {
    ($action:expr; $($name:ident => $req:ident, $resp:ident;)*) => {
        match $action {
            $(Action::$name => Some(Answer::new::<$req>($resp { custom_data: None })),)*
            _ => None,
        }
    };
}

/// The (empty) typed answer to a recorded report.
fn acknowledgement(action: Action) -> Option<Answer> {
    empty_answer!(action;
        NotifyReport => NotifyReportRequest, NotifyReportResponse;
        NotifyEvent => NotifyEventRequest, NotifyEventResponse;
        NotifyMonitoringReport => NotifyMonitoringReportRequest, NotifyMonitoringReportResponse;
        MeterValues => MeterValuesRequest, MeterValuesResponse;
        FirmwareStatusNotification => FirmwareStatusNotificationRequest, FirmwareStatusNotificationResponse;
        PublishFirmwareStatusNotification => PublishFirmwareStatusNotificationRequest, PublishFirmwareStatusNotificationResponse;
        LogStatusNotification => LogStatusNotificationRequest, LogStatusNotificationResponse;
        NotifyCustomerInformation => NotifyCustomerInformationRequest, NotifyCustomerInformationResponse;
        NotifyDisplayMessages => NotifyDisplayMessagesRequest, NotifyDisplayMessagesResponse;
        ReservationStatusUpdate => ReservationStatusUpdateRequest, ReservationStatusUpdateResponse;
        NotifyChargingLimit => NotifyChargingLimitRequest, NotifyChargingLimitResponse;
        ClearedChargingLimit => ClearedChargingLimitRequest, ClearedChargingLimitResponse;
        ReportChargingProfiles => ReportChargingProfilesRequest, ReportChargingProfilesResponse;
    )
}

impl Engine for Reports {
    fn name(&self) -> &'static str {
        "reports"
    }

    fn actions(&self) -> &'static [Action] {
        RECORDED
    }

    fn handle<'a>(&'a self, call: StationCall<'a>) -> BoxFuture<'a, Result<Answer, HandlerError>> {
        Box::pin(async move {
            let answer = if call.action == Action::DataTransfer {
                Answer::new::<DataTransferRequest>(DataTransferResponse {
                    custom_data: None,
                    data: None,
                    status: DataTransferStatusEnumType::UnknownVendorId,
                    status_info: None,
                })
            } else {
                acknowledgement(call.action).ok_or_else(|| {
                    HandlerError::new(ErrorCode::InternalError, format!("{} routed to reports", call.action))
                })?
            };
            if call.action == Action::NotifyReport {
                match call.payload.to_value() {
                    Ok(report) => {
                        self.limits.learn_from_report(&call.station.tenant_id, &call.station.station_id, &report)
                    }
                    // Not after check_request_text, which read it as strictly.
                    Err(e) => {
                        tracing::error!(station = %call.station.station_id, error = %e, "NotifyReport unreadable")
                    }
                }
            }
            match self.keep(call.station, call.action, call.payload.text().into_owned()).await? {
                Keep::Stored => {}
                // P01: a DataTransfer answer can say Rejected and why.
                Keep::Refused(r) if call.action == Action::DataTransfer => {
                    return Ok(Answer::new::<DataTransferRequest>(DataTransferResponse {
                        custom_data: None,
                        data: None,
                        status: DataTransferStatusEnumType::Rejected,
                        status_info: Some(StatusInfoType {
                            custom_data: None,
                            reason_code: r.reason_code().into(),
                            additional_info: Some(r.to_string()),
                        }),
                    }));
                }
                // The other answers are empty: a CALLERROR is the only refusal.
                Keep::Refused(r) => return Err(HandlerError::new(ErrorCode::GenericError, r.to_string())),
            }
            Ok(answer)
        })
    }

    fn on_connect(&self, station: &ConnectedStation) -> Option<Task> {
        // A new connection may follow new firmware: its limits are learnt again.
        self.limits.forget(&station.tenant_id, &station.station_id);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_reports_are_answered_with_a_valid_typed_answer() {
        for a in RECORDED {
            assert!(a.initiated_by().charging_station_may_send(), "{a}");
            if *a == Action::DataTransfer {
                continue;
            }
            let answer = acknowledgement(*a).unwrap_or_else(|| panic!("no answer for {a}"));
            assert_eq!(answer.action(), *a);
            assert!(super::super::check_answer(&answer).is_ok(), "{a}");
        }
        assert!(acknowledgement(Action::Heartbeat).is_none());
    }
}
