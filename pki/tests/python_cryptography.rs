//! What the CA writes, read back by Python `cryptography` (pyca), whose parsers
//! are strict and which no one here wrote. The interpreter is
//! `$ANCHORPOINT_PYTHON` (else the workspace `.venv`, else `python3`); without it or
//! without the package these tests fail, they never skip.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure

mod common;

use common::{OPERATOR_ROOT_KEYS, ORG, P256, P521, TempDir, hierarchy, now, openssl_csr, operator_root, python, s};
use pki::{
    CertStatus, CertificateAuthority, IssuedCertificate, MASTER_KEY_LEN, MasterKey, OcspRequest, RevocationReason,
    Revoked, validate_csr,
};
use time::Duration;

/// Sealed keys are plain AES-256-GCM (`version || nonce || ciphertext || tag`, the
/// version byte and label as associated data), so blobs sealed before the move from
/// ring to aws-lc-rs open unchanged: an independent AES-GCM opens ours, and we open
/// one it sealed.
#[test]
fn sealed_keys_are_standard_aes_256_gcm() {
    let dir = TempDir::new("sealing");
    let key = MasterKey::generate().unwrap();
    let label = "tenant:default/ca:root";
    let ours = dir.write("ours.bin", key.seal(b"pkcs8 from us", label).unwrap());
    let key_file = dir.write("master.key", key.to_bytes());
    let theirs = dir.path("theirs.bin");
    let script = r#"
import sys
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
key = open(sys.argv[1], "rb").read()
assert len(key) == int(sys.argv[5])
aes = AESGCM(key)
label = sys.argv[4].encode()
blob = open(sys.argv[2], "rb").read()
assert blob[0] == 1, blob[0]
print(aes.decrypt(blob[1:13], blob[13:], b"\x01" + label).decode())
nonce = bytes(range(12))
open(sys.argv[3], "wb").write(b"\x01" + nonce + aes.encrypt(nonce, b"pkcs8 from pyca", b"\x01" + label))
"#;
    let len = MASTER_KEY_LEN.to_string();
    let out = python(script, &[s(&key_file), s(&ours), s(&theirs), label, &len]);
    assert_eq!(out.trim(), "pkcs8 from us");
    let opened = key.open(&std::fs::read(&theirs).unwrap(), label).unwrap();
    assert_eq!(&opened[..], b"pkcs8 from pyca");
    assert!(key.open(&std::fs::read(&theirs).unwrap(), "tenant:other/ca:root").is_err());
}

/// A CA of each key type a CA may have: the generated station CA (P-256) and
/// operators' roots made by openssl and imported.
fn cas(dir: &TempDir) -> Vec<(&'static str, CertificateAuthority)> {
    let mut out = vec![("p256", hierarchy().station_ca)];
    out.extend(OPERATOR_ROOT_KEYS.iter().map(|(name, newkey)| (*name, operator_root(dir, name, newkey).1)));
    out
}

fn station(dir: &TempDir, ca: &CertificateAuthority, name: &str) -> IssuedCertificate {
    let csr = validate_csr(&openssl_csr(dir, name, P256, name).0, name).unwrap();
    ca.issue_station_certificate(&csr, ORG, now() - Duration::minutes(1), now() + Duration::days(30)).unwrap()
}

