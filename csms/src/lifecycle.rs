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
use crate::store::{CertRequest, StoreError};

/// Request states, as stored and shown.
pub mod state {
    pub const REQUESTED: &str = "requested";
    pub const TRIGGERED: &str = "triggered";
    pub const CSR_RECEIVED: &str = "csr_received";
    pub const REJECTED: &str = "rejected";
    pub const ISSUED: &str = "issued";
    pub const DELIVERED: &str = "delivered";
    pub const STATION_REJECTED: &str = "station_rejected";
    pub const INSTALLED: &str = "installed";
    pub const FAILED: &str = "failed";
}

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
    let recent = app.store.cert_requests(tenant, station, 50).await?;
    let hour_ago = now - 3_600_000;
    let in_last_hour = recent.iter().filter(|r| r.created_at > hour_ago && r.csr_pem.is_some()).count();
    if in_last_hour >= MAX_REQUESTS_PER_HOUR {
        tracing::warn!(station, tenant, "SignCertificate rate limit reached");
        return Ok((rejected("RateLimited", format!("at most {MAX_REQUESTS_PER_HOUR} requests per hour")), None));
    }
    // An operator's renewal (A02) waiting for this CSR, else a new station request (A03).
    // (REQUESTED too: the CSR may arrive before the trigger's answer is recorded.)
    let open = recent
        .iter()
        .find(|r| r.origin == "operator" && (r.state == state::TRIGGERED || r.state == state::REQUESTED))
        .map(|r| r.id);
    if app.signing_key().is_none() {
        return Ok((rejected("InternalError", "this CSMS cannot sign certificates right now"), None));
    }
    let organization = app.store.tenant(tenant).await?.map(|t| t.organization).unwrap_or_default();
    let checked = pki::validate_csr(&req.csr, station).and_then(|c| c.check_organization(&organization).map(|()| c));
    if let Err(rule) = checked {
        let detail = format!("{}: {rule}", rule.rule());
        tracing::info!(station, tenant, rule = rule.rule(), "CSR rejected");
        match open {
            Some(id) => {
                app.store.update_cert_request(id, state::REJECTED, Some(&req.csr), None, Some(&detail), now).await?
            }
            None => {
                let id = app
                    .store
                    .insert_cert_request(tenant, station, "station", state::REJECTED, Some(&req.csr), now)
                    .await?;
                app.store.update_cert_request(id, state::REJECTED, None, None, Some(&detail), now).await?;
            }
        }
        return Ok((rejected("InvalidCSR", detail), None));
    }
    // Durable before Accepted.
    let id = match open {
        Some(id) => {
            app.store.update_cert_request(id, state::CSR_RECEIVED, Some(&req.csr), None, None, now).await?;
            id
        }
        None => {
            app.store.insert_cert_request(tenant, station, "station", state::CSR_RECEIVED, Some(&req.csr), now).await?
        }
    };
    Ok((json!({ "status": "Accepted" }), Some(id)))
}

/// Issues (if not done yet) and delivers the certificate of request `id`.
pub async fn deliver(app: Arc<App>, tenant: String, station: String, id: i64) {
    if let Err(e) = deliver_inner(&app, &tenant, &station, id).await {
        tracing::warn!(station, tenant, request = id, error = %e, "certificate delivery did not complete; resumes at the next connection");
    }
}

