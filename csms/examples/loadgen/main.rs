//! Load tool for a running `csms serve`: profile-3 stations (mutual TLS, a
//! full TLS 1.3 handshake each, no resumption), or with `--profile 2`
//! profile-2 stations (server-authenticated TLS and HTTP Basic with a
//! password of the kind the CSMS generates), in scenarios that each print
//! their figures and, with `--report FILE`, write them as JSON with the
//! parameters and the machine's facts. `bench/run` starts a fresh server per
//! scenario and runs this; bench/README.md says what each scenario measures.
//!
//! ```sh
//! loadgen provision --data-dir D --fleet 100000          # before the server starts
//! loadgen ramp --data-dir D --url wss://localhost:PORT --stations 2000 --server-pid PID
//! loadgen steady --rate 10000 --duration 20 ...          # open loop; without --rate: closed loop
//! loadgen idle | storm --background 1000 | restart --restart-cmd 'exec csms serve ...'
//! loadgen tls-baseline --data-dir D --stations 2000      # bare rustls handshakes, for comparison
//! loadgen merge --out all.json a.json b.json             # one report of several runs
//! ```
//! Traffic goes only to the loopback URL given; every loop is bounded by the
//! station counts and the duration. Exit status: 0 when every station booted
//! and every call was answered, 1 when some failed (the count is printed), 2
//! when the run cannot be made (bad arguments, too few descriptors).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod baseline;
mod provision;
mod scenarios;
mod shards;
mod station;
mod stats;
mod sys;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};

#[derive(Parser, Debug)]
#[command(name = "loadgen", about = "Anchorpoint load tool: scenarios against a running csms serve")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Register the fleet (stations with certificates, or passwords with
    /// --profile 2) and keep their keys in loadgen-keys-<prefix>.bin; reused by later runs.
    Provision(Common),
    /// Connect + TLS (mutual, or with Basic auth for --profile 2) + upgrade + BootNotification
    /// for --stations at --concurrency.
    Ramp(Common),
    /// Calls from every station: closed loop, or open loop at --rate calls/s.
    Steady(Common),
    /// Hold --stations sessions open for --duration; server memory per session.
    Idle(Common),
    /// --background stations sending at --background-rate while --stations connect at once.
    Storm(Common),
    /// All connected; the server is killed and started again with --restart-cmd; every
    /// station reconnects after a random back-off.
    Restart(Common),
    /// Bare rustls TLS handshakes (mutual, or server-authenticated for --profile 2)
    /// against a child TLS server: the reference.
    TlsBaseline(Common),
    /// Print the machine's facts (and write them as JSON with --report).
    Machine {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        commit: Option<String>,
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// Combine scenario reports into one (and the connect/handshake CPU ratio).
    Merge {
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        commit: Option<String>,
        files: Vec<PathBuf>,
    },
    #[command(hide = true)]
    TlsServer {
        #[arg(long)]
        station_root: PathBuf,
        #[arg(long)]
        ca_out: PathBuf,
        /// Ask for a client certificate without requiring one (profile 2).
        #[arg(long)]
        client_cert_optional: bool,
    },
}

