//! The `/api/v1` routes. Each is described with `utoipa::path` and registered
//! only through `utoipa_axum::routes!`, so the OpenAPI document and the router
//! are built from the same list.

use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRef, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

use crate::auth::{Authenticator, Principal};
use crate::extract::{JsonBody, PathParam, QueryParams, cursor};
use crate::model::{
    AuditPage, CaCertificate, CaImport, CaRotation, Certificate, CertificateFilter, CertificatePage,
    CertificateRequest, EnrollRequest, EnrollResponse, NewStation, NewTenant, PageQuery, PasswordUpdate,
    PasswordUpdated, RevokeRequest, SecurityEventFilter, SecurityEventPage, Station, StationFilter, StationPage,
    StationPatch, Tenant, TenantPage,
};
use crate::problem::{Kind, Problem};
use crate::responses::{
    BodyRejected, CommandFailures, Conflict, Forbidden, NotFound, ParamRejected, Unauthenticated, Unavailable,
};
use crate::service::Service;

/// What every handler reaches.
#[derive(Clone)]
pub struct ApiState {
    pub service: Arc<dyn Service>,
    pub auth: Arc<Authenticator>,
    /// The OpenAPI document, serialised once.
    pub doc: Arc<str>,
}

impl FromRef<ApiState> for Arc<Authenticator> {
    fn from_ref(s: &ApiState) -> Self {
        s.auth.clone()
    }
}

type ApiResult<T> = Result<T, Problem>;

// ---- tenants ----------------------------------------------------------------

/// Create a tenant (platform-admin).
#[utoipa::path(post, path = "/api/v1/tenants", tag = "tenants", request_body = NewTenant,
    responses(
        (status = 201, description = "Created", body = Tenant),
        Unauthenticated,
        Forbidden,
        Conflict,
        BodyRejected,
    ),
    security(("bearer" = [])))]
pub async fn create_tenant(
    State(st): State<ApiState>,
    who: Principal,
    JsonBody(body): JsonBody<NewTenant>,
) -> ApiResult<(StatusCode, Json<Tenant>)> {
    who.platform_admin()?;
    let t = st.service.create_tenant(body).await?;
    Ok((StatusCode::CREATED, Json(t)))
}

/// List tenants (platform-admin).
#[utoipa::path(get, path = "/api/v1/tenants", tag = "tenants", params(PageQuery),
    responses(
        (status = 200, description = "One page of tenants", body = TenantPage),
        Unauthenticated,
        Forbidden,
        ParamRejected,
    ),
    security(("bearer" = [])))]
pub async fn list_tenants(
    State(st): State<ApiState>,
    who: Principal,
    QueryParams(page): QueryParams<PageQuery>,
) -> ApiResult<Json<TenantPage>> {
    who.platform_admin()?;
    let p = st.service.tenants(page.request()?).await?;
    Ok(Json(TenantPage { items: p.items, next_cursor: p.next.as_deref().map(cursor) }))
}

/// Show a tenant: a platform-admin any, others their own.
#[utoipa::path(get, path = "/api/v1/tenants/{name}", tag = "tenants",
    params(("name" = String, Path, description = "Tenant name")),
    responses(
        (status = 200, description = "The tenant", body = Tenant),
        Unauthenticated,
        NotFound,
    ),
    security(("bearer" = [])))]
pub async fn show_tenant(
    State(st): State<ApiState>,
    who: Principal,
    PathParam(name): PathParam<String>,
) -> ApiResult<Json<Tenant>> {
    if who.platform_admin().is_err() && who.tenant != name {
        return Err(Problem::not_found("tenant", &name));
    }
    Ok(Json(st.service.tenant(name).await?))
}

// ---- stations ---------------------------------------------------------------

/// Register a charging station.
#[utoipa::path(post, path = "/api/v1/stations", tag = "stations", request_body = NewStation,
    responses(
        (status = 201, description = "Created", body = Station),
        Unauthenticated,
        Forbidden,
        Conflict,
        BodyRejected,
    ),
    security(("bearer" = [])))]
