//! Latency samples and their percentiles.

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// Latencies in microseconds.
#[derive(Default, Clone)]
pub struct Samples(pub Vec<u64>);

impl Samples {
    pub fn push(&mut self, us: u64) {
        self.0.push(us);
    }

    pub fn extend(&mut self, other: Samples) {
        self.0.extend(other.0);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// p50, p90, p99, p99.9 and max, with the count, as JSON (milliseconds).
    pub fn summary(&mut self) -> Value {
        self.0.sort_unstable();
        let ms = |us: u64| (us as f64 / 10.0).round() / 100.0;
        json!({
            "count": self.0.len(),
            "p50_ms": ms(self.pct(0.50)),
            "p90_ms": ms(self.pct(0.90)),
            "p99_ms": ms(self.pct(0.99)),
            "p999_ms": ms(self.pct(0.999)),
            "max_ms": ms(self.0.last().copied().unwrap_or(0)),
        })
    }

    fn pct(&self, p: f64) -> u64 {
        if self.0.is_empty() {
            return 0;
        }
        let idx = ((self.0.len() as f64) * p).ceil() as usize;
        self.0[idx.clamp(1, self.0.len()) - 1]
    }
}

/// "p50 X p90 Y p99 Z max W ms" from a summary made by [`Samples::summary`].
pub fn line(s: &Value, with_p999: bool) -> String {
    let f = |k: &str| s[k].as_f64().unwrap_or(0.0);
    if with_p999 {
        format!(
            "p50 {:.2} p90 {:.2} p99 {:.2} p99.9 {:.2} max {:.2} ms",
            f("p50_ms"),
            f("p90_ms"),
            f("p99_ms"),
            f("p999_ms"),
            f("max_ms")
        )
    } else {
        format!("p50 {:.2} p90 {:.2} p99 {:.2} max {:.2} ms", f("p50_ms"), f("p90_ms"), f("p99_ms"), f("max_ms"))
    }
}

/// Errors counted by kind (the first line of the message, shortened).
#[derive(Default)]
pub struct Failures {
    pub by_kind: BTreeMap<String, u64>,
}

impl Failures {
    pub fn add(&mut self, e: &anyhow::Error) {
        let mut kind = format!("{e:#}");
        if kind.len() > 160 {
            let mut cut = 160;
            while !kind.is_char_boundary(cut) {
                cut -= 1;
            }
            kind.truncate(cut);
        }
        *self.by_kind.entry(kind).or_default() += 1;
    }

    pub fn merge(&mut self, other: Failures) {
        for (k, n) in other.by_kind {
            *self.by_kind.entry(k).or_default() += n;
        }
    }

    pub fn total(&self) -> u64 {
        self.by_kind.values().sum()
    }

    pub fn json(&self) -> Value {
        json!(self.by_kind)
    }

    fn commonest(&self) -> Vec<(&String, &u64)> {
        let mut v: Vec<_> = self.by_kind.iter().collect();
        v.sort_by(|a, b| b.1.cmp(a.1));
        v.truncate(5);
        v
    }

    /// Prints the commonest kinds to stderr.
    pub fn print(&self, what: &str) {
        for (k, n) in self.commonest() {
            eprintln!("  {what} failed {n}x: {k}");
        }
    }

    /// Prints the commonest kinds to stdout, as figures rather than failures.
    pub fn print_as(&self, what: &str) {
        for (k, n) in self.commonest() {
            println!("{what} {n}x: {k}");
        }
    }

    /// Counts from a JSON object of kinds (what [`Failures::json`] wrote).
    pub fn add_json(&mut self, v: &Value) {
        if let Some(m) = v.as_object() {
            for (k, n) in m {
                *self.by_kind.entry(k.clone()).or_default() += n.as_u64().unwrap_or(0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut s = Samples((1..=1000).collect());
        let v = s.summary();
        assert_eq!(v["count"], 1000);
        assert_eq!(v["p50_ms"], 0.5);
        assert_eq!(v["p99_ms"], 0.99);
        assert_eq!(v["p999_ms"], 1.0);
        assert_eq!(Samples::default().summary()["max_ms"], 0.0);
    }
}
