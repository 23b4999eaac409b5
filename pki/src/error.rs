//! The crate's error type. Messages never contain key material.

/// Errors of the certificate authority, grouped by cause.
///
/// No variant carries private key bytes; messages are safe to log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    // --- randomness and key generation (an environment fault) ---
    /// The system random number generator failed.
    #[error("system random number generator failed")]
    Random,
    /// A new key pair could not be generated.
    #[error("key generation failed")]
    KeyGeneration,

    // --- key protection ---
    /// A master key of the wrong length was supplied.
    #[error("master key must be exactly 32 bytes, got {len}")]
    MasterKeyLength {
        /// Length that was supplied.
        len: usize,
    },
    /// Encryption of a private key failed.
    #[error("sealing a private key failed")]
    Seal,
    /// A sealed blob could not be opened: wrong master key, wrong label, truncated or
    /// tampered data. Deliberately not more specific.
    #[error("sealed key could not be decrypted (wrong master key, wrong label, or damaged data)")]
    KeyDecryption,
    /// A sealed blob was written by a format version this build does not know.
    #[error("sealed key format version {0} is not supported")]
    UnsupportedSealVersion(u8),
    /// Bytes that should be a PKCS#8 private key are not a key this crate can use.
    #[error("not a usable PKCS#8 private key: {0}")]
    InvalidPrivateKey(String),
    /// A stored CA certificate does not belong to the private key stored with it.
    #[error("CA certificate does not match its private key")]
    KeyMismatch,
    /// A PKCS#11 token refused or failed an operation.
    #[error("HSM: {0}")]
    Hsm(String),
    /// The CA key lives in an HSM and cannot be exported or sealed.
    #[error("the CA key is held by an HSM and cannot be exported")]
    KeyNotExportable,

    // --- certificates and names ---
    /// Certificate bytes could not be parsed or are not acceptable.
    #[error("invalid certificate: {0}")]
    InvalidCertificate(String),
    /// A certificate expected to be a CA lacks `basicConstraints cA=TRUE`.
    #[error("certificate is not a CA certificate")]
    NotACa,
    /// PEM input could not be decoded.
    #[error("PEM decoding failed: {0}")]
    Pem(String),
    /// PEM input contained no `CERTIFICATE` block.
    #[error("no CERTIFICATE block found")]
    NoCertificate,
    /// A requested validity period is empty or reversed.
    #[error("invalid validity period: not_after must be later than not_before")]
    InvalidValidity,
    /// A subject name or SAN is empty, too long or not encodable.
    #[error("invalid name: {0}")]
    InvalidName(String),
    /// Building or signing a certificate failed.
    #[error("certificate signing failed: {0}")]
    Signing(String),
}

impl From<rcgen::Error> for PkiError {
    // rcgen's error messages name algorithms and structures, never key bytes.
    fn from(e: rcgen::Error) -> Self {
        PkiError::Signing(e.to_string())
    }
}

impl From<der::Error> for PkiError {
    // der's errors name the structure and position, never key bytes.
    fn from(e: der::Error) -> Self {
        PkiError::Signing(format!("DER encoding: {e}"))
    }
}