pub async fn create_station(
    State(st): State<ApiState>,
    who: Principal,
    JsonBody(body): JsonBody<NewStation>,
) -> ApiResult<(StatusCode, Json<Station>)> {
    let tenant = who.writer()?;
    let s = st.service.create_station(tenant, body).await?;
    Ok((StatusCode::CREATED, Json(s)))
}

/// List the tenant's stations.
#[utoipa::path(get, path = "/api/v1/stations", tag = "stations", params(StationFilter),
    responses(
        (status = 200, description = "One page of stations, by id", body = StationPage),
        Unauthenticated,
        Forbidden,
        ParamRejected,
    ),
    security(("bearer" = [])))]
pub async fn list_stations(
    State(st): State<ApiState>,
    who: Principal,
    QueryParams(filter): QueryParams<StationFilter>,
) -> ApiResult<Json<StationPage>> {
    let tenant = who.reader()?;
    let page = filter.page().request()?;
    let p = st.service.stations(tenant, filter, page).await?;
    Ok(Json(StationPage { items: p.items, next_cursor: p.next.as_deref().map(cursor) }))
}

/// Show a station: connection state, boot information, connector statuses.
#[utoipa::path(get, path = "/api/v1/stations/{id}", tag = "stations",
    params(("id" = String, Path, description = "Station id")),
    responses(
        (status = 200, description = "The station", body = Station),
        Unauthenticated,
        Forbidden,
        NotFound,
    ),
    security(("bearer" = [])))]
pub async fn show_station(
    State(st): State<ApiState>,
    who: Principal,
    PathParam(id): PathParam<String>,
) -> ApiResult<Json<Station>> {
    let tenant = who.reader()?;
    Ok(Json(st.service.station(tenant, id).await?))
}

/// Change a station's settings.
#[utoipa::path(patch, path = "/api/v1/stations/{id}", tag = "stations", request_body = StationPatch,
    params(("id" = String, Path, description = "Station id")),
    responses(
        (status = 200, description = "The updated station", body = Station),
        Unauthenticated,
        Forbidden,
        NotFound,
        BodyRejected,
    ),
    security(("bearer" = [])))]
pub async fn update_station(
    State(st): State<ApiState>,
    who: Principal,
    PathParam(id): PathParam<String>,
    JsonBody(body): JsonBody<StationPatch>,
) -> ApiResult<Json<Station>> {
    let tenant = who.writer()?;
    Ok(Json(st.service.update_station(tenant, id, body).await?))
}

/// Delete a station; a connected station is disconnected.
#[utoipa::path(delete, path = "/api/v1/stations/{id}", tag = "stations",
    params(("id" = String, Path, description = "Station id")),
    responses(
        (status = 204, description = "Deleted"),
        Unauthenticated,
        Forbidden,
        NotFound,
    ),
    security(("bearer" = [])))]
pub async fn delete_station(
    State(st): State<ApiState>,
    who: Principal,
    PathParam(id): PathParam<String>,
) -> ApiResult<StatusCode> {
    let tenant = who.writer()?;
    st.service.delete_station(tenant, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Manufacturing-time enrollment: sign the station's CSR, return the chain.
#[utoipa::path(post, path = "/api/v1/stations/{id}/certificates", tag = "certificates", request_body = EnrollRequest,
    params(("id" = String, Path, description = "Station id")),
    responses(
        (status = 201, description = "Issued", body = EnrollResponse),
        Unauthenticated,
        Forbidden,
        NotFound,
        BodyRejected,
    ),
    security(("bearer" = [])))]
pub async fn enroll(
    State(st): State<ApiState>,
    who: Principal,
    PathParam(id): PathParam<String>,
    JsonBody(body): JsonBody<EnrollRequest>,
) -> ApiResult<(StatusCode, Json<EnrollResponse>)> {
    let tenant = who.writer()?;
    Ok((StatusCode::CREATED, Json(st.service.enroll(tenant, id, body).await?)))
}

/// A01: give a connected profile 1/2 station a new HTTP Basic password. It is
/// sent with SetVariables(SecurityCtrlr.BasicAuthPassword); the CSMS switches to
/// it only when the station answers Accepted. The password is never returned.
#[utoipa::path(post, path = "/api/v1/stations/{id}/password", tag = "stations", request_body = PasswordUpdate,
    params(("id" = String, Path, description = "Station id")),
    responses(
        (status = 200, description = "What the station answered and whether the CSMS switched", body = PasswordUpdated),
        Unauthenticated,
        Forbidden,
        NotFound,
        BodyRejected,
        CommandFailures,
    ),
    security(("bearer" = [])))]
