//! The scenarios: each connects its stations, drives them, and returns its
//! figures as JSON with the number of failures.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;

use crate::Common;
use crate::provision::Creds;
use crate::station::{self, ConnectTimes, Target, Ws};
use crate::stats::{Failures, Samples, line};
use crate::sys::{CpuMeter, rss_kib, rss_kib_all};

/// What a scenario hands back.
pub struct Outcome {
    pub results: Value,
    pub failures: Failures,
}

/// A small deterministic generator for back-off jitter (no cryptographic use).
pub struct Jitter(u64);

impl Jitter {
    pub fn new(seed: u64) -> Jitter {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64);
        Jitter(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ nanos.unwrap_or(0) | 1)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        let z = splitmix64(&mut self.0);
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn upto(&mut self, secs: f64) -> Duration {
        Duration::from_secs_f64(self.next_f64() * secs.max(0.0))
    }
}

/// splitmix64: the next value of the sequence whose state is `state`.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Per-phase connect latencies; between processes as raw samples (a shard
/// hands them to the coordinator, which takes the percentiles).
#[derive(Default)]
pub struct ConnectSamples {
    tls: Samples,
    upgrade: Samples,
    boot: Samples,
    total: Samples,
}

impl ConnectSamples {
    fn add(&mut self, t: &ConnectTimes) {
        let us = |d: Duration| d.as_micros() as u64;
        self.tls.push(us(t.tls));
        self.upgrade.push(us(t.upgrade));
        self.boot.push(us(t.boot));
        self.total.push(us(t.total));
    }

    pub fn json(&mut self) -> Value {
        json!({
            "tcp_tls": self.tls.summary(),
            "upgrade": self.upgrade.summary(),
            "boot_answer": self.boot.summary(),
            "total": self.total.summary(),
        })
    }

    pub fn raw(&self) -> Value {
        json!({ "tls": self.tls.0, "upgrade": self.upgrade.0, "boot": self.boot.0, "total": self.total.0 })
    }

    pub fn add_raw(&mut self, v: &Value) {
        let take = |k: &str| {
            Samples(v[k].as_array().map(|a| a.iter().filter_map(Value::as_u64).collect()).unwrap_or_default())
        };
        self.tls.extend(take("tls"));
        self.upgrade.extend(take("upgrade"));
        self.boot.extend(take("boot"));
        self.total.extend(take("total"));
    }

    pub fn print(v: &Value) {
        println!("  TCP+TLS      {}", line(&v["tcp_tls"], false));
        println!("  upgrade      {}", line(&v["upgrade"], false));
        println!("  boot answer  {}", line(&v["boot_answer"], false));
        println!("  total        {}", line(&v["total"], false));
    }
}

/// Connected sessions, by position in the scenario's list.
pub(crate) struct Connected {
    pub sessions: Vec<(usize, Ws)>,
    times: ConnectSamples,
    pub failures: Failures,
    pub secs: f64,
    retries: u64,
}

/// Retries of refused connects: random back-off in [0, backoff) seconds,
/// until `deadline`.
#[derive(Clone, Copy)]
pub(crate) struct Retry {
    backoff: f64,
    deadline: Instant,
}

/// Connects `stations` (each with its index for the source address) with at
/// most `concurrency` connects in progress.
pub(crate) async fn connect_all(
    target: &Arc<Target>,
    stations: &[(usize, Arc<Creds>)],
    concurrency: usize,
    retry: Option<Retry>,
) -> Connected {
    let gate = Arc::new(Semaphore::new(concurrency.max(1)));
    let retries = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(stations.len());
    for (pos, (n, creds)) in stations.iter().cloned().enumerate() {
        let (gate, target, retries) = (gate.clone(), target.clone(), retries.clone());
        tasks.push(tokio::spawn(async move {
            let mut jitter = Jitter::new(n as u64);
            loop {
                let attempt = {
                    let _permit = gate.acquire().await;
                    station::connect(&target, n, &creds).await
                };
                match (attempt, retry) {
                    (Ok(ok), _) => return (pos, Ok(ok)),
                    (Err(e), Some(r)) if station::is_refusal(&e) && Instant::now() < r.deadline => {
                        retries.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(jitter.upto(r.backoff).max(Duration::from_millis(50))).await;
                    }
                    (Err(e), _) => return (pos, Err(e)),
                }
            }
        }));
    }
    let mut out = Connected {
        sessions: Vec::with_capacity(stations.len()),
        times: ConnectSamples::default(),
        failures: Failures::default(),
        secs: 0.0,
        retries: 0,
    };
    for t in tasks {
        match t.await {
            Ok((pos, Ok((ws, times)))) => {
                out.times.add(&times);
                out.sessions.push((pos, ws));
            }
            Ok((_, Err(e))) => out.failures.add(&e.context("connect + boot")),
            Err(e) => out.failures.add(&anyhow::anyhow!("connect task: {e}")),
        }
    }
    out.secs = started.elapsed().as_secs_f64();
    out.retries = retries.load(Ordering::Relaxed);
    out
}

