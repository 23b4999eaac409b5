//! The gateway's limits on unauthenticated peers (issue 10): old TLS versions,
//! silent connections, equal work on every refused password, login back-off and
//! the bounded password-check queue. Real server processes, openssl and Python
//! `ocpp` as clients.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::harness::{Db, Env, Server, StationCreds, connect_from, py, strs, tls_args, wait_for};

fn refused(server: &Server, reason: &str) -> f64 {
    server.metric("anchorpoint_ocpp_handshake_failures_total", &[&format!("reason=\"{reason}\"")])
}

fn password_checks(server: &Server) -> f64 {
    server.metric("anchorpoint_ocpp_password_checks_total", &[])
}

/// Password checks without PBKDF2: `keyed` or `cached`.
fn fast_checks(server: &Server, kind: &str) -> f64 {
    server.metric("anchorpoint_ocpp_password_fast_checks_total", &[&format!("kind=\"{kind}\"")])
}

/// One connect attempt with the Python `websockets` client under probe.py.
fn probe(server: &Server, url: &str, station: &str, creds: Option<&StationCreds>, extra: &[&str]) -> serde_json::Value {
    let mut args = tls_args(server, url, station, creds);
    if url.starts_with("ws://") {
        args.truncate(4); // no --ca for the plain listener
    }
    let (ok, lines) = py("probe.py", &[vec!["connect"], strs(&args), extra.to_vec()].concat());
    assert!(ok, "{lines:?}");
    lines.into_iter().next().unwrap()
}

fn write_config(env: &Env, toml: &str) -> String {
    let path = env.path("limits.toml");
    std::fs::write(&path, toml).unwrap();
    path.display().to_string()
}

/// docs/security.md: a ClientHello offering only TLS 1.1 or 1.0 is answered with
/// the `protocol_version` alert, counted as `tls_version`.
#[test]
fn tls_below_1_2_gets_the_protocol_version_alert() {
    let env = Env::new(Db::Sqlite);
    let server = env.serve(&[]);
    for flag in ["-tls1_1", "-tls1"] {
        // SECLEVEL=0 lets this openssl offer the old version at all.
        let out = std::process::Command::new("openssl")
            .args(["s_client", "-connect", &server.ocpp, flag, "-cipher", "DEFAULT:@SECLEVEL=0"])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("openssl must be installed");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!out.status.success(), "{flag}: {text}");
        assert!(text.contains("alert protocol version"), "{flag}: expected alert 70 from the server:\n{text}");
        assert!(!text.contains("alert handshake failure"), "{flag}: {text}");
    }
    assert_eq!(refused(&server, "tls_version"), 2.0);
    assert_eq!(refused(&server, "tls_incompatible"), 0.0);
}

/// Issue 10: behind idle TCP connections that never send a ClientHello, a real
/// station waited for a handshake permit. Silent connections hold none, each
/// source has a bounded share of handshakes in progress, and they are closed
/// after the pre-ClientHello timeout.
#[test]
fn silent_connections_do_not_delay_a_station() {
    let env = Env::new(Db::Sqlite);
    let creds = env.add_station("CS-REAL", 3, None).unwrap();
    // Four handshake permits and a 30 s handshake deadline: if silent peers
    // held permits, the station (10 s open timeout) could not get one.
    let config = write_config(
        &env,
        "max_concurrent_handshakes = 4\nhandshake_timeout_secs = 30\nclient_hello_timeout_secs = 5\n\
         max_handshakes_per_source = 8\nlimit_loopback_sources = true\n",
    );
    let server = env.serve(&["--config", &config]);
    // Linux routes all of 127/8 to lo: three distinct sources, ten sockets each.
    let sockets: Vec<TcpStream> = (2..5u8)
        .flat_map(|last| (0..10).map(move |_| [127, 0, 0, last]))
        .map(|src| connect_from(src, &server.ocpp))
        .collect();
    // Two beyond its share of eight, per source, are closed at once.
    wait_for("per-source refusals", 10, || refused(&server, "source_handshake_limit") == 6.0);

    let args = tls_args(&server, &server.wss(), "CS-REAL", Some(&creds));
    let (ok, lines) = py("charger.py", &[strs(&args), vec!["--steps", "boot"]].concat());
    assert!(ok, "the station could not connect behind silent connections: {lines:?}");
    assert_eq!(lines[1]["status"], "Accepted", "{lines:?}");

    // Every silent socket is closed by the server: six at once, 24 after the timeout.
    for mut s in sockets {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut buf = [0u8; 16];
        match s.read(&mut buf) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("a silent connection was not closed: {other:?}"),
        }
    }
    wait_for("pre-ClientHello timeouts", 10, || refused(&server, "client_hello_timeout") == 24.0);
    assert_eq!(refused(&server, "handshake_queue_timeout"), 0.0);
}

