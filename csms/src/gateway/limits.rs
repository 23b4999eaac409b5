//! Limits on what unauthenticated peers may make the gateway do: handshakes in
//! progress per source address, back-off after failed password logins (per
//! station id and per source address), and a bounded queue of password checks.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use dashmap::DashMap;
use tokio::sync::Semaphore;

use crate::config::Config;

/// The key a source address is limited under: an IPv6 address by its /64
/// prefix (one subscriber's allocation, which it can spread over freely), an
/// IPv4-mapped IPv6 address as the IPv4 address, an IPv4 address as itself.
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(std::net::Ipv6Addr::from(prefix))
            }
        },
    }
}

/// Whether `ip` is exempt from the per-source limits: loopback, unless
/// `limit_loopback_sources` is set (a TLS-passthrough proxy on the same host,
/// the tests and the load generator all connect from there).
fn exempt(ip: IpAddr, limit_loopback: bool) -> bool {
    !limit_loopback && source_key(ip).is_loopback()
}

/// Handshakes in progress per source address (from accept until the upgrade
/// request was answered).
pub struct SourceHandshakes {
    limit: usize,
    limit_loopback: bool,
    in_progress: Arc<DashMap<IpAddr, usize>>,
}

/// One handshake in progress from a source; released on drop.
pub struct SourceSlot {
    ip: IpAddr,
    in_progress: Arc<DashMap<IpAddr, usize>>,
}

impl SourceHandshakes {
    pub fn new(config: &Config) -> Self {
        SourceHandshakes {
            limit: config.max_handshakes_per_source.max(1),
            limit_loopback: config.limit_loopback_sources,
            in_progress: Arc::new(DashMap::new()),
        }
    }

    /// A slot for one more handshake from `ip`, or `None` when it has its share.
    /// Loopback sources are not limited unless configured: a TLS-passthrough
    /// proxy on the same host, the tests and the load generator all come from there.
    pub fn enter(&self, ip: IpAddr) -> Option<Option<SourceSlot>> {
        if exempt(ip, self.limit_loopback) {
            return Some(None);
        }
        let ip = source_key(ip);
        let mut n = self.in_progress.entry(ip).or_insert(0);
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        drop(n);
        Some(Some(SourceSlot { ip, in_progress: self.in_progress.clone() }))
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        if let Some(mut n) = self.in_progress.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
        }
        self.in_progress.remove_if(&self.ip, |_, n| *n == 0);
    }
}

/// Failed password logins, per station id and per source address. After
/// `threshold` failures within the window, attempts are refused without a
/// password check for a period that doubles with each further failure, up to
/// the maximum. A success clears the station's record.
pub struct LoginThrottle {
    stations: FailureTable<String>,
    sources: FailureTable<IpAddr>,
    limit_loopback: bool,
}

impl LoginThrottle {
    pub fn new(config: &Config) -> Self {
        let policy = |threshold: u32| Policy {
            threshold: threshold.max(1),
            window_ms: secs_to_ms(config.login_failure_window_secs),
            initial_ms: secs_to_ms(config.login_backoff_initial_secs),
            max_ms: secs_to_ms(config.login_backoff_max_secs.max(config.login_backoff_initial_secs)),
            max_entries: config.login_failure_table_entries.max(1),
        };
        LoginThrottle {
            stations: FailureTable::new(policy(config.login_failures_per_station)),
            sources: FailureTable::new(policy(config.login_failures_per_source)),
            limit_loopback: config.limit_loopback_sources,
        }
    }

    /// Seconds until `station_id` from `ip` may try a password again, if it is
    /// backed off now.
    pub fn backed_off(&self, station_id: &str, ip: IpAddr, now_ms: i64) -> Option<u64> {
        let a = self.stations.blocked_for(station_id, now_ms);
        let b = if exempt(ip, self.limit_loopback) { None } else { self.sources.blocked_for(&source_key(ip), now_ms) };
        a.max(b).map(|ms| u64::try_from(ms).unwrap_or(0).div_ceil(1000).max(1))
    }

    pub fn failed(&self, station_id: &str, ip: IpAddr, now_ms: i64) {
        self.stations.failed(station_id.to_owned(), now_ms);
        if !exempt(ip, self.limit_loopback) {
            self.sources.failed(source_key(ip), now_ms);
        }
    }

    pub fn succeeded(&self, station_id: &str) {
        self.stations.entries.remove(station_id);
    }
}

fn secs_to_ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

#[derive(Debug, Clone, Copy)]
struct Policy {
    threshold: u32,
    window_ms: i64,
    initial_ms: i64,
    max_ms: i64,
    max_entries: usize,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last_ms: i64,
}

struct FailureTable<K: std::hash::Hash + Eq> {
    policy: Policy,
    entries: DashMap<K, Failures>,
}

impl<K: std::hash::Hash + Eq + Clone> FailureTable<K> {
    fn new(policy: Policy) -> Self {
        FailureTable { policy, entries: DashMap::new() }
    }