/// Evenly spread positions: `count` of the fleet's `n` stations.
pub fn pick(fleet: &[Arc<Creds>], count: usize) -> Vec<(usize, Arc<Creds>)> {
    let n = fleet.len();
    (0..count.min(n)).map(|i| i * n / count.max(1)).map(|k| (k, fleet[k].clone())).collect()
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

pub(crate) fn opt1(x: Option<f64>) -> Value {
    x.map(round1).map_or(Value::Null, Value::from)
}

pub async fn ramp(c: &Common, target: &Arc<Target>, fleet: &[Arc<Creds>]) -> Outcome {
    let list = pick(fleet, c.stations);
    let rss_before = rss_kib_all(&c.server_pid);
    let cpu = CpuMeter::start(&c.server_pid);
    let mut conn = connect_all(target, &list, c.concurrency, None).await;
    let cpu_per = cpu.per(conn.sessions.len());
    let booted = conn.sessions.len();
    let rate = booted as f64 / conn.secs.max(1e-9);
    let rss_after = rss_kib_all(&c.server_pid);
    let times = conn.times.json();
    println!(
        "ramp: {booted}/{} stations connected + booted in {:.2} s = {rate:.0} boots/s at concurrency {} (fleet {}, failures {}, Pending answers {})",
        list.len(),
        conn.secs,
        c.concurrency,
        fleet.len(),
        conn.failures.total(),
        target.pendings.load(Ordering::Relaxed)
    );
    ConnectSamples::print(&times);
    if let Some(us) = cpu_per {
        println!("  server CPU {us:.0} us per connect + boot");
    }
    drop(conn.sessions.drain(..));
    Outcome {
        results: json!({
            "booted": booted,
            "seconds": conn.secs,
            "boots_per_second": round1(rate),
            "latency": times,
            "server_cpu_us_per_connect": opt1(cpu_per),
            "server_rss_kib_before": rss_before,
            "server_rss_kib_after": rss_after,
            "pending_answers": target.pendings.load(Ordering::Relaxed),
        }),
        failures: conn.failures,
    }
}

/// Idle sessions held open, answering what the server asks, until `stop`;
/// each task ends with the session's error if it was lost before.
pub(crate) struct Held {
    pub tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
    pub lost: Arc<AtomicUsize>,
}

pub(crate) fn hold(sessions: Vec<(usize, Ws)>, stop: &watch::Receiver<bool>) -> Held {
    let lost = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::with_capacity(sessions.len());
    for (_, mut ws) in sessions {
        let (lost, mut stop) = (lost.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let r = tokio::select! {
                r = station::wait_answering(&mut ws, Duration::from_secs(365 * 86_400)) => r,
                _ = stop.wait_for(|s| *s) => Ok(()),
            };
            if r.is_err() {
                lost.fetch_add(1, Ordering::Relaxed);
            }
            // Closed when the scenario is over, not before.
            let _ = stop.wait_for(|s| *s).await;
            drop(ws);
            r
        }));
    }
    Held { tasks, lost }
}

impl Held {
    pub async fn join(self, failures: &mut Failures) {
        for t in self.tasks {
            match t.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failures.add(&e.context("idle session")),
                Err(e) => failures.add(&anyhow::anyhow!("idle task: {e}")),
            }
        }
    }
}

pub(crate) fn per_session(before: Option<u64>, after: Option<u64>, sessions: usize) -> Option<f64> {
    match (before, after) {
        (Some(b), Some(a)) if sessions > 0 => Some(a.saturating_sub(b) as f64 / sessions as f64),
        _ => None,
    }
}

/// The idle figures, printed and as JSON.
pub(crate) struct IdleFigures {
    pub sessions: usize,
    pub connect_secs: f64,
    pub rss_before: Option<u64>,
    pub rss_after: Option<u64>,
    pub loadgen_rss: Option<u64>,
    pub loadgen_per: Option<f64>,
    pub idle_cpu: Option<f64>,
    pub lost: usize,
    pub nodes: usize,
    pub shards: usize,
}

