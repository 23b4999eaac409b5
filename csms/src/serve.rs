//! `csms serve`: open everything, bind the listeners, run until stopped.
//! Every other command opens the same way ([`open`]) and stops there.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::error::{Context, Error, Result};
use tokio::net::TcpListener;

use crate::authority::{self, KeyBackend};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::gateway::tls::{self, ServerCertificates, StationTrust};
use crate::runtime::Node;
use crate::store::Store;

/// Tenant created on first start.
pub const DEFAULT_TENANT: &str = "default";
pub const DEFAULT_ORGANIZATION: &str = "Default Organization";

/// What every command needs: the data directory, secrets, the key backend,
/// the database and the default tenant.
pub struct Opened {
    pub config: Config,
    pub secrets: authority::Secrets,
    /// The one way to CA keys: the master key, and the PKCS#11 token if configured.
    pub keys: KeyBackend,
    pub store: Store,
}

pub async fn open(config: Config, clock: &dyn Clock) -> Result<Opened> {
    config.validate()?;
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&config.data_dir)
            .map_err(|e| Error::io(format!("creating data dir {}", config.data_dir.display()), e))?;
    }
    let secrets = authority::load_secrets(&config.data_dir)?;
    let keys = match &config.pkcs11_module {
        Some(module) => {
            let missing = |what: &str| Error::Config(format!("pkcs11_module is set: set {what} too"));
            let token = config.pkcs11_token.as_deref().ok_or_else(|| missing("pkcs11_token"))?;
            let pin = config.pkcs11_pin.as_deref().ok_or_else(|| missing("pkcs11_pin"))?;
            let token = pki::Pkcs11Token::open(module, token, pin)
                .map_err(|e| Error::Config(format!("opening the PKCS#11 token: {e}")))?;
            KeyBackend::with_token(secrets.master.clone(), token)
        }
        None => KeyBackend::software(secrets.master.clone()),
    };
    let url = config.database_url();
    let store = Store::open(&url, config.database_max_connections)
        .await
        .map_err(|e| Error::Config(format!("opening database {}: {e}", redact_url(&url))))?;
    authority::ensure_tenant(&store, &keys, clock, DEFAULT_TENANT, DEFAULT_ORGANIZATION, None).await?;
    keep_private(&config.data_dir, &private_files(&config))?;
    Ok(Opened { config, secrets, keys, store })
}

/// The files that hold secrets: the master key, the JWT secret, and an SQLite
/// database with its WAL and shared-memory files (password hashes, sealed keys).
fn private_files(config: &Config) -> Vec<std::path::PathBuf> {
    let mut files = vec![config.data_dir.join("master.key"), config.data_dir.join("jwt.secret")];
    if let Some(path) = config.database_url().strip_prefix("sqlite://") {
        let path = path.split('?').next().unwrap_or(path);
        for suffix in ["", "-wal", "-shm"] {
            files.push(std::path::PathBuf::from(format!("{path}{suffix}")));
        }
    }
    files
}

/// The data directory is the owner's alone (0700) and every secret file in it
/// is readable by the owner only (0600). Looser modes, left by an older version
/// or a copy, are tightened with a warning naming each path; a path that cannot
/// be tightened (another owner) stops the start.
fn keep_private(data_dir: &std::path::Path, files: &[std::path::PathBuf]) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let targets = std::iter::once((data_dir, 0o700)).chain(files.iter().map(|f| (f.as_path(), 0o600)));
    for (path, mode) in targets {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(format!("reading the mode of {}", path.display()), e)),
        };
        let found = meta.permissions().mode() & 0o777;
        if found & 0o077 == 0 {
            continue;
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| {
            Error::io(
                format!(
                    "{} is mode {found:03o}, readable by other users, and cannot be set to {mode:03o}; \
                     set it yourself (it holds password hashes or keys)",
                    path.display()
                ),
                e,
            )
        })?;
        tracing::warn!(path = %path.display(), was = %format!("{found:03o}"), now = %format!("{mode:03o}"),
            "tightened the mode of a path that other users could read");
    }
    Ok(())
}

