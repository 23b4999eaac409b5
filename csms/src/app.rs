//! The capabilities every part of the server reaches through one struct.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};

use dashmap::DashMap;
use tokio::sync::{Semaphore, broadcast};

use crate::clock::Clock;
use crate::config::Config;
use crate::group_commit::GroupCommit;
use crate::metrics::Metrics;
use crate::session::SessionRegistry;
use crate::store::Store;
use crate::tls::{ServerCertificates, StationTrust};

pub struct App {
    pub config: Config,
    pub store: Store,
    /// Where station reports are persisted (group commit over `store`).
    pub writes: GroupCommit,
    pub clock: Arc<dyn Clock>,
    pub metrics: Metrics,
    pub sessions: SessionRegistry,
    pub trust: Arc<StationTrust>,
    /// Open connections (sessions and handshakes in progress).
    pub connection_permits: Arc<Semaphore>,
    /// TLS handshakes and upgrade requests in progress.
    pub handshake_permits: Arc<Semaphore>,
    /// PBKDF2 verifications in progress (CPU-bound).
    pub password_permits: Semaphore,
    /// Set once every listener is bound and the store answered.
    pub ready: AtomicBool,
    /// Station events for live API streams (connects, statuses, security events),
    /// one bounded channel per tenant: a subscriber that falls behind loses its
    /// tenant's oldest events and is told how many; other tenants' traffic never
    /// pushes it behind.
    pub events: DashMap<Arc<str>, broadcast::Sender<StationEvent>>,
    /// Live API event streams open at once.
    pub event_streams: Arc<Semaphore>,
    /// Server certificates by SNI host (set by `serve`; absent in unit tests).
    server_certs: OnceLock<Arc<ServerCertificates>>,
    /// The master key that opens CA keys, for issuing certificates (A02/A03).
    signing_key: OnceLock<Arc<pki::MasterKey>>,
}

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

impl App {
    pub fn new(config: Config, store: Store, clock: Arc<dyn Clock>, trust: Arc<StationTrust>) -> App {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        App {
            connection_permits: Arc::new(Semaphore::new(config.max_connections)),
            handshake_permits: Arc::new(Semaphore::new(config.max_concurrent_handshakes.max(1))),
            password_permits: Semaphore::new(cores),
            writes: GroupCommit::start(store.clone(), 512),
            config,
            store,
            clock,
            metrics: Metrics::new(),
            sessions: SessionRegistry::default(),
            trust,
            ready: AtomicBool::new(false),
            events: DashMap::new(),
            event_streams: Arc::new(Semaphore::new(MAX_EVENT_STREAMS)),
            server_certs: OnceLock::new(),
            signing_key: OnceLock::new(),
        }
    }

    pub fn set_server_certificates(&self, certs: Arc<ServerCertificates>) {
        let _ = self.server_certs.set(certs);
    }

    /// Lets this process issue station certificates.
    pub fn set_signing_key(&self, master: Arc<pki::MasterKey>) {
        let _ = self.signing_key.set(master);
    }

    pub fn signing_key(&self) -> Option<Arc<pki::MasterKey>> {
        self.signing_key.get().cloned()
    }

    /// Publishes a station event to live subscribers (none listening is fine).
    pub fn publish(&self, tenant_id: &Arc<str>, kind: &'static str, station_id: &str, data: serde_json::Value) {
        if let Some(tx) = self.events.get(tenant_id)
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
        let tx = self.events.entry(Arc::from(tenant_id)).or_insert_with(|| broadcast::channel(EVENT_BUFFER).0);
        (tx.receiver_count() < MAX_EVENT_STREAMS_PER_TENANT).then(|| tx.subscribe())
    }

    /// The tenant whose own host name `sni` is, if any.
    pub fn tenant_of_host(&self, sni: &str) -> Option<String> {
        self.server_certs.get()?.tenant_of_host(sni)
    }
}