/// Python builds the OCSP requests (one certificate each, with or without a nonce),
/// we answer good, revoked (keyCompromise) and unknown, and Python reads every
/// answer back: status, reason, times, the nonce echoed, the CertID, the responder
/// key hash, and the signature checked with the CA's public key, for every CA key
/// type. The CRL of each CA is read and its signature checked the same way.
#[test]
fn ocsp_responses_and_crls_are_read_by_python_cryptography() {
    let dir = TempDir::new("pyca-ocsp");
    for (name, ca) in cas(&dir) {
        let ca_pem = dir.write(&format!("{name}-ca.pem"), ca.cert_pem());
        let good = station(&dir, &ca, &format!("{name}-good"));
        let bad = station(&dir, &ca, &format!("{name}-bad"));
        let unknown = station(&dir, &ca, &format!("{name}-unknown"));
        let revoked_at = now() - Duration::minutes(3);
        let (this_update, next_update) = (now(), now() + Duration::hours(1));
        let mut cases = Vec::new();
        for (leaf, status, nonce) in [
            (&good, CertStatus::Good, true),
            (&good, CertStatus::Good, false),
            (&bad, CertStatus::Revoked { at: revoked_at, reason: RevocationReason::KeyCompromise }, true),
            (&bad, CertStatus::Revoked { at: revoked_at, reason: RevocationReason::Superseded }, false),
            (&unknown, CertStatus::Unknown, true),
        ] {
            let case = format!("{name}-{}-{}", cases.len(), if nonce { "nonce" } else { "plain" });
            let leaf_pem = dir.write(&format!("{case}-leaf.pem"), &leaf.pem);
            let req = dir.path(&format!("{case}.req"));
            python(MAKE_REQUEST, &[s(&leaf_pem), s(&ca_pem), s(&req), if nonce { "nonce" } else { "" }]);
            let request = OcspRequest::parse(&std::fs::read(&req).unwrap()).unwrap();
            assert_eq!(request.certs.len(), 1);
            assert_eq!(request.certs[0].serial_hex, leaf.serial_hex);
            assert!(ca.issued(&request.certs[0]), "{case}");
            let resp = ca.ocsp_response(&request, std::slice::from_ref(&status), this_update, next_update).unwrap();
            let resp = dir.write(&format!("{case}.resp"), resp);
            let expect = match status {
                CertStatus::Good => "GOOD None".to_owned(),
                CertStatus::Unknown => "UNKNOWN None".to_owned(),
                CertStatus::Revoked { reason: RevocationReason::KeyCompromise, .. } => {
                    format!("REVOKED key_compromise {}", revoked_at.unix_timestamp())
                }
                CertStatus::Revoked { .. } => format!("REVOKED superseded {}", revoked_at.unix_timestamp()),
            };
            cases.extend([s(&leaf_pem).to_owned(), s(&req).to_owned(), s(&resp).to_owned(), expect]);
        }
        let mut args = vec![s(&ca_pem).to_owned(), this_update.unix_timestamp().to_string()];
        args.push(next_update.unix_timestamp().to_string());
        args.extend(cases);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = python(CHECK_RESPONSES, &args);
        assert_eq!(out.matches("ok ").count(), 5, "{name}: {out}");

        // The CRL: one revoked entry with its reason, numbered, signed by the CA.
        let revoked =
            Revoked { serial_hex: bad.serial_hex.clone(), revoked_at, reason: RevocationReason::KeyCompromise };
        let crl = dir.write(&format!("{name}.crl"), ca.crl(&[revoked], 42, this_update, next_update).unwrap());
        let out = python(CHECK_CRL, &[s(&ca_pem), s(&crl)]);
        let serial = u128::from_str_radix(&bad.serial_hex, 16).unwrap();
        assert!(out.contains("signature valid"), "{name}: {out}");
        assert!(
            out.contains(&format!("revoked {serial} key_compromise {}", revoked_at.unix_timestamp())),
            "{name}: {out}"
        );
        assert!(out.contains("number 42"), "{name}: {out}");
        assert!(
            out.contains(&format!("updates {} {}", this_update.unix_timestamp(), next_update.unix_timestamp())),
            "{name}: {out}"
        );
    }
}

/// argv: leaf.pem, issuer.pem, out.req, "nonce" or "".
const MAKE_REQUEST: &str = r#"
import sys
from cryptography import x509
from cryptography.x509 import ocsp
from cryptography.hazmat.primitives import hashes, serialization
leaf = x509.load_pem_x509_certificate(open(sys.argv[1], "rb").read())
issuer = x509.load_pem_x509_certificate(open(sys.argv[2], "rb").read())
builder = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, hashes.SHA1())
if sys.argv[4] == "nonce":
    builder = builder.add_extension(x509.OCSPNonce(b"nonce-" + leaf.serial_number.to_bytes(20, "big")[-10:]), critical=False)
