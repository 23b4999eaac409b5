//! Certificate authorities: hierarchy generation, persistence and issuance.

use std::fmt;
use std::net::IpAddr;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use time::{OffsetDateTime, UtcOffset};
use zeroize::Zeroizing;

use crate::csr::CsrKey;
use crate::encoding::{pem, serial_hex, sha256_fingerprint_hex};
use crate::inspect::parse_certificate;
use crate::key::key_pair_from_pkcs8;
use crate::{MasterKey, PkiError, PrivateKey, ValidatedCsr};

/// Validity of a root CA made by [`generate_hierarchy`], in calendar years.
pub const ROOT_VALIDITY_YEARS: i32 = 20;
/// Validity of a station sub-CA made by [`generate_hierarchy`], in calendar years.
pub const STATION_CA_VALIDITY_YEARS: i32 = 10;

// RFC 5280 upper bounds: ub-common-name and ub-organization-name.
const MAX_CN_LEN: usize = 64;
const MAX_O_LEN: usize = 64;
// Serial numbers: 16 random bytes, top bit cleared so DER needs no sign byte (A00.FR.508).
const SERIAL_LEN: usize = 16;

/// A certificate authority: its certificate and, in memory, its private key.
///
/// `Debug` shows the subject only. Safe to share between threads (`Send + Sync`).
pub struct CertificateAuthority {
    pub(crate) cert_der: Vec<u8>,
    cert_pem: String,
    subject_cn: String,
    not_after: OffsetDateTime,
    pub(crate) issuer: Issuer<'static, CaKey>,
    /// Written into the station certificates this CA issues.
    endpoints: crate::RevocationEndpoints,
}

/// Where a CA's private key lives.
#[allow(clippy::large_enum_variant)] // one per CA, a handful per process
pub enum CaKey {
    /// In memory (sealed under the master key at rest).
    Software(KeyPair),
    /// In a PKCS#11 token, never leaving it.
    Pkcs11(crate::Pkcs11Key),
}

impl CaKey {
    /// A new ECDSA P-256 key in memory.
    pub fn software() -> Result<CaKey, PkiError> {
        Ok(CaKey::Software(generate_key()?))
    }
}

impl rcgen::PublicKeyData for CaKey {
    fn der_bytes(&self) -> &[u8] {
        match self {
            CaKey::Software(k) => k.der_bytes(),
            CaKey::Pkcs11(k) => k.der_bytes(),
        }
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            CaKey::Software(k) => k.algorithm(),
            CaKey::Pkcs11(k) => k.algorithm(),
        }
    }
}

impl rcgen::SigningKey for CaKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        match self {
            CaKey::Software(k) => k.sign(msg),
            CaKey::Pkcs11(k) => k.sign(msg),
        }
    }
}

impl fmt::Debug for CaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaKey::Software(_) => f.write_str("CaKey::Software(..)"),
            CaKey::Pkcs11(k) => write!(f, "CaKey::Pkcs11({})", k.label()),
        }
    }
}

/// The persisted form of a CA: certificate PEM plus its PKCS#8 key sealed by a
/// [`MasterKey`].
#[derive(Clone, PartialEq, Eq)]
pub struct StoredCa {
    /// The CA certificate, PEM.
    pub cert_pem: String,
    /// Output of [`MasterKey::seal`] over the PKCS#8 key.
    pub sealed_key: Vec<u8>,
}

/// A station-CA hierarchy: a self-signed root (path length 1) and the sub-CA that issues
/// station certificates (path length 0).
#[derive(Debug)]
pub struct Hierarchy {
    /// Self-signed root; its certificate is the trust anchor handed out.
    pub root: CertificateAuthority,
    /// Issues station certificates.
    pub station_ca: CertificateAuthority,
}

/// A certificate just issued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedCertificate {
    /// DER encoding.
    pub der: Vec<u8>,
    /// PEM encoding.
    pub pem: String,
    /// Serial number, same format as [`CertInfo::serial_hex`](crate::CertInfo::serial_hex).
    pub serial_hex: String,
    /// Start of validity as written in the certificate (whole seconds, UTC).
    pub not_before: OffsetDateTime,
    /// End of validity as written in the certificate (whole seconds, UTC).
    pub not_after: OffsetDateTime,
    /// SHA-256 over the DER, lowercase hex.
    pub sha256_fingerprint_hex: String,
}

