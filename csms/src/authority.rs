//! The CSMS's certificate authorities, kept in the store with sealed keys.
//!
//! Platform (tenant `*`): the CSMS root that stations install as their
//! CSMSRootCertificate, and the TLS server certificate it issues (re-issued at
//! every start for the configured names). Per tenant: a station root and the
//! station sub-CA that signs station certificates.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Context, Error, Result};
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
    pub master: Arc<MasterKey>,
    pub jwt_secret: Vec<u8>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(..)")
    }
}

/// `ANCHORPOINT_MASTER_KEY` / `ANCHORPOINT_JWT_SECRET` (base64), else files in the
/// data directory, created with mode 0600 on first use.
pub fn load_secrets(data_dir: &Path) -> Result<Secrets> {
    let master = secret_bytes(data_dir.join("master.key"), "ANCHORPOINT_MASTER_KEY")?;
    let master = MasterKey::from_bytes(&master).map_err(|e| Error::Config(format!("the master key: {e}")))?;
    let jwt_secret = secret_bytes(data_dir.join("jwt.secret"), "ANCHORPOINT_JWT_SECRET")?;
    Ok(Secrets { master: Arc::new(master), jwt_secret })
}

fn secret_bytes(path: PathBuf, env: &str) -> Result<Vec<u8>> {
    if let Ok(v) = std::env::var(env) {
        return B64.decode(v.trim()).map_err(|_| Error::Config(format!("{env} is not base64")));
    }
    let read = |path: &Path| -> Result<Vec<u8>> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        B64.decode(text.trim()).map_err(|_| Error::Config(format!("{} is not base64", path.display())))
    };
    if path.exists() {
        return read(&path);
    }
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::SecureRandom::fill(&aws_lc_rs::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| Error::internal("random number generator failed"))?;
    // Written aside, then linked into place: a concurrent reader never sees a
    // partial file, and of two processes creating it at once one wins cleanly.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    write_private(&tmp, &format!("{}\n", B64.encode(bytes)))?;
    let linked = std::fs::hard_link(&tmp, &path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(bytes.to_vec()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read(&path),
        Err(e) => Err(Error::io(format!("creating {}", path.display()), e)),
    }
}

/// Writes a file readable by its owner only.
pub fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
    let written = |e| Error::io(format!("writing {}", path.display()), e);
    f.write_all(contents.as_bytes()).map_err(written)?;
    f.sync_all().map_err(written)?;
    Ok(())
}

fn label(tenant: &str, name: &str) -> String {
    format!("tenant:{tenant}/credential:{name}")
}

/// Marks a credential whose key lives in the HSM; the rest is the token label.
const HSM_MARKER: &[u8] = b"pkcs11:";

/// Where CA private keys live: in software, sealed under the master key, or,
/// when a PKCS#11 token is configured (`pkcs11_module`, `pkcs11_token`,
/// `pkcs11_pin`), generated in the token and never leaving it. One value is
/// made at start-up and handed to everything that signs; nothing reaches keys
/// any other way.
#[derive(Clone)]
pub struct KeyBackend {
    master: Arc<MasterKey>,
    token: Option<Arc<pki::Pkcs11Token>>,
}

impl std::fmt::Debug for KeyBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.token.is_some() { "KeyBackend(pkcs11)" } else { "KeyBackend(software)" })
    }
}

impl KeyBackend {
    /// Keys in software only.
    pub fn software(master: Arc<MasterKey>) -> KeyBackend {
        KeyBackend { master, token: None }
    }

    /// New CA keys in `token`; software keys made earlier stay readable.
    pub fn with_token(master: Arc<MasterKey>, token: Arc<pki::Pkcs11Token>) -> KeyBackend {
        KeyBackend { master, token: Some(token) }
    }

    /// The key that seals software keys and other secrets at rest.
    pub fn master(&self) -> &MasterKey {
        &self.master
    }

    /// A new CA hierarchy for `tenant`: keys in the token when one is configured.
    fn new_hierarchy(
        &self,
        tenant: &str,
        organization: &str,
        root_cn: &str,
        now: OffsetDateTime,
    ) -> Result<pki::Hierarchy> {
        Ok(pki::generate_hierarchy_with(organization, root_cn, now, &mut |role| self.generate_key(tenant, role, now))?)
    }

