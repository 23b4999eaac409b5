//! Prometheus metrics, served at `/metrics` on the API listener.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FrameLabels {
    /// `in` (from the station) or `out`.
    pub direction: &'static str,
    /// OCPP action, or `-` for replies whose call is unknown and frames that could not be read.
    pub action: &'static str,
    /// `ok` or the CALLERROR code.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SecurityEventLabels {
    /// OCPP security event type, or `other`.
    pub r#type: &'static str,
    pub critical: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QuotaLabels {
    /// `rate` (over the station's bytes per second) or `message_size`.
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PasswordCheckLabels {
    /// `keyed` (one HMAC against a generated password's verifier) or `cached`
    /// (a remembered earlier success against a PBKDF2 hash).
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    pub action: &'static str,
}

/// Refusal reasons of the gateway's limits on unauthenticated peers, as counted in
/// `anchorpoint_ocpp_handshake_failures_total{reason}` (docs/security.md).
pub mod gateway_refusals {
    /// The ClientHello offered only TLS 1.1 or older (answered `protocol_version`).
    pub const TLS_VERSION: &str = "tls_version";
    /// Nothing (or no complete first TLS record) within `client_hello_timeout_secs`.
    pub const CLIENT_HELLO_TIMEOUT: &str = "client_hello_timeout";
    /// The source address had `max_handshakes_per_source` handshakes in progress.
    pub const SOURCE_HANDSHAKE_LIMIT: &str = "source_handshake_limit";
    /// The station id or source address is backed off after failed password logins.
    pub const TOO_MANY_FAILURES: &str = "too_many_failures";
    /// The password-check queue was full.
    pub const PASSWORD_QUEUE_FULL: &str = "password_queue_full";
    /// No handshake permit within `handshake_queue_timeout_secs`.
    pub const HANDSHAKE_QUEUE_TIMEOUT: &str = "handshake_queue_timeout";
    /// The peer closed the connection while it waited for a handshake permit
    /// (found before any cryptography was spent on it).
    pub const CLOSED_WHILE_QUEUED: &str = "closed_while_queued";
}

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~33 s
    Histogram::new(exponential_buckets(0.0005, 3.0, 11))
}

