//! More sessions than one process may hold: `--shards S` runs S processes of
//! the tool, each holding the stations at positions `i % S == shard` of the
//! scenario's list (every one within the descriptor limit), coordinated by
//! the process the user started. It alone measures the server (memory, CPU,
//! the kill and restart) and writes the report.
//!
//! A shard writes one line per event to its standard output, `@KIND JSON`:
//! `@connected` once its stations are up, `@back` with the count of stations
//! booted again (restart), `@result` at the end. A line on its standard input
//! (or its end: the coordinator went away) tells it to stop.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::Common;
use crate::provision::Creds;
use crate::scenarios::{
    self, IdleFigures, Outcome, RestartFigures, RestartFleet, connect_all, hold, idle_report, per_session,
};
use crate::station::Target;
use crate::stats::Failures;
use crate::sys::{CpuMeter, rss_kib, rss_kib_all};

/// The upper bound of `--shards`.
pub const MAX_SHARDS: usize = 64;

/// This shard's part of the scenario's list.
pub fn share(list: Vec<(usize, Arc<Creds>)>, shard: usize, shards: usize) -> Vec<(usize, Arc<Creds>)> {
    list.into_iter().enumerate().filter(|(pos, _)| pos % shards == shard).map(|(_, s)| s).collect()
}

/// This shard's part of `total` (connects in progress, stations).
pub fn part(total: usize, shards: usize) -> usize {
    total.div_ceil(shards.max(1)).max(1)
}

fn emit(kind: &str, v: Value) {
    println!("@{kind} {v}");
}

/// Set when the coordinator writes a line or closes our standard input.
fn stop_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    // A thread of its own: reading standard input blocks.
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        let _ = tx.send(true);
    });
    rx
}

/// The shard processes, seen from the coordinator.
struct Shards {
    children: Vec<Child>,
    stdins: Vec<Option<ChildStdin>>,
    pids: Vec<u32>,
    rx: mpsc::UnboundedReceiver<(usize, String, Value)>,
    /// The last `@back` count of each shard.
    back: Vec<usize>,
    /// Shards whose output ended (the process exited).
    exited: Vec<bool>,
}

impl Shards {
    /// Starts `n` processes of this very tool with this run's arguments plus `--shard I`.
    fn spawn(n: usize) -> anyhow::Result<Shards> {
        let exe = std::env::current_exe().context("finding the load tool's own executable")?;
        let args: Vec<_> = std::env::args_os().skip(1).collect();
        let (tx, rx) = mpsc::unbounded_channel();
        let mut shards = Shards {
            children: Vec::new(),
            stdins: Vec::new(),
            pids: Vec::new(),
            rx,
            back: vec![0; n],
            exited: vec![false; n],
        };
        for i in 0..n {
            let mut child = tokio::process::Command::new(&exe)
                .args(&args)
                .arg("--shard")
                .arg(i.to_string())
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("starting shard {i} ({})", exe.display()))?;
            shards.pids.push(child.id().context("a shard without a pid")?);
            shards.stdins.push(child.stdin.take());
            let out = child.stdout.take().context("a shard without standard output")?;
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(out).lines();
                while let Ok(Some(l)) = lines.next_line().await {
                    if let Some(rest) = l.strip_prefix('@') {
                        let (kind, body) = rest.split_once(' ').unwrap_or((rest, "null"));
                        let v = serde_json::from_str(body).unwrap_or(Value::Null);
                        let _ = tx.send((i, kind.to_owned(), v));
                    } else {
                        println!("  [shard {i}] {l}");
                    }
                }
                let _ = tx.send((i, "exit".to_owned(), Value::Null));
            });
            shards.children.push(child);
        }
        Ok(shards)
    }

    /// Waits for one `kind` message from every shard; `@back` counts seen
    /// meanwhile are kept.
    async fn all(&mut self, kind: &str, until: Instant) -> anyhow::Result<Vec<Value>> {
        let mut got: Vec<Option<Value>> = vec![None; self.children.len()];
        while got.iter().any(Option::is_none) {
            if let Some(i) = (0..got.len()).find(|&i| got[i].is_none() && self.exited[i]) {
                anyhow::bail!("shard {i} exited before reporting {kind} (see its errors above)");
            }
            let Ok(Some((i, k, v))) = tokio::time::timeout_at(until, self.rx.recv()).await else {
                let missing: Vec<usize> = (0..got.len()).filter(|&i| got[i].is_none()).collect();
                anyhow::bail!("shards {missing:?} did not report {kind} in time");
            };
            match k.as_str() {
                "back" => self.back[i] = v.as_u64().unwrap_or(0) as usize,
                "exit" => self.exited[i] = true,
                _ if k == kind => got[i] = Some(v),
                _ => {}
            }
        }
        Ok(got.into_iter().flatten().collect())
    }

    /// Waits until the shards' `@back` counts add up to `count`, or `until`.
    async fn back_to(&mut self, count: usize, until: Instant) -> bool {
        while self.back.iter().sum::<usize>() < count {
            // A shard that exited reports no more (the final `all` says so).
            if self.exited.iter().any(|&e| e) {
                return false;
            }
            match tokio::time::timeout_at(until, self.rx.recv()).await {
                Ok(Some((i, k, v))) if k == "back" => self.back[i] = v.as_u64().unwrap_or(0) as usize,
                Ok(Some((i, k, _))) if k == "exit" => self.exited[i] = true,
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return false,
            }
        }
        true
    }

    /// Tells every shard to stop.
    async fn stop(&mut self) {
        for stdin in &mut self.stdins {
            if let Some(mut s) = stdin.take() {
                let _ = s.write_all(b"stop\n").await;
            }
        }
    }

    fn rss_kib(&self) -> Option<u64> {
        rss_kib_all(&self.pids)
    }

    async fn wait(mut self) {
        for c in &mut self.children {
            let _ = c.wait().await;
        }
    }
}