open(sys.argv[3], "wb").write(builder.build().public_bytes(serialization.Encoding.DER))
"#;

/// argv: ca.pem, this_update, next_update, then per case: leaf.pem, request, response, expected.
const CHECK_RESPONSES: &str = r#"
import sys, hashlib
from cryptography import x509
from cryptography.x509 import ocsp
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

ca = x509.load_pem_x509_certificate(open(sys.argv[1], "rb").read())
this_update, next_update = int(sys.argv[2]), int(sys.argv[3])
key = ca.public_key()

def verify(resp):
    sig, data = resp.signature, resp.tbs_response_bytes
    if isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(sig, data, ec.ECDSA(resp.signature_hash_algorithm))
    elif isinstance(key, ed25519.Ed25519PublicKey):
        assert resp.signature_hash_algorithm is None
        key.verify(sig, data)
    elif isinstance(key, rsa.RSAPublicKey):
        key.verify(sig, data, padding.PKCS1v15(), resp.signature_hash_algorithm)
    else:
        raise AssertionError(f"unexpected CA key {key!r}")

args = sys.argv[4:]
for i in range(0, len(args), 4):
    leaf = x509.load_pem_x509_certificate(open(args[i], "rb").read())
    req = ocsp.load_der_ocsp_request(open(args[i + 1], "rb").read())
    resp = ocsp.load_der_ocsp_response(open(args[i + 2], "rb").read())
    expected = args[i + 3]
    assert resp.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL, resp.response_status
    verify(resp)
    assert [c.public_bytes(serialization.Encoding.DER) for c in resp.certificates] == [ca.public_bytes(serialization.Encoding.DER)]
    # ResponderID byKey: SHA-1 of the CA's subjectPublicKey, as in the request's CertID.
    assert resp.responder_name is None
    assert resp.responder_key_hash == req.issuer_key_hash, (resp.responder_key_hash.hex(), req.issuer_key_hash.hex())
    assert resp.serial_number == leaf.serial_number == req.serial_number
    assert resp.issuer_key_hash == req.issuer_key_hash and resp.issuer_name_hash == req.issuer_name_hash
    assert isinstance(resp.hash_algorithm, hashes.SHA1)
    assert int(resp.produced_at_utc.timestamp()) == this_update
    assert int(resp.this_update_utc.timestamp()) == this_update
    assert int(resp.next_update_utc.timestamp()) == next_update
    status = resp.certificate_status.name
    if status == "REVOKED":
        got = f"REVOKED {resp.revocation_reason.name} {int(resp.revocation_time_utc.timestamp())}"
    else:
        assert resp.revocation_time_utc is None and resp.revocation_reason is None
        got = f"{status} None"
    assert got == expected, (got, expected)
    try:
        req_nonce = req.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    except x509.ExtensionNotFound:
        req_nonce = None
    try:
        resp_nonce = resp.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    except x509.ExtensionNotFound:
        resp_nonce = None
    assert resp_nonce == req_nonce, (resp_nonce, req_nonce)
    assert len(list(resp.extensions)) == (1 if req_nonce else 0)
    # Every extension, of the response and of its single answer, parsed and known.
    for ext in list(resp.extensions) + list(resp.single_extensions):
        assert not isinstance(ext.value, x509.UnrecognizedExtension), ext.oid
    print("ok", expected, "nonce" if req_nonce else "no nonce")
"#;

