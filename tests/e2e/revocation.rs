//! CRL and OCSP of a real server, judged by openssl; revocation refuses the station.

use std::process::Command;

use crate::harness::{Db, Env, openssl, py, strs, tls_args};

fn ocsp_status(env: &Env, api: &str, cert: &std::path::Path) -> String {
    let ca = env.path("pki/tenants/default/station-ca.pem");
    let root = env.path("pki/tenants/default/station-root.pem");
    let out = Command::new("openssl")
        .args(["ocsp", "-issuer", ca.to_str().unwrap(), "-cert", cert.to_str().unwrap()])
        .args(["-url", &format!("http://{api}/ocsp/default"), "-CAfile", root.to_str().unwrap()])
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert!(text.contains("Response verify OK"), "{text}");
    text
}

fn revocation_is_published(db: Db) {
    let env = Env::new(db);
    let creds = env.add_station("CS-OCSP", 3, None).unwrap();
    let other = env.add_station("CS-KEEP", 3, None).unwrap();
    let server = env.serve(&[]);
    let cert = creds.cert.to_str().unwrap();
    // The certificate points at this CSMS's CRL and OCSP responder.
    let text = openssl(&["x509", "-in", cert, "-noout", "-text"]);
    assert!(text.contains("/pki/default/station-ca.crl") && text.contains("OCSP - URI:http://"), "{text}");

    let before = ocsp_status(&env, &server.api, &creds.cert);
    assert!(before.contains(&format!("{cert}: good")), "{before}");
    let args = tls_args(&server, &server.wss(), "CS-OCSP", Some(&creds));
    assert_eq!(py("probe.py", &[vec!["connect"], strs(&args)].concat()).1[0]["outcome"], "connected");

    let serial = openssl(&["x509", "-in", cert, "-noout", "-serial"]);
    let serial = serial.trim().trim_start_matches("serial=");
    env.cli(&["cert", "revoke", serial, "--reason", "keyCompromise"]);

    let after = ocsp_status(&env, &server.api, &creds.cert);
    assert!(after.contains(&format!("{cert}: revoked")), "{after}");
    assert!(after.contains("Reason: keyCompromise"), "{after}");
    let kept = ocsp_status(&env, &server.api, &other.cert);
    assert!(kept.contains(": good"), "{kept}");

    // The same over GET (RFC 6960 A.1), through curl.
    let req = env.path("req.der");
    let ca = env.path("pki/tenants/default/station-ca.pem");
    openssl(&["ocsp", "-issuer", ca.to_str().unwrap(), "-cert", cert, "-no_nonce", "-reqout", req.to_str().unwrap()]);
    let b64 = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(&req).unwrap())
    };
    let encoded: String = b64
        .chars()
        .map(|c| match c {
            '+' => "%2B".into(),
            '/' => "%2F".into(),
            '=' => "%3D".into(),
            c => c.to_string(),
        })
        .collect();
    let resp = env.path("resp.der");
    let curl = Command::new("curl")
        .args(["-sf", "-o", resp.to_str().unwrap(), &format!("http://{}/ocsp/default/{encoded}", server.api)])
        .status()
        .unwrap();
    assert!(curl.success());
    let root = env.path("pki/tenants/default/station-root.pem");
    let text = openssl(&[
        "ocsp",
        "-respin",
        resp.to_str().unwrap(),
        "-issuer",
        ca.to_str().unwrap(),
        "-CAfile",
        root.to_str().unwrap(),
        "-cert",
        cert,
        "-no_nonce",
    ]);
    assert!(text.contains(&format!("{cert}: revoked")), "{text}");

    // The CRL: signed by the station CA, listing the serial with its reason.
    let crl = env.path("ca.crl");
    let curl = Command::new("curl")
        .args(["-sf", "-o", crl.to_str().unwrap(), &format!("http://{}/pki/default/station-ca.crl", server.api)])
        .status()
        .unwrap();
    assert!(curl.success());
    let out = Command::new("openssl")
        .args([
            "crl",
            "-inform",
            "DER",
            "-in",
            crl.to_str().unwrap(),
            "-noout",
            "-text",
            "-CAfile",
            ca.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("verify OK"), "{text}");
    assert!(text.contains(&format!("Serial Number: {serial}")), "{text}");
    assert!(text.contains("Key Compromise"), "{text}");

    // And the station is refused.
    let o = py("probe.py", &[vec!["connect"], strs(&args)].concat()).1;
    assert_eq!(o[0]["status"], 401, "{o:?}");

    // Unknown tenants and junk requests.
    assert_eq!(server.api_get("/pki/nobody/station-ca.crl").0, 404);
    let junk = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--data-binary", "junk"])
        .args(["-H", "Content-Type: application/ocsp-request", &format!("http://{}/ocsp/default", server.api)])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&junk.stdout), "200", "malformed requests get an OCSP malformedRequest");
}

#[test]
fn revocation_is_published_sqlite() {
    revocation_is_published(Db::Sqlite);
}

#[test]
fn revocation_is_published_postgres() {
    revocation_is_published(Db::Postgres);
}