#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Data directory of the server (the fleet's keys are kept in it).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Database URL of the server (default: SQLite in the data dir).
    #[arg(long)]
    pub database_url: Option<String>,
    /// wss://localhost:PORT of the OCPP listener; for a server of several
    /// nodes, one per node, comma-separated (station n connects to the n % K-th).
    #[arg(long, value_delimiter = ',')]
    pub url: Vec<String>,
    /// Stations connected (M).
    #[arg(long, default_value_t = 1000)]
    pub stations: usize,
    /// Stations registered (N >= M; default M, plus --background).
    #[arg(long)]
    pub fleet: Option<usize>,
    /// Connects in progress at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// PID of the server (comma-separated, one per node): CPU time and memory
    /// are read from /proc and added up.
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// Loopback source addresses 127.0.0.1..127.0.0.K (default: one per 25,000
    /// connections to one node).
    #[arg(long)]
    pub source_addrs: Option<usize>,
    /// Write the figures as JSON here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Commit of the server under test, recorded in the report.
    #[arg(long)]
    pub commit: Option<String>,
    #[arg(long, default_value = "LG")]
    pub prefix: String,
    /// Security profile of the fleet: 3 (client certificates) or 2 (Basic auth
    /// over server-authenticated TLS); tls-baseline then skips the client certificate.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(2..=3))]
    pub profile: u8,
    /// Seconds of steady load, or of holding idle sessions.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// steady: open loop at this many calls per second in total.
    #[arg(long)]
    pub rate: Option<f64>,
    /// storm: stations already connected and sending (K).
    #[arg(long, default_value_t = 0)]
    pub background: usize,
    /// storm: calls per second of the background stations in total (default K).
    #[arg(long)]
    pub background_rate: Option<f64>,
    /// storm, restart: a refused connect is retried after a random 0..X s.
    #[arg(long, default_value_t = 5.0)]
    pub backoff: f64,
    /// restart: shell command that starts the server again (on the same port);
    /// once per node, in the order of --server-pid.
    #[arg(long)]
    pub restart_cmd: Vec<String>,
    /// idle, restart: the stations are held by this many processes of the tool
    /// (each within the descriptor limit), coordinated by this one.
    #[arg(long, default_value_t = 1)]
    pub shards: usize,
    /// Set by the coordinating process: this process is shard I of --shards.
    #[arg(long, hide = true)]
    pub shard: Option<usize>,
    /// storm, restart: give up after this many seconds.
    #[arg(long, default_value_t = 120.0)]
    pub timeout: f64,
    /// idle: seconds after connecting before memory is read; storm: seconds of
    /// background load before the storm.
    #[arg(long, default_value_t = 2.0)]
    pub settle: f64,
}

impl Common {
    fn fleet_size(&self) -> usize {
        self.fleet.unwrap_or(0).max(self.stations + self.background)
    }

