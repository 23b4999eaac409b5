//! Public revocation endpoints on the API listener, no token needed (relying
//! parties and stations fetch them): each tenant's station-CA CRL and an
//! RFC 6960 OCSP responder (GET and POST). Each issuing CA, current or
//! replaced, signs its own CRL and the OCSP answers about its certificates.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use dashmap::DashMap;
use pki::{CertStatus, OcspError, OcspRequest, RevocationReason, Revoked};
use time::Duration;

use crate::clock::from_unix_millis;
use crate::ids::valid_tenant_id;
use crate::runtime::Node;
use crate::station_ca::{self, IssuingCa};
use crate::store::RevokedCertificate;

/// How long a CRL or an OCSP answer may be relied on.
pub const VALIDITY: Duration = Duration::hours(1);
/// Largest OCSP request read (a request with 32 CertIDs is under 3 KiB).
const MAX_OCSP_REQUEST: usize = 8 * 1024;

/// How long a signed CRL is served again while nothing it lists changed: half
/// its validity, so every CRL served has at least half an hour left.
const CRL_REUSE_MS: i64 = 30 * 60 * 1000;
/// CRLs kept (one per issuing CA asked for).
const MAX_CACHED_CRLS: usize = 4096;

/// OCSP answers kept (one per distinct set of CertIDs asked about), at most
/// about 4 KiB each.
const MAX_CACHED_OCSP: usize = 4096;

#[derive(Clone)]
struct Pki {
    node: Arc<Node>,
    crls: Arc<DashMap<(String, String), CachedCrl>>,
    ocsp: Arc<DashMap<OcspKey, CachedOcsp>>,
    /// Fresh OCSP signatures this process may make for each tenant
    /// (`ocsp_signatures_per_second`): a flood at one tenant's responder does
    /// not spend another's.
    budgets: Arc<DashMap<String, Arc<SigningBudget>>>,
    per_second: u32,
}

impl Pki {
    fn budget(&self, tenant: &str) -> Arc<SigningBudget> {
        if let Some(b) = self.budgets.get(tenant) {
            return b.clone();
        }
        self.budgets.entry(tenant.to_owned()).or_insert_with(|| Arc::new(SigningBudget::new(self.per_second))).clone()
    }
}

/// What an OCSP answer is about: the tenant, the responding CA and the CertIDs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct OcspKey {
    tenant: String,
    ca: String,
    certs: Vec<(pki::HashAlg, Vec<u8>, Vec<u8>, String)>,
}

/// A signed OCSP answer without a nonce and the statuses it gives.
struct CachedOcsp {
    statuses: Vec<CertStatus>,
    der: Bytes,
    made_at: i64,
}

/// A rate limit on signatures (generic cell rate algorithm): `per_second`
/// sustained, as many again in a burst. Lock-free.
struct SigningBudget {
    /// Theoretical arrival time of the next signature, in microseconds.
    tat_us: std::sync::atomic::AtomicI64,
    interval_us: i64,
    burst_us: i64,
}

impl SigningBudget {
    fn new(per_second: u32) -> SigningBudget {
        let interval_us = 1_000_000 / i64::from(per_second.max(1));
        SigningBudget {
            tat_us: std::sync::atomic::AtomicI64::new(0),
            interval_us,
            burst_us: interval_us * i64::from(per_second.max(1)),
        }
    }

    /// Takes one signature if the budget allows it at `now_ms`.
    fn try_take(&self, now_ms: i64) -> bool {
        use std::sync::atomic::Ordering;
        let now = now_ms.saturating_mul(1000);
        let mut tat = self.tat_us.load(Ordering::Acquire);
        loop {
            // Further ahead than a burst: the clock was set back; start afresh.
            let start = if tat - now > self.burst_us { now } else { tat.max(now) };
            if start + self.interval_us - now > self.burst_us {
                return false;
            }
            match self.tat_us.compare_exchange_weak(tat, start + self.interval_us, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(seen) => tat = seen,
            }
        }
    }
}

