//! The REST API of a real server: the README's curl session, and remote
//! commands reaching the PyPI `ocpp` ChargePoint.

use std::process::Command;

use serde_json::{Value, json};

use crate::harness::{BackgroundCharger, CSMS, Db, Env, python, strs, tls_args, wait_for, workspace};

/// The first ```sh block after the README heading `heading`.
fn readme_block(heading: &str) -> String {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let after = readme.split_once(heading).unwrap_or_else(|| panic!("README has no '{heading}'")).1;
    let start = after.find("```sh\n").unwrap() + "```sh\n".len();
    after[start..].split_once("```").unwrap().0.to_owned()
}

#[test]
fn readme_curl_session_works_as_written() {
    let env = Env::new(Db::Sqlite);
    let server = env.serve(&[]);
    let script = readme_block("## The REST API with curl");
    let bin_dir = std::path::Path::new(CSMS).parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(env.dir.path())
        .env("PATH", path)
        .env("API", format!("http://{}", server.api))
        .env("ANCHORPOINT_DATA_DIR", env.dir.path())
        .env("ANCHORPOINT_DATABASE_URL", &env.db_url)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "README session failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    // The last command printed the list: one page with the new station.
    let list_start = stdout.rfind("{\n  \"items\"").unwrap_or_else(|| panic!("no list printed:\n{stdout}"));
    let list: Value = serde_json::from_str(&stdout[list_start..]).unwrap();
    assert_eq!(list["items"][0]["id"], "CS100", "{stdout}");
    assert_eq!(list["items"][0]["tags"], json!(["depot-1"]));
    // The chain it saved verifies with openssl against the tenant's station root.
    let chain = env.path("cs100.pem");
    let root = env.path("pki/tenants/default/station-root.pem");
    let verify = Command::new("openssl")
        .args([
            "verify",
            "-CAfile",
            root.to_str().unwrap(),
            "-untrusted",
            chain.to_str().unwrap(),
            chain.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));
}

