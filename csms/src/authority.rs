//! The CSMS's certificate authorities, kept in the store with sealed keys.
//!
//! Platform (tenant `*`): the CSMS root that stations install as their
//! CSMSRootCertificate, and the TLS server certificate it issues (re-issued at
//! every start for the configured names). Per tenant: a station root and the
//! station sub-CA that signs station certificates.

use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use pki::{CertificateAuthority, MasterKey, StoredCa};
use time::{Duration, OffsetDateTime};

use crate::clock::{Clock, unix_millis};
use crate::store::{CertificateRecord, CredentialRecord, PLATFORM, Store, StoreError, Tenant};

pub const CSMS_ROOT: &str = "csms-root";
pub const SERVER: &str = "server";
pub const STATION_ROOT: &str = "station-root";
pub const STATION_CA: &str = "station-ca";

/// Secrets the process needs before it can read its own keys.
pub struct Secrets {
    pub master: std::sync::Arc<MasterKey>,
    pub jwt_secret: Vec<u8>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(..)")
    }
}

/// `ANCHORPOINT_MASTER_KEY` / `ANCHORPOINT_JWT_SECRET` (base64), else files in the
/// data directory, created with mode 0600 on first use.
pub fn load_secrets(data_dir: &Path) -> anyhow::Result<Secrets> {
    let master = secret_bytes(data_dir.join("master.key"), "ANCHORPOINT_MASTER_KEY")?;
    let master = MasterKey::from_bytes(&master).context("master key must be 32 bytes")?;
    let jwt_secret = secret_bytes(data_dir.join("jwt.secret"), "ANCHORPOINT_JWT_SECRET")?;
    Ok(Secrets { master: std::sync::Arc::new(master), jwt_secret })
}

fn secret_bytes(path: PathBuf, env: &str) -> anyhow::Result<Vec<u8>> {
    if let Ok(v) = std::env::var(env) {
        return B64.decode(v.trim()).with_context(|| format!("{env} is not base64"));
    }
    let read = |path: &Path| -> anyhow::Result<Vec<u8>> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        B64.decode(text.trim()).with_context(|| format!("{} is not base64", path.display()))
    };
    if path.exists() {
        return read(&path);
    }
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::SecureRandom::fill(&aws_lc_rs::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| anyhow::anyhow!("random number generator failed"))?;
    // Written aside, then linked into place: a concurrent reader never sees a
    // partial file, and of two processes creating it at once one wins cleanly.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    write_private(&tmp, &format!("{}\n", B64.encode(bytes)))?;
    let linked = std::fs::hard_link(&tmp, &path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(bytes.to_vec()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read(&path),
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
    }
}

/// Writes a file readable by its owner only.
pub fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

fn label(tenant: &str, name: &str) -> String {
    format!("tenant:{tenant}/credential:{name}")
}

/// Marks a credential whose key lives in the HSM; the rest is the token label.
const HSM_MARKER: &[u8] = b"pkcs11:";

static HSM: std::sync::OnceLock<std::sync::Arc<pki::Pkcs11Token>> = std::sync::OnceLock::new();

/// Makes CA keys created from now on live in this PKCS#11 token (configured
/// with `pkcs11_module`, `pkcs11_token`, `pkcs11_pin`).
pub fn use_hsm(token: std::sync::Arc<pki::Pkcs11Token>) {
    let _ = HSM.set(token);
}

/// A new CA hierarchy for `tenant`: keys in the HSM when one is configured.
fn new_hierarchy(
    tenant: &str,
    organization: &str,
    root_cn: &str,
    now: OffsetDateTime,
) -> anyhow::Result<pki::Hierarchy> {
    match HSM.get() {
        None => Ok(pki::generate_hierarchy(organization, root_cn, now)?),
        Some(token) => {
            let unique = now.unix_timestamp_nanos();
            Ok(pki::generate_hierarchy_with(organization, root_cn, now, &mut |role| {
                Ok(pki::CaKey::Pkcs11(token.generate_key(&format!("anchorpoint/{tenant}/{role}/{unique}"))?))
            })?)
        }
    }
}

/// A key for a new CA: in the HSM when one is configured, else in software
/// (sealed under the master key when stored).
pub fn new_ca_key(tenant: &str, role: &str, now: OffsetDateTime) -> anyhow::Result<pki::CaKey> {
    Ok(match HSM.get() {
        Some(token) => pki::CaKey::Pkcs11(
            token.generate_key(&format!("anchorpoint/{tenant}/{role}/{}", now.unix_timestamp_nanos()))?,
        ),
        None => pki::CaKey::software()?,
    })
}