    /// Back-off after `f` recorded failures, if they reached the threshold.
    fn backoff_ms(&self, f: &Failures) -> Option<i64> {
        let over = f.count.checked_sub(self.policy.threshold)?;
        let factor = 1i64.checked_shl(over.min(40)).unwrap_or(i64::MAX);
        Some(self.policy.initial_ms.saturating_mul(factor).min(self.policy.max_ms))
    }

    /// Whether a record has nothing left to say at `now_ms`.
    fn expired(&self, f: &Failures, now_ms: i64) -> bool {
        let keep = self.policy.window_ms.max(self.backoff_ms(f).unwrap_or(0));
        now_ms.saturating_sub(f.last_ms) > keep
    }

    fn blocked_for<Q>(&self, key: &Q, now_ms: i64) -> Option<i64>
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        let f = *self.entries.get(key)?;
        let until = f.last_ms.saturating_add(self.backoff_ms(&f)?);
        (until > now_ms).then(|| until - now_ms)
    }

    fn failed(&self, key: K, now_ms: i64) {
        if !self.entries.contains_key(&key) && self.entries.len() >= self.policy.max_entries {
            self.make_room(now_ms);
        }
        let mut e = self.entries.entry(key).or_insert(Failures { count: 0, last_ms: now_ms });
        if now_ms.saturating_sub(e.last_ms) > self.policy.window_ms {
            e.count = 0;
        }
        e.count = e.count.saturating_add(1);
        e.last_ms = now_ms;
    }

    /// Drops expired records; if none were, the one that says least: a record
    /// not backed off before one that is, then the fewest failures, then the
    /// oldest. A flood of failures on fresh keys (random station ids) so
    /// replaces its own records and never frees a backed-off key to guessing.
    fn make_room(&self, now_ms: i64) {
        self.entries.retain(|_, f| !self.expired(f, now_ms));
        if self.entries.len() < self.policy.max_entries {
            return;
        }
        let least = self
            .entries
            .iter()
            .min_by_key(|e| {
                let f = e.value();
                let blocked = self.backoff_ms(f).is_some_and(|b| f.last_ms.saturating_add(b) > now_ms);
                (blocked, f.count, f.last_ms)
            })
            .map(|e| e.key().clone());
        if let Some(k) = least {
            self.entries.remove(&k);
        }
    }
}

/// PBKDF2 checks run a bounded number at a time, with a bounded queue behind
/// them; beyond it a login is refused at once instead of waiting.
pub struct PasswordPool {
    running: Semaphore,
    admitted: AtomicUsize,
    capacity: usize,
}

/// A place in the pool (running or queued); released on drop.
pub struct PoolPlace<'a>(&'a AtomicUsize);

impl Drop for PoolPlace<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl PasswordPool {
    pub fn new(config: &Config) -> Self {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let concurrency = config.password_check_concurrency.unwrap_or(cores).max(1);
        PasswordPool {
            running: Semaphore::new(concurrency),
            admitted: AtomicUsize::new(0),
            capacity: concurrency.saturating_add(config.password_check_queue),
        }
    }

