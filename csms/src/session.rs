//! One task per connected station: reads frames, answers the station's calls,
//! and sends CSMS-initiated calls one at a time (OCPP-J: at most one call in
//! flight per direction), correlating replies by message id on this connection
//! only.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use futures_util::{SinkExt, StreamExt};
use ocpp::v201::{Action, Direction};
use ocpp::{ErrorCode, Frame, MessageId};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::app::App;
use crate::handlers::{self, SessionState};

/// Outbound calls a station may have queued behind the one in flight.
const OUTBOUND_QUEUE: usize = 8;

/// Why a CSMS-initiated call produced no result.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum CallFailure {
    #[error("station is not connected")]
    NotConnected,
    #[error("too many calls queued for this station")]
    Busy,
    #[error("station did not answer within {0:?}")]
    Timeout(Duration),
    #[error("station answered {code}: {description}")]
    Rejected { code: ErrorCode, description: String },
    #[error("invalid request payload: {0}")]
    InvalidRequest(ocpp::v201::Violation),
    #[error("station's answer violates the schema: {0}")]
    InvalidResponse(ocpp::v201::Violation),
    #[error("station's answer is not a valid OCPP-J reply: {0}")]
    MalformedResponse(String),
    #[error("the station's registration was rejected; the CSMS sends it nothing")]
    StationRejected,
    #[error("connection closed before the answer arrived")]
    Closed,
}

struct OutboundCall {
    action: Action,
    payload: Value,
    reply: oneshot::Sender<Result<Value, CallFailure>>,
}

/// Handle other tasks use to reach a connected station.
#[derive(Clone)]
pub struct SessionHandle {
    conn_id: u64,
    pub tenant_id: Arc<str>,
    /// Serial of the certificate the session authenticated with, if any.
    pub certificate_serial: Option<Arc<str>>,
    outbound: mpsc::Sender<OutboundCall>,
    shutdown: Arc<Notify>,
}

impl SessionHandle {
    /// Sends `action` to the station and waits for its (validated) answer.
    pub async fn call(&self, action: Action, payload: Value) -> Result<Value, CallFailure> {
        ocpp::v201::validate(action, Direction::Request, &payload).map_err(CallFailure::InvalidRequest)?;
        let (reply, rx) = oneshot::channel();
        self.outbound.try_send(OutboundCall { action, payload, reply }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => CallFailure::Busy,
            mpsc::error::TrySendError::Closed(_) => CallFailure::NotConnected,
        })?;
        rx.await.unwrap_or(Err(CallFailure::Closed))
    }
}

/// Stations connected to this process.
#[derive(Default)]
pub struct SessionRegistry {
    sessions: DashMap<String, SessionHandle>,
    next_conn: AtomicU64,
}

