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
    /// A newer request of the station replaced it before its certificate was
    /// delivered (A02); a certificate issued for it was revoked (superseded).
    Superseded,
}

impl CertRequestState {
    /// Every state, in lifecycle order.
    pub const ALL: [CertRequestState; 12] = [
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
        Self::Superseded,
    ];

    /// What a newer request of the same station supersedes: not delivered and
    /// not being delivered (a `delivering` claim's call is under way; its
    /// outcome decides).
    pub const SUPERSEDABLE: [CertRequestState; 5] =
        [Self::Requested, Self::Triggered, Self::CsrReceived, Self::Issuing, Self::Issued];

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
            Self::Superseded => "superseded",
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
    /// | `issuing`      | `issuing` (a stale claim taken over), `delivering`, `csr_received` (claim released) |
    /// | `issued`       | `delivering`, `installed`                                |
    /// | `delivering`   | `delivering` (stale), `issued` (not delivered), `delivered`, `station_rejected`, `installed` |
    /// | `delivered`    | `installed`                                              |
    ///
    /// Besides, each of [`Self::SUPERSEDABLE`] may become `superseded`, when a
    /// newer request of the station is recorded.
    ///
    /// `rejected`, `station_rejected`, `installed`, `failed` and `superseded` are final.
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
                | (S::Issuing, S::Issuing | S::Delivering | S::CsrReceived)
                | (S::Issued, S::Delivering | S::Installed)
                | (S::Delivering, S::Delivering | S::Issued | S::Delivered | S::StationRejected | S::Installed)
                | (S::Delivered, S::Installed)
                | (S::Requested | S::Triggered | S::CsrReceived | S::Issuing | S::Issued, S::Superseded)
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
    /// Who claims the request by this move (`issuing`, `delivering`); every
    /// move sets it, so a move without one clears the claim.
    pub claim: Option<Claimant<'a>>,
}

impl RequestChange<'_> {
    /// To `state`, changing nothing else (and claimed by no one).
    pub fn to(state: CertRequestState) -> Self {
        RequestChange { to: state, csr_pem: None, serial_hex: None, detail: None, claim: None }
    }
}

/// The process that claims a request: its node id, stable across restarts
/// (`Config::node_id`, or `node.id` in the data directory), and the instance,
/// new at every start. A node that starts releases the claims of its earlier
/// instances ([`Store::release_claims`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claimant<'a> {
    pub node: &'a str,
    pub instance: &'a str,
}

/// A request claimed (`issuing`, `delivering`) and by whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedRequest {
    pub tenant_id: String,
    pub station_id: String,
    pub id: i64,
    pub state: CertRequestState,
    pub claim_node: Option<String>,
    pub claim_instance: Option<String>,
    pub updated_at: i64,
}

/// In transaction `$tx`: the station's requests older than `$id` that are not
/// delivered become `superseded` (compare-and-set on their state), and the
/// certificates issued for them are revoked (superseded). The ids superseded.
macro_rules! supersede_before {
    ($tx:expr, $tenant:expr, $station:expr, $id:expr, $now:expr) => {{
        use CertRequestState as S;
        let detail = format!("superseded by request {}", $id);
        let sql = format!(
            "UPDATE certificate_requests SET state = $1, detail = $2, updated_at = $3, \
               claim_node = NULL, claim_instance = NULL \
             WHERE tenant_id = $4 AND station_id = $5 AND id < $6 AND state IN ({}) \
             RETURNING id, serial_hex",
            placeholders(7, S::SUPERSEDABLE.len())
        );
        let mut q = sqlx::query(&sql)
            .bind(S::Superseded.as_str())
            .bind(&detail)
            .bind($now)
            .bind($tenant)
            .bind($station)
            .bind($id);
        for state in S::SUPERSEDABLE {
            q = q.bind(state.as_str());
        }
        let rows = q
            .fetch_all($tx)
            .await?
            .into_iter()
            .map(|r| Ok::<_, sqlx::Error>((r.try_get::<i64, _>("id")?, r.try_get::<Option<String>, _>("serial_hex")?)))
            .collect::<Result<Vec<_>, _>>()?;
        for serial in rows.iter().filter_map(|(_, s)| s.as_deref()) {
            sqlx::query(
                "UPDATE certificates SET revoked_at = COALESCE(revoked_at, $1), \
                   revocation_reason = COALESCE(revocation_reason, 'superseded') \
                 WHERE tenant_id = $2 AND serial_hex = $3",
            )
            .bind($now)
            .bind($tenant)
            .bind(serial)
            .execute($tx)
            .await?;
        }
        rows.into_iter().map(|(id, _)| id).collect::<Vec<i64>>()
    }};
}

impl Store {
    /// A new request of `origin` (`operator` or `station`), in the state and
    /// with the fields of `initial`. Returns its id.
    ///
    /// A02: a live new request (`requested`, `csr_received`) supersedes the
    /// station's older ones that are not delivered ([`CertRequestState::SUPERSEDABLE`]),
    /// in the same transaction: they become `superseded` (compare-and-set on
    /// their state) and a certificate issued for them is revoked, reason
    /// superseded. So a reconnection never delivers an older CSR's certificate
    /// after a newer renewal began.
    pub async fn insert_cert_request(
        &self,
        tenant_id: &str,
        station_id: &str,
        origin: &str,
        initial: RequestChange<'_>,
        now: i64,
    ) -> Result<i64, StoreError> {
        let supersedes = matches!(initial.to, CertRequestState::Requested | CertRequestState::CsrReceived);
        let id = with_pool!(self, |p| {
            let mut tx = p.begin().await?;
            let id = sqlx::query(
                "INSERT INTO certificate_requests \
                   (tenant_id, station_id, origin, state, csr_pem, serial_hex, detail, created_at, updated_at, \
                    claim_node, claim_instance) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9, $10) RETURNING id",
            )
            .bind(tenant_id)
            .bind(station_id)
            .bind(origin)
            .bind(initial.to.as_str())
            .bind(initial.csr_pem)
            .bind(initial.serial_hex)
            .bind(initial.detail)
            .bind(now)
            .bind(initial.claim.map(|c| c.node))
            .bind(initial.claim.map(|c| c.instance))
            .fetch_one(&mut *tx)
            .await?
            .try_get::<i64, _>("id")?;
            if supersedes {
                let _superseded = supersede_before!(&mut *tx, tenant_id, station_id, id, now);
            }
            tx.commit().await?;
            id
        });
        Ok(id)
    }

