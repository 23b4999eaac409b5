//! The REST API in process, over the real store (SQLite) and PKI: the OpenAPI
//! document against the router, authentication, roles, tenant isolation on
//! every route, validation errors, pagination, enrollment, the audit log.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use api::auth::{Claims, ISSUER, Role, mint};
use axum::Router;
use axum::body::Body;
use csms::authority::KeyBackend;
use csms::clock::SystemClock;
use csms::config::Config;
use csms::gateway::tls::{StationTrust, provider};
use csms::runtime::Node;
use csms::store::Store;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

const SECRET: &[u8] = b"api-test-secret-api-test-secret!";

struct Api {
    router: Router,
    node: Arc<Node>,
    _dir: tempfile::TempDir,
}

struct Reply {
    status: StatusCode,
    content_type: String,
    body: Value,
    text: String,
}

fn token(tenant: &str, role: Role, exp_offset: i64) -> String {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = Claims {
        iss: ISSUER.into(),
        sub: format!("{tenant}-{}", role.as_str()),
        tenant: tenant.into(),
        role,
        iat: now,
        exp: now + exp_offset,
    };
    mint(SECRET, &claims).unwrap()
}

fn tok(tenant: &str, role: Role) -> String {
    token(tenant, role, 3600)
}

async fn api() -> Api {
    api_with(Config { password_hash_iterations: 1000, ..Config::default() }).await
}

async fn api_with(config: Config) -> Api {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&Store::sqlite_url(dir.path()), 4).await.unwrap();
    let master = Arc::new(pki::MasterKey::generate().unwrap());
    let keys = KeyBackend::software(master);
    let clock = SystemClock;
    for (t, org) in [("alpha", "Alpha Charging"), ("beta", "Beta Power")] {
        csms::authority::ensure_tenant(&store, &keys, &clock, t, org, None).await.unwrap();
    }
    csms::authority::server_identity(&store, &keys, &clock, &["localhost".to_owned()]).await.unwrap();
    // Files the server writes (CA PEMs after a rotation) stay in the test's directory.
    let config = Config { data_dir: dir.path().to_owned(), ..config };
    let trust = Arc::new(StationTrust::new(provider()));
    let node = Node::new(config, store, Arc::new(SystemClock), keys, trust, None).unwrap();
    let router = csms::http::router(node.clone(), Arc::new(api::auth::Authenticator::hs256(SECRET)));
    Api { router, node, _dir: dir }
}

impl Api {
    async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Reply {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = match body {
            Some(b) => req.header("content-type", "application/json").body(Body::from(b.to_string())).unwrap(),
            None => req.body(Body::empty()).unwrap(),
        };
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let content_type =
            res.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply { status, content_type, body, text }
    }

    async fn get(&self, path: &str, token: &str) -> Reply {
        self.call(Method::GET, path, Some(token), None).await
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    async fn patch(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call(Method::PATCH, path, Some(token), Some(body)).await
    }

    async fn delete(&self, path: &str, token: &str) -> Reply {
        self.call(Method::DELETE, path, Some(token), None).await
    }
}

fn assert_problem(r: &Reply, status: u16, kind: &str) {
    assert_eq!(r.status.as_u16(), status, "{}", r.text);
    assert_eq!(r.content_type, "application/problem+json", "{}", r.text);
    assert_eq!(r.body["type"], format!("urn:anchorpoint:problem:{kind}"), "{}", r.text);
    assert_eq!(r.body["status"], status);
    assert!(r.body["detail"].as_str().is_some_and(|d| !d.is_empty()), "{}", r.text);
}

fn csr(cn: &str) -> String {
    support::csr_for(cn, None)
}

/// Every documented operation: (method, path with `{params}`).
fn operations(doc: &Value) -> Vec<(Method, String)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, _) in item.as_object().unwrap() {
            ops.push((Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap(), path.clone()));
        }
    }
    ops
}

