//! Field rules shared by every way in (REST, CLI).

use api::model as m;

use crate::error::{Error, Result};
use crate::store::Registration;

/// Longest description, most tags, longest tag.
pub const MAX_DESCRIPTION: usize = 255;
pub const MAX_TAGS: usize = 16;
pub const MAX_TAG_LEN: usize = 64;

pub(super) fn check_profile(field: &str, p: u8) -> Result<()> {
    if (1..=3).contains(&p) { Ok(()) } else { Err(Error::invalid(field, "security profile must be 1, 2 or 3")) }
}

pub(super) fn check_description(d: &str) -> Result<()> {
    if d.chars().count() > MAX_DESCRIPTION {
        return Err(Error::invalid("/description", format!("at most {MAX_DESCRIPTION} characters")));
    }
    check_text("/description", d)
}

/// Free text must not carry control characters (PostgreSQL refuses NUL in text).
pub(super) fn check_text(field: &str, s: &str) -> Result<()> {
    if s.chars().any(char::is_control) {
        return Err(Error::invalid(field, "must not contain control characters"));
    }
    Ok(())
}

/// `s` with control characters escaped, for messages.
pub fn printable(s: &str) -> String {
    s.chars().take(64).flat_map(char::escape_debug).collect()
}

pub fn valid_tag(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= MAX_TAG_LEN
        && t.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

pub(super) fn check_tags(tags: &[m::Tag]) -> Result<Vec<String>> {
    if tags.len() > MAX_TAGS {
        return Err(Error::invalid("/tags", format!("at most {MAX_TAGS} tags")));
    }
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    for (i, m::Tag(t)) in tags.iter().enumerate() {
        if !valid_tag(t) {
            return Err(Error::invalid(
                &format!("/tags/{i}"),
                format!("a tag is 1-{MAX_TAG_LEN} characters of A-Z a-z 0-9 - _ . :"),
            ));
        }
        if !out.contains(t) {
            out.push(t.clone());
        }
    }
    Ok(out)
}

pub(super) fn registration(r: m::Registration) -> Registration {
    match r {
        m::Registration::Accepted => Registration::Accepted,
        m::Registration::Pending => Registration::Pending,
        m::Registration::Rejected => Registration::Rejected,
    }
}

/// 32 random characters from a 64-symbol alphabet (192 bits).
pub(super) fn generate_password() -> Result<String> {
    use aws_lc_rs::rand::SecureRandom;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::internal("random number generator failed"))?;
    Ok(bytes.iter().map(|b| ALPHABET[usize::from(b & 63)] as char).collect())
}
