//! The engine seam from outside the crate: an engine written here, registered
//! beside nothing else, answers its action through a real session and gets
//! every hook (on connect, after its answer was sent, on a CSMS call's outcome).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use csms::engines::{Answer, ConnectedStation, Engine, Engines, HandlerError, StationCall, Task};
use csms::events::Events;
use csms::link::{BoxFuture, CallFailure, StationLink};
use csms::metrics::Metrics;
use csms::session::{SessionContext, SessionState, Sessions};
use ocpp::v201::{Action, DataTransferRequest, DataTransferResponse, DataTransferStatusEnumType};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;

/// What the test engine saw, in order.
#[derive(Debug, PartialEq)]
enum Seen {
    Connected(String),
    Handled(String),
    AfterAnswer(String),
    CallAnswered(Action, Result<Value, CallFailure>),
    Tick,
}

struct Recorder(mpsc::UnboundedSender<Seen>);

impl Engine for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }

    fn actions(&self) -> &'static [Action] {
        &[Action::DataTransfer]
    }

    fn handle<'a>(&'a self, mut call: StationCall<'a>) -> BoxFuture<'a, Result<Answer, HandlerError>> {
        Box::pin(async move {
            let req: DataTransferRequest = call.decode()?;
            let _ = self.0.send(Seen::Handled(req.vendor_id.clone()));
            Ok(Answer::keep::<DataTransferRequest>(DataTransferResponse {
                custom_data: None,
                data: Some(json!(format!("hello {}", req.vendor_id))),
                status: DataTransferStatusEnumType::Accepted,
                status_info: None,
            }))
        })
    }

    fn on_connect(&self, station: &ConnectedStation) -> Option<Task> {
        let (tx, id) = (self.0.clone(), station.station_id.clone());
        Some(Box::pin(async move {
            let _ = tx.send(Seen::Connected(id));
        }))
    }

    fn after_answer(&self, _station: &ConnectedStation, answer: &Answer) -> Option<Task> {
        let data = answer.typed::<DataTransferRequest>()?.data.clone()?;
        let tx = self.0.clone();
        Some(Box::pin(async move {
            let _ = tx.send(Seen::AfterAnswer(data.as_str().unwrap_or_default().to_owned()));
        }))
    }

    fn on_call_answered(
        &self,
        _station: &ConnectedStation,
        action: Action,
        _request: &Value,
        outcome: &Result<Value, CallFailure>,
    ) -> Option<Task> {
        let (tx, outcome) = (self.0.clone(), outcome.clone());
        Some(Box::pin(async move {
            let _ = tx.send(Seen::CallAnswered(action, outcome));
        }))
    }

    fn tick(&self) -> Option<Task> {
        let tx = self.0.clone();
        Some(Box::pin(async move {
            let _ = tx.send(Seen::Tick);
        }))
    }
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap()
}

#[tokio::test]
async fn an_engine_from_outside_gets_its_calls_and_every_hook() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut engines = Engines::default();
    engines.register(Arc::new(Recorder(tx))).unwrap();
    let engines = Arc::new(engines);
    let sessions = Arc::new(Sessions::default());
    let clock: Arc<dyn csms::clock::Clock> = Arc::new(csms::clock::SystemClock);
    let ctx = Arc::new(SessionContext {
        sessions: sessions.clone(),
        engines: engines.clone(),
        metrics: Arc::new(Metrics::new()),
        events: Arc::new(Events::new(clock)),
        call_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(60),
    });
    let (server_io, client_io) = tokio::io::duplex(64 * 1024);
    let server = WebSocketStream::from_raw_socket(server_io, Role::Server, None).await;
    let mut ws = WebSocketStream::from_raw_socket(client_io, Role::Client, None).await;
    let station = ConnectedStation {
        tenant_id: Arc::from("t"),
        station_id: "ENG-1".into(),
        certificate_serial: None,
        certificate_work: false,
    };
    tokio::spawn(csms::session::run(
        ctx,
        server,
        SessionState::new(station, Some(csms::store::Registration::Accepted)),
    ));
    assert_eq!(next(&mut rx).await, Seen::Connected("ENG-1".into()));

    // Its action reaches it, decoded; its typed answer goes out, then its hook runs.
    support::send(&mut ws, json!([2, "d1", "DataTransfer", {"vendorId": "acme"}])).await;
    assert_eq!(next(&mut rx).await, Seen::Handled("acme".into()));
    let reply = support::next_frame(&mut ws).await;
    assert_eq!(reply, json!([3, "d1", {"data": "hello acme", "status": "Accepted"}]));
    assert_eq!(next(&mut rx).await, Seen::AfterAnswer("hello acme".into()));

    // An action no engine claims is NotImplemented; nothing reaches the engine.
    support::send(&mut ws, json!([2, "h1", "Heartbeat", {}])).await;
    assert_eq!(support::next_frame(&mut ws).await[2], "NotImplemented");

    // A CSMS call through the link: every engine hears its outcome.
    let link: Arc<dyn StationLink> = sessions;
    let call = tokio::spawn(async move { link.send("t", "ENG-1", Action::ClearCache, json!({})).await });
    let sent = support::next_frame(&mut ws).await;
    support::send(&mut ws, json!([3, sent[1], {"status": "Rejected"}])).await;
    assert_eq!(call.await.unwrap(), Ok(json!({"status": "Rejected"})));
    assert_eq!(next(&mut rx).await, Seen::CallAnswered(Action::ClearCache, Ok(json!({"status": "Rejected"}))));

    // The maintenance tick reaches it too.
    engines.tick().await;
    assert_eq!(next(&mut rx).await, Seen::Tick);
}
