//! The gateway: accepting stations. TCP -> TLS -> HTTP/1.1 upgrade request
//! (read and answered by [`upgrade`]) -> identity -> session.
//!
//! Everything before the session is bounded: a connection cap, a cap on
//! concurrent handshakes, and one deadline for TLS plus the upgrade request.
//! Refusals are decided before the upgrade and answered with an HTTP status; the
//! precise reason is logged and counted, never sent to the client.

pub mod hello;
pub mod identity;
pub mod limits;
pub mod tls;
pub mod upgrade;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Request, Response, StatusCode, header};
use rustls::ServerConfig;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use identity::{Refusal, Transport};
use tls::{ServerCertificates, StationTrust};

use crate::clock::Clock;
use crate::config::Config;
use crate::engines::ConnectedStation;
use crate::ids::valid_station_id;
use crate::metrics::{Metrics, gateway_refusals};
use crate::session::{self, SessionContext, SessionState};
use crate::store::Store;

/// The one subprotocol this CSMS speaks.
pub const SUBPROTOCOL: &str = "ocpp2.0.1";

/// What the listeners need to let stations in.
pub struct Gateway {
    pub config: Arc<Config>,
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    pub trust: Arc<StationTrust>,
    /// Server certificates by SNI host (absent when no TLS listener runs).
    pub server_certs: Option<Arc<ServerCertificates>>,
    /// Where admitted stations' sessions run.
    pub sessions: Arc<SessionContext>,
    /// Open connections (sessions and handshakes in progress).
    connection_permits: Arc<Semaphore>,
    /// TLS handshakes and upgrade requests in progress.
    handshake_permits: Arc<Semaphore>,
    /// PBKDF2 verifications running and queued (CPU-bound).
    password_pool: limits::PasswordPool,
    /// Checks the keyed verifiers of generated passwords.
    password_key: crate::password::VerifierKey,
    /// Successful PBKDF2 logins, so a reconnect costs one HMAC.
    verified: crate::password::SuccessCache,
    /// Handshakes in progress per source address.
    sources: limits::SourceHandshakes,
    /// Back-off after failed password logins.
    throttle: limits::LoginThrottle,
    /// Verified against on refusals that reached no real password hash, so
    /// every refusal of a presented password costs one verification.
    dummy_hash: Option<String>,
}

impl Gateway {
    /// Built once per process by `runtime::Node::new`, from the capabilities it wires.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: Arc<Config>,
        store: Store,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        trust: Arc<StationTrust>,
        server_certs: Option<Arc<ServerCertificates>>,
        sessions: Arc<SessionContext>,
        master: &pki::MasterKey,
    ) -> Gateway {
        let dummy_hash = crate::password::hash("equal-time-dummy-password", config.password_hash_iterations).ok();
        Gateway {
            connection_permits: Arc::new(Semaphore::new(config.max_connections)),
            handshake_permits: Arc::new(Semaphore::new(config.max_concurrent_handshakes.max(1))),
            password_pool: limits::PasswordPool::new(&config),
            password_key: crate::password::VerifierKey::from_master(master),
            verified: crate::password::SuccessCache::new(master, config.password_cache_entries),
            sources: limits::SourceHandshakes::new(&config),
            throttle: limits::LoginThrottle::new(&config),
            dummy_hash,
            config,
            store,
            clock,
            metrics,
            trust,
            server_certs,
            sessions,
        }
    }

    /// The tenant whose own host name `sni` is, if any.
    pub fn tenant_of_host(&self, sni: &str) -> Option<String> {
        self.server_certs.as_ref()?.tenant_of_host(sni)
    }
}

