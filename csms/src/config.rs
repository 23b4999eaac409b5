//! Server configuration: built-in defaults, then a TOML file, then
//! `ANCHORPOINT_*` environment variables, then command-line flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the database, keys and PEM files live.
    pub data_dir: PathBuf,
    /// TLS listener for OCPP (security profiles 2 and 3).
    pub ocpp_addr: SocketAddr,
    /// Plain WebSocket listener for security profile 1; off unless set.
    pub ocpp_plain_addr: Option<SocketAddr>,
    /// HTTP listener for health, metrics and the REST API.
    pub api_addr: SocketAddr,
    /// Base URL of the API listener as stations and relying parties reach it; the
    /// CRL and OCSP URLs in issued certificates live under it. Default
    /// `http://<first server name>:<api port>`.
    pub public_url: Option<String>,
    /// Signature algorithm of API tokens: HS256 (secret in `jwt.secret`),
    /// ES256 or EdDSA (key pair generated once, sealed in the database).
    pub jwt_algorithm: api::auth::Algorithm,
    /// `sqlite://PATH` or `postgres://...`; defaults to SQLite in the data dir.
    pub database_url: Option<String>,
    pub database_max_connections: u32,
    /// Names the server certificate is issued for (CN = the first, A00.FR.510).
    pub server_names: Vec<String>,
    /// Heartbeat interval given to accepted stations, seconds.
    pub heartbeat_interval_secs: u32,
    /// Retry interval given to pending or rejected stations, seconds.
    pub boot_retry_interval_secs: u32,
    /// BootNotifications handled at once, process-wide; one more arriving is
    /// answered Pending (B02) with about `overload_boot_interval_secs`, and
    /// nothing is stored for it: boots cannot pile up without bound when the
    /// database or the CPU falls behind. A last resort: a deferred station
    /// comes back only after seconds.
    pub max_concurrent_boots: usize,
    /// The interval of an overload Pending answer, seconds; each answer takes
    /// a random value between half and one and a half times it, so deferred
    /// stations do not come back at once.
    pub overload_boot_interval_secs: u32,
    /// How long a CSMS-initiated call waits for the station's answer.
    pub call_timeout_secs: u64,
    /// A session that receives nothing (not even a WebSocket ping) for this many
    /// seconds is closed: the station is gone or the network half-open.
    pub idle_timeout_secs: u64,
    /// Largest accepted WebSocket message (and frame), bytes.
    pub max_message_bytes: usize,
    /// Open connections beyond this are refused.
    pub max_connections: usize,
    /// TLS and HTTP upgrade must complete within this many seconds of the
    /// connection's handshake permit.
    pub handshake_timeout_secs: u64,
    /// Concurrent TLS handshakes and upgrades; bounds CPU spent on unauthenticated peers.
    pub max_concurrent_handshakes: usize,
    /// A connection that sent its first record waits at most this long for a
    /// handshake permit (`handshake_queue_timeout`); `handshake_timeout_secs`
    /// then runs from the permit on.
    pub handshake_queue_timeout_secs: u64,
    /// PBKDF2-HMAC-SHA256 iterations for new Basic-auth passwords.
    pub password_hash_iterations: u32,
    /// PKCS#11 module (e.g. /usr/lib/softhsm/libsofthsm2.so): CA keys created
    /// from then on are generated in `pkcs11_token` and never leave it.
    pub pkcs11_module: Option<PathBuf>,
    /// Label of the token in that module.
    pub pkcs11_token: Option<String>,
    /// User PIN of the token (prefer ANCHORPOINT_PKCS11_PIN to a file).
    pub pkcs11_pin: Option<String>,
    /// Certificates expiring within this many days are renewed (A02) without an
    /// operator, each at a moment spread over the first half of the window.
    pub renewal_window_days: u32,
    /// After a station first connects with a newer certificate, its older ones
    /// are revoked (reason superseded) this many seconds later; 0: at once.
    pub superseded_grace_secs: u64,
    /// Validity of certificates issued to stations, days.
    pub station_certificate_days: u32,
    /// OCSP answers this process signs per second at most (the public OCSP
    /// responder needs no token). Beyond it, an answer for an unchanged state
    /// is served again without the request's nonce, and a request never seen
    /// is answered tryLater.
    pub ocsp_signatures_per_second: u32,

    // Gateway limits on unauthenticated peers (docs/security.md, "Connection limits").
    /// A connection must send its first TLS record (the ClientHello) or, on the
    /// plain listener, its first bytes within this many seconds; until then it
    /// holds no handshake permit.
    pub client_hello_timeout_secs: u64,
    /// Handshakes in progress (accept to upgrade) from one source address.
    pub max_handshakes_per_source: usize,
    /// Whether `max_handshakes_per_source` applies to loopback sources too (off:
    /// a TLS-passthrough proxy on the host, the tests and the load generator).
    pub limit_loopback_sources: bool,
    /// Failed password logins for one station id within the window before
    /// further attempts are refused (`too_many_failures`) without a check.
    pub login_failures_per_station: u32,
    /// The same, per source address, whatever station ids it tries.
    pub login_failures_per_source: u32,
    /// Failures older than this many seconds are forgotten.
    pub login_failure_window_secs: u64,
    /// First back-off, seconds; it doubles with each further failure.
    pub login_backoff_initial_secs: u64,
    /// Longest back-off, seconds.
    pub login_backoff_max_secs: u64,
    /// Station ids (and, separately, source addresses) remembered at most.
    pub login_failure_table_entries: usize,
    /// Password checks running at once (default: the number of cores).
    pub password_check_concurrency: Option<usize>,
    /// Password checks waiting behind those; beyond it a login is refused at
    /// once (503, `password_queue_full`).
    pub password_check_queue: usize,
    /// Successful slow (PBKDF2) password logins remembered, one per station id,
    /// so a reconnect with the same password costs one HMAC; 0: none.
    pub password_cache_entries: usize,
    /// API listener (it faces the internet: CRL and OCSP URLs point at it):
    /// connections open at once; one more is closed at accept.
    pub api_max_connections: usize,
    /// A request's header must arrive within this many seconds of the connection
    /// opening or of the previous response (silent and slowloris peers).
    pub api_header_read_timeout_secs: u64,
    /// An API connection on which nothing is read or written for this many
    /// seconds is closed (a peer that stops reading, a stalled body). Above
    /// `call_timeout_secs`, which a command route may wait for its station.
    pub api_idle_timeout_secs: u64,
    /// File descriptors kept free of API connections, so that the OCPP
    /// listener always accepts: the API's cap is lowered to fit
    /// RLIMIT_NOFILE less what is open at start-up, the database pool and this.
    pub api_descriptor_reserve: usize,
    /// A request's whole body must arrive within this many seconds of its
    /// header, or it is answered 408 and the connection closed (a body
    /// trickled byte by byte, which `api_idle_timeout_secs` does not catch).
    pub api_body_read_timeout_secs: u64,
    /// API connections open at once from one source address (an IPv6 /64);
    /// one more is closed at accept, so one host cannot take the whole
    /// `api_max_connections`.
    pub api_max_connections_per_source: usize,
    /// Whether `api_max_connections_per_source` applies to loopback sources
    /// too (off: a reverse proxy on the host, the tests and tools).
    pub api_limit_loopback_connections: bool,
    /// Serve `/metrics` without a token on this address of its own (a private
    /// network); off unless set. On the API listener `/metrics` always needs
    /// a platform-admin token.
    pub metrics_addr: Option<SocketAddr>,
    /// Messages kept verbatim (DataTransfer, NotifyReport, NotifyEvent,
    /// MeterValues, ...): each station may have this many payload bytes stored
    /// per second on average ...
    pub verbatim_bytes_per_second: u64,
    /// ... in bursts of at most this many bytes (token bucket per station).
    pub verbatim_burst_bytes: u64,
    /// A message larger than this is refused rather than stored verbatim.
    pub verbatim_max_message_bytes: u64,
    /// Payload bytes kept per station; beyond it the station's oldest messages
    /// are deleted as new ones arrive.
    pub verbatim_max_stored_bytes: u64,
    /// BootNotifications kept per station (each up to `max_message_bytes`,
    /// verbatim); older ones are deleted as new ones arrive.
    pub boot_history_per_station: u32,
    /// This node's id, stable across restarts (1-64 of `A-Z a-z 0-9 . _ -`):
    /// the claims on certificate requests record it, and a process starting
    /// under it releases the claims its earlier run left. Default: generated
    /// once and kept in `node.id` in the data directory. Two processes running
    /// at once must not share one.
    pub node_id: Option<String>,
}