/// An existing key in the configured HSM, by label.
pub fn hsm_key(key_label: &str) -> anyhow::Result<pki::CaKey> {
    let token = HSM.get().context("no PKCS#11 token is configured")?;
    Ok(pki::CaKey::Pkcs11(token.key(key_label)?))
}

/// The stored form of a CA: a sealed software key or the HSM key's label.
/// `extra_pem` (certificates above an operator's sub-CA) follows the CA's own.
pub fn credential_record(
    master: &MasterKey,
    tenant: &str,
    name: &str,
    ca: &CertificateAuthority,
    extra_pem: &str,
) -> anyhow::Result<CredentialRecord> {
    let base = name.split('@').next().unwrap_or(name);
    let mut rec = match ca.hsm_key_label() {
        // The key stays in the token; the row names it.
        Some(key_label) => CredentialRecord {
            cert_pem: ca.cert_pem().to_owned(),
            sealed_key: [HSM_MARKER, key_label.as_bytes()].concat(),
        },
        None => {
            let stored = ca.to_stored(master, &label(tenant, base))?;
            CredentialRecord { cert_pem: stored.cert_pem, sealed_key: stored.sealed_key }
        }
    };
    if !rec.cert_pem.ends_with('\n') {
        rec.cert_pem.push('\n');
    }
    rec.cert_pem.push_str(extra_pem);
    Ok(rec)
}

/// Stores CAs that belong together, unless another process already stored them.
async fn store_cas(
    store: &Store,
    master: &MasterKey,
    tenant: &str,
    cas: &[(&str, &CertificateAuthority)],
    now: i64,
) -> anyhow::Result<bool> {
    let mut records = Vec::with_capacity(cas.len());
    for (name, ca) in cas {
        records.push((*name, credential_record(master, tenant, name, ca, "")?));
    }
    let refs: Vec<(&str, &CredentialRecord)> = records.iter().map(|(n, c)| (*n, c)).collect();
    Ok(store.insert_credentials(tenant, &refs, now).await?)
}

pub async fn load_ca(
    store: &Store,
    master: &MasterKey,
    tenant: &str,
    name: &str,
) -> anyhow::Result<CertificateAuthority> {
    let rec = store.credential(tenant, name).await?.with_context(|| format!("no {name} for tenant {tenant}"))?;
    open_ca(master, tenant, name, rec)
}

/// Opens a stored CA. Its PEM may hold certificates above the CA (an imported
/// operator sub-CA's intermediates); the first one is the CA.
pub fn open_ca(
    master: &MasterKey,
    tenant: &str,
    name: &str,
    mut rec: CredentialRecord,
) -> anyhow::Result<CertificateAuthority> {
    if rec.sealed_key.is_empty() {
        anyhow::bail!("the private key of the {name} of tenant {tenant} is held by its operator, not by Anchorpoint");
    }
    let der = pki::pem_to_der_chain(&rec.cert_pem)?;
    if der.len() > 1 {
        rec.cert_pem = pki::certificate_pem(&der[0]);
    }
    if let Some(key_label) = rec.sealed_key.strip_prefix(HSM_MARKER) {
        let token =
            HSM.get().with_context(|| format!("the {name} of tenant {tenant} is in an HSM, and none is configured"))?;
        let key_label = std::str::from_utf8(key_label).context("HSM key label")?;
        let key = token.key(key_label)?;
        let first = der.into_iter().next().context("stored CA holds no certificate")?;
        return Ok(CertificateAuthority::from_certificate_and_key(first, pki::CaKey::Pkcs11(key))?);
    }
    // Sealed keys stay bound to the name the CA was created under.
    let base = name.split('@').next().unwrap_or(name);
    let stored = StoredCa { cert_pem: rec.cert_pem, sealed_key: rec.sealed_key };
    CertificateAuthority::from_stored(&stored, master, &label(tenant, base))
        .with_context(|| format!("opening {name} of tenant {tenant} (wrong master key?)"))
}

