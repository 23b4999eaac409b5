//! Renewal (A02): on the operator's request, and automatically for certificates
//! near expiry or issued by a replaced station CA, spread out and bounded per tick.

use std::sync::Arc;

use ocpp::v201::{MessageTriggerEnumType, TriggerMessageRequest, TriggerMessageStatusEnumType};

use crate::engines::EngineContext;
use crate::link::CallFailure;
use crate::store::{CaOverlap, CertRequest, CertRequestState as State, CertificateRecord, RequestChange, StoreError};

/// Renewals one maintenance tick may start in this process.
pub const MAX_RENEWALS_PER_TICK: usize = 50;

/// Why an automatic renewal pass stopped early.
const READING: &str = "reading certificates to renew";

/// Why an operator's renewal could not start.
#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    #[error("station '{0}' is not connected")]
    NotConnected(String),
    #[error("the station refused the trigger: {0}")]
    Refused(String),
    /// The trigger reached the station, whose answer never came: its CSR may
    /// still follow, and is attached to the request, which stays `requested`.
    #[error("{0}")]
    OutcomeUnknown(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A02: asks a connected station to send a new CSR (TriggerMessage
/// SignChargingStationCertificate) and tracks the renewal.
pub(super) async fn renew(ctx: &EngineContext, tenant: &str, station: &str) -> Result<CertRequest, RenewError> {
    if !ctx.link.is_connected(tenant, station) {
        return Err(RenewError::NotConnected(station.to_owned()));
    }
    let now = ctx.clock.now_millis();
    let id =
        ctx.store.insert_cert_request(tenant, station, "operator", RequestChange::to(State::Requested), now).await?;
    let trigger = TriggerMessageRequest {
        custom_data: None,
        evse: None,
        requested_message: MessageTriggerEnumType::SignChargingStationCertificate,
    };
    let detail = match ctx.link.call(tenant, station, trigger).await {
        Ok(a) if a.status == TriggerMessageStatusEnumType::Accepted => None,
        Ok(a) => Some(format!("TriggerMessage answered {}", a.status.as_str())),
        Err(CallFailure::NotConnected | CallFailure::ClosedBeforeSending) => {
            let change = RequestChange { detail: Some("not connected"), ..RequestChange::to(State::Failed) };
            ctx.store.update_cert_request(tenant, id, &[State::Requested], change, ctx.clock.now_millis()).await?;
            return Err(RenewError::NotConnected(station.to_owned()));
        }
        Err(e) if e.outcome_unknown() => {
            tracing::info!(station, tenant, request = id, error = %e, "renewal trigger outcome unknown; a CSR that follows is attached");
            return Err(RenewError::OutcomeUnknown(e.to_string()));
        }
        Err(e) => Some(e.to_string()),
    };
    // Only from REQUESTED: the CSR may already have moved the request on.
    let change = match &detail {
        None => RequestChange::to(State::Triggered),
        Some(d) => RequestChange { detail: Some(d), ..RequestChange::to(State::Failed) },
    };
    ctx.store.update_cert_request(tenant, id, &[State::Requested], change, ctx.clock.now_millis()).await?;
    if let Some(d) = detail {
        return Err(RenewError::Refused(d));
    }
    let rec = ctx.store.cert_request(tenant, id).await?;
    rec.ok_or_else(|| RenewError::Refused("the renewal record vanished".into()))
}

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
/// renewed by the current CA, spread over the overlap's first half. Returns how
/// many renewals it started.
pub(super) async fn auto_renew(ctx: &Arc<EngineContext>) -> usize {
    let now = ctx.clock.now_millis();
    let window = i64::from(ctx.config.renewal_window_days) * 86_400_000;
    let mut started: Vec<(String, String)> = Vec::new();
    let mut after = now;
    // Pages of candidates, soonest first, until enough were started.
    'expiring: for _ in 0..20 {
        let due = match ctx.store.certificates_expiring(after, now + window, 500).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "{READING}: expiring");
                return started.len();
            }
        };
        let Some(last) = due.last().map(|c| c.not_after) else { break };
        let full = due.len() == 500;
        for cert in due {
            let start = renewal_start(cert.not_after, window, &cert.serial_hex);
            if !try_renew(ctx, cert, start, now, &mut started, "automatic renewal").await {
                return started.len();
            }
        }
        if !full {
            break 'expiring;
        }
        after = last;
    }
    let overlapping = match ctx.store.overlapping_station_cas(now).await {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(error = %e, "{READING}: replaced station CAs");
            return started.len();
        }
    };
    for CaOverlap { tenant_id: tenant, name, replaced_at, trusted_until } in overlapping {
        let Some((_, issuer)) = name.split_once('@') else { continue };
        let mut after = String::new();
        for _ in 0..20 {
            let batch = match ctx.store.certificates_to_move(&tenant, issuer, now, &after, 500).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "{READING}: of a replaced CA");
                    return started.len();
                }
            };
            let Some(last) = batch.last().map(|c| c.serial_hex.clone()) else { break };
            let full = batch.len() == 500;
            for cert in batch {
                let start = renewal_start(trusted_until, trusted_until - replaced_at, &cert.serial_hex);
                if !try_renew(ctx, cert, start, now, &mut started, "renewal by the new station CA").await {
                    return started.len();
                }
            }
            if !full {
                break;
            }
            after = last;
        }
    }
    started.len()
}

/// Starts a renewal of `cert`'s station if its moment (`start`) has come, it is
/// connected and nothing is under way; `false` once the tick's budget is spent.
async fn try_renew(
    ctx: &Arc<EngineContext>,
    cert: CertificateRecord,
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
    if !ctx.link.is_connected(&cert.tenant_id, &cert.station_id) {
        return true;
    }
    let busy = match ctx.store.cert_requests(&cert.tenant_id, &cert.station_id, 5).await {
        Ok(rs) => rs.iter().any(|r| {
            let age = now - r.updated_at;
            match r.state {
                State::Requested
                | State::Triggered
                | State::CsrReceived
                | State::Issuing
                | State::Issued
                | State::Delivering
                | State::Delivered => age < 3_600_000,
                // A station that refused: back off for a day.
                State::Failed | State::Rejected | State::StationRejected => age < 86_400_000,
                State::Installed | State::Superseded => false,
            }
        }),
        Err(_) => true,
    };
    if busy {
        return true;
    }
    started.push(key);
    tracing::info!(station = %cert.station_id, tenant = %cert.tenant_id, serial = %cert.serial_hex, "{why}");
    let ctx = ctx.clone();
    tokio::spawn(async move {
        if let Err(e) = renew(&ctx, &cert.tenant_id, &cert.station_id).await {
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
