//! The same storage tests against SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use csms::store::{
    BootRecord, CaOverlap, CertRequestState, CertificateRecord, Claimant, ConnectorStatus, CredentialCert,
    CredentialRecord, NewStation, Registration, RequestChange, Retirement, RevokedCertificate, StationWrite, Store,
    StoreError,
};

async fn sqlite() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&Store::sqlite_url(dir.path()), 4).await.unwrap();
    (store, dir)
}

async fn postgres() -> Store {
    Store::open(&postgres_url().await, 4).await.unwrap()
}

/// A new, empty PostgreSQL database.
async fn postgres_url() -> String {
    let base =
        std::env::var("ANCHORPOINT_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let name = format!(
        "ap_store_{}_{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() % 1_000_000_000_000
    );
    {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&base)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {base} is required: {e}"));
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut c).await.unwrap();
    }
    let (prefix, _) = base.rsplit_once('/').unwrap();
    format!("{prefix}/{name}")
}

fn cs(status: ConnectorStatus) -> StationWrite {
    StationWrite::ConnectorStatus { tenant_id: "acme".into(), station_id: "CS1".into(), status }
}

fn sev(kind: &str, occurred_at: i64, tech_info: Option<&str>) -> StationWrite {
    StationWrite::SecurityEvent {
        tenant_id: "acme".into(),
        station_id: "CS1".into(),
        kind: kind.into(),
        occurred_at,
        tech_info: tech_info.map(str::to_owned),
        at: occurred_at + 1,
    }
}

fn station(id: &str, tenant: &str) -> NewStation {
    NewStation {
        id: id.into(),
        tenant_id: tenant.into(),
        security_profile: 3,
        password_hash: None,
        registration: Registration::Accepted,
        description: Some("bay 4".into()),
        tags: vec![],
    }
}

