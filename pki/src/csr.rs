//! CSR policy: every check is a named rule, and a rejection names the rule that failed.
//!
//! Rules, in the order they run:
//! 1. `csr.length`: the PEM text is at most [`MAX_CSR_PEM_LEN`] bytes (OCPP's
//!    `SignCertificateRequest.csr` is limited to 5500 characters).
//! 2. `csr.pem`: exactly one `CERTIFICATE REQUEST` PEM block.
//! 3. `csr.der`: the block is a well-formed PKCS#10 request with nothing trailing.
//! 4. `csr.key_strength`: the key gives at least 112-bit security and aws-lc-rs can verify it:
//!    ECDSA P-256, P-384 or P-521 (ISO 15118-20 uses secp521r1 with SHA-512), or RSA
//!    2048..=8192 bits; the signature uses SHA-256, SHA-384 or SHA-512 (RSA also as PSS).
//!    SHA-1, MD5, Ed25519, other curves and mismatched key/signature pairs are refused.
//! 5. `csr.signature`: the request is signed by the key it carries (proof of possession),
//!    checked with aws-lc-rs (`crate::signature`).
//! 6. `csr.common_name`: the subject has exactly one CN and it equals the expected one.
//!
//! And, when the caller asks ([`ValidatedCsr::check_organization`]):
//! 7. `csr.organization`: the subject O, if any, is the operator's organisation name
//!    (A02.FR.13: stations put their `OrganizationName` there).

use rcgen::SubjectPublicKeyInfo as RcgenSpki;
use rustls_pki_types::CertificateSigningRequestDer;
use rustls_pki_types::pem::PemObject;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::error::X509Error;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_NIST_EC_P521, OID_PKCS1_RSAENCRYPTION,
    OID_PKCS1_RSASSAPSS, OID_PKCS1_SHA256WITHRSA, OID_PKCS1_SHA384WITHRSA, OID_PKCS1_SHA512WITHRSA,
    OID_SIG_ECDSA_WITH_SHA256, OID_SIG_ECDSA_WITH_SHA384, OID_SIG_ECDSA_WITH_SHA512,
};
use x509_parser::prelude::FromDer;
use x509_parser::x509::{SubjectPublicKeyInfo, X509Name};

use crate::signature::verify_signature;

/// Largest accepted CSR, in bytes of PEM text (OCPP 2.0.1 `csr` field: string[0..5500]).
pub const MAX_CSR_PEM_LEN: usize = 5500;

const MIN_RSA_BITS: usize = 2048;
// aws-lc-rs verifies RSA signatures up to 8192 bits (`RSA_PKCS1_2048_8192_*`).
const MAX_RSA_BITS: usize = 8192;

/// Why a CSR was refused. [`rule`](Self::rule) gives a stable name for each.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum CsrRejection {
    /// `csr.length`: the PEM text is longer than allowed.
    #[error("CSR is {len} bytes, more than the {max} allowed")]
    TooLong {
        /// Length received.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// `csr.pem`: not exactly one PEM `CERTIFICATE REQUEST` block.
    #[error("CSR is not PEM: {0}")]
    NotPem(String),
    /// `csr.der`: the block is not a well-formed PKCS#10 request.
    #[error("CSR is malformed: {0}")]
    Malformed(String),
    /// `csr.signature`: the signature does not verify with the request's own key, so the
    /// requester has not proven possession of the private key.
    #[error("CSR signature does not verify (proof of possession failed)")]
    BadSignature,
    /// `csr.key_strength`: the key or signature algorithm is weaker than 112-bit security
    /// or not supported.
    #[error("CSR key not accepted: {0}")]
    WeakKey(String),
    /// `csr.common_name`: the subject CN is missing, repeated, or not the expected one.
    #[error("CSR subject CN {found:?} does not match expected {expected:?}")]
    CommonNameMismatch {
        /// The CN the caller required.
        expected: String,
        /// The CN(s) found; `None` when there is no usable CN.
        found: Option<String>,
    },
    /// `csr.organization`: the subject O is not the operator's organisation.
    #[error("CSR subject O {found:?} does not match the organisation {expected:?}")]
    OrganizationMismatch {
        /// The organisation name required.
        expected: String,
        /// The O found.
        found: String,
    },
}

