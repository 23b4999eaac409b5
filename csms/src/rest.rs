//! The REST API's [`api::service::Service`], implemented over the store, the
//! session registry and the PKI. Every tenant-scoped call checks that the
//! resource belongs to the caller's tenant and answers NotFound otherwise.

use std::sync::Arc;

use api::model::LiveEvent;
use api::model::{
    self as m, AuditEntry, AuditRecord, EnrollRequest, EnrollResponse, NewStation, NewTenant, SecurityEvent,
    SecurityEventFilter, StationFilter, StationPatch,
};
use api::service::{EventStream, PageRequest, Paged, Service, ServiceError, ServiceFuture};
use pki::MasterKey;

use crate::app::App;
use crate::authority::{self, EnrollError};
use crate::password;
use crate::session::CallFailure;
use crate::station_ca;
use crate::store::{self, AuditRow, NewStation as StoreNewStation, PLATFORM, Registration, StationQuery, StoreError};

/// Longest description, most tags, longest tag.
const MAX_DESCRIPTION: usize = 255;
const MAX_TAGS: usize = 16;
const MAX_TAG_LEN: usize = 64;

pub struct RestService {
    app: Arc<App>,
    master: Arc<MasterKey>,
}

impl RestService {
    pub fn new(app: Arc<App>, master: Arc<MasterKey>) -> RestService {
        RestService { app, master }
    }

    fn now(&self) -> i64 {
        self.app.clock.now_millis()
    }

    /// The station if it belongs to `tenant`; NotFound otherwise (also for
    /// another tenant's station: its existence is not revealed).
    async fn own_station(&self, tenant: &str, id: &str) -> Result<store::Station, ServiceError> {
        if !crate::transport::valid_station_id(id) {
            return Err(ServiceError::NotFound { what: "station", id: printable(id) });
        }
        match self.app.store.station(id).await.map_err(internal)? {
            Some(s) if s.tenant_id == tenant => Ok(s),
            _ => Err(ServiceError::NotFound { what: "station", id: id.to_owned() }),
        }
    }

    /// The tenant's certificate with this serial (any spelling); NotFound otherwise.
    async fn own_certificate(&self, tenant: &str, serial: &str) -> Result<store::CertificateRecord, ServiceError> {
        let not_found = || ServiceError::NotFound { what: "certificate", id: printable(serial) };
        let canonical = authority::canonical_serial(serial).filter(|s| s.len() <= 42).ok_or_else(not_found)?;
        self.app.store.certificate(tenant, &canonical).await.map_err(internal)?.ok_or_else(not_found)
    }

    async fn own_tenant(&self, tenant: &str) -> Result<store::Tenant, ServiceError> {
        self.app
            .store
            .tenant(tenant)
            .await
            .map_err(internal)?
            .ok_or_else(|| ServiceError::NotFound { what: "tenant", id: tenant.to_owned() })
    }

    /// After a rotation or import: this node's PEM files and trust anchors follow.
    async fn station_ca_changed(&self, tenant: &str) {
        if let Err(e) = authority::write_tenant_pem(&self.app.store, &self.app.config.data_dir, tenant).await {
            tracing::warn!(error = %format!("{e:#}"), "writing the tenant's CA files");
        }
        self.reload_trust().await;
    }

