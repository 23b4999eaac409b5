//! The API listener: health, readiness, metrics, the public CRL and OCSP
//! endpoints, and the REST API (`api` crate).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::runtime::Node;

pub fn router(node: Arc<Node>, auth: Arc<api::auth::Authenticator>) -> Router {
    let service = Arc::new(crate::rest::RestService::new(node.clone()));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(node.clone())
        .merge(crate::revocation::router(node))
        .merge(api::router(service, auth, &command_schemas()))
}

/// The OCPP request and response schemas of the API's typed commands.
pub fn command_schemas() -> api::CommandSchemas {
    use ocpp::v201::*;
    use utoipa::ToSchema;
    fn add<Req: ToSchema, Res: ToSchema>(c: &mut api::CommandSchemas, action: &str) {
        c.components.push((Req::name().into_owned(), Req::schema()));
        Req::schemas(&mut c.components);
        c.components.push((Res::name().into_owned(), Res::schema()));
        Res::schemas(&mut c.components);
        c.actions.insert(action.to_owned(), (Req::name().into_owned(), Res::name().into_owned()));
    }
    let mut c = api::CommandSchemas::default();
    add::<ResetRequest, ResetResponse>(&mut c, "Reset");
    add::<TriggerMessageRequest, TriggerMessageResponse>(&mut c, "TriggerMessage");
    add::<GetVariablesRequest, GetVariablesResponse>(&mut c, "GetVariables");
    add::<SetVariablesRequest, SetVariablesResponse>(&mut c, "SetVariables");
    add::<ChangeAvailabilityRequest, ChangeAvailabilityResponse>(&mut c, "ChangeAvailability");
    add::<RequestStartTransactionRequest, RequestStartTransactionResponse>(&mut c, "RequestStartTransaction");
    add::<RequestStopTransactionRequest, RequestStopTransactionResponse>(&mut c, "RequestStopTransaction");
    add::<UnlockConnectorRequest, UnlockConnectorResponse>(&mut c, "UnlockConnector");
    c
}

/// Liveness: the process answers.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: listeners bound and the database reachable.
async fn readyz(State(app): State<Arc<Node>>) -> impl IntoResponse {
    if !app.ready.load(Ordering::Acquire) {
        return (StatusCode::SERVICE_UNAVAILABLE, "starting\n");
    }
    match app.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready\n"),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check: database unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable\n")
        }
    }
}

async fn metrics(State(app): State<Arc<Node>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], app.metrics.encode())
}
