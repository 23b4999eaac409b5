//! Stations and what operators do to them: register, change, remove, enroll a
//! certificate, renew it (A02), revoke one, set the Basic password (A01), send
//! a command.

use api::model::{self as m, EnrollRequest, NewStation, StationPatch};
use ocpp::v201::{
    Action, ComponentType, Initiator, SetVariableDataType, SetVariableStatusEnumType, SetVariablesRequest, VariableType,
};

use super::Services;
use super::validate::{check_description, check_profile, check_tags, generate_password, printable, registration};
use crate::authority::{self, EnrollError};
use crate::engines::certificates::RenewError;
use crate::error::{Error, Result};
use crate::ids::{STATION_ID_RULE, valid_station_id};
use crate::link::{CallFailure, CloseReason};
use crate::password;
use crate::store::{self, CertRequest, CertificateRecord, Station, StoreError};

/// Longest validity of a certificate issued at enrollment.
pub const MAX_VALIDITY_DAYS: u32 = 3650;

/// The result of an A01 password change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordChange {
    /// Whether the CSMS now expects the new password (the station accepted it).
    pub switched: bool,
    /// The station's SetVariables attributeStatus.
    pub station_status: String,
}

impl Services {
    /// PBKDF2 is deliberately slow: run off the async runtime.
    async fn hash_password(&self, field: &str, password: &str) -> Result<String> {
        let (p, iterations) = (password.to_owned(), self.ctx.config.password_hash_iterations);
        let hashed =
            tokio::task::spawn_blocking(move || password::hash(&p, iterations)).await.map_err(Error::internal)?;
        hashed.map_err(|e| match e {
            password::PasswordError::Length => Error::invalid(field, e.to_string()),
            other => Error::internal(other),
        })
    }

    pub async fn create_station(&self, tenant: &str, s: NewStation) -> Result<Station> {
        if !valid_station_id(&s.id) {
            return Err(Error::invalid("/id", STATION_ID_RULE));
        }
        check_profile("/securityProfile", s.security_profile)?;
        if s.security_profile < 3 && s.password.is_none() {
            return Err(Error::invalid(
                "/password",
                format!(
                    "security profile {} authenticates with HTTP Basic: a password is required",
                    s.security_profile
                ),
            ));
        }
        if let Some(d) = &s.description {
            check_description(d)?;
        }
        let tags = s.tags.as_deref().map(check_tags).transpose()?;
        self.own_tenant(tenant).await?;
        let password_hash = match s.password.as_deref() {
            Some(p) => Some(self.hash_password("/password", p).await?),
            None => None,
        };
        let new = store::NewStation {
            id: s.id.clone(),
            tenant_id: tenant.to_owned(),
            security_profile: s.security_profile,
            password_hash,
            registration: registration(s.registration.unwrap_or(m::Registration::Accepted)),
            description: s.description.filter(|d| !d.is_empty()),
            tags: tags.unwrap_or_default(),
        };
        match self.ctx.store.create_station(&new, self.now()).await {
            Ok(_) => {}
            // Station ids are unique across tenants (the OCPP URL has no tenant).
            Err(StoreError::AlreadyExists { .. }) => {
                return Err(Error::Conflict(format!("station id '{}' is not available", s.id)));
            }
            Err(e) => return Err(e.into()),
        }
        self.own_station(tenant, &s.id).await
    }

    pub async fn update_station(&self, tenant: &str, id: &str, p: StationPatch) -> Result<Station> {
        let before = self.own_station(tenant, id).await?;
        if let Some(v) = p.security_profile {
            check_profile("/securityProfile", v)?;
        }
        if let Some(d) = &p.description {
            check_description(d)?;
        }
        let tags = p.tags.as_deref().map(check_tags).transpose()?;
        let new_profile = p.security_profile.unwrap_or(before.security_profile);
        if new_profile < 3 && before.password_hash.is_none() && p.password.is_none() {
            return Err(Error::invalid(
                "/password",
                format!("security profile {new_profile} authenticates with HTTP Basic: set a password too"),
            ));
        }
        let hash = match p.password.as_deref() {
            Some(pw) => Some(self.hash_password("/password", pw).await?),
            None => None,
        };
        let store = &self.ctx.store;
        store
            .update_station(
                tenant,
                id,
                p.security_profile,
                hash.as_deref(),
                p.registration.map(registration),
                p.enabled,
            )
            .await
            .map_err(|e| match e {
                StoreError::NotFound { .. } => Error::NotFound { what: "station", id: id.to_owned() },
                e => e.into(),
            })?;
        if p.description.is_some() || tags.is_some() {
            store.set_station_details(tenant, id, p.description.as_deref(), tags.as_deref()).await?;
        }
        // A live session opened under the old settings does not outlive them.
        let reauthenticate = p.enabled == Some(false)
            || p.security_profile.is_some_and(|v| v != before.security_profile)
            || hash.is_some();
        if reauthenticate && self.ctx.link.disconnect(tenant, id, CloseReason::Reconfigured) {
            tracing::info!(station = %id, "session closed: the station's settings changed");
        }
        self.own_station(tenant, id).await
    }

