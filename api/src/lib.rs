//! Anchorpoint's REST surface. It knows nothing of DER or OCPP framing: the
//! `csms` binary implements [`service::Service`] and mounts [`router`].
//!
//! - routes under `/api/v1`, each described with utoipa ([`routes`]);
//! - the OpenAPI 3.1 document at `/api/openapi.json`;
//! - bearer JWTs ([`auth`]), errors as RFC 9457 problem documents ([`problem`]);
//! - every mutating call recorded in the audit log.

#![forbid(unsafe_code)]

pub mod auth;
pub mod extract;
pub mod model;
pub mod problem;
mod responses;
pub mod routes;
pub mod service;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, header};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Authenticator;
use crate::model::AuditEntry;
use crate::routes::ApiState;
use crate::service::Service;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Anchorpoint CSMS API",
        description = "Manage charging stations, their certificates and security events. \
            Authenticate with `Authorization: Bearer <JWT>` (`csms token`). Errors are RFC 9457 \
            problem documents. Lists are paginated with `cursor`/`nextCursor`. \
            A resource of another tenant answers 404.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    modifiers(&BearerScheme),
    components(schemas(problem::Problem)),
    tags(
        (name = "tenants", description = "Tenants (platform-admin)"),
        (name = "stations", description = "Charging stations"),
        (name = "certificates", description = "Station certificates"),
        (name = "pki", description = "Trust anchors"),
        (name = "security", description = "Security events (A04)"),
        (name = "audit", description = "Audit log of mutating calls"),
        (name = "commands", description = "Remote commands to connected stations"),
        (name = "events", description = "Live station events (Server-Sent Events)"),
        (name = "meta", description = "This API's description"),
    )
)]
struct ApiDoc;

struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
    }
}

fn parts() -> (Router<ApiState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(routes::create_tenant, routes::list_tenants))
        .routes(routes!(routes::show_tenant))
        .routes(routes!(routes::create_station, routes::list_stations))
        .routes(routes!(routes::show_station, routes::update_station, routes::delete_station))
        .routes(routes!(routes::enroll))
        .routes(routes!(routes::update_password))
        .routes(routes!(routes::renew_certificate))
        .routes(routes!(routes::certificate_requests))
        .routes(routes!(routes::list_certificates))
        .routes(routes!(routes::show_certificate))
        .routes(routes!(routes::revoke_certificate))
        .routes(routes!(routes::csms_root))
        .routes(routes!(routes::station_ca_chain))
        .routes(routes!(routes::rotate_station_ca))
        .routes(routes!(routes::import_station_ca))
        .routes(routes!(routes::security_events))
        .routes(routes!(routes::audit_log))
        .routes(routes!(routes::events))
        .routes(routes!(routes::ocpp_command))
        .routes(routes!(routes::reset))
        .routes(routes!(routes::trigger_message))
        .routes(routes!(routes::get_variables))
        .routes(routes!(routes::set_variables))
        .routes(routes!(routes::change_availability))
        .routes(routes!(routes::request_start_transaction))
        .routes(routes!(routes::request_stop_transaction))
        .routes(routes!(routes::unlock_connector))
        .routes(routes!(openapi_json))
        .split_for_parts()
}

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", body = Object)))]
async fn openapi_json(State(st): State<ApiState>) -> Response {
    let mut res = st.doc.to_string().into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

/// JSON schemas of OCPP payloads, supplied by the server (this crate knows no
/// OCPP): the typed command routes then document their exact request and
/// response bodies instead of "an object".
#[derive(Clone, Default)]
pub struct CommandSchemas {
    /// OCPP action -> (request schema name, response schema name).
    pub actions: std::collections::BTreeMap<String, (String, String)>,
    /// Every schema those names refer to, directly or not.
    pub components: Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>)>,
}

/// The OpenAPI document of [`router`].
pub fn openapi(commands: &CommandSchemas) -> utoipa::openapi::OpenApi {
    let mut doc = parts().1;
    apply_command_schemas(&mut doc, commands);
    doc
}

fn apply_command_schemas(doc: &mut utoipa::openapi::OpenApi, commands: &CommandSchemas) {
    use utoipa::openapi::{Content, Ref, RefOr};
    let components = doc.components.get_or_insert_with(Default::default);
    for (name, schema) in &commands.components {
        components.schemas.insert(name.clone(), schema.clone());
    }
    for (path, action) in routes::TYPED_COMMANDS {
        let (Some((req, res)), Some(item)) = (commands.actions.get(*action), doc.paths.paths.get_mut(*path)) else {
            continue;
        };
        let Some(op) = item.post.as_mut() else { continue };
        if let Some(RefOr::T(body)) = op.request_body.as_mut() {
            body.content
                .insert("application/json".into(), Content::new(Some(Ref::from_schema_name(req.clone()))).into());
        }
        if let Some(RefOr::T(ok)) = op.responses.responses.get_mut("200") {
            ok.content.insert("application/json".into(), Content::new(Some(Ref::from_schema_name(res.clone()))).into());
        }
    }
}

/// The whole API: `/api/v1/...` and `/api/openapi.json`. Unknown paths and
/// methods answer problem documents too.
pub fn router(service: Arc<dyn Service>, auth: Arc<Authenticator>, commands: &CommandSchemas) -> Router {
    let (api, mut doc) = parts();
    apply_command_schemas(&mut doc, commands);
    let doc: Arc<str> = Arc::from(doc.to_json().unwrap_or_default());
    let state = ApiState { service, auth, doc };
    api.fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), audit))
        .layer(DefaultBodyLimit::max(extract::MAX_BODY_BYTES))
        .with_state(state)
}

/// Records every mutating call by an authenticated caller, with its outcome.
///
/// The call and its record run in their own task: a client that disconnects
/// mid-call does not cancel them, so a command that reached a station is always
/// on record.
async fn audit(State(st): State<ApiState>, req: Request, next: Next) -> Response {
    let mutating = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !mutating {
        return next.run(req).await;
    }
    let who = st.auth.principal(req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())).ok();
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let task = tokio::spawn(async move {
        let res = next.run(req).await;
        if let Some(who) = who {
            let entry = AuditEntry {
                // Platform administrators act on no tenant: their calls go to the platform log.
                tenant: (who.role != auth::Role::PlatformAdmin).then_some(who.tenant),
                actor: who.subject,
                role: who.role.as_str().to_owned(),
                method,
                path,
                status: res.status().as_u16(),
            };
            if st.service.audit(entry).await.is_err() {
                tracing::error!("audit record could not be written");
            }
        }
        res
    });
    match task.await {
        Ok(res) => res,
        Err(e) => {
            tracing::error!(error = %e, "API handler failed");
            problem::Problem::internal().into_response()
        }
    }
}
