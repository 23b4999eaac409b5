//! Requests for a station certificate (A02, A03), tracked from the operator's
//! trigger or the station's unsolicited CSR to the station connecting with the
//! certificate. Each move is a compare-and-set on the state, so that of two
//! processes driving one request only one issues and one delivers.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use sqlx::Row;

use super::{Store, StoreError, placeholders, with_pool};

/// Where a certificate request stands; stored as the text of [`Self::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CertRequestState {
    /// An operator's renewal (A02): TriggerMessage sent, not answered yet.
    Requested,
    /// The station accepted the trigger; its CSR is awaited.
    Triggered,
    /// A valid CSR, answered Accepted; the certificate is to be issued.
    CsrReceived,
    /// Claimed for issuance by one process.
    Issuing,
    /// The CSR broke a rule; nothing was issued.
    Rejected,
    /// Issued but not delivered (the station was gone): delivered at its next connection.
    Issued,
    /// Claimed for delivery (CertificateSigned) by one process.
    Delivering,
    /// The station accepted its CertificateSigned.
    Delivered,
    /// The station refused its certificate, which was revoked.
    StationRejected,
    /// The station connected with the new certificate.
    Installed,
    /// The station refused the trigger, or did not answer it.
    Failed,
}

impl CertRequestState {
    /// Every state, in lifecycle order.
    pub const ALL: [CertRequestState; 11] = [
        Self::Requested,
        Self::Triggered,
        Self::CsrReceived,
        Self::Issuing,
        Self::Rejected,
        Self::Issued,
        Self::Delivering,
        Self::Delivered,
        Self::StationRejected,
        Self::Installed,
        Self::Failed,
    ];

    /// The stored and displayed text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Triggered => "triggered",
            Self::CsrReceived => "csr_received",
            Self::Issuing => "issuing",
            Self::Rejected => "rejected",
            Self::Issued => "issued",
            Self::Delivering => "delivering",
            Self::Delivered => "delivered",
            Self::StationRejected => "station_rejected",
            Self::Installed => "installed",
            Self::Failed => "failed",
        }
    }

    /// Whether a request in this state may move to `next` (a request may also be
    /// inserted in any state):
    ///
    /// | from           | to                                                       |
    /// |----------------|----------------------------------------------------------|
    /// | `requested`    | `triggered`, `failed`, `csr_received`, `rejected`        |
    /// | `triggered`    | `csr_received`, `rejected`                               |
    /// | `csr_received` | `issuing`                                                |
    /// | `issuing`      | `issuing` (a stale claim taken over), `delivering`       |
    /// | `issued`       | `delivering`, `installed`                                |
    /// | `delivering`   | `delivering` (stale), `issued` (not delivered), `delivered`, `station_rejected`, `installed` |
    /// | `delivered`    | `installed`                                              |
    ///
    /// `rejected`, `station_rejected`, `installed` and `failed` are final.
    /// `requested` goes straight to `csr_received` or `rejected` when the CSR
    /// arrives before the trigger's answer is recorded; `issued` and `delivering`
    /// to `installed` when the station connects with the certificate before its
    /// delivery was recorded.
    pub fn may_become(self, next: Self) -> bool {
        use CertRequestState as S;
        matches!(
            (self, next),
            (S::Requested, S::Triggered | S::Failed | S::CsrReceived | S::Rejected)
                | (S::Triggered, S::CsrReceived | S::Rejected)
                | (S::CsrReceived, S::Issuing)
                | (S::Issuing, S::Issuing | S::Delivering)
                | (S::Issued, S::Delivering | S::Installed)
                | (S::Delivering, S::Delivering | S::Issued | S::Delivered | S::StationRejected | S::Installed)
                | (S::Delivered, S::Installed)
        )
    }

    /// No move leads out of this state.
    pub fn is_final(self) -> bool {
        Self::ALL.into_iter().all(|next| !self.may_become(next))
    }
}

impl fmt::Display for CertRequestState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CertRequestState {
    type Err = StoreError;

    /// The stored text; anything else is a corrupt row.
    fn from_str(s: &str) -> Result<Self, StoreError> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown certificate request state '{s}'")))
    }
}

/// A tracked request for a station certificate (A02/A03).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertRequest {
    pub id: i64,
    pub tenant_id: String,
    pub station_id: String,
    pub origin: String,
    pub state: CertRequestState,
    #[serde(skip)]
    pub csr_pem: Option<String>,
    pub serial_hex: Option<String>,
    pub detail: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The state a certificate request moves to (or is inserted in), with the
/// fields to set; `None` fields keep their value (are empty on insertion).
#[derive(Debug, Clone, Copy)]
pub struct RequestChange<'a> {
    pub to: CertRequestState,
    pub csr_pem: Option<&'a str>,
    pub serial_hex: Option<&'a str>,
    pub detail: Option<&'a str>,
}

