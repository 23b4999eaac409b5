//! Revocation: CRLs (RFC 5280 §5) and OCSP responses (RFC 6960) signed by the
//! CA that issued the certificates, and the AIA/CRL-DP extensions that point
//! relying parties at them.
//!
//! OCSP is split in two so the caller can look statuses up asynchronously:
//! [`OcspRequest::parse`], then [`CertificateAuthority::ocsp_response`].

use std::str::FromStr;

use aws_lc_rs::digest;
use const_oid::db::{rfc5280, rfc5912, rfc6960, rfc8410};
use der::asn1::{Any, BitString, GeneralizedTime, Ia5String, ObjectIdentifier, OctetString};
use der::{Decode, Encode};
use rcgen::{
    CertificateRevocationListParams, KeyIdMethod, RevocationReason as RcgenReason, RevokedCertParams, SerialNumber,
    SigningKey,
};
use time::OffsetDateTime;
use x509_cert::Certificate;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{AccessDescription, AuthorityInfoAccessSyntax, CrlReason};
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_ocsp::{
    BasicOcspResponse, OcspGeneralizedTime, OcspResponse, ResponderId, ResponseData, RevokedInfo, SingleResponse,
};
use x509_parser::extensions::ParsedExtension;

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

    fn crl_reason(self) -> CrlReason {
        match self {
            Self::Unspecified => CrlReason::Unspecified,
            Self::KeyCompromise => CrlReason::KeyCompromise,
            Self::CaCompromise => CrlReason::CaCompromise,
            Self::AffiliationChanged => CrlReason::AffiliationChanged,
            Self::Superseded => CrlReason::Superseded,
            Self::CessationOfOperation => CrlReason::CessationOfOperation,
            Self::CertificateHold => CrlReason::CertificateHold,
            Self::PrivilegeWithdrawn => CrlReason::PrivilegeWithdrawn,
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

/// The authorityInfoAccess extension with one id-ad-ocsp URI (RFC 5280 §4.2.2.1).
pub(crate) fn aia_ocsp_extension(url: &str) -> Result<rcgen::CustomExtension, PkiError> {
    let uri = Ia5String::new(url).map_err(|_| PkiError::InvalidName(format!("OCSP URL '{url}' is not ASCII")))?;
    let aia = AuthorityInfoAccessSyntax(vec![AccessDescription {
        access_method: rfc5280::ID_AD_OCSP,
        access_location: GeneralName::UniformResourceIdentifier(uri),
    }]);
    Ok(rcgen::CustomExtension::from_oid_content(&arcs(&rfc5280::ID_PE_AUTHORITY_INFO_ACCESS), aia.to_der()?))
}

/// The arcs of `oid`, as rcgen names extensions.
fn arcs(oid: &ObjectIdentifier) -> Vec<u64> {
    oid.arcs().map(u64::from).collect()
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
        let (produced_at, next_update) = (generalized_time(now)?, generalized_time(next_update)?);
        let responses = request
            .certs
            .iter()
            .zip(statuses)
            .map(|(id, status)| {
                let cert_status = match status {
                    CertStatus::Good => x509_ocsp::CertStatus::good(),
                    CertStatus::Unknown => x509_ocsp::CertStatus::unknown(),
                    CertStatus::Revoked { at, reason } => x509_ocsp::CertStatus::revoked(RevokedInfo {
                        revocation_time: generalized_time(*at)?,
                        revocation_reason: Some(reason.crl_reason()),
                    }),
                };
                Ok(SingleResponse {
                    cert_id: id.id.clone(),
                    cert_status,
                    this_update: produced_at,
                    next_update: Some(next_update),
                    single_extensions: None,
                })
            })
            .collect::<Result<Vec<_>, PkiError>>()?;
        let tbs_response_data = ResponseData {
            version: x509_ocsp::Version::V1,
            responder_id: ResponderId::ByKey(OctetString::new(key_hash.as_ref())?),
            produced_at,
            responses,
            response_extensions: request.nonce.clone().map(|nonce| vec![nonce]),
        };
        let signature = self.issuer.key().sign(&tbs_response_data.to_der()?)?;
        let basic = BasicOcspResponse {
            tbs_response_data,
            signature_algorithm: signature_algorithm(rcgen::PublicKeyData::algorithm(self.issuer.key()))?,
            signature: BitString::from_bytes(&signature)?,
            certs: Some(vec![Certificate::from_der(&self.cert_der)?]),
        };
        Ok(OcspResponse::successful(basic)?.to_der()?)
    }
}

/// GeneralizedTime `YYYYMMDDHHMMSSZ` (RFC 5280 §4.1.2.5.2: UTC, no fractions).
fn generalized_time(t: OffsetDateTime) -> Result<OcspGeneralizedTime, PkiError> {
    let secs = u64::try_from(t.unix_timestamp())
        .map_err(|_| PkiError::Signing(format!("time {t} is before 1970 and has no GeneralizedTime here")))?;
    Ok(OcspGeneralizedTime(GeneralizedTime::from_unix_duration(std::time::Duration::from_secs(secs))?))
}

/// The AlgorithmIdentifier of the signatures a CA key makes: the ones rcgen signs
/// with for the keys a CA may have (ECDSA P-256/P-384/P-521 with SHA-256/384/512,
/// Ed25519, RSA PKCS#1 v1.5 with SHA-256). ECDSA and Ed25519 identifiers have no
/// parameters (RFC 5758 §3.2, RFC 8410 §3); RSA's are NULL (RFC 4055 §5).
fn signature_algorithm(alg: &'static rcgen::SignatureAlgorithm) -> Result<AlgorithmIdentifierOwned, PkiError> {
    let (oid, parameters) = if alg == &rcgen::PKCS_ECDSA_P256_SHA256 || alg == &rcgen::PKCS_ECDSA_P521_SHA256 {
        (rfc5912::ECDSA_WITH_SHA_256, None)
    } else if alg == &rcgen::PKCS_ECDSA_P384_SHA384 || alg == &rcgen::PKCS_ECDSA_P521_SHA384 {
        (rfc5912::ECDSA_WITH_SHA_384, None)
    } else if alg == &rcgen::PKCS_ECDSA_P521_SHA512 {
        (rfc5912::ECDSA_WITH_SHA_512, None)
    } else if alg == &rcgen::PKCS_ED25519 {
        (rfc8410::ID_ED_25519, None)
    } else if alg == &rcgen::PKCS_RSA_SHA256 {
        (rfc5912::SHA_256_WITH_RSA_ENCRYPTION, Some(Any::null()))
    } else {
        return Err(PkiError::Signing("no OCSP signature algorithm for this CA key".into()));
    };
    Ok(AlgorithmIdentifierOwned { oid, parameters })
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    /// The CertID as decoded from the request, echoed in the response.
    id: x509_ocsp::CertId,
}

/// A parsed OCSP request: what it asks about, and its nonce extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OcspRequest {
    pub certs: Vec<CertId>,
    nonce: Option<x509_cert::ext::Extension>,
}