/// Upper bound of `max_concurrent_boots`, far beyond any useful value.
const MAX_CONCURRENT_BOOTS: usize = 1_000_000;

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("data"),
            ocpp_addr: SocketAddr::from(([0, 0, 0, 0], 8443)),
            ocpp_plain_addr: None,
            api_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            jwt_algorithm: api::auth::Algorithm::HS256,
            public_url: None,
            database_url: None,
            database_max_connections: 16,
            server_names: vec!["localhost".into(), "127.0.0.1".into()],
            heartbeat_interval_secs: 300,
            boot_retry_interval_secs: 60,
            max_concurrent_boots: 2048,
            overload_boot_interval_secs: 10,
            call_timeout_secs: 30,
            // Two missed heartbeats at the default interval, plus slack.
            idle_timeout_secs: 660,
            max_message_bytes: 64 * 1024,
            max_connections: 100_000,
            handshake_timeout_secs: 10,
            max_concurrent_handshakes: 256,
            handshake_queue_timeout_secs: 30,
            password_hash_iterations: 100_000,
            station_certificate_days: 365,
            ocsp_signatures_per_second: 100,
            superseded_grace_secs: 300,
            renewal_window_days: 30,
            pkcs11_module: None,
            pkcs11_token: None,
            pkcs11_pin: None,
            client_hello_timeout_secs: 3,
            max_handshakes_per_source: 32,
            limit_loopback_sources: false,
            login_failures_per_station: 5,
            login_failures_per_source: 20,
            login_failure_window_secs: 900,
            login_backoff_initial_secs: 2,
            login_backoff_max_secs: 300,
            login_failure_table_entries: 10_000,
            password_check_concurrency: None,
            password_check_queue: 32,
            password_cache_entries: 100_000,
            api_max_connections: 1024,
            api_header_read_timeout_secs: 10,
            api_idle_timeout_secs: 60,
            api_descriptor_reserve: 128,
            api_body_read_timeout_secs: 10,
            api_max_connections_per_source: 64,
            api_limit_loopback_connections: false,
            metrics_addr: None,
            verbatim_bytes_per_second: 16 * 1024,
            verbatim_burst_bytes: 512 * 1024,
            verbatim_max_message_bytes: 64 * 1024,
            verbatim_max_stored_bytes: 16 * 1024 * 1024,
            boot_history_per_station: 100,
            node_id: None,
        }
    }
}

