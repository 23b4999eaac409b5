//! Calls whose outcome the CSMS cannot know, certificate requests a newer one
//! replaced, and claims a killed process left: against a real server, with a
//! station on raw OCPP-J frames (`tests/interop/unanswered.py`).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Db, Env, Server, python, strs, tls_args, wait_for, workspace};

/// `unanswered.py` running in the background; its JSON lines as they come.
pub(crate) struct Station {
    child: Child,
    lines: mpsc::Receiver<Value>,
    seen: Vec<Value>,
}

impl Station {
    pub(crate) fn spawn(args: &[&str]) -> Station {
        let mut child = Command::new(python())
            .arg(workspace().join("tests/interop/unanswered.py"))
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        Station { child, lines, seen: Vec::new() }
    }

    /// Waits (at most 30 s) for a line with `step` (and `action`, if given).
    pub(crate) fn wait_for(&mut self, step: &str, action: Option<&str>) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line =
                self.lines.recv_timeout(left).unwrap_or_else(|_| panic!("no {step} {action:?}: {:?}", self.seen));
            self.seen.push(line.clone());
            if line["step"] == step && action.is_none_or(|a| line["action"] == a) {
                return line;
            }
        }
    }

    /// Waits for the script to end; every line it printed.
    fn finish(mut self) -> (bool, Vec<Value>) {
        let ok = self.child.wait().unwrap().success();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        (ok, std::mem::take(&mut self.seen))
    }
}

impl Drop for Station {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn operator(env: &Env) -> String {
    env.cli(&["token", "--tenant", "default", "--role", "operator"]).trim().to_owned()
}

pub(crate) fn connected(server: &Server, token: &str, id: &str) {
    wait_for(&format!("{id} to connect"), 20, || {
        let (_, s) = server.api("GET", &format!("/api/v1/stations/{id}"), token, None);
        s["connected"] == true
    });
}

/// A call the station received and never answered is "sent, outcome unknown"
/// (504 `call-outcome-unknown`); one still queued when the connection closed
/// was never sent (409 `station-not-connected`).
#[test]
fn a_delivered_call_is_outcome_unknown_and_a_queued_one_not_sent() {
    let env = Env::new(Db::Sqlite);
    env.add_station("CS-OU", 1, Some("a-long-basic-password-1"));
    let server = env.serve(&["--ocpp-plain-addr", "127.0.0.1:0"]);
    let token = operator(&env);
    let url = format!("ws://{}", server.plain.as_ref().unwrap());
    let mut station = Station::spawn(&[
        "--url",
        &url,
        "--station",
        "CS-OU",
        "--password",
        "a-long-basic-password-1",
        "--drop-on",
        "UnlockConnector",
        "--linger",
        "2",
    ]);
    station.wait_for("answer", Some("BootNotification"));
    connected(&server, &token, "CS-OU");

    std::thread::scope(|scope| {
        let unlock = scope.spawn(|| {
            let body = json!({"evseId": 1, "connectorId": 1});
            server.api("POST", "/api/v1/stations/CS-OU/ocpp/UnlockConnector", &token, Some(&body))
        });
        station.wait_for("received", Some("UnlockConnector"));
        // Queued behind the unanswered call; the station closes before it is sent.
        let reset = scope
            .spawn(|| server.api("POST", "/api/v1/stations/CS-OU/reset", &token, Some(&json!({"type": "Immediate"}))));

        let (status, problem) = unlock.join().unwrap();
        assert_eq!(status, 504, "{problem}");
        assert_eq!(problem["type"], "urn:anchorpoint:problem:call-outcome-unknown", "{problem}");
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains("UnlockConnector") && detail.contains("may have acted on it"), "{detail}");

        let (status, problem) = reset.join().unwrap();
        assert_eq!(status, 409, "{problem}");
        assert_eq!(problem["type"], "urn:anchorpoint:problem:station-not-connected", "{problem}");
    });
    let (_, lines) = station.finish();
    let received: Vec<&Value> = lines.iter().filter(|l| l["step"] == "received").collect();
    assert_eq!(received.len(), 1, "the Reset never reached the station: {lines:?}");
    assert_eq!(received[0]["action"], "UnlockConnector");
}

/// Runs the station once with `password`; whether it was admitted and booted.
fn logs_in(url: &str, id: &str, password: &str) -> bool {
    let station = Station::spawn(&["--url", url, "--station", id, "--password", password, "--serve-seconds", "0.2"]);
    let (ok, lines) = station.finish();
    ok && lines.iter().any(|l| l["step"] == "answer" && l["action"] == "BootNotification" && l["status"] == "Accepted")
}

