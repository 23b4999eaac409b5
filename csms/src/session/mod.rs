//! One task per connected station: reads frames, routes each CALL to the
//! engine registered for its action, and sends CSMS-initiated calls one at a
//! time (OCPP-J: at most one call in flight per direction), correlating replies
//! by message id on this connection only.
//!
//! The session knows the protocol, not the functional blocks: it names no
//! engine. What it does itself is OCPP-J and block B's gate on what a station
//! may send before it is accepted (B02.FR.09, B03.FR.07).

mod registry;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use ocpp::v201::{Action, Direction, Initiator, Payload, TextCheck, Violation};
use ocpp::{Call, CallError, CallResult, ErrorCode, Frame, MessageId, RawCall};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

pub use registry::Sessions;
use registry::{OutboundCall, SessionHandle};

use crate::engines::{Answer, ConnectedStation, Engines, HandlerError, StationCall, Task, check_answer};
use crate::events::Events;
use crate::link::CallFailure;
use crate::metrics::Metrics;
use crate::store::Registration;

/// Outbound calls a station may have queued behind the one in flight.
const OUTBOUND_QUEUE: usize = 8;

/// What every session of this process shares.
pub struct SessionContext {
    pub sessions: Arc<Sessions>,
    pub engines: Arc<Engines>,
    pub metrics: Arc<Metrics>,
    pub events: Arc<Events>,
    /// How long a CSMS-initiated call waits for the station's answer.
    pub call_timeout: Duration,
    /// A session that receives nothing for this long is closed.
    pub idle_timeout: Duration,
}

/// What the session knows about its station between frames.
#[derive(Debug, Clone)]
pub struct SessionState {
    pub station: ConnectedStation,
    /// How the station's last BootNotification was answered; `None` if it never booted.
    pub registration: Option<Registration>,
    /// B02.FR.09: what a Pending station may send besides BootNotification,
    /// because this CSMS asked for it (TriggerMessage, GetBaseReport, GetReport
    /// answered Accepted on this connection).
    requested_while_pending: Vec<Action>,
    /// The operator's registration for the station as read when the
    /// connection was admitted, and when, for the first call on it.
    registration_at_admission: Option<(Registration, Instant)>,
}

/// How long the registration read at admission answers the connection's first
/// BootNotification; a boot that comes later reads it again, so an operator's
/// change made meanwhile is what the station is told.
const ADMISSION_READ_FRESH: Duration = Duration::from_secs(2);

impl SessionState {
    pub fn new(station: ConnectedStation, registration: Option<Registration>) -> Self {
        SessionState { station, registration, requested_while_pending: Vec::new(), registration_at_admission: None }
    }

    /// With the operator's registration read at admission (B01-B03): the first
    /// BootNotification is answered from it, without another read.
    pub fn read_at_admission(mut self, registration: Registration) -> Self {
        self.registration_at_admission = Some((registration, Instant::now()));
        self
    }

