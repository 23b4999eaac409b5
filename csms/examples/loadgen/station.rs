//! One simulated charging station: TCP from one of several loopback source
//! addresses, TLS 1.3 (full handshake, no resumption; mutual for profile 3),
//! the WebSocket upgrade with `ocpp2.0.1` (and HTTP Basic for profile 2),
//! BootNotification (retried after the interval while Pending, as B02 asks),
//! then calls one at a time.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, http::HeaderValue};

use crate::provision::Creds;

pub type Ws = tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>;

/// One OCPP listener of the server (a node).
pub struct Endpoint {
    pub host: String,
    pub addr: SocketAddr,
    pub url: String,
}

/// How to reach the server: one endpoint, or one per node (station `n` always
/// reaches the same node, chosen by a hash of `n` as a load balancer hashing
/// on the station would).
pub struct Target {
    pub endpoints: Vec<Endpoint>,
    pub roots: Arc<rustls::RootCertStore>,
    pub sources: Vec<Ipv4Addr>,
    /// BootNotification answers with status Pending, over all stations.
    pub pendings: AtomicU64,
    /// How long one answer may take before the call counts as failed.
    pub answer_timeout: Duration,
    /// Security profile: 3 presents the station's certificate, 2 its password.
    pub profile: u8,
}

impl Endpoint {
    /// `wss://HOST:PORT`; the host must resolve to an IPv4 loopback address
    /// (the tool binds its sockets to 127.0.0.x).
    fn parse(url: &str) -> anyhow::Result<Endpoint> {
        let rest = url.strip_prefix("wss://").with_context(|| format!("--url {url}: must start with wss://"))?;
        let (host, port) =
            rest.trim_end_matches('/').rsplit_once(':').with_context(|| format!("--url {url}: needs a port"))?;
        let port: u16 = port.parse().with_context(|| format!("--url {url}: port {port:?}"))?;
        let ip: Ipv4Addr = if host == "localhost" {
            Ipv4Addr::LOCALHOST
        } else {
            host.parse().with_context(|| format!("--url host {host:?}: give localhost or an IPv4 loopback address"))?
        };
        anyhow::ensure!(ip.is_loopback(), "--url host {host}: the tool only drives loopback servers");
        Ok(Endpoint {
            host: host.to_owned(),
            addr: SocketAddr::from((ip, port)),
            url: url.trim_end_matches('/').to_owned(),
        })
    }
}

impl Target {
    pub fn new(urls: &[String], roots: rustls::RootCertStore, sources: usize, profile: u8) -> anyhow::Result<Target> {
        anyhow::ensure!(!urls.is_empty(), "--url wss://localhost:PORT is needed");
        let endpoints = urls.iter().map(|u| Endpoint::parse(u)).collect::<anyhow::Result<Vec<_>>>()?;
        let sources = (1..=sources.clamp(1, 254)).map(|k| Ipv4Addr::new(127, 0, 0, k as u8)).collect();
        Ok(Target {
            endpoints,
            roots: Arc::new(roots),
            sources,
            pendings: AtomicU64::new(0),
            answer_timeout: Duration::from_secs(60),
            profile,
        })
    }

    /// A scenario connects evenly spaced stations of the fleet (every second
    /// one when the fleet is twice the count): `n % K` would send them all to
    /// the same node or source, a hash spreads them.
    fn spread(n: usize) -> u64 {
        crate::scenarios::splitmix64(&mut (n as u64))
    }

    fn source(&self, n: usize) -> Ipv4Addr {
        self.sources[(Self::spread(n) >> 32) as usize % self.sources.len()]
    }

    /// The node station `n` connects to.
    pub fn endpoint(&self, n: usize) -> &Endpoint {
        &self.endpoints[(Self::spread(n) & 0xFFFF_FFFF) as usize % self.endpoints.len()]
    }
}

/// Where the time of one connect went.
#[derive(Clone, Copy, Debug)]
pub struct ConnectTimes {
    pub tls: Duration,
    pub upgrade: Duration,
    pub boot: Duration,
    pub total: Duration,
}

