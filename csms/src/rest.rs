//! The REST API's [`api::service::Service`] over this node: changes go through
//! the service layer ([`crate::services`]), which validates and decides; reads
//! come from the store. Every tenant-scoped call checks that the resource
//! belongs to the caller's tenant and answers NotFound otherwise.

use std::sync::Arc;

use api::model::LiveEvent;
use api::model::{
    self as m, AuditEntry, AuditRecord, EnrollRequest, EnrollResponse, NewStation, NewTenant, SecurityEvent,
    SecurityEventFilter, StationFilter, StationPatch,
};
use api::service::{EventStream, PageRequest, Paged, Service, ServiceError, ServiceFuture};

use crate::authority;
use crate::error::Error;
use crate::ids::{STATION_ID_RULE, valid_station_id};
use crate::runtime::Node;
use crate::services::{ImportKey, MAX_TAG_LEN, valid_tag};
use crate::store::{self, PLATFORM, Registration, StationQuery, StoreError};

pub struct RestService {
    node: Arc<Node>,
}

impl RestService {
    pub fn new(node: Arc<Node>) -> RestService {
        RestService { node }
    }

    fn now(&self) -> i64 {
        self.node.clock.now_millis()
    }

    /// The tenant's station CAs as the API shows them.
    async fn station_cas_out(&self, tenant: &str) -> Result<Vec<m::CaCertificate>, ServiceError> {
        let cas = self.node.services.station_cas(tenant).await?;
        let public_url = self.node.config.public_url();
        Ok(cas
            .into_iter()
            .map(|c| m::CaCertificate {
                role: if c.root { "root" } else { "issuing" }.to_owned(),
                current: c.current,
                replaced_at: c.row.replaced_at.map(rfc3339),
                trusted_until: c.row.trusted_until.map(rfc3339),
                crl_url: (!c.root)
                    .then(|| authority::revocation_endpoints(&public_url, tenant, &c.id).crl_url)
                    .flatten(),
                subject: format!(
                    "CN={}, O={}",
                    c.info.subject_cn.clone().unwrap_or_default(),
                    c.info.subject_o.clone().unwrap_or_default()
                ),
                not_before: rfc3339(crate::clock::unix_millis(c.info.not_before)),
                not_after: rfc3339(crate::clock::unix_millis(c.info.not_after)),
                fingerprint: c.info.sha256_fingerprint_hex.clone(),
                hsm: c.hsm(),
                key_with_operator: c.key_with_operator(),
                id: c.id,
                pem: c.row.cert_pem,
            })
            .collect())
    }

    fn connected(&self, s: &store::Station) -> bool {
        self.node.link.is_connected(&s.tenant_id, &s.id)
    }

    fn station_out(&self, s: store::Station, connectors: Option<Vec<store::ConnectorStatus>>) -> m::Station {
        let connected = self.connected(&s);
        m::Station {
            connected,
            security_profile: s.security_profile,
            registration: match s.registration {
                Registration::Accepted => m::Registration::Accepted,
                Registration::Pending => m::Registration::Pending,
                Registration::Rejected => m::Registration::Rejected,
            },
            enabled: s.enabled,
            has_password: s.password_hash.is_some(),
            description: s.description,
            tags: s.tags,
            boot: m::BootInfo {
                vendor: s.vendor,
                model: s.model,
                serial_number: s.serial_number,
                firmware_version: s.firmware_version,
                status: s.boot_status,
                at: s.last_boot_at.map(rfc3339),
            },
            last_heartbeat_at: s.last_heartbeat_at.map(rfc3339),
            last_seen_at: s.last_seen_at.map(rfc3339),
            created_at: rfc3339(s.created_at),
            connectors: connectors.map(|cs| {
                cs.into_iter()
                    .map(|c| m::ConnectorStatus {
                        evse_id: c.evse_id,
                        connector_id: c.connector_id,
                        status: c.status,
                        reported_at: rfc3339(c.reported_at),
                    })
                    .collect()
            }),
            id: s.id,
        }
    }
}

fn revocation_reason(r: m::RevocationReason) -> pki::RevocationReason {
    use pki::RevocationReason as R;
    match r {
        m::RevocationReason::Unspecified => R::Unspecified,
        m::RevocationReason::KeyCompromise => R::KeyCompromise,
        m::RevocationReason::CaCompromise => R::CaCompromise,
        m::RevocationReason::AffiliationChanged => R::AffiliationChanged,
        m::RevocationReason::Superseded => R::Superseded,
        m::RevocationReason::CessationOfOperation => R::CessationOfOperation,
        m::RevocationReason::CertificateHold => R::CertificateHold,
        m::RevocationReason::PrivilegeWithdrawn => R::PrivilegeWithdrawn,
    }
}