async fn deliver_inner(app: &App, tenant: &str, station: &str, id: i64) -> anyhow::Result<()> {
    let Some(req) = app.store.cert_requests(tenant, station, 50).await?.into_iter().find(|r| r.id == id) else {
        return Ok(());
    };
    let now = app.clock.now();
    let chain = match (req.state.as_str(), &req.csr_pem) {
        (state::CSR_RECEIVED, Some(csr_pem)) | (state::ISSUED, Some(csr_pem)) => {
            let master = app.signing_key().ok_or_else(|| anyhow::anyhow!("no signing key"))?;
            let tenant_rec = app.store.tenant(tenant).await?.ok_or_else(|| anyhow::anyhow!("tenant vanished"))?;
            let csr = pki::validate_csr(csr_pem, station)?;
            if req.state == state::ISSUED
                && let Some(serial) = &req.serial_hex
                && let Some(rec) = app.store.certificate(tenant, serial).await?
            {
                // Issued before a crash or disconnect: deliver the same certificate again.
                let ca =
                    app.store.credential(tenant, authority::STATION_CA).await?.map(|c| c.cert_pem).unwrap_or_default();
                format!("{}{}{}", rec.cert_pem, if rec.cert_pem.ends_with('\n') { "" } else { "\n" }, ca)
            } else {
                let public_url = app.config.public_url();
                let signer =
                    Signer { store: &app.store, master: &master, public_url: &public_url, writes: Some(&app.writes) };
                let days = i64::from(app.config.station_certificate_days);
                let validity = Validity {
                    not_before: now - time::Duration::minutes(5),
                    not_after: now + time::Duration::days(days),
                };
                let (chain, rec) = authority::issue_for(&signer, &tenant_rec, station, &csr, validity, now).await?;
                app.store
                    .update_cert_request(id, state::ISSUED, None, Some(&rec.serial_hex), None, app.clock.now_millis())
                    .await?;
                chain
            }
        }
        _ => return Ok(()),
    };
    let Some(session) = app.sessions.get(station).filter(|h| *h.tenant_id == *tenant) else {
        anyhow::bail!("station not connected");
    };
    let payload = json!({ "certificateChain": chain, "certificateType": STATION_CERTIFICATE });
    match session.call(Action::CertificateSigned, payload).await {
        Ok(answer) => {
            let accepted = answer.get("status").and_then(Value::as_str) == Some("Accepted");
            let next = if accepted { state::DELIVERED } else { state::STATION_REJECTED };
            let detail = (!accepted).then(|| answer.to_string());
            app.store.update_cert_request(id, next, None, None, detail.as_deref(), app.clock.now_millis()).await?;
            tracing::info!(station, tenant, request = id, accepted, "CertificateSigned answered");
            Ok(())
        }
        Err(CallFailure::Rejected { code, description }) => {
            let detail = format!("{}: {description}", code.as_str());
            app.store
                .update_cert_request(id, state::STATION_REJECTED, None, None, Some(&detail), app.clock.now_millis())
                .await?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// On (re)connection: deliver whatever was accepted but not delivered.
pub async fn resume(app: Arc<App>, tenant: String, station: String) {
    let pending: Vec<CertRequest> = match app.store.cert_requests(&tenant, &station, 20).await {
        Ok(rs) => rs.into_iter().filter(|r| r.state == state::CSR_RECEIVED || r.state == state::ISSUED).collect(),
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
        let requests = app.store.cert_requests(&tenant, &station, 20).await?;
        if let Some(r) =
            requests.iter().find(|r| r.serial_hex.as_deref() == Some(serial.as_str()) && r.state != state::INSTALLED)
        {
            app.store.update_cert_request(r.id, state::INSTALLED, None, None, None, now).await?;
            tracing::info!(station, tenant, serial, "station connected with its new certificate");
        }
        if app.store.supersede_certificates(&tenant, &station, &serial, now).await? > 0
            && app.config.superseded_grace_secs == 0
        {
            sweep(&app).await;
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
            for (tenant, serial) in revoked {
                if app.sessions.disconnect_certificate(&tenant, &serial) > 0 {
                    tracing::info!(tenant, serial, "session closed: its certificate was revoked");
                }
            }
            // Overlap by a tick's worth so a revocation committed meanwhile is not missed.
            now - 1_000
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
            for (tenant, serial) in revoked {
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
    let id = app.store.insert_cert_request(tenant, station, "operator", state::REQUESTED, None, now).await?;
    let trigger = json!({ "requestedMessage": "SignChargingStationCertificate" });
    let outcome = session.call(Action::TriggerMessage, trigger).await;
    let (next, detail) = match &outcome {
        Ok(a) if a.get("status").and_then(Value::as_str) == Some("Accepted") => (state::TRIGGERED, None),
        Ok(a) => (state::FAILED, Some(format!("TriggerMessage answered {a}"))),
        Err(e) => (state::FAILED, Some(e.to_string())),
    };
    app.store.update_cert_request(id, next, None, None, detail.as_deref(), app.clock.now_millis()).await?;
    if let Some(d) = detail {
        return Err(RenewError::Refused(d));
    }
    let rec = app.store.cert_requests(tenant, station, 20).await?.into_iter().find(|r| r.id == id);
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
pub async fn auto_renew(app: &Arc<App>) {
    let now = app.clock.now_millis();
    let window = i64::from(app.config.renewal_window_days) * 86_400_000;
    let due = match app.store.certificates_expiring(now + window, 500).await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "reading expiring certificates");
            return;
        }
    };
    let mut started = 0;
    for cert in due {
        if started >= MAX_RENEWALS_PER_TICK {
            break;
        }
        if now < renewal_start(cert.not_after, window, &cert.serial_hex) {
            continue;
        }
        if app.sessions.get(&cert.station_id).is_none_or(|h| *h.tenant_id != *cert.tenant_id) {
            continue;
        }
        let busy = match app.store.cert_requests(&cert.tenant_id, &cert.station_id, 5).await {
            Ok(rs) => rs.iter().any(|r| {
                matches!(
                    r.state.as_str(),
                    state::REQUESTED | state::TRIGGERED | state::CSR_RECEIVED | state::ISSUED | state::DELIVERED
                ) && now - r.updated_at < 3_600_000
            }),
            Err(_) => true,
        };
        if busy {
            continue;
        }
        started += 1;
        tracing::info!(station = %cert.station_id, tenant = %cert.tenant_id, serial = %cert.serial_hex, "automatic renewal");
        let app = app.clone();
        tokio::spawn(async move {
            if let Err(e) = renew(&app, &cert.tenant_id, &cert.station_id).await {
                tracing::warn!(station = %cert.station_id, error = %e, "automatic renewal did not start");
            }
        });
    }
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