/// The serving node's public URL (`Config::public_url`, derived from the API
/// listener's bound port when not set), recorded in the database so that every
/// other issuer (the command line) writes the same CRL and OCSP URLs into the
/// certificates it issues. Returns `config` with the URL made explicit.
async fn record_public_url(
    mut config: Config,
    api_addr: SocketAddr,
    store: &Store,
    clock: &dyn Clock,
) -> Result<Config> {
    if config.public_url.is_none() {
        config.api_addr = SocketAddr::new(config.api_addr.ip(), api_addr.port());
        config.public_url = Some(config.public_url());
    }
    let url = config.public_url();
    let previous = store.set_setting(crate::store::PUBLIC_URL, &url, clock.now_millis()).await?;
    if let Some(previous) = previous.filter(|p| *p != url) {
        tracing::warn!(
            previous = %previous,
            public_url = %url,
            "the public URL changed: certificates issued before name the previous one for their CRL and OCSP"
        );
    }
    Ok(config)
}

/// A process that issues on the server's behalf (the command line) uses the
/// public URL the serving node recorded, so that its certificates name the same
/// CRL and OCSP URLs. A public URL given to it explicitly must be that one; with
/// none recorded (no server has run yet), its own configuration stands.
pub async fn adopt_public_url(mut config: Config, store: &Store) -> Result<Config> {
    let Some(recorded) = store.setting(crate::store::PUBLIC_URL).await? else {
        return Ok(config);
    };
    match &config.public_url {
        Some(given) if given.trim_end_matches('/') != recorded.trim_end_matches('/') => Err(Error::Config(format!(
            "public_url is '{given}' here but the server records '{recorded}' (the base of the CRL and OCSP URLs \
             in the certificates it issues); give the same, or restart the server with the new one first"
        ))),
        _ => {
            config.public_url = Some(recorded);
            Ok(config)
        }
    }
}

/// Hides a password in a database URL for printing.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// This node's id: the configured `node_id`, else the one kept in `node.id` in
/// the data directory (made at the first start).
pub fn node_id(config: &Config) -> Result<String> {
    if let Some(id) = &config.node_id {
        return Ok(id.clone());
    }
    let path = config.data_dir.join("node.id");
    let read = |path: &std::path::Path| -> Result<String> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        let id = text.trim().to_owned();
        if !crate::config::valid_node_id(&id) {
            return Err(Error::Config(format!("{}: {}", path.display(), crate::config::NODE_ID_RULE)));
        }
        Ok(id)
    };
    if path.exists() {
        return read(&path);
    }
    let id = crate::engines::random_id();
    match authority::write_private(&path, &format!("{id}\n")) {
        Ok(()) => Ok(id),
        // Another process made it meanwhile: its id it is.
        Err(_) if path.exists() => read(&path),
        Err(e) => Err(e),
    }
}

