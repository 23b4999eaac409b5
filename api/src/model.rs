//! What the API sends and receives. JSON in camelCase, like OCPP; times are
//! RFC 3339 in UTC. Request bodies reject unknown fields.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Page size when the client does not ask for one, and the largest it may ask for.
pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 500;

/// Cursor pagination: pass `nextCursor` of one page as `cursor` to get the next.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Opaque cursor from a previous page's `nextCursor`.
    pub cursor: Option<String>,
    /// Items per page, 1-500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

// ---- tenants ----------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Tenant {
    /// The tenant's name: its id in tokens and URLs (`[a-z0-9-]`, 1-63).
    pub name: String,
    /// Organisation name, the O of its station certificates.
    pub organization_name: String,
    /// Host name stations of this tenant connect to, with the tenant's own CSMS
    /// root; absent when the tenant uses the platform's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ocpp_hostname: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewTenant {
    /// 1-63 characters of `a-z`, `0-9` and `-`, not starting with `-`.
    #[schema(min_length = 1, max_length = 63, pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    pub name: String,
    /// 1-64 characters.
    #[schema(min_length = 1, max_length = 64)]
    pub organization_name: String,
    /// A DNS name; the tenant then gets its own CSMS root and server certificate.
    #[schema(max_length = 253)]
    pub ocpp_hostname: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantPage {
    pub items: Vec<Tenant>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

// ---- stations ---------------------------------------------------------------

/// A station tag: 1-64 of `A-Z a-z 0-9 - _ . :`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_.:-]{1,64}$")]
pub struct Tag(pub String);

/// B01-B03: how the station's BootNotification is answered.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub enum Registration {
    Accepted,
    Pending,
    Rejected,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewStation {
    /// The charging station identity: 1-48 of `A-Z a-z 0-9 - . _ ~`.
    #[schema(min_length = 1, max_length = 48, pattern = "^[A-Za-z0-9._~-]{1,48}$")]
    pub id: String,
    /// 1 (Basic, plain WebSocket), 2 (Basic over TLS), 3 (mutual TLS).
    #[schema(minimum = 1, maximum = 3)]
    pub security_profile: u8,
    /// Basic-auth password for profiles 1 and 2 (16-40 characters). Write-only.
    #[schema(min_length = 16, max_length = 40, write_only)]
    pub password: Option<String>,
    /// Default Accepted.
    pub registration: Option<Registration>,
    #[schema(max_length = 255)]
    pub description: Option<String>,
    /// Up to 16 tags.
    #[schema(max_items = 16)]
    pub tags: Option<Vec<Tag>>,
}

/// Fields to change; absent fields stay as they are.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StationPatch {
    #[schema(minimum = 1, maximum = 3)]
    pub security_profile: Option<u8>,
    #[schema(min_length = 16, max_length = 40, write_only)]
    pub password: Option<String>,
    pub registration: Option<Registration>,
    pub enabled: Option<bool>,
    #[schema(max_length = 255)]
    pub description: Option<String>,
    #[schema(max_items = 16)]
    pub tags: Option<Vec<Tag>>,
}

/// What the station said about itself in its last BootNotification.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BootInfo {
    pub vendor: Option<String>,
    pub model: Option<String>,
    pub serial_number: Option<String>,
    pub firmware_version: Option<String>,
    /// How that BootNotification was answered.
    pub status: Option<String>,
    #[schema(format = DateTime)]
    pub at: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConnectorStatus {
    pub evse_id: i64,
    pub connector_id: i64,
    /// OCPP ConnectorStatusEnumType: Available, Occupied, Reserved, Unavailable, Faulted.
    pub status: String,
    #[schema(format = DateTime)]
    pub reported_at: String,
}