impl CsrRejection {
    /// Stable name of the rule that failed, e.g. `"csr.signature"`.
    pub fn rule(&self) -> &'static str {
        match self {
            CsrRejection::TooLong { .. } => "csr.length",
            CsrRejection::NotPem(_) => "csr.pem",
            CsrRejection::Malformed(_) => "csr.der",
            CsrRejection::BadSignature => "csr.signature",
            CsrRejection::WeakKey(_) => "csr.key_strength",
            CsrRejection::CommonNameMismatch { .. } => "csr.common_name",
            CsrRejection::OrganizationMismatch { .. } => "csr.organization",
        }
    }
}

/// A CSR that passed every rule: holds what issuance needs.
///
/// Only the subject CN and the public key are kept. Requested extensions are deliberately
/// dropped: the CA decides the profile of what it issues.
#[derive(Clone)]
pub struct ValidatedCsr {
    der: Vec<u8>,
    subject_cn: String,
    subject_o: Option<String>,
    spki_der: Vec<u8>,
    public_key: RcgenSpki,
    key: CsrKey,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CsrKey {
    EcdsaP256,
    EcdsaP384,
    EcdsaP521,
    Rsa { bits: usize },
}

impl ValidatedCsr {
    /// The CN of the subject (equal to the `expected_cn` passed to [`validate_csr`]).
    pub fn subject_cn(&self) -> &str {
        &self.subject_cn
    }

    /// The subject's first O, if it has one.
    pub fn subject_o(&self) -> Option<&str> {
        self.subject_o.as_deref()
    }

    /// Rule `csr.organization`: an O in the subject must be `organization`. An
    /// absent O is accepted (the issued certificate carries the organisation anyway).
    pub fn check_organization(&self, organization: &str) -> Result<(), CsrRejection> {
        match self.subject_o.as_deref() {
            Some(o) if o != organization => {
                Err(CsrRejection::OrganizationMismatch { expected: organization.to_owned(), found: o.to_owned() })
            }
            _ => Ok(()),
        }
    }

    /// Human-readable key type, e.g. `"ECDSA P-256"` or `"RSA 2048"`.
    pub fn key_description(&self) -> String {
        match self.key {
            CsrKey::EcdsaP256 => "ECDSA P-256".to_owned(),
            CsrKey::EcdsaP384 => "ECDSA P-384".to_owned(),
            CsrKey::EcdsaP521 => "ECDSA P-521".to_owned(),
            CsrKey::Rsa { bits } => format!("RSA {bits}"),
        }
    }

    /// The request as received, DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The requester's SubjectPublicKeyInfo, DER.
    pub fn public_key_der(&self) -> &[u8] {
        &self.spki_der
    }

    pub(crate) fn public_key(&self) -> &RcgenSpki {
        &self.public_key
    }

    pub(crate) fn key(&self) -> CsrKey {
        self.key
    }
}

impl std::fmt::Debug for ValidatedCsr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValidatedCsr")
            .field("subject_cn", &self.subject_cn)
            .field("key", &self.key_description())
            .finish_non_exhaustive()
    }
}

/// Apply the CSR policy to `pem`, requiring subject CN `expected_cn`.
pub fn validate_csr(pem: &str, expected_cn: &str) -> Result<ValidatedCsr, CsrRejection> {
    // csr.length
    if pem.len() > MAX_CSR_PEM_LEN {
        return Err(CsrRejection::TooLong { len: pem.len(), max: MAX_CSR_PEM_LEN });
    }

    // csr.pem
    let der = single_csr_block(pem)?;

    // csr.der
    let csr = match X509CertificationRequest::from_der(&der) {
        Ok((rest, _)) if !rest.is_empty() => {
            return Err(CsrRejection::Malformed("trailing bytes after the request".to_owned()));
        }
        Ok((_, csr)) => csr,
        Err(e) => return Err(CsrRejection::Malformed(e.to_string())),
    };
    let info = &csr.certification_request_info;

    // csr.key_strength
    let key = classify_key(&info.subject_pki)?;
    check_signature_algorithm(&csr, key)?;

    // csr.signature (A00.FR.5xx: proof of possession of the private key)
    match verify_signature(&info.subject_pki, &csr.signature_algorithm, &csr.signature_value, info.raw) {
        Ok(()) => {}
        Err(X509Error::SignatureUnsupportedAlgorithm) => {
            return Err(CsrRejection::WeakKey("signature algorithm not supported for this key".to_owned()));
        }
        Err(_) => return Err(CsrRejection::BadSignature),
    }

    // csr.common_name
    let subject_cn = single_common_name(&info.subject, expected_cn)?;

    let spki_der = info.subject_pki.raw.to_vec();
    let public_key = RcgenSpki::from_der(&spki_der).map_err(|e| CsrRejection::Malformed(format!("public key: {e}")))?;

    let subject_o = info.subject.iter_organization().next().and_then(|o| o.as_str().ok()).map(str::to_owned);
    Ok(ValidatedCsr { der: der.to_vec(), subject_cn, subject_o, spki_der, public_key, key })
}

