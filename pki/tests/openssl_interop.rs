//! Interoperability with an implementation no one here wrote: the `openssl` command line
//! tool makes the CSRs and verifies the chains. These tests fail (never skip) without it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure

mod common;

use std::path::Path;

use common::{
    OPERATOR_ROOT_KEYS, ORG, P256, TempDir, hierarchy, now, openssl, openssl_csr, openssl_raw, operator_root, python, s,
};

use pki::{
    CertificateAuthority, Hierarchy, IssuedCertificate, MasterKey, generate_hierarchy, inspect_certificate,
    pem_to_der_chain, validate_csr,
};
use time::Duration;

/// Write root, sub-CA and leaf, run `openssl verify`; returns (success, combined output).
fn verify(
    dir: &TempDir,
    root: &CertificateAuthority,
    sub: Option<&CertificateAuthority>,
    leaf: &IssuedCertificate,
    extra: &[&str],
) -> (bool, String) {
    let root_pem = dir.write("root.pem", root.cert_pem());
    let leaf_pem = dir.write("leaf.pem", &leaf.pem);
    let mut args = vec!["verify".to_owned(), "-CAfile".into(), s(&root_pem).into()];
    if let Some(sub) = sub {
        let sub_pem = dir.write("sub.pem", sub.cert_pem());
        args.extend(["-untrusted".into(), s(&sub_pem).to_owned()]);
    }
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    args.push(s(&leaf_pem).into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = openssl_raw(&args);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success() && text.contains(": OK"), text)
}

fn issue_and_check_station(newkey: &[&str], expected_key: &str, name: &str) -> (Hierarchy, IssuedCertificate) {
    let dir = TempDir::new(name);
    let h = hierarchy();
    let (csr_pem, key_path) = openssl_csr(&dir, name, newkey, "CS001");
    let csr = validate_csr(&csr_pem, "CS001").unwrap();
    assert_eq!(csr.key_description(), expected_key);
    let leaf = h
        .station_ca
        .issue_station_certificate(&csr, ORG, now() - Duration::minutes(1), now() + Duration::days(365))
        .unwrap();

    let (ok, out) = verify(&dir, &h.root, Some(&h.station_ca), &leaf, &[]);
    assert!(ok, "openssl verify: {out}");
    let (ok, out) = verify(&dir, &h.root, Some(&h.station_ca), &leaf, &["-purpose", "sslclient"]);
    assert!(ok, "openssl verify -purpose sslclient: {out}");
    // Without the sub-CA there is no path to the root.
    let (ok, _) = verify(&dir, &h.root, None, &leaf, &[]);
    assert!(!ok, "leaf verified without its sub-CA");

    let leaf_path = dir.path("leaf.pem");
    let text = openssl(&["x509", "-in", s(&leaf_path), "-noout", "-subject", "-ext", "extendedKeyUsage"]);
    assert!(text.contains("CN = CS001"), "{text}");
    assert!(text.contains(&format!("O = {ORG}")), "{text}");
    assert!(!text.contains("Someone Else"), "{text}");
    assert!(text.contains("TLS Web Client Authentication"), "{text}");
    assert!(!text.contains("Server Authentication"), "{text}");

    // Nothing the CSR asked for beyond CN and key reached the certificate.
    let full = openssl(&["x509", "-in", s(&leaf_path), "-noout", "-text"]);
    assert!(full.contains("CA:FALSE"), "{full}");
    assert!(!full.contains("evil.example"), "{full}");
    assert!(full.contains("X509v3 Subject Key Identifier"), "{full}");
    assert!(full.contains("X509v3 Authority Key Identifier"), "{full}");

    // The certificate carries the requester's key.
    let cert_pub = openssl(&["x509", "-in", s(&leaf_path), "-noout", "-pubkey"]);
    let key_pub = openssl(&["pkey", "-in", s(&key_path), "-pubout"]);
    assert_eq!(cert_pub, key_pub);

    // Serial and fingerprint agree with openssl's view and with inspect_certificate.
    let serial = openssl(&["x509", "-in", s(&leaf_path), "-noout", "-serial"]);
    assert_eq!(serial.trim(), format!("serial={}", leaf.serial_hex.to_uppercase()));
    let fp = openssl(&["x509", "-in", s(&leaf_path), "-noout", "-fingerprint", "-sha256"]);
    assert_eq!(fp.trim().rsplit('=').next().unwrap().replace(':', "").to_lowercase(), leaf.sha256_fingerprint_hex);
    let info = inspect_certificate(&leaf.der).unwrap();
    assert_eq!(info.serial_hex, leaf.serial_hex);
    assert_eq!(info.subject_cn.as_deref(), Some("CS001"));
    assert_eq!(info.subject_o.as_deref(), Some(ORG));
    (h, leaf)
}

