//! The API listener faces the internet (CRL and OCSP URLs point at it): silent
//! and slow peers are closed, its connections are capped so that the OCPP
//! listener always accepts, and `/metrics` needs a token or a listener of its own.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::json;

use crate::harness::{Db, Env, Server, connect_from, http_get, py, strs, tls_args, wait_for};

/// Reads until the server closes `s`; false when it is still open after `secs`.
fn closed_by_server(s: &mut TcpStream, secs: u64) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(secs))).unwrap();
    let mut sink = Vec::new();
    match s.read_to_end(&mut sink) {
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

fn closed(server: &Server, reason: &str) -> f64 {
    server.metric("anchorpoint_api_connections_closed_total", &[&format!("reason=\"{reason}\"")])
}

/// A `/healthz` answer, or None when the connection is closed without one.
fn healthz(addr: &str) -> Option<u16> {
    healthz_on(TcpStream::connect(addr).ok()?)
}

/// A `/healthz` answer on `s`, or None when it is closed without one.
fn healthz_on(mut s: TcpStream) -> Option<u16> {
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(s, "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    buf.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn silent_partial_and_stalled_connections_are_closed() {
    let env = Env::new(Db::Sqlite);
    let config = env.path("limits.toml");
    std::fs::write(&config, "call_timeout_secs = 1\napi_header_read_timeout_secs = 1\napi_idle_timeout_secs = 2\n")
        .unwrap();
    let server = env.serve(&["--config", config.to_str().unwrap(), "--metrics-addr", "127.0.0.1:0"]);
    let mut silent: Vec<TcpStream> = (0..10).map(|_| TcpStream::connect(&server.api).unwrap()).collect();
    let mut partial: Vec<TcpStream> = (0..10)
        .map(|_| {
            let mut s = TcpStream::connect(&server.api).unwrap();
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n").unwrap();
            s
        })
        .collect();
    // A complete header, then a body that never comes (the public OCSP
    // responder waits for it): no byte moves, so the idle timeout closes it.
    let mut stalled = TcpStream::connect(&server.api).unwrap();
    stalled
        .write_all(
            b"POST /ocsp/default HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/ocsp-request\r\n\
Content-Length: 100\r\n\r\n0",
        )
        .unwrap();
    for (i, s) in silent.iter_mut().chain(partial.iter_mut()).enumerate() {
        assert!(closed_by_server(s, 30), "connection {i} still open");
    }
    assert!(closed_by_server(&mut stalled, 30), "the stalled request's connection is still open");
    wait_for("the closures to be counted", 10, || {
        closed(&server, "header_read_timeout") == 20.0 && closed(&server, "idle_timeout") == 1.0
    });
    assert_eq!(healthz(&server.api), Some(200), "the listener still serves");
}

#[test]
fn api_connection_cap_leaves_the_ocpp_listener_open() {
    let env = Env::new(Db::Sqlite);
    let creds = env.add_station("CS-CAP", 3, None).unwrap();
    let server = env.serve_env(
        &["--metrics-addr", "127.0.0.1:0"],
        &[("ANCHORPOINT_API_MAX_CONNECTIONS", "5"), ("ANCHORPOINT_API_HEADER_READ_TIMEOUT_SECS", "120")],
    );
    let held: Vec<TcpStream> = (0..5).map(|_| TcpStream::connect(&server.api).unwrap()).collect();
    // Beyond the cap: closed at accept, without an answer.
    for i in 0..5 {
        let mut extra = TcpStream::connect(&server.api).unwrap();
        assert!(closed_by_server(&mut extra, 30), "connection {i} over the cap still open");
    }
    assert_eq!(closed(&server, "connection_limit"), 5.0);
    // A station connects over OCPP all the same.
    let args = tls_args(&server, &server.wss(), "CS-CAP", Some(&creds));
    let (ok, lines) = py("charger.py", &[strs(&args), vec!["--steps", "boot"]].concat());
    assert!(ok, "{lines:?}");
    assert_eq!(lines[1]["status"], "Accepted", "{lines:?}");
    // Once the held connections go, the API answers again.
    drop(held);
    wait_for("the API to answer again", 20, || healthz(&server.api) == Some(200));
}

#[test]
fn metrics_need_a_platform_admin_token() {
    let env = Env::new(Db::Sqlite);
    let server = env.serve(&[]);
    let (status, body) = server.api_get("/metrics");
    assert_eq!(status, 401, "{body}");
    assert!(!body.contains("anchorpoint_"), "{body}");
    let admin = env.cli(&["token", "--tenant", "default", "--role", "admin"]).trim().to_owned();
    let (status, body) = server.api_get_auth("/metrics", &format!("Bearer {admin}"));
    assert_eq!(status, 403, "a tenant's admin does not read the platform's counters: {body}");
    // The scheme name is case-insensitive (RFC 9110).
    let (status, body) = server.api_get_auth("/metrics", &format!("bearer {}", server.platform_token()));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("anchorpoint_ocpp_password_checks_total 0"), "{body}");
}

#[test]
fn metrics_listener_of_its_own_needs_no_token() {
    let env = Env::new(Db::Sqlite);
    let server = env.serve(&["--metrics-addr", "127.0.0.1:0"]);
    let metrics = server.metrics.clone().expect("the banner names the metrics listener");
    let (status, body) = http_get(&metrics, "/metrics", None);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("# TYPE anchorpoint_ocpp_connections gauge"), "{body}");
    // It serves metrics and nothing else; the API listener still wants a token.
    assert_eq!(http_get(&metrics, "/api/v1/tenants", None).0, 404);
    assert_eq!(http_get(&metrics, "/healthz", None).0, 404);
    assert_eq!(server.api_get("/metrics").0, 401);
}