    /// A02: the station's requests older than `newest` that are not delivered
    /// become `superseded`, and certificates issued for them are revoked
    /// (superseded), in one transaction. For requests recorded before
    /// supersession existed; [`Self::insert_cert_request`] does it for every
    /// new one. Returns the ids superseded.
    pub async fn supersede_requests_before(
        &self,
        tenant_id: &str,
        station_id: &str,
        newest: i64,
        now: i64,
    ) -> Result<Vec<i64>, StoreError> {
        let ids = with_pool!(self, |p| {
            let mut tx = p.begin().await?;
            let ids = supersede_before!(&mut *tx, tenant_id, station_id, newest, now);
            tx.commit().await?;
            ids
        });
        Ok(ids)
    }

    /// Releases the claims (`issuing`, `delivering`) held by earlier instances
    /// of node `claimant.node`, which a process starting under that node id
    /// replaces: `issuing` goes back to `csr_received` and `delivering` to
    /// `issued`, ready for the next delivery. Claims of other nodes, and of
    /// this instance, are left alone. Returns how many were released.
    ///
    /// Across tenants: a process holds claims of every tenant.
    pub async fn release_claims(&self, claimant: Claimant<'_>, now: i64) -> Result<u64, StoreError> {
        let n = with_pool!(self, |p| {
            sqlx::query(
                "UPDATE certificate_requests SET \
                   state = CASE state WHEN 'issuing' THEN 'csr_received' ELSE 'issued' END, \
                   claim_node = NULL, claim_instance = NULL, updated_at = $1 \
                 WHERE claim_node = $2 AND claim_instance <> $3 AND state IN ('issuing', 'delivering')",
            )
            .bind(now)
            .bind(claimant.node)
            .bind(claimant.instance)
            .execute(p)
            .await?
            .rows_affected()
        });
        Ok(n)
    }

    /// Requests claimed (`issuing`, `delivering`) last before `before`: claims
    /// a process that died left behind, for the maintenance tick to take over.
    /// At most `limit`, oldest first.
    ///
    /// Across tenants: the maintenance tick serves every tenant.
    pub async fn stale_claims(&self, before: i64, limit: u32) -> Result<Vec<ClaimedRequest>, StoreError> {
        let rows = with_pool!(self, |p| {
            sqlx::query(
                "SELECT tenant_id, station_id, id, state, claim_node, claim_instance, updated_at \
                 FROM certificate_requests WHERE state IN ('issuing', 'delivering') AND updated_at < $1 \
                 ORDER BY updated_at LIMIT $2",
            )
            .bind(before)
            .bind(i64::from(limit))
            .fetch_all(p)
            .await?
            .into_iter()
            .map(|r| -> Result<ClaimedRequest, StoreError> {
                Ok(ClaimedRequest {
                    tenant_id: r.try_get("tenant_id")?,
                    station_id: r.try_get("station_id")?,
                    id: r.try_get("id")?,
                    state: r.try_get::<String, _>("state")?.parse()?,
                    claim_node: r.try_get("claim_node")?,
                    claim_instance: r.try_get("claim_instance")?,
                    updated_at: r.try_get("updated_at")?,
                })
            })
            .collect::<Result<Vec<_>, _>>()?
        });
        Ok(rows)
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
               serial_hex = COALESCE($3, serial_hex), detail = COALESCE($4, detail), updated_at = $5, \
               claim_node = $6, claim_instance = $7 \
             WHERE tenant_id = $8 AND id = $9 AND state IN ({})",
            placeholders(10, from.len())
        );
        let n = with_pool!(self, |p| {
            let mut q = sqlx::query(&sql)
                .bind(change.to.as_str())
                .bind(change.csr_pem)
                .bind(change.serial_hex)
                .bind(change.detail)
                .bind(now)
                .bind(change.claim.map(|c| c.node))
                .bind(change.claim.map(|c| c.instance))
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
        // Only the conditions that apply: `($n IS NULL OR col = $n)` keeps a
        // planner from using the (tenant, station, id) index, and a connect
        // would scan every request of the tenant.
        let mut sql = String::from(
            "SELECT id, tenant_id, station_id, origin, state, csr_pem, serial_hex, detail, created_at, updated_at \
             FROM certificate_requests WHERE tenant_id = $1",
        );
        let mut n = 1;
        if station_id.is_some() {
            n += 1;
            sql.push_str(&format!(" AND station_id = ${n}"));
        }
        if id.is_some() {
            n += 1;
            sql.push_str(&format!(" AND id = ${n}"));
        }
        if !states.is_empty() {
            sql.push_str(&format!(" AND state IN ({})", placeholders(n + 1, states.len())));
            n += states.len();
        }
        sql.push_str(&format!(" ORDER BY id DESC LIMIT ${}", n + 1));
        let rows = with_pool!(self, |p| {
            let mut q = sqlx::query(&sql).bind(tenant_id);
            if let Some(station_id) = station_id {
                q = q.bind(station_id);
            }
            if let Some(id) = id {
                q = q.bind(id);
            }
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