pub(crate) fn idle_report(f: &IdleFigures) -> Value {
    let per = per_session(f.rss_before, f.rss_after, f.sessions);
    let kib = |v: Option<u64>| v.map_or("?".into(), |v| v.to_string());
    println!(
        "  server RSS {} KiB before, {} KiB with {} idle sessions = {} KiB per session ({} server process{}); sessions lost {}",
        kib(f.rss_before),
        kib(f.rss_after),
        f.sessions,
        per.map_or("?".into(), |v| format!("{v:.1}")),
        f.nodes,
        if f.nodes == 1 { "" } else { "es" },
        f.lost
    );
    println!(
        "  loadgen RSS {} KiB = {} KiB per session ({} process{}); server CPU while idle {} us/s",
        kib(f.loadgen_rss),
        f.loadgen_per.map_or("?".into(), |v| format!("{v:.1}")),
        f.shards,
        if f.shards == 1 { "" } else { "es" },
        f.idle_cpu.map_or("?".into(), |v| format!("{v:.0}"))
    );
    json!({
        "sessions": f.sessions,
        "nodes": f.nodes,
        "loadgen_processes": f.shards,
        "connect_seconds": f.connect_secs,
        "server_rss_kib_before": f.rss_before,
        "server_rss_kib_after": f.rss_after,
        "server_kib_per_session": opt1(per),
        "loadgen_rss_kib": f.loadgen_rss,
        "loadgen_kib_per_session": opt1(f.loadgen_per),
        "server_cpu_us_per_second_idle": opt1(f.idle_cpu),
        "sessions_lost": f.lost,
    })
}

pub async fn idle(c: &Common, target: &Arc<Target>, fleet: &[Arc<Creds>]) -> Outcome {
    let list = pick(fleet, c.stations);
    let own_before = rss_kib(std::process::id());
    let rss_before = rss_kib_all(&c.server_pid);
    let conn = connect_all(target, &list, c.concurrency, None).await;
    let booted = conn.sessions.len();
    let mut failures = conn.failures;
    println!("idle: {booted} sessions open in {:.1} s; holding them {:.0} s", conn.secs, c.duration);
    let end = Instant::now() + Duration::from_secs_f64(c.duration);
    let settle = Instant::now() + Duration::from_secs_f64(c.settle.min(c.duration));
    let (stop, rx) = watch::channel(false);
    let held = hold(conn.sessions, &rx);
    tokio::time::sleep_until(settle).await;
    let cpu = CpuMeter::start(&c.server_pid);
    let t_cpu = Instant::now();
    let rss_after = rss_kib_all(&c.server_pid);
    let own_after = rss_kib(std::process::id());
    tokio::time::sleep_until(end).await;
    let idle_cpu = cpu.used().map(|us| us as f64 / t_cpu.elapsed().as_secs_f64().max(1e-9));
    let lost = held.lost.load(Ordering::Relaxed);
    let _ = stop.send(true);
    held.join(&mut failures).await;
    let figures = IdleFigures {
        sessions: booted,
        connect_secs: conn.secs,
        rss_before,
        rss_after,
        loadgen_rss: own_after,
        loadgen_per: per_session(own_before, own_after, booted),
        idle_cpu,
        lost,
        nodes: c.server_pid.len(),
        shards: 1,
    };
    Outcome { results: idle_report(&figures), failures }
}

/// Closed loop on one session: calls back to back until `end`.
async fn drive_closed(mut ws: Ws, n: usize, end: Instant, timeout: Duration) -> (Samples, Option<anyhow::Error>) {
    let mut lat = Samples::default();
    let mut k = n as u64;
    let mut energy = 1_000_000 + n as u64;
    while Instant::now() < end {
        let (action, payload) = station::mix_call(k, &station::now_rfc3339(), energy);
        energy += 37;
        let t = Instant::now();
        match station::call(&mut ws, &format!("m{k}"), action, &payload, timeout).await {
            Ok(_) => lat.push(t.elapsed().as_micros() as u64),
            Err(e) => return (lat, Some(e)),
        }
        k += 1;
    }
    (lat, None)
}

/// When one session sends in an open loop.
#[derive(Clone, Copy)]
struct Slots {
    t0: Instant,
    offset: Duration,
    period: Duration,
    end: Option<Instant>,
}

/// One session's share of an open loop.
#[derive(Default)]
struct OpenResult {
    /// (scheduled send time in microseconds since the loop's start, latency
    /// from the scheduled time in microseconds).
    samples: Vec<(u64, u64)>,
    late: u64,
    slots: u64,
    error: Option<anyhow::Error>,
    unanswered: u64,
}

