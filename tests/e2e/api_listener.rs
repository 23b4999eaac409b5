//! The API listener faces the internet (CRL and OCSP URLs point at it): silent
//! and slow peers are closed, its connections are capped so that the OCPP
//! listener always accepts, and `/metrics` needs a token or a listener of its own.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::harness::{Db, Env, Server, http_get, py, strs, tls_args, wait_for};

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
    let mut s = TcpStream::connect(addr).ok()?;
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
