//! A tenant's station CAs over time: rotation of the issuing sub-CA with an
//! overlap, and import of an operator's own root or sub-CA.
//!
//! The current CAs are the credentials `station-root` and `station-ca`. A
//! replaced one keeps its row as `station-root@<id>` / `station-ca@<id>` with
//! the time it was replaced and the end of its overlap (`trusted_until`). During
//! the overlap its certificates are still accepted, its CRL and OCSP answers
//! stay published, and automatic renewal moves its stations to the current CA.
//! After the overlap the gateway refuses its certificates; the CRL and OCSP
//! answers stay published.

use crate::error::{Context, Error, Result};
use pki::{CertificateAuthority, ImportRejection};
use time::Duration;

use crate::authority::{self, KeyBackend, STATION_CA, STATION_ROOT};
use crate::clock::Clock;
use crate::store::{CaRow, CredentialRecord, Retirement, Store, Tenant};

/// Overlap when a request names none.
pub const DEFAULT_OVERLAP_DAYS: u32 = 30;
/// Longest overlap accepted.
pub const MAX_OVERLAP_DAYS: u32 = 3650;
/// Validity of a new issuing sub-CA, capped by its root.
const SUB_CA_YEARS: i32 = pki::STATION_CA_VALIDITY_YEARS;

/// One station CA of a tenant, as stored.
#[derive(Debug, Clone)]
pub struct StationCa {
    /// [`pki::ca_id`] of the certificate.
    pub id: String,
    pub root: bool,
    pub current: bool,
    pub info: pki::CertInfo,
    pub row: CaRow,
}

impl StationCa {
    pub fn hsm(&self) -> bool {
        self.row.sealed_key.starts_with(b"pkcs11:")
    }