/// Creates the tenant and its station CA hierarchy if they do not exist yet.
/// A tenant with its own OCPP host name also gets its own CSMS root.
pub async fn ensure_tenant(
    store: &Store,
    master: &MasterKey,
    clock: &dyn Clock,
    id: &str,
    organization: &str,
    ocpp_hostname: Option<&str>,
) -> anyhow::Result<Tenant> {
    let tenant = match store.tenant(id).await? {
        Some(t) => t,
        None => match store.create_tenant(id, organization, ocpp_hostname, clock.now_millis()).await {
            Ok(t) => t,
            // Another node created it meanwhile.
            Err(StoreError::AlreadyExists { .. }) => store.tenant(id).await?.context("tenant vanished")?,
            Err(e) => return Err(e.into()),
        },
    };
    // CN is limited to 64 characters (RFC 5280).
    let short: String = tenant.organization.chars().take(40).collect();
    if store.credential(id, STATION_CA).await?.is_none() {
        let h = new_hierarchy(id, &tenant.organization, &format!("{short} Station Root CA"), clock.now())?;
        let now = clock.now_millis();
        store_cas(store, master, id, &[(STATION_ROOT, &h.root), (STATION_CA, &h.station_ca)], now).await?;
    }
    if tenant.ocpp_hostname.is_some() && store.credential(id, CSMS_ROOT).await?.is_none() {
        let h = new_hierarchy(id, &tenant.organization, &format!("{short} CSMS Root CA"), clock.now())?;
        store_cas(store, master, id, &[(CSMS_ROOT, &h.root)], clock.now_millis()).await?;
    }
    Ok(tenant)
}

/// A DNS host name: labels of letters, digits and '-', at most 253 characters.
pub fn valid_hostname(h: &str) -> bool {
    h.len() <= 253
        && h.split('.').count() >= 2
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Validates a tenant id: 1-63 of `[a-z0-9-]`, not starting with '-'.
pub fn valid_tenant_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 63
        && !id.starts_with('-')
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The server's certificate chain (DER, leaf first), its PKCS#8 key, and the
/// CSMS root (PEM) stations must trust.
pub struct ServerIdentity {
    pub chain: Vec<Vec<u8>>,
    pub key_pkcs8: Vec<u8>,
    pub root_pem: String,
}

impl std::fmt::Debug for ServerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerIdentity(..)")
    }
}

/// Ensures the platform CSMS root exists and issues a fresh server certificate.
pub async fn server_identity(
    store: &Store,
    master: &MasterKey,
    clock: &dyn Clock,
    names: &[String],
) -> anyhow::Result<ServerIdentity> {
    if store.credential(PLATFORM, CSMS_ROOT).await?.is_none() {
        let h = new_hierarchy(PLATFORM, "Anchorpoint", "Anchorpoint CSMS Root CA", clock.now())?;
        store_cas(store, master, PLATFORM, &[(CSMS_ROOT, &h.root)], clock.now_millis()).await?;
    }
    issue_server_identity(store, master, clock, PLATFORM, names).await
}

/// Issues a server certificate for a tenant's own host name under its own CSMS root.
pub async fn tenant_server_identity(
    store: &Store,
    master: &MasterKey,
    clock: &dyn Clock,
    tenant: &Tenant,
) -> anyhow::Result<ServerIdentity> {
    let host = tenant.ocpp_hostname.clone().context("tenant has no OCPP host name")?;
    issue_server_identity(store, master, clock, &tenant.id, &[host]).await
}

async fn issue_server_identity(
    store: &Store,
    master: &MasterKey,
    clock: &dyn Clock,
    tenant: &str,
    names: &[String],
) -> anyhow::Result<ServerIdentity> {
    let root = load_ca(store, master, tenant, CSMS_ROOT).await?;
    let now = clock.now();
    let (cert, key) = root.issue_server_certificate(names, now - Duration::minutes(5), now + Duration::days(365))?;
    let sealed = key.seal(master, &label(tenant, SERVER))?;
    store
        .replace_credential(
            tenant,
            SERVER,
            &CredentialRecord { cert_pem: cert.pem.clone(), sealed_key: sealed },
            clock.now_millis(),
        )
        .await?;
    Ok(ServerIdentity {
        chain: vec![cert.der],
        key_pkcs8: key.pkcs8_der().to_vec(),
        root_pem: root.cert_pem().to_owned(),
    })
}

/// Station roots of all tenants as (tenant, DER), for client-certificate checks:
/// current roots and replaced ones still within their overlap.
pub async fn station_trust_roots(store: &Store, now_ms: i64) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for (tenant, pem) in store.trusted_station_roots(now_ms).await? {
        for der in pki::pem_to_der_chain(&pem)? {
            out.push((tenant.clone(), der));
        }
    }
    Ok(out)
}