/// A real ClientHello (rustls, the server's crypto provider), as the first
/// bytes a station sends.
fn client_hello() -> Vec<u8> {
    let config = rustls::ClientConfig::builder_with_provider(csms::gateway::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), "localhost".try_into().unwrap()).unwrap();
    let mut out = Vec::new();
    conn.write_tls(&mut out).unwrap();
    out
}

/// Issue 11: in a reconnect storm of 100,000 stations, one deadline covered the
/// wait for a handshake permit and the handshake, so stations reached the head
/// of the queue with little time left and timed out after the server had done
/// their cryptography. The deadline now runs from the permit; a peer that gave
/// up while queued is let go before any cryptography (`closed_while_queued`).
#[test]
fn a_queued_connection_gets_a_whole_deadline_and_a_closed_one_no_handshake() {
    let env = Env::new(Db::Sqlite);
    let config = write_config(
        &env,
        "max_concurrent_handshakes = 1\nhandshake_timeout_secs = 3\nclient_hello_timeout_secs = 1\n\
         handshake_queue_timeout_secs = 30\n",
    );
    let server = env.serve(&["--config", &config]);
    let hello = client_hello();
    let open = || {
        let mut s = TcpStream::connect(&server.ocpp).unwrap();
        s.write_all(&hello).unwrap();
        s
    };
    let answered = |s: &mut TcpStream, what: &str| {
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        assert!(s.read(&mut [0u8; 4096]).unwrap() > 0, "no ServerHello for {what}");
    };
    // A takes the one permit; the server answers its ClientHello, then waits
    // for a Finished that never comes, until its deadline (3 s).
    let mut a = open();
    answered(&mut a, "the connection holding the permit");
    // B, C and D queue behind it, in this order (first come, first served:
    // each is in the queue, by the server's gauge, before the next connects);
    // B gives up while queued.
    let queued = || server.metric("anchorpoint_ocpp_handshakes_queued", &[]);
    let b = open();
    wait_for("B queued", 10, || queued() == 1.0);
    let mut c = open();
    wait_for("C queued", 10, || queued() == 2.0);
    let queued_at = std::time::Instant::now();
    let mut d = open();
    wait_for("D queued", 10, || queued() == 3.0);
    b.shutdown(std::net::Shutdown::Both).unwrap();
    drop(b);
    // A times out; B is found gone; C gets the permit (after more than 2.5 s in
    // the queue) and stalls for its own 3 s; then D, after about 6 s in the
    // queue, twice the handshake deadline, is still answered.
    answered(&mut c, "the second queued connection");
    d.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    match d.read(&mut [0u8; 4096]) {
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
        other => panic!("the last queued connection was answered or closed while C held the permit: {other:?}"),
    }
    answered(&mut d, "the last queued connection");
    let waited = queued_at.elapsed();
    assert!(waited > Duration::from_secs(5), "D was answered after {waited:?}, before C's deadline ran out");
    assert_eq!(refused(&server, "closed_while_queued"), 1.0);
    // Counted before each gave its permit back, so before D was answered.
    assert_eq!(refused(&server, "handshake_timeout"), 2.0, "A and C time out, nothing else");
    assert_eq!(refused(&server, "handshake_queue_timeout"), 0.0);
    assert_eq!(queued(), 0.0);
}

