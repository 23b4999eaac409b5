//! The time-dependent rules, tested with injected time (a `FixedClock` the
//! node reads) instead of waiting: the A03 rate limit, the takeover of a claim
//! left by a dead process, the back-off of automatic renewal after a refusal,
//! certificate expiry at the gateway, and the end of a replaced CA's overlap.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use api::model as m;
use csms::authority::KeyBackend;
use csms::clock::{Clock, FixedClock};
use csms::config::Config;
use csms::gateway::identity::{self, Refusal, Transport};
use csms::gateway::tls::{StationTrust, provider};
use csms::runtime::Node;
use csms::store::{RequestChange, Store};
use rustls::pki_types::CertificateDer;
use serde_json::{Value, json};
use support::{Ws, connect_station, csr_for, next_frame, send};

const TENANT: &str = "alpha";
const ORG: &str = "Alpha Charging";

struct Rig {
    node: Arc<Node>,
    clock: FixedClock,
    _dir: tempfile::TempDir,
}

async fn rig(config: Config) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&Store::sqlite_url(dir.path()), 4).await.unwrap();
    let keys = KeyBackend::software(Arc::new(pki::MasterKey::generate().unwrap()));
    let clock = FixedClock::at(time::OffsetDateTime::now_utc());
    csms::authority::ensure_tenant(&store, &keys, &clock, TENANT, ORG, None).await.unwrap();
    let trust = Arc::new(StationTrust::new(provider()));
    trust.reload(&csms::authority::station_trust_roots(&store, clock.now_millis()).await.unwrap()).unwrap();
    let config = Config { data_dir: dir.path().to_owned(), password_hash_iterations: 1000, ..config };
    let node = Node::new(config, store, Arc::new(clock.clone()), keys, trust, None).unwrap();
    Rig { node, clock, _dir: dir }
}

impl Rig {
    async fn station(&self, id: &str) {
        let s = m::NewStation {
            id: id.into(),
            security_profile: 3,
            password: None,
            registration: None,
            description: None,
            tags: None,
        };
        self.node.services.create_station(TENANT, s).await.unwrap();
    }

    /// Enrolls `id` for `days`; its chain (DER, leaf first) and serial.
    async fn enroll(&self, id: &str, days: u32) -> (Vec<CertificateDer<'static>>, String) {
        let req = m::EnrollRequest { csr: csr_for(id, None), validity_days: Some(days) };
        let (chain, rec) = self.node.services.enroll(TENANT, id, req).await.unwrap();
        let der = pki::pem_to_der_chain(&chain).unwrap().into_iter().map(CertificateDer::from).collect();
        (der, rec.serial_hex)
    }

    async fn requests(&self, id: &str) -> Vec<csms::store::CertRequest> {
        self.node.store.cert_requests(TENANT, id, 50).await.unwrap()
    }

    /// What the gateway decides for `id` presenting `chain` now.
    async fn admit(&self, id: &str, chain: &[CertificateDer<'static>]) -> Result<(), Refusal> {
        let transport = Transport { tls: true, client_chain: Some(chain.to_vec()), sni: None };
        identity::authenticate(&self.node.gateway, id, SOURCE, &transport, None).await.map(|_| ())
    }

    /// What the gateway decides for `id` sending HTTP Basic `id:password` over TLS.
    async fn admit_basic(&self, id: &str, password: &str) -> Result<(), Refusal> {
        use base64::Engine;
        let transport = Transport { tls: true, client_chain: None, sni: None };
        let header = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{id}:{password}")));
        identity::authenticate(&self.node.gateway, id, SOURCE, &transport, Some(&header)).await.map(|_| ())
    }
}

const SOURCE: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7));

/// Sends a SignCertificate and returns the station's answer to it.
async fn sign_certificate(ws: &mut Ws, id: &str, csr: &str) -> Value {
    send(ws, json!([2, id, "SignCertificate", {"csr": csr}])).await;
    let reply = next_frame(ws).await;
    assert_eq!((reply[0].clone(), reply[1].clone()), (json!(3), json!(id)), "{reply}");
    reply[2].clone()
}

