//! The capabilities every part of the server reaches through one struct.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};

use tokio::sync::Semaphore;

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
    /// Server certificates by SNI host (set by `serve`; absent in unit tests).
    server_certs: OnceLock<Arc<ServerCertificates>>,
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
            server_certs: OnceLock::new(),
        }
    }

    pub fn set_server_certificates(&self, certs: Arc<ServerCertificates>) {
        let _ = self.server_certs.set(certs);
    }

    /// The tenant whose own host name `sni` is, if any.
    pub fn tenant_of_host(&self, sni: &str) -> Option<String> {
        self.server_certs.get()?.tenant_of_host(sni)
    }
}
