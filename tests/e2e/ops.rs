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
    // The data directory is the owner's alone; every file holding password hashes
    // or keys (the database with its WAL and shared memory too) is 0600.
    assert_eq!(mode_of(&data), 0o700, "the data directory must be private");
    for secret in ["master.key", "jwt.secret", "anchorpoint.db", "anchorpoint.db-wal", "anchorpoint.db-shm"] {
        assert_eq!(mode_of(&data.join(secret)), 0o600, "{secret} must be private");
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

fn mode_of(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

/// A data directory left readable by others (an older version, a copy) is
/// tightened at the next start, with a warning naming each path.
#[test]
fn looser_modes_are_tightened_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();
    let list = || Command::new(CSMS).args(["tenant", "list", "--data-dir", data_arg]).output().unwrap();
    assert!(list().status.success());
    let loose = [(data.clone(), 0o755), (data.join("anchorpoint.db"), 0o644), (data.join("master.key"), 0o640)];
    for (path, mode) in &loose {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(*mode)).unwrap();
    }
    let out = list();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let log = String::from_utf8_lossy(&out.stderr);
    for (path, _) in &loose {
        let want = if path == &data { 0o700 } else { 0o600 };
        assert_eq!(mode_of(path), want, "{} was not tightened", path.display());
        assert!(log.contains(&path.display().to_string()), "no warning names {}:\n{log}", path.display());
    }
    assert!(log.contains("tightened"), "{log}");
}

/// Certificates enrolled through the command line name the CRL and OCSP URLs of
/// the running server (which records its public URL), not a default address; a
/// command given another public URL is refused, naming both.
#[test]
fn cli_enrollment_names_the_servers_revocation_urls() {
    let env = Env::new(Db::Sqlite);
    env.cli(&["station", "add", "CS-URL", "--profile", "3"]);
    let server = env.serve(&[]);
    let port = server.api.rsplit(':').next().unwrap().to_owned();
    let creds = env.enroll("CS-URL", "CS-URL");
    let text = openssl(&[
        "x509",
        "-in",
        creds.cert.to_str().unwrap(),
        "-noout",
        "-ext",
        "crlDistributionPoints,authorityInfoAccess",
    ]);
    let crl = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix("URI:").filter(|u| u.ends_with(".crl")))
        .unwrap_or_else(|| panic!("no CRL URL in:\n{text}"));
    assert!(
        crl.starts_with(&format!("http://localhost:{port}/pki/default/ca/")),
        "CRL URL {crl} is not the server's (API port {port})"
    );
    assert!(text.contains(&format!("OCSP - URI:http://localhost:{port}/ocsp/default")), "{text}");
    // The URL works: the server publishes that CRL there.
    let fetched = env.path("fetched.crl");
    let status =
        Command::new("curl").args(["-s", "-o", fetched.to_str().unwrap(), "-w", "%{http_code}", crl]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&status.stdout), "200", "GET {crl}");
    let text = openssl(&["crl", "-inform", "DER", "-in", fetched.to_str().unwrap(), "-noout", "-issuer"]);
    assert!(text.contains("issuer="), "{text}");

    let out =
        env.cli_raw_env(&["station", "show", "CS-URL"], &[("ANCHORPOINT_PUBLIC_URL", "http://elsewhere.example:9")]);
    assert!(!out.status.success(), "a different public URL was accepted");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("http://elsewhere.example:9") && err.contains(&format!("http://localhost:{port}")), "{err}");
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