async fn tenants_and_stations(s: &Store) {
    s.create_tenant("acme", "ACME Charging", Some("ocpp.acme.example"), 1).await.unwrap();
    s.create_tenant("other", "Other", None, 2).await.unwrap();
    assert!(matches!(s.create_tenant("acme", "dup", None, 3).await, Err(StoreError::AlreadyExists { .. })));
    assert_eq!(s.tenants().await.unwrap().len(), 2);
    assert!(
        matches!(
            s.create_tenant("third", "T", Some("ocpp.acme.example"), 4).await,
            Err(StoreError::AlreadyExists { .. })
        ),
        "a host name belongs to one tenant"
    );
    assert_eq!(s.tenant("acme").await.unwrap().unwrap().ocpp_hostname.as_deref(), Some("ocpp.acme.example"));
    assert_eq!(s.tenant("other").await.unwrap().unwrap().ocpp_hostname, None);

    let created = s.create_station(&station("CS1", "acme"), 10).await.unwrap();
    assert_eq!(created.security_profile, 3);
    assert_eq!(created.registration, Registration::Accepted);
    assert!(created.enabled);
    assert!(matches!(s.create_station(&station("CS1", "other"), 11).await, Err(StoreError::AlreadyExists { .. })));
    s.create_station(&station("CS2", "other"), 12).await.unwrap();
    // Tenants see only their own stations.
    let acme: Vec<String> = s.stations("acme").await.unwrap().into_iter().map(|s| s.id).collect();
    assert_eq!(acme, vec!["CS1"]);
    assert_eq!(s.station("acme", "CS1").await.unwrap().unwrap().id, "CS1");
    assert!(s.station("other", "CS1").await.unwrap().is_none(), "another tenant's station is not found");
    // The gateway and the platform CLI find a station by its id alone.
    assert_eq!(s.connect_facts("CS2", None).await.unwrap().unwrap().station.tenant_id, "other");
    assert_eq!(s.station_tenant("CS1").await.unwrap().as_deref(), Some("acme"));
    assert!(s.connect_facts("CS9", None).await.unwrap().is_none());
    assert!(s.station_tenant("CS9").await.unwrap().is_none());

    let updated =
        s.update_station("acme", "CS1", Some(2), Some("hash"), Some(Registration::Pending), Some(false)).await.unwrap();
    assert_eq!(updated.security_profile, 2);
    assert_eq!(updated.password_hash.as_deref(), Some("hash"));
    assert_eq!(updated.registration, Registration::Pending);
    assert!(!updated.enabled);
    let unchanged = s.update_station("acme", "CS1", None, None, None, None).await.unwrap();
    assert_eq!(unchanged, updated);
    // Another tenant cannot touch it.
    assert!(matches!(
        s.update_station("other", "CS1", Some(3), None, None, None).await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn boot_status_and_events(s: &Store) {
    s.create_tenant("acme", "ACME", None, 1).await.unwrap();
    s.create_station(&station("CS1", "acme"), 10).await.unwrap();
    s.apply_writes(&[StationWrite::Boot(BootRecord {
        tenant_id: "acme".into(),
        station_id: "CS1".into(),
        received_at: 1000,
        reason: "PowerUp".into(),
        status: Registration::Accepted,
        vendor: "V".into(),
        model: "M".into(),
        serial_number: Some("SN".into()),
        firmware_version: None,
        payload: "{}".into(),
        keep_last: None,
    })])
    .await
    .unwrap();
    let st = s.station("acme", "CS1").await.unwrap().unwrap();
    assert_eq!(st.boot_status.as_deref(), Some("Accepted"));
    assert_eq!(st.vendor.as_deref(), Some("V"));
    assert_eq!(st.serial_number.as_deref(), Some("SN"));
    assert_eq!(st.last_boot_at, Some(1000));

    s.apply_writes(&[StationWrite::Heartbeat { tenant_id: "acme".into(), station_id: "CS1".into(), at: 2000 }])
        .await
        .unwrap();
    assert_eq!(s.station("acme", "CS1").await.unwrap().unwrap().last_heartbeat_at, Some(2000));

    for (status, at) in [("Available", 1), ("Occupied", 2)] {
        let c =
            ConnectorStatus { evse_id: 1, connector_id: 1, status: status.into(), reported_at: at, received_at: at };
        s.apply_writes(&[cs(c)]).await.unwrap();
    }
    let c2 = ConnectorStatus { evse_id: 2, connector_id: 1, status: "Faulted".into(), reported_at: 3, received_at: 3 };
    s.apply_writes(&[cs(c2)]).await.unwrap();
    let statuses = s.connector_statuses("acme", "CS1").await.unwrap();
    assert_eq!(statuses.len(), 2);
    assert_eq!(statuses[0].status, "Occupied");
    assert_eq!(statuses[1].status, "Faulted");
    assert!(s.connector_statuses("other", "CS1").await.unwrap().is_empty());

    s.apply_writes(&[StationWrite::Message {
        tenant_id: "acme".into(),
        station_id: "CS1".into(),
        action: "NotifyEvent",
        payload: "{\"a\":1}".into(),
        at: 5,
        prune_to: None,
    }])
    .await
    .unwrap();
    assert_eq!(s.station_message_count("acme", "CS1", "NotifyEvent").await.unwrap(), 1);
    assert_eq!(s.station_message_count("other", "CS1", "NotifyEvent").await.unwrap(), 0);

    // Two in one group: both land, in order.
    s.apply_writes(&[sev("FirmwareUpdated", 7, Some("v2")), sev("ResetOrReboot", 9, None)]).await.unwrap();
    let ev = s.security_events("acme", Some("CS1")).await.unwrap();
    assert_eq!(ev.len(), 2);
    assert_eq!(ev[0].kind, "FirmwareUpdated");
    assert_eq!(ev[0].tech_info.as_deref(), Some("v2"));
    assert_eq!(s.security_events("acme", None).await.unwrap().len(), 2);
    assert!(s.security_events("other", None).await.unwrap().is_empty());
}

async fn certificates_and_credentials(s: &Store) {
    s.create_tenant("acme", "ACME", None, 1).await.unwrap();
    let rec = CertificateRecord {
        tenant_id: "acme".into(),
        serial_hex: "0a1b".into(),
        station_id: "CS1".into(),
        fingerprint: "ff".into(),
        not_before: 1,
        not_after: 2,
        cert_pem: "PEM".into(),
        issued_at: 1,
        revoked_at: None,
        revocation_reason: None,
        issuer_id: None,
    };
    s.record_certificate(&rec).await.unwrap();
    assert_eq!(s.certificate("acme", "0a1b").await.unwrap().unwrap(), rec);
    assert!(s.certificate("other", "0a1b").await.unwrap().is_none());
    s.revoke_certificate("acme", "0a1b", 50, "keyCompromise").await.unwrap();
    s.revoke_certificate("acme", "0a1b", 60, "superseded").await.unwrap();
    assert_eq!(
        s.certificate("acme", "0a1b").await.unwrap().unwrap().revoked_at,
        Some(50),
        "first revocation time is kept"
    );
    assert_eq!(
        s.certificate("acme", "0a1b").await.unwrap().unwrap().revocation_reason.as_deref(),
        Some("keyCompromise"),
        "and its reason"
    );
    assert_eq!(
        s.revoked_certificates("acme", "ca1", true).await.unwrap(),
        [RevokedCertificate { serial_hex: "0a1b".into(), revoked_at: 50, reason: Some("keyCompromise".into()) }],
        "a certificate without a recorded issuer belongs to the current CA"
    );
    assert!(s.revoked_certificates("acme", "ca1", false).await.unwrap().is_empty(), "not to a replaced one");
    assert!(s.revoked_certificates("other", "ca1", true).await.unwrap().is_empty());
    assert!(matches!(s.revoke_certificate("other", "0a1b", 1, "unspecified").await, Err(StoreError::NotFound { .. })));

    let cred = CredentialRecord { cert_pem: "A".into(), sealed_key: vec![1, 2, 3] };
    assert!(s.insert_credentials("acme", &[("station-ca", &cred)], 1).await.unwrap());
    // A set that overlaps what exists is stored not at all.
    let b = CredentialRecord { cert_pem: "B".into(), sealed_key: vec![9] };
    assert!(!s.insert_credentials("acme", &[("station-root", &b), ("station-ca", &b)], 2).await.unwrap());
    assert!(s.credential("acme", "station-root").await.unwrap().is_none(), "all or nothing");
    assert_eq!(s.credential("acme", "station-ca").await.unwrap().unwrap().cert_pem, "A");
    s.replace_credential("acme", "station-ca", &CredentialRecord { cert_pem: "C".into(), sealed_key: vec![7] }, 3)
        .await
        .unwrap();
    let got = s.credential("acme", "station-ca").await.unwrap().unwrap();
    assert_eq!((got.cert_pem.as_str(), got.sealed_key.as_slice()), ("C", &[7u8][..]));
    assert_eq!(
        s.credential_certs_named("station-ca").await.unwrap(),
        [CredentialCert { tenant_id: "acme".into(), cert_pem: "C".into() }]
    );
}

/// Concurrent reports through the group-commit writer all land; a report the
/// database refuses fails alone, the reports grouped with it still commit.
async fn group_commit_isolates_failures(s: &Store) {
    s.create_tenant("acme", "ACME", None, 1).await.unwrap();
    s.create_station(&station("CS1", "acme"), 10).await.unwrap();
    let writes = csms::group_commit::GroupCommit::start(s.clone(), 64);
    let mut tasks = Vec::new();
    for i in 0..200i64 {
        let w = writes.clone();
        tasks.push(tokio::spawn(async move { w.write(sev("Burst", i, None)).await }));
        if i == 100 {
            // Violates the CHECK on connector ids.
            let w = writes.clone();
            let bad = cs(ConnectorStatus {
                evse_id: -1,
                connector_id: 1,
                status: "x".into(),
                reported_at: 1,
                received_at: 1,
            });
            tasks.push(tokio::spawn(async move { w.write(bad).await }));
        }
    }
    let results: Vec<_> = futures_util::future::join_all(tasks).await.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(results.iter().filter(|r| r.is_err()).count(), 1, "only the bad report fails");
    assert_eq!(s.security_events("acme", Some("CS1")).await.unwrap().len(), 200);
    assert!(s.connector_statuses("acme", "CS1").await.unwrap().is_empty());
}

async fn api_pages_tags_deletion_and_audit(s: &Store) {
    use csms::store::{AuditRow, StationQuery};
    s.create_tenant("acme", "Acme", None, 1).await.unwrap();
    s.create_tenant("other", "Other", None, 1).await.unwrap();
    for i in 0..5 {
        s.create_station(&station(&format!("S{i}"), "acme"), 10).await.unwrap();
    }
    s.create_station(&station("X0", "other"), 10).await.unwrap();
    let tags = vec!["north".to_owned(), "dc".to_owned()];
    s.set_station_details("acme", "S1", Some(""), Some(&tags)).await.unwrap();
    s.set_station_details("acme", "S3", None, Some(&["north".to_owned()])).await.unwrap();
    let ids = |v: Vec<csms::store::Station>| v.into_iter().map(|x| x.id).collect::<Vec<_>>();
    let all = StationQuery::default();
    assert_eq!(ids(s.stations_page("acme", &all, None, 3).await.unwrap()), ["S0", "S1", "S2"]);
    assert_eq!(ids(s.stations_page("acme", &all, Some("S2"), 3).await.unwrap()), ["S3", "S4"]);
    let north = StationQuery { tag: Some("north".into()), ..StationQuery::default() };
    assert_eq!(ids(s.stations_page("acme", &north, None, 10).await.unwrap()), ["S1", "S3"]);
    assert!(s.stations_page("other", &north, None, 10).await.unwrap().is_empty());
    let s1 = s.station("acme", "S1").await.unwrap().unwrap();
    assert_eq!((s1.tags, s1.description), (tags, None), "\"\" clears the description");
    let profile2 = StationQuery { security_profile: Some(2), ..StationQuery::default() };
    assert!(s.stations_page("acme", &profile2, None, 10).await.unwrap().is_empty());
    assert!(matches!(s.set_station_details("acme", "X0", Some("mine"), None).await, Err(StoreError::NotFound { .. })));

    // Deleting revokes the station's certificates and forgets its tags.
    let cert = CertificateRecord {
        tenant_id: "acme".into(),
        serial_hex: "0abc".into(),
        station_id: "S1".into(),
        fingerprint: "f".into(),
        not_before: 0,
        not_after: 10,
        cert_pem: "pem".into(),
        issued_at: 0,
        revoked_at: None,
        revocation_reason: None,
        issuer_id: None,
    };
    s.record_certificate(&cert).await.unwrap();
    s.delete_station("acme", "S1", 99).await.unwrap();
    assert!(s.station("acme", "S1").await.unwrap().is_none());
    assert_eq!(s.certificate("acme", "0abc").await.unwrap().unwrap().revoked_at, Some(99));
    assert_eq!(ids(s.stations_page("acme", &north, None, 10).await.unwrap()), ["S3"]);
    assert!(matches!(s.delete_station("acme", "X0", 100).await, Err(StoreError::NotFound { .. })));
    assert!(s.station("other", "X0").await.unwrap().is_some(), "another tenant's station is not deleted");

    for (i, status) in [201, 403].into_iter().enumerate() {
        let row = AuditRow {
            id: 0,
            tenant_id: "acme".into(),
            at: i as i64,
            actor: "op".into(),
            role: "operator".into(),
            method: "POST".into(),
            path: "/api/v1/stations".into(),
            status,
        };
        s.insert_audit(&row).await.unwrap();
    }
    let rows = s.audit_page("acme", None, 10).await.unwrap();
    assert_eq!(rows.iter().map(|r| r.status).collect::<Vec<_>>(), [201, 403]);
    assert_eq!(s.audit_page("acme", Some(rows[0].id), 10).await.unwrap().len(), 1);
    assert!(s.audit_page("other", None, 10).await.unwrap().is_empty());
    {
        use CertRequestState::*;
        let id = s.insert_cert_request("acme", "S3", "operator", RequestChange::to(Requested), 1).await.unwrap();
        // Compare-and-set: only from the expected state.
        assert!(!s.update_cert_request("acme", id, &[Triggered], RequestChange::to(Rejected), 2).await.unwrap());
        let to_csr = RequestChange { csr_pem: Some("CSR"), ..RequestChange::to(CsrReceived) };
        assert!(s.update_cert_request("acme", id, &[Requested, Triggered], to_csr, 3).await.unwrap());
        assert!(!s.update_cert_request("acme", id, &[Requested], RequestChange::to(Triggered), 4).await.unwrap());
        let r = s.cert_request("acme", id).await.unwrap().unwrap();
        assert_eq!((r.state, r.csr_pem.as_deref(), r.updated_at), (CsrReceived, Some("CSR"), 3));
        assert!(s.cert_request("other", id).await.unwrap().is_none(), "requests are per tenant");
        let pending = s.cert_requests_in("acme", "S3", &[CsrReceived, Issued]).await.unwrap();
        assert_eq!(pending.len(), 1);
        assert!(s.update_cert_request("acme", id, &[CsrReceived], RequestChange::to(Issuing), 5).await.unwrap());
        assert!(s.cert_requests_in("acme", "S3", &[CsrReceived]).await.unwrap().is_empty());
    }
    let tenants = s.tenants_page(None, 10).await.unwrap();
    assert_eq!(tenants.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), ["acme", "other"]);
    assert_eq!(s.tenants_page(Some("acme"), 10).await.unwrap().len(), 1);
}

async fn station_ca_replacement(s: &Store) {
    s.create_tenant("acme", "ACME", None, 1).await.unwrap();
    for id in ["CS1", "CS2"] {
        s.create_station(&station(id, "acme"), 1).await.unwrap();
    }
    let cred = |pem: &str| CredentialRecord { cert_pem: pem.into(), sealed_key: vec![1] };
    let (root, old) = (cred("ROOT"), cred("OLD"));
    assert!(s.insert_credentials("acme", &[("station-root", &root), ("station-ca", &old)], 10).await.unwrap());
    let cert = |serial: &str, station: &str, issued_at: i64, issuer: Option<&str>| CertificateRecord {
        tenant_id: "acme".into(),
        serial_hex: serial.into(),
        station_id: station.into(),
        fingerprint: "ff".into(),
        not_before: 1,
        not_after: 10_000,
        cert_pem: "PEM".into(),
        issued_at,
        revoked_at: None,
        revocation_reason: None,
        issuer_id: issuer.map(str::to_owned),
    };
    s.record_certificate(&cert("01", "CS1", 20, None)).await.unwrap();
    s.record_certificate(&cert("02", "CS2", 20, None)).await.unwrap();

    let new = cred("NEW");
    let retire = [Retirement { name: "station-ca", cert_pem: "OLD", new_name: "station-ca@old".into() }];
    assert!(s.replace_station_cas("acme", "old", &retire, &[("station-ca", &new)], 100, 5_000).await.unwrap());
    // Certificates issued before the rotation are attributed to the old CA.
    assert_eq!(s.certificate("acme", "01").await.unwrap().unwrap().issuer_id.as_deref(), Some("old"));
    let cas = s.station_cas("acme", "station-ca").await.unwrap();
    let names: Vec<(&str, &str, Option<i64>)> =
        cas.iter().map(|c| (c.name.as_str(), c.cert_pem.as_str(), c.trusted_until)).collect();
    assert_eq!(names, [("station-ca", "NEW", None), ("station-ca@old", "OLD", Some(5_000))]);
    assert_eq!(cas[1].replaced_at, Some(100));
    // A rotation from a stale view changes nothing.
    let stale = [Retirement { name: "station-ca", cert_pem: "OLD", new_name: "station-ca@x".into() }];
    assert!(!s.replace_station_cas("acme", "x", &stale, &[("station-ca", &cred("OTHER"))], 200, 9_000).await.unwrap());
    assert_eq!(s.credential("acme", "station-ca").await.unwrap().unwrap().cert_pem, "NEW");

    let presented = |station: &'static str, serial: &'static str| async move {
        s.connect_facts(station, Some(serial)).await.unwrap().and_then(|f| f.certificate)
    };
    let at_connect = presented("CS1", "01").await.unwrap();
    assert_eq!(
        (at_connect.fingerprint.as_str(), at_connect.issuer_trusted_until),
        ("ff", Some(5_000)),
        "issued by the replaced CA"
    );
    assert!(presented("CS1", "99").await.is_none());
    s.create_tenant("other", "Other", None, 1).await.unwrap();
    s.create_station(&station("CS9", "other"), 1).await.unwrap();
    assert!(presented("CS9", "01").await.is_none(), "another tenant's serial is not the station's");
    assert_eq!(
        s.overlapping_station_cas(4_999).await.unwrap(),
        [CaOverlap { tenant_id: "acme".into(), name: "station-ca@old".into(), replaced_at: 100, trusted_until: 5_000 }]
    );
    assert!(s.overlapping_station_cas(5_000).await.unwrap().is_empty());

    // Only a station without a newer certificate is still to move; revoked ones never.
    s.record_certificate(&cert("03", "CS2", 150, Some("new"))).await.unwrap();
    assert_eq!(presented("CS2", "03").await.unwrap().issuer_trusted_until, None, "the current CA's");
    let to_move = s.certificates_to_move("acme", "old", 1_000, "", 10).await.unwrap();
    assert_eq!(to_move.iter().map(|c| c.serial_hex.as_str()).collect::<Vec<_>>(), ["01"]);
    assert!(s.certificates_to_move("acme", "old", 1_000, "01", 10).await.unwrap().is_empty(), "paged by serial");
    s.revoke_certificate("acme", "01", 300, "superseded").await.unwrap();
    assert!(s.certificates_to_move("acme", "old", 1_000, "", 10).await.unwrap().is_empty());
    assert_eq!(s.revoked_certificates("acme", "old", false).await.unwrap().len(), 1);
    assert!(s.revoked_certificates("acme", "new", true).await.unwrap().is_empty(), "each CA its own CRL");

    // A replaced root is trusted until its overlap ends.
    let retire = [Retirement { name: "station-root", cert_pem: "ROOT", new_name: "station-root@r1".into() }];
    assert!(
        s.replace_station_cas("acme", "new", &retire, &[("station-root", &cred("ROOT2"))], 400, 6_000).await.unwrap()
    );
    let pems = |v: Vec<CredentialCert>| v.into_iter().map(|c| c.cert_pem).collect::<Vec<_>>();
    assert_eq!(pems(s.trusted_station_roots(5_999).await.unwrap()), ["ROOT2", "ROOT"]);
    assert_eq!(pems(s.trusted_station_roots(6_000).await.unwrap()), ["ROOT2"]);
    // A root brought back and replaced again: its earlier retirement gives way to the new one.
    let retire = [Retirement { name: "station-root", cert_pem: "ROOT2", new_name: "station-root@r2".into() }];
    assert!(
        s.replace_station_cas("acme", "new", &retire, &[("station-root", &cred("ROOT"))], 500, 7_000).await.unwrap()
    );
    let retire = [Retirement { name: "station-root", cert_pem: "ROOT", new_name: "station-root@r1".into() }];
    assert!(
        s.replace_station_cas("acme", "new", &retire, &[("station-root", &cred("ROOT3"))], 600, 8_000).await.unwrap()
    );
    let roots = s.station_cas("acme", "station-root").await.unwrap();
    let r1: Vec<_> = roots.iter().filter(|r| r.name == "station-root@r1").map(|r| r.trusted_until).collect();
    assert_eq!(r1, [Some(8_000)]);
}

/// The moves of a certificate request that csms/src/lifecycle.rs makes, spelled
/// out once more against [`CertRequestState::may_become`].
const ALLOWED: &[(CertRequestState, CertRequestState)] = {
    use CertRequestState::*;
    &[
        (Requested, Triggered),
        (Requested, Failed),
        (Requested, CsrReceived),
        (Requested, Rejected),
        (Triggered, CsrReceived),
        (Triggered, Rejected),
        (CsrReceived, Issuing),
        (Issuing, Issuing),
        (Issuing, Delivering),
        (Issuing, CsrReceived),
        (Issued, Delivering),
        (Issued, Installed),
        (Delivering, Delivering),
        (Delivering, Issued),
        (Delivering, Delivered),
        (Delivering, StationRejected),
        (Delivering, Installed),
        (Delivered, Installed),
        (Requested, Superseded),
        (Triggered, Superseded),
        (CsrReceived, Superseded),
        (Issuing, Superseded),
        (Issued, Superseded),
    ]
};

#[test]
fn cert_request_transition_table() {
    use CertRequestState::*;
    for from in CertRequestState::ALL {
        for to in CertRequestState::ALL {
            assert_eq!(from.may_become(to), ALLOWED.contains(&(from, to)), "{from} -> {to}");
        }
    }
    let finals: Vec<_> = CertRequestState::ALL.into_iter().filter(|s| s.is_final()).collect();
    assert_eq!(finals, [Rejected, StationRejected, Installed, Failed, Superseded]);
    let supersedable: Vec<_> = CertRequestState::ALL.into_iter().filter(|s| s.may_become(Superseded)).collect();
    assert_eq!(supersedable, CertRequestState::SUPERSEDABLE);
    // Stored as today's text, which existing rows hold.
    let texts: Vec<_> = CertRequestState::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(
        texts,
        [
            "requested",
            "triggered",
            "csr_received",
            "issuing",
            "rejected",
            "issued",
            "delivering",
            "delivered",
            "station_rejected",
            "installed",
            "failed",
            "superseded"
        ]
    );
    for state in CertRequestState::ALL {
        assert_eq!(state.as_str().parse::<CertRequestState>().unwrap(), state);
        assert_eq!(serde_json::to_value(state).unwrap(), state.as_str());
    }
    assert!(matches!("Requested".parse::<CertRequestState>(), Err(StoreError::Corrupt(_))));
    assert!(matches!("".parse::<CertRequestState>(), Err(StoreError::Corrupt(_))));
}

/// A move the table refuses is refused before the database is asked: an error,
/// and a panic in debug builds (it is a bug in the caller).
async fn refused_move(s: &Store, id: i64, from: &[CertRequestState], to: CertRequestState) {
    let (s, from_list) = (s.clone(), from.to_vec());
    let outcome =
        tokio::spawn(async move { s.update_cert_request("acme", id, &from_list, RequestChange::to(to), 9).await })
            .await;
    match outcome {
        Err(e) => assert!(e.is_panic() && cfg!(debug_assertions), "{from:?} -> {to}: {e}"),
        Ok(Err(StoreError::IllegalTransition { to: t, .. })) => assert!(t == to && !cfg!(debug_assertions)),
        Ok(other) => panic!("{from:?} -> {to} was not refused: {other:?}"),
    }
}

async fn cert_request_moves(s: &Store) {
    use CertRequestState::*;
    s.create_tenant("acme", "ACME", None, 1).await.unwrap();
    s.create_tenant("other", "Other", None, 1).await.unwrap();
    let insert = |state: CertRequestState| async move {
        s.insert_cert_request("acme", "CS1", "station", RequestChange::to(state), 1).await.unwrap()
    };
    let state = |id: i64| async move { s.cert_request("acme", id).await.unwrap().unwrap().state };

    // Every allowed move, from a request inserted in its starting state.
    for &(from, to) in ALLOWED {
        let id = insert(from).await;
        assert!(s.update_cert_request("acme", id, &[from], RequestChange::to(to), 2).await.unwrap(), "{from} -> {to}");
        assert_eq!(state(id).await, to);
    }
    // Refused moves leave the request where it is.
    for (from, to) in [(Installed, Requested), (Rejected, Issuing), (Triggered, Failed), (Delivered, Delivering)] {
        let id = insert(from).await;
        refused_move(s, id, &[from], to).await;
        assert_eq!(state(id).await, from, "{from} -> {to}");
    }
    // One illegal `from` refuses the whole move, even where the state matches a legal one.
    let id = insert(Delivering).await;
    refused_move(s, id, &[Delivering, Requested], Delivered).await;
    assert_eq!(state(id).await, Delivering);

    // Compare-and-set: an allowed move from a state the request is not in does not move it.
    let id = insert(CsrReceived).await;
    assert!(!s.update_cert_request("acme", id, &[Requested], RequestChange::to(Triggered), 3).await.unwrap());
    assert_eq!(state(id).await, CsrReceived);
    assert!(!s.update_cert_request("acme", id, &[], RequestChange::to(Issuing), 3).await.unwrap(), "empty from");
    assert_eq!(state(id).await, CsrReceived);

    // Another tenant cannot move it.
    let id = insert(Requested).await;
    assert!(!s.update_cert_request("other", id, &[Requested], RequestChange::to(Triggered), 4).await.unwrap());
    assert_eq!(state(id).await, Requested);
    assert!(s.update_cert_request("acme", id, &[Requested], RequestChange::to(Triggered), 5).await.unwrap());

    // Every `from` counts, the last of three too (no state has more legal predecessors).
    let id = insert(Delivered).await;
    assert!(
        s.update_cert_request("acme", id, &[Issued, Delivering, Delivered], RequestChange::to(Installed), 6)
            .await
            .unwrap()
    );
    let r = s.cert_request("acme", id).await.unwrap().unwrap();
    assert_eq!((r.state, r.updated_at), (Installed, 6));

    // Fields move with the state; `None` keeps them.
    let id = insert(Issuing).await;
    let issued = RequestChange { serial_hex: Some("0a"), detail: Some("d"), ..RequestChange::to(Delivering) };
    assert!(s.update_cert_request("acme", id, &[Issuing], issued, 7).await.unwrap());
    assert!(s.update_cert_request("acme", id, &[Delivering], RequestChange::to(Issued), 8).await.unwrap());
    let r = s.cert_request("acme", id).await.unwrap().unwrap();
    assert_eq!((r.state, r.serial_hex.as_deref(), r.detail.as_deref()), (Issued, Some("0a"), Some("d")));

    // Inserted with its fields.
    let rejected = RequestChange { csr_pem: Some("CSR"), detail: Some("why"), ..RequestChange::to(Rejected) };
    let id = s.insert_cert_request("acme", "CS2", "station", rejected, 10).await.unwrap();
    let r = s.cert_request("acme", id).await.unwrap().unwrap();
    assert_eq!(
        (r.state, r.csr_pem.as_deref(), r.detail.as_deref(), r.origin.as_str()),
        (Rejected, Some("CSR"), Some("why"), "station")
    );
    assert_eq!((r.created_at, r.updated_at), (10, 10));

    // Any number of states in a query, the last one too.
    let all = CertRequestState::ALL;
    assert_eq!(all.last(), Some(&Superseded));
    let id = s.insert_cert_request("acme", "CS3", "operator", RequestChange::to(Superseded), 11).await.unwrap();
    assert_eq!(s.cert_requests_in("acme", "CS3", &all).await.unwrap().iter().map(|r| r.id).collect::<Vec<_>>(), [id]);
    assert!(s.cert_requests_in("acme", "CS3", &all[..all.len() - 1]).await.unwrap().is_empty());
    assert!(s.cert_requests_in("other", "CS3", &all).await.unwrap().is_empty());
    assert_eq!(s.cert_requests_in("acme", "CS3", &[]).await.unwrap().len(), 1, "no states: any state");
}

/// Platform settings: absent, recorded, replaced (the previous value returned).
async fn platform_settings(s: &Store) {
    use csms::store::PUBLIC_URL;
    assert_eq!(s.setting(PUBLIC_URL).await.unwrap(), None);
    assert_eq!(s.set_setting(PUBLIC_URL, "http://a.example:8080", 1).await.unwrap(), None);
    assert_eq!(s.setting(PUBLIC_URL).await.unwrap().as_deref(), Some("http://a.example:8080"));
    let previous = s.set_setting(PUBLIC_URL, "https://b.example", 2).await.unwrap();
    assert_eq!(previous.as_deref(), Some("http://a.example:8080"));
    assert_eq!(s.setting(PUBLIC_URL).await.unwrap().as_deref(), Some("https://b.example"));
    assert_eq!(s.setting("other").await.unwrap(), None);
}

fn message(station: &str, payload: String, prune_to: Option<i64>) -> StationWrite {
    StationWrite::Message {
        tenant_id: "acme".into(),
        station_id: station.into(),
        action: "DataTransfer",
        payload,
        at: 1,
        prune_to,
    }
}

/// The per-station stored quota: pruning keeps the newest messages within
/// the bound, in the insert's transaction, and touches no other station.
async fn verbatim_volume_is_pruned_oldest_first(s: &Store) {
    assert_eq!(s.station_message_bytes("acme", "CS1").await.unwrap(), 0);
    // Payload bytes are UTF-8 bytes: "é" counts 2.
    s.apply_writes(&[message("CS1", "é".repeat(50), None)]).await.unwrap();
    assert_eq!(s.station_message_bytes("acme", "CS1").await.unwrap(), 100);
    s.apply_writes(&[message("OTHER", "x".repeat(500), None)]).await.unwrap();
    for i in 0..9 {
        s.apply_writes(&[message("CS1", format!("{i}").repeat(100), None)]).await.unwrap();
    }
    assert_eq!(s.station_message_bytes("acme", "CS1").await.unwrap(), 1000);
    // The 11th message with a bound of 450 keeps the newest four (400 bytes).
    s.apply_writes(&[message("CS1", "n".repeat(100), Some(450))]).await.unwrap();
    assert_eq!(s.station_message_bytes("acme", "CS1").await.unwrap(), 400);
    assert_eq!(s.station_message_count("acme", "CS1", "DataTransfer").await.unwrap(), 4);
    assert_eq!(s.station_message_bytes("acme", "OTHER").await.unwrap(), 500, "another station is untouched");
    // Exactly at the bound: nothing more goes.
    s.apply_writes(&[message("CS1", "m".repeat(100), Some(500))]).await.unwrap();
    assert_eq!(s.station_message_bytes("acme", "CS1").await.unwrap(), 500);
    assert_eq!(s.station_message_bytes("other-tenant", "CS1").await.unwrap(), 0);
}

/// The boot history per station is bounded: the newest records are kept, in the
/// insert's transaction, and no other station's are touched.
async fn boot_history_is_bounded(s: &Store) {
    s.create_tenant("acme", "ACME", None, 1).await.unwrap();
    s.create_station(&station("CS1", "acme"), 10).await.unwrap();
    let boot = |station: &str, at: i64, keep_last: Option<u32>| {
        StationWrite::Boot(BootRecord {
            tenant_id: "acme".into(),
            station_id: station.into(),
            received_at: at,
            reason: "PowerUp".into(),
            status: Registration::Accepted,
            vendor: "V".into(),
            model: "M".into(),
            serial_number: None,
            firmware_version: None,
            payload: format!("{{\"n\":{at}}}"),
            keep_last,
        })
    };
    for at in 0..6 {
        s.apply_writes(&[boot("CS1", at, None), boot("CS2", at, None)]).await.unwrap();
    }
    assert_eq!(s.boot_count("acme", "CS1").await.unwrap(), 6);
    s.apply_writes(&[boot("CS1", 6, Some(3))]).await.unwrap();
    assert_eq!(s.boot_count("acme", "CS1").await.unwrap(), 3);
    assert_eq!(s.boot_count("acme", "CS2").await.unwrap(), 6, "another station is untouched");
    s.apply_writes(&[boot("CS1", 7, Some(3))]).await.unwrap();
    assert_eq!(s.boot_count("acme", "CS1").await.unwrap(), 3);
    s.apply_writes(&[boot("CS3", 0, Some(3))]).await.unwrap();
    assert_eq!(s.boot_count("acme", "CS3").await.unwrap(), 1, "fewer than the bound: nothing goes");
    assert_eq!(s.station("acme", "CS1").await.unwrap().unwrap().last_boot_at, Some(7));
    // Several stations in one group, one of them twice: each bounded, the row
    // shows the station's latest boot.
    s.create_station(&station("CS2", "acme"), 10).await.unwrap();
    s.apply_writes(&[boot("CS1", 9, Some(3)), boot("CS2", 6, Some(2)), boot("CS1", 8, Some(3))]).await.unwrap();
    assert_eq!(s.boot_count("acme", "CS1").await.unwrap(), 3);
    assert_eq!(s.boot_count("acme", "CS2").await.unwrap(), 2);
    let cs1 = s.station("acme", "CS1").await.unwrap().unwrap();
    assert_eq!((cs1.last_boot_at, cs1.last_seen_at), (Some(8), Some(9)), "the last written, seen never moves back");
    assert_eq!(s.station("acme", "CS2").await.unwrap().unwrap().last_boot_at, Some(6));
}

/// The group commit's writer keeps one connection across groups: a group of
/// one statement (committed without BEGIN) lands, one the database refuses
/// fails without harming the next, and closing the store does not wait for
/// the writer (it gives its connection back).
async fn group_commit_holds_one_connection_and_lets_go_on_close(s: &Store) {
    s.create_tenant("acme", "ACME", None, 1).await.unwrap();
    s.create_station(&station("CS1", "acme"), 10).await.unwrap();
    let writes = csms::group_commit::GroupCommit::start(s.clone(), 64);
    writes.write(StationWrite::Certificate(Box::new(cert("0A", "CS1")))).await.unwrap();
    assert_eq!(s.certificate("acme", "0A").await.unwrap().unwrap().station_id, "CS1");
    // The same serial again: the primary key refuses it, on its own.
    let again = writes.write(StationWrite::Certificate(Box::new(cert("0A", "CS1")))).await;
    assert!(again.is_err(), "a duplicate serial is refused: {again:?}");
    writes.write(StationWrite::Certificate(Box::new(cert("0B", "CS1")))).await.unwrap();
    writes.write(sev("After", 1, None)).await.unwrap();
    assert!(s.certificate("acme", "0B").await.unwrap().is_some());
    assert_eq!(s.security_events("acme", Some("CS1")).await.unwrap().len(), 1);
    // A transaction of several statements on the held connection, then close.
    writes.write(message("CS1", "{}".into(), Some(1000))).await.unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), s.close())
        .await
        .expect("the store closes while the writer is idle, its handle alive");
    assert!(writes.write(sev("Closed", 2, None)).await.is_err(), "a write after close fails");
}

