//! Revocation: CRLs (RFC 5280 §5) and OCSP responses (RFC 6960) signed by the
//! CA that issued the certificates, and the AIA/CRL-DP extensions that point
//! relying parties at them.
//!
//! OCSP is split in two so the caller can look statuses up asynchronously:
//! [`OcspRequest::parse`], then [`CertificateAuthority::ocsp_response`].

use std::str::FromStr;

use aws_lc_rs::digest;
use rcgen::{
    CertificateRevocationListParams, KeyIdMethod, RevocationReason as RcgenReason, RevokedCertParams, SerialNumber,
    SigningKey,
};
use time::OffsetDateTime;
use x509_parser::extensions::ParsedExtension;

use crate::der::{self, DerError, Reader};
use crate::inspect::parse_certificate;
use crate::{CertificateAuthority, PkiError};

/// RFC 5280 CRLReason, spelled as there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RevocationReason {
    Unspecified,
    KeyCompromise,
    CaCompromise,
    AffiliationChanged,
    Superseded,
    CessationOfOperation,
    CertificateHold,
    PrivilegeWithdrawn,
}

impl RevocationReason {
    pub const ALL: &'static [RevocationReason] = &[
        Self::Unspecified,
        Self::KeyCompromise,
        Self::CaCompromise,
        Self::AffiliationChanged,
        Self::Superseded,
        Self::CessationOfOperation,
        Self::CertificateHold,
        Self::PrivilegeWithdrawn,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::KeyCompromise => "keyCompromise",
            Self::CaCompromise => "cACompromise",
            Self::AffiliationChanged => "affiliationChanged",
            Self::Superseded => "superseded",
            Self::CessationOfOperation => "cessationOfOperation",
            Self::CertificateHold => "certificateHold",
            Self::PrivilegeWithdrawn => "privilegeWithdrawn",
        }
    }

    /// The CRLReason code.
    pub fn code(self) -> u8 {
        match self {
            Self::Unspecified => 0,
            Self::KeyCompromise => 1,
            Self::CaCompromise => 2,
            Self::AffiliationChanged => 3,
            Self::Superseded => 4,
            Self::CessationOfOperation => 5,
            Self::CertificateHold => 6,
            Self::PrivilegeWithdrawn => 9,
        }
    }

    fn rcgen(self) -> RcgenReason {
        match self {
            Self::Unspecified => RcgenReason::Unspecified,
            Self::KeyCompromise => RcgenReason::KeyCompromise,
            Self::CaCompromise => RcgenReason::CaCompromise,
            Self::AffiliationChanged => RcgenReason::AffiliationChanged,
            Self::Superseded => RcgenReason::Superseded,
            Self::CessationOfOperation => RcgenReason::CessationOfOperation,
            Self::CertificateHold => RcgenReason::CertificateHold,
            Self::PrivilegeWithdrawn => RcgenReason::PrivilegeWithdrawn,
        }
    }
}

impl FromStr for RevocationReason {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL.iter().copied().find(|r| r.as_str().eq_ignore_ascii_case(s)).ok_or_else(|| {
            format!(
                "unknown revocation reason '{s}' ({})",
                Self::ALL.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ")
            )
        })
    }
}

/// A revoked certificate, for CRLs and OCSP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    /// Serial, as [`crate::CertInfo::serial_hex`].
    pub serial_hex: String,
    pub revoked_at: OffsetDateTime,
    pub reason: RevocationReason,
}

/// What the CA knows of one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertStatus {
    Good,
    Revoked {
        at: OffsetDateTime,
        reason: RevocationReason,
    },
    /// Not issued by this CA (or not known to it).
    Unknown,
}

/// Where relying parties find revocation information for certificates a CA issues.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevocationEndpoints {
    /// CRL distribution point (HTTP URL of the DER CRL).
    pub crl_url: Option<String>,
    /// OCSP responder (authorityInfoAccess id-ad-ocsp).
    pub ocsp_url: Option<String>,
}

