//! Persistent storage: SQLite (embedded default, WAL) and PostgreSQL.
//!
//! Both back-ends run the same SQL: every statement uses `$N` placeholders in
//! increasing order, which SQLite and PostgreSQL both accept, and times are
//! Unix milliseconds in 64-bit integers. The [`with_pool!`] macro expands one
//! body per back-end, so a query is written once and type-checked twice.
//!
//! Durability: a write method returns only after the transaction committed
//! (SQLite `synchronous=FULL`, PostgreSQL's default `synchronous_commit=on`), so
//! a handler may answer "Accepted" as soon as the call returns.

use std::borrow::Cow;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;
use sqlx::Row;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

/// Tenant id of platform-wide rows (the platform CSMS root, the server certificate).
pub const PLATFORM: &str = "*";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database url (expected sqlite:// or postgres://)")]
    UnsupportedUrl,
    #[error("{what} '{id}' already exists")]
    AlreadyExists { what: &'static str, id: String },
    #[error("{what} '{id}' not found")]
    NotFound { what: &'static str, id: String },
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error("the storage writer has stopped")]
    Unavailable,
}

/// Whether the station is accepted when it boots (B01-B03). Set by the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Registration {
    Accepted,
    Pending,
    Rejected,
}

impl Registration {
    pub fn as_str(self) -> &'static str {
        match self {
            Registration::Accepted => "Accepted",
            Registration::Pending => "Pending",
            Registration::Rejected => "Rejected",
        }
    }
}

impl FromStr for Registration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "accepted" => Ok(Registration::Accepted),
            "pending" => Ok(Registration::Pending),
            "rejected" => Ok(Registration::Rejected),
            other => Err(format!("unknown registration '{other}' (accepted, pending, rejected)")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Tenant {
    pub id: String,
    pub organization: String,
    /// Host name (SNI) with the tenant's own CSMS root and server certificate.
    pub ocpp_hostname: Option<String>,
    pub created_at: i64,
}

/// A charging station as the CSMS knows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Station {
    pub id: String,
    pub tenant_id: String,
    pub security_profile: u8,
    /// PBKDF2 hash of the HTTP Basic password; never serialised.
    #[serde(skip)]
    pub password_hash: Option<String>,
    pub registration: Registration,
    pub enabled: bool,
    pub description: Option<String>,
    /// The status the last BootNotification was answered with.
    pub boot_status: Option<String>,
    pub vendor: Option<String>,
    pub model: Option<String>,
    pub serial_number: Option<String>,
    pub firmware_version: Option<String>,
    pub last_boot_at: Option<i64>,
    pub last_heartbeat_at: Option<i64>,
    pub last_seen_at: Option<i64>,
    pub created_at: i64,
    pub tags: Vec<String>,
}

/// Filters for [`Store::stations_page`] that the database evaluates.
#[derive(Debug, Clone, Default)]
pub struct StationQuery {
    pub security_profile: Option<u8>,
    pub tag: Option<String>,
    /// Last seen at or after (Unix ms).
    pub seen_since: Option<i64>,
    /// Not seen since (Unix ms), or never.
    pub not_seen_since: Option<i64>,
}

/// Filters for [`Store::certificates_page`].
#[derive(Debug, Clone, Copy)]
pub struct CertificateQuery<'a> {
    pub station_id: Option<&'a str>,
    /// `valid`, `revoked` or `expired`, as of `now`.
    pub status: Option<&'a str>,
    /// Validity ends before (Unix ms).
    pub expiring_before: Option<i64>,
    pub now: i64,
}

/// A tracked request for a station certificate (A02/A03).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertRequest {
    pub id: i64,
    pub tenant_id: String,
    pub station_id: String,
    pub origin: String,
    pub state: String,
    #[serde(skip)]
    pub csr_pem: Option<String>,
    pub serial_hex: Option<String>,
    pub detail: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A change to a certificate request; `None` fields keep their value.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestChange<'a> {
    pub to: &'a str,
    pub csr_pem: Option<&'a str>,
    pub serial_hex: Option<&'a str>,
    pub detail: Option<&'a str>,
}

impl<'a> RequestChange<'a> {
    pub fn to(state: &'a str) -> Self {
        RequestChange { to: state, ..Default::default() }
    }
}

/// One recorded API call.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRow {
    pub id: i64,
    pub tenant_id: String,
    pub at: i64,
    pub actor: String,
    pub role: String,
    pub method: String,
    pub path: String,
    pub status: i64,
}

/// What a station must have to be created.
#[derive(Debug, Clone)]
pub struct NewStation {
    pub id: String,
    pub tenant_id: String,
    pub security_profile: u8,
    pub password_hash: Option<String>,
    pub registration: Registration,
    pub description: Option<String>,
    pub tags: Vec<String>,
}

/// Facts from a BootNotificationRequest, with the status it was answered.
#[derive(Debug, Clone)]
pub struct BootRecord {
    pub tenant_id: String,
    pub station_id: String,
    pub received_at: i64,
    pub reason: String,
    pub status: Registration,
    pub vendor: String,
    pub model: String,
    pub serial_number: Option<String>,
    pub firmware_version: Option<String>,
    pub payload: String,
}

/// A station report to persist; see [`Store::apply_writes`].
#[derive(Debug, Clone)]
pub enum StationWrite {
    Boot(BootRecord),
    Heartbeat {
        tenant_id: String,
        station_id: String,
        at: i64,
    },
    ConnectorStatus {
        tenant_id: String,
        station_id: String,
        status: ConnectorStatus,
    },
    /// A validated report kept verbatim (NotifyEvent, NotifyReport, MeterValues, ...).
    Message {
        tenant_id: String,
        station_id: String,
        action: &'static str,
        payload: String,
        at: i64,
    },
    SecurityEvent {
        tenant_id: String,
        station_id: String,
        kind: String,
        occurred_at: i64,
        tech_info: Option<String>,
        at: i64,
    },
    /// A certificate just issued (before it is handed out).
    Certificate(Box<CertificateRecord>),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectorStatus {
    pub evse_id: i64,
    pub connector_id: i64,
    pub status: String,
    pub reported_at: i64,
    pub received_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityEvent {
    pub id: i64,
    pub station_id: String,
    pub kind: String,
    pub occurred_at: i64,
    pub tech_info: Option<String>,
    pub received_at: i64,
}

/// A certificate issued to a station.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateRecord {
    pub tenant_id: String,
    pub serial_hex: String,
    pub station_id: String,
    pub fingerprint: String,
    pub not_before: i64,
    pub not_after: i64,
    pub cert_pem: String,
    pub issued_at: i64,
    pub revoked_at: Option<i64>,
    /// RFC 5280 CRLReason name, when revoked.
    pub revocation_reason: Option<String>,
    /// Id of the issuing CA (`pki::ca_id`); `None` for certificates issued before
    /// the tenant's first CA rotation.
    pub issuer_id: Option<String>,
}

/// A station CA (root or issuing), current or replaced.
#[derive(Debug, Clone)]
pub struct CaRow {
    /// `station-ca`, `station-root`, or `<one of those>@<id>` once replaced.
    pub name: String,
    pub cert_pem: String,
    pub sealed_key: Vec<u8>,
    pub created_at: i64,
    pub replaced_at: Option<i64>,
    pub trusted_until: Option<i64>,
}

/// A credential to rename when a newer one takes its place.
#[derive(Debug, Clone)]
pub struct Retirement<'a> {
    pub name: &'a str,
    /// The certificate the row must still hold (another rotation got there first otherwise).
    pub cert_pem: &'a str,
    pub new_name: String,
}

