//! CSMS-initiated calls through a session: one in flight, correlation by id on
//! the connection, timeout, validation of the station's answer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use csms::authority::KeyBackend;
use csms::clock::SystemClock;
use csms::config::Config;
use csms::engines::ConnectedStation;
use csms::gateway::tls::{StationTrust, provider};
use csms::link::{CallFailure, StationLink};
use csms::runtime::Node;
use csms::session::SessionState;
use csms::store::{Registration, Store};
use futures_util::{SinkExt, StreamExt};
use ocpp::v201::Action;
use serde_json::{Value, json};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

type Client = WebSocketStream<tokio::io::DuplexStream>;

/// Calls to the test's one station through the node's station link.
#[derive(Clone)]
struct Handle(Arc<dyn StationLink>);

impl Handle {
    async fn call(&self, action: Action, payload: Value) -> Result<Value, CallFailure> {
        self.0.send("default", "CS1", action, payload).await
    }
}

fn handle(node: &Node) -> Handle {
    assert!(node.link.is_connected("default", "CS1"));
    Handle(node.link.clone())
}

fn gone(node: &Node) -> bool {
    !node.link.is_connected("default", "CS1")
}

async fn connected(call_timeout_secs: u64) -> (Arc<Node>, Client, tempfile::TempDir) {
    connected_with(Config { call_timeout_secs, ..Config::default() }).await
}

async fn connected_with(config: Config) -> (Arc<Node>, Client, tempfile::TempDir) {
    connected_as(config, Some(Registration::Accepted)).await
}

async fn connected_as(config: Config, registration: Option<Registration>) -> (Arc<Node>, Client, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&Store::sqlite_url(dir.path()), 2).await.unwrap();
    let keys = KeyBackend::software(Arc::new(pki::MasterKey::generate().unwrap()));
    let trust = Arc::new(StationTrust::new(provider()));
    let app = Node::new(config, store, Arc::new(SystemClock), keys, trust, None).unwrap();
    let (server_io, client_io) = tokio::io::duplex(64 * 1024);
    let server = WebSocketStream::from_raw_socket(server_io, Role::Server, None).await;
    let client = WebSocketStream::from_raw_socket(client_io, Role::Client, None).await;
    let station = ConnectedStation {
        tenant_id: Arc::from("default"),
        station_id: "CS1".into(),
        certificate_serial: None,
        certificate_work: false,
    };
    let state = SessionState::new(station, registration);
    tokio::spawn(csms::session::run(app.session_context(), server, state));
    for _ in 0..100 {
        if !gone(&app) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (app, client, dir)
}

async fn next_frame(client: &mut Client) -> Value {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), client.next()).await.unwrap().unwrap().unwrap() {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            Message::Close(c) => panic!("closed: {c:?}"),
            _ => {}
        }
    }
}

async fn send(client: &mut Client, v: Value) {
    client.send(Message::text(v.to_string())).await.unwrap();
}

#[tokio::test]
async fn call_result_reaches_the_caller() {
    let (app, mut client, _dir) = connected(5).await;
    let handle = handle(&app);
    let call = tokio::spawn(async move { handle.call(Action::Reset, json!({"type": "Immediate"})).await });
    let frame = next_frame(&mut client).await;
    assert_eq!(frame[0], 2);
    assert_eq!(frame[2], "Reset");
    assert_eq!(frame[3], json!({"type": "Immediate"}));
    // A reply with another id is dropped, the call keeps waiting.
    send(&mut client, json!([3, "someone-else", {"status": "Accepted"}])).await;
    send(&mut client, json!([3, frame[1], {"status": "Scheduled"}])).await;
    assert_eq!(call.await.unwrap(), Ok(json!({"status": "Scheduled"})));
}

