//! Load generator: many profile-3 stations against a running `csms serve`.
//!
//! It registers N stations and issues each its own certificate directly in the
//! server's data directory (same store, same CA), then measures:
//! - boots/s: TCP + mutual TLS + WebSocket upgrade + BootNotification answered;
//! - the server's resident memory per idle connection (from /proc, `--server-pid`);
//! - messages/s and latency: StatusNotification and Heartbeat round trips, each
//!   station waiting for its answer before the next call, as OCPP requires;
//! - with `--server-pid`, the server's CPU time per connect and per message
//!   (from /proc), which depends far less on the scheduling of the two than the
//!   rates do.
//!
//! ```sh
//! csms serve --data-dir /tmp/lg --ocpp-addr 127.0.0.1:9443 &
//! cargo run --release -p csms --example loadgen -- --data-dir /tmp/lg \
//!     --url wss://localhost:9443 --stations 2000 --messages 20 --server-pid $!
//! ```
//! Traffic goes only to the URL given (loopback in every documented use), and
//! every loop is bounded by the station and message counts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, http::HeaderValue};

#[derive(Parser, Debug)]
struct Args {
    /// Data directory of the running server.
    #[arg(long)]
    data_dir: PathBuf,
    /// Database URL of the running server (default: SQLite in the data dir).
    #[arg(long)]
    database_url: Option<String>,
    /// wss://HOST:PORT of the OCPP listener.
    #[arg(long)]
    url: String,
    #[arg(long, default_value_t = 1000)]
    stations: usize,
    /// Calls per station in the message phase (alternating StatusNotification, Heartbeat).
    #[arg(long, default_value_t = 10)]
    messages: usize,
    /// Concurrent connection attempts in the boot phase.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// PID of the server, to read its resident memory.
    #[arg(long)]
    server_pid: Option<u32>,
    #[arg(long, default_value = "LG")]
    prefix: String,
}

struct Creds {
    id: String,
    chain: Vec<CertificateDer<'static>>,
    key: Vec<u8>,
}

/// CPU time (user + system) the process has used, in microseconds, from
/// /proc/PID/stat (clock ticks of 1/100 s, Linux's USER_HZ).
fn cpu_micros(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let (utime, stime): (u64, u64) = (fields.get(11)?.parse().ok()?, fields.get(12)?.parse().ok()?);
    Some((utime + stime) * 10_000)
}