/// A01: the station received SetVariables(BasicAuthPassword) and dropped
/// without answering. The API says the outcome is unknown; both passwords open
/// the station until it logs in with one of them, and then only that one.
#[test]
fn a01_password_with_unknown_outcome_accepts_both_until_the_station_settles_it() {
    let env = Env::new(Db::Sqlite);
    let (old, new, newer) = ("a-long-basic-password-1", "the-second-password-22", "the-third-password-333");
    env.add_station("CS-PW", 1, Some(old));
    let server = env.serve(&["--ocpp-plain-addr", "127.0.0.1:0"]);
    let token = operator(&env);
    let url = format!("ws://{}", server.plain.as_ref().unwrap());

    // Round 1: the station then comes back with the NEW password.
    let change = |current: &str, next: &str| {
        let mut station =
            Station::spawn(&["--url", &url, "--station", "CS-PW", "--password", current, "--drop-on", "SetVariables"]);
        station.wait_for("answer", Some("BootNotification"));
        connected(&server, &token, "CS-PW");
        let (status, problem) =
            server.api("POST", "/api/v1/stations/CS-PW/password", &token, Some(&json!({ "password": next })));
        assert_eq!(status, 504, "{problem}");
        assert_eq!(problem["type"], "urn:anchorpoint:problem:call-outcome-unknown", "{problem}");
        assert!(problem["detail"].as_str().unwrap().contains("both the old and the new password"), "{problem}");
        let received = station.wait_for("received", Some("SetVariables"));
        assert_eq!(received["variables"], json!(["BasicAuthPassword"]));
        station.finish();
    };
    change(old, new);
    assert!(logs_in(&url, "CS-PW", new), "the new password, which the station may have taken, opens it");
    assert!(!logs_in(&url, "CS-PW", old), "settled on the new one: the old one no longer opens it");
    assert!(logs_in(&url, "CS-PW", new));

    // Round 2: the station then comes back with the password it had.
    change(new, newer);
    assert!(logs_in(&url, "CS-PW", new), "the current password still opens it");
    assert!(!logs_in(&url, "CS-PW", newer), "settled on the current one: the pending one is dropped");
    assert!(logs_in(&url, "CS-PW", new));
}

/// A01: a station that takes the new password and reconnects with it at once,
/// before the CSMS learns the call's outcome, is admitted: the pending password
/// is recorded before the SetVariables is sent, not after the call failed.
#[test]
fn a01_new_password_opens_the_station_while_the_call_is_still_open() {
    let env = Env::new(Db::Sqlite);
    let (old, new) = ("a-long-basic-password-1", "the-second-password-22");
    env.add_station("CS-PW2", 1, Some(old));
    let server = env.serve(&["--ocpp-plain-addr", "127.0.0.1:0"]);
    let token = operator(&env);
    let url = format!("ws://{}", server.plain.as_ref().unwrap());
    let mut station = Station::spawn(&[
        "--url",
        &url,
        "--station",
        "CS-PW2",
        "--password",
        old,
        "--drop-on",
        "SetVariables",
        "--linger",
        "20",
    ]);
    station.wait_for("answer", Some("BootNotification"));
    connected(&server, &token, "CS-PW2");
    let answer = std::thread::scope(|scope| {
        let change = scope.spawn(|| {
            server.api("POST", "/api/v1/stations/CS-PW2/password", &token, Some(&json!({ "password": new })))
        });
        // The station holds the call open; a second connection with the new
        // password takes over its session.
        station.wait_for("received", Some("SetVariables"));
        assert!(logs_in(&url, "CS-PW2", new), "the new password opens the station while its call is open");
        change.join().unwrap()
    });
    assert_eq!(answer.0, 504, "{}", answer.1);
    assert_eq!(answer.1["type"], "urn:anchorpoint:problem:call-outcome-unknown", "{}", answer.1);
    assert!(!logs_in(&url, "CS-PW2", old), "settled on the new one");
    drop(station);
}