    fn parameters(&self, scenario: &str, sources: usize) -> Value {
        json!({
            "scenario": scenario,
            "stations": self.stations,
            "fleet": self.fleet_size(),
            "concurrency": self.concurrency,
            "source_addrs": sources,
            "duration_s": self.duration,
            "rate": self.rate,
            "background": self.background,
            "background_rate": self.background_rate,
            "backoff_s": self.backoff,
            "profile": self.profile,
            "database": if self.database_url.as_deref().is_some_and(|u| u.starts_with("postgres")) { "postgres" } else { "sqlite" },
            "url": self.url,
        })
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadgen: tokio runtime: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(0) => std::process::ExitCode::SUCCESS,
        Ok(failures) => {
            eprintln!("loadgen: {failures} failures");
            std::process::ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("loadgen: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

/// Descriptors the tool needs besides its sessions.
const RESERVE_FDS: u64 = 64;

async fn run(cli: Cli) -> anyhow::Result<u64> {
    let nofile = sys::raise_nofile();
    let (name, c) = match cli.cmd {
        Cmd::TlsServer { station_root, ca_out, client_cert_optional } => {
            baseline::serve(&station_root, &ca_out, client_cert_optional).await?;
            return Ok(0);
        }
        Cmd::Machine { data_dir, commit, report } => {
            let m = sys::machine(&data_dir, commit.as_deref());
            println!("{}", sys::machine_line(&m));
            if let Some(p) = report {
                write_json(&p, &m)?;
            }
            return Ok(0);
        }
        Cmd::Merge { out, commit, files } => return merge(&out, commit.as_deref(), &files).map(|()| 0),
        Cmd::Provision(c) => ("provision", c),
        Cmd::Ramp(c) => ("ramp", c),
        Cmd::Steady(c) => (if c.rate.is_some() { "steady-rate" } else { "steady" }, c),
        Cmd::Idle(c) => ("idle", c),
        Cmd::Storm(c) => ("storm", c),
        Cmd::Restart(c) => ("restart", c),
        Cmd::TlsBaseline(c) => ("tls-baseline", c),
    };
    anyhow::ensure!(c.stations > 0 || name == "provision", "--stations must be at least 1");
    anyhow::ensure!(c.concurrency > 0, "--concurrency must be at least 1");
    anyhow::ensure!(c.duration > 0.0, "--duration must be positive");
    if let Some(r) = c.rate {
        anyhow::ensure!(r > 0.0, "--rate must be positive");
    }
    anyhow::ensure!(
        (1..=shards::MAX_SHARDS).contains(&c.shards),
        "--shards must be 1 to {}, not {}",
        shards::MAX_SHARDS,
        c.shards
    );
    anyhow::ensure!(
        c.shards == 1 || matches!(name, "idle" | "restart"),
        "--shards applies to idle and restart, not to {name}"
    );
    if let Some(i) = c.shard {
        anyhow::ensure!(i < c.shards, "--shard {i} is not below --shards {}", c.shards);
    }
    let coordinator = c.shards > 1 && c.shard.is_none();
    // Sessions held open at once by this process (tls-baseline closes each
    // after its handshake; a coordinator of shards holds none).
    let held = match name {
        "tls-baseline" | "provision" => c.concurrency.min(c.stations) as u64,
        _ if coordinator => 0,
        _ => shards::part(c.stations + c.background, c.shards) as u64,
    };
    if held + RESERVE_FDS > nofile {
        anyhow::bail!(
            "{held} sessions need about {} file descriptors, but RLIMIT_NOFILE allows {nofile} (hard limit {}, which \
             only a process with CAP_SYS_RESOURCE can raise): at most {} sessions fit in one process; lower \
             --stations{}{}",
            held + RESERVE_FDS,
            sys::nofile_hard(),
            nofile.saturating_sub(RESERVE_FDS),
            if c.background > 0 { " or --background" } else { "" },
            if matches!(name, "idle" | "restart") {
                format!(
                    ", or spread them over --shards {}",
                    (c.stations as u64).div_ceil(nofile.saturating_sub(RESERVE_FDS).max(1)).max(2)
                )
            } else {
                String::new()
            }
        );
    }
    let connections = held.max(c.stations as u64);
    // Ports run out per source and destination: each node's listener takes
    // its share. A source beyond the first binds before connecting, and the
    // kernel's search for a free port then grows with the ports in use, so
    // no more sources than needed.
    let per_endpoint = connections.div_ceil(c.url.len().max(1) as u64);
    let sources = c.source_addrs.unwrap_or_else(|| per_endpoint.div_ceil(25_000).max(1) as usize);
    anyhow::ensure!((1..=254).contains(&sources), "--source-addrs must be 1 to 254");

    let fleet_n = c.fleet_size();
    if let Some(shard) = c.shard {
        // A shard: the coordinator made sure of the fleet before starting it.
        let fleet = provision::from_keys(&c.data_dir, c.database_url.as_deref(), &c.prefix, fleet_n, c.profile)?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(rustls::pki_types::CertificateDer::from(fleet.csms_root.clone()))?;
        let target = Arc::new(station::Target::new(&c.url, roots, sources, c.profile)?);
        let list = shards::share(scenarios::pick(&fleet.stations, c.stations), shard, c.shards);
        match name {
            "idle" => shards::idle_shard(&c, &target, list).await,
            _ => shards::restart_shard(&c, &target, list).await,
        }
        return Ok(0);
    }
    let fleet = provision::fleet(&c.data_dir, c.database_url.as_deref(), &c.prefix, fleet_n, c.profile).await?;
    if fleet.added > 0 {
        println!(
            "provisioned {} stations with keys and {} in {:.1} s ({:.0}/s); fleet {fleet_n}",
            fleet.added,
            if c.profile == 2 { "password verifiers" } else { "certificates" },
            fleet.provision_secs,
            fleet.added as f64 / fleet.provision_secs.max(1e-9)
        );
    } else {
        println!("fleet: {fleet_n} stations, reused from {}", provision::keys_path(&c.data_dir, &c.prefix).display());
    }
    if name == "provision" {
        return Ok(0);
    }
    let machine = sys::machine(&c.data_dir, c.commit.as_deref());
    let outcome = if name == "tls-baseline" {
        baseline::run(&c, &fleet.stations, &fleet.station_root, sources).await?
    } else {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(rustls::pki_types::CertificateDer::from(fleet.csms_root.clone()))?;
        let target = Arc::new(station::Target::new(&c.url, roots, sources, c.profile)?);
        match name {
            "idle" if coordinator => shards::idle(&c).await?,
            "restart" if coordinator => shards::restart(&c, &target).await?,
            "ramp" => scenarios::ramp(&c, &target, &fleet.stations).await,
            "steady" | "steady-rate" => scenarios::steady(&c, &target, &fleet.stations).await,
            "idle" => scenarios::idle(&c, &target, &fleet.stations).await,
            "storm" => scenarios::storm(&c, &target, &fleet.stations).await,
            "restart" => scenarios::restart(&c, &target, &fleet.stations).await,
            other => anyhow::bail!("unknown scenario {other}"),
        }
    };
    let failures = outcome.failures.total();
    if failures > 0 {
        eprintln!("{name}: {failures} failures");
        outcome.failures.print(name);
    }
    println!("{name}: failures {failures}");
    if let Some(p) = &c.report {
        let report = json!({
            "scenario": name,
            "parameters": c.parameters(name, sources),
            "machine": machine,
            "provision_seconds": fleet.provision_secs,
            "results": outcome.results,
            "failures": failures,
            "failure_kinds": outcome.failures.json(),
        });
        write_json(p, &report)?;
    }
    Ok(failures)
}

fn write_json(path: &std::path::Path, v: &Value) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, serde_json::to_string_pretty(v)? + "\n").with_context(|| format!("writing {}", path.display()))
}

/// One report of several scenario runs: the machine of the first, every run,
/// and, when both ran, server CPU per connect + boot over that of a bare TLS
/// handshake (issue 11's "at most 1.7 times").
fn merge(out: &std::path::Path, commit: Option<&str>, files: &[PathBuf]) -> anyhow::Result<()> {
    let mut runs = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        runs.push(serde_json::from_str::<Value>(&text).with_context(|| format!("parsing {}", f.display()))?);
    }
    let find = |scenario: &str, key: &str| {
        runs.iter().find(|r| r["scenario"] == scenario).and_then(|r| r["results"][key].as_f64())
    };
    let ratio = match (find("ramp", "server_cpu_us_per_connect"), find("tls-baseline", "server_cpu_us_per_handshake")) {
        (Some(connect), Some(tls)) if tls > 0.0 => Some((connect / tls * 100.0).round() / 100.0),
        _ => None,
    };
    let profiles: Vec<u64> = runs.iter().filter_map(|r| r["parameters"]["profile"].as_u64()).collect();
    let profile = profiles.first().copied().unwrap_or(3);
    anyhow::ensure!(profiles.iter().all(|&p| p == profile), "the reports mix security profiles {profiles:?}");
    if let Some(r) = ratio {
        if profile == 2 {
            println!(
                "server CPU per profile-2 connect + boot = {r:.2} x a bare server-authenticated TLS handshake (target: at most 2)"
            );
        } else {
            println!("server CPU per connect + boot = {r:.2} x a bare mutual-TLS handshake (target: at most 1.7)");
        }
    }
    let failures: u64 = runs.iter().map(|r| r["failures"].as_u64().unwrap_or(0)).sum();
    let created = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339)?;
    let report = json!({
        "created": created,
        "commit": commit,
        "machine": runs.first().map(|r| r["machine"].clone()),
        "profile": profile,
        "connect_cpu_over_tls_handshake": ratio,
        "failures": failures,
        "runs": runs,
    });
    write_json(out, &report)?;
    println!("report: {}", out.display());
    Ok(())
}
