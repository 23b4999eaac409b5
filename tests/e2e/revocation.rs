//! CRL and OCSP of a real server, judged by openssl; revocation refuses the station.

use std::process::Command;

use crate::harness::{Db, Env, openssl, openssl_verify, py, strs, tls_args};

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
    assert!(
        text.contains("/pki/default/ca/") && text.contains(".crl") && text.contains("OCSP - URI:http://"),
        "{text}"
    );

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

/// A02 end to end with the PyPI `ocpp` ChargePoint: the operator renews, the
/// station answers the trigger with a CSR made by `cryptography`, installs the
/// certificate from CertificateSigned, reconnects with it; the old certificate
/// is then revoked (superseded) according to our OCSP responder.
#[test]
fn a02_renewal_with_a_python_station() {
    use serde_json::json;

    use crate::harness::{BackgroundCharger, StationCreds, wait_for};

    let env = Env::new(Db::Sqlite);
    let old = env.add_station("CS-A02", 3, None).unwrap();
    let server = env.serve_env(&[], &[("ANCHORPOINT_SUPERSEDED_GRACE_SECS", "0")]);
    let token = env.cli(&["token", "--tenant", "default", "--role", "operator"]).trim().to_owned();
    let new = StationCreds { cert: env.path("new.pem"), key: env.path("new.key") };

    let args = tls_args(&server, &server.wss(), "CS-A02", Some(&old));
    let station = BackgroundCharger::spawn(
        &[
            strs(&args),
            vec!["--steps", "boot,serve", "--serve-seconds", "30"],
            vec!["--new-cert-out", new.cert.to_str().unwrap(), "--new-key-out", new.key.to_str().unwrap()],
        ]
        .concat(),
    );
    wait_for("the station to connect", 20, || {
        server.api("GET", "/api/v1/stations/CS-A02", &token, None).1["connected"] == true
    });

    let (status, renewal) = server.api("POST", "/api/v1/stations/CS-A02/certificates/renew", &token, Some(&json!({})));
    assert_eq!(status, 202, "{renewal}");
    let state = || {
        let (_, list) = server.api("GET", "/api/v1/stations/CS-A02/certificate-requests", &token, None);
        list[0]["state"].as_str().unwrap_or("").to_owned()
    };
    wait_for("delivery", 20, || state() == "delivered");
    assert!(new.cert.exists() && new.key.exists());

    let lines = station.finish();
    let steps: Vec<&str> = lines.iter().filter_map(|l| l["step"].as_str()).collect();
    assert!(steps.contains(&"sign_certificate") && steps.contains(&"certificate_signed"), "{lines:?}");
    let signed = lines.iter().find(|l| l["step"] == "certificate_signed").unwrap();
    assert_eq!(signed["status"], "Accepted");
    assert_eq!(signed["type"], "ChargingStationCertificate");

    // openssl agrees the new chain is valid, with CN and O as required.
    let root = env.path("pki/tenants/default/station-root.pem");
    let verify = openssl_verify(&root, &new.cert);
    assert!(verify.contains(": OK"), "{verify}");
    let subject = openssl(&["x509", "-in", new.cert.to_str().unwrap(), "-noout", "-subject"]);
    assert!(subject.contains("CN = CS-A02") && subject.contains("O = Default Organization"), "{subject}");

    // The station reconnects with its new certificate.
    let new_args = tls_args(&server, &server.wss(), "CS-A02", Some(&new));
    let (ok, lines) = py("charger.py", &[strs(&new_args), vec!["--steps", "boot"]].concat());
    assert!(ok, "{lines:?}");
    assert_eq!(lines[1]["status"], "Accepted");
    wait_for("installation", 20, || state() == "installed");

    // The old certificate is revoked (superseded), the new one good.
    let old_status = ocsp_status(&env, &server.api, &old.cert);
    assert!(old_status.contains(": revoked") && old_status.contains("superseded"), "{old_status}");
    let new_status = ocsp_status(&env, &server.api, &new.cert);
    assert!(new_status.contains(": good"), "{new_status}");
    // And the old one no longer opens a session.
    let o = py("probe.py", &[vec!["connect"], strs(&args)].concat()).1;
    assert_eq!(o[0]["status"], 401, "{o:?}");
}

