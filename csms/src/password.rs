//! HTTP Basic passwords of security profiles 1 and 2. Two kinds of stored
//! verifier:
//!
//! - `pbkdf2-sha256$ITERATIONS$SALT$HASH` (base64): a password a person chose
//!   (given through the API or the command line). Deliberately slow, so that a
//!   stolen hash is expensive to guess at offline.
//! - `hmac-sha256$SALT$MAC` (base64), MAC = HMAC-SHA256(verifier key, SALT ||
//!   password): a password the CSMS generated itself (A01 rotation, 32
//!   characters of a 64-letter alphabet, 192 bits). Guessing such a password is
//!   hopeless however fast each guess is, so it is checked with one HMAC. The
//!   key is derived from the master key ([`VerifierKey::from_master`]), which
//!   every node sharing the database already holds (it unseals the CA keys):
//!   a verifier written by one node is checked by any other.
//!
//! [`SuccessCache`] remembers successful slow verifications, so a station that
//! reconnects with the same correct password costs one HMAC, not one PBKDF2.

use std::num::NonZeroU32;

use aws_lc_rs::hmac;
use aws_lc_rs::pbkdf2;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use dashmap::DashMap;

const ALG: pbkdf2::Algorithm = pbkdf2::PBKDF2_HMAC_SHA256;
const PREFIX: &str = "pbkdf2-sha256";
const KEYED_PREFIX: &str = "hmac-sha256";
/// OCPP 2.0.1 BasicAuthPassword: 16 to 40 characters.
pub const MIN_LEN: usize = 16;
pub const MAX_LEN: usize = 40;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasswordError {
    #[error("password must be {MIN_LEN} to {MAX_LEN} characters (OCPP BasicAuthPassword)")]
    Length,
    #[error("stored password hash is malformed")]
    MalformedHash,
    #[error("random number generator failed")]
    Rng,
}

/// What a stored verifier costs to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// PBKDF2: a person chose the password.
    Slow,
    /// One keyed HMAC: the CSMS generated the password.
    Keyed,
}

/// The kind of a stored verifier, by its prefix (the rest is checked when it is verified).
pub fn kind(stored: &str) -> Result<Kind, PasswordError> {
    match stored.split_once('$').map(|(p, _)| p) {
        Some(PREFIX) => Ok(Kind::Slow),
        Some(KEYED_PREFIX) => Ok(Kind::Keyed),
        _ => Err(PasswordError::MalformedHash),
    }
}

/// The server's key for keyed verifiers. Never logged, never stored: derived
/// again from the master key by each process that needs it.
pub struct VerifierKey(hmac::Key);

impl std::fmt::Debug for VerifierKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VerifierKey(..)")
    }
}

impl VerifierKey {
    /// HMAC-SHA256(master key, label): a key of its own for each use, none of
    /// which tells anything about the master key or the others.
    fn derive(master: &pki::MasterKey, label: &[u8]) -> hmac::Key {
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &master.to_bytes()), label);
        hmac::Key::new(hmac::HMAC_SHA256, tag.as_ref())
    }

    /// The key of `hmac-sha256` verifiers.
    pub fn from_master(master: &pki::MasterKey) -> VerifierKey {
        VerifierKey(Self::derive(master, b"anchorpoint/password-verifier/hmac-sha256/v1"))
    }
}

fn check_length(password: &str) -> Result<(), PasswordError> {
    if (MIN_LEN..=MAX_LEN).contains(&password.chars().count()) { Ok(()) } else { Err(PasswordError::Length) }
}

fn salt() -> Result<[u8; 16], PasswordError> {
    let mut salt = [0u8; 16];
    SystemRandom::new().fill(&mut salt).map_err(|_| PasswordError::Rng)?;
    Ok(salt)
}

/// Hashes `password` with a fresh 16-byte salt (PBKDF2: a password a person chose).
pub fn hash(password: &str, iterations: u32) -> Result<String, PasswordError> {
    check_length(password)?;
    let iterations = NonZeroU32::new(iterations.max(1)).ok_or(PasswordError::MalformedHash)?;
    let salt = salt()?;
    let mut out = [0u8; 32];
    pbkdf2::derive(ALG, iterations, &salt, password.as_bytes(), &mut out);
    Ok(format!("{PREFIX}${iterations}${}${}", B64.encode(salt), B64.encode(out)))
}

/// The keyed verifier of a password the CSMS generated from at least 128
/// random bits. Never for a password a person chose: one HMAC per guess is
/// cheap to search for a guessable password if the database and the key leak.
pub fn keyed(password: &str, key: &VerifierKey) -> Result<String, PasswordError> {
    check_length(password)?;
    let salt = salt()?;
    let mac = keyed_mac(key, &salt, password);
    Ok(format!("{KEYED_PREFIX}${}${}", B64.encode(salt), B64.encode(mac.as_ref())))
}

fn keyed_mac(key: &VerifierKey, salt: &[u8], password: &str) -> hmac::Tag {
    hmac::sign(&key.0, &[salt, password.as_bytes()].concat())
}

