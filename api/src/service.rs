//! What the API needs from the server, as one trait the `csms` binary
//! implements. Every tenant-scoped call takes the tenant from the caller's
//! token: an implementation never returns another tenant's data, and answers
//! [`ServiceError::NotFound`] for it as for a resource that does not exist.

use std::future::Future;
use std::pin::Pin;

use crate::model::{
    AuditEntry, AuditRecord, CaCertificate, CaImport, CaRotation, Certificate, CertificateFilter, CertificateRequest,
    EnrollRequest, EnrollResponse, NewStation, NewTenant, PasswordUpdate, PasswordUpdated, RevokeRequest,
    SecurityEvent, SecurityEventFilter, Station, StationFilter, StationPatch, Tenant,
};
use crate::problem::{Kind, Problem};

/// A live stream of one tenant's events; it ends when the server shuts down.
pub type EventStream = Pin<Box<dyn futures_util::Stream<Item = crate::model::LiveEvent> + Send>>;

pub type ServiceFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, ServiceError>> + Send + 'a>>;

/// Keyset pagination: items after `after` (exclusive), at most `limit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub after: Option<String>,
    pub limit: u32,
}

/// One page and the key to continue after, if there is more.
#[derive(Debug, Clone)]
pub struct Paged<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ServiceError {
    NotFound {
        what: &'static str,
        id: String,
    },
    Conflict(String),
    /// A request field is invalid: `field` is a JSON pointer into the body.
    Invalid {
        field: String,
        detail: String,
    },
    /// Nothing was sent: the station is not connected (or its connection closed
    /// while the call was queued).
    NotConnected(String),
    /// The call was sent but its answer never came (timeout, or the connection
    /// closed): the station may have acted on it; retrying may do it twice.
    OutcomeUnknown(String),
    /// The station answered with a CALLERROR or an invalid response.
    Station(String),
    Unavailable(String),
    /// Logged by the implementation; the client learns nothing more.
    Internal,
}

impl From<ServiceError> for Problem {
    fn from(e: ServiceError) -> Problem {
        match e {
            ServiceError::NotFound { what, id } => Problem::not_found(what, &id),
            ServiceError::Conflict(d) => Problem::new(Kind::Conflict, d),
            // A JSON pointer names a body field; anything else a parameter.
            ServiceError::Invalid { field, detail } if field.starts_with('/') => Problem::invalid(&field, detail),
            ServiceError::Invalid { field, detail } => Problem::new(Kind::InvalidParameter, detail).field(field),
            ServiceError::NotConnected(id) => {
                Problem::new(Kind::StationNotConnected, format!("station '{id}' is not connected"))
            }
            ServiceError::OutcomeUnknown(d) => Problem::new(Kind::CallOutcomeUnknown, d),
            ServiceError::Station(d) => Problem::new(Kind::StationError, d),
            ServiceError::Unavailable(d) => Problem::new(Kind::Unavailable, d),
            ServiceError::Internal => Problem::internal(),
        }
    }
}

pub trait Service: Send + Sync + 'static {
    fn create_tenant(&self, tenant: NewTenant) -> ServiceFuture<'_, Tenant>;
    fn tenants(&self, page: PageRequest) -> ServiceFuture<'_, Paged<Tenant>>;
    fn tenant(&self, name: String) -> ServiceFuture<'_, Tenant>;

    fn create_station(&self, tenant: String, station: NewStation) -> ServiceFuture<'_, Station>;
    fn stations(&self, tenant: String, filter: StationFilter, page: PageRequest) -> ServiceFuture<'_, Paged<Station>>;
    /// One station with its connector statuses.
    fn station(&self, tenant: String, id: String) -> ServiceFuture<'_, Station>;
    fn update_station(&self, tenant: String, id: String, patch: StationPatch) -> ServiceFuture<'_, Station>;
    /// Removes the station and disconnects it if connected.
    fn delete_station(&self, tenant: String, id: String) -> ServiceFuture<'_, ()>;

    /// Manufacturing-time enrollment: signs the station's CSR.
    fn enroll(&self, tenant: String, station: String, req: EnrollRequest) -> ServiceFuture<'_, EnrollResponse>;
    /// A01: sets the station's BasicAuthPassword through SetVariables; the CSMS
    /// switches to it only when the station answers Accepted.
    fn update_password(
        &self,
        tenant: String,
        station: String,
        req: PasswordUpdate,
    ) -> ServiceFuture<'_, PasswordUpdated>;

    /// A02: asks the connected station for a new CSR (TriggerMessage) and
    /// tracks the renewal.
    fn renew_certificate(&self, tenant: String, station: String) -> ServiceFuture<'_, CertificateRequest>;
    /// The station's certificate requests, newest first.
    fn certificate_requests(&self, tenant: String, station: String) -> ServiceFuture<'_, Vec<CertificateRequest>>;

    /// The tenant's station certificates, by serial.
    fn certificates(
        &self,
        tenant: String,
        filter: CertificateFilter,
        page: PageRequest,
    ) -> ServiceFuture<'_, Paged<Certificate>>;
    /// One certificate with its PEM and issuer chain.
    fn certificate(&self, tenant: String, serial: String) -> ServiceFuture<'_, Certificate>;
    /// Revokes a certificate (CRL, OCSP, refused at the next connection) and
    /// closes the session that uses it.
    fn revoke_certificate(&self, tenant: String, serial: String, req: RevokeRequest) -> ServiceFuture<'_, Certificate>;
    /// The tenant's station PKI: root, then issuing sub-CA.
    fn station_ca_chain(&self, tenant: String) -> ServiceFuture<'_, Vec<CaCertificate>>;
    /// Replaces the issuing sub-CA; the list of CAs afterwards.
    fn rotate_station_ca(&self, tenant: String, req: CaRotation) -> ServiceFuture<'_, Vec<CaCertificate>>;
    /// Makes an operator's CA the station CA; the list of CAs afterwards.
    fn import_station_ca(&self, tenant: String, req: CaImport) -> ServiceFuture<'_, Vec<CaCertificate>>;
    /// PEM of the CSMS root certificate the tenant's stations must trust.
    fn csms_root(&self, tenant: String) -> ServiceFuture<'_, String>;

    fn security_events(
        &self,
        tenant: String,
        filter: SecurityEventFilter,
        page: PageRequest,
    ) -> ServiceFuture<'_, Paged<SecurityEvent>>;

    /// Sends an OCPP call to a connected station through its session's outbound
    /// path and returns the station's (schema-valid) response payload.
    fn ocpp_call(
        &self,
        tenant: String,
        station: String,
        action: String,
        payload: serde_json::Value,
    ) -> ServiceFuture<'_, serde_json::Value>;

    /// Live events of the tenant's stations, from now on.
    fn events(&self, tenant: String) -> Result<EventStream, ServiceError>;

    /// Records a mutating call. Must not fail the call it records: errors are
    /// the implementation's to log.
    fn audit(&self, entry: AuditEntry) -> ServiceFuture<'_, ()>;
    /// The tenant's audit log, or the platform's (`None`).
    fn audit_log(&self, tenant: Option<String>, page: PageRequest) -> ServiceFuture<'_, Paged<AuditRecord>>;
}