fn cert_request_out(r: store::CertRequest) -> m::CertificateRequest {
    m::CertificateRequest {
        id: r.id,
        station_id: r.station_id,
        origin: r.origin,
        state: r.state.as_str().to_owned(),
        serial_number: r.serial_hex,
        detail: r.detail,
        created_at: rfc3339(r.created_at),
        updated_at: rfc3339(r.updated_at),
    }
}

fn certificate_out(c: store::CertificateRecord, now: i64, with_pem: bool, chain: Option<String>) -> m::Certificate {
    let status = if c.revoked_at.is_some() {
        m::CertificateStatus::Revoked
    } else if c.not_after <= now {
        m::CertificateStatus::Expired
    } else {
        m::CertificateStatus::Valid
    };
    m::Certificate {
        serial_number: c.serial_hex,
        station_id: c.station_id,
        fingerprint: c.fingerprint,
        not_before: rfc3339(c.not_before),
        not_after: rfc3339(c.not_after),
        issued_at: rfc3339(c.issued_at),
        status,
        revoked_at: c.revoked_at.map(rfc3339),
        revocation_reason: c.revocation_reason,
        certificate_pem: with_pem.then_some(c.cert_pem),
        issuer_chain_pem: chain,
    }
}

/// Unix milliseconds as RFC 3339 (UTC, millisecond precision).
pub fn rfc3339(ms: i64) -> String {
    ocpp::v201::DateTime::from(crate::clock::from_unix_millis(ms)).to_string()
}

fn parse_time(field: &str, value: &str) -> Result<i64, ServiceError> {
    let t = ocpp::v201::DateTime::parse(value).map_err(|_| ServiceError::Invalid {
        field: field.to_owned(),
        detail: format!("'{value}' is not an RFC 3339 date-time"),
    })?;
    Ok(crate::clock::unix_millis(t.into_inner()))
}

fn internal(e: StoreError) -> ServiceError {
    ServiceError::from(Error::from(e))
}

fn invalid(field: &str, detail: impl Into<String>) -> ServiceError {
    ServiceError::Invalid { field: field.to_owned(), detail: detail.into() }
}

fn tenant_out(t: store::Tenant) -> m::Tenant {
    m::Tenant {
        name: t.id,
        organization_name: t.organization,
        ocpp_hostname: t.ocpp_hostname,
        created_at: rfc3339(t.created_at),
    }
}

fn numeric_key(after: Option<String>) -> Result<Option<i64>, ServiceError> {
    after.map(|k| k.parse::<i64>().map_err(|_| invalid("cursor", "cursor does not belong to this list"))).transpose()
}

/// Keeps at most `limit` items and says where the next page starts.
fn paged<T>(mut items: Vec<T>, limit: u32, key: impl Fn(&T) -> String) -> Paged<T> {
    let limit = limit as usize;
    let next = if items.len() > limit {
        items.truncate(limit);
        items.last().map(&key)
    } else {
        None
    };
    Paged { items, next }
}

