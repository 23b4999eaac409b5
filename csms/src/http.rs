//! The API listener: health, readiness, metrics, the public CRL and OCSP
//! endpoints, and the REST API (`api` crate); and the accept loop that bounds
//! its connections, since the CRL and OCSP URLs make it face the internet.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use dashmap::DashMap;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::gateway::limits::source_key;
use crate::metrics::Metrics;
use crate::runtime::Node;

pub fn router(node: Arc<Node>, auth: Arc<api::auth::Authenticator>) -> Router {
    let service = Arc::new(crate::rest::RestService::new(node.clone()));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(authorized_metrics))
        .with_state((node.clone(), auth.clone()))
        .merge(crate::revocation::router(node))
        .merge(api::router(service, auth, &command_schemas()))
}

/// The listener of its own for `/metrics` (`metrics_addr`): no token, meant
/// for a private network.
pub fn metrics_router(node: Arc<Node>) -> Router {
    Router::new().route("/metrics", get(metrics)).with_state(node)
}

/// Bounds on one HTTP listener's connections.
#[derive(Debug, Clone, Copy)]
pub struct ListenerLimits {
    /// Connections open at once; one more is closed at accept.
    pub max_connections: usize,
    /// From connection start or the previous response to a complete request header.
    pub header_read_timeout: Duration,
    /// Without a byte read or written for this long, the connection is closed.
    pub idle_timeout: Duration,
    /// From a complete request header to the end of its body; a slower body
    /// is answered 408 and its connection closed (a trickle of bytes resets
    /// `idle_timeout`, not this).
    pub body_read_timeout: Duration,
    /// Connections open at once from one source (an IPv6 /64, an IPv4-mapped
    /// address as IPv4); one more is closed at accept.
    pub max_connections_per_source: usize,
    /// Whether `max_connections_per_source` applies to loopback sources too.
    pub limit_loopback: bool,
}

/// The largest body the body deadline buffers: the largest limit a route
/// reads (the REST API's; OCSP requests are held to less by their own route).
pub const MAX_BUFFERED_BODY: usize = api::extract::MAX_BODY_BYTES;

/// Serves `router` on `listener` until it fails: HTTP/1.1, at most
/// `limits.max_connections` at once and `limits.max_connections_per_source`
/// from one source, each closed when its header or a request's body is too
/// slow or when it stays idle (counted in `anchorpoint_api_connections_closed_total`).
pub async fn serve(listener: TcpListener, router: Router, limits: ListenerLimits, metrics: Arc<Metrics>) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let sources = SourceConnections::new(limits.max_connections_per_source, limits.limit_loopback);
    let deadline = BodyDeadline { timeout: limits.body_read_timeout, metrics: metrics.clone() };
    let router = router.layer(axum::middleware::from_fn_with_state(deadline, body_deadline));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "API accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // Counted, then closed at once (its descriptor is back before the
            // next accept): whoever sees the close also sees the count.
            metrics.api_connection_closed("connection_limit");
            drop(tcp);
            continue;
        };
        let Some(slot) = sources.enter(peer.ip()) else {
            metrics.api_connection_closed("source_connection_limit");
            drop(tcp);
            continue;
        };
        let service = TowerToHyperService::new(router.clone());
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _slot = slot;
            let activity = Arc::new(Activity::new());
            let io = TokioIo::new(Tracked { inner: tcp, activity: activity.clone() });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .serve_connection(io, service);
            tokio::select! {
                result = conn => {
                    if let Err(e) = result {
                        if e.is_timeout() {
                            metrics.api_connection_closed("header_read_timeout");
                        }
                        tracing::debug!(%peer, error = %e, "API connection ended");
                    }
                }
                () = activity.idle_for(limits.idle_timeout) => {
                    metrics.api_connection_closed("idle_timeout");
                    tracing::debug!(%peer, "API connection idle: closed");
                }
            }
        });
    }
}

/// What the body-deadline middleware needs.
#[derive(Clone)]
struct BodyDeadline {
    timeout: Duration,
    metrics: Arc<Metrics>,
}