pub async fn update_password(
    State(st): State<ApiState>,
    who: Principal,
    PathParam(id): PathParam<String>,
    JsonBody(body): JsonBody<PasswordUpdate>,
) -> ApiResult<Json<PasswordUpdated>> {
    let tenant = who.writer()?;
    Ok(Json(st.service.update_password(tenant, id, body).await?))
}

/// A02: renew the station's certificate. The station is asked (TriggerMessage
/// SignChargingStationCertificate) for a new CSR; the renewal is then tracked
/// through issuance, delivery and the station's reconnection with the new certificate.
#[utoipa::path(post, path = "/api/v1/stations/{id}/certificates/renew", tag = "certificates",
    params(("id" = String, Path, description = "Station id")),
    responses(
        (status = 202, description = "The station accepted the trigger; the renewal is under way", body = CertificateRequest),
        Unauthenticated,
        Forbidden,
        NotFound,
        CommandFailures,
    ),
    security(("bearer" = [])))]
pub async fn renew_certificate(
    State(st): State<ApiState>,
    who: Principal,
    PathParam(id): PathParam<String>,
) -> ApiResult<(StatusCode, Json<CertificateRequest>)> {
    let tenant = who.writer()?;
    Ok((StatusCode::ACCEPTED, Json(st.service.renew_certificate(tenant, id).await?)))
}

/// The station's certificate requests (renewals and its own), newest first.
#[utoipa::path(get, path = "/api/v1/stations/{id}/certificate-requests", tag = "certificates",
    params(("id" = String, Path, description = "Station id")),
    responses(
        (status = 200, description = "The latest 50 requests", body = Vec<CertificateRequest>),
        Unauthenticated,
        Forbidden,
        NotFound,
    ),
    security(("bearer" = [])))]
pub async fn certificate_requests(
    State(st): State<ApiState>,
    who: Principal,
    PathParam(id): PathParam<String>,
) -> ApiResult<Json<Vec<CertificateRequest>>> {
    let tenant = who.reader()?;
    Ok(Json(st.service.certificate_requests(tenant, id).await?))
}

/// The tenant's station certificates (inventory).
#[utoipa::path(get, path = "/api/v1/certificates", tag = "certificates", params(CertificateFilter),
    responses(
        (status = 200, description = "One page of certificates, by serial", body = CertificatePage),
        Unauthenticated,
        Forbidden,
        ParamRejected,
    ),
    security(("bearer" = [])))]
pub async fn list_certificates(
    State(st): State<ApiState>,
    who: Principal,
    QueryParams(filter): QueryParams<CertificateFilter>,
) -> ApiResult<Json<CertificatePage>> {
    let tenant = who.reader()?;
    let page = filter.page().request()?;
    let p = st.service.certificates(tenant, filter, page).await?;
    Ok(Json(CertificatePage { items: p.items, next_cursor: p.next.as_deref().map(cursor) }))
}

/// One certificate: status, fingerprint, PEM and issuer chain.
#[utoipa::path(get, path = "/api/v1/certificates/{serial}", tag = "certificates",
    params(("serial" = String, Path, description = "Serial number, hex")),
    responses(
        (status = 200, description = "The certificate", body = Certificate),
        Unauthenticated,
        Forbidden,
        NotFound,
    ),
    security(("bearer" = [])))]
pub async fn show_certificate(
    State(st): State<ApiState>,
    who: Principal,
    PathParam(serial): PathParam<String>,
) -> ApiResult<Json<Certificate>> {
    let tenant = who.reader()?;
    Ok(Json(st.service.certificate(tenant, serial).await?))
}

/// Revoke a certificate: listed in the CRL, `revoked` over OCSP, refused at the
/// next connection, and the session using it is closed.
#[utoipa::path(post, path = "/api/v1/certificates/{serial}/revoke", tag = "certificates", request_body = RevokeRequest,
    params(("serial" = String, Path, description = "Serial number, hex")),
    responses(
        (status = 200, description = "The revoked certificate (revoking again keeps the first time and reason)", body = Certificate),
        Unauthenticated,
        Forbidden,
        NotFound,
        BodyRejected,
    ),
    security(("bearer" = [])))]