/// With a PKCS#11 token configured (SoftHSM2), the tenant's CA keys are made
/// in it; enrollment, mutual TLS with the Python station, and the CRL work as
/// with software keys, and without the token the CA cannot be used.
#[test]
fn ca_keys_in_softhsm2() {
    let module = ["/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("SoftHSM2 is required (.ci/run installs softhsm2)");
    let label = format!("ap-e2e-{}", std::process::id());
    let init = Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", &label, "--pin", "1234", "--so-pin", "5678"])
        .output()
        .expect("softhsm2-util");
    assert!(init.status.success(), "{init:?}");
    struct Drop_(String);
    impl Drop for Drop_ {
        fn drop(&mut self) {
            let _ = Command::new("softhsm2-util").args(["--delete-token", "--token", &self.0]).output();
        }
    }
    let _token = Drop_(label.clone());
    let vars = [
        ("ANCHORPOINT_PKCS11_MODULE", module),
        ("ANCHORPOINT_PKCS11_TOKEN", label.as_str()),
        ("ANCHORPOINT_PKCS11_PIN", "1234"),
    ];

    let env = Env::new(Db::Sqlite);
    env.cli_env(&["station", "add", "CS-HSM", "--profile", "3"], &vars);
    let (key, csr) = env.new_csr("hsm", "CS-HSM");
    let chain = env.cli_env(&["station", "enroll", "CS-HSM", "--csr", csr.to_str().unwrap()], &vars);
    let cert = env.path("hsm.pem");
    std::fs::write(&cert, &chain).unwrap();
    let server = env.serve_env(&[], &vars);
    let root = env.path("pki/tenants/default/station-root.pem");
    let ok = openssl_verify(&root, &cert);
    assert!(ok.contains(": OK"), "{ok}");

    // Without the token the CA key is out of reach: nothing is signed.
    let out = env.cli_raw(&["station", "enroll", "CS-HSM", "--csr", csr.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("HSM"), "{}", String::from_utf8_lossy(&out.stderr));

    let creds = crate::harness::StationCreds { cert: cert.clone(), key };
    let args = tls_args(&server, &server.wss(), "CS-HSM", Some(&creds));
    let (ok, lines) = py("charger.py", &[strs(&args), vec!["--steps", "boot"]].concat());
    assert!(ok, "{lines:?}");
    assert_eq!(lines[1]["status"], "Accepted");
    // The CRL is signed in the token too.
    let crl = env.path("hsm.crl");
    let status = Command::new("curl")
        .args(["-sf", "-o", crl.to_str().unwrap(), &format!("http://{}/pki/default/station-ca.crl", server.api)])
        .status()
        .unwrap();
    assert!(status.success());
    let ca = env.path("pki/tenants/default/station-ca.pem");
    let out = Command::new("openssl")
        .args(["crl", "-inform", "DER", "-in", crl.to_str().unwrap(), "-noout", "-CAfile", ca.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("verify OK"), "{out:?}");

    // Rotation makes the new issuing sub-CA's key in the token as well, and it issues.
    let admin = env.cli_env(&["token", "--tenant", "default", "--role", "admin"], &vars).trim().to_owned();
    let (status, list) =
        server.api("POST", "/api/v1/pki/station-ca/rotate", &admin, Some(&serde_json::json!({"overlapDays": 7})));
    assert_eq!(status, 200, "{list}");
    let issuing: Vec<&serde_json::Value> = list.as_array().unwrap().iter().filter(|c| c["role"] == "issuing").collect();
    assert_eq!(issuing.len(), 2, "{list}");
    assert!(issuing.iter().all(|c| c["hsm"] == true), "{list}");
    let (_, csr2) = env.new_csr("hsm2", "CS-HSM");
    let chain = env.cli_env(&["station", "enroll", "CS-HSM", "--csr", csr2.to_str().unwrap()], &vars);
    let cert2 = env.path("hsm2.pem");
    std::fs::write(&cert2, &chain).unwrap();
    let ok = openssl_verify(&root, &cert2);
    assert!(ok.contains(": OK"), "{ok}");
    let issuer = openssl(&["x509", "-in", cert2.to_str().unwrap(), "-noout", "-issuer"]);
    assert!(issuer.contains("Station CA 20"), "issued by the rotated sub-CA: {issuer}");
}
