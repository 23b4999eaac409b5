//! Per-station quotas on what is stored verbatim, so that one station cannot
//! fill the database: a largest message, a token bucket of bytes per second,
//! and a cap on the bytes kept (the oldest messages go first).
//!
//! State: one small entry per station that sent something to keep (the
//! bucket and the stored volume once read), in this process.

use dashmap::DashMap;

use crate::config::Config;

/// The configured limits ([`Config`]'s `verbatim_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaLimits {
    pub bytes_per_second: u64,
    pub burst_bytes: u64,
    pub max_message_bytes: u64,
    pub max_stored_bytes: u64,
}

impl QuotaLimits {
    pub fn from_config(c: &Config) -> QuotaLimits {
        QuotaLimits {
            bytes_per_second: c.verbatim_bytes_per_second.max(1),
            burst_bytes: c.verbatim_burst_bytes,
            max_message_bytes: c.verbatim_max_message_bytes,
            max_stored_bytes: c.verbatim_max_stored_bytes,
        }
    }
}

/// Why a message is not kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("message of {size} bytes exceeds the {max}-byte limit for messages stored verbatim")]
    MessageSize { size: u64, max: u64 },
    #[error(
        "station exceeds its storage rate of {per_second} bytes/s (bursts of {burst}); {size} bytes refused, retry later"
    )]
    Rate { size: u64, per_second: u64, burst: u64 },
}

impl Refusal {
    /// The metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::MessageSize { .. } => "message_size",
            Refusal::Rate { .. } => "rate",
        }
    }

    /// DataTransferResponse.statusInfo.reasonCode (at most 20 characters).
    pub fn reason_code(&self) -> &'static str {
        match self {
            Refusal::MessageSize { .. } => "PayloadTooLarge",
            Refusal::Rate { .. } => "RateLimitExceeded",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct StationQuota {
    /// Bytes the station may still have stored at once.
    tokens: u64,
    /// When `tokens` was last topped up (Unix ms).
    refilled_at: i64,
    /// Payload bytes kept for the station, when known.
    stored: Option<u64>,
}

/// The quotas of every station.
#[derive(Debug)]
pub struct VerbatimQuota {
    limits: QuotaLimits,
    /// By (tenant, station).
    stations: DashMap<(String, String), StationQuota>,
}

impl VerbatimQuota {
    pub fn new(limits: QuotaLimits) -> VerbatimQuota {
        VerbatimQuota { limits, stations: DashMap::new() }
    }

    pub fn limits(&self) -> QuotaLimits {
        self.limits
    }

    /// Takes `size` bytes from the station's bucket at `now` (Unix ms), or
    /// says why the message may not be kept (nothing is taken then).
    pub fn admit(&self, tenant: &str, station: &str, size: u64, now: i64) -> Result<(), Refusal> {
        let l = self.limits;
        if size > l.max_message_bytes {
            return Err(Refusal::MessageSize { size, max: l.max_message_bytes });
        }
        let mut q = self.stations.entry((tenant.to_owned(), station.to_owned())).or_insert(StationQuota {
            tokens: l.burst_bytes,
            refilled_at: now,
            stored: None,
        });
        let elapsed = u64::try_from(now.saturating_sub(q.refilled_at)).unwrap_or(0);
        let refill = elapsed.saturating_mul(l.bytes_per_second) / 1000;
        if refill > 0 {
            q.tokens = q.tokens.saturating_add(refill).min(l.burst_bytes);
            // Only the time that bought whole bytes is used up.
            q.refilled_at = now;
        } else if now < q.refilled_at {
            q.refilled_at = now;
        }
        if size > q.tokens {
            return Err(Refusal::Rate { size, per_second: l.bytes_per_second, burst: l.burst_bytes });
        }
        q.tokens -= size;
        Ok(())
    }

    /// The station's stored volume, if known here.
    pub fn stored(&self, tenant: &str, station: &str) -> Option<u64> {
        self.stations.get(&(tenant.to_owned(), station.to_owned())).and_then(|q| q.stored)
    }

    /// Records the station's stored volume (`None`: read it again next time).
    pub fn set_stored(&self, tenant: &str, station: &str, stored: Option<u64>) {
        if let Some(mut q) = self.stations.get_mut(&(tenant.to_owned(), station.to_owned())) {
            q.stored = stored;
        }
    }

    /// With `stored` bytes kept and `size` more arriving: the volume to prune
    /// the station down to (this message included), if the cap is exceeded.
    /// Pruning goes an eighth below the cap, so that it is not needed again
    /// at the very next message.
    pub fn prune_to(&self, stored: u64, size: u64) -> Option<u64> {
        let cap = self.limits.max_stored_bytes;
        (stored.saturating_add(size) > cap).then(|| (cap - cap / 8).max(size).min(cap))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota() -> VerbatimQuota {
        VerbatimQuota::new(QuotaLimits {
            bytes_per_second: 1000,
            burst_bytes: 5000,
            max_message_bytes: 3000,
            max_stored_bytes: 8000,
        })
    }

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let q = quota();
        assert_eq!(q.admit("t", "CS1", 3000, 0), Ok(()));
        assert_eq!(q.admit("t", "CS1", 2000, 0), Ok(()));
        assert_eq!(q.admit("t", "CS1", 1, 0).map_err(|r| r.kind()), Err("rate"));
        // Another station, and the same id in another tenant, have their own buckets.
        assert_eq!(q.admit("t", "CS2", 3000, 0), Ok(()));
        assert_eq!(q.admit("u", "CS1", 3000, 0), Ok(()));
        // 1.5 s later: 1500 bytes back.
        assert_eq!(q.admit("t", "CS1", 1600, 1500).map_err(|r| r.kind()), Err("rate"));
        assert_eq!(q.admit("t", "CS1", 1500, 1500), Ok(()));
        // A long pause refills to the burst, not beyond.
        assert_eq!(q.admit("t", "CS1", 3000, 1_000_000), Ok(()));
        assert_eq!(q.admit("t", "CS1", 2000, 1_000_000), Ok(()));
        assert!(q.admit("t", "CS1", 1, 1_000_000).is_err());
        // Too large is refused whatever the bucket holds, and takes nothing.
        let err = q.admit("t", "CS3", 3001, 0).unwrap_err();
        assert_eq!((err.kind(), err.reason_code()), ("message_size", "PayloadTooLarge"));
        assert_eq!(q.admit("t", "CS3", 3000, 0), Ok(()));
    }

    #[test]
    fn pruning_starts_beyond_the_cap_and_keeps_the_new_message() {
        let q = quota();
        assert_eq!(q.prune_to(5000, 3000), None);
        assert_eq!(q.prune_to(5001, 3000), Some(7000));
        assert_eq!(q.prune_to(7000, 7500), Some(7500), "never below the message itself");
        q.admit("t", "CS1", 10, 0).unwrap();
        assert_eq!(q.stored("t", "CS1"), None);
        q.set_stored("t", "CS1", Some(42));
        assert_eq!(q.stored("t", "CS1"), Some(42));
    }
}