/// The authorityInfoAccess extension with one id-ad-ocsp URI.
pub(crate) fn aia_ocsp_extension(url: &str) -> rcgen::CustomExtension {
    let access = der::seq(&[&der::oid(&[1, 3, 6, 1, 5, 5, 7, 48, 1]), &der::tlv(der::ctx_prim(6), url.as_bytes())]);
    let content = der::seq(&[&access]);
    rcgen::CustomExtension::from_oid_content(&[1, 3, 6, 1, 5, 5, 7, 1, 1], content)
}

fn serial_bytes(serial_hex: &str) -> Result<Vec<u8>, PkiError> {
    let even = if serial_hex.len() % 2 == 1 { format!("0{serial_hex}") } else { serial_hex.to_owned() };
    (0..even.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&even[i..i + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| PkiError::InvalidCertificate(format!("serial '{serial_hex}' is not hexadecimal")))
}

impl CertificateAuthority {
    /// A CRL (DER) listing `revoked`, signed by this CA, numbered `number`.
    pub fn crl(
        &self,
        revoked: &[Revoked],
        number: u64,
        this_update: OffsetDateTime,
        next_update: OffsetDateTime,
    ) -> Result<Vec<u8>, PkiError> {
        let revoked_certs = revoked
            .iter()
            .map(|r| {
                Ok(RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&serial_bytes(&r.serial_hex)?),
                    revocation_time: r.revoked_at,
                    reason_code: Some(r.reason.rcgen()),
                    invalidity_date: None,
                })
            })
            .collect::<Result<Vec<_>, PkiError>>()?;
        let params = CertificateRevocationListParams {
            this_update,
            next_update,
            crl_number: SerialNumber::from_slice(&number.to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::PreSpecified(self.subject_key_id()?),
        };
        Ok(params.signed_by(&self.issuer)?.der().to_vec())
    }

    fn subject_key_id(&self) -> Result<Vec<u8>, PkiError> {
        let cert = parse_certificate(&self.cert_der)?;
        cert.extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
                _ => None,
            })
            .ok_or_else(|| PkiError::InvalidCertificate("CA certificate has no subjectKeyIdentifier".into()))
    }

    /// Whether `id` names a certificate issued by this CA (issuer name and key hashes).
    pub fn issued(&self, id: &CertId) -> bool {
        id.names_issuer(&self.cert_der)
    }

    /// A signed, successful OCSP response (DER) giving `statuses[i]` for
    /// `request.certs[i]`, valid until `next_update`; the request's nonce is echoed.
    pub fn ocsp_response(
        &self,
        request: &OcspRequest,
        statuses: &[CertStatus],
        now: OffsetDateTime,
        next_update: OffsetDateTime,
    ) -> Result<Vec<u8>, PkiError> {
        let cert = parse_certificate(&self.cert_der)?;
        let key_hash =
            digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, cert.public_key().subject_public_key.data.as_ref());
        let responder_id = der::tlv(der::ctx_cons(2), &der::tlv(der::OCTET_STRING, key_hash.as_ref()));
        let mut singles = Vec::new();
        for (id, status) in request.certs.iter().zip(statuses) {
            let status = match status {
                CertStatus::Good => der::tlv(der::ctx_prim(0), &[]),
                CertStatus::Unknown => der::tlv(der::ctx_prim(2), &[]),
                CertStatus::Revoked { at, reason } => {
                    let reason = der::tlv(der::ctx_cons(0), &der::tlv(der::ENUMERATED, &[reason.code()]));
                    der::tlv(der::ctx_cons(1), &[der::generalized_time(*at), reason].concat())
                }
            };
            let next = der::tlv(der::ctx_cons(0), &der::generalized_time(next_update));
            singles.push(der::seq(&[&id.raw, &status, &der::generalized_time(now), &next]));
        }
        let mut data = vec![
            responder_id,
            der::generalized_time(now),
            der::seq(&singles.iter().map(Vec::as_slice).collect::<Vec<_>>()),
        ];
        if let Some(nonce) = &request.nonce_extension {
            data.push(der::tlv(der::ctx_cons(1), &der::seq(&[nonce])));
        }
        let tbs = der::seq(&data.iter().map(Vec::as_slice).collect::<Vec<_>>());
        let alg_id = signature_algorithm(rcgen::PublicKeyData::algorithm(self.issuer.key()))?;
        let signature = self.issuer.key().sign(&tbs)?;
        let certs = der::tlv(der::ctx_cons(0), &der::seq(&[&self.cert_der]));
        let basic = der::seq(&[&tbs, &alg_id, &der::bit_string(&signature), &certs]);
        let bytes = der::seq(&[&der::oid(&[1, 3, 6, 1, 5, 5, 7, 48, 1, 1]), &der::tlv(der::OCTET_STRING, &basic)]);
        Ok(der::seq(&[&der::tlv(der::ENUMERATED, &[0]), &der::tlv(der::ctx_cons(0), &bytes)]))
    }
}

