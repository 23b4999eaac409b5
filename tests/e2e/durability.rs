//! What a station was told "Accepted" survives `kill -9`.

use crate::harness::{Db, Env, py, strs, tls_args};

fn accepted_boot_survives_kill9(db: Db) {
    let env = Env::new(db);
    let creds = env.add_station("CS-DUR", 3, None).unwrap();
    let server = env.serve(&[]);
    let args = tls_args(&server, &server.wss(), "CS-DUR", Some(&creds));
    let (ok, lines) = py("charger.py", &[strs(&args), vec!["--steps", "boot,status"]].concat());
    assert!(ok, "{lines:?}");
    assert_eq!(lines[1]["status"], "Accepted");
    server.kill9();

    let show: serde_json::Value = serde_json::from_str(&env.cli(&["station", "show", "CS-DUR"])).unwrap();
    assert_eq!(show["bootStatus"], "Accepted");
    assert_eq!(show["vendor"], "PyOCPP");
    assert!(show["lastBootAt"].as_i64().is_some());
    assert_eq!(show["connectors"][0]["status"], "Available");

    // And the server comes back on the same data.
    let server = env.serve(&[]);
    let args = tls_args(&server, &server.wss(), "CS-DUR", Some(&creds));
    let (ok, lines) = py("charger.py", &[strs(&args), vec!["--steps", "boot,heartbeat"]].concat());
    assert!(ok, "{lines:?}");
    drop(server);
}

#[test]
fn kill9_sqlite() {
    accepted_boot_survives_kill9(Db::Sqlite);
}

#[test]
fn kill9_postgres() {
    accepted_boot_survives_kill9(Db::Postgres);
}