#[tokio::test]
async fn one_call_in_flight_at_a_time() {
    let (app, mut client, _dir) = connected(5).await;
    let h1 = handle(&app);
    let h2 = h1.clone();
    let first = tokio::spawn(async move { h1.call(Action::Reset, json!({"type": "OnIdle"})).await });
    let f1 = next_frame(&mut client).await;
    let second = tokio::spawn(async move { h2.call(Action::ClearCache, json!({})).await });
    // The second call is not sent while the first is unanswered.
    let early = tokio::time::timeout(Duration::from_millis(300), client.next()).await;
    assert!(early.is_err(), "second call sent before the first was answered: {early:?}");
    send(&mut client, json!([3, f1[1], {"status": "Accepted"}])).await;
    let f2 = next_frame(&mut client).await;
    assert_eq!(f2[2], "ClearCache");
    assert_ne!(f1[1], f2[1], "message ids are unique per connection");
    send(&mut client, json!([4, f2[1], "InternalError", "boom", {}])).await;
    assert_eq!(first.await.unwrap(), Ok(json!({"status": "Accepted"})));
    match second.await.unwrap() {
        Err(CallFailure::Rejected { code, description }) => {
            assert_eq!(code, ocpp::ErrorCode::InternalError);
            assert_eq!(description, "boom");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn timeout_frees_the_slot() {
    let (app, mut client, _dir) = connected(1).await;
    let handle = handle(&app);
    let h = handle.clone();
    let first = tokio::spawn(async move { h.call(Action::ClearCache, json!({})).await });
    let f1 = next_frame(&mut client).await;
    assert_eq!(first.await.unwrap(), Err(CallFailure::Timeout(Duration::from_secs(1))));
    // A late answer to the timed-out call is dropped; the next call goes out.
    send(&mut client, json!([3, f1[1], {"status": "Accepted"}])).await;
    let second = tokio::spawn(async move { handle.call(Action::ClearCache, json!({})).await });
    let f2 = next_frame(&mut client).await;
    send(&mut client, json!([3, f2[1], {"status": "Rejected"}])).await;
    assert_eq!(second.await.unwrap(), Ok(json!({"status": "Rejected"})));
}

#[tokio::test]
async fn invalid_payloads_in_both_directions() {
    let (app, mut client, _dir) = connected(5).await;
    let handle = handle(&app);
    // Our own request is checked before it leaves.
    match handle.call(Action::Reset, json!({"type": "Sometime"})).await {
        Err(CallFailure::InvalidRequest(v)) => assert_eq!(v.code, ocpp::ErrorCode::PropertyConstraintViolation),
        other => panic!("{other:?}"),
    }
    // The station's answer is checked against the response schema.
    let call = tokio::spawn(async move { handle.call(Action::Reset, json!({"type": "Immediate"})).await });
    let f = next_frame(&mut client).await;
    send(&mut client, json!([3, f[1], {"status": "Maybe"}])).await;
    match call.await.unwrap() {
        Err(CallFailure::InvalidResponse(v)) => assert_eq!(v.path, "/status"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn disconnect_fails_pending_call() {
    let (app, mut client, _dir) = connected(30).await;
    let handle = handle(&app);
    let h = handle.clone();
    let sent = tokio::spawn(async move { h.call(Action::ClearCache, json!({})).await });
    let first = next_frame(&mut client).await;
    assert_eq!(first[2], "ClearCache");
    // Queued behind the one in flight: never written to the connection.
    let queued = tokio::spawn(async move { handle.call(Action::Reset, json!({"type": "Immediate"})).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    client.close(None).await.unwrap();
    // The station received the first and may have acted on it: its outcome is
    // unknown, not "not connected"; the second never left the CSMS.
    let sent = sent.await.unwrap();
    assert_eq!(sent, Err(CallFailure::ClosedAfterSending));
    assert!(sent.unwrap_err().outcome_unknown());
    let queued = queued.await.unwrap();
    assert_eq!(queued, Err(CallFailure::ClosedBeforeSending));
    assert!(!queued.unwrap_err().outcome_unknown());
    assert!(CallFailure::Timeout(Duration::from_secs(1)).outcome_unknown());
    for _ in 0..100 {
        if gone(&app) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("session still registered after disconnect");
}

#[tokio::test]
async fn silent_station_is_disconnected_after_the_idle_timeout() {
    let (app, mut client, _dir) = connected_with(Config { idle_timeout_secs: 1, ..Config::default() }).await;
    // Traffic keeps it open ...
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        send(&mut client, json!([2, "hb", "Heartbeat", {}])).await;
        assert_eq!(next_frame(&mut client).await[0], 3);
    }
    // ... silence closes it.
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match client.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(closed, Some(1001));
    for _ in 0..100 {
        if gone(&app) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("session still registered after the idle timeout");
}

#[tokio::test]
async fn malformed_reply_is_not_answered_and_fails_the_call_at_once() {
    let (app, mut client, _dir) = connected(30).await;
    let handle = handle(&app);
    let h = handle.clone();
    let call = tokio::spawn(async move { h.call(Action::ClearCache, json!({})).await });
    let f = next_frame(&mut client).await;
    // A broken CALLRESULT for another id: dropped silently, the call keeps waiting.
    send(&mut client, json!([3, "not-ours", "not an object"])).await;
    // A broken CALLERROR for the call in flight: it fails now, not after 30 s.
    send(&mut client, json!([4, f[1], 17, "x", {}])).await;
    match tokio::time::timeout(Duration::from_secs(5), call).await.unwrap().unwrap() {
        Err(CallFailure::MalformedResponse(why)) => assert!(why.contains("error code"), "{why}"),
        other => panic!("{other:?}"),
    }
    // Neither frame was answered: the next thing the station receives is our next call.
    let next = tokio::spawn(async move { handle.call(Action::ClearCache, json!({})).await });
    let f2 = next_frame(&mut client).await;
    assert_eq!(f2[0], 2, "a reply was answered: {f2}");
    send(&mut client, json!([3, f2[1], {"status": "Accepted"}])).await;
    assert_eq!(next.await.unwrap(), Ok(json!({"status": "Accepted"})));
}

#[tokio::test]
async fn pending_station_may_send_what_the_csms_asked_for() {
    let (app, mut client, _dir) = connected_as(Config::default(), Some(Registration::Pending)).await;
    let handle = handle(&app);
    let report = json!({"generatedAt": "2026-11-26T00:00:00Z", "requestId": 7, "seqNo": 0, "tbc": false});
    // B02.FR.09: unsolicited while Pending.
    send(&mut client, json!([2, "r1", "NotifyReport", report])).await;
    let refused = next_frame(&mut client).await;
    assert_eq!((refused[0].clone(), refused[2].clone()), (json!(4), json!("SecurityError")));
    // Asked for by GetBaseReport, accepted by the station: now answered.
    let h = handle.clone();
    let call = tokio::spawn(async move {
        h.call(Action::GetBaseReport, json!({"requestId": 7, "reportBase": "FullInventory"})).await
    });
    let f = next_frame(&mut client).await;
    send(&mut client, json!([3, f[1], {"status": "Accepted"}])).await;
    assert_eq!(call.await.unwrap(), Ok(json!({"status": "Accepted"})));
    send(&mut client, json!([2, "r2", "NotifyReport", report])).await;
    assert_eq!(next_frame(&mut client).await, json!([3, "r2", {}]));
    // Anything else stays refused.
    send(&mut client, json!([2, "h1", "Heartbeat", {}])).await;
    assert_eq!(next_frame(&mut client).await[2], "SecurityError");
    // A trigger the station rejects grants nothing.
    let h = handle.clone();
    let call =
        tokio::spawn(async move { h.call(Action::TriggerMessage, json!({"requestedMessage": "Heartbeat"})).await });
    let f = next_frame(&mut client).await;
    send(&mut client, json!([3, f[1], {"status": "Rejected"}])).await;
    call.await.unwrap().unwrap();
    send(&mut client, json!([2, "h2", "Heartbeat", {}])).await;
    assert_eq!(next_frame(&mut client).await[2], "SecurityError");
}

#[tokio::test]
async fn nothing_is_sent_to_a_rejected_station() {
    let (app, mut client, _dir) = connected_as(Config::default(), Some(Registration::Rejected)).await;
    let handle = handle(&app);
    assert_eq!(handle.call(Action::ClearCache, json!({})).await, Err(CallFailure::StationRejected));
    let sent = tokio::time::timeout(Duration::from_millis(300), client.next()).await;
    assert!(sent.is_err(), "a call reached a rejected station: {sent:?}");
}

#[tokio::test]
async fn current_time_is_utc_with_at_most_millisecond_precision() {
    let (_app, mut client, _dir) = connected(5).await;
    for i in 0..20 {
        send(&mut client, json!([2, format!("hb{i}"), "Heartbeat", {}])).await;
        let reply = next_frame(&mut client).await;
        let t = reply[2]["currentTime"].as_str().unwrap().to_owned();
        assert!(t.ends_with('Z'), "{t}");
        let fraction = t.split_once('.').map(|(_, f)| f.trim_end_matches('Z').len()).unwrap_or(0);
        assert!(fraction <= 3, "{t}");
        assert!(ocpp::v201::DateTime::parse(&t).is_ok(), "{t}");
    }
}