fn sum(vs: &[Value], key: &str) -> u64 {
    vs.iter().map(|v| v[key].as_u64().unwrap_or(0)).sum()
}

/// idle, as a shard: connect, report, hold until told to stop, report.
pub async fn idle_shard(c: &Common, target: &Arc<Target>, list: Vec<(usize, Arc<Creds>)>) {
    let own_before = rss_kib(std::process::id());
    let conn = connect_all(target, &list, part(c.concurrency, c.shards), None).await;
    let booted = conn.sessions.len();
    let mut failures = conn.failures;
    let stop = stop_signal();
    let held = hold(conn.sessions, &stop);
    emit("connected", json!({ "booted": booted, "secs": conn.secs, "rss_before": own_before }));
    let mut s = stop.clone();
    let _ = s.wait_for(|v| *v).await;
    let lost = held.lost.load(Ordering::Relaxed);
    held.join(&mut failures).await;
    emit("result", json!({ "failures": failures.json(), "lost": lost }));
}

/// idle, coordinating `c.shards` shards.
pub async fn idle(c: &Common) -> anyhow::Result<Outcome> {
    let mut failures = Failures::default();
    let rss_before = rss_kib_all(&c.server_pid);
    let mut shards = Shards::spawn(c.shards)?;
    // Connects that take longer than this have failed anyway (each answer may take a minute).
    let connected =
        shards.all("connected", Instant::now() + Duration::from_secs_f64(c.timeout.max(60.0) * 10.0)).await?;
    let booted = sum(&connected, "booted") as usize;
    let secs = connected.iter().filter_map(|v| v["secs"].as_f64()).fold(0.0, f64::max);
    println!("idle: {booted} sessions open in {secs:.1} s by {} processes; holding them {:.0} s", c.shards, c.duration);
    let end = Instant::now() + Duration::from_secs_f64(c.duration);
    tokio::time::sleep(Duration::from_secs_f64(c.settle.min(c.duration))).await;
    let cpu = CpuMeter::start(&c.server_pid);
    let t_cpu = Instant::now();
    let rss_after = rss_kib_all(&c.server_pid);
    let loadgen_rss = shards.rss_kib();
    let loadgen_before: Option<u64> = connected.iter().map(|v| v["rss_before"].as_u64()).sum();
    tokio::time::sleep_until(end).await;
    let idle_cpu = cpu.used().map(|us| us as f64 / t_cpu.elapsed().as_secs_f64().max(1e-9));
    shards.stop().await;
    let results = shards.all("result", Instant::now() + Duration::from_secs(120)).await?;
    shards.wait().await;
    for r in &results {
        failures.add_json(&r["failures"]);
    }
    let figures = IdleFigures {
        sessions: booted,
        connect_secs: secs,
        rss_before,
        rss_after,
        loadgen_rss,
        loadgen_per: per_session(loadgen_before, loadgen_rss, booted),
        idle_cpu,
        lost: sum(&results, "lost") as usize,
        nodes: c.server_pid.len(),
        shards: c.shards,
    };
    Ok(Outcome { results: idle_report(&figures), failures })
}

