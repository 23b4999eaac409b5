//! What the gateway reads when a station connects, in one statement: the
//! station, the certificate it presented (by serial, within the station's
//! tenant), and whether the certificates engine has bookkeeping to do for it.
//! A connect used to take five reads (station, certificate, the station's
//! certificate requests, its older live certificates, and the station again at
//! BootNotification), each a round trip to a database thread.

use std::sync::LazyLock;

use sqlx::Row;

use super::stations::{STATION_COLUMNS, station_from_row};
use super::{CertRequestState, Station, Store, StoreError, with_pool};

/// The record of the certificate a station presented, as far as a connect
/// decides on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentedCertificate {
    /// SHA-256 of the DER, lowercase hex: the record is this very certificate
    /// only when it matches.
    pub fingerprint: String,
    pub not_before: i64,
    pub not_after: i64,
    pub revoked_at: Option<i64>,
    /// End of the overlap of its issuer, when that is a replaced CA; `None`:
    /// the current CA issued it.
    pub issuer_trusted_until: Option<i64>,
}

/// Everything a connect needs from the database.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectFacts {
    pub station: Station,
    /// The certificate recorded under the station's tenant with the serial
    /// presented, if one was presented and is recorded.
    pub certificate: Option<PresentedCertificate>,
    /// The certificates engine has something to do on this connection: the
    /// station has a certificate request not yet settled, or (with a presented
    /// certificate) an older certificate still live beside it. When false, a
    /// connect reads nothing more about certificates.
    pub certificate_work: bool,
}

/// Requests the certificates engine may still move when a station connects:
/// supersede, deliver, or mark installed (see `engines::certificates::delivery`).
const OPEN_REQUEST_STATES: [CertRequestState; 7] = [
    CertRequestState::Requested,
    CertRequestState::Triggered,
    CertRequestState::CsrReceived,
    CertRequestState::Issuing,
    CertRequestState::Issued,
    CertRequestState::Delivering,
    CertRequestState::Delivered,
];

/// The statement, the same text every time (prepared once per connection).
static CONNECT_SQL: LazyLock<String> = LazyLock::new(|| {
    let station_columns = STATION_COLUMNS.split(',').map(|c| format!("s.{}", c.trim())).collect::<Vec<_>>().join(", ");
    let states = (0..OPEN_REQUEST_STATES.len()).map(|i| format!("${}", i + 3)).collect::<Vec<_>>().join(", ");
    format!(
        "SELECT {station_columns}, c.serial_hex AS c_serial_hex, c.fingerprint AS c_fingerprint, \
           c.not_before AS c_not_before, c.not_after AS c_not_after, c.revoked_at AS c_revoked_at, \
           cr.trusted_until AS c_issuer_trusted_until, \
           CAST(CASE WHEN EXISTS (SELECT 1 FROM certificates o WHERE o.tenant_id = s.tenant_id \
               AND o.station_id = s.id AND o.serial_hex <> c.serial_hex AND o.revoked_at IS NULL \
               AND o.superseded_at IS NULL AND o.issued_at <= c.issued_at) \
             OR EXISTS (SELECT 1 FROM certificate_requests r WHERE r.tenant_id = s.tenant_id \
               AND r.station_id = s.id AND r.state IN ({states})) \
           THEN 1 ELSE 0 END AS BIGINT) AS certificate_work \
         FROM stations s \
         LEFT JOIN certificates c ON c.tenant_id = s.tenant_id AND c.serial_hex = $2 \
         LEFT JOIN credentials cr ON cr.tenant_id = c.tenant_id AND cr.name = 'station-ca@' || c.issuer_id \
         WHERE s.id = $1"
    )
});

impl Store {
    /// Across tenants: the station with id `station_id` (the OCPP URL carries
    /// no tenant), with the certificate of serial `serial_hex` recorded under
    /// that station's tenant, in one statement.
    pub async fn connect_facts(
        &self,
        station_id: &str,
        serial_hex: Option<&str>,
    ) -> Result<Option<ConnectFacts>, StoreError> {
        let facts = with_pool!(self, |p| {
            let mut q = sqlx::query(&CONNECT_SQL).bind(station_id).bind(serial_hex);
            for state in OPEN_REQUEST_STATES {
                q = q.bind(state.as_str());
            }
            q.fetch_optional(p)
                .await?
                .map(|r| -> Result<_, sqlx::Error> {
                    let certificate = match r.try_get::<Option<String>, _>("c_serial_hex")? {
                        Some(_) => Some(PresentedCertificate {
                            fingerprint: r.try_get("c_fingerprint")?,
                            not_before: r.try_get("c_not_before")?,
                            not_after: r.try_get("c_not_after")?,
                            revoked_at: r.try_get("c_revoked_at")?,
                            issuer_trusted_until: r.try_get("c_issuer_trusted_until")?,
                        }),
                        None => None,
                    };
                    Ok(ConnectFacts {
                        station: station_from_row(&r)?,
                        certificate,
                        certificate_work: r.try_get::<i64, _>("certificate_work")? != 0,
                    })
                })
                .transpose()?
        });
        Ok(facts)
    }
}