/// A signed CRL and the revocations it was made from.
struct CachedCrl {
    revoked: Vec<RevokedCertificate>,
    der: Bytes,
    made_at: i64,
}

pub fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/pki/{tenant}/station-ca.crl", get(first_crl))
        .route("/pki/{tenant}/ca/{file}", get(ca_crl))
        .route("/ocsp/{tenant}", post(ocsp_post))
        .route("/ocsp/{tenant}/{*request}", get(ocsp_get))
        .layer(DefaultBodyLimit::max(MAX_OCSP_REQUEST))
        .with_state(Pki {
            per_second: node.config.ocsp_signatures_per_second,
            node,
            crls: Arc::new(DashMap::new()),
            ocsp: Arc::new(DashMap::new()),
            budgets: Arc::new(DashMap::new()),
        })
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
}

fn der(content_type: &'static str, body: impl Into<Bytes>) -> Response {
    let body: Bytes = body.into();
    let mut res = body.into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=60"));
    res
}

/// The tenant's issuing CAs (current first), or the response to give instead.
async fn issuing_cas(p: &Pki, tenant: &str) -> Result<Vec<IssuingCa>, Response> {
    if !valid_tenant_id(tenant) {
        return Err(plain(StatusCode::NOT_FOUND, "no such tenant\n"));
    }
    match station_ca::issuing_cas(&p.node.store, tenant).await {
        Ok(cas) if cas.is_empty() => Err(plain(StatusCode::NOT_FOUND, "no such tenant\n")),
        Ok(cas) => Ok(cas),
        Err(e) => {
            tracing::error!(error = %e, tenant, "reading the station CAs");
            Err(plain(StatusCode::SERVICE_UNAVAILABLE, "try later\n"))
        }
    }
}

fn reason(r: Option<&str>) -> RevocationReason {
    r.and_then(|r| r.parse().ok()).unwrap_or(RevocationReason::Unspecified)
}

/// The CRL of the tenant's first issuing CA (DER). Certificates issued before
/// each CA had its own CRL URL (`/pki/<tenant>/ca/<id>.crl`) point here, and
/// they were all issued by the first CA.
async fn first_crl(State(p): State<Pki>, Path(tenant): Path<String>) -> Response {
    ca_crl_where(&p, &tenant, |cas| cas.iter().enumerate().min_by_key(|(_, c)| c.created_at).map(|(i, _)| i)).await
}

/// The CRL of one issuing CA, current or replaced: `<id>.crl`.
async fn ca_crl(State(p): State<Pki>, Path((tenant, file)): Path<(String, String)>) -> Response {
    let Some(id) = file.strip_suffix(".crl") else {
        return plain(StatusCode::NOT_FOUND, "no such CRL\n");
    };
    ca_crl_where(&p, &tenant, |cas| cas.iter().position(|c| c.id == id)).await
}

async fn ca_crl_where(p: &Pki, tenant: &str, pick: impl FnOnce(&[IssuingCa]) -> Option<usize>) -> Response {
    let mut cas = match issuing_cas(p, tenant).await {
        Ok(cas) => cas,
        Err(res) => return res,
    };
    let Some(i) = pick(&cas) else { return plain(StatusCode::NOT_FOUND, "no such CA\n") };
    crl(p, tenant, cas.swap_remove(i)).await
}