/// A CA certificate with its sealed private key.
#[derive(Debug, Clone)]
pub struct CredentialRecord {
    pub cert_pem: String,
    pub sealed_key: Vec<u8>,
}

#[derive(Clone)]
enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.backend {
            Backend::Sqlite(_) => "Store(sqlite)",
            Backend::Postgres(_) => "Store(postgres)",
        })
    }
}

/// Runs `$body` with `$pool` bound to the concrete pool of either back-end.
macro_rules! with_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.backend {
            Backend::Sqlite($pool) => $body,
            Backend::Postgres($pool) => $body,
        }
    };
}

/// Migrations embedded in the binary; version 1 keeps the description it was
/// first applied with.
fn migrator(dir: &'static str, sqls: &[(i64, &'static str)]) -> Migrator {
    let migrations = sqls
        .iter()
        .map(|&(version, sql)| {
            let description = match version {
                1 => dir,
                2 => "api",
                3 => "revocation",
                4 => "certificate requests",
                _ => "ca rotation",
            };
            Migration::new(version, Cow::Borrowed(description), MigrationType::Simple, Cow::Borrowed(sql), false)
        })
        .collect();
    Migrator { migrations: Cow::Owned(migrations), ignore_missing: false, locking: true, no_tx: false }
}

fn unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

