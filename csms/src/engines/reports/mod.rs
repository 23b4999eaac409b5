//! Reports whose functional block has no engine yet: validated, stored verbatim
//! for the operator, and acknowledged. When a block's engine arrives (device
//! model, firmware, transactions, ...), it claims its actions and they leave
//! this list.

pub mod device_limits;

use std::sync::Arc;

use ocpp::ErrorCode;
use ocpp::v201::*;

use self::device_limits::DeviceLimits;
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
}

impl Reports {
    pub fn new(ctx: Arc<EngineContext>) -> Reports {
        Reports { ctx, limits: Arc::new(DeviceLimits::default()) }
    }

    /// The stations' ItemsPerMessage / BytesPerMessage as learnt here, for the
    /// services that split GetVariables and SetVariables.
    pub fn device_limits(&self) -> Arc<DeviceLimits> {
        self.limits.clone()
    }

    async fn keep(&self, station: &ConnectedStation, action: Action, payload: String) -> Result<(), HandlerError> {
        self.ctx
            .writes
            .write(StationWrite::Message {
                tenant_id: station.tenant_id.to_string(),
                station_id: station.station_id.clone(),
                action: action.as_str(),
                payload,
                at: self.ctx.clock.now_millis(),
            })
            .await?;
        Ok(())
    }
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
                self.limits.learn_from_report(&call.station.tenant_id, &call.station.station_id, &call.payload);
            }
            self.keep(call.station, call.action, call.payload.to_string()).await?;
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