/// Buffers a request's body, which must arrive whole within the deadline of
/// its header having been read: a slower one is answered 408 and its
/// connection closed. Only the receipt of the body is timed, not the handler
/// (a command waits for its station, an event stream stays open).
async fn body_deadline(State(deadline): State<BodyDeadline>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    if body.is_end_stream() {
        return next.run(Request::from_parts(parts, body)).await;
    }
    if body.size_hint().lower() > MAX_BUFFERED_BODY as u64 {
        return body_too_large();
    }
    let limited = http_body_util::Limited::new(body, MAX_BUFFERED_BODY);
    match tokio::time::timeout(deadline.timeout, limited.collect()).await {
        Ok(Ok(collected)) => next.run(Request::from_parts(parts, Body::from(collected.to_bytes()))).await,
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => body_too_large(),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "API request body could not be read");
            closing(StatusCode::BAD_REQUEST, "the request body could not be read\n".to_owned())
        }
        Err(_) => {
            deadline.metrics.api_connection_closed("body_read_timeout");
            let secs = deadline.timeout.as_secs();
            closing(StatusCode::REQUEST_TIMEOUT, format!("the request body did not arrive within {secs} s\n"))
        }
    }
}

fn body_too_large() -> Response {
    let detail = format!("the body exceeds {MAX_BUFFERED_BODY} bytes");
    let mut response = api::problem::Problem::new(api::problem::Kind::PayloadTooLarge, detail).into_response();
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A plain-text answer after which the connection is closed.
fn closing(status: StatusCode, text: String) -> Response {
    (status, [(header::CONNECTION, HeaderValue::from_static("close"))], text).into_response()
}

/// API connections open per source, the source being an IPv4 address or an
/// IPv6 /64 (one host's usual share). Entries go when their count drops to 0.
struct SourceConnections {
    limit: usize,
    limit_loopback: bool,
    open: Arc<DashMap<IpAddr, usize>>,
}

/// One open connection of a source; released on drop.
struct SourceSlot {
    key: IpAddr,
    open: Arc<DashMap<IpAddr, usize>>,
}

impl SourceConnections {
    fn new(limit: usize, limit_loopback: bool) -> Self {
        SourceConnections { limit: limit.max(1), limit_loopback, open: Arc::new(DashMap::new()) }
    }

    /// A slot for one more connection from `ip`, `Some(None)` for an unlimited
    /// loopback source, or `None` when the source has its share.
    fn enter(&self, ip: IpAddr) -> Option<Option<SourceSlot>> {
        let key = source_key(ip);
        if key.is_loopback() && !self.limit_loopback {
            return Some(None);
        }
        let mut n = self.open.entry(key).or_insert(0);
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        drop(n);
        Some(Some(SourceSlot { key, open: self.open.clone() }))
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        if let dashmap::Entry::Occupied(mut e) = self.open.entry(self.key) {
            *e.get_mut() = e.get().saturating_sub(1);
            if *e.get() == 0 {
                e.remove();
            }
        }
    }
}

/// When a connection last read or wrote a byte, as milliseconds since its start.
struct Activity {
    start: tokio::time::Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity { start: tokio::time::Instant::now(), last_ms: AtomicU64::new(0) }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Completes once nothing was read or written for `idle`.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let last = self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            if last.elapsed() >= idle {
                return;
            }
            tokio::time::sleep_until(last + idle).await;
        }
    }
}

/// A TCP stream that records its activity.
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        result
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
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
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// How many API connections fit: `configured`, lowered so that the descriptor
/// limit keeps `reserve` free for the OCPP listener after what is open
/// (`open`), the database pool and the metrics listener (`others`).
/// `None` when the limit leaves no room at all.
pub fn connection_cap(
    configured: usize,
    nofile: Option<u64>,
    open: usize,
    others: usize,
    reserve: usize,
) -> Option<usize> {
    let Some(limit) = nofile else { return Some(configured) };
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    // One more for the accept of a connection that is then closed over the cap.
    let free = limit.checked_sub(open)?.checked_sub(others)?.checked_sub(reserve)?.checked_sub(1)?;
    (free > 0).then_some(free.min(configured))
}

/// The soft RLIMIT_NOFILE and the descriptors open now, where the system says
/// (`/proc` on Linux); `(None, 0)` elsewhere or when unlimited.
pub fn descriptor_usage() -> (Option<u64>, usize) {
    let limit = std::fs::read_to_string("/proc/self/limits").ok().and_then(|text| {
        let line = text.lines().find(|l| l.starts_with("Max open files"))?;
        line.trim_start_matches("Max open files").split_whitespace().next()?.parse::<u64>().ok()
    });
    let open = std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0);
    (limit, open)
}