    /// The registration read at admission, for the connection's first call
    /// only, and only while it is fresh ([`ADMISSION_READ_FRESH`]).
    fn take_registration_at_admission(&mut self) -> Option<Registration> {
        self.registration_at_admission.take().filter(|(_, read)| read.elapsed() < ADMISSION_READ_FRESH).map(|(r, _)| r)
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

    /// The station accepted a call that asks it to send `solicited`.
    fn station_accepted(&mut self, solicited: Option<Action>) {
        if let Some(a) = solicited
            && self.registration == Some(Registration::Pending)
            && !self.requested_while_pending.contains(&a)
        {
            self.requested_while_pending.push(a);
        }
    }
}

/// The message a CSMS-initiated call asks the station to send in return, if
/// the station accepted it: TriggerMessage's requestedMessage, NotifyReport
/// for the report requests (B02.FR.09).
fn solicited_by(action: Action, request: &Value, answer: &Value) -> Option<Action> {
    use ocpp::v201::{
        GenericDeviceModelStatusEnumType as Report, GetBaseReportRequest, GetReportRequest,
        MessageTriggerEnumType as M, TriggerMessageRequest, TriggerMessageStatusEnumType as Trigger,
    };
    use ocpp::v201::{decode_validated_request as request_of, decode_validated_response as answer_of};
    match action {
        Action::GetBaseReport => answer_of::<GetBaseReportRequest>(answer.clone())
            .is_ok_and(|a| a.status == Report::Accepted)
            .then_some(Action::NotifyReport),
        Action::GetReport => answer_of::<GetReportRequest>(answer.clone())
            .is_ok_and(|a| a.status == Report::Accepted)
            .then_some(Action::NotifyReport),
        Action::TriggerMessage => {
            if !answer_of::<TriggerMessageRequest>(answer.clone()).is_ok_and(|a| a.status == Trigger::Accepted) {
                return None;
            }
            match request_of::<TriggerMessageRequest>(request.clone()).ok()?.requested_message {
                M::SignChargingStationCertificate | M::SignV2GCertificate | M::SignCombinedCertificate => {
                    Some(Action::SignCertificate)
                }
                other => Action::from_name(other.as_str()),
            }
        }
        _ => None,
    }
}

struct InFlight {
    id: MessageId,
    action: Action,
    request: Value,
    started: Instant,
    deadline: tokio::time::Instant,
    reply: oneshot::Sender<Result<Value, CallFailure>>,
}

/// Runs the session until the connection ends or is replaced.
pub async fn run<S>(ctx: Arc<SessionContext>, mut ws: WebSocketStream<S>, mut state: SessionState)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let conn_id = ctx.sessions.next_conn_id();
    let (tx, mut rx) = mpsc::channel::<Box<OutboundCall>>(OUTBOUND_QUEUE);
    let shutdown = Arc::new(Notify::new());
    let station = state.station.clone();
    let station_id = station.station_id.as_str();
    ctx.sessions.register(
        station_id,
        SessionHandle {
            conn_id,
            tenant_id: station.tenant_id.clone(),
            certificate_serial: station.certificate_serial.as_deref().map(Arc::from),
            outbound: tx,
            shutdown: shutdown.clone(),
        },
    );
    ctx.metrics.connections.inc();
    ctx.metrics.connections_accepted.inc();
    tracing::info!(station = station_id, tenant = %station.tenant_id, conn = conn_id, "session opened");
    ctx.events.publish(&station.tenant_id, "connected", station_id, serde_json::json!({}));
    for engine in ctx.engines.all() {
        spawn(engine.on_connect(&station));
    }

    let mut idle_deadline = tokio::time::Instant::now() + ctx.idle_timeout;
    let mut in_flight: Option<InFlight> = None;
    let mut next_call: u64 = 0;
    let close_reason: &str = loop {
        let deadline = in_flight.as_ref().map(|f| f.deadline);
        tokio::select! {
            _ = shutdown.notified() => {
                let _ = ws.close(Some(CloseFrame { code: CloseCode::Policy, reason: "closed by the CSMS: replaced or reconfigured".into() })).await;
                break "replaced or reconfigured";
            }
            _ = tokio::time::sleep_until(idle_deadline) => {
                tracing::info!(station = station_id, "no traffic within the idle timeout; closing");
                let _ = ws.close(Some(CloseFrame { code: CloseCode::Away, reason: "idle timeout".into() })).await;
                break "idle timeout";
            }
            msg = ws.next() => {
                idle_deadline = tokio::time::Instant::now() + ctx.idle_timeout;
                let msg = match msg {
                    None => break "closed by station",
                    Some(Ok(m)) => m,
                    Some(Err(WsError::Capacity(CapacityError::MessageTooLong { size, max_size }))) => {
                        tracing::warn!(station = station_id, size, max_size, "message too large; closing");
                        ctx.metrics.frame("in", "-", "too_large");
                        let _ = ws.close(Some(CloseFrame { code: CloseCode::Size, reason: "message too large".into() })).await;
                        break "message too large";
                    }
                    Some(Err(e)) => {
                        tracing::debug!(station = station_id, error = %e, "websocket error");
                        break "websocket error";
                    }
                };
                match msg {
                    Message::Text(text) => {
                        let Some((reply, answered)) = on_text(&ctx, &mut state, &mut in_flight, text.as_str()).await else {
                            continue;
                        };
                        if ws.send(Message::text(reply)).await.is_err() {
                            break "write failed";
                        }
                        // The engine's hook runs once the answer has left (e.g. A02/A03:
                        // the certificate is issued and delivered after Accepted was sent).
                        if let Some(answer) = answered
                            && let Some(engine) = ctx.engines.for_action(answer.action())
                        {
                            spawn(engine.after_answer(&station, &answer));
                        }
                    }
                    Message::Binary(_) => {
                        // OCPP-J frames are text; binary is refused but the session stays.
                        ctx.metrics.frame("in", "-", "binary");
                        let err = ocpp::FrameError { is_reply: false, id: None, code: ErrorCode::RpcFrameworkError, description: "OCPP-J frames must be sent as text".into() };
                        if ws.send(Message::text(Frame::CallError(err.to_call_error()).to_json())).await.is_err() {
                            break "write failed";
                        }
                    }
                    Message::Close(_) => break "closed by station",
                    Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
                }
            }
            Some(call) = rx.recv(), if in_flight.is_none() => {
                // B03: the CSMS sends nothing to a station it rejected.
                if state.registration == Some(Registration::Rejected) {
                    let _ = call.reply.send(Err(CallFailure::StationRejected));
                    continue;
                }
                next_call += 1;
                let id = match MessageId::new(format!("{conn_id:x}-{next_call:x}")) {
                    Ok(id) => id,
                    Err(_) => { let _ = call.reply.send(Err(CallFailure::ClosedBeforeSending)); continue; }
                };
                let frame = Frame::Call(Call::new(id.clone(), call.action.as_str(), call.payload.clone()));
                if ws.send(Message::text(frame.to_json())).await.is_err() {
                    // The socket refused the frame: the station cannot have read a whole one.
                    let _ = call.reply.send(Err(CallFailure::ClosedBeforeSending));
                    break "write failed";
                }
                ctx.metrics.frame("out", call.action.as_str(), "sent");
                in_flight = Some(InFlight {
                    id,
                    action: call.action,
                    request: call.payload,
                    started: Instant::now(),
                    deadline: tokio::time::Instant::now() + ctx.call_timeout,
                    reply: call.reply,
                });
            }
            _ = sleep_until_opt(deadline) => {
                if let Some(f) = in_flight.take() {
                    tracing::warn!(station = station_id, action = f.action.as_str(), "call timed out");
                    ctx.metrics.frame("out", f.action.as_str(), "timeout");
                    let timeout = CallFailure::Timeout(ctx.call_timeout);
                    finish(&ctx, &mut state, f, Err(timeout), "timeout");
                }
            }
        }
    };
    if let Some(f) = in_flight.take() {
        // Sent, never answered: the station may have acted on it.
        finish(&ctx, &mut state, f, Err(CallFailure::ClosedAfterSending), "closed");
    }
    ctx.sessions.unregister(station_id, conn_id);
    ctx.metrics.connections.dec();
    tracing::info!(station = station_id, conn = conn_id, reason = close_reason, "session closed");
    ctx.events.publish(&station.tenant_id, "disconnected", station_id, serde_json::json!({ "reason": close_reason }));
}

