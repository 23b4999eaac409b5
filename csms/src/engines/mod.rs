//! The seam between the core and the OCPP functional blocks.
//!
//! Each functional block is an [`Engine`] in a folder of its own. It declares
//! the station-initiated actions it answers ([`Engine::actions`]) and gets hooks:
//! when a station connects, after one of its answers was sent, when a
//! CSMS-initiated call is answered, and on the periodic maintenance tick. The
//! session routes every frame to the engine registered for its action and names
//! no engine itself; engines reach stations only through the typed
//! [`StationLink`](crate::link::StationLink) in their [`EngineContext`], and keep
//! long-running intents in the store, so that a restart resumes them.
//!
//! Adding an engine: a folder `engines/<block>/` with a type implementing
//! [`Engine`], and one line in [`crate::runtime`] registering it.

pub mod certificates;
pub mod provisioning;
pub mod reports;
pub mod security;

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

use ocpp::ErrorCode;
use ocpp::v201::{Action, Direction, Payload, Request};
use serde_json::Value;

use crate::authority::KeyBackend;
use crate::clock::Clock;
use crate::config::Config;
use crate::events::Events;
use crate::group_commit::GroupCommit;
use crate::link::{BoxFuture, CallFailure, StationLink};
use crate::metrics::Metrics;
use crate::store::{Claimant, Registration, Store, StoreError};

/// What an engine may use: the capabilities below every engine. Nothing here
/// knows a session, a socket or another engine.
pub struct EngineContext {
    pub config: Arc<Config>,
    pub store: Store,
    /// Station reports and issued certificates, persisted by group commit.
    pub writes: GroupCommit,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    pub events: Arc<Events>,
    pub link: Arc<dyn StationLink>,
    /// Where CA keys live (software, sealed; or a PKCS#11 token).
    pub keys: KeyBackend,
    /// Which process this is, for the claims it records in the store.
    pub identity: NodeIdentity,
}

/// Which process holds a claim: the node id, stable across restarts, and the
/// instance, new at every start (see [`crate::store::Claimant`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    pub node_id: String,
    pub instance_id: String,
}

impl NodeIdentity {
    /// A new instance of node `node_id`.
    pub fn start(node_id: String) -> NodeIdentity {
        NodeIdentity { node_id, instance_id: random_id() }
    }

    /// The claim this process records.
    pub fn claimant(&self) -> Claimant<'_> {
        Claimant { node: &self.node_id, instance: &self.instance_id }
    }
}

/// 16 random hex digits; the clock and process id if the system's random
/// generator fails (an instance id need only differ from earlier ones).
pub fn random_id() -> String {
    use aws_lc_rs::rand::SecureRandom;
    let mut bytes = [0u8; 8];
    match aws_lc_rs::rand::SystemRandom::new().fill(&mut bytes) {
        Ok(()) => bytes.iter().map(|b| format!("{b:02x}")).collect(),
        Err(_) => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default();
            format!("{:x}-{nanos:x}", std::process::id())
        }
    }
}

/// A connection a station holds, as engines see it.
#[derive(Debug, Clone)]
pub struct ConnectedStation {
    pub tenant_id: Arc<str>,
    pub station_id: String,
    /// Serial of the certificate the station authenticated with (profile 3).
    pub certificate_serial: Option<String>,
    /// What the connect read found: a certificate request of the station not
    /// yet settled, or an older certificate still live beside the one
    /// presented. Without either, the certificates engine has nothing to do
    /// when the station connects.
    pub certificate_work: bool,
}

/// A call from a station, validated against its action's request schema.
pub struct StationCall<'a> {
    pub station: &'a ConnectedStation,
    pub action: Action,
    /// Usually the text as the station sent it (borrowed from the frame).
    pub payload: Payload<'a>,
    /// B01-B03: how this connection's last BootNotification was answered. The
    /// session gates what the station may send on it; the engine that answers
    /// BootNotification sets it.
    pub registration: &'a mut Option<Registration>,
    /// The registration the operator had set when this connection was
    /// admitted, read with the station then, on the connection's first call
    /// within two seconds of admission only; a BootNotification takes it
    /// instead of reading it again.
    pub registration_at_admission: &'a mut Option<Registration>,
}