#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("station '{0}' not found")]
    UnknownStation(String),
    #[error("CSR rejected ({rule}): {detail}")]
    Csr { rule: &'static str, detail: String },
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Manufacturing-time enrollment: signs the station's CSR with its tenant's
/// station CA and returns the PEM chain (leaf, then sub-CA).
pub async fn enroll(
    store: &Store,
    master: &MasterKey,
    now: OffsetDateTime,
    station_id: &str,
    csr_pem: &str,
    validity_days: u32,
    public_url: &str,
) -> Result<(String, CertificateRecord), EnrollError> {
    let station = store
        .station(station_id)
        .await
        .map_err(|e| EnrollError::Internal(e.into()))?
        .ok_or_else(|| EnrollError::UnknownStation(station_id.to_owned()))?;
    let tenant = store
        .tenant(&station.tenant_id)
        .await
        .map_err(|e| EnrollError::Internal(e.into()))?
        .ok_or_else(|| EnrollError::Internal(anyhow::anyhow!("tenant of station missing")))?;
    let csr = pki::validate_csr(csr_pem, station_id)
        .and_then(|c| c.check_organization(&tenant.organization).map(|()| c))
        .map_err(|r| EnrollError::Csr { rule: r.rule(), detail: r.to_string() })?;
    let validity =
        Validity { not_before: now - Duration::minutes(5), not_after: now + Duration::days(i64::from(validity_days)) };
    issue_for(&Signer { store, master, public_url, writes: None }, &tenant, station_id, &csr, validity, now).await
}

/// What issuing needs besides the request: where CA keys are and how to open
/// them, and the CSMS's public base URL (for the CRL and OCSP extensions).
pub struct Signer<'a> {
    pub store: &'a Store,
    pub master: &'a MasterKey,
    pub public_url: &'a str,
    /// Persist through this group commit (many issuances per transaction under
    /// load) instead of one transaction each.
    pub writes: Option<&'a crate::group_commit::GroupCommit>,
}

/// Where the CRL of a tenant's issuing CA `ca_id` and the tenant's OCSP responder
/// are published, under the CSMS's public base URL (`Config::public_url`). Each
/// issuing CA has its own CRL, so certificates of a replaced CA keep a CRL that
/// its key signs.
pub fn revocation_endpoints(public_url: &str, tenant: &str, ca_id: &str) -> pki::RevocationEndpoints {
    let base = public_url.trim_end_matches('/');
    pki::RevocationEndpoints {
        crl_url: Some(format!("{base}/pki/{tenant}/ca/{ca_id}.crl")),
        ocsp_url: Some(format!("{base}/ocsp/{tenant}")),
    }
}