#[test]
fn remote_commands_reach_a_python_station() {
    let env = Env::new(Db::Sqlite);
    let server = env.serve(&[]);
    let token =
        env.cli(&["token", "--tenant", "default", "--role", "operator", "--subject", "ops-jane"]).trim().to_owned();
    // Register and enroll through the API; the CSR is openssl's.
    let (status, body) =
        server.api("POST", "/api/v1/stations", &token, Some(&json!({"id": "CS-API-1", "securityProfile": 3})));
    assert_eq!(status, 201, "{body}");
    let (key, csr) = env.new_csr("api1", "CS-API-1");
    let csr = std::fs::read_to_string(csr).unwrap();
    let (status, body) =
        server.api("POST", "/api/v1/stations/CS-API-1/certificates", &token, Some(&json!({ "csr": csr })));
    assert_eq!(status, 201, "{body}");
    let cert = env.path("api1.pem");
    std::fs::write(&cert, body["certificateChain"].as_str().unwrap()).unwrap();
    let creds = crate::harness::StationCreds { cert, key };

    // The station boots and stays to answer calls.
    let args = tls_args(&server, &server.wss(), "CS-API-1", Some(&creds));
    let station =
        BackgroundCharger::spawn(&[strs(&args), vec!["--steps", "boot,serve", "--serve-seconds", "30"]].concat());
    wait_for("the station to connect and boot", 20, || {
        let (_, s) = server.api("GET", "/api/v1/stations/CS-API-1", &token, None);
        s["connected"] == true && s["boot"]["status"] == "Accepted" && s["boot"]["vendor"] == "PyOCPP"
    });

    let get = json!({"getVariableData": [
        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}},
        {"component": {"name": "Nowhere"}, "variable": {"name": "Nothing"}}
    ]});
    let (status, answer) = server.api("POST", "/api/v1/stations/CS-API-1/ocpp/GetVariables", &token, Some(&get));
    assert_eq!(status, 200, "{answer}");
    let results = answer["getVariableResult"].as_array().unwrap();
    assert_eq!(results[0]["attributeStatus"], "Accepted");
    assert_eq!(results[0]["attributeValue"], "300");
    assert_eq!(results[1]["attributeStatus"], "UnknownVariable");

    let (status, answer) =
        server.api("POST", "/api/v1/stations/CS-API-1/reset", &token, Some(&json!({"type": "OnIdle"})));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer, json!({"status": "Scheduled"}));

    // An invalid payload never reaches the station.
    let (status, problem) =
        server.api("POST", "/api/v1/stations/CS-API-1/reset", &token, Some(&json!({"type": "Later"})));
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["field"], "/type");

    let lines = station.finish();
    // (B06: before a call of several items the CSMS asks for the station's limits.)
    let received: Vec<&Value> = lines
        .iter()
        .filter(|l| l["step"] == "received" && l["data"][0]["component"]["name"] != "DeviceDataCtrlr")
        .collect();
    assert_eq!(received.len(), 2, "{lines:?}");
    assert_eq!(received[0]["action"], "GetVariables");
    assert_eq!(received[1]["action"], "Reset");
    assert_eq!(received[1]["type"], "OnIdle");

    // Each call is on record under the token's subject.
    let admin = env.cli(&["token", "--tenant", "default", "--role", "admin"]).trim().to_owned();
    let (_, log) = server.api("GET", "/api/v1/audit-log", &admin, None);
    let mine: Vec<(String, u64)> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["actor"] == "ops-jane")
        .map(|r| (r["path"].as_str().unwrap().to_owned(), r["status"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        mine,
        [
            ("/api/v1/stations".to_owned(), 201),
            ("/api/v1/stations/CS-API-1/certificates".to_owned(), 201),
            ("/api/v1/stations/CS-API-1/ocpp/GetVariables".to_owned(), 200),
            ("/api/v1/stations/CS-API-1/reset".to_owned(), 200),
            ("/api/v1/stations/CS-API-1/reset".to_owned(), 422),
        ],
        "{log}"
    );

    // Disconnected: 409.
    wait_for("the station to be gone", 10, || {
        let (status, problem) =
            server.api("POST", "/api/v1/stations/CS-API-1/reset", &token, Some(&json!({"type": "Immediate"})));
        status == 409 && problem["type"] == "urn:anchorpoint:problem:station-not-connected"
    });
}

/// schemathesis (PyPI) against the served OpenAPI document with a valid token:
/// no 5xx, every response conforms to the document (status, content type,
/// headers, schema), and schema-invalid requests are rejected. Both stores.
fn schemathesis_finds_no_contract_violation(db: Db) {
    let env = Env::new(db);
    let server = env.serve(&[]);
    let token = env.cli(&["token", "--tenant", "default", "--role", "admin"]).trim().to_owned();
    let (status, _) =
        server.api("POST", "/api/v1/stations", &token, Some(&json!({"id": "ST-1", "securityProfile": 3})));
    assert_eq!(status, 201);
    // Tenant routes with the platform's token, everything else with the tenant admin's.
    let platform = env.cli(&["token", "--role", "platform-admin"]).trim().to_owned();
    run_schemathesis(&env, &server, &token, &["--exclude-path-regex", "^/api/v1/(events|tenants)"], 500);
    run_schemathesis(&env, &server, &platform, &["--include-path-regex", "^/api/v1/tenants"], 100);
    // The whole run left the server healthy.
    assert_eq!(server.api_get("/healthz").0, 200);
}

fn run_schemathesis(env: &Env, server: &crate::harness::Server, token: &str, filter: &[&str], min_cases: u32) {
    let schemathesis = python().parent().unwrap().join("schemathesis");
    let config = workspace().join("tests/schemathesis.toml");
    let out = Command::new(&schemathesis)
        .arg("--config-file")
        .arg(&config)
        .args([
            "run",
            &format!("http://{}/api/openapi.json", server.api),
            "--header",
            &format!("Authorization: Bearer {token}"),
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,\
             response_schema_conformance,negative_data_rejection",
            "--max-examples",
            "40",
            // Reproducible in CI; a failure prints everything needed to replay it.
            "--seed",
            "20261126",
            "--generation-database",
            "none",
            "--request-timeout",
            "20",
            "--no-color",
        ])
        .args(filter)
        .current_dir(env.dir.path())
        .output()
        .unwrap_or_else(|e| panic!("{} must be installed (.ci/run): {e}", schemathesis.display()));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "schemathesis found problems:\n{text}");
    let summary = text.lines().find(|l| l.contains(" generated, ")).unwrap_or_else(|| panic!("{text}"));
    assert!(summary.contains("passed") && !summary.contains("failed"), "{summary}");
    let generated: u32 = summary.split_whitespace().next().unwrap().parse().unwrap();
    assert!(generated >= min_cases, "too few cases ran: {summary}");
}

#[test]
fn schemathesis_sqlite() {
    schemathesis_finds_no_contract_violation(Db::Sqlite);
}

#[test]
fn schemathesis_postgres() {
    schemathesis_finds_no_contract_violation(Db::Postgres);
}

#[test]
fn es256_tokens_when_configured_and_nothing_else() {
    let env = Env::new(Db::Sqlite);
    let vars = [("ANCHORPOINT_JWT_ALGORITHM", "ES256")];
    let server = env.serve_env(&[], &vars);
    let out = Command::new(CSMS)
        .args(["token", "--tenant", "default", "--role", "viewer", "--data-dir"])
        .arg(env.dir.path())
        .args(["--database-url", &env.db_url])
        .envs(vars)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let header: Value = {
        use base64::Engine;
        let h = token.split('.').next().unwrap();
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap()
    };
    assert_eq!(header["alg"], "ES256");
    let (status, body) = server.api("GET", "/api/v1/stations", &token, None);
    assert_eq!(status, 200, "{body}");
    // An HS256 token made with the (still present) jwt.secret is refused.
    let hs = env.cli(&["token", "--tenant", "default", "--role", "viewer"]).trim().to_owned();
    let (status, body) = server.api("GET", "/api/v1/stations", &hs, None);
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["detail"], "the token is not signed with this CSMS's algorithm");
    // The key is sealed in the database, not on disk.
    for entry in walk(env.dir.path()) {
        let text = std::fs::read(&entry).unwrap_or_default();
        assert!(!String::from_utf8_lossy(&text).contains("PRIVATE KEY"), "{}", entry.display());
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}