/// The CA's CRL: the one signed last, while it lists exactly what is revoked
/// now and is fresh; else a new one, signed off the async runtime. A flood of
/// CRL requests costs a query each, not a signature each.
async fn crl(p: &Pki, tenant: &str, ca: IssuingCa) -> Response {
    let revoked = match p.node.store.revoked_certificates(tenant, &ca.id, ca.current).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "reading revoked certificates");
            return plain(StatusCode::SERVICE_UNAVAILABLE, "try later\n");
        }
    };
    let key = (tenant.to_owned(), ca.id.clone());
    let now_ms = p.node.clock.now_millis();
    if let Some(cached) = p.crls.get(&key)
        && cached.revoked == revoked
        && now_ms - cached.made_at < CRL_REUSE_MS
    {
        return der("application/pkix-crl", cached.der.clone());
    }
    let entries: Vec<Revoked> = revoked
        .iter()
        .map(|r| Revoked {
            serial_hex: r.serial_hex.clone(),
            revoked_at: from_unix_millis(r.revoked_at),
            reason: reason(r.reason.as_deref()),
        })
        .collect();
    let now = p.node.clock.now();
    // The CRL number only grows: issuance time in milliseconds.
    let number = u64::try_from(now_ms).unwrap_or(0);
    let (keys, tenant_id) = (p.node.keys.clone(), tenant.to_owned());
    let signed = tokio::task::spawn_blocking(move || {
        ca.open_here(&keys, &tenant_id)?.crl(&entries, number, now, now + VALIDITY).map_err(crate::error::Error::from)
    })
    .await;
    match signed {
        Ok(Ok(der_bytes)) => {
            let der_bytes = Bytes::from(der_bytes);
            if p.crls.len() >= MAX_CACHED_CRLS {
                p.crls.clear();
            }
            p.crls.insert(key, CachedCrl { revoked, der: der_bytes.clone(), made_at: now_ms });
            der("application/pkix-crl", der_bytes)
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, tenant, "signing the CRL");
            plain(StatusCode::SERVICE_UNAVAILABLE, "the CRL could not be produced; try later\n")
        }
        Err(e) => {
            tracing::error!(error = %e, "the CRL signing task failed");
            plain(StatusCode::INTERNAL_SERVER_ERROR, "the CRL could not be produced\n")
        }
    }
}

async fn ocsp_post(State(p): State<Pki>, Path(tenant): Path<String>, body: Bytes) -> Response {
    ocsp(&p, &tenant, &body).await
}

