//! CSR -> signed certificate, software key backend, including persistence:
//! what `SignCertificate` and enrollment do per request. Each iteration takes a
//! fresh CSR (made beforehand, as a station would), applies the CSR policy,
//! issues under the tenant's station CA and commits the certificate record to
//! the database (SQLite WAL, synchronous=FULL). The CA is loaded once, as a
//! long-running server would keep it.
//!
//! Two figures: one request at a time (each in its own transaction, through
//! the store directly and through the group commit the server uses), and 64
//! requests in flight through the group commit, as when a fleet renews at once.
//!
//! `cargo bench -p csms --bench issuance`; the figure to read is "elem/s".

#![allow(clippy::expect_used)] // a benchmark: a failure is a panic

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use csms::authority::{self, STATION_CA};
use csms::clock::{Clock, SystemClock};
use csms::store::{CertificateRecord, NewStation, Registration, StationWrite, Store};

const CSRS: usize = 4096;

fn csr(cn: &str) -> String {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::CommonName, cn);
    params.serialize_request(&key).expect("csr").pem().expect("pem")
}

/// The CPU half of a request: CSR policy and signing; returns the record to persist.
fn issue_one(ca: &pki::CertificateAuthority, csr_pem: &str, organization: &str) -> CertificateRecord {
    let csr = pki::validate_csr(csr_pem, "CS-BENCH").expect("valid CSR");
    csr.check_organization(organization).expect("organisation");
    let now = SystemClock.now();
    let cert = ca.issue_station_certificate(&csr, organization, now, now + time::Duration::days(365)).expect("issued");
    CertificateRecord {
        tenant_id: "bench".into(),
        serial_hex: cert.serial_hex.clone(),
        station_id: "CS-BENCH".into(),
        fingerprint: cert.sha256_fingerprint_hex.clone(),
        not_before: 0,
        not_after: 0,
        cert_pem: cert.pem,
        issued_at: SystemClock.now_millis(),
        revoked_at: None,
        revocation_reason: None,
        issuer_id: Some(ca.id()),
    }
}

fn issuance(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = authority::KeyBackend::software(Arc::new(pki::MasterKey::generate().expect("master key")));
    let clock = SystemClock;
    let (store, ca, organization) = rt.block_on(async {
        let store = Store::open(&Store::sqlite_url(dir.path()), 4).await.expect("store");
        let tenant = authority::ensure_tenant(&store, &keys, &clock, "bench", "Bench Org", None).await.expect("tenant");
        let station = NewStation {
            id: "CS-BENCH".into(),
            tenant_id: "bench".into(),
            security_profile: 3,
            password_hash: None,
            registration: Registration::Accepted,
            description: None,
            tags: Vec::new(),
        };
        store.create_station(&station, clock.now_millis()).await.expect("station");
        let mut ca = authority::load_ca(&store, &keys, "bench", STATION_CA).await.expect("ca");
        let id = ca.id();
        ca.set_revocation_endpoints(authority::revocation_endpoints("http://csms.example", "bench", &id));
        (store, Arc::new(ca), tenant.organization)
    });
    let csrs: Vec<String> = (0..CSRS).map(|_| csr("CS-BENCH")).collect();
    let mut next = 0usize;

    let mut group = c.benchmark_group("issuance");
    group.throughput(Throughput::Elements(1));
    group.sample_size(30);
    group.bench_function("csr_to_persisted_certificate", |b| {
        b.iter(|| {
            let pem = &csrs[next % CSRS];
            next += 1;
            let record = issue_one(&ca, pem, &organization);
            rt.block_on(store.record_certificate(&record)).expect("persisted");
        });
    });

    // The two halves of the figure above, alone: the CPU work (CSR policy and
    // signing), and the commit of one record (one transaction, one fsync).
    group.bench_function("csr_to_certificate_without_persistence", |b| {
        b.iter(|| {
            let pem = &csrs[next % CSRS];
            next += 1;
            issue_one(&ca, pem, &organization)
        });
    });
    let records: Vec<CertificateRecord> = csrs.iter().take(256).map(|pem| issue_one(&ca, pem, &organization)).collect();
    let mut round = 0u64;
    group.bench_function("certificate_record_commit_alone", |b| {
        b.iter(|| {
            let mut record = records[(round % records.len() as u64) as usize].clone();
            // A serial of its own each time: the table's key is (tenant, serial).
            record.serial_hex = format!("{:016x}{round:016x}", round ^ 0x5a5a);
            round += 1;
            rt.block_on(store.record_certificate(&record)).expect("persisted");
        });
    });

    // One at a time as the server persists it: through the group-commit
    // writer, which is idle between requests here.
    let writes = rt.block_on(async { csms::group_commit::GroupCommit::start(store.clone(), 512) });
    group.bench_function("csr_to_persisted_certificate_through_group_commit", |b| {
        b.iter(|| {
            let pem = &csrs[next % CSRS];
            next += 1;
            let record = issue_one(&ca, pem, &organization);
            rt.block_on(writes.write(StationWrite::Certificate(Box::new(record)))).expect("persisted");
        });
    });

    // 64 in flight: CPU work on the runtime's workers, records through group commit.
    const IN_FLIGHT: usize = 64;
    let csrs = Arc::new(csrs);
    group.throughput(Throughput::Elements(IN_FLIGHT as u64));
    group.bench_function("csr_to_persisted_certificate_64_in_flight", |b| {
        b.iter_custom(|iters| {
            let start = std::time::Instant::now();
            for round in 0..iters {
                rt.block_on(async {
                    let mut tasks = Vec::with_capacity(IN_FLIGHT);
                    for i in 0..IN_FLIGHT {
                        let (ca, csrs, writes, organization) =
                            (ca.clone(), csrs.clone(), writes.clone(), organization.clone());
                        let pem_index = (round as usize * IN_FLIGHT + i) % CSRS;
                        tasks.push(tokio::spawn(async move {
                            let record = issue_one(&ca, &csrs[pem_index], &organization);
                            writes.write(StationWrite::Certificate(Box::new(record))).await.expect("persisted");
                        }));
                    }
                    for t in tasks {
                        t.await.expect("task");
                    }
                });
            }
            start.elapsed()
        });
    });
    group.finish();
}

criterion_group!(benches, issuance);
criterion_main!(benches);
