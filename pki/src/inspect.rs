//! Facts about certificates presented by peers, and PEM chain decoding.

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use crate::PkiError;
use crate::encoding::{serial_hex, sha256_fingerprint_hex};

/// Facts about a certificate, as the server needs them for identity and revocation checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    /// First subject CN, if any and if it is a string.
    pub subject_cn: Option<String>,
    /// First subject O, if any and if it is a string.
    pub subject_o: Option<String>,
    /// Issuer distinguished name, human readable (`CN=..., O=...`, in encoded order).
    pub issuer_dn: String,
    /// Serial number: lowercase hex, leading zero bytes removed. Identical to
    /// [`IssuedCertificate::serial_hex`](crate::IssuedCertificate::serial_hex) for
    /// certificates this crate issued.
    pub serial_hex: String,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// `basicConstraints cA=TRUE`.
    pub is_ca: bool,
    /// SHA-256 over the DER, lowercase hex without separators.
    pub sha256_fingerprint_hex: String,
}

/// Parse a DER certificate (nothing may follow it) and report its facts.
///
/// This does not verify any signature; chain verification is the TLS stack's job.
pub fn inspect_certificate(der: &[u8]) -> Result<CertInfo, PkiError> {
    let cert = parse_certificate(der)?;
    cert_info(&cert, der)
}

/// Decode every `CERTIFICATE` block of `pem`, in order. Other blocks are ignored.
pub fn pem_to_der_chain(pem: &str) -> Result<Vec<Vec<u8>>, PkiError> {
    let chain = CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|c| c.map(|c| c.as_ref().to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::Pem(e.to_string()))?;
    if chain.is_empty() {
        return Err(PkiError::NoCertificate);
    }
    Ok(chain)
}

pub(crate) fn parse_certificate(der: &[u8]) -> Result<X509Certificate<'_>, PkiError> {
    match X509Certificate::from_der(der) {
        Ok((rest, _)) if !rest.is_empty() => {
            Err(PkiError::InvalidCertificate("trailing bytes after the certificate".to_owned()))
        }
        Ok((_, cert)) => Ok(cert),
        Err(e) => Err(PkiError::InvalidCertificate(e.to_string())),
    }
}

pub(crate) fn cert_info(cert: &X509Certificate<'_>, der: &[u8]) -> Result<CertInfo, PkiError> {
    let subject = cert.subject();
    let is_ca = cert
        .basic_constraints()
        .map_err(|e| PkiError::InvalidCertificate(format!("basicConstraints: {e}")))?
        .is_some_and(|bc| bc.value.ca);
    Ok(CertInfo {
        subject_cn: first_str(subject.iter_common_name()),
        subject_o: first_str(subject.iter_organization()),
        issuer_dn: cert.issuer().to_string(),
        serial_hex: serial_hex(cert.raw_serial()),
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
        is_ca,
        sha256_fingerprint_hex: sha256_fingerprint_hex(der),
    })
}

fn first_str<'a, 'b: 'a>(
    mut attrs: impl Iterator<Item = &'a x509_parser::x509::AttributeTypeAndValue<'b>>,
) -> Option<String> {
    attrs.next().and_then(|a| a.as_str().ok()).map(str::to_owned)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn corrupted_certificates_never_panic() {
        let h = crate::generate_hierarchy("Acme", "Root", datetime!(2025-01-01 0:00 UTC)).unwrap();
        let der = h.station_ca.cert_der().to_vec();
        for i in 0..der.len() {
            let mut bad = der.clone();
            bad[i] ^= 0xff;
            let _ = inspect_certificate(&bad);
        }
        for len in 0..der.len() {
            assert!(inspect_certificate(&der[..len]).is_err());
        }
        let mut trailing = der.clone();
        trailing.push(0);
        assert!(matches!(inspect_certificate(&trailing), Err(PkiError::InvalidCertificate(_))));
    }

    #[test]
    fn chain_requires_a_certificate() {
        assert!(matches!(pem_to_der_chain(""), Err(PkiError::NoCertificate)));
        let broken = "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n";
        assert!(matches!(pem_to_der_chain(broken), Err(PkiError::Pem(_))));
    }
}