/// Most CertIDs one request may carry.
pub const MAX_OCSP_REQUEST_CERTS: usize = 32;

impl OcspRequest {
    /// Parses a DER OCSPRequest (strict DER, nothing trailing). Signed requests are
    /// accepted; the signature is not needed (responses carry no secrets).
    pub fn parse(der_bytes: &[u8]) -> Result<OcspRequest, OcspError> {
        let request = x509_ocsp::OcspRequest::from_der(der_bytes).map_err(|_| OcspError::Malformed)?;
        let tbs = request.tbs_request;
        if tbs.request_list.is_empty() || tbs.request_list.len() > MAX_OCSP_REQUEST_CERTS {
            return Err(OcspError::Malformed);
        }
        let certs = tbs.request_list.into_iter().map(|r| cert_id(r.req_cert)).collect::<Result<_, _>>()?;
        let nonce =
            tbs.request_extensions.and_then(|exts| exts.into_iter().find(|e| e.extn_id == rfc6960::ID_PKIX_OCSP_NONCE));
        Ok(OcspRequest { certs, nonce })
    }

    /// Whether the request carries a nonce (RFC 8954) to echo.
    pub fn has_nonce(&self) -> bool {
        self.nonce.is_some()
    }

    /// The same request without its nonce: its answer does not depend on who
    /// asked or when, so it can be served again (RFC 5019 responders do this).
    pub fn without_nonce(&self) -> OcspRequest {
        OcspRequest { certs: self.certs.clone(), nonce: None }
    }
}