/// A step of the certificate lifecycle (issuing, delivering) claimed this long
/// ago by a process that then died is taken over by another. Longer than any
/// call timeout, so a claim still waiting for its station is never taken.
pub const CLAIM_STALE_SECS: u64 = 120;

/// What a node id may be.
pub const NODE_ID_RULE: &str = "1 to 64 characters of A-Z, a-z, 0-9, '.', '_' and '-'";

/// Whether `id` may be a node id ([`NODE_ID_RULE`]).
pub fn valid_node_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// An environment variable that does not hold what it should.
fn bad_env(name: &str, e: impl std::fmt::Display) -> Error {
    Error::Config(format!("{name}: {e}"))
}

impl Config {
    /// Reads `file` (if given) over the defaults, then applies the environment.
    pub fn load(file: Option<&Path>) -> Result<Config> {
        let mut cfg = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| Error::io(format!("reading config file {}", path.display()), e))?;
                toml::from_str(&text)
                    .map_err(|e| Error::Config(format!("parsing config file {}: {e}", path.display())))?
            }
            None => Config::default(),
        };
        cfg.apply_env(|k| std::env::var(k).ok())?;
        Ok(cfg)
    }

    /// Environment overrides, `ANCHORPOINT_<KEY>` for the settings that have one;
    /// the table in docs/operations.md names each (a test holds the two together).
    /// `ANCHORPOINT_SERVER_NAMES` is comma-separated.
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<()> {
        if let Some(v) = var("ANCHORPOINT_DATA_DIR") {
            self.data_dir = PathBuf::from(v);
        }
        if let Some(v) = var("ANCHORPOINT_OCPP_ADDR") {
            self.ocpp_addr = v.parse().map_err(|e| bad_env("ANCHORPOINT_OCPP_ADDR", e))?;
        }
        if let Some(v) = var("ANCHORPOINT_OCPP_PLAIN_ADDR") {
            self.ocpp_plain_addr = Some(v.parse().map_err(|e| bad_env("ANCHORPOINT_OCPP_PLAIN_ADDR", e))?);
        }
        if let Some(v) = var("ANCHORPOINT_API_ADDR") {
            self.api_addr = v.parse().map_err(|e| bad_env("ANCHORPOINT_API_ADDR", e))?;
        }
        if let Some(v) = var("ANCHORPOINT_PKCS11_MODULE") {
            self.pkcs11_module = Some(PathBuf::from(v));
        }
        if let Some(v) = var("ANCHORPOINT_PKCS11_TOKEN") {
            self.pkcs11_token = Some(v);
        }
        if let Some(v) = var("ANCHORPOINT_PKCS11_PIN") {
            self.pkcs11_pin = Some(v);
        }
        if let Some(v) = var("ANCHORPOINT_SUPERSEDED_GRACE_SECS") {
            self.superseded_grace_secs = v.parse().map_err(|e| bad_env("ANCHORPOINT_SUPERSEDED_GRACE_SECS", e))?;
        }
        if let Some(v) = var("ANCHORPOINT_PUBLIC_URL") {
            self.public_url = Some(v);
        }
        if let Some(v) = var("ANCHORPOINT_JWT_ALGORITHM") {
            self.jwt_algorithm = v.parse().map_err(|e: String| bad_env("ANCHORPOINT_JWT_ALGORITHM", e))?;
        }
        if let Some(v) = var("ANCHORPOINT_DATABASE_URL") {
            self.database_url = Some(v);
        }
        if let Some(v) = var("ANCHORPOINT_NODE_ID") {
            self.node_id = Some(v);
        }
        if let Some(v) = var("ANCHORPOINT_SERVER_NAMES") {
            self.server_names = v.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect();
        }
        self.apply_gateway_limits_env(&var)?;
        self.apply_api_listener_env(&var)?;
        self.apply_verbatim_env(&var)
    }

    /// The gateway-limit part of [`Config::apply_env`].
    fn apply_gateway_limits_env(&mut self, var: &impl Fn(&str) -> Option<String>) -> Result<()> {
        fn set<T: std::str::FromStr>(var: &impl Fn(&str) -> Option<String>, name: &str, field: &mut T) -> Result<()>
        where
            T::Err: std::fmt::Display,
        {
            if let Some(v) = var(name) {
                *field = v.trim().parse().map_err(|e| bad_env(name, e))?;
            }
            Ok(())
        }
        set(var, "ANCHORPOINT_CLIENT_HELLO_TIMEOUT_SECS", &mut self.client_hello_timeout_secs)?;
        set(var, "ANCHORPOINT_MAX_HANDSHAKES_PER_SOURCE", &mut self.max_handshakes_per_source)?;
        set(var, "ANCHORPOINT_HANDSHAKE_QUEUE_TIMEOUT_SECS", &mut self.handshake_queue_timeout_secs)?;
        set(var, "ANCHORPOINT_LIMIT_LOOPBACK_SOURCES", &mut self.limit_loopback_sources)?;
        set(var, "ANCHORPOINT_LOGIN_FAILURES_PER_STATION", &mut self.login_failures_per_station)?;
        set(var, "ANCHORPOINT_LOGIN_FAILURES_PER_SOURCE", &mut self.login_failures_per_source)?;
        set(var, "ANCHORPOINT_LOGIN_FAILURE_WINDOW_SECS", &mut self.login_failure_window_secs)?;
        set(var, "ANCHORPOINT_LOGIN_BACKOFF_INITIAL_SECS", &mut self.login_backoff_initial_secs)?;
        set(var, "ANCHORPOINT_LOGIN_BACKOFF_MAX_SECS", &mut self.login_backoff_max_secs)?;
        set(var, "ANCHORPOINT_LOGIN_FAILURE_TABLE_ENTRIES", &mut self.login_failure_table_entries)?;
        set(var, "ANCHORPOINT_PASSWORD_CHECK_QUEUE", &mut self.password_check_queue)?;
        set(var, "ANCHORPOINT_PASSWORD_CACHE_ENTRIES", &mut self.password_cache_entries)?;
        if let Some(v) = var("ANCHORPOINT_PASSWORD_CHECK_CONCURRENCY") {
            let n: usize = v.trim().parse().map_err(|e| bad_env("ANCHORPOINT_PASSWORD_CHECK_CONCURRENCY", e))?;
            self.password_check_concurrency = Some(n);
        }
        Ok(())
    }

    /// The API-listener part of [`Config::apply_env`].
    fn apply_api_listener_env(&mut self, var: &impl Fn(&str) -> Option<String>) -> Result<()> {
        if let Some(v) = var("ANCHORPOINT_API_MAX_CONNECTIONS") {
            self.api_max_connections = v.parse().map_err(|e| bad_env("ANCHORPOINT_API_MAX_CONNECTIONS", e))?;
        }
        if let Some(v) = var("ANCHORPOINT_API_HEADER_READ_TIMEOUT_SECS") {
            self.api_header_read_timeout_secs =
                v.parse().map_err(|e| bad_env("ANCHORPOINT_API_HEADER_READ_TIMEOUT_SECS", e))?;
        }
        if let Some(v) = var("ANCHORPOINT_API_IDLE_TIMEOUT_SECS") {
            self.api_idle_timeout_secs = v.parse().map_err(|e| bad_env("ANCHORPOINT_API_IDLE_TIMEOUT_SECS", e))?;
        }
        if let Some(v) = var("ANCHORPOINT_API_DESCRIPTOR_RESERVE") {
            self.api_descriptor_reserve = v.parse().map_err(|e| bad_env("ANCHORPOINT_API_DESCRIPTOR_RESERVE", e))?;
        }
        if let Some(v) = var("ANCHORPOINT_API_BODY_READ_TIMEOUT_SECS") {
            self.api_body_read_timeout_secs =
                v.parse().map_err(|e| bad_env("ANCHORPOINT_API_BODY_READ_TIMEOUT_SECS", e))?;
        }
        if let Some(v) = var("ANCHORPOINT_API_MAX_CONNECTIONS_PER_SOURCE") {
            self.api_max_connections_per_source =
                v.parse().map_err(|e| bad_env("ANCHORPOINT_API_MAX_CONNECTIONS_PER_SOURCE", e))?;
        }
        if let Some(v) = var("ANCHORPOINT_API_LIMIT_LOOPBACK_CONNECTIONS") {
            self.api_limit_loopback_connections =
                v.trim().parse().map_err(|e| bad_env("ANCHORPOINT_API_LIMIT_LOOPBACK_CONNECTIONS", e))?;
        }
        if let Some(v) = var("ANCHORPOINT_METRICS_ADDR") {
            self.metrics_addr = Some(v.parse().map_err(|e| bad_env("ANCHORPOINT_METRICS_ADDR", e))?);
        }
        Ok(())
    }

    /// The verbatim-quota part of [`Config::apply_env`].
    fn apply_verbatim_env(&mut self, var: &impl Fn(&str) -> Option<String>) -> Result<()> {
        for (name, field) in [
            ("ANCHORPOINT_VERBATIM_BYTES_PER_SECOND", &mut self.verbatim_bytes_per_second),
            ("ANCHORPOINT_VERBATIM_BURST_BYTES", &mut self.verbatim_burst_bytes),
            ("ANCHORPOINT_VERBATIM_MAX_MESSAGE_BYTES", &mut self.verbatim_max_message_bytes),
            ("ANCHORPOINT_VERBATIM_MAX_STORED_BYTES", &mut self.verbatim_max_stored_bytes),
        ] {
            if let Some(v) = var(name) {
                *field = v.parse().map_err(|e| bad_env(name, e))?;
            }
        }
        if let Some(v) = var("ANCHORPOINT_BOOT_HISTORY_PER_STATION") {
            self.boot_history_per_station =
                v.parse().map_err(|e| bad_env("ANCHORPOINT_BOOT_HISTORY_PER_STATION", e))?;
        }
        if let Some(v) = var("ANCHORPOINT_MAX_CONCURRENT_BOOTS") {
            self.max_concurrent_boots = v.parse().map_err(|e| bad_env("ANCHORPOINT_MAX_CONCURRENT_BOOTS", e))?;
        }
        if let Some(v) = var("ANCHORPOINT_OVERLOAD_BOOT_INTERVAL_SECS") {
            self.overload_boot_interval_secs =
                v.parse().map_err(|e| bad_env("ANCHORPOINT_OVERLOAD_BOOT_INTERVAL_SECS", e))?;
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<()> {
        if self.server_names.is_empty() {
            return Err(Error::Config("server_names must name at least one host".into()));
        }
        if self.max_message_bytes < 1024 {
            return Err(Error::Config("max_message_bytes must be at least 1024".into()));
        }
        if !(1..=100_000).contains(&self.ocsp_signatures_per_second) {
            return Err(Error::Config("ocsp_signatures_per_second must be 1 to 100000".into()));
        }
        if self.call_timeout_secs >= CLAIM_STALE_SECS {
            return Err(Error::Config(format!(
                "call_timeout_secs must be below {CLAIM_STALE_SECS}: a certificate delivery still waiting for its \
                 station must not be taken over by another process"
            )));
        }
        if self.boot_history_per_station == 0 {
            return Err(Error::Config("boot_history_per_station must be at least 1".into()));
        }
        if self.verbatim_bytes_per_second == 0 {
            return Err(Error::Config("verbatim_bytes_per_second must be positive".into()));
        }
        // A message the limits allow must fit the bucket and the stored quota,
        // or it could never be kept.
        if self.verbatim_max_message_bytes > self.verbatim_burst_bytes
            || self.verbatim_max_message_bytes > self.verbatim_max_stored_bytes
        {
            return Err(Error::Config(
                "verbatim_max_message_bytes must not exceed verbatim_burst_bytes nor verbatim_max_stored_bytes".into(),
            ));
        }
        if let Some(id) = &self.node_id
            && !valid_node_id(id)
        {
            return Err(Error::Config(format!("node_id '{id}': {NODE_ID_RULE}")));
        }
        if self.heartbeat_interval_secs == 0 || self.boot_retry_interval_secs == 0 || self.idle_timeout_secs == 0 {
            return Err(Error::Config("intervals and timeouts must be positive".into()));
        }
        if self.idle_timeout_secs <= u64::from(self.heartbeat_interval_secs) {
            return Err(Error::Config(
                "idle_timeout_secs must exceed heartbeat_interval_secs, or healthy stations get disconnected".into(),
            ));
        }
        // B02.FR.06: a Pending station waits boot_retry_interval_secs between
        // BootNotifications and must not be cut off meanwhile.
        if self.idle_timeout_secs <= u64::from(self.boot_retry_interval_secs) {
            return Err(Error::Config(
                "idle_timeout_secs must exceed boot_retry_interval_secs, or Pending stations get disconnected".into(),
            ));
        }
        if !(1..=MAX_CONCURRENT_BOOTS).contains(&self.max_concurrent_boots) {
            return Err(Error::Config(format!(
                "max_concurrent_boots must be between 1 and {MAX_CONCURRENT_BOOTS}, got {}",
                self.max_concurrent_boots
            )));
        }
        if self.overload_boot_interval_secs == 0 {
            return Err(Error::Config("overload_boot_interval_secs must be at least 1".into()));
        }
        if self.idle_timeout_secs <= u64::from(self.overload_boot_interval_secs) * 3 / 2 {
            return Err(Error::Config(
                "idle_timeout_secs must exceed 1.5 x overload_boot_interval_secs, or deferred stations get disconnected"
                    .into(),
            ));
        }
        self.validate_gateway_limits()?;
        self.validate_api_listener()
    }

    fn validate_gateway_limits(&self) -> Result<()> {
        if self.client_hello_timeout_secs == 0 || self.client_hello_timeout_secs > self.handshake_timeout_secs {
            return Err(Error::Config("client_hello_timeout_secs must be between 1 and handshake_timeout_secs".into()));
        }
        if self.max_handshakes_per_source == 0 || self.password_check_concurrency == Some(0) {
            return Err(Error::Config(
                "max_handshakes_per_source and password_check_concurrency must be at least 1".into(),
            ));
        }
        if self.login_failures_per_station == 0 || self.login_failures_per_source == 0 {
            return Err(Error::Config(
                "login_failures_per_station and login_failures_per_source must be at least 1".into(),
            ));
        }
        if self.login_backoff_initial_secs == 0 || self.login_backoff_max_secs < self.login_backoff_initial_secs {
            return Err(Error::Config(
                "login_backoff_initial_secs must be at least 1 and at most login_backoff_max_secs".into(),
            ));
        }
        if self.login_failure_table_entries == 0 {
            return Err(Error::Config("login_failure_table_entries must be at least 1".into()));
        }
        Ok(())
    }

    fn validate_api_listener(&self) -> Result<()> {
        if self.api_max_connections == 0 {
            return Err(Error::Config("api_max_connections must be at least 1".into()));
        }
        if self.api_header_read_timeout_secs == 0 {
            return Err(Error::Config("api_header_read_timeout_secs must be positive".into()));
        }
        if self.api_body_read_timeout_secs == 0 {
            return Err(Error::Config("api_body_read_timeout_secs must be positive".into()));
        }
        if self.api_max_connections_per_source == 0 {
            return Err(Error::Config("api_max_connections_per_source must be at least 1".into()));
        }
        if self.api_idle_timeout_secs <= self.call_timeout_secs {
            return Err(Error::Config(
                "api_idle_timeout_secs must exceed call_timeout_secs, or a command waiting for its station is cut off"
                    .into(),
            ));
        }
        Ok(())
    }

    /// See [`Config::public_url`].
    pub fn public_url(&self) -> String {
        self.public_url.clone().unwrap_or_else(|| {
            let host = self.server_names.first().map(String::as_str).unwrap_or("localhost");
            format!("http://{host}:{}", self.api_addr.port())
        })
    }

    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| crate::store::Store::sqlite_url(&self.data_dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/operations.md lists every setting and every environment variable
    /// read here: a setting added without its line in the table fails this.
    #[test]
    fn operations_doc_lists_every_setting_and_variable() {
        let source = include_str!("config.rs");
        let doc = include_str!("../../docs/operations.md");
        let body = source.split("pub struct Config {").nth(1).and_then(|s| s.split("\n}\n").next()).unwrap();
        let fields: Vec<&str> =
            body.lines().filter_map(|l| l.trim().strip_prefix("pub ").and_then(|l| l.split(':').next())).collect();
        assert!(fields.len() > 20, "{fields:?}");
        for field in fields {
            assert!(doc.contains(&format!("`{field}`")), "docs/operations.md does not list the setting `{field}`");
        }
        // Every variable read here (in tests too): named in the doc, or its setting listed
        // in a row that names its variables as `ANCHORPOINT_` + the key in capitals.
        let vars: Vec<&str> = source
            .split("\"ANCHORPOINT_")
            .skip(1)
            .filter_map(|s| s.split('"').next())
            .filter(|v| !v.is_empty())
            .collect();
        assert!(vars.len() > 8, "{vars:?}");
        let by_convention = doc.contains("`ANCHORPOINT_` + the key in capitals");
        for v in vars {
            let named = doc.contains(&format!("`ANCHORPOINT_{v}`"));
            let key = format!("`{}`", v.to_lowercase());
            assert!(
                named || (by_convention && doc.contains(&key)),
                "docs/operations.md does not name `ANCHORPOINT_{v}` (nor list the setting {key})"
            );
        }
    }

    #[test]
    fn file_then_env_override() {
        let mut cfg: Config = toml::from_str("ocpp_addr = \"127.0.0.1:9000\"\nheartbeat_interval_secs = 30\n").unwrap();
        assert_eq!(cfg.ocpp_addr.port(), 9000);
        assert_eq!(cfg.heartbeat_interval_secs, 30);
        cfg.apply_env(|k| (k == "ANCHORPOINT_OCPP_ADDR").then(|| "127.0.0.1:9100".to_owned())).unwrap();
        assert_eq!(cfg.ocpp_addr.port(), 9100);
        assert_eq!(cfg.api_addr, Config::default().api_addr);
    }

    #[test]
    fn idle_timeout_must_exceed_heartbeat_interval() {
        let cfg = Config { heartbeat_interval_secs: 300, idle_timeout_secs: 300, ..Config::default() };
        assert!(cfg.validate().unwrap_err().to_string().contains("heartbeat_interval_secs"));
        let cfg = Config { boot_retry_interval_secs: 900, idle_timeout_secs: 800, ..Config::default() };
        assert!(cfg.validate().unwrap_err().to_string().contains("boot_retry_interval_secs"));
        assert!(Config::default().validate().is_ok());
    }

    #[test]
    fn boot_overload_settings_from_env_and_checked() {
        let mut cfg = Config::default();
        let env = |k: &str| match k {
            "ANCHORPOINT_MAX_CONCURRENT_BOOTS" => Some("3".to_owned()),
            "ANCHORPOINT_OVERLOAD_BOOT_INTERVAL_SECS" => Some("40".to_owned()),
            _ => None,
        };
        cfg.apply_env(env).unwrap();
        assert_eq!((cfg.max_concurrent_boots, cfg.overload_boot_interval_secs), (3, 40));
        assert!(cfg.validate().is_ok());
        for boots in [0, MAX_CONCURRENT_BOOTS + 1, usize::MAX] {
            let cfg = Config { max_concurrent_boots: boots, ..Config::default() };
            assert!(cfg.validate().unwrap_err().to_string().contains("max_concurrent_boots"), "{boots}");
        }
        let cfg = Config { overload_boot_interval_secs: 0, ..Config::default() };
        assert!(cfg.validate().unwrap_err().to_string().contains("overload_boot_interval_secs"));
        // Deferred stations wait up to 1.5 x the interval and must not be cut off.
        let cfg = Config { overload_boot_interval_secs: 440, idle_timeout_secs: 660, ..Config::default() };
        assert!(cfg.validate().unwrap_err().to_string().contains("overload_boot_interval_secs"));
        let err = Config::default().apply_env(|k| (k == "ANCHORPOINT_MAX_CONCURRENT_BOOTS").then(|| "many".into()));
        assert!(err.unwrap_err().to_string().contains("ANCHORPOINT_MAX_CONCURRENT_BOOTS"));
    }

    #[test]
    fn api_listener_limits_from_env_and_checked() {
        let mut cfg = Config::default();
        let env = |k: &str| match k {
            "ANCHORPOINT_API_MAX_CONNECTIONS" => Some("7".to_owned()),
            "ANCHORPOINT_API_HEADER_READ_TIMEOUT_SECS" => Some("3".to_owned()),
            "ANCHORPOINT_API_IDLE_TIMEOUT_SECS" => Some("45".to_owned()),
            "ANCHORPOINT_API_DESCRIPTOR_RESERVE" => Some("9".to_owned()),
            "ANCHORPOINT_API_BODY_READ_TIMEOUT_SECS" => Some("4".to_owned()),
            "ANCHORPOINT_API_MAX_CONNECTIONS_PER_SOURCE" => Some("6".to_owned()),
            "ANCHORPOINT_API_LIMIT_LOOPBACK_CONNECTIONS" => Some("true".to_owned()),
            "ANCHORPOINT_METRICS_ADDR" => Some("127.0.0.1:9464".to_owned()),
            _ => None,
        };
        cfg.apply_env(env).unwrap();
        assert_eq!((cfg.api_max_connections, cfg.api_header_read_timeout_secs, cfg.api_idle_timeout_secs), (7, 3, 45));
        assert_eq!(cfg.api_descriptor_reserve, 9);
        assert_eq!((cfg.api_body_read_timeout_secs, cfg.api_max_connections_per_source), (4, 6));
        assert!(cfg.api_limit_loopback_connections);
        let err = Config { api_body_read_timeout_secs: 0, ..Config::default() }.validate().unwrap_err();
        assert!(err.to_string().contains("api_body_read_timeout_secs"), "{err}");
        let err = Config { api_max_connections_per_source: 0, ..Config::default() }.validate().unwrap_err();
        assert!(err.to_string().contains("api_max_connections_per_source"), "{err}");
        assert_eq!(cfg.metrics_addr, Some(SocketAddr::from(([127, 0, 0, 1], 9464))));
        let err = Config { api_idle_timeout_secs: 30, ..Config::default() }.validate().unwrap_err();
        assert!(err.to_string().contains("api_idle_timeout_secs must exceed call_timeout_secs"), "{err}");
        let err = Config { api_max_connections: 0, ..Config::default() }.validate().unwrap_err();
        assert!(err.to_string().contains("api_max_connections"), "{err}");
        let err = Config { api_header_read_timeout_secs: 0, ..Config::default() }.validate().unwrap_err();
        assert!(err.to_string().contains("api_header_read_timeout_secs"), "{err}");
    }

    #[test]
    fn node_id_is_checked() {
        let mut cfg = Config::default();
        cfg.apply_env(|k| (k == "ANCHORPOINT_NODE_ID").then(|| "node-1.eu_west".to_owned())).unwrap();
        assert_eq!(cfg.node_id.as_deref(), Some("node-1.eu_west"));
        assert!(cfg.validate().is_ok());
        for bad in ["", "has space", "slash/ed", &"x".repeat(65)] {
            let cfg = Config { node_id: Some(bad.to_owned()), ..Config::default() };
            assert!(cfg.validate().unwrap_err().to_string().contains("node_id"), "{bad:?}");
        }
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = toml::from_str::<Config>("ocpp_adr = \"127.0.0.1:9000\"\n").unwrap_err();
        assert!(err.to_string().contains("ocpp_adr"), "{err}");
    }

    #[test]
    fn verbatim_quotas_come_from_the_environment_and_must_fit_together() {
        let mut cfg = Config::default();
        cfg.apply_env(|k| (k == "ANCHORPOINT_VERBATIM_BURST_BYTES").then(|| "1000".to_owned())).unwrap();
        assert_eq!(cfg.verbatim_burst_bytes, 1000);
        assert!(cfg.validate().unwrap_err().to_string().contains("verbatim_max_message_bytes"));
        let err = cfg.apply_env(|k| (k == "ANCHORPOINT_VERBATIM_MAX_STORED_BYTES").then(|| "-1".to_owned()));
        assert!(format!("{:#}", err.unwrap_err()).contains("ANCHORPOINT_VERBATIM_MAX_STORED_BYTES"));
    }

    #[test]
    fn bad_env_value_names_the_variable() {
        let mut cfg = Config::default();
        let err = cfg.apply_env(|k| (k == "ANCHORPOINT_API_ADDR").then(|| "nonsense".to_owned())).unwrap_err();
        assert!(format!("{err:#}").contains("ANCHORPOINT_API_ADDR"));
    }

    #[test]
    fn gateway_limits_from_env() {
        let mut cfg = Config::default();
        let vars = |k: &str| match k {
            "ANCHORPOINT_MAX_HANDSHAKES_PER_SOURCE" => Some("7".to_owned()),
            "ANCHORPOINT_PASSWORD_CHECK_CONCURRENCY" => Some("3".to_owned()),
            "ANCHORPOINT_LIMIT_LOOPBACK_SOURCES" => Some("true".to_owned()),
            _ => None,
        };
        cfg.apply_env(vars).unwrap();
        assert_eq!(cfg.max_handshakes_per_source, 7);
        assert_eq!(cfg.password_check_concurrency, Some(3));
        assert!(cfg.limit_loopback_sources);
        let err = cfg.apply_env(|k| (k == "ANCHORPOINT_LOGIN_BACKOFF_MAX_SECS").then(|| "x".to_owned())).unwrap_err();
        assert!(err.to_string().contains("ANCHORPOINT_LOGIN_BACKOFF_MAX_SECS"), "{err}");
        let cfg = Config { client_hello_timeout_secs: 20, ..Config::default() };
        assert!(cfg.validate().unwrap_err().to_string().contains("client_hello_timeout_secs"));
    }
}
