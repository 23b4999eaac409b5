//! Small encodings shared by issuance and inspection, so both produce identical strings.

use std::fmt::Write as _;

/// Lowercase hex of `bytes`, two digits per byte.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Canonical serial number string: lowercase hex of the unsigned big-endian value with
/// leading zero bytes removed (so the DER sign byte never shows), `"00"` for zero.
///
/// Issuance and inspection both derive it from the certificate DER through this function,
/// so the strings match for the same certificate.
pub(crate) fn serial_hex(raw_serial: &[u8]) -> String {
    let first_nonzero = raw_serial.iter().position(|b| *b != 0);
    match first_nonzero {
        Some(i) => hex(&raw_serial[i..]),
        None => "00".to_owned(),
    }
}

/// SHA-256 fingerprint of DER bytes, lowercase hex without separators.
pub(crate) fn sha256_fingerprint_hex(der: &[u8]) -> String {
    hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der).as_ref())
}

/// PEM-encode `der` under `label` (RFC 7468: 64-character lines, LF endings).
pub(crate) fn pem(label: &str, der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = Vec::with_capacity(der.len().div_ceil(3) * 4);
    for chunk in der.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]);
            } else {
                b64.push(b'=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.chunks(64) {
        // The alphabet is ASCII, so every byte is a char.
        out.extend(line.iter().map(|b| char::from(*b)));
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn serial_hex_strips_sign_byte() {
        assert_eq!(serial_hex(&[0x00, 0x80, 0x01]), "8001");
        assert_eq!(serial_hex(&[0x01, 0x00]), "0100");
        assert_eq!(serial_hex(&[0x00]), "00");
        assert_eq!(serial_hex(&[]), "00");
    }

    #[test]
    fn pem_matches_rfc4648_vectors() {
        let body = |der: &[u8]| pem("X", der).lines().nth(1).unwrap_or("").to_owned();
        assert_eq!(body(b"f"), "Zg==");
        assert_eq!(body(b"fo"), "Zm8=");
        assert_eq!(body(b"foo"), "Zm9v");
        assert_eq!(body(b"foobar"), "Zm9vYmFy");
        let long = pem("CERTIFICATE", &[0u8; 100]);
        assert!(long.lines().all(|l| l.len() <= 64));
        assert!(long.ends_with("-----END CERTIFICATE-----\n"));
    }
}