    /// An operator's root imported without its key.
    pub fn key_with_operator(&self) -> bool {
        self.row.sealed_key.is_empty()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CaAdminError {
    #[error("{}", rejected(.0))]
    Rejected(ImportRejection),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Internal(#[from] Error),
}

fn rejected(r: &ImportRejection) -> String {
    format!("{} refused by rule {}: {r}", what(r), r.rule())
}

/// What an import rejection is about: the key or the certificates.
pub fn what(r: &ImportRejection) -> &'static str {
    match r {
        ImportRejection::Key(_) | ImportRejection::KeyMismatch => "private key",
        _ => "CA certificate chain",
    }
}

/// The tenant's station CAs: current root, current issuing CA, then replaced
/// ones, newest first.
pub async fn list(store: &Store, tenant: &str) -> Result<Vec<StationCa>> {
    let mut out = Vec::new();
    for base in [STATION_ROOT, STATION_CA] {
        for row in store.station_cas(tenant, base).await? {
            let der = pki::pem_to_der_chain(&row.cert_pem)?.into_iter().next().context("empty CA row")?;
            let info = pki::inspect_certificate(&der)?;
            out.push(StationCa {
                id: pki::ca_id(&der),
                root: base == STATION_ROOT,
                current: row.name == base,
                info,
                row,
            });
        }
    }
    out.sort_by_key(|c| (!c.current, !c.root, -c.row.replaced_at.unwrap_or(0)));
    Ok(out)
}

/// One of a tenant's issuing CAs, current or replaced, not yet opened.
#[derive(Debug)]
pub struct IssuingCa {
    /// [`pki::ca_id`] of the certificate.
    pub id: String,
    pub current: bool,
    /// The CA certificate (DER).
    pub der: Vec<u8>,
    pub created_at: i64,
    row: CaRow,
}

impl IssuingCa {
    /// Opens the CA's key (unsealing it, or finding it in the HSM).
    /// Unsealing is CPU work: this runs on a blocking thread.
    pub async fn open(self, keys: &KeyBackend, tenant: &str) -> Result<CertificateAuthority> {
        let rec = CredentialRecord { cert_pem: self.row.cert_pem, sealed_key: self.row.sealed_key };
        keys.open_blocking(tenant, &self.row.name, rec).await
    }

    /// Opens the CA's key on the calling thread: for work that is already on a
    /// blocking thread (signing a CRL or an OCSP answer right after).
    pub fn open_here(self, keys: &KeyBackend, tenant: &str) -> Result<CertificateAuthority> {
        let rec = CredentialRecord { cert_pem: self.row.cert_pem, sealed_key: self.row.sealed_key };
        keys.open(tenant, &self.row.name, rec)
    }
}

/// The tenant's issuing CAs, current first, then replaced ones oldest first.
pub async fn issuing_cas(store: &Store, tenant: &str) -> Result<Vec<IssuingCa>> {
    let mut out = Vec::new();
    for row in store.station_cas(tenant, STATION_CA).await? {
        let der = pki::pem_to_der_chain(&row.cert_pem)?.into_iter().next().context("empty CA row")?;
        out.push(IssuingCa {
            id: pki::ca_id(&der),
            current: row.name == STATION_CA,
            der,
            created_at: row.created_at,
            row,
        });
    }
    out.sort_by_key(|c| (!c.current, c.created_at));
    Ok(out)
}

/// What a station holding a certificate of `issuer_id` is given above its leaf:
/// the stored PEM of that issuing CA (the current one for `None`).
pub async fn issuer_chain(store: &Store, tenant: &str, issuer_id: Option<&str>) -> Result<Option<String>> {
    Ok(issuing_cas(store, tenant)
        .await?
        .into_iter()
        .find(|c| issuer_id.map_or(c.current, |id| c.id == id))
        .map(|c| c.row.cert_pem))
}

fn current(cas: &[StationCa], root: bool) -> Result<&StationCa> {
    cas.iter()
        .find(|c| c.current && c.root == root)
        .with_context(|| format!("the tenant has no current {}", if root { STATION_ROOT } else { STATION_CA }))
}

fn overlap_end(now: i64, overlap_days: u32) -> i64 {
    now + Duration::days(i64::from(overlap_days)).whole_milliseconds() as i64
}

/// Replaces the issuing sub-CA with a new one under the same root. The old one
/// stays trusted for `overlap_days`. Needs the root's key.
pub async fn rotate(
    store: &Store,
    keys: &KeyBackend,
    clock: &dyn Clock,
    tenant: &Tenant,
    overlap_days: u32,
) -> Result<StationCa, CaAdminError> {
    let cas = list(store, &tenant.id).await?;
    let (root_row, old) = (current(&cas, true)?, current(&cas, false)?);
    if root_row.key_with_operator() {
        return Err(CaAdminError::Conflict(
            "the station root's key is held by the operator: import a new sub-CA signed by it instead".into(),
        ));
    }
    let root = authority::load_ca(store, keys, &tenant.id, STATION_ROOT).await?;
    let now = clock.now();
    // Key generation and signing (in software or in the token) off the async runtime.
    let (k, t, org) = (keys.clone(), tenant.id.clone(), tenant.organization.clone());
    let (sub, rec) = blocking(move || {
        let key = k.new_ca_key(&t, "station-ca", now)?;
        let sub = root.issue_station_sub_ca(&org, now, SUB_CA_YEARS, key).context("new sub-CA")?;
        let rec = k.record(&t, STATION_CA, &sub, "")?;
        Ok((sub, rec))
    })
    .await?;
    let retire =
        [Retirement { name: STATION_CA, cert_pem: &old.row.cert_pem, new_name: format!("{STATION_CA}@{}", old.id) }];
    let now_ms = clock.now_millis();
    let done = store
        .replace_station_cas(
            &tenant.id,
            &old.id,
            &retire,
            &[(STATION_CA, &rec)],
            now_ms,
            overlap_end(now_ms, overlap_days),
        )
        .await
        .map_err(Error::from)?;
    if !done {
        return Err(CaAdminError::Conflict("the station CA changed meanwhile; look again and retry".into()));
    }
    tracing::info!(tenant = %tenant.id, old = %old.id, new = %sub.id(), overlap_days, "issuing sub-CA rotated");
    let new_id = sub.id();
    list(store, &tenant.id).await?.into_iter().find(|c| c.id == new_id).context("new CA vanished").map_err(Into::into)
}

/// Labels of PKCS#11 keys a tenant may import: the platform operator puts an
/// operator's key in the token under `import/<tenant>/...`.
pub fn import_label_prefix(tenant: &str) -> String {
    format!("import/{tenant}/")
}

/// Where an imported CA's key is read from, on the blocking thread.
enum KeySource {
    Pem(String),
    Token(String),
}

/// Runs CPU or device work (key generation, signing, unsealing) on a blocking
/// thread, off the async runtime.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, CaAdminError> + Send + 'static,
) -> Result<T, CaAdminError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| CaAdminError::Internal(Error::internal(e)))?
}

/// The key of an operator's CA being imported.
pub enum ImportKey {
    /// PKCS#8 PEM; sealed under the master key, never returned or logged.
    Pem(String),
    /// A key already in the configured PKCS#11 token.
    Pkcs11Label(String),
}