    /// Removes the station (its certificates revoked in the same transaction)
    /// and closes its session.
    pub async fn delete_station(&self, tenant: &str, id: &str) -> Result<()> {
        self.own_station(tenant, id).await?;
        self.ctx.store.delete_station(tenant, id, self.now()).await.map_err(|e| match e {
            StoreError::NotFound { .. } => Error::NotFound { what: "station", id: id.to_owned() },
            e => e.into(),
        })?;
        self.ctx.link.disconnect(tenant, id, CloseReason::Reconfigured);
        Ok(())
    }

    /// Manufacturing-time enrollment: signs the station's CSR; the PEM chain
    /// (leaf, then the issuing CA) and the record.
    pub async fn enroll(&self, tenant: &str, station: &str, req: EnrollRequest) -> Result<(String, CertificateRecord)> {
        self.own_station(tenant, station).await?;
        let days = req.validity_days.unwrap_or(self.ctx.config.station_certificate_days);
        if !(1..=MAX_VALIDITY_DAYS).contains(&days) {
            return Err(Error::invalid("/validityDays", format!("1 to {MAX_VALIDITY_DAYS} days")));
        }
        let now = self.ctx.clock.now();
        let public_url = self.ctx.config.public_url();
        match authority::enroll(&self.ctx.store, &self.ctx.keys, now, station, &req.csr, days, &public_url).await {
            Ok(issued) => Ok(issued),
            Err(EnrollError::Csr { rule, detail }) => {
                Err(Error::invalid("/csr", format!("CSR rejected by rule {rule}: {detail}")))
            }
            Err(EnrollError::UnknownStation(id)) => Err(Error::NotFound { what: "station", id }),
            Err(EnrollError::Internal(e)) => Err(Error::internal(format!("enrollment failed: {e:#}"))),
        }
    }

    /// A02: asks the connected station for a new CSR and tracks the renewal.
    pub async fn renew_certificate(&self, tenant: &str, station: &str) -> Result<CertRequest> {
        self.own_station(tenant, station).await?;
        match self.certificates.renew(tenant, station).await {
            Ok(r) => Ok(r),
            Err(RenewError::NotConnected(id)) => Err(Error::NotConnected(id)),
            Err(RenewError::Refused(why)) => {
                Err(Error::Station(format!("station '{station}' did not start the renewal: {why}")))
            }
            Err(RenewError::OutcomeUnknown(why)) => Err(Error::OutcomeUnknown(format!(
                "station '{station}' received the renewal trigger but did not answer ({why}); \
                 a CSR it sends still continues this renewal"
            ))),
            Err(RenewError::Store(e)) => Err(e.into()),
        }
    }

    /// Revokes a certificate (CRL, OCSP, refused at the next connection) and
    /// closes the sessions that use it.
    pub async fn revoke_certificate(
        &self,
        tenant: &str,
        serial: &str,
        reason: pki::RevocationReason,
    ) -> Result<CertificateRecord> {
        let rec = self.own_certificate(tenant, serial).await?;
        self.ctx.store.revoke_certificate(tenant, &rec.serial_hex, self.now(), reason.as_str()).await?;
        let closed = self.ctx.link.disconnect_certificate(tenant, &rec.serial_hex);
        tracing::info!(tenant, serial = %rec.serial_hex, reason = reason.as_str(), sessions_closed = closed, "certificate revoked");
        self.own_certificate(tenant, &rec.serial_hex).await
    }