fn single_csr_block(pem: &str) -> Result<CertificateSigningRequestDer<'static>, CsrRejection> {
    let mut blocks = CertificateSigningRequestDer::pem_slice_iter(pem.as_bytes());
    let first = match blocks.next() {
        None => {
            return Err(CsrRejection::NotPem("no CERTIFICATE REQUEST block found".to_owned()));
        }
        Some(Err(e)) => return Err(CsrRejection::NotPem(pem_error(&e))),
        Some(Ok(der)) => der,
    };
    match blocks.next() {
        None => Ok(first),
        Some(Ok(_)) => Err(CsrRejection::NotPem("more than one CERTIFICATE REQUEST block".to_owned())),
        Some(Err(e)) => Err(CsrRejection::NotPem(pem_error(&e))),
    }
}

fn pem_error(e: &rustls_pki_types::pem::Error) -> String {
    use rustls_pki_types::pem::Error;
    match e {
        Error::MissingSectionEnd { .. } => "PEM block has no END line".to_owned(),
        Error::IllegalSectionStart { .. } => "malformed PEM BEGIN line".to_owned(),
        Error::Base64Decode(_) => "PEM body is not valid base64".to_owned(),
        _ => "invalid PEM".to_owned(),
    }
}

fn classify_key(spki: &SubjectPublicKeyInfo<'_>) -> Result<CsrKey, CsrRejection> {
    let alg = &spki.algorithm.algorithm;
    if *alg == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .ok_or_else(|| CsrRejection::WeakKey("EC key without a named curve is not supported".to_owned()))?;
        if curve == OID_EC_P256 {
            Ok(CsrKey::EcdsaP256)
        } else if curve == OID_NIST_EC_P384 {
            Ok(CsrKey::EcdsaP384)
        } else if curve == OID_NIST_EC_P521 {
            Ok(CsrKey::EcdsaP521)
        } else {
            Err(CsrRejection::WeakKey(format!("EC curve {curve} is not supported; use P-256, P-384 or P-521")))
        }
    } else if *alg == OID_PKCS1_RSAENCRYPTION {
        let bits = match spki.parsed() {
            Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => rsa_modulus_bits(rsa.modulus),
            _ => return Err(CsrRejection::Malformed("RSA public key".to_owned())),
        };
        if bits < MIN_RSA_BITS {
            Err(CsrRejection::WeakKey(format!("RSA key of {bits} bits is below the {MIN_RSA_BITS}-bit minimum")))
        } else if bits > MAX_RSA_BITS {
            Err(CsrRejection::WeakKey(format!(
                "RSA key of {bits} bits is above the supported {MAX_RSA_BITS}-bit maximum"
            )))
        } else {
            Ok(CsrKey::Rsa { bits })
        }
    } else {
        Err(CsrRejection::WeakKey(format!(
            "key algorithm {alg} is not supported; use ECDSA P-256/P-384/P-521 or RSA >= 2048"
        )))
    }
}

/// Bit length of an unsigned big-endian integer (DER may add a leading zero byte).
fn rsa_modulus_bits(modulus: &[u8]) -> usize {
    match modulus.iter().position(|b| *b != 0) {
        Some(i) => (modulus.len() - i) * 8 - modulus[i].leading_zeros() as usize,
        None => 0,
    }
}

