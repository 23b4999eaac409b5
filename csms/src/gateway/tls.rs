//! rustls configuration for the OCPP listener.
//!
//! TLS 1.2 and 1.3 only (A00.FR.416), ECDHE-ECDSA with AES-GCM (A00.FR.318 as far
//! as rustls allows: it implements no static-RSA key exchange, see docs/security.md).
//! A client certificate is requested but optional at the TLS layer: profile-2
//! stations authenticate with HTTP Basic after the handshake. Whether a presented
//! certificate is acceptable *for the station named in the URL* is decided after
//! the upgrade request arrives, in [`crate::identity`].

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, TrustAnchor, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme};

/// The one crypto provider of the process: aws-lc-rs, restricted to the suites OCPP names.
pub fn provider() -> Arc<CryptoProvider> {
    use rustls::crypto::aws_lc_rs::{cipher_suite as cs, default_provider};
    let mut p = default_provider();
    p.cipher_suites = vec![
        cs::TLS13_AES_256_GCM_SHA384,
        cs::TLS13_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ];
    Arc::new(p)
}

/// Signature algorithms accepted in certificate chains.
pub fn signature_algorithms() -> WebPkiSupportedAlgorithms {
    rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms
}

/// Trust anchors for station certificates, per tenant, swappable while running.
pub struct StationTrust {
    provider: Arc<CryptoProvider>,
    state: RwLock<TrustState>,
}

struct TrustState {
    by_tenant: Arc<HashMap<String, Vec<TrustAnchor<'static>>>>,
    verifier: Arc<dyn ClientCertVerifier>,
}

impl std::fmt::Debug for StationTrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StationTrust")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("certificate of tenant {tenant} is not a usable trust anchor: {reason}")]
    BadAnchor { tenant: String, reason: String },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client verifier: {0}")]
    Verifier(String),
}

impl StationTrust {
    pub fn new(provider: Arc<CryptoProvider>) -> Self {
        let verifier = WebPkiClientVerifier::no_client_auth();
        StationTrust { provider, state: RwLock::new(TrustState { by_tenant: Arc::new(HashMap::new()), verifier }) }
    }

    /// Replaces the anchors with `roots`: (tenant, DER certificate) pairs.
    pub fn reload(&self, roots: &[(String, Vec<u8>)]) -> Result<(), TlsSetupError> {
        let mut by_tenant: HashMap<String, Vec<TrustAnchor<'static>>> = HashMap::new();
        let mut store = RootCertStore::empty();
        for (tenant, der) in roots {
            let cert = CertificateDer::from(der.clone());
            let anchor = webpki::anchor_from_trusted_cert(&cert)
                .map_err(|e| TlsSetupError::BadAnchor { tenant: tenant.clone(), reason: e.to_string() })?
                .to_owned();
            store.roots.push(anchor.clone());
            by_tenant.entry(tenant.clone()).or_default().push(anchor);
        }
        let verifier = if store.is_empty() {
            WebPkiClientVerifier::no_client_auth()
        } else {
            WebPkiClientVerifier::builder_with_provider(Arc::new(store), self.provider.clone())
                .allow_unauthenticated()
                .build()
                .map_err(|e| TlsSetupError::Verifier(e.to_string()))?
        };
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        *state = TrustState { by_tenant: Arc::new(by_tenant), verifier };
        Ok(())
    }

    /// Anchors a tenant trusts for station certificates.
    pub fn tenant_anchors(&self, tenant: &str) -> Vec<TrustAnchor<'static>> {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        state.by_tenant.get(tenant).cloned().unwrap_or_default()
    }

    fn current(&self) -> Arc<dyn ClientCertVerifier> {
        self.state.read().unwrap_or_else(|p| p.into_inner()).verifier.clone()
    }
}

/// Delegates to the verifier built from the current anchors, so tenants added
/// while the server runs are trusted without a restart.
#[derive(Debug)]
struct ReloadingVerifier(Arc<StationTrust>);

impl ClientCertVerifier for ReloadingVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No hints: the list changes with tenants and would leak which operators
        // this platform serves. TLS 1.2 and 1.3 both allow an empty list.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let current = self.0.current();
        // With no anchors at all the current verifier is rustls' "no client
        // auth", which must never be asked to verify (it panics): a presented
        // certificate is refused as of an unknown issuer instead.
        if !current.offer_client_auth() {
            return Err(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer));
        }
        current.verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// The server certificates: the platform's, and those of tenants with their own
/// CSMS root, chosen by the SNI host name the station connects to.
#[derive(Debug)]
pub struct ServerCertificates {
    default: Arc<CertifiedKey>,
    by_host: RwLock<Arc<HashMap<String, TenantHost>>>,
}

