//! What the tool reads from the operating system: CPU time and memory of a
//! process (/proc), the descriptor limit, and the machine's facts.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use serde_json::{Value, json};

/// CPU time (user + system) the process has used, in microseconds, from
/// /proc/PID/stat (clock ticks of 1/100 s, Linux's USER_HZ).
pub fn cpu_micros(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let (utime, stime): (u64, u64) = (fields.get(11)?.parse().ok()?, fields.get(12)?.parse().ok()?);
    Some((utime + stime) * 10_000)
}

/// Resident memory of a process, KiB (VmRSS in /proc/PID/status).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()
}

/// Resident memory of several processes together, KiB (None if one is gone).
pub fn rss_kib_all(pids: &[u32]) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&p| rss_kib(p)).sum()
}

/// The CPU time of one or more processes (a server of several nodes) from a
/// starting point on.
pub struct CpuMeter {
    pids: Vec<u32>,
    start: Option<u64>,
}

fn cpu_micros_all(pids: &[u32]) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&p| cpu_micros(p)).sum()
}

impl CpuMeter {
    pub fn start(pids: &[u32]) -> CpuMeter {
        CpuMeter { pids: pids.to_vec(), start: cpu_micros_all(pids) }
    }

    /// The whole CPU time of processes just started (their start-up included).
    pub fn from_birth(pids: &[u32]) -> CpuMeter {
        CpuMeter { pids: pids.to_vec(), start: (!pids.is_empty()).then_some(0) }
    }

    /// Microseconds of CPU used since `start`.
    pub fn used(&self) -> Option<u64> {
        Some(cpu_micros_all(&self.pids)?.saturating_sub(self.start?))
    }

    /// Microseconds of CPU per item since `start`.
    pub fn per(&self, items: usize) -> Option<f64> {
        (items > 0).then_some(())?;
        Some(self.used()? as f64 / items as f64)
    }
}

/// Raises the soft RLIMIT_NOFILE to the hard limit; returns the soft limit in force.
pub fn raise_nofile() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.maximum != lim.current {
        lim.current = lim.maximum;
        if setrlimit(Resource::Nofile, lim).is_err() {
            eprintln!("warning: could not raise RLIMIT_NOFILE to its hard limit");
        }
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// The hard RLIMIT_NOFILE (`u64::MAX` when unlimited).
pub fn nofile_hard() -> u64 {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum.unwrap_or(u64::MAX)
}

fn cpuinfo_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn meminfo_kib(key: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    s.lines().find(|l| l.starts_with(key))?.split_whitespace().nth(1)?.parse().ok()
}

/// Mean and worst time of a synchronous 4 KiB write (write + fdatasync) in
/// `dir`, what one commit costs with SQLite synchronous=FULL; microseconds.
pub fn fsync_latency(dir: &Path, writes: usize) -> std::io::Result<(f64, f64)> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(".loadgen-fsync-probe");
    let mut f = std::fs::OpenOptions::new().create(true).write(true).truncate(true).open(&path)?;
    let block = [0x5au8; 4096];
    let mut total = 0.0;
    let mut worst: f64 = 0.0;
    for _ in 0..writes {
        let t = Instant::now();
        f.write_all(&block)?;
        f.sync_data()?;
        let us = t.elapsed().as_secs_f64() * 1e6;
        total += us;
        worst = worst.max(us);
    }
    drop(f);
    let _ = std::fs::remove_file(&path);
    Ok((total / writes.max(1) as f64, worst))
}

/// Cores, CPU model, memory, kernel, load, fsync latency in `dir`, the
/// commit (given by the caller) and the descriptor limit.
pub fn machine(dir: &Path, commit: Option<&str>) -> Value {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_owned()).ok();
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
    let (fsync_mean, fsync_max) = match fsync_latency(dir, 200) {
        Ok((m, w)) => (Some((m * 10.0).round() / 10.0), Some(w.round())),
        Err(e) => {
            eprintln!("warning: fsync probe in {} failed: {e}", dir.display());
            (None, None)
        }
    };
    json!({
        "cores": cores,
        "cpu_model": cpuinfo_model(),
        "memory_kib": meminfo_kib("MemTotal:"),
        "memory_available_kib": meminfo_kib("MemAvailable:"),
        "kernel": kernel,
        "load_average": load,
        "fsync_4k_us_mean": fsync_mean,
        "fsync_4k_us_max": fsync_max,
        "fsync_dir": dir.display().to_string(),
        "nofile_hard_limit": nofile_hard(),
        "commit": commit,
    })
}

/// One human-readable line of the machine's facts.
pub fn machine_line(m: &Value) -> String {
    let gib = m["memory_kib"].as_f64().map(|k| k / 1024.0 / 1024.0).unwrap_or(0.0);
    format!(
        "machine: {} cores ({}), {:.1} GiB, kernel {}, load {}, fsync 4 KiB {} us mean / {} us max, RLIMIT_NOFILE hard {}, commit {}",
        m["cores"],
        m["cpu_model"].as_str().unwrap_or("?"),
        gib,
        m["kernel"].as_str().unwrap_or("?"),
        m["load_average"].as_str().unwrap_or("?"),
        m["fsync_4k_us_mean"],
        m["fsync_4k_us_max"],
        m["nofile_hard_limit"],
        m["commit"].as_str().unwrap_or("unknown"),
    )
}