/// Open loop on one session: a call at `t0 + offset + k * period` for every
/// k while `stop` is false (and before `end`); a slot that comes while the
/// previous call is unanswered is skipped and counted late. Latency runs
/// from the scheduled time, so a slow answer is not hidden.
async fn drive_open(
    mut ws: Ws,
    n: usize,
    slots: Slots,
    mut stop: watch::Receiver<bool>,
    timeout: Duration,
) -> (Ws, OpenResult) {
    let Slots { t0, offset, period, end } = slots;
    let mut r = OpenResult::default();
    let mut next = t0 + offset;
    let mut outstanding: Option<(String, &'static str, Instant)> = None;
    let mut k = n as u64;
    let mut energy = 2_000_000 + n as u64;
    let mut stopping = false;
    loop {
        let sending = !stopping && end.is_none_or(|e| next < e);
        if !sending && outstanding.is_none() {
            break;
        }
        let give_up = outstanding.as_ref().map_or(next + timeout, |o| o.2 + timeout);
        tokio::select! {
            _ = tokio::time::sleep_until(next), if sending => {
                r.slots += 1;
                if outstanding.is_some() {
                    r.late += 1;
                } else {
                    let (action, payload) = station::mix_call(k, &station::now_rfc3339(), energy);
                    energy += 37;
                    let id = format!("o{k}");
                    k += 1;
                    let frame = format!(r#"[2,"{id}","{action}",{payload}]"#);
                    use futures_util::SinkExt;
                    if let Err(e) = ws.send(tokio_tungstenite::tungstenite::Message::text(frame)).await {
                        r.error = Some(anyhow::Error::new(station::Refused(format!("send: {e}"))));
                        return (ws, r);
                    }
                    outstanding = Some((id, action, next));
                }
                next += period;
            }
            m = ws.next() => {
                let id = outstanding.as_ref().map_or("", |o| o.0.as_str()).to_owned();
                match station::answer_to(&mut ws, m, &id).await {
                    Ok(Some(v)) => {
                        if let Some((_, action, sched)) = outstanding.take() {
                            let lat = Instant::now().saturating_duration_since(sched).as_micros() as u64;
                            match station::check_result(action, v) {
                                Ok(_) => r.samples.push((sched.saturating_duration_since(t0).as_micros() as u64, lat)),
                                Err(e) => {
                                    r.error = Some(e);
                                    return (ws, r);
                                }
                            }
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        r.error = Some(e);
                        return (ws, r);
                    }
                }
            }
            changed = stop.changed(), if !stopping => {
                if changed.is_err() || *stop.borrow() {
                    stopping = true;
                }
            }
            _ = tokio::time::sleep_until(give_up), if outstanding.is_some() => {
                r.unanswered += 1;
                r.error = Some(anyhow::anyhow!("no answer within {} s", timeout.as_secs()));
                return (ws, r);
            }
        }
    }
    (ws, r)
}

pub async fn steady(c: &Common, target: &Arc<Target>, fleet: &[Arc<Creds>]) -> Outcome {
    let list = pick(fleet, c.stations);
    let conn = connect_all(target, &list, c.concurrency, None).await;
    let mut failures = conn.failures;
    let sessions = conn.sessions.len();
    println!("steady: {sessions} sessions open in {:.1} s", conn.secs);
    let duration = Duration::from_secs_f64(c.duration);
    let timeout = target.answer_timeout;
    let cpu = CpuMeter::start(&c.server_pid);
    let t0 = Instant::now();
    let mut lat = Samples::default();
    let results = if let Some(rate) = c.rate {
        // Open loop: station i sends every sessions/rate seconds, staggered by 1/rate.
        let period = Duration::from_secs_f64(sessions as f64 / rate.max(1e-9));
        let start = t0 + Duration::from_millis(200);
        let end = start + duration;
        let (_tx, rx) = watch::channel(false);
        let mut tasks = Vec::new();
        for (i, (_, ws)) in conn.sessions.into_iter().enumerate() {
            let offset = Duration::from_secs_f64(i as f64 / rate.max(1e-9));
            let rx = rx.clone();
            tasks.push(tokio::spawn(drive_open(
                ws,
                i,
                Slots { t0: start, offset, period, end: Some(end) },
                rx,
                timeout,
            )));
        }
        let (mut late, mut slots, mut answered) = (0u64, 0u64, 0u64);
        for t in tasks {
            match t.await {
                Ok((_ws, r)) => {
                    late += r.late;
                    slots += r.slots;
                    answered += r.samples.len() as u64;
                    lat.0.extend(r.samples.iter().map(|s| s.1));
                    if let Some(e) = r.error {
                        failures.add(&e.context("open-loop call"));
                    }
                }
                Err(e) => failures.add(&anyhow::anyhow!("open-loop task: {e}")),
            }
        }
        let secs = duration.as_secs_f64();
        let cpu_per = cpu.per(answered as usize);
        let summary = lat.summary();
        println!(
            "steady (open loop): {rate:.0} calls/s scheduled over {sessions} stations for {secs:.0} s: {answered} answered = {:.0} msgs/s, {late} slots late (of {slots}), failures {}",
            answered as f64 / secs,
            failures.total()
        );
        println!("  latency from the scheduled send: {}", line(&summary, true));
        if let Some(us) = cpu_per {
            println!("  server CPU {us:.1} us per message");
        }
        json!({
            "mode": "open",
            "rate": rate,
            "sessions": sessions,
            "seconds": secs,
            "slots": slots,
            "late": late,
            "answered": answered,
            "messages_per_second": round1(answered as f64 / secs),
            "latency": summary,
            "server_cpu_us_per_message": opt1(cpu_per),
        })
    } else {
        let end = t0 + duration;
        let mut tasks = Vec::new();
        for (i, (_, ws)) in conn.sessions.into_iter().enumerate() {
            tasks.push(tokio::spawn(drive_closed(ws, i, end, timeout)));
        }
        for t in tasks {
            match t.await {
                Ok((l, e)) => {
                    lat.extend(l);
                    if let Some(e) = e {
                        failures.add(&e.context("closed-loop call"));
                    }
                }
                Err(e) => failures.add(&anyhow::anyhow!("closed-loop task: {e}")),
            }
        }
        let secs = t0.elapsed().as_secs_f64();
        let answered = lat.len();
        let cpu_per = cpu.per(answered);
        let summary = lat.summary();
        println!(
            "steady (closed loop): {answered} calls answered in {secs:.1} s over {sessions} stations = {:.0} msgs/s (Heartbeat:StatusNotification:MeterValues 1:1:4), failures {}",
            answered as f64 / secs,
            failures.total()
        );
        println!("  latency {}", line(&summary, true));
        if let Some(us) = cpu_per {
            println!("  server CPU {us:.1} us per message");
        }
        json!({
            "mode": "closed",
            "sessions": sessions,
            "seconds": secs,
            "answered": answered,
            "messages_per_second": round1(answered as f64 / secs),
            "latency": summary,
            "server_cpu_us_per_message": opt1(cpu_per),
        })
    };
    Outcome { results, failures }
}

pub async fn storm(c: &Common, target: &Arc<Target>, fleet: &[Arc<Creds>]) -> Outcome {
    let k = c.background;
    let list = pick(fleet, c.stations + k);
    let (background, storming) = list.split_at(k.min(list.len()));
    let conn = connect_all(target, background, c.concurrency, None).await;
    let mut failures = conn.failures;
    let sessions = conn.sessions.len();
    let rate = c.background_rate.unwrap_or(sessions as f64);
    println!(
        "storm: {sessions} background stations connected in {:.1} s, sending {rate:.0} calls/s; then {} connect at once",
        conn.secs,
        storming.len()
    );
    let timeout = target.answer_timeout;
    let (tx, rx) = watch::channel(false);
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    if sessions > 0 {
        let period = Duration::from_secs_f64(sessions as f64 / rate.max(1e-9));
        for (i, (_, ws)) in conn.sessions.into_iter().enumerate() {
            let offset = Duration::from_secs_f64(i as f64 / rate.max(1e-9));
            tasks.push(tokio::spawn(drive_open(ws, i, Slots { t0, offset, period, end: None }, rx.clone(), timeout)));
        }
    }
    // Before the storm: the background's latency undisturbed.
    tokio::time::sleep(Duration::from_secs_f64(c.settle)).await;
    let cpu = CpuMeter::start(&c.server_pid);
    let storm_start = Instant::now();
    let retry = Retry { backoff: c.backoff, deadline: storm_start + Duration::from_secs_f64(c.timeout) };
    let mut storm = connect_all(target, storming, storming.len(), Some(retry)).await;
    let storm_end = Instant::now();
    let storm_secs = storm_end.duration_since(storm_start).as_secs_f64();
    let cpu_per = cpu.per(storm.sessions.len());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = tx.send(true);
    let (s0, s1) = (storm_start.duration_since(t0).as_micros() as u64, storm_end.duration_since(t0).as_micros() as u64);
    let (mut before, mut during, mut late) = (Samples::default(), Samples::default(), 0u64);
    for t in tasks {
        match t.await {
            Ok((_ws, r)) => {
                late += r.late;
                for (sched, lat) in r.samples {
                    if sched < s0 {
                        before.push(lat);
                    } else if sched < s1 {
                        during.push(lat);
                    }
                }
                if let Some(e) = r.error {
                    failures.add(&e.context("background call"));
                }
            }
            Err(e) => failures.add(&anyhow::anyhow!("background task: {e}")),
        }
    }
    failures.merge(std::mem::take(&mut storm.failures));
    let booted = storm.sessions.len();
    let times = storm.times.json();
    let (b, d) = (before.summary(), during.summary());
    println!(
        "  {booted}/{} storm stations booted {storm_secs:.2} s after the storm began = {:.0} boots/s ({} refused connects retried, Pending answers {}, failures {})",
        storming.len(),
        booted as f64 / storm_secs.max(1e-9),
        storm.retries,
        target.pendings.load(Ordering::Relaxed),
        failures.total()
    );
    ConnectSamples::print(&times);
    if let Some(us) = cpu_per {
        println!("  server CPU {us:.0} us per storm connect + boot (background load included)");
    }
    println!("  background latency before the storm: {}", line(&b, true));
    println!("  background latency during the storm: {}; {late} slots late", line(&d, true));
    drop(storm.sessions);
    Outcome {
        results: json!({
            "background_sessions": sessions,
            "background_rate": rate,
            "storm_stations": storming.len(),
            "booted": booted,
            "seconds_until_all_booted": storm_secs,
            "boots_per_second": round1(booted as f64 / storm_secs.max(1e-9)),
            "retried_refusals": storm.retries,
            "pending_answers": target.pendings.load(Ordering::Relaxed),
            "latency": times,
            "server_cpu_us_per_connect": opt1(cpu_per),
            "background_latency_before": b,
            "background_latency_during": d,
            "background_late_slots": late,
        }),
        failures,
    }
}

/// The stations of a restart run: each connects (the first time at most
/// `concurrency` at once), stays until its connection drops, backs off
/// 0..backoff s and reconnects, retrying refusals, until stopped.
pub struct RestartFleet {
    pub first: Arc<AtomicUsize>,
    pub second: Arc<AtomicUsize>,
    pub retries: Arc<AtomicU64>,
    /// The refusals retried, by kind.
    pub refusals: Arc<tokio::sync::Mutex<Failures>>,
    second_times: Arc<tokio::sync::Mutex<ConnectSamples>>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<(u32, Option<anyhow::Error>)>>,
}

pub fn restart_fleet(
    target: &Arc<Target>,
    list: Vec<(usize, Arc<Creds>)>,
    concurrency: usize,
    backoff: f64,
    deadline: Instant,
) -> RestartFleet {
    let first = Arc::new(AtomicUsize::new(0));
    let second = Arc::new(AtomicUsize::new(0));
    let retries = Arc::new(AtomicU64::new(0));
    let refusals = Arc::new(tokio::sync::Mutex::new(Failures::default()));
    let second_times = Arc::new(tokio::sync::Mutex::new(ConnectSamples::default()));
    let gate = Arc::new(Semaphore::new(concurrency.max(1)));
    let (stop, rx) = watch::channel(false);
    let mut tasks = Vec::new();
    for (n, creds) in list {
        let (target, first, second, retries, second_times, gate) =
            (target.clone(), first.clone(), second.clone(), retries.clone(), second_times.clone(), gate.clone());
        let refusals = refusals.clone();
        let mut rx = rx.clone();
        tasks.push(tokio::spawn(async move {
            let mut jitter = Jitter::new(n as u64);
            let mut boots = 0u32;
            let mut last_err: Option<anyhow::Error> = None;
            while boots < 2 && !*rx.borrow() && Instant::now() < deadline {
                let attempt = if boots == 0 {
                    let _p = gate.acquire().await;
                    station::connect(&target, n, &creds).await
                } else {
                    station::connect(&target, n, &creds).await
                };
                match attempt {
                    Ok((mut ws, times)) => {
                        boots += 1;
                        last_err = None;
                        if boots == 1 {
                            first.fetch_add(1, Ordering::Relaxed);
                        } else {
                            second.fetch_add(1, Ordering::Relaxed);
                            second_times.lock().await.add(&times);
                            // Held until the scenario ends.
                            let _ = rx.changed().await;
                            return (boots, None);
                        }
                        // Until the server goes away.
                        loop {
                            tokio::select! {
                                m = ws.next() => {
                                    if station::handle_unsolicited(&mut ws, m).await.is_err() { break; }
                                }
                                _ = rx.changed() => return (boots, None),
                            }
                        }
                    }
                    // The first connect is not retried: the server is up then.
                    Err(e) if station::is_refusal(&e) && boots > 0 => {
                        retries.fetch_add(1, Ordering::Relaxed);
                        refusals.lock().await.add(&e);
                        last_err = Some(e);
                    }
                    Err(e) => return (boots, Some(e)),
                }
                tokio::time::sleep(jitter.upto(backoff).max(Duration::from_millis(50))).await;
            }
            (boots, last_err)
        }));
    }
    RestartFleet { first, second, retries, refusals, second_times, stop, tasks }
}

impl RestartFleet {
    /// Waits until `counter` (`first` or `second`) reaches `count`, or
    /// `until`; whether it did.
    pub async fn wait(counter: &AtomicUsize, count: usize, until: Instant) -> bool {
        loop {
            if counter.load(Ordering::Relaxed) >= count {
                return true;
            }
            if Instant::now() > until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops every station; the stations that did not boot twice count as
    /// failures; the latencies of the second connects.
    pub async fn finish(self, failures: &mut Failures) -> ConnectSamples {
        let _ = self.stop.send(true);
        for t in self.tasks {
            match t.await {
                Ok((boots, Some(e))) if boots < 2 => failures.add(&e.context("reconnect")),
                Ok((boots, None)) if boots < 2 => failures.add(&anyhow::anyhow!("not booted again in time")),
                Ok(_) => {}
                Err(e) => failures.add(&anyhow::anyhow!("station task: {e}")),
            }
        }
        std::mem::take(&mut *self.second_times.lock().await)
    }
}

/// The server of a restart run: every node killed at once and started again
/// with its command.
pub struct Restarted {
    pub killed_at: Instant,
    /// The new processes: held only to be stopped when this drops.
    _children: Vec<tokio::process::Child>,
    pub pids: Vec<u32>,
    /// Seconds from the kill until the last node said `listening`.
    pub ready_after: Option<f64>,
    /// The new processes' CPU time, from their start.
    pub cpu: CpuMeter,
}

/// Checks `check` every 10 ms until it holds (true) or `limit` has passed.
async fn poll_until(check: impl Fn() -> bool, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub async fn kill_and_restart(
    pids: &[u32],
    listeners: &[std::net::SocketAddr],
    commands: &[String],
    failures: &mut Failures,
) -> Restarted {
    for &pid in pids {
        let kill = rustix::process::kill_process(
            rustix::process::Pid::from_raw(pid as i32).unwrap_or(rustix::process::Pid::INIT),
            rustix::process::Signal::KILL,
        );
        if let Err(e) = kill {
            failures.add(&anyhow::anyhow!("killing the server (pid {pid}): {e}"));
        }
    }
    let killed_at = Instant::now();
    // Wait for the old processes to be gone before binding again.
    for &pid in pids {
        let gone = || {
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat")).map(|s| s.contains(") Z ")).unwrap_or(true)
        };
        if !poll_until(gone, Duration::from_secs(30)).await {
            failures.add(&anyhow::anyhow!("the killed server (pid {pid}) was still there after 30 s"));
        }
    }
    // A zombie's listener may still be open: its other threads close the
    // descriptors, which takes a while for tens of thousands of sockets (the
    // restarted server failed to bind its port at 18,000). Bound here with
    // SO_REUSEADDR, as the server binds it, the port is free once that works.
    for &addr in listeners {
        let free = || {
            tokio::net::TcpSocket::new_v4()
                .and_then(|s| {
                    s.set_reuseaddr(true)?;
                    s.bind(addr)
                })
                .is_ok()
        };
        if !poll_until(free, Duration::from_secs(30)).await {
            failures.add(&anyhow::anyhow!("{addr} was still taken 30 s after the kill"));
        }
    }
    let mut children = Vec::new();
    for command in commands {
        match tokio::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
        {
            Ok(ch) => children.push(ch),
            Err(e) => failures.add(&anyhow::anyhow!("starting the server again ({command}): {e}")),
        }
    }
    let pids: Vec<u32> = children.iter().filter_map(|c| c.id()).collect();
    // From their birth: start-up and the reconnects a node handles before
    // the last one listens are part of the cost.
    let cpu = CpuMeter::from_birth(&pids);
    let mut ready_after = (!children.is_empty()).then_some(0.0f64);
    let until = Instant::now() + Duration::from_secs(60);
    for child in &mut children {
        let mut ready = None;
        if let Some(out) = child.stdout.take() {
            use tokio::io::AsyncBufReadExt;
            let mut lines = tokio::io::BufReader::new(out).lines();
            while let Ok(Ok(Some(l))) = tokio::time::timeout_at(until, lines.next_line()).await {
                if l.starts_with("listening ") {
                    ready = Some(killed_at.elapsed().as_secs_f64());
                    break;
                }
            }
            // Keep draining so the server never blocks on a full pipe.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        }
        ready_after = match (ready_after, ready) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
    }
    Restarted { killed_at, _children: children, pids, ready_after, cpu }
}

/// What a restart run reports, from one process or from its shards.
pub struct RestartFigures {
    pub stations: usize,
    pub connected: usize,
    pub rebooted: usize,
    pub back_secs: f64,
    pub all_back: bool,
    pub retries: u64,
    pub refusals: Failures,
    pub cpu_per: Option<f64>,
    pub shards: usize,
}

pub fn restart_report(c: &Common, f: RestartFigures, restarted: &Restarted, mut times: ConnectSamples) -> Value {
    let times = times.json();
    println!(
        "  {}/{} booted again {:.2} s after the kill (server listening after {}); {} refused reconnects retried, back-off 0..{} s; all back: {}",
        f.rebooted,
        f.connected,
        f.back_secs,
        restarted.ready_after.map_or("?".into(), |s| format!("{s:.2} s")),
        f.retries,
        c.backoff,
        f.all_back
    );
    f.refusals.print_as("  refused");
    ConnectSamples::print(&times);
    if let Some(us) = f.cpu_per {
        println!("  restarted server CPU {us:.0} us per reconnect (start-up included)");
    }
    json!({
        "stations": f.stations,
        "nodes": restarted.pids.len().max(c.server_pid.len()),
        "loadgen_processes": f.shards,
        "connected_before_restart": f.connected,
        "rebooted": f.rebooted,
        "seconds_from_kill_until_all_booted": f.back_secs,
        "seconds_from_kill_until_listening": restarted.ready_after,
        "backoff_seconds": c.backoff,
        "retried_refusals": f.retries,
        "refusal_kinds": f.refusals.json(),
        "latency": times,
        "server_cpu_us_per_reconnect": opt1(f.cpu_per),
    })
}

pub async fn restart(c: &Common, target: &Arc<Target>, fleet: &[Arc<Creds>]) -> Outcome {
    let list = pick(fleet, c.stations);
    let m = list.len();
    let mut failures = Failures::default();
    if c.server_pid.is_empty() || c.server_pid.len() != c.restart_cmd.len() {
        failures.add(&anyhow::anyhow!("restart needs --server-pid and one --restart-cmd per server process"));
        return Outcome { results: json!({}), failures };
    }
    let started = Instant::now();
    let stations =
        restart_fleet(target, list, c.concurrency, c.backoff, started + Duration::from_secs_f64(c.timeout * 2.0));
    RestartFleet::wait(&stations.first, m, started + Duration::from_secs_f64(c.timeout)).await;
    let connected = stations.first.load(Ordering::Relaxed);
    println!(
        "restart: {connected}/{m} stations connected in {:.1} s; killing the server ({} process{}) and starting it again",
        started.elapsed().as_secs_f64(),
        c.server_pid.len(),
        if c.server_pid.len() == 1 { "" } else { "es" }
    );
    let listeners: Vec<_> = target.endpoints.iter().map(|e| e.addr).collect();
    let restarted = kill_and_restart(&c.server_pid, &listeners, &c.restart_cmd, &mut failures).await;
    let all_back =
        RestartFleet::wait(&stations.second, connected, restarted.killed_at + Duration::from_secs_f64(c.timeout)).await;
    let back_secs = restarted.killed_at.elapsed().as_secs_f64();
    let rebooted = stations.second.load(Ordering::Relaxed);
    let cpu_per = restarted.cpu.per(rebooted);
    let retries = stations.retries.load(Ordering::Relaxed);
    let refusals = std::mem::take(&mut *stations.refusals.lock().await);
    let times = stations.finish(&mut failures).await;
    let figures =
        RestartFigures { stations: m, connected, rebooted, back_secs, all_back, retries, refusals, cpu_per, shards: 1 };
    let results = restart_report(c, figures, &restarted, times);
    // The restarted server is ours: stopped when `restarted` drops.
    drop(restarted);
    Outcome { results, failures }
}