fn check_signature_algorithm(csr: &X509CertificationRequest<'_>, key: CsrKey) -> Result<(), CsrRejection> {
    let sig = &csr.signature_algorithm.algorithm;
    let accepted: &[_] = match key {
        CsrKey::EcdsaP256 | CsrKey::EcdsaP384 | CsrKey::EcdsaP521 => {
            &[OID_SIG_ECDSA_WITH_SHA256, OID_SIG_ECDSA_WITH_SHA384, OID_SIG_ECDSA_WITH_SHA512]
        }
        // PSS parameters are checked by the verifier: SHA-256/384/512 only.
        CsrKey::Rsa { .. } => {
            &[OID_PKCS1_SHA256WITHRSA, OID_PKCS1_SHA384WITHRSA, OID_PKCS1_SHA512WITHRSA, OID_PKCS1_RSASSAPSS]
        }
    };
    if accepted.contains(sig) {
        Ok(())
    } else {
        // SHA-1, MD5 and mismatched algorithms end here.
        Err(CsrRejection::WeakKey(format!("signature algorithm {sig} is not accepted for this key")))
    }
}

fn single_common_name(subject: &X509Name<'_>, expected: &str) -> Result<String, CsrRejection> {
    let mismatch = |found: Option<String>| CsrRejection::CommonNameMismatch { expected: expected.to_owned(), found };
    let cns: Vec<_> = subject.iter_common_name().collect();
    match cns.as_slice() {
        [] => Err(mismatch(None)),
        [one] => match one.as_str() {
            Ok(cn) if cn == expected => Ok(cn.to_owned()),
            Ok(cn) => Err(mismatch(Some(cn.to_owned()))),
            Err(_) => Err(mismatch(None)),
        },
        many => {
            let found = many.iter().map(|a| a.as_str().unwrap_or("?")).collect::<Vec<_>>().join(",");
            Err(mismatch(Some(found)))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn organization_rule() {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let csr_with = |o: Option<&str>| {
            let mut params = CertificateParams::default();
            params.distinguished_name = rcgen::DistinguishedName::new();
            params.distinguished_name.push(DnType::CommonName, "CS1");
            if let Some(o) = o {
                params.distinguished_name.push(DnType::OrganizationName, o);
            }
            validate_csr(&params.serialize_request(&key).unwrap().pem().unwrap(), "CS1").unwrap()
        };
        assert_eq!(csr_with(Some("Acme")).check_organization("Acme"), Ok(()));
        assert_eq!(csr_with(None).check_organization("Acme"), Ok(()));
        let e = csr_with(Some("Evil")).check_organization("Acme").unwrap_err();
        assert_eq!(e.rule(), "csr.organization");
        assert!(e.to_string().contains("Evil"), "{e}");
    }
    use crate::test_support::openssl;
    use rcgen::{CertificateParams, DnType, KeyPair};

    fn rcgen_csr(cn: Option<&str>, alg: &'static rcgen::SignatureAlgorithm) -> String {
        let key = KeyPair::generate_for(alg).unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(cn) = cn {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        params.serialize_request(&key).unwrap().pem().unwrap()
    }

    fn openssl_csr(newkey: &str, subj: &str) -> String {
        openssl_csr_digest(newkey, "-sha256", subj)
    }

    /// An openssl CSR for `newkey` (`rsa:2048`, ...) signed with `digest`.
    fn openssl_csr_digest(newkey: &str, digest: &str, subj: &str) -> String {
        let out = openssl(&["req", "-new", "-newkey", newkey, digest, "-nodes", "-subj", subj, "-keyout", "/dev/null"]);
        String::from_utf8(out).unwrap()
    }

    fn openssl_ec_csr(curve: &str, subj: &str) -> String {
        openssl_ec_csr_digest(curve, "-sha256", subj)
    }

    /// An openssl EC CSR signed with `digest` (`-sha256`, `-sha1`, ...).
    fn openssl_ec_csr_digest(curve: &str, digest: &str, subj: &str) -> String {
        let paramgen = format!("ec_paramgen_curve:{curve}");
        let out = openssl(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            &paramgen,
            digest,
            "-nodes",
            "-subj",
            subj,
            "-keyout",
            "/dev/null",
        ]);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn accepts_p256_from_rcgen() {
        let pem = rcgen_csr(Some("CS001"), &rcgen::PKCS_ECDSA_P256_SHA256);
        let csr = validate_csr(&pem, "CS001").unwrap();
        assert_eq!(csr.subject_cn(), "CS001");
        assert_eq!(csr.key_description(), "ECDSA P-256");
    }

    #[test]
    fn accepts_p384_from_rcgen() {
        let pem = rcgen_csr(Some("CS001"), &rcgen::PKCS_ECDSA_P384_SHA384);
        assert_eq!(validate_csr(&pem, "CS001").unwrap().key_description(), "ECDSA P-384");
    }

    #[test]
    fn accepts_openssl_p256_and_rsa2048() {
        let pem = openssl_ec_csr("prime256v1", "/O=Org/CN=CS001");
        assert_eq!(validate_csr(&pem, "CS001").unwrap().key_description(), "ECDSA P-256");
        let pem = openssl_csr("rsa:2048", "/CN=CS001");
        assert_eq!(validate_csr(&pem, "CS001").unwrap().key_description(), "RSA 2048");
    }

    #[test]
    fn rule_length() {
        let pem = "A".repeat(MAX_CSR_PEM_LEN + 1);
        let err = validate_csr(&pem, "CS001").unwrap_err();
        assert_eq!(err, CsrRejection::TooLong { len: MAX_CSR_PEM_LEN + 1, max: MAX_CSR_PEM_LEN });
        assert_eq!(err.rule(), "csr.length");
    }

    #[test]
    fn rule_pem() {
        for input in [
            "",
            "hello",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "-----BEGIN CERTIFICATE REQUEST-----\n!!!!\n-----END CERTIFICATE REQUEST-----\n",
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n",
        ] {
            let err = validate_csr(input, "CS001").unwrap_err();
            assert_eq!(err.rule(), "csr.pem", "{input:?} gave {err:?}");
        }
        let one = rcgen_csr(Some("CS001"), &rcgen::PKCS_ECDSA_P256_SHA256);
        let two = format!("{one}{one}");
        assert_eq!(validate_csr(&two, "CS001").unwrap_err().rule(), "csr.pem");
    }

    #[test]
    fn rule_der_garbage() {
        let pem = "-----BEGIN CERTIFICATE REQUEST-----\nMIIBAAECAwQFBgcICQ==\n-----END CERTIFICATE REQUEST-----\n";
        let err = validate_csr(pem, "CS001").unwrap_err();
        assert!(matches!(err, CsrRejection::Malformed(_)), "{err:?}");
        assert_eq!(err.rule(), "csr.der");
    }

    #[test]
    fn rule_der_trailing_bytes() {
        let pem = rcgen_csr(Some("CS001"), &rcgen::PKCS_ECDSA_P256_SHA256);
        let mut der = CertificateSigningRequestDer::from_pem_slice(pem.as_bytes()).unwrap().as_ref().to_vec();
        der.push(0);
        let pem = crate::test_support::pem("CERTIFICATE REQUEST", &der);
        assert_eq!(validate_csr(&pem, "CS001").unwrap_err().rule(), "csr.der");
    }

    /// Flip one bit of the signature of an openssl-made CSR.
    fn tamper_signature(pem: &str) -> String {
        let mut der = CertificateSigningRequestDer::from_pem_slice(pem.as_bytes()).unwrap().as_ref().to_vec();
        let last = der.len() - 1;
        der[last] ^= 0x01;
        crate::test_support::pem("CERTIFICATE REQUEST", &der)
    }

    /// Change a byte of the subject so the signature no longer covers the content.
    fn tamper_subject(pem: &str, from: &[u8], to: &[u8]) -> String {
        let mut der = CertificateSigningRequestDer::from_pem_slice(pem.as_bytes()).unwrap().as_ref().to_vec();
        let pos = der.windows(from.len()).position(|w| w == from).unwrap();
        der[pos..pos + to.len()].copy_from_slice(to);
        crate::test_support::pem("CERTIFICATE REQUEST", &der)
    }

    #[test]
    fn rule_signature_tampered_ec() {
        let pem = openssl_ec_csr("prime256v1", "/CN=CS001");
        // The ECDSA signature's last byte is part of s; flipping it breaks verification.
        let err = validate_csr(&tamper_signature(&pem), "CS001").unwrap_err();
        assert_eq!(err, CsrRejection::BadSignature);
        assert_eq!(err.rule(), "csr.signature");
    }

    #[test]
    fn rule_signature_tampered_rsa_subject() {
        // A signed request for CS00X rewritten to ask for CS001: the CN matches but the
        // signature proves nothing about the new content.
        let pem = openssl_csr("rsa:2048", "/CN=CS00X");
        let forged = tamper_subject(&pem, b"CS00X", b"CS001");
        let err = validate_csr(&forged, "CS001").unwrap_err();
        assert_eq!(err, CsrRejection::BadSignature);
    }

    #[test]
    fn rule_key_strength_rsa1024() {
        let pem = openssl_csr("rsa:1024", "/CN=CS001");
        let err = validate_csr(&pem, "CS001").unwrap_err();
        assert!(matches!(&err, CsrRejection::WeakKey(m) if m.contains("1024")), "{err:?}");
        assert_eq!(err.rule(), "csr.key_strength");
    }

    /// docs/security.md says "SHA-256 or better": every curve takes ecdsa-with-SHA384
    /// and ecdsa-with-SHA512 from openssl as well as SHA-256 (issue 10 found SHA-512
    /// refused for P-256).
    #[test]
    fn accepts_sha384_and_sha512_on_every_curve() {
        for (curve, name) in [("prime256v1", "ECDSA P-256"), ("secp384r1", "ECDSA P-384")] {
            for digest in ["-sha512", "-sha384", "-sha256"] {
                let csr = validate_csr(&openssl_ec_csr_digest(curve, digest, "/CN=CS001"), "CS001")
                    .unwrap_or_else(|e| panic!("{curve} {digest}: {e}"));
                assert_eq!(csr.key_description(), name, "{curve} {digest}");
            }
        }
        for digest in ["-sha512", "-sha384"] {
            let pem = openssl_csr_digest("rsa:2048", digest, "/CN=CS001");
            validate_csr(&pem, "CS001").unwrap_or_else(|e| panic!("rsa {digest}: {e}"));
        }
    }

    /// ISO 15118-20 keys: P-521 with ecdsa-with-SHA512, and openssl's default SHA-256.
    #[test]
    fn accepts_p521_from_openssl_and_rcgen() {
        for digest in ["-sha512", "-sha384", "-sha256"] {
            let csr = validate_csr(&openssl_ec_csr_digest("secp521r1", digest, "/CN=CS001"), "CS001").unwrap();
            assert_eq!(csr.key_description(), "ECDSA P-521", "{digest}");
        }
        let pem = rcgen_csr(Some("CS001"), &rcgen::PKCS_ECDSA_P521_SHA512);
        assert_eq!(validate_csr(&pem, "CS001").unwrap().key_description(), "ECDSA P-521");
    }

    /// Proof of possession is really checked for P-521: a request whose signature
    /// was altered (the last byte of `s`, still well-formed DER) is refused under
    /// `csr.signature`.
    #[test]
    fn rule_signature_p521_altered() {
        let pem = rcgen_csr(Some("CS001"), &rcgen::PKCS_ECDSA_P521_SHA512);
        let mut der = CertificateSigningRequestDer::from_pem_slice(pem.as_bytes()).unwrap().as_ref().to_vec();
        *der.last_mut().unwrap() ^= 0x01;
        let err = validate_csr(&crate::test_support::pem("CERTIFICATE REQUEST", &der), "CS001").unwrap_err();
        assert_eq!(err, CsrRejection::BadSignature);
        assert_eq!(err.rule(), "csr.signature");
    }

    #[test]
    fn rule_key_strength_p521_sha1_signature() {
        let err = validate_csr(&openssl_ec_csr_digest("secp521r1", "-sha1", "/CN=CS001"), "CS001").unwrap_err();
        assert!(matches!(&err, CsrRejection::WeakKey(m) if m.contains("signature algorithm")), "{err:?}");
    }

    #[test]
    fn rule_key_strength_other_curves() {
        let pem = openssl_ec_csr("secp256k1", "/CN=CS001");
        let err = validate_csr(&pem, "CS001").unwrap_err();
        assert!(matches!(&err, CsrRejection::WeakKey(m) if m.contains("not supported")), "{err:?}");
    }

    #[test]
    fn rule_key_strength_sha1_signature() {
        let out = openssl(&[
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-sha1",
            "-nodes",
            "-subj",
            "/CN=CS001",
            "-keyout",
            "/dev/null",
        ]);
        let pem = String::from_utf8(out).unwrap();
        let err = validate_csr(&pem, "CS001").unwrap_err();
        assert!(matches!(&err, CsrRejection::WeakKey(m) if m.contains("signature algorithm")), "{err:?}");
    }

    #[test]
    fn rule_key_strength_ed25519() {
        let pem = rcgen_csr(Some("CS001"), &rcgen::PKCS_ED25519);
        assert_eq!(validate_csr(&pem, "CS001").unwrap_err().rule(), "csr.key_strength");
    }

    #[test]
    fn rule_common_name_mismatch() {
        let pem = rcgen_csr(Some("CS002"), &rcgen::PKCS_ECDSA_P256_SHA256);
        let err = validate_csr(&pem, "CS001").unwrap_err();
        assert_eq!(err, CsrRejection::CommonNameMismatch { expected: "CS001".into(), found: Some("CS002".into()) });
        assert_eq!(err.rule(), "csr.common_name");
    }

    #[test]
    fn rule_common_name_missing() {
        let pem = rcgen_csr(None, &rcgen::PKCS_ECDSA_P256_SHA256);
        let err = validate_csr(&pem, "CS001").unwrap_err();
        assert_eq!(err, CsrRejection::CommonNameMismatch { expected: "CS001".into(), found: None });
        let pem = openssl_csr("rsa:2048", "/O=Org");
        assert_eq!(validate_csr(&pem, "CS001").unwrap_err().rule(), "csr.common_name");
    }

    #[test]
    fn rule_common_name_repeated() {
        let pem = openssl_csr("rsa:2048", "/CN=CS001/CN=CS002");
        assert_eq!(validate_csr(&pem, "CS001").unwrap_err().rule(), "csr.common_name");
    }

    #[test]
    fn rule_common_name_is_case_sensitive() {
        let pem = rcgen_csr(Some("cs001"), &rcgen::PKCS_ECDSA_P256_SHA256);
        assert_eq!(validate_csr(&pem, "CS001").unwrap_err().rule(), "csr.common_name");
    }

    /// A cheap stand-in for fuzzing: every single-byte corruption and every truncation
    /// of a valid request is refused with a rule, never a panic, and never accepted
    /// unless the corruption left the signed content and signature intact.
    #[test]
    fn corrupted_requests_never_panic() {
        let pem = rcgen_csr(Some("CS001"), &rcgen::PKCS_ECDSA_P256_SHA256);
        let der = CertificateSigningRequestDer::from_pem_slice(pem.as_bytes()).unwrap().as_ref().to_vec();
        for i in 0..der.len() {
            for mask in [0x01u8, 0x80, 0xff] {
                let mut bad = der.clone();
                bad[i] ^= mask;
                let pem = crate::test_support::pem("CERTIFICATE REQUEST", &bad);
                if let Ok(csr) = validate_csr(&pem, "CS001") {
                    // Only encodings that still verify may pass (e.g. a bit in an unused field).
                    assert_eq!(csr.subject_cn(), "CS001");
                }
            }
        }
        for len in 0..der.len() {
            let pem = crate::test_support::pem("CERTIFICATE REQUEST", &der[..len]);
            assert!(validate_csr(&pem, "CS001").is_err());
        }
    }

    #[test]
    fn rsa_modulus_bits_counts_exactly() {
        assert_eq!(rsa_modulus_bits(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(rsa_modulus_bits(&[0x7f, 0x00]), 15);
        assert_eq!(rsa_modulus_bits(&[0x00, 0x00]), 0);
    }
}
