//! A tenant with its own OCPP host name: its own CSMS root and server
//! certificate, chosen by SNI, serving that tenant's stations only.

use crate::harness::{Db, Env, StationCreds, openssl, py, strs};

fn ssl_verify(server_addr: &str, sni: Option<&str>, ca: &std::path::Path) -> String {
    let mut args = vec!["s_client", "-connect", server_addr, "-CAfile", ca.to_str().unwrap(), "-verify_return_error"];
    if let Some(name) = sni {
        args.extend(["-servername", name, "-verify_hostname", name]);
    }
    let out = std::process::Command::new("openssl").args(&args).stdin(std::process::Stdio::null()).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn tenant_host_name_selects_its_own_certificate() {
    let env = Env::new(Db::Sqlite);
    env.cli(&["tenant", "add", "acme", "--org", "ACME Charging", "--hostname", "ocpp.acme.test"]);
    env.cli(&["station", "add", "CS-ACME", "--profile", "3", "--tenant", "acme"]);
    let acme = env.enroll("CS-ACME", "CS-ACME");
    let default_station = env.add_station("CS-DEF", 3, None).unwrap();
    let server = env.serve(&[]);
    let acme_root = env.dir.path().join("pki/tenants/acme/csms-root.pem");
    assert!(acme_root.exists());

    // openssl: the tenant's host name gets a certificate under the tenant's root ...
    let text = ssl_verify(&server.ocpp, Some("ocpp.acme.test"), &acme_root);
    assert!(text.contains("Verify return code: 0 (ok)"), "{text}");
    assert!(text.contains("CN=ocpp.acme.test") || text.contains("CN = ocpp.acme.test"), "{text}");
    // ... which does not vouch for the platform's certificate, and vice versa.
    let text = ssl_verify(&server.ocpp, Some("localhost"), &acme_root);
    assert!(!text.contains("Verify return code: 0 (ok)"), "{text}");
    let text = ssl_verify(&server.ocpp, Some("ocpp.acme.test"), &server.root_pem);
    assert!(!text.contains("Verify return code: 0 (ok)"), "{text}");

    // The tenant's station boots through its host name, trusting only the tenant's root.
    let port = server.ocpp.rsplit(':').next().unwrap();
    let url = format!("wss://ocpp.acme.test:{port}");
    let station_args = |id: &str, c: &StationCreds| {
        vec![
            "--url".to_owned(),
            url.clone(),
            "--connect-host".into(),
            "127.0.0.1".into(),
            "--station".into(),
            id.into(),
            "--ca".into(),
            acme_root.display().to_string(),
            "--cert".into(),
            c.cert.display().to_string(),
            "--key".into(),
            c.key.display().to_string(),
        ]
    };
    let (ok, lines) = py("charger.py", &strs(&station_args("CS-ACME", &acme)));
    assert!(ok, "{lines:?}");
    assert_eq!(lines[1]["status"], "Accepted");

    // Another tenant's station is not served under this host name.
    let (ok, lines) = py("probe.py", &[vec!["connect"], strs(&station_args("CS-DEF", &default_station))].concat());
    assert!(ok, "{lines:?}");
    assert_eq!(lines[0]["status"], 401, "{lines:?}");
    assert_eq!(server.metric("anchorpoint_ocpp_handshake_failures_total", &["reason=\"tenant_host_mismatch\""]), 1.0);
    // The station certificate is issued by the tenant's station CA with O = its organisation.
    let subject = openssl(&["x509", "-in", acme.cert.to_str().unwrap(), "-noout", "-subject", "-issuer"]);
    assert!(subject.contains("O = ACME Charging") || subject.contains("O=ACME Charging"), "{subject}");
}

#[test]
fn tenant_cli_rejects_bad_input() {
    let env = Env::new(Db::Sqlite);
    for args in [
        vec!["tenant", "add", "Bad_Name", "--org", "X"],
        vec!["tenant", "add", "ok", "--org", "X", "--hostname", "not a host"],
        vec!["tenant", "add", "default", "--org", "X"],
        vec!["station", "add", "CS1", "--profile", "3", "--tenant", "nobody"],
        vec!["station", "add", "bad/id", "--profile", "3"],
        vec!["station", "add", "CS2", "--profile", "2"],
        vec!["station", "add", "CS3", "--profile", "2", "--password", "short"],
        vec!["station", "add", "CS4", "--profile", "4"],
    ] {
        let out = env.cli_raw(&args);
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("error"), "{args:?}: {err}");
    }
    let list = env.cli(&["tenant", "list"]);
    assert_eq!(list.lines().count(), 1, "{list}");
}

/// A tenant created through the API is served with its own server certificate
/// as soon as the call returns, not after the next refresh.
#[test]
fn new_tenant_host_name_gets_its_certificate_at_once() {
    let env = Env::new(Db::Sqlite);
    let server = env.serve(&[]);
    let body =
        serde_json::json!({"name": "fresh", "organizationName": "Fresh Charging", "ocppHostname": "ocpp.fresh.test"});
    let (status, created) = server.api("POST", "/api/v1/tenants", server.platform_token(), Some(&body));
    assert_eq!(status, 201, "{created}");
    // At once, no sleep: the certificate presented for the new host name.
    let out = std::process::Command::new("openssl")
        .args(["s_client", "-connect", &server.ocpp, "-servername", "ocpp.fresh.test", "-showcerts"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let begin = text.find("-----BEGIN CERTIFICATE-----").unwrap_or_else(|| panic!("no certificate: {text}"));
    let end = text[begin..].find("-----END CERTIFICATE-----").unwrap() + begin + "-----END CERTIFICATE-----".len();
    let leaf = env.path("fresh-leaf.pem");
    std::fs::write(&leaf, format!("{}\n", &text[begin..end])).unwrap();
    // It chains to the tenant's own CSMS root, not the platform's.
    let admin = env.cli(&["token", "--tenant", "fresh", "--role", "admin"]).trim().to_owned();
    let (status, root) = server.api_get_auth("/api/v1/pki/csms-root", &format!("Bearer {admin}"));
    assert_eq!(status, 200, "{root}");
    let tenant_root = env.path("fresh-root.pem");
    std::fs::write(&tenant_root, root).unwrap();
    let verify = std::process::Command::new("openssl")
        .args(["verify", "-CAfile", tenant_root.to_str().unwrap(), leaf.to_str().unwrap()])
        .output()
        .unwrap();
    let subject = openssl(&["x509", "-in", leaf.to_str().unwrap(), "-noout", "-subject"]);
    assert!(verify.status.success(), "{subject}: {}", String::from_utf8_lossy(&verify.stdout));
    assert!(subject.contains("ocpp.fresh.test"), "{subject}");
    let platform = std::process::Command::new("openssl")
        .args(["verify", "-CAfile", server.root_pem.to_str().unwrap(), leaf.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!platform.status.success(), "the platform root must not vouch for the tenant's certificate");
}