pub async fn revoke_certificate(
    State(st): State<ApiState>,
    who: Principal,
    PathParam(serial): PathParam<String>,
    JsonBody(body): JsonBody<RevokeRequest>,
) -> ApiResult<Json<Certificate>> {
    let tenant = who.writer()?;
    Ok(Json(st.service.revoke_certificate(tenant, serial, body).await?))
}

// ---- PKI ----------------------------------------------------------------------

/// The CSMS root certificate (PEM) the tenant's stations install as CSMSRootCertificate.
#[utoipa::path(get, path = "/api/v1/pki/csms-root", tag = "pki",
    responses(
        (status = 200, description = "PEM certificate", body = String, content_type = "application/x-pem-file"),
        Unauthenticated,
        Forbidden,
        Unavailable,
    ),
    security(("bearer" = [])))]
pub async fn csms_root(State(st): State<ApiState>, who: Principal) -> ApiResult<Response> {
    let tenant = who.reader()?;
    let pem = st.service.csms_root(tenant).await?;
    let mut res = pem.into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-pem-file"));
    Ok(res)
}

/// The tenant's station PKI: the root that station certificates chain to, the
/// issuing sub-CA, and the CAs they replaced (with the end of their overlap),
/// with validity, fingerprints, CRL URLs and whether an HSM holds the key.
#[utoipa::path(get, path = "/api/v1/pki/station-ca", tag = "pki",
    responses(
        (status = 200, description = "Current root, current issuing sub-CA, then replaced CAs, newest first", body = Vec<CaCertificate>),
        Unauthenticated,
        Forbidden,
        Unavailable,
    ),
    security(("bearer" = [])))]
pub async fn station_ca_chain(State(st): State<ApiState>, who: Principal) -> ApiResult<Json<Vec<CaCertificate>>> {
    let tenant = who.reader()?;
    Ok(Json(st.service.station_ca_chain(tenant).await?))
}

/// Rotate the issuing sub-CA (admin): a new sub-CA under the same root issues
/// from now on. The replaced one stays trusted for `overlapDays`, keeps its CRL
/// and OCSP answers, and its stations are renewed by the new one, spread over
/// the first half of the overlap.
#[utoipa::path(post, path = "/api/v1/pki/station-ca/rotate", tag = "pki", request_body = CaRotation,
    responses(
        (status = 200, description = "The station CAs after the rotation", body = Vec<CaCertificate>),
        Unauthenticated,
        Forbidden,
        (status = 409, description = "The root's key is held by the operator, or another rotation came first", body = Problem, content_type = "application/problem+json"),
        BodyRejected,
        Unavailable,
    ),
    security(("bearer" = [])))]
pub async fn rotate_station_ca(
    State(st): State<ApiState>,
    who: Principal,
    JsonBody(body): JsonBody<CaRotation>,
) -> ApiResult<Json<Vec<CaCertificate>>> {
    let tenant = who.admin()?;
    Ok(Json(st.service.rotate_station_ca(tenant, body).await?))
}

/// Import the operator's own CA (admin). A self-signed root becomes the station
/// root and Anchorpoint creates an issuing sub-CA under it; a sub-CA (with the
/// certificates above it) issues station certificates itself. The previous CAs
/// stay trusted for `overlapDays`. A refused CA says which rule failed
/// (`import.pem`, `import.key`, `import.ca`, `import.key_match`, `import.validity`,
/// `import.chain`, `import.path_length`).
#[utoipa::path(post, path = "/api/v1/pki/station-ca/import", tag = "pki", request_body = CaImport,
    responses(
        (status = 200, description = "The station CAs after the import", body = Vec<CaCertificate>),
        Unauthenticated,
        Forbidden,
        (status = 409, description = "The CA is already one of the tenant's, or another change came first", body = Problem, content_type = "application/problem+json"),
        BodyRejected,
        Unavailable,
    ),
    security(("bearer" = [])))]
