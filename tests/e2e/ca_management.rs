//! Station CA management against a real server: rotating the issuing sub-CA
//! with an overlap, importing an operator's own root and sub-CA made by
//! openssl; chains, CRLs and OCSP judged by openssl, connections made by the
//! Python station.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::harness::{
    BackgroundCharger, Env, Server, StationCreds, openssl, openssl_verify, py, python, strs, tls_args, wait_for,
};

fn write(env: &Env, name: &str, text: &str) -> PathBuf {
    let p = env.path(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The tenant's CAs from the API: (current root, current issuing, all).
fn cas(server: &Server, token: &str) -> (Value, Value, Vec<Value>) {
    let (status, list) = server.api("GET", "/api/v1/pki/station-ca", token, None);
    assert_eq!(status, 200, "{list}");
    let all = list.as_array().unwrap().clone();
    let find = |role: &str| all.iter().find(|c| c["role"] == role && c["current"] == true).unwrap().clone();
    (find("root"), find("issuing"), all)
}

fn connects(server: &Server, station: &str, creds: &StationCreds) -> Value {
    let args = tls_args(server, &server.wss(), station, Some(creds));
    py("probe.py", &[vec!["connect"], strs(&args)].concat()).1[0].clone()
}

fn serial_of(cert: &Path) -> String {
    openssl(&["x509", "-in", s(cert), "-noout", "-serial"]).trim().trim_start_matches("serial=").to_owned()
}

/// openssl's view of our OCSP answer about `cert`, issued by `issuer`.
fn ocsp(server: &Server, issuer: &Path, root: &Path, cert: &Path) -> String {
    let out = Command::new("openssl")
        .args(["ocsp", "-issuer", s(issuer), "-cert", s(cert), "-CAfile", s(root)])
        .args(["-url", &format!("http://{}/ocsp/default", server.api)])
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("Response verify OK"), "{text}");
    text
}

/// Fetches a CRL by the URL the API gives and has openssl check its signature
/// with `ca`. (The test server listens on an ephemeral port its configured public
/// URL does not know: the path is fetched from where it actually listens.)
fn crl_text(env: &Env, server: &Server, url: &str, ca: &Path) -> String {
    let url = &format!("http://{}{}", server.api, &url[url.find("/pki/").unwrap()..]);
    let crl = env.path("fetched.crl");
    let ok = Command::new("curl").args(["-sf", "-o", s(&crl), url]).status().unwrap();
    assert!(ok.success(), "GET {url}");
    let out = Command::new("openssl")
        .args(["crl", "-inform", "DER", "-in", s(&crl), "-noout", "-text", "-CAfile", s(ca)])
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("verify OK"), "{url}: {text}");
    text
}