/// Generate a root CA and a station sub-CA, both ECDSA P-256, valid from `now`.
///
/// Root: subject `O=organization, CN=root_cn`, valid [`ROOT_VALIDITY_YEARS`].
/// Sub-CA: subject `O=organization, CN=<organization> Station CA`, valid
/// [`STATION_CA_VALIDITY_YEARS`]. Both carry keyUsage keyCertSign+cRLSign, SKI and AKI.
pub fn generate_hierarchy(organization: &str, root_cn: &str, now: OffsetDateTime) -> Result<Hierarchy, PkiError> {
    generate_hierarchy_with(organization, root_cn, now, &mut |_| Ok(CaKey::Software(generate_key()?)))
}

/// [`generate_hierarchy`] with keys from `new_key`, called with `"root"` then
/// `"station-ca"` (e.g. keys generated in an HSM).
pub fn generate_hierarchy_with(
    organization: &str,
    root_cn: &str,
    now: OffsetDateTime,
    new_key: &mut dyn FnMut(&str) -> Result<CaKey, PkiError>,
) -> Result<Hierarchy, PkiError> {
    check_name("organization", organization, MAX_O_LEN)?;
    check_name("root common name", root_cn, MAX_CN_LEN)?;
    let not_before = certificate_time(now)?;

    let root_key = new_key("root")?;
    let root_params =
        ca_params(organization, root_cn, 1, not_before, certificate_time(add_years(now, ROOT_VALIDITY_YEARS)?)?)?;
    let root_cert = root_params.self_signed(&root_key)?;
    let root = CertificateAuthority::from_parts(root_cert.der().to_vec(), root_key)?;

    let sub_cn = station_ca_common_name(organization);
    let sub_key = new_key("station-ca")?;
    let sub_params =
        ca_params(organization, &sub_cn, 0, not_before, certificate_time(add_years(now, STATION_CA_VALIDITY_YEARS)?)?)?;
    let sub_cert = sub_params.signed_by(&sub_key, &root.issuer)?;
    let station_ca = CertificateAuthority::from_parts(sub_cert.der().to_vec(), sub_key)?;

    Ok(Hierarchy { root, station_ca })
}

impl CertificateAuthority {
    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The CN of the CA's subject.
    pub fn subject_cn(&self) -> &str {
        &self.subject_cn
    }

    /// End of the CA certificate's validity. Issued certificates never outlive it.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// The persisted form: certificate PEM and the PKCS#8 key sealed under `key`, bound
    /// to `label` (e.g. `tenant:default/ca:station`).
    pub fn to_stored(&self, key: &MasterKey, label: &str) -> Result<StoredCa, PkiError> {
        let CaKey::Software(pair) = self.issuer.key() else {
            return Err(PkiError::KeyNotExportable);
        };
        let pkcs8 = Zeroizing::new(pair.serialize_der());
        Ok(StoredCa { cert_pem: self.cert_pem.clone(), sealed_key: key.seal(&pkcs8, label)? })
    }

    /// Restore a CA saved by [`to_stored`](Self::to_stored). Checks that the certificate is a
    /// CA certificate and that the key belongs to it.
    pub fn from_stored(stored: &StoredCa, key: &MasterKey, label: &str) -> Result<Self, PkiError> {
        let mut chain = crate::pem_to_der_chain(&stored.cert_pem)?;
        if chain.len() != 1 {
            return Err(PkiError::InvalidCertificate("stored CA must hold exactly one certificate".to_owned()));
        }
        let cert_der = chain.remove(0);
        let pkcs8 = key.open(&stored.sealed_key, label)?;
        let key_pair = key_pair_from_pkcs8(&pkcs8)?;
        Self::from_parts(cert_der, CaKey::Software(key_pair))
    }

