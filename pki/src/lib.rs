//! Certificate authority for Anchorpoint.
//!
//! What lives here: station-CA hierarchies ([`generate_hierarchy`]), the CSR policy
//! ([`validate_csr`]), issuance of station and CSMS server certificates
//! ([`CertificateAuthority`]), checks on an operator's own CA before it is used
//! ([`import_ca`]), inspection of certificates presented by peers
//! ([`inspect_certificate`]) and protection of private keys at rest ([`MasterKey`]).
//!
//! This crate knows nothing of HTTP or OCPP. Time is always injected (`now`), so validity
//! periods are testable. aws-lc-rs is the only cryptographic provider (rcgen, x509-parser
//! and rustls use it too); ring is not in the build, since it cannot do P-521.
//!
//! Private key material never appears in `Debug` output or in error messages.
#![forbid(unsafe_code)]

mod ca;
mod csr;
mod encoding;
mod error;
mod hsm;
mod import;
mod inspect;
mod key;
mod revocation;
mod sealing;
mod signature;

pub use ca::{
    CaKey, CertificateAuthority, Hierarchy, IssuedCertificate, ROOT_VALIDITY_YEARS, STATION_CA_VALIDITY_YEARS,
    StoredCa, generate_hierarchy, generate_hierarchy_with,
};
pub use csr::{CsrRejection, MAX_CSR_PEM_LEN, ValidatedCsr, validate_csr};
pub use error::PkiError;
pub use hsm::{Pkcs11Key, Pkcs11Token};
pub use import::{
    ImportRejection, ImportedCa, MAX_IMPORT_CHAIN, MAX_IMPORT_PEM_LEN, MIN_REMAINING_VALIDITY, ca_id, certificate_pem,
    import_ca, software_key_from_pem,
};
pub use inspect::{CertInfo, inspect_certificate, pem_to_der_chain};
pub use key::PrivateKey;
pub use revocation::{
    CertId, CertStatus, HashAlg, MAX_OCSP_REQUEST_CERTS, OcspError, OcspRequest, RevocationEndpoints, RevocationReason,
    Revoked,
};
pub use sealing::{MASTER_KEY_LEN, MasterKey, SEAL_VERSION};
/// Re-exported so callers can name the type returned by [`MasterKey::open`] without
/// depending on `zeroize` themselves.
pub use zeroize::Zeroizing;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod test_support;
