//! Before rustls: the first TLS record (the ClientHello) is read here, so that
//!
//! - a peer that sends nothing holds no handshake permit and is dropped after
//!   `client_hello_timeout_secs` (a half-open connection must not delay stations);
//! - a ClientHello that offers only TLS 1.1 or older is answered with the
//!   `protocol_version` alert (RFC 8446 4.2.1, RFC 5246 E.1). rustls checks the
//!   `signature_algorithms` extension, which TLS 1.1 clients never send, before
//!   the version, and so answers them with `handshake_failure`.
//!
//! The bytes read are handed to rustls unchanged through [`Replayed`].

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// TLS record content types and versions used here.
const HANDSHAKE: u8 = 22;
const ALERT: u8 = 21;
const CLIENT_HELLO: u8 = 1;
const TLS12: u16 = 0x0303;
const TLS13: u16 = 0x0304;
const SUPPORTED_VERSIONS: u16 = 43;
/// RFC 8446 5.1: a record's plaintext is at most 2^14 bytes.
const MAX_RECORD: usize = 16 * 1024;

/// What the first record says about the versions the client can speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    /// TLS 1.2 or 1.3 is among them (or the record is not a ClientHello rustls
    /// should not judge itself).
    Acceptable,
    /// Only versions below TLS 1.2: answer `protocol_version`.
    TooOld {
        /// Version field of the client's record header, reused for the alert.
        record_version: u16,
    },
}

/// Reads the first TLS record (header and body) from `io`. A record that is not a
/// handshake record, or claims more than a record may hold, is returned after
/// its header: rustls refuses it with the right alert.
pub async fn read_first_record<R: AsyncRead + Unpin>(io: &mut R) -> std::io::Result<Vec<u8>> {
    let mut record = vec![0u8; 5];
    io.read_exact(&mut record).await?;
    let len = usize::from(u16::from_be_bytes([record[3], record[4]]));
    if record[0] != HANDSHAKE || len > MAX_RECORD {
        return Ok(record);
    }
    record.resize(5 + len, 0);
    io.read_exact(&mut record[5..]).await?;
    Ok(record)
}

/// Judges the versions a ClientHello record offers. Anything that cannot be read
/// as a complete ClientHello is left to rustls.
pub fn offered_versions(record: &[u8]) -> Offered {
    match parse(record) {
        Some((record_version, client_version, supported)) => {
            let modern = match supported {
                // RFC 8446 4.2.1: when present, only supported_versions counts.
                Some(list) => list.chunks_exact(2).any(|v| matches!(u16::from_be_bytes([v[0], v[1]]), TLS12 | TLS13)),
                None => client_version >= TLS12,
            };
            if modern { Offered::Acceptable } else { Offered::TooOld { record_version } }
        }
        None => Offered::Acceptable,
    }
}

/// A fatal `protocol_version` (70) alert record in the client's record version.
pub fn protocol_version_alert(record_version: u16) -> [u8; 7] {
    let [hi, lo] = record_version.to_be_bytes();
    [ALERT, hi, lo, 0, 2, 2, 70]
}

/// (record version, legacy client_version, supported_versions list if present).
fn parse(record: &[u8]) -> Option<(u16, u16, Option<&[u8]>)> {
    let mut r = Reader(record);
    if r.u8()? != HANDSHAKE {
        return None;
    }
    let record_version = r.u16()?;
    let body_len = usize::from(r.u16()?);
    let body = r.take(body_len)?;
    let mut h = Reader(body);
    if h.u8()? != CLIENT_HELLO {
        return None;
    }
    let len = (usize::from(h.u8()?) << 16) | usize::from(h.u16()?);
    // A ClientHello split over several records is left to rustls.
    let mut m = Reader(h.take(len)?);
    let client_version = m.u16()?;
    m.take(32)?; // random
    let session_id = usize::from(m.u8()?);
    m.take(session_id)?;
    let suites = usize::from(m.u16()?);
    m.take(suites)?;
    let compression = usize::from(m.u8()?);
    m.take(compression)?;
    if m.0.is_empty() {
        // No extensions at all (SSL 3.0 style).
        return Some((record_version, client_version, None));
    }
    let ext_len = usize::from(m.u16()?);
    let mut exts = Reader(m.take(ext_len)?);
    while !exts.0.is_empty() {
        let kind = exts.u16()?;
        let data_len = usize::from(exts.u16()?);
        let data = exts.take(data_len)?;
        if kind == SUPPORTED_VERSIONS {
            let mut d = Reader(data);
            let n = usize::from(d.u8()?);
            return Some((record_version, client_version, Some(d.take(n)?)));
        }
    }
    Some((record_version, client_version, None))
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
}

