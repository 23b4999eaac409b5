//! CA material: each tenant's certificates with their sealed private keys
//! (station root, issuing CA, CSMS root, server certificate), and the station
//! CAs a rotation or replacement retired, with their overlap.

use sqlx::Row;

use super::{Store, StoreError, with_pool};

/// A CA certificate with its sealed private key.
#[derive(Debug, Clone)]
pub struct CredentialRecord {
    pub cert_pem: String,
    pub sealed_key: Vec<u8>,
}

/// A credential's certificate and the tenant it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialCert {
    pub tenant_id: String,
    pub cert_pem: String,
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

/// A replaced issuing CA within its overlap: its certificates still connect
/// until `trusted_until`, and are renewed by the current CA meanwhile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaOverlap {
    pub tenant_id: String,
    /// `station-ca@<issuer id>`.
    pub name: String,
    pub replaced_at: i64,
    pub trusted_until: i64,
}

/// A credential to rename when a newer one takes its place.
#[derive(Debug, Clone)]
pub struct Retirement<'a> {
    pub name: &'a str,
    /// The certificate the row must still hold (another rotation got there first otherwise).
    pub cert_pem: &'a str,
    pub new_name: String,
}

impl Store {
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

    /// Across tenants: the certificate of every credential with this name, one
    /// per tenant, by tenant.
    pub async fn credential_certs_named(&self, name: &str) -> Result<Vec<CredentialCert>, StoreError> {
        let rows = with_pool!(self, |p| {
            sqlx::query("SELECT tenant_id, cert_pem FROM credentials WHERE name = $1 ORDER BY tenant_id")
                .bind(name)
                .fetch_all(p)
                .await?
                .iter()
                .map(credential_cert_from_row)
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

    /// Across tenants: every tenant's station roots still trusted at `now` (the
    /// current ones and replaced ones within their overlap), for the TLS client
    /// verifier, which serves all tenants.
    pub async fn trusted_station_roots(&self, now: i64) -> Result<Vec<CredentialCert>, StoreError> {
        let rows = with_pool!(self, |p| {
            sqlx::query(
                "SELECT tenant_id, cert_pem FROM credentials \
                 WHERE (name = 'station-root' OR name LIKE 'station-root@%') \
                   AND (trusted_until IS NULL OR trusted_until > $1) ORDER BY tenant_id, name",
            )
            .bind(now)
            .fetch_all(p)
            .await?
            .iter()
            .map(credential_cert_from_row)
            .collect::<Result<Vec<_>, _>>()?
        });
        Ok(rows)
    }

    /// Across tenants: whether a credential of any tenant names this PKCS#11
    /// key (a key in the HSM serves one credential only).
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

    /// Across tenants: replaced issuing CAs still within their overlap at `now`,
    /// for the maintenance tick that renews their certificates.
    pub async fn overlapping_station_cas(&self, now: i64) -> Result<Vec<CaOverlap>, StoreError> {
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
            .map(|r| -> Result<CaOverlap, sqlx::Error> {
                Ok(CaOverlap {
                    tenant_id: r.try_get("tenant_id")?,
                    name: r.try_get("name")?,
                    replaced_at: r.try_get("replaced_at")?,
                    trusted_until: r.try_get("trusted_until")?,
                })
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
}

fn credential_cert_from_row<R>(r: &R) -> Result<CredentialCert, sqlx::Error>
where
    R: Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(CredentialCert { tenant_id: r.try_get("tenant_id")?, cert_pem: r.try_get("cert_pem")? })
}