/// Issue 10: after failed passwords a station id is backed off on the gateway's
/// clock: the right password is refused until the back-off ends, which doubles
/// with each further failure; a success clears the record.
#[tokio::test]
async fn login_back_off_follows_the_clock() {
    let config = Config {
        login_failures_per_station: 3,
        login_backoff_initial_secs: 10,
        login_backoff_max_secs: 25,
        ..Config::default()
    };
    let rig = rig(config).await;
    let s = m::NewStation {
        id: "P-2".into(),
        security_profile: 2,
        password: Some("a-long-basic-password-1".into()),
        registration: None,
        description: None,
        tags: None,
    };
    rig.node.services.create_station(TENANT, s).await.unwrap();
    let (right, wrong) = ("a-long-basic-password-1", "a-long-basic-password-2");
    for _ in 0..3 {
        assert_eq!(rig.admit_basic("P-2", wrong).await, Err(Refusal::WrongPassword));
    }
    assert_eq!(rig.admit_basic("P-2", right).await, Err(Refusal::TooManyFailures { retry_after_secs: 10 }));
    rig.clock.advance(9);
    assert_eq!(rig.admit_basic("P-2", right).await, Err(Refusal::TooManyFailures { retry_after_secs: 1 }));
    rig.clock.advance(1);
    // The back-off is over: one more failure doubles it (20 s), then the cap (25 s).
    assert_eq!(rig.admit_basic("P-2", wrong).await, Err(Refusal::WrongPassword));
    assert_eq!(rig.admit_basic("P-2", right).await, Err(Refusal::TooManyFailures { retry_after_secs: 20 }));
    rig.clock.advance(20);
    assert_eq!(rig.admit_basic("P-2", wrong).await, Err(Refusal::WrongPassword));
    assert_eq!(rig.admit_basic("P-2", right).await, Err(Refusal::TooManyFailures { retry_after_secs: 25 }));
    rig.clock.advance(25);
    assert_eq!(rig.admit_basic("P-2", right).await, Ok(()));
    // Cleared: fewer than three failures do not back it off.
    assert_eq!(rig.admit_basic("P-2", wrong).await, Err(Refusal::WrongPassword));
    assert_eq!(rig.admit_basic("P-2", right).await, Ok(()));
}

#[tokio::test]
async fn a03_rate_limit_counts_the_last_hour_of_the_clock() {
    let rig = rig(Config::default()).await;
    rig.station("R-1").await;
    let mut ws = connect_station(&rig.node, TENANT, "R-1", None).await;
    // CSRs for another station's name: refused, but each counts as a request.
    let wrong = csr_for("SOMEONE-ELSE", None);
    for i in 0..csms::engines::certificates::MAX_REQUESTS_PER_HOUR {
        let answer = sign_certificate(&mut ws, &format!("s{i}"), &wrong).await;
        assert_eq!(answer["statusInfo"]["reasonCode"], "InvalidCSR", "{answer}");
        rig.clock.advance(60);
    }
    let limited = sign_certificate(&mut ws, "over", &wrong).await;
    assert_eq!(limited["statusInfo"]["reasonCode"], "RateLimited", "{limited}");
    // The first request leaves the hour: one more is considered again.
    rig.clock.advance(3600 - 60 * 10 + 61);
    let again = sign_certificate(&mut ws, "later", &wrong).await;
    assert_eq!(again["statusInfo"]["reasonCode"], "InvalidCSR", "{again}");
    // A rate-limited request is not recorded: ten refusals and the last one.
    assert_eq!(rig.requests("R-1").await.len(), 11);
}

