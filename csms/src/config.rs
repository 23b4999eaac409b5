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
    /// How long a CSMS-initiated call waits for the station's answer.
    pub call_timeout_secs: u64,
    /// A session that receives nothing (not even a WebSocket ping) for this many
    /// seconds is closed: the station is gone or the network half-open.
    pub idle_timeout_secs: u64,
    /// Largest accepted WebSocket message (and frame), bytes.
    pub max_message_bytes: usize,
    /// Open connections beyond this are refused.
    pub max_connections: usize,
    /// TLS and HTTP upgrade must complete within this many seconds.
    pub handshake_timeout_secs: u64,
    /// Concurrent TLS handshakes and upgrades; bounds CPU spent on unauthenticated peers.
    pub max_concurrent_handshakes: usize,
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
    /// This node's id, stable across restarts (1-64 of `A-Z a-z 0-9 . _ -`):
    /// the claims on certificate requests record it, and a process starting
    /// under it releases the claims its earlier run left. Default: generated
    /// once and kept in `node.id` in the data directory. Two processes running
    /// at once must not share one.
    pub node_id: Option<String>,
}

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
            call_timeout_secs: 30,
            // Two missed heartbeats at the default interval, plus slack.
            idle_timeout_secs: 660,
            max_message_bytes: 64 * 1024,
            max_connections: 100_000,
            handshake_timeout_secs: 10,
            max_concurrent_handshakes: 256,
            password_hash_iterations: 100_000,
            station_certificate_days: 365,
            ocsp_signatures_per_second: 100,
            superseded_grace_secs: 300,
            renewal_window_days: 30,
            pkcs11_module: None,
            pkcs11_token: None,
            pkcs11_pin: None,
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

    /// Environment overrides: `ANCHORPOINT_DATA_DIR`, `ANCHORPOINT_OCPP_ADDR`,
    /// `ANCHORPOINT_OCPP_PLAIN_ADDR`, `ANCHORPOINT_API_ADDR`, `ANCHORPOINT_DATABASE_URL`,
    /// `ANCHORPOINT_SERVER_NAMES` (comma-separated), `ANCHORPOINT_JWT_ALGORITHM`,
    /// `ANCHORPOINT_NODE_ID`.
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
    fn bad_env_value_names_the_variable() {
        let mut cfg = Config::default();
        let err = cfg.apply_env(|k| (k == "ANCHORPOINT_API_ADDR").then(|| "nonsense".to_owned())).unwrap_err();
        assert!(format!("{err:#}").contains("ANCHORPOINT_API_ADDR"));
    }
}
