//! Who is connecting: the checks between the HTTP upgrade request and the session.
//!
//! Profile 3 (A00.FR.405, A00.FR.407): the client certificate chains to a CA the
//! station's tenant trusts, is within validity, not revoked, and its subject CN is
//! the station id. Profile 2/1: HTTP Basic with username = station id. A station is
//! never let in with a lower profile than configured (A05).

use std::net::IpAddr;

use rustls::pki_types::{CertificateDer, UnixTime};

use super::Gateway;
use crate::password;
use crate::store::{ConnectFacts, PresentedCertificate, Station};

/// How the connection arrived.
#[derive(Debug, Clone)]
pub struct Transport {
    pub tls: bool,
    /// Chain the client presented in the TLS handshake (already verified against
    /// the union of all tenants' anchors by rustls).
    pub client_chain: Option<Vec<CertificateDer<'static>>>,
    /// Host name the client asked for (TLS SNI).
    pub sni: Option<String>,
}

/// Why a connection was refused. The label is logged and counted; the client
/// only ever sees the HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    UnknownStation,
    StationDisabled,
    ProfileDowngrade,
    NoClientCertificate,
    BasicAuthForProfile3,
    CertificateWrongTenant,
    /// Outside its validity at the CSMS's time (the TLS layer checks first;
    /// this holds when the clocks disagree).
    CertificateExpired,
    CertificateNotYetValid,
    CertificateCnMismatch,
    CertificateRevoked,
    /// Issued by a station CA that was replaced and whose overlap has ended.
    CertificateCaRetired,
    /// Chains to the tenant's root but is not a certificate this CSMS issued and
    /// recorded (e.g. signed with a replaced CA's key, or by an operator's CA outside it).
    CertificateNotIssuedHere,
    CertificateUnreadable,
    TenantHostMismatch,
    MissingBasicAuth,
    BasicUserMismatch,
    NoPasswordSet,
    WrongPassword,
    /// The station id or the source address is backed off after failed
    /// password logins; the password was not checked.
    TooManyFailures {
        retry_after_secs: u64,
    },
    /// As many password checks as allowed are running and queued.
    PasswordQueueFull,
    Internal,
}

impl Refusal {
    pub fn label(self) -> &'static str {
        match self {
            Refusal::UnknownStation => "unknown_station",
            Refusal::StationDisabled => "station_disabled",
            Refusal::ProfileDowngrade => "profile_downgrade",
            Refusal::NoClientCertificate => "no_client_certificate",
            Refusal::BasicAuthForProfile3 => "basic_auth_for_profile3",
            Refusal::CertificateWrongTenant => "certificate_wrong_tenant",
            Refusal::CertificateExpired => "certificate_expired",
            Refusal::CertificateNotYetValid => "certificate_not_yet_valid",
            Refusal::CertificateCnMismatch => "certificate_cn_mismatch",
            Refusal::CertificateRevoked => "certificate_revoked",
            Refusal::CertificateCaRetired => "certificate_ca_retired",
            Refusal::CertificateNotIssuedHere => "certificate_not_issued_here",
            Refusal::CertificateUnreadable => "certificate_unreadable",
            Refusal::TenantHostMismatch => "tenant_host_mismatch",
            Refusal::MissingBasicAuth => "missing_basic_auth",
            Refusal::BasicUserMismatch => "basic_user_mismatch",
            Refusal::NoPasswordSet => "no_password_set",
            Refusal::WrongPassword => "wrong_password",
            Refusal::TooManyFailures { .. } => crate::metrics::gateway_refusals::TOO_MANY_FAILURES,
            Refusal::PasswordQueueFull => crate::metrics::gateway_refusals::PASSWORD_QUEUE_FULL,
            Refusal::Internal => "internal_error",
        }
    }

    pub fn status(self) -> http::StatusCode {
        match self {
            Refusal::Internal | Refusal::PasswordQueueFull => http::StatusCode::SERVICE_UNAVAILABLE,
            Refusal::TooManyFailures { .. } => http::StatusCode::TOO_MANY_REQUESTS,
            _ => http::StatusCode::UNAUTHORIZED,
        }
    }
}

/// Who was let in: the station, and the serial of the certificate it
/// authenticated with (profile 3), so revoking it can end the session.
#[derive(Debug, Clone)]
pub struct Admission {
    pub station: Station,
    pub certificate_serial: Option<String>,
    /// The certificates engine has bookkeeping to do on this connection
    /// ([`ConnectFacts::certificate_work`]).
    pub certificate_work: bool,
}

