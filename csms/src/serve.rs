//! `csms serve`: open everything, bind the listeners, run until stopped.
//! Every other command opens the same way ([`open`]) and stops there.

use std::io::Write;
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
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| Error::io(format!("creating data dir {}", config.data_dir.display()), e))?;
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
    Ok(Opened { config, secrets, keys, store })
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
    add_tenant_hosts(&store, &keys, clock.as_ref(), &provider, &certs).await?;
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
    let local = |e| Error::io("reading a listener's address", e);
    let ocpp_addr = ocpp.local_addr().map_err(local)?;
    let api_addr = api.local_addr().map_err(local)?;
    let plain_addr = plain.as_ref().map(|l| l.local_addr()).transpose().map_err(local)?;

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
    tokio::spawn(async move {
        if let Err(e) = axum::serve(api, router).await {
            tracing::error!(error = %e, "API listener failed");
        }
    });
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
            if let Err(e) = add_tenant_hosts(&refresh_store, &keys, clock.as_ref(), &provider, &certs).await {
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
        let plain_text = plain_addr.map(|a| format!(" plain={a}")).unwrap_or_default();
        writeln!(out, "listening ocpp={ocpp_addr} api={api_addr}{plain_text}")?;
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

/// Issues a server certificate for every tenant host name not served yet.
async fn add_tenant_hosts(
    store: &Store,
    keys: &KeyBackend,
    clock: &dyn Clock,
    provider: &rustls::crypto::CryptoProvider,
    certs: &ServerCertificates,
) -> Result<()> {
    for tenant in store.tenants().await? {
        let Some(host) = tenant.ocpp_hostname.as_deref() else { continue };
        if certs.has_host(host) {
            continue;
        }
        let id = authority::tenant_server_identity(store, keys, clock, &tenant).await?;
        certs.insert(
            host,
            &tenant.id,
            tls::certified_key(provider, &id.chain, id.key_pkcs8.clone()).context("tenant server certificate")?,
        );
        tracing::info!(tenant = %tenant.id, host, "serving the tenant's own server certificate");
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