#[test]
fn station_certificate_from_openssl_p256_csr_verifies() {
    issue_and_check_station(P256, "ECDSA P-256", "p256");
}

#[test]
fn station_certificate_from_openssl_rsa2048_csr_verifies() {
    issue_and_check_station(&["-newkey", "rsa:2048"], "RSA 2048", "rsa2048");
}

#[test]
fn station_certificate_from_openssl_p384_csr_verifies() {
    issue_and_check_station(&["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp384r1"], "ECDSA P-384", "p384");
}

/// ISO 15118-20 keys: secp521r1 signed with SHA-512. openssl verifies the chain (in
/// `issue_and_check_station`), and Python `cryptography`'s strict DER parser reads the
/// certificate back: every extension, the P-521 key, and the CA's signature on it.
#[test]
fn station_certificate_from_openssl_p521_csr_verifies() {
    let (h, leaf) = issue_and_check_station(
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp521r1", "-sha512"],
        "ECDSA P-521",
        "p521",
    );
    let dir = TempDir::new("p521-pyca");
    let leaf_pem = dir.write("leaf.pem", &leaf.pem);
    let ca_pem = dir.write("ca.pem", h.station_ca.cert_pem());
    let script = r#"
import sys
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
cert = x509.load_pem_x509_certificate(open(sys.argv[1], "rb").read())
ca = x509.load_pem_x509_certificate(open(sys.argv[2], "rb").read())
cert.verify_directly_issued_by(ca)
key = cert.public_key()
assert isinstance(key, ec.EllipticCurvePublicKey), key
print("curve", key.curve.name)
print("cn", cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value)
for e in cert.extensions:
    print("ext", e.oid.dotted_string, e.critical)
print("eku", [u.dotted_string for u in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value])
"#;
    let out = python(script, &[s(&leaf_pem), s(&ca_pem)]);
    assert!(out.contains("curve secp521r1"), "{out}");
    assert!(out.contains("cn CS001"), "{out}");
    // basicConstraints (critical, CA:FALSE), keyUsage, extKeyUsage, SKI and AKI.
    for ext in ["ext 2.5.29.19 True", "ext 2.5.29.15 True", "ext 2.5.29.37", "ext 2.5.29.14", "ext 2.5.29.35"] {
        assert!(out.contains(ext), "{ext} missing: {out}");
    }
    assert!(out.contains("eku ['1.3.6.1.5.5.7.3.2']"), "{out}");
}

#[test]
fn server_certificate_verifies_for_name_and_ip() {
    let dir = TempDir::new("server");
    let h = hierarchy();
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let (leaf, key) =
        h.root.issue_server_certificate(&names, now() - Duration::minutes(1), now() + Duration::days(90)).unwrap();
    for extra in [
        &["-purpose", "sslserver"][..],
        &["-purpose", "sslserver", "-verify_hostname", "localhost"],
        &["-purpose", "sslserver", "-verify_ip", "127.0.0.1"],
    ] {
        let (ok, out) = verify(&dir, &h.root, None, &leaf, extra);
        assert!(ok, "openssl verify {extra:?}: {out}");
    }
    let (ok, _) = verify(&dir, &h.root, None, &leaf, &["-purpose", "sslserver", "-verify_hostname", "example.com"]);
    assert!(!ok, "accepted for a name it does not carry");
    let (ok, _) = verify(&dir, &h.root, None, &leaf, &["-purpose", "sslclient"]);
    assert!(!ok, "server certificate accepted for client auth");

    let leaf_path = dir.path("leaf.pem");
    let subject = openssl(&["x509", "-in", s(&leaf_path), "-noout", "-subject"]);
    assert!(subject.contains("CN = localhost"), "{subject}");

    // The returned key is the certificate's key and openssl can read the PKCS#8.
    let key_pem = {
        let der_path = dir.path("server.key.der");
        std::fs::write(&der_path, key.pkcs8_der()).unwrap();
        openssl(&["pkey", "-inform", "DER", "-in", s(&der_path), "-pubout"])
    };
    let cert_pub = openssl(&["x509", "-in", s(&leaf_path), "-noout", "-pubkey"]);
    assert_eq!(cert_pub, key_pem);
}