/// Decides whether `station_id`, connecting from `source`, may open a session
/// over `transport` with the given `Authorization` header.
///
/// A correct password is admitted cheaply where it can be: one HMAC for a
/// password the CSMS generated (keyed verifier) or for one verified before
/// against the same stored hash (the success cache); PBKDF2 otherwise. When a
/// Basic password was presented, every refusal but a back-off or a full queue
/// costs at least one PBKDF2 verification (against the station's hash, or a
/// dummy one where none ran: an unknown id, a keyed verifier that did not
/// match), so neither the answer nor its timing tells a known station id from
/// an unknown one, or a generated password from a chosen one; and each refusal
/// counts as a failed login for the station id and for the source address.
pub async fn authenticate(
    app: &Gateway,
    station_id: &str,
    source: IpAddr,
    transport: &Transport,
    authorization: Option<&str>,
) -> Result<Admission, Refusal> {
    let Some((_, password)) = authorization.and_then(parse_basic) else {
        return decide(app, station_id, transport, authorization, &mut false).await;
    };
    // Decided before anything is looked up, so it is the same for every id.
    if let Some(retry_after_secs) = app.throttle.backed_off(station_id, source, app.clock.now_millis()) {
        return Err(Refusal::TooManyFailures { retry_after_secs });
    }
    let mut checked = false;
    let result = decide(app, station_id, transport, authorization, &mut checked).await;
    match result {
        Ok(admission) => {
            app.throttle.succeeded(station_id);
            Ok(admission)
        }
        Err(Refusal::Internal | Refusal::PasswordQueueFull | Refusal::TooManyFailures { .. }) => result,
        Err(refusal) => {
            let refusal = if checked { refusal } else { equal_time(app, password, refusal).await };
            if refusal != Refusal::PasswordQueueFull {
                app.throttle.failed(station_id, source, app.clock.now_millis());
            }
            Err(refusal)
        }
    }
}

/// The checks themselves; `checked` is set when a PBKDF2 verification ran.
async fn decide(
    app: &Gateway,
    station_id: &str,
    transport: &Transport,
    authorization: Option<&str>,
    checked: &mut bool,
) -> Result<Admission, Refusal> {
    let chain = transport.client_chain.as_deref().filter(|c| !c.is_empty());
    // Read first, so that one statement finds the station and the record of the
    // certificate it presented (an unreadable one is refused where it matters).
    let leaf = chain.map(|c| pki::inspect_certificate(&c[0]).ok());
    let serial = leaf.as_ref().and_then(|l| l.as_ref()).map(|i| i.serial_hex.as_str());
    let facts = match app.store.connect_facts(station_id, serial).await {
        Ok(Some(f)) => f,
        Ok(None) => return Err(Refusal::UnknownStation),
        Err(e) => {
            tracing::error!(error = %e, "station lookup failed");
            return Err(Refusal::Internal);
        }
    };
    let ConnectFacts { station, certificate, certificate_work } = facts;
    if !station.enabled {
        return Err(Refusal::StationDisabled);
    }
    // A tenant's own host name serves that tenant's stations only.
    if let Some(owner) = transport.sni.as_deref().and_then(|h| app.tenant_of_host(h))
        && owner != station.tenant_id
    {
        return Err(Refusal::TenantHostMismatch);
    }
    // A05: the transport must offer at least the configured profile.
    if !transport.tls && station.security_profile > 1 {
        return Err(Refusal::ProfileDowngrade);
    }
    if station.security_profile >= 3 {
        let (Some(chain), Some(leaf)) = (chain, leaf) else {
            return Err(if authorization.is_some() {
                Refusal::BasicAuthForProfile3
            } else {
                Refusal::NoClientCertificate
            });
        };
        let serial = verify_certificate(app, &station, chain, leaf, certificate)?;
        return Ok(Admission { station, certificate_serial: Some(serial), certificate_work });
    }
    // A05: a profile-2 station being moved up connects with its new certificate
    // and no password. It is admitted on the certificate, under the same checks
    // as profile 3, and is profile 3 from then on: Basic no longer opens it.
    if station.security_profile == 2
        && authorization.is_none()
        && let (Some(chain), Some(leaf)) = (chain, leaf)
    {
        let serial = verify_certificate(app, &station, chain, leaf, certificate)?;
        return match app.store.update_station(&station.tenant_id, &station.id, Some(3), None, None, None).await {
            Ok(raised) => {
                tracing::info!(station = %station.id, tenant = %station.tenant_id, "security profile raised from 2 to 3 (A05)");
                Ok(Admission { station: raised, certificate_serial: Some(serial), certificate_work })
            }
            Err(e) => {
                tracing::error!(error = %e, "raising the security profile failed");
                Err(Refusal::Internal)
            }
        };
    }
    verify_basic(app, &station, authorization, checked).await?;
    Ok(Admission { station, certificate_serial: None, certificate_work })
}

