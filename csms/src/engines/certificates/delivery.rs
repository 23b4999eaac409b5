//! Issuing and delivering accepted requests (A02/A03), and what follows when a
//! station connects with its new certificate.

use futures_util::StreamExt;
use ocpp::v201::{CertificateSignedRequest, CertificateSignedStatusEnumType, CertificateSigningUseEnumType};

use crate::authority::{self, EnrollError, Signer, Validity};
use crate::engines::EngineContext;
use crate::link::CallFailure;
use crate::store::{CertRequest, CertRequestState as State, CertificateRef, RequestChange, StoreError};

/// A request claimed (`issuing`, `delivering`) this long ago by a process that
/// then died is taken over (`config::CLAIM_STALE_SECS`, above any call timeout).
const CLAIM_STALE_MS: i64 = crate::config::CLAIM_STALE_SECS as i64 * 1000;

/// Stale claims one maintenance tick takes over at most (the rest wait for the next).
const MAX_STALE_CLAIMS_PER_TICK: u32 = 100;

/// Why a delivery did not complete (it resumes at the station's next connection).
#[derive(Debug, thiserror::Error)]
enum DeliveryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("issuing the certificate: {0}")]
    Issue(#[from] EnrollError),
    #[error("the stored CSR no longer passes the CSR rules: {0}")]
    Csr(#[from] pki::CsrRejection),
    #[error("reading the issuing CA: {0}")]
    IssuerChain(crate::error::Error),
    #[error("the tenant vanished")]
    NoTenant,
    #[error("CertificateSigned: {0}")]
    Call(CallFailure),
}

/// Issues (if not done yet) and delivers the certificate of request `id`.
pub(super) async fn deliver(ctx: &EngineContext, tenant: &str, station: &str, id: i64) {
    if let Err(e) = deliver_inner(ctx, tenant, station, id).await {
        tracing::warn!(station, tenant, request = id, error = %e, "certificate delivery did not complete; resumes at the next connection");
    }
}

async fn deliver_inner(ctx: &EngineContext, tenant: &str, station: &str, id: i64) -> Result<(), DeliveryError> {
    let Some(req) = ctx.store.cert_request(tenant, id).await? else {
        return Ok(());
    };
    let now_ms = ctx.clock.now_millis();
    let stale = now_ms - req.updated_at > CLAIM_STALE_MS;
    let Some(csr_pem) = req.csr_pem.as_deref() else { return Ok(()) };
    // Each step is claimed with a compare-and-set, so of two deliveries of one
    // request (a reply's and a reconnection's) only one issues and one sends.
    let chain = match req.state {
        State::CsrReceived | State::Issuing => {
            let from: &[State] =
                if req.state == State::Issuing && stale { &[State::Issuing] } else { &[State::CsrReceived] };
            let claim = RequestChange { claim: Some(ctx.identity.claimant()), ..RequestChange::to(State::Issuing) };
            if !ctx.store.update_cert_request(tenant, id, from, claim, now_ms).await? {
                return Ok(());
            }
            let tenant_rec = ctx.store.tenant(tenant).await?.ok_or(DeliveryError::NoTenant)?;
            let csr = pki::validate_csr(csr_pem, station)?;
            let now = ctx.clock.now();
            let public_url = ctx.config.public_url();
            let signer =
                Signer { store: &ctx.store, keys: &ctx.keys, public_url: &public_url, writes: Some(&ctx.writes) };
            let days = i64::from(ctx.config.station_certificate_days);
            let validity =
                Validity { not_before: now - time::Duration::minutes(5), not_after: now + time::Duration::days(days) };
            let (chain, rec) = authority::issue_for(&signer, &tenant_rec, station, &csr, validity, now).await?;
            let issued = RequestChange {
                serial_hex: Some(&rec.serial_hex),
                claim: Some(ctx.identity.claimant()),
                ..RequestChange::to(State::Delivering)
            };
            if !ctx.store.update_cert_request(tenant, id, &[State::Issuing], issued, ctx.clock.now_millis()).await? {
                // Another process took the request over meanwhile, or a newer
                // request superseded it: this certificate is not the one
                // delivered, so it must not stay valid.
                ctx.store.revoke_certificate(tenant, &rec.serial_hex, ctx.clock.now_millis(), "superseded").await?;
                tracing::warn!(
                    station,
                    tenant,
                    request = id,
                    "issuance was taken over or superseded; the certificate issued here is revoked"
                );
                return Ok(());
            }
            chain
        }
        State::Issued | State::Delivering => {
            // Issued before a crash or disconnect: deliver the same certificate again.
            let from: &[State] =
                if req.state == State::Delivering && stale { &[State::Delivering] } else { &[State::Issued] };
            let claim = RequestChange { claim: Some(ctx.identity.claimant()), ..RequestChange::to(State::Delivering) };
            if !ctx.store.update_cert_request(tenant, id, from, claim, now_ms).await? {
                return Ok(());
            }
            let Some(serial) = &req.serial_hex else { return Ok(()) };
            let Some(rec) = ctx.store.certificate(tenant, serial).await? else { return Ok(()) };
            let ca = crate::station_ca::issuer_chain(&ctx.store, tenant, rec.issuer_id.as_deref())
                .await
                .map_err(DeliveryError::IssuerChain)?
                .unwrap_or_default();
            authority::chain_pem(&rec.cert_pem, &ca)
        }
        _ => return Ok(()),
    };
    let request = CertificateSignedRequest {
        custom_data: None,
        certificate_chain: chain,
        certificate_type: Some(CertificateSigningUseEnumType::ChargingStationCertificate),
    };
    let refusal = match ctx.link.call(tenant, station, request).await {
        Ok(answer) if answer.status == CertificateSignedStatusEnumType::Accepted => None,
        Ok(answer) => Some(match answer.status_info {
            Some(info) => format!(
                "CertificateSigned answered Rejected ({}{})",
                info.reason_code,
                info.additional_info.map(|i| format!(": {i}")).unwrap_or_default()
            ),
            None => "CertificateSigned answered Rejected".to_owned(),
        }),
        Err(CallFailure::Rejected { code, description }) => Some(format!("{}: {description}", code.as_str())),
        Err(e) => {
            // Not delivered, or not known to be (the call reached the station and
            // no answer came): back to `issued`, for the next connection, which
            // sends the same certificate again.
            let back = RequestChange::to(State::Issued);
            ctx.store.update_cert_request(tenant, id, &[State::Delivering], back, ctx.clock.now_millis()).await?;
            return Err(DeliveryError::Call(e));
        }
    };
    let serial = ctx.store.cert_request(tenant, id).await?.and_then(|r| r.serial_hex);
    let now_ms = ctx.clock.now_millis();
    match refusal {
        None => {
            let delivered = RequestChange::to(State::Delivered);
            ctx.store.update_cert_request(tenant, id, &[State::Delivering], delivered, now_ms).await?;
            tracing::info!(station, tenant, request = id, "certificate delivered");
        }
        Some(detail) => {
            // A certificate the station will not use must not count as its
            // replacement: revoked first, so the recorded refusal implies it.
            if let Some(serial) = serial {
                ctx.store.revoke_certificate(tenant, &serial, now_ms, "superseded").await?;
            }
            let change = RequestChange { detail: Some(&detail), ..RequestChange::to(State::StationRejected) };
            ctx.store.update_cert_request(tenant, id, &[State::Delivering], change, now_ms).await?;
            tracing::info!(station, tenant, request = id, detail, "station refused its certificate");
        }
    }
    Ok(())
}

/// On (re)connection: deliver the newest request accepted but not delivered.
/// A02: older ones are superseded (their certificates revoked), never sent
/// after it; a newer request supersedes them when it is recorded, and this
/// catches rows recorded before that.
pub(super) async fn resume(ctx: &EngineContext, tenant: &str, station: &str, recent: Vec<CertRequest>) {
    let pending = [State::CsrReceived, State::Issuing, State::Issued, State::Delivering];
    // The newest request still meant to end in a certificate (a refused CSR or
    // trigger supersedes nothing).
    let live = |s: State| !matches!(s, State::Rejected | State::Failed | State::Superseded);
    let Some(newest) = recent.iter().find(|r| live(r.state)).cloned() else { return };
    // Written only when there is something to supersede: a connection costs no
    // write transaction otherwise.
    let older_pending = recent.iter().any(|r| r.id < newest.id && State::SUPERSEDABLE.contains(&r.state));
    let superseded = if older_pending {
        ctx.store.supersede_requests_before(tenant, station, newest.id, ctx.clock.now_millis()).await
    } else {
        Ok(Vec::new())
    };
    match superseded {
        Ok(ids) if !ids.is_empty() => {
            tracing::info!(station, tenant, newest = newest.id, superseded = ?ids, "older undelivered requests superseded")
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(error = %e, "superseding older certificate requests");
            return;
        }
    }
    if pending.contains(&newest.state) {
        deliver(ctx, tenant, station, newest.id).await;
    }
}

/// Maintenance: requests whose claim went stale (a process died holding it)
/// are taken over for stations connected here, without waiting for the
/// station to reconnect. How many were retried.
pub(super) async fn retry_stale_claims(ctx: &EngineContext) -> usize {
    let cutoff = ctx.clock.now_millis() - CLAIM_STALE_MS;
    let stale = match ctx.store.stale_claims(cutoff, MAX_STALE_CLAIMS_PER_TICK).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "reading stale certificate request claims");
            return 0;
        }
    };
    let here: Vec<_> = stale.into_iter().filter(|r| ctx.link.is_connected(&r.tenant_id, &r.station_id)).collect();
    let retried = here.len();
    // Each delivery may wait up to `call_timeout_secs` for its station: several
    // at once, so that unresponsive stations hold the tick for one timeout, not
    // one each.
    futures_util::stream::iter(here)
        .for_each_concurrent(STALE_CLAIMS_AT_ONCE, |r| async move {
            tracing::info!(
                station = %r.station_id,
                tenant = %r.tenant_id,
                request = r.id,
                state = %r.state,
                claimed_by = r.claim_node.as_deref().unwrap_or("-"),
                "taking over a stale claim"
            );
            deliver(ctx, &r.tenant_id, &r.station_id, r.id).await;
        })
        .await;
    retried
}