#[test]
fn expired_certificate_is_rejected_by_openssl() {
    let dir = TempDir::new("expired");
    let h = generate_hierarchy(ORG, "Acme CSMS Root", now() - Duration::days(60)).unwrap();
    let (csr_pem, _) = openssl_csr(&dir, "expired", P256, "CS002");
    let csr = validate_csr(&csr_pem, "CS002").unwrap();
    let leaf = h
        .station_ca
        .issue_station_certificate(&csr, ORG, now() - Duration::days(30), now() - Duration::days(1))
        .unwrap();
    assert!(leaf.not_after < now());
    let (ok, out) = verify(&dir, &h.root, Some(&h.station_ca), &leaf, &[]);
    assert!(!ok, "expired certificate verified: {out}");
    assert!(out.contains("expired"), "{out}");
}

#[test]
fn restored_ca_issues_certificates_that_verify() {
    let dir = TempDir::new("restored");
    let h = hierarchy();
    let mk = MasterKey::generate().unwrap();
    let label = "tenant:default/ca:station";
    let stored = h.station_ca.to_stored(&mk, label).unwrap();
    // Through the key file and back, as a restart would.
    let mk = MasterKey::from_bytes(&mk.to_bytes()).unwrap();
    let restored = CertificateAuthority::from_stored(&stored, &mk, label).unwrap();
    assert_eq!(pem_to_der_chain(restored.cert_pem()).unwrap(), vec![h.station_ca.cert_der().to_vec()]);

    let (csr_pem, _) = openssl_csr(&dir, "restored", P256, "CS003");
    let csr = validate_csr(&csr_pem, "CS003").unwrap();
    let leaf = restored
        .issue_station_certificate(&csr, ORG, now() - Duration::minutes(1), now() + Duration::days(30))
        .unwrap();
    let (ok, out) = verify(&dir, &h.root, Some(&h.station_ca), &leaf, &[]);
    assert!(ok, "openssl verify: {out}");

    // The root restores too and its certificates still chain.
    let root_stored = h.root.to_stored(&mk, "tenant:default/ca:root").unwrap();
    let root = CertificateAuthority::from_stored(&root_stored, &mk, "tenant:default/ca:root").unwrap();
    let (server, _) = root
        .issue_server_certificate(&["csms.example".to_owned()], now() - Duration::minutes(1), now() + Duration::days(1))
        .unwrap();
    let (ok, out) = verify(&dir, &h.root, None, &server, &["-purpose", "sslserver"]);
    assert!(ok, "openssl verify: {out}");
}

#[test]
fn pem_chain_decoding() {
    let h = hierarchy();
    let chain = format!("junk\n{}{}", h.station_ca.cert_pem(), h.root.cert_pem());
    let ders = pem_to_der_chain(&chain).unwrap();
    assert_eq!(ders.len(), 2);
    assert_eq!(ders[0], h.station_ca.cert_der());
    assert!(pem_to_der_chain("no pem here").is_err());
    // openssl reads what we write.
    let dir = TempDir::new("pem");
    let p = dir.write("root.pem", h.root.cert_pem());
    let text = openssl(&["x509", "-in", s(&p), "-noout", "-subject"]);
    assert!(text.contains("CN = Acme CSMS Root"), "{text}");
}

