//! The charging-station certificate lifecycle (A02, A03): a SignCertificate is
//! validated before it is answered, recorded, and answered Accepted only once
//! the request is durable; the certificate is then issued and delivered with
//! CertificateSigned through the station's outbound path. A delivery cut short
//! (crash, disconnect) resumes when the station next connects. When the station
//! first connects with the new certificate, the older ones are superseded and
//! revoked after a grace period.

use std::sync::Arc;

use ocpp::v201::{Action, CertificateSigningUseEnumType, SignCertificateRequest};
use serde_json::{Value, json};

use crate::app::App;
use crate::authority::{self, Signer, Validity};
use crate::session::CallFailure;
use crate::store::{CaOverlap, CertRequest, CertRequestState as State, CertificateRef, RequestChange, StoreError};

/// Most SignCertificate requests one station may make per hour (A03 rate limit).
pub const MAX_REQUESTS_PER_HOUR: usize = 10;

const STATION_CERTIFICATE: &str = "ChargingStationCertificate";

fn rejected(reason: &str, info: impl Into<String>) -> Value {
    let mut info: String = info.into();
    if info.len() > 500 {
        let cut = (0..=500).rev().find(|i| info.is_char_boundary(*i)).unwrap_or(0);
        info.truncate(cut);
    }
    json!({ "status": "Rejected", "statusInfo": { "reasonCode": reason, "additionalInfo": info } })
}

/// A02/A03: answers a station's SignCertificateRequest. Returns the response
/// payload and, when Accepted, the request to deliver once it has been sent.
pub async fn sign_certificate(
    app: &App,
    tenant: &str,
    station: &str,
    req: SignCertificateRequest,
) -> Result<(Value, Option<i64>), StoreError> {
    let now = app.clock.now_millis();
    if req.certificate_type == Some(CertificateSigningUseEnumType::V2GCertificate) {
        return Ok((rejected("NotSupported", "V2GCertificate signing comes with ISO 15118 support"), None));
    }
    if app.signing_key().is_none() {
        return Ok((rejected("InternalError", "this CSMS cannot sign certificates right now"), None));
    }
    let recent = app.store.cert_requests(tenant, station, 50).await?;
    // A recent operator renewal (A02) waiting for this CSR; REQUESTED too, as the
    // CSR may arrive before the trigger's answer is recorded.
    let open = recent
        .iter()
        .find(|r| {
            r.origin == "operator"
                && (r.state == State::Triggered || r.state == State::Requested)
                && now - r.updated_at < 3_600_000
        })
        .map(|r| r.id);
    if open.is_none() {
        // A03 rate limit; an operator's own renewal is never refused for it.
        let hour_ago = now - 3_600_000;
        let in_last_hour = recent.iter().filter(|r| r.created_at > hour_ago && r.csr_pem.is_some()).count();
        if in_last_hour >= MAX_REQUESTS_PER_HOUR {
            tracing::warn!(station, tenant, "SignCertificate rate limit reached");
            return Ok((rejected("RateLimited", format!("at most {MAX_REQUESTS_PER_HOUR} requests per hour")), None));
        }
    }
    let organization = app.store.tenant(tenant).await?.map(|t| t.organization).unwrap_or_default();
    let checked = pki::validate_csr(&req.csr, station).and_then(|c| c.check_organization(&organization).map(|()| c));
    let open_states = [State::Requested, State::Triggered];
    if let Err(rule) = checked {
        let detail = format!("{}: {rule}", rule.rule());
        tracing::info!(station, tenant, rule = rule.rule(), "CSR rejected");
        let change =
            RequestChange { csr_pem: Some(&req.csr), detail: Some(&detail), ..RequestChange::to(State::Rejected) };
        let attached = match open {
            Some(id) => app.store.update_cert_request(tenant, id, &open_states, change, now).await?,
            None => false,
        };
        if !attached {
            app.store.insert_cert_request(tenant, station, "station", change, now).await?;
        }
        return Ok((rejected("InvalidCSR", detail), None));
    }
    // Durable before Accepted.
    let change = RequestChange { csr_pem: Some(&req.csr), ..RequestChange::to(State::CsrReceived) };
    let id = match open {
        Some(id) if app.store.update_cert_request(tenant, id, &open_states, change, now).await? => id,
        _ => app.store.insert_cert_request(tenant, station, "station", change, now).await?,
    };
    Ok((json!({ "status": "Accepted" }), Some(id)))
}