#[tokio::test]
async fn a_claim_left_by_a_dead_process_is_taken_over_after_two_minutes() {
    use csms::store::CertRequestState as State;
    let rig = rig(Config::default()).await;
    rig.station("S-1").await;
    let store = &rig.node.store;
    let now = rig.clock.now_millis();
    let csr = csr_for("S-1", Some(ORG));
    let received = RequestChange { csr_pem: Some(&csr), ..RequestChange::to(State::CsrReceived) };
    let id = store.insert_cert_request(TENANT, "S-1", "station", received, now).await.unwrap();
    // Another process claimed it for issuance, then died.
    let claim = RequestChange::to(State::Issuing);
    assert!(store.update_cert_request(TENANT, id, &[State::CsrReceived], claim, now).await.unwrap());
    // Connected after the claim, so the connection's own resume finds it claimed too.
    let mut ws = connect_station(&rig.node, TENANT, "S-1", None).await;

    // Within two minutes the claim stands: nothing is issued or sent, and the
    // delivery returns at once (a call to the station would wait for its answer).
    rig.clock.advance(110);
    tokio::time::timeout(Duration::from_secs(5), rig.node.certificates.deliver(TENANT, "S-1", id)).await.unwrap();
    assert_eq!(rig.requests("S-1").await[0].state, State::Issuing);

    // After that it is taken over: issued and delivered.
    rig.clock.advance(11);
    let node = rig.node.clone();
    let delivery = tokio::spawn(async move { node.certificates.deliver(TENANT, "S-1", id).await });
    let signed = next_frame(&mut ws).await;
    assert_eq!(signed[2], "CertificateSigned", "{signed}");
    send(&mut ws, json!([3, signed[1], {"status": "Accepted"}])).await;
    delivery.await.unwrap();
    let r = &rig.requests("S-1").await[0];
    assert_eq!(r.state, State::Delivered);
    assert!(r.serial_hex.is_some());
}

#[tokio::test]
async fn the_maintenance_tick_takes_over_a_stale_claim_without_a_reconnection() {
    use csms::store::CertRequestState as State;
    let rig = rig(Config::default()).await;
    rig.station("T-1").await;
    // Connected before the claim exists: its connection's resume has nothing to do.
    let mut ws = connect_station(&rig.node, TENANT, "T-1", None).await;
    let store = &rig.node.store;
    let now = rig.clock.now_millis();
    let csr = csr_for("T-1", Some(ORG));
    let received = RequestChange { csr_pem: Some(&csr), ..RequestChange::to(State::CsrReceived) };
    let id = store.insert_cert_request(TENANT, "T-1", "station", received, now).await.unwrap();
    // A process claimed it for issuance, then died; the station stays connected.
    let dead = csms::store::Claimant { node: "dead-node", instance: "gone" };
    let claim = RequestChange { claim: Some(dead), ..RequestChange::to(State::Issuing) };
    assert!(store.update_cert_request(TENANT, id, &[State::CsrReceived], claim, now).await.unwrap());
    let stale = store.stale_claims(now + 1, 10).await.unwrap();
    assert_eq!(stale[0].claim_node.as_deref(), Some("dead-node"));

    // A tick within two minutes leaves the claim alone.
    rig.clock.advance(60);
    rig.node.engines.tick().await;
    assert_eq!(rig.requests("T-1").await[0].state, State::Issuing);

    // Once stale, the next tick issues and delivers it to the connected station.
    rig.clock.advance(61);
    let node = rig.node.clone();
    let tick = tokio::spawn(async move { node.engines.tick().await });
    let signed = next_frame(&mut ws).await;
    assert_eq!(signed[2], "CertificateSigned", "{signed}");
    send(&mut ws, json!([3, signed[1], {"status": "Accepted"}])).await;
    tick.await.unwrap();
    let r = &rig.requests("T-1").await[0];
    assert_eq!(r.state, State::Delivered);
    assert!(r.serial_hex.is_some());
}