/// Issues two station certificates with revocation endpoints, revokes one, and
/// lets openssl judge the CRL and the OCSP responses.
#[test]
fn crl_and_ocsp_agree_with_openssl() {
    use pki::{CertStatus, OcspRequest, RevocationEndpoints, RevocationReason, Revoked};
    let dir = TempDir::new("revocation");
    let mut h = hierarchy();
    h.station_ca.set_revocation_endpoints(RevocationEndpoints {
        crl_url: Some("http://csms.example/pki/default/station-ca.crl".into()),
        ocsp_url: Some("http://csms.example/ocsp/default".into()),
    });
    let issue = |name: &str| {
        let (csr_pem, _) = openssl_csr(&dir, name, P256, name);
        let csr = validate_csr(&csr_pem, name).unwrap();
        h.station_ca
            .issue_station_certificate(&csr, ORG, now() - Duration::minutes(1), now() + Duration::days(30))
            .unwrap()
    };
    let good = issue("CS-GOOD");
    let bad = issue("CS-BAD");
    let root = dir.write("root.pem", h.root.cert_pem());
    let sub = dir.write("sub.pem", h.station_ca.cert_pem());
    let good_pem = dir.write("good.pem", &good.pem);
    let bad_pem = dir.write("bad.pem", &bad.pem);

    // The extensions point at the endpoints.
    let text = openssl(&["x509", "-in", s(&good_pem), "-noout", "-text"]);
    assert!(text.contains("URI:http://csms.example/pki/default/station-ca.crl"), "{text}");
    assert!(text.contains("OCSP - URI:http://csms.example/ocsp/default"), "{text}");

    // CRL: parsed, signature verified against the sub-CA, lists the revoked serial with its reason.
    let revoked = Revoked {
        serial_hex: bad.serial_hex.clone(),
        revoked_at: now() - Duration::minutes(1),
        reason: RevocationReason::KeyCompromise,
    };
    let crl = h.station_ca.crl(std::slice::from_ref(&revoked), 7, now(), now() + Duration::hours(1)).unwrap();
    let crl_path = dir.path("ca.crl");
    std::fs::write(&crl_path, &crl).unwrap();
    let text = openssl(&["crl", "-inform", "DER", "-in", s(&crl_path), "-noout", "-text", "-CAfile", s(&sub)]);
    assert!(text.contains(&format!("Serial Number: {}", bad.serial_hex.to_uppercase())), "{text}");
    assert!(!text.contains(&good.serial_hex.to_uppercase()), "{text}");
    assert!(text.contains("Key Compromise"), "{text}");
    assert!(text.contains("Next Update"), "{text}");
    assert!(text.contains("X509v3 CRL Number") && text.contains('7'), "{text}");
    let verified = openssl_raw(&["crl", "-inform", "DER", "-in", s(&crl_path), "-noout", "-CAfile", s(&sub)]);
    assert!(String::from_utf8_lossy(&verified.stderr).contains("verify OK"), "{verified:?}");
    // openssl verify -crl_check refuses the revoked leaf and accepts the other.
    let crl_pem = dir.path("ca-crl.pem");
    openssl(&["crl", "-inform", "DER", "-in", s(&crl_path), "-out", s(&crl_pem)]);
    for (leaf, expect_ok) in [(&good_pem, true), (&bad_pem, false)] {
        let out = openssl_raw(&[
            "verify",
            "-crl_check",
            "-CAfile",
            s(&root),
            "-untrusted",
            s(&sub),
            "-CRLfile",
            s(&crl_pem),
            s(leaf),
        ]);
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.success(), expect_ok, "{text}");
        if !expect_ok {
            assert!(text.contains("certificate revoked"), "{text}");
        }
    }

    // OCSP: openssl makes the request (with a nonce), we answer, openssl verifies.
    for (leaf, name) in [(&good_pem, "good"), (&bad_pem, "revoked")] {
        let req_path = dir.path(&format!("{name}.req"));
        openssl(&["ocsp", "-issuer", s(&sub), "-cert", s(leaf), "-reqout", s(&req_path)]);
        let req = OcspRequest::parse(&std::fs::read(&req_path).unwrap()).unwrap();
        assert_eq!(req.certs.len(), 1);
        assert!(h.station_ca.issued(&req.certs[0]));
        assert!(!h.root.issued(&req.certs[0]), "the root did not issue station certificates");
        let status = if req.certs[0].serial_hex == bad.serial_hex {
            CertStatus::Revoked { at: revoked.revoked_at, reason: revoked.reason }
        } else {
            CertStatus::Good
        };
        let resp = h.station_ca.ocsp_response(&req, &[status], now(), now() + Duration::hours(1)).unwrap();
        let resp_path = dir.path(&format!("{name}.resp"));
        std::fs::write(&resp_path, &resp).unwrap();
        // Signature, signer authority and the echoed nonce, against the request as sent.
        let text = ocsp_verified(&req_path, &resp_path, &sub, &root);
        assert!(!text.contains("Nonce") && !text.contains("WARNING"), "{text}");
        // The status openssl reads for the certificate.
        let text = ocsp_status(&resp_path, &sub, &root, leaf);
        assert!(text.contains(&format!("{}: {name}", s(leaf))), "{text}");
        if name == "revoked" {
            assert!(text.contains("Reason: keyCompromise"), "{text}");
        }
    }
}

