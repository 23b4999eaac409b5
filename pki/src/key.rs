//! Private keys in PKCS#8 form, as handed to rustls or sealed for storage.

use std::fmt;

use rcgen::KeyPair;
use rustls_pki_types::PrivatePkcs8KeyDer;
use zeroize::Zeroizing;

use crate::{MasterKey, PkiError};

/// A private key in PKCS#8 DER (e.g. the CSMS TLS server key).
///
/// `Debug` never shows the key. The bytes are wiped when the value is dropped.
/// rustls loads it with `PrivatePkcs8KeyDer::from(key.pkcs8_der().to_vec())`, or
/// [`to_rustls`](Self::to_rustls).
pub struct PrivateKey(Zeroizing<Vec<u8>>);

impl PrivateKey {
    /// The PKCS#8 DER encoding.
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.0
    }

    /// A copy in the form rustls takes.
    pub fn to_rustls(&self) -> PrivatePkcs8KeyDer<'static> {
        PrivatePkcs8KeyDer::from(self.0.to_vec())
    }

    /// Seal for storage under `key`, bound to `label`.
    pub fn seal(&self, key: &MasterKey, label: &str) -> Result<Vec<u8>, PkiError> {
        key.seal(&self.0, label)
    }

    /// Open a sealed key and check that it is a PKCS#8 key this crate can use.
    pub fn open(sealed: &[u8], key: &MasterKey, label: &str) -> Result<PrivateKey, PkiError> {
        let pkcs8 = key.open(sealed, label)?;
        let _ = key_pair_from_pkcs8(&pkcs8)?;
        Ok(PrivateKey(pkcs8))
    }

    pub(crate) fn from_key_pair(key_pair: &KeyPair) -> Self {
        PrivateKey(Zeroizing::new(key_pair.serialize_der()))
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey([redacted])")
    }
}

/// Parse a PKCS#8 key (ECDSA P-256/P-384/P-521, Ed25519 or RSA) into a signing key pair.
pub(crate) fn key_pair_from_pkcs8(pkcs8: &[u8]) -> Result<KeyPair, PkiError> {
    let der = PrivatePkcs8KeyDer::from(pkcs8);
    // rcgen's errors describe the failure, not the key.
    KeyPair::try_from(&der).map_err(|e| PkiError::InvalidPrivateKey(e.to_string()))
}
