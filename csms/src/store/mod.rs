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
//!
//! One file per aggregate, each with its rows and its own `impl Store`:
//! `tenants`, `stations` (with tags and connector statuses), `credentials`
//! (CA material, station CA rotation and replacement), `certificates` (issued
//! station certificates, revocation, supersession), `cert_requests` (A02/A03),
//! `reports` (what stations report), `audit` and `settings` (platform settings
//! every issuer shares, such as the public URL).
//!
//! # Tenant scope
//!
//! A method that reads or changes one tenant's data takes the tenant and puts
//! it in its `WHERE` clause. These are deliberately platform-wide, each
//! documented with `Across tenants:`:
//! - [`Store::connect_facts`]: the gateway finds a station by its id alone,
//!   as the OCPP URL carries no tenant; [`Store::station_tenant`] does the same
//!   for the platform CLI and manufacturing-time enrollment, which name a
//!   station by its id alone;
//! - the tenants themselves: [`Store::create_tenant`], [`Store::tenant`],
//!   [`Store::tenants`], [`Store::tenants_page`];
//! - maintenance over every tenant: [`Store::revoked_since`] (sessions to close),
//!   [`Store::certificates_expiring`] (renewals), [`Store::revoke_superseded`],
//!   [`Store::overlapping_station_cas`] (renewals by a new CA), [`Store::release_claims`]
//!   and [`Store::stale_claims`] (certificate requests a dead process held);
//! - [`Store::settle_password`]: the gateway settles a pending password (A01) by
//!   the station id alone;
//! - platform settings: [`Store::setting`], [`Store::set_setting`];
//! - trust material of every tenant: [`Store::trusted_station_roots`] (the TLS
//!   client verifier), [`Store::credential_certs_named`], and
//!   [`Store::hsm_label_in_use`] (a PKCS#11 key belongs to one credential).

mod audit;
mod cert_requests;
mod certificates;
mod connect;
mod credentials;
mod reports;
mod settings;
mod stations;
mod tenants;

use std::borrow::Cow;
use std::path::Path;
use std::time::Duration;

use sqlx::Row;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

pub use audit::AuditRow;
pub use cert_requests::{CertRequest, CertRequestState, Claimant, ClaimedRequest, RequestChange};
pub use certificates::{CertificateQuery, CertificateRecord, CertificateRef, RevokedCertificate};
pub use connect::{ConnectFacts, PresentedCertificate};
pub use credentials::{CaOverlap, CaRow, CredentialCert, CredentialRecord, Retirement};
pub(crate) use reports::WriteConnection;
pub use reports::{BootRecord, SecurityEvent, StationWrite};
pub use settings::PUBLIC_URL;
pub use stations::{ConnectorStatus, NewStation, Registration, Station, StationQuery};
pub use tenants::Tenant;

/// Tenant id of platform-wide rows (the platform CSMS root, the server certificate).
pub const PLATFORM: &str = "*";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("creating the database file {path}: {source}")]
    File { path: String, source: std::io::Error },
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
    /// A caller asked for a move [`CertRequestState::may_become`] refuses: a bug
    /// in the caller, not a race (a race is a compare-and-set that does not move).
    #[error("a certificate request may not move from {from} to {to}")]
    IllegalTransition { from: CertRequestState, to: CertRequestState },
}

/// The SQL files of `migrations/sqlite/` and `migrations/postgres/` as
/// `(version, description, SQL)`, by version: `NNNN_some_name.sql` is version
/// NNNN, described "some name". Listed by `csms/build.rs`.
pub mod migrations {
    include!(concat!(env!("OUT_DIR"), "/migrations.rs"));
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
            $crate::store::Backend::Sqlite($pool) => $body,
            $crate::store::Backend::Postgres($pool) => $body,
        }
    };
}
use with_pool;

/// Migrations embedded in the binary. Databases created before the files were
/// discovered recorded version 1 as "sqlite" / "postgres"; sqlx checks an
/// applied migration by version and checksum only, so they open unchanged.
fn migrator(files: &[(i64, &'static str, &'static str)]) -> Migrator {
    let migrations = files
        .iter()
        .map(|&(version, description, sql)| {
            Migration::new(version, Cow::Borrowed(description), MigrationType::Simple, Cow::Borrowed(sql), false)
        })
        .collect();
    Migrator { migrations: Cow::Owned(migrations), ignore_missing: false, locking: true, no_tx: false }
}

/// SQLite `mmap_size`: none of the database file is read through a mapping.
/// In WAL mode a connection that finds the database changed by another one
/// unmaps and maps the whole file again before its next read: with a writer
/// committing every few milliseconds, every read on the other connections
/// paid an munmap (a TLB shootdown on every core), an mmap and page faults
/// (measured: one remap per connect in a ramp, 11 page faults per connect).
const SQLITE_MMAP_BYTES: u64 = 0;
/// SQLite `cache_size` as a negative number: KiB of page cache per connection.
const SQLITE_CACHE_KIB: i64 = -16 * 1024;
/// SQLite `wal_autocheckpoint`: WAL pages (4 KiB) between checkpoints (default 1000).
const SQLITE_CHECKPOINT_PAGES: u32 = 4000;

