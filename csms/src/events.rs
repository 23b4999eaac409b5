//! Station events for live API streams (connects, statuses, security events).
//!
//! One bounded channel per tenant: a subscriber that falls behind loses its
//! tenant's oldest events and is told how many; other tenants' traffic never
//! pushes it behind. Publishing with nobody listening costs a map lookup.

use std::sync::Arc;

use dashmap::DashMap;
use tokio::sync::{Semaphore, broadcast};

use crate::clock::Clock;

/// Live event streams one process serves at once, and one tenant.
pub const MAX_EVENT_STREAMS: usize = 1024;
pub const MAX_EVENT_STREAMS_PER_TENANT: usize = 64;

/// Events kept for live subscribers that lag behind.
pub const EVENT_BUFFER: usize = 1024;

/// Something a station did that operators may watch live.
#[derive(Debug, Clone)]
pub struct StationEvent {
    pub tenant_id: Arc<str>,
    /// `connected`, `disconnected`, `status` or `security`.
    pub kind: &'static str,
    pub station_id: String,
    /// Unix milliseconds.
    pub at: i64,
    pub data: serde_json::Value,
}

/// The per-tenant event channels of this process.
pub struct Events {
    clock: Arc<dyn Clock>,
    channels: DashMap<Arc<str>, broadcast::Sender<StationEvent>>,
    /// Live API event streams open at once.
    pub streams: Arc<Semaphore>,
}

impl Events {
    pub fn new(clock: Arc<dyn Clock>) -> Events {
        Events { clock, channels: DashMap::new(), streams: Arc::new(Semaphore::new(MAX_EVENT_STREAMS)) }
    }

    /// Publishes a station event to live subscribers (none listening is fine).
    pub fn publish(&self, tenant_id: &Arc<str>, kind: &'static str, station_id: &str, data: serde_json::Value) {
        if let Some(tx) = self.channels.get(tenant_id)
            && tx.receiver_count() > 0
        {
            let _ = tx.send(StationEvent {
                tenant_id: tenant_id.clone(),
                kind,
                station_id: station_id.to_owned(),
                at: self.clock.now_millis(),
                data,
            });
        }
    }

    /// A receiver of the tenant's events, unless the tenant already has
    /// [`MAX_EVENT_STREAMS_PER_TENANT`] of them.
    pub fn subscribe(&self, tenant_id: &str) -> Option<broadcast::Receiver<StationEvent>> {
        let tx = self.channels.entry(Arc::from(tenant_id)).or_insert_with(|| broadcast::channel(EVENT_BUFFER).0);
        (tx.receiver_count() < MAX_EVENT_STREAMS_PER_TENANT).then(|| tx.subscribe())
    }
}
