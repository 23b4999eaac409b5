//! Per-station quotas on what is stored verbatim, through a real session and
//! a real database (SQLite and PostgreSQL): a station over its rate or its
//! message size is refused and nothing of it is stored; its stored volume
//! never exceeds the cap; under the quotas everything is stored.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use csms::authority::KeyBackend;
use csms::clock::FixedClock;
use csms::config::Config;
use csms::gateway::tls::{StationTrust, provider};
use csms::runtime::Node;
use csms::store::Store;
use serde_json::{Value, json};

const MAX_STORED: i64 = 20_000;

async fn node(store: Store, clock: FixedClock) -> Arc<Node> {
    let config = Config {
        verbatim_bytes_per_second: 1000,
        verbatim_burst_bytes: 10_000,
        verbatim_max_message_bytes: 4000,
        verbatim_max_stored_bytes: MAX_STORED as u64,
        ..Config::default()
    };
    let keys = KeyBackend::software(Arc::new(pki::MasterKey::generate().unwrap()));
    let trust = Arc::new(StationTrust::new(provider()));
    Node::new(config, store, Arc::new(clock), keys, trust, None).unwrap()
}

/// Sends a DataTransfer with `data` of `n` characters; the station's answer payload.
async fn data_transfer(ws: &mut support::Ws, id: &str, n: usize) -> Value {
    let payload = json!({"vendorId": "com.example.flood", "messageId": "blob", "data": "x".repeat(n)});
    support::send(ws, json!([2, id, "DataTransfer", payload])).await;
    let answer = support::next_frame(ws).await;
    assert_eq!(answer[0], 3, "{answer}");
    assert_eq!(answer[1], id);
    answer[2].clone()
}

fn metric(node: &Node, kind: &str) -> String {
    let text = node.metrics.encode();
    let prefix = format!("anchorpoint_ocpp_quota_refusals_total{{kind=\"{kind}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&prefix)).unwrap_or("0").to_owned()
}

async fn station_over_its_quota_is_refused_and_stays_within_the_cap(store: Store) {
    let clock = FixedClock::at(time::OffsetDateTime::now_utc());
    let node = node(store.clone(), clock.clone()).await;
    let mut ws = support::connect_station(&node, "default", "CS-FLOOD", None).await;
    let bytes = || store.station_message_bytes("default", "CS-FLOOD");
    let count = || store.station_message_count("default", "CS-FLOOD", "DataTransfer");

    // Under the quotas: four messages of ~2 KB within the 10 KB burst, all kept.
    for i in 0..4 {
        let a = data_transfer(&mut ws, &format!("u{i}"), 2000).await;
        assert_eq!(a, json!({"status": "UnknownVendorId"}));
    }
    assert_eq!(count().await.unwrap(), 4);
    let kept = bytes().await.unwrap();

    // The burst is spent: refused, with a reason the station can read, and nothing stored.
    let a = data_transfer(&mut ws, "r1", 2000).await;
    assert_eq!(a["status"], "Rejected", "{a}");
    assert_eq!(a["statusInfo"]["reasonCode"], "RateLimitExceeded", "{a}");
    assert!(a["statusInfo"]["additionalInfo"].as_str().unwrap().contains("1000 bytes/s"), "{a}");
    assert_eq!((count().await.unwrap(), bytes().await.unwrap()), (4, kept));
    // A report whose answer is empty gets a CALLERROR instead.
    let event = json!({"generatedAt": "2026-01-01T00:00:00Z", "seqNo": 0, "eventData": [{
        "eventId": 1, "timestamp": "2026-01-01T00:00:00Z", "trigger": "Alerting", "actualValue": "y".repeat(2000),
        "eventNotificationType": "HardWiredNotification",
        "component": {"name": "EVSE"}, "variable": {"name": "Problem"}}]});
    support::send(&mut ws, json!([2, "e1", "NotifyEvent", event])).await;
    let answer = support::next_frame(&mut ws).await;
    assert_eq!((answer[0].clone(), answer[2].clone()), (json!(4), json!("GenericError")), "{answer}");
    assert_eq!(store.station_message_count("default", "CS-FLOOD", "NotifyEvent").await.unwrap(), 0);

    // Too large to keep, whatever the bucket holds.
    clock.advance(60);
    let a = data_transfer(&mut ws, "big", 5000).await;
    assert_eq!(a["statusInfo"]["reasonCode"], "PayloadTooLarge", "{a}");
    assert_eq!(count().await.unwrap(), 4);

    // At the allowed rate, far more than the cap over time: the oldest go, the
    // station's volume never exceeds the cap, and the newest is always kept.
    for i in 0..30 {
        clock.advance(3);
        let a = data_transfer(&mut ws, &format!("s{i}"), 2000).await;
        assert_eq!(a, json!({"status": "UnknownVendorId"}), "message {i}");
        let stored = bytes().await.unwrap();
        assert!(stored <= MAX_STORED, "{stored} bytes stored after message {i}");
        assert!(stored > MAX_STORED / 2, "pruning keeps most of the quota: {stored}");
    }
    assert!(count().await.unwrap() < 34);

    assert_eq!(metric(&node, "rate"), "2");
    assert_eq!(metric(&node, "message_size"), "1");
}

#[tokio::test]
async fn sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&Store::sqlite_url(dir.path()), 4).await.unwrap();
    station_over_its_quota_is_refused_and_stays_within_the_cap(store).await;
}

#[tokio::test]
async fn postgres() {
    let base =
        std::env::var("ANCHORPOINT_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let name = format!(
        "ap_quota_{}_{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() % 1_000_000_000_000
    );
    {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&base).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut c).await.unwrap();
    }
    let (prefix, _) = base.rsplit_once('/').unwrap();
    let store = Store::open(&format!("{prefix}/{name}"), 4).await.unwrap();
    station_over_its_quota_is_refused_and_stays_within_the_cap(store).await;
}