impl SessionRegistry {
    pub fn get(&self, station_id: &str) -> Option<SessionHandle> {
        self.sessions.get(station_id).map(|h| h.clone())
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Registers a new connection; an older one for the same station is told to close.
    fn register(&self, station_id: &str, handle: SessionHandle) {
        if let Some(old) = self.sessions.insert(station_id.to_owned(), handle) {
            old.shutdown.notify_one();
        }
    }

    /// Closes the station's session, if any (settings changed, station deleted).
    /// Returns whether there was one.
    pub fn disconnect(&self, station_id: &str) -> bool {
        match self.sessions.get(station_id) {
            Some(h) => {
                h.shutdown.notify_one();
                true
            }
            None => false,
        }
    }

    /// Closes the tenant's sessions that authenticated with certificate `serial`
    /// (it was just revoked). Returns how many.
    pub fn disconnect_certificate(&self, tenant_id: &str, serial: &str) -> usize {
        let mut n = 0;
        for h in self.sessions.iter() {
            if *h.tenant_id == *tenant_id && h.certificate_serial.as_deref() == Some(serial) {
                h.shutdown.notify_one();
                n += 1;
            }
        }
        n
    }

    fn unregister(&self, station_id: &str, conn_id: u64) {
        self.sessions.remove_if(station_id, |_, h| h.conn_id == conn_id);
    }
}

struct InFlight {
    id: MessageId,
    action: Action,
    /// What the call asks the station to send back (B02.FR.09).
    solicits: Option<Action>,
    started: Instant,
    deadline: tokio::time::Instant,
    reply: oneshot::Sender<Result<Value, CallFailure>>,
}

/// Runs the session until the connection ends or is replaced.
pub async fn run<S>(app: Arc<App>, mut ws: WebSocketStream<S>, mut state: SessionState)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let conn_id = app.sessions.next_conn.fetch_add(1, Ordering::Relaxed);
    let (tx, mut rx) = mpsc::channel::<OutboundCall>(OUTBOUND_QUEUE);
    let shutdown = Arc::new(Notify::new());
    let station_id = state.station_id.clone();
    app.sessions.register(
        &station_id,
        SessionHandle {
            conn_id,
            tenant_id: state.tenant_id.clone(),
            certificate_serial: state.certificate_serial.as_deref().map(Arc::from),
            outbound: tx,
            shutdown: shutdown.clone(),
        },
    );
    app.metrics.connections.inc();
    app.metrics.connections_accepted.inc();
    tracing::info!(station = %station_id, tenant = %state.tenant_id, conn = conn_id, "session opened");
    app.publish(&state.tenant_id, "connected", &station_id, serde_json::json!({}));
    if app.signing_key().is_some() {
        // Deliveries a crash or disconnect cut short; what the station connected with.
        tokio::spawn(crate::lifecycle::resume(app.clone(), state.tenant_id.to_string(), station_id.clone()));
        if let Some(serial) = state.certificate_serial.clone() {
            tokio::spawn(crate::lifecycle::admitted_with(
                app.clone(),
                state.tenant_id.to_string(),
                station_id.clone(),
                serial,
            ));
        }
    }

