//! Starts real `csms` processes on loopback and drives them with real tools:
//! the PyPI `ocpp` package, `openssl`, and the CLI.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::Value;

pub const CSMS: &str = env!("CARGO_BIN_EXE_csms");

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The Python that has the `ocpp` package: `ANCHORPOINT_PYTHON`, else the
/// workspace `.venv` that `.ci/run` creates. Missing means failing, not skipping.
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("ANCHORPOINT_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = workspace().join(".venv/bin/python");
    assert!(venv.exists(), "no Python with the `ocpp` package: run .ci/run (creates .venv) or set ANCHORPOINT_PYTHON");
    venv
}

/// Which database a test server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A fresh PostgreSQL database for one test (`ANCHORPOINT_TEST_PG_URL` names the
/// server; the machine's PostgreSQL by default).
pub fn fresh_pg_database() -> String {
    let base =
        std::env::var("ANCHORPOINT_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let name = format!("ap_e2e_{}_{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst), nanos());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&base)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {base} is required for this test: {e}"));
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut c).await.unwrap();
    });
    let (prefix, _) = base.rsplit_once('/').unwrap();
    format!("{prefix}/{name}")
}

fn nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() % 1_000_000_000
}

/// Data directory plus database URL: what every CLI call and server shares.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub db_url: String,
}

impl Env {
    pub fn new(db: Db) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let db_url = match db {
            Db::Sqlite => format!("sqlite://{}", dir.path().join("anchorpoint.db").display()),
            Db::Postgres => fresh_pg_database(),
        };
        Env { dir, db_url }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn base_args(&self) -> Vec<String> {
        vec!["--data-dir".into(), self.dir.path().display().to_string(), "--database-url".into(), self.db_url.clone()]
    }

    /// Runs a CLI command; panics with its stderr if it fails.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = self.cli_raw(args);
        assert!(out.status.success(), "csms {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn cli_raw(&self, args: &[&str]) -> std::process::Output {
        self.cli_raw_env(args, &[])
    }

    pub fn cli_raw_env(&self, args: &[&str], vars: &[(&str, &str)]) -> std::process::Output {
        Command::new(CSMS)
            .args(args)
            .args(self.base_args())
            .env("RUST_LOG", "warn")
            .envs(vars.iter().copied())
            .output()
            .unwrap()
    }

