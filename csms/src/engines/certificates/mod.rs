//! The charging-station certificate lifecycle (A02, A03), as an engine.
//!
//! A SignCertificate is validated before it is answered, recorded, and answered
//! Accepted only once the request is durable; once that answer has been sent the
//! certificate is issued and delivered with CertificateSigned through the
//! station link. A delivery cut short (crash, disconnect) resumes when the
//! station next connects, or at the maintenance tick when its claim went stale;
//! a newer request supersedes older undelivered ones, so only the newest is
//! delivered. When the station first connects with the new
//! certificate, the older ones are superseded and revoked after a grace period.
//! The maintenance tick revokes superseded certificates, closes sessions whose
//! certificate was revoked elsewhere, and renews certificates near expiry or
//! issued by a replaced station CA.

mod delivery;
mod renewal;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use ocpp::v201::{
    Action, CertificateSigningUseEnumType, GenericStatusEnumType, SignCertificateRequest, SignCertificateResponse,
    StatusInfoType,
};

pub use renewal::{MAX_RENEWALS_PER_TICK, RenewError, renewal_start};

use super::{Answer, ConnectedStation, Engine, EngineContext, HandlerError, StationCall, Task};
use crate::link::BoxFuture;
use crate::store::{CertRequestState as State, CertificateRef, RequestChange, StoreError};

/// Most SignCertificate requests one station may make per hour (A03 rate limit).
pub const MAX_REQUESTS_PER_HOUR: usize = 10;

/// A renewal the operator asked for (A02) waits this long for the station's CSR;
/// a later CSR counts as the station's own.
const TRIGGER_VALID_MS: i64 = 3_600_000;

/// The certificates engine.
pub struct Certificates {
    ctx: Arc<EngineContext>,
    /// Revocations since this time (Unix ms) close live sessions at the next tick.
    revoked_since: Arc<AtomicI64>,
}

impl Certificates {
    pub fn new(ctx: Arc<EngineContext>) -> Certificates {
        let now = ctx.clock.now_millis();
        Certificates { ctx, revoked_since: Arc::new(AtomicI64::new(now)) }
    }

    /// A02: asks the connected station for a new CSR and tracks the renewal.
    pub async fn renew(&self, tenant: &str, station: &str) -> Result<crate::store::CertRequest, RenewError> {
        renewal::renew(&self.ctx, tenant, station).await
    }

    /// One automatic-renewal pass (what the tick runs); how many it started.
    pub async fn auto_renew(&self) -> usize {
        renewal::auto_renew(&self.ctx).await
    }

    /// Issues (if not done yet) and delivers the certificate of request `id`.
    pub async fn deliver(&self, tenant: &str, station: &str, id: i64) {
        delivery::deliver(&self.ctx, tenant, station, id).await;
    }

    /// Takes over requests whose claim went stale, for stations connected
    /// here (what the tick runs); how many it retried.
    pub async fn retry_stale_claims(&self) -> usize {
        delivery::retry_stale_claims(&self.ctx).await
    }

    /// Closes live sessions whose certificate was revoked since the last pass
    /// (by the CLI, another node, the API).
    pub async fn close_revoked_sessions(&self) {
        close_revoked_sessions(&self.ctx, &self.revoked_since).await;
    }

    /// A02/A03: answers a station's SignCertificateRequest. Accepted only once
    /// the request is recorded; the certificate follows after the answer.
    async fn sign_certificate(
        &self,
        station: &ConnectedStation,
        req: SignCertificateRequest,
    ) -> Result<SignCertificateResponse, StoreError> {
        let ctx = &self.ctx;
        let (tenant, station) = (&*station.tenant_id, station.station_id.as_str());
        let now = ctx.clock.now_millis();
        if req.certificate_type == Some(CertificateSigningUseEnumType::V2GCertificate) {
            return Ok(rejected("NotSupported", "V2GCertificate signing comes with ISO 15118 support"));
        }
        let recent = ctx.store.cert_requests(tenant, station, 50).await?;
        // A recent operator renewal (A02) waiting for this CSR; REQUESTED too, as the
        // CSR may arrive before the trigger's answer is recorded.
        let open = recent
            .iter()
            .find(|r| {
                r.origin == "operator"
                    && (r.state == State::Triggered || r.state == State::Requested)
                    && now - r.updated_at < TRIGGER_VALID_MS
            })
            .map(|r| r.id);
        if open.is_none() {
            // A03 rate limit; an operator's own renewal is never refused for it.
            let hour_ago = now - 3_600_000;
            let in_last_hour = recent.iter().filter(|r| r.created_at > hour_ago && r.csr_pem.is_some()).count();
            if in_last_hour >= MAX_REQUESTS_PER_HOUR {
                tracing::warn!(station, tenant, "SignCertificate rate limit reached");
                return Ok(rejected("RateLimited", format!("at most {MAX_REQUESTS_PER_HOUR} requests per hour")));
            }
        }
        let organization = ctx.store.tenant(tenant).await?.map(|t| t.organization).unwrap_or_default();
        let checked =
            pki::validate_csr(&req.csr, station).and_then(|c| c.check_organization(&organization).map(|()| c));
        let open_states = [State::Requested, State::Triggered];
        if let Err(rule) = checked {
            let detail = format!("{}: {rule}", rule.rule());
            tracing::info!(station, tenant, rule = rule.rule(), "CSR rejected");
            let change =
                RequestChange { csr_pem: Some(&req.csr), detail: Some(&detail), ..RequestChange::to(State::Rejected) };
            let attached = match open {
                Some(id) => ctx.store.update_cert_request(tenant, id, &open_states, change, now).await?,
                None => false,
            };
            if !attached {
                ctx.store.insert_cert_request(tenant, station, "station", change, now).await?;
            }
            return Ok(rejected("InvalidCSR", detail));
        }
        // Durable before Accepted.
        let change = RequestChange { csr_pem: Some(&req.csr), ..RequestChange::to(State::CsrReceived) };
        match open {
            Some(id) if ctx.store.update_cert_request(tenant, id, &open_states, change, now).await? => {}
            _ => {
                ctx.store.insert_cert_request(tenant, station, "station", change, now).await?;
            }
        }
        Ok(SignCertificateResponse { custom_data: None, status: GenericStatusEnumType::Accepted, status_info: None })
    }
}