fn spawn(task: Option<Task>) {
    if let Some(t) = task {
        tokio::spawn(t);
    }
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Handles one text frame; returns the frame to send back, if any, with the
/// engine's answer it carries.
async fn on_text(
    ctx: &SessionContext,
    state: &mut SessionState,
    in_flight: &mut Option<InFlight>,
    text: &str,
) -> Option<(String, Option<Answer>)> {
    // A CALL is read without building its payload, which is checked as text
    // and, when it conforms, handed to the engine as the station's own text.
    // A payload that is not JSON as a frame is read goes on to Frame::parse,
    // which refuses the frame as it always did.
    if let Some(raw) = RawCall::parse(text) {
        // Handler time includes the schema check, as on the Frame::parse path.
        let started = Instant::now();
        let read = match Action::from_name(raw.action) {
            Some(action) if action.initiated_by() != Initiator::Csms => {
                match ocpp::v201::check_request_text(action, raw.payload) {
                    TextCheck::Conforms(payload) => Some(Read::Checked(Ok(payload))),
                    TextCheck::Violates(v) => Some(Read::Checked(Err(v))),
                    TextCheck::NotJson => None,
                }
            }
            _ => raw.payload_is_json().then_some(Read::NotNeeded),
        };
        if let Some(read) = read {
            let (reply, answer) = dispatch(ctx, state, started, raw.id, raw.action, read).await;
            return Some((reply.to_json(), answer));
        }
    }
    let station_id = state.station.station_id.as_str();
    match Frame::parse(text) {
        Err(e) if e.is_reply => {
            // OCPP-J never answers a CALLRESULT or CALLERROR, not even a broken one.
            // When it names the call in flight, that call fails now rather than at
            // its timeout.
            tracing::info!(station = station_id, code = e.code.as_str(), description = %e.description, "malformed reply dropped");
            match in_flight.take_if(|f| e.id.as_ref() == Some(&f.id)) {
                Some(f) => {
                    finish(ctx, state, f, Err(CallFailure::MalformedResponse(e.description)), "invalid_response")
                }
                None => ctx.metrics.frame("in", "-", "malformed_reply"),
            }
            None
        }
        Err(e) => {
            tracing::info!(station = station_id, code = e.code.as_str(), description = %e.description, "unreadable frame");
            ctx.metrics.frame("in", "-", e.code.as_str());
            Some((Frame::CallError(e.to_call_error()).to_json(), None))
        }
        Ok(Frame::Call(call)) => {
            let (reply, answer) =
                dispatch(ctx, state, Instant::now(), call.id, &call.action, Read::Value(call.payload)).await;
            Some((reply.to_json(), answer))
        }
        Ok(Frame::CallResult(res)) => {
            if let Some(f) = answered(ctx, station_id, in_flight, &res.id, "CALLRESULT") {
                let outcome = ocpp::v201::validate(f.action, Direction::Response, &res.payload)
                    .map(|()| res.payload)
                    .map_err(CallFailure::InvalidResponse);
                let label = if outcome.is_ok() { "ok" } else { "invalid_response" };
                finish(ctx, state, f, outcome, label);
            }
            None
        }
        Ok(Frame::CallError(err)) => {
            if let Some(f) = answered(ctx, station_id, in_flight, &err.id, "CALLERROR") {
                let code = err.code;
                finish(ctx, state, f, Err(CallFailure::Rejected { code, description: err.description }), code.as_str());
            }
            None
        }
    }
}

/// The call in flight that a reply with message id `id` answers; a reply to
/// anything else is logged, counted and dropped (correlation is per connection).
fn answered(
    ctx: &SessionContext,
    station_id: &str,
    in_flight: &mut Option<InFlight>,
    id: &MessageId,
    kind: &str,
) -> Option<InFlight> {
    let f = in_flight.take_if(|f| f.id == *id);
    if f.is_none() {
        tracing::info!(station = station_id, id = id.as_str(), "{kind} for unknown message id dropped");
        ctx.metrics.frame("in", "-", "unknown_id");
    }
    f
}

/// A CSMS-initiated call ended: counted, told to the engines and the caller.
fn finish(
    ctx: &SessionContext,
    state: &mut SessionState,
    f: InFlight,
    outcome: Result<Value, CallFailure>,
    label: &'static str,
) {
    if let Ok(answer) = &outcome {
        state.station_accepted(solicited_by(f.action, &f.request, answer));
    }
    if label != "timeout" && label != "closed" {
        ctx.metrics.frame("in", f.action.as_str(), label);
        ctx.metrics
            .call_latency
            .get_or_create(&crate::metrics::ActionLabels { action: f.action.as_str() })
            .observe(f.started.elapsed().as_secs_f64());
    }
    for engine in ctx.engines.all() {
        spawn(engine.on_call_answered(&state.station, f.action, &f.request, &outcome));
    }
    let _ = f.reply.send(outcome);
}

/// A CALL's payload as the frame was read.
enum Read<'a> {
    /// Read by [`RawCall::parse`] and checked as text against the action's
    /// request schema.
    Checked(Result<Payload<'a>, Violation>),
    /// Read by [`Frame::parse`], not checked yet.
    Value(Value),
    /// Read by [`RawCall::parse`] for an action refused before its payload
    /// is looked at (unknown, or sent only by a CSMS).
    NotNeeded,
}

/// Answers one CALL from a station with a CALLRESULT or CALLERROR, and the
/// engine's answer when it is a CALLRESULT. `started`: when its handling began (the
/// handler-duration metric).
async fn dispatch(
    ctx: &SessionContext,
    state: &mut SessionState,
    started: Instant,
    id: MessageId,
    name: &str,
    payload: Read<'_>,
) -> (Frame, Option<Answer>) {
    let action = Action::from_name(name);
    let label = action.map(|a| a.as_str()).unwrap_or("-");
    let result = handle(ctx, state, action, name, payload).await;
    if let Some(a) = action {
        ctx.metrics
            .handler_latency
            .get_or_create(&crate::metrics::ActionLabels { action: a.as_str() })
            .observe(started.elapsed().as_secs_f64());
    }
    match result {
        Ok(mut answer) => {
            ctx.metrics.frame("in", label, "ok");
            let payload = answer.take_payload();
            (Frame::CallResult(CallResult { id, payload }), Some(answer))
        }
        Err(e) => {
            tracing::info!(station = %state.station.station_id, action = %truncate(name, 64), code = e.code.as_str(), description = %e.description, "call refused");
            ctx.metrics.frame("in", label, e.code.as_str());
            (Frame::CallError(CallError::new(id, e.code, e.description)), None)
        }
    }
}

async fn handle(
    ctx: &SessionContext,
    state: &mut SessionState,
    action: Option<Action>,
    name: &str,
    payload: Read<'_>,
) -> Result<Answer, HandlerError> {
    let Some(action) = action else {
        return Err(HandlerError::new(ErrorCode::NotImplemented, format!("unknown action '{}'", truncate(name, 64))));
    };
    if action.initiated_by() == Initiator::Csms {
        return Err(HandlerError::new(
            ErrorCode::NotSupported,
            format!("{} is sent by the CSMS, not by a charging station", action.as_str()),
        ));
    }
    let payload = match payload {
        Read::Checked(checked) => checked?,
        Read::Value(value) => Payload::validated(action, value)?,
        Read::NotNeeded => {
            tracing::error!(action = action.as_str(), "a call's payload was not checked");
            return Err(HandlerError::new(ErrorCode::InternalError, "the CSMS did not check the payload"));
        }
    };
    // B02.FR.09, B03.FR.07: until a BootNotification was accepted, only
    // BootNotification, and what the CSMS asked a Pending station for, is answered.
    if !state.may_send(action) {
        return Err(HandlerError::new(
            ErrorCode::SecurityError,
            "the charging station is not accepted: send BootNotification first",
        ));
    }
    let Some(engine) = ctx.engines.for_action(action) else {
        return Err(HandlerError::new(
            ErrorCode::NotImplemented,
            format!("{} is not implemented by this CSMS yet", action.as_str()),
        ));
    };
    let mut at_admission = state.take_registration_at_admission();
    let call = StationCall {
        station: &state.station,
        action,
        payload,
        registration: &mut state.registration,
        registration_at_admission: &mut at_admission,
    };
    let answer = engine.handle(call).await?;
    if answer.action() != action {
        tracing::error!(engine = engine.name(), call = action.as_str(), "engine answered another action");
        return Err(HandlerError::new(ErrorCode::InternalError, "the CSMS produced an invalid response"));
    }
    // Our own answers must satisfy the schema too; a failure here is our bug.
    check_answer(&answer)?;
    Ok(answer)
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn state(registration: Option<Registration>) -> SessionState {
        let station = ConnectedStation {
            tenant_id: Arc::from("t"),
            station_id: "CS1".into(),
            certificate_serial: None,
            certificate_work: false,
        };
        SessionState::new(station, registration)
    }

    #[test]
    fn pending_station_may_send_only_what_was_requested() {
        let accepted = json!({"status": "Accepted"});
        let mut s = state(Some(Registration::Pending));
        assert!(s.may_send(Action::BootNotification));
        assert!(!s.may_send(Action::NotifyReport));
        assert!(!s.may_send(Action::Heartbeat));
        let report = json!({"requestId": 1, "reportBase": "FullInventory"});
        s.station_accepted(solicited_by(Action::GetBaseReport, &report, &json!({"status": "Rejected"})));
        assert!(!s.may_send(Action::NotifyReport), "a refused request solicits nothing");
        s.station_accepted(solicited_by(Action::GetBaseReport, &report, &accepted));
        assert!(s.may_send(Action::NotifyReport));
        let trigger = json!({"requestedMessage": "SignChargingStationCertificate"});
        s.station_accepted(solicited_by(Action::TriggerMessage, &trigger, &accepted));
        assert!(s.may_send(Action::SignCertificate));
        let trigger = json!({"requestedMessage": "StatusNotification"});
        s.station_accepted(solicited_by(Action::TriggerMessage, &trigger, &accepted));
        assert!(s.may_send(Action::StatusNotification));
        assert!(!s.may_send(Action::Heartbeat));
        assert!(!s.may_send(Action::TransactionEvent));
    }

    #[test]
    fn the_registration_read_at_admission_serves_the_first_call_while_fresh() {
        let mut s = state(None).read_at_admission(Registration::Pending);
        assert_eq!(s.take_registration_at_admission(), Some(Registration::Pending));
        assert_eq!(s.take_registration_at_admission(), None, "the first call only");
        let mut stale = state(None).read_at_admission(Registration::Accepted);
        let read = Instant::now().checked_sub(ADMISSION_READ_FRESH).unwrap();
        stale.registration_at_admission = Some((Registration::Accepted, read));
        assert_eq!(stale.take_registration_at_admission(), None, "read too long ago: read again");
        assert_eq!(state(None).take_registration_at_admission(), None);
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
}
