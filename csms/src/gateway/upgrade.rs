//! The WebSocket opening handshake (RFC 6455 4.2) read and answered here,
//! not by an HTTP server: a station's connection carries one request, the
//! upgrade, and is the session's from then on. Without hyper on this path the
//! session reads and writes the TLS stream directly (no upgrade wrapper with
//! its boxed stream for the session's whole life), and a connect costs one
//! parse of the request head.

use std::io;

use http::header::{HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest request head accepted: request line and headers.
pub const MAX_HEAD: usize = 16 * 1024;
/// Headers in one request; a WebSocket upgrade sends about ten.
const MAX_HEADERS: usize = 48;

/// The request head read from a connection.
// Returned once per connection and matched at once: boxing the large variant
// would only add an allocation per connect.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Head {
    /// A complete head, and whatever the client sent after it (a client must
    /// wait for the answer before it sends frames; anything early is kept).
    Request { request: Request<()>, rest: Vec<u8> },
    /// More than [`MAX_HEAD`] bytes, or more than [`MAX_HEADERS`] headers.
    TooLarge,
    /// Not an HTTP/1.x request head: why.
    Malformed(&'static str),
}

/// Reads one request head from `io`. Ends with an error when the client closes
/// the connection before the head is complete.
pub async fn read_head<IO: AsyncRead + Unpin>(io: &mut IO) -> io::Result<Head> {
    // Read into the buffer's spare room: a typical upgrade request (about 300
    // bytes, more with a Basic header) fits the first allocation.
    let mut buf = Vec::with_capacity(512);
    loop {
        if buf.len() == buf.capacity() {
            // Doubling; reading stops once more than MAX_HEAD bytes arrived.
            buf.reserve(buf.len().clamp(1, MAX_HEAD));
        }
        let n = io.read_buf(&mut buf).await?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed before the request head was complete"));
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                if len > MAX_HEAD {
                    return Ok(Head::TooLarge);
                }
                return Ok(match to_request(&parsed) {
                    Ok(request) => Head::Request { request, rest: buf[len..].to_vec() },
                    Err(why) => Head::Malformed(why),
                });
            }
            Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => return Ok(Head::TooLarge),
            Ok(httparse::Status::Partial) => {}
            Err(httparse::Error::TooManyHeaders) => return Ok(Head::TooLarge),
            Err(_) => return Ok(Head::Malformed("not an HTTP/1.1 request")),
        }
    }
}

fn to_request(parsed: &httparse::Request<'_, '_>) -> Result<Request<()>, &'static str> {
    // RFC 6455 4.1: the opening handshake is an HTTP/1.1 request (or later).
    let version = match parsed.version {
        Some(1) => Version::HTTP_11,
        _ => return Err("a WebSocket upgrade needs HTTP/1.1"),
    };
    let mut builder = Request::builder()
        .method(parsed.method.ok_or("no method")?)
        .uri(parsed.path.ok_or("no request target")?)
        .version(version);
    let headers = builder.headers_mut().ok_or("invalid request line")?;
    for h in parsed.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| "invalid header name")?;
        let value = HeaderValue::from_bytes(h.value).map_err(|_| "invalid header value")?;
        headers.append(name, value);
    }
    builder.body(()).map_err(|_| "invalid request line")
}

/// The answer's bytes: status line, headers, `Content-Length` when there is a
/// body (a 101 has none), the body.
pub fn encode(res: &Response<&'static str>) -> Vec<u8> {
    let status = res.status();
    let mut out = Vec::with_capacity(256 + res.body().len());
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in res.headers() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if status != StatusCode::SWITCHING_PROTOCOLS {
        out.extend_from_slice(format!("content-length: {}\r\n", res.body().len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(res.body().as_bytes());
    out
}

/// Writes the answer; with `close`, ends the connection after it.
pub async fn respond<IO: AsyncWrite + Unpin>(io: &mut IO, res: &Response<&'static str>, close: bool) -> io::Result<()> {
    io.write_all(&encode(res)).await?;
    io.flush().await?;
    if close {
        io.shutdown().await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn head_of(bytes: &[u8]) -> io::Result<Head> {
        let (mut a, mut b) = tokio::io::duplex(64 * 1024);
        a.write_all(bytes).await?;
        drop(a);
        read_head(&mut b).await
    }

    #[tokio::test]
    async fn a_request_head_is_read_with_what_follows_it() {
        let raw = b"GET /ocpp/CS1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nSec-WebSocket-Protocol: a\r\nSec-WebSocket-Protocol: ocpp2.0.1\r\n\r\n\x81\x00";
        let Head::Request { request, rest } = head_of(raw).await.unwrap() else { panic!("not read") };
        assert_eq!((request.method(), request.uri().path()), (&http::Method::GET, "/ocpp/CS1"));
        assert_eq!(request.version(), Version::HTTP_11);
        assert_eq!(request.headers().get_all("sec-websocket-protocol").iter().count(), 2, "repeated headers kept");
        assert_eq!(request.headers()["upgrade"], "websocket");
        assert_eq!(rest, b"\x81\x00");
    }

    #[tokio::test]
    async fn a_head_in_small_pieces_is_read_whole() {
        let (mut a, mut b) = tokio::io::duplex(8);
        let writer = tokio::spawn(async move {
            for piece in [&b"GET /ocpp/C"[..], b"S1 HTTP/1.1\r\nHo", b"st: x\r\n", b"\r\n"] {
                a.write_all(piece).await.unwrap();
                tokio::task::yield_now().await;
            }
            a
        });
        let Head::Request { request, rest } = read_head(&mut b).await.unwrap() else { panic!("not read") };
        assert_eq!(request.uri().path(), "/ocpp/CS1");
        assert!(rest.is_empty());
        drop(writer.await.unwrap());
    }

    #[tokio::test]
    async fn oversized_malformed_and_cut_heads_are_told_apart() {
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', MAX_HEAD));
        assert!(matches!(head_of(&big).await.unwrap(), Head::TooLarge));
        let many: String = (0..MAX_HEADERS + 1).map(|i| format!("h{i}: v\r\n")).collect();
        assert!(matches!(head_of(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()).await.unwrap(), Head::TooLarge));
        assert!(matches!(head_of(b"\x16\x03\x01\x00\x05hello\r\n\r\n").await.unwrap(), Head::Malformed(_)));
        assert!(matches!(head_of(b"GET / HTTP/2.0\r\n\r\n").await.unwrap(), Head::Malformed(_)));
        assert!(matches!(head_of(b"GET /ocpp/CS1 HTTP/1.0\r\nHost: x\r\n\r\n").await.unwrap(), Head::Malformed(_)));
        let cut = head_of(b"GET /ocpp/CS1 HTTP/1.1\r\nHost: x\r\n").await.unwrap_err();
        assert_eq!(cut.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn answers_are_encoded_as_http_1_1() {
        let mut res = Response::new("unauthorized\n");
        *res.status_mut() = StatusCode::UNAUTHORIZED;
        res.headers_mut().insert("connection", HeaderValue::from_static("close"));
        assert_eq!(
            String::from_utf8(encode(&res)).unwrap(),
            "HTTP/1.1 401 Unauthorized\r\nconnection: close\r\ncontent-length: 13\r\n\r\nunauthorized\n"
        );
        let mut up = Response::new("");
        *up.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        up.headers_mut().insert("upgrade", HeaderValue::from_static("websocket"));
        assert_eq!(
            String::from_utf8(encode(&up)).unwrap(),
            "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n"
        );
    }
}