    /// A01: sets the station's BasicAuthPassword (given, or 32 random
    /// characters) through SetVariables; the CSMS switches to it only when the
    /// station answers Accepted (A01.FR.03).
    pub async fn update_password(&self, tenant: &str, station: &str, given: Option<String>) -> Result<PasswordChange> {
        let s = self.own_station(tenant, station).await?;
        if s.security_profile >= 3 {
            return Err(Error::Conflict(format!(
                "station '{station}' uses security profile 3 (certificates), not a password"
            )));
        }
        // A password a person chose is hashed slowly (PBKDF2); one the CSMS
        // generated (192 random bits) gets a keyed verifier, checked with one HMAC.
        let (password, hash) = match given {
            Some(p) => {
                if !(password::MIN_LEN..=password::MAX_LEN).contains(&p.chars().count())
                    || !p.chars().all(|c| c.is_ascii_graphic())
                {
                    return Err(Error::invalid("/password", "16-40 printable ASCII characters"));
                }
                let hash = self.hash_password("/password", &p).await?;
                (p, hash)
            }
            None => {
                let p = generate_password()?;
                let key = password::VerifierKey::from_master(self.ctx.keys.master());
                let hash = password::keyed(&p, &key).map_err(Error::internal)?;
                (p, hash)
            }
        };
        if !self.ctx.link.is_connected(tenant, station) {
            return Err(Error::NotConnected(station.to_owned()));
        }
        let request = SetVariablesRequest {
            custom_data: None,
            set_variable_data: vec![SetVariableDataType {
                custom_data: None,
                attribute_type: None,
                attribute_value: password,
                component: ComponentType {
                    custom_data: None,
                    evse: None,
                    instance: None,
                    name: "SecurityCtrlr".into(),
                },
                variable: VariableType { custom_data: None, instance: None, name: "BasicAuthPassword".into() },
            }],
        };
        // The station may take the new password as soon as it receives the call
        // and reconnect with it before its answer arrives (or none does): both are
        // accepted from before the call is sent until the station logs in with one
        // of them (see `Store::settle_password`). A definite answer settles it here.
        self.ctx.store.set_pending_password(tenant, station, &hash).await?;
        let answer = match self.ctx.link.call(tenant, station, request).await {
            Ok(answer) => answer,
            Err(e) if e.outcome_unknown() => {
                tracing::warn!(station, tenant, error = %e, "BasicAuthPassword update outcome unknown; old and new password both accepted until the station logs in with one");
                return Err(Error::OutcomeUnknown(format!(
                    "station '{station}' received SetVariables(BasicAuthPassword) but did not answer ({e}); \
                     the CSMS accepts both the old and the new password until the station logs in with one of them"
                )));
            }
            Err(e) => {
                // Never sent, or refused outright: the station keeps its password.
                self.drop_pending_password(station, &hash).await;
                return Err(call_error(station, "SetVariables", e));
            }
        };
        let status = answer.set_variable_result.first().map(|r| r.attribute_status);
        let switched = status == Some(SetVariableStatusEnumType::Accepted);
        if switched {
            // Also clears the pending one (unless a login already settled on it).
            self.ctx.store.update_station(tenant, station, None, Some(&hash), None, None).await?;
        } else {
            self.drop_pending_password(station, &hash).await;
        }
        let station_status = status.map(|s| s.as_str().to_owned()).unwrap_or_default();
        tracing::info!(station, tenant, status = %station_status, switched, "BasicAuthPassword update");
        Ok(PasswordChange { switched, station_status })
    }

    /// The station refused the new password (or never received it): it is no
    /// longer accepted, unless a login has settled on it meanwhile.
    async fn drop_pending_password(&self, station: &str, hash: &str) {
        if let Err(e) = self.ctx.store.settle_password(station, hash, false).await {
            tracing::error!(station, error = %e, "dropping a pending password failed; the next login settles it");
        }
    }

    /// Sends any CSMS-initiated action to the connected station; its answer.
    pub async fn ocpp_call(
        &self,
        tenant: &str,
        station: &str,
        action: &str,
        payload: serde_json::Value,
    ) -> Result<serde_json::Value> {
        let a = Action::from_name(action)
            .ok_or_else(|| Error::invalid("action", format!("'{}' is not an OCPP 2.0.1 action", printable(action))))?;
        if a.initiated_by() == Initiator::ChargingStation {
            return Err(Error::invalid("action", format!("{action} is sent by charging stations, not by the CSMS")));
        }
        self.own_station(tenant, station).await?;
        // B05/B06: split to the station's ItemsPerMessage / BytesPerMessage.
        if matches!(a, Action::GetVariables | Action::SetVariables) {
            return self.variables_call(tenant, station, a, payload).await;
        }
        self.ctx.link.send(tenant, station, a, payload).await.map_err(|f| call_error(station, action, f))
    }
}

/// [`call_error`] for the other service files.
pub(super) fn call_failure(station: &str, action: &str, failure: CallFailure) -> Error {
    call_error(station, action, failure)
}

/// A failed CSMS-initiated call, said from the operator's side.
fn call_error(station: &str, action: &str, failure: CallFailure) -> Error {
    match failure {
        CallFailure::InvalidRequest(v) => {
            let field = if v.path.is_empty() { "/".to_owned() } else { v.path.clone() };
            Error::Invalid { field, detail: format!("{} ({}): {}", v.message, v.code.as_str(), v.path) }
        }
        CallFailure::NotConnected | CallFailure::ClosedBeforeSending => Error::NotConnected(station.to_owned()),
        CallFailure::StationRejected => {
            Error::Conflict(format!("station '{station}' is Rejected; the CSMS sends it nothing"))
        }
        CallFailure::Busy => Error::Unavailable(format!("too many calls queued for station '{station}'")),
        CallFailure::Timeout(d) => Error::OutcomeUnknown(format!(
            "station '{station}' received {action} but did not answer within {}s; it may have acted on it",
            d.as_secs()
        )),
        CallFailure::ClosedAfterSending => Error::OutcomeUnknown(format!(
            "station '{station}' received {action} but its connection closed before the answer; it may have acted on it"
        )),
        CallFailure::Rejected { code, description } => {
            Error::Station(format!("station '{station}' answered {action} with {}: {description}", code.as_str()))
        }
        CallFailure::InvalidResponse(v) => Error::Station(format!(
            "station '{station}' answered {action} with an invalid payload: {} at {}",
            v.message, v.path
        )),
        CallFailure::MalformedResponse(why) => {
            Error::Station(format!("station '{station}' answered {action} with a malformed frame: {why}"))
        }
    }
}