/// A stream whose first bytes were already read: they are read again first.
pub struct Replayed<S> {
    prefix: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S> Replayed<S> {
    pub fn new(prefix: Vec<u8>, inner: S) -> Self {
        Replayed { prefix, pos: 0, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Replayed<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.pos < this.prefix.len() {
            let rest = &this.prefix[this.pos..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.pos += n;
            if this.pos == this.prefix.len() {
                this.prefix = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Replayed<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello record with the given legacy version and optional
    /// supported_versions list.
    fn hello(client_version: u16, supported: Option<&[u16]>) -> Vec<u8> {
        let mut m = client_version.to_be_bytes().to_vec();
        m.extend([0u8; 32]);
        m.push(0); // session id
        m.extend([0, 2, 0xc0, 0x2b]); // one suite
        m.extend([1, 0]); // null compression
        let mut exts = Vec::new();
        // server_name-like filler extension first
        exts.extend([0, 23, 0, 0]);
        if let Some(list) = supported {
            let body: Vec<u8> = list.iter().flat_map(|v| v.to_be_bytes()).collect();
            exts.extend(SUPPORTED_VERSIONS.to_be_bytes());
            exts.extend(u16::try_from(body.len() + 1).unwrap().to_be_bytes());
            exts.push(u8::try_from(body.len()).unwrap());
            exts.extend(body);
        }
        m.extend(u16::try_from(exts.len()).unwrap().to_be_bytes());
        m.extend(exts);
        let mut hs = vec![CLIENT_HELLO, 0];
        hs.extend(u16::try_from(m.len()).unwrap().to_be_bytes());
        hs.extend(m);
        let mut rec = vec![HANDSHAKE, 3, 1];
        rec.extend(u16::try_from(hs.len()).unwrap().to_be_bytes());
        rec.extend(hs);
        rec
    }

    #[test]
    fn versions_offered_are_judged_like_rfc_8446_says() {
        assert_eq!(offered_versions(&hello(0x0302, None)), Offered::TooOld { record_version: 0x0301 });
        assert_eq!(offered_versions(&hello(0x0301, None)), Offered::TooOld { record_version: 0x0301 });
        assert_eq!(offered_versions(&hello(0x0303, None)), Offered::Acceptable);
        assert_eq!(offered_versions(&hello(0x0303, Some(&[0x0304, 0x0303]))), Offered::Acceptable);
        assert_eq!(offered_versions(&hello(0x0303, Some(&[0x0304]))), Offered::Acceptable);
        // supported_versions overrides the legacy field.
        assert_eq!(offered_versions(&hello(0x0303, Some(&[0x0302]))), Offered::TooOld { record_version: 0x0301 });
        // Truncated or not a ClientHello: rustls decides.
        let h = hello(0x0302, None);
        assert_eq!(offered_versions(&h[..h.len() - 3]), Offered::Acceptable);
        assert_eq!(offered_versions(b"GET / HTTP/1.1\r\n"), Offered::Acceptable);
        assert_eq!(protocol_version_alert(0x0301), [21, 3, 1, 0, 2, 2, 70]);
    }

    #[tokio::test]
    async fn replayed_bytes_come_first() {
        let (mut a, b) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut a, b"world").await.unwrap();
        drop(a);
        let mut r = Replayed::new(b"hello ".to_vec(), b);
        let mut out = String::new();
        r.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "hello world");
    }
}