impl RequestChange<'_> {
    /// To `state`, changing nothing else.
    pub fn to(state: CertRequestState) -> Self {
        RequestChange { to: state, csr_pem: None, serial_hex: None, detail: None }
    }
}

impl Store {
    /// A new request of `origin` (`operator` or `station`), in the state and
    /// with the fields of `initial`. Returns its id.
    pub async fn insert_cert_request(
        &self,
        tenant_id: &str,
        station_id: &str,
        origin: &str,
        initial: RequestChange<'_>,
        now: i64,
    ) -> Result<i64, StoreError> {
        let id = with_pool!(self, |p| {
            sqlx::query(
                "INSERT INTO certificate_requests \
                   (tenant_id, station_id, origin, state, csr_pem, serial_hex, detail, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) RETURNING id",
            )
            .bind(tenant_id)
            .bind(station_id)
            .bind(origin)
            .bind(initial.to.as_str())
            .bind(initial.csr_pem)
            .bind(initial.serial_hex)
            .bind(initial.detail)
            .bind(now)
            .fetch_one(p)
            .await?
            .try_get::<i64, _>("id")?
        });
        Ok(id)
    }

    /// Compare-and-set: moves the tenant's request `id` to `change.to` if it is
    /// in one of `from` (an empty `from` moves nothing). Returns whether it
    /// moved: concurrent deliveries claim a request this way.
    ///
    /// A `from` that [`CertRequestState::may_become`] does not allow to become
    /// `change.to` is a bug in the caller: [`StoreError::IllegalTransition`]
    /// (and a panic in debug builds), whatever the request's state.
    pub async fn update_cert_request(
        &self,
        tenant_id: &str,
        id: i64,
        from: &[CertRequestState],
        change: RequestChange<'_>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let illegal = from.iter().copied().find(|f| !f.may_become(change.to));
        debug_assert!(illegal.is_none(), "certificate request {id}: {illegal:?} may not become {}", change.to);
        if let Some(from) = illegal {
            return Err(StoreError::IllegalTransition { from, to: change.to });
        }
        if from.is_empty() {
            return Ok(false);
        }
        let sql = format!(
            "UPDATE certificate_requests SET state = $1, csr_pem = COALESCE($2, csr_pem), \
               serial_hex = COALESCE($3, serial_hex), detail = COALESCE($4, detail), updated_at = $5 \
             WHERE tenant_id = $6 AND id = $7 AND state IN ({})",
            placeholders(8, from.len())
        );
        let n = with_pool!(self, |p| {
            let mut q = sqlx::query(&sql)
                .bind(change.to.as_str())
                .bind(change.csr_pem)
                .bind(change.serial_hex)
                .bind(change.detail)
                .bind(now)
                .bind(tenant_id)
                .bind(id);
            for state in from {
                q = q.bind(state.as_str());
            }
            q.execute(p).await?.rows_affected()
        });
        Ok(n == 1)
    }

    /// One request by id, within the tenant.
    pub async fn cert_request(&self, tenant_id: &str, id: i64) -> Result<Option<CertRequest>, StoreError> {
        Ok(self.cert_requests_where(tenant_id, None, Some(id), &[], 1).await?.into_iter().next())
    }

    /// A station's requests in one of `states` (any state when empty), oldest
    /// first, at most 100.
    pub async fn cert_requests_in(
        &self,
        tenant_id: &str,
        station_id: &str,
        states: &[CertRequestState],
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

    /// The tenant's requests, newest first, of one station and with one id when
    /// given, in one of `states` (any state when empty).
    async fn cert_requests_where(
        &self,
        tenant_id: &str,
        station_id: Option<&str>,
        id: Option<i64>,
        states: &[CertRequestState],
        limit: u32,
    ) -> Result<Vec<CertRequest>, StoreError> {
        let in_states =
            if states.is_empty() { String::new() } else { format!("AND state IN ({})", placeholders(4, states.len())) };
        let sql = format!(
            "SELECT id, tenant_id, station_id, origin, state, csr_pem, serial_hex, detail, created_at, updated_at \
             FROM certificate_requests WHERE tenant_id = $1 AND ($2 IS NULL OR station_id = $2) \
               AND ($3 IS NULL OR id = $3) {in_states} ORDER BY id DESC LIMIT ${}",
            4 + states.len()
        );
        let rows = with_pool!(self, |p| {
            let mut q = sqlx::query(&sql).bind(tenant_id).bind(station_id).bind(id);
            for state in states {
                q = q.bind(state.as_str());
            }
            q.bind(i64::from(limit))
                .fetch_all(p)
                .await?
                .into_iter()
                .map(|r| -> Result<CertRequest, StoreError> {
                    Ok(CertRequest {
                        id: r.try_get("id")?,
                        tenant_id: r.try_get("tenant_id")?,
                        station_id: r.try_get("station_id")?,
                        origin: r.try_get("origin")?,
                        state: r.try_get::<String, _>("state")?.parse()?,
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