    /// [`new_hierarchy`](Self::new_hierarchy) on a blocking thread: key
    /// generation and signing (in software or in the token) stay off the runtime.
    async fn new_hierarchy_blocking(
        &self,
        tenant: &str,
        organization: &str,
        root_cn: &str,
        now: OffsetDateTime,
    ) -> Result<pki::Hierarchy> {
        let (keys, tenant, organization, root_cn) =
            (self.clone(), tenant.to_owned(), organization.to_owned(), root_cn.to_owned());
        tokio::task::spawn_blocking(move || keys.new_hierarchy(&tenant, &organization, &root_cn, now))
            .await
            .context("key backend task failed")?
    }

    /// A key for a new CA: in the token when one is configured, else in
    /// software (sealed under the master key when stored).
    pub fn new_ca_key(&self, tenant: &str, role: &str, now: OffsetDateTime) -> Result<pki::CaKey> {
        Ok(self.generate_key(tenant, role, now)?)
    }

    fn generate_key(&self, tenant: &str, role: &str, now: OffsetDateTime) -> Result<pki::CaKey, pki::PkiError> {
        Ok(match &self.token {
            Some(token) => pki::CaKey::Pkcs11(
                token.generate_key(&format!("anchorpoint/{tenant}/{role}/{}", now.unix_timestamp_nanos()))?,
            ),
            None => pki::CaKey::software()?,
        })
    }

    /// An existing key in the configured token, by label.
    pub fn token_key(&self, key_label: &str) -> Result<pki::CaKey> {
        let token = self.token.as_ref().ok_or_else(|| Error::Config("no PKCS#11 token is configured".into()))?;
        Ok(pki::CaKey::Pkcs11(token.key(key_label)?))
    }

    /// The stored form of a CA: a sealed software key or the token key's label.
    /// `extra_pem` (certificates above an operator's sub-CA) follows the CA's own.
    pub fn record(
        &self,
        tenant: &str,
        name: &str,
        ca: &CertificateAuthority,
        extra_pem: &str,
    ) -> Result<CredentialRecord> {
        let base = name.split('@').next().unwrap_or(name);
        let mut rec = match ca.hsm_key_label() {
            // The key stays in the token; the row names it.
            Some(key_label) => CredentialRecord {
                cert_pem: ca.cert_pem().to_owned(),
                sealed_key: [HSM_MARKER, key_label.as_bytes()].concat(),
            },
            None => {
                let stored = ca.to_stored(&self.master, &label(tenant, base))?;
                CredentialRecord { cert_pem: stored.cert_pem, sealed_key: stored.sealed_key }
            }
        };
        if !rec.cert_pem.ends_with('\n') {
            rec.cert_pem.push('\n');
        }
        rec.cert_pem.push_str(extra_pem);
        Ok(rec)
    }

    /// Opens a stored CA. Its PEM may hold certificates above the CA (an
    /// imported operator sub-CA's intermediates); the first one is the CA.
    /// Unsealing is CPU work: async callers use [`open_blocking`](Self::open_blocking).
    pub fn open(&self, tenant: &str, name: &str, mut rec: CredentialRecord) -> Result<CertificateAuthority> {
        if rec.sealed_key.is_empty() {
            return Err(Error::Conflict(format!(
                "the private key of the {name} of tenant {tenant} is held by its operator, not by Anchorpoint"
            )));
        }
        let der = pki::pem_to_der_chain(&rec.cert_pem)?;
        if der.len() > 1 {
            rec.cert_pem = pki::certificate_pem(&der[0]);
        }
        if let Some(key_label) = rec.sealed_key.strip_prefix(HSM_MARKER) {
            let token = self.token.as_ref().ok_or_else(|| {
                Error::Config(format!("the {name} of tenant {tenant} is in an HSM, and none is configured"))
            })?;
            let key_label = std::str::from_utf8(key_label).context("HSM key label")?;
            let key = token.key(key_label)?;
            let first = der.into_iter().next().context("stored CA holds no certificate")?;
            return Ok(CertificateAuthority::from_certificate_and_key(first, pki::CaKey::Pkcs11(key))?);
        }
        // Sealed keys stay bound to the name the CA was created under.
        let base = name.split('@').next().unwrap_or(name);
        let stored = StoredCa { cert_pem: rec.cert_pem, sealed_key: rec.sealed_key };
        CertificateAuthority::from_stored(&stored, &self.master, &label(tenant, base))
            .with_context(|| format!("opening {name} of tenant {tenant} (wrong master key?)"))
    }

    /// [`open`](Self::open) on a blocking thread, off the async runtime.
    pub async fn open_blocking(&self, tenant: &str, name: &str, rec: CredentialRecord) -> Result<CertificateAuthority> {
        let (keys, tenant, name) = (self.clone(), tenant.to_owned(), name.to_owned());
        tokio::task::spawn_blocking(move || keys.open(&tenant, &name, rec)).await.context("key backend task failed")?
    }
}