/// Constant-time check of `password` against a stored PBKDF2 hash (slow).
pub fn verify(password: &str, stored: &str) -> Result<bool, PasswordError> {
    let mut parts = stored.split('$');
    let (Some(PREFIX), Some(iter), Some(salt), Some(hash), None) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(PasswordError::MalformedHash);
    };
    let iterations: NonZeroU32 = iter.parse().map_err(|_| PasswordError::MalformedHash)?;
    let salt = B64.decode(salt).map_err(|_| PasswordError::MalformedHash)?;
    let hash = B64.decode(hash).map_err(|_| PasswordError::MalformedHash)?;
    Ok(pbkdf2::verify(ALG, iterations, &salt, password.as_bytes(), &hash).is_ok())
}

/// Constant-time check of `password` against a stored keyed verifier (one HMAC).
pub fn verify_keyed(password: &str, stored: &str, key: &VerifierKey) -> Result<bool, PasswordError> {
    let mut parts = stored.split('$');
    let (Some(KEYED_PREFIX), Some(salt), Some(mac), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(PasswordError::MalformedHash);
    };
    let salt = B64.decode(salt).map_err(|_| PasswordError::MalformedHash)?;
    let mac = B64.decode(mac).map_err(|_| PasswordError::MalformedHash)?;
    if salt.is_empty() || mac.len() != 32 {
        return Err(PasswordError::MalformedHash);
    }
    Ok(hmac::verify(&key.0, &[salt.as_slice(), password.as_bytes()].concat(), &mac).is_ok())
}

/// Successful slow verifications, remembered per station id as a MAC of
/// (station id, stored verifier, password) under a key of their own. A login
/// whose MAC matches was verified before against the very verifier string
/// stored now: any change of the stored verifier (a new password, a new salt)
/// makes the entry useless, and a wrong password never matches. Bounded: when
/// it is full an arbitrary entry gives way.
pub struct SuccessCache {
    key: hmac::Key,
    entries: DashMap<String, [u8; 32]>,
    capacity: usize,
}

impl std::fmt::Debug for SuccessCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SuccessCache(up to {} entries)", self.capacity)
    }
}

impl SuccessCache {
    /// A cache of at most `capacity` entries (0: none kept).
    pub fn new(master: &pki::MasterKey, capacity: usize) -> SuccessCache {
        SuccessCache {
            key: VerifierKey::derive(master, b"anchorpoint/login-success-cache/v1"),
            entries: DashMap::new(),
            capacity,
        }
    }

    fn message(station_id: &str, verifier: &str, password: &str) -> Vec<u8> {
        let mut m = Vec::with_capacity(16 + station_id.len() + verifier.len() + password.len());
        for field in [station_id, verifier] {
            m.extend_from_slice(&(field.len() as u64).to_be_bytes());
            m.extend_from_slice(field.as_bytes());
        }
        m.extend_from_slice(password.as_bytes());
        m
    }

    /// Whether `password` was verified before for `station_id` against `verifier`.
    pub fn hit(&self, station_id: &str, verifier: &str, password: &str) -> bool {
        if self.capacity == 0 {
            return false;
        }
        let Some(tag) = self.entries.get(station_id).map(|e| *e.value()) else {
            return false;
        };
        hmac::verify(&self.key, &Self::message(station_id, verifier, password), &tag).is_ok()
    }