    let call_timeout = Duration::from_secs(app.config.call_timeout_secs);
    let idle_timeout = Duration::from_secs(app.config.idle_timeout_secs);
    let mut idle_deadline = tokio::time::Instant::now() + idle_timeout;
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
                tracing::info!(station = %station_id, "no traffic within the idle timeout; closing");
                let _ = ws.close(Some(CloseFrame { code: CloseCode::Away, reason: "idle timeout".into() })).await;
                break "idle timeout";
            }
            msg = ws.next() => {
                idle_deadline = tokio::time::Instant::now() + idle_timeout;
                let msg = match msg {
                    None => break "closed by station",
                    Some(Ok(m)) => m,
                    Some(Err(WsError::Capacity(CapacityError::MessageTooLong { size, max_size }))) => {
                        tracing::warn!(station = %station_id, size, max_size, "message too large; closing");
                        app.metrics.frame("in", "-", "too_large");
                        let _ = ws.close(Some(CloseFrame { code: CloseCode::Size, reason: "message too large".into() })).await;
                        break "message too large";
                    }
                    Some(Err(e)) => {
                        tracing::debug!(station = %station_id, error = %e, "websocket error");
                        break "websocket error";
                    }
                };
                match msg {
                    Message::Text(text) => {
                        if let Some(reply) = on_text(&app, &mut state, &mut in_flight, text.as_str()).await
                            && ws.send(Message::text(reply)).await.is_err()
                        {
                            break "write failed";
                        }
                        // Certificates whose SignCertificate was just answered Accepted.
                        for id in state.deliveries.drain(..) {
                            let (tenant, station) = (state.tenant_id.to_string(), station_id.clone());
                            tokio::spawn(crate::lifecycle::deliver(app.clone(), tenant, station, id));
                        }
                    }
                    Message::Binary(_) => {
                        // OCPP-J frames are text; binary is refused but the session stays.
                        app.metrics.frame("in", "-", "binary");
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
                if state.registration == Some(crate::store::Registration::Rejected) {
                    let _ = call.reply.send(Err(CallFailure::StationRejected));
                    continue;
                }
                next_call += 1;
                let id = match MessageId::new(format!("{conn_id:x}-{next_call:x}")) {
                    Ok(id) => id,
                    Err(_) => { let _ = call.reply.send(Err(CallFailure::Closed)); continue; }
                };
                let solicits = handlers::solicited_by(call.action, &call.payload);
                let frame = Frame::Call(ocpp::Call::new(id.clone(), call.action.as_str(), call.payload));
                if ws.send(Message::text(frame.to_json())).await.is_err() {
                    let _ = call.reply.send(Err(CallFailure::Closed));
                    break "write failed";
                }
                app.metrics.frame("out", call.action.as_str(), "sent");
                in_flight = Some(InFlight {
                    id,
                    action: call.action,
                    solicits,
                    started: Instant::now(),
                    deadline: tokio::time::Instant::now() + call_timeout,
                    reply: call.reply,
                });
            }
            _ = sleep_until_opt(deadline) => {
                if let Some(f) = in_flight.take() {
                    tracing::warn!(station = %station_id, action = f.action.as_str(), "call timed out");
                    app.metrics.frame("out", f.action.as_str(), "timeout");
                    let _ = f.reply.send(Err(CallFailure::Timeout(call_timeout)));
                }
            }
        }
    };
    if let Some(f) = in_flight.take() {
        let _ = f.reply.send(Err(CallFailure::Closed));
    }
    app.sessions.unregister(&station_id, conn_id);
    app.metrics.connections.dec();
    tracing::info!(station = %station_id, conn = conn_id, reason = close_reason, "session closed");
    app.publish(&state.tenant_id, "disconnected", &station_id, serde_json::json!({ "reason": close_reason }));
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Handles one text frame; returns the frame to send back, if any.
async fn on_text(app: &App, state: &mut SessionState, in_flight: &mut Option<InFlight>, text: &str) -> Option<String> {
    match Frame::parse(text) {
        Err(e) if e.is_reply => {
            // OCPP-J never answers a CALLRESULT or CALLERROR, not even a broken one.
            // When it names the call in flight, that call fails now rather than at
            // its timeout.
            tracing::info!(station = %state.station_id, code = e.code.as_str(), description = %e.description, "malformed reply dropped");
            match in_flight.take_if(|f| e.id.as_ref() == Some(&f.id)) {
                Some(f) => finish(app, f, Err(CallFailure::MalformedResponse(e.description))),
                None => app.metrics.frame("in", "-", "malformed_reply"),
            }
            None
        }
        Err(e) => {
            tracing::info!(station = %state.station_id, code = e.code.as_str(), description = %e.description, "unreadable frame");
            app.metrics.frame("in", "-", e.code.as_str());
            Some(Frame::CallError(e.to_call_error()).to_json())
        }
        Ok(Frame::Call(call)) => {
            let reply = handlers::dispatch(app, state, call).await;
            Some(reply.to_json())
        }
        Ok(Frame::CallResult(res)) => {
            match in_flight.take_if(|f| f.id == res.id) {
                Some(f) => {
                    let outcome = ocpp::v201::validate(f.action, Direction::Response, &res.payload)
                        .map(|()| res.payload)
                        .map_err(CallFailure::InvalidResponse);
                    if let Ok(answer) = &outcome
                        && answer.get("status").and_then(Value::as_str) == Some("Accepted")
                    {
                        state.station_accepted(f.solicits);
                    }
                    finish(app, f, outcome);
                }
                None => {
                    tracing::info!(station = %state.station_id, id = res.id.as_str(), "CALLRESULT for unknown message id dropped");
                    app.metrics.frame("in", "-", "unknown_id");
                }
            }
            None
        }
        Ok(Frame::CallError(err)) => {
            match in_flight.take_if(|f| f.id == err.id) {
                Some(f) => finish(app, f, Err(CallFailure::Rejected { code: err.code, description: err.description })),
                None => {
                    tracing::info!(station = %state.station_id, id = err.id.as_str(), "CALLERROR for unknown message id dropped");
                    app.metrics.frame("in", "-", "unknown_id");
                }
            }
            None
        }
    }
}

fn finish(app: &App, f: InFlight, outcome: Result<Value, CallFailure>) {
    let label = match &outcome {
        Ok(_) => "ok",
        Err(CallFailure::Rejected { code, .. }) => code.as_str(),
        Err(_) => "invalid_response",
    };
    app.metrics.frame("in", f.action.as_str(), label);
    app.metrics
        .call_latency
        .get_or_create(&crate::metrics::ActionLabels { action: f.action.as_str() })
        .observe(f.started.elapsed().as_secs_f64());
    let _ = f.reply.send(outcome);
}