/// A refusal a real charger retries after a back-off (TCP refused or reset,
/// an HTTP error at the upgrade, a closed connection), told apart from a
/// station that would never get in (certificate refused, boot Rejected).
#[derive(Debug)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "refused: {}", self.0)
    }
}
impl std::error::Error for Refused {}

pub fn client_config(
    creds: &Creds,
    roots: &Arc<rustls::RootCertStore>,
    profile: u8,
) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let builder = rustls::ClientConfig::builder_with_provider(csms::gateway::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots.clone());
    let mut config = if profile == 3 {
        builder.with_client_auth_cert(creds.chain.clone(), creds.key())?
    } else {
        builder.with_no_client_auth()
    };
    // A full handshake every time: the cost the figures are about.
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// A TCP connection from source address `n % K` to `addr`.
pub async fn tcp(target_addr: SocketAddr, source: Ipv4Addr) -> std::io::Result<TcpStream> {
    let sock = TcpSocket::new_v4()?;
    // Bound to a port before connecting, a socket cannot share a local port
    // with a connection to another peer nor reuse one still in TIME_WAIT, so
    // back-to-back runs ran out of ports ("Address already in use"). The
    // first address is where the kernel would connect from anyway: unbound,
    // it picks the port for the whole 4-tuple, and reuses TIME_WAIT ports on
    // loopback (net.ipv4.tcp_tw_reuse).
    if source != Ipv4Addr::LOCALHOST || !target_addr.ip().is_loopback() {
        sock.set_reuseaddr(true)?;
        sock.bind(SocketAddr::from((source, 0)))?;
    }
    let s = sock.connect(target_addr).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Connects station `n` and boots it.
pub async fn connect(target: &Target, n: usize, creds: &Creds) -> anyhow::Result<(Ws, ConnectTimes)> {
    let config = client_config(creds, &target.roots, target.profile)?;
    let t0 = Instant::now();
    let end = target.endpoint(n);
    let tcp = tcp(end.addr, target.source(n)).await.map_err(|e| Refused(format!("tcp: {e}")))?;
    let name = ServerName::try_from(end.host.clone())?;
    let tls = tokio::time::timeout(target.answer_timeout, tokio_rustls::TlsConnector::from(config).connect(name, tcp))
        .await
        .map_err(|_| Refused("TLS handshake timed out".into()))?
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::InvalidData {
                anyhow::anyhow!("TLS: {e}")
            } else {
                Refused(format!("TLS: {e}")).into()
            }
        })?;
    let t_tls = t0.elapsed();
    let mut req = format!("{}/ocpp/{}", end.url, creds.id).into_client_request()?;
    req.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static("ocpp2.0.1"));
    if target.profile == 2 {
        use base64::Engine;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", creds.id, creds.password()));
        req.headers_mut().insert("Authorization", HeaderValue::from_str(&format!("Basic {basic}"))?);
    }
    let ws_config = WebSocketConfig::default().read_buffer_size(4096);
    let (mut ws, _) = tokio::time::timeout(
        target.answer_timeout,
        tokio_tungstenite::client_async_with_config(req, tls, Some(ws_config)),
    )
    .await
    .map_err(|_| Refused("upgrade timed out".into()))?
    .map_err(|e| Refused(format!("upgrade: {e}")))?;
    let t_up = t0.elapsed();
    boot(target, &mut ws).await?;
    let total = t0.elapsed();
    Ok((ws, ConnectTimes { tls: t_tls, upgrade: t_up - t_tls, boot: total - t_up, total }))
}

const BOOT: &str = r#"{"reason":"PowerUp","chargingStation":{"model":"LG-22","vendorName":"Anchorpoint loadgen","serialNumber":"LG0001","firmwareVersion":"1.0.0"}}"#;