/// Operators' own roots made by openssl with RSA-2048, P-384, P-521 and Ed25519 keys:
/// imported, they issue station certificates, a new sub-CA, CRLs and OCSP answers
/// that openssl verifies (the OCSP signature algorithm follows the key).
#[test]
fn imported_operator_roots_of_every_key_type_sign_what_openssl_accepts() {
    use pki::{CertStatus, OcspRequest};
    for (name, newkey) in OPERATOR_ROOT_KEYS {
        let dir = TempDir::new(&format!("import-{name}"));
        let (root, ca) = operator_root(&dir, name, newkey);

        // A station certificate straight from the operator's CA, checked by openssl.
        let (csr_pem, _) = openssl_csr(&dir, "leaf", P256, "CS-1");
        let csr = validate_csr(&csr_pem, "CS-1").unwrap();
        let leaf =
            ca.issue_station_certificate(&csr, ORG, now() - Duration::minutes(1), now() + Duration::days(30)).unwrap();
        let leaf_path = dir.write("leaf.pem", &leaf.pem);
        let ok = openssl(&["verify", "-CAfile", s(&root), s(&leaf_path)]);
        assert!(ok.contains(": OK"), "{name}: {ok}");
        // And a P-256 sub-CA under it, as Anchorpoint makes when a root is imported.
        let sub = ca.issue_station_sub_ca(ORG, now(), 10, pki::CaKey::software().unwrap()).unwrap();
        let sub_path = dir.write("sub.pem", sub.cert_pem());
        let ok = openssl(&["verify", "-CAfile", s(&root), s(&sub_path)]);
        assert!(ok.contains(": OK"), "{name}: {ok}");

        // CRL signed with the operator's key.
        let crl = ca.crl(&[], 1, now(), now() + Duration::hours(1)).unwrap();
        let crl_path = dir.path("ca.crl");
        std::fs::write(&crl_path, &crl).unwrap();
        let out = openssl_raw(&["crl", "-inform", "DER", "-in", s(&crl_path), "-noout", "-CAfile", s(&root)]);
        assert!(String::from_utf8_lossy(&out.stderr).contains("verify OK"), "{name}: {out:?}");

        // OCSP answer signed with the operator's key, its algorithm named correctly.
        let req_path = dir.path("leaf.req");
        openssl(&["ocsp", "-issuer", s(&root), "-cert", s(&leaf_path), "-reqout", s(&req_path)]);
        let req = OcspRequest::parse(&std::fs::read(&req_path).unwrap()).unwrap();
        let resp = ca.ocsp_response(&req, &[CertStatus::Good], now(), now() + Duration::hours(1)).unwrap();
        let resp_path = dir.path("leaf.resp");
        std::fs::write(&resp_path, &resp).unwrap();
        ocsp_verified(&req_path, &resp_path, &root, &root);
        let text = ocsp_status(&resp_path, &root, &root, &leaf_path);
        assert!(text.contains(": good"), "{name}: {text}");
    }
}

/// openssl checks an OCSP response against the request it answers (signature,
/// signer authority, nonce); returns what it printed.
fn ocsp_verified(req: &Path, resp: &Path, issuer: &Path, root: &Path) -> String {
    let out = openssl_raw(&["ocsp", "-reqin", s(req), "-respin", s(resp), "-issuer", s(issuer), "-CAfile", s(root)]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("Response verify OK"), "{text}");
    text
}

/// The status openssl reads in an OCSP response for `leaf`; returns what it printed.
fn ocsp_status(resp: &Path, issuer: &Path, root: &Path, leaf: &Path) -> String {
    let out = openssl_raw(&[
        "ocsp",
        "-respin",
        s(resp),
        "-issuer",
        s(issuer),
        "-CAfile",
        s(root),
        "-cert",
        s(leaf),
        "-no_nonce",
    ]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    text
}