impl Store {
    /// Opens (creating if needed) the database at `url` and applies migrations.
    /// `sqlite://PATH` or `postgres://...`.
    pub async fn open(url: &str, max_connections: u32) -> Result<Store, StoreError> {
        let backend = if let Some(path) = url.strip_prefix("sqlite://") {
            let opts = SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // FULL: a commit survives power loss, not only a process crash.
                .synchronous(SqliteSynchronous::Full)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10));
            let pool = SqlitePoolOptions::new().max_connections(max_connections.max(1)).connect_with(opts).await?;
            let migrations = migrator(
                "sqlite",
                &[
                    (1, include_str!("../../migrations/sqlite/0001_foundation.sql")),
                    (2, include_str!("../../migrations/sqlite/0002_api.sql")),
                    (3, include_str!("../../migrations/sqlite/0003_revocation.sql")),
                    (4, include_str!("../../migrations/sqlite/0004_certificate_requests.sql")),
                    (5, include_str!("../../migrations/sqlite/0005_ca_rotation.sql")),
                ],
            );
            // SQLite has no migration lock: when two processes open a new database at
            // once, the loser fails on tables the winner created; on retry it finds
            // the migration applied.
            let mut attempt = 0;
            while let Err(e) = migrations.run(&pool).await {
                attempt += 1;
                if attempt >= 5 {
                    return Err(e.into());
                }
                tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
            }
            Backend::Sqlite(pool)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new()
                .max_connections(max_connections.max(1))
                .acquire_timeout(Duration::from_secs(10))
                .connect(url)
                .await?;
            migrator(
                "postgres",
                &[
                    (1, include_str!("../../migrations/postgres/0001_foundation.sql")),
                    (2, include_str!("../../migrations/postgres/0002_api.sql")),
                    (3, include_str!("../../migrations/postgres/0003_revocation.sql")),
                    (4, include_str!("../../migrations/postgres/0004_certificate_requests.sql")),
                    (5, include_str!("../../migrations/postgres/0005_ca_rotation.sql")),
                ],
            )
            .run(&pool)
            .await?;
            Backend::Postgres(pool)
        } else {
            return Err(StoreError::UnsupportedUrl);
        };
        Ok(Store { backend })
    }

    /// `sqlite://<dir>/anchorpoint.db`
    pub fn sqlite_url(data_dir: &Path) -> String {
        format!("sqlite://{}", data_dir.join("anchorpoint.db").display())
    }

    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Cheap round trip for readiness probes.
    pub async fn ping(&self) -> Result<(), StoreError> {
        with_pool!(self, |p| {
            sqlx::query("SELECT 1").execute(p).await?;
        });
        Ok(())
    }

    pub async fn close(&self) {
        with_pool!(self, |p| p.close().await)
    }

    // ---- tenants -------------------------------------------------------

    pub async fn create_tenant(
        &self,
        id: &str,
        organization: &str,
        ocpp_hostname: Option<&str>,
        now: i64,
    ) -> Result<Tenant, StoreError> {
        let res = with_pool!(self, |p| {
            sqlx::query("INSERT INTO tenants (id, organization, ocpp_hostname, created_at) VALUES ($1, $2, $3, $4)")
                .bind(id)
                .bind(organization)
                .bind(ocpp_hostname)
                .bind(now)
                .execute(p)
                .await
                .map(|_| ())
        });
        match res {
            Ok(()) => Ok(Tenant {
                id: id.to_owned(),
                organization: organization.to_owned(),
                ocpp_hostname: ocpp_hostname.map(str::to_owned),
                created_at: now,
            }),
            Err(e) if unique_violation(&e) => Err(StoreError::AlreadyExists { what: "tenant", id: id.to_owned() }),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn tenant(&self, id: &str) -> Result<Option<Tenant>, StoreError> {
        let row = with_pool!(self, |p| {
            sqlx::query("SELECT id, organization, ocpp_hostname, created_at FROM tenants WHERE id = $1")
                .bind(id)
                .fetch_optional(p)
                .await?
                .map(|r| tenant_from_row(&r))
                .transpose()?
        });
        Ok(row)
    }

    pub async fn tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        let rows = with_pool!(self, |p| {
            sqlx::query("SELECT id, organization, ocpp_hostname, created_at FROM tenants ORDER BY id")
                .fetch_all(p)
                .await?
                .into_iter()
                .map(|r| tenant_from_row(&r))
                .collect::<Result<Vec<_>, _>>()?
        });
        Ok(rows)
    }

    // ---- credentials (CA material) --------------------------------------

    /// Stores a set of credentials that belong together (a root and the sub-CA it
    /// signed) only if none of them exists yet: all are stored, or none. Returns
    /// whether they were stored; `false` means another process got there first.
    pub async fn insert_credentials(
        &self,
        tenant_id: &str,
        creds: &[(&str, &CredentialRecord)],
        now: i64,
    ) -> Result<bool, StoreError> {
        self.change_credentials(tenant_id, None, &[], creds, now, now).await
    }

    /// Replaces a credential (server certificate renewal).
    pub async fn replace_credential(
        &self,
        tenant_id: &str,
        name: &str,
        cred: &CredentialRecord,
        now: i64,
    ) -> Result<(), StoreError> {
        with_pool!(self, |p| {
            sqlx::query(
                "INSERT INTO credentials (tenant_id, name, cert_pem, sealed_key, created_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (tenant_id, name) DO UPDATE SET cert_pem = excluded.cert_pem, sealed_key = excluded.sealed_key, created_at = excluded.created_at",
            )
            .bind(tenant_id)
            .bind(name)
            .bind(&cred.cert_pem)
            .bind(&cred.sealed_key)
            .bind(now)
            .execute(p)
            .await?;
        });
        Ok(())
    }

    pub async fn credential(&self, tenant_id: &str, name: &str) -> Result<Option<CredentialRecord>, StoreError> {
        let row = with_pool!(self, |p| {
            sqlx::query("SELECT cert_pem, sealed_key FROM credentials WHERE tenant_id = $1 AND name = $2")
                .bind(tenant_id)
                .bind(name)
                .fetch_optional(p)
                .await?
                .map(|r| -> Result<CredentialRecord, sqlx::Error> {
                    Ok(CredentialRecord { cert_pem: r.try_get("cert_pem")?, sealed_key: r.try_get("sealed_key")? })
                })
                .transpose()?
        });
        Ok(row)
    }

    /// Certificates (PEM) of every credential with this name, one per tenant.
    pub async fn credential_certs_named(&self, name: &str) -> Result<Vec<(String, String)>, StoreError> {
        let rows = with_pool!(self, |p| {
            sqlx::query("SELECT tenant_id, cert_pem FROM credentials WHERE name = $1 ORDER BY tenant_id")
                .bind(name)
                .fetch_all(p)
                .await?
                .into_iter()
                .map(|r| -> Result<(String, String), sqlx::Error> {
                    Ok((r.try_get("tenant_id")?, r.try_get("cert_pem")?))
                })
                .collect::<Result<Vec<_>, _>>()?
        });
        Ok(rows)
    }

    /// A tenant's station CAs named `base` (`station-ca` or `station-root`): the
    /// current one and those it replaced, newest first.
    pub async fn station_cas(&self, tenant_id: &str, base: &str) -> Result<Vec<CaRow>, StoreError> {
        let rows = with_pool!(self, |p| {
            sqlx::query(
                "SELECT name, cert_pem, sealed_key, created_at, replaced_at, trusted_until FROM credentials \
                 WHERE tenant_id = $1 AND (name = $2 OR name LIKE $3) ORDER BY created_at DESC, name",
            )
            .bind(tenant_id)
            .bind(base)
            .bind(format!("{base}@%"))
            .fetch_all(p)
            .await?
            .into_iter()
            .map(|r| -> Result<CaRow, sqlx::Error> {
                Ok(CaRow {
                    name: r.try_get("name")?,
                    cert_pem: r.try_get("cert_pem")?,
                    sealed_key: r.try_get("sealed_key")?,
                    created_at: r.try_get("created_at")?,
                    replaced_at: r.try_get("replaced_at")?,
                    trusted_until: r.try_get("trusted_until")?,
                })
            })
            .collect::<Result<Vec<_>, _>>()?
        });
        Ok(rows)
    }

    /// Certificates (PEM) of every tenant's station roots still trusted at `now`:
    /// the current ones and replaced ones within their overlap.
    pub async fn trusted_station_roots(&self, now: i64) -> Result<Vec<(String, String)>, StoreError> {
        let rows = with_pool!(self, |p| {
            sqlx::query(
                "SELECT tenant_id, cert_pem FROM credentials \
                 WHERE (name = 'station-root' OR name LIKE 'station-root@%') \
                   AND (trusted_until IS NULL OR trusted_until > $1) ORDER BY tenant_id, name",
            )
            .bind(now)
            .fetch_all(p)
            .await?
            .into_iter()
            .map(|r| -> Result<(String, String), sqlx::Error> { Ok((r.try_get("tenant_id")?, r.try_get("cert_pem")?)) })
            .collect::<Result<Vec<_>, _>>()?
        });
        Ok(rows)
    }

    /// A certificate presented at connect, with the end of its issuer's overlap
    /// when that issuer is a replaced CA (`None`: the current CA), in one query.
    pub async fn certificate_at_connect(
        &self,
        tenant_id: &str,
        serial_hex: &str,
    ) -> Result<Option<(CertificateRecord, Option<i64>)>, StoreError> {
        let row = with_pool!(self, |p| {
            sqlx::query(
                "SELECT c.tenant_id, c.serial_hex, c.station_id, c.fingerprint, c.not_before, c.not_after, c.cert_pem, \
                   c.issued_at, c.revoked_at, c.revocation_reason, c.issuer_id, cr.trusted_until AS issuer_trusted_until \
                 FROM certificates c \
                 LEFT JOIN credentials cr ON cr.tenant_id = c.tenant_id AND cr.name = 'station-ca@' || c.issuer_id \
                 WHERE c.tenant_id = $1 AND c.serial_hex = $2",
            )
            .bind(tenant_id)
            .bind(serial_hex)
            .fetch_optional(p)
            .await?
            .map(|r| -> Result<_, sqlx::Error> {
                Ok((certificate_from_row(&r)?, r.try_get::<Option<i64>, _>("issuer_trusted_until")?))
            })
            .transpose()?
        });
        Ok(row)
    }

    /// Whether a credential of any tenant names this PKCS#11 key.
    pub async fn hsm_label_in_use(&self, key_label: &str) -> Result<bool, StoreError> {
        let marker = [b"pkcs11:".as_slice(), key_label.as_bytes()].concat();
        let n: i64 = with_pool!(self, |p| {
            sqlx::query_scalar("SELECT COUNT(*) FROM credentials WHERE sealed_key = $1")
                .bind(&marker)
                .fetch_one(p)
                .await?
        });
        Ok(n > 0)
    }

    /// Replaced issuing CAs still within their overlap at `now`, every tenant:
    /// (tenant, name, replaced at, trusted until).
    pub async fn overlapping_station_cas(&self, now: i64) -> Result<Vec<(String, String, i64, i64)>, StoreError> {
        let rows = with_pool!(self, |p| {
            sqlx::query(
                "SELECT tenant_id, name, replaced_at, trusted_until FROM credentials \
                 WHERE name LIKE 'station-ca@%' AND trusted_until > $1 AND replaced_at IS NOT NULL \
                 ORDER BY tenant_id, name",
            )
            .bind(now)
            .fetch_all(p)
            .await?
            .into_iter()
            .map(|r| -> Result<(String, String, i64, i64), sqlx::Error> {
                Ok((
                    r.try_get("tenant_id")?,
                    r.try_get("name")?,
                    r.try_get("replaced_at")?,
                    r.try_get("trusted_until")?,
                ))
            })
            .collect::<Result<Vec<_>, _>>()?
        });
        Ok(rows)
    }

    /// Replaces station CAs in one transaction: certificates without a recorded
    /// issuer are attributed to `previous_issuer`, each retired row is renamed and
    /// given its overlap (only if it still holds the expected certificate), and the
    /// new rows are stored. `false`: another rotation changed the CAs first.
    pub async fn replace_station_cas(
        &self,
        tenant_id: &str,
        previous_issuer: &str,
        retire: &[Retirement<'_>],
        insert: &[(&str, &CredentialRecord)],
        now: i64,
        trusted_until: i64,
    ) -> Result<bool, StoreError> {
        self.change_credentials(tenant_id, Some(previous_issuer), retire, insert, now, trusted_until).await
    }

    /// One transaction: attribute unattributed certificates to `previous_issuer`,
    /// retire rows, insert rows; all of it or, if a retirement finds another
    /// certificate or an insertion an existing row, none of it (`false`).
    async fn change_credentials(
        &self,
        tenant_id: &str,
        previous_issuer: Option<&str>,
        retire: &[Retirement<'_>],
        insert: &[(&str, &CredentialRecord)],
        now: i64,
        trusted_until: i64,
    ) -> Result<bool, StoreError> {
        let done = with_pool!(self, |p| {
            let mut tx = p.begin().await?;
            if let Some(previous) = previous_issuer {
                sqlx::query("UPDATE certificates SET issuer_id = $1 WHERE tenant_id = $2 AND issuer_id IS NULL")
                    .bind(previous)
                    .bind(tenant_id)
                    .execute(&mut *tx)
                    .await?;
            }
            let mut ok = true;
            for r in retire {
                // The same CA retired before (a root brought back): the new overlap replaces it.
                sqlx::query("DELETE FROM credentials WHERE tenant_id = $1 AND name = $2")
                    .bind(tenant_id)
                    .bind(&r.new_name)
                    .execute(&mut *tx)
                    .await?;
                let n = sqlx::query(
                    "UPDATE credentials SET name = $1, replaced_at = $2, trusted_until = $3 \
                     WHERE tenant_id = $4 AND name = $5 AND cert_pem = $6",
                )
                .bind(&r.new_name)
                .bind(now)
                .bind(trusted_until)
                .bind(tenant_id)
                .bind(r.name)
                .bind(r.cert_pem)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if n != 1 {
                    ok = false;
                    break;
                }
            }
            if ok {
                for (name, cred) in insert {
                    let n = sqlx::query(
                        "INSERT INTO credentials (tenant_id, name, cert_pem, sealed_key, created_at) \
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, name) DO NOTHING",
                    )
                    .bind(tenant_id)
                    .bind(*name)
                    .bind(&cred.cert_pem)
                    .bind(&cred.sealed_key)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if n != 1 {
                        ok = false;
                        break;
                    }
                }
            }
            if ok {
                tx.commit().await?;
            } else {
                tx.rollback().await?;
            }
            ok
        });
        Ok(done)
    }

    /// Valid certificates issued by `issuer_id` whose station has nothing newer:
    /// the ones to move to the current CA during an overlap. By serial, after `after`.
    pub async fn certificates_to_move(
        &self,
        tenant_id: &str,
        issuer_id: &str,
        now: i64,
        after: &str,
        limit: u32,
    ) -> Result<Vec<CertificateRecord>, StoreError> {
        let rows = with_pool!(self, |p| {
            sqlx::query(&format!(
                "SELECT {CERTIFICATE_COLUMNS} FROM certificates c \
                 WHERE tenant_id = $1 AND issuer_id = $2 AND revoked_at IS NULL AND superseded_at IS NULL \
                   AND not_after > $3 AND serial_hex > $4 \
                   AND NOT EXISTS (SELECT 1 FROM certificates n WHERE n.tenant_id = c.tenant_id \
                       AND n.station_id = c.station_id AND n.revoked_at IS NULL AND n.issued_at > c.issued_at) \
                 ORDER BY serial_hex LIMIT $5"
            ))
            .bind(tenant_id)
            .bind(issuer_id)
            .bind(now)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(p)
            .await?
            .iter()
            .map(certificate_from_row)
            .collect::<Result<Vec<_>, _>>()?
        });
        Ok(rows)
    }

    // ---- stations ---------------------------------------------------------

    /// Creates a station with its tags, in one transaction.
    pub async fn create_station(&self, s: &NewStation, now: i64) -> Result<Station, StoreError> {
        let tags_json = serde_json::Value::from(s.tags.clone()).to_string();
        let res: Result<(), sqlx::Error> = with_pool!(self, |p| {
            async {
                let mut tx = p.begin().await?;
                sqlx::query(
                    "INSERT INTO stations (id, tenant_id, security_profile, password_hash, registration, enabled, description, created_at, tags) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(&s.id)
                .bind(&s.tenant_id)
                .bind(i64::from(s.security_profile))
                .bind(&s.password_hash)
                .bind(s.registration.as_str())
                .bind(true)
                .bind(&s.description)
                .bind(now)
                .bind(&tags_json)
                .execute(&mut *tx)
                .await?;
                for tag in &s.tags {
                    sqlx::query(
                        "INSERT INTO station_tags (tenant_id, station_id, tag) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    )
                    .bind(&s.tenant_id)
                    .bind(&s.id)
                    .bind(tag)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await
            }
            .await
        });
        match res {
            Ok(()) => {}
            Err(e) if unique_violation(&e) => {
                return Err(StoreError::AlreadyExists { what: "station", id: s.id.clone() });
            }
            Err(e) => return Err(e.into()),
        }
        self.station(&s.id).await?.ok_or_else(|| StoreError::NotFound { what: "station", id: s.id.clone() })
    }

    /// Looks a station up by id across tenants (the OCPP URL carries no tenant).
    pub async fn station(&self, id: &str) -> Result<Option<Station>, StoreError> {
        let row = with_pool!(self, |p| {
            sqlx::query(&format!("SELECT {STATION_COLUMNS} FROM stations WHERE id = $1"))
                .bind(id)
                .fetch_optional(p)
                .await?
                .map(|r| station_from_row(&r))
                .transpose()?
        });
        Ok(row)
    }

    pub async fn stations(&self, tenant_id: &str) -> Result<Vec<Station>, StoreError> {
        let rows = with_pool!(self, |p| {
            sqlx::query(&format!("SELECT {STATION_COLUMNS} FROM stations WHERE tenant_id = $1 ORDER BY id"))
                .bind(tenant_id)
                .fetch_all(p)
                .await?
                .iter()
                .map(station_from_row)
                .collect::<Result<Vec<_>, _>>()?
        });
        Ok(rows)
    }

    /// Changes operator-controlled settings; `None` leaves a field as it is.
    pub async fn update_station(
        &self,
        tenant_id: &str,
        id: &str,
        security_profile: Option<u8>,
        password_hash: Option<&str>,
        registration: Option<Registration>,
        enabled: Option<bool>,
    ) -> Result<Station, StoreError> {
        let n = with_pool!(self, |p| {
            sqlx::query(
                "UPDATE stations SET \
                   security_profile = COALESCE($1, security_profile), \
                   password_hash = COALESCE($2, password_hash), \
                   registration = COALESCE($3, registration), \
                   enabled = COALESCE($4, enabled) \
                 WHERE tenant_id = $5 AND id = $6",
            )
            .bind(security_profile.map(i64::from))
            .bind(password_hash)
            .bind(registration.map(Registration::as_str))
            .bind(enabled)
            .bind(tenant_id)
            .bind(id)
            .execute(p)
            .await?
            .rows_affected()
        });
        if n == 0 {
            return Err(StoreError::NotFound { what: "station", id: id.to_owned() });
        }
        self.station(id).await?.ok_or_else(|| StoreError::NotFound { what: "station", id: id.to_owned() })
    }

    /// Applies station reports in one transaction: one commit (one fsync) for
    /// the whole group. Used through [`crate::group_commit::GroupCommit`].
    pub async fn apply_writes(&self, writes: &[StationWrite]) -> Result<(), StoreError> {
        with_pool!(self, |p| {
            let mut tx = p.begin().await?;
            for w in writes {
                match w {
                    StationWrite::Boot(b) => {
                        sqlx::query(
                            "INSERT INTO boot_notifications (tenant_id, station_id, received_at, reason, status, payload) \
                             VALUES ($1, $2, $3, $4, $5, $6)",
                        )
                        .bind(&b.tenant_id)
                        .bind(&b.station_id)
                        .bind(b.received_at)
                        .bind(&b.reason)
                        .bind(b.status.as_str())
                        .bind(&b.payload)
                        .execute(&mut *tx)
                        .await?;
                        sqlx::query(
                            "UPDATE stations SET boot_status = $1, vendor = $2, model = $3, serial_number = $4, \
                             firmware_version = $5, last_boot_at = $6, last_seen_at = $6 WHERE tenant_id = $7 AND id = $8",
                        )
                        .bind(b.status.as_str())
                        .bind(&b.vendor)
                        .bind(&b.model)
                        .bind(&b.serial_number)
                        .bind(&b.firmware_version)
                        .bind(b.received_at)
                        .bind(&b.tenant_id)
                        .bind(&b.station_id)
                        .execute(&mut *tx)
                        .await?;
                    }
                    StationWrite::Heartbeat { tenant_id, station_id, at } => {
                        sqlx::query(
                            "UPDATE stations SET last_heartbeat_at = $1, last_seen_at = $1 WHERE tenant_id = $2 AND id = $3",
                        )
                        .bind(at)
                        .bind(tenant_id)
                        .bind(station_id)
                        .execute(&mut *tx)
                        .await?;
                    }
                    StationWrite::ConnectorStatus { tenant_id, station_id, status } => {
                        sqlx::query(
                            "INSERT INTO connector_statuses \
                             (tenant_id, station_id, evse_id, connector_id, status, reported_at, received_at) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7) \
                             ON CONFLICT (station_id, evse_id, connector_id) DO UPDATE SET status = excluded.status, \
                             reported_at = excluded.reported_at, received_at = excluded.received_at, tenant_id = excluded.tenant_id",
                        )
                        .bind(tenant_id)
                        .bind(station_id)
                        .bind(status.evse_id)
                        .bind(status.connector_id)
                        .bind(&status.status)
                        .bind(status.reported_at)
                        .bind(status.received_at)
                        .execute(&mut *tx)
                        .await?;
                    }
                    StationWrite::Message { tenant_id, station_id, action, payload, at } => {
                        sqlx::query(
                            "INSERT INTO station_messages (tenant_id, station_id, action, received_at, payload) \
                             VALUES ($1, $2, $3, $4, $5)",
                        )
                        .bind(tenant_id)
                        .bind(station_id)
                        .bind(*action)
                        .bind(at)
                        .bind(payload)
                        .execute(&mut *tx)
                        .await?;
                    }
                    StationWrite::SecurityEvent { tenant_id, station_id, kind, occurred_at, tech_info, at } => {
                        sqlx::query(
                            "INSERT INTO security_events (tenant_id, station_id, kind, occurred_at, tech_info, received_at) \
                             VALUES ($1, $2, $3, $4, $5, $6)",
                        )
                        .bind(tenant_id)
                        .bind(station_id)
                        .bind(kind)
                        .bind(occurred_at)
                        .bind(tech_info)
                        .bind(at)
                        .execute(&mut *tx)
                        .await?;
                    }
                    StationWrite::Certificate(c) => {
                        sqlx::query(
                            "INSERT INTO certificates (tenant_id, serial_hex, station_id, fingerprint, not_before, not_after, \
                               cert_pem, issued_at, issuer_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                        )
                        .bind(&c.tenant_id)
                        .bind(&c.serial_hex)
                        .bind(&c.station_id)
                        .bind(&c.fingerprint)
                        .bind(c.not_before)
                        .bind(c.not_after)
                        .bind(&c.cert_pem)
                        .bind(c.issued_at)
                        .bind(&c.issuer_id)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
            }
            tx.commit().await?;
        });
        Ok(())
    }

    pub async fn connector_statuses(
        &self,
        tenant_id: &str,
        station_id: &str,
    ) -> Result<Vec<ConnectorStatus>, StoreError> {
        let rows = with_pool!(self, |p| {
            sqlx::query(
                "SELECT evse_id, connector_id, status, reported_at, received_at FROM connector_statuses \
                 WHERE tenant_id = $1 AND station_id = $2 ORDER BY evse_id, connector_id",
            )
            .bind(tenant_id)
            .bind(station_id)
            .fetch_all(p)
            .await?
            .into_iter()
            .map(|r| -> Result<ConnectorStatus, sqlx::Error> {
                Ok(ConnectorStatus {
                    evse_id: r.try_get("evse_id")?,
                    connector_id: r.try_get("connector_id")?,
                    status: r.try_get("status")?,
                    reported_at: r.try_get("reported_at")?,
                    received_at: r.try_get("received_at")?,
                })
            })
            .collect::<Result<Vec<_>, _>>()?
        });
        Ok(rows)
    }

    pub async fn station_message_count(
        &self,
        tenant_id: &str,
        station_id: &str,
        action: &str,
    ) -> Result<i64, StoreError> {
        let n = with_pool!(self, |p| {
            sqlx::query(
                "SELECT COUNT(*) AS n FROM station_messages WHERE tenant_id = $1 AND station_id = $2 AND action = $3",
            )
            .bind(tenant_id)
            .bind(station_id)
            .bind(action)
            .fetch_one(p)
            .await?
            .try_get::<i64, _>("n")?
        });
        Ok(n)
    }

    /// All security events of a tenant (or one of its stations), oldest first.
    pub async fn security_events(
        &self,
        tenant_id: &str,
        station_id: Option<&str>,
    ) -> Result<Vec<SecurityEvent>, StoreError> {
        self.security_events_page(tenant_id, station_id, None, None, u32::MAX).await
    }

    // ---- certificates -------------------------------------------------------

    pub async fn record_certificate(&self, c: &CertificateRecord) -> Result<(), StoreError> {
        with_pool!(self, |p| {
            sqlx::query(
                "INSERT INTO certificates (tenant_id, serial_hex, station_id, fingerprint, not_before, not_after, cert_pem, issued_at, revoked_at, issuer_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(&c.tenant_id)
            .bind(&c.serial_hex)
            .bind(&c.station_id)
            .bind(&c.fingerprint)
            .bind(c.not_before)
            .bind(c.not_after)
            .bind(&c.cert_pem)
            .bind(c.issued_at)
            .bind(c.revoked_at)
            .bind(&c.issuer_id)
            .execute(p)
            .await?;
        });
        Ok(())
    }

    pub async fn certificate(
        &self,
        tenant_id: &str,
        serial_hex: &str,
    ) -> Result<Option<CertificateRecord>, StoreError> {
        let row = with_pool!(self, |p| {
            sqlx::query(&format!(
                "SELECT {CERTIFICATE_COLUMNS} FROM certificates WHERE tenant_id = $1 AND serial_hex = $2"
            ))
            .bind(tenant_id)
            .bind(serial_hex)
            .fetch_optional(p)
            .await?
            .as_ref()
            .map(certificate_from_row)
            .transpose()?
        });
        Ok(row)
    }

    pub async fn revoke_certificate(
        &self,
        tenant_id: &str,
        serial_hex: &str,
        now: i64,
        reason: &str,
    ) -> Result<(), StoreError> {
        let n = with_pool!(self, |p| {
            sqlx::query(
                "UPDATE certificates SET revoked_at = COALESCE(revoked_at, $1), \
                   revocation_reason = COALESCE(revocation_reason, $2) \
                 WHERE tenant_id = $3 AND serial_hex = $4",
            )
            .bind(now)
            .bind(reason)
            .bind(tenant_id)
            .bind(serial_hex)
            .execute(p)
            .await?
            .rows_affected()
        });
        if n == 0 {
            return Err(StoreError::NotFound { what: "certificate", id: serial_hex.to_owned() });
        }
        Ok(())
    }

    /// A tenant's certificates by serial, after `after`, at most `limit`.
    pub async fn certificates_page(
        &self,
        tenant_id: &str,
        q: &CertificateQuery<'_>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<CertificateRecord>, StoreError> {
        let CertificateQuery { station_id, status, expiring_before, now } = *q;
        let rows = with_pool!(self, |p| {
            sqlx::query(&format!(
                "SELECT {CERTIFICATE_COLUMNS} FROM certificates WHERE tenant_id = $1 \
                   AND ($2 IS NULL OR station_id = $2) \
                   AND ($3 IS NULL \
                        OR ($3 = 'revoked' AND revoked_at IS NOT NULL) \
                        OR ($3 = 'valid' AND revoked_at IS NULL AND not_after > $4) \
                        OR ($3 = 'expired' AND revoked_at IS NULL AND not_after <= $4)) \
                   AND ($5 IS NULL OR not_after < $5) \
                   AND ($6 IS NULL OR serial_hex > $6) \
                 ORDER BY serial_hex LIMIT $7"
            ))
            .bind(tenant_id)
            .bind(station_id)
            .bind(status)
            .bind(now)
            .bind(expiring_before)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(p)
            .await?
            .iter()
            .map(certificate_from_row)
            .collect::<Result<Vec<_>, _>>()?
        });
        Ok(rows)
    }

    /// Certificates to renew: unrevoked, not superseded, valid after `after`
    /// and expiring before `window_end`, of stations that hold no certificate
    /// valid beyond it; soonest first. Pass the last `not_after` of one page as
    /// `after` for the next.
    pub async fn certificates_expiring(
        &self,
        after: i64,
        window_end: i64,
        limit: u32,
    ) -> Result<Vec<CertificateRecord>, StoreError> {
        let rows = with_pool!(self, |p| {
            sqlx::query(&format!(
                "SELECT {CERTIFICATE_COLUMNS} FROM certificates c \
                 WHERE revoked_at IS NULL AND superseded_at IS NULL AND not_after < $1 AND not_after > $2 \
                   AND NOT EXISTS (SELECT 1 FROM certificates n WHERE n.tenant_id = c.tenant_id \
                       AND n.station_id = c.station_id AND n.revoked_at IS NULL AND n.not_after >= $1) \
                 ORDER BY not_after LIMIT $3"
            ))
            .bind(window_end)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(p)
            .await?
            .iter()
            .map(certificate_from_row)
            .collect::<Result<Vec<_>, _>>()?
        });
        Ok(rows)
    }

    /// Certificates revoked at or after `since` (any tenant): (tenant, serial).
    pub async fn revoked_since(&self, since: i64) -> Result<Vec<(String, String)>, StoreError> {
        let rows = with_pool!(self, |p| {
            sqlx::query("SELECT tenant_id, serial_hex FROM certificates WHERE revoked_at >= $1")
                .bind(since)
                .fetch_all(p)
                .await?
                .into_iter()
                .map(|r| -> Result<(String, String), sqlx::Error> {
                    Ok((r.try_get("tenant_id")?, r.try_get("serial_hex")?))
                })
                .collect::<Result<Vec<_>, _>>()?
        });
        Ok(rows)
    }

    /// Revoked certificates of one issuing CA: (serial, revoked at, reason), for
    /// its CRL. `current`: the CA is the tenant's current one, which also answers
    /// for certificates issued before the first rotation (no issuer recorded).
    pub async fn revoked_certificates(
        &self,
        tenant_id: &str,
        issuer_id: &str,
        current: bool,
    ) -> Result<Vec<(String, i64, Option<String>)>, StoreError> {
        let rows = with_pool!(self, |p| {
            sqlx::query(
                "SELECT serial_hex, revoked_at, revocation_reason FROM certificates \
                 WHERE tenant_id = $1 AND revoked_at IS NOT NULL AND (issuer_id = $2 OR ($3 AND issuer_id IS NULL)) \
                 ORDER BY revoked_at, serial_hex",
            )
            .bind(tenant_id)
            .bind(issuer_id)
            .bind(current)
            .fetch_all(p)
            .await?
            .into_iter()
            .map(|r| -> Result<(String, i64, Option<String>), sqlx::Error> {
                Ok((r.try_get("serial_hex")?, r.try_get("revoked_at")?, r.try_get("revocation_reason")?))
            })
            .collect::<Result<Vec<_>, _>>()?
        });
        Ok(rows)
    }

    // ---- API pages -------------------------------------------------------------

    /// Tenants by id, after `after`, at most `limit`.
    pub async fn tenants_page(&self, after: Option<&str>, limit: u32) -> Result<Vec<Tenant>, StoreError> {
        let rows = with_pool!(self, |p| {
            sqlx::query(
                "SELECT id, organization, ocpp_hostname, created_at FROM tenants \
                 WHERE id <> $1 AND ($2 IS NULL OR id > $2) ORDER BY id LIMIT $3",
            )
            .bind(PLATFORM)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(p)
            .await?
            .into_iter()
            .map(|r| tenant_from_row(&r))
            .collect::<Result<Vec<_>, _>>()?
        });
        Ok(rows)
    }

    /// A tenant's stations by id, after `after`, at most `limit`, filtered by `q`.
    pub async fn stations_page(
        &self,
        tenant_id: &str,
        q: &StationQuery,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Station>, StoreError> {
        let sql = format!(
            "SELECT {STATION_COLUMNS} FROM stations s WHERE tenant_id = $1 \
               AND ($2 IS NULL OR id > $2) \
               AND ($3 IS NULL OR security_profile = $3) \
               AND ($4 IS NULL OR EXISTS (SELECT 1 FROM station_tags t WHERE t.station_id = s.id AND t.tag = $4)) \
               AND ($5 IS NULL OR last_seen_at >= $5) \
               AND ($6 IS NULL OR last_seen_at IS NULL OR last_seen_at < $6) \
             ORDER BY id LIMIT $7"
        );
        let rows = with_pool!(self, |p| {
            sqlx::query(&sql)
                .bind(tenant_id)
                .bind(after)
                .bind(q.security_profile.map(i64::from))
                .bind(q.tag.as_deref())
                .bind(q.seen_since)
                .bind(q.not_seen_since)
                .bind(i64::from(limit))
                .fetch_all(p)
                .await?
                .iter()
                .map(station_from_row)
                .collect::<Result<Vec<_>, _>>()?
        });
        Ok(rows)
    }

    /// Sets description (`Some("")` clears it) and tags; `None` leaves a field.
    pub async fn set_station_details(
        &self,
        tenant_id: &str,
        id: &str,
        description: Option<&str>,
        tags: Option<&[String]>,
    ) -> Result<(), StoreError> {
        let tags_json = tags.map(|t| serde_json::Value::from(t.to_vec()).to_string());
        let description = description.map(|d| if d.is_empty() { None } else { Some(d) });
        with_pool!(self, |p| {
            let mut tx = p.begin().await?;
            let n = sqlx::query(
                "UPDATE stations SET \
                   description = CASE WHEN $1 THEN $2 ELSE description END, \
                   tags = COALESCE($3, tags) \
                 WHERE tenant_id = $4 AND id = $5",
            )
            .bind(description.is_some())
            .bind(description.flatten())
            .bind(tags_json.as_deref())
            .bind(tenant_id)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 0 {
                return Err(StoreError::NotFound { what: "station", id: id.to_owned() });
            }
            if let Some(tags) = tags {
                sqlx::query("DELETE FROM station_tags WHERE tenant_id = $1 AND station_id = $2")
                    .bind(tenant_id)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                for tag in tags {
                    sqlx::query(
                        "INSERT INTO station_tags (tenant_id, station_id, tag) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    )
                    .bind(tenant_id)
                    .bind(id)
                    .bind(tag)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Deletes a station and revokes every certificate issued to it, in one
    /// transaction, so a station later created with the same id cannot be
    /// impersonated with the old certificates. History (boots, events) stays.
    pub async fn delete_station(&self, tenant_id: &str, id: &str, now: i64) -> Result<(), StoreError> {
        with_pool!(self, |p| {
            let mut tx = p.begin().await?;
            sqlx::query("DELETE FROM station_tags WHERE tenant_id = $1 AND station_id = $2")
                .bind(tenant_id)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM connector_statuses WHERE tenant_id = $1 AND station_id = $2")
                .bind(tenant_id)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "UPDATE certificates SET revoked_at = $1, revocation_reason = 'cessationOfOperation' \
                 WHERE tenant_id = $2 AND station_id = $3 AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(tenant_id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            let n = sqlx::query("DELETE FROM stations WHERE tenant_id = $1 AND id = $2")
                .bind(tenant_id)
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if n == 0 {
                return Err(StoreError::NotFound { what: "station", id: id.to_owned() });
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Security events by id, after `after_id`, at most `limit`.
    pub async fn security_events_page(
        &self,
        tenant_id: &str,
        station_id: Option<&str>,
        kind: Option<&str>,
        after_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<SecurityEvent>, StoreError> {
        let rows = with_pool!(self, |p| {
            sqlx::query(
                "SELECT id, station_id, kind, occurred_at, tech_info, received_at FROM security_events \
                 WHERE tenant_id = $1 AND ($2 IS NULL OR station_id = $2) AND ($3 IS NULL OR kind = $3) \
                   AND ($4 IS NULL OR id > $4) ORDER BY id LIMIT $5",
            )
            .bind(tenant_id)
            .bind(station_id)
            .bind(kind)
            .bind(after_id)
            .bind(i64::from(limit))
            .fetch_all(p)
            .await?
            .into_iter()
            .map(|r| -> Result<SecurityEvent, sqlx::Error> {
                Ok(SecurityEvent {
                    id: r.try_get("id")?,
                    station_id: r.try_get("station_id")?,
                    kind: r.try_get("kind")?,
                    occurred_at: r.try_get("occurred_at")?,
                    tech_info: r.try_get("tech_info")?,
                    received_at: r.try_get("received_at")?,
                })
            })
            .collect::<Result<Vec<_>, _>>()?
        });
        Ok(rows)
    }

    // ---- certificate requests (A02/A03) ------------------------------------------

    pub async fn insert_cert_request(
        &self,
        tenant_id: &str,
        station_id: &str,
        origin: &str,
        state: &str,
        csr_pem: Option<&str>,
        now: i64,
    ) -> Result<i64, StoreError> {
        let id = with_pool!(self, |p| {
            sqlx::query(
                "INSERT INTO certificate_requests (tenant_id, station_id, origin, state, csr_pem, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING id",
            )
            .bind(tenant_id)
            .bind(station_id)
            .bind(origin)
            .bind(state)
            .bind(csr_pem)
            .bind(now)
            .fetch_one(p)
            .await?
            .try_get::<i64, _>("id")?
        });
        Ok(id)
    }

    /// Moves request `id` to `change.to` if it is in one of `from` (any state if
    /// `from` is empty; at most three). `None` fields keep their value. Returns
    /// whether it moved: concurrent deliveries claim a request this way.
    pub async fn update_cert_request(
        &self,
        id: i64,
        from: &[&str],
        change: RequestChange<'_>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let pick = |i: usize| from.get(i).copied().unwrap_or("");
        let n = with_pool!(self, |p| {
            sqlx::query(
                "UPDATE certificate_requests SET state = $1, csr_pem = COALESCE($2, csr_pem), \
                   serial_hex = COALESCE($3, serial_hex), detail = COALESCE($4, detail), updated_at = $5 \
                 WHERE id = $6 AND ($7 OR state = $8 OR state = $9 OR state = $10)",
            )
            .bind(change.to)
            .bind(change.csr_pem)
            .bind(change.serial_hex)
            .bind(change.detail)
            .bind(now)
            .bind(id)
            .bind(from.is_empty())
            .bind(pick(0))
            .bind(pick(1))
            .bind(pick(2))
            .execute(p)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// One request by id, within the tenant.
    pub async fn cert_request(&self, tenant_id: &str, id: i64) -> Result<Option<CertRequest>, StoreError> {
        Ok(self.cert_requests_where(tenant_id, None, Some(id), &[], 1).await?.into_iter().next())
    }

    /// A station's requests in one of `states` (at most four; oldest first).
    pub async fn cert_requests_in(
        &self,
        tenant_id: &str,
        station_id: &str,
        states: &[&str],
    ) -> Result<Vec<CertRequest>, StoreError> {
        let mut rows = self.cert_requests_where(tenant_id, Some(station_id), None, states, 100).await?;
        rows.reverse();
        Ok(rows)
    }

    /// A station's requests, newest first (at most `limit`).
    pub async fn cert_requests(
        &self,
        tenant_id: &str,
        station_id: &str,
        limit: u32,
    ) -> Result<Vec<CertRequest>, StoreError> {
        self.cert_requests_where(tenant_id, Some(station_id), None, &[], limit).await
    }

    async fn cert_requests_where(
        &self,
        tenant_id: &str,
        station_id: Option<&str>,
        id: Option<i64>,
        states: &[&str],
        limit: u32,
    ) -> Result<Vec<CertRequest>, StoreError> {
        let pick = |i: usize| states.get(i).copied().unwrap_or("");
        let rows = with_pool!(self, |p| {
            sqlx::query(
                "SELECT id, tenant_id, station_id, origin, state, csr_pem, serial_hex, detail, created_at, updated_at \
                 FROM certificate_requests WHERE tenant_id = $1 AND ($2 IS NULL OR station_id = $2) \
                   AND ($3 IS NULL OR id = $3) AND ($4 OR state = $5 OR state = $6 OR state = $7 OR state = $8) \
                 ORDER BY id DESC LIMIT $9",
            )
            .bind(tenant_id)
            .bind(station_id)
            .bind(id)
            .bind(states.is_empty())
            .bind(pick(0))
            .bind(pick(1))
            .bind(pick(2))
            .bind(pick(3))
            .bind(i64::from(limit))
            .fetch_all(p)
            .await?
            .into_iter()
            .map(|r| -> Result<CertRequest, sqlx::Error> {
                Ok(CertRequest {
                    id: r.try_get("id")?,
                    tenant_id: r.try_get("tenant_id")?,
                    station_id: r.try_get("station_id")?,
                    origin: r.try_get("origin")?,
                    state: r.try_get("state")?,
                    csr_pem: r.try_get("csr_pem")?,
                    serial_hex: r.try_get("serial_hex")?,
                    detail: r.try_get("detail")?,
                    created_at: r.try_get("created_at")?,
                    updated_at: r.try_get("updated_at")?,
                })
            })
            .collect::<Result<Vec<_>, _>>()?
        });
        Ok(rows)
    }

    /// Marks the station's other unrevoked certificates superseded by `serial`
    /// (first time only). Returns how many.
    pub async fn supersede_certificates(
        &self,
        tenant_id: &str,
        station_id: &str,
        serial_hex: &str,
        now: i64,
    ) -> Result<u64, StoreError> {
        let n = with_pool!(self, |p| {
            sqlx::query(
                "UPDATE certificates SET superseded_at = $1 WHERE tenant_id = $2 AND station_id = $3 \
                   AND serial_hex <> $4 AND revoked_at IS NULL AND superseded_at IS NULL AND issued_at <= \
                   (SELECT issued_at FROM certificates WHERE tenant_id = $2 AND serial_hex = $4)",
            )
            .bind(now)
            .bind(tenant_id)
            .bind(station_id)
            .bind(serial_hex)
            .execute(p)
            .await?
            .rows_affected()
        });
        Ok(n)
    }

    /// Revokes (reason superseded) every certificate superseded at or before
    /// `cutoff`. Returns (tenant, serial) of each.
    pub async fn revoke_superseded(&self, cutoff: i64, now: i64) -> Result<Vec<(String, String)>, StoreError> {
        let rows = with_pool!(self, |p| {
            sqlx::query(
                "UPDATE certificates SET revoked_at = $1, revocation_reason = 'superseded' \
                 WHERE revoked_at IS NULL AND superseded_at IS NOT NULL AND superseded_at <= $2 \
                 RETURNING tenant_id, serial_hex",
            )
            .bind(now)
            .bind(cutoff)
            .fetch_all(p)
            .await?
            .into_iter()
            .map(|r| -> Result<(String, String), sqlx::Error> {
                Ok((r.try_get("tenant_id")?, r.try_get("serial_hex")?))
            })
            .collect::<Result<Vec<_>, _>>()?
        });
        Ok(rows)
    }

    // ---- audit -------------------------------------------------------------------

    pub async fn insert_audit(&self, row: &AuditRow) -> Result<(), StoreError> {
        with_pool!(self, |p| {
            sqlx::query(
                "INSERT INTO audit_log (tenant_id, at, actor, role, method, path, status) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&row.tenant_id)
            .bind(row.at)
            .bind(&row.actor)
            .bind(&row.role)
            .bind(&row.method)
            .bind(&row.path)
            .bind(row.status)
            .execute(p)
            .await?;
        });
        Ok(())
    }

    pub async fn audit_page(
        &self,
        tenant_id: &str,
        after_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditRow>, StoreError> {
        let rows = with_pool!(self, |p| {
            sqlx::query(
                "SELECT id, tenant_id, at, actor, role, method, path, status FROM audit_log \
                 WHERE tenant_id = $1 AND ($2 IS NULL OR id > $2) ORDER BY id LIMIT $3",
            )
            .bind(tenant_id)
            .bind(after_id)
            .bind(i64::from(limit))
            .fetch_all(p)
            .await?
            .into_iter()
            .map(|r| -> Result<AuditRow, sqlx::Error> {
                Ok(AuditRow {
                    id: r.try_get("id")?,
                    tenant_id: r.try_get("tenant_id")?,
                    at: r.try_get("at")?,
                    actor: r.try_get("actor")?,
                    role: r.try_get("role")?,
                    method: r.try_get("method")?,
                    path: r.try_get("path")?,
                    status: r.try_get::<i64, _>("status").or_else(|_| r.try_get::<i32, _>("status").map(i64::from))?,
                })
            })
            .collect::<Result<Vec<_>, _>>()?
        });
        Ok(rows)
    }
}

const CERTIFICATE_COLUMNS: &str = "tenant_id, serial_hex, station_id, fingerprint, not_before, not_after, cert_pem, \
    issued_at, revoked_at, revocation_reason, issuer_id";

fn certificate_from_row<R>(r: &R) -> Result<CertificateRecord, sqlx::Error>
where
    R: Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(CertificateRecord {
        tenant_id: r.try_get("tenant_id")?,
        serial_hex: r.try_get("serial_hex")?,
        station_id: r.try_get("station_id")?,
        fingerprint: r.try_get("fingerprint")?,
        not_before: r.try_get("not_before")?,
        not_after: r.try_get("not_after")?,
        cert_pem: r.try_get("cert_pem")?,
        issued_at: r.try_get("issued_at")?,
        revoked_at: r.try_get("revoked_at")?,
        revocation_reason: r.try_get("revocation_reason")?,
        issuer_id: r.try_get("issuer_id")?,
    })
}

const STATION_COLUMNS: &str = "id, tenant_id, security_profile, password_hash, registration, enabled, description, boot_status, \
    vendor, model, serial_number, firmware_version, last_boot_at, last_heartbeat_at, last_seen_at, created_at, tags";

fn tenant_from_row<R>(r: &R) -> Result<Tenant, sqlx::Error>
where
    R: Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(Tenant {
        id: r.try_get("id")?,
        organization: r.try_get("organization")?,
        ocpp_hostname: r.try_get("ocpp_hostname")?,
        created_at: r.try_get("created_at")?,
    })
}

fn station_from_row<R>(r: &R) -> Result<Station, sqlx::Error>
where
    R: Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> bool: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let profile: i64 = r.try_get("security_profile")?;
    let registration: String = r.try_get("registration")?;
    Ok(Station {
        id: r.try_get("id")?,
        tenant_id: r.try_get("tenant_id")?,
        security_profile: u8::try_from(profile).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        password_hash: r.try_get("password_hash")?,
        registration: registration.parse().map_err(|e: String| sqlx::Error::Decode(e.into()))?,
        enabled: r.try_get("enabled")?,
        description: r.try_get("description")?,
        boot_status: r.try_get("boot_status")?,
        vendor: r.try_get("vendor")?,
        model: r.try_get("model")?,
        serial_number: r.try_get("serial_number")?,
        firmware_version: r.try_get("firmware_version")?,
        last_boot_at: r.try_get("last_boot_at")?,
        last_heartbeat_at: r.try_get("last_heartbeat_at")?,
        last_seen_at: r.try_get("last_seen_at")?,
        created_at: r.try_get("created_at")?,
        tags: serde_json::from_str(&r.try_get::<String, _>("tags")?).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
    })
}
