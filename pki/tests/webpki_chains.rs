//! Issued chains verified by rustls-webpki, the verifier the csms uses for mTLS.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure

use pki::{CertificateAuthority, MasterKey, generate_hierarchy, validate_csr};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_ECDSA_P256_SHA256};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use time::{Duration, OffsetDateTime, macros::datetime};

const NOW: OffsetDateTime = datetime!(2025-06-01 00:00 UTC);

fn at(t: OffsetDateTime) -> UnixTime {
    UnixTime::since_unix_epoch(std::time::Duration::from_secs(t.unix_timestamp() as u64))
}

fn csr(cn: &str) -> pki::ValidatedCsr {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    let pem = params.serialize_request(&key).unwrap().pem().unwrap();
    validate_csr(&pem, cn).unwrap()
}

fn verify(
    root: &[u8],
    intermediates: &[&[u8]],
    leaf: &[u8],
    time: OffsetDateTime,
    usage: webpki::KeyUsage,
) -> Result<(), webpki::Error> {
    let root = CertificateDer::from(root);
    let anchors = [webpki::anchor_from_trusted_cert(&root).unwrap()];
    let inter: Vec<CertificateDer<'_>> = intermediates.iter().map(|d| CertificateDer::from(*d)).collect();
    let leaf = CertificateDer::from(leaf);
    let ee = webpki::EndEntityCert::try_from(&leaf)?;
    ee.verify_for_usage(webpki::ALL_VERIFICATION_ALGS, &anchors, &inter, at(time), usage, None, None).map(|_| ())
}

#[test]
fn station_chain_verifies_for_client_auth_only() {
    let h = generate_hierarchy("Acme", "Acme Root", NOW).unwrap();
    let leaf = h.station_ca.issue_station_certificate(&csr("CS001"), "Acme", NOW, NOW + Duration::days(365)).unwrap();
    let sub = h.station_ca.cert_der();
    let root = h.root.cert_der();
    let t = NOW + Duration::days(1);
    verify(root, &[sub], &leaf.der, t, webpki::KeyUsage::client_auth()).unwrap();
    assert!(verify(root, &[sub], &leaf.der, t, webpki::KeyUsage::server_auth()).is_err());
    assert!(verify(root, &[], &leaf.der, t, webpki::KeyUsage::client_auth()).is_err());
    // Expired, and not yet valid.
    assert!(matches!(
        verify(root, &[sub], &leaf.der, NOW + Duration::days(400), webpki::KeyUsage::client_auth()),
        Err(webpki::Error::CertExpired { .. })
    ));
    assert!(verify(root, &[sub], &leaf.der, NOW - Duration::days(1), webpki::KeyUsage::client_auth()).is_err());
    // Another tenant's root does not vouch for it.
    let other = generate_hierarchy("Other", "Other Root", NOW).unwrap();
    assert!(verify(other.root.cert_der(), &[sub], &leaf.der, t, webpki::KeyUsage::client_auth()).is_err());
}

#[test]
fn server_certificate_verifies_for_names() {
    let h = generate_hierarchy("Anchorpoint", "Anchorpoint CSMS Root CA", NOW).unwrap();
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let (server, _key) = h.root.issue_server_certificate(&names, NOW, NOW + Duration::days(365)).unwrap();
    let t = NOW + Duration::days(1);
    verify(h.root.cert_der(), &[], &server.der, t, webpki::KeyUsage::server_auth()).unwrap();
    let der = CertificateDer::from(server.der.as_slice());
    let ee = webpki::EndEntityCert::try_from(&der).unwrap();
    ee.verify_is_valid_for_subject_name(&ServerName::try_from("localhost").unwrap()).unwrap();
    ee.verify_is_valid_for_subject_name(&ServerName::try_from("127.0.0.1").unwrap()).unwrap();
    assert!(ee.verify_is_valid_for_subject_name(&ServerName::try_from("example.com").unwrap()).is_err());
}

#[test]
fn restored_station_ca_chains_with_original_root() {
    let h = generate_hierarchy("Acme", "Acme Root", NOW).unwrap();
    let mk = MasterKey::generate().unwrap();
    let stored = h.station_ca.to_stored(&mk, "tenant:acme/ca:station").unwrap();
    let restored = CertificateAuthority::from_stored(&stored, &mk, "tenant:acme/ca:station").unwrap();
    let leaf = restored.issue_station_certificate(&csr("CS009"), "Acme", NOW, NOW + Duration::days(30)).unwrap();
    verify(
        h.root.cert_der(),
        &[restored.cert_der()],
        &leaf.der,
        NOW + Duration::days(1),
        webpki::KeyUsage::client_auth(),
    )
    .unwrap();
}
