//! A tenant's station CAs: rotation of the issuing sub-CA, import of the
//! operator's own CA.

use super::Services;
use crate::error::{Error, Result};
pub use crate::station_ca::ImportKey;
use crate::station_ca::{self, CaAdminError, DEFAULT_OVERLAP_DAYS, MAX_OVERLAP_DAYS, StationCa};

/// The overlap a request asks for (default 30 days), checked.
pub fn overlap_days(days: Option<u32>) -> Result<u32> {
    match days.unwrap_or(DEFAULT_OVERLAP_DAYS) {
        d @ 1..=MAX_OVERLAP_DAYS => Ok(d),
        _ => Err(Error::invalid("/overlapDays", format!("must be 1 to {MAX_OVERLAP_DAYS} days"))),
    }
}

/// `key_field`: where the key came from (`/privateKey` or `/pkcs11KeyLabel`).
fn ca_admin_error(e: CaAdminError, key_field: &str) -> Error {
    match e {
        CaAdminError::Rejected(r) => {
            let field = match r {
                pki::ImportRejection::Key(_) | pki::ImportRejection::KeyMismatch => key_field,
                _ => "/certificateChain",
            };
            Error::invalid(field, CaAdminError::Rejected(r).to_string())
        }
        CaAdminError::Conflict(d) => Error::Conflict(d),
        CaAdminError::Internal(e) => Error::internal(format!("station CA change failed: {e:#}")),
    }
}

impl Services {
    /// The tenant's station CAs: current root, current issuing CA, then the
    /// ones they replaced.
    pub async fn station_cas(&self, tenant: &str) -> Result<Vec<StationCa>> {
        let cas = station_ca::list(&self.ctx.store, tenant)
            .await
            .map_err(|e| Error::internal(format!("reading the station CAs: {e:#}")))?;
        if cas.is_empty() {
            return Err(Error::Unavailable("the tenant's station CA does not exist yet".into()));
        }
        Ok(cas)
    }

    /// Replaces the issuing sub-CA with a new one under the same root; the old
    /// one stays trusted for `overlap_days` (default 30).
    pub async fn rotate_station_ca(&self, tenant: &str, overlap: Option<u32>) -> Result<Vec<StationCa>> {
        let overlap = overlap_days(overlap)?;
        let t = self.own_tenant(tenant).await?;
        station_ca::rotate(&self.ctx.store, &self.ctx.keys, self.ctx.clock.as_ref(), &t, overlap)
            .await
            .map_err(|e| ca_admin_error(e, "/privateKey"))?;
        self.station_ca_changed(tenant).await;
        self.station_cas(tenant).await
    }

    /// Makes an operator's CA (PEM chain up to its root) the station CA.
    pub async fn import_station_ca(
        &self,
        tenant: &str,
        chain_pem: &str,
        key: ImportKey,
        overlap: Option<u32>,
    ) -> Result<Vec<StationCa>> {
        let overlap = overlap_days(overlap)?;
        let key_field = match key {
            ImportKey::Pem(_) => "/privateKey",
            ImportKey::Pkcs11Label(_) => "/pkcs11KeyLabel",
        };
        let t = self.own_tenant(tenant).await?;
        station_ca::import(&self.ctx.store, &self.ctx.keys, self.ctx.clock.as_ref(), &t, chain_pem, key, overlap)
            .await
            .map_err(|e| ca_admin_error(e, key_field))?;
        // Stations chaining to the new root can connect at once.
        self.station_ca_changed(tenant).await;
        self.station_cas(tenant).await
    }

    /// After a rotation or import: this node's PEM files and trust anchors follow.
    async fn station_ca_changed(&self, tenant: &str) {
        if let Err(e) = crate::authority::write_tenant_pem(&self.ctx.store, &self.ctx.config.data_dir, tenant).await {
            tracing::warn!(error = %format!("{e:#}"), "writing the tenant's CA files");
        }
        self.reload_trust().await;
    }
}
