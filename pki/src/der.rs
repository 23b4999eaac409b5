//! A minimal DER reader and writer for the structures rcgen does not build
//! (OCSP, the AIA extension). Definite lengths only, bounds-checked, never panics.

/// Universal tags used here.
pub(crate) const SEQUENCE: u8 = 0x30;
pub(crate) const INTEGER: u8 = 0x02;
pub(crate) const BIT_STRING: u8 = 0x03;
pub(crate) const OCTET_STRING: u8 = 0x04;
pub(crate) const OID: u8 = 0x06;
pub(crate) const ENUMERATED: u8 = 0x0a;
pub(crate) const GENERALIZED_TIME: u8 = 0x18;

/// Context-specific tags: `[n]` constructed (EXPLICIT or constructed IMPLICIT) and primitive.
pub(crate) const fn ctx_cons(n: u8) -> u8 {
    0xa0 | n
}
pub(crate) const fn ctx_prim(n: u8) -> u8 {
    0x80 | n
}

/// One parsed element: its tag, its content, and its whole encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tlv<'a> {
    pub tag: u8,
    pub value: &'a [u8],
    pub raw: &'a [u8],
}

/// Reads consecutive elements from a buffer.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DerError;

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn peek_tag(&self) -> Option<u8> {
        self.buf.first().copied()
    }

    /// The next element, whatever its tag.
    pub fn any(&mut self) -> Result<Tlv<'a>, DerError> {
        let buf = self.buf;
        let (&tag, rest) = buf.split_first().ok_or(DerError)?;
        if tag & 0x1f == 0x1f {
            return Err(DerError); // multi-byte tags are not used by these structures
        }
        let (&first, mut rest) = rest.split_first().ok_or(DerError)?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return Err(DerError);
            }
            let mut len = 0usize;
            for &b in &rest[..n] {
                len = (len << 8) | usize::from(b);
            }
            if len < 0x80 || rest[0] == 0 {
                return Err(DerError); // not the shortest form: not DER
            }
            rest = &rest[n..];
            len
        };
        if rest.len() < len {
            return Err(DerError);
        }
        let header = buf.len() - rest.len();
        let value = &rest[..len];
        self.buf = &rest[len..];
        Ok(Tlv { tag, value, raw: &buf[..header + len] })
    }

    /// The next element, which must carry `tag`.
    pub fn expect(&mut self, tag: u8) -> Result<Tlv<'a>, DerError> {
        let t = self.any()?;
        if t.tag == tag { Ok(t) } else { Err(DerError) }
    }

    /// The next element if it carries `tag`.
    pub fn optional(&mut self, tag: u8) -> Result<Option<Tlv<'a>>, DerError> {
        if self.peek_tag() == Some(tag) { self.expect(tag).map(Some) } else { Ok(None) }
    }
}

/// Appends a TLV with `tag` around `content`.
pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

pub(crate) fn seq(parts: &[&[u8]]) -> Vec<u8> {
    tlv(SEQUENCE, &parts.concat())
}

/// An OBJECT IDENTIFIER from its arcs.
pub(crate) fn oid(arcs: &[u64]) -> Vec<u8> {
    let mut body = Vec::new();
    if arcs.len() >= 2 {
        push_base128(&mut body, arcs[0] * 40 + arcs[1]);
        for &a in &arcs[2..] {
            push_base128(&mut body, a);
        }
    }
    tlv(OID, &body)
}

fn push_base128(out: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 10];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            break;
        }
    }
    let last = tmp.len() - 1;
    for (k, b) in tmp.iter().enumerate().skip(i) {
        out.push(if k == last { *b } else { b | 0x80 });
    }
}

/// GeneralizedTime `YYYYMMDDHHMMSSZ` (RFC 5280: UTC, no fractions).
pub(crate) fn generalized_time(t: time::OffsetDateTime) -> Vec<u8> {
    let t = t.to_offset(time::UtcOffset::UTC);
    let s = format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    tlv(GENERALIZED_TIME, s.as_bytes())
}

/// A BIT STRING with no unused bits.
pub(crate) fn bit_string(bytes: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(bytes.len() + 1);
    content.push(0);
    content.extend_from_slice(bytes);
    tlv(BIT_STRING, &content)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_short_and_long_lengths() {
        for n in [0usize, 1, 127, 128, 255, 256, 70_000] {
            let content = vec![7u8; n];
            let enc = tlv(OCTET_STRING, &content);
            let mut r = Reader::new(&enc);
            let t = r.expect(OCTET_STRING).unwrap();
            assert_eq!(t.value.len(), n);
            assert_eq!(t.raw, &enc[..]);
            assert!(r.is_empty());
        }
    }

    #[test]
    fn rejects_truncation_and_non_minimal_lengths() {
        assert_eq!(Reader::new(&[0x30]).any(), Err(DerError));
        assert_eq!(Reader::new(&[0x30, 0x05, 0x01]).any(), Err(DerError));
        assert_eq!(Reader::new(&[0x30, 0x81, 0x05, 0, 0, 0, 0, 0]).any(), Err(DerError), "long form for 5");
        assert_eq!(Reader::new(&[0x30, 0x80]).any(), Err(DerError), "indefinite length");
        assert_eq!(Reader::new(&[0x30, 0x85, 1, 1, 1, 1, 1]).any(), Err(DerError));
        assert_eq!(Reader::new(&[0x1f, 0x01, 0x00]).any(), Err(DerError));
    }

    #[test]
    fn oid_encoding() {
        // 1.3.6.1.5.5.7.48.1 (id-ad-ocsp)
        assert_eq!(oid(&[1, 3, 6, 1, 5, 5, 7, 48, 1]), [0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01]);
        // 1.2.840.10045.4.3.2 (ecdsa-with-SHA256)
        assert_eq!(oid(&[1, 2, 840, 10045, 4, 3, 2]), [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]);
    }
}