    /// Issue a station (client) certificate for a validated CSR.
    ///
    /// Subject `O=organization, CN=<CSR's CN>`; the CSR's public key; keyUsage
    /// digitalSignature (plus keyEncipherment for RSA keys); EKU clientAuth;
    /// basicConstraints cA=FALSE; SKI and AKI; a random positive 127-bit serial
    /// (A00.FR.508). Nothing the CSR requested beyond its subject CN and key is copied.
    /// `not_after` is capped at the CA's own `not_after`. Times are truncated to whole
    /// seconds; a validity entirely in the past is allowed (the result is simply expired).
    pub fn issue_station_certificate(
        &self,
        csr: &ValidatedCsr,
        organization: &str,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<IssuedCertificate, PkiError> {
        check_name("organization", organization, MAX_O_LEN)?;
        check_name("station common name", csr.subject_cn(), MAX_CN_LEN)?;
        let (not_before, not_after) = self.validity(not_before, not_after)?;

        let mut params = CertificateParams::default();
        params.distinguished_name = subject(organization, csr.subject_cn());
        params.not_before = not_before;
        params.not_after = not_after;
        params.serial_number = Some(random_serial()?);
        end_entity(&mut params, csr.public_key_der())?;
        params.key_usages = match csr.key() {
            CsrKey::Rsa { .. } => vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment],
            CsrKey::EcdsaP256 | CsrKey::EcdsaP384 | CsrKey::EcdsaP521 => vec![KeyUsagePurpose::DigitalSignature],
        };
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        if let Some(url) = &self.endpoints.crl_url {
            params.crl_distribution_points = vec![rcgen::CrlDistributionPoint { uris: vec![url.clone()] }];
        }
        if let Some(url) = &self.endpoints.ocsp_url {
            params.custom_extensions.push(crate::revocation::aia_ocsp_extension(url)?);
        }

        let cert = params.signed_by(csr.public_key(), &self.issuer)?;
        issued(cert.der().to_vec())
    }

    /// Where the station certificates this CA issues from now on point relying
    /// parties for revocation (CRL distribution point, OCSP in authorityInfoAccess).
    pub fn set_revocation_endpoints(&mut self, endpoints: crate::RevocationEndpoints) {
        self.endpoints = endpoints;
    }

    /// Issue a TLS server certificate for the CSMS with a freshly generated P-256 key.
    ///
    /// CN = the first name (A00.FR.510); SANs = all names, each an IP address if it parses
    /// as one (e.g. `127.0.0.1`), else a DNS name; keyUsage digitalSignature; EKU
    /// serverAuth; cA=FALSE; SKI and AKI; random serial. Returns the certificate and its key.
    pub fn issue_server_certificate(
        &self,
        dns_names: &[String],
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<(IssuedCertificate, PrivateKey), PkiError> {
        let first =
            dns_names.first().ok_or_else(|| PkiError::InvalidName("at least one server name is required".into()))?;
        check_name("server common name", first, MAX_CN_LEN)?;
        let sans = dns_names.iter().map(|name| san(name)).collect::<Result<Vec<_>, _>>()?;
        let (not_before, not_after) = self.validity(not_before, not_after)?;

        let key = generate_key()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, first.as_str());
        params.subject_alt_names = sans;
        params.not_before = not_before;
        params.not_after = not_after;
        params.serial_number = Some(random_serial()?);
        end_entity(&mut params, &rcgen::PublicKeyData::subject_public_key_info(&key))?;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;

        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((issued(cert.der().to_vec())?, PrivateKey::from_key_pair(&key)))
    }

    /// The token label of the CA's key when an HSM holds it.
    pub fn hsm_key_label(&self) -> Option<&str> {
        match self.issuer.key() {
            CaKey::Pkcs11(k) => Some(k.label()),
            CaKey::Software(_) => None,
        }
    }

    /// A CA whose key is held elsewhere (an HSM): its certificate and that key.
    pub fn from_certificate_and_key(cert_der: Vec<u8>, key: CaKey) -> Result<Self, PkiError> {
        Self::from_parts(cert_der, key)
    }

    fn from_parts(cert_der: Vec<u8>, key: CaKey) -> Result<Self, PkiError> {
        let cert = parse_certificate(&cert_der)?;
        let is_ca = cert
            .basic_constraints()
            .map_err(|e| PkiError::InvalidCertificate(format!("basicConstraints: {e}")))?
            .is_some_and(|bc| bc.value.ca);
        if !is_ca {
            return Err(PkiError::NotACa);
        }
        if cert.public_key().subject_public_key.data.as_ref() != rcgen::PublicKeyData::der_bytes(&key) {
            return Err(PkiError::KeyMismatch);
        }
        // rcgen rebuilds the issuer name from this subject and only handles one attribute
        // per RDN; check here so a damaged stored certificate gives an error.
        if cert.subject().iter().any(|rdn| rdn.iter().count() != 1) {
            return Err(PkiError::InvalidCertificate("CA subject must have exactly one attribute per RDN".to_owned()));
        }
        let subject_cn = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .ok_or_else(|| PkiError::InvalidCertificate("CA subject has no CN".to_owned()))?
            .to_owned();
        let not_after = cert.validity().not_after.to_datetime();
        let issuer = Issuer::from_ca_cert_der(&CertificateDer::from(cert_der.as_slice()), key)?;
        Ok(Self {
            cert_pem: pem("CERTIFICATE", &cert_der),
            cert_der,
            subject_cn,
            not_after,
            issuer,
            endpoints: Default::default(),
        })
    }