/// "; server CPU N us per ITEM" when the server's pid is known.
fn cpu_per(pid: Option<u32>, before: Option<u64>, items: usize, item: &str) -> String {
    match (pid.and_then(cpu_micros), before) {
        (Some(after), Some(before)) if items > 0 => {
            format!("; server CPU {:.1} us per {item}", after.saturating_sub(before) as f64 / items as f64)
        }
        _ => String::new(),
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn provision(args: &Args) -> anyhow::Result<(Vec<Creds>, Vec<u8>)> {
    let mut cfg = csms::config::Config { data_dir: args.data_dir.clone(), ..Default::default() };
    cfg.database_url = args.database_url.clone();
    let clock = csms::clock::SystemClock;
    let opened = csms::serve::open(cfg, &clock).await?;
    let tenant = opened.store.tenant("default").await?.context("tenant default")?;
    let now = time::OffsetDateTime::now_utc();
    let validity = csms::authority::Validity {
        not_before: now - time::Duration::hours(1),
        // Outside the automatic-renewal window: the load is boots and reports only.
        not_after: now + time::Duration::days(365),
    };
    let mut out = Vec::with_capacity(args.stations);
    for i in 0..args.stations {
        let id = format!("{}-{i:06}", args.prefix);
        if opened.store.station("default", &id).await?.is_none() {
            let s = csms::store::NewStation {
                id: id.clone(),
                tenant_id: "default".into(),
                security_profile: 3,
                password_hash: None,
                registration: csms::store::Registration::Accepted,
                description: None,
                tags: Vec::new(),
            };
            opened.store.create_station(&s, clock_millis()).await?;
        }
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(rcgen::DnType::CommonName, id.clone());
        let csr_pem = params.serialize_request(&key)?.pem()?;
        let csr = pki::validate_csr(&csr_pem, &id)?;
        let public_url = opened.config.public_url();
        let signer =
            csms::authority::Signer { store: &opened.store, keys: &opened.keys, public_url: &public_url, writes: None };
        let (chain_pem, _) = csms::authority::issue_for(&signer, &tenant, &id, &csr, validity, now).await?;
        let chain = pki::pem_to_der_chain(&chain_pem)?.into_iter().map(CertificateDer::from).collect();
        out.push(Creds { id, chain, key: key.serialize_der() });
    }
    let root = std::fs::read_to_string(args.data_dir.join("pki/csms-root.pem")).context("csms-root.pem")?;
    let root_der = pki::pem_to_der_chain(&root)?.remove(0);
    opened.store.close().await;
    Ok((out, root_der))
}

fn clock_millis() -> i64 {
    csms::clock::unix_millis(time::OffsetDateTime::now_utc())
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>;

async fn connect_and_boot(url: &str, root: &rustls::RootCertStore, creds: &Creds) -> anyhow::Result<Ws> {
    let u: url_parts::Url = url_parts::parse(url)?;
    let config = rustls::ClientConfig::builder_with_provider(csms::gateway::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(root.clone())
        .with_client_auth_cert(
            creds.chain.clone(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(creds.key.clone())),
        )?;
    let tcp = TcpStream::connect((u.host.as_str(), u.port)).await?;
    tcp.set_nodelay(true)?;
    let tls =
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(ServerName::try_from(u.host.clone())?, tcp).await?;
    let mut req = format!("{url}/ocpp/{}", creds.id).into_client_request()?;
    req.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static("ocpp2.0.1"));
    let ws_config = WebSocketConfig::default().read_buffer_size(4096);
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(req, tls, Some(ws_config)).await?;
    let boot = serde_json::json!([2, "b", "BootNotification", {
        "reason": "PowerUp", "chargingStation": {"model": "LG", "vendorName": "Anchorpoint loadgen"}}]);
    let reply = round_trip(&mut ws, boot.to_string()).await?;
    anyhow::ensure!(reply[0] == 3 && reply[2]["status"] == "Accepted", "boot answered {reply}");
    Ok(ws)
}

async fn round_trip(ws: &mut Ws, frame: String) -> anyhow::Result<serde_json::Value> {
    ws.send(Message::text(frame)).await?;
    loop {
        match tokio::time::timeout(Duration::from_secs(30), ws.next()).await? {
            Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(t.as_str())?),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
            None => anyhow::bail!("connection closed"),
        }
    }
}

mod url_parts {
    pub struct Url {
        pub host: String,
        pub port: u16,
    }
    pub fn parse(url: &str) -> anyhow::Result<Url> {
        let rest = url.strip_prefix("wss://").ok_or_else(|| anyhow::anyhow!("url must start with wss://"))?;
        let (host, port) =
            rest.trim_end_matches('/').rsplit_once(':').ok_or_else(|| anyhow::anyhow!("url needs a port"))?;
        Ok(Url { host: host.to_owned(), port: port.parse()? })
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let t = Instant::now();
    let (creds, root_der) = provision(&args).await?;
    println!("provisioned {} stations with certificates in {:.1} s", creds.len(), t.elapsed().as_secs_f64());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(root_der))?;
    let roots = Arc::new(roots);

    let rss_before = args.server_pid.and_then(rss_kib);
    let cpu_before_boot = args.server_pid.and_then(cpu_micros);
    let gate = Arc::new(Semaphore::new(args.concurrency));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in creds {
        let gate = gate.clone();
        let roots = roots.clone();
        let url = args.url.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.unwrap();
            let t = Instant::now();
            connect_and_boot(&url, &roots, &c).await.map(|ws| (ws, t.elapsed()))
        }));
    }
    let mut sockets = Vec::new();
    let mut boot_lat = Vec::new();
    let mut failures = 0usize;
    for t in tasks {
        match t.await? {
            Ok((ws, d)) => {
                sockets.push(ws);
                boot_lat.push(d);
            }
            Err(e) => {
                failures += 1;
                if failures <= 3 {
                    eprintln!("boot failed: {e:#}");
                }
            }
        }
    }
    let boot_secs = started.elapsed().as_secs_f64();
    boot_lat.sort();
    println!(
        "boot: {} stations connected + booted in {:.2} s = {:.0} boots/s (failures {failures}); latency p50 {:?} p99 {:?}{}",
        sockets.len(),
        boot_secs,
        sockets.len() as f64 / boot_secs,
        percentile(&boot_lat, 0.5),
        percentile(&boot_lat, 0.99),
        cpu_per(args.server_pid, cpu_before_boot, sockets.len(), "connect")
    );

    if let (Some(pid), Some(before)) = (args.server_pid, rss_before) {
        tokio::time::sleep(Duration::from_secs(2)).await;
        if let Some(after) = rss_kib(pid) {
            let per = (after.saturating_sub(before)) as f64 / sockets.len().max(1) as f64;
            println!(
                "server RSS: {before} KiB before, {after} KiB with {} idle sessions = {per:.1} KiB per connection",
                sockets.len()
            );
        }
    }

    let cpu_before_messages = args.server_pid.and_then(cpu_micros);
    let started = Instant::now();
    let messages = args.messages;
    let mut tasks = Vec::new();
    for mut ws in sockets {
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(messages);
            for i in 0..messages {
                let frame = if i % 2 == 0 {
                    format!(
                        r#"[2,"m{i}","StatusNotification",{{"timestamp":"2026-01-01T00:00:00Z","connectorStatus":"{}","evseId":1,"connectorId":1}}]"#,
                        if i % 4 == 0 { "Available" } else { "Occupied" }
                    )
                } else {
                    format!(r#"[2,"m{i}","Heartbeat",{{}}]"#)
                };
                let t = Instant::now();
                let reply = round_trip(&mut ws, frame).await?;
                anyhow::ensure!(reply[0] == 3, "call refused: {reply}");
                lat.push(t.elapsed());
            }
            let _ = ws.close(None).await;
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut lat = Vec::new();
    let mut failures = 0;
    for t in tasks {
        match t.await? {
            Ok(l) => lat.extend(l),
            Err(e) => {
                failures += 1;
                if failures <= 3 {
                    eprintln!("message phase failed: {e:#}");
                }
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    lat.sort();
    println!(
        "messages: {} calls answered in {secs:.2} s = {:.0} msg/s (failures {failures}); latency p50 {:?} p99 {:?}{}",
        lat.len(),
        lat.len() as f64 / secs,
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        cpu_per(args.server_pid, cpu_before_messages, lat.len(), "message")
    );
    Ok(())
}