    async fn reload_trust(&self) {
        match authority::station_trust_roots(&self.app.store, self.now()).await {
            Ok(roots) => {
                if let Err(e) = self.app.trust.reload(&roots) {
                    tracing::error!(error = %e, "reloading station trust anchors");
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading station trust anchors"),
        }
    }

    /// The tenant's station CAs as the API shows them.
    async fn station_cas_out(&self, tenant: &str) -> Result<Vec<m::CaCertificate>, ServiceError> {
        let cas = station_ca::list(&self.app.store, tenant).await.map_err(|e| {
            tracing::error!(error = %format!("{e:#}"), "reading the station CAs");
            ServiceError::Internal
        })?;
        if cas.is_empty() {
            return Err(ServiceError::Unavailable("the tenant's station CA does not exist yet".into()));
        }
        let public_url = self.app.config.public_url();
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
        self.app.sessions.get(&s.id).is_some_and(|h| *h.tenant_id == *s.tenant_id)
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
        state: r.state,
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

fn overlap_days(days: Option<u32>) -> Result<u32, ServiceError> {
    match days.unwrap_or(station_ca::DEFAULT_OVERLAP_DAYS) {
        d @ 1..=station_ca::MAX_OVERLAP_DAYS => Ok(d),
        _ => Err(invalid("/overlapDays", format!("must be 1 to {} days", station_ca::MAX_OVERLAP_DAYS))),
    }
}

/// `key_field`: where the key came from (`/privateKey` or `/pkcs11KeyLabel`).
fn ca_admin_error(e: station_ca::CaAdminError, key_field: &str) -> ServiceError {
    use station_ca::CaAdminError;
    match e {
        CaAdminError::Rejected(r) => {
            let field = match r {
                pki::ImportRejection::Key(_) | pki::ImportRejection::KeyMismatch => key_field,
                _ => "/certificateChain",
            };
            invalid(field, CaAdminError::Rejected(r).to_string())
        }
        CaAdminError::Conflict(d) => ServiceError::Conflict(d),
        CaAdminError::Internal(e) => {
            tracing::error!(error = %format!("{e:#}"), "station CA change failed");
            ServiceError::Internal
        }
    }
}

fn internal(e: StoreError) -> ServiceError {
    tracing::error!(error = %e, "API request failed in the store");
    match e {
        StoreError::Unavailable => ServiceError::Unavailable("the storage writer has stopped".into()),
        _ => ServiceError::Internal,
    }
}

fn invalid(field: &str, detail: impl Into<String>) -> ServiceError {
    ServiceError::Invalid { field: field.to_owned(), detail: detail.into() }
}

fn check_profile(field: &str, p: u8) -> Result<(), ServiceError> {
    if (1..=3).contains(&p) { Ok(()) } else { Err(invalid(field, "security profile must be 1, 2 or 3")) }
}

fn check_description(d: &str) -> Result<(), ServiceError> {
    if d.chars().count() > MAX_DESCRIPTION {
        return Err(invalid("/description", format!("at most {MAX_DESCRIPTION} characters")));
    }
    check_text("/description", d)
}

/// Free text must not carry control characters (PostgreSQL refuses NUL in text).
fn check_text(field: &str, s: &str) -> Result<(), ServiceError> {
    if s.chars().any(char::is_control) {
        return Err(invalid(field, "must not contain control characters"));
    }
    Ok(())
}

/// `s` with control characters escaped, for messages.
fn printable(s: &str) -> String {
    s.chars().take(64).flat_map(char::escape_debug).collect()
}

fn valid_tag(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= MAX_TAG_LEN
        && t.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

fn check_tags(tags: &[m::Tag]) -> Result<Vec<String>, ServiceError> {
    if tags.len() > MAX_TAGS {
        return Err(invalid("/tags", format!("at most {MAX_TAGS} tags")));
    }
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    for (i, m::Tag(t)) in tags.iter().enumerate() {
        if !valid_tag(t) {
            return Err(invalid(
                &format!("/tags/{i}"),
                format!("a tag is 1-{MAX_TAG_LEN} characters of A-Z a-z 0-9 - _ . :"),
            ));
        }
        if !out.contains(t) {
            out.push(t.clone());
        }
    }
    Ok(out)
}

fn hash_password(app: &App, p: &str) -> Result<String, ServiceError> {
    password::hash(p, app.config.password_hash_iterations).map_err(|e| match e {
        password::PasswordError::Length => invalid("/password", e.to_string()),
        _ => ServiceError::Internal,
    })
}

/// 32 random characters from a 64-symbol alphabet (192 bits).
fn generate_password() -> Result<String, ()> {
    use aws_lc_rs::rand::SecureRandom;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::SystemRandom::new().fill(&mut bytes).map_err(|_| ())?;
    Ok(bytes.iter().map(|b| ALPHABET[usize::from(b & 63)] as char).collect())
}

fn registration(r: m::Registration) -> Registration {
    match r {
        m::Registration::Accepted => Registration::Accepted,
        m::Registration::Pending => Registration::Pending,
        m::Registration::Rejected => Registration::Rejected,
    }
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
        Box::pin(async move {
            if !authority::valid_tenant_id(&t.name) {
                return Err(invalid("/name", "1-63 characters of a-z, 0-9 and '-', not starting with '-'"));
            }
            let org = t.organization_name.trim();
            if org.is_empty() || org.chars().count() > 64 {
                return Err(invalid("/organizationName", "1-64 characters"));
            }
            check_text("/organizationName", org)?;
            // Host names are case-insensitive (DNS, TLS SNI): stored lower-case.
            let host = t.ocpp_hostname.as_deref().map(str::to_ascii_lowercase);
            if let Some(h) = host.as_deref()
                && !authority::valid_hostname(h)
            {
                return Err(invalid("/ocppHostname", "not a DNS host name"));
            }
            // Names and host names (case-insensitively) are unique in the database.
            let store = &self.app.store;
            match store.create_tenant(&t.name, org, host.as_deref(), self.now()).await {
                Ok(_) => {}
                Err(StoreError::AlreadyExists { .. }) => {
                    return Err(ServiceError::Conflict(format!("tenant '{}' or its host name already exists", t.name)));
                }
                Err(e) => return Err(internal(e)),
            }
            // Its certificate authorities.
            let created =
                authority::ensure_tenant(store, &self.master, self.app.clock.as_ref(), &t.name, org, host.as_deref())
                    .await
                    .map_err(|e| {
                        tracing::error!(error = %e, "creating tenant");
                        ServiceError::Internal
                    })?;
            // Its stations can connect at once, not only after the next refresh.
            match authority::station_trust_roots(store, self.app.clock.now_millis()).await {
                Ok(roots) => {
                    if let Err(e) = self.app.trust.reload(&roots) {
                        tracing::error!(error = %e, "reloading station trust anchors");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "reading station trust anchors"),
            }
            Ok(tenant_out(created))
        })
    }

    fn tenants(&self, page: PageRequest) -> ServiceFuture<'_, Paged<m::Tenant>> {
        Box::pin(async move {
            let rows = self.app.store.tenants_page(page.after.as_deref(), page.limit + 1).await.map_err(internal)?;
            Ok(paged(rows.into_iter().map(tenant_out).collect(), page.limit, |t| t.name.clone()))
        })
    }

    fn tenant(&self, name: String) -> ServiceFuture<'_, m::Tenant> {
        Box::pin(async move {
            if !authority::valid_tenant_id(&name) {
                return Err(ServiceError::NotFound { what: "tenant", id: printable(&name) });
            }
            match self.app.store.tenant(&name).await.map_err(internal)? {
                Some(t) if t.id != PLATFORM => Ok(tenant_out(t)),
                _ => Err(ServiceError::NotFound { what: "tenant", id: name }),
            }
        })
    }

    fn create_station(&self, tenant: String, s: NewStation) -> ServiceFuture<'_, m::Station> {
        Box::pin(async move {
            if !crate::transport::valid_station_id(&s.id) {
                return Err(invalid("/id", "1-48 characters of A-Z a-z 0-9 - . _ ~"));
            }
            check_profile("/securityProfile", s.security_profile)?;
            if s.security_profile < 3 && s.password.is_none() {
                return Err(invalid(
                    "/password",
                    format!(
                        "security profile {} authenticates with HTTP Basic: a password is required",
                        s.security_profile
                    ),
                ));
            }
            if let Some(d) = &s.description {
                check_description(d)?;
            }
            let tags = s.tags.as_deref().map(check_tags).transpose()?;
            let password_hash = s.password.as_deref().map(|p| hash_password(&self.app, p)).transpose()?;
            let new = StoreNewStation {
                id: s.id.clone(),
                tenant_id: tenant.clone(),
                security_profile: s.security_profile,
                password_hash,
                registration: registration(s.registration.unwrap_or(m::Registration::Accepted)),
                description: s.description.filter(|d| !d.is_empty()),
                tags: tags.unwrap_or_default(),
            };
            match self.app.store.create_station(&new, self.now()).await {
                Ok(_) => {}
                // Station ids are unique across tenants (the OCPP URL has no tenant).
                Err(StoreError::AlreadyExists { .. }) => {
                    return Err(ServiceError::Conflict(format!("station id '{}' is not available", s.id)));
                }
                Err(e) => return Err(internal(e)),
            }
            let created = self.own_station(&tenant, &s.id).await?;
            Ok(self.station_out(created, None))
        })
    }

    fn stations(&self, tenant: String, f: StationFilter, page: PageRequest) -> ServiceFuture<'_, Paged<m::Station>> {
        Box::pin(async move {
            if let Some(p) = f.security_profile {
                check_profile("securityProfile", p)?;
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
            if page.after.as_deref().is_some_and(|k| !crate::transport::valid_station_id(k)) {
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
                    self.app.store.stations_page(&tenant, &q, after.as_deref(), batch).await.map_err(internal)?;
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
            let s = self.own_station(&tenant, &id).await?;
            let connectors = self.app.store.connector_statuses(&tenant, &id).await.map_err(internal)?;
            Ok(self.station_out(s, Some(connectors)))
        })
    }

    fn update_station(&self, tenant: String, id: String, p: StationPatch) -> ServiceFuture<'_, m::Station> {
        Box::pin(async move {
            let before = self.own_station(&tenant, &id).await?;
            if let Some(v) = p.security_profile {
                check_profile("/securityProfile", v)?;
            }
            if let Some(d) = &p.description {
                check_description(d)?;
            }
            let tags = p.tags.as_deref().map(check_tags).transpose()?;
            let new_profile = p.security_profile.unwrap_or(before.security_profile);
            if new_profile < 3 && before.password_hash.is_none() && p.password.is_none() {
                return Err(invalid(
                    "/password",
                    format!("security profile {new_profile} authenticates with HTTP Basic: set a password too"),
                ));
            }
            let hash = p.password.as_deref().map(|pw| hash_password(&self.app, pw)).transpose()?;
            let store = &self.app.store;
            store
                .update_station(
                    &tenant,
                    &id,
                    p.security_profile,
                    hash.as_deref(),
                    p.registration.map(registration),
                    p.enabled,
                )
                .await
                .map_err(|e| match e {
                    StoreError::NotFound { .. } => ServiceError::NotFound { what: "station", id: id.clone() },
                    e => internal(e),
                })?;
            if p.description.is_some() || tags.is_some() {
                store
                    .set_station_details(&tenant, &id, p.description.as_deref(), tags.as_deref())
                    .await
                    .map_err(internal)?;
            }
            // A live session opened under the old settings does not outlive them.
            let reauthenticate = p.enabled == Some(false)
                || p.security_profile.is_some_and(|v| v != before.security_profile)
                || hash.is_some();
            if reauthenticate && self.app.sessions.disconnect(&id) {
                tracing::info!(station = %id, "session closed: the station's settings changed");
            }
            let after = self.own_station(&tenant, &id).await?;
            Ok(self.station_out(after, None))
        })
    }

    fn delete_station(&self, tenant: String, id: String) -> ServiceFuture<'_, ()> {
        Box::pin(async move {
            self.own_station(&tenant, &id).await?;
            self.app.store.delete_station(&tenant, &id, self.now()).await.map_err(|e| match e {
                StoreError::NotFound { .. } => ServiceError::NotFound { what: "station", id: id.clone() },
                e => internal(e),
            })?;
            self.app.sessions.disconnect(&id);
            Ok(())
        })
    }

    fn enroll(&self, tenant: String, station: String, req: EnrollRequest) -> ServiceFuture<'_, EnrollResponse> {
        Box::pin(async move {
            self.own_station(&tenant, &station).await?;
            let days = req.validity_days.unwrap_or(self.app.config.station_certificate_days);
            if !(1..=3650).contains(&days) {
                return Err(invalid("/validityDays", "1 to 3650 days"));
            }
            let now = self.app.clock.now();
            let public_url = self.app.config.public_url();
            match authority::enroll(&self.app.store, &self.master, now, &station, &req.csr, days, &public_url).await {
                Ok((chain, rec)) => Ok(EnrollResponse {
                    certificate_chain: chain,
                    serial_number: rec.serial_hex,
                    fingerprint: rec.fingerprint,
                    not_before: rfc3339(rec.not_before),
                    not_after: rfc3339(rec.not_after),
                }),
                Err(EnrollError::Csr { rule, detail }) => {
                    Err(invalid("/csr", format!("CSR rejected by rule {rule}: {detail}")))
                }
                Err(EnrollError::UnknownStation(id)) => Err(ServiceError::NotFound { what: "station", id }),
                Err(EnrollError::Internal(e)) => {
                    tracing::error!(error = %e, "enrollment failed");
                    Err(ServiceError::Internal)
                }
            }
        })
    }

