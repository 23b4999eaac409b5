//! The one service layer under the REST API and the command line: every change
//! an operator makes goes through here, with the same validation and the same
//! error whichever way it came, and is audited (the API's middleware records
//! API calls; the command line records its changes through [`Services::audit`]
//! under the subject `cli:<user>`).
//!
//! Requests use the API's input types (`api::model`): the CLI builds the same
//! request from its flags, so a rule cannot be checked on one path and not on
//! the other.

mod station_ca;
mod stations;
mod tenants;
mod validate;
mod variables;

use std::sync::Arc;

use api::model::AuditEntry;

pub use station_ca::{ImportKey, overlap_days};
pub(crate) use tenants::serve_tenant_host;
pub use validate::{MAX_DESCRIPTION, MAX_TAG_LEN, MAX_TAGS, printable, valid_tag};
pub use variables::{NO_ANSWER, NOT_SENT, split as split_variables};

use crate::engines::EngineContext;
use crate::engines::certificates::Certificates;
use crate::engines::reports::device_limits::DeviceLimits;
use crate::error::{Error, Result};
use crate::gateway::tls::{ServerCertificates, StationTrust};
use crate::store::{self, AuditRow, PLATFORM};

/// Who asks for a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// Token subject, or `cli:<user>`.
    pub subject: String,
    /// The role it acted in (`admin`, `operator`, `platform-admin`, `cli`).
    pub role: String,
}

impl Actor {
    /// Whoever runs the command line: `cli:$USER` (or `cli:unknown`).
    pub fn cli(user: Option<&str>) -> Actor {
        let user = user.filter(|u| !u.is_empty() && u.chars().all(|c| !c.is_control())).unwrap_or("unknown");
        Actor { subject: format!("cli:{}", printable(user)), role: "cli".into() }
    }
}

/// What an audit record says was asked: the change as the REST API would name
/// it, and the status the API answers when it succeeds.
#[derive(Debug, Clone)]
pub struct Operation {
    pub tenant: Option<String>,
    pub method: &'static str,
    pub path: String,
    pub ok_status: u16,
}

pub struct Services {
    ctx: Arc<EngineContext>,
    certificates: Arc<Certificates>,
    trust: Arc<StationTrust>,
    server_certs: Option<Arc<ServerCertificates>>,
    /// B06: the stations' ItemsPerMessage / BytesPerMessage, as far as known.
    limits: Arc<DeviceLimits>,
}

impl Services {
    pub fn new(
        ctx: Arc<EngineContext>,
        certificates: Arc<Certificates>,
        trust: Arc<StationTrust>,
        server_certs: Option<Arc<ServerCertificates>>,
        limits: Arc<DeviceLimits>,
    ) -> Services {
        Services { ctx, certificates, trust, server_certs, limits }
    }

    pub fn store(&self) -> &store::Store {
        &self.ctx.store
    }

    fn now(&self) -> i64 {
        self.ctx.clock.now_millis()
    }

    /// The station if it belongs to `tenant`; NotFound otherwise (also for
    /// another tenant's station: its existence is not revealed).
    pub async fn own_station(&self, tenant: &str, id: &str) -> Result<store::Station> {
        if !crate::ids::valid_station_id(id) {
            return Err(Error::NotFound { what: "station", id: printable(id) });
        }
        self.ctx.store.station(tenant, id).await?.ok_or_else(|| Error::NotFound { what: "station", id: id.to_owned() })
    }

    /// The tenant's certificate with this serial (any spelling); NotFound otherwise.
    pub async fn own_certificate(&self, tenant: &str, serial: &str) -> Result<store::CertificateRecord> {
        let not_found = || Error::NotFound { what: "certificate", id: printable(serial) };
        let canonical = crate::authority::canonical_serial(serial).filter(|s| s.len() <= 42).ok_or_else(not_found)?;
        self.ctx.store.certificate(tenant, &canonical).await?.ok_or_else(not_found)
    }

    pub async fn own_tenant(&self, tenant: &str) -> Result<store::Tenant> {
        if !crate::ids::valid_tenant_id(tenant) {
            return Err(Error::NotFound { what: "tenant", id: printable(tenant) });
        }
        self.ctx.store.tenant(tenant).await?.ok_or_else(|| Error::NotFound { what: "tenant", id: tenant.to_owned() })
    }

    /// Station trust anchors of this node follow the store now (a tenant was
    /// created, a CA rotated or imported), not only at the next refresh.
    async fn reload_trust(&self) {
        match crate::authority::station_trust_roots(&self.ctx.store, self.now()).await {
            Ok(roots) => {
                if let Err(e) = self.trust.reload(&roots) {
                    tracing::error!(error = %e, "reloading station trust anchors");
                }
            }
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "reading station trust anchors"),
        }
    }

    /// The tenant whose own host name `sni` is, if any.
    pub fn tenant_of_host(&self, sni: &str) -> Option<String> {
        self.server_certs.as_ref()?.tenant_of_host(sni)
    }

    /// Records a change in the audit log (committed before the caller answers).
    pub async fn audit(&self, entry: AuditEntry) -> Result<()> {
        let row = AuditRow {
            id: 0,
            tenant_id: entry.tenant.unwrap_or_else(|| PLATFORM.to_owned()),
            at: self.now(),
            actor: entry.actor,
            role: entry.role,
            method: entry.method,
            path: entry.path,
            status: i64::from(entry.status),
        };
        Ok(self.ctx.store.insert_audit(&row).await?)
    }

    /// Runs a change made outside the API (the command line) and records it in
    /// the audit log with the status the API would have answered, refused or not.
    pub async fn audited<T>(
        &self,
        actor: &Actor,
        op: Operation,
        change: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let result = change.await;
        let status = match &result {
            Ok(_) => op.ok_status,
            Err(e) => status_of(e),
        };
        let entry = AuditEntry {
            tenant: op.tenant,
            actor: actor.subject.clone(),
            role: actor.role.clone(),
            method: op.method.to_owned(),
            path: op.path,
            status,
        };
        if let Err(e) = self.audit(entry).await {
            // The change is made; its record is not. Say so loudly rather than hide it.
            tracing::error!(error = %e, "audit record could not be written");
            if result.is_ok() {
                return Err(Error::Unavailable("the change was made but its audit record could not be written".into()));
            }
        }
        result
    }
}

/// The HTTP status the API answers for this error.
fn status_of(e: &Error) -> u16 {
    use api::problem::Kind;
    let kind = match e {
        Error::Invalid { .. } => Kind::InvalidBody,
        Error::NotFound { .. } => Kind::NotFound,
        Error::Conflict(_) => Kind::Conflict,
        Error::NotConnected(_) => Kind::StationNotConnected,
        Error::OutcomeUnknown(_) => Kind::CallOutcomeUnknown,
        Error::Station(_) => Kind::StationError,
        Error::Unavailable(_) | Error::Store(crate::store::StoreError::Unavailable) => Kind::Unavailable,
        _ => Kind::Internal,
    };
    kind.status().as_u16()
}