pub async fn import_station_ca(
    State(st): State<ApiState>,
    who: Principal,
    JsonBody(body): JsonBody<CaImport>,
) -> ApiResult<Json<Vec<CaCertificate>>> {
    let tenant = who.admin()?;
    Ok(Json(st.service.import_station_ca(tenant, body).await?))
}

// ---- security events --------------------------------------------------------------

/// Security events the tenant's stations reported (A04), newest last.
#[utoipa::path(get, path = "/api/v1/security-events", tag = "security",
    params(SecurityEventFilter),
    responses(
        (status = 200, description = "One page of events", body = SecurityEventPage),
        Unauthenticated,
        Forbidden,
        ParamRejected,
    ),
    security(("bearer" = [])))]
pub async fn security_events(
    State(st): State<ApiState>,
    who: Principal,
    QueryParams(filter): QueryParams<SecurityEventFilter>,
) -> ApiResult<Json<SecurityEventPage>> {
    let tenant = who.reader()?;
    let page = filter.page().request()?;
    let p = st.service.security_events(tenant, filter, page).await?;
    Ok(Json(SecurityEventPage { items: p.items, next_cursor: p.next.as_deref().map(cursor) }))
}

// ---- audit ----------------------------------------------------------------------

/// Every mutating API call of the tenant (admin), or of tenant management
/// (platform-admin).
#[utoipa::path(get, path = "/api/v1/audit-log", tag = "audit", params(PageQuery),
    responses(
        (status = 200, description = "One page of audit records, oldest first", body = AuditPage),
        Unauthenticated,
        Forbidden,
        ParamRejected,
    ),
    security(("bearer" = [])))]
pub async fn audit_log(
    State(st): State<ApiState>,
    who: Principal,
    QueryParams(page): QueryParams<PageQuery>,
) -> ApiResult<Json<AuditPage>> {
    let tenant = match who.platform_admin() {
        Ok(()) => None,
        Err(_) => Some(who.admin()?),
    };
    let p = st.service.audit_log(tenant, page.request()?).await?;
    Ok(Json(AuditPage { items: p.items, next_cursor: p.next.as_deref().map(cursor) }))
}

/// Unknown paths.
pub async fn not_found() -> Problem {
    Problem::new(Kind::NotFound, "no such API path")
}

pub async fn method_not_allowed() -> Problem {
    Problem::new(Kind::MethodNotAllowed, "this path does not support the method")
}

// ---- remote commands -------------------------------------------------------------

async fn forward(
    st: &ApiState,
    who: &Principal,
    id: String,
    action: String,
    payload: serde_json::Value,
) -> ApiResult<Json<serde_json::Value>> {
    let tenant = who.writer()?;
    if !payload.is_object() {
        return Err(Problem::invalid("/", "the body must be the OCPP request payload, a JSON object"));
    }
    Ok(Json(st.service.ocpp_call(tenant, id, action, payload).await?))
}

/// Send any CSMS-initiated OCPP 2.0.1 call to a connected station and return its answer.
///
/// The body is the request payload of `{action}` (e.g. `GetVariables`), validated
/// against its OCPP schema before it is sent; the answer is the station's
/// response payload, validated against the response schema.
#[utoipa::path(post, path = "/api/v1/stations/{id}/ocpp/{action}", tag = "commands",
    params(
        ("id" = String, Path, description = "Station id"),
        ("action" = String, Path, description = "OCPP 2.0.1 action sent by a CSMS, e.g. GetVariables"),
    ),
    request_body(content = Object, description = "The OCPP request payload"),
    responses(
        (status = 200, description = "The station's response payload", body = Object),
        Unauthenticated,
        Forbidden,
        NotFound,
        CommandFailures,
        BodyRejected,
    ),
    security(("bearer" = [])))]
pub async fn ocpp_command(
    State(st): State<ApiState>,
    who: Principal,
    PathParam((id, action)): PathParam<(String, String)>,
    JsonBody(payload): JsonBody<serde_json::Value>,
) -> ApiResult<Json<serde_json::Value>> {
    forward(&st, &who, id, action, payload).await
}

