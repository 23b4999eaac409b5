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

/// The statements of `$plan` (a [`WritePlan`]), one after the other, each
/// pushed into the `QueryBuilder` `$q` and then run by `$after` (build,
/// execute, reset): one body for both backends, in a transaction or not.
macro_rules! plan_statements {
    ($plan:ident, $q:ident, $after:block) => {{
        let plan = &$plan;
        for c in &plan.certificates {
            $q.push(
                "INSERT INTO certificates (tenant_id, serial_hex, station_id, fingerprint, not_before, not_after, \
                   cert_pem, issued_at, revoked_at, revocation_reason, issuer_id) ",
            );
            $q.push_values(std::iter::once(c), |mut row, c| {
                row.push_bind(c.tenant_id.as_str())
                    .push_bind(c.serial_hex.as_str())
                    .push_bind(c.station_id.as_str())
                    .push_bind(c.fingerprint.as_str())
                    .push_bind(c.not_before)
                    .push_bind(c.not_after)
                    .push_bind(c.cert_pem.as_str())
                    .push_bind(c.issued_at)
                    .push_bind(c.revoked_at)
                    .push_bind(c.revocation_reason.as_deref())
                    .push_bind(c.issuer_id.as_deref());
            });
            $after
        }
        for rows in statement_chunks(&plan.boots) {
            $q.push("INSERT INTO boot_notifications (tenant_id, station_id, received_at, reason, status, payload) ");
            $q.push_values(rows, |mut row, b| {
                row.push_bind(b.tenant_id.as_str())
                    .push_bind(b.station_id.as_str())
                    .push_bind(b.received_at)
                    .push_bind(b.reason.as_str())
                    .push_bind(b.status.as_str())
                    .push_bind(b.payload.as_str());
            });
            $after
        }
        for rows in statement_chunks(&plan.boot_history) {
            // Each station's records beyond its newest `keep`, newest first.
            $q.push(
                "DELETE FROM boot_notifications WHERE id IN (SELECT t.id FROM (SELECT b.id, \
                   ROW_NUMBER() OVER (PARTITION BY b.tenant_id, b.station_id ORDER BY b.id DESC) AS rn, \
                   v.column3 AS keep FROM boot_notifications b JOIN (",
            );
            $q.push_values(rows, |mut row, &(tenant_id, station_id, keep)| {
                row.push_bind(tenant_id).push_bind(station_id).push_bind(i64::from(keep));
            });
            $q.push(") AS v ON b.tenant_id = v.column1 AND b.station_id = v.column2) AS t WHERE t.rn > t.keep)");
            $after
        }
        for rows in statement_chunks(&plan.booted) {
            $q.push(
                "UPDATE stations SET boot_status = v.column3, vendor = v.column4, model = v.column5, \
                 serial_number = v.column6, firmware_version = v.column7, last_boot_at = v.column8, \
                 last_seen_at = CASE WHEN stations.last_seen_at IS NULL OR stations.last_seen_at < v.column9 \
                 THEN v.column9 ELSE stations.last_seen_at END FROM (",
            );
            $q.push_values(rows, |mut row, &(b, seen)| {
                row.push_bind(b.tenant_id.as_str())
                    .push_bind(b.station_id.as_str())
                    .push_bind(b.status.as_str())
                    .push_bind(b.vendor.as_str())
                    .push_bind(b.model.as_str())
                    .push_bind(b.serial_number.as_deref())
                    .push_bind(b.firmware_version.as_deref())
                    .push_bind(b.received_at)
                    .push_bind(seen);
            });
            $q.push(") AS v WHERE stations.tenant_id = v.column1 AND stations.id = v.column2");
            $after
        }
        for rows in statement_chunks(&plan.heartbeats) {
            // VALUES columns are column1.. in SQLite and PostgreSQL alike.
            $q.push(
                "UPDATE stations SET last_heartbeat_at = v.column3, last_seen_at = CASE \
                 WHEN stations.last_seen_at IS NULL OR stations.last_seen_at < v.column3 THEN v.column3 \
                 ELSE stations.last_seen_at END FROM (",
            );
            $q.push_values(rows, |mut row, &(tenant_id, station_id, at)| {
                row.push_bind(tenant_id).push_bind(station_id).push_bind(at);
            });
            $q.push(") AS v WHERE stations.tenant_id = v.column1 AND stations.id = v.column2");
            $after
        }
        for rows in statement_chunks(&plan.statuses) {
            $q.push(
                "INSERT INTO connector_statuses \
                 (tenant_id, station_id, evse_id, connector_id, status, reported_at, received_at) ",
            );
            $q.push_values(rows, |mut row, &(tenant_id, station_id, s)| {
                row.push_bind(tenant_id)
                    .push_bind(station_id)
                    .push_bind(s.evse_id)
                    .push_bind(s.connector_id)
                    .push_bind(s.status.as_str())
                    .push_bind(s.reported_at)
                    .push_bind(s.received_at);
            });
            $q.push(
                " ON CONFLICT (station_id, evse_id, connector_id) DO UPDATE SET status = excluded.status, \
                 reported_at = excluded.reported_at, received_at = excluded.received_at, \
                 tenant_id = excluded.tenant_id",
            );
            $after
        }
        for rows in statement_chunks(&plan.messages) {
            $q.push(
                "INSERT INTO station_messages (tenant_id, station_id, action, received_at, payload, payload_bytes) ",
            );
            $q.push_values(rows, |mut row, m: &MessageRow<'_>| {
                row.push_bind(m.tenant_id)
                    .push_bind(m.station_id)
                    .push_bind(m.action)
                    .push_bind(m.at)
                    .push_bind(m.payload)
                    .push_bind(i64::try_from(m.payload.len()).unwrap_or(i64::MAX));
            });
            $after
        }
        // After every insert of the group: a station has one call in flight at
        // a time, so a group holds at most one message to keep per station.
        for m in plan.messages.iter().filter(|m| m.prune_to.is_some()) {
            // Newest first, a running total; the rows beyond the quota go.
            $q.push(
                "DELETE FROM station_messages WHERE id IN (SELECT id FROM (SELECT id, \
                   SUM(payload_bytes) OVER (ORDER BY id DESC) AS newer FROM station_messages \
                   WHERE tenant_id = ",
            );
            $q.push_bind(m.tenant_id).push(" AND station_id = ").push_bind(m.station_id);
            $q.push(") AS t WHERE newer > ").push_bind(m.prune_to).push(")");
            $after
        }
        for rows in statement_chunks(&plan.security_events) {
            $q.push("INSERT INTO security_events (tenant_id, station_id, kind, occurred_at, tech_info, received_at) ");
            $q.push_values(rows, |mut row, e: &SecurityEventRow<'_>| {
                row.push_bind(e.tenant_id)
                    .push_bind(e.station_id)
                    .push_bind(e.kind)
                    .push_bind(e.occurred_at)
                    .push_bind(e.tech_info)
                    .push_bind(e.at);
            });
            $after
        }
    }};
}

