//! The raw reference: a bare tokio-rustls TLS 1.3 server (P-256 server
//! certificate, WebPki client verifier against the CSMS's station root, the
//! server's crypto provider, no tickets, no session cache) in a child process,
//! and full mutual-TLS handshakes against it. Its CPU per handshake is what a
//! CSMS connect is compared with. With `--profile 2` the server asks for a
//! client certificate without requiring one, as the gateway does, and the
//! client sends none: the handshake a profile-2 station makes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::Common;
use crate::provision::Creds;
use crate::scenarios::{Outcome, pick};
use crate::station;
use crate::stats::{Failures, Samples, line};
use crate::sys::CpuMeter;

/// The hidden `tls-server` subcommand: serves handshakes until killed. Each
/// completed handshake is answered with one byte, then closed.
pub async fn serve(station_root: &Path, ca_out: &Path, client_cert_optional: bool) -> anyhow::Result<()> {
    let provider = csms::gateway::tls::provider();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(std::fs::read(station_root).context("station root")?))?;
    let builder = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    let builder = if client_cert_optional { builder.allow_unauthenticated() } else { builder };
    let verifier = builder.build().map_err(|e| anyhow::anyhow!("client verifier: {e}"))?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "loadgen TLS baseline root");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate()?)?;
    let leaf_key = rcgen::KeyPair::generate()?;
    let mut leaf_params = rcgen::CertificateParams::new(vec!["localhost".to_owned()])?;
    leaf_params.distinguished_name.push(rcgen::DnType::CommonName, "localhost");
    let leaf = leaf_params.signed_by(&leaf_key, &ca)?;
    let ca_der = AsRef::<rcgen::Certificate>::as_ref(&ca).der().to_vec();
    let chain = vec![CertificateDer::from(leaf.der().to_vec()), CertificateDer::from(ca_der.clone())];
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())))?;
    config.send_tls13_tickets = 0;
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    std::fs::write(ca_out, &ca_der).with_context(|| format!("writing {}", ca_out.display()))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening {}", listener.local_addr()?);
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            if let Ok(mut tls) = acceptor.accept(tcp).await {
                let _ = tls.write_all(b"k").await;
                let _ = tls.flush().await;
                let _ = tls.shutdown().await;
            }
        });
    }
}

async fn handshake(
    target: &station::Target,
    n: usize,
    creds: &Creds,
    addr: std::net::SocketAddr,
) -> anyhow::Result<()> {
    let config = station::client_config(creds, &target.roots, target.profile)?;
    let tcp = station::tcp(addr, target.sources[n % target.sources.len()]).await?;
    let mut tls = tokio_rustls::TlsConnector::from(config).connect(ServerName::try_from("localhost")?, tcp).await?;
    let mut b = [0u8; 1];
    tls.read_exact(&mut b).await.context("the server's byte after the handshake")?;
    Ok(())
}

pub async fn run(c: &Common, fleet: &[Arc<Creds>], station_root: &[u8], sources: usize) -> anyhow::Result<Outcome> {
    let dir: PathBuf = c.data_dir.clone();
    let root_file = dir.join("loadgen-baseline-station-root.der");
    let ca_file = dir.join("loadgen-baseline-ca.der");
    std::fs::write(&root_file, station_root)?;
    let _ = std::fs::remove_file(&ca_file);
    let exe = std::env::current_exe()?;
    let mut child = tokio::process::Command::new(exe)
        .arg("tls-server")
        .arg("--station-root")
        .arg(&root_file)
        .arg("--ca-out")
        .arg(&ca_file)
        .args(if c.profile == 2 { &["--client-cert-optional"][..] } else { &[][..] })
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting the baseline TLS server")?;
    let pid = child.id();
    let out = child.stdout.take().context("baseline stdout")?;
    let mut lines = tokio::io::BufReader::new(out).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .context("the baseline TLS server did not start")??
        .context("the baseline TLS server exited")?;
    let addr: std::net::SocketAddr =
        first.strip_prefix("listening ").context("baseline server output")?.trim().parse()?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(std::fs::read(&ca_file)?))?;
    let target =
        Arc::new(station::Target::new(&[format!("wss://localhost:{}", addr.port())], roots, sources, c.profile)?);

    let list = pick(fleet, c.stations);
    let gate = Arc::new(Semaphore::new(c.concurrency.max(1)));
    let cpu = CpuMeter::start(&pid.into_iter().collect::<Vec<_>>());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (n, creds) in list.iter().cloned() {
        let (gate, target) = (gate.clone(), target.clone());
        tasks.push(tokio::spawn(async move {
            let _p = gate.acquire().await;
            let t = Instant::now();
            handshake(&target, n, &creds, addr).await.map(|()| t.elapsed().as_micros() as u64)
        }));
    }
    let mut lat = Samples::default();
    let mut failures = Failures::default();
    for t in tasks {
        match t.await {
            Ok(Ok(us)) => lat.push(us),
            Ok(Err(e)) => failures.add(&e.context("baseline handshake")),
            Err(e) => failures.add(&anyhow::anyhow!("handshake task: {e}")),
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let done = lat.len();
    let cpu_per = cpu.per(done);
    drop(child);
    let _ = std::fs::remove_file(&root_file);
    let _ = std::fs::remove_file(&ca_file);
    let summary = lat.summary();
    println!(
        "tls-baseline: {done} full {} TLS 1.3 handshakes (P-256) in {secs:.2} s = {:.0}/s at concurrency {}, failures {}",
        if c.profile == 3 { "mutual" } else { "server-authenticated" },
        done as f64 / secs.max(1e-9),
        c.concurrency,
        failures.total()
    );
    println!("  handshake {}", line(&summary, false));
    if let Some(us) = cpu_per {
        println!("  bare TLS server CPU {us:.0} us per handshake = {:.0} handshakes/s per core", 1e6 / us.max(1e-9));
    }
    Ok(Outcome {
        results: json!({
            "handshakes": done,
            "seconds": secs,
            "handshakes_per_second": (done as f64 / secs.max(1e-9) * 10.0).round() / 10.0,
            "latency": summary,
            "server_cpu_us_per_handshake": cpu_per.map(|v| (v * 10.0).round() / 10.0),
            "handshakes_per_core_second": cpu_per.map(|v| (1e6 / v.max(1e-9)).round()),
        }),
        failures,
    })
}