/// Issue 10: refusals reached with a password differed in the work done (and so
/// in time) by whether the station id exists. Each costs exactly one PBKDF2
/// verification now, counted by `anchorpoint_ocpp_password_checks_total`.
#[test]
fn every_refused_password_costs_exactly_one_verification() {
    let env = Env::new(Db::Sqlite);
    env.add_station("CS-P2", 2, Some("a-long-basic-password-1"));
    env.add_station("CS-P3", 3, None);
    env.add_station("CS-OFF", 2, Some("a-long-basic-password-1"));
    env.cli(&["station", "update", "CS-OFF", "--disable"]);
    let server = env.serve_env(
        &["--ocpp-plain-addr", "127.0.0.1:0"],
        &[("ANCHORPOINT_LOGIN_FAILURES_PER_STATION", "1000"), ("ANCHORPOINT_LOGIN_FAILURES_PER_SOURCE", "1000")],
    );
    let wss = server.wss();
    let wss = wss.as_str();
    let ws = format!("ws://{}", server.plain.as_ref().unwrap());
    let ws = ws.as_str();
    let wrong = ["--password", "a-long-basic-password-2"];
    let cases: Vec<(&str, &str, &str, Vec<&str>)> = vec![
        ("unknown id, Basic", wss, "CS-NOBODY", wrong.to_vec()),
        ("known profile-3 id, Basic", wss, "CS-P3", wrong.to_vec()),
        ("wrong password", wss, "CS-P2", wrong.to_vec()),
        ("disabled station", wss, "CS-OFF", wrong.to_vec()),
        ("user differs, known path id", wss, "CS-P2", vec!["--user", "CS-X", "--password", "a-long-basic-password-1"]),
        (
            "user differs, unknown path id",
            wss,
            "CS-NONE",
            vec!["--user", "CS-X", "--password", "a-long-basic-password-1"],
        ),
        ("plain listener, known profile-2 id", ws, "CS-P2", vec!["--password", "a-long-basic-password-1"]),
        ("plain listener, unknown id", ws, "CS-NOBODY", vec!["--password", "a-long-basic-password-1"]),
    ];
    for (what, url, station, extra) in cases {
        let before = password_checks(&server);
        let o = probe(&server, url, station, None, &extra);
        assert_eq!(o["status"], 401, "{what}: {o}");
        assert_eq!(password_checks(&server) - before, 1.0, "{what}: one verification, no more, no less");
    }
    // No password presented: none spent. The right one: one.
    let before = password_checks(&server);
    assert_eq!(probe(&server, wss, "CS-NOBODY", None, &[])["status"], 401);
    assert_eq!(password_checks(&server), before);
    let o = probe(&server, wss, "CS-P2", None, &["--password", "a-long-basic-password-1"]);
    assert_eq!(o["outcome"], "connected", "{o}");
    assert_eq!(password_checks(&server) - before, 1.0);
}

/// Issue 10: wrong passwords were not slowed, and the right one was admitted
/// just after. After three failures the station id is backed off: the right
/// password is refused (429) without a check until the back-off ends.
#[test]
fn wrong_passwords_back_off_the_station_id() {
    let env = Env::new(Db::Sqlite);
    env.add_station("CS-P2", 2, Some("a-long-basic-password-1"));
    let server = env.serve_env(
        &[],
        &[
            ("ANCHORPOINT_LOGIN_FAILURES_PER_STATION", "3"),
            ("ANCHORPOINT_LOGIN_FAILURES_PER_SOURCE", "1000"),
            ("ANCHORPOINT_LOGIN_BACKOFF_INITIAL_SECS", "5"),
            ("ANCHORPOINT_LOGIN_BACKOFF_MAX_SECS", "5"),
        ],
    );
    let wss = server.wss();
    let wss = wss.as_str();
    let right = ["--password", "a-long-basic-password-1"];
    for _ in 0..3 {
        assert_eq!(probe(&server, wss, "CS-P2", None, &["--password", "a-long-basic-password-2"])["status"], 401);
    }
    assert_eq!(password_checks(&server), 3.0);
    let o = probe(&server, wss, "CS-P2", None, &right);
    assert_eq!(o["status"], 429, "the right password during back-off: {o}");
    assert_eq!(refused(&server, "too_many_failures"), 1.0);
    assert_eq!(password_checks(&server), 3.0, "refused without a password check");
    // Once the back-off ends, the right password is admitted.
    wait_for("the back-off to end", 30, || probe(&server, wss, "CS-P2", None, &right)["outcome"] == "connected");
    // The success cleared the station's failures: one more wrong one is a plain 401.
    assert_eq!(probe(&server, wss, "CS-P2", None, &["--password", "a-long-basic-password-2"])["status"], 401);
    assert_eq!(probe(&server, wss, "CS-P2", None, &right)["outcome"], "connected");
}