    /// A place, or `None` when as many checks as allowed are running or waiting.
    pub fn place(&self) -> Option<PoolPlace<'_>> {
        let before = self.admitted.fetch_add(1, Ordering::SeqCst);
        let place = PoolPlace(&self.admitted);
        (before < self.capacity).then_some(place)
    }

    pub fn running(&self) -> &Semaphore {
        &self.running
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config {
            login_failures_per_station: 3,
            login_failures_per_source: 5,
            login_failure_window_secs: 60,
            login_backoff_initial_secs: 2,
            login_backoff_max_secs: 10,
            login_failure_table_entries: 3,
            ..Config::default()
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let t = LoginThrottle::new(&config());
        let ip: IpAddr = [10, 0, 0, 1].into();
        let mut now = 1_000_000;
        for _ in 0..2 {
            t.failed("CS1", ip, now);
            assert_eq!(t.backed_off("CS1", ip, now), None);
        }
        t.failed("CS1", ip, now);
        assert_eq!(t.backed_off("CS1", ip, now), Some(2));
        now += 2_000;
        assert_eq!(t.backed_off("CS1", ip, now), None);
        t.failed("CS1", ip, now);
        assert_eq!(t.backed_off("CS1", ip, now), Some(4));
        for _ in 0..5 {
            t.failed("CS1", ip, now);
        }
        assert_eq!(t.backed_off("CS1", ip, now), Some(10), "capped");
        t.succeeded("CS1");
        // The station is cleared; the source still has its failures.
        assert_eq!(t.backed_off("CS1", [10, 0, 0, 2].into(), now), None);
        assert_eq!(t.backed_off("CS2", ip, now), Some(10));
    }

    #[test]
    fn failures_outside_the_window_are_forgotten_and_tables_are_bounded() {
        let t = LoginThrottle::new(&config());
        let ip: IpAddr = [10, 0, 0, 1].into();
        t.failed("CS1", ip, 0);
        t.failed("CS1", ip, 0);
        t.failed("CS1", ip, 61_000);
        assert_eq!(t.backed_off("CS1", [10, 0, 0, 9].into(), 61_000), None);
        for i in 0..10 {
            t.failed(&format!("X{i}"), [10, 0, 1, i].into(), 70_000 + i64::from(i));
        }
        assert!(t.stations.entries.len() <= 3);
        assert!(t.sources.entries.len() <= 3);
    }

    /// A full table keeps its backed-off records: failures on fresh ids replace
    /// each other, and the station being guessed at stays backed off.
    #[test]
    fn a_full_table_keeps_backed_off_records() {
        let t = LoginThrottle::new(&Config { limit_loopback_sources: true, ..config() });
        let ip: IpAddr = [10, 0, 0, 1].into();
        for _ in 0..3 {
            t.failed("TARGET", ip, 1_000);
        }
        assert_eq!(t.backed_off("TARGET", [10, 9, 9, 9].into(), 1_000), Some(2));
        for i in 0..50u8 {
            t.failed(&format!("RANDOM{i}"), [10, 1, 0, i].into(), 1_000 + i64::from(i));
        }
        assert!(t.stations.entries.len() <= 3);
        assert_eq!(t.backed_off("TARGET", [10, 9, 9, 9].into(), 1_050), Some(2), "the target is still backed off");
    }

    #[test]
    fn sources_are_limited_and_released() {
        let cfg = Config { max_handshakes_per_source: 2, ..Config::default() };
        let s = SourceHandshakes::new(&cfg);
        let ip: IpAddr = [10, 0, 0, 1].into();
        let a = s.enter(ip).unwrap();
        let _b = s.enter(ip).unwrap();
        assert!(s.enter(ip).is_none());
        assert!(s.enter([10, 0, 0, 2].into()).is_some());
        drop(a);
        assert!(s.enter(ip).is_some());
        // Loopback is exempt unless configured.
        for _ in 0..5 {
            assert!(s.enter([127, 0, 0, 1].into()).is_some());
        }
    }

    /// An IPv6 source is limited by its /64: the addresses of one allocation share
    /// one handshake count and one failure record; IPv4-mapped addresses count as IPv4.
    #[test]
    fn ipv6_sources_are_keyed_by_their_64_prefix() {
        let v6 = |s: &str| -> IpAddr { s.parse().unwrap() };
        assert_eq!(source_key(v6("2001:db8:1:2:aaaa::1")), v6("2001:db8:1:2::"));
        assert_eq!(source_key(v6("::ffff:10.0.0.1")), IpAddr::from([10, 0, 0, 1]));
        assert_eq!(source_key([10, 0, 0, 1].into()), IpAddr::from([10, 0, 0, 1]));

        let s = SourceHandshakes::new(&Config { max_handshakes_per_source: 2, ..Config::default() });
        let _a = s.enter(v6("2001:db8:1:2::1")).unwrap();
        let _b = s.enter(v6("2001:db8:1:2:ffff::9")).unwrap();
        assert!(s.enter(v6("2001:db8:1:2:1234::77")).is_none(), "a third address of the same /64");
        assert!(s.enter(v6("2001:db8:1:3::1")).unwrap().is_some(), "another /64");

        let t = LoginThrottle::new(&config());
        for i in 0..5u16 {
            t.failed(&format!("ID{i}"), IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 7, 7, i, 0, 0, 1)), 0);
        }
        assert_eq!(t.backed_off("OTHER", v6("2001:db8:7:7:ffff::2"), 0), Some(2), "the /64 is backed off");
        assert_eq!(t.backed_off("OTHER", v6("2001:db8:7:8::2"), 0), None);
    }

    /// Loopback sources (a proxy on the host) are not backed off as a source
    /// unless `limit_loopback_sources` is set; their station ids still are.
    #[test]
    fn loopback_sources_are_exempt_from_the_source_back_off_unless_configured() {
        let lo: IpAddr = [127, 0, 0, 1].into();
        let t = LoginThrottle::new(&config());
        for i in 0..10 {
            t.failed(&format!("ID{i}"), lo, 0);
        }
        assert_eq!(t.backed_off("HONEST", lo, 0), None, "one loopback source is many stations");
        assert!(t.sources.entries.is_empty());
        for _ in 0..3 {
            t.failed("CS1", lo, 0);
        }
        assert_eq!(t.backed_off("CS1", lo, 0), Some(2), "the station id is still backed off");

        let t = LoginThrottle::new(&Config { limit_loopback_sources: true, ..config() });
        for i in 0..5 {
            t.failed(&format!("ID{i}"), lo, 0);
        }
        assert_eq!(t.backed_off("HONEST", lo, 0), Some(2));
    }

    #[test]
    fn pool_is_bounded() {
        let cfg = Config { password_check_concurrency: Some(1), password_check_queue: 1, ..Config::default() };
        let p = PasswordPool::new(&cfg);
        let a = p.place().unwrap();
        let _b = p.place().unwrap();
        assert!(p.place().is_none());
        drop(a);
        assert!(p.place().is_some());
    }
}
