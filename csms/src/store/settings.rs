//! Platform settings that every process issuing on the platform's behalf must
//! share: the serving node records them at start-up, the command line reads
//! them. Platform-wide by nature (no tenant).

use sqlx::Row;

use super::{Store, StoreError, with_pool};

/// The base URL under which CRLs and OCSP are published
/// ([`crate::config::Config::public_url`]), as the serving node last recorded it.
pub const PUBLIC_URL: &str = "public_url";

impl Store {
    /// Across tenants: a platform setting, if recorded.
    pub async fn setting(&self, name: &str) -> Result<Option<String>, StoreError> {
        let value = with_pool!(self, |p| {
            sqlx::query("SELECT value FROM settings WHERE name = $1")
                .bind(name)
                .fetch_optional(p)
                .await?
                .map(|r| r.try_get::<String, _>("value"))
                .transpose()?
        });
        Ok(value)
    }

    /// Across tenants: records a platform setting; the previous value, if any.
    pub async fn set_setting(&self, name: &str, value: &str, now: i64) -> Result<Option<String>, StoreError> {
        let previous = self.setting(name).await?;
        with_pool!(self, |p| {
            sqlx::query(
                "INSERT INTO settings (name, value, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            )
            .bind(name)
            .bind(value)
            .bind(now)
            .execute(p)
            .await
            .map(|_| ())?
        });
        Ok(previous)
    }
}
