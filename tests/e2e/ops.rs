//! Running it: zero configuration, health, readiness, metrics.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use crate::harness::{CSMS, Db, Env, openssl, py, strs, tls_args};

#[test]
fn zero_configuration_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(CSMS)
        .args(["serve", "--ocpp-addr", "127.0.0.1:0", "--api-addr", "127.0.0.1:0"])
        .current_dir(dir.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut banner = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let done = line.starts_with("listening ");
        banner.push(line);
        if done {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let banner = banner.join("\n");
    let data = dir.path().join("data");
    for (needle, what) in
        [("data dir", "data directory"), ("CSMS root", "root path"), ("OCPP", "OCPP URL"), ("API", "API URL")]
    {
        assert!(banner.contains(needle), "banner lacks the {what}:\n{banner}");
    }
    assert!(banner.contains("csms-root.pem"), "{banner}");
    assert!(data.join("anchorpoint.db").exists());
    for secret in ["master.key", "jwt.secret"] {
        let mode = std::fs::metadata(data.join(secret)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{secret} must be private");
    }
    // The published CSMS root is a CA certificate openssl reads, and the tenant's
    // station CA chains to the tenant's station root.
    let root = data.join("pki/csms-root.pem");
    let text = openssl(&["x509", "-in", root.to_str().unwrap(), "-noout", "-subject", "-ext", "basicConstraints"]);
    assert!(text.contains("CA:TRUE"), "{text}");
    let station_ca = data.join("pki/tenants/default/station-ca.pem");
    let station_root = data.join("pki/tenants/default/station-root.pem");
    let verify = openssl(&["verify", "-CAfile", station_root.to_str().unwrap(), station_ca.to_str().unwrap()]);
    assert!(verify.contains("OK"), "{verify}");
    // No private key was written in the clear anywhere in the data directory.
    for entry in walk(&data) {
        let bytes = std::fs::read(&entry).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("PRIVATE KEY"), "{} holds a PEM private key", entry.display());
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn health_readiness_and_metrics() {
    let env = Env::new(Db::Sqlite);
    let creds = env.add_station("CS-M", 3, None).unwrap();
    let server = env.serve(&[]);
    assert_eq!(server.api_get("/healthz"), (200, "ok\n".to_owned()));
    assert_eq!(server.api_get("/readyz"), (200, "ready\n".to_owned()));
    // One accepted station, one refused connection.
    let args = tls_args(&server, &server.wss(), "CS-M", Some(&creds));
    assert!(py("charger.py", &[strs(&args), vec!["--steps", "boot,heartbeat"]].concat()).0);
    let args = tls_args(&server, &server.wss(), "CS-NOBODY", Some(&creds));
    assert_eq!(py("probe.py", &[vec!["connect"], strs(&args)].concat()).1[0]["status"], 401);
    let (status, body) = server.scrape();
    assert_eq!(status, 200);
    for family in [
        "# TYPE anchorpoint_ocpp_connections gauge",
        "# TYPE anchorpoint_ocpp_connections_accepted counter",
        "# TYPE anchorpoint_ocpp_frames counter",
        "# TYPE anchorpoint_ocpp_handshake_failures counter",
        "# TYPE anchorpoint_ocpp_handler_duration_seconds histogram",
    ] {
        assert!(body.contains(family), "missing {family}:\n{body}");
    }
    for sample in [
        r#"anchorpoint_ocpp_frames_total{direction="in",action="BootNotification",result="ok"} 1"#,
        r#"anchorpoint_ocpp_frames_total{direction="in",action="Heartbeat",result="ok"} 1"#,
        r#"anchorpoint_ocpp_handshake_failures_total{reason="unknown_station"} 1"#,
        "anchorpoint_ocpp_connections_accepted_total 1",
    ] {
        assert!(body.contains(sample), "missing {sample}:\n{body}");
    }
    assert!(body.trim_end().ends_with("# EOF"), "OpenMetrics text ends with # EOF");
}

#[test]
fn token_command_mints_a_verifiable_jwt() {
    use base64::Engine;
    let env = Env::new(Db::Sqlite);
    let out = env.cli(&["token", "--tenant", "default", "--role", "operator"]);
    let token = out.lines().last().unwrap();
    assert_eq!(token.split('.').count(), 3, "{token}");
    let secret = std::fs::read_to_string(env.dir.path().join("jwt.secret")).unwrap();
    let secret = base64::engine::general_purpose::STANDARD.decode(secret.trim()).unwrap();
    let claims = api::auth::verify(&secret, token).unwrap();
    assert_eq!(claims.tenant, "default");
    assert_eq!(claims.role, api::auth::Role::Operator);
    assert!(claims.exp > claims.iat);
    assert!(api::auth::verify(b"some-other-secret-some-other-secret", token).is_err());
    // Unknown tenants and roles are refused with a clear message.
    let out = env.cli_raw(&["token", "--tenant", "nobody", "--role", "admin"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown tenant 'nobody'"));
    let out = env.cli_raw(&["token", "--tenant", "default", "--role", "root"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown role"));
}

/// Several commands opening a fresh data directory at once agree on one set of
/// secrets, one schema and one CA hierarchy.
fn concurrent_first_use(db: Db) {
    let env = Env::new(db);
    let children: Vec<_> = (0..4)
        .map(|i| {
            Command::new(CSMS)
                .args(["station", "add", &format!("CS-C{i}"), "--profile", "3"])
                .args(["--data-dir", env.dir.path().to_str().unwrap(), "--database-url", &env.db_url])
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(env.cli(&["station", "list"]).lines().count(), 4);
    let creds = env.enroll("CS-C0", "CS-C0");
    let server = env.serve(&[]);
    let verify = openssl(&[
        "verify",
        "-CAfile",
        env.dir.path().join("pki/tenants/default/station-root.pem").to_str().unwrap(),
        "-untrusted",
        env.dir.path().join("pki/tenants/default/station-ca.pem").to_str().unwrap(),
        creds.cert.to_str().unwrap(),
    ]);
    assert!(verify.contains("OK"), "{verify}");
    let args = tls_args(&server, &server.wss(), "CS-C0", Some(&creds));
    assert!(py("charger.py", &[strs(&args), vec!["--steps", "boot"]].concat()).0);
}

#[test]
fn concurrent_first_use_sqlite() {
    concurrent_first_use(Db::Sqlite);
}

#[test]
fn concurrent_first_use_postgres() {
    concurrent_first_use(Db::Postgres);
}

/// A server whose master key does not open its CA keys says so when it starts,
/// naming the tenant, instead of failing at the first certificate it must issue.
#[test]
fn a_server_that_cannot_sign_refuses_to_start() {
    let env = Env::new(Db::Sqlite);
    env.cli(&["station", "add", "CS-KEY", "--profile", "3"]);
    // 32 bytes, but not the key the CAs were sealed with.
    let wrong = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let out = Command::new(CSMS)
        .args(["serve", "--ocpp-addr", "127.0.0.1:0", "--api-addr", "127.0.0.1:0"])
        .args(["--data-dir", env.dir.path().to_str().unwrap(), "--database-url", &env.db_url])
        .env("ANCHORPOINT_MASTER_KEY", wrong)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(!out.status.success(), "started with the wrong master key");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot sign station certificates of tenant 'default'"), "{err}");
    assert!(err.contains("wrong master key"), "{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("listening"), "it must not listen");
}