/// A02: two certificate requests are pending when the station reconnects; it
/// receives the certificate of the newest CSR only, and the older request is
/// superseded (its certificate, if one was issued, revoked).
#[test]
fn reconnection_delivers_only_the_newest_certificate_request() {
    let env = Env::new(Db::Sqlite);
    let creds = env.add_station("CS-SUP", 3, None).unwrap();
    let server = env.serve(&[]);
    let token = operator(&env);
    let args = tls_args(&server, &server.wss(), "CS-SUP", Some(&creds));

    // Two CSRs, both answered Accepted; the first CertificateSigned is left
    // unanswered and the connection dropped, so nothing is delivered.
    let first = Station::spawn(&[strs(&args), vec!["--sign", "2", "--drop-on", "CertificateSigned"]].concat());
    let (_, lines) = first.finish();
    let csrs: Vec<&Value> = lines.iter().filter(|l| l["step"] == "csr").collect();
    assert_eq!(csrs.len(), 2, "{lines:?}");
    let signs = lines.iter().filter(|l| l["action"] == "SignCertificate" && l["status"] == "Accepted").count();
    assert_eq!(signs, 2, "{lines:?}");
    assert!(lines.iter().any(|l| l["step"] == "dropping"), "{lines:?}");
    let requests = || server.api("GET", "/api/v1/stations/CS-SUP/certificate-requests", &token, None).1;
    assert!(
        requests().as_array().unwrap().iter().all(|r| r["state"] != "delivered"),
        "nothing delivered yet: {}",
        requests()
    );

    // The station comes back and answers what it gets.
    let second = Station::spawn(&[strs(&args), vec!["--serve-seconds", "6"]].concat());
    wait_for("the newest request to be delivered", 30, || requests()[0]["state"] == "delivered");
    let (ok, lines) = second.finish();
    assert!(ok, "{lines:?}");
    let signed: Vec<&Value> = lines.iter().filter(|l| l["action"] == "CertificateSigned").collect();
    assert_eq!(signed.len(), 1, "only the newest is delivered: {lines:?}");
    assert_eq!(signed[0]["spki"], csrs[1]["spki"], "the certificate is for the newest CSR");

    let all = requests();
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(all[1]["state"], "superseded", "{all:?}");
    // Issued for the older CSR before it was superseded: revoked, never delivered.
    if let Some(serial) = all[1]["serialNumber"].as_str() {
        let (_, cert) = server.api("GET", &format!("/api/v1/certificates/{serial}"), &token, None);
        assert_eq!(cert["status"], "revoked", "{cert}");
        assert_eq!(cert["revocationReason"], "superseded", "{cert}");
    }
}

/// Writes `sql` with `binds` (texts, then one integer: now) to the test's database.
fn execute(env: &Env, sql: &str, texts: &[&str], now: i64) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        use sqlx::Connection;
        macro_rules! run {
            ($conn:expr) => {{
                let mut c = $conn;
                let mut q = sqlx::query(sql);
                for t in texts {
                    q = q.bind(*t);
                }
                q.bind(now).execute(&mut c).await.unwrap();
            }};
        }
        if env.db_url.starts_with("sqlite://") {
            run!(sqlx::SqliteConnection::connect(&env.db_url).await.unwrap())
        } else {
            run!(sqlx::PgConnection::connect(&env.db_url).await.unwrap())
        }
    });
}

/// A process killed while it issued a certificate left the request claimed
/// (`issuing`). The restarted process (same node id, new instance) releases
/// the claim at start-up, so the station's next connection gets its
/// certificate, without waiting for the claim to go stale (two minutes).
///
/// The claimed state is written to the database while the server is down, as
/// the killed process would have left it: hitting the moment of issuance with a
/// real SIGKILL is a race the test could not win reliably.
fn killed_issuance_resumes_at_restart(db: Db) {
    let env = Env::new(db);
    let creds = env.add_station("CS-CLM", 3, None).unwrap();
    let server = env.serve(&[]);
    let token = operator(&env);
    server.kill9();
    let node = std::fs::read_to_string(env.path("node.id")).unwrap();
    let node = node.trim();
    assert!(!node.is_empty());
    let (_, csr) = env.new_csr("clm-next", "CS-CLM");
    let csr = std::fs::read_to_string(csr).unwrap();
    let now =
        i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()).unwrap();
    execute(
        &env,
        "INSERT INTO certificate_requests (tenant_id, station_id, origin, state, csr_pem, claim_node, claim_instance, \
           created_at, updated_at) VALUES ('default', 'CS-CLM', 'station', 'issuing', $1, $2, 'killed-instance', $3, $3)",
        &[&csr, node],
        now,
    );

    let server = env.serve(&[]);
    let args = tls_args(&server, &server.wss(), "CS-CLM", Some(&creds));
    let station = Station::spawn(&[strs(&args), vec!["--serve-seconds", "30"]].concat());
    let state =
        || server.api("GET", "/api/v1/stations/CS-CLM/certificate-requests", &token, None).1[0]["state"].clone();
    // A deadline far below the two minutes after which a stale claim is taken over.
    wait_for("the released request to be delivered", 60, || state() == "delivered");
    drop(station);
}

#[test]
fn killed_issuance_resumes_at_restart_sqlite() {
    killed_issuance_resumes_at_restart(Db::Sqlite);
}

#[test]
fn killed_issuance_resumes_at_restart_postgres() {
    killed_issuance_resumes_at_restart(Db::Postgres);
}