    /// Like [`Env::cli`], with extra environment variables.
    pub fn cli_env(&self, args: &[&str], vars: &[(&str, &str)]) -> String {
        let out = self.cli_raw_env(args, vars);
        assert!(out.status.success(), "csms {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Starts `csms serve` on ephemeral loopback ports.
    pub fn serve(&self, extra: &[&str]) -> Server {
        self.serve_env(extra, &[])
    }

    /// Like [`Env::serve`], with extra environment variables.
    pub fn serve_env(&self, extra: &[&str], vars: &[(&str, &str)]) -> Server {
        self.serve_wrapped(&[], extra, vars)
    }

    /// Like [`Env::serve_env`], started through `wrapper` (such as
    /// `prlimit --nofile=256:256 --`), which runs the server as its own command.
    pub fn serve_wrapped(&self, wrapper: &[&str], extra: &[&str], vars: &[(&str, &str)]) -> Server {
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(CSMS);
                c
            }
            None => Command::new(CSMS),
        };
        let mut child = command
            .arg("serve")
            .args(self.base_args())
            .args(["--ocpp-addr", "127.0.0.1:0", "--api-addr", "127.0.0.1:0"])
            .args(extra)
            .env("RUST_LOG", "info")
            .envs(vars.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let log_path = self.path("server.log");
        std::thread::spawn(move || {
            let mut log = std::fs::OpenOptions::new().create(true).append(true).open(log_path).unwrap();
            std::io::copy(&mut BufReader::new(stderr), &mut log).ok();
        });
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("listening ") {
                    tx.send(line).ok();
                }
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                let log = std::fs::read_to_string(self.path("server.log")).unwrap_or_default();
                panic!("server did not start; log:\n{log}");
            }
        };
        let field = |k: &str| line.split_whitespace().find_map(|w| w.strip_prefix(&format!("{k}="))).map(str::to_owned);
        Server {
            child,
            ocpp: field("ocpp").unwrap(),
            api: field("api").unwrap(),
            plain: field("plain"),
            metrics: field("metrics"),
            root_pem: self.dir.path().join("pki/csms-root.pem"),
            cli_args: self.base_args(),
            metrics_token: std::sync::OnceLock::new(),
        }
    }

    /// Adds a station and, for profile 3, enrolls an `openssl`-generated key.
    pub fn add_station(&self, id: &str, profile: u8, password: Option<&str>) -> Option<StationCreds> {
        let mut args = vec!["station", "add", id, "--profile"];
        let p = profile.to_string();
        args.push(&p);
        if let Some(pw) = password {
            args.extend(["--password", pw]);
        }
        self.cli(&args);
        (profile == 3).then(|| self.enroll(id, id))
    }

    /// Generates a P-256 key and a CSR with CN = `cn` using openssl (an
    /// implementation we did not write); returns their paths.
    pub fn new_csr(&self, name: &str, cn: &str) -> (PathBuf, PathBuf) {
        self.new_csr_on(name, cn, "prime256v1")
    }

    /// Like [`Env::new_csr`], on the named curve (`prime256v1`, `secp384r1`, `secp521r1`).
    pub fn new_csr_on(&self, name: &str, cn: &str, curve: &str) -> (PathBuf, PathBuf) {
        let key = self.path(&format!("{name}.key"));
        let csr = self.path(&format!("{name}.csr"));
        // No O: enrollment accepts its absence; an O must be the tenant's organisation.
        let subj = format!("/CN={cn}");
        openssl(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            &format!("ec_paramgen_curve:{curve}"),
            "-nodes",
            "-subj",
            &subj,
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            csr.to_str().unwrap(),
        ]);
        (key, csr)
    }

    /// A fresh openssl key and CSR with CN = `cn`, signed by the CSMS for station `id`.
    pub fn enroll(&self, id: &str, cn: &str) -> StationCreds {
        let (key, csr) = self.new_csr(&format!("{id}-{cn}"), cn);
        let cert = self.path(&format!("{id}-{cn}.pem"));
        let chain = self.cli(&["station", "enroll", id, "--csr", csr.to_str().unwrap()]);
        std::fs::write(&cert, chain).unwrap();
        StationCreds { cert, key }
    }
}

pub struct StationCreds {
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl").args(args).output().expect("openssl must be installed");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `openssl verify` of a PEM chain file (leaf first, then the CAs above it) against
/// `root`; returns what openssl printed (`<file>: OK` when it holds).
pub fn openssl_verify(root: &Path, chain: &Path) -> String {
    let (root, chain) = (root.to_str().unwrap(), chain.to_str().unwrap());
    openssl(&["verify", "-CAfile", root, "-untrusted", chain, chain])
}

pub struct Server {
    child: Child,
    pub ocpp: String,
    pub api: String,
    pub plain: Option<String>,
    /// The metrics listener of its own (`--metrics-addr`), if started with one.
    pub metrics: Option<String>,
    pub root_pem: PathBuf,
    /// `--data-dir` and `--database-url` of this server, for the CLI.
    cli_args: Vec<String>,
    /// A platform-admin token, minted on first use: `/metrics` needs one.
    metrics_token: std::sync::OnceLock<String>,
}

impl Server {
    pub fn wss(&self) -> String {
        format!("wss://localhost:{}", self.ocpp.rsplit(':').next().unwrap())
    }