fn cert_id(id: x509_ocsp::CertId) -> Result<CertId, OcspError> {
    let hash = match id.hash_algorithm.oid {
        rfc5912::ID_SHA_1 => HashAlg::Sha1,
        rfc5912::ID_SHA_256 => HashAlg::Sha256,
        _ => return Err(OcspError::Malformed),
    };
    let serial = id.serial_number.as_bytes();
    if serial.is_empty() {
        return Err(OcspError::Malformed);
    }
    Ok(CertId {
        hash,
        issuer_name_hash: id.issuer_name_hash.as_bytes().to_vec(),
        issuer_key_hash: id.issuer_key_hash.as_bytes().to_vec(),
        serial_hex: crate::encoding::serial_hex(serial),
        id,
    })
}

/// Why no successful response can be given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OcspError {
    #[error("the OCSP request is malformed")]
    Malformed,
    #[error("the OCSP responder failed")]
    Internal,
    /// The responder is busy; the client should ask again later.
    #[error("the OCSP responder is busy")]
    TryLater,
}

impl OcspError {
    /// The unsigned OCSPResponse for this error (malformedRequest or internalError).
    pub fn response(self) -> Vec<u8> {
        let response = match self {
            OcspError::Malformed => OcspResponse::malformed_request(),
            OcspError::Internal => OcspResponse::internal_error(),
            OcspError::TryLater => OcspResponse::try_later(),
        };
        // SEQUENCE { ENUMERATED }: encoding it cannot fail (an empty body if it ever did).
        response.to_der().unwrap_or_default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
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
        assert_eq!(OcspError::Internal.response(), [0x30, 0x03, 0x0a, 0x01, 0x02]);
        assert_eq!(OcspError::TryLater.response(), [0x30, 0x03, 0x0a, 0x01, 0x03]);
    }

    #[test]
    fn a_request_without_its_nonce_asks_the_same() {
        let parsed = OcspRequest::parse(&request(2, rfc5912::ID_SHA_256, Some(b"nonce"))).unwrap();
        assert!(parsed.has_nonce());
        let plain = parsed.without_nonce();
        assert!(!plain.has_nonce());
        assert_eq!(plain.certs, parsed.certs);
        assert_eq!(plain, OcspRequest::parse(&request(2, rfc5912::ID_SHA_256, None)).unwrap());
    }

    /// An OCSPRequest (DER) for `n` copies of one CertID, hashed with `hash`,
    /// with a nonce extension if `nonce` is given.
    fn request(n: usize, hash: ObjectIdentifier, nonce: Option<&[u8]>) -> Vec<u8> {
        use x509_cert::ext::Extension;
        use x509_ocsp::{Request, TbsRequest};
        let req_cert = x509_ocsp::CertId {
            hash_algorithm: AlgorithmIdentifierOwned { oid: hash, parameters: Some(Any::null()) },
            issuer_name_hash: OctetString::new([1u8; 20]).unwrap(),
            issuer_key_hash: OctetString::new([2u8; 20]).unwrap(),
            serial_number: x509_cert::serial_number::SerialNumber::new(&[0x00, 0x80, 0x01]).unwrap(),
        };
        let nonce = nonce.map(|n| {
            let value = x509_ocsp::ext::Nonce::new(n).unwrap().to_der().unwrap();
            vec![Extension {
                extn_id: rfc6960::ID_PKIX_OCSP_NONCE,
                critical: false,
                extn_value: OctetString::new(value).unwrap(),
            }]
        });
        let tbs_request = TbsRequest {
            version: x509_ocsp::Version::V1,
            requestor_name: None,
            request_list: vec![Request { req_cert, single_request_extensions: None }; n],
            request_extensions: nonce,
        };
        x509_ocsp::OcspRequest { tbs_request, optional_signature: None }.to_der().unwrap()
    }

