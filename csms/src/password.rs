//! HTTP Basic passwords of security profiles 1 and 2, stored as salted
//! PBKDF2-HMAC-SHA256 (`pbkdf2-sha256$ITERATIONS$SALT$HASH`, base64).

use std::num::NonZeroU32;

use aws_lc_rs::pbkdf2;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;

const ALG: pbkdf2::Algorithm = pbkdf2::PBKDF2_HMAC_SHA256;
const PREFIX: &str = "pbkdf2-sha256";
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

/// Hashes `password` with a fresh 16-byte salt.
pub fn hash(password: &str, iterations: u32) -> Result<String, PasswordError> {
    let n = password.chars().count();
    if !(MIN_LEN..=MAX_LEN).contains(&n) {
        return Err(PasswordError::Length);
    }
    let iterations = NonZeroU32::new(iterations.max(1)).ok_or(PasswordError::MalformedHash)?;
    let mut salt = [0u8; 16];
    SystemRandom::new().fill(&mut salt).map_err(|_| PasswordError::Rng)?;
    let mut out = [0u8; 32];
    pbkdf2::derive(ALG, iterations, &salt, password.as_bytes(), &mut out);
    Ok(format!("{PREFIX}${iterations}${}${}", B64.encode(salt), B64.encode(out)))
}

/// Constant-time check of `password` against a stored hash.
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