/// With a pool of one connection the writer gives it back after each group:
/// everything else still gets the connection.
#[tokio::test]
async fn group_commit_on_a_pool_of_one_keeps_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&Store::sqlite_url(dir.path()), 1).await.unwrap();
    s.create_tenant("acme", "ACME", None, 1).await.unwrap();
    s.create_station(&station("CS1", "acme"), 10).await.unwrap();
    let writes = csms::group_commit::GroupCommit::start(s.clone(), 64);
    writes.write(sev("One", 1, None)).await.unwrap();
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), s.security_events("acme", Some("CS1")));
    assert_eq!(read.await.expect("a read after a group does not wait for the writer").unwrap().len(), 1);
}

fn cert(serial: &str, station: &str) -> CertificateRecord {
    CertificateRecord {
        tenant_id: "acme".into(),
        serial_hex: serial.into(),
        station_id: station.into(),
        fingerprint: format!("fp-{serial}"),
        not_before: 1,
        not_after: 2,
        cert_pem: "PEM".into(),
        issued_at: 1,
        revoked_at: None,
        revocation_reason: None,
        issuer_id: None,
    }
}

/// One read at connect: the station, the presented certificate's record within
/// the station's tenant, and whether the certificates engine has work to do.
async fn connect_facts_say_when_certificates_need_work(s: &Store) {
    use CertRequestState::*;
    s.create_tenant("acme", "ACME", None, 1).await.unwrap();
    s.create_tenant("other", "Other", None, 1).await.unwrap();
    s.create_station(&station("CS1", "acme"), 1).await.unwrap();
    s.create_station(&station("CS2", "other"), 1).await.unwrap();
    s.record_certificate(&CertificateRecord { issued_at: 10, ..cert("0a", "CS1") }).await.unwrap();
    let facts = |id: &'static str, serial: Option<&'static str>| async move {
        let f = s.connect_facts(id, serial).await.unwrap().unwrap();
        (f.certificate.map(|c| c.fingerprint), f.certificate_work)
    };
    let work = |id: &'static str, serial: Option<&'static str>| async move { facts(id, serial).await.1 };
    let f = s.connect_facts("CS1", Some("0a")).await.unwrap().unwrap();
    assert_eq!((f.station.id.as_str(), f.station.registration), ("CS1", Registration::Accepted));
    let c = f.certificate.unwrap();
    assert_eq!((c.fingerprint.as_str(), c.not_before, c.not_after, c.revoked_at), ("fp-0a", 1, 2, None));
    assert!(!f.certificate_work, "one certificate, no request: nothing to do");
    assert_eq!(facts("CS1", None).await, (None, false));
    assert_eq!(facts("CS1", Some("99")).await, (None, false));
    assert_eq!(facts("CS2", Some("0a")).await, (None, false), "another tenant's station does not see it");

    // A newer certificate: connecting with it finds the older one still live.
    s.record_certificate(&CertificateRecord { issued_at: 20, ..cert("0b", "CS1") }).await.unwrap();
    assert!(work("CS1", Some("0b")).await);
    assert!(!work("CS1", Some("0a")).await, "the other one is newer, not older");
    s.revoke_certificate("acme", "0a", 30, "superseded").await.unwrap();
    assert!(!work("CS1", Some("0b")).await, "revoked: nothing left to supersede");

    // Requests: settled ones ask for nothing, open ones for the engine.
    let installed = s.insert_cert_request("acme", "CS1", "station", RequestChange::to(Installed), 5).await.unwrap();
    s.insert_cert_request("acme", "CS1", "station", RequestChange::to(Rejected), 5).await.unwrap();
    s.insert_cert_request("other", "CS2", "station", RequestChange::to(Issued), 5).await.unwrap();
    assert!(!work("CS1", None).await);
    let delivered = s.insert_cert_request("acme", "CS1", "station", RequestChange::to(Delivered), 6).await.unwrap();
    assert!(work("CS1", None).await);
    assert!(work("CS1", Some("0b")).await);
    assert!(work("CS2", None).await, "other's own request");
    assert!(s.update_cert_request("acme", delivered, &[Delivered], RequestChange::to(Installed), 7).await.unwrap());
    assert!(!work("CS1", Some("0b")).await);
    assert!(installed < delivered);
    assert!(s.connect_facts("CS9", Some("0a")).await.unwrap().is_none(), "unknown station");
}