    fn update_password(
        &self,
        tenant: String,
        station: String,
        req: m::PasswordUpdate,
    ) -> ServiceFuture<'_, m::PasswordUpdated> {
        Box::pin(async move {
            let s = self.own_station(&tenant, &station).await?;
            if s.security_profile >= 3 {
                return Err(ServiceError::Conflict(format!(
                    "station '{station}' uses security profile 3 (certificates), not a password"
                )));
            }
            let password = match req.password {
                Some(p) => {
                    if !(16..=40).contains(&p.chars().count()) || !p.chars().all(|c| c.is_ascii_graphic()) {
                        return Err(invalid("/password", "16-40 printable ASCII characters"));
                    }
                    p
                }
                None => generate_password().map_err(|_| ServiceError::Internal)?,
            };
            let hash = hash_password(&self.app, &password)?;
            let handle = match self.app.sessions.get(&station) {
                Some(h) if *h.tenant_id == *tenant => h,
                _ => return Err(ServiceError::NotConnected(station)),
            };
            let payload = serde_json::json!({ "setVariableData": [{
                "attributeValue": password,
                "component": { "name": "SecurityCtrlr" },
                "variable": { "name": "BasicAuthPassword" },
            }]});
            let answer = handle
                .call(ocpp::v201::Action::SetVariables, payload)
                .await
                .map_err(|e| ServiceError::Station(format!("SetVariables(BasicAuthPassword) failed: {e}")))?;
            let status = answer["setVariableResult"][0]["attributeStatus"].as_str().unwrap_or("").to_owned();
            let switched = status == "Accepted";
            if switched {
                // A01.FR.03: only now does the CSMS expect the new password.
                self.app
                    .store
                    .update_station(&tenant, &station, None, Some(&hash), None, None)
                    .await
                    .map_err(internal)?;
            }
            tracing::info!(station = %station, tenant = %tenant, status = %status, switched, "BasicAuthPassword update");
            Ok(m::PasswordUpdated { switched, station_status: status })
        })
    }

    fn renew_certificate(&self, tenant: String, station: String) -> ServiceFuture<'_, m::CertificateRequest> {
        Box::pin(async move {
            self.own_station(&tenant, &station).await?;
            match crate::lifecycle::renew(&self.app, &tenant, &station).await {
                Ok(r) => Ok(cert_request_out(r)),
                Err(crate::lifecycle::RenewError::NotConnected(id)) => Err(ServiceError::NotConnected(id)),
                Err(crate::lifecycle::RenewError::Refused(why)) => {
                    Err(ServiceError::Station(format!("station '{station}' did not start the renewal: {why}")))
                }
                Err(crate::lifecycle::RenewError::Store(e)) => Err(internal(e)),
            }
        })
    }

    fn certificate_requests(&self, tenant: String, station: String) -> ServiceFuture<'_, Vec<m::CertificateRequest>> {
        Box::pin(async move {
            self.own_station(&tenant, &station).await?;
            let rows = self.app.store.cert_requests(&tenant, &station, 50).await.map_err(internal)?;
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
                && !crate::transport::valid_station_id(id)
            {
                return Err(invalid("stationId", "1-48 characters of A-Z a-z 0-9 - . _ ~"));
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
                .app
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
            let rec = self.own_certificate(&tenant, &serial).await?;
            let chain = crate::station_ca::issuer_chain(&self.app.store, &tenant, rec.issuer_id.as_deref())
                .await
                .map_err(|e| {
                    tracing::error!(error = %e, "reading the issuing CA");
                    ServiceError::Internal
                })?;
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
            let rec = self.own_certificate(&tenant, &serial).await?;
            let reason = req.reason.map(revocation_reason).unwrap_or(pki::RevocationReason::Unspecified);
            self.app
                .store
                .revoke_certificate(&tenant, &rec.serial_hex, self.now(), reason.as_str())
                .await
                .map_err(internal)?;
            let closed = self.app.sessions.disconnect_certificate(&tenant, &rec.serial_hex);
            tracing::info!(tenant = %tenant, serial = %rec.serial_hex, reason = reason.as_str(), sessions_closed = closed, "certificate revoked");
            let rec = self.own_certificate(&tenant, &rec.serial_hex).await?;
            Ok(certificate_out(rec, self.now(), false, None))
        })
    }

    fn station_ca_chain(&self, tenant: String) -> ServiceFuture<'_, Vec<m::CaCertificate>> {
        Box::pin(async move { self.station_cas_out(&tenant).await })
    }

    fn rotate_station_ca(&self, tenant: String, req: m::CaRotation) -> ServiceFuture<'_, Vec<m::CaCertificate>> {
        Box::pin(async move {
            let overlap = overlap_days(req.overlap_days)?;
            let t = self.own_tenant(&tenant).await?;
            station_ca::rotate(&self.app.store, &self.master, self.app.clock.as_ref(), &t, overlap)
                .await
                .map_err(|e| ca_admin_error(e, "/privateKey"))?;
            self.station_ca_changed(&tenant).await;
            self.station_cas_out(&tenant).await
        })
    }

    fn import_station_ca(&self, tenant: String, req: m::CaImport) -> ServiceFuture<'_, Vec<m::CaCertificate>> {
        Box::pin(async move {
            let overlap = overlap_days(req.overlap_days)?;
            let key = match (req.private_key, req.pkcs11_key_label) {
                (Some(pem), None) => station_ca::ImportKey::Pem(pem),
                (None, Some(label)) => station_ca::ImportKey::Pkcs11Label(label),
                (Some(_), Some(_)) => {
                    return Err(invalid("/pkcs11KeyLabel", "give privateKey or pkcs11KeyLabel, not both"));
                }
                (None, None) => {
                    return Err(invalid("/privateKey", "the CA's privateKey (or pkcs11KeyLabel) is required"));
                }
            };
            let key_field = match key {
                station_ca::ImportKey::Pem(_) => "/privateKey",
                station_ca::ImportKey::Pkcs11Label(_) => "/pkcs11KeyLabel",
            };
            let t = self.own_tenant(&tenant).await?;
            station_ca::import(
                &self.app.store,
                &self.master,
                self.app.clock.as_ref(),
                &t,
                &req.certificate_chain,
                key,
                overlap,
            )
            .await
            .map_err(|e| ca_admin_error(e, key_field))?;
            // Stations chaining to the new root can connect at once.
            self.station_ca_changed(&tenant).await;
            self.station_cas_out(&tenant).await
        })
    }

    fn csms_root(&self, tenant: String) -> ServiceFuture<'_, String> {
        Box::pin(async move {
            let store = &self.app.store;
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
                && !crate::transport::valid_station_id(id)
            {
                return Err(invalid("stationId", "1-48 characters of A-Z a-z 0-9 - . _ ~"));
            }
            if let Some(k) = f.kind.as_deref()
                && (k.is_empty() || k.len() > 50 || k.chars().any(char::is_control))
            {
                return Err(invalid("type", "a security event type is 1-50 printable characters"));
            }
            let after = numeric_key(page.after)?;
            let rows = self
                .app
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
        Box::pin(async move {
            use ocpp::v201::{Action, Initiator};
            let a = Action::from_name(&action)
                .ok_or_else(|| invalid("action", format!("'{action}' is not an OCPP 2.0.1 action")))?;
            if a.initiated_by() == Initiator::ChargingStation {
                return Err(invalid("action", format!("{action} is sent by charging stations, not by the CSMS")));
            }
            self.own_station(&tenant, &station).await?;
            let handle = match self.app.sessions.get(&station) {
                Some(h) if *h.tenant_id == *tenant => h,
                _ => return Err(ServiceError::NotConnected(station)),
            };
            handle.call(a, payload).await.map_err(|f| match f {
                CallFailure::InvalidRequest(v) => {
                    let field = if v.path.is_empty() { "/".to_owned() } else { v.path.clone() };
                    ServiceError::Invalid { field, detail: format!("{} ({}): {}", v.message, v.code.as_str(), v.path) }
                }
                CallFailure::NotConnected | CallFailure::Closed => ServiceError::NotConnected(station.clone()),
                CallFailure::StationRejected => {
                    ServiceError::Conflict(format!("station '{station}' is Rejected; the CSMS sends it nothing"))
                }
                CallFailure::Busy => {
                    ServiceError::Unavailable(format!("too many calls queued for station '{station}'"))
                }
                CallFailure::Timeout(d) => ServiceError::Timeout(format!(
                    "station '{station}' did not answer {action} within {}s",
                    d.as_secs()
                )),
                CallFailure::Rejected { code, description } => ServiceError::Station(format!(
                    "station '{station}' answered {action} with {}: {description}",
                    code.as_str()
                )),
                CallFailure::InvalidResponse(v) => ServiceError::Station(format!(
                    "station '{station}' answered {action} with an invalid payload: {} at {}",
                    v.message, v.path
                )),
                CallFailure::MalformedResponse(why) => ServiceError::Station(format!(
                    "station '{station}' answered {action} with a malformed frame: {why}"
                )),
            })
        })
    }

    fn events(&self, tenant: String) -> Result<EventStream, ServiceError> {
        use tokio::sync::broadcast::error::RecvError;
        let permit = self
            .app
            .event_streams
            .clone()
            .try_acquire_owned()
            .map_err(|_| ServiceError::Unavailable("too many live event streams are open; retry later".into()))?;
        let rx = self.app.subscribe(&tenant).ok_or_else(|| {
            ServiceError::Unavailable("this tenant has too many live event streams open; retry later".into())
        })?;
        let tenant: Arc<str> = Arc::from(tenant);
        let clock = self.app.clock.clone();
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
        Box::pin(async move {
            let row = AuditRow {
                id: 0,
                tenant_id: e.tenant.unwrap_or_else(|| PLATFORM.to_owned()),
                at: self.now(),
                actor: e.actor,
                role: e.role,
                method: e.method,
                path: e.path,
                status: i64::from(e.status),
            };
            self.app.store.insert_audit(&row).await.map_err(internal)
        })
    }

    fn audit_log(&self, tenant: Option<String>, page: PageRequest) -> ServiceFuture<'_, Paged<AuditRecord>> {
        Box::pin(async move {
            let after = numeric_key(page.after)?;
            let tenant = tenant.unwrap_or_else(|| PLATFORM.to_owned());
            let rows = self.app.store.audit_page(&tenant, after, page.limit + 1).await.map_err(internal)?;
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