/// Stores CAs that belong together, unless another process already stored them.
async fn store_cas(
    store: &Store,
    keys: &KeyBackend,
    tenant: &str,
    cas: &[(&str, &CertificateAuthority)],
    now: i64,
) -> Result<bool> {
    let mut records = Vec::with_capacity(cas.len());
    for (name, ca) in cas {
        records.push((*name, keys.record(tenant, name, ca, "")?));
    }
    let refs: Vec<(&str, &CredentialRecord)> = records.iter().map(|(n, c)| (*n, c)).collect();
    Ok(store.insert_credentials(tenant, &refs, now).await?)
}

pub async fn load_ca(store: &Store, keys: &KeyBackend, tenant: &str, name: &str) -> Result<CertificateAuthority> {
    let rec = store.credential(tenant, name).await?.with_context(|| format!("no {name} for tenant {tenant}"))?;
    keys.open_blocking(tenant, name, rec).await
}

/// Checks that every tenant's issuing CA can sign: its key unseals under this
/// master key, or is in the configured token. A server that cannot issue
/// certificates refuses to start, naming the tenant, rather than failing the
/// first renewal.
pub async fn check_signing(store: &Store, keys: &KeyBackend) -> Result<()> {
    for tenant in store.tenants().await? {
        let Some(rec) = store.credential(&tenant.id, STATION_CA).await? else { continue };
        keys.open_blocking(&tenant.id, STATION_CA, rec).await.map_err(|e| {
            Error::Config(format!("this server cannot sign station certificates of tenant '{}': {e}", tenant.id))
        })?;
    }
    Ok(())
}

/// Creates the tenant and its station CA hierarchy if they do not exist yet.
/// A tenant with its own OCPP host name also gets its own CSMS root.
pub async fn ensure_tenant(
    store: &Store,
    keys: &KeyBackend,
    clock: &dyn Clock,
    id: &str,
    organization: &str,
    ocpp_hostname: Option<&str>,
) -> Result<Tenant> {
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
        let h = keys
            .new_hierarchy_blocking(id, &tenant.organization, &format!("{short} Station Root CA"), clock.now())
            .await?;
        let now = clock.now_millis();
        store_cas(store, keys, id, &[(STATION_ROOT, &h.root), (STATION_CA, &h.station_ca)], now).await?;
    }
    if tenant.ocpp_hostname.is_some() && store.credential(id, CSMS_ROOT).await?.is_none() {
        let h = keys
            .new_hierarchy_blocking(id, &tenant.organization, &format!("{short} CSMS Root CA"), clock.now())
            .await?;
        store_cas(store, keys, id, &[(CSMS_ROOT, &h.root)], clock.now_millis()).await?;
    }
    Ok(tenant)
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
    keys: &KeyBackend,
    clock: &dyn Clock,
    names: &[String],
) -> Result<ServerIdentity> {
    if store.credential(PLATFORM, CSMS_ROOT).await?.is_none() {
        let h = keys.new_hierarchy_blocking(PLATFORM, "Anchorpoint", "Anchorpoint CSMS Root CA", clock.now()).await?;
        store_cas(store, keys, PLATFORM, &[(CSMS_ROOT, &h.root)], clock.now_millis()).await?;
    }
    issue_server_identity(store, keys, clock, PLATFORM, names).await
}

/// Issues a server certificate for a tenant's own host name under its own CSMS root.
pub async fn tenant_server_identity(
    store: &Store,
    keys: &KeyBackend,
    clock: &dyn Clock,
    tenant: &Tenant,
) -> Result<ServerIdentity> {
    let host = tenant.ocpp_hostname.clone().context("tenant has no OCPP host name")?;
    issue_server_identity(store, keys, clock, &tenant.id, &[host]).await
}

