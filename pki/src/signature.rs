//! Checks of signatures made by others: a CSR's proof of possession, the links of an
//! imported CA chain. All with aws-lc-rs.
//!
//! ECDSA is verified here, with the algorithm the key's curve and the signature's hash
//! name: x509-parser's verifier knows neither P-521 (ISO 15118-20) nor ECDSA with
//! SHA-512. RSA (PKCS#1 v1.5, and PSS, whose parameters it reads) and Ed25519 go to
//! x509-parser's verifier, which runs on aws-lc-rs as well.

use aws_lc_rs::signature::{self as aws, EcdsaVerificationAlgorithm, UnparsedPublicKey};
use x509_parser::asn1_rs::{BitString, Oid};
use x509_parser::error::X509Error;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_NIST_EC_P521, OID_SIG_ECDSA_WITH_SHA256,
    OID_SIG_ECDSA_WITH_SHA384, OID_SIG_ECDSA_WITH_SHA512,
};
use x509_parser::x509::{AlgorithmIdentifier, SubjectPublicKeyInfo};

/// Whether `signature` over `signed` verifies with `signer`'s key under `algorithm`.
///
/// [`X509Error::SignatureUnsupportedAlgorithm`] when the key and algorithm do not go
/// together or are not supported; [`X509Error::SignatureVerificationError`] when the
/// signature is wrong.
pub(crate) fn verify_signature(
    signer: &SubjectPublicKeyInfo<'_>,
    algorithm: &AlgorithmIdentifier<'_>,
    signature: &BitString<'_>,
    signed: &[u8],
) -> Result<(), X509Error> {
    if signer.algorithm.algorithm != OID_KEY_TYPE_EC_PUBLIC_KEY {
        return x509_parser::verify::verify_signature(signer, algorithm, signature, signed);
    }
    let ecdsa = ecdsa_algorithm(signer, &algorithm.algorithm).ok_or(X509Error::SignatureUnsupportedAlgorithm)?;
    UnparsedPublicKey::new(ecdsa, signer.subject_public_key.data.as_ref())
        .verify(signed, signature.data.as_ref())
        .map_err(|_| X509Error::SignatureVerificationError)
}

/// The ECDSA verification for the named curve of `key` and the hash of `signature_oid`
/// (ecdsa-with-SHA256, -SHA384 or -SHA512).
fn ecdsa_algorithm(
    key: &SubjectPublicKeyInfo<'_>,
    signature_oid: &Oid<'_>,
) -> Option<&'static EcdsaVerificationAlgorithm> {
    let curve = key.algorithm.parameters.as_ref()?.as_oid().ok()?;
    let by_hash: [&'static EcdsaVerificationAlgorithm; 3] = if curve == OID_EC_P256 {
        [&aws::ECDSA_P256_SHA256_ASN1, &aws::ECDSA_P256_SHA384_ASN1, &aws::ECDSA_P256_SHA512_ASN1]
    } else if curve == OID_NIST_EC_P384 {
        [&aws::ECDSA_P384_SHA256_ASN1, &aws::ECDSA_P384_SHA384_ASN1, &aws::ECDSA_P384_SHA512_ASN1]
    } else if curve == OID_NIST_EC_P521 {
        [&aws::ECDSA_P521_SHA256_ASN1, &aws::ECDSA_P521_SHA384_ASN1, &aws::ECDSA_P521_SHA512_ASN1]
    } else {
        return None;
    };
    [OID_SIG_ECDSA_WITH_SHA256, OID_SIG_ECDSA_WITH_SHA384, OID_SIG_ECDSA_WITH_SHA512]
        .iter()
        .position(|oid| oid == signature_oid)
        .map(|i| by_hash[i])
}
