//! Deterministic mutation smoke test of the network-facing entry points:
//! `Frame::parse` and `v201::validate` / `decode_request` must never panic,
//! whatever bytes arrive. (A cargo-fuzz target would explore further; this
//! keeps a cheap, dependency-free guard in `cargo test`.)

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use ocpp::Frame;
use ocpp::v201::{self, Action, Direction};

const SEEDS: &[&str] = &[
    r#"[2,"19223201","BootNotification",{"reason":"PowerUp","chargingStation":{"model":"SingleSocketCharger","vendorName":"VendorX","modem":{"iccid":"1","imsi":"2"}}}]"#,
    r#"[2,"a","TransactionEvent",{"eventType":"Started","timestamp":"2024-01-01T00:00:00Z","triggerReason":"Authorized","seqNo":0,"transactionInfo":{"transactionId":"t1"},"meterValue":[{"timestamp":"2024-01-01T00:00:00Z","sampledValue":[{"value":1.5}]}]}]"#,
    r#"[3,"b",{"currentTime":"2024-01-01T00:00:00Z","interval":300,"status":"Accepted"}]"#,
    r#"[4,"c","FormatViolation","bad",{"k":[1,2,{"x":null}]}]"#,
    r#"[2,"d","DataTransfer",{"vendorId":"v","data":{"deep":[[[[1]]]]}}]"#,
];

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const INTERESTING: &[&[u8]] = &[
    b"[",
    b"]",
    b"{",
    b"}",
    b"\"",
    b",",
    b":",
    b"null",
    b"-1",
    b"1e999",
    b"0.5",
    b"\\u0000",
    b"\\ud800",
    b"9999999999999999999999",
    b"true",
    b"[[[[[[[[",
    b"\xff",
    b"\xe2\x82",
];

fn mutate(rng: &mut XorShift, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(4) {
        let pos = rng.below(out.len() + 1);
        match rng.below(4) {
            0 if !out.is_empty() => {
                let end = (pos + rng.below(8)).min(out.len());
                out.drain(pos.min(end)..end);
            }
            1 => {
                let piece = INTERESTING[rng.below(INTERESTING.len())];
                out.splice(pos..pos, piece.iter().copied());
            }
            2 if pos < out.len() => out[pos] = rng.next() as u8,
            _ => {
                let from = rng.below(out.len().max(1));
                let end = (from + rng.below(16)).min(out.len());
                let copy = out[from..end].to_vec();
                out.splice(pos..pos, copy);
            }
        }
    }
    out
}

fn exercise(text: &str) -> bool {
    let Ok(frame) = Frame::parse(text) else {
        return false;
    };
    let _ = frame.to_json();
    if let Frame::Call(call) = &frame
        && let Some(action) = Action::from_name(&call.action)
    {
        let _ = v201::validate(action, Direction::Request, &call.payload);
        let _ = v201::validate(action, Direction::Response, &call.payload);
        if action == Action::BootNotification {
            let _ = v201::decode_request::<v201::BootNotificationRequest>(call.payload.clone());
        }
    }
    true
}

#[test]
fn mutated_frames_never_panic() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut parsed = 0;
    for seed in SEEDS {
        assert!(exercise(seed), "seed must parse: {seed}");
    }
    for i in 0..20_000 {
        let seed = SEEDS[i % SEEDS.len()].as_bytes();
        let bytes = mutate(&mut rng, seed);
        let text = String::from_utf8_lossy(&bytes);
        if exercise(&text) {
            parsed += 1;
        }
    }
    // Some mutants must still be frames, or the test explores nothing past the JSON parser.
    assert!(parsed > 1000, "only {parsed} mutants parsed");
}
