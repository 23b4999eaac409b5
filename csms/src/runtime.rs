//! One csms process: the capabilities built once, the engines registered, the
//! gateway and the service layer on top. `csms serve` ([`crate::serve`]) binds
//! the listeners to a [`Node`]; tests build one directly.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::authority::KeyBackend;
use crate::clock::Clock;
use crate::config::Config;
use crate::engines::certificates::Certificates;
use crate::engines::provisioning::Provisioning;
use crate::engines::reports::Reports;
use crate::engines::security::Security;
use crate::engines::{EngineContext, Engines, NodeIdentity, RegistryError};
use crate::events::Events;
use crate::gateway::Gateway;
use crate::gateway::tls::{ServerCertificates, StationTrust};
use crate::group_commit::GroupCommit;
use crate::link::StationLink;
use crate::metrics::Metrics;
use crate::services::Services;
use crate::session::{SessionContext, Sessions};
use crate::store::Store;

/// Station reports committed in one transaction at most.
const MAX_GROUP_COMMIT: usize = 512;

/// Everything one process runs, wired once.
pub struct Node {
    pub config: Arc<Config>,
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    pub events: Arc<Events>,
    pub keys: KeyBackend,
    /// The stations connected to this process.
    pub sessions: Arc<Sessions>,
    /// How everything above the session reaches a station.
    pub link: Arc<dyn StationLink>,
    pub engines: Arc<Engines>,
    /// The certificate lifecycle engine, for the service layer (renewals).
    pub certificates: Arc<Certificates>,
    pub gateway: Arc<Gateway>,
    pub services: Arc<Services>,
    /// Set once every listener is bound and the store answered.
    pub ready: AtomicBool,
    /// Node id and instance of this process, as its claims record them.
    pub identity: NodeIdentity,
}

impl Node {
    /// Wires a process: starts the group-commit writer (needs a Tokio runtime).
    pub fn new(
        config: Config,
        store: Store,
        clock: Arc<dyn Clock>,
        keys: KeyBackend,
        trust: Arc<StationTrust>,
        server_certs: Option<Arc<ServerCertificates>>,
    ) -> Result<Arc<Node>, RegistryError> {
        // A node without a configured id (tests) is a node of its own.
        let identity = NodeIdentity::start(config.node_id.clone().unwrap_or_else(crate::engines::random_id));
        let config = Arc::new(config);
        let metrics = Arc::new(Metrics::new());
        let events = Arc::new(Events::new(clock.clone()));
        let sessions = Arc::new(Sessions::default());
        let link: Arc<dyn StationLink> = sessions.clone();
        let ctx = Arc::new(EngineContext {
            config: config.clone(),
            store: store.clone(),
            writes: GroupCommit::start(store.clone(), MAX_GROUP_COMMIT),
            clock: clock.clone(),
            metrics: metrics.clone(),
            events: events.clone(),
            link: link.clone(),
            keys: keys.clone(),
            identity: identity.clone(),
        });

        // The engines: one line each.
        let certificates = Arc::new(Certificates::new(ctx.clone()));
        let mut engines = Engines::default();
        engines.register(Arc::new(Provisioning::new(ctx.clone())))?;
        engines.register(Arc::new(Security::new(ctx.clone())))?;
        let reports = Arc::new(Reports::new(ctx.clone()));
        let device_limits = reports.device_limits();
        engines.register(reports)?;
        engines.register(certificates.clone())?;
        let engines = Arc::new(engines);

        let session_ctx = Arc::new(SessionContext {
            sessions: sessions.clone(),
            engines: engines.clone(),
            metrics: metrics.clone(),
            events: events.clone(),
            call_timeout: Duration::from_secs(config.call_timeout_secs),
            idle_timeout: Duration::from_secs(config.idle_timeout_secs),
        });
        let gateway = Arc::new(Gateway::new(
            config.clone(),
            store.clone(),
            clock.clone(),
            metrics.clone(),
            trust.clone(),
            server_certs.clone(),
            session_ctx,
            keys.master(),
        ));
        let services = Arc::new(Services::new(ctx, certificates.clone(), trust, server_certs, device_limits));
        Ok(Arc::new(Node {
            config,
            store,
            clock,
            metrics,
            events,
            keys,
            sessions,
            link,
            engines,
            certificates,
            gateway,
            services,
            ready: AtomicBool::new(false),
            identity,
        }))
    }

    /// The session side of this process (for tests that run a session over an
    /// in-memory stream).
    pub fn session_context(&self) -> Arc<SessionContext> {
        self.gateway.sessions.clone()
    }
}