    fn validity(
        &self,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<(OffsetDateTime, OffsetDateTime), PkiError> {
        let not_before = certificate_time(not_before)?;
        // A certificate must not outlive the CA that vouches for it.
        let not_after = certificate_time(not_after)?.min(self.not_after);
        if not_after <= not_before {
            return Err(PkiError::InvalidValidity);
        }
        Ok((not_before, not_after))
    }
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority").field("subject_cn", &self.subject_cn).finish_non_exhaustive()
    }
}

impl fmt::Debug for StoredCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The sealed key is ciphertext, but there is no reason to print it.
        f.debug_struct("StoredCa")
            .field("cert_pem", &self.cert_pem)
            .field("sealed_key", &format_args!("[{} bytes]", self.sealed_key.len()))
            .finish()
    }
}

pub(crate) fn ca_params(
    organization: &str,
    cn: &str,
    path_len: u8,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = subject(organization, cn);
    params.not_before = not_before;
    params.not_after = not_after;
    params.serial_number = Some(random_serial()?);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

fn subject(organization: &str, cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, organization);
    dn.push(DnType::CommonName, cn);
    dn
}

/// Marks `params` as an end entity: basicConstraints (critical) with `cA` left at
/// its DEFAULT (FALSE), so an empty SEQUENCE, and a subjectKeyIdentifier (the first
/// 160 bits of SHA-256 over the SubjectPublicKeyInfo, as rcgen derives it for CAs).
/// rcgen's `IsCa::ExplicitNoCa` would write `cA FALSE` out, which DER forbids
/// (X.690 §11.5: a DEFAULT value is never encoded) and strict parsers refuse.
fn end_entity(params: &mut CertificateParams, spki_der: &[u8]) -> Result<(), PkiError> {
    use der::Encode;
    use x509_cert::ext::pkix::{BasicConstraints as Bc, SubjectKeyIdentifier};
    params.is_ca = IsCa::NoCa;
    let no_ca = Bc { ca: false, path_len_constraint: None }.to_der()?;
    let mut basic_constraints = CustomExtension::from_oid_content(&[2, 5, 29, 19], no_ca);
    basic_constraints.set_criticality(true);
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, spki_der);
    let key_id = der::asn1::OctetString::new(digest.as_ref().get(..20).unwrap_or_default())?;
    params.custom_extensions.push(basic_constraints);
    params
        .custom_extensions
        .push(CustomExtension::from_oid_content(&[2, 5, 29, 14], SubjectKeyIdentifier(key_id).to_der()?));
    Ok(())
}

fn station_ca_common_name(organization: &str) -> String {
    const SUFFIX: &str = " Station CA";
    let room = MAX_CN_LEN - SUFFIX.len();
    let org: String = organization.chars().take(room).collect();
    format!("{}{SUFFIX}", org.trim_end())
}

fn san(name: &str) -> Result<SanType, PkiError> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let valid_dns = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'*')
        });
    if !valid_dns {
        return Err(PkiError::InvalidName(format!("{name:?} is neither an IP address nor a DNS name")));
    }
    let ia5 = name.try_into().map_err(|_| PkiError::InvalidName(format!("{name:?} is not IA5")))?;
    Ok(SanType::DnsName(ia5))
}

fn check_name(what: &str, value: &str, max: usize) -> Result<(), PkiError> {
    if value.trim().is_empty() {
        return Err(PkiError::InvalidName(format!("{what} is empty")));
    }
    if value.chars().count() > max {
        return Err(PkiError::InvalidName(format!("{what} is longer than {max} characters")));
    }
    if value.chars().any(char::is_control) {
        return Err(PkiError::InvalidName(format!("{what} contains control characters")));
    }
    Ok(())
}