/// Back-off per source address: failures on different station ids add up, and
/// then even a known station's right password from that source is refused;
/// certificate logins from it are not affected.
#[test]
fn wrong_passwords_back_off_the_source_across_station_ids() {
    let env = Env::new(Db::Sqlite);
    env.add_station("CS-P2", 2, Some("a-long-basic-password-1"));
    let creds = env.add_station("CS-P3", 3, None).unwrap();
    let server = env.serve_env(
        &[],
        &[
            ("ANCHORPOINT_LOGIN_FAILURES_PER_STATION", "1000"),
            ("ANCHORPOINT_LOGIN_FAILURES_PER_SOURCE", "3"),
            ("ANCHORPOINT_LOGIN_BACKOFF_INITIAL_SECS", "120"),
            // The test connects from loopback, exempt from the source limits by default.
            ("ANCHORPOINT_LIMIT_LOOPBACK_SOURCES", "true"),
        ],
    );
    let wss = server.wss();
    let wss = wss.as_str();
    for id in ["CS-A", "CS-B", "CS-P2"] {
        assert_eq!(probe(&server, wss, id, None, &["--password", "a-long-basic-password-2"])["status"], 401);
    }
    let o = probe(&server, wss, "CS-P2", None, &["--password", "a-long-basic-password-1"]);
    assert_eq!(o["status"], 429, "{o}");
    assert_eq!(probe(&server, wss, "CS-C", None, &["--password", "a-long-basic-password-1"])["status"], 429);
    assert_eq!(refused(&server, "too_many_failures"), 2.0);
    assert_eq!(password_checks(&server), 3.0);
    assert_eq!(probe(&server, wss, "CS-P3", Some(&creds), &[])["outcome"], "connected");
}

/// An upgrade request with a Basic password for an unknown station on the plain
/// listener; returns the HTTP status.
fn bogus_login(plain: &str, n: usize) -> u16 {
    use base64::Engine;
    let mut s = TcpStream::connect(plain).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let token = base64::engine::general_purpose::STANDARD.encode(format!("BOGUS-{n}:a-long-basic-password-9"));
    write!(
        s,
        "GET /ocpp/BOGUS-{n} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Protocol: ocpp2.0.1\r\nAuthorization: Basic {token}\r\n\r\n"
    )
    .unwrap();
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// Issue 10: 150 concurrent bogus logins slowed real logins. Password checks run
/// on a bounded pool with a bounded queue: beyond it a login is refused at once
/// (503), and a certificate (profile-3) login never waits for the pool.
#[test]
fn certificate_login_while_the_password_queue_is_full() {
    let env = Env::new(Db::Sqlite);
    let creds = env.add_station("CS-P3", 3, None).unwrap();
    // Slow checks (about a second each), one at a time, one waiting.
    let config = write_config(
        &env,
        "password_hash_iterations = 3000000\npassword_check_concurrency = 1\npassword_check_queue = 1\n\
         login_failures_per_source = 100000\n",
    );
    let server = env.serve(&["--config", &config, "--ocpp-plain-addr", "127.0.0.1:0"]);
    let plain = server.plain.clone().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let bogus: Vec<_> = (0..8)
        .map(|t| {
            let (plain, stop) = (plain.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut statuses = Vec::new();
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    statuses.push(bogus_login(&plain, t * 100_000 + i));
                    i += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                statuses
            })
        })
        .collect();
    wait_for("the password queue to fill", 30, || refused(&server, "password_queue_full") >= 1.0);
    let o = probe(&server, &server.wss(), "CS-P3", Some(&creds), &[]);
    assert_eq!(o["outcome"], "connected", "a certificate login while the password queue is full: {o}");
    stop.store(true, Ordering::SeqCst);
    let statuses: Vec<u16> = bogus.into_iter().flat_map(|h| h.join().unwrap()).collect();
    let (unauthorized, unavailable) =
        (statuses.iter().filter(|&&s| s == 401).count(), statuses.iter().filter(|&&s| s == 503).count());
    assert_eq!(unauthorized + unavailable, statuses.len(), "{statuses:?}");
    assert_eq!(refused(&server, "password_queue_full"), unavailable as f64);
    assert_eq!(refused(&server, "unknown_station"), unauthorized as f64);
    assert_eq!(password_checks(&server), unauthorized as f64);
}