    /// Remembers that `password` is right for `station_id` against `verifier`.
    /// Only ever called after a successful verification.
    pub fn remember(&self, station_id: &str, verifier: &str, password: &str) {
        if self.capacity == 0 {
            return;
        }
        let mut tag = [0u8; 32];
        tag.copy_from_slice(hmac::sign(&self.key, &Self::message(station_id, verifier, password)).as_ref());
        if !self.entries.contains_key(station_id) {
            while self.entries.len() >= self.capacity {
                // The reference is dropped before the removal (same shard lock).
                let Some(victim) = self.entries.iter().next().map(|e| e.key().clone()) else {
                    break;
                };
                self.entries.remove(&victim);
            }
        }
        self.entries.insert(station_id.to_owned(), tag);
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_salted() {
        let a = hash("correct horse battery", 1000).unwrap();
        let b = hash("correct horse battery", 1000).unwrap();
        assert_ne!(a, b, "each hash has its own salt");
        assert!(a.starts_with("pbkdf2-sha256$1000$"));
        assert!(verify("correct horse battery", &a).unwrap());
        assert!(!verify("correct horse batterx", &a).unwrap());
        assert!(!a.contains("correct"));
    }

    #[test]
    fn length_rules() {
        assert_eq!(hash("short", 1000), Err(PasswordError::Length));
        assert_eq!(hash(&"x".repeat(41), 1000), Err(PasswordError::Length));
    }

    #[test]
    fn malformed_hash() {
        assert_eq!(verify("whatever-password", "plain"), Err(PasswordError::MalformedHash));
        assert_eq!(verify("whatever-password", "pbkdf2-sha256$0$AA$AA"), Err(PasswordError::MalformedHash));
    }

    fn master(byte: u8) -> pki::MasterKey {
        pki::MasterKey::from_bytes(&[byte; 32]).unwrap()
    }

    #[test]
    fn keyed_verifiers_round_trip_and_depend_on_the_key() {
        let key = VerifierKey::from_master(&master(7));
        let pw = "Zq3-generated_by_the_csms_0123456";
        let a = keyed(pw, &key).unwrap();
        let b = keyed(pw, &key).unwrap();
        assert_ne!(a, b, "each verifier has its own salt");
        assert!(a.starts_with("hmac-sha256$"));
        assert!(!a.contains(pw));
        assert_eq!(kind(&a), Ok(Kind::Keyed));
        assert!(verify_keyed(pw, &a, &key).unwrap());
        assert!(!verify_keyed("Zq3-generated_by_the_csms_0123457", &a, &key).unwrap());
        // Another master key (another installation) derives another key.
        assert!(!verify_keyed(pw, &a, &VerifierKey::from_master(&master(8))).unwrap());
        // The same master key (another node of the same installation) the same one.
        assert!(verify_keyed(pw, &a, &VerifierKey::from_master(&master(7))).unwrap());
        assert_eq!(keyed("short", &key), Err(PasswordError::Length));
        // Neither kind is checked as the other.
        assert_eq!(verify(pw, &a), Err(PasswordError::MalformedHash));
        let slow = hash(pw, 1000).unwrap();
        assert_eq!(kind(&slow), Ok(Kind::Slow));
        assert_eq!(verify_keyed(pw, &slow, &key), Err(PasswordError::MalformedHash));
        assert_eq!(kind("plain"), Err(PasswordError::MalformedHash));
        assert_eq!(verify_keyed(pw, "hmac-sha256$AAAA$AAAA", &key), Err(PasswordError::MalformedHash));
        assert_eq!(format!("{key:?}"), "VerifierKey(..)");
    }

    #[test]
    fn the_cache_holds_successes_only_and_only_for_the_verifier_checked() {
        let cache = SuccessCache::new(&master(1), 100);
        let (pw, verifier) = ("correct horse battery", "pbkdf2-sha256$1000$c2FsdA$aGFzaA");
        assert!(!cache.hit("CS1", verifier, pw), "nothing remembered yet");
        cache.remember("CS1", verifier, pw);
        assert!(cache.hit("CS1", verifier, pw));
        assert!(!cache.hit("CS1", verifier, "correct horse batterx"), "a wrong password is not a hit");
        assert!(!cache.hit("CS2", verifier, pw), "another station");
        // A new stored verifier (a changed password, or the same one hashed again) invalidates it.
        assert!(!cache.hit("CS1", "pbkdf2-sha256$1000$c2FsdB$aGFzaA", pw));
        // Remembering a new verifier for the station replaces the old entry.
        cache.remember("CS1", "pbkdf2-sha256$1000$bmV3$bmV3", "a new password here");
        assert!(!cache.hit("CS1", verifier, pw));
        assert!(cache.hit("CS1", "pbkdf2-sha256$1000$bmV3$bmV3", "a new password here"));
        assert_eq!(cache.len(), 1);
        // Field boundaries are part of the MAC.
        cache.remember("ab", "c$d", "password-password");
        assert!(!cache.hit("ab", "c$", "dpassword-password"));
    }

    #[test]
    fn the_cache_is_bounded_and_can_be_off() {
        let cache = SuccessCache::new(&master(1), 32);
        for i in 0..1000 {
            cache.remember(&format!("CS{i}"), "v", "password-password");
        }
        assert!(cache.len() <= 32, "{}", cache.len());
        assert!(cache.hit("CS999", "v", "password-password"), "the newest entry is kept");
        let off = SuccessCache::new(&master(1), 0);
        off.remember("CS1", "v", "password-password");
        assert!(!off.hit("CS1", "v", "password-password"));
        assert!(off.is_empty());
    }

    /// Hashes stored before the move from ring to aws-lc-rs stay verifiable: the
    /// format is plain PBKDF2-HMAC-SHA256, checked here against the published vector
    /// of RFC 7914 section 11 (P = "passwd", S = "salt", c = 1; its first 32 bytes).
    #[test]
    fn verifies_the_rfc7914_vector() {
        let dk = [
            0x55, 0xac, 0x04, 0x6e, 0x56, 0xe3, 0x08, 0x9f, 0xec, 0x16, 0x91, 0xc2, 0x25, 0x44, 0xb6, 0x05, 0xf9, 0x41,
            0x85, 0x21, 0x6d, 0xde, 0x04, 0x65, 0xe6, 0x8b, 0x9d, 0x57, 0xc2, 0x0d, 0xac, 0xbc,
        ];
        let stored = format!("{PREFIX}$1${}${}", B64.encode(b"salt"), B64.encode(dk));
        assert!(verify("passwd", &stored).unwrap());
        assert!(!verify("passwe", &stored).unwrap());
    }
}