/// An operator CA made by openssl: (certificate, PKCS#8 key).
fn openssl_ca(
    env: &Env,
    name: &str,
    subj: &str,
    signer: Option<(&Path, &Path)>,
    pathlen: Option<u8>,
) -> (PathBuf, PathBuf) {
    let (cert, key) = (env.path(&format!("{name}.pem")), env.path(&format!("{name}.key")));
    let bc = match pathlen {
        Some(n) => format!("basicConstraints=critical,CA:TRUE,pathlen:{n}"),
        None => "basicConstraints=critical,CA:TRUE".to_owned(),
    };
    let mut args = vec!["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    args.extend(["-subj", subj, "-keyout", s(&key), "-days", "3650"]);
    args.extend(["-addext", &bc, "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
    match signer {
        None => {
            args.extend(["-x509", "-out", s(&cert)]);
            openssl(&args);
        }
        Some((ca_cert, ca_key)) => {
            let csr = env.path(&format!("{name}.csr"));
            args.extend(["-out", s(&csr)]);
            openssl(&args);
            let ext = write(env, &format!("{name}.ext"), &format!("{bc}\nkeyUsage=critical,keyCertSign,cRLSign\n"));
            openssl(&[
                "x509",
                "-req",
                "-in",
                s(&csr),
                "-CA",
                s(ca_cert),
                "-CAkey",
                s(ca_key),
                "-CAcreateserial",
                "-days",
                "3000",
                "-extfile",
                s(&ext),
                "-out",
                s(&cert),
            ]);
        }
    }
    (cert, key)
}

fn sql(env: &Env, statement: &str) {
    let db = env.db_url.strip_prefix("sqlite://").unwrap();
    let script =
        "import sqlite3, sys\nc = sqlite3.connect(sys.argv[1], timeout=10)\nc.execute(sys.argv[2])\nc.commit()\n";
    let out = Command::new(python()).args(["-c", script, db, statement]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn millis() -> i64 {
    i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

#[test]
fn station_ca_rotation_and_operator_cas() {
    let env = Env::new(crate::harness::Db::Sqlite);
    let first = env.add_station("CS-FIRST", 3, None).unwrap();
    let server = env.serve(&[]);
    let admin = env.cli(&["token", "--tenant", "default", "--role", "admin"]).trim().to_owned();
    let operator = env.cli(&["token", "--tenant", "default", "--role", "operator"]).trim().to_owned();
    let (root0, ca0, all) = cas(&server, &admin);
    assert_eq!(all.len(), 2, "{all:?}");
    let root0_pem = write(&env, "root0.pem", root0["pem"].as_str().unwrap());
    let ca0_pem = write(&env, "ca0.pem", ca0["pem"].as_str().unwrap());

    // ---- rotation --------------------------------------------------------------
    assert_eq!(server.api("POST", "/api/v1/pki/station-ca/rotate", &operator, Some(&json!({}))).0, 403);
    let (status, e) = server.api("POST", "/api/v1/pki/station-ca/rotate", &admin, Some(&json!({"overlapDays": 0})));
    assert_eq!((status, e["field"].as_str()), (422, Some("/overlapDays")), "{e}");
    let (status, list) = server.api("POST", "/api/v1/pki/station-ca/rotate", &admin, Some(&json!({"overlapDays": 30})));
    assert_eq!(status, 200, "{list}");
    let (root1, ca1, all) = cas(&server, &admin);
    assert_eq!(root1["id"], root0["id"], "the root stays");
    assert_ne!(ca1["id"], ca0["id"]);
    let replaced = all.iter().find(|c| c["id"] == ca0["id"]).unwrap();
    assert_eq!(replaced["current"], false);
    assert!(replaced["trustedUntil"].is_string() && replaced["replacedAt"].is_string(), "{replaced}");
    let ca1_pem = write(&env, "ca1.pem", ca1["pem"].as_str().unwrap());

    // A station enrolled now gets the new sub-CA, pointing at its own CRL.
    let second = env.add_station("CS-SECOND", 3, None).unwrap();
    assert!(openssl_verify(&root0_pem, &second.cert).contains(": OK"));
    let issuer = openssl(&["x509", "-in", s(&second.cert), "-noout", "-issuer"]);
    assert!(
        issuer.contains(ca1["subject"].as_str().unwrap().split(", ").next().unwrap().trim_start_matches("CN=")),
        "{issuer}"
    );
    let text = openssl(&["x509", "-in", s(&second.cert), "-noout", "-text"]);
    let crl1 = ca1["crlUrl"].as_str().unwrap();
    let path1 = format!("/pki/default/ca/{}.crl", ca1["id"].as_str().unwrap());
    assert!(crl1.ends_with(&path1), "{crl1}");
    // (The CLI that enrolled it does not know the server's address: same path, its own base URL.)
    assert!(text.contains(&path1), "{text}");
    // Both generations connect during the overlap.
    assert_eq!(connects(&server, "CS-FIRST", &first)["outcome"], "connected");
    assert_eq!(connects(&server, "CS-SECOND", &second)["outcome"], "connected");

    // Each CA answers for its own certificates: CRL and OCSP signed by it.
    let serial = serial_of(&first.cert);
    let (status, body) = server.api(
        "POST",
        &format!("/api/v1/certificates/{serial}/revoke"),
        &admin,
        Some(&json!({"reason": "keyCompromise"})),
    );
    assert_eq!(status, 200, "{body}");
    let old_crl = crl_text(&env, &server, replaced["crlUrl"].as_str().unwrap(), &ca0_pem);
    assert!(old_crl.contains(&format!("Serial Number: {serial}")), "{old_crl}");
    let new_crl = crl_text(&env, &server, crl1, &ca1_pem);
    assert!(!new_crl.contains(&serial), "{new_crl}");
    let answer = ocsp(&server, &ca0_pem, &root0_pem, &first.cert);
    assert!(answer.contains(": revoked") && answer.contains("keyCompromise"), "{answer}");
    let answer = ocsp(&server, &ca1_pem, &root0_pem, &second.cert);
    assert!(answer.contains(": good"), "{answer}");
    // The CRL URL of certificates from before per-CA CRLs is the first CA's.
    let first_crl = crl_text(&env, &server, "/pki/default/station-ca.crl", &ca0_pem);
    assert!(first_crl.contains(&format!("Serial Number: {serial}")), "{first_crl}");
    // Asked about a certificate under the wrong issuer, the responder does not vouch for it.
    let answer = ocsp(&server, &ca1_pem, &root0_pem, &first.cert);
    assert!(answer.contains(": unknown"), "{answer}");

    // ---- an operator's root --------------------------------------------------
    let (op_root, op_key) = openssl_ca(&env, "op-root", "/O=Operator/CN=Operator Root", None, None);
    let (_, other_key) = openssl_ca(&env, "other", "/O=Operator/CN=Other", None, None);
    let read = |p: &Path| std::fs::read_to_string(p).unwrap();
    let import = |chain: &str, key: &str| {
        server.api(
            "POST",
            "/api/v1/pki/station-ca/import",
            &admin,
            Some(&json!({"certificateChain": chain, "privateKey": key})),
        )
    };
    // Refusals name the rule, and nothing changes.
    let (status, e) = import(&read(&op_root), &read(&other_key));
    assert_eq!((status, e["field"].as_str()), (422, Some("/privateKey")), "{e}");
    assert!(e["detail"].as_str().unwrap().contains("import.key_match"), "{e}");
    assert!(!e.to_string().contains("PRIVATE KEY"), "the key is never echoed: {e}");
    let (status, e) = import(&read(&second.cert), &read(&second.key));
    assert_eq!((status, e["field"].as_str()), (422, Some("/certificateChain")), "{e}");
    assert!(e["detail"].as_str().unwrap().contains("import.ca"), "{e}");
    let (status, e) = import("not a certificate", &read(&op_key));
    assert!(status == 422 && e["detail"].as_str().unwrap().contains("import.pem"), "{e}");
    assert_eq!(cas(&server, &admin).1["id"], ca1["id"]);

    let (status, list) = import(&read(&op_root), &read(&op_key));
    assert_eq!(status, 200, "{list}");
    assert!(!list.to_string().contains("PRIVATE KEY"), "keys are never returned");
    let (root2, ca2, all) = cas(&server, &admin);
    assert_eq!(root2["subject"], "CN=Operator Root, O=Operator");
    assert_eq!(root2["keyWithOperator"], false);
    assert_ne!(ca2["id"], ca1["id"]);
    assert!(all.iter().any(|c| c["id"] == root0["id"] && c["current"] == false), "old root kept for the overlap");
    // New certificates chain to the operator's root, checked by openssl with only that root.
    let third = env.add_station("CS-THIRD", 3, None).unwrap();
    assert!(openssl_verify(&op_root, &third.cert).contains(": OK"));
    assert_eq!(connects(&server, "CS-THIRD", &third)["outcome"], "connected", "trusted at once");
    assert_eq!(connects(&server, "CS-SECOND", &second)["outcome"], "connected", "the old root within its overlap");

    // ---- stations move to the current CA during the overlap ----------------------
    // Stands in for days passing: the overlap of the rotated sub-CA began two days ago.
    let now = millis();
    sql(
        &env,
        &format!(
            "UPDATE credentials SET replaced_at = {}, trusted_until = {} WHERE name = 'station-ca@{}'",
            now - 2 * 86_400_000,
            now + 3_600_000,
            ca1["id"].as_str().unwrap()
        ),
    );
    let moved = StationCreds { cert: env.path("moved.pem"), key: env.path("moved.key") };
    let args = tls_args(&server, &server.wss(), "CS-SECOND", Some(&second));
    let station = BackgroundCharger::spawn(
        &[
            strs(&args),
            vec!["--steps", "boot,serve", "--serve-seconds", "45"],
            vec!["--new-cert-out", s(&moved.cert), "--new-key-out", s(&moved.key)],
        ]
        .concat(),
    );
    wait_for("the renewal by the new CA", 40, || {
        let (_, list) = server.api("GET", "/api/v1/stations/CS-SECOND/certificate-requests", &admin, None);
        list[0]["state"] == "delivered"
    });
    drop(station.finish());
    assert!(openssl_verify(&op_root, &moved.cert).contains(": OK"), "moved under the operator's root");
    assert_eq!(connects(&server, "CS-SECOND", &moved)["outcome"], "connected");

    // After the overlap, certificates of the replaced CA are refused.
    sql(
        &env,
        &format!(
            "UPDATE credentials SET trusted_until = {} WHERE name = 'station-ca@{}'",
            millis() - 1,
            ca1["id"].as_str().unwrap()
        ),
    );
    let outcome = connects(&server, "CS-SECOND", &second);
    assert_eq!(outcome["status"], 401, "{outcome}");
    let retired = server.metric("anchorpoint_ocpp_handshake_failures_total", &["reason=\"certificate_ca_retired\""]);
    assert_eq!(retired, 1.0);
    assert_eq!(connects(&server, "CS-SECOND", &moved)["outcome"], "connected");

    // ---- an operator's sub-CA under a root whose key stays with the operator -----------
    let (root3, root3_key) = openssl_ca(&env, "op-root3", "/O=Operator/CN=Operator Root 3", None, Some(1));
    let (sub3, sub3_key) =
        openssl_ca(&env, "op-sub3", "/O=Operator/CN=Operator Issuing 3", Some((&root3, &root3_key)), Some(0));
    let (status, e) = import(&read(&sub3), &read(&sub3_key));
    assert!(status == 422 && e["detail"].as_str().unwrap().contains("import.chain"), "without its root: {e}");
    let (status, list) = import(&format!("{}{}", read(&sub3), read(&root3)), &read(&sub3_key));
    assert_eq!(status, 200, "{list}");
    let (root4, ca4, _) = cas(&server, &admin);
    assert_eq!(root4["keyWithOperator"], true);
    assert_eq!(ca4["subject"], "CN=Operator Issuing 3, O=Operator");
    let (status, e) = server.api("POST", "/api/v1/pki/station-ca/rotate", &admin, Some(&json!({})));
    assert_eq!(status, 409, "no root key, no rotation: {e}");
    let fourth = env.add_station("CS-FOURTH", 3, None).unwrap();
    assert!(openssl_verify(&root3, &fourth.cert).contains(": OK"));
    assert_eq!(connects(&server, "CS-FOURTH", &fourth)["outcome"], "connected");
    // Its CRL is signed by the operator's sub-CA.
    let sub3_crl = crl_text(&env, &server, ca4["crlUrl"].as_str().unwrap(), &sub3);
    assert!(sub3_crl.contains("Operator Issuing 3"), "{sub3_crl}");
}

/// The same through the command line: list, rotate, a refused and an accepted
/// import; the tenant's PEM files follow, and what is issued afterwards chains
/// to the operator's root for openssl.
#[test]
fn ca_commands() {
    let env = Env::new(crate::harness::Db::Sqlite);
    env.add_station("CS-CLI", 3, None).unwrap();
    let lines = |out: String| -> Vec<Value> { out.lines().map(|l| serde_json::from_str(l).unwrap()).collect() };
    let before = lines(env.cli(&["ca", "list"]));
    assert_eq!(before.len(), 2, "{before:?}");
    assert_eq!((before[0]["role"].as_str(), before[0]["current"].as_bool()), (Some("root"), Some(true)));

    let after = lines(env.cli(&["ca", "rotate", "--overlap-days", "7"]));
    assert_eq!(after.len(), 3, "{after:?}");
    let replaced = after.iter().find(|c| c["current"] == false).unwrap();
    assert_eq!(replaced["id"], before[1]["id"]);
    let week = replaced["trustedUntil"].as_i64().unwrap() - replaced["replacedAt"].as_i64().unwrap();
    assert_eq!(week, 7 * 86_400_000);
    let out = env.cli_raw(&["ca", "rotate", "--overlap-days", "0"]);
    assert!(!out.status.success());

    let (op_root, op_key) = openssl_ca(&env, "cli-root", "/O=Operator/CN=CLI Operator Root", None, None);
    let (_, wrong_key) = openssl_ca(&env, "cli-other", "/O=Operator/CN=Other", None, None);
    let out = env.cli_raw(&["ca", "import", "--chain", s(&op_root), "--key", s(&wrong_key)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("import.key_match"), "{err}");
    assert!(!err.contains("PRIVATE KEY"), "{err}");
    let imported = lines(env.cli(&["ca", "import", "--chain", s(&op_root), "--key", s(&op_key)]));
    assert_eq!(imported[0]["subject"], "CN=CLI Operator Root, O=Operator");
    let files = std::fs::read_to_string(env.path("pki/tenants/default/station-root.pem")).unwrap();
    assert_eq!(files, std::fs::read_to_string(&op_root).unwrap().replace("\r\n", "\n"), "PEM files follow");

    let creds = env.enroll("CS-CLI", "CS-CLI");
    assert!(openssl_verify(&op_root, &creds.cert).contains(": OK"));
}