/// Accepts TLS connections until the listener fails.
pub async fn serve_tls(app: Arc<Gateway>, listener: TcpListener, tls: Arc<ServerConfig>) {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let Some((mut tcp, peer, permit)) = accept(&app, &listener).await else {
            continue;
        };
        let app = app.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let Some(source) = source_slot(&app, peer) else {
                return;
            };
            // Until its first record has arrived, a connection holds no handshake
            // permit: silent peers cannot keep stations waiting for one.
            let hello_wait = Duration::from_secs(app.config.client_hello_timeout_secs);
            let first = match tokio::time::timeout(hello_wait, hello::read_first_record(&mut tcp)).await {
                Ok(Ok(record)) => record,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "connection closed before a ClientHello");
                    app.metrics.handshake_failed("tls_eof");
                    return;
                }
                Err(_) => {
                    app.metrics.handshake_failed(gateway_refusals::CLIENT_HELLO_TIMEOUT);
                    return;
                }
            };
            if let hello::Offered::TooOld { record_version } = hello::offered_versions(&first) {
                // A00.FR.416: TLS 1.2 at least, refused with the alert that says so.
                tracing::info!(%peer, "TLS handshake refused: the client offers only TLS 1.1 or older");
                app.metrics.handshake_failed(gateway_refusals::TLS_VERSION);
                let _ = tokio::time::timeout(hello_wait, async {
                    tcp.write_all(&hello::protocol_version_alert(record_version)).await?;
                    tcp.shutdown().await
                })
                .await;
                return;
            }
            // One deadline, from the handshake permit on, covers TLS and the
            // upgrade request.
            let Some((hs_permit, deadline)) = handshake_permit(&app, &tcp).await else {
                return;
            };
            let slot = HandshakeSlot { _permit: hs_permit, _source: source };
            let tls = match tokio::time::timeout_at(deadline, acceptor.accept(hello::Replayed::new(first, tcp))).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    let reason = tls::classify_handshake_error(&e);
                    tracing::info!(%peer, reason, error = %e, "TLS handshake failed");
                    app.metrics.handshake_failed(reason);
                    return;
                }
                Err(_) => {
                    app.metrics.handshake_failed("handshake_timeout");
                    return;
                }
            };
            let client_chain =
                tls.get_ref().1.peer_certificates().map(|c| c.iter().map(|d| d.clone().into_owned()).collect());
            let sni = tls.get_ref().1.server_name().map(str::to_owned);
            let transport = Transport { tls: true, client_chain, sni };
            upgrade_and_run(app, tls, peer, transport, permit, slot, deadline).await;
        });
    }
}

/// A handshake in progress: its global permit and its source's share, both
/// released once the upgrade request was answered.
struct HandshakeSlot {
    _permit: OwnedSemaphorePermit,
    _source: Option<limits::SourceSlot>,
}

/// The source's share of handshakes in progress (`None`: it has them all; counted).
fn source_slot(app: &Gateway, peer: SocketAddr) -> Option<Option<limits::SourceSlot>> {
    let slot = app.sources.enter(peer.ip());
    if slot.is_none() {
        app.metrics.handshake_failed(gateway_refusals::SOURCE_HANDSHAKE_LIMIT);
    }
    slot
}

/// Waits for one of the bounded handshake slots, at most
/// `handshake_queue_timeout_secs`, then makes sure the peer is still there;
/// the deadline for TLS and the upgrade request, from now on.
///
/// The handshake deadline starts at the permit, not at the first record: in a
/// reconnect storm of 100,000 stations, a deadline that covered the queue too
/// let stations reach the head of the queue with little time left, so that many
/// timed out after the server had done their cryptography and retried, and each
/// station booted cost the server twice the work. Waiting costs a parked task
/// and its socket; a refusal at the door would cost a retry (a connect, a
/// ClientHello, an accept) every back-off, which at that scale took more CPU
/// than the handshakes. A slow peer still has `handshake_timeout_secs` once it
/// holds a permit, and a peer that gave up while queued is let go here.
async fn handshake_permit(app: &Gateway, tcp: &TcpStream) -> Option<(OwnedSemaphorePermit, tokio::time::Instant)> {
    let queue = Duration::from_secs(app.config.handshake_queue_timeout_secs);
    let permit = match app.handshake_permits.clone().try_acquire_owned() {
        Ok(p) => p,
        Err(_) => match queue_for_permit(app, queue).await {
            Ok(Ok(p)) => {
                if peer_closed(tcp).await {
                    app.metrics.handshake_failed(gateway_refusals::CLOSED_WHILE_QUEUED);
                    return None;
                }
                p
            }
            Ok(Err(_)) => return None,
            Err(_) => {
                app.metrics.handshake_failed(gateway_refusals::HANDSHAKE_QUEUE_TIMEOUT);
                return None;
            }
        },
    };
    Some((permit, tokio::time::Instant::now() + Duration::from_secs(app.config.handshake_timeout_secs)))
}