impl StationCall<'_> {
    /// The request as `R`; the payload is taken. The session validated it
    /// against `R`'s schema before the engine got the call.
    pub fn decode<R: Request>(&mut self) -> Result<R, HandlerError> {
        if R::ACTION != self.action {
            tracing::error!(
                call = self.action.as_str(),
                decoded = R::ACTION.as_str(),
                "engine decoded the wrong message"
            );
            return Err(HandlerError::new(ErrorCode::InternalError, "the CSMS misrouted the call"));
        }
        Ok(self.payload.take().decode::<R>()?)
    }
}

/// An engine's typed answer to a station's call. It is encoded once here and
/// validated once by the session before it is sent.
pub struct Answer {
    action: Action,
    payload: Value,
    /// The response as made, for an engine that reads it after it was sent.
    typed: Option<Box<dyn Any + Send + Sync>>,
}

impl Answer {
    pub fn new<R: Request>(response: R::Response) -> Answer {
        Answer { action: R::ACTION, payload: ocpp::v201::encode(&response), typed: None }
    }

    /// Like [`new`](Self::new), keeping the typed response for the engine's
    /// [`Engine::after_answer`] hook ([`typed`](Self::typed)).
    pub fn keep<R: Request>(response: R::Response) -> Answer {
        let payload = ocpp::v201::encode(&response);
        Answer { action: R::ACTION, payload, typed: Some(Box::new(response)) }
    }

    pub fn action(&self) -> Action {
        self.action
    }

    /// The encoded payload (what the station receives), until the session
    /// takes it to send it; hooks that run after the answer was sent use
    /// [`typed`](Self::typed).
    pub fn payload(&self) -> &Value {
        &self.payload
    }

    /// Takes the encoded payload out, to send it without a copy.
    pub(crate) fn take_payload(&mut self) -> Value {
        std::mem::take(&mut self.payload)
    }

    /// The response as the engine made it, if this answers an `R` and was
    /// made with [`keep`](Self::keep).
    pub fn typed<R: Request>(&self) -> Option<&R::Response> {
        (self.action == R::ACTION).then(|| self.typed.as_ref()?.downcast_ref::<R::Response>()).flatten()
    }
}

/// An engine's refusal, sent as a CALLERROR.
#[derive(Debug)]
pub struct HandlerError {
    pub code: ErrorCode,
    pub description: String,
}

impl HandlerError {
    pub fn new(code: ErrorCode, description: impl Into<String>) -> Self {
        HandlerError { code, description: description.into() }
    }
}

impl From<StoreError> for HandlerError {
    fn from(e: StoreError) -> Self {
        // The cause is logged; the station learns only that we could not persist.
        tracing::error!(error = %e, "storage failure while handling a call");
        HandlerError::new(ErrorCode::InternalError, "the CSMS could not store the message; retry later")
    }
}

impl From<ocpp::v201::Violation> for HandlerError {
    fn from(v: ocpp::v201::Violation) -> Self {
        HandlerError::new(v.code, format!("{}: {}", v.path, v.message))
    }
}

/// Work a hook hands back to run on its own, off the session's loop.
pub type Task = BoxFuture<'static, ()>;

/// A functional block. Hooks return work to spawn rather than running it, so a
/// slow hook never holds up a station's frames; `None` when there is nothing.
pub trait Engine: Send + Sync + 'static {
    /// Short name, for logs.
    fn name(&self) -> &'static str;

    /// Station-initiated actions this engine answers (each action has at most
    /// one engine).
    fn actions(&self) -> &'static [Action];

    /// Answers one of [`actions`](Engine::actions). Anything answered as
    /// accepted must be durable before this returns.
    fn handle<'a>(&'a self, call: StationCall<'a>) -> BoxFuture<'a, Result<Answer, HandlerError>>;

    /// A station was let in.
    fn on_connect(&self, _station: &ConnectedStation) -> Option<Task> {
        None
    }

    /// This engine's answer was sent to the station.
    fn after_answer(&self, _station: &ConnectedStation, _answer: &Answer) -> Option<Task> {
        None
    }

    /// A CSMS-initiated call to the station got its outcome (whoever sent it).
    fn on_call_answered(
        &self,
        _station: &ConnectedStation,
        _action: Action,
        _request: &Value,
        _outcome: &Result<Value, CallFailure>,
    ) -> Option<Task> {
        None
    }

    /// The periodic maintenance tick of this process (every 15 s).
    fn tick(&self) -> Option<Task> {
        None
    }
}