async fn issue_server_identity(
    store: &Store,
    keys: &KeyBackend,
    clock: &dyn Clock,
    tenant: &str,
    names: &[String],
) -> Result<ServerIdentity> {
    let root = load_ca(store, keys, tenant, CSMS_ROOT).await?;
    let now = clock.now();
    let (cert, key) = root.issue_server_certificate(names, now - Duration::minutes(5), now + Duration::days(365))?;
    let sealed = key.seal(keys.master(), &label(tenant, SERVER))?;
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
pub async fn station_trust_roots(store: &Store, now_ms: i64) -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for root in store.trusted_station_roots(now_ms).await? {
        for der in pki::pem_to_der_chain(&root.cert_pem)? {
            out.push((root.tenant_id.clone(), der));
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
    Internal(#[from] Error),
}

/// Manufacturing-time enrollment: signs the station's CSR with its tenant's
/// station CA and returns the PEM chain (leaf, then sub-CA).
pub async fn enroll(
    store: &Store,
    keys: &KeyBackend,
    now: OffsetDateTime,
    station_id: &str,
    csr_pem: &str,
    validity_days: u32,
    public_url: &str,
) -> Result<(String, CertificateRecord), EnrollError> {
    let tenant_id = store
        .station_tenant(station_id)
        .await
        .map_err(|e| EnrollError::Internal(e.into()))?
        .ok_or_else(|| EnrollError::UnknownStation(station_id.to_owned()))?;
    let tenant = store
        .tenant(&tenant_id)
        .await
        .map_err(|e| EnrollError::Internal(e.into()))?
        .ok_or_else(|| EnrollError::Internal(Error::internal("tenant of station missing")))?;
    let csr = pki::validate_csr(csr_pem, station_id)
        .and_then(|c| c.check_organization(&tenant.organization).map(|()| c))
        .map_err(|r| EnrollError::Csr { rule: r.rule(), detail: r.to_string() })?;
    let validity =
        Validity { not_before: now - Duration::minutes(5), not_after: now + Duration::days(i64::from(validity_days)) };
    issue_for(&Signer { store, keys, public_url, writes: None }, &tenant, station_id, &csr, validity, now).await
}

/// What issuing needs besides the request: where CA keys are and how to open
/// them, and the CSMS's public base URL (for the CRL and OCSP extensions).
pub struct Signer<'a> {
    pub store: &'a Store,
    pub keys: &'a KeyBackend,
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
    let Signer { store, keys, public_url, writes } = *signer;
    let Validity { not_before, not_after } = validity;
    let rec = store
        .credential(&tenant.id, STATION_CA)
        .await
        .map_err(|e| EnrollError::Internal(e.into()))?
        .with_context(|| format!("no {STATION_CA} for tenant {}", tenant.id))?;
    let issuer_chain = rec.cert_pem.clone();
    // Unsealing and signing (in software or in the token) are CPU or device
    // work: done on a blocking thread, off the async runtime.
    let (keys, tenant_id, organization, csr, endpoints_base) =
        (keys.clone(), tenant.id.clone(), tenant.organization.clone(), csr.clone(), public_url.to_owned());
    let (cert, ca_id) = tokio::task::spawn_blocking(move || -> Result<_> {
        let mut ca = keys.open(&tenant_id, STATION_CA, rec)?;
        let ca_id = ca.id();
        ca.set_revocation_endpoints(revocation_endpoints(&endpoints_base, &tenant_id, &ca_id));
        Ok((ca.issue_station_certificate(&csr, &organization, not_before, not_after)?, ca_id))
    })
    .await
    .context("key backend task failed")??;
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
pub async fn write_public_pem(store: &Store, data_dir: &Path, root_pem: &str) -> Result<PathBuf> {
    let dir = data_dir.join("pki");
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let root_path = dir.join("csms-root.pem");
    std::fs::write(&root_path, root_pem).map_err(|e| Error::io(format!("writing {}", root_path.display()), e))?;
    for tenant in store.tenants().await? {
        write_tenant_pem(store, data_dir, &tenant.id).await?;
    }
    Ok(root_path)
}

/// A tenant's current CA certificates under `<data>/pki/tenants/<tenant>/`.
pub async fn write_tenant_pem(store: &Store, data_dir: &Path, tenant: &str) -> Result<()> {
    let tdir = data_dir.join("pki").join("tenants").join(tenant);
    std::fs::create_dir_all(&tdir).map_err(|e| Error::io(format!("creating {}", tdir.display()), e))?;
    for name in [STATION_ROOT, STATION_CA, CSMS_ROOT] {
        if let Some(c) = store.credential(tenant, name).await? {
            let path = tdir.join(format!("{name}.pem"));
            std::fs::write(&path, c.cert_pem).map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
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
) -> Result<api::auth::Authenticator> {
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
        .map_err(|_| Error::internal(format!("generating the {name} key failed")))?;
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
                .map_err(|_| Error::internal("the stored ES256 key is invalid"))?;
            Authenticator::es256(&pkcs8, pair.public_key().as_ref())
        }
        _ => {
            let pair =
                Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|_| Error::internal("the stored EdDSA key is invalid"))?;
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