/// The OCPP request and response schemas of the API's typed commands.
pub fn command_schemas() -> api::CommandSchemas {
    use ocpp::v201::*;
    use utoipa::ToSchema;
    fn add<Req: ToSchema, Res: ToSchema>(c: &mut api::CommandSchemas, action: &str) {
        c.components.push((Req::name().into_owned(), Req::schema()));
        Req::schemas(&mut c.components);
        c.components.push((Res::name().into_owned(), Res::schema()));
        Res::schemas(&mut c.components);
        c.actions.insert(action.to_owned(), (Req::name().into_owned(), Res::name().into_owned()));
    }
    let mut c = api::CommandSchemas::default();
    add::<ResetRequest, ResetResponse>(&mut c, "Reset");
    add::<TriggerMessageRequest, TriggerMessageResponse>(&mut c, "TriggerMessage");
    add::<GetVariablesRequest, GetVariablesResponse>(&mut c, "GetVariables");
    add::<SetVariablesRequest, SetVariablesResponse>(&mut c, "SetVariables");
    add::<ChangeAvailabilityRequest, ChangeAvailabilityResponse>(&mut c, "ChangeAvailability");
    add::<RequestStartTransactionRequest, RequestStartTransactionResponse>(&mut c, "RequestStartTransaction");
    add::<RequestStopTransactionRequest, RequestStopTransactionResponse>(&mut c, "RequestStopTransaction");
    add::<UnlockConnectorRequest, UnlockConnectorResponse>(&mut c, "UnlockConnector");
    c
}

/// Liveness: the process answers.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: listeners bound and the database reachable.
async fn readyz(State((app, _)): State<(Arc<Node>, Arc<api::auth::Authenticator>)>) -> impl IntoResponse {
    if !app.ready.load(Ordering::Acquire) {
        return (StatusCode::SERVICE_UNAVAILABLE, "starting\n");
    }
    match app.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready\n"),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check: database unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable\n")
        }
    }
}

/// `/metrics` on the API listener: its refusal counters tell which station
/// ids exist, so only a platform-admin token reads them.
async fn authorized_metrics(
    State((app, auth)): State<(Arc<Node>, Arc<api::auth::Authenticator>)>,
    headers: HeaderMap,
) -> Response {
    let authorization = headers.get(header::AUTHORIZATION).map(|v| v.to_str().unwrap_or(""));
    match auth.principal(authorization).and_then(|p| p.platform_admin()) {
        Ok(()) => metrics(State(app)).await.into_response(),
        Err(problem) => problem.into_response(),
    }
}

async fn metrics(State(app): State<Arc<Node>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], app.metrics.encode())
}

#[cfg(test)]
mod tests {
    use super::{SourceConnections, connection_cap, source_key};

    #[test]
    fn sources_are_counted_by_ipv4_or_ipv6_64_and_forgotten_at_zero() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        assert_eq!(source_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(source_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        let sources = SourceConnections::new(2, false);
        let a = sources.enter(ip("2001:db8:1:2::1")).unwrap();
        let b = sources.enter(ip("2001:db8:1:2:ffff::9")).unwrap();
        assert!(sources.enter(ip("2001:db8:1:2::3")).is_none(), "a third from the same /64");
        assert!(sources.enter(ip("2001:db8:1:3::1")).unwrap().is_some(), "another /64");
        // Loopback is not limited unless configured.
        let local: Vec<_> = (0..5).map(|_| sources.enter(ip("127.0.0.2")).unwrap()).collect();
        assert!(local.iter().all(Option::is_none));
        drop((a, b));
        assert!(sources.open.is_empty(), "entries at 0 are removed");
    }

    #[test]
    fn connection_cap_keeps_the_reserve() {
        // No known limit: as configured.
        assert_eq!(connection_cap(1024, None, 30, 16, 128), Some(1024));
        // 400 descriptors, 30 open, 16 for the database, 128 for OCPP, 1 for refusing.
        assert_eq!(connection_cap(1024, Some(400), 30, 16, 128), Some(225));
        assert_eq!(connection_cap(100, Some(400), 30, 16, 128), Some(100));
        // Nothing left: refused at start-up.
        assert_eq!(connection_cap(1024, Some(175), 30, 16, 128), None);
        assert_eq!(connection_cap(1024, Some(100), 30, 16, 128), None);
    }
}
