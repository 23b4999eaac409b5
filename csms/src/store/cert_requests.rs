//! Requests for a station certificate (A02, A03), tracked from the operator's
//! trigger or the station's unsolicited CSR to the station connecting with the
//! certificate. Each move is a compare-and-set on the state, so that of two
//! processes driving one request only one issues and one delivers.

use serde::Serialize;
use sqlx::Row;

use super::{Store, StoreError, with_pool};

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

impl Store {
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
}