#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Station {
    pub id: String,
    pub security_profile: u8,
    pub registration: Registration,
    pub enabled: bool,
    /// Whether a password is set (the password itself is never returned).
    pub has_password: bool,
    pub description: Option<String>,
    pub tags: Vec<String>,
    /// Connected to this CSMS now.
    pub connected: bool,
    pub boot: BootInfo,
    #[schema(format = DateTime)]
    pub last_heartbeat_at: Option<String>,
    #[schema(format = DateTime)]
    pub last_seen_at: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    /// Latest status per connector (only when showing one station).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connectors: Option<Vec<ConnectorStatus>>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StationPage {
    pub items: Vec<Station>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Filters for listing stations.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StationFilter {
    /// Only stations connected now (true) or not connected (false).
    pub connected: Option<bool>,
    /// Only stations with this security profile.
    #[param(minimum = 1, maximum = 3)]
    pub security_profile: Option<u8>,
    /// Only stations carrying this tag.
    #[param(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_.:-]{1,64}$")]
    pub tag: Option<String>,
    /// Only stations last seen at or after this time (RFC 3339).
    #[param(format = DateTime)]
    pub seen_since: Option<String>,
    /// Only stations not seen since this time, or never (RFC 3339).
    #[param(format = DateTime)]
    pub not_seen_since: Option<String>,
    /// Opaque cursor from a previous page's `nextCursor`.
    pub cursor: Option<String>,
    /// Items per page, 1-500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

// ---- certificates -------------------------------------------------------------

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnrollRequest {
    /// PEM PKCS#10 CSR; subject CN must be the station id.
    #[schema(max_length = 5500)]
    pub csr: String,
    /// Validity of the certificate in days (default from the server's configuration).
    #[schema(minimum = 1, maximum = 3650)]
    pub validity_days: Option<u32>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnrollResponse {
    /// PEM: the station certificate, then the issuing sub-CA.
    pub certificate_chain: String,
    /// Serial number, lower-case hex.
    pub serial_number: String,
    /// SHA-256 fingerprint of the certificate (DER), lower-case hex.
    pub fingerprint: String,
    #[schema(format = DateTime)]
    pub not_before: String,
    #[schema(format = DateTime)]
    pub not_after: String,
}

// ---- security events ----------------------------------------------------------

#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecurityEvent {
    pub id: i64,
    pub station_id: String,
    /// OCPP security event type (e.g. `FirmwareUpdated`, `InvalidCentralSystemCertificate`).
    #[serde(rename = "type")]
    pub kind: String,
    #[schema(format = DateTime)]
    pub occurred_at: String,
    pub tech_info: Option<String>,
    #[schema(format = DateTime)]
    pub received_at: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecurityEventPage {
    pub items: Vec<SecurityEvent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SecurityEventFilter {
    /// Only events of this station.
    pub station_id: Option<String>,
    /// Only events of this type.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub kind: Option<String>,
    /// Opaque cursor from a previous page's `nextCursor`.
    pub cursor: Option<String>,
    /// Items per page, 1-500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

// ---- audit ----------------------------------------------------------------------

/// One mutating API call: who, what, when, and how it ended.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    pub id: i64,
    #[schema(format = DateTime)]
    pub at: String,
    /// Token subject.
    pub actor: String,
    pub role: String,
    pub method: String,
    pub path: String,
    /// HTTP status of the answer.
    pub status: u16,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditPage {
    pub items: Vec<AuditRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// An audit entry to record.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    /// The tenant acted on; `None` for the platform (tenant management).
    pub tenant: Option<String>,
    pub actor: String,
    pub role: String,
    pub method: String,
    pub path: String,
    pub status: u16,
}

// ---- live events ------------------------------------------------------------------

/// One server-sent event: `event:` is the kind, `data:` this object as JSON.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LiveEvent {
    /// `connected`, `disconnected`, `status` (a connector status) or `security`
    /// (a security event); `lagged` when this stream fell behind and lost events.
    pub kind: String,
    pub station_id: Option<String>,
    #[schema(format = DateTime)]
    pub at: String,
    /// Kind-specific: `{reason}`, `{evseId, connectorId, status}`,
    /// `{type, techInfo, occurredAt}`, or `{missed}`.
    pub data: serde_json::Value,
}

impl StationFilter {
    pub fn page(&self) -> PageQuery {
        PageQuery { cursor: self.cursor.clone(), limit: self.limit }
    }
}

impl SecurityEventFilter {
    pub fn page(&self) -> PageQuery {
        PageQuery { cursor: self.cursor.clone(), limit: self.limit }
    }
}

// ---- certificates ------------------------------------------------------------------

/// Where a station certificate stands.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum CertificateStatus {
    Valid,
    Revoked,
    Expired,
}

/// RFC 5280 CRLReason.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub enum RevocationReason {
    #[serde(rename = "unspecified")]
    Unspecified,
    #[serde(rename = "keyCompromise")]
    KeyCompromise,
    #[serde(rename = "cACompromise")]
    CaCompromise,
    #[serde(rename = "affiliationChanged")]
    AffiliationChanged,
    #[serde(rename = "superseded")]
    Superseded,
    #[serde(rename = "cessationOfOperation")]
    CessationOfOperation,
    #[serde(rename = "certificateHold")]
    CertificateHold,
    #[serde(rename = "privilegeWithdrawn")]
    PrivilegeWithdrawn,
}

/// A certificate issued to one of the tenant's stations.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Certificate {
    /// Serial number, lower-case hex.
    pub serial_number: String,
    pub station_id: String,
    /// SHA-256 of the DER, lower-case hex.
    pub fingerprint: String,
    #[schema(format = DateTime)]
    pub not_before: String,
    #[schema(format = DateTime)]
    pub not_after: String,
    #[schema(format = DateTime)]
    pub issued_at: String,
    pub status: CertificateStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub revoked_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revocation_reason: Option<String>,
    /// PEM of the certificate (when showing one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_pem: Option<String>,
    /// PEM of the issuing CA chain above it (when showing one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer_chain_pem: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificatePage {
    pub items: Vec<Certificate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Filters for the certificate inventory.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CertificateFilter {
    /// Only this station's certificates.
    pub station_id: Option<String>,
    pub status: Option<CertificateStatus>,
    /// Only certificates whose validity ends before this time (RFC 3339).
    #[param(format = DateTime)]
    pub expiring_before: Option<String>,
    /// Opaque cursor from a previous page's `nextCursor`.
    pub cursor: Option<String>,
    /// Items per page, 1-500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

impl CertificateFilter {
    pub fn page(&self) -> PageQuery {
        PageQuery { cursor: self.cursor.clone(), limit: self.limit }
    }
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RevokeRequest {
    /// Default `unspecified`.
    pub reason: Option<RevocationReason>,
}

/// A request for a station certificate (A02 renewal or A03 station request),
/// tracked from trigger to installation.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CertificateRequest {
    pub id: i64,
    pub station_id: String,
    /// `operator` (renewal through the API) or `station` (unsolicited SignCertificate).
    pub origin: String,
    /// `requested`, `triggered`, `csr_received`, `issuing`, `rejected`, `issued`,
    /// `delivering`, `delivered`, `station_rejected`, `installed` (the station
    /// connected with it), `failed`, or `superseded` (a newer request of the
    /// station replaced it before delivery; its certificate, if issued, was revoked).
    pub state: String,
    /// Serial of the issued certificate.
    pub serial_number: Option<String>,
    /// Why it was rejected or failed.
    pub detail: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

/// A01: a new HTTP Basic password for a connected profile 1/2 station.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PasswordUpdate {
    /// 16-40 printable ASCII characters; omitted: the CSMS generates one. Never returned.
    #[schema(min_length = 16, max_length = 40, write_only)]
    pub password: Option<String>,
}

/// Outcome of a password update.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PasswordUpdated {
    /// The station accepted the SetVariables; the CSMS now expects the new password.
    pub switched: bool,
    /// The station's attributeStatus for BasicAuthPassword.
    pub station_status: String,
}

/// One certificate authority of the tenant's station PKI.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CaCertificate {
    /// First 16 hex digits of the certificate's SHA-256: names the CA in its CRL URL.
    pub id: String,
    /// `root` (the trust anchor stations' certificates chain to) or `issuing`
    /// (the sub-CA that signs station certificates).
    pub role: String,
    /// The CA in use. A replaced CA stays trusted until `trustedUntil`.
    pub current: bool,
    #[schema(format = DateTime)]
    pub replaced_at: Option<String>,
    /// End of the overlap: certificates of this replaced CA are refused after it.
    #[schema(format = DateTime)]
    pub trusted_until: Option<String>,
    /// The CRL this issuing CA signs (issuing CAs only).
    pub crl_url: Option<String>,
    pub subject: String,
    #[schema(format = DateTime)]
    pub not_before: String,
    #[schema(format = DateTime)]
    pub not_after: String,
    /// SHA-256 of the DER, lower-case hex.
    pub fingerprint: String,
    /// The private key is held by a PKCS#11 token.
    pub hsm: bool,
    /// An operator's root imported without its private key.
    pub key_with_operator: bool,
    /// The CA certificate, then (for an operator's sub-CA) the intermediates above it.
    pub pem: String,
}