/// Issue 11: every profile-1/2 login ran a 100,000-iteration PBKDF2. A password
/// the CSMS generated (A01) is checked with one HMAC; one an operator chose costs
/// one PBKDF2 at its first login and then hits the success cache. Wrong passwords
/// still cost one PBKDF2 each (a dummy one against a generated password's
/// verifier) and back the station id off.
#[test]
fn generated_passwords_and_repeated_logins_need_no_pbkdf2() {
    use crate::outcomes::{Station, connected, operator};
    let env = Env::new(Db::Sqlite);
    let chosen = "an-operator-chosen-pw-1";
    env.add_station("CS-HUM", 2, Some(chosen));
    env.add_station("CS-GEN", 2, Some("an-operator-chosen-pw-2"));
    let server = env.serve_env(
        &[],
        &[
            ("ANCHORPOINT_LOGIN_FAILURES_PER_STATION", "3"),
            ("ANCHORPOINT_LOGIN_FAILURES_PER_SOURCE", "1000"),
            ("ANCHORPOINT_LOGIN_BACKOFF_INITIAL_SECS", "120"),
        ],
    );
    let wss = server.wss();
    let wss = wss.as_str();

    // Chosen by an operator: PBKDF2 once, then the cache.
    assert_eq!(probe(&server, wss, "CS-HUM", None, &["--password", chosen])["outcome"], "connected");
    assert_eq!((password_checks(&server), fast_checks(&server, "cached")), (1.0, 0.0));
    for n in 1..=3 {
        assert_eq!(probe(&server, wss, "CS-HUM", None, &["--password", chosen])["outcome"], "connected");
        assert_eq!((password_checks(&server), fast_checks(&server, "cached")), (1.0, f64::from(n)), "login {n}");
    }
    // A wrong password is never a cache hit: one PBKDF2, refused.
    let o = probe(&server, wss, "CS-HUM", None, &["--password", "an-operator-chosen-pw-9"]);
    assert_eq!(o["status"], 401, "{o}");
    assert_eq!((password_checks(&server), fast_checks(&server, "cached")), (2.0, 3.0));

    // A01: the CSMS generates CS-GEN's next password; the station accepts it.
    let token = operator(&env);
    let mut args = tls_args(&server, wss, "CS-GEN", None);
    args.extend(
        ["--password", "an-operator-chosen-pw-2", "--accept-set-variables", "--serve-seconds", "30"].map(String::from),
    );
    let mut station = Station::spawn(&strs(&args));
    station.wait_for("answer", Some("BootNotification"));
    connected(&server, &token, "CS-GEN");
    let (status, body) = server.api("POST", "/api/v1/stations/CS-GEN/password", &token, Some(&serde_json::json!({})));
    assert_eq!((status, &body["switched"]), (200, &serde_json::json!(true)), "{body}");
    let received = station.wait_for("received", Some("SetVariables"));
    let generated = received["values"][0].as_str().unwrap().to_owned();
    assert_eq!(generated.len(), 32, "{received}");
    drop(station);

    // Its logins cost one HMAC each, no PBKDF2.
    let slow = password_checks(&server);
    for n in 1..=3 {
        assert_eq!(probe(&server, wss, "CS-GEN", None, &["--password", &generated])["outcome"], "connected");
        assert_eq!(fast_checks(&server, "keyed"), f64::from(n));
    }
    assert_eq!(password_checks(&server), slow, "a generated password needs no PBKDF2");
    // Wrong ones (the old password among them) are refused at the cost of a
    // wrong chosen password: one HMAC and one dummy PBKDF2 each; the third backs the id off.
    for (n, wrong) in
        ["an-operator-chosen-pw-2", "an-operator-chosen-pw-3", "an-operator-chosen-pw-4"].iter().enumerate()
    {
        assert_eq!(probe(&server, wss, "CS-GEN", None, &["--password", wrong])["status"], 401);
        assert_eq!(password_checks(&server) - slow, (n + 1) as f64);
    }
    assert_eq!(fast_checks(&server, "keyed"), 6.0);
    let o = probe(&server, wss, "CS-GEN", None, &["--password", &generated]);
    assert_eq!(o["status"], 429, "backed off, even with the right password: {o}");
    assert_eq!((password_checks(&server) - slow, fast_checks(&server, "keyed")), (3.0, 6.0), "nothing checked");
}