/// BootNotification until Accepted: Pending is retried after its interval.
async fn boot(target: &Target, ws: &mut Ws) -> anyhow::Result<()> {
    for attempt in 0u32.. {
        let reply = call(ws, &format!("b{attempt}"), "BootNotification", BOOT, target.answer_timeout).await?;
        let status = reply["status"].as_str().unwrap_or("");
        match status {
            "Accepted" => return Ok(()),
            "Pending" => {
                target.pendings.fetch_add(1, Ordering::Relaxed);
                let secs = reply["interval"].as_u64().unwrap_or(1).clamp(1, 600);
                wait_answering(ws, Duration::from_secs(secs)).await?;
            }
            _ => bail!("BootNotification answered {reply}"),
        }
    }
    unreachable!()
}

/// A CALL from the server is answered with a CALLERROR (the simulated
/// station implements no CSMS-initiated action).
async fn answer_server_call(ws: &mut Ws, frame: &Value) -> anyhow::Result<()> {
    let id = frame.get(1).cloned().unwrap_or(Value::Null);
    let reply = serde_json::json!([4, id, "NotImplemented", "loadgen station", {}]);
    ws.send(Message::text(reply.to_string())).await?;
    Ok(())
}

/// Reads for `d`, answering what the server asks.
pub async fn wait_answering(ws: &mut Ws, d: Duration) -> anyhow::Result<()> {
    let until = Instant::now() + d;
    loop {
        match tokio::time::timeout_at(until, ws.next()).await {
            Err(_) => return Ok(()),
            Ok(m) => handle_unsolicited(ws, m).await?,
        }
    }
}

/// What arrived while no call of ours was outstanding.
pub async fn handle_unsolicited(
    ws: &mut Ws,
    m: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
) -> anyhow::Result<()> {
    match m {
        Some(Ok(Message::Text(t))) => {
            let v: Value = serde_json::from_str(t.as_str())?;
            if v[0] == 2 {
                answer_server_call(ws, &v).await?;
            }
            Ok(())
        }
        Some(Ok(Message::Close(c))) => Err(Refused(format!("closed by the server: {c:?}")).into()),
        Some(Ok(_)) => Ok(()),
        Some(Err(e)) => Err(Refused(format!("connection: {e}")).into()),
        None => Err(Refused("connection closed".into()).into()),
    }
}