/// RFC 6960 A.1: GET {url}/{url-encoding of base-64 encoding of the DER request}.
async fn ocsp_get(State(p): State<Pki>, Path((tenant, request)): Path<(String, String)>) -> Response {
    if request.len() > MAX_OCSP_REQUEST * 2 {
        return der("application/ocsp-response", OcspError::Malformed.response());
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    match b64.decode(request.trim_start_matches('/')) {
        Ok(bytes) => ocsp(&p, &tenant, &bytes).await,
        Err(_) => der("application/ocsp-response", OcspError::Malformed.response()),
    }
}

async fn ocsp(p: &Pki, tenant: &str, request: &[u8]) -> Response {
    let mut cas = match issuing_cas(p, tenant).await {
        Ok(cas) => cas,
        Err(res) => return res,
    };
    let req = match OcspRequest::parse(request) {
        Ok(r) => r,
        Err(e) => return der("application/ocsp-response", e.response()),
    };
    // One responder signs the whole answer: the CA the first certificate names
    // (current or replaced); certificates of another issuer are `unknown`.
    let chosen = req.certs.first().and_then(|id| cas.iter().position(|c| id.names_issuer(&c.der))).unwrap_or(0);
    let ca = cas.swap_remove(chosen);
    let mut statuses = Vec::with_capacity(req.certs.len());
    for id in &req.certs {
        let status = if !id.names_issuer(&ca.der) {
            CertStatus::Unknown
        } else {
            match p.node.store.certificate(tenant, &id.serial_hex).await {
                Ok(Some(rec)) if rec.issuer_id.as_deref().map_or(ca.current, |i| i == ca.id) => match rec.revoked_at {
                    Some(at) => CertStatus::Revoked {
                        at: from_unix_millis(at),
                        reason: reason(rec.revocation_reason.as_deref()),
                    },
                    None => CertStatus::Good,
                },
                Ok(_) => CertStatus::Unknown,
                Err(e) => {
                    tracing::error!(error = %e, "OCSP lookup");
                    return der("application/ocsp-response", OcspError::Internal.response());
                }
            }
        };
        statuses.push(status);
    }
    // A nonce must be echoed, so its answer is signed for this request alone,
    // while the signing budget lasts. Otherwise (no nonce, or a flood) the answer
    // for these CertIDs is served again while the statuses it gives are current.
    let now_ms = p.node.clock.now_millis();
    let key = OcspKey {
        tenant: tenant.to_owned(),
        ca: ca.id.clone(),
        certs: req
            .certs
            .iter()
            .map(|c| (c.hash, c.issuer_name_hash.clone(), c.issuer_key_hash.clone(), c.serial_hex.clone()))
            .collect(),
    };
    let budget = p.budget(tenant);
    if !(req.has_nonce() && budget.try_take(now_ms)) {
        if let Some(cached) = p.ocsp.get(&key)
            && cached.statuses == statuses
            && now_ms - cached.made_at < CRL_REUSE_MS
        {
            return der("application/ocsp-response", cached.der.clone());
        }
        if !budget.try_take(now_ms) {
            tracing::warn!(tenant, "OCSP signing budget spent; answering tryLater");
            return der("application/ocsp-response", OcspError::TryLater.response());
        }
        let plain = req.without_nonce();
        return match sign_ocsp(p, tenant, ca, plain, statuses.clone()).await {
            Ok(bytes) => {
                let bytes = Bytes::from(bytes);
                if p.ocsp.len() >= MAX_CACHED_OCSP {
                    // Full: drop what is past reuse first, everything only if that is not enough.
                    p.ocsp.retain(|_, c| now_ms - c.made_at < CRL_REUSE_MS);
                    if p.ocsp.len() >= MAX_CACHED_OCSP {
                        p.ocsp.clear();
                    }
                }
                p.ocsp.insert(key, CachedOcsp { statuses, der: bytes.clone(), made_at: now_ms });
                der("application/ocsp-response", bytes)
            }
            Err(response) => response,
        };
    }
    match sign_ocsp(p, tenant, ca, req, statuses).await {
        Ok(bytes) => der("application/ocsp-response", bytes),
        Err(response) => response,
    }
}

/// Signs an OCSP answer off the async runtime; the error answer if it cannot.
async fn sign_ocsp(
    p: &Pki,
    tenant: &str,
    ca: IssuingCa,
    req: OcspRequest,
    statuses: Vec<CertStatus>,
) -> Result<Vec<u8>, Response> {
    let now = p.node.clock.now();
    let (keys, tenant_id) = (p.node.keys.clone(), tenant.to_owned());
    // Unsealing and signing off the async runtime.
    let signed = tokio::task::spawn_blocking(move || {
        let ca = ca.open_here(&keys, &tenant_id)?;
        ca.ocsp_response(&req, &statuses, now, now + VALIDITY).map_err(crate::error::Error::from)
    })
    .await;
    match signed {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => {
            tracing::error!(error = %e, tenant, "signing an OCSP response");
            Err(der("application/ocsp-response", OcspError::Internal.response()))
        }
        Err(e) => {
            tracing::error!(error = %e, "the OCSP signing task failed");
            Err(der("application/ocsp-response", OcspError::Internal.response()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SigningBudget;

    #[test]
    fn the_signing_budget_allows_a_burst_then_the_rate() {
        let budget = SigningBudget::new(10);
        let t = 1_000_000;
        assert_eq!((0..30).filter(|_| budget.try_take(t)).count(), 10, "a burst of one second's worth");
        assert!(!budget.try_take(t + 50));
        assert!(budget.try_take(t + 100), "one more each tenth of a second");
        assert!(!budget.try_take(t + 150));
        assert!(budget.try_take(t + 200));
        // The clock set back by an hour: the budget starts afresh, not an hour late.
        assert!(budget.try_take(t - 3_600_000));
    }
}