#[tokio::test]
async fn automatic_renewal_backs_off_for_a_day_after_a_refusal() {
    // A window longer than the validity: every certificate is due at once.
    let rig = rig(Config { renewal_window_days: 1000, ..Config::default() }).await;
    rig.station("B-1").await;
    rig.enroll("B-1", 365).await;
    let mut ws = connect_station(&rig.node, TENANT, "B-1", None).await;
    let refuse_one_trigger = async |ws: &mut Ws| {
        let trigger = next_frame(ws).await;
        assert_eq!(trigger[2], "TriggerMessage", "{trigger}");
        send(ws, json!([3, trigger[1], {"status": "Rejected"}])).await;
    };

    assert_eq!(rig.node.certificates.auto_renew().await, 1);
    refuse_one_trigger(&mut ws).await;
    for _ in 0..100 {
        if rig.requests("B-1").await.first().is_some_and(|r| r.state == csms::store::CertRequestState::Failed) {
            break;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(rig.requests("B-1").await[0].state, csms::store::CertRequestState::Failed);

    // The station said no: not asked again within the day.
    assert_eq!(rig.node.certificates.auto_renew().await, 0);
    rig.clock.advance(23 * 3600);
    assert_eq!(rig.node.certificates.auto_renew().await, 0);
    rig.clock.advance(3601);
    assert_eq!(rig.node.certificates.auto_renew().await, 1, "asked again after a day");
    refuse_one_trigger(&mut ws).await;
}

#[tokio::test]
async fn the_gateway_refuses_an_expired_certificate_by_the_csms_clock() {
    let rig = rig(Config::default()).await;
    rig.station("E-1").await;
    let (chain, _) = rig.enroll("E-1", 2).await;
    assert_eq!(rig.admit("E-1", &chain).await, Ok(()));
    rig.clock.advance(2 * 86_400 + 3600);
    assert_eq!(rig.admit("E-1", &chain).await, Err(Refusal::CertificateExpired));
}

#[tokio::test]
async fn a_replaced_station_ca_is_trusted_until_its_overlap_ends() {
    let rig = rig(Config::default()).await;
    rig.station("O-1").await;
    let (old_chain, _) = rig.enroll("O-1", 365).await;
    rig.node.services.rotate_station_ca(TENANT, Some(1)).await.unwrap();
    rig.clock.advance(3600);
    assert_eq!(rig.admit("O-1", &old_chain).await, Ok(()), "within the overlap");
    rig.clock.advance(86_400 - 3600 + 1);
    assert_eq!(rig.admit("O-1", &old_chain).await, Err(Refusal::CertificateCaRetired));
    // The new CA's certificates are unaffected.
    let (new_chain, _) = rig.enroll("O-1", 365).await;
    assert_eq!(rig.admit("O-1", &new_chain).await, Ok(()));
}

/// The node's API listener (one per process, as `csms serve` builds it).
fn router(rig: &Rig) -> axum::Router {
    let auth = Arc::new(api::auth::Authenticator::hs256(b"time-test-secret-time-test-secret"));
    csms::http::router(rig.node.clone(), auth)
}

/// GETs `path`; status and body.
async fn get(router: &axum::Router, path: &str) -> (u16, Vec<u8>) {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let router = router.clone();
    let req = http::Request::get(path).body(axum::body::Body::empty()).unwrap();
    let res = router.oneshot(req).await.unwrap();
    let status = res.status().as_u16();
    (status, res.into_body().collect().await.unwrap().to_bytes().to_vec())
}

#[tokio::test]
async fn an_unchanged_crl_is_served_again_until_it_is_half_spent() {
    let rig = rig(Config::default()).await;
    rig.station("C-1").await;
    let (_, serial) = rig.enroll("C-1", 365).await;
    let ca = rig.node.services.station_cas(TENANT).await.unwrap().into_iter().find(|c| !c.root && c.current).unwrap();
    let path = format!("/pki/{TENANT}/ca/{}.crl", ca.id);
    let api = router(&rig);
    let (status, first) = get(&api, &path).await;
    assert_eq!(status, 200);
    rig.clock.advance(60);
    assert_eq!(get(&api, &path).await.1, first, "nothing changed: the same signed CRL");

    // A revocation is in the very next CRL.
    let reason = pki::RevocationReason::KeyCompromise;
    rig.node.services.revoke_certificate(TENANT, &serial, reason).await.unwrap();
    let (_, after) = get(&api, &path).await;
    assert_ne!(after, first);
    let serial_bytes: Vec<u8> =
        (0..serial.len()).step_by(2).map(|i| u8::from_str_radix(&serial[i..i + 2], 16).unwrap()).collect();
    assert!(after.windows(serial_bytes.len()).any(|w| w == serial_bytes), "the serial is listed");

    // Half an hour on, a fresh one is signed even though nothing changed.
    rig.clock.advance(29 * 60);
    assert_eq!(get(&api, &path).await.1, after);
    rig.clock.advance(61);
    assert_ne!(get(&api, &path).await.1, after, "re-signed with a later nextUpdate");
}

/// POSTs an OCSP request; the answer's DER.
async fn ocsp(router: &axum::Router, request: &[u8]) -> Vec<u8> {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let req = http::Request::post(format!("/ocsp/{TENANT}"))
        .header("content-type", "application/ocsp-request")
        .body(axum::body::Body::from(request.to_vec()))
        .unwrap();
    let res = router.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    res.into_body().collect().await.unwrap().to_bytes().to_vec()
}

/// What openssl reads in an OCSP answer.
fn ocsp_text(dir: &std::path::Path, answer: &[u8]) -> String {
    let path = dir.join("answer.der");
    std::fs::write(&path, answer).unwrap();
    let out = std::process::Command::new("openssl")
        .args(["ocsp", "-respin", path.to_str().unwrap(), "-resp_text", "-noverify"])
        .output()
        .expect("openssl must be installed");
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[tokio::test]
async fn ocsp_answers_are_reused_while_current_and_a_flood_does_not_sign_per_request() {
    let rig = rig(Config { ocsp_signatures_per_second: 3, ..Config::default() }).await;
    rig.station("Q-1").await;
    let (chain, serial) = rig.enroll("Q-1", 365).await;
    let dir = rig._dir.path();
    let (leaf, issuer) = (dir.join("leaf.pem"), dir.join("issuer.pem"));
    std::fs::write(&leaf, pki::certificate_pem(&chain[0])).unwrap();
    std::fs::write(&issuer, pki::certificate_pem(&chain[1])).unwrap();
    let request = |name: &str, nonce: bool| {
        let out = dir.join(name);
        let mut args = vec!["ocsp", "-issuer", issuer.to_str().unwrap(), "-cert", leaf.to_str().unwrap()];
        args.extend(if nonce { ["-nonce"] } else { ["-no_nonce"] });
        args.extend(["-reqout", out.to_str().unwrap()]);
        assert!(std::process::Command::new("openssl").args(&args).status().unwrap().success());
        std::fs::read(out).unwrap()
    };
    let (plain, nonced) = (request("plain.der", false), request("nonce.der", true));
    let api = router(&rig);

    // Without a nonce: signed once, then served again.
    let first = ocsp(&api, &plain).await;
    assert!(ocsp_text(dir, &first).contains("Cert Status: good"), "{}", ocsp_text(dir, &first));
    assert_eq!(ocsp(&api, &plain).await, first);

    // With a nonce: echoed, while the budget (3 a second) lasts.
    let fresh = ocsp(&api, &nonced).await;
    assert!(ocsp_text(dir, &fresh).contains("OCSP Nonce"), "{}", ocsp_text(dir, &fresh));
    assert!(ocsp_text(dir, &ocsp(&api, &nonced).await).contains("OCSP Nonce"));
    // Spent: the current answer again, without the nonce, rather than a signature.
    assert_eq!(ocsp(&api, &nonced).await, first);

    // A revocation makes the kept answer stale; with no budget left: tryLater.
    rig.node.services.revoke_certificate(TENANT, &serial, pki::RevocationReason::KeyCompromise).await.unwrap();
    let busy = ocsp(&api, &plain).await;
    assert!(ocsp_text(dir, &busy).to_lowercase().contains("trylater"), "{}", ocsp_text(dir, &busy));
    // A moment later the budget has refilled: the new status, signed.
    rig.clock.advance_millis(400);
    let revoked = ocsp(&api, &plain).await;
    assert!(ocsp_text(dir, &revoked).contains("Cert Status: revoked"), "{}", ocsp_text(dir, &revoked));
}