impl Store {
    /// Applies station reports in one transaction: one commit (one fsync) for
    /// the whole group; a group that comes to a single statement runs alone,
    /// which commits it as durably. Used through
    /// [`crate::group_commit::GroupCommit`].
    ///
    /// Reports of one kind go in multi-row statements (a few per group, not
    /// one per report): boots and certificates first, then heartbeats, then
    /// connector statuses, messages and security events. Within a group, every
    /// boot is recorded, but a station's row takes its latest boot and its
    /// latest heartbeat, and each connector its latest status (the result of
    /// writing them one by one); `last_seen_at` never moves back.
    pub async fn apply_writes(&self, writes: &[StationWrite]) -> Result<(), StoreError> {
        if writes.is_empty() {
            return Ok(());
        }
        // The connection goes back to the pool afterwards; the group commit's
        // writer keeps its own.
        self.write_connection().await?.apply_writes(writes).await
    }

    /// A connection for one writer to keep across many [`WriteConnection::apply_writes`]:
    /// the group commit's task holds one, so a group costs no checkout from
    /// the pool and none of the pool's test of a connection on every return
    /// (a round trip to the database thread each).
    pub(crate) async fn write_connection(&self) -> Result<WriteConnection, StoreError> {
        Ok(match &self.backend {
            super::Backend::Sqlite(p) => WriteConnection(WriteConn::Sqlite(p.acquire().await?)),
            super::Backend::Postgres(p) => WriteConnection(WriteConn::Postgres(p.acquire().await?)),
        })
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

/// The group `$plan` of `$n` statements on the pool connection `$c`: alone
/// when it is one statement, otherwise in a transaction (rolled back if this
/// is dropped half-way).
macro_rules! group_on {
    ($c:ident, $plan:ident, $n:ident, $db:ty) => {{
        let mut q = sqlx::QueryBuilder::<$db>::new("");
        if $n == 1 {
            plan_statements!($plan, q, {
                q.build().execute(&mut **$c).await?;
                q.reset();
            });
        } else {
            let mut tx = sqlx::Connection::begin(&mut **$c).await?;
            plan_statements!($plan, q, {
                q.build().execute(&mut *tx).await?;
                q.reset();
            });
            tx.commit().await?;
        }
    }};
}

/// A connection held by one writer; see [`Store::write_connection`].
pub(crate) struct WriteConnection(WriteConn);

enum WriteConn {
    Sqlite(sqlx::pool::PoolConnection<sqlx::Sqlite>),
    Postgres(sqlx::pool::PoolConnection<sqlx::Postgres>),
}

impl std::fmt::Debug for WriteConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            WriteConn::Sqlite(_) => "WriteConnection(sqlite)",
            WriteConn::Postgres(_) => "WriteConnection(postgres)",
        })
    }
}