/// Validity window of a certificate to issue.
#[derive(Debug, Clone, Copy)]
pub struct Validity {
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

/// Issues and records a station certificate for an explicit validity window.
pub async fn issue_for(
    signer: &Signer<'_>,
    tenant: &Tenant,
    station_id: &str,
    csr: &pki::ValidatedCsr,
    validity: Validity,
    now: OffsetDateTime,
) -> Result<(String, CertificateRecord), EnrollError> {
    let Signer { store, master, public_url, writes } = *signer;
    let Validity { not_before, not_after } = validity;
    let rec = store
        .credential(&tenant.id, STATION_CA)
        .await
        .map_err(|e| EnrollError::Internal(e.into()))?
        .with_context(|| format!("no {STATION_CA} for tenant {}", tenant.id))?;
    let issuer_chain = rec.cert_pem.clone();
    let mut ca = open_ca(master, &tenant.id, STATION_CA, rec)?;
    let ca_id = ca.id();
    ca.set_revocation_endpoints(revocation_endpoints(public_url, &tenant.id, &ca_id));
    let cert =
        ca.issue_station_certificate(csr, &tenant.organization, not_before, not_after).map_err(anyhow::Error::from)?;
    let record = CertificateRecord {
        tenant_id: tenant.id.clone(),
        serial_hex: cert.serial_hex.clone(),
        station_id: station_id.to_owned(),
        fingerprint: cert.sha256_fingerprint_hex.clone(),
        not_before: unix_millis(cert.not_before),
        not_after: unix_millis(cert.not_after),
        cert_pem: cert.pem.clone(),
        issued_at: unix_millis(now),
        revoked_at: None,
        revocation_reason: None,
        issuer_id: Some(ca_id),
    };
    match writes {
        Some(w) => w.write(crate::store::StationWrite::Certificate(Box::new(record.clone()))).await,
        None => store.record_certificate(&record).await,
    }
    .map_err(|e| EnrollError::Internal(e.into()))?;
    Ok((chain_pem(&cert.pem, &issuer_chain), record))
}

/// What stations are handed: the leaf, then the issuing CA (and, for an
/// operator's sub-CA, the intermediates above it), PEM.
pub fn chain_pem(leaf: &str, issuer: &str) -> String {
    let mut chain = leaf.to_owned();
    if !chain.ends_with('\n') {
        chain.push('\n');
    }
    chain.push_str(issuer);
    chain
}

/// Public PEM files for people and scripts: `<data>/pki/...`.
pub async fn write_public_pem(store: &Store, data_dir: &Path, root_pem: &str) -> anyhow::Result<PathBuf> {
    let dir = data_dir.join("pki");
    std::fs::create_dir_all(&dir)?;
    let root_path = dir.join("csms-root.pem");
    std::fs::write(&root_path, root_pem)?;
    for tenant in store.tenants().await? {
        write_tenant_pem(store, data_dir, &tenant.id).await?;
    }
    Ok(root_path)
}

/// A tenant's current CA certificates under `<data>/pki/tenants/<tenant>/`.
pub async fn write_tenant_pem(store: &Store, data_dir: &Path, tenant: &str) -> anyhow::Result<()> {
    let tdir = data_dir.join("pki").join("tenants").join(tenant);
    std::fs::create_dir_all(&tdir)?;
    for name in [STATION_ROOT, STATION_CA, CSMS_ROOT] {
        if let Some(c) = store.credential(tenant, name).await? {
            std::fs::write(tdir.join(format!("{name}.pem")), c.cert_pem)?;
        }
    }
    Ok(())
}

/// Credential names of the API token signing keys (platform-wide).
pub const JWT_ES256: &str = "jwt-es256";
pub const JWT_EDDSA: &str = "jwt-eddsa";

/// The API token authenticator for `alg`. HS256 uses the `jwt.secret`; ES256 and
/// EdDSA use a key pair generated on first use and kept sealed under the master
/// key in the database, so every node and the CLI share it.
pub async fn jwt_authenticator(
    store: &Store,
    secrets: &Secrets,
    alg: api::auth::Algorithm,
    now_ms: i64,
) -> anyhow::Result<api::auth::Authenticator> {
    use api::auth::{Algorithm, Authenticator};
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
    let name = match alg {
        Algorithm::HS256 => return Ok(Authenticator::hs256(&secrets.jwt_secret)),
        Algorithm::ES256 => JWT_ES256,
        Algorithm::EdDSA => JWT_EDDSA,
    };
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let label = label(PLATFORM, name);
    if store.credential(PLATFORM, name).await?.is_none() {
        let pkcs8 = match alg {
            Algorithm::ES256 => EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng),
            _ => Ed25519KeyPair::generate_pkcs8(&rng),
        }
        .map_err(|_| anyhow::anyhow!("generating the {name} key failed"))?;
        let sealed = secrets.master.seal(pkcs8.as_ref(), &label)?;
        // Another process may store its key first; then that one is used.
        let rec = CredentialRecord { cert_pem: String::new(), sealed_key: sealed };
        store.insert_credentials(PLATFORM, &[(name, &rec)], now_ms).await?;
    }
    let rec = store.credential(PLATFORM, name).await?.with_context(|| format!("{name} vanished"))?;
    let pkcs8 =
        secrets.master.open(&rec.sealed_key, &label).context("opening the API token key (wrong master key?)")?;
    Ok(match alg {
        Algorithm::ES256 => {
            let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8)
                .map_err(|_| anyhow::anyhow!("the stored ES256 key is invalid"))?;
            Authenticator::es256(&pkcs8, pair.public_key().as_ref())
        }
        _ => {
            let pair =
                Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|_| anyhow::anyhow!("the stored EdDSA key is invalid"))?;
            Authenticator::eddsa(&pkcs8, pair.public_key().as_ref())
        }
    })
}

/// A certificate serial as stored: lower-case hex of the serial's bytes without
/// leading zero bytes. Accepts what people paste: `0x` prefix, `:` separators,
/// any case, extra or missing leading zeros (`A12`, `0a12`, `00:0A:12`).
pub fn canonical_serial(input: &str) -> Option<String> {
    let s = input.trim();
    let s = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")).unwrap_or(s);
    let hex: String = s.chars().filter(|c| *c != ':').collect::<String>().to_ascii_lowercase();
    if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let digits = hex.trim_start_matches('0');
    if digits.is_empty() {
        return Some("00".into());
    }
    Some(if digits.len() % 2 == 1 { format!("0{digits}") } else { digits.to_owned() })
}

#[cfg(test)]
mod tests {
    #[test]
    fn serials_in_any_spelling() {
        for s in ["a12", "0A12", "00:0a:12", "0x0a12", " A12 "] {
            assert_eq!(super::canonical_serial(s).as_deref(), Some("0a12"), "{s}");
        }
        assert_eq!(super::canonical_serial("7f01").as_deref(), Some("7f01"));
        assert_eq!(super::canonical_serial("xyz"), None);
        assert_eq!(super::canonical_serial(""), None);
    }
}