/// The AlgorithmIdentifier (DER) of the signatures a CA key makes: the ones
/// rcgen signs with for the keys a CA may have (ECDSA P-256/P-384 with SHA-256/384,
/// Ed25519, RSA PKCS#1 v1.5 with SHA-256).
fn signature_algorithm(alg: &'static rcgen::SignatureAlgorithm) -> Result<Vec<u8>, PkiError> {
    if alg == &rcgen::PKCS_ECDSA_P256_SHA256 {
        Ok(der::seq(&[&der::oid(&[1, 2, 840, 10045, 4, 3, 2])]))
    } else if alg == &rcgen::PKCS_ECDSA_P384_SHA384 {
        Ok(der::seq(&[&der::oid(&[1, 2, 840, 10045, 4, 3, 3])]))
    } else if alg == &rcgen::PKCS_ED25519 {
        Ok(der::seq(&[&der::oid(&[1, 3, 101, 112])]))
    } else if alg == &rcgen::PKCS_RSA_SHA256 {
        Ok(der::seq(&[&der::oid(&[1, 2, 840, 113549, 1, 1, 11]), &der::tlv(0x05, &[])]))
    } else {
        Err(PkiError::Signing("no OCSP signature algorithm for this CA key".into()))
    }
}

impl CertId {
    /// Whether the CA certificate `ca_der` is the issuer this CertID names
    /// (hashes of its subject name and public key), without opening its key.
    pub fn names_issuer(&self, ca_der: &[u8]) -> bool {
        let Ok(cert) = parse_certificate(ca_der) else { return false };
        let alg = match self.hash {
            HashAlg::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
            HashAlg::Sha256 => &digest::SHA256,
        };
        let name = digest::digest(alg, cert.subject().as_raw());
        let key = digest::digest(alg, cert.public_key().subject_public_key.data.as_ref());
        name.as_ref() == self.issuer_name_hash.as_slice() && key.as_ref() == self.issuer_key_hash.as_slice()
    }
}

/// The hash a CertID was made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlg {
    Sha1,
    Sha256,
}

/// One CertID of an OCSP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertId {
    pub hash: HashAlg,
    pub issuer_name_hash: Vec<u8>,
    pub issuer_key_hash: Vec<u8>,
    /// Serial, as [`crate::CertInfo::serial_hex`].
    pub serial_hex: String,
    /// The CertID as encoded in the request, echoed in the response.
    raw: Vec<u8>,
}

/// A parsed OCSP request: what it asks about, and its nonce extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OcspRequest {
    pub certs: Vec<CertId>,
    nonce_extension: Option<Vec<u8>>,
}

/// Most CertIDs one request may carry.
pub const MAX_OCSP_REQUEST_CERTS: usize = 32;

impl OcspRequest {
    /// Parses a DER OCSPRequest. Signed requests are accepted; the signature is
    /// not needed (responses carry no secrets).
    pub fn parse(der_bytes: &[u8]) -> Result<OcspRequest, OcspError> {
        Self::parse_inner(der_bytes).map_err(|_| OcspError::Malformed)
    }

