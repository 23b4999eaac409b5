//! Every way in that must stay shut, each with its own test.

use crate::harness::{Db, Env, Server, StationCreds, openssl, openssl_verify, py, strs, tls_args};

fn outcome(server: &Server, station: &str, creds: Option<&StationCreds>, extra: &[&str]) -> serde_json::Value {
    let args = tls_args(server, &server.wss(), station, creds);
    let (ok, lines) = py("probe.py", &[vec!["connect"], strs(&args), extra.to_vec()].concat());
    assert!(ok, "{lines:?}");
    lines.into_iter().next().unwrap()
}

fn refused_reason(server: &Server, reason: &str) -> f64 {
    server.metric("anchorpoint_ocpp_handshake_failures_total", &[&format!("reason=\"{reason}\"")])
}

#[test]
fn valid_certificate_connects() {
    let env = Env::new(Db::Sqlite);
    let creds = env.add_station("CS-OK", 3, None).unwrap();
    let server = env.serve(&[]);
    let o = outcome(&server, "CS-OK", Some(&creds), &[]);
    assert_eq!(o["outcome"], "connected");
    // RFC 6455 4.2.2: exactly an upgrade, nothing that tells the client to close.
    assert_eq!(o["connection"], "Upgrade", "{o}");
}

#[test]
fn profile3_without_client_certificate() {
    let env = Env::new(Db::Sqlite);
    env.add_station("CS-A", 3, None);
    let server = env.serve(&[]);
    let o = outcome(&server, "CS-A", None, &[]);
    assert_eq!(o["outcome"], "http_status", "{o}");
    assert_eq!(o["status"], 401);
    assert_eq!(refused_reason(&server, "no_client_certificate"), 1.0);
}

#[test]
fn certificate_from_another_ca() {
    let env = Env::new(Db::Sqlite);
    env.add_station("CS-A", 3, None);
    // A CA that openssl made, unknown to the CSMS, signs a certificate for CS-A.
    let (ca_key, ca_pem) = (env.path("rogue-ca.key"), env.path("rogue-ca.pem"));
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "30",
        "-subj",
        "/CN=Rogue CA",
        "-keyout",
        ca_key.to_str().unwrap(),
        "-out",
        ca_pem.to_str().unwrap(),
    ]);
    let (key, csr) = env.new_csr("rogue", "CS-A");
    let cert = env.path("rogue.pem");
    // A proper client certificate in every respect but its issuer.
    let ext = env.path("rogue.ext");
    std::fs::write(&ext, "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n")
        .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        csr.to_str().unwrap(),
        "-CA",
        ca_pem.to_str().unwrap(),
        "-CAkey",
        ca_key.to_str().unwrap(),
        "-days",
        "30",
        "-extfile",
        ext.to_str().unwrap(),
        "-out",
        cert.to_str().unwrap(),
    ]);
    let server = env.serve(&[]);
    let o = outcome(&server, "CS-A", Some(&StationCreds { cert, key }), &[]);
    assert_eq!(o["outcome"], "tls_error", "{o}");
    assert_eq!(refused_reason(&server, "certificate_unknown_issuer"), 1.0);
}

#[test]
fn certificate_from_another_tenants_ca() {
    let env = Env::new(Db::Sqlite);
    env.cli(&["tenant", "add", "other", "--org", "Other Operator"]);
    env.add_station("CS-A", 3, None);
    // A station of the other tenant enrolls a key whose CN says CS-A.
    env.cli(&["station", "add", "CS-OTHER", "--profile", "3", "--tenant", "other"]);
    let (key, csr) = env.new_csr("o", "CS-OTHER");
    let chain = env.cli(&["station", "enroll", "CS-OTHER", "--csr", csr.to_str().unwrap()]);
    let cert = env.path("o.pem");
    std::fs::write(&cert, chain).unwrap();
    let server = env.serve(&[]);
    // Valid for the other tenant, so TLS completes; the upgrade for CS-A is refused.
    let o = outcome(&server, "CS-A", Some(&StationCreds { cert: cert.clone(), key: key.clone() }), &[]);
    assert_eq!(o["status"], 401, "{o}");
    assert_eq!(refused_reason(&server, "certificate_wrong_tenant"), 1.0);
    // And it does work for the station it belongs to.
    assert_eq!(outcome(&server, "CS-OTHER", Some(&StationCreds { cert, key }), &[])["outcome"], "connected");
}