pub async fn serve(config: Config) -> Result<()> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let Opened { mut config, secrets, keys, store } = open(config, clock.as_ref()).await?;
    config.node_id = Some(node_id(&config)?);
    // A server that cannot sign says so now, not at the first renewal.
    authority::check_signing(&store, &keys).await?;

    let identity = authority::server_identity(&store, &keys, clock.as_ref(), &config.server_names).await?;
    let root_path = authority::write_public_pem(&store, &config.data_dir, &identity.root_pem).await?;

    let provider = tls::provider();
    let trust = Arc::new(StationTrust::new(provider.clone()));
    trust
        .reload(&authority::station_trust_roots(&store, clock.now_millis()).await?)
        .context("station trust anchors")?;
    let certs = Arc::new(ServerCertificates::new(
        tls::certified_key(&provider, &identity.chain, identity.key_pkcs8.clone()).context("server certificate")?,
    ));
    drop(identity);
    add_tenant_hosts(&store, &keys, clock.as_ref(), &certs).await?;
    let tls_config =
        Arc::new(tls::server_config(provider.clone(), trust.clone(), certs.clone()).context("TLS configuration")?);

    let ocpp = TcpListener::bind(config.ocpp_addr)
        .await
        .map_err(|e| Error::io(format!("binding OCPP listener {}", config.ocpp_addr), e))?;
    let plain = match config.ocpp_plain_addr {
        Some(addr) => Some(
            TcpListener::bind(addr).await.map_err(|e| Error::io(format!("binding plain OCPP listener {addr}"), e))?,
        ),
        None => None,
    };
    let api = TcpListener::bind(config.api_addr)
        .await
        .map_err(|e| Error::io(format!("binding API listener {}", config.api_addr), e))?;
    let metrics_listener = match config.metrics_addr {
        Some(addr) => {
            Some(TcpListener::bind(addr).await.map_err(|e| Error::io(format!("binding metrics listener {addr}"), e))?)
        }
        None => None,
    };
    let local = |e| Error::io("reading a listener's address", e);
    let ocpp_addr = ocpp.local_addr().map_err(local)?;
    let api_addr = api.local_addr().map_err(local)?;
    let plain_addr = plain.as_ref().map(|l| l.local_addr()).transpose().map_err(local)?;
    let config = record_public_url(config, api_addr, &store, clock.as_ref()).await?;

    let node =
        Node::new(config.clone(), store.clone(), clock.clone(), keys.clone(), trust.clone(), Some(certs.clone()))
            .context("registering the engines")?;
    // The claims an earlier run of this node left (a crash mid-issuance) are
    // released before any station connects, so its next connection resumes them.
    let released = store.release_claims(node.identity.claimant(), clock.now_millis()).await?;
    if released > 0 {
        tracing::info!(released, node = %node.identity.node_id, "released certificate requests claimed by this node's earlier run");
    }
    tokio::spawn(crate::gateway::serve_tls(node.gateway.clone(), ocpp, tls_config));
    if let Some(l) = plain {
        tokio::spawn(crate::gateway::serve_plain(node.gateway.clone(), l));
    }
    let auth = authority::jwt_authenticator(&store, &secrets, config.jwt_algorithm, clock.now_millis()).await?;
    let router = crate::http::router(node.clone(), Arc::new(auth));
    let limits = api_limits(&config)?;
    tokio::spawn(crate::http::serve(api, router, limits, node.metrics.clone()));
    let metrics_addr = metrics_listener.as_ref().map(|l| l.local_addr()).transpose().map_err(local)?;
    if let Some(l) = metrics_listener {
        let limits = crate::http::ListenerLimits { max_connections: METRICS_MAX_CONNECTIONS, ..limits };
        tokio::spawn(crate::http::serve(l, crate::http::metrics_router(node.clone()), limits, node.metrics.clone()));
    }
    // SQLite's checkpoints, mostly off the commit path (Store::checkpoint).
    // It holds a connection of the pool while it runs: with a pool of one,
    // the writer would wait for it, so SQLite's own checkpoints are left alone.
    // (The group commit's writer keeps a connection of its own only from
    // group_commit::HOLD_FROM_POOL_SIZE connections up.)
    let checkpoint_store = store.clone();
    if config.database_max_connections >= 2 {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(CHECKPOINT_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // A failure is logged when it starts or changes, not every tick.
            let mut failing: Option<String> = None;
            loop {
                tick.tick().await;
                match checkpoint_store.checkpoint().await {
                    Ok(Some(_)) => {
                        if failing.take().is_some() {
                            tracing::info!("checkpointing the WAL works again");
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        let message = e.to_string();
                        if failing.as_deref() != Some(message.as_str()) {
                            tracing::warn!(error = %message, "checkpointing the WAL failed; retrying every 250 ms");
                            failing = Some(message);
                        }
                    }
                }
            }
        });
    }
    // Tenants created by other processes (CLI, other nodes) become trusted here,
    // and their own host names get a server certificate.
    let refresh_store = store.clone();
    let tick_node = node.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(15));
        loop {
            tick.tick().await;
            match authority::station_trust_roots(&refresh_store, tick_node.clock.now_millis()).await {
                Ok(roots) => {
                    if let Err(e) = trust.reload(&roots) {
                        tracing::error!(error = %e, "reloading station trust anchors");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "reading station trust anchors"),
            }
            if let Err(e) = add_tenant_hosts(&refresh_store, &keys, clock.as_ref(), &certs).await {
                tracing::warn!(error = %e, "issuing tenant server certificates");
            }
            // Each engine's periodic work (renewals, revocation sweeps, ...).
            tick_node.engines.tick().await;
        }
    });
    node.ready.store(true, Ordering::Release);

    let ocpp_host = config.server_names.first().cloned().unwrap_or_else(|| "localhost".into());
    let banner = || -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        writeln!(out, "Anchorpoint CSMS {}", env!("CARGO_PKG_VERSION"))?;
        writeln!(out, "  data dir     {}", config.data_dir.display())?;
        writeln!(out, "  database     {} ({})", redact_url(&config.database_url()), store.backend_name())?;
        writeln!(out, "  CSMS root    {}  (stations install it as CSMSRootCertificate)", root_path.display())?;
        writeln!(out, "  station CAs  {}", config.data_dir.join("pki/tenants").display())?;
        writeln!(out, "  OCPP         wss://{ocpp_host}:{}/ocpp/{{stationId}}  (profiles 2 and 3)", ocpp_addr.port())?;
        match plain_addr {
            Some(a) => writeln!(out, "  OCPP plain   ws://{a}/ocpp/{{stationId}}  (profile 1)")?,
            None => writeln!(out, "  OCPP plain   off (profile 1 disabled)")?,
        }
        writeln!(
            out,
            "  API          http://{api_addr}/api/v1  (OpenAPI: /api/openapi.json; /healthz /readyz /metrics)"
        )?;
        if let Some(a) = metrics_addr {
            writeln!(out, "  metrics      http://{a}/metrics  (no token: keep it on a private network)")?;
        }
        let plain_text = plain_addr.map(|a| format!(" plain={a}")).unwrap_or_default();
        let metrics_text = metrics_addr.map(|a| format!(" metrics={a}")).unwrap_or_default();
        writeln!(out, "listening ocpp={ocpp_addr} api={api_addr}{plain_text}{metrics_text}")?;
        out.flush()?;
        drop(out);
        Ok(())
    };
    banner().map_err(|e| Error::io("writing to standard output", e))?;

    shutdown_signal().await;
    tracing::info!("shutting down");
    node.ready.store(false, Ordering::Release);
    store.close().await;
    Ok(())
}