/// A02: a newer request of a station supersedes its older undelivered ones,
/// and revokes the certificates issued for them, in one transaction.
async fn cert_request_supersession(s: &Store) {
    use CertRequestState::*;
    s.create_tenant("acme", "ACME", None, 1).await.unwrap();
    s.create_tenant("other", "Other", None, 1).await.unwrap();
    for serial in ["0c01", "0c02", "0c03"] {
        s.record_certificate(&cert(serial, "CS1")).await.unwrap();
    }
    let insert = |tenant: &'static str, station: &'static str, change: RequestChange<'static>| async move {
        s.insert_cert_request(tenant, station, "station", change, 5).await.unwrap()
    };
    let state = |id: i64| async move { s.cert_request("acme", id).await.unwrap().unwrap() };
    let delivering =
        insert("acme", "CS1", RequestChange { serial_hex: Some("0c02"), ..RequestChange::to(Delivering) }).await;
    let delivered =
        insert("acme", "CS1", RequestChange { serial_hex: Some("0c03"), ..RequestChange::to(Delivered) }).await;
    let issued = insert("acme", "CS1", RequestChange { serial_hex: Some("0c01"), ..RequestChange::to(Issued) }).await;
    let triggered = insert("acme", "CS1", RequestChange::to(Triggered)).await;
    let elsewhere = insert("acme", "CS2", RequestChange::to(Issued)).await;
    let foreign = insert("other", "CS1", RequestChange::to(Issued)).await;
    // A refused CSR supersedes nothing.
    let refused = insert("acme", "CS1", RequestChange::to(Rejected)).await;
    assert_eq!(state(issued).await.state, Issued);

    let newer = insert("acme", "CS1", RequestChange { csr_pem: Some("CSR"), ..RequestChange::to(CsrReceived) }).await;
    for id in [issued, triggered] {
        let r = state(id).await;
        assert_eq!(r.state, Superseded, "request {id}");
        assert_eq!(r.detail, Some(format!("superseded by request {newer}")));
    }
    // What is delivered or being delivered, refused, another station's or another
    // tenant's, stays.
    assert_eq!(state(delivering).await.state, Delivering);
    assert_eq!(state(delivered).await.state, Delivered);
    assert_eq!(state(refused).await.state, Rejected);
    assert_eq!(state(elsewhere).await.state, Issued);
    assert_eq!(s.cert_request("other", foreign).await.unwrap().unwrap().state, Issued);
    // The superseded request's certificate is revoked, the others are not.
    let c = s.certificate("acme", "0c01").await.unwrap().unwrap();
    assert_eq!((c.revoked_at, c.revocation_reason.as_deref()), (Some(5), Some("superseded")));
    for serial in ["0c02", "0c03"] {
        assert!(s.certificate("acme", serial).await.unwrap().unwrap().revoked_at.is_none(), "{serial}");
    }
    // A superseded request is final: a delivery that still holds it cannot move it.
    assert!(Superseded.is_final());
    assert!(!s.update_cert_request("acme", triggered, &[Triggered], RequestChange::to(CsrReceived), 6).await.unwrap());
    assert!(!s.update_cert_request("acme", issued, &[Issued], RequestChange::to(Delivering), 6).await.unwrap());

    // An operator's renewal supersedes the CSR just received.
    let renewal = s.insert_cert_request("acme", "CS1", "operator", RequestChange::to(Requested), 7).await.unwrap();
    assert_eq!(state(newer).await.state, Superseded);
    assert_eq!(state(renewal).await.state, Requested);

    // Rows recorded before supersession existed: superseded on demand.
    let a = insert("acme", "CS3", RequestChange::to(Issued)).await;
    let b = insert("acme", "CS3", RequestChange::to(Issued)).await;
    assert_eq!(s.supersede_requests_before("other", "CS3", b, 8).await.unwrap(), Vec::<i64>::new());
    assert_eq!(s.supersede_requests_before("acme", "CS3", b, 8).await.unwrap(), [a]);
    assert_eq!(state(b).await.state, Issued);
    assert!(s.supersede_requests_before("acme", "CS3", b, 9).await.unwrap().is_empty(), "once");
}

