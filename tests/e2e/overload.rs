//! Overload: past `max_concurrent_boots` BootNotifications in progress, the
//! next is answered Pending with a retry interval (B02) and nothing is stored,
//! as the PyPI `ocpp` station sees it over TLS.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::harness::{Db, Env, py, python, strs, tls_args, wait_for, workspace};

/// Holds SQLite's write lock on `db` until a line arrives on its stdin (or it
/// closes); returns once the lock is held.
fn hold_write_lock(db: &str) -> std::process::Child {
    let script = "import sqlite3, sys\nc = sqlite3.connect(sys.argv[1], timeout=10, isolation_level=None)\n\
                  c.execute('BEGIN IMMEDIATE')\nprint('locked', flush=True)\nsys.stdin.readline()\n\
                  c.execute('COMMIT')\n";
    let mut child =
        Command::new(python()).args(["-c", script, db]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "locked");
    child
}

/// One number from the SQLite database at `db`.
fn count(db: &str, sql: &str) -> i64 {
    let script =
        "import sqlite3, sys\nprint(sqlite3.connect(sys.argv[1], timeout=10).execute(sys.argv[2]).fetchone()[0])\n";
    let out = Command::new(python()).args(["-c", script, db, sql]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[test]
fn boots_beyond_the_limit_are_answered_pending_with_an_interval() {
    let env = Env::new(Db::Sqlite);
    let first = env.add_station("CS-SLOW", 3, None).unwrap();
    let second = env.add_station("CS-DEFERRED", 3, None).unwrap();
    let server = env.serve_env(
        &[],
        &[("ANCHORPOINT_MAX_CONCURRENT_BOOTS", "1"), ("ANCHORPOINT_OVERLOAD_BOOT_INTERVAL_SECS", "20")],
    );
    let db = env.db_url.strip_prefix("sqlite://").unwrap().to_owned();

    // The first boot's write waits for the lock, so it stays in progress.
    let mut lock = hold_write_lock(&db);
    let slow_args = tls_args(&server, &server.wss(), "CS-SLOW", Some(&first));
    let slow = Command::new(python())
        .arg(workspace().join("tests/interop/charger.py"))
        .args([strs(&slow_args), vec!["--steps", "boot"]].concat())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the first boot to be in progress", 20, || {
        server.metric("anchorpoint_ocpp_boots_in_progress ", &[]) == 1.0
    });

    // Its boot holds the only slot: the next one is deferred at once.
    let args = tls_args(&server, &server.wss(), "CS-DEFERRED", Some(&second));
    let (ok, lines) = py("charger.py", &[strs(&args), vec!["--steps", "boot"]].concat());
    assert!(ok, "{lines:?}");
    let boot = lines.iter().find(|l| l["step"] == "boot").unwrap();
    assert_eq!(boot["status"], "Pending", "{lines:?}");
    let interval = boot["interval"].as_i64().unwrap();
    assert!((10..=30).contains(&interval), "interval {interval} not within 10..=30 (20 s, jittered)");
    assert_eq!(server.metric("anchorpoint_ocpp_boots_deferred_total", &[]), 1.0);

    // The first is answered as registered once the database is free again.
    drop(lock.stdin.take());
    assert!(lock.wait().unwrap().success());
    let out = slow.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains(r#""status": "Accepted""#), "{text}");

    // Nothing was stored for the deferred boot, and its registration stands:
    // booting again (as told, after the interval) is accepted.
    let token = env.cli(&["token", "--tenant", "default", "--role", "operator"]).trim().to_owned();
    let (status, station) = server.api("GET", "/api/v1/stations/CS-DEFERRED", &token, None);
    assert_eq!(status, 200, "{station}");
    assert_eq!(station["id"], "CS-DEFERRED", "{station}");
    assert!(station["boot"]["status"].is_null() && station["boot"]["at"].is_null(), "{station}");
    let boots = |id: &str| count(&db, &format!("SELECT COUNT(*) FROM boot_notifications WHERE station_id = '{id}'"));
    assert_eq!((boots("CS-SLOW"), boots("CS-DEFERRED")), (1, 0));
    assert_eq!(server.metric("anchorpoint_ocpp_boots_in_progress ", &[]), 0.0);
    let (ok, lines) = py("charger.py", &[strs(&args), vec!["--steps", "boot"]].concat());
    assert!(ok, "{lines:?}");
    assert_eq!(lines.iter().find(|l| l["step"] == "boot").unwrap()["status"], "Accepted", "{lines:?}");
    assert_eq!(server.metric("anchorpoint_ocpp_boots_deferred_total", &[]), 1.0);
    assert_eq!(boots("CS-DEFERRED"), 1);
}