fn generate_key() -> Result<KeyPair, PkiError> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|_| PkiError::KeyGeneration)
}

pub(crate) fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut bytes = [0u8; SERIAL_LEN];
    SystemRandom::new().fill(&mut bytes).map_err(|_| PkiError::Random)?;
    // Positive, and exactly SERIAL_LEN bytes in DER: top bit clear, first byte non-zero.
    bytes[0] &= 0x7f;
    if bytes[0] == 0 {
        bytes[0] = 0x01;
    }
    Ok(SerialNumber::from_slice(&bytes))
}

/// The same instant `years` calendar years later (29 February becomes 28 February).
pub(crate) fn add_years(t: OffsetDateTime, years: i32) -> Result<OffsetDateTime, PkiError> {
    let year = t.year().checked_add(years).ok_or(PkiError::InvalidValidity)?;
    t.replace_year(year)
        .or_else(|_| t.replace_day(28).and_then(|t| t.replace_year(year)))
        .map_err(|_| PkiError::InvalidValidity)
}

/// UTC, whole seconds, and a year X.509 can encode.
pub(crate) fn certificate_time(t: OffsetDateTime) -> Result<OffsetDateTime, PkiError> {
    let t = t.to_offset(UtcOffset::UTC).replace_nanosecond(0).map_err(|_| PkiError::InvalidValidity)?;
    if !(1950..=9999).contains(&t.year()) {
        return Err(PkiError::InvalidValidity);
    }
    Ok(t)
}