/// Issues (if not done yet) and delivers the certificate of request `id`.
pub async fn deliver(app: Arc<App>, tenant: String, station: String, id: i64) {
    if let Err(e) = deliver_inner(&app, &tenant, &station, id).await {
        tracing::warn!(station, tenant, request = id, error = %e, "certificate delivery did not complete; resumes at the next connection");
    }
}

/// A request claimed (`issuing`, `delivering`) this long ago by a process that
/// then died is taken over. Longer than a call timeout.
const CLAIM_STALE_MS: i64 = 120_000;

async fn deliver_inner(app: &App, tenant: &str, station: &str, id: i64) -> anyhow::Result<()> {
    let Some(req) = app.store.cert_request(tenant, id).await? else {
        return Ok(());
    };
    let now_ms = app.clock.now_millis();
    let stale = now_ms - req.updated_at > CLAIM_STALE_MS;
    let Some(csr_pem) = req.csr_pem.as_deref() else { return Ok(()) };
    // Each step is claimed with a compare-and-set, so of two deliveries of one
    // request (a reply's and a reconnection's) only one issues and one sends.
    let chain = match req.state {
        State::CsrReceived | State::Issuing => {
            let from: &[State] =
                if req.state == State::Issuing && stale { &[State::Issuing] } else { &[State::CsrReceived] };
            if !app.store.update_cert_request(tenant, id, from, RequestChange::to(State::Issuing), now_ms).await? {
                return Ok(());
            }
            let master = app.signing_key().ok_or_else(|| anyhow::anyhow!("no signing key"))?;
            let tenant_rec = app.store.tenant(tenant).await?.ok_or_else(|| anyhow::anyhow!("tenant vanished"))?;
            let csr = pki::validate_csr(csr_pem, station)?;
            let now = app.clock.now();
            let public_url = app.config.public_url();
            let signer =
                Signer { store: &app.store, master: &master, public_url: &public_url, writes: Some(&app.writes) };
            let days = i64::from(app.config.station_certificate_days);
            let validity =
                Validity { not_before: now - time::Duration::minutes(5), not_after: now + time::Duration::days(days) };
            let (chain, rec) = authority::issue_for(&signer, &tenant_rec, station, &csr, validity, now).await?;
            let issued = RequestChange { serial_hex: Some(&rec.serial_hex), ..RequestChange::to(State::Delivering) };
            app.store.update_cert_request(tenant, id, &[State::Issuing], issued, app.clock.now_millis()).await?;
            chain
        }
        State::Issued | State::Delivering => {
            // Issued before a crash or disconnect: deliver the same certificate again.
            let from: &[State] =
                if req.state == State::Delivering && stale { &[State::Delivering] } else { &[State::Issued] };
            if !app.store.update_cert_request(tenant, id, from, RequestChange::to(State::Delivering), now_ms).await? {
                return Ok(());
            }
            let Some(serial) = &req.serial_hex else { return Ok(()) };
            let Some(rec) = app.store.certificate(tenant, serial).await? else { return Ok(()) };
            let ca = crate::station_ca::issuer_chain(&app.store, tenant, rec.issuer_id.as_deref())
                .await?
                .unwrap_or_default();
            authority::chain_pem(&rec.cert_pem, &ca)
        }
        _ => return Ok(()),
    };
    let release = || async {
        // Not delivered: back to `issued`, for the next connection.
        app.store
            .update_cert_request(
                tenant,
                id,
                &[State::Delivering],
                RequestChange::to(State::Issued),
                app.clock.now_millis(),
            )
            .await
    };
    let Some(session) = app.sessions.get(station).filter(|h| *h.tenant_id == *tenant) else {
        release().await?;
        anyhow::bail!("station not connected");
    };
    let payload = json!({ "certificateChain": chain, "certificateType": STATION_CERTIFICATE });
    let refusal = match session.call(Action::CertificateSigned, payload).await {
        Ok(answer) if answer.get("status").and_then(Value::as_str) == Some("Accepted") => None,
        Ok(answer) => Some(answer.to_string()),
        Err(CallFailure::Rejected { code, description }) => Some(format!("{}: {description}", code.as_str())),
        Err(e) => {
            release().await?;
            return Err(e.into());
        }
    };
    let serial = app.store.cert_request(tenant, id).await?.and_then(|r| r.serial_hex);
    let now_ms = app.clock.now_millis();
    match refusal {
        None => {
            app.store
                .update_cert_request(tenant, id, &[State::Delivering], RequestChange::to(State::Delivered), now_ms)
                .await?;
            tracing::info!(station, tenant, request = id, "certificate delivered");
        }
        Some(detail) => {
            // A certificate the station will not use must not count as its
            // replacement: revoked first, so the recorded refusal implies it.
            if let Some(serial) = serial {
                app.store.revoke_certificate(tenant, &serial, now_ms, "superseded").await?;
            }
            let change = RequestChange { detail: Some(&detail), ..RequestChange::to(State::StationRejected) };
            app.store.update_cert_request(tenant, id, &[State::Delivering], change, now_ms).await?;
            tracing::info!(station, tenant, request = id, detail, "station refused its certificate");
        }
    }
    Ok(())
}