/// argv: ca.pem, crl (DER).
const CHECK_CRL: &str = r#"
import sys
from cryptography import x509
ca = x509.load_pem_x509_certificate(open(sys.argv[1], "rb").read())
crl = x509.load_der_x509_crl(open(sys.argv[2], "rb").read())
assert crl.issuer == ca.subject
print("signature valid" if crl.is_signature_valid(ca.public_key()) else "signature INVALID")
# Every extension of the CRL and of each entry parsed, and none unrecognised.
for ext in list(crl.extensions) + [e for r in crl for e in r.extensions]:
    assert not isinstance(ext.value, x509.UnrecognizedExtension), ext.oid
for r in crl:
    reason = r.extensions.get_extension_for_class(x509.CRLReason).value.reason.name
    print("revoked", r.serial_number, reason, int(r.revocation_date_utc.timestamp()))
print("number", crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)
aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
assert aki == ski, (aki.hex(), ski.hex())
print("updates", int(crl.last_update_utc.timestamp()), int(crl.next_update_utc.timestamp()))
"#;

/// Station and server certificates are strict DER: Python `cryptography` refuses an
/// encoded DEFAULT (e.g. basicConstraints `cA FALSE` written out), and reads ours with
/// basicConstraints critical, cA false, and a subjectKeyIdentifier (the first 160 bits
/// of SHA-256 over the SubjectPublicKeyInfo).
#[test]
fn end_entity_certificates_are_strict_der() {
    let dir = TempDir::new("pyca-end-entity");
    let h = hierarchy();
    let (server, _) = h
        .root
        .issue_server_certificate(&["csms.example".into()], now() - Duration::minutes(1), now() + Duration::days(30))
        .unwrap();
    let station = station(&dir, &h.station_ca, "CS-STRICT");
    let script = r#"
import sys, hashlib
from cryptography import x509
from cryptography.hazmat.primitives import serialization
for path in sys.argv[1:]:
    cert = x509.load_pem_x509_certificate(open(path, "rb").read())
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert ski.digest == hashlib.sha256(spki).digest()[:20], ski.digest.hex()
    print("bc", bc.critical, bc.value.ca, bc.value.path_length, "ski", len(ski.digest))
"#;
    let out = python(script, &[s(&dir.write("server.pem", &server.pem)), s(&dir.write("station.pem", &station.pem))]);
    assert_eq!(out, "bc True False None ski 20\nbc True False None ski 20\n");
}

