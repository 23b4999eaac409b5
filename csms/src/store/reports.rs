//! What stations report: boots, heartbeats, connector statuses and the
//! certificates issued to them, persisted through [`Store::apply_writes`];
//! messages kept verbatim; security events.

use serde::Serialize;
use sqlx::Row;

use super::{CertificateRecord, ConnectorStatus, Registration, Store, StoreError, with_pool};

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
    /// With `Some(n)`: in the same transaction, the station's boot records
    /// beyond the newest `n` (this one included) are deleted.
    pub keep_last: Option<u32>,
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
        /// With `Some(n)`: in the same transaction, the station's oldest
        /// messages are deleted until the newest ones (this one included)
        /// total at most `n` payload bytes.
        prune_to: Option<i64>,
    },
    SecurityEvent {
        tenant_id: String,
        station_id: String,
        kind: String,
        occurred_at: i64,
        tech_info: Option<String>,
        at: i64,
    },
    /// A certificate just issued (before it is handed out), recorded as it is.
    Certificate(Box<CertificateRecord>),
}

/// A SecurityEventNotification as stored.
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

impl Store {
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
                        if let Some(keep) = b.keep_last {
                            // The id of the newest record beyond `keep`, and every older one.
                            sqlx::query(
                                "DELETE FROM boot_notifications WHERE tenant_id = $1 AND station_id = $2 AND id <= \
                                 (SELECT id FROM boot_notifications WHERE tenant_id = $1 AND station_id = $2 \
                                 ORDER BY id DESC LIMIT 1 OFFSET $3)",
                            )
                            .bind(&b.tenant_id)
                            .bind(&b.station_id)
                            .bind(i64::from(keep))
                            .execute(&mut *tx)
                            .await?;
                        }
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
                    StationWrite::Message { tenant_id, station_id, action, payload, at, prune_to } => {
                        sqlx::query(
                            "INSERT INTO station_messages (tenant_id, station_id, action, received_at, payload, \
                               payload_bytes) VALUES ($1, $2, $3, $4, $5, $6)",
                        )
                        .bind(tenant_id)
                        .bind(station_id)
                        .bind(*action)
                        .bind(at)
                        .bind(payload)
                        .bind(i64::try_from(payload.len()).unwrap_or(i64::MAX))
                        .execute(&mut *tx)
                        .await?;
                        if let Some(keep_bytes) = prune_to {
                            // Newest first, a running total; the rows beyond the quota go.
                            sqlx::query(
                                "DELETE FROM station_messages WHERE id IN (SELECT id FROM (SELECT id, \
                                   SUM(payload_bytes) OVER (ORDER BY id DESC) AS newer FROM station_messages \
                                   WHERE tenant_id = $1 AND station_id = $2) AS t WHERE newer > $3)",
                            )
                            .bind(tenant_id)
                            .bind(station_id)
                            .bind(keep_bytes)
                            .execute(&mut *tx)
                            .await?;
                        }
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
                               cert_pem, issued_at, revoked_at, revocation_reason, issuer_id) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
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
                        .bind(&c.revocation_reason)
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

    /// How many messages of `action` the station sent that are kept verbatim.
    /// How many BootNotifications of the station are kept.
    pub async fn boot_count(&self, tenant_id: &str, station_id: &str) -> Result<i64, StoreError> {
        let sql = "SELECT COUNT(*) AS n FROM boot_notifications WHERE tenant_id = $1 AND station_id = $2";
        self.station_number(sql, tenant_id, station_id, None).await
    }

    pub async fn station_message_count(
        &self,
        tenant_id: &str,
        station_id: &str,
        action: &str,
    ) -> Result<i64, StoreError> {
        let sql = "SELECT COUNT(*) AS n FROM station_messages WHERE tenant_id = $1 AND station_id = $2 AND action = $3";
        self.station_number(sql, tenant_id, station_id, Some(action)).await
    }

    /// Payload bytes of the station's messages kept verbatim.
    pub async fn station_message_bytes(&self, tenant_id: &str, station_id: &str) -> Result<i64, StoreError> {
        let sql = "SELECT CAST(COALESCE(SUM(payload_bytes), 0) AS BIGINT) AS n FROM station_messages \
                   WHERE tenant_id = $1 AND station_id = $2";
        self.station_number(sql, tenant_id, station_id, None).await
    }

    /// One number about a station: `sql` selects it as `n`, with the tenant as
    /// `$1`, the station as `$2` and `extra`, if given, as `$3`.
    async fn station_number(
        &self,
        sql: &str,
        tenant_id: &str,
        station_id: &str,
        extra: Option<&str>,
    ) -> Result<i64, StoreError> {
        let n = with_pool!(self, |p| {
            let mut q = sqlx::query(sql).bind(tenant_id).bind(station_id);
            if let Some(extra) = extra {
                q = q.bind(extra);
            }
            q.fetch_one(p).await?.try_get::<i64, _>("n")?
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
}
