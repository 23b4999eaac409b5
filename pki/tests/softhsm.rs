//! The same issuance with CA keys in a PKCS#11 token (SoftHSM2, installed by
//! .ci/run) as with software keys, judged by openssl. Fails, never skips,
//! without SoftHSM2.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use pki::{CaKey, CertStatus, Hierarchy, OcspRequest, Pkcs11Token, RevocationReason, Revoked, validate_csr};
use time::{Duration, OffsetDateTime};

const ORG: &str = "HSM Charging";

fn module() -> PathBuf {
    if let Ok(m) = std::env::var("ANCHORPOINT_PKCS11_MODULE") {
        return PathBuf::from(m);
    }
    for candidate in ["/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"] {
        if Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    panic!("SoftHSM2 is required (apt-get install softhsm2; .ci/run does) or set ANCHORPOINT_PKCS11_MODULE");
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("{cmd} must be installed: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A fresh token, deleted when dropped.
struct Token(String);

impl Token {
    fn new() -> Token {
        let label =
            format!("ap-{}-{}", std::process::id(), OffsetDateTime::now_utc().unix_timestamp_nanos() % 1_000_000_000);
        run("softhsm2-util", &["--init-token", "--free", "--label", &label, "--pin", "1234", "--so-pin", "5678"]);
        Token(label)
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        let _ = Command::new("softhsm2-util").args(["--delete-token", "--token", &self.0]).output();
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Issues a station certificate from an openssl CSR, revokes another, and has
/// openssl verify the chain, the CRL and an OCSP answer.
fn issue_and_verify(h: &Hierarchy, dir: &Path) {
    let now = OffsetDateTime::now_utc();
    let mut certs = Vec::new();
    for cn in ["CS-H1", "CS-H2"] {
        let key = dir.join(format!("{cn}.key"));
        let csr = run(
            "openssl",
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-subj",
                &format!("/CN={cn}"),
                "-keyout",
                s(&key),
            ],
        );
        let csr = validate_csr(&csr, cn).unwrap();
        certs.push(
            h.station_ca
                .issue_station_certificate(&csr, ORG, now - Duration::minutes(1), now + Duration::days(30))
                .unwrap(),
        );
    }
    let root = dir.join("root.pem");
    let sub = dir.join("sub.pem");
    std::fs::write(&root, h.root.cert_pem()).unwrap();
    std::fs::write(&sub, h.station_ca.cert_pem()).unwrap();
    let leaf = dir.join("leaf.pem");
    std::fs::write(&leaf, &certs[0].pem).unwrap();
    let out =
        run("openssl", &["verify", "-CAfile", s(&root), "-untrusted", s(&sub), "-purpose", "sslclient", s(&leaf)]);
    assert!(out.contains(": OK"), "{out}");

    let revoked =
        Revoked { serial_hex: certs[1].serial_hex.clone(), revoked_at: now, reason: RevocationReason::Superseded };
    let crl = dir.join("ca.crl");
    std::fs::write(&crl, h.station_ca.crl(std::slice::from_ref(&revoked), 1, now, now + Duration::hours(1)).unwrap())
        .unwrap();
    let out = Command::new("openssl")
        .args(["crl", "-inform", "DER", "-in", s(&crl), "-noout", "-CAfile", s(&sub)])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("verify OK"), "{out:?}");

    let req = dir.join("req.der");
    run("openssl", &["ocsp", "-issuer", s(&sub), "-cert", s(&leaf), "-no_nonce", "-reqout", s(&req)]);
    let parsed = OcspRequest::parse(&std::fs::read(&req).unwrap()).unwrap();
    let resp = dir.join("resp.der");
    std::fs::write(
        &resp,
        h.station_ca.ocsp_response(&parsed, &[CertStatus::Good], now, now + Duration::hours(1)).unwrap(),
    )
    .unwrap();
    let out = run(
        "openssl",
        &["ocsp", "-respin", s(&resp), "-issuer", s(&sub), "-CAfile", s(&root), "-cert", s(&leaf), "-no_nonce"],
    );
    assert!(out.contains(&format!("{}: good", s(&leaf))), "{out}");
}

fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "pki-hsm-{}-{name}-{}",
        std::process::id(),
        OffsetDateTime::now_utc().unix_timestamp_nanos()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn issuance_with_software_keys() {
    let dir = tempdir("software");
    let h = pki::generate_hierarchy(ORG, "Software Root", OffsetDateTime::now_utc() - Duration::minutes(5)).unwrap();
    issue_and_verify(&h, &dir);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn issuance_with_keys_in_softhsm2() {
    let dir = tempdir("softhsm");
    let token = Token::new();
    let hsm: Arc<Pkcs11Token> = Pkcs11Token::open(&module(), &token.0, "1234").unwrap();
    let h =
        pki::generate_hierarchy_with(ORG, "HSM Root", OffsetDateTime::now_utc() - Duration::minutes(5), &mut |role| {
            Ok(CaKey::Pkcs11(hsm.generate_key(role)?))
        })
        .unwrap();
    issue_and_verify(&h, &dir);
    // The key cannot leave the token: no sealed export.
    let mk = pki::MasterKey::generate().unwrap();
    assert!(matches!(h.station_ca.to_stored(&mk, "x"), Err(pki::PkiError::KeyNotExportable)));
    // A CA reopened from its certificate and the token's key issues as before.
    let again = pki::CertificateAuthority::from_certificate_and_key(
        h.station_ca.cert_der().to_vec(),
        CaKey::Pkcs11(hsm.key("station-ca").unwrap()),
    )
    .unwrap();
    let reopened = Hierarchy {
        root: pki::CertificateAuthority::from_certificate_and_key(
            h.root.cert_der().to_vec(),
            CaKey::Pkcs11(hsm.key("root").unwrap()),
        )
        .unwrap(),
        station_ca: again,
    };
    issue_and_verify(&reopened, &dir);
    // A wrong PIN is refused.
    assert!(Pkcs11Token::open(&module(), &token.0, "0000").and_then(|t| t.key("root")).is_err());
    let _ = std::fs::remove_dir_all(dir);
}