    /// `kill -9`: no chance to flush anything.
    pub fn kill9(mut self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-9", &pid]).status().unwrap();
        assert!(status.success());
        self.child.wait().unwrap();
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// GET on the API listener, returning (status, body).
    pub fn api_get(&self, path: &str) -> (u16, String) {
        http_get(&self.api, path, None)
    }

    /// GET on the API listener with `Authorization: <authorization>`.
    pub fn api_get_auth(&self, path: &str, authorization: &str) -> (u16, String) {
        http_get(&self.api, path, Some(authorization))
    }

    /// A platform-admin token of this server (minted once with the CLI).
    pub fn platform_token(&self) -> &str {
        self.metrics_token.get_or_init(|| {
            let out = Command::new(CSMS)
                .args(["token", "--role", "platform-admin", "--subject", "metrics-scraper"])
                .args(&self.cli_args)
                .env("RUST_LOG", "warn")
                .output()
                .unwrap();
            assert!(out.status.success(), "csms token: {}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8(out.stdout).unwrap().trim().to_owned()
        })
    }

    /// `/metrics`, scraped as an operator would: from the metrics listener if
    /// there is one, else from the API listener with a platform-admin token.
    pub fn scrape(&self) -> (u16, String) {
        match &self.metrics {
            Some(addr) => http_get(addr, "/metrics", None),
            None => self.api_get_auth("/metrics", &format!("Bearer {}", self.platform_token())),
        }
    }

    /// A request to the REST API with a bearer token; returns (status, JSON body).
    pub fn api(&self, method: &str, path: &str, token: &str, body: Option<&Value>) -> (u16, Value) {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&self.api).unwrap();
        let payload = body.map(Value::to_string).unwrap_or_default();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
            payload.len()
        )
        .unwrap();
        let mut buf = String::new();
        s.read_to_string(&mut buf).unwrap();
        let status = buf.split_whitespace().nth(1).unwrap().parse().unwrap();
        let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    /// Value of a Prometheus counter line that contains every fragment in `parts`.
    pub fn metric(&self, name: &str, parts: &[&str]) -> f64 {
        let (status, body) = self.scrape();
        assert_eq!(status, 200, "/metrics: {body}");
        body.lines()
            .filter(|l| l.starts_with(name) && parts.iter().all(|p| l.contains(p)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

/// One HTTP/1.1 GET on `addr`, returning (status, body).
pub fn http_get(addr: &str, path: &str, authorization: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let auth = authorization.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n").unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let status = buf.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a Python interop script; returns its JSON lines and whether it succeeded.
pub fn py(script: &str, args: &[&str]) -> (bool, Vec<Value>) {
    let path = workspace().join("tests/interop").join(script);
    let out = Command::new(python()).arg(path).args(args).output().unwrap();
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect::<Vec<Value>>();
    if lines.is_empty() {
        eprintln!("{script} printed nothing; stderr:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    (out.status.success(), lines)
}

/// Arguments for a TLS client with the station's certificate.
pub fn tls_args<'a>(
    server: &'a Server,
    url: &'a str,
    station: &'a str,
    creds: Option<&'a StationCreds>,
) -> Vec<String> {
    let mut v = vec![
        "--url".to_owned(),
        url.to_owned(),
        "--station".into(),
        station.into(),
        "--ca".into(),
        server.root_pem.display().to_string(),
    ];
    if let Some(c) = creds {
        v.extend(["--cert".into(), c.cert.display().to_string(), "--key".into(), c.key.display().to_string()]);
    }
    v
}

pub fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The Python charger running in the background (`--steps ...,serve`), answering
/// CSMS calls; [`BackgroundCharger::finish`] stops it and returns its JSON lines.
pub struct BackgroundCharger(Child);

impl BackgroundCharger {
    pub fn spawn(args: &[&str]) -> BackgroundCharger {
        let child = Command::new(python())
            .arg(workspace().join("tests/interop/charger.py"))
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        BackgroundCharger(child)
    }

    pub fn finish(mut self) -> Vec<Value> {
        self.0.kill().unwrap();
        let lines = BufReader::new(self.0.stdout.take().unwrap())
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| serde_json::from_str(&l).ok())
            .collect();
        self.0.wait().unwrap();
        lines
    }
}

/// Polls `check` until it holds; panics naming `what` after `secs` seconds.
pub fn wait_for(what: &str, secs: u64, check: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A TCP connection to `to` from the loopback address `source` (Linux routes
/// all of 127/8 to lo), so that tests can act as several source addresses.
pub fn connect_from(source: [u8; 4], to: &str) -> std::net::TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind((source, 0).into()).unwrap();
        let tcp = socket.connect(to.parse().unwrap()).await.unwrap();
        let std = tcp.into_std().unwrap();
        std.set_nonblocking(false).unwrap();
        std
    })
}