/// Connections the metrics listener (`metrics_addr`) holds at once.
const METRICS_MAX_CONNECTIONS: usize = 16;
/// How often SQLite's WAL is checkpointed off the commit path.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(250);

/// The API listener's limits, its connection cap lowered so that the
/// descriptor limit keeps `api_descriptor_reserve` for the OCPP listener.
fn api_limits(config: &Config) -> Result<crate::http::ListenerLimits> {
    let (nofile, open) = crate::http::descriptor_usage();
    let metrics = if config.metrics_addr.is_some() { METRICS_MAX_CONNECTIONS } else { 0 };
    let others = usize::try_from(config.database_max_connections).unwrap_or(usize::MAX).saturating_add(metrics);
    let reserve = config.api_descriptor_reserve;
    let cap =
        crate::http::connection_cap(config.api_max_connections, nofile, open, others, reserve).ok_or_else(|| {
            Error::Config(format!(
                "the descriptor limit (RLIMIT_NOFILE {}) leaves no room for API connections: {open} open, {others} for \
             the database and metrics, {reserve} kept for OCPP (api_descriptor_reserve); raise `ulimit -n` or lower \
             api_descriptor_reserve",
                nofile.unwrap_or(0)
            ))
        })?;
    if cap < config.api_max_connections {
        tracing::warn!(
            nofile = nofile.unwrap_or(0),
            open,
            reserve,
            cap,
            "API connections capped below api_max_connections to keep descriptors for the OCPP listener"
        );
    }
    Ok(crate::http::ListenerLimits {
        max_connections: cap,
        header_read_timeout: Duration::from_secs(config.api_header_read_timeout_secs),
        idle_timeout: Duration::from_secs(config.api_idle_timeout_secs),
        body_read_timeout: Duration::from_secs(config.api_body_read_timeout_secs),
        max_connections_per_source: config.api_max_connections_per_source,
        limit_loopback: config.api_limit_loopback_connections,
    })
}

/// Issues a server certificate for every tenant host name not served yet
/// (tenants made by the CLI or another node; this node's own are served at once).
async fn add_tenant_hosts(
    store: &Store,
    keys: &KeyBackend,
    clock: &dyn Clock,
    certs: &ServerCertificates,
) -> Result<()> {
    for tenant in store.tenants().await? {
        crate::services::serve_tenant_host(store, keys, clock, certs, &tenant).await?;
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn url_redaction() {
        assert_eq!(super::redact_url("postgres://u:pw@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(super::redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(super::redact_url("sqlite:///x/y.db"), "sqlite:///x/y.db");
    }
}