/// restart, as a shard: connect, report, report every station booted again,
/// and the latencies when told to stop.
pub async fn restart_shard(c: &Common, target: &Arc<Target>, list: Vec<(usize, Arc<Creds>)>) {
    let m = list.len();
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(c.timeout * 2.0 + 60.0);
    let stations = scenarios::restart_fleet(target, list, part(c.concurrency, c.shards), c.backoff, deadline);
    RestartFleet::wait(&stations.first, m, started + Duration::from_secs_f64(c.timeout)).await;
    let stop = stop_signal();
    emit("connected", json!({ "connected": stations.first.load(Ordering::Relaxed) }));
    let mut last = 0;
    while !*stop.borrow() {
        let k = stations.second.load(Ordering::Relaxed);
        if k != last {
            emit("back", json!(k));
            last = k;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let retries = stations.retries.load(Ordering::Relaxed);
    let refusals = std::mem::take(&mut *stations.refusals.lock().await);
    let mut failures = Failures::default();
    let times = stations.finish(&mut failures).await;
    emit(
        "result",
        json!({ "failures": failures.json(), "retries": retries, "refusals": refusals.json(), "samples": times.raw() }),
    );
}

/// restart, coordinating `c.shards` shards: all up, every node killed and
/// started again, until every station booted again.
pub async fn restart(c: &Common, target: &Target) -> anyhow::Result<Outcome> {
    let mut failures = Failures::default();
    anyhow::ensure!(
        !c.server_pid.is_empty() && c.server_pid.len() == c.restart_cmd.len(),
        "restart needs --server-pid and one --restart-cmd per server process"
    );
    let started = Instant::now();
    let mut shards = Shards::spawn(c.shards)?;
    let up = shards.all("connected", started + Duration::from_secs_f64(c.timeout + 60.0)).await?;
    let connected = sum(&up, "connected") as usize;
    println!(
        "restart: {connected}/{} stations connected in {:.1} s by {} processes; killing the server ({} processes) and starting it again",
        c.stations,
        started.elapsed().as_secs_f64(),
        c.shards,
        c.server_pid.len()
    );
    let listeners: Vec<_> = target.endpoints.iter().map(|e| e.addr).collect();
    let restarted = scenarios::kill_and_restart(&c.server_pid, &listeners, &c.restart_cmd, &mut failures).await;
    let all_back = shards.back_to(connected, restarted.killed_at + Duration::from_secs_f64(c.timeout)).await;
    let back_secs = restarted.killed_at.elapsed().as_secs_f64();
    let rebooted = shards.back.iter().sum::<usize>();
    let cpu_per = restarted.cpu.per(rebooted);
    shards.stop().await;
    let results = shards.all("result", Instant::now() + Duration::from_secs(120)).await?;
    shards.wait().await;
    let mut times = scenarios::ConnectSamples::default();
    let mut refusals = Failures::default();
    for r in &results {
        refusals.add_json(&r["refusals"]);
        failures.add_json(&r["failures"]);
        times.add_raw(&r["samples"]);
    }
    let figures = RestartFigures {
        stations: c.stations,
        connected,
        rebooted,
        back_secs,
        all_back,
        retries: sum(&results, "retries"),
        refusals,
        cpu_per,
        shards: c.shards,
    };
    let results = scenarios::restart_report(c, figures, &restarted, times);
    drop(restarted);
    Ok(Outcome { results, failures })
}