#[derive(Debug, Clone)]
struct TenantHost {
    tenant: String,
    key: Arc<CertifiedKey>,
}

impl ServerCertificates {
    pub fn new(default: Arc<CertifiedKey>) -> Self {
        ServerCertificates { default, by_host: RwLock::new(Arc::new(HashMap::new())) }
    }

    /// Serves `key` to clients asking for `host`, which belongs to `tenant`.
    pub fn insert(&self, host: &str, tenant: &str, key: Arc<CertifiedKey>) {
        let mut guard = self.by_host.write().unwrap_or_else(|p| p.into_inner());
        let mut map = HashMap::clone(&guard);
        map.insert(host.to_ascii_lowercase(), TenantHost { tenant: tenant.to_owned(), key });
        *guard = Arc::new(map);
    }

    pub fn has_host(&self, host: &str) -> bool {
        self.by_host.read().unwrap_or_else(|p| p.into_inner()).contains_key(&host.to_ascii_lowercase())
    }

    /// The tenant that owns `host`, if any.
    pub fn tenant_of_host(&self, host: &str) -> Option<String> {
        self.by_host.read().unwrap_or_else(|p| p.into_inner()).get(&host.to_ascii_lowercase()).map(|t| t.tenant.clone())
    }
}

impl ResolvesServerCert for ServerCertificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let by_host = self.by_host.read().unwrap_or_else(|p| p.into_inner()).clone();
        let chosen =
            hello.server_name().and_then(|name| by_host.get(&name.to_ascii_lowercase())).map(|t| t.key.clone());
        Some(chosen.unwrap_or_else(|| self.default.clone()))
    }
}

/// A certificate chain (DER, leaf first) with its PKCS#8 key, ready to serve.
pub fn certified_key(
    provider: &CryptoProvider,
    chain: &[Vec<u8>],
    key_pkcs8: Vec<u8>,
) -> Result<Arc<CertifiedKey>, TlsSetupError> {
    let chain = chain.iter().map(|d| CertificateDer::from(d.clone())).collect();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pkcs8));
    Ok(Arc::new(CertifiedKey::from_der(chain, key, provider)?))
}

/// Server configuration: TLS 1.3 and 1.2, optional client certificates checked
/// against the station trust anchors, server certificate chosen by SNI.
pub fn server_config(
    provider: Arc<CryptoProvider>,
    trust: Arc<StationTrust>,
    certs: Arc<ServerCertificates>,
) -> Result<ServerConfig, TlsSetupError> {
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_client_cert_verifier(Arc::new(ReloadingVerifier(trust)))
        .with_cert_resolver(certs);
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Stations reconnect often; resumption saves them a full handshake.
    cfg.session_storage = rustls::server::ServerSessionMemoryCache::new(4096);
    // One ticket per handshake (rustls sends two by default): a station resumes
    // one session at a time, and each ticket costs a record and a cache entry.
    cfg.send_tls13_tickets = 1;
    Ok(cfg)
}

/// Short reason label for a failed TLS handshake (metrics and logs).
pub fn classify_handshake_error(err: &std::io::Error) -> &'static str {
    use rustls::{CertificateError, Error, PeerIncompatible};
    match err.get_ref().and_then(|e| e.downcast_ref::<Error>()) {
        Some(Error::InvalidCertificate(CertificateError::Expired | CertificateError::ExpiredContext { .. })) => {
            "certificate_expired"
        }
        Some(Error::InvalidCertificate(
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
        )) => "certificate_not_yet_valid",
        Some(Error::InvalidCertificate(CertificateError::UnknownIssuer)) => "certificate_unknown_issuer",
        Some(Error::InvalidCertificate(CertificateError::Revoked)) => "certificate_revoked",
        Some(Error::InvalidCertificate(_)) => "certificate_invalid",
        Some(Error::PeerIncompatible(
            PeerIncompatible::SupportedVersionsExtensionRequired
            | PeerIncompatible::Tls12NotOffered
            | PeerIncompatible::Tls12NotOfferedOrEnabled,
        )) => "tls_version",
        Some(Error::PeerIncompatible(_)) => "tls_incompatible",
        Some(Error::NoCertificatesPresented) => "no_client_certificate",
        Some(Error::InvalidMessage(_)) => "tls_invalid_message",
        Some(Error::AlertReceived(_)) => "tls_alert_from_peer",
        Some(_) => "tls_error",
        None if err.kind() == std::io::ErrorKind::UnexpectedEof => "tls_eof",
        None => "tls_io",
    }
}