/// Sends `request` (and `after` right behind it) on a new plain connection;
/// everything the server sent until it closed or went quiet for a second.
fn raw_exchange(plain: &str, request: &[u8], after: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(plain).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    s.write_all(request).unwrap();
    s.write_all(after).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    out
}

fn status_of(answer: &[u8]) -> u16 {
    String::from_utf8_lossy(answer).split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// The upgrade request is read and answered by the gateway itself (no HTTP
/// server): a head that is not HTTP, one too large, one that is no WebSocket
/// upgrade are each answered with their status and counted; a frame sent right
/// behind the request, before the 101 arrived, still reaches the session.
#[test]
fn upgrade_requests_are_parsed_and_refused_precisely() {
    let env = Env::new(Db::Sqlite);
    env.add_station("CS-P1", 1, Some("a-long-basic-password-1"));
    let server = env.serve(&["--ocpp-plain-addr", "127.0.0.1:0"]);
    let plain = server.plain.clone().unwrap();

    let answer = raw_exchange(&plain, b"\x16\x03\x01\x00\x05hello\r\n\r\n", b"");
    assert_eq!(status_of(&answer), 400, "{}", String::from_utf8_lossy(&answer));
    assert_eq!(refused(&server, "bad_request"), 1.0);

    let mut big = b"GET /ocpp/CS-P1 HTTP/1.1\r\nHost: localhost\r\nX-Filler: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 20_000));
    big.extend_from_slice(b"\r\n\r\n");
    assert_eq!(status_of(&raw_exchange(&plain, &big, b"")), 431);
    assert_eq!(refused(&server, "request_too_large"), 1.0);

    let no_upgrade = b"GET /ocpp/CS-P1 HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let answer = raw_exchange(&plain, no_upgrade, b"");
    assert_eq!(status_of(&answer), 426);
    let text = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(text.contains("sec-websocket-version: 13") && text.contains("connection: close"), "{text}");

    use base64::Engine;
    let token = base64::engine::general_purpose::STANDARD.encode("CS-P1:a-long-basic-password-1");
    let upgrade = format!(
        "GET /ocpp/CS-P1 HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Protocol: ocpp2.0.1\r\nAuthorization: Basic {token}\r\n\r\n"
    );
    // A masked text frame (mask 0: the payload as it is), sent without waiting.
    let call = br#"[2,"early-1","Heartbeat",{}]"#;
    let mut frame = vec![0x81, 0x80 | u8::try_from(call.len()).unwrap(), 0, 0, 0, 0];
    frame.extend_from_slice(call);
    let answer = raw_exchange(&plain, upgrade.as_bytes(), &frame);
    let text = String::from_utf8_lossy(&answer);
    assert_eq!(status_of(&answer), 101, "{text}");
    assert!(text.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "the accept key of RFC 6455 1.3: {text}");
    // Not booted yet: the Heartbeat is answered with a CALLERROR, so it was read.
    assert!(text.contains(r#"[4,"early-1","SecurityError""#), "{text}");
}