/// Sends one CALL and waits for its CALLRESULT; a CALLERROR is an error.
pub async fn call(ws: &mut Ws, id: &str, action: &str, payload: &str, timeout: Duration) -> anyhow::Result<Value> {
    ws.send(Message::text(format!(r#"[2,"{id}","{action}",{payload}]"#)))
        .await
        .map_err(|e| Refused(format!("send: {e}")))?;
    let until = Instant::now() + timeout;
    loop {
        let m = tokio::time::timeout_at(until, ws.next())
            .await
            .map_err(|_| anyhow::anyhow!("{action}: no answer within {} s", timeout.as_secs()))?;
        if let Some(v) = answer_to(ws, m, id).await? {
            return check_result(action, v);
        }
    }
}

/// The answer to call `id` if `m` is it; server CALLs are answered meanwhile.
pub async fn answer_to(
    ws: &mut Ws,
    m: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    id: &str,
) -> anyhow::Result<Option<Value>> {
    let Some(Ok(Message::Text(t))) = &m else {
        handle_unsolicited(ws, m).await?;
        return Ok(None);
    };
    let v: Value = serde_json::from_str(t.as_str())?;
    if v[0] == 2 {
        answer_server_call(ws, &v).await?;
        return Ok(None);
    }
    if v[1] != id {
        return Ok(None);
    }
    Ok(Some(v))
}

/// The payload of a CALLRESULT; a CALLERROR is an error naming its code.
pub fn check_result(action: &str, v: Value) -> anyhow::Result<Value> {
    match v[0].as_u64() {
        Some(3) => Ok(v[2].clone()),
        Some(4) => bail!("{action} answered CALLERROR {} {}", v[2], v[3]),
        _ => bail!("{action}: unexpected frame {v}"),
    }
}

/// Whether `e` is a refusal to retry after a back-off.
pub fn is_refusal(e: &anyhow::Error) -> bool {
    e.downcast_ref::<Refused>().is_some()
}

/// The station-initiated calls of the steady mix, Heartbeat :
/// StatusNotification : MeterValues = 1 : 1 : 4, as (action, payload).
pub fn mix_call(k: u64, now_rfc3339: &str, energy_wh: u64) -> (&'static str, String) {
    match k % 6 {
        0 => ("Heartbeat", "{}".to_owned()),
        1 => (
            "StatusNotification",
            format!(
                r#"{{"timestamp":"{now_rfc3339}","connectorStatus":"{}","evseId":1,"connectorId":1}}"#,
                if k % 12 == 1 { "Occupied" } else { "Available" }
            ),
        ),
        _ => ("MeterValues", meter_values(now_rfc3339, energy_wh)),
    }
}

/// A MeterValuesRequest as a 3-phase AC charger sends it every sample
/// interval: energy register, power, current and voltage per phase, the
/// offered current, frequency and the EV's state of charge.
pub fn meter_values(ts: &str, energy_wh: u64) -> String {
    let mut sv: Vec<String> = vec![format!(
        r#"{{"value":{energy_wh},"context":"Sample.Periodic","measurand":"Energy.Active.Import.Register","location":"Outlet","unitOfMeasure":{{"unit":"Wh","multiplier":0}}}}"#
    )];
    sv.push(
        r#"{"value":11040.5,"context":"Sample.Periodic","measurand":"Power.Active.Import","location":"Outlet","unitOfMeasure":{"unit":"W"}}"#
            .to_owned(),
    );
    for (phase, amps, volts) in [("L1", 15.9, 230.4), ("L2", 16.1, 231.0), ("L3", 15.8, 229.7)] {
        sv.push(format!(
            r#"{{"value":{amps},"context":"Sample.Periodic","measurand":"Current.Import","phase":"{phase}","location":"Outlet","unitOfMeasure":{{"unit":"A"}}}}"#
        ));
        sv.push(format!(
            r#"{{"value":{volts},"context":"Sample.Periodic","measurand":"Voltage","phase":"{phase}-N","location":"Outlet","unitOfMeasure":{{"unit":"V"}}}}"#
        ));
    }
    sv.push(
        r#"{"value":16,"context":"Sample.Periodic","measurand":"Current.Offered","unitOfMeasure":{"unit":"A"}}"#
            .to_owned(),
    );
    sv.push(r#"{"value":50.01,"context":"Sample.Periodic","measurand":"Frequency"}"#.to_owned());
    sv.push(r#"{"value":64,"context":"Sample.Periodic","measurand":"SoC","location":"EV","unitOfMeasure":{"unit":"Percent"}}"#.to_owned());
    format!(r#"{{"evseId":1,"meterValue":[{{"timestamp":"{ts}","sampledValue":[{}]}}]}}"#, sv.join(","))
}

/// Now as RFC 3339 (whole seconds, UTC).
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc().replace_nanosecond(0).unwrap_or_else(|_| time::OffsetDateTime::now_utc());
    now.format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| "2026-01-01T00:00:00Z".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_is_valid_ocpp() {
        let ts = "2026-01-01T00:00:00Z";
        let mut counts = std::collections::BTreeMap::new();
        for k in 0..12 {
            let (action, payload) = mix_call(k, ts, 1234);
            *counts.entry(action).or_insert(0) += 1;
            let a = ocpp::v201::Action::from_name(action).unwrap();
            let v: Value = serde_json::from_str(&payload).unwrap();
            let checked = ocpp::v201::validate(a, ocpp::v201::Direction::Request, &v);
            assert!(checked.is_ok(), "{action} {payload}: {checked:?}");
        }
        assert_eq!(counts["Heartbeat"], 2);
        assert_eq!(counts["StatusNotification"], 2);
        assert_eq!(counts["MeterValues"], 8);
        let v: Value = serde_json::from_str(&meter_values(ts, 1)).unwrap();
        let boot: Value = serde_json::from_str(BOOT).unwrap();
        let a = ocpp::v201::Action::from_name("BootNotification").unwrap();
        assert!(ocpp::v201::validate(a, ocpp::v201::Direction::Request, &boot).is_ok());
        assert_eq!(v["meterValue"][0]["sampledValue"].as_array().unwrap().len(), 11);
    }
}