/// Stale claims delivered at once by the maintenance tick.
const STALE_CLAIMS_AT_ONCE: usize = 16;

/// After an accepted SignCertificate: issue and deliver what was just
/// accepted (requests cut short earlier wait for the next connection, as they
/// did before the station sent this one).
pub(super) async fn issue_accepted(ctx: &EngineContext, tenant: &str, station: &str) {
    deliver_in(ctx, tenant, station, &[State::CsrReceived]).await;
}

async fn deliver_in(ctx: &EngineContext, tenant: &str, station: &str, states: &[State]) {
    let pending = match ctx.store.cert_requests_in(tenant, station, states).await {
        Ok(rs) => rs,
        Err(e) => {
            tracing::warn!(error = %e, "reading pending certificate requests");
            return;
        }
    };
    for r in pending {
        deliver(ctx, tenant, station, r.id).await;
    }
}

/// A station connected with certificate `serial`: a delivered request for it is
/// installed, and the station's older certificates are superseded (revoked now
/// when the grace period is zero, else by [`sweep`]).
pub(super) async fn admitted_with(
    ctx: &EngineContext,
    tenant: &str,
    station: &str,
    serial: &str,
    recent: &[CertRequest],
) -> Result<bool, StoreError> {
    let now = ctx.clock.now_millis();
    // Older certificates first (revoked at once when the grace is 0), so that
    // `installed` implies it. Looked for with a read: most connections have
    // nothing to supersede, and an UPDATE would take the write lock each time.
    if ctx.store.has_older_live_certificates(tenant, station, serial).await?
        && ctx.store.supersede_certificates(tenant, station, serial, now).await? > 0
        && ctx.config.superseded_grace_secs == 0
    {
        sweep(ctx).await;
    }
    if let Some(r) = recent.iter().find(|r| r.serial_hex.as_deref() == Some(serial)) {
        let from = [State::Delivered, State::Delivering, State::Issued];
        if ctx.store.update_cert_request(tenant, r.id, &from, RequestChange::to(State::Installed), now).await? {
            tracing::info!(station, tenant, serial, "station connected with its new certificate");
            return Ok(true);
        }
    }
    Ok(false)
}

/// Revokes certificates superseded longer ago than the grace period; closes
/// sessions still using them.
pub(super) async fn sweep(ctx: &EngineContext) {
    let now = ctx.clock.now_millis();
    let cutoff = now - i64::try_from(ctx.config.superseded_grace_secs).unwrap_or(i64::MAX / 2_000).saturating_mul(1000);
    match ctx.store.revoke_superseded(cutoff, now).await {
        Ok(revoked) => {
            for CertificateRef { tenant_id: tenant, serial_hex: serial } in revoked {
                tracing::info!(tenant, serial, "superseded certificate revoked");
                ctx.link.disconnect_certificate(&tenant, &serial);
            }
        }
        Err(e) => tracing::warn!(error = %e, "revoking superseded certificates"),
    }
}