impl WriteConnection {
    /// What [`Store::apply_writes`] does, on this connection. A group that
    /// comes to a single statement (one certificate record, one heartbeat)
    /// runs without BEGIN and COMMIT, which commits it as durably in one round
    /// trip to the database instead of three.
    pub(crate) async fn apply_writes(&mut self, writes: &[StationWrite]) -> Result<(), StoreError> {
        let plan = WritePlan::of(writes);
        let n = plan.statements();
        if n == 0 {
            return Ok(());
        }
        match &mut self.0 {
            WriteConn::Sqlite(c) => group_on!(c, plan, n, sqlx::Sqlite),
            WriteConn::Postgres(c) => group_on!(c, plan, n, sqlx::Postgres),
        }
        Ok(())
    }
}

/// A verbatim message of a group, borrowed from its [`StationWrite`].
struct MessageRow<'a> {
    tenant_id: &'a str,
    station_id: &'a str,
    action: &'static str,
    payload: &'a str,
    at: i64,
    prune_to: Option<i64>,
}

/// A security event of a group, borrowed from its [`StationWrite`].
struct SecurityEventRow<'a> {
    tenant_id: &'a str,
    station_id: &'a str,
    kind: &'a str,
    occurred_at: i64,
    tech_info: Option<&'a str>,
    at: i64,
}