/// Makes an operator's CA the tenant's station CA. A self-signed root becomes
/// the station root and gets a new issuing sub-CA; a sub-CA (with the
/// certificates above it up to its root) issues directly, and its root becomes
/// the trust anchor. The previous root and sub-CA stay trusted for `overlap_days`.
pub async fn import(
    store: &Store,
    keys: &KeyBackend,
    clock: &dyn Clock,
    tenant: &Tenant,
    chain_pem: &str,
    key: ImportKey,
    overlap_days: u32,
) -> Result<Vec<StationCa>, CaAdminError> {
    let key = match key {
        ImportKey::Pem(pem) => KeySource::Pem(pem),
        ImportKey::Pkcs11Label(l) => {
            // A tenant may use only keys put in the token for it, and none already in use.
            let prefix = import_label_prefix(&tenant.id);
            if !l.starts_with(&prefix) || l.len() == prefix.len() {
                return Err(CaAdminError::Rejected(ImportRejection::Key(format!(
                    "a PKCS#11 key label for this tenant starts with '{prefix}'"
                ))));
            }
            if store.hsm_label_in_use(&l).await.map_err(Error::from)? {
                return Err(CaAdminError::Conflict(format!("the PKCS#11 key '{l}' is already in use")));
            }
            KeySource::Token(l)
        }
    };
    let now = clock.now();
    // Reading the key, checking the chain (and its probe signature) off the async runtime.
    let (k, chain) = (keys.clone(), chain_pem.to_owned());
    let imported = blocking(move || {
        let key = match key {
            KeySource::Pem(pem) => pki::software_key_from_pem(&pem).map_err(CaAdminError::Rejected)?,
            KeySource::Token(l) => k
                .token_key(&l)
                .map_err(|e| CaAdminError::Rejected(ImportRejection::Key(format!("PKCS#11 key '{l}': {e:#}"))))?,
        };
        pki::import_ca(&chain, key, now).map_err(CaAdminError::Rejected)
    })
    .await?;
    let cas = list(store, &tenant.id).await?;
    let (old_root, old_sub) = (current(&cas, true)?, current(&cas, false)?);
    if cas.iter().any(|c| c.id == imported.ca.id()) {
        return Err(CaAdminError::Conflict(format!(
            "CA {} is already one of this tenant's station CAs",
            imported.ca.id()
        )));
    }
    let t = &tenant.id;
    let (is_root, imported_id) = (imported.is_root(), imported.ca.id());
    let (k, tt, org) = (keys.clone(), t.clone(), tenant.organization.clone());
    let (root_rec, sub_rec) = blocking(move || {
        if imported.is_root() {
            let key = k.new_ca_key(&tt, "station-ca", now)?;
            let sub = imported.ca.issue_station_sub_ca(&org, now, SUB_CA_YEARS, key).context("new sub-CA")?;
            Ok((k.record(&tt, STATION_ROOT, &imported.ca, "")?, k.record(&tt, STATION_CA, &sub, "")?))
        } else {
            let (intermediates, root) = imported.above.split_at(imported.above.len() - 1);
            let extra: String = intermediates.iter().map(|d| pki::certificate_pem(d)).collect();
            // Anchorpoint never holds the operator root's key.
            Ok((
                CredentialRecord { cert_pem: pki::certificate_pem(&root[0]), sealed_key: Vec::new() },
                k.record(&tt, STATION_CA, &imported.ca, &extra)?,
            ))
        }
    })
    .await?;
    let mut retire = vec![Retirement {
        name: STATION_CA,
        cert_pem: &old_sub.row.cert_pem,
        new_name: format!("{STATION_CA}@{}", old_sub.id),
    }];
    let mut inserts = vec![(STATION_CA, &sub_rec)];
    // A new sub-CA under the root already in place leaves the root as it is.
    let same_root = pki::pem_to_der_chain(&root_rec.cert_pem).map_err(Error::from)?.first().map(|d| pki::ca_id(d))
        == Some(old_root.id.clone());
    if !same_root {
        retire.push(Retirement {
            name: STATION_ROOT,
            cert_pem: &old_root.row.cert_pem,
            new_name: format!("{STATION_ROOT}@{}", old_root.id),
        });
        inserts.push((STATION_ROOT, &root_rec));
    }
    let now_ms = clock.now_millis();
    let done = store
        .replace_station_cas(t, &old_sub.id, &retire, &inserts, now_ms, overlap_end(now_ms, overlap_days))
        .await
        .map_err(Error::from)?;
    if !done {
        return Err(CaAdminError::Conflict("the station CA changed meanwhile; look again and retry".into()));
    }
    tracing::info!(tenant = %t, root = is_root, ca = %imported_id, overlap_days, "operator CA imported");
    Ok(list(store, t).await?)
}