/// SQLITE_BUSY (5) or SQLITE_LOCKED (6), primary or extended.
fn sqlite_busy(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().is_some_and(|c| {
        let primary = c.parse::<i32>().map(|n| n & 0xff).unwrap_or(0);
        primary == 5 || primary == 6
    }))
}

fn unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// Creates an empty database file readable by its owner only, unless one
/// exists: SQLite creates its WAL and shared-memory files with the database
/// file's mode, so all three hold password hashes and sealed keys at 0600.
fn create_private(path: &str) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    if path.is_empty() || path == ":memory:" || path.starts_with(':') {
        return Ok(());
    }
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::File { path: path.to_owned(), source: e }),
    }
}

/// `$first, $first+1, ...`: `count` placeholders for an `IN (...)` list.
fn placeholders(first: usize, count: usize) -> String {
    (first..first + count).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

impl Store {
    /// Opens (creating if needed) the database at `url` and applies migrations.
    /// `sqlite://PATH` or `postgres://...`.
    pub async fn open(url: &str, max_connections: u32) -> Result<Store, StoreError> {
        let backend = if let Some(path) = url.strip_prefix("sqlite://") {
            create_private(path.split('?').next().unwrap_or(path))?;
            let opts = SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // FULL: a commit survives power loss, not only a process crash.
                .synchronous(SqliteSynchronous::Full)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10))
                // No mapping (see SQLITE_MMAP_BYTES), and a larger page cache per
                // connection: the group commit touches one index page per station
                // it writes for.
                .pragma("mmap_size", SQLITE_MMAP_BYTES.to_string())
                .pragma("cache_size", SQLITE_CACHE_KIB.to_string())
                // Checkpoints copy each page changed since the last one once, so
                // fewer, larger ones copy a page changed many times fewer times.
                .pragma("wal_autocheckpoint", SQLITE_CHECKPOINT_PAGES.to_string());
            // Switching a new database to WAL takes an exclusive lock; when several
            // processes open it at once, SQLite answers SQLITE_BUSY at once to all but
            // one (a lock upgrade it will not wait for), so the open is retried.
            let mut attempt: u32 = 0;
            let pool = loop {
                // No ping before each acquire: the database is a local file, and
                // a ping is one more round trip to the connection's worker thread
                // per statement.
                let options =
                    SqlitePoolOptions::new().max_connections(max_connections.max(1)).test_before_acquire(false);
                match options.connect_with(opts.clone()).await {
                    Ok(pool) => break pool,
                    Err(e) if attempt < 20 && sqlite_busy(&e) => {
                        attempt += 1;
                        // Spread by process so that the retries do not collide again.
                        let spread = u64::from(std::process::id() % 13);
                        tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt) + spread)).await;
                    }
                    Err(e) => return Err(e.into()),
                }
            };
            let migrations = migrator(migrations::SQLITE);
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
            migrator(migrations::POSTGRES).run(&pool).await?;
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

    /// SQLite: copies what the WAL holds into the database file and syncs it
    /// (a passive checkpoint: it neither waits for nor blocks writers or
    /// readers). Run off the commit path, so that the commit that crosses
    /// `wal_autocheckpoint` finds little left to copy and sync, instead of
    /// doing the whole copy and the database file's fsync while every report
    /// behind it waits. Returns (frames in the WAL, frames now in the
    /// database file), both -1 when another checkpoint was running;
    /// PostgreSQL: `None`.
    pub async fn checkpoint(&self) -> Result<Option<(i64, i64)>, StoreError> {
        match &self.backend {
            Backend::Sqlite(p) => {
                let row = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(p).await?;
                Ok(Some((row.try_get(1)?, row.try_get(2)?)))
            }
            Backend::Postgres(_) => Ok(None),
        }
    }

    /// Cheap round trip for readiness probes.
    pub async fn ping(&self) -> Result<(), StoreError> {
        with_pool!(self, |p| {
            sqlx::query("SELECT 1").execute(p).await?;
        });
        Ok(())
    }

    /// Closes the pool; waits until every connection taken from it is back,
    /// so a holder of one (the group commit's [`WriteConnection`]) lets go on
    /// [`Store::close_event`].
    pub async fn close(&self) {
        with_pool!(self, |p| p.close().await)
    }

    /// The most connections the pool opens.
    pub fn max_connections(&self) -> u32 {
        with_pool!(self, |p| p.options().get_max_connections())
    }

    /// Completes when [`Store::close`] is called.
    pub fn close_event(&self) -> sqlx::pool::CloseEvent {
        with_pool!(self, |p| p.close_event())
    }
}