/// On (re)connection: deliver whatever was accepted but not delivered.
pub async fn resume(app: Arc<App>, tenant: String, station: String) {
    let pending = match app
        .store
        .cert_requests_in(&tenant, &station, &[State::CsrReceived, State::Issuing, State::Issued, State::Delivering])
        .await
    {
        Ok(rs) => rs,
        Err(e) => {
            tracing::warn!(error = %e, "reading pending certificate requests");
            return;
        }
    };
    for r in pending {
        deliver(app.clone(), tenant.clone(), station.clone(), r.id).await;
    }
}

/// A station connected with certificate `serial`: a delivered request for it is
/// installed, and the station's older certificates are superseded (revoked now
/// when the grace period is zero, else by [`sweep`]).
pub async fn admitted_with(app: Arc<App>, tenant: String, station: String, serial: String) {
    let now = app.clock.now_millis();
    let result: Result<(), StoreError> = async {
        // Older certificates first (revoked at once when the grace is 0), so
        // that `installed` implies it.
        if app.store.supersede_certificates(&tenant, &station, &serial, now).await? > 0
            && app.config.superseded_grace_secs == 0
        {
            sweep(&app).await;
        }
        let requests = app.store.cert_requests(&tenant, &station, 20).await?;
        if let Some(r) = requests.iter().find(|r| r.serial_hex.as_deref() == Some(serial.as_str())) {
            let from = [State::Delivered, State::Delivering, State::Issued];
            if app.store.update_cert_request(&tenant, r.id, &from, RequestChange::to(State::Installed), now).await? {
                tracing::info!(station, tenant, serial, "station connected with its new certificate");
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "recording the certificate a station connected with");
    }
}

/// Closes live sessions whose certificate was revoked since `since` by anyone
/// (the CLI, another node, the API); returns the time to pass next.
pub async fn close_revoked_sessions(app: &App, since: i64) -> i64 {
    let now = app.clock.now_millis();
    match app.store.revoked_since(since).await {
        Ok(revoked) => {
            for CertificateRef { tenant_id: tenant, serial_hex: serial } in revoked {
                if app.sessions.disconnect_certificate(&tenant, &serial) > 0 {
                    tracing::info!(tenant, serial, "session closed: its certificate was revoked");
                }
            }
            // Two minutes of overlap: another process's clock and commit delay
            // must not hide a revocation; closing twice is harmless.
            now - 120_000
        }
        Err(e) => {
            tracing::warn!(error = %e, "reading recent revocations");
            since
        }
    }
}

/// Revokes certificates superseded longer ago than the grace period; closes
/// sessions still using them.
pub async fn sweep(app: &App) {
    let now = app.clock.now_millis();
    let cutoff = now - i64::try_from(app.config.superseded_grace_secs).unwrap_or(i64::MAX / 2_000).saturating_mul(1000);
    match app.store.revoke_superseded(cutoff, now).await {
        Ok(revoked) => {
            for CertificateRef { tenant_id: tenant, serial_hex: serial } in revoked {
                tracing::info!(tenant, serial, "superseded certificate revoked");
                app.sessions.disconnect_certificate(&tenant, &serial);
            }
        }
        Err(e) => tracing::warn!(error = %e, "revoking superseded certificates"),
    }
}

/// Why an operator's renewal could not start.
#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    #[error("station '{0}' is not connected")]
    NotConnected(String),
    #[error("the station refused the trigger: {0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A02: asks a connected station to send a new CSR (TriggerMessage
/// SignChargingStationCertificate) and tracks the renewal.
pub async fn renew(app: &App, tenant: &str, station: &str) -> Result<CertRequest, RenewError> {
    let Some(session) = app.sessions.get(station).filter(|h| *h.tenant_id == *tenant) else {
        return Err(RenewError::NotConnected(station.to_owned()));
    };
    let now = app.clock.now_millis();
    let id =
        app.store.insert_cert_request(tenant, station, "operator", RequestChange::to(State::Requested), now).await?;
    let trigger = json!({ "requestedMessage": "SignChargingStationCertificate" });
    let outcome = session.call(Action::TriggerMessage, trigger).await;
    let detail = match &outcome {
        Ok(a) if a.get("status").and_then(Value::as_str) == Some("Accepted") => None,
        Ok(a) => Some(format!("TriggerMessage answered {a}")),
        Err(e) => Some(e.to_string()),
    };
    // Only from REQUESTED: the CSR may already have moved the request on.
    let change = match &detail {
        None => RequestChange::to(State::Triggered),
        Some(d) => RequestChange { detail: Some(d), ..RequestChange::to(State::Failed) },
    };
    app.store.update_cert_request(tenant, id, &[State::Requested], change, app.clock.now_millis()).await?;
    if let Some(d) = detail {
        return Err(RenewError::Refused(d));
    }
    let rec = app.store.cert_request(tenant, id).await?;
    rec.ok_or_else(|| RenewError::Refused("the renewal record vanished".into()))
}

/// Renewals one maintenance tick may start in this process.
pub const MAX_RENEWALS_PER_TICK: usize = 50;

/// When, within the renewal window, this certificate's automatic renewal may
/// start: spread over the window's first half by its serial, so a fleet issued
/// on one day is not renewed in one burst.
pub fn renewal_start(not_after: i64, window_ms: i64, serial_hex: &str) -> i64 {
    let spread = (window_ms / 2).max(1);
    let hash =
        serial_hex.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    not_after - window_ms + i64::try_from(hash % spread.unsigned_abs()).unwrap_or(0)
}

/// Automatic renewal: certificates expiring within the window whose moment has
/// come, of connected stations without a renewal under way, are renewed (A02).
/// Then, while a replaced station CA is within its overlap, its certificates are
/// renewed by the current CA, spread over the overlap's first half.
pub async fn auto_renew(app: &Arc<App>) {
    let now = app.clock.now_millis();
    let window = i64::from(app.config.renewal_window_days) * 86_400_000;
    let mut started: Vec<(String, String)> = Vec::new();
    let mut after = now;
    // Pages of candidates, soonest first, until enough were started.
    'expiring: for _ in 0..20 {
        let due = match app.store.certificates_expiring(after, now + window, 500).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "reading expiring certificates");
                return;
            }
        };
        let Some(last) = due.last().map(|c| c.not_after) else { break };
        let full = due.len() == 500;
        for cert in due {
            let start = renewal_start(cert.not_after, window, &cert.serial_hex);
            if !try_renew(app, cert, start, now, &mut started, "automatic renewal").await {
                return;
            }
        }
        if !full {
            break 'expiring;
        }
        after = last;
    }
    let overlapping = match app.store.overlapping_station_cas(now).await {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(error = %e, "reading replaced station CAs");
            return;
        }
    };
    for CaOverlap { tenant_id: tenant, name, replaced_at, trusted_until } in overlapping {
        let Some((_, issuer)) = name.split_once('@') else { continue };
        let mut after = String::new();
        for _ in 0..20 {
            let batch = match app.store.certificates_to_move(&tenant, issuer, now, &after, 500).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "reading certificates of a replaced CA");
                    return;
                }
            };
            let Some(last) = batch.last().map(|c| c.serial_hex.clone()) else { break };
            let full = batch.len() == 500;
            for cert in batch {
                let start = renewal_start(trusted_until, trusted_until - replaced_at, &cert.serial_hex);
                if !try_renew(app, cert, start, now, &mut started, "renewal by the new station CA").await {
                    return;
                }
            }
            if !full {
                break;
            }
            after = last;
        }
    }
}