/// Why the engines could not be registered.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RegistryError {
    #[error("{action} is claimed by both the {first} and the {second} engine")]
    Duplicate { action: Action, first: &'static str, second: &'static str },
    #[error("the {engine} engine claims {action}, which charging stations do not send")]
    NotStationInitiated { action: Action, engine: &'static str },
}

/// The engines of this process, by the action each answers.
#[derive(Default)]
pub struct Engines {
    all: Vec<Arc<dyn Engine>>,
    by_action: HashMap<Action, Arc<dyn Engine>>,
}

impl Engines {
    /// Adds an engine; refused if it claims an action another engine has, or
    /// one a station never sends.
    pub fn register(&mut self, engine: Arc<dyn Engine>) -> Result<(), RegistryError> {
        for &action in engine.actions() {
            if !action.initiated_by().charging_station_may_send() {
                return Err(RegistryError::NotStationInitiated { action, engine: engine.name() });
            }
            if let Some(first) = self.by_action.get(&action) {
                return Err(RegistryError::Duplicate { action, first: first.name(), second: engine.name() });
            }
        }
        for &action in engine.actions() {
            self.by_action.insert(action, engine.clone());
        }
        self.all.push(engine);
        Ok(())
    }

    /// The engine answering `action`, if any.
    pub fn for_action(&self, action: Action) -> Option<&Arc<dyn Engine>> {
        self.by_action.get(&action)
    }

    pub fn all(&self) -> &[Arc<dyn Engine>] {
        &self.all
    }

    /// Runs every engine's tick, one after the other.
    pub async fn tick(&self) {
        for engine in &self.all {
            if let Some(task) = engine.tick() {
                task.await;
            }
        }
    }
}

/// Checks our own answer against the schema; a failure is our bug, reported to
/// the station as InternalError.
pub(crate) fn check_answer(answer: &Answer) -> Result<(), HandlerError> {
    ocpp::v201::validate(answer.action, Direction::Response, &answer.payload).map_err(|v| {
        tracing::error!(action = answer.action.as_str(), violation = %v, "response failed schema validation");
        HandlerError::new(ErrorCode::InternalError, "the CSMS produced an invalid response")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Claims(&'static str, &'static [Action]);

    impl Engine for Claims {
        fn name(&self) -> &'static str {
            self.0
        }
        fn actions(&self) -> &'static [Action] {
            self.1
        }
        fn handle<'a>(&'a self, _call: StationCall<'a>) -> BoxFuture<'a, Result<Answer, HandlerError>> {
            Box::pin(async { Err(HandlerError::new(ErrorCode::NotImplemented, "test")) })
        }
    }

    #[test]
    fn each_action_has_at_most_one_engine() {
        let mut engines = Engines::default();
        engines.register(Arc::new(Claims("a", &[Action::Heartbeat]))).unwrap();
        let err = engines.register(Arc::new(Claims("b", &[Action::MeterValues, Action::Heartbeat]))).unwrap_err();
        assert_eq!(err, RegistryError::Duplicate { action: Action::Heartbeat, first: "a", second: "b" });
        // A refused engine claims nothing.
        assert!(engines.for_action(Action::MeterValues).is_none());
        assert_eq!(engines.all().len(), 1);
        let err = engines.register(Arc::new(Claims("c", &[Action::Reset]))).unwrap_err();
        assert_eq!(err, RegistryError::NotStationInitiated { action: Action::Reset, engine: "c" });
    }

    #[test]
    fn answers_are_typed_and_encoded_once() {
        use ocpp::v201::{HeartbeatRequest, HeartbeatResponse, StatusNotificationRequest};
        let now = ocpp::v201::DateTime::parse("2026-01-01T00:00:00Z").unwrap();
        let a = Answer::keep::<HeartbeatRequest>(HeartbeatResponse { custom_data: None, current_time: now });
        assert_eq!(a.action(), Action::Heartbeat);
        assert_eq!(a.payload(), &serde_json::json!({"currentTime": "2026-01-01T00:00:00Z"}));
        assert_eq!(a.typed::<HeartbeatRequest>().map(|r| &r.current_time), Some(&now));
        assert!(a.typed::<StatusNotificationRequest>().is_none());
        assert!(check_answer(&a).is_ok());
        let plain = Answer::new::<HeartbeatRequest>(HeartbeatResponse { custom_data: None, current_time: now });
        assert!(plain.typed::<HeartbeatRequest>().is_none(), "only kept when asked for");
    }
}