/// The typed shortcuts: path and the OCPP action it sends.
pub const TYPED_COMMANDS: &[(&str, &str)] = &[
    ("/api/v1/stations/{id}/reset", "Reset"),
    ("/api/v1/stations/{id}/trigger-message", "TriggerMessage"),
    ("/api/v1/stations/{id}/get-variables", "GetVariables"),
    ("/api/v1/stations/{id}/set-variables", "SetVariables"),
    ("/api/v1/stations/{id}/change-availability", "ChangeAvailability"),
    ("/api/v1/stations/{id}/request-start-transaction", "RequestStartTransaction"),
    ("/api/v1/stations/{id}/request-stop-transaction", "RequestStopTransaction"),
    ("/api/v1/stations/{id}/unlock-connector", "UnlockConnector"),
];

/// Typed shortcuts: the same path as [`ocpp_command`] with the action fixed.
macro_rules! command {
    ($name:ident, $path:literal, $action:literal, $summary:literal) => {
        #[doc = $summary]
        #[utoipa::path(post, path = $path, tag = "commands",
            params(("id" = String, Path, description = "Station id")),
            request_body(content = Object, description = concat!("OCPP 2.0.1 ", $action, "Request payload")),
            responses(
                (status = 200, description = concat!("The station's ", $action, "Response payload"), body = Object),
                Unauthenticated,
                Forbidden,
                NotFound,
                CommandFailures,
                BodyRejected,
            ),
            security(("bearer" = [])))]
        pub async fn $name(
            State(st): State<ApiState>,
            who: Principal,
            PathParam(id): PathParam<String>,
            JsonBody(payload): JsonBody<serde_json::Value>,
        ) -> ApiResult<Json<serde_json::Value>> {
            forward(&st, &who, id, $action.to_owned(), payload).await
        }
    };
}

command!(reset, "/api/v1/stations/{id}/reset", "Reset", "Reset the station or one EVSE (B11, B12).");
command!(
    trigger_message,
    "/api/v1/stations/{id}/trigger-message",
    "TriggerMessage",
    "Ask the station to send a message (F06)."
);
command!(get_variables, "/api/v1/stations/{id}/get-variables", "GetVariables", "Read device-model variables (B06).");
command!(set_variables, "/api/v1/stations/{id}/set-variables", "SetVariables", "Write device-model variables (B05).");
command!(
    change_availability,
    "/api/v1/stations/{id}/change-availability",
    "ChangeAvailability",
    "Make the station, an EVSE or a connector (un)available (G03)."
);
command!(
    request_start_transaction,
    "/api/v1/stations/{id}/request-start-transaction",
    "RequestStartTransaction",
    "Start a transaction remotely (F01)."
);
command!(
    request_stop_transaction,
    "/api/v1/stations/{id}/request-stop-transaction",
    "RequestStopTransaction",
    "Stop a transaction remotely (F03)."
);
command!(unlock_connector, "/api/v1/stations/{id}/unlock-connector", "UnlockConnector", "Unlock a connector (F05).");

// ---- live events ---------------------------------------------------------------------

/// Live events of the tenant's stations as Server-Sent Events: connects,
/// disconnects, connector statuses, security events. Each event's `event:` is
/// its kind and `data:` a JSON [`LiveEvent`](crate::model::LiveEvent). A comment
/// line keeps the connection alive every 15 s; the stream ends when the token
/// expires. At most 64 streams per tenant.
#[utoipa::path(get, path = "/api/v1/events", tag = "events",
    responses(
        (status = 200, description = "An endless text/event-stream of LiveEvent objects", body = crate::model::LiveEvent, content_type = "text/event-stream"),
        Unauthenticated,
        Forbidden,
        Unavailable,
    ),
    security(("bearer" = [])))]
pub async fn events(State(st): State<ApiState>, who: Principal) -> ApiResult<Response> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use futures_util::StreamExt;
    let tenant = who.reader()?;
    // The stream ends when the token does: a revoked or expired grant does not
    // keep listening.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let left = u64::try_from(who.expires_at).unwrap_or(0).saturating_sub(now);
    let expiry = tokio::time::sleep(std::time::Duration::from_secs(left));
    let stream = st
        .service
        .events(tenant)?
        .map(|e| {
            let data = serde_json::to_string(&e).unwrap_or_default();
            Ok::<_, std::convert::Infallible>(Event::default().event(e.kind).data(data))
        })
        .take_until(expiry);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(15))).into_response())
}
