//! One service layer under the REST API and the command line: the same bad
//! input gets the same refusal whichever way it comes, and changes made with
//! the CLI are in the audit log like the API's.

use serde_json::{Value, json};

use crate::harness::{Db, Env};

/// The CLI's failure text for `args` (it must fail).
fn cli_refusal(env: &Env, args: &[&str]) -> String {
    let out = env.cli_raw_env(args, &[("USER", "ops-ann")]);
    assert!(!out.status.success(), "csms {args:?} should have been refused");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A 422 problem's field and detail.
fn field_and_detail(status: u16, problem: &Value) -> (String, String) {
    assert_eq!(status, 422, "{problem}");
    (problem["field"].as_str().unwrap().to_owned(), problem["detail"].as_str().unwrap().to_owned())
}

#[test]
fn cli_and_rest_refuse_alike_and_the_cli_is_audited() {
    let env = Env::new(Db::Sqlite);
    let server = env.serve(&[]);
    let admin =
        env.cli(&["token", "--tenant", "default", "--role", "admin", "--subject", "api-admin"]).trim().to_owned();
    let platform = env.cli(&["token", "--role", "platform-admin", "--subject", "api-root"]).trim().to_owned();
    env.cli_env(&["station", "add", "CS-SVC", "--profile", "3"], &[("USER", "ops-ann")]);

    // Profile 2 without a password: the same field, the same words.
    let (status, problem) =
        server.api("PATCH", "/api/v1/stations/CS-SVC", &admin, Some(&json!({"securityProfile": 2})));
    let (field, detail) = field_and_detail(status, &problem);
    assert_eq!(field, "/password");
    let err = cli_refusal(&env, &["station", "update", "CS-SVC", "--profile", "2"]);
    assert!(err.contains(&field) && err.contains(&detail), "CLI said {err:?}, REST said {field}: {detail}");

    // A profile that does not exist.
    let (status, problem) =
        server.api("PATCH", "/api/v1/stations/CS-SVC", &admin, Some(&json!({"securityProfile": 4})));
    let (field, detail) = field_and_detail(status, &problem);
    let err = cli_refusal(&env, &["station", "update", "CS-SVC", "--profile", "4"]);
    assert!(err.contains(&field) && err.contains(&detail), "CLI said {err:?}, REST said {field}: {detail}");

    // A tenant name with a control character, and an organisation with one.
    for (name, org) in [("bad\u{7}name", "Org"), ("okname", "Bad\u{7}Org")] {
        let body = json!({"name": name, "organizationName": org});
        let (status, problem) = server.api("POST", "/api/v1/tenants", &platform, Some(&body));
        let (field, detail) = field_and_detail(status, &problem);
        let err = cli_refusal(&env, &["tenant", "add", name, "--org", org]);
        assert!(err.contains(&field) && err.contains(&detail), "CLI said {err:?}, REST said {field}: {detail}");
    }
    let (_, tenants) = server.api("GET", "/api/v1/tenants", &platform, None);
    assert_eq!(tenants["items"].as_array().unwrap().len(), 1, "nothing was created: {tenants}");

    // What the CLI changed, and what it was refused, is on record as cli:<user>,
    // with the status the API answers for the same change.
    env.cli_env(&["tenant", "add", "acme", "--org", "ACME"], &[("USER", "ops-ann")]);
    env.cli_env(&["ca", "rotate", "--overlap-days", "1"], &[("USER", "ops-ann")]);
    cli_refusal(&env, &["station", "update", "NOPE", "--profile", "3"]);
    let (_, log) = server.api("GET", "/api/v1/audit-log", &admin, None);
    let cli: Vec<(String, String, String, u64)> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["actor"] == "cli:ops-ann")
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap().to_owned();
            (s("role"), s("method"), s("path"), r["status"].as_u64().unwrap())
        })
        .collect();
    let row = |m: &str, p: &str, st: u64| ("cli".to_owned(), m.to_owned(), p.to_owned(), st);
    assert_eq!(
        cli,
        [
            row("POST", "/api/v1/stations", 201),
            row("PATCH", "/api/v1/stations/CS-SVC", 422),
            row("PATCH", "/api/v1/stations/CS-SVC", 422),
            row("POST", "/api/v1/pki/station-ca/rotate", 200),
        ],
        "{log}"
    );
    // The API's own calls are recorded once each, under their token's subject.
    let api_rows = log["items"].as_array().unwrap().iter().filter(|r| r["actor"] == "api-admin").count();
    assert_eq!(api_rows, 2, "{log}");
    // Platform changes (tenants) go to the platform's log.
    let (_, platform_log) = server.api("GET", "/api/v1/audit-log", &platform, None);
    let tenant_rows: Vec<(String, u64)> = platform_log["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["actor"] == "cli:ops-ann")
        .map(|r| (r["path"].as_str().unwrap().to_owned(), r["status"].as_u64().unwrap()))
        .collect();
    let tenants = "/api/v1/tenants".to_owned();
    // A change to a station that does not exist has no tenant: the platform's log has it.
    let nope = ("/api/v1/stations/NOPE".to_owned(), 404);
    assert_eq!(tenant_rows, [(tenants.clone(), 422), (tenants.clone(), 422), (tenants, 201), nope], "{platform_log}");
}
