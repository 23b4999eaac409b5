//! Certificates issued to stations: the record kept at issuance, revocation
//! (with the CRL of each issuing CA), and supersession by a newer certificate.

use serde::Serialize;
use sqlx::Row;

use super::{StationWrite, Store, StoreError, with_pool};

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

/// Which certificate, on the whole platform: serials are unique per tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRef {
    pub tenant_id: String,
    pub serial_hex: String,
}

/// An entry of an issuing CA's CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedCertificate {
    pub serial_hex: String,
    pub revoked_at: i64,
    /// RFC 5280 CRLReason name.
    pub reason: Option<String>,
}

impl Store {
    /// Records a certificate in a transaction of its own (issuance without the
    /// group commit, which records it as a [`StationWrite::Certificate`]).
    pub async fn record_certificate(&self, c: &CertificateRecord) -> Result<(), StoreError> {
        self.apply_writes(&[StationWrite::Certificate(Box::new(c.clone()))]).await
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

    /// Across tenants: certificates to renew, for the maintenance tick.
    /// Unrevoked, not superseded, valid after `after` and expiring before
    /// `window_end`, of stations that hold no certificate valid beyond it;
    /// soonest first. Pass the last `not_after` of one page as `after` for the next.
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

    /// Across tenants: certificates revoked at or after `since` by anyone (the
    /// CLI, another node, the API), for closing the sessions that use them.
    pub async fn revoked_since(&self, since: i64) -> Result<Vec<CertificateRef>, StoreError> {
        let rows = with_pool!(self, |p| {
            sqlx::query("SELECT tenant_id, serial_hex FROM certificates WHERE revoked_at >= $1")
                .bind(since)
                .fetch_all(p)
                .await?
                .iter()
                .map(certificate_ref_from_row)
                .collect::<Result<Vec<_>, _>>()?
        });
        Ok(rows)
    }

    /// Revoked certificates of one issuing CA, for its CRL. `current`: the CA is
    /// the tenant's current one, which also answers for certificates issued
    /// before the first rotation (no issuer recorded).
    pub async fn revoked_certificates(
        &self,
        tenant_id: &str,
        issuer_id: &str,
        current: bool,
    ) -> Result<Vec<RevokedCertificate>, StoreError> {
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
            .map(|r| -> Result<RevokedCertificate, sqlx::Error> {
                Ok(RevokedCertificate {
                    serial_hex: r.try_get("serial_hex")?,
                    revoked_at: r.try_get("revoked_at")?,
                    reason: r.try_get("revocation_reason")?,
                })
            })
            .collect::<Result<Vec<_>, _>>()?
        });
        Ok(rows)
    }

    /// Whether the station has live certificates, other than `serial_hex`,
    /// issued no later than it: what [`Store::supersede_certificates`] would mark.
    pub async fn has_older_live_certificates(
        &self,
        tenant_id: &str,
        station_id: &str,
        serial_hex: &str,
    ) -> Result<bool, StoreError> {
        let found = with_pool!(self, |p| {
            sqlx::query_scalar::<_, i64>(
                "SELECT 1 FROM certificates WHERE tenant_id = $1 AND station_id = $2 \
                   AND serial_hex <> $3 AND revoked_at IS NULL AND superseded_at IS NULL AND issued_at <= \
                   (SELECT issued_at FROM certificates WHERE tenant_id = $1 AND serial_hex = $3) LIMIT 1",
            )
            .bind(tenant_id)
            .bind(station_id)
            .bind(serial_hex)
            .fetch_optional(p)
            .await?
        });
        Ok(found.is_some())
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

    /// Across tenants: revokes (reason superseded) every certificate superseded
    /// at or before `cutoff`, for the maintenance tick. Returns each.
    pub async fn revoke_superseded(&self, cutoff: i64, now: i64) -> Result<Vec<CertificateRef>, StoreError> {
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
            .iter()
            .map(certificate_ref_from_row)
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

fn certificate_ref_from_row<R>(r: &R) -> Result<CertificateRef, sqlx::Error>
where
    R: Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(CertificateRef { tenant_id: r.try_get("tenant_id")?, serial_hex: r.try_get("serial_hex")? })
}