/// A refusal that must not be told apart by its timing: the client sent a
/// password that reached no PBKDF2 hash (none, or only a keyed verifier), so one
/// PBKDF2 verification is spent against a dummy hash with the configured
/// iterations, as for a wrong password against a chosen one.
async fn equal_time(app: &Gateway, password: String, refusal: Refusal) -> Refusal {
    let Some(stored) = app.dummy_hash.clone() else {
        return refusal;
    };
    match check_password(app, password, stored).await {
        Err(Refusal::PasswordQueueFull) => Refusal::PasswordQueueFull,
        _ => refusal,
    }
}

/// One PBKDF2 verification on the bounded pool, off the reactor; refused at
/// once when the pool and its queue are full.
async fn check_password(app: &Gateway, password: String, stored: String) -> Result<bool, Refusal> {
    let Some(_place) = app.password_pool.place() else {
        return Err(Refusal::PasswordQueueFull);
    };
    let _permit = app.password_pool.running().acquire().await.map_err(|_| Refusal::Internal)?;
    app.metrics.password_checks.inc();
    tokio::task::spawn_blocking(move || password::verify(&password, &stored))
        .await
        .map_err(|_| Refusal::Internal)?
        .map_err(|_| Refusal::Internal)
}

/// Checks the chain for this station; returns the leaf's serial.
///
/// rustls has verified the chain (signatures, validity, client-auth usage)
/// against the union of all tenants' anchors, at the full handshake that made
/// the TLS session (a resumed session brings the chain verified then, with no
/// new check). So the record made at issuance carries every trust decision
/// taken since: revocation, CA retirement (`issuer_trusted_until`, which ends
/// trust in a replaced CA together with its anchor), validity by the CSMS
/// clock, and whether it is this station's certificate: a certificate
/// recorded under the station's tenant with this very fingerprint was issued
/// by that tenant's CA, so the chain is not verified a second time. Only when
/// there is no such record is it verified against the tenant's own anchors, to
/// say precisely why it is refused.
fn verify_certificate(
    app: &Gateway,
    station: &Station,
    chain: &[CertificateDer<'static>],
    leaf: Option<pki::CertInfo>,
    record: Option<PresentedCertificate>,
) -> Result<String, Refusal> {
    let info = leaf.ok_or(Refusal::CertificateUnreadable)?;
    let record = record.filter(|c| c.fingerprint == info.sha256_fingerprint_hex);
    let Some(record) = record else {
        verify_with_tenant_anchors(app, station, chain)?;
        return Err(if info.subject_cn.as_deref() != Some(station.id.as_str()) {
            Refusal::CertificateCnMismatch
        } else {
            // Chains to the tenant's root, but only the very certificate recorded
            // at issuance is let in: revocation and retirement are decided on it.
            Refusal::CertificateNotIssuedHere
        });
    };
    // By the CSMS's clock, which may differ from the TLS layer's.
    let now = app.clock.now_millis();
    if now < record.not_before {
        return Err(Refusal::CertificateNotYetValid);
    }
    if now > record.not_after {
        return Err(Refusal::CertificateExpired);
    }
    // A00.FR.405: the certificate belongs to this station.
    if info.subject_cn.as_deref() != Some(station.id.as_str()) {
        return Err(Refusal::CertificateCnMismatch);
    }
    if record.revoked_at.is_some() {
        return Err(Refusal::CertificateRevoked);
    }
    // A certificate of a replaced CA is accepted until its overlap ends.
    if record.issuer_trusted_until.is_some_and(|until| until <= now) {
        return Err(Refusal::CertificateCaRetired);
    }
    Ok(info.serial_hex)
}

/// The chain against the station's tenant's anchors, by the CSMS's clock: the
/// reason for refusing a certificate this tenant has no record of.
fn verify_with_tenant_anchors(
    app: &Gateway,
    station: &Station,
    chain: &[CertificateDer<'static>],
) -> Result<(), Refusal> {
    let anchors = app.trust.tenant_anchors(&station.tenant_id);
    let ee = webpki::EndEntityCert::try_from(&chain[0]).map_err(|_| Refusal::CertificateUnreadable)?;
    let now = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        u64::try_from(app.clock.now().unix_timestamp()).unwrap_or(0),
    ));
    let algs = super::tls::signature_algorithms();
    ee.verify_for_usage(algs.all, &anchors, &chain[1..], now, webpki::KeyUsage::client_auth(), None, None)
        .map(|_| ())
        .map_err(|e| match e {
            webpki::Error::CertExpired { .. } => Refusal::CertificateExpired,
            webpki::Error::CertNotValidYet { .. } => Refusal::CertificateNotYetValid,
            _ => Refusal::CertificateWrongTenant,
        })
}