    #[test]
    fn well_formed_requests_parse() {
        let parsed = OcspRequest::parse(&request(1, rfc5912::ID_SHA_1, Some(b"0123456789abcdef"))).unwrap();
        assert_eq!(parsed.certs.len(), 1);
        let id = &parsed.certs[0];
        assert_eq!((id.hash, id.serial_hex.as_str()), (HashAlg::Sha1, "8001"));
        assert_eq!((id.issuer_name_hash.as_slice(), id.issuer_key_hash.as_slice()), (&[1u8; 20][..], &[2u8; 20][..]));
        let nonce = parsed.nonce.as_ref().unwrap();
        assert_eq!(
            x509_ocsp::ext::Nonce::from_der(nonce.extn_value.as_bytes()).unwrap().0.as_bytes(),
            b"0123456789abcdef"
        );
        let parsed = OcspRequest::parse(&request(MAX_OCSP_REQUEST_CERTS, rfc5912::ID_SHA_256, None)).unwrap();
        assert_eq!(parsed.certs.len(), MAX_OCSP_REQUEST_CERTS);
        assert!(parsed.certs.iter().all(|c| c.hash == HashAlg::Sha256));
        assert_eq!(parsed.nonce, None);
    }

    #[test]
    fn requests_beyond_the_limits_are_malformed() {
        assert_eq!(OcspRequest::parse(&request(0, rfc5912::ID_SHA_1, None)), Err(OcspError::Malformed));
        assert_eq!(
            OcspRequest::parse(&request(MAX_OCSP_REQUEST_CERTS + 1, rfc5912::ID_SHA_1, None)),
            Err(OcspError::Malformed)
        );
        // A CertID hashed with anything but SHA-1 or SHA-256.
        assert_eq!(OcspRequest::parse(&request(1, rfc5912::ID_SHA_384, None)), Err(OcspError::Malformed));
    }

    /// A cheap stand-in for fuzzing: truncations, trailing bytes, BER-only length
    /// forms and every single-byte corruption of a valid request are refused or
    /// parsed, never panicked on.
    #[test]
    fn corrupted_requests_never_panic() {
        let good = request(1, rfc5912::ID_SHA_1, Some(b"nonce"));
        assert!(OcspRequest::parse(&good).is_ok());
        for len in 0..good.len() {
            assert_eq!(OcspRequest::parse(&good[..len]), Err(OcspError::Malformed), "truncated to {len}");
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(OcspRequest::parse(&trailing), Err(OcspError::Malformed));
        // The outer length in a longer form than needed, and indefinite (BER, not DER).
        assert!(good[1] < 0x80, "short request expected");
        let mut long_form = vec![0x30, 0x81, good[1]];
        long_form.extend_from_slice(&good[2..]);
        assert_eq!(OcspRequest::parse(&long_form), Err(OcspError::Malformed));
        let mut indefinite = vec![0x30, 0x80];
        indefinite.extend_from_slice(&good[2..]);
        indefinite.extend_from_slice(&[0, 0]);
        assert_eq!(OcspRequest::parse(&indefinite), Err(OcspError::Malformed));
        for i in 0..good.len() {
            for mask in [0x01u8, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[i] ^= mask;
                let _ = OcspRequest::parse(&bad);
            }
        }
    }
}
