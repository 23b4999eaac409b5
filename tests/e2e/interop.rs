//! The PyPI `ocpp` package's v201 ChargePoint against our server.

use crate::harness::{Db, Env, py, strs, tls_args};

fn profile3_boot_heartbeat_status(db: Db) {
    let env = Env::new(db);
    let creds = env.add_station("CS-INTEROP-1", 3, None).unwrap();
    let server = env.serve(&[]);
    let args = tls_args(&server, &server.wss(), "CS-INTEROP-1", Some(&creds));
    let (ok, lines) =
        py("charger.py", &[strs(&args), vec!["--steps", "boot,heartbeat,status,security,meter,datatransfer"]].concat());
    assert!(ok, "charger failed: {lines:?}");
    assert_eq!(lines[0]["step"], "connected");
    assert_eq!(lines[0]["subprotocol"], "ocpp2.0.1");
    assert_eq!(lines[1]["step"], "boot");
    assert_eq!(lines[1]["status"], "Accepted");
    assert_eq!(lines[1]["interval"], 300);
    assert_eq!(lines[2]["step"], "heartbeat");
    assert!(lines[2]["current_time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(lines[3]["step"], "status");
    assert_eq!(lines[4]["step"], "security");
    assert_eq!(lines[5]["step"], "meter");
    assert_eq!(lines[6]["status"], "UnknownVendorId");

    // What the station reported is in the database.
    let show: serde_json::Value = serde_json::from_str(&env.cli(&["station", "show", "CS-INTEROP-1"])).unwrap();
    assert_eq!(show["bootStatus"], "Accepted");
    assert_eq!(show["vendor"], "PyOCPP");
    assert_eq!(show["model"], "Interop-1");
    assert_eq!(show["serialNumber"], "SN-CS-INTEROP-1");
    assert_eq!(show["firmwareVersion"], "1.2.3");
    assert!(show["lastHeartbeatAt"].as_i64().is_some());
    assert_eq!(show["connectors"][0]["status"], "Available");
    assert_eq!(show["connectors"][0]["evseId"], 1);

    assert!(
        server.metric(
            "anchorpoint_ocpp_frames_total",
            &["direction=\"in\"", "action=\"BootNotification\"", "result=\"ok\""]
        ) >= 1.0
    );
    assert!(server.metric("anchorpoint_ocpp_connections_accepted_total", &[]) >= 1.0);
}

#[test]
fn python_ocpp_profile3_sqlite() {
    profile3_boot_heartbeat_status(Db::Sqlite);
}

#[test]
fn python_ocpp_profile3_postgres() {
    profile3_boot_heartbeat_status(Db::Postgres);
}

/// ISO 15118-20 needs secp521r1: a station key on P-521, its CSR made by openssl,
/// enrolled, verified by openssl, and used for mutual TLS by the Python station.
#[test]
fn a_p521_station_key_is_enrolled_and_connects() {
    let env = Env::new(Db::Sqlite);
    env.cli(&["station", "add", "CS-P521", "--profile", "3"]);
    let (key, csr) = env.new_csr_on("p521", "CS-P521", "secp521r1");
    let cert = env.path("p521.pem");
    std::fs::write(&cert, env.cli(&["station", "enroll", "CS-P521", "--csr", csr.to_str().unwrap()])).unwrap();
    let server = env.serve(&[]);
    let root = env.path("pki/tenants/default/station-root.pem");
    assert!(crate::harness::openssl_verify(&root, &cert).contains("OK"));
    let text = crate::harness::openssl(&["x509", "-in", cert.to_str().unwrap(), "-noout", "-text"]);
    assert!(text.contains("secp521r1") || text.contains("P-521"), "{text}");
    let creds = crate::harness::StationCreds { cert, key };
    let args = tls_args(&server, &server.wss(), "CS-P521", Some(&creds));
    let (ok, lines) = py("charger.py", &[strs(&args), vec!["--steps", "boot"]].concat());
    assert!(ok, "charger failed: {lines:?}");
    assert_eq!(lines[1]["status"], "Accepted", "{lines:?}");
}

#[test]
fn python_ocpp_profile2_basic_auth() {
    let env = Env::new(Db::Sqlite);
    env.add_station("CS-P2", 2, Some("a-long-basic-password-1"));
    let server = env.serve(&[]);
    let mut args = tls_args(&server, &server.wss(), "CS-P2", None);
    args.extend(["--password".into(), "a-long-basic-password-1".into()]);
    let (ok, lines) = py("charger.py", &strs(&args));
    assert!(ok, "{lines:?}");
    assert_eq!(lines[1]["status"], "Accepted");
}

#[test]
fn python_ocpp_profile1_plain_listener() {
    let env = Env::new(Db::Sqlite);
    env.add_station("CS-P1", 1, Some("a-long-basic-password-1"));
    let server = env.serve(&["--ocpp-plain-addr", "127.0.0.1:0"]);
    let url = format!("ws://{}", server.plain.as_ref().unwrap());
    let (ok, lines) = py("charger.py", &["--url", &url, "--station", "CS-P1", "--password", "a-long-basic-password-1"]);
    assert!(ok, "{lines:?}");
    assert_eq!(lines[1]["status"], "Accepted");
}

#[test]
fn boot_answer_follows_registration() {
    let env = Env::new(Db::Sqlite);
    let creds = env.add_station("CS-PEND", 3, None).unwrap();
    env.cli(&["station", "update", "CS-PEND", "--registration", "pending"]);
    let server = env.serve(&[]);
    let args = tls_args(&server, &server.wss(), "CS-PEND", Some(&creds));
    let (ok, lines) = py("charger.py", &[strs(&args), vec!["--steps", "boot"]].concat());
    assert!(ok, "{lines:?}");
    assert_eq!(lines[1]["status"], "Pending");
    assert_eq!(lines[1]["interval"], 60);
    // B02.FR.09: while pending, other calls are refused with SecurityError.
    let (ok, lines) = py("probe.py", &[vec!["frames"], strs(&args), vec![r#"[2,"h1","Heartbeat",{}]"#]].concat());
    assert!(ok, "{lines:?}");
    assert_eq!(lines[0]["reply"][2], "SecurityError");

    env.cli(&["station", "update", "CS-PEND", "--registration", "rejected"]);
    let (_, lines) = py("charger.py", &[strs(&args), vec!["--steps", "boot"]].concat());
    assert_eq!(lines[1]["status"], "Rejected");
}