async fn verify_basic(
    app: &Gateway,
    station: &Station,
    authorization: Option<&str>,
    checked: &mut bool,
) -> Result<(), Refusal> {
    let (user, pass) = authorization.and_then(parse_basic).ok_or(Refusal::MissingBasicAuth)?;
    if user != station.id {
        return Err(Refusal::BasicUserMismatch);
    }
    let Some(stored) = station.password_hash.as_deref() else {
        return Err(Refusal::NoPasswordSet);
    };
    // A01: while a new password's SetVariables has an unknown outcome, the
    // station may use either; the one it logs in with settles it.
    let pending = station.pending_password_hash.as_deref();
    let candidates = [Some((stored, false)), pending.map(|p| (p, true))];
    let candidates = candidates.iter().flatten();
    // Cheap first, inline: a generated password's keyed verifier, or an earlier
    // success remembered for this very verifier string.
    let mut took_new = None;
    for &(verifier, is_new) in candidates.clone() {
        if fast_check(app, &station.id, verifier, &pass)? {
            took_new = Some(is_new);
            break;
        }
    }
    // Then PBKDF2, deliberately slow: off the reactor, a bounded number at a time.
    if took_new.is_none() {
        for &(verifier, is_new) in candidates.filter(|(v, _)| password::kind(v) != Ok(password::Kind::Keyed)) {
            let ok = check_password(app, pass.clone(), verifier.to_owned()).await?;
            *checked = true;
            if ok {
                app.verified.remember(&station.id, verifier, &pass);
                took_new = Some(is_new);
                break;
            }
        }
    }
    let Some(took_new) = took_new else {
        return Err(Refusal::WrongPassword);
    };
    if let Some(pending) = pending {
        match app.store.settle_password(&station.id, pending, took_new).await {
            Ok(true) => tracing::info!(
                station = %station.id,
                logged_in_with = if took_new { "new password" } else { "old password" },
                "A01: pending password settled; the other one is no longer accepted"
            ),
            Ok(false) => {}
            Err(e) => {
                tracing::error!(station = %station.id, error = %e, "settling the pending password failed");
                return Err(Refusal::Internal);
            }
        }
    }
    Ok(())
}

/// The checks that cost one HMAC: a keyed verifier (a password the CSMS
/// generated), or a PBKDF2 hash this password was verified against before.
/// `false` leaves the verdict to PBKDF2 for a PBKDF2 hash (and an unreadable
/// one); for a keyed verifier it is the verdict.
fn fast_check(app: &Gateway, station_id: &str, verifier: &str, pass: &str) -> Result<bool, Refusal> {
    match password::kind(verifier) {
        Ok(password::Kind::Keyed) => {
            app.metrics.password_fast_check("keyed");
            password::verify_keyed(pass, verifier, &app.password_key).map_err(|e| {
                tracing::error!(station = %station_id, error = %e, "stored password verifier unreadable");
                Refusal::Internal
            })
        }
        Ok(password::Kind::Slow) => {
            let hit = app.verified.hit(station_id, verifier, pass);
            if hit {
                app.metrics.password_fast_check("cached");
            }
            Ok(hit)
        }
        // Unreadable: left to the PBKDF2 check, which reports it (503).
        Err(_) => Ok(false),
    }
}

/// `Basic base64(user:password)`; the user part ends at the first ':'.
pub fn parse_basic(header: &str) -> Option<(String, String)> {
    use base64::Engine;
    let (scheme, value) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD.decode(value.trim()).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_owned(), pass.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_header() {
        // "CS001:secret:with:colons"
        let h = "Basic Q1MwMDE6c2VjcmV0OndpdGg6Y29sb25z";
        assert_eq!(parse_basic(h), Some(("CS001".into(), "secret:with:colons".into())));
        assert_eq!(parse_basic("Bearer abc"), None);
        assert_eq!(parse_basic("Basic !!!"), None);
        assert_eq!(parse_basic("Basic Q1MwMDE="), None, "no colon");
    }
}
