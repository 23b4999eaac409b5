//! The audit log: one row per API call, per tenant.

use serde::Serialize;
use sqlx::Row;

use super::{Store, StoreError, with_pool};

/// One recorded API call.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRow {
    pub id: i64,
    pub tenant_id: String,
    pub at: i64,
    pub actor: String,
    pub role: String,
    pub method: String,
    pub path: String,
    pub status: i64,
}

impl Store {
    pub async fn insert_audit(&self, row: &AuditRow) -> Result<(), StoreError> {
        with_pool!(self, |p| {
            sqlx::query(
                "INSERT INTO audit_log (tenant_id, at, actor, role, method, path, status) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&row.tenant_id)
            .bind(row.at)
            .bind(&row.actor)
            .bind(&row.role)
            .bind(&row.method)
            .bind(&row.path)
            .bind(row.status)
            .execute(p)
            .await?;
        });
        Ok(())
    }

    pub async fn audit_page(
        &self,
        tenant_id: &str,
        after_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditRow>, StoreError> {
        let rows = with_pool!(self, |p| {
            sqlx::query(
                "SELECT id, tenant_id, at, actor, role, method, path, status FROM audit_log \
                 WHERE tenant_id = $1 AND ($2 IS NULL OR id > $2) ORDER BY id LIMIT $3",
            )
            .bind(tenant_id)
            .bind(after_id)
            .bind(i64::from(limit))
            .fetch_all(p)
            .await?
            .into_iter()
            .map(|r| -> Result<AuditRow, sqlx::Error> {
                Ok(AuditRow {
                    id: r.try_get("id")?,
                    tenant_id: r.try_get("tenant_id")?,
                    at: r.try_get("at")?,
                    actor: r.try_get("actor")?,
                    role: r.try_get("role")?,
                    method: r.try_get("method")?,
                    path: r.try_get("path")?,
                    status: r.try_get::<i64, _>("status").or_else(|_| r.try_get::<i32, _>("status").map(i64::from))?,
                })
            })
            .collect::<Result<Vec<_>, _>>()?
        });
        Ok(rows)
    }
}