/// Describe a certificate just signed, reading every field back from the DER so the
/// values match what [`inspect_certificate`](crate::inspect_certificate) reports.
fn issued(der: Vec<u8>) -> Result<IssuedCertificate, PkiError> {
    let cert = parse_certificate(&der)?;
    let serial_hex = serial_hex(cert.raw_serial());
    let not_before = cert.validity().not_before.to_datetime();
    let not_after = cert.validity().not_after.to_datetime();
    Ok(IssuedCertificate {
        pem: pem("CERTIFICATE", &der),
        serial_hex,
        not_before,
        not_after,
        sha256_fingerprint_hex: sha256_fingerprint_hex(&der),
        der,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::{inspect_certificate, validate_csr};
    use time::Duration;
    use time::macros::datetime;
    use x509_parser::extensions::ParsedExtension;

    const NOW: OffsetDateTime = datetime!(2025-03-01 12:00:00.5 UTC);

    fn station_csr(cn: &str) -> ValidatedCsr {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        // Requested extensions that must NOT reach the certificate.
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        params.subject_alt_names = vec![SanType::DnsName("evil.example".try_into().unwrap())];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let pem = params.serialize_request(&key).unwrap().pem().unwrap();
        validate_csr(&pem, cn).unwrap()
    }

    #[test]
    fn hierarchy_shape() {
        let h = generate_hierarchy("Acme Charging", "Acme Root", NOW).unwrap();
        let root = parse_certificate(h.root.cert_der()).unwrap();
        let sub = parse_certificate(h.station_ca.cert_der()).unwrap();
        assert_eq!(root.subject(), root.issuer());
        assert_eq!(sub.issuer().as_raw(), root.subject().as_raw());
        let bc = |c: &x509_parser::certificate::X509Certificate<'_>| {
            let bc = c.basic_constraints().unwrap().unwrap();
            assert!(bc.critical);
            (bc.value.ca, bc.value.path_len_constraint)
        };
        assert_eq!(bc(&root), (true, Some(1)));
        assert_eq!(bc(&sub), (true, Some(0)));
        for c in [&root, &sub] {
            let ku = c.key_usage().unwrap().unwrap().value;
            assert!(ku.key_cert_sign() && ku.crl_sign() && !ku.digital_signature());
            assert!(c.extended_key_usage().unwrap().is_none());
        }
        let ski = |c: &x509_parser::certificate::X509Certificate<'_>| {
            c.extensions()
                .iter()
                .find_map(|e| match e.parsed_extension() {
                    ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
                    _ => None,
                })
                .unwrap()
        };
        let aki = |c: &x509_parser::certificate::X509Certificate<'_>| {
            c.extensions()
                .iter()
                .find_map(|e| match e.parsed_extension() {
                    ParsedExtension::AuthorityKeyIdentifier(k) => k.key_identifier.as_ref().map(|k| k.0.to_vec()),
                    _ => None,
                })
                .unwrap()
        };
        assert_eq!(aki(&sub), ski(&root));
        assert_eq!(h.station_ca.subject_cn(), "Acme Charging Station CA");
        assert_eq!(h.root.subject_cn(), "Acme Root");
        let root_info = inspect_certificate(h.root.cert_der()).unwrap();
        assert!(root_info.is_ca);
        assert_eq!(root_info.not_before, datetime!(2025-03-01 12:00:00 UTC));
        assert_eq!(root_info.not_after, datetime!(2045-03-01 12:00:00 UTC));
        let sub_info = inspect_certificate(h.station_ca.cert_der()).unwrap();
        assert_eq!(sub_info.not_after, datetime!(2035-03-01 12:00:00 UTC));
    }

    #[test]
    fn station_certificate_profile_ignores_requested_extensions() {
        let h = generate_hierarchy("Acme Charging", "Acme Root", NOW).unwrap();
        let csr = station_csr("CS001");
        let issued =
            h.station_ca.issue_station_certificate(&csr, "Acme Charging", NOW, NOW + Duration::days(365)).unwrap();
        let cert = parse_certificate(&issued.der).unwrap();
        assert_eq!(cert.public_key().raw, csr.public_key_der());
        assert_eq!(cert.issuer().as_raw(), parse_certificate(h.station_ca.cert_der()).unwrap().subject().as_raw());
        let bc = cert.basic_constraints().unwrap().unwrap().value;
        assert!(!bc.ca);
        assert!(cert.subject_alternative_name().unwrap().is_none());
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        let ku = cert.key_usage().unwrap().unwrap().value;
        assert!(ku.digital_signature() && !ku.key_cert_sign() && !ku.key_encipherment());
        assert_eq!(cert.raw_serial().len(), SERIAL_LEN);

        let info = inspect_certificate(&issued.der).unwrap();
        assert_eq!(info.serial_hex, issued.serial_hex);
        assert_eq!(info.sha256_fingerprint_hex, issued.sha256_fingerprint_hex);
        assert_eq!(info.subject_cn.as_deref(), Some("CS001"));
        assert_eq!(info.subject_o.as_deref(), Some("Acme Charging"));
        assert_eq!(info.issuer_dn, "O=Acme Charging, CN=Acme Charging Station CA");
        assert!(!info.is_ca);
        assert_eq!(issued.not_before, datetime!(2025-03-01 12:00:00 UTC));
        assert_eq!(info.not_after, issued.not_after);
        assert_eq!(issued.serial_hex.len(), 2 * SERIAL_LEN);
        assert!(issued.serial_hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    }

    #[test]
    fn serials_are_random() {
        let h = generate_hierarchy("Acme", "Root", NOW).unwrap();
        let csr = station_csr("CS001");
        let a = h.station_ca.issue_station_certificate(&csr, "Acme", NOW, NOW + Duration::days(1)).unwrap();
        let b = h.station_ca.issue_station_certificate(&csr, "Acme", NOW, NOW + Duration::days(1)).unwrap();
        assert_ne!(a.serial_hex, b.serial_hex);
    }

    #[test]
    fn validity_is_capped_and_checked() {
        let h = generate_hierarchy("Acme", "Root", NOW).unwrap();
        let csr = station_csr("CS001");
        let issued = h.station_ca.issue_station_certificate(&csr, "Acme", NOW, NOW + Duration::days(365 * 50)).unwrap();
        assert_eq!(issued.not_after, h.station_ca.not_after());
        assert!(matches!(
            h.station_ca.issue_station_certificate(&csr, "Acme", NOW, NOW),
            Err(PkiError::InvalidValidity)
        ));
        assert!(matches!(
            h.station_ca.issue_station_certificate(&csr, "", NOW, NOW + Duration::days(1)),
            Err(PkiError::InvalidName(_))
        ));
    }

    #[test]
    fn server_certificate_names() {
        let h = generate_hierarchy("Acme", "Root", NOW).unwrap();
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
        let (issued, key) = h.root.issue_server_certificate(&names, NOW, NOW + Duration::days(30)).unwrap();
        let cert = parse_certificate(&issued.der).unwrap();
        let info = inspect_certificate(&issued.der).unwrap();
        assert_eq!(info.subject_cn.as_deref(), Some("localhost"));
        let san = cert.subject_alternative_name().unwrap().unwrap().value;
        assert_eq!(san.general_names.len(), 3);
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && !eku.client_auth);
        // The key is a usable PKCS#8 key matching the certificate.
        let kp = crate::key::key_pair_from_pkcs8(key.pkcs8_der()).unwrap();
        assert_eq!(cert.public_key().subject_public_key.data.as_ref(), kp.public_key_raw());

        for bad in [vec![], vec!["".to_owned()], vec!["bad name".to_owned()]] {
            assert!(matches!(
                h.root.issue_server_certificate(&bad, NOW, NOW + Duration::days(1)),
                Err(PkiError::InvalidName(_))
            ));
        }
    }

    #[test]
    fn stored_round_trip_and_checks() {
        let h = generate_hierarchy("Acme", "Root", NOW).unwrap();
        let mk = MasterKey::generate().unwrap();
        let stored = h.station_ca.to_stored(&mk, "tenant:default/ca:station").unwrap();
        let restored = CertificateAuthority::from_stored(&stored, &mk, "tenant:default/ca:station").unwrap();
        assert_eq!(restored.cert_der(), h.station_ca.cert_der());
        assert_eq!(restored.subject_cn(), h.station_ca.subject_cn());

        assert!(matches!(
            CertificateAuthority::from_stored(&stored, &mk, "tenant:other/ca:station"),
            Err(PkiError::KeyDecryption)
        ));
        // Certificate swapped for another CA's: the key does not match it.
        let swapped = StoredCa { cert_pem: h.root.cert_pem().to_owned(), sealed_key: stored.sealed_key.clone() };
        assert!(matches!(
            CertificateAuthority::from_stored(&swapped, &mk, "tenant:default/ca:station"),
            Err(PkiError::KeyMismatch)
        ));
        // A leaf certificate is not a CA.
        let leaf =
            h.station_ca.issue_station_certificate(&station_csr("CS1"), "Acme", NOW, NOW + Duration::days(1)).unwrap();
        let not_ca = StoredCa { cert_pem: leaf.pem, sealed_key: stored.sealed_key.clone() };
        assert!(matches!(
            CertificateAuthority::from_stored(&not_ca, &mk, "tenant:default/ca:station"),
            Err(PkiError::NotACa)
        ));
    }

    #[test]
    fn debug_never_shows_keys() {
        let h = generate_hierarchy("Acme", "Root", NOW).unwrap();
        let CaKey::Software(root_key) = h.root.issuer.key() else { panic!("software key expected") };
        let pkcs8 = root_key.serialize_der();
        let (_, server_key) =
            h.root.issue_server_certificate(&["localhost".to_owned()], NOW, NOW + Duration::days(1)).unwrap();
        let mk = MasterKey::generate().unwrap();
        let stored = h.root.to_stored(&mk, "l").unwrap();
        let printed = [
            format!("{h:?}"),
            format!("{:?}", h.root),
            format!("{server_key:?}"),
            format!("{stored:?}"),
            format!("{mk:?}"),
        ]
        .join("\n");
        assert!(printed.contains("Root"));
        let hexes = [
            crate::encoding::hex(&pkcs8),
            crate::encoding::hex(server_key.pkcs8_der()),
            crate::encoding::hex(&mk.to_bytes()),
        ];
        for secret in [&pkcs8[..], server_key.pkcs8_der(), &mk.to_bytes()[..]] {
            // Any 8-byte window of the secret printed as a Rust byte list would show up here.
            let window = format!("{:?}", &secret[secret.len() - 8..]);
            let inner = window.trim_start_matches('[').trim_end_matches(']');
            assert!(!printed.contains(inner), "secret bytes in Debug output");
        }
        for h in hexes {
            assert!(!printed.contains(&h[h.len() - 16..]));
        }
    }

    #[test]
    fn add_years_handles_leap_day() {
        assert_eq!(add_years(datetime!(2028-02-29 10:00 UTC), 10).unwrap(), datetime!(2038-02-28 10:00 UTC));
        assert_eq!(add_years(datetime!(2025-03-01 10:00 UTC), 20).unwrap(), datetime!(2045-03-01 10:00 UTC));
    }

    #[test]
    fn authorities_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<CertificateAuthority>();
        check::<Hierarchy>();
        check::<MasterKey>();
        check::<PrivateKey>();
        check::<ValidatedCsr>();
    }
}