/// A node starting again releases the claims of its earlier instances, and no
/// one else's; stale claims are found for the maintenance tick.
async fn claims_released_at_start_up(s: &Store) {
    use CertRequestState::*;
    s.create_tenant("acme", "ACME", None, 1).await.unwrap();
    let (a1, a2) = (Claimant { node: "node-a", instance: "1" }, Claimant { node: "node-a", instance: "2" });
    let b1 = Claimant { node: "node-b", instance: "1" };
    let claimed = |station: &'static str, claim: Claimant<'static>, deliver: bool, at: i64| async move {
        let id = s.insert_cert_request("acme", station, "station", RequestChange::to(CsrReceived), at).await.unwrap();
        let issuing = RequestChange { claim: Some(claim), ..RequestChange::to(Issuing) };
        assert!(s.update_cert_request("acme", id, &[CsrReceived], issuing, at).await.unwrap());
        if deliver {
            let change =
                RequestChange { serial_hex: Some("0d01"), claim: Some(claim), ..RequestChange::to(Delivering) };
            assert!(s.update_cert_request("acme", id, &[Issuing], change, at).await.unwrap());
        }
        id
    };
    let issuing_a1 = claimed("S1", a1, false, 10).await;
    let delivering_a1 = claimed("S2", a1, true, 10).await;
    let issuing_b1 = claimed("S3", b1, false, 20).await;
    let issuing_a2 = claimed("S4", a2, false, 50).await;
    // A move without a claim clears it: a delivered request holds none.
    let done = claimed("S5", a1, true, 10).await;
    assert!(s.update_cert_request("acme", done, &[Delivering], RequestChange::to(Delivered), 10).await.unwrap());

    let stale = s.stale_claims(30, 10).await.unwrap();
    let seen: Vec<_> =
        stale.iter().map(|c| (c.id, c.state, c.claim_node.as_deref(), c.claim_instance.as_deref())).collect();
    assert_eq!(
        seen,
        [
            (issuing_a1, Issuing, Some("node-a"), Some("1")),
            (delivering_a1, Delivering, Some("node-a"), Some("1")),
            (issuing_b1, Issuing, Some("node-b"), Some("1"))
        ]
    );
    assert_eq!(s.stale_claims(30, 1).await.unwrap().len(), 1, "limit");

    // Instance 2 of node-a starts: instance 1's claims are released.
    assert_eq!(s.release_claims(a2, 100).await.unwrap(), 2);
    let r = s.cert_request("acme", issuing_a1).await.unwrap().unwrap();
    assert_eq!((r.state, r.updated_at), (CsrReceived, 100));
    let r = s.cert_request("acme", delivering_a1).await.unwrap().unwrap();
    assert_eq!((r.state, r.serial_hex.as_deref()), (Issued, Some("0d01")));
    for (id, state) in [(issuing_b1, Issuing), (issuing_a2, Issuing), (done, Delivered)] {
        assert_eq!(s.cert_request("acme", id).await.unwrap().unwrap().state, state, "request {id}");
    }
    assert_eq!(s.release_claims(a2, 101).await.unwrap(), 0, "released once");
    let stale: Vec<_> = s.stale_claims(1_000, 10).await.unwrap().into_iter().map(|c| c.id).collect();
    assert_eq!(stale, [issuing_b1, issuing_a2]);
}