/// The wait in the queue for a permit, counted in `handshakes_queued` (by a
/// guard, so a wait that is dropped half-way is uncounted too).
async fn queue_for_permit(
    app: &Gateway,
    queue: Duration,
) -> Result<Result<OwnedSemaphorePermit, tokio::sync::AcquireError>, tokio::time::error::Elapsed> {
    struct Queued<'a>(&'a prometheus_client::metrics::gauge::Gauge);
    impl Drop for Queued<'_> {
        fn drop(&mut self) {
            self.0.dec();
        }
    }
    app.metrics.handshakes_queued.inc();
    let _queued = Queued(&app.metrics.handshakes_queued);
    tokio::time::timeout(queue, app.handshake_permits.clone().acquire_owned()).await
}

/// Whether the peer closed its side of the connection (or reset it), as the
/// reactor last saw the socket: epoll reports the peer's FIN (RDHUP) even when
/// bytes it sent are still unread (the plain listener's request head), and the
/// closed state, once seen, stays. Nothing is read or consumed.
async fn peer_closed(tcp: &TcpStream) -> bool {
    // A timeout of zero polls `ready` once: pending means nothing new was seen.
    match tokio::time::timeout(Duration::ZERO, tcp.ready(tokio::io::Interest::READABLE)).await {
        Ok(Ok(ready)) => ready.is_read_closed() || ready.is_error(),
        Ok(Err(_)) => true,
        Err(_) => false,
    }
}

/// Plain WebSocket listener for security profile 1 (off unless configured).
pub async fn serve_plain(app: Arc<Gateway>, listener: TcpListener) {
    loop {
        let Some((tcp, peer, permit)) = accept(&app, &listener).await else {
            continue;
        };
        let app = app.clone();
        tokio::spawn(async move {
            let Some(source) = source_slot(&app, peer) else {
                return;
            };
            let hello_wait = Duration::from_secs(app.config.client_hello_timeout_secs);
            match tokio::time::timeout(hello_wait, tcp.peek(&mut [0u8; 1])).await {
                Ok(Ok(n)) if n > 0 => {}
                Ok(_) => return,
                Err(_) => {
                    app.metrics.handshake_failed(gateway_refusals::CLIENT_HELLO_TIMEOUT);
                    return;
                }
            }
            let Some((hs_permit, deadline)) = handshake_permit(&app, &tcp).await else {
                return;
            };
            let slot = HandshakeSlot { _permit: hs_permit, _source: source };
            let transport = Transport { tls: false, client_chain: None, sni: None };
            upgrade_and_run(app, tcp, peer, transport, permit, slot, deadline).await;
        });
    }
}

async fn accept(app: &Gateway, listener: &TcpListener) -> Option<(TcpStream, SocketAddr, OwnedSemaphorePermit)> {
    let (tcp, peer) = match listener.accept().await {
        Ok(x) => x,
        Err(e) => {
            // EMFILE and friends: back off instead of spinning.
            tracing::warn!(error = %e, "accept failed");
            tokio::time::sleep(Duration::from_millis(50)).await;
            return None;
        }
    };
    let Ok(permit) = app.connection_permits.clone().try_acquire_owned() else {
        app.metrics.handshake_failed("connection_limit");
        return None;
    };
    let _ = tcp.set_nodelay(true);
    Some((tcp, peer, permit))
}