/// A Rejected answer with its reason (reasonCode at most 20 characters, the
/// detail cut to the schema's 512).
fn rejected(reason: &str, info: impl Into<String>) -> SignCertificateResponse {
    let mut info: String = info.into();
    if info.len() > 500 {
        let cut = (0..=500).rev().find(|i| info.is_char_boundary(*i)).unwrap_or(0);
        info.truncate(cut);
    }
    SignCertificateResponse {
        custom_data: None,
        status: GenericStatusEnumType::Rejected,
        status_info: Some(StatusInfoType {
            custom_data: None,
            reason_code: reason.to_owned(),
            additional_info: Some(info),
        }),
    }
}

impl Engine for Certificates {
    fn name(&self) -> &'static str {
        "certificates"
    }

    fn actions(&self) -> &'static [Action] {
        &[Action::SignCertificate]
    }

    fn handle<'a>(&'a self, mut call: StationCall<'a>) -> BoxFuture<'a, Result<Answer, HandlerError>> {
        Box::pin(async move {
            let req = call.decode::<SignCertificateRequest>()?;
            // Kept typed: `after_answer` reads whether it was Accepted.
            Ok(Answer::keep::<SignCertificateRequest>(self.sign_certificate(call.station, req).await?))
        })
    }

    /// Deliveries a crash or disconnect cut short; what the station connected with.
    fn on_connect(&self, station: &ConnectedStation) -> Option<Task> {
        // The connect read found no request to move and no older certificate
        // to supersede: nothing to read or write for this connection.
        if !station.certificate_work {
            return None;
        }
        let (ctx, station) = (self.ctx.clone(), station.clone());
        Some(Box::pin(async move {
            let (tenant, id) = (station.tenant_id.to_string(), station.station_id.as_str());
            // One read of the station's recent requests serves both steps.
            let read = || async {
                ctx.store.cert_requests(&tenant, id, 20).await.inspect_err(|e| {
                    tracing::warn!(error = %e, "reading the station's certificate requests");
                })
            };
            // Without it the older certificates are still superseded (A02);
            // only the request bookkeeping waits for the next connection.
            let mut recent = read().await.unwrap_or_default();
            if let Some(serial) = &station.certificate_serial {
                match delivery::admitted_with(&ctx, &tenant, id, serial, &recent).await {
                    // A request moved to installed: resume must see it so.
                    Ok(true) => match read().await {
                        Ok(again) => recent = again,
                        Err(_) => return,
                    },
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = %e, "recording the certificate a station connected with"),
                }
            }
            delivery::resume(&ctx, &tenant, id, recent).await;
        }))
    }

    /// A SignCertificate just answered Accepted: issue and deliver.
    fn after_answer(&self, station: &ConnectedStation, answer: &Answer) -> Option<Task> {
        let accepted = answer.typed::<SignCertificateRequest>()?.status == GenericStatusEnumType::Accepted;
        if !accepted {
            return None;
        }
        let (ctx, station) = (self.ctx.clone(), station.clone());
        Some(Box::pin(async move { delivery::issue_accepted(&ctx, &station.tenant_id, &station.station_id).await }))
    }

    fn tick(&self) -> Option<Task> {
        let (ctx, since) = (self.ctx.clone(), self.revoked_since.clone());
        Some(Box::pin(async move {
            // Revoked certificates' sessions first: nothing below may delay that.
            close_revoked_sessions(&ctx, &since).await;
            delivery::sweep(&ctx).await;
            delivery::retry_stale_claims(&ctx).await;
            renewal::auto_renew(&ctx).await;
        }))
    }
}

/// Closes live sessions whose certificate was revoked since `since` by anyone
/// (the CLI, another node, the API), and moves `since` on.
async fn close_revoked_sessions(ctx: &EngineContext, since: &AtomicI64) {
    let now = ctx.clock.now_millis();
    match ctx.store.revoked_since(since.load(Ordering::Acquire)).await {
        Ok(revoked) => {
            for CertificateRef { tenant_id: tenant, serial_hex: serial } in revoked {
                if ctx.link.disconnect_certificate(&tenant, &serial) > 0 {
                    tracing::info!(tenant, serial, "session closed: its certificate was revoked");
                }
            }
            // Two minutes of overlap: another process's clock and commit delay
            // must not hide a revocation; closing twice is harmless.
            since.store(now - 120_000, Ordering::Release);
        }
        Err(e) => tracing::warn!(error = %e, "reading recent revocations"),
    }
}