/// A01: a password whose SetVariables had an unknown outcome is kept pending
/// beside the current one; a login with either settles it.
async fn pending_password_settles(s: &Store) {
    s.create_tenant("acme", "ACME", None, 1).await.unwrap();
    s.create_tenant("other", "Other", None, 1).await.unwrap();
    let new = NewStation { security_profile: 1, password_hash: Some("H-OLD".into()), ..station("CS1", "acme") };
    s.create_station(&new, 1).await.unwrap();
    let hashes = || async {
        let st = s.station("acme", "CS1").await.unwrap().unwrap();
        (st.password_hash, st.pending_password_hash)
    };
    assert_eq!(hashes().await, (Some("H-OLD".into()), None));
    s.set_pending_password("acme", "CS1", "H-NEW").await.unwrap();
    assert!(matches!(s.set_pending_password("other", "CS1", "X").await, Err(StoreError::NotFound { .. })));
    assert_eq!(hashes().await, (Some("H-OLD".into()), Some("H-NEW".into())));
    assert_eq!(
        s.connect_facts("CS1", None).await.unwrap().unwrap().station.pending_password_hash.as_deref(),
        Some("H-NEW"),
        "the gateway sees it"
    );

    // Compare-and-set on the pending hash: a stale one settles nothing.
    assert!(!s.settle_password("CS1", "H-STALE", true).await.unwrap());
    assert!(s.settle_password("CS1", "H-NEW", true).await.unwrap());
    assert_eq!(hashes().await, (Some("H-NEW".into()), None));
    assert!(!s.settle_password("CS1", "H-NEW", true).await.unwrap(), "settled once");

    // Logging in with the current one drops the pending one.
    s.set_pending_password("acme", "CS1", "H-3").await.unwrap();
    assert!(s.settle_password("CS1", "H-3", false).await.unwrap());
    assert_eq!(hashes().await, (Some("H-NEW".into()), None));

    // A password the operator sets replaces both; other changes keep a pending one.
    s.set_pending_password("acme", "CS1", "H-4").await.unwrap();
    s.update_station("acme", "CS1", None, None, Some(Registration::Pending), None).await.unwrap();
    assert_eq!(hashes().await, (Some("H-NEW".into()), Some("H-4".into())));
    s.update_station("acme", "CS1", None, Some("H-5"), None, None).await.unwrap();
    assert_eq!(hashes().await, (Some("H-5".into()), None));
}

macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                let (s, _dir) = super::sqlite().await;
                super::$name(&s).await;
            }
            #[tokio::test]
            async fn postgres() {
                let s = super::postgres().await;
                super::$name(&s).await;
            }
        }
    };
}

both!(tenants_and_stations);
both!(boot_status_and_events);
both!(certificates_and_credentials);
both!(group_commit_isolates_failures);
both!(group_commit_holds_one_connection_and_lets_go_on_close);
both!(api_pages_tags_deletion_and_audit);
both!(station_ca_replacement);
both!(cert_request_moves);
both!(platform_settings);
both!(boot_history_is_bounded);
both!(verbatim_volume_is_pruned_oldest_first);
both!(cert_request_supersession);
both!(connect_facts_say_when_certificates_need_work);
both!(claims_released_at_start_up);
both!(pending_password_settles);

#[test]
fn migration_folders_agree() {
    use csms::store::migrations::{POSTGRES, SQLITE};
    let names = |m: &[(i64, &str, &str)]| m.iter().map(|&(v, d, _)| (v, d.to_owned())).collect::<Vec<_>>();
    assert_eq!(names(SQLITE), names(POSTGRES), "migrations/sqlite/ and migrations/postgres/ hold the same versions");
    let versions: Vec<i64> = SQLITE.iter().map(|m| m.0).collect();
    assert_eq!(versions, (1..=versions.len() as i64).collect::<Vec<_>>(), "numbered from 1 without gaps");
    assert_eq!(names(SQLITE)[..2], [(1, "foundation".to_owned()), (2, "api".to_owned())], "described by the file name");
    assert!(SQLITE.iter().chain(POSTGRES).all(|m| !m.2.trim().is_empty()));
}