impl Service for RestService {
    fn create_tenant(&self, t: NewTenant) -> ServiceFuture<'_, m::Tenant> {
        Box::pin(async move { Ok(tenant_out(self.node.services.create_tenant(t).await?)) })
    }

    fn tenants(&self, page: PageRequest) -> ServiceFuture<'_, Paged<m::Tenant>> {
        Box::pin(async move {
            let rows = self.node.store.tenants_page(page.after.as_deref(), page.limit + 1).await.map_err(internal)?;
            Ok(paged(rows.into_iter().map(tenant_out).collect(), page.limit, |t| t.name.clone()))
        })
    }

    fn tenant(&self, name: String) -> ServiceFuture<'_, m::Tenant> {
        Box::pin(async move {
            match self.node.services.own_tenant(&name).await? {
                t if t.id != PLATFORM => Ok(tenant_out(t)),
                _ => Err(ServiceError::NotFound { what: "tenant", id: name }),
            }
        })
    }

    fn create_station(&self, tenant: String, s: NewStation) -> ServiceFuture<'_, m::Station> {
        Box::pin(async move {
            let created = self.node.services.create_station(&tenant, s).await?;
            Ok(self.station_out(created, None))
        })
    }

    fn stations(&self, tenant: String, f: StationFilter, page: PageRequest) -> ServiceFuture<'_, Paged<m::Station>> {
        Box::pin(async move {
            if let Some(p) = f.security_profile
                && !(1..=3).contains(&p)
            {
                return Err(invalid("securityProfile", "security profile must be 1, 2 or 3"));
            }
            if let Some(t) = f.tag.as_deref()
                && !valid_tag(t)
            {
                return Err(invalid("tag", format!("a tag is 1-{MAX_TAG_LEN} characters of A-Z a-z 0-9 - _ . :")));
            }
            let q = StationQuery {
                security_profile: f.security_profile,
                tag: f.tag.clone(),
                seen_since: f.seen_since.as_deref().map(|v| parse_time("seenSince", v)).transpose()?,
                not_seen_since: f.not_seen_since.as_deref().map(|v| parse_time("notSeenSince", v)).transpose()?,
            };
            if page.after.as_deref().is_some_and(|k| !valid_station_id(k)) {
                return Err(invalid("cursor", "cursor does not belong to this list"));
            }
            // Connection state lives in memory: read on in batches until the
            // page is full or the tenant's stations are exhausted.
            let want = page.limit as usize + 1;
            let batch = (page.limit * 2).clamp(64, 1000);
            let mut after = page.after.clone();
            let mut out: Vec<m::Station> = Vec::with_capacity(want.min(1024));
            loop {
                let rows =
                    self.node.store.stations_page(&tenant, &q, after.as_deref(), batch).await.map_err(internal)?;
                let exhausted = rows.len() < batch as usize;
                after = rows.last().map(|s| s.id.clone());
                for s in rows {
                    if f.connected.is_none_or(|c| c == self.connected(&s)) {
                        out.push(self.station_out(s, None));
                        if out.len() == want {
                            break;
                        }
                    }
                }
                if out.len() == want || exhausted {
                    break;
                }
            }
            Ok(paged(out, page.limit, |s| s.id.clone()))
        })
    }

    fn station(&self, tenant: String, id: String) -> ServiceFuture<'_, m::Station> {
        Box::pin(async move {
            let s = self.node.services.own_station(&tenant, &id).await?;
            let connectors = self.node.store.connector_statuses(&tenant, &id).await.map_err(internal)?;
            Ok(self.station_out(s, Some(connectors)))
        })
    }

    fn update_station(&self, tenant: String, id: String, p: StationPatch) -> ServiceFuture<'_, m::Station> {
        Box::pin(async move {
            let after = self.node.services.update_station(&tenant, &id, p).await?;
            Ok(self.station_out(after, None))
        })
    }

    fn delete_station(&self, tenant: String, id: String) -> ServiceFuture<'_, ()> {
        Box::pin(async move { Ok(self.node.services.delete_station(&tenant, &id).await?) })
    }

    fn enroll(&self, tenant: String, station: String, req: EnrollRequest) -> ServiceFuture<'_, EnrollResponse> {
        Box::pin(async move {
            let (chain, rec) = self.node.services.enroll(&tenant, &station, req).await?;
            Ok(EnrollResponse {
                certificate_chain: chain,
                serial_number: rec.serial_hex,
                fingerprint: rec.fingerprint,
                not_before: rfc3339(rec.not_before),
                not_after: rfc3339(rec.not_after),
            })
        })
    }

    fn update_password(
        &self,
        tenant: String,
        station: String,
        req: m::PasswordUpdate,
    ) -> ServiceFuture<'_, m::PasswordUpdated> {
        Box::pin(async move {
            let change = self.node.services.update_password(&tenant, &station, req.password).await?;
            Ok(m::PasswordUpdated { switched: change.switched, station_status: change.station_status })
        })
    }

    fn renew_certificate(&self, tenant: String, station: String) -> ServiceFuture<'_, m::CertificateRequest> {
        Box::pin(async move { Ok(cert_request_out(self.node.services.renew_certificate(&tenant, &station).await?)) })
    }

    fn certificate_requests(&self, tenant: String, station: String) -> ServiceFuture<'_, Vec<m::CertificateRequest>> {
        Box::pin(async move {
            self.node.services.own_station(&tenant, &station).await?;
            let rows = self.node.store.cert_requests(&tenant, &station, 50).await.map_err(internal)?;
            Ok(rows.into_iter().map(cert_request_out).collect())
        })
    }

    fn certificates(
        &self,
        tenant: String,
        f: m::CertificateFilter,
        page: PageRequest,
    ) -> ServiceFuture<'_, Paged<m::Certificate>> {
        Box::pin(async move {
            if let Some(id) = f.station_id.as_deref()
                && !valid_station_id(id)
            {
                return Err(invalid("stationId", STATION_ID_RULE));
            }
            if page.after.as_deref().is_some_and(|k| authority::canonical_serial(k).as_deref() != Some(k)) {
                return Err(invalid("cursor", "cursor does not belong to this list"));
            }
            let expiring = f.expiring_before.as_deref().map(|v| parse_time("expiringBefore", v)).transpose()?;
            let status = f.status.map(|s| match s {
                m::CertificateStatus::Valid => "valid",
                m::CertificateStatus::Revoked => "revoked",
                m::CertificateStatus::Expired => "expired",
            });
            let now = self.now();
            let rows = self
                .node
                .store
                .certificates_page(
                    &tenant,
                    &store::CertificateQuery {
                        station_id: f.station_id.as_deref(),
                        status,
                        expiring_before: expiring,
                        now,
                    },
                    page.after.as_deref(),
                    page.limit + 1,
                )
                .await
                .map_err(internal)?;
            let items = rows.into_iter().map(|c| certificate_out(c, now, false, None)).collect();
            Ok(paged(items, page.limit, |c: &m::Certificate| c.serial_number.clone()))
        })
    }

    fn certificate(&self, tenant: String, serial: String) -> ServiceFuture<'_, m::Certificate> {
        Box::pin(async move {
            let rec = self.node.services.own_certificate(&tenant, &serial).await?;
            let chain = crate::station_ca::issuer_chain(&self.node.store, &tenant, rec.issuer_id.as_deref())
                .await
                .map_err(|e| ServiceError::from(Error::internal(format!("reading the issuing CA: {e:#}"))))?;
            Ok(certificate_out(rec, self.now(), true, chain))
        })
    }

    fn revoke_certificate(
        &self,
        tenant: String,
        serial: String,
        req: m::RevokeRequest,
    ) -> ServiceFuture<'_, m::Certificate> {
        Box::pin(async move {
            let reason = req.reason.map(revocation_reason).unwrap_or(pki::RevocationReason::Unspecified);
            let rec = self.node.services.revoke_certificate(&tenant, &serial, reason).await?;
            Ok(certificate_out(rec, self.now(), false, None))
        })
    }

    fn station_ca_chain(&self, tenant: String) -> ServiceFuture<'_, Vec<m::CaCertificate>> {
        Box::pin(async move { self.station_cas_out(&tenant).await })
    }

    fn rotate_station_ca(&self, tenant: String, req: m::CaRotation) -> ServiceFuture<'_, Vec<m::CaCertificate>> {
        Box::pin(async move {
            self.node.services.rotate_station_ca(&tenant, req.overlap_days).await?;
            self.station_cas_out(&tenant).await
        })
    }

    fn import_station_ca(&self, tenant: String, req: m::CaImport) -> ServiceFuture<'_, Vec<m::CaCertificate>> {
        Box::pin(async move {
            crate::services::overlap_days(req.overlap_days)?;
            let key = match (req.private_key, req.pkcs11_key_label) {
                (Some(pem), None) => ImportKey::Pem(pem),
                (None, Some(label)) => ImportKey::Pkcs11Label(label),
                (Some(_), Some(_)) => {
                    return Err(invalid("/pkcs11KeyLabel", "give privateKey or pkcs11KeyLabel, not both"));
                }
                (None, None) => {
                    return Err(invalid("/privateKey", "the CA's privateKey (or pkcs11KeyLabel) is required"));
                }
            };
            self.node.services.import_station_ca(&tenant, &req.certificate_chain, key, req.overlap_days).await?;
            self.station_cas_out(&tenant).await
        })
    }

    fn csms_root(&self, tenant: String) -> ServiceFuture<'_, String> {
        Box::pin(async move {
            let store = &self.node.store;
            let own_host = store.tenant(&tenant).await.map_err(internal)?.and_then(|t| t.ocpp_hostname).is_some();
            let owner = if own_host { tenant.as_str() } else { PLATFORM };
            match store.credential(owner, authority::CSMS_ROOT).await.map_err(internal)? {
                Some(c) => Ok(c.cert_pem),
                None => Err(ServiceError::Unavailable("the CSMS root has not been created yet".into())),
            }
        })
    }

    fn security_events(
        &self,
        tenant: String,
        f: SecurityEventFilter,
        page: PageRequest,
    ) -> ServiceFuture<'_, Paged<SecurityEvent>> {
        Box::pin(async move {
            if let Some(id) = f.station_id.as_deref()
                && !valid_station_id(id)
            {
                return Err(invalid("stationId", STATION_ID_RULE));
            }
            if let Some(k) = f.kind.as_deref()
                && (k.is_empty() || k.len() > 50 || k.chars().any(char::is_control))
            {
                return Err(invalid("type", "a security event type is 1-50 printable characters"));
            }
            let after = numeric_key(page.after)?;
            let rows = self
                .node
                .store
                .security_events_page(&tenant, f.station_id.as_deref(), f.kind.as_deref(), after, page.limit + 1)
                .await
                .map_err(internal)?;
            let items = rows
                .into_iter()
                .map(|e| SecurityEvent {
                    id: e.id,
                    station_id: e.station_id,
                    kind: e.kind,
                    occurred_at: rfc3339(e.occurred_at),
                    tech_info: e.tech_info,
                    received_at: rfc3339(e.received_at),
                })
                .collect();
            Ok(paged(items, page.limit, |e| e.id.to_string()))
        })
    }

    fn ocpp_call(
        &self,
        tenant: String,
        station: String,
        action: String,
        payload: serde_json::Value,
    ) -> ServiceFuture<'_, serde_json::Value> {
        Box::pin(async move { Ok(self.node.services.ocpp_call(&tenant, &station, &action, payload).await?) })
    }

    fn events(&self, tenant: String) -> Result<EventStream, ServiceError> {
        use tokio::sync::broadcast::error::RecvError;
        let permit = self
            .node
            .events
            .streams
            .clone()
            .try_acquire_owned()
            .map_err(|_| ServiceError::Unavailable("too many live event streams are open; retry later".into()))?;
        let rx = self.node.events.subscribe(&tenant).ok_or_else(|| {
            ServiceError::Unavailable("this tenant has too many live event streams open; retry later".into())
        })?;
        let tenant: Arc<str> = Arc::from(tenant);
        let clock = self.node.clock.clone();
        let stream = futures_util::stream::unfold((rx, tenant, permit), move |(mut rx, tenant, permit)| {
            let clock = clock.clone();
            async move {
                loop {
                    match rx.recv().await {
                        Ok(e) if e.tenant_id == tenant => {
                            let ev = LiveEvent {
                                kind: e.kind.to_owned(),
                                station_id: Some(e.station_id),
                                at: rfc3339(e.at),
                                data: e.data,
                            };
                            return Some((ev, (rx, tenant, permit)));
                        }
                        Ok(_) => continue,
                        Err(RecvError::Lagged(missed)) => {
                            let ev = LiveEvent {
                                kind: "lagged".into(),
                                station_id: None,
                                at: rfc3339(clock.now_millis()),
                                data: serde_json::json!({ "missed": missed }),
                            };
                            return Some((ev, (rx, tenant, permit)));
                        }
                        Err(RecvError::Closed) => return None,
                    }
                }
            }
        });
        Ok(Box::pin(stream))
    }

    fn audit(&self, e: AuditEntry) -> ServiceFuture<'_, ()> {
        Box::pin(async move { Ok(self.node.services.audit(e).await?) })
    }

    fn audit_log(&self, tenant: Option<String>, page: PageRequest) -> ServiceFuture<'_, Paged<AuditRecord>> {
        Box::pin(async move {
            let after = numeric_key(page.after)?;
            let tenant = tenant.unwrap_or_else(|| PLATFORM.to_owned());
            let rows = self.node.store.audit_page(&tenant, after, page.limit + 1).await.map_err(internal)?;
            let items = rows
                .into_iter()
                .map(|r| AuditRecord {
                    id: r.id,
                    at: rfc3339(r.at),
                    actor: r.actor,
                    role: r.role,
                    method: r.method,
                    path: r.path,
                    status: u16::try_from(r.status).unwrap_or(0),
                })
                .collect();
            Ok(paged(items, page.limit, |r| r.id.to_string()))
        })
    }
}