/// Every kind of certificate the PKI emits, read by Python `cryptography` with
/// every extension parsed (`cert.extensions` decodes them all and refuses
/// non-DER, such as an encoded DEFAULT), none left unrecognised, version 3, a
/// positive serial of at most 20 octets, and the signature checked against the
/// issuer: the generated station root and station CA, the CSMS server
/// certificate, station certificates (P-256 and P-521 keys, with and without
/// revocation endpoints), and the sub-CAs and station certificates made under
/// operators' imported roots of every key type.
#[test]
fn every_certificate_the_pki_emits_is_strict_der_with_every_extension_read() {
    use pki::{CaKey, RevocationEndpoints};
    let dir = TempDir::new("pyca-every");
    let h = hierarchy();
    let mut station_ca = hierarchy().station_ca;
    let mut certs: Vec<(String, String, String)> = Vec::new(); // name, pem, issuer pem
    let mut add = |name: &str, pem: &str, issuer: &str| certs.push((name.into(), pem.into(), issuer.into()));
    add("root", h.root.cert_pem(), h.root.cert_pem());
    add("station-ca", h.station_ca.cert_pem(), h.root.cert_pem());
    let (server, _) = h
        .root
        .issue_server_certificate(&["csms.example".into(), "127.0.0.1".into()], now(), now() + Duration::days(30))
        .unwrap();
    add("server", &server.pem, h.root.cert_pem());
    add("station", &station(&dir, &h.station_ca, "CS-PLAIN").pem, h.station_ca.cert_pem());
    station_ca.set_revocation_endpoints(RevocationEndpoints {
        crl_url: Some("http://csms.example:8080/pki/acme/ca/0011223344556677.crl".into()),
        ocsp_url: Some("http://csms.example:8080/ocsp/acme".into()),
    });
    let p521 = validate_csr(&openssl_csr(&dir, "CS-P521", P521, "CS-P521").0, "CS-P521").unwrap();
    let p521 = station_ca.issue_station_certificate(&p521, ORG, now(), now() + Duration::days(30)).unwrap();
    add("station-p521-endpoints", &p521.pem, station_ca.cert_pem());
    for (name, newkey) in OPERATOR_ROOT_KEYS {
        let (_, root) = operator_root(&dir, name, newkey);
        add(&format!("{name}-operator-root"), root.cert_pem(), root.cert_pem());
        let sub = root.issue_station_sub_ca(ORG, now(), 2, CaKey::software().unwrap()).unwrap();
        add(&format!("{name}-sub-ca"), sub.cert_pem(), root.cert_pem());
        add(&format!("{name}-station"), &station(&dir, &sub, &format!("{name}-CS")).pem, sub.cert_pem());
        add(&format!("{name}-root-station"), &station(&dir, &root, &format!("{name}-CS2")).pem, root.cert_pem());
    }
    let mut args = Vec::new();
    for (name, pem, issuer) in &certs {
        args.push(name.clone());
        args.push(s(&dir.write(&format!("{name}.pem"), pem)).to_owned());
        args.push(s(&dir.write(&format!("{name}-issuer.pem"), issuer)).to_owned());
    }
    let script = r#"
import sys
from cryptography import x509
argv = sys.argv[1:]
for i in range(0, len(argv), 3):
    name, path, issuer_path = argv[i:i + 3]
    cert = x509.load_pem_x509_certificate(open(path, "rb").read())
    issuer = x509.load_pem_x509_certificate(open(issuer_path, "rb").read())
    assert cert.version == x509.Version.v3, (name, cert.version)
    assert 0 < cert.serial_number < 2 ** 159, (name, cert.serial_number)
    cert.verify_directly_issued_by(issuer)
    names = []
    for ext in cert.extensions:
        assert not isinstance(ext.value, x509.UnrecognizedExtension), (name, ext.oid)
        names.append(ext.value.__class__.__name__ + ("!" if ext.critical else ""))
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    print(name, "ca" if bc.ca else "leaf", bc.path_length, " ".join(sorted(names)))
"#;
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = python(script, &args);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), certs.len(), "{out}");
    let line = |name: &str| {
        *lines.iter().find(|l| l.split(' ').next() == Some(name)).unwrap_or_else(|| panic!("{name}: {out}"))
    };
    for l in &lines {
        // Every certificate: critical basicConstraints and keyUsage, and a key identifier.
        assert!(
            l.contains("BasicConstraints!") && l.contains("KeyUsage!") && l.contains("SubjectKeyIdentifier"),
            "{l}"
        );
    }
    assert!(line("root").starts_with("root ca 1 "), "{out}");
    assert!(line("station-ca").starts_with("station-ca ca 0 "), "{out}");
    assert!(line("station-ca").contains("AuthorityKeyIdentifier"), "{out}");
    for leaf in ["server", "station", "station-p521-endpoints"] {
        let l = line(leaf);
        assert!(
            l.contains(" leaf None ") && l.contains("ExtendedKeyUsage") && l.contains("AuthorityKeyIdentifier"),
            "{l}"
        );
    }
    assert!(line("server").contains("SubjectAlternativeName"), "{out}");
    let with_endpoints = line("station-p521-endpoints");
    assert!(
        with_endpoints.contains("CRLDistributionPoints") && with_endpoints.contains("AuthorityInformationAccess"),
        "{with_endpoints}"
    );
    for (name, _) in OPERATOR_ROOT_KEYS {
        assert!(line(&format!("{name}-sub-ca")).contains(" ca 0 "), "{out}");
        assert!(line(&format!("{name}-station")).contains(" leaf None "), "{out}");
    }
}