/// A group of writes sorted by kind, as [`Store::apply_writes`] applies them.
#[derive(Default)]
struct WritePlan<'a> {
    certificates: Vec<&'a CertificateRecord>,
    /// Every boot, in arrival order (each is kept).
    boots: Vec<&'a BootRecord>,
    /// The latest boot of each station, what its row shows, with the latest
    /// time any of its boots in the group was received (`last_seen_at`).
    booted: Vec<(&'a BootRecord, i64)>,
    /// (tenant, station, keep) for each station whose latest boot bounds its
    /// history. The latest boot's bound applies to the group: every boot of a
    /// station carries the same one (`boot_history_per_station`).
    boot_history: Vec<(&'a str, &'a str, u32)>,
    /// (tenant, station, at): the latest heartbeat of each station.
    heartbeats: Vec<(&'a str, &'a str, i64)>,
    /// The latest status of each connector, in arrival order otherwise.
    statuses: Vec<(&'a str, &'a str, &'a ConnectorStatus)>,
    messages: Vec<MessageRow<'a>>,
    security_events: Vec<SecurityEventRow<'a>>,
}

impl<'a> WritePlan<'a> {
    /// How many statements `plan_statements!` runs for this plan.
    fn statements(&self) -> usize {
        self.certificates.len()
            + statement_chunks(&self.boots).count()
            + statement_chunks(&self.boot_history).count()
            + statement_chunks(&self.booted).count()
            + statement_chunks(&self.heartbeats).count()
            + statement_chunks(&self.statuses).count()
            + statement_chunks(&self.messages).count()
            + self.messages.iter().filter(|m| m.prune_to.is_some()).count()
            + statement_chunks(&self.security_events).count()
    }

    fn of(writes: &'a [StationWrite]) -> WritePlan<'a> {
        use std::collections::HashMap;
        let mut plan = WritePlan::default();
        let mut heartbeat_of: HashMap<(&str, &str), usize> = HashMap::new();
        let mut status_of: HashMap<(&str, i64, i64), usize> = HashMap::new();
        let mut boot_of: HashMap<(&str, &str), usize> = HashMap::new();
        for w in writes {
            match w {
                StationWrite::Certificate(c) => plan.certificates.push(c),
                StationWrite::Boot(b) => {
                    plan.boots.push(b);
                    match boot_of.get(&(b.tenant_id.as_str(), b.station_id.as_str())) {
                        Some(&i) => plan.booted[i] = (b, plan.booted[i].1.max(b.received_at)),
                        None => {
                            boot_of.insert((&b.tenant_id, &b.station_id), plan.booted.len());
                            plan.booted.push((b, b.received_at));
                        }
                    }
                }
                StationWrite::Heartbeat { tenant_id, station_id, at } => {
                    match heartbeat_of.get(&(tenant_id.as_str(), station_id.as_str())) {
                        Some(&i) => plan.heartbeats[i].2 = plan.heartbeats[i].2.max(*at),
                        None => {
                            heartbeat_of.insert((tenant_id, station_id), plan.heartbeats.len());
                            plan.heartbeats.push((tenant_id, station_id, *at));
                        }
                    }
                }
                StationWrite::ConnectorStatus { tenant_id, station_id, status } => {
                    // The table's key: station ids are unique platform-wide.
                    let key = (station_id.as_str(), status.evse_id, status.connector_id);
                    match status_of.get(&key) {
                        Some(&i) => plan.statuses[i] = (tenant_id, station_id, status),
                        None => {
                            status_of.insert(key, plan.statuses.len());
                            plan.statuses.push((tenant_id, station_id, status));
                        }
                    }
                }
                StationWrite::Message { tenant_id, station_id, action, payload, at, prune_to } => {
                    plan.messages.push(MessageRow {
                        tenant_id,
                        station_id,
                        action,
                        payload,
                        at: *at,
                        prune_to: *prune_to,
                    });
                }
                StationWrite::SecurityEvent { tenant_id, station_id, kind, occurred_at, tech_info, at } => {
                    plan.security_events.push(SecurityEventRow {
                        tenant_id,
                        station_id,
                        kind,
                        occurred_at: *occurred_at,
                        tech_info: tech_info.as_deref(),
                        at: *at,
                    });
                }
            }
        }
        plan.boot_history = plan
            .booted
            .iter()
            .filter_map(|(b, _)| Some((b.tenant_id.as_str(), b.station_id.as_str(), b.keep_last?)))
            .collect();
        plan
    }
}

/// Rows per multi-row statement. A few fixed sizes keep the number of
/// distinct statements (each prepared once and cached per connection) small,
/// and a small group few statements (each a round trip to the database: 7
/// rows are 4 + 2 + 1); the largest stays far below SQLite's 32,766 bound
/// parameters.
const CHUNK_SIZES: [usize; 6] = [256, 32, 8, 4, 2, 1];

/// `items` cut into pieces of [`CHUNK_SIZES`], largest first.
fn statement_chunks<T>(mut items: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        let size = CHUNK_SIZES.iter().copied().find(|&n| n <= items.len())?;
        let (chunk, rest) = items.split_at(size);
        items = rest;
        Some(chunk)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_everything_in_order_with_few_sizes() {
        for n in [0usize, 1, 7, 8, 9, 31, 32, 33, 255, 256, 300, 1000] {
            let items: Vec<usize> = (0..n).collect();
            let chunks: Vec<&[usize]> = statement_chunks(&items).collect();
            assert!(chunks.iter().all(|c| CHUNK_SIZES.contains(&c.len())), "{n}: {chunks:?}");
            assert_eq!(chunks.concat(), items, "{n}");
        }
        assert_eq!(statement_chunks(&[0u8; 300]).map(<[u8]>::len).collect::<Vec<_>>(), [256, 32, 8, 4]);
        assert_eq!(statement_chunks(&[0u8; 7]).map(<[u8]>::len).collect::<Vec<_>>(), [4, 2, 1]);
    }

    fn status(evse: i64, status: &str, at: i64) -> ConnectorStatus {
        ConnectorStatus { evse_id: evse, connector_id: 1, status: status.into(), reported_at: at, received_at: at }
    }

    #[test]
    fn plan_keeps_the_latest_heartbeat_and_status_of_each() {
        let hb = |s: &str, at| StationWrite::Heartbeat { tenant_id: "t".into(), station_id: s.into(), at };
        let cs =
            |s: &str, st| StationWrite::ConnectorStatus { tenant_id: "t".into(), station_id: s.into(), status: st };
        let writes = [
            hb("A", 5),
            cs("A", status(1, "Occupied", 1)),
            hb("B", 3),
            hb("A", 9),
            cs("A", status(2, "Available", 2)),
            hb("A", 7),
            cs("A", status(1, "Available", 3)),
        ];
        let plan = WritePlan::of(&writes);
        assert_eq!(plan.heartbeats, [("t", "A", 9), ("t", "B", 3)]);
        let statuses: Vec<(i64, &str)> = plan.statuses.iter().map(|(_, _, s)| (s.evse_id, s.status.as_str())).collect();
        assert_eq!(statuses, [(1, "Available"), (2, "Available")]);
    }

    /// A boot of station `s` at `at`, its vendor saying when.
    fn boot(s: &str, at: i64, keep: Option<u32>) -> StationWrite {
        StationWrite::Boot(BootRecord {
            tenant_id: "t".into(),
            station_id: s.into(),
            received_at: at,
            reason: "PowerUp".into(),
            status: Registration::Accepted,
            vendor: format!("v{at}"),
            model: "m".into(),
            serial_number: Some("sn".into()),
            firmware_version: None,
            payload: "{}".into(),
            keep_last: keep,
        })
    }

    #[test]
    fn plan_records_every_boot_and_shows_the_latest() {
        let writes = [boot("A", 1, Some(5)), boot("B", 2, None), boot("A", 3, Some(2)), boot("C", 4, Some(1))];
        let plan = WritePlan::of(&writes);
        assert_eq!(plan.boots.iter().map(|b| b.received_at).collect::<Vec<_>>(), [1, 2, 3, 4]);
        let shown: Vec<(&str, &str, i64)> =
            plan.booted.iter().map(|(b, seen)| (b.station_id.as_str(), b.vendor.as_str(), *seen)).collect();
        assert_eq!(shown, [("A", "v3", 3), ("B", "v2", 2), ("C", "v4", 4)]);
        assert_eq!(plan.boot_history, [("t", "A", 2), ("t", "C", 1)]);
        let late = [boot("A", 9, None), boot("A", 8, None)];
        let plan = WritePlan::of(&late);
        assert_eq!(plan.booted.iter().map(|(b, seen)| (b.received_at, *seen)).collect::<Vec<_>>(), [(8, 9)]);
        assert!(plan.boot_history.is_empty());
        // Two boots of a station: one insert of two rows and the row update,
        // no history bound.
        assert_eq!(plan.statements(), 2);
        // Four boots of three stations, two bounded: one insert (4 rows), one
        // trim (2), two updates (2 + 1).
        assert_eq!(WritePlan::of(&writes).statements(), 4);
    }

    /// What `plan_statements!` runs for `writes`, counted as it runs them.
    fn statements_run(writes: &[StationWrite]) -> usize {
        let plan = WritePlan::of(writes);
        let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new("");
        let mut n = 0;
        plan_statements!(plan, q, {
            n += 1;
            q.reset();
        });
        n
    }

    /// Only a plan of exactly one statement runs outside a transaction.
    #[test]
    fn statements_are_counted_as_they_are_run() {
        let mixed = mixed_group();
        for writes in [&mixed[..], &mixed[..1], &mixed[4..9], &mixed[9..], &[]] {
            assert_eq!(WritePlan::of(writes).statements(), statements_run(writes), "{writes:?}");
        }
        let hb = |s: &str| StationWrite::Heartbeat { tenant_id: "t".into(), station_id: s.into(), at: 1 };
        assert_eq!(WritePlan::of(&[]).statements(), 0);
        assert_eq!(WritePlan::of(&[hb("A")]).statements(), 1);
        // 40 stations: chunks of 32 and 8.
        let many: Vec<StationWrite> = (0..40).map(|i| hb(&format!("S{i}"))).collect();
        assert_eq!(WritePlan::of(&many).statements(), 2);
        let message = |prune_to| StationWrite::Message {
            tenant_id: "t".into(),
            station_id: "A".into(),
            action: "MeterValues",
            payload: "{}".into(),
            at: 1,
            prune_to,
        };
        assert_eq!(WritePlan::of(&[message(None)]).statements(), 1);
        assert_eq!(WritePlan::of(&[message(Some(10))]).statements(), 2);
        assert_eq!(WritePlan::of(&[hb("A"), message(None)]).statements(), 2);
    }

    /// A fresh store for the writer tests: SQLite in `dir`, or a new
    /// PostgreSQL database (`ANCHORPOINT_TEST_PG_URL`, as the store tests).
    async fn fresh(dir: &std::path::Path, postgres: bool) -> Store {
        let url = if postgres {
            use sqlx::Connection;
            let base = std::env::var("ANCHORPOINT_TEST_PG_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
            let name = format!("ap_writer_{}_{}", std::process::id(), nanos % 1_000_000_000_000);
            let mut c = sqlx::PgConnection::connect(&base)
                .await
                .unwrap_or_else(|e| panic!("PostgreSQL at {base} is required: {e}"));
            sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut c).await.unwrap();
            format!("{}/{name}", base.rsplit_once('/').unwrap().0)
        } else {
            Store::sqlite_url(dir)
        };
        let s = Store::open(&url, 4).await.unwrap();
        s.create_tenant("t", "T", None, 1).await.unwrap();
        for id in ["A", "B"] {
            let station = crate::store::NewStation {
                id: id.into(),
                tenant_id: "t".into(),
                security_profile: 3,
                password_hash: None,
                registration: Registration::Accepted,
                description: None,
                tags: Vec::new(),
            };
            s.create_station(&station, 1).await.unwrap();
        }
        s
    }

    /// Every kind of report in one group, some of them twice.
    fn mixed_group() -> Vec<StationWrite> {
        let boot = |s: &str, at: i64| boot(s, at, Some(2));
        let message = |at: i64, prune_to| StationWrite::Message {
            tenant_id: "t".into(),
            station_id: "A".into(),
            action: "MeterValues",
            payload: "x".repeat(100),
            at,
            prune_to,
        };
        let mut writes = vec![boot("A", 1), boot("A", 2), boot("B", 3), boot("A", 4)];
        for at in 5..9 {
            writes.push(message(at, None));
        }
        writes.push(message(9, Some(250)));
        writes.push(StationWrite::Heartbeat { tenant_id: "t".into(), station_id: "B".into(), at: 10 });
        writes.push(StationWrite::ConnectorStatus {
            tenant_id: "t".into(),
            station_id: "A".into(),
            status: status(1, "Occupied", 11),
        });
        writes.push(StationWrite::SecurityEvent {
            tenant_id: "t".into(),
            station_id: "A".into(),
            kind: "StartupOfTheDevice".into(),
            occurred_at: 12,
            tech_info: Some("i".into()),
            at: 12,
        });
        writes.push(StationWrite::Certificate(Box::new(certificate("0C"))));
        writes
    }

    fn certificate(serial: &str) -> CertificateRecord {
        CertificateRecord {
            tenant_id: "t".into(),
            serial_hex: serial.into(),
            station_id: "A".into(),
            fingerprint: format!("fp-{serial}"),
            not_before: 1,
            not_after: 2,
            cert_pem: "PEM".into(),
            issued_at: 1,
            revoked_at: None,
            revocation_reason: None,
            issuer_id: Some("ca".into()),
        }
    }

    /// What a group leaves in the store, as the API would read it.
    async fn state(s: &Store) -> String {
        let mut out = String::new();
        for id in ["A", "B"] {
            out += &format!(
                "{:?} boots {} statuses {:?} messages {} bytes {}\n",
                s.station("t", id).await.unwrap(),
                s.boot_count("t", id).await.unwrap(),
                s.connector_statuses("t", id).await.unwrap(),
                s.station_message_count("t", id, "MeterValues").await.unwrap(),
                s.station_message_bytes("t", id).await.unwrap(),
            );
        }
        out += &format!("{:?}\n", s.security_events("t", None).await.unwrap());
        out += &format!("{:?}\n", s.certificate("t", "0C").await.unwrap());
        out
    }

    /// The writer's way (a connection it keeps) leaves what the pool's way
    /// leaves for a group of every kind; a group the database refuses leaves
    /// nothing, and the connection is not left in a transaction: a lone
    /// statement after it (no BEGIN of its own) commits and is seen.
    async fn writer_matches_statement_at_a_time(postgres: bool) {
        let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (one, other) = (fresh(d1.path(), postgres).await, fresh(d2.path(), postgres).await);
        let group = mixed_group();
        one.apply_writes(&group).await.unwrap();
        let mut conn = other.write_connection().await.unwrap();
        conn.apply_writes(&group).await.unwrap();
        let expected = state(&one).await;
        assert!(expected.contains("boots 2 "), "the history bound applied: {expected}");
        assert!(expected.contains("bytes 200"), "the quota pruned: {expected}");
        assert_eq!(state(&other).await, expected);

        // A heartbeat, then a status the CHECK on connector ids refuses
        // (statuses are written after heartbeats): the heartbeat is rolled back.
        let bad = [
            StationWrite::Heartbeat { tenant_id: "t".into(), station_id: "A".into(), at: 99 },
            StationWrite::ConnectorStatus { tenant_id: "t".into(), station_id: "A".into(), status: status(-1, "x", 1) },
        ];
        assert!(conn.apply_writes(&bad).await.is_err());
        assert!(one.apply_writes(&bad).await.is_err());
        assert_eq!(state(&other).await, expected, "nothing of the refused group stays");
        // Not left inside a transaction: the next group commits and is seen.
        let next = [StationWrite::Heartbeat { tenant_id: "t".into(), station_id: "A".into(), at: 100 }];
        conn.apply_writes(&next).await.unwrap();
        drop(conn);
        let a = other.station("t", "A").await.unwrap().unwrap();
        assert_eq!((a.last_heartbeat_at, a.last_seen_at), (Some(100), Some(100)));
        one.close().await;
        other.close().await;
    }

    #[tokio::test]
    async fn sqlite_writer_matches_statement_at_a_time() {
        writer_matches_statement_at_a_time(false).await;
    }

    #[tokio::test]
    async fn postgres_writer_matches_statement_at_a_time() {
        writer_matches_statement_at_a_time(true).await;
    }
}