/// With the process held to 256 descriptors, 300 silent API connections do not
/// starve the OCPP listener: the API's cap leaves `api_descriptor_reserve` free.
#[test]
fn descriptor_reserve_keeps_ocpp_accepting_under_a_low_limit() {
    let env = Env::new(Db::Sqlite);
    let creds = env.add_station("CS-FD", 3, None).unwrap();
    let server = env.serve_wrapped(
        &["prlimit", "--nofile=256:256", "--"],
        &["--metrics-addr", "127.0.0.1:0"],
        &[("ANCHORPOINT_API_HEADER_READ_TIMEOUT_SECS", "120"), ("ANCHORPOINT_API_DESCRIPTOR_RESERVE", "64")],
    );
    let held: Vec<TcpStream> = (0..300).map(|_| TcpStream::connect(&server.api).unwrap()).collect();
    wait_for("the API listener to be full", 60, || healthz(&server.api).is_none());
    let args = tls_args(&server, &server.wss(), "CS-FD", Some(&creds));
    let (ok, lines) = py("charger.py", &[strs(&args), vec!["--steps", "boot"]].concat());
    assert!(ok, "{lines:?}");
    assert_eq!(lines[1]["status"], "Accepted", "{lines:?}");
    // The API shed what did not fit instead of running out of descriptors.
    assert!(closed(&server, "connection_limit") >= 100.0);
    drop(held);
}

/// A body trickled one byte a second resets the idle timeout (60 s) each
/// time, but not the body deadline: after it the request is answered 408 and
/// its connection closed. A body that arrives in time is served as before,
/// and the routes' own body limits still hold.
#[test]
fn a_trickled_body_is_cut_off_at_the_body_deadline() {
    let env = Env::new(Db::Sqlite);
    let server = env.serve_env(&["--metrics-addr", "127.0.0.1:0"], &[("ANCHORPOINT_API_BODY_READ_TIMEOUT_SECS", "3")]);
    let mut s = TcpStream::connect(&server.api).unwrap();
    s.write_all(
        b"POST /ocsp/default HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/ocsp-request\r\n\
Content-Length: 4000\r\n\r\n",
    )
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let trickle = {
        let (mut w, stop) = (s.try_clone().unwrap(), stop.clone());
        std::thread::spawn(move || {
            for _ in 0..40 {
                if stop.load(Ordering::Relaxed) || w.write_all(b"0").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut answer = Vec::new();
    let read = s.read_to_end(&mut answer);
    stop.store(true, Ordering::Relaxed);
    trickle.join().unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(read.is_ok(), "the trickling connection is still open: {read:?} {answer}");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer}");
    wait_for("the closure to be counted", 10, || closed(&server, "body_read_timeout") == 1.0);

    // A body sent at once goes through to its handler.
    let token = env.cli(&["token", "--tenant", "default", "--role", "operator"]).trim().to_owned();
    let (status, body) =
        server.api("POST", "/api/v1/stations", &token, Some(&json!({"id": "CS-BODY-1", "securityProfile": 3})));
    assert_eq!(status, 201, "{body}");
    // Bodies over a route's limit are still refused: OCSP 8 KiB, the API 64 KiB
    // (that one on its Content-Length alone, before its body is sent).
    let post = |path: &str, len: usize, send: usize| {
        let mut s = TcpStream::connect(&server.api).unwrap();
        write!(
            s,
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
Authorization: Bearer {token}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        s.write_all(&vec![b' '; send]).unwrap();
        let mut buf = String::new();
        let _ = s.read_to_string(&mut buf);
        buf.split_whitespace().nth(1).and_then(|c| c.parse::<u16>().ok())
    };
    assert_eq!(post("/ocsp/default", 9 * 1024, 9 * 1024), Some(413));
    assert_eq!(post("/api/v1/stations", 65 * 1024, 0), Some(413));
    assert_eq!(closed(&server, "body_read_timeout"), 1.0);
}

/// One source cannot take the whole listener: over its share, its next
/// connection is closed at accept, while another source still connects, and
/// the share comes back as its connections close.
#[test]
fn connections_per_source_are_capped() {
    let env = Env::new(Db::Sqlite);
    let server = env.serve_env(
        &["--metrics-addr", "127.0.0.1:0"],
        &[
            ("ANCHORPOINT_API_MAX_CONNECTIONS_PER_SOURCE", "3"),
            ("ANCHORPOINT_API_LIMIT_LOOPBACK_CONNECTIONS", "true"),
            ("ANCHORPOINT_API_HEADER_READ_TIMEOUT_SECS", "120"),
        ],
    );
    let mut held: Vec<TcpStream> = (0..3).map(|_| connect_from([127, 0, 0, 2], &server.api)).collect();
    let mut extra = connect_from([127, 0, 0, 2], &server.api);
    assert!(closed_by_server(&mut extra, 30), "the fourth connection from 127.0.0.2 is still open");
    assert_eq!(closed(&server, "source_connection_limit"), 1.0);
    assert_eq!(healthz_on(connect_from([127, 0, 0, 3], &server.api)), Some(200), "another source is served");
    // The held ones are still open, and once one goes its source connects again.
    held.pop();
    wait_for("127.0.0.2 to be served again", 20, || healthz_on(connect_from([127, 0, 0, 2], &server.api)) == Some(200));
    for s in &mut held {
        assert!(!closed_by_server(s, 1), "a connection within the share was closed");
    }
}
