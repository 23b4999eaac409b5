//! Tenants: the operators (CPOs) the platform hosts. The tenants table is the
//! platform's own, so these queries are across tenants by nature.

use serde::Serialize;
use sqlx::Row;

use super::{PLATFORM, Store, StoreError, unique_violation, with_pool};

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Tenant {
    pub id: String,
    pub organization: String,
    /// Host name (SNI) with the tenant's own CSMS root and server certificate.
    pub ocpp_hostname: Option<String>,
    pub created_at: i64,
}

impl Store {
    /// Across tenants: a new tenant (its id and host name are unique on the platform).
    pub async fn create_tenant(
        &self,
        id: &str,
        organization: &str,
        ocpp_hostname: Option<&str>,
        now: i64,
    ) -> Result<Tenant, StoreError> {
        let res = with_pool!(self, |p| {
            sqlx::query("INSERT INTO tenants (id, organization, ocpp_hostname, created_at) VALUES ($1, $2, $3, $4)")
                .bind(id)
                .bind(organization)
                .bind(ocpp_hostname)
                .bind(now)
                .execute(p)
                .await
                .map(|_| ())
        });
        match res {
            Ok(()) => Ok(Tenant {
                id: id.to_owned(),
                organization: organization.to_owned(),
                ocpp_hostname: ocpp_hostname.map(str::to_owned),
                created_at: now,
            }),
            Err(e) if unique_violation(&e) => Err(StoreError::AlreadyExists { what: "tenant", id: id.to_owned() }),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn tenant(&self, id: &str) -> Result<Option<Tenant>, StoreError> {
        let row = with_pool!(self, |p| {
            sqlx::query("SELECT id, organization, ocpp_hostname, created_at FROM tenants WHERE id = $1")
                .bind(id)
                .fetch_optional(p)
                .await?
                .map(|r| tenant_from_row(&r))
                .transpose()?
        });
        Ok(row)
    }

    /// Across tenants: every tenant by id, the platform's row (`*`) too where there is one.
    pub async fn tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        self.tenants_except(None, None, u32::MAX).await
    }

    /// Across tenants: tenants by id, after `after`, at most `limit`; not the platform's own.
    pub async fn tenants_page(&self, after: Option<&str>, limit: u32) -> Result<Vec<Tenant>, StoreError> {
        self.tenants_except(Some(PLATFORM), after, limit).await
    }

    /// Tenants but `except` by id, after `after`, at most `limit`.
    async fn tenants_except(
        &self,
        except: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Tenant>, StoreError> {
        let rows = with_pool!(self, |p| {
            sqlx::query(
                "SELECT id, organization, ocpp_hostname, created_at FROM tenants \
                 WHERE ($1 IS NULL OR id <> $1) AND ($2 IS NULL OR id > $2) ORDER BY id LIMIT $3",
            )
            .bind(except)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(p)
            .await?
            .into_iter()
            .map(|r| tenant_from_row(&r))
            .collect::<Result<Vec<_>, _>>()?
        });
        Ok(rows)
    }
}

fn tenant_from_row<R>(r: &R) -> Result<Tenant, sqlx::Error>
where
    R: Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(Tenant {
        id: r.try_get("id")?,
        organization: r.try_get("organization")?,
        ocpp_hostname: r.try_get("ocpp_hostname")?,
        created_at: r.try_get("created_at")?,
    })
}