/// Replace the issuing sub-CA with a new one under the same root.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CaRotation {
    /// Days the replaced sub-CA stays trusted while its stations are renewed
    /// by the new one (1-3650, default 30).
    #[schema(minimum = 1, maximum = 3650)]
    pub overlap_days: Option<u32>,
}

/// An operator's own CA to issue station certificates with.
#[derive(Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CaImport {
    /// PEM: the CA certificate first, then each certificate above it up to and
    /// including the self-signed root. A root alone gets a new issuing sub-CA
    /// under it; a sub-CA issues station certificates itself.
    pub certificate_chain: String,
    /// The CA's private key, PKCS#8 PEM (unencrypted). Stored sealed under the
    /// master key; never returned or logged. Exclusive with `pkcs11KeyLabel`.
    pub private_key: Option<String>,
    /// Label of the CA's key in the configured PKCS#11 token, instead of
    /// `privateKey`. It must start with `import/<tenant>/` (where the platform
    /// operator puts keys for this tenant) and not be in use already.
    pub pkcs11_key_label: Option<String>,
    /// Days the previous root and sub-CA stay trusted (1-3650, default 30).
    #[schema(minimum = 1, maximum = 3650)]
    pub overlap_days: Option<u32>,
}

impl std::fmt::Debug for CaImport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaImport")
            .field("certificate_chain", &format_args!("[{} characters]", self.certificate_chain.len()))
            .field("private_key", &self.private_key.as_ref().map(|_| "[redacted]"))
            .field("pkcs11_key_label", &self.pkcs11_key_label)
            .field("overlap_days", &self.overlap_days)
            .finish()
    }
}
