//! Protection of private keys at rest: AES-256-GCM under a master key-encryption key.
//!
//! Sealed format, version 1: `0x01 || nonce (12 bytes) || ciphertext || tag (16 bytes)`.
//! The associated data is the version byte followed by the caller's label
//! (e.g. `tenant:default/ca:root`), so a blob sealed for one purpose cannot be opened as
//! another, and a blob cannot be relabelled or downgraded without detection.

use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use zeroize::{Zeroize, Zeroizing};

use crate::PkiError;

/// Length of a [`MasterKey`] in bytes.
pub const MASTER_KEY_LEN: usize = 32;
/// Version byte written at the start of every sealed blob.
pub const SEAL_VERSION: u8 = 1;

const TAG_LEN: usize = 16;

/// A 32-byte key-encryption key that seals private keys at rest with AES-256-GCM.
///
/// `Debug` never shows the key. The bytes are wiped when the value is dropped.
pub struct MasterKey([u8; MASTER_KEY_LEN]);

impl MasterKey {
    /// Generate a fresh master key from the system random number generator.
    pub fn generate() -> Result<Self, PkiError> {
        let mut bytes = [0u8; MASTER_KEY_LEN];
        SystemRandom::new().fill(&mut bytes).map_err(|_| PkiError::Random)?;
        Ok(Self(bytes))
    }

    /// Load a master key from exactly 32 bytes (e.g. the content of the key file).
    pub fn from_bytes(b: &[u8]) -> Result<Self, PkiError> {
        let bytes: [u8; MASTER_KEY_LEN] = b.try_into().map_err(|_| PkiError::MasterKeyLength { len: b.len() })?;
        Ok(Self(bytes))
    }

    /// The raw key, for writing the key file. Handle with care.
    pub fn to_bytes(&self) -> [u8; MASTER_KEY_LEN] {
        self.0
    }

    /// Encrypt `plaintext` bound to `label`; returns `version || nonce || ciphertext+tag`.
    pub fn seal(&self, plaintext: &[u8], label: &str) -> Result<Vec<u8>, PkiError> {
        let mut nonce = [0u8; NONCE_LEN];
        // A random 96-bit nonce per seal: keys are sealed rarely, far below the 2^32
        // messages per key at which random GCM nonces start to be a concern.
        SystemRandom::new().fill(&mut nonce).map_err(|_| PkiError::Random)?;

        let mut out = Vec::with_capacity(1 + NONCE_LEN + plaintext.len() + TAG_LEN);
        out.push(SEAL_VERSION);
        out.extend_from_slice(&nonce);
        let mut in_out = Zeroizing::new(plaintext.to_vec());
        let tag = self
            .aead_key()?
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(associated_data(SEAL_VERSION, label)),
                &mut in_out[..],
            )
            .map_err(|_| PkiError::Seal)?;
        out.extend_from_slice(&in_out);
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Decrypt a blob made by [`seal`](Self::seal) with the same key and label.
    ///
    /// Any failure (wrong key, wrong label, truncation, tampering) is
    /// [`PkiError::KeyDecryption`], except an unknown version byte.
    pub fn open(&self, sealed: &[u8], label: &str) -> Result<Zeroizing<Vec<u8>>, PkiError> {
        let (&version, rest) = sealed.split_first().ok_or(PkiError::KeyDecryption)?;
        if version != SEAL_VERSION {
            return Err(PkiError::UnsupportedSealVersion(version));
        }
        if rest.len() < NONCE_LEN + TAG_LEN {
            return Err(PkiError::KeyDecryption);
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| PkiError::KeyDecryption)?;
        let mut in_out = Zeroizing::new(ciphertext.to_vec());
        let plaintext_len = self
            .aead_key()?
            .open_in_place(nonce, Aad::from(associated_data(version, label)), &mut in_out[..])
            .map_err(|_| PkiError::KeyDecryption)?
            .len();
        in_out.truncate(plaintext_len);
        Ok(in_out)
    }

    fn aead_key(&self) -> Result<LessSafeKey, PkiError> {
        let unbound = UnboundKey::new(&AES_256_GCM, &self.0).map_err(|_| PkiError::Seal)?;
        Ok(LessSafeKey::new(unbound))
    }
}

fn associated_data(version: u8, label: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(1 + label.len());
    aad.push(version);
    aad.extend_from_slice(label.as_bytes());
    aad
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey([redacted])")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let key = MasterKey::generate().unwrap();
        let sealed = key.seal(b"secret pkcs8", "tenant:default/ca:root").unwrap();
        assert_eq!(sealed[0], SEAL_VERSION);
        assert_eq!(sealed.len(), 1 + NONCE_LEN + 12 + TAG_LEN);
        let opened = key.open(&sealed, "tenant:default/ca:root").unwrap();
        assert_eq!(&opened[..], b"secret pkcs8");
    }

    #[test]
    fn nonces_differ_between_seals() {
        let key = MasterKey::generate().unwrap();
        let a = key.seal(b"x", "l").unwrap();
        let b = key.seal(b"x", "l").unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn wrong_label_fails() {
        let key = MasterKey::generate().unwrap();
        let sealed = key.seal(b"secret", "tenant:a/ca:root").unwrap();
        assert!(matches!(key.open(&sealed, "tenant:b/ca:root"), Err(PkiError::KeyDecryption)));
    }

    #[test]
    fn wrong_key_fails() {
        let key = MasterKey::generate().unwrap();
        let other = MasterKey::generate().unwrap();
        let sealed = key.seal(b"secret", "l").unwrap();
        assert!(matches!(other.open(&sealed, "l"), Err(PkiError::KeyDecryption)));
    }

    #[test]
    fn every_flipped_byte_fails() {
        let key = MasterKey::generate().unwrap();
        let sealed = key.seal(b"secret", "l").unwrap();
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(key.open(&bad, "l").is_err(), "flip at {i} accepted");
        }
    }

    #[test]
    fn truncated_fails() {
        let key = MasterKey::generate().unwrap();
        let sealed = key.seal(b"secret", "l").unwrap();
        for len in 0..sealed.len() {
            assert!(key.open(&sealed[..len], "l").is_err(), "len {len} accepted");
        }
    }

    #[test]
    fn unknown_version_is_named() {
        let key = MasterKey::generate().unwrap();
        let mut sealed = key.seal(b"secret", "l").unwrap();
        sealed[0] = 9;
        assert!(matches!(key.open(&sealed, "l"), Err(PkiError::UnsupportedSealVersion(9))));
    }

    #[test]
    fn from_bytes_requires_32() {
        assert!(matches!(MasterKey::from_bytes(&[0u8; 31]), Err(PkiError::MasterKeyLength { len: 31 })));
        let key = MasterKey::from_bytes(&[7u8; 32]).unwrap();
        assert_eq!(key.to_bytes(), [7u8; 32]);
    }

    #[test]
    fn debug_redacts() {
        let key = MasterKey::from_bytes(&[0xab; 32]).unwrap();
        let dbg = format!("{key:?}");
        assert!(!dbg.contains("171"), "{dbg}"); // 0xab as decimal
        assert!(!dbg.to_lowercase().contains("ab, "), "{dbg}");
        assert!(!dbg.to_lowercase().contains("abab"), "{dbg}");
        assert!(dbg.contains("redacted"));
    }
}