    fn parse_inner(bytes: &[u8]) -> Result<OcspRequest, DerError> {
        let mut top = Reader::new(bytes);
        let req = top.expect(der::SEQUENCE)?;
        if !top.is_empty() {
            return Err(DerError);
        }
        let mut req = Reader::new(req.value);
        let tbs = req.expect(der::SEQUENCE)?;
        let mut tbs = Reader::new(tbs.value);
        tbs.optional(der::ctx_cons(0))?; // version
        tbs.optional(der::ctx_cons(1))?; // requestorName
        let list = tbs.expect(der::SEQUENCE)?;
        let mut list = Reader::new(list.value);
        let mut certs = Vec::new();
        while !list.is_empty() {
            let one = list.expect(der::SEQUENCE)?;
            let mut one = Reader::new(one.value);
            let id = one.expect(der::SEQUENCE)?;
            certs.push(parse_cert_id(id.raw, id.value)?);
            if certs.len() > MAX_OCSP_REQUEST_CERTS {
                return Err(DerError);
            }
        }
        if certs.is_empty() {
            return Err(DerError);
        }
        let mut nonce_extension = None;
        if let Some(exts) = tbs.optional(der::ctx_cons(2))? {
            let mut outer = Reader::new(exts.value);
            let seq = outer.expect(der::SEQUENCE)?;
            let mut exts = Reader::new(seq.value);
            let nonce_oid = der::oid(&[1, 3, 6, 1, 5, 5, 7, 48, 1, 2]);
            while !exts.is_empty() {
                let ext = exts.expect(der::SEQUENCE)?;
                let mut e = Reader::new(ext.value);
                if e.expect(der::OID)?.raw == nonce_oid.as_slice() {
                    nonce_extension = Some(ext.raw.to_vec());
                }
            }
        }
        Ok(OcspRequest { certs, nonce_extension })
    }
}

fn parse_cert_id(raw: &[u8], value: &[u8]) -> Result<CertId, DerError> {
    let mut r = Reader::new(value);
    let alg = r.expect(der::SEQUENCE)?;
    let mut alg = Reader::new(alg.value);
    let oid = alg.expect(der::OID)?;
    let hash = if oid.raw == der::oid(&[1, 3, 14, 3, 2, 26]).as_slice() {
        HashAlg::Sha1
    } else if oid.raw == der::oid(&[2, 16, 840, 1, 101, 3, 4, 2, 1]).as_slice() {
        HashAlg::Sha256
    } else {
        return Err(DerError);
    };
    let name = r.expect(der::OCTET_STRING)?;
    let key = r.expect(der::OCTET_STRING)?;
    let serial = r.expect(der::INTEGER)?;
    if serial.value.is_empty() || serial.value.len() > 21 {
        return Err(DerError);
    }
    Ok(CertId {
        hash,
        issuer_name_hash: name.value.to_vec(),
        issuer_key_hash: key.value.to_vec(),
        serial_hex: crate::encoding::serial_hex(serial.value),
        raw: raw.to_vec(),
    })
}

/// Why no successful response can be given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OcspError {
    #[error("the OCSP request is malformed")]
    Malformed,
    #[error("the OCSP responder failed")]
    Internal,
}

impl OcspError {
    /// The unsigned OCSPResponse for this error (malformedRequest or internalError).
    pub fn response(self) -> Vec<u8> {
        let status = match self {
            OcspError::Malformed => 1,
            OcspError::Internal => 2,
        };
        der::seq(&[&der::tlv(der::ENUMERATED, &[status])])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_round_trip() {
        for r in RevocationReason::ALL {
            assert_eq!(r.as_str().parse::<RevocationReason>(), Ok(*r));
        }
        assert_eq!("KEYCOMPROMISE".parse::<RevocationReason>(), Ok(RevocationReason::KeyCompromise));
        assert!("lost".parse::<RevocationReason>().is_err());
    }

    #[test]
    fn malformed_requests_are_refused_not_panicked_on() {
        for bad in
            [&b""[..], &[0x30, 0x00], &[0x30, 0x02, 0x30, 0x00], &[0x30, 0x04, 0x30, 0x02, 0x30, 0x00], &[0xff; 40]]
        {
            assert_eq!(OcspRequest::parse(bad), Err(OcspError::Malformed), "{bad:?}");
        }
        assert_eq!(OcspError::Malformed.response(), [0x30, 0x03, 0x0a, 0x01, 0x01]);
    }
}