async fn upgrade_and_run<IO>(
    app: Arc<Gateway>,
    mut io: IO,
    peer: SocketAddr,
    transport: Transport,
    conn_permit: OwnedSemaphorePermit,
    hs_permit: HandshakeSlot,
    deadline: tokio::time::Instant,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (request, rest) = match tokio::time::timeout_at(deadline, upgrade::read_head(&mut io)).await {
        Ok(Ok(upgrade::Head::Request { request, rest })) => (request, rest),
        Ok(Ok(unusable)) => {
            let (status, label, text) = match unusable {
                upgrade::Head::TooLarge => (
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "request_too_large",
                    "request header fields too large\n",
                ),
                _ => (StatusCode::BAD_REQUEST, "bad_request", "bad request\n"),
            };
            tracing::debug!(%peer, head = ?unusable, "upgrade request refused");
            app.metrics.handshake_failed(label);
            let _ = tokio::time::timeout_at(deadline, upgrade::respond(&mut io, &plain(status, text), true)).await;
            return;
        }
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "connection ended before the upgrade request");
            return;
        }
        Err(_) => {
            app.metrics.handshake_failed("upgrade_timeout");
            return;
        }
    };
    // The deadline covers the decision too (the connect read, a queued password
    // check): a station is never let in after its handshake time ran out.
    let Ok((res, state)) = tokio::time::timeout_at(deadline, upgrade_request(&app, peer, &transport, &request)).await
    else {
        app.metrics.handshake_failed("upgrade_timeout");
        return;
    };
    let admitted = state.is_some();
    match tokio::time::timeout_at(deadline, upgrade::respond(&mut io, &res, !admitted)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "writing the upgrade answer failed");
            return;
        }
        Err(_) => {
            app.metrics.handshake_failed("upgrade_timeout");
            return;
        }
    }
    drop(hs_permit);
    let Some(state) = state else {
        return;
    };
    // Frames sent before the answer arrived (RFC 6455 4.1 says to wait) are
    // kept. Boxed: the session's task then holds a pointer, not the TLS state
    // (measured: 2.2 KiB more per idle session when the stream was inline, as
    // the task kept room for it twice).
    let io: Box<dyn SessionIo> = Box::new(hello::Replayed::new(rest, io));
    let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(ws_config(&app))).await;
    // A task of its own: a task keeps the size of its largest state for its
    // whole life, and the handshake's (TLS, the request head) is far larger
    // than an idle session's. This one ends here and frees it.
    let sessions = app.sessions.clone();
    tokio::spawn(async move {
        session::run(sessions, ws, state).await;
        drop(conn_permit);
    });
}

/// The stream a session runs on, whatever the listener (TLS or plain TCP).
trait SessionIo: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> SessionIo for T {}

/// Small buffers: most stations are idle most of the time.
fn ws_config(app: &Gateway) -> WebSocketConfig {
    let max = app.config.max_message_bytes;
    WebSocketConfig::default()
        // What is read from TLS in one go; TLS already buffers the record, so a
        // small buffer costs copies, not system calls, and idle sessions keep less.
        .read_buffer_size(1024)
        .write_buffer_size(0)
        .max_write_buffer_size(max.saturating_mul(2).max(64 * 1024))
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
}

