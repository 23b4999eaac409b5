//! Charging stations as the operator set them up: settings, tags, and the last
//! status of each connector.

use std::str::FromStr;

use serde::Serialize;
use sqlx::Row;

use super::{Store, StoreError, unique_violation, with_pool};

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
    /// A01: a new password the station received without the CSMS learning
    /// whether it took it; accepted besides `password_hash` until a login with
    /// one of them settles it ([`Store::settle_password`]). Never serialised.
    #[serde(skip)]
    pub pending_password_hash: Option<String>,
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

/// The last status a station reported for one connector (StatusNotification).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectorStatus {
    pub evse_id: i64,
    pub connector_id: i64,
    pub status: String,
    pub reported_at: i64,
    pub received_at: i64,
}

impl Store {
    /// Creates a station with its tags, in one transaction.
    pub async fn create_station(&self, s: &NewStation, now: i64) -> Result<Station, StoreError> {
        self.create_stations(std::slice::from_ref(s), now).await?;
        self.existing_station(&s.tenant_id, &s.id).await
    }

    /// Creates stations with their tags in one transaction: one from the API or
    /// the CLI, many in bulk provisioning (the load tool's fleet). Any id that
    /// exists already fails the whole batch ([`StoreError::AlreadyExists`]
    /// names the first).
    pub async fn create_stations(&self, stations: &[NewStation], now: i64) -> Result<(), StoreError> {
        let mut clash: Option<String> = None;
        let res: Result<(), sqlx::Error> = with_pool!(self, |p| {
            async {
                let mut tx = p.begin().await?;
                for s in stations {
                    let tags_json = serde_json::Value::from(s.tags.clone()).to_string();
                    let r = sqlx::query(
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
                    .await;
                    if let Err(e) = &r
                        && unique_violation(e)
                    {
                        clash = Some(s.id.clone());
                    }
                    r?;
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
                }
                tx.commit().await
            }
            .await
        });
        match (res, clash) {
            (Ok(()), _) => Ok(()),
            (Err(_), Some(id)) => Err(StoreError::AlreadyExists { what: "station", id }),
            (Err(e), None) => Err(e.into()),
        }
    }

    /// The tenant's station with this id.
    pub async fn station(&self, tenant_id: &str, id: &str) -> Result<Option<Station>, StoreError> {
        let row = with_pool!(self, |p| {
            sqlx::query(&format!("SELECT {STATION_COLUMNS} FROM stations WHERE tenant_id = $1 AND id = $2"))
                .bind(tenant_id)
                .bind(id)
                .fetch_optional(p)
                .await?
                .map(|r| station_from_row(&r))
                .transpose()?
        });
        Ok(row)
    }

    /// Across tenants: the tenant a station id belongs to, for callers that name
    /// a station by its id alone: the platform CLI and manufacturing-time
    /// enrollment (`authority::enroll`).
    pub async fn station_tenant(&self, id: &str) -> Result<Option<String>, StoreError> {
        let tenant = with_pool!(self, |p| {
            sqlx::query_scalar("SELECT tenant_id FROM stations WHERE id = $1").bind(id).fetch_optional(p).await?
        });
        Ok(tenant)
    }

    /// All of a tenant's stations, by id.
    pub async fn stations(&self, tenant_id: &str) -> Result<Vec<Station>, StoreError> {
        self.stations_page(tenant_id, &StationQuery::default(), None, u32::MAX).await
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
               AND ($4 IS NULL OR EXISTS (SELECT 1 FROM station_tags t \
                    WHERE t.tenant_id = s.tenant_id AND t.station_id = s.id AND t.tag = $4)) \
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
                   pending_password_hash = CASE WHEN $2 IS NULL THEN pending_password_hash ELSE NULL END, \
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
        self.existing_station(tenant_id, id).await
    }

    /// A01: records `hash` as the station's pending password, beside the
    /// current one (a SetVariables whose outcome is unknown).
    pub async fn set_pending_password(&self, tenant_id: &str, id: &str, hash: &str) -> Result<(), StoreError> {
        let n = with_pool!(self, |p| {
            sqlx::query("UPDATE stations SET pending_password_hash = $1 WHERE tenant_id = $2 AND id = $3")
                .bind(hash)
                .bind(tenant_id)
                .bind(id)
                .execute(p)
                .await?
                .rows_affected()
        });
        if n == 0 {
            return Err(StoreError::NotFound { what: "station", id: id.to_owned() });
        }
        Ok(())
    }

    /// A01: the station logged in with one of its two passwords while `pending`
    /// was pending: with the pending one (`took_new`), it becomes the password;
    /// with the current one, the pending one is dropped. Compare-and-set on
    /// `pending`: whether this call settled it (a newer pending password, or a
    /// concurrent settlement, leaves it alone).
    ///
    /// Across tenants: the gateway knows the station by its id alone.
    pub async fn settle_password(&self, id: &str, pending: &str, took_new: bool) -> Result<bool, StoreError> {
        let sql = if took_new {
            "UPDATE stations SET password_hash = pending_password_hash, pending_password_hash = NULL \
             WHERE id = $1 AND pending_password_hash = $2"
        } else {
            "UPDATE stations SET pending_password_hash = NULL WHERE id = $1 AND pending_password_hash = $2"
        };
        let n = with_pool!(self, |p| sqlx::query(sql).bind(id).bind(pending).execute(p).await?.rows_affected());
        Ok(n == 1)
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

    /// A station just written: read back, NotFound if it is gone already.
    async fn existing_station(&self, tenant_id: &str, id: &str) -> Result<Station, StoreError> {
        self.station(tenant_id, id).await?.ok_or_else(|| StoreError::NotFound { what: "station", id: id.to_owned() })
    }
}

pub(super) const STATION_COLUMNS: &str = "id, tenant_id, security_profile, password_hash, pending_password_hash, registration, enabled, description, boot_status, \
    vendor, model, serial_number, firmware_version, last_boot_at, last_heartbeat_at, last_seen_at, created_at, tags";

pub(super) fn station_from_row<R>(r: &R) -> Result<Station, sqlx::Error>
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
        pending_password_hash: r.try_get("pending_password_hash")?,
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
