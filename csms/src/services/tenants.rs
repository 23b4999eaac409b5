//! Tenants: created with their certificate authorities.

use api::model::NewTenant;

use super::Services;
use super::validate::check_text;
use crate::error::{Error, Result};
use crate::gateway::tls::{self, ServerCertificates};
use crate::ids::{TENANT_ID_RULE, valid_hostname, valid_tenant_id};
use crate::store::{StoreError, Tenant};

/// Longest organisation name (it is the O of every station certificate).
pub const MAX_ORGANIZATION: usize = 64;

impl Services {
    /// A new tenant, its station CA hierarchy and, with its own host name, its
    /// own CSMS root. Its stations can connect at once.
    pub async fn create_tenant(&self, t: NewTenant) -> Result<Tenant> {
        if !valid_tenant_id(&t.name) {
            return Err(Error::invalid("/name", TENANT_ID_RULE));
        }
        let org = t.organization_name.trim();
        if org.is_empty() || org.chars().count() > MAX_ORGANIZATION {
            return Err(Error::invalid("/organizationName", format!("1-{MAX_ORGANIZATION} characters")));
        }
        check_text("/organizationName", org)?;
        // Host names are case-insensitive (DNS, TLS SNI): stored lower-case.
        let host = t.ocpp_hostname.as_deref().map(str::to_ascii_lowercase);
        if let Some(h) = host.as_deref()
            && !valid_hostname(h)
        {
            return Err(Error::invalid("/ocppHostname", "not a DNS host name (such as ocpp.example.com)"));
        }
        // Names and host names (case-insensitively) are unique in the database.
        let store = &self.ctx.store;
        match store.create_tenant(&t.name, org, host.as_deref(), self.now()).await {
            Ok(_) => {}
            Err(StoreError::AlreadyExists { .. }) => {
                return Err(Error::Conflict(format!("tenant '{}' or its host name already exists", t.name)));
            }
            Err(e) => return Err(e.into()),
        }
        let created = crate::authority::ensure_tenant(
            store,
            &self.ctx.keys,
            self.ctx.clock.as_ref(),
            &t.name,
            org,
            host.as_deref(),
        )
        .await
        .map_err(|e| Error::internal(format!("creating the CAs of tenant {}: {e:#}", t.name)))?;
        self.reload_trust().await;
        // The new host name is served with the tenant's own certificate before
        // this returns, not at the next refresh: until then its stations would
        // see the platform certificate.
        if let Some(certs) = &self.server_certs {
            serve_tenant_host(store, &self.ctx.keys, self.ctx.clock.as_ref(), certs, &created)
                .await
                .map_err(|e| Error::internal(format!("serving the server certificate of tenant {}: {e:#}", t.name)))?;
        }
        Ok(created)
    }
}

/// Issues `tenant`'s server certificate for its own host name and serves it
/// (SNI) from now on; nothing when it has no host name or it is served already.
pub(crate) async fn serve_tenant_host(
    store: &crate::store::Store,
    keys: &crate::authority::KeyBackend,
    clock: &dyn crate::clock::Clock,
    certs: &ServerCertificates,
    tenant: &Tenant,
) -> Result<()> {
    let Some(host) = tenant.ocpp_hostname.as_deref() else { return Ok(()) };
    if certs.has_host(host) {
        return Ok(());
    }
    let id = crate::authority::tenant_server_identity(store, keys, clock, tenant).await?;
    let key = tls::certified_key(&tls::provider(), &id.chain, id.key_pkcs8.clone())
        .map_err(|e| Error::internal(format!("tenant server certificate: {e}")))?;
    certs.insert(host, &tenant.id, key);
    tracing::info!(tenant = %tenant.id, host, "serving the tenant's own server certificate");
    Ok(())
}