#[tokio::test]
async fn openapi_document_and_router_agree() {
    let api = api().await;
    let r = api.call(Method::GET, "/api/openapi.json", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.content_type, "application/json");
    let doc = r.body;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    let ops = operations(&doc);
    assert!(ops.len() >= 13, "{ops:?}");
    let all = [Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE];
    for path in doc["paths"].as_object().unwrap().keys() {
        let concrete = path
            .replace("{id}", "CS-X")
            .replace("{name}", "alpha")
            .replace("{action}", "Reset")
            .replace("{serial}", "0a1b");
        for m in &all {
            let documented = ops.iter().any(|(om, op)| om == m && op == path);
            let r = api.call(m.clone(), &concrete, None, None).await;
            if documented {
                // Routed: the handler ran and asked for a token (or served the document).
                assert!(
                    r.status == StatusCode::UNAUTHORIZED || path == "/api/openapi.json",
                    "{m} {path}: documented but answered {}",
                    r.status
                );
                let security = &doc["paths"][path][m.as_str().to_ascii_lowercase()]["security"];
                assert_eq!(security.is_array(), path != "/api/openapi.json", "{m} {path} security");
            } else {
                // Not documented: not routed either.
                assert_problem(&r, 405, "method-not-allowed");
            }
        }
    }
    // The typed commands document the exact OCPP payloads; every reference resolves.
    let reset = &doc["paths"]["/api/v1/stations/{id}/reset"]["post"];
    assert_eq!(
        reset["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/ResetRequest"
    );
    assert_eq!(
        reset["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/ResetResponse"
    );
    let schemas = &doc["components"]["schemas"];
    assert_eq!(schemas["ResetRequest"]["required"], json!(["type"]));
    assert_eq!(schemas["ResetEnumType"]["enum"], json!(["Immediate", "OnIdle"]));
    assert_eq!(schemas["ComponentType"]["properties"]["name"]["maxLength"], 50);
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|x| refs(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(all.len() > 50);
    for r in all {
        let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("{r}"));
        assert!(schemas.get(name).is_some(), "dangling reference {r}");
    }
    // A path the document lacks is not routed.
    for path in ["/api/v1/nothing", "/api/v2/stations", "/api/v1/stations/CS-X/secrets"] {
        assert_problem(&api.call(Method::GET, path, None, None).await, 404, "not-found");
    }
}

#[tokio::test]
async fn authentication_failures_are_401_problems() {
    let api = api().await;
    let r = api.call(Method::GET, "/api/v1/stations", None, None).await;
    assert_problem(&r, 401, "unauthorized");
    let expired = token("alpha", Role::Admin, -3600);
    assert_problem(&api.get("/api/v1/stations", &expired).await, 401, "unauthorized");
    let good = tok("alpha", Role::Admin);
    let mut tampered = good.clone();
    let n = tampered.len();
    tampered.replace_range(n - 4.., if good.ends_with("AAAA") { "BBBB" } else { "AAAA" });
    assert_problem(&api.get("/api/v1/stations", &tampered).await, 401, "unauthorized");
    // A token signed with another secret.
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let foreign = mint(
        b"some-other-secret-some-other-sec",
        &Claims {
            iss: ISSUER.into(),
            sub: "x".into(),
            tenant: "alpha".into(),
            role: Role::Admin,
            iat: now,
            exp: now + 60,
        },
    )
    .unwrap();
    assert_problem(&api.get("/api/v1/stations", &foreign).await, 401, "unauthorized");
    assert_eq!(api.get("/api/v1/stations", &good).await.status, StatusCode::OK);
}

#[tokio::test]
async fn station_lifecycle_with_validation() {
    let api = api().await;
    let op = tok("alpha", Role::Operator);
    let r = api
        .post(
            "/api/v1/stations",
            &op,
            json!({"id": "CS-1", "securityProfile": 2, "password": "a-long-basic-password-1", "tags": ["north", "dc"], "description": "Lot 4"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["id"], "CS-1");
    assert_eq!(r.body["securityProfile"], 2);
    assert_eq!(r.body["hasPassword"], true);
    assert_eq!(r.body["connected"], false);
    assert_eq!(r.body["tags"], json!(["north", "dc"]));
    assert!(!r.text.contains("a-long-basic-password-1") && !r.text.contains("pbkdf2"), "{}", r.text);

    // Each bad body names its field.
    let cases = [
        (json!({"id": "CS-2", "securityProfile": 4}), "/securityProfile"),
        (json!({"id": "CS 2", "securityProfile": 3}), "/id"),
        (json!({"securityProfile": 3}), "/id"),
        (json!({"id": "CS-2", "securityProfile": "three"}), "/securityProfile"),
        (json!({"id": "CS-2", "securityProfile": 2}), "/password"),
        (json!({"id": "CS-2", "securityProfile": 2, "password": "short"}), "/password"),
        (json!({"id": "CS-2", "securityProfile": 3, "tags": ["ok", "not ok"]}), "/tags/1"),
        (json!({"id": "CS-2", "securityProfile": 3, "colour": "red"}), "/colour"),
    ];
    for (body, field) in cases {
        let r = api.post("/api/v1/stations", &op, body.clone()).await;
        assert_problem(&r, 422, "invalid-body");
        assert_eq!(r.body["field"], field, "{body}: {}", r.text);
    }
    let raw = api
        .router
        .clone()
        .oneshot(
            Request::post("/api/v1/stations")
                .header("authorization", format!("Bearer {op}"))
                .header("content-type", "text/plain")
                .body(Body::from("id=CS-2"))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(raw.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Duplicate id.
    let r = api.post("/api/v1/stations", &op, json!({"id": "CS-1", "securityProfile": 3})).await;
    assert_problem(&r, 409, "conflict");

    // Update, show, delete.
    let r = api.patch("/api/v1/stations/CS-1", &op, json!({"registration": "Pending", "tags": ["south"]})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!((r.body["registration"].clone(), r.body["tags"].clone()), (json!("Pending"), json!(["south"])));
    let r = api.patch("/api/v1/stations/CS-1", &op, json!({"securityProfile": 0})).await;
    assert_eq!(r.body["field"], "/securityProfile");
    let r = api.get("/api/v1/stations/CS-1", &op).await;
    assert_eq!(r.body["connectors"], json!([]));
    assert_eq!(r.body["description"], "Lot 4");
    assert_eq!(api.delete("/api/v1/stations/CS-1", &op).await.status, StatusCode::NO_CONTENT);
    assert_problem(&api.get("/api/v1/stations/CS-1", &op).await, 404, "not-found");
    assert_problem(&api.delete("/api/v1/stations/CS-1", &op).await, 404, "not-found");
}

#[tokio::test]
async fn lists_are_paginated_and_filtered() {
    let api = api().await;
    let op = tok("alpha", Role::Operator);
    for i in 0..7 {
        let tags = if i % 2 == 0 { json!(["even"]) } else { json!(["odd"]) };
        let r = api
            .post("/api/v1/stations", &op, json!({"id": format!("P-{i}"), "securityProfile": 3, "tags": tags}))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    let mut seen = Vec::new();
    let mut path = "/api/v1/stations?limit=3".to_owned();
    loop {
        let r = api.get(&path, &op).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let items = r.body["items"].as_array().unwrap();
        assert!(items.len() <= 3);
        seen.extend(items.iter().map(|s| s["id"].as_str().unwrap().to_owned()));
        match r.body["nextCursor"].as_str() {
            Some(c) => path = format!("/api/v1/stations?limit=3&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, (0..7).map(|i| format!("P-{i}")).collect::<Vec<_>>());
    let r = api.get("/api/v1/stations?tag=odd", &op).await;
    let ids: Vec<&str> = r.body["items"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["P-1", "P-3", "P-5"]);
    let r = api.get("/api/v1/stations?connected=true", &op).await;
    assert_eq!(r.body["items"], json!([]));
    let r = api.get("/api/v1/stations?connected=false&limit=2", &op).await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 2);
    assert!(r.body["nextCursor"].is_string());
    let r = api.get("/api/v1/stations?notSeenSince=2020-01-01T00:00:00Z", &op).await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 7, "never seen counts as not seen");
    // Bad parameters name themselves.
    for (q, field) in [
        ("limit=0", "limit"),
        ("limit=ten", "limit"),
        ("cursor=forged", "cursor"),
        ("seenSince=yesterday", "seenSince"),
    ] {
        let r = api.get(&format!("/api/v1/stations?{q}"), &op).await;
        assert_problem(&r, 422, "invalid-parameter");
        assert_eq!(r.body["field"], field, "{q}: {}", r.text);
    }
}

#[tokio::test]
async fn tenants_never_see_each_other() {
    let api = api().await;
    let a = tok("alpha", Role::Admin);
    let b = tok("beta", Role::Admin);
    let r = api.post("/api/v1/stations", &b, json!({"id": "B-1", "securityProfile": 3})).await;
    assert_eq!(r.status, StatusCode::CREATED);
    // Every route that names a resource of beta answers 404 to alpha.
    assert_problem(&api.get("/api/v1/stations/B-1", &a).await, 404, "not-found");
    assert_problem(&api.patch("/api/v1/stations/B-1", &a, json!({"enabled": false})).await, 404, "not-found");
    assert_problem(&api.delete("/api/v1/stations/B-1", &a).await, 404, "not-found");
    let r = api.post("/api/v1/stations/B-1/certificates", &a, json!({"csr": csr("B-1")})).await;
    assert_problem(&r, 404, "not-found");
    assert_problem(&api.get("/api/v1/tenants/beta", &a).await, 404, "not-found");
    // Lists hold only the caller's.
    assert_eq!(api.get("/api/v1/stations", &a).await.body["items"], json!([]));
    assert_eq!(api.get("/api/v1/security-events?stationId=B-1", &a).await.body["items"], json!([]));
    let audit_a = api.get("/api/v1/audit-log", &a).await;
    assert!(audit_a.body["items"].as_array().unwrap().iter().all(|r| r["actor"] == "alpha-admin"), "{}", audit_a.text);
    // Beta's station is untouched and its own tenant sees it.
    let r = api.get("/api/v1/stations/B-1", &b).await;
    assert_eq!(r.body["enabled"], true);
    assert_eq!(api.get("/api/v1/tenants/beta", &b).await.body["organizationName"], "Beta Power");
    // The CSMS root is the platform's for both (no own host names).
    let ra = api.get("/api/v1/pki/csms-root", &a).await;
    assert_eq!(ra.status, StatusCode::OK);
    assert_eq!(ra.content_type, "application/x-pem-file");
    assert!(ra.text.starts_with("-----BEGIN CERTIFICATE-----"), "{}", ra.text);
}

#[tokio::test]
async fn roles_limit_what_a_token_may_do() {
    let api = api().await;
    let op = tok("alpha", Role::Operator);
    assert_eq!(
        api.post("/api/v1/stations", &op, json!({"id": "R-1", "securityProfile": 3})).await.status,
        StatusCode::CREATED
    );
    let viewer = tok("alpha", Role::Viewer);
    assert_eq!(api.get("/api/v1/stations/R-1", &viewer).await.status, StatusCode::OK);
    let mutations = [
        api.post("/api/v1/stations", &viewer, json!({"id": "R-2", "securityProfile": 3})).await,
        api.patch("/api/v1/stations/R-1", &viewer, json!({"enabled": false})).await,
        api.delete("/api/v1/stations/R-1", &viewer).await,
        api.post("/api/v1/stations/R-1/certificates", &viewer, json!({"csr": csr("R-1")})).await,
        api.post("/api/v1/tenants", &viewer, json!({"name": "x", "organizationName": "X"})).await,
    ];
    for r in &mutations {
        assert_problem(r, 403, "forbidden");
    }
    assert_eq!(api.get("/api/v1/stations/R-1", &viewer).await.body["enabled"], true);
    // Only an admin reads the audit log; only a platform admin manages tenants.
    assert_problem(&api.get("/api/v1/audit-log", &op).await, 403, "forbidden");
    assert_problem(&api.get("/api/v1/tenants", &tok("alpha", Role::Admin)).await, 403, "forbidden");
    let platform = tok("*", Role::PlatformAdmin);
    assert_problem(&api.get("/api/v1/stations", &platform).await, 403, "forbidden");
    let r = api.post("/api/v1/tenants", &platform, json!({"name": "gamma", "organizationName": "Gamma Grid"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_problem(
        &api.post("/api/v1/tenants", &platform, json!({"name": "gamma", "organizationName": "G"})).await,
        409,
        "conflict",
    );
    let r = api.post("/api/v1/tenants", &platform, json!({"name": "Bad_Name", "organizationName": "G"})).await;
    assert_eq!(r.body["field"], "/name");
    let names: Vec<String> = api.get("/api/v1/tenants", &platform).await.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["alpha", "beta", "gamma"]);
    // The new tenant works at once.
    let g = tok("gamma", Role::Operator);
    assert_eq!(
        api.post("/api/v1/stations", &g, json!({"id": "G-1", "securityProfile": 3})).await.status,
        StatusCode::CREATED
    );
}

/// An operator's root imported through the API: the key is sealed at rest,
/// never returned, and PKCS#11 labels are confined to the tenant.
#[tokio::test]
async fn operator_ca_import_keeps_the_key_sealed_and_labels_to_the_tenant() {
    let api = api().await;
    let admin = tok("alpha", Role::Admin);
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, "Alpha Operator Root");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&key).unwrap();
    let chain = cert.pem();

    // Labels: not another tenant's, not without a token, not with a PEM key as well.
    let r = api
        .post(
            "/api/v1/pki/station-ca/import",
            &admin,
            json!({"certificateChain": chain, "pkcs11KeyLabel": "import/beta/k"}),
        )
        .await;
    assert_problem(&r, 422, "invalid-body");
    assert_eq!(r.body["field"], "/pkcs11KeyLabel");
    assert!(r.text.contains("import/alpha/"), "{}", r.text);
    let r = api
        .post(
            "/api/v1/pki/station-ca/import",
            &admin,
            json!({"certificateChain": chain, "pkcs11KeyLabel": "import/alpha/k"}),
        )
        .await;
    assert_problem(&r, 422, "invalid-body");
    assert!(r.text.contains("no PKCS#11 token is configured"), "{}", r.text);
    let both =
        json!({"certificateChain": chain, "privateKey": key.serialize_pem(), "pkcs11KeyLabel": "import/alpha/k"});
    assert_problem(&api.post("/api/v1/pki/station-ca/import", &admin, both).await, 422, "invalid-body");
    let r = api.post("/api/v1/pki/station-ca/import", &admin, json!({"certificateChain": chain})).await;
    assert_eq!((r.status.as_u16(), r.body["field"].as_str()), (422, Some("/privateKey")), "{}", r.text);
    // Only an admin.
    let op = tok("alpha", Role::Operator);
    let body = json!({"certificateChain": chain, "privateKey": key.serialize_pem()});
    assert_problem(&api.post("/api/v1/pki/station-ca/import", &op, body.clone()).await, 403, "forbidden");

    let r = api.post("/api/v1/pki/station-ca/import", &admin, body.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(!r.text.contains("PRIVATE KEY"), "{}", r.text);
    // At rest: sealed, neither the PEM nor the DER key appears in the row.
    let row = api.node.store.credential("alpha", "station-root").await.unwrap().unwrap();
    assert!(row.cert_pem.contains(chain.lines().nth(1).unwrap()));
    let der = key.serialize_der();
    assert!(!row.sealed_key.windows(32).any(|w| der.windows(32).any(|d| d == w)), "key stored in clear");
    assert!(!String::from_utf8_lossy(&row.sealed_key).contains("PRIVATE KEY"));
    // The same CA again is a conflict, and the tenant's certificates now chain to it.
    assert_problem(&api.post("/api/v1/pki/station-ca/import", &admin, body).await, 409, "conflict");
    api.post("/api/v1/stations", &admin, json!({"id": "IMP-1", "securityProfile": 3})).await;
    let r = api.post("/api/v1/stations/IMP-1/certificates", &admin, json!({"csr": csr("IMP-1")})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let pems = pki::pem_to_der_chain(r.body["certificateChain"].as_str().unwrap()).unwrap();
    let sub = pki::inspect_certificate(&pems[1]).unwrap();
    assert!(sub.issuer_dn.contains("CN=Alpha Operator Root"), "{}", sub.issuer_dn);
}

#[tokio::test]
async fn enrollment_signs_a_valid_csr_and_names_the_failed_rule() {
    let api = api().await;
    let op = tok("alpha", Role::Operator);
    api.post("/api/v1/stations", &op, json!({"id": "E-1", "securityProfile": 3})).await;
    let r = api.post("/api/v1/stations/E-1/certificates", &op, json!({"csr": csr("E-1"), "validityDays": 30})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let chain = r.body["certificateChain"].as_str().unwrap();
    assert_eq!(chain.matches("-----BEGIN CERTIFICATE-----").count(), 2);
    assert!(!chain.contains("PRIVATE KEY"));
    let info = pki::inspect_certificate(&pki::pem_to_der_chain(chain).unwrap()[0]).unwrap();
    assert_eq!(info.subject_cn.as_deref(), Some("E-1"));
    assert_eq!(info.subject_o.as_deref(), Some("Alpha Charging"), "O is the tenant's organisation");
    assert_eq!(r.body["serialNumber"], info.serial_hex);
    // The CN is somebody else's: rejected, with the rule.
    let r = api.post("/api/v1/stations/E-1/certificates", &op, json!({"csr": csr("E-2")})).await;
    assert_problem(&r, 422, "invalid-body");
    assert_eq!(r.body["field"], "/csr");
    assert!(r.body["detail"].as_str().unwrap().contains("common_name"), "{}", r.text);
    let r =
        api.post("/api/v1/stations/E-1/certificates", &op, json!({"csr": csr_with_org("E-1", "Mallory Inc")})).await;
    assert_problem(&r, 422, "invalid-body");
    assert!(r.body["detail"].as_str().unwrap().contains("csr.organization"), "{}", r.text);
    let r = api.post("/api/v1/stations/E-1/certificates", &op, json!({"csr": "not a csr"})).await;
    assert_eq!(r.body["field"], "/csr");
    assert!(r.body["detail"].as_str().unwrap().contains("csr.pem"), "{}", r.text);
    let r = api.post("/api/v1/stations/E-1/certificates", &op, json!({"csr": csr("E-1"), "validityDays": 0})).await;
    assert_eq!(r.body["field"], "/validityDays");
}

#[tokio::test]
async fn mutating_calls_are_audited_with_their_outcome() {
    let api = api().await;
    let admin = tok("alpha", Role::Admin);
    let viewer = tok("alpha", Role::Viewer);
    api.post("/api/v1/stations", &admin, json!({"id": "A-1", "securityProfile": 3})).await;
    api.patch("/api/v1/stations/A-1", &admin, json!({"description": "x"})).await;
    api.delete("/api/v1/stations/A-1", &viewer).await;
    api.get("/api/v1/stations", &admin).await;
    let r = api.get("/api/v1/audit-log", &admin).await;
    let rows: Vec<(String, String, String, u64)> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["actor"].as_str().unwrap().to_owned(),
                x["method"].as_str().unwrap().to_owned(),
                x["path"].as_str().unwrap().to_owned(),
                x["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("alpha-admin".into(), "POST".into(), "/api/v1/stations".into(), 201),
            ("alpha-admin".into(), "PATCH".into(), "/api/v1/stations/A-1".into(), 200),
            ("alpha-viewer".into(), "DELETE".into(), "/api/v1/stations/A-1".into(), 403),
        ]
    );
    // Durable: the rows are in the database, not in memory.
    assert_eq!(api.node.store.audit_page("alpha", None, 10).await.unwrap().len(), 3);
}

use support::Ws;

/// Connects `id` (of tenant `tenant`) through an in-memory WebSocket; returns the station's end.
async fn connect(api: &Api, id: &str, tenant: &str) -> Ws {
    support::connect_station(&api.node, tenant, id, None).await
}

async fn next_call(ws: &mut Ws) -> Value {
    support::next_frame(ws).await
}

async fn answer(ws: &mut Ws, frame: Value) {
    support::send(ws, frame).await
}

#[tokio::test]
async fn remote_commands_reach_the_station_and_bring_its_answer_back() {
    let api = Arc::new(api_with(Config { call_timeout_secs: 1, ..Config::default() }).await);
    let op = tok("alpha", Role::Operator);
    api.post("/api/v1/stations", &op, json!({"id": "C-1", "securityProfile": 3})).await;
    api.post("/api/v1/stations", &tok("beta", Role::Operator), json!({"id": "C-B", "securityProfile": 3})).await;
    let path = "/api/v1/stations/C-1/ocpp/GetVariables";
    let body = json!({"getVariableData": [{"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}]});
    assert_problem(&api.post(path, &op, body.clone()).await, 409, "station-not-connected");
    let mut ws = connect(&api, "C-1", "alpha").await;
    assert_eq!(api.get("/api/v1/stations/C-1", &op).await.body["connected"], true);

    // Generic path: the call goes out, the station's answer comes back.
    let (a, b, o) = (api.clone(), body.clone(), op.clone());
    let pending = tokio::spawn(async move { a.post(path, &o, b).await });
    let call = next_call(&mut ws).await;
    assert_eq!((call[0].clone(), call[2].clone(), call[3].clone()), (json!(2), json!("GetVariables"), body));
    let result = json!({"getVariableResult": [{"attributeStatus": "Accepted", "attributeValue": "300",
        "component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}]});
    answer(&mut ws, json!([3, call[1], result])).await;
    let r = pending.await.unwrap();
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body, result);

    // Typed shortcut; the station refuses with a CALLERROR: 502 with its words.
    let (a, o) = (api.clone(), op.clone());
    let pending =
        tokio::spawn(async move { a.post("/api/v1/stations/C-1/reset", &o, json!({"type": "Immediate"})).await });
    let call = next_call(&mut ws).await;
    assert_eq!(call[2], "Reset");
    answer(&mut ws, json!([4, call[1], "InternalError", "relay stuck", {}])).await;
    let r = pending.await.unwrap();
    assert_problem(&r, 502, "station-error");
    assert!(r.body["detail"].as_str().unwrap().contains("relay stuck"), "{}", r.text);

    // Silence: 504 after the call timeout; the station received the call, so
    // its outcome is unknown (it may have acted on it).
    let (a, o) = (api.clone(), op.clone());
    let pending = tokio::spawn(async move {
        a.post("/api/v1/stations/C-1/trigger-message", &o, json!({"requestedMessage": "Heartbeat"})).await
    });
    let _ = next_call(&mut ws).await;
    let r = pending.await.unwrap();
    assert_problem(&r, 504, "call-outcome-unknown");
    assert!(r.body["detail"].as_str().unwrap().contains("may have acted on it"), "{}", r.text);

    // Refused before anything is sent.
    let r = api.post("/api/v1/stations/C-1/reset", &op, json!({"type": "Sometime"})).await;
    assert_problem(&r, 422, "invalid-body");
    assert_eq!(r.body["field"], "/type");
    let r = api.post("/api/v1/stations/C-1/ocpp/Teleport", &op, json!({})).await;
    assert_problem(&r, 422, "invalid-parameter");
    assert_eq!(r.body["field"], "action");
    let r = api.post("/api/v1/stations/C-1/ocpp/BootNotification", &op, json!({})).await;
    assert_eq!(r.body["field"], "action");
    assert_problem(
        &api.post("/api/v1/stations/C-1/reset", &tok("alpha", Role::Viewer), json!({"type": "Immediate"})).await,
        403,
        "forbidden",
    );
    assert_problem(&api.post("/api/v1/stations/C-B/reset", &op, json!({"type": "Immediate"})).await, 404, "not-found");
    // Nothing of the refused requests reached the station.
    use futures_util::StreamExt;
    let extra = tokio::time::timeout(std::time::Duration::from_millis(200), ws.next()).await;
    assert!(extra.is_err(), "unexpected frame: {extra:?}");
}

#[tokio::test]
async fn live_events_stream_only_the_tenants_own() {
    let api = api().await;
    let op = tok("alpha", Role::Operator);
    api.post("/api/v1/stations", &op, json!({"id": "L-A", "securityProfile": 3})).await;
    api.post("/api/v1/stations", &tok("beta", Role::Operator), json!({"id": "L-B", "securityProfile": 3})).await;
    let req =
        Request::get("/api/v1/events").header("authorization", format!("Bearer {op}")).body(Body::empty()).unwrap();
    let res = api.router.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let mut body = res.into_body();

    let mut b = connect(&api, "L-B", "beta").await;
    let mut a = connect(&api, "L-A", "alpha").await;
    answer(&mut b, json!([2, "1", "StatusNotification", {"timestamp": "2026-11-26T00:00:00Z", "connectorStatus": "Faulted", "evseId": 1, "connectorId": 1}])).await;
    answer(&mut a, json!([2, "1", "StatusNotification", {"timestamp": "2026-11-26T00:00:00Z", "connectorStatus": "Occupied", "evseId": 1, "connectorId": 2}])).await;
    answer(&mut a, json!([2, "2", "SecurityEventNotification", {"type": "TamperDetectionActivated", "timestamp": "2026-11-26T00:00:01Z"}])).await;
    assert_eq!(next_call(&mut a).await[0], 3);
    assert_eq!(next_call(&mut a).await[0], 3);

    // Read events until alpha's three arrived; nothing of beta's may appear.
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while text.matches("event: ").count() < 3 {
        let frame =
            tokio::time::timeout_at(deadline, body.frame()).await.expect("events did not arrive").unwrap().unwrap();
        if let Some(d) = frame.data_ref() {
            text.push_str(&String::from_utf8_lossy(d));
        }
    }
    let events: Vec<(String, Value)> = text
        .split("\n\n")
        .filter(|e| e.contains("event: "))
        .map(|e| {
            let kind = e.lines().find_map(|l| l.strip_prefix("event: ")).unwrap().to_owned();
            let data = e.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
            (kind, serde_json::from_str(data).unwrap())
        })
        .collect();
    let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds, ["connected", "status", "security"], "{text}");
    assert!(events.iter().all(|(_, d)| d["stationId"] == "L-A"), "{text}");
    assert_eq!(events[1].1["data"], json!({"evseId": 1, "connectorId": 2, "status": "Occupied"}));
    assert_eq!(events[2].1["data"]["type"], "TamperDetectionActivated");
    assert_eq!(events[2].1["data"]["critical"], true, "A04: critical events are flagged");
    let metrics = api.call(Method::GET, "/metrics", Some(&tok("*", Role::PlatformAdmin)), None).await.text;
    assert!(
        metrics
            .contains(r#"anchorpoint_ocpp_security_events_total{type="TamperDetectionActivated",critical="true"} 1"#),
        "{metrics}"
    );
    assert!(!text.contains("L-B"), "{text}");
}

/// A plausible body for each operation that takes one.
fn body_for(path: &str) -> Option<Value> {
    Some(match path {
        "/api/v1/tenants" => json!({"name": "delta", "organizationName": "Delta"}),
        "/api/v1/stations" => json!({"id": "NEW-1", "securityProfile": 3}),
        "/api/v1/stations/{id}" => json!({"enabled": false}),
        "/api/v1/stations/{id}/certificates" => json!({"csr": csr("B-1")}),
        "/api/v1/certificates/{serial}/revoke" => json!({"reason": "keyCompromise"}),
        "/api/v1/pki/station-ca/rotate" => json!({"overlapDays": 1}),
        "/api/v1/pki/station-ca/import" => {
            let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            params.distinguished_name.push(rcgen::DnType::CommonName, "Operator Root");
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
            let cert = params.self_signed(&key).unwrap();
            json!({"certificateChain": cert.pem(), "privateKey": key.serialize_pem()})
        }
        p if p.ends_with("/reset") || p.ends_with("/ocpp/{action}") => json!({"type": "Immediate"}),
        p if p.starts_with("/api/v1/stations/{id}/") => json!({}),
        _ => return None,
    })
}

#[tokio::test]
async fn every_route_keeps_tenant_b_from_tenant_a_and_viewers_from_mutating() {
    let api = api().await;
    let b = tok("beta", Role::Admin);
    assert_eq!(
        api.post("/api/v1/stations", &b, json!({"id": "B-1", "securityProfile": 3, "description": "beta-secret"}))
            .await
            .status,
        StatusCode::CREATED
    );
    let _b_session = connect(&api, "B-1", "beta").await;
    let b_cert = api.post("/api/v1/stations/B-1/certificates", &b, json!({"csr": csr("B-1")})).await;
    let b_serial = b_cert.body["serialNumber"].as_str().unwrap().to_owned();
    let doc = api.call(Method::GET, "/api/openapi.json", None, None).await.body;
    let ops = operations(&doc);
    let b_cas = api.get("/api/v1/pki/station-ca", &b).await.body;
    let a_admin = tok("alpha", Role::Admin);
    let a_viewer = tok("alpha", Role::Viewer);
    for (method, path) in &ops {
        if path == "/api/openapi.json" || path == "/api/v1/events" {
            continue; // public document; the event stream has its own isolation test
        }
        let concrete = path
            .replace("{id}", "B-1")
            .replace("{name}", "beta")
            .replace("{action}", "Reset")
            .replace("{serial}", &b_serial);
        let body = if *method == Method::GET || *method == Method::DELETE { None } else { body_for(path) };
        // Tenant A's admin never reaches beta's station or tenant, nor sees them in lists.
        let r = api.call(method.clone(), &concrete, Some(&a_admin), body.clone()).await;
        if path.contains("{id}") || path.contains("{name}") || path.contains("{serial}") {
            assert_problem(&r, 404, "not-found");
        } else {
            assert!(
                r.status.is_success() || r.status == StatusCode::FORBIDDEN,
                "{method} {path}: {} {}",
                r.status,
                r.text
            );
        }
        // Nothing of beta's beyond what the request itself named.
        let named = concrete.contains("B-1") || concrete.contains(&b_serial);
        assert!(!r.text.contains("beta-secret"), "{method} {path} leaked: {}", r.text);
        if !named {
            assert!(!r.text.contains("B-1") && !r.text.contains(&b_serial), "{method} {path} leaked: {}", r.text);
        }
        // An expired or tampered token opens nothing.
        let expired = token("alpha", Role::Admin, -3600);
        let mut tampered = a_admin.clone();
        let n = tampered.len();
        tampered.replace_range(n - 4.., if a_admin.ends_with("AAAA") { "BBBB" } else { "AAAA" });
        for bad in [&expired, &tampered] {
            let r = api.call(method.clone(), &concrete, Some(bad), body.clone()).await;
            assert_problem(&r, 401, "unauthorized");
        }
        // A viewer mutates nothing.
        if *method != Method::GET {
            let concrete_a = path
                .replace("{id}", "A-NONE")
                .replace("{name}", "alpha")
                .replace("{action}", "Reset")
                .replace("{serial}", "0a1b");
            let r = api.call(method.clone(), &concrete_a, Some(&a_viewer), body).await;
            assert_problem(&r, 403, "forbidden");
        }
    }
    // Beta's CAs are as they were (alpha rotated and imported its own).
    assert_eq!(api.get("/api/v1/pki/station-ca", &b).await.body, b_cas);
    let a_cas = api.get("/api/v1/pki/station-ca", &a_admin).await.body;
    assert_eq!(a_cas[0]["subject"], "CN=Operator Root, O=", "{a_cas}");
    // Beta's station is as it was, still connected, its certificate valid.
    let r = api.get(&format!("/api/v1/certificates/{b_serial}"), &b).await;
    assert_eq!(r.body["status"], "valid", "{}", r.text);
    let r = api.get("/api/v1/stations/B-1", &b).await;
    assert_eq!((r.body["enabled"].clone(), r.body["connected"].clone()), (json!(true), json!(true)), "{}", r.text);
}

#[tokio::test]
async fn a_command_is_audited_even_when_the_client_goes_away() {
    let api = Arc::new(api().await);
    let op = tok("alpha", Role::Operator);
    api.post("/api/v1/stations", &op, json!({"id": "D-1", "securityProfile": 3})).await;
    let mut ws = connect(&api, "D-1", "alpha").await;
    let (a, o) = (api.clone(), op.clone());
    let client =
        tokio::spawn(async move { a.post("/api/v1/stations/D-1/reset", &o, json!({"type": "Immediate"})).await });
    let call = next_call(&mut ws).await;
    client.abort(); // the HTTP client disconnects while the station is still deciding
    let _ = client.await;
    answer(&mut ws, json!([3, call[1], {"status": "Accepted"}])).await;
    let admin = tok("alpha", Role::Admin);
    for _ in 0..100 {
        let r = api.get("/api/v1/audit-log", &admin).await;
        let items = r.body["items"].as_array().unwrap().clone();
        if let Some(rec) = items.iter().find(|x| x["path"] == "/api/v1/stations/D-1/reset") {
            assert_eq!(rec["status"], 200, "{rec}");
            assert_eq!(rec["actor"], "alpha-operator");
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the reset that reached the station was never audited");
}

#[tokio::test]
async fn platform_actions_go_to_the_platform_audit_log() {
    let api = api().await;
    let platform = tok("default", Role::PlatformAdmin);
    let r = api
        .post(
            "/api/v1/tenants",
            &platform,
            json!({"name": "hosted", "organizationName": "Hosted", "ocppHostname": "CSMS.Hosted.example"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["ocppHostname"], "csms.hosted.example", "host names are stored lower-case");
    // The same host name in another case is taken.
    let r = api
        .post(
            "/api/v1/tenants",
            &platform,
            json!({"name": "copycat", "organizationName": "C", "ocppHostname": "csms.HOSTED.example"}),
        )
        .await;
    assert_problem(&r, 409, "conflict");
    let log = api.get("/api/v1/audit-log", &platform).await;
    let statuses: Vec<u64> =
        log.body["items"].as_array().unwrap().iter().map(|x| x["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, [201, 409], "{}", log.text);
    // No tenant's own log shows them.
    for t in ["default", "alpha", "hosted"] {
        let r = api.get("/api/v1/audit-log", &tok(t, Role::Admin)).await;
        assert_eq!(r.body["items"], json!([]), "{t}: {}", r.text);
    }
    // The hosted tenant's CSMS root is its own, not the platform's.
    let own = api.get("/api/v1/pki/csms-root", &tok("hosted", Role::Viewer)).await.text;
    let platform_root = api.get("/api/v1/pki/csms-root", &tok("alpha", Role::Viewer)).await.text;
    assert!(own.starts_with("-----BEGIN CERTIFICATE-----") && own != platform_root);
    let info = pki::inspect_certificate(&pki::pem_to_der_chain(&own).unwrap()[0]).unwrap();
    assert_eq!(info.subject_o.as_deref(), Some("Hosted"));
}

#[tokio::test]
async fn event_streams_end_with_their_token_and_are_capped_per_tenant() {
    let api = api().await;
    let short = token("alpha", Role::Viewer, 2);
    let req =
        Request::get("/api/v1/events").header("authorization", format!("Bearer {short}")).body(Body::empty()).unwrap();
    let mut body = api.router.clone().oneshot(req).await.unwrap().into_body();
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            match body.frame().await {
                None => return true,
                Some(Err(_)) => return true,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await;
    assert_eq!(ended, Ok(true), "the stream outlived its token");
    drop(body); // the client goes away, as it does when the stream ends

    let viewer = tok("alpha", Role::Viewer);
    let mut open = Vec::new();
    for _ in 0..csms::events::MAX_EVENT_STREAMS_PER_TENANT {
        let req = Request::get("/api/v1/events")
            .header("authorization", format!("Bearer {viewer}"))
            .body(Body::empty())
            .unwrap();
        let res = api.router.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        open.push(res);
    }
    assert_problem(&api.get("/api/v1/events", &viewer).await, 503, "unavailable");
    // Another tenant is not affected.
    let req = Request::get("/api/v1/events")
        .header("authorization", format!("Bearer {}", tok("beta", Role::Viewer)))
        .body(Body::empty())
        .unwrap();
    assert_eq!(api.router.clone().oneshot(req).await.unwrap().status(), StatusCode::OK);
    drop(open);
}

#[tokio::test]
async fn unreadable_paths_and_unknown_parameters_are_problems() {
    let api = api().await;
    let op = tok("alpha", Role::Operator);
    assert_problem(&api.get("/api/v1/stations/%FF", &op).await, 404, "not-found");
    assert_problem(&api.get("/api/v1/stations/a%00b", &op).await, 404, "not-found");
    let r = api.get("/api/v1/stations?tags=x", &op).await;
    assert_problem(&r, 422, "invalid-parameter");
    assert_eq!(r.body["field"], "tags");
    let nul_cursor = "djE6AA"; // "v1:\0"
    for path in ["/api/v1/stations", "/api/v1/security-events", "/api/v1/audit-log"] {
        let r = api.get(&format!("{path}?cursor={nul_cursor}"), &tok("alpha", Role::Admin)).await;
        assert_problem(&r, 422, "invalid-parameter");
    }
}

#[tokio::test]
async fn security_events_are_listed_filtered_and_paged() {
    let api = api().await;
    let op = tok("alpha", Role::Operator);
    for id in ["S-1", "S-2"] {
        api.post("/api/v1/stations", &op, json!({"id": id, "securityProfile": 3})).await;
    }
    let mut s1 = connect(&api, "S-1", "alpha").await;
    let mut s2 = connect(&api, "S-2", "alpha").await;
    let events = [
        (1, "FirmwareUpdated", "2026-11-26T00:00:01Z"),
        (1, "TamperDetectionActivated", "2026-11-26T00:00:02Z"),
        (2, "TamperDetectionActivated", "2026-11-26T00:00:03.5Z"),
    ];
    for (i, (station, kind, at)) in events.into_iter().enumerate() {
        let ws = if station == 1 { &mut s1 } else { &mut s2 };
        answer(ws, json!([2, format!("e{i}"), "SecurityEventNotification", {"type": kind, "timestamp": at, "techInfo": "lid"}])).await;
        assert_eq!(next_call(ws).await[0], 3);
    }
    let viewer = tok("alpha", Role::Viewer);
    let all = api.get("/api/v1/security-events", &viewer).await;
    let items = all.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 3, "{}", all.text);
    assert_eq!(items[2]["stationId"], "S-2");
    assert_eq!(items[2]["type"], "TamperDetectionActivated");
    assert_eq!(items[2]["occurredAt"], "2026-11-26T00:00:03.5Z");
    assert_eq!(items[2]["techInfo"], "lid");
    let tamper = api.get("/api/v1/security-events?type=TamperDetectionActivated", &viewer).await;
    assert_eq!(tamper.body["items"].as_array().unwrap().len(), 2);
    let s1_tamper = api.get("/api/v1/security-events?type=TamperDetectionActivated&stationId=S-1", &viewer).await;
    assert_eq!(s1_tamper.body["items"].as_array().unwrap().len(), 1);
    let first = api.get("/api/v1/security-events?limit=2", &viewer).await;
    assert_eq!(first.body["items"].as_array().unwrap().len(), 2);
    let cursor = first.body["nextCursor"].as_str().unwrap();
    let rest = api.get(&format!("/api/v1/security-events?limit=2&cursor={cursor}"), &viewer).await;
    assert_eq!(rest.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(rest.body["items"][0]["stationId"], "S-2");
    assert!(rest.body.get("nextCursor").is_none());
    // Beta sees none of them.
    assert_eq!(api.get("/api/v1/security-events", &tok("beta", Role::Viewer)).await.body["items"], json!([]));
}

#[tokio::test]
async fn certificate_inventory_and_revocation() {
    let api = api().await;
    let op = tok("alpha", Role::Operator);
    api.post("/api/v1/stations", &op, json!({"id": "K-1", "securityProfile": 3})).await;
    api.post("/api/v1/stations", &op, json!({"id": "K-2", "securityProfile": 3})).await;
    let mut serials = Vec::new();
    for id in ["K-1", "K-1", "K-2"] {
        let r = api.post(&format!("/api/v1/stations/{id}/certificates"), &op, json!({"csr": csr(id)})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        serials.push(r.body["serialNumber"].as_str().unwrap().to_owned());
    }
    let viewer = tok("alpha", Role::Viewer);
    let all = api.get("/api/v1/certificates", &viewer).await;
    assert_eq!(all.body["items"].as_array().unwrap().len(), 3, "{}", all.text);
    assert!(
        all.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["status"] == "valid" && c.get("certificatePem").is_none())
    );
    let k1 = api.get("/api/v1/certificates?stationId=K-1", &viewer).await;
    assert_eq!(k1.body["items"].as_array().unwrap().len(), 2);
    let soon = api.get("/api/v1/certificates?expiringBefore=2026-01-01T00:00:00Z", &viewer).await;
    assert_eq!(soon.body["items"], json!([]));
    let paged = api.get("/api/v1/certificates?limit=2", &viewer).await;
    let next = paged.body["nextCursor"].as_str().unwrap();
    let rest = api.get(&format!("/api/v1/certificates?limit=2&cursor={next}"), &viewer).await;
    assert_eq!(rest.body["items"].as_array().unwrap().len(), 1);

    // The station PKI: root, then the issuing sub-CA that signed these certificates.
    let chain = api.get("/api/v1/pki/station-ca", &viewer).await;
    let cas = chain.body.as_array().unwrap();
    assert_eq!((cas[0]["role"].clone(), cas[1]["role"].clone()), (json!("root"), json!("issuing")), "{}", chain.text);
    assert_eq!(cas[1]["hsm"], false);
    let leaf_pem =
        api.get(&format!("/api/v1/certificates/{}", serials[0]), &viewer).await.body["certificatePem"].clone();
    let leaf = pki::inspect_certificate(&pki::pem_to_der_chain(leaf_pem.as_str().unwrap()).unwrap()[0]).unwrap();
    let issuing =
        pki::inspect_certificate(&pki::pem_to_der_chain(cas[1]["pem"].as_str().unwrap()).unwrap()[0]).unwrap();
    assert!(
        leaf.issuer_dn.contains(issuing.subject_cn.as_deref().unwrap()),
        "{} / {:?}",
        leaf.issuer_dn,
        issuing.subject_cn
    );
    // Show: PEM and the issuing CA.
    let one = api.get(&format!("/api/v1/certificates/{}", serials[0].to_uppercase()), &viewer).await;
    assert_eq!(one.status, StatusCode::OK, "serials in any case: {}", one.text);
    assert!(one.body["certificatePem"].as_str().unwrap().starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(one.body["issuerChainPem"].as_str().unwrap().starts_with("-----BEGIN CERTIFICATE-----"));

    // K-1 is connected with its first certificate; revoking it closes that session only.
    let mut k1_ws = support::connect_station(&api.node, "alpha", "K-1", Some(serials[0].clone())).await;
    let _k2_ws = support::connect_station(&api.node, "alpha", "K-2", Some(serials[2].clone())).await;
    assert_problem(
        &api.post(&format!("/api/v1/certificates/{}/revoke", serials[0]), &viewer, json!({})).await,
        403,
        "forbidden",
    );
    let r =
        api.post(&format!("/api/v1/certificates/{}/revoke", serials[0]), &op, json!({"reason": "keyCompromise"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        (r.body["status"].clone(), r.body["revocationReason"].clone()),
        (json!("revoked"), json!("keyCompromise"))
    );
    use futures_util::StreamExt;
    let closed = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            match k1_ws.next().await {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Close(f))) => return f.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(closed, Some(1008), "the session using the revoked certificate is closed");
    assert!(api.node.link.is_connected("alpha", "K-2"), "other sessions stay");
    let again =
        api.post(&format!("/api/v1/certificates/{}/revoke", serials[0]), &op, json!({"reason": "superseded"})).await;
    assert_eq!(again.body["revocationReason"], "keyCompromise", "the first reason stands");
    let revoked = api.get("/api/v1/certificates?status=revoked", &viewer).await;
    assert_eq!(revoked.body["items"].as_array().unwrap().len(), 1);
    let valid = api.get("/api/v1/certificates?status=valid", &viewer).await;
    assert_eq!(valid.body["items"].as_array().unwrap().len(), 2);
    // Bad input.
    let r = api.post(&format!("/api/v1/certificates/{}/revoke", serials[1]), &op, json!({"reason": "lost"})).await;
    assert_eq!(r.body["field"], "/reason", "{}", r.text);
    assert_problem(&api.get("/api/v1/certificates/zz", &viewer).await, 404, "not-found");
    assert_problem(&api.get("/api/v1/certificates?status=maybe", &viewer).await, 422, "invalid-parameter");
    assert_problem(
        &api.get(&format!("/api/v1/certificates/{}", serials[1]), &tok("beta", Role::Viewer)).await,
        404,
        "not-found",
    );
}

fn csr_with_org(cn: &str, org: &str) -> String {
    support::csr_for(cn, Some(org))
}

#[tokio::test]
async fn a02_renewal_and_a03_station_requests_are_validated_issued_delivered_and_tracked() {
    let api = Arc::new(api().await);
    let op = tok("alpha", Role::Operator);
    api.post("/api/v1/stations", &op, json!({"id": "R-1", "securityProfile": 3})).await;
    let mut ws = connect(&api, "R-1", "alpha").await;

    // A03: a CSR with another station's CN is refused before anything is issued.
    answer(&mut ws, json!([2, "s1", "SignCertificate", {"csr": csr_with_org("R-2", "Alpha Charging")}])).await;
    let r = next_call(&mut ws).await;
    assert_eq!(r[2]["status"], "Rejected", "{r}");
    assert_eq!(r[2]["statusInfo"]["reasonCode"], "InvalidCSR");
    assert!(r[2]["statusInfo"]["additionalInfo"].as_str().unwrap().contains("csr.common_name"), "{r}");
    // ... and one naming another organisation.
    answer(&mut ws, json!([2, "s2", "SignCertificate", {"csr": csr_with_org("R-1", "Mallory Inc")}])).await;
    let r = next_call(&mut ws).await;
    assert!(r[2]["statusInfo"]["additionalInfo"].as_str().unwrap().contains("csr.organization"), "{r}");
    // V2G certificates are not signed here yet.
    answer(&mut ws, json!([2, "s3", "SignCertificate", {"csr": csr_with_org("R-1", "Alpha Charging"), "certificateType": "V2GCertificate"}])).await;
    assert_eq!(next_call(&mut ws).await[2]["statusInfo"]["reasonCode"], "NotSupported");

    // A03 accepted: answer first, then CertificateSigned through the outbound path.
    answer(&mut ws, json!([2, "s4", "SignCertificate", {"csr": csr_with_org("R-1", "Alpha Charging"), "certificateType": "ChargingStationCertificate"}])).await;
    assert_eq!(next_call(&mut ws).await, json!([3, "s4", {"status": "Accepted"}]));
    let signed = next_call(&mut ws).await;
    assert_eq!((signed[0].clone(), signed[2].clone()), (json!(2), json!("CertificateSigned")), "{signed}");
    assert_eq!(signed[3]["certificateType"], "ChargingStationCertificate");
    let chain = signed[3]["certificateChain"].as_str().unwrap();
    let ders = pki::pem_to_der_chain(chain).unwrap();
    assert_eq!(ders.len(), 2, "leaf and sub-CA");
    let info = pki::inspect_certificate(&ders[0]).unwrap();
    assert_eq!((info.subject_cn.as_deref(), info.subject_o.as_deref()), (Some("R-1"), Some("Alpha Charging")));
    answer(&mut ws, json!([3, signed[1], {"status": "Accepted"}])).await;

    // A02: the operator renews; the station is triggered, sends its CSR, gets the certificate.
    let (a, o) = (api.clone(), op.clone());
    let renew = tokio::spawn(async move { a.post("/api/v1/stations/R-1/certificates/renew", &o, json!({})).await });
    let trigger = next_call(&mut ws).await;
    assert_eq!(
        (trigger[2].clone(), trigger[3].clone()),
        (json!("TriggerMessage"), json!({"requestedMessage": "SignChargingStationCertificate"}))
    );
    answer(&mut ws, json!([3, trigger[1], {"status": "Accepted"}])).await;
    let r = renew.await.unwrap();
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert_eq!((r.body["origin"].clone(), r.body["state"].clone()), (json!("operator"), json!("triggered")));
    answer(&mut ws, json!([2, "s5", "SignCertificate", {"csr": csr_with_org("R-1", "Alpha Charging")}])).await;
    assert_eq!(next_call(&mut ws).await[2]["status"], "Accepted");
    let signed2 = next_call(&mut ws).await;
    assert_eq!(signed2[2], "CertificateSigned");
    answer(&mut ws, json!([3, signed2[1], {"status": "Accepted"}])).await;

    // The records tell the story.
    let mut states = Vec::new();
    for _ in 0..100 {
        let list = api.get("/api/v1/stations/R-1/certificate-requests", &op).await;
        states = list
            .body
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["origin"].as_str().unwrap().to_owned(), r["state"].as_str().unwrap().to_owned()))
            .collect::<Vec<_>>();
        if states.first().is_some_and(|s| s.1 == "delivered") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let expect: Vec<(String, String)> =
        [("operator", "delivered"), ("station", "delivered"), ("station", "rejected"), ("station", "rejected")]
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect();
    assert_eq!(states, expect);
    // Both certificates are in the inventory.
    let certs = api.get("/api/v1/certificates?stationId=R-1", &op).await;
    assert_eq!(certs.body["items"].as_array().unwrap().len(), 2, "{}", certs.text);
    // Renewal needs a connected station.
    assert_problem(&api.post("/api/v1/stations/NOPE/certificates/renew", &op, json!({})).await, 404, "not-found");
}

#[tokio::test]
async fn a01_password_switches_only_when_the_station_accepts() {
    let api = Arc::new(api().await);
    let op = tok("alpha", Role::Operator);
    api.post("/api/v1/stations", &op, json!({"id": "PW-1", "securityProfile": 2, "password": "the-first-password-1"}))
        .await;
    let mut ws = connect(&api, "PW-1", "alpha").await;
    let stored = |api: Arc<Api>| async move {
        api.node.store.station("alpha", "PW-1").await.unwrap().unwrap().password_hash.unwrap()
    };

    // The station refuses: the CSMS keeps expecting the old password.
    let (a, o) = (api.clone(), op.clone());
    let call = tokio::spawn(async move {
        a.post("/api/v1/stations/PW-1/password", &o, json!({"password": "a-refused-password-22"})).await
    });
    let sv = next_call(&mut ws).await;
    assert_eq!(sv[2], "SetVariables");
    assert_eq!(sv[3]["setVariableData"][0]["variable"]["name"], "BasicAuthPassword");
    assert_eq!(sv[3]["setVariableData"][0]["component"]["name"], "SecurityCtrlr");
    answer(&mut ws, json!([3, sv[1], {"setVariableResult": [{"attributeStatus": "Rejected", "component": {"name": "SecurityCtrlr"}, "variable": {"name": "BasicAuthPassword"}}]}])).await;
    let r = call.await.unwrap();
    assert_eq!(r.body, json!({"switched": false, "stationStatus": "Rejected"}), "{}", r.text);
    assert!(csms::password::verify("the-first-password-1", &stored(api.clone()).await).unwrap());

    // A generated password, accepted: now it is the one.
    let (a, o) = (api.clone(), op.clone());
    let call = tokio::spawn(async move { a.post("/api/v1/stations/PW-1/password", &o, json!({})).await });
    let sv = next_call(&mut ws).await;
    let generated = sv[3]["setVariableData"][0]["attributeValue"].as_str().unwrap().to_owned();
    assert_eq!(generated.len(), 32);
    answer(&mut ws, json!([3, sv[1], {"setVariableResult": [{"attributeStatus": "Accepted", "component": {"name": "SecurityCtrlr"}, "variable": {"name": "BasicAuthPassword"}}]}])).await;
    let r = call.await.unwrap();
    assert_eq!(r.body["switched"], true, "{}", r.text);
    assert!(!r.text.contains(&generated), "the password is never returned");
    let hash = stored(api.clone()).await;
    // Generated: a keyed verifier (one HMAC), not PBKDF2.
    assert!(hash.starts_with("hmac-sha256$"), "{hash}");
    let key = csms::password::VerifierKey::from_master(api.node.keys.master());
    assert!(csms::password::verify_keyed(&generated, &hash, &key).unwrap());
    assert!(!csms::password::verify_keyed("the-first-password-1", &hash, &key).unwrap());
    let audit = api.get("/api/v1/audit-log", &tok("alpha", Role::Admin)).await;
    assert!(!audit.text.contains(&generated));

    // Bad input and the wrong kind of station.
    let r = api.post("/api/v1/stations/PW-1/password", &op, json!({"password": "short"})).await;
    assert_eq!(r.body["field"], "/password");
    api.post("/api/v1/stations", &op, json!({"id": "PW-3", "securityProfile": 3})).await;
    assert_problem(&api.post("/api/v1/stations/PW-3/password", &op, json!({})).await, 409, "conflict");
}

#[tokio::test]
async fn certificates_near_expiry_are_renewed_without_an_operator() {
    let api = api_with(Config { renewal_window_days: 1000, ..Config::default() }).await;
    let op = tok("alpha", Role::Operator);
    api.post("/api/v1/stations", &op, json!({"id": "AR-1", "securityProfile": 3})).await;
    api.post("/api/v1/stations", &op, json!({"id": "AR-2", "securityProfile": 3})).await;
    for id in ["AR-1", "AR-2"] {
        let r = api.post(&format!("/api/v1/stations/{id}/certificates"), &op, json!({"csr": csr(id)})).await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    // AR-1 is connected, AR-2 is not: only AR-1 can be renewed now.
    let mut ws = connect(&api, "AR-1", "alpha").await;
    api.node.certificates.auto_renew().await;
    let trigger = next_call(&mut ws).await;
    assert_eq!(trigger[3], json!({"requestedMessage": "SignChargingStationCertificate"}));
    answer(&mut ws, json!([3, trigger[1], {"status": "Accepted"}])).await;
    let mut state = Value::Null;
    for _ in 0..100 {
        let list = api.get("/api/v1/stations/AR-1/certificate-requests", &op).await;
        state = list.body[0]["state"].clone();
        if state == "triggered" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(state, "triggered");
    assert_eq!(api.get("/api/v1/stations/AR-2/certificate-requests", &op).await.body, json!([]));
    // A renewal under way is not started twice.
    api.node.certificates.auto_renew().await;
    use futures_util::StreamExt;
    let again = tokio::time::timeout(std::time::Duration::from_millis(300), ws.next()).await;
    assert!(again.is_err(), "a second trigger was sent: {again:?}");
}

#[tokio::test]
async fn revocations_made_elsewhere_close_live_sessions() {
    let api = api().await;
    let op = tok("alpha", Role::Operator);
    api.post("/api/v1/stations", &op, json!({"id": "X-1", "securityProfile": 3})).await;
    let cert = api.post("/api/v1/stations/X-1/certificates", &op, json!({"csr": csr("X-1")})).await;
    let serial = cert.body["serialNumber"].as_str().unwrap().to_owned();
    let mut client = support::connect_station(&api.node, "alpha", "X-1", Some(serial.clone())).await;
    // Revoked by another process (the CLI writes the database directly).
    api.node.store.revoke_certificate("alpha", &serial, api.node.clock.now_millis(), "keyCompromise").await.unwrap();
    api.node.certificates.close_revoked_sessions().await;
    use futures_util::StreamExt;
    let closed = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            match client.next().await {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Close(f))) => return f.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(closed, Some(1008));
}

#[tokio::test]
async fn a_certificate_the_station_refuses_is_revoked_and_a_second_delivery_does_not_reissue() {
    let api = Arc::new(api().await);
    let op = tok("alpha", Role::Operator);
    api.post("/api/v1/stations", &op, json!({"id": "RJ-1", "securityProfile": 3})).await;
    let mut ws = connect(&api, "RJ-1", "alpha").await;
    answer(&mut ws, json!([2, "s1", "SignCertificate", {"csr": csr_with_org("RJ-1", "Alpha Charging")}])).await;
    assert_eq!(next_call(&mut ws).await[2]["status"], "Accepted");
    let signed = next_call(&mut ws).await;
    // A concurrent delivery of the same request (as a reconnection's resume) finds
    // it claimed: it neither issues again nor sends a second CertificateSigned.
    let requests = api.get("/api/v1/stations/RJ-1/certificate-requests", &op).await;
    assert_eq!(requests.body[0]["state"], "delivering", "{}", requests.text);
    let id = requests.body[0]["id"].as_i64().unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(2), api.node.certificates.deliver("alpha", "RJ-1", id))
        .await
        .expect("a claimed request is left alone");
    answer(&mut ws, json!([3, signed[1], {"status": "Rejected"}])).await;
    let mut last = Value::Null;
    for _ in 0..100 {
        last = api.get("/api/v1/stations/RJ-1/certificate-requests", &op).await.body[0].clone();
        if last["state"] == "station_rejected" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(last["state"], "station_rejected", "{last}");
    let certs = api.get("/api/v1/certificates?stationId=RJ-1", &op).await;
    let items = certs.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "issued once: {}", certs.text);
    assert_eq!(items[0]["status"], "revoked", "a refused certificate does not stay valid");
}