#[test]
fn common_name_must_equal_station_id() {
    let env = Env::new(Db::Sqlite);
    env.add_station("CS-A", 3, None);
    let creds_b = env.add_station("CS-B", 3, None).unwrap();
    let server = env.serve(&[]);
    // A00.FR.405: CS-B's valid certificate does not let it act as CS-A.
    let o = outcome(&server, "CS-A", Some(&creds_b), &[]);
    assert_eq!(o["status"], 401, "{o}");
    assert_eq!(refused_reason(&server, "certificate_cn_mismatch"), 1.0);
}

#[test]
fn csr_with_wrong_common_name_is_not_signed() {
    let env = Env::new(Db::Sqlite);
    env.add_station("CS-A", 3, None);
    let (_key, csr) = env.new_csr("x", "CS-B");
    let out = env.cli_raw(&["station", "enroll", "CS-A", "--csr", csr.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("CSR rejected"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn expired_certificate() {
    let env = Env::new(Db::Sqlite);
    env.add_station("CS-EXP", 3, None);
    let (key, csr) = env.new_csr("exp", "CS-EXP");
    // Issue with the CSMS's own CA, but for a validity window that ended yesterday.
    let chain = issue_in_past(&env, "CS-EXP", &std::fs::read_to_string(&csr).unwrap());
    let cert = env.path("exp.pem");
    std::fs::write(&cert, chain).unwrap();
    let server = env.serve(&[]);
    let o = outcome(&server, "CS-EXP", Some(&StationCreds { cert, key }), &[]);
    assert_eq!(o["outcome"], "tls_error", "{o}");
    assert_eq!(refused_reason(&server, "certificate_expired"), 1.0);
}

fn issue_in_past(env: &Env, station: &str, csr_pem: &str) -> String {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let cfg = csms::config::Config {
            data_dir: env.dir.path().to_path_buf(),
            database_url: Some(env.db_url.clone()),
            ..Default::default()
        };
        let clock = csms::clock::SystemClock;
        let opened = csms::serve::open(cfg, &clock).await.unwrap();
        let tenant = opened.store.tenant("default").await.unwrap().unwrap();
        let csr = pki::validate_csr(csr_pem, station).unwrap();
        let now = time::OffsetDateTime::now_utc();
        let public_url = opened.config.public_url();
        let signer =
            csms::authority::Signer { store: &opened.store, keys: &opened.keys, public_url: &public_url, writes: None };
        let (chain, _) = csms::authority::issue_for(
            &signer,
            &tenant,
            station,
            &csr,
            csms::authority::Validity {
                not_before: now - time::Duration::days(30),
                not_after: now - time::Duration::days(1),
            },
            now,
        )
        .await
        .unwrap();
        opened.store.close().await;
        chain
    })
}

#[test]
fn revoked_certificate() {
    let env = Env::new(Db::Sqlite);
    let creds = env.add_station("CS-REV", 3, None).unwrap();
    let serial = openssl(&["x509", "-in", creds.cert.to_str().unwrap(), "-noout", "-serial"]);
    // As openssl prints it (upper case, leading zeros kept): the CLI normalises.
    let serial = serial.trim().trim_start_matches("serial=").to_owned();
    let server = env.serve(&[]);
    assert_eq!(outcome(&server, "CS-REV", Some(&creds), &[])["outcome"], "connected");
    env.cli(&["cert", "revoke", &serial]);
    let o = outcome(&server, "CS-REV", Some(&creds), &[]);
    assert_eq!(o["status"], 401, "{o}");
    assert_eq!(refused_reason(&server, "certificate_revoked"), 1.0);
}

#[test]
fn profile3_station_trying_basic_auth() {
    let env = Env::new(Db::Sqlite);
    env.add_station("CS-A", 3, None);
    let server = env.serve(&[]);
    let o = outcome(&server, "CS-A", None, &["--password", "a-long-basic-password-1"]);
    assert_eq!(o["status"], 401, "{o}");
    assert_eq!(refused_reason(&server, "basic_auth_for_profile3"), 1.0);
}

#[test]
fn wrong_basic_password() {
    let env = Env::new(Db::Sqlite);
    env.add_station("CS-P2", 2, Some("a-long-basic-password-1"));
    let server = env.serve(&[]);
    let o = outcome(&server, "CS-P2", None, &["--password", "a-long-basic-password-2"]);
    assert_eq!(o["status"], 401, "{o}");
    assert_eq!(refused_reason(&server, "wrong_password"), 1.0);
    let o = outcome(&server, "CS-P2", None, &["--user", "CS-OTHER", "--password", "a-long-basic-password-1"]);
    assert_eq!(o["status"], 401, "{o}");
    assert_eq!(outcome(&server, "CS-P2", None, &["--password", "a-long-basic-password-1"])["outcome"], "connected");
}

#[test]
fn profile2_station_on_plain_listener_is_a_downgrade() {
    let env = Env::new(Db::Sqlite);
    env.add_station("CS-P2", 2, Some("a-long-basic-password-1"));
    let server = env.serve(&["--ocpp-plain-addr", "127.0.0.1:0"]);
    let url = format!("ws://{}", server.plain.as_ref().unwrap());
    let (_, lines) =
        py("probe.py", &["connect", "--url", &url, "--station", "CS-P2", "--password", "a-long-basic-password-1"]);
    assert_eq!(lines[0]["status"], 401, "{lines:?}");
    assert_eq!(refused_reason(&server, "profile_downgrade"), 1.0);
}

#[test]
fn unknown_station() {
    let env = Env::new(Db::Sqlite);
    let creds = env.add_station("CS-A", 3, None).unwrap();
    let server = env.serve(&[]);
    let o = outcome(&server, "CS-NOBODY", Some(&creds), &[]);
    assert_eq!(o["status"], 401, "{o}");
    assert_eq!(refused_reason(&server, "unknown_station"), 1.0);
}

#[test]
fn unknown_station_with_a_password_costs_a_password_check() {
    let env = Env::new(Db::Sqlite);
    env.add_station("CS-P2", 2, Some("a-long-basic-password-1"));
    let server = env.serve(&[]);
    let checks = |s: &Server| s.metric("anchorpoint_ocpp_password_checks_total", &[]);
    assert_eq!(checks(&server), 0.0);
    // A known station with a wrong password and an unknown one both cost one
    // PBKDF2 verification, so their refusals take the same time.
    let o = outcome(&server, "CS-P2", None, &["--password", "a-long-basic-password-2"]);
    assert_eq!(o["status"], 401, "{o}");
    assert_eq!(checks(&server), 1.0);
    let o = outcome(&server, "CS-NOBODY", None, &["--password", "a-long-basic-password-2"]);
    assert_eq!(o["status"], 401, "{o}");
    assert_eq!(refused_reason(&server, "unknown_station"), 1.0);
    assert_eq!(checks(&server), 2.0);
}

#[test]
fn profile2_station_moves_up_to_profile3_with_its_certificate() {
    let env = Env::new(Db::Sqlite);
    env.add_station("CS-UP", 2, Some("a-long-basic-password-1"));
    let creds = env.enroll("CS-UP", "CS-UP");
    let stranger = env.add_station("CS-NEIGHBOUR", 3, None).unwrap();
    let server = env.serve(&[]);
    let profile = || -> u64 {
        let shown: serde_json::Value = serde_json::from_str(&env.cli(&["station", "show", "CS-UP"])).unwrap();
        shown["securityProfile"].as_u64().unwrap()
    };
    // Still profile 2: Basic works.
    assert_eq!(outcome(&server, "CS-UP", None, &["--password", "a-long-basic-password-1"])["outcome"], "connected");
    // A05: a valid certificate of another station does not lift it.
    let o = outcome(&server, "CS-UP", Some(&stranger), &[]);
    assert_eq!(o["status"], 401, "{o}");
    assert_eq!(refused_reason(&server, "certificate_cn_mismatch"), 1.0);
    assert_eq!(profile(), 2);
    // Its own certificate without a password: admitted, and profile 3 from now on.
    assert_eq!(outcome(&server, "CS-UP", Some(&creds), &[])["outcome"], "connected");
    assert_eq!(profile(), 3);
    // The password no longer opens it.
    let o = outcome(&server, "CS-UP", None, &["--password", "a-long-basic-password-1"]);
    assert_eq!(o["status"], 401, "{o}");
    assert_eq!(refused_reason(&server, "basic_auth_for_profile3"), 1.0);
}

#[test]
fn missing_or_wrong_subprotocol() {
    let env = Env::new(Db::Sqlite);
    let creds = env.add_station("CS-A", 3, None).unwrap();
    let server = env.serve(&[]);
    let o = outcome(&server, "CS-A", Some(&creds), &["--subprotocols", ""]);
    assert_eq!(o["status"], 400, "{o}");
    let o = outcome(&server, "CS-A", Some(&creds), &["--subprotocols", "ocpp1.6"]);
    assert_eq!(o["status"], 400, "{o}");
    assert_eq!(refused_reason(&server, "subprotocol"), 2.0);
    let o = outcome(&server, "CS-A", Some(&creds), &["--subprotocols", "ocpp1.6,ocpp2.0.1"]);
    assert_eq!(o["outcome"], "connected", "{o}");
    assert_eq!(o["subprotocol"], "ocpp2.0.1");
}

#[test]
fn tls_1_1_is_refused() {
    let env = Env::new(Db::Sqlite);
    let server = env.serve(&[]);
    // SECLEVEL=0 lets this openssl offer TLS 1.1 at all; the refusal must come from the server.
    let out = std::process::Command::new("openssl")
        .args(["s_client", "-connect", &server.ocpp, "-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl must be installed");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{text}");
    // The server answered the TLS 1.1 ClientHello with an alert (rustls sends
    // handshake_failure or protocol_version); nothing was negotiated.
    assert!(
        text.contains("alert protocol version") || text.contains("alert handshake failure"),
        "expected an alert from the server:\n{text}"
    );
    assert!(text.contains("Cipher is (NONE)"), "{text}");
    assert!(server.metric("anchorpoint_ocpp_handshake_failures_total", &["reason=\"tls_"]) >= 1.0);
    // TLS 1.2 and 1.3 both work.
    for v in ["-tls1_2", "-tls1_3"] {
        let out = std::process::Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &server.ocpp,
                v,
                "-CAfile",
                server.root_pem.to_str().unwrap(),
                "-verify_return_error",
                "-servername",
                "localhost",
            ])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Verify return code: 0 (ok)"), "{v}: {text}");
    }
}

/// A certificate signed with the tenant's own station CA key but never recorded
/// (as one minted with a leaked or replaced CA key would be) is refused, though
/// it chains to the trusted root.
#[test]
fn certificate_not_issued_here() {
    let env = Env::new(Db::Sqlite);
    env.add_station("CS-MINT", 3, None);
    let (key, csr) = env.new_csr("mint", "CS-MINT");
    let csr_pem = std::fs::read_to_string(&csr).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let chain = rt.block_on(async {
        let cfg = csms::config::Config {
            data_dir: env.dir.path().to_path_buf(),
            database_url: Some(env.db_url.clone()),
            ..Default::default()
        };
        let opened = csms::serve::open(cfg, &csms::clock::SystemClock).await.unwrap();
        let ca = csms::authority::load_ca(&opened.store, &opened.keys, "default", csms::authority::STATION_CA)
            .await
            .unwrap();
        let csr = pki::validate_csr(&csr_pem, "CS-MINT").unwrap();
        let now = time::OffsetDateTime::now_utc();
        let cert =
            ca.issue_station_certificate(&csr, "Default Organization", now, now + time::Duration::days(30)).unwrap();
        opened.store.close().await;
        csms::authority::chain_pem(&cert.pem, ca.cert_pem())
    });
    let cert = env.path("mint.pem");
    std::fs::write(&cert, &chain).unwrap();
    let server = env.serve(&[]);
    let root = env.path("pki/tenants/default/station-root.pem");
    let ok = openssl_verify(&root, &cert);
    assert!(ok.contains(": OK"), "it does chain: {ok}");
    let o = outcome(&server, "CS-MINT", Some(&StationCreds { cert, key }), &[]);
    assert_eq!(o["status"], 401, "{o}");
    assert_eq!(refused_reason(&server, "certificate_not_issued_here"), 1.0);
}