/// `(version, description, success)` of the migrations applied to the database at `url`.
async fn applied(url: &str) -> Vec<(i64, String, bool)> {
    use sqlx::Connection;
    let query = "SELECT version, description, success FROM _sqlx_migrations ORDER BY version";
    if url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::query_as(query).fetch_all(&mut c).await.unwrap()
    } else {
        let mut c = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query_as(query).fetch_all(&mut c).await.unwrap()
    }
}

async fn execute(url: &str, sql: &str) {
    use sqlx::Connection;
    if url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::query(sql).execute(&mut c).await.unwrap();
    } else {
        let mut c = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query(sql).execute(&mut c).await.unwrap();
    }
}

#[tokio::test]
async fn fresh_databases_apply_the_same_versions() {
    let dir = tempfile::tempdir().unwrap();
    let (lite, pg) = (Store::sqlite_url(dir.path()), postgres_url().await);
    Store::open(&lite, 1).await.unwrap().close().await;
    Store::open(&pg, 1).await.unwrap().close().await;
    let expected: Vec<(i64, String, bool)> =
        csms::store::migrations::SQLITE.iter().map(|&(v, d, _)| (v, d.to_owned(), true)).collect();
    assert_eq!(applied(&lite).await, expected);
    assert_eq!(applied(&pg).await, expected);
}

/// Databases created when version 1 was described by the database's name open
/// as before: sqlx checks an applied migration by version and checksum only.
async fn opens_with_the_old_description(url: &str, old: &str) {
    Store::open(url, 1).await.unwrap().close().await;
    execute(url, &format!("UPDATE _sqlx_migrations SET description = '{old}' WHERE version = 1")).await;
    let reopened = Store::open(url, 1).await.unwrap();
    reopened.ping().await.unwrap();
    reopened.close().await;
    let rows = applied(url).await;
    assert_eq!((rows[0].0, rows[0].1.as_str()), (1, old), "left as it was");
    assert_eq!(rows.len(), csms::store::migrations::SQLITE.len());
}

#[tokio::test]
async fn old_sqlite_database_opens() {
    let dir = tempfile::tempdir().unwrap();
    opens_with_the_old_description(&Store::sqlite_url(dir.path()), "sqlite").await;
}

#[tokio::test]
async fn old_postgres_database_opens() {
    opens_with_the_old_description(&postgres_url().await, "postgres").await;
}

#[tokio::test]
async fn corrupt_request_state_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let url = Store::sqlite_url(dir.path());
    let s = Store::open(&url, 1).await.unwrap();
    let id =
        s.insert_cert_request("acme", "CS1", "station", RequestChange::to(CertRequestState::Issued), 1).await.unwrap();
    execute(&url, &format!("UPDATE certificate_requests SET state = 'lost' WHERE id = {id}")).await;
    assert!(matches!(s.cert_request("acme", id).await, Err(StoreError::Corrupt(m)) if m.contains("'lost'")));
}

#[tokio::test]
async fn unsupported_url() {
    assert!(matches!(Store::open("mysql://x", 1).await, Err(StoreError::UnsupportedUrl)));
}

/// Several processes opening one new SQLite database at once (the CLI and a
/// server on first use): switching it to WAL takes an exclusive lock, which
/// SQLite refuses at once rather than wait for; every open still succeeds.
#[tokio::test]
async fn concurrent_opens_of_a_new_sqlite_database_all_succeed() {
    // Without the retry, about one round in ten lost an open to SQLITE_BUSY here.
    for _ in 0..12 {
        let dir = tempfile::tempdir().unwrap();
        let url = Store::sqlite_url(dir.path());
        let opens: Vec<_> = (0..8)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move { Store::open(&url, 2).await })
            })
            .collect();
        for open in opens {
            open.await.unwrap().unwrap_or_else(|e| panic!("a concurrent open failed: {e}"));
        }
    }
}

/// The events of CS1 that a copy of the SQLite database file alone, without
/// its WAL, holds.
async fn events_in_the_database_file(dir: &std::path::Path) -> usize {
    let copy = tempfile::tempdir().unwrap();
    std::fs::copy(dir.join("anchorpoint.db"), copy.path().join("anchorpoint.db")).unwrap();
    let s = Store::open(&Store::sqlite_url(copy.path()), 1).await.unwrap();
    let n = s.security_events("acme", Some("CS1")).await.unwrap().len();
    s.close().await;
    n
}

/// Store::checkpoint (run by `csms serve` off the commit path) copies what
/// the WAL holds into the database file.
#[tokio::test]
async fn a_checkpoint_moves_committed_reports_into_the_database_file() {
    let (s, dir) = sqlite().await;
    s.create_tenant("acme", "ACME", None, 1).await.unwrap();
    s.create_station(&station("CS1", "acme"), 10).await.unwrap();
    assert!(s.checkpoint().await.unwrap().is_some());
    let writes: Vec<StationWrite> = (0..200).map(|i| sev("Burst", i, None)).collect();
    s.apply_writes(&writes).await.unwrap();
    // Committed, and in the WAL only (far from wal_autocheckpoint).
    assert_eq!(events_in_the_database_file(dir.path()).await, 0);
    let (in_wal, copied) = s.checkpoint().await.unwrap().expect("SQLite");
    assert!(in_wal > 0 && copied == in_wal, "{in_wal} frames in the WAL, {copied} copied");
    assert_eq!(events_in_the_database_file(dir.path()).await, 200);
}

#[tokio::test]
async fn postgres_has_no_checkpoint_to_run() {
    assert_eq!(postgres().await.checkpoint().await.unwrap(), None);
}