/// Starts a renewal of `cert`'s station if its moment (`start`) has come, it is
/// connected here and nothing is under way; `false` once the tick's budget is spent.
async fn try_renew(
    app: &Arc<App>,
    cert: crate::store::CertificateRecord,
    start: i64,
    now: i64,
    started: &mut Vec<(String, String)>,
    why: &'static str,
) -> bool {
    if started.len() >= MAX_RENEWALS_PER_TICK {
        return false;
    }
    let key = (cert.tenant_id.clone(), cert.station_id.clone());
    if started.contains(&key) || now < start {
        return true;
    }
    if app.sessions.get(&cert.station_id).is_none_or(|h| *h.tenant_id != *cert.tenant_id) {
        return true;
    }
    let busy = match app.store.cert_requests(&cert.tenant_id, &cert.station_id, 5).await {
        Ok(rs) => rs.iter().any(|r| {
            let age = now - r.updated_at;
            match r.state {
                State::Requested
                | State::Triggered
                | State::CsrReceived
                | State::Issuing
                | State::Issued
                | State::Delivered => age < 3_600_000,
                // A station that refused: back off for a day.
                State::Failed | State::Rejected | State::StationRejected => age < 86_400_000,
                State::Delivering | State::Installed => false,
            }
        }),
        Err(_) => true,
    };
    if busy {
        return true;
    }
    started.push(key);
    tracing::info!(station = %cert.station_id, tenant = %cert.tenant_id, serial = %cert.serial_hex, "{why}");
    let app = app.clone();
    tokio::spawn(async move {
        if let Err(e) = renew(&app, &cert.tenant_id, &cert.station_id).await {
            tracing::warn!(station = %cert.station_id, error = %e, "automatic renewal did not start");
        }
    });
    true
}

#[cfg(test)]
mod tests {
    use super::renewal_start;

    #[test]
    fn renewals_spread_over_the_first_half_of_the_window() {
        let day = 86_400_000;
        let (not_after, window) = (1_000 * day, 30 * day);
        let starts: Vec<i64> = (0..1000).map(|i| renewal_start(not_after, window, &format!("{i:032x}"))).collect();
        assert!(starts.iter().all(|s| (not_after - window..not_after - window / 2).contains(s)));
        // Spread, not bunched: every one of the 15 days gets some.
        let mut per_day = [0; 15];
        for s in &starts {
            per_day[usize::try_from((s - (not_after - window)) / day).unwrap_or(0)] += 1;
        }
        assert!(per_day.iter().all(|n| *n > 30), "{per_day:?}");
        assert_eq!(renewal_start(not_after, window, "ab"), renewal_start(not_after, window, "ab"), "deterministic");
    }
}
