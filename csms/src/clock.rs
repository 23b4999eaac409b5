//! Injected time, so validity periods, intervals and timeouts are testable.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use time::OffsetDateTime;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> OffsetDateTime;

    /// Unix milliseconds, the unit every stored time uses.
    fn now_millis(&self) -> i64 {
        unix_millis(self.now())
    }
}

pub fn unix_millis(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// The inverse of [`unix_millis`] (the epoch for values out of range).
pub fn from_unix_millis(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// The operating system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that only moves when told to (millisecond steps); clones share the
/// time. For tests of time-dependent rules, and for issuing certificates at a
/// chosen time.
#[derive(Debug, Clone)]
pub struct FixedClock(Arc<AtomicI64>);

impl FixedClock {
    pub fn at(t: OffsetDateTime) -> Self {
        FixedClock(Arc::new(AtomicI64::new(unix_millis(t))))
    }

    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs.saturating_mul(1000), Ordering::SeqCst);
    }

    pub fn advance_millis(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for FixedClock {
    fn now(&self) -> OffsetDateTime {
        from_unix_millis(self.0.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_clock_moves_only_when_told_and_clones_share_it() {
        let t = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let clock = FixedClock::at(t);
        let other = clock.clone();
        assert_eq!(clock.now(), t);
        other.advance(90);
        other.advance_millis(5);
        assert_eq!(clock.now_millis(), 1_800_000_090_005);
    }
}
