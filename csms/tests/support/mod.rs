//! Helpers shared by csms's in-process integration tests: a station connected
//! to a node through an in-memory WebSocket, and CSRs made with rcgen.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use csms::engines::ConnectedStation;
use csms::runtime::Node;
use csms::session::SessionState;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

/// The station's end of an in-memory WebSocket.
pub type Ws = WebSocketStream<tokio::io::DuplexStream>;

/// Connects station `id` of `tenant` (Accepted, authenticated with the
/// certificate `serial` if given) to the node's sessions; the station's end.
pub async fn connect_station(node: &Node, tenant: &str, id: &str, serial: Option<String>) -> Ws {
    let (server_io, client_io) = tokio::io::duplex(64 * 1024);
    let server = WebSocketStream::from_raw_socket(server_io, Role::Server, None).await;
    let client = WebSocketStream::from_raw_socket(client_io, Role::Client, None).await;
    // As if the connect read found certificate work: the engines check for themselves.
    let station = ConnectedStation {
        tenant_id: Arc::from(tenant),
        station_id: id.into(),
        certificate_serial: serial,
        certificate_work: true,
    };
    let state = SessionState::new(station, Some(csms::store::Registration::Accepted));
    tokio::spawn(csms::session::run(node.session_context(), server, state));
    for _ in 0..200 {
        if node.link.is_connected(tenant, id) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(node.link.is_connected(tenant, id), "{id} did not connect");
    client
}

/// The next text frame the station receives.
pub async fn next_frame(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.unwrap().unwrap().unwrap();
        if let Message::Text(t) = msg {
            return serde_json::from_str(t.as_str()).unwrap();
        }
    }
}

/// Sends a frame from the station.
pub async fn send(ws: &mut Ws, frame: Value) {
    ws.send(Message::text(frame.to_string())).await.unwrap();
}

/// A P-256 CSR with CN = `cn` and, if given, O = `org`.
pub fn csr_for(cn: &str, org: Option<&str>) -> String {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::CommonName, cn);
    if let Some(o) = org {
        params.distinguished_name.push(rcgen::DnType::OrganizationName, o);
    }
    params.serialize_request(&key).unwrap().pem().unwrap()
}
