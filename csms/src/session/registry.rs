//! The stations connected to this process, and the [`StationLink`] over them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;
use ocpp::v201::{Action, Direction};
use serde_json::Value;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::link::{BoxFuture, CallFailure, CloseReason, StationLink};

/// A CSMS-initiated call waiting for the session to send it.
pub(super) struct OutboundCall {
    pub action: Action,
    pub payload: Value,
    pub reply: oneshot::Sender<Result<Value, CallFailure>>,
}

/// How other tasks reach one connection.
#[derive(Clone)]
pub(super) struct SessionHandle {
    pub conn_id: u64,
    pub tenant_id: Arc<str>,
    /// Serial of the certificate the session authenticated with, if any.
    pub certificate_serial: Option<Arc<str>>,
    /// Boxed: the channel's slots are allocated per session up front, 8 bytes each this way.
    pub outbound: mpsc::Sender<Box<OutboundCall>>,
    pub shutdown: Arc<Notify>,
}

/// Stations connected to this process, by station id (ids are unique across
/// tenants: the OCPP URL carries no tenant).
#[derive(Default)]
pub struct Sessions {
    sessions: DashMap<String, SessionHandle>,
    next_conn: AtomicU64,
}

impl Sessions {
    pub(super) fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Registers a new connection; an older one for the same station is told to close.
    pub(super) fn register(&self, station_id: &str, handle: SessionHandle) {
        if let Some(old) = self.sessions.insert(station_id.to_owned(), handle) {
            old.shutdown.notify_one();
        }
    }

    pub(super) fn unregister(&self, station_id: &str, conn_id: u64) {
        self.sessions.remove_if(station_id, |_, h| h.conn_id == conn_id);
    }

    /// The tenant's station's connection.
    fn handle(&self, tenant: &str, station: &str) -> Option<SessionHandle> {
        self.sessions.get(station).filter(|h| *h.tenant_id == *tenant).map(|h| h.clone())
    }
}

impl StationLink for Sessions {
    fn send(
        &self,
        tenant: &str,
        station: &str,
        action: Action,
        payload: Value,
    ) -> BoxFuture<'static, Result<Value, CallFailure>> {
        let handle = self.handle(tenant, station);
        Box::pin(async move {
            let handle = handle.ok_or(CallFailure::NotConnected)?;
            ocpp::v201::validate(action, Direction::Request, &payload).map_err(CallFailure::InvalidRequest)?;
            let (reply, rx) = oneshot::channel();
            handle.outbound.try_send(Box::new(OutboundCall { action, payload, reply })).map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => CallFailure::Busy,
                mpsc::error::TrySendError::Closed(_) => CallFailure::NotConnected,
            })?;
            // Dropped unanswered: the session ended before it sent the call (a
            // call it sent is always answered, with ClosedAfterSending at worst).
            rx.await.unwrap_or(Err(CallFailure::ClosedBeforeSending))
        })
    }

    fn is_connected(&self, tenant: &str, station: &str) -> bool {
        self.sessions.get(station).is_some_and(|h| *h.tenant_id == *tenant)
    }

    fn disconnect(&self, tenant: &str, station: &str, why: CloseReason) -> bool {
        match self.handle(tenant, station) {
            Some(h) => {
                tracing::info!(station, tenant, reason = ?why, "closing the session");
                h.shutdown.notify_one();
                true
            }
            None => false,
        }
    }

    fn disconnect_certificate(&self, tenant: &str, serial: &str) -> usize {
        let mut n = 0;
        for h in self.sessions.iter() {
            if *h.tenant_id == *tenant && h.certificate_serial.as_deref() == Some(serial) {
                h.shutdown.notify_one();
                n += 1;
            }
        }
        n
    }

    fn connected(&self) -> usize {
        self.sessions.len()
    }
}
