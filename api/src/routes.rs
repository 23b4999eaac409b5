//! The `/api/v1` routes. Each is described with `utoipa::path` and registered
//! only through `utoipa_axum::routes!`, so the OpenAPI document and the router
//! are built from the same list.

use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRef, Path, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

use crate::auth::{Authenticator, Principal};
use crate::extract::{JsonBody, QueryParams, cursor};
use crate::model::{
    AuditPage, EnrollRequest, EnrollResponse, NewStation, NewTenant, PageQuery, SecurityEventFilter, SecurityEventPage,
    Station, StationFilter, StationPage, StationPatch, Tenant, TenantPage,
};
use crate::problem::{Kind, Problem};
use crate::service::Service;

/// What every handler reaches.
#[derive(Clone)]
pub struct ApiState {
    pub service: Arc<dyn Service>,
    pub auth: Arc<Authenticator>,
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
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a platform-admin token", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Name or host name taken", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid body", body = Problem, content_type = "application/problem+json"),
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
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a platform-admin token", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid parameter", body = Problem, content_type = "application/problem+json"),
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
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant (or not yours)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn show_tenant(
    State(st): State<ApiState>,
    who: Principal,
    Path(name): Path<String>,
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
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Read-only or platform token", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Station id not available", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid body", body = Problem, content_type = "application/problem+json"),
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
#[utoipa::path(get, path = "/api/v1/stations", tag = "stations", params(StationFilter, PageQuery),
    responses(
        (status = 200, description = "One page of stations, by id", body = StationPage),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Platform token", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid parameter", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn list_stations(
    State(st): State<ApiState>,
    who: Principal,
    QueryParams(filter): QueryParams<StationFilter>,
    QueryParams(page): QueryParams<PageQuery>,
) -> ApiResult<Json<StationPage>> {
    let tenant = who.reader()?;
    let p = st.service.stations(tenant, filter, page.request()?).await?;
    Ok(Json(StationPage { items: p.items, next_cursor: p.next.as_deref().map(cursor) }))
}

/// Show a station: connection state, boot information, connector statuses.
#[utoipa::path(get, path = "/api/v1/stations/{id}", tag = "stations",
    params(("id" = String, Path, description = "Station id")),
    responses(
        (status = 200, description = "The station", body = Station),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Platform token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such station", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn show_station(
    State(st): State<ApiState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Station>> {
    let tenant = who.reader()?;
    Ok(Json(st.service.station(tenant, id).await?))
}

/// Change a station's settings.
#[utoipa::path(patch, path = "/api/v1/stations/{id}", tag = "stations", request_body = StationPatch,
    params(("id" = String, Path, description = "Station id")),
    responses(
        (status = 200, description = "The updated station", body = Station),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Read-only or platform token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such station", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid body", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn update_station(
    State(st): State<ApiState>,
    who: Principal,
    Path(id): Path<String>,
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
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Read-only or platform token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such station", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn delete_station(
    State(st): State<ApiState>,
    who: Principal,
    Path(id): Path<String>,
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
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Read-only or platform token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such station", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "CSR rejected; detail names the rule", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn enroll(
    State(st): State<ApiState>,
    who: Principal,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<EnrollRequest>,
) -> ApiResult<(StatusCode, Json<EnrollResponse>)> {
    let tenant = who.writer()?;
    Ok((StatusCode::CREATED, Json(st.service.enroll(tenant, id, body).await?)))
}

// ---- PKI ----------------------------------------------------------------------

/// The CSMS root certificate (PEM) the tenant's stations install as CSMSRootCertificate.
#[utoipa::path(get, path = "/api/v1/pki/csms-root", tag = "pki",
    responses(
        (status = 200, description = "PEM certificate", body = String, content_type = "application/x-pem-file"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Platform token", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn csms_root(State(st): State<ApiState>, who: Principal) -> ApiResult<Response> {
    let tenant = who.reader()?;
    let pem = st.service.csms_root(tenant).await?;
    let mut res = pem.into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-pem-file"));
    Ok(res)
}

// ---- security events --------------------------------------------------------------

/// Security events the tenant's stations reported (A04), newest last.
#[utoipa::path(get, path = "/api/v1/security-events", tag = "security",
    params(SecurityEventFilter, PageQuery),
    responses(
        (status = 200, description = "One page of events", body = SecurityEventPage),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Platform token", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid parameter", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn security_events(
    State(st): State<ApiState>,
    who: Principal,
    QueryParams(filter): QueryParams<SecurityEventFilter>,
    QueryParams(page): QueryParams<PageQuery>,
) -> ApiResult<Json<SecurityEventPage>> {
    let tenant = who.reader()?;
    let p = st.service.security_events(tenant, filter, page.request()?).await?;
    Ok(Json(SecurityEventPage { items: p.items, next_cursor: p.next.as_deref().map(cursor) }))
}

// ---- audit ----------------------------------------------------------------------

/// Every mutating API call of the tenant (admin).
#[utoipa::path(get, path = "/api/v1/audit-log", tag = "audit", params(PageQuery),
    responses(
        (status = 200, description = "One page of audit records, oldest first", body = AuditPage),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin token", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid parameter", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn audit_log(
    State(st): State<ApiState>,
    who: Principal,
    QueryParams(page): QueryParams<PageQuery>,
) -> ApiResult<Json<AuditPage>> {
    let tenant = who.admin()?;
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