fn plain(status: StatusCode, text: &'static str) -> Response<&'static str> {
    let mut res = Response::new(text);
    *res.status_mut() = status;
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    // A refused connection is closed: one attempt per TLS handshake.
    res.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    res
}

/// Checks the upgrade request and, if the station is let in, answers 101.
/// The answer, and the session's first state when the station is let in.
async fn upgrade_request(
    app: &Gateway,
    peer: SocketAddr,
    transport: &Transport,
    req: &Request<()>,
) -> (Response<&'static str>, Option<SessionState>) {
    let station_id = match station_id_from_path(req.uri().path()) {
        Some(id) => id,
        None => {
            app.metrics.handshake_failed("bad_path");
            return (plain(StatusCode::NOT_FOUND, "not found: connect to /ocpp/{stationId}\n"), None);
        }
    };
    if let Err((status, reason, text)) = check_websocket_request(req) {
        tracing::info!(%peer, station = %station_id, reason, "upgrade refused");
        app.metrics.handshake_failed(reason);
        let mut res = plain(status, text);
        if status == StatusCode::UPGRADE_REQUIRED {
            res.headers_mut().insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        }
        return (res, None);
    }
    let authorization = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let admission = match identity::authenticate(app, &station_id, peer.ip(), transport, authorization.as_deref()).await
    {
        Ok(a) => a,
        Err(refusal) => {
            tracing::info!(%peer, station = %station_id, reason = refusal.label(), "connection refused");
            app.metrics.handshake_failed(refusal.label());
            return (refuse(refusal), None);
        }
    };
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY).map(|k| derive_accept_key(k.as_bytes())) else {
        return (plain(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key\n"), None);
    };
    let station = &admission.station;
    let registration = station.boot_status.as_deref().and_then(|s| s.parse().ok());
    let connected = ConnectedStation {
        tenant_id: Arc::from(station.tenant_id.as_str()),
        station_id: station.id.clone(),
        certificate_serial: admission.certificate_serial.clone(),
        certificate_work: admission.certificate_work,
    };
    let state = SessionState::new(connected, registration).read_at_admission(station.registration);
    let mut res = Response::new("");
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = res.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(SUBPROTOCOL));
    if let Ok(v) = HeaderValue::from_str(&key) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    (res, Some(state))
}

fn refuse(refusal: Refusal) -> Response<&'static str> {
    let mut res = match refusal.status() {
        StatusCode::SERVICE_UNAVAILABLE => plain(StatusCode::SERVICE_UNAVAILABLE, "service unavailable\n"),
        StatusCode::TOO_MANY_REQUESTS => plain(StatusCode::TOO_MANY_REQUESTS, "too many failed logins\n"),
        _ => plain(StatusCode::UNAUTHORIZED, "unauthorized\n"),
    };
    let retry_after = match refusal {
        Refusal::TooManyFailures { retry_after_secs } => Some(retry_after_secs),
        Refusal::PasswordQueueFull => Some(1),
        _ => None,
    };
    if let Some(secs) = retry_after {
        res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    res
}

type UpgradeError = (StatusCode, &'static str, &'static str);

fn check_websocket_request<B>(req: &Request<B>) -> Result<(), UpgradeError> {
    let headers = req.headers();
    let has_token = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    if req.method() != http::Method::GET {
        return Err((StatusCode::METHOD_NOT_ALLOWED, "bad_method", "method not allowed\n"));
    }
    if !has_token(header::UPGRADE, "websocket") || !has_token(header::CONNECTION, "upgrade") {
        return Err((StatusCode::UPGRADE_REQUIRED, "not_websocket", "a WebSocket upgrade is required\n"));
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION).map(|v| v.as_bytes()) != Some(b"13") {
        return Err((StatusCode::UPGRADE_REQUIRED, "websocket_version", "WebSocket version 13 is required\n"));
    }
    if headers.get(header::SEC_WEBSOCKET_KEY).is_none() {
        return Err((StatusCode::BAD_REQUEST, "no_websocket_key", "missing Sec-WebSocket-Key\n"));
    }
    if !has_token(header::SEC_WEBSOCKET_PROTOCOL, SUBPROTOCOL) {
        return Err((StatusCode::BAD_REQUEST, "subprotocol", "subprotocol ocpp2.0.1 is required\n"));
    }
    Ok(())
}

/// `/ocpp/{stationId}` with a percent-decoded id of RFC 3986 unreserved characters.
pub fn station_id_from_path(path: &str) -> Option<String> {
    let raw = path.strip_prefix("/ocpp/")?;
    let id = percent_decode(raw)?;
    valid_station_id(&id).then_some(id)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn station_ids_from_paths() {
        assert_eq!(station_id_from_path("/ocpp/CS001").as_deref(), Some("CS001"));
        assert_eq!(station_id_from_path("/ocpp/CS%2D01").as_deref(), Some("CS-01"));
        assert_eq!(station_id_from_path("/ocpp/"), None);
        assert_eq!(station_id_from_path("/ocpp/a/b"), None);
        assert_eq!(station_id_from_path("/ocpp/a%2Fb"), None);
        assert_eq!(station_id_from_path("/ocpp/a:b"), None);
        assert_eq!(station_id_from_path("/ocpp/%zz"), None);
        assert_eq!(station_id_from_path("/other/CS001"), None);
        assert_eq!(station_id_from_path(&format!("/ocpp/{}", "x".repeat(49))), None);
        assert!(station_id_from_path(&format!("/ocpp/{}", "x".repeat(48))).is_some());
    }

    fn ws_request(protocol: Option<&str>) -> Request<()> {
        let mut b = Request::get("/ocpp/CS001")
            .header("upgrade", "websocket")
            .header("connection", "keep-alive, Upgrade")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
        if let Some(p) = protocol {
            b = b.header("sec-websocket-protocol", p);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn subprotocol_is_required() {
        assert!(check_websocket_request(&ws_request(Some("ocpp2.0.1"))).is_ok());
        assert!(check_websocket_request(&ws_request(Some("ocpp1.6, ocpp2.0.1"))).is_ok());
        assert_eq!(check_websocket_request(&ws_request(Some("ocpp1.6"))).unwrap_err().1, "subprotocol");
        assert_eq!(check_websocket_request(&ws_request(None)).unwrap_err().1, "subprotocol");
    }
}