pub struct Metrics {
    registry: Registry,
    pub connections: Gauge,
    pub connections_accepted: Counter,
    pub frames: Family<FrameLabels, Counter>,
    pub handshake_failures: Family<ReasonLabels, Counter>,
    pub call_latency: Family<ActionLabels, Histogram, fn() -> Histogram>,
    pub handler_latency: Family<ActionLabels, Histogram, fn() -> Histogram>,
    /// PBKDF2 verifications run for Basic auth, including the equal-time ones
    /// spent on unknown stations.
    pub password_checks: Counter,
    /// Basic-auth passwords checked without PBKDF2, by kind: `keyed` (every
    /// check of a keyed verifier, right or wrong) and `cached` (logins admitted
    /// by the success cache).
    pub password_fast_checks: Family<PasswordCheckLabels, Counter>,
    /// A04: security events stations reported, by type and criticality.
    pub security_events: Family<SecurityEventLabels, Counter>,
    /// API-listener connections the server closed, by reason (`connection_limit`,
    /// `header_read_timeout`, `idle_timeout`).
    pub api_connections_closed: Family<ReasonLabels, Counter>,
    /// Station messages refused rather than stored verbatim, by quota.
    pub quota_refusals: Family<QuotaLabels, Counter>,
    /// Verbatim station messages deleted to keep a station within its stored quota.
    pub verbatim_pruned: Counter,
    /// BootNotifications answered Pending because `max_concurrent_boots` were being handled.
    pub boots_deferred: Counter,
    /// BootNotifications being handled now (at most `max_concurrent_boots`).
    pub boots_in_progress: Gauge,
    /// Connections waiting for a handshake permit now.
    pub handshakes_queued: Gauge,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("anchorpoint");
        let connections = Gauge::default();
        let connections_accepted = Counter::default();
        let frames = Family::<FrameLabels, Counter>::default();
        let handshake_failures = Family::<ReasonLabels, Counter>::default();
        let call_latency = Family::<ActionLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let handler_latency = Family::<ActionLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let password_checks = Counter::default();
        let password_fast_checks = Family::<PasswordCheckLabels, Counter>::default();
        registry.register(
            "ocpp_password_fast_checks",
            "Basic-auth password checks without PBKDF2, by kind (keyed: HMAC verifier of a generated password; \
             cached: an earlier success remembered)",
            password_fast_checks.clone(),
        );
        let security_events = Family::<SecurityEventLabels, Counter>::default();
        registry.register(
            "ocpp_security_events",
            "Security events reported by stations (A04), by type and criticality",
            security_events.clone(),
        );
        registry.register(
            "ocpp_password_checks",
            "PBKDF2 password verifications (Basic auth, including equal-time checks for unknown stations)",
            password_checks.clone(),
        );
        let quota_refusals = Family::<QuotaLabels, Counter>::default();
        registry.register(
            "ocpp_quota_refusals",
            "Station messages refused instead of stored verbatim, by quota (rate, message_size)",
            quota_refusals.clone(),
        );
        let verbatim_pruned = Counter::default();
        registry.register(
            "ocpp_verbatim_prunes",
            "Times a station's oldest verbatim messages were deleted to keep it within its stored quota",
            verbatim_pruned.clone(),
        );
        let boots_deferred = Counter::default();
        registry.register(
            "ocpp_boots_deferred",
            "BootNotifications answered Pending with a retry interval because max_concurrent_boots were being handled",
            boots_deferred.clone(),
        );
        let boots_in_progress = Gauge::default();
        registry.register(
            "ocpp_boots_in_progress",
            "BootNotifications being handled now (at most max_concurrent_boots)",
            boots_in_progress.clone(),
        );
        let handshakes_queued = Gauge::default();
        registry.register(
            "ocpp_handshakes_queued",
            "Connections that sent their first record and wait for a handshake permit (max_concurrent_handshakes)",
            handshakes_queued.clone(),
        );
        registry.register("ocpp_connections", "Open OCPP WebSocket sessions", connections.clone());
        registry.register("ocpp_connections_accepted", "OCPP sessions established", connections_accepted.clone());
        registry.register("ocpp_frames", "OCPP frames by direction, action and result", frames.clone());
        registry.register(
            "ocpp_handshake_failures",
            "Refused TLS handshakes and WebSocket upgrades by reason",
            handshake_failures.clone(),
        );
        registry.register("ocpp_call_duration_seconds", "Round trip of CSMS-initiated calls", call_latency.clone());
        registry.register(
            "ocpp_handler_duration_seconds",
            "Time to handle and persist a station's call",
            handler_latency.clone(),
        );
        let api_connections_closed = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "api_connections_closed",
            "API listener connections closed by the server: over the cap, header too slow, idle",
            api_connections_closed.clone(),
        );
        Metrics {
            api_connections_closed,
            registry,
            connections,
            connections_accepted,
            frames,
            handshake_failures,
            call_latency,
            handler_latency,
            password_checks,
            password_fast_checks,
            security_events,
            quota_refusals,
            verbatim_pruned,
            boots_deferred,
            boots_in_progress,
            handshakes_queued,
        }
    }

    pub fn password_fast_check(&self, kind: &'static str) {
        self.password_fast_checks.get_or_create(&PasswordCheckLabels { kind }).inc();
    }

    pub fn handshake_failed(&self, reason: &'static str) {
        self.handshake_failures.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub fn api_connection_closed(&self, reason: &'static str) {
        self.api_connections_closed.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub fn security_event(&self, kind: &'static str, critical: bool) {
        let critical = if critical { "true" } else { "false" };
        self.security_events.get_or_create(&SecurityEventLabels { r#type: kind, critical }).inc();
    }

    pub fn quota_refused(&self, kind: &'static str) {
        self.quota_refusals.get_or_create(&QuotaLabels { kind }).inc();
    }

    pub fn frame(&self, direction: &'static str, action: &'static str, result: &'static str) {
        self.frames.get_or_create(&FrameLabels { direction, action, result }).inc();
    }

    /// Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn security_events_are_counted_by_type_and_criticality() {
        let m = super::Metrics::new();
        m.security_event("TamperDetectionActivated", true);
        m.security_event("TamperDetectionActivated", true);
        m.security_event("other", false);
        let text = m.encode();
        assert!(
            text.contains(
                r#"anchorpoint_ocpp_security_events_total{type="TamperDetectionActivated",critical="true"} 2"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"anchorpoint_ocpp_security_events_total{type="other",critical="false"} 1"#), "{text}");
    }
}
