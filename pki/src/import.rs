//! An operator's own CA brought into Anchorpoint, and new issuing sub-CAs.
//!
//! [`import_ca`] checks an operator's CA certificate, the certificates above it
//! and its private key before Anchorpoint signs anything with it. Each check is
//! a named rule (`import.*`), so a refusal says which one failed.

use rcgen::{CertificateParams, KeyPair};
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::error::X509Error;
use x509_parser::extensions::KeyUsage;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::ca::{CaKey, CertificateAuthority, ca_params, certificate_time, random_serial};
use crate::inspect::parse_certificate;
use crate::signature::verify_signature;
use crate::{PkiError, pem_to_der_chain};

/// Longest chain PEM accepted (a CA and a few certificates above it).
pub const MAX_IMPORT_PEM_LEN: usize = 64 * 1024;
/// At most this many certificates: the CA and up to three above it.
pub const MAX_IMPORT_CHAIN: usize = 4;
/// An imported CA must stay valid at least this long.
pub const MIN_REMAINING_VALIDITY: Duration = Duration::days(30);

/// Why an operator's CA was refused. [`rule`](Self::rule) names the check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ImportRejection {
    /// The chain is not PEM certificates, is empty, too long or has too many.
    #[error("certificate chain: {0}")]
    Pem(String),
    /// The private key is not a PKCS#8 PEM key of a supported algorithm.
    #[error("private key: {0}")]
    Key(String),
    /// The first certificate cannot act as a CA for station certificates.
    #[error("CA certificate: {0}")]
    NotACa(String),
    /// The private key does not belong to the first certificate.
    #[error("the private key does not belong to the CA certificate")]
    KeyMismatch,
    /// A certificate of the chain is not yet valid, expired, or expires too soon.
    #[error("validity: {0}")]
    Validity(String),
    /// The certificates do not form a chain up to a self-signed root.
    #[error("chain: {0}")]
    Chain(String),
    /// A path length constraint forbids the CA from doing what it is imported for.
    #[error("path length: {0}")]
    PathLength(String),
    /// The CA's subject cannot be reproduced as the issuer of what it signs (e.g. a
    /// repeated attribute type, no CN), so its certificates would not chain.
    #[error("subject name: {0}")]
    Name(String),
}

impl ImportRejection {
    /// The name of the failed rule, e.g. `import.key_match`.
    pub fn rule(&self) -> &'static str {
        match self {
            ImportRejection::Pem(_) => "import.pem",
            ImportRejection::Key(_) => "import.key",
            ImportRejection::NotACa(_) => "import.ca",
            ImportRejection::KeyMismatch => "import.key_match",
            ImportRejection::Validity(_) => "import.validity",
            ImportRejection::Chain(_) => "import.chain",
            ImportRejection::PathLength(_) => "import.path_length",
            ImportRejection::Name(_) => "import.name",
        }
    }
}

/// An operator's CA that passed every `import.*` rule.
#[derive(Debug)]
pub struct ImportedCa {
    /// The CA whose key was supplied.
    pub ca: CertificateAuthority,
    /// The certificates above it (DER), nearest first, ending with the self-signed root;
    /// empty when the CA is itself the root.
    pub above: Vec<Vec<u8>>,
}

impl ImportedCa {
    /// Whether the imported CA is a self-signed root.
    pub fn is_root(&self) -> bool {
        self.above.is_empty()
    }
}

/// A software CA key from PEM (PKCS#8 `PRIVATE KEY`: ECDSA P-256/P-384/P-521, Ed25519, or RSA of
/// at least 2048 bits). The error never contains key material.
pub fn software_key_from_pem(pem: &str) -> Result<CaKey, ImportRejection> {
    if pem.len() > MAX_IMPORT_PEM_LEN {
        return Err(ImportRejection::Key(format!("longer than {MAX_IMPORT_PEM_LEN} characters")));
    }
    if !pem.contains("-----BEGIN PRIVATE KEY-----") {
        let hint = if pem.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
            "encrypted keys are not accepted; decrypt it with `openssl pkcs8 -topk8 -nocrypt`"
        } else if pem.contains("PRIVATE KEY-----") {
            "not PKCS#8; convert it with `openssl pkcs8 -topk8 -nocrypt`"
        } else {
            "no PEM PRIVATE KEY block"
        };
        return Err(ImportRejection::Key(hint.to_owned()));
    }
    // rcgen's messages name the problem, never the key bytes.
    KeyPair::from_pem(pem).map(CaKey::Software).map_err(|e| {
        ImportRejection::Key(format!("not a usable key (P-256, P-384, P-521, Ed25519 or RSA ≥ 2048): {e}"))
    })
}

/// Checks an operator's CA before use.
///
/// `chain_pem`: the CA certificate first, then every certificate above it up to and
/// including the self-signed root. `key`: the CA's private key. Rules, in order:
/// `import.pem`, `import.ca` (cA=TRUE, keyUsage keyCertSign and cRLSign),
/// `import.key_match`, `import.validity` (every certificate valid at `now`, the CA for at
/// least [`MIN_REMAINING_VALIDITY`] more), `import.chain` (each certificate issued and
/// signed by the next, all above are CAs, the last is self-signed), `import.path_length`
/// (a root must allow a sub-CA below it; constraints above hold).
pub fn import_ca(chain_pem: &str, key: CaKey, now: OffsetDateTime) -> Result<ImportedCa, ImportRejection> {
    if chain_pem.len() > MAX_IMPORT_PEM_LEN {
        return Err(ImportRejection::Pem(format!("longer than {MAX_IMPORT_PEM_LEN} characters")));
    }
    let ders = pem_to_der_chain(chain_pem).map_err(|e| ImportRejection::Pem(e.to_string()))?;
    if ders.len() > MAX_IMPORT_CHAIN {
        return Err(ImportRejection::Pem(format!(
            "{} certificates; at most {MAX_IMPORT_CHAIN} (the CA and those above it)",
            ders.len()
        )));
    }
    let certs = ders
        .iter()
        .enumerate()
        .map(|(i, d)| parse_certificate(d).map_err(|e| ImportRejection::Pem(format!("certificate {}: {e}", i + 1))))
        .collect::<Result<Vec<_>, _>>()?;

    for (i, cert) in certs.iter().enumerate() {
        let who = if i == 0 { "the CA".to_owned() } else { format!("certificate {}", i + 1) };
        // The issuing CA signs CRLs; a root only signs the CA below it.
        let signs_crls = i == 0 && certs.len() > 1;
        check_ca_usage(cert, signs_crls, i == 0).map_err(|why| {
            if i == 0 { ImportRejection::NotACa(why) } else { ImportRejection::Chain(format!("{who}: {why}")) }
        })?;
    }
    if certs[0].public_key().subject_public_key.data.as_ref() != rcgen::PublicKeyData::der_bytes(&key) {
        return Err(ImportRejection::KeyMismatch);
    }
    let at = now.unix_timestamp();
    for (i, cert) in certs.iter().enumerate() {
        let v = cert.validity();
        let who = if i == 0 { "the CA".to_owned() } else { format!("certificate {}", i + 1) };
        if v.not_before.timestamp() > at {
            return Err(ImportRejection::Validity(format!("{who} is not valid before {}", v.not_before)));
        }
        if v.not_after.timestamp() <= at {
            return Err(ImportRejection::Validity(format!("{who} expired on {}", v.not_after)));
        }
    }
    let ca_end = certs[0].validity().not_after;
    for (i, cert) in certs.iter().enumerate() {
        let end = cert.validity().not_after;
        let who = if i == 0 { "the CA".to_owned() } else { format!("certificate {}", i + 1) };
        if end.timestamp() < at + MIN_REMAINING_VALIDITY.whole_seconds() {
            return Err(ImportRejection::Validity(format!(
                "{who} expires on {end}, within {} days",
                MIN_REMAINING_VALIDITY.whole_days()
            )));
        }
        // Station certificates are capped at the CA's end; the chain above must last as long.
        if i > 0 && end.timestamp() < ca_end.timestamp() {
            return Err(ImportRejection::Validity(format!(
                "{who} expires on {end}, before the CA ({ca_end}): certificates would stop chaining"
            )));
        }
    }
    for pair in certs.windows(2) {
        let (child, parent) = (&pair[0], &pair[1]);
        if child.issuer().as_raw() != parent.subject().as_raw() {
            return Err(ImportRejection::Chain(format!(
                "\"{}\" is issued by \"{}\", not by the next certificate \"{}\"",
                child.subject(),
                child.issuer(),
                parent.subject()
            )));
        }
        signed_by(child, parent.public_key()).map_err(|_| {
            ImportRejection::Chain(format!("the signature on \"{}\" does not verify with its issuer", child.subject()))
        })?;
    }
    let last = certs.last().ok_or_else(|| ImportRejection::Pem("empty".into()))?;
    let self_signed = last.issuer().as_raw() == last.subject().as_raw() && signed_by(last, last.public_key()).is_ok();
    if !self_signed {
        return Err(ImportRejection::Chain(format!(
            "the chain ends at \"{}\", which is not a self-signed root; include the certificates up to the root",
            last.subject()
        )));
    }
    // Certificate i has i CAs below it (counting the sub-CA Anchorpoint adds under an
    // imported root), and a pathLenConstraint limits how many may follow.
    let extra = usize::from(certs.len() == 1);
    for (i, cert) in certs.iter().enumerate() {
        let below = i + extra;
        if let Some(limit) = path_len(cert)
            && below > limit as usize
        {
            let who = if i == 0 { "the CA".to_owned() } else { format!("certificate {}", i + 1) };
            return Err(ImportRejection::PathLength(format!(
                "{who} allows {limit} CA certificate(s) below it, and {below} would be"
            )));
        }
    }

    let ca = CertificateAuthority::from_certificate_and_key(ders[0].clone(), key).map_err(|e| match e {
        PkiError::KeyMismatch => ImportRejection::KeyMismatch,
        PkiError::NotACa => ImportRejection::NotACa(e.to_string()),
        other => ImportRejection::Name(other.to_string()),
    })?;
    // What the CA signs must name it exactly as its certificate does, or nothing chains.
    let (probe, _) = ca
        .issue_server_certificate(&["name-check.invalid".to_owned()], now, now + Duration::minutes(1))
        .map_err(|e| ImportRejection::Key(format!("the key could not sign: {e}")))?;
    let probe = parse_certificate(&probe.der).map_err(|e| ImportRejection::Name(e.to_string()))?;
    if probe.issuer().as_raw() != certs[0].subject().as_raw() {
        return Err(ImportRejection::Name(format!(
            "\"{}\" cannot be reproduced as an issuer name (repeated attribute types or unusual string types)",
            certs[0].subject()
        )));
    }
    Ok(ImportedCa { ca, above: ders[1..].to_vec() })
}

/// Whether `cert` carries a valid signature by `issuer_key` (any key type a CA may
/// have, P-521 included).
fn signed_by(cert: &X509Certificate<'_>, issuer_key: &SubjectPublicKeyInfo<'_>) -> Result<(), X509Error> {
    verify_signature(issuer_key, &cert.signature_algorithm, &cert.signature_value, cert.tbs_certificate.as_ref())
}

fn check_ca_usage(cert: &X509Certificate<'_>, signs_crls: bool, needs_key_id: bool) -> Result<(), String> {
    let bc = cert.basic_constraints().map_err(|e| format!("basicConstraints: {e}"))?;
    if !bc.is_some_and(|b| b.value.ca) {
        return Err(format!("\"{}\" is not a CA certificate (basicConstraints cA is not TRUE)", cert.subject()));
    }
    let ku: Option<&KeyUsage> = cert.key_usage().map_err(|e| format!("keyUsage: {e}"))?.map(|k| k.value);
    if let Some(ku) = ku {
        if !ku.key_cert_sign() {
            return Err(format!("\"{}\" keyUsage lacks keyCertSign", cert.subject()));
        }
        if signs_crls && !ku.crl_sign() {
            return Err(format!("\"{}\" keyUsage lacks cRLSign, and the issuing CA signs the CRL", cert.subject()));
        }
    }
    // RFC 5280 4.2.1.2: CA certificates carry a subjectKeyIdentifier; it becomes the
    // authorityKeyIdentifier of what the CA signs (certificates and CRLs).
    let has_ski = cert
        .extensions()
        .iter()
        .any(|e| matches!(e.parsed_extension(), x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(_)));
    if needs_key_id && !has_ski {
        return Err(format!("\"{}\" has no subjectKeyIdentifier (RFC 5280 4.2.1.2)", cert.subject()));
    }
    Ok(())
}

fn path_len(cert: &X509Certificate<'_>) -> Option<u32> {
    cert.basic_constraints().ok().flatten().and_then(|b| b.value.path_len_constraint)
}

impl CertificateAuthority {
    /// A new station sub-CA (path length 0) signed by this CA, for rotation or under an
    /// imported root: `O=organization`, `CN=<organization> Station CA <YYYYMMDDhhmmss>`
    /// (a new name, so CRLs and chains of successive sub-CAs never mix), valid from `now`
    /// for `years` or until this CA ends, whichever is sooner.
    pub fn issue_station_sub_ca(
        &self,
        organization: &str,
        now: OffsetDateTime,
        years: i32,
        key: CaKey,
    ) -> Result<CertificateAuthority, PkiError> {
        let not_before = certificate_time(now)?;
        let end = crate::ca::add_years(now, years)?.min(self.not_after());
        let stamp = format!(
            "{:04}{:02}{:02}{:02}{:02}{:02}",
            not_before.year(),
            u8::from(not_before.month()),
            not_before.day(),
            not_before.hour(),
            not_before.minute(),
            not_before.second()
        );
        let suffix = format!(" Station CA {stamp}");
        let org: String = organization.chars().take(64 - suffix.len()).collect();
        let cn = format!("{}{suffix}", org.trim_end());
        let mut params: CertificateParams = ca_params(organization, &cn, 0, not_before, certificate_time(end)?)?;
        params.serial_number = Some(random_serial()?);
        let cert = params.signed_by(&key, &self.issuer)?;
        CertificateAuthority::from_certificate_and_key(cert.der().to_vec(), key)
    }

    /// A short stable name for this CA: the first 16 hex digits of its certificate's
    /// SHA-256 fingerprint. Used in CRL URLs and to tell successive CAs apart.
    pub fn id(&self) -> String {
        ca_id(self.cert_der())
    }
}

/// [`CertificateAuthority::id`] of a CA certificate given as DER.
pub fn ca_id(cert_der: &[u8]) -> String {
    crate::encoding::sha256_fingerprint_hex(cert_der)[..16].to_owned()
}

/// PEM of one certificate given as DER.
pub fn certificate_pem(der: &[u8]) -> String {
    crate::encoding::pem("CERTIFICATE", der)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
    };
    use time::{Duration, OffsetDateTime};

    use super::*;

    struct Made {
        pem: String,
        params: CertificateParams,
        key: KeyPair,
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    fn params(cn: &str, ca: Option<u8>, days: i64) -> CertificateParams {
        let mut p = CertificateParams::default();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(DnType::OrganizationName, "Operator");
        p.distinguished_name.push(DnType::CommonName, cn);
        p.not_before = now() - Duration::days(1);
        p.not_after = now() + Duration::days(days);
        p.is_ca = match ca {
            Some(n) => IsCa::Ca(BasicConstraints::Constrained(n)),
            None => IsCa::Ca(BasicConstraints::Unconstrained),
        };
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p.use_authority_key_identifier_extension = true;
        p
    }

    fn root(p: CertificateParams) -> Made {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let pem = p.self_signed(&key).unwrap().pem();
        Made { pem, params: p, key }
    }

    fn below(p: CertificateParams, parent: &Made) -> Made {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let issuer = Issuer::from_params(&parent.params, &parent.key);
        let pem = p.signed_by(&key, &issuer).unwrap().pem();
        Made { pem, params: p, key }
    }

    fn key_of(m: &Made) -> CaKey {
        software_key_from_pem(&m.key.serialize_pem()).unwrap()
    }

    fn rule(chain: &str, key: CaKey) -> &'static str {
        import_ca(chain, key, now()).unwrap_err().rule()
    }

    #[test]
    fn an_operator_root_and_an_operator_sub_ca_are_accepted() {
        let r = root(params("Operator Root", None, 3650));
        let imported = import_ca(&r.pem, key_of(&r), now()).unwrap();
        assert!(imported.is_root());
        // The sub-CA Anchorpoint adds below it.
        let sub = imported.ca.issue_station_sub_ca("Operator", now(), 10, key_of(&root(params("x", None, 1)))).unwrap();
        assert!(sub.subject_cn().starts_with("Operator Station CA 2027"), "{}", sub.subject_cn());
        assert!(sub.not_after() <= imported.ca.not_after());
        assert_ne!(sub.id(), imported.ca.id());

        let r = root(params("Operator Root", Some(2), 3650));
        let mid = below(params("Operator Intermediate", Some(1), 3000), &r);
        let issuing = below(params("Operator Issuing", Some(0), 2000), &mid);
        let chain = format!("{}{}{}", issuing.pem, mid.pem, r.pem);
        let imported = import_ca(&chain, key_of(&issuing), now()).unwrap();
        assert_eq!(imported.above.len(), 2);
        assert_eq!(imported.ca.subject_cn(), "Operator Issuing");
        assert_eq!(imported.ca.id().len(), 16);
    }

    #[test]
    fn rule_pem() {
        let r = root(params("R", None, 3650));
        for chain in ["", "hello", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"] {
            assert_eq!(rule(chain, key_of(&r)), "import.pem", "{chain:?}");
        }
        assert_eq!(rule(&r.pem.repeat(5), key_of(&r)), "import.pem");
        assert_eq!(rule(&" ".repeat(MAX_IMPORT_PEM_LEN + 1), key_of(&r)), "import.pem");
    }

    #[test]
    fn rule_key() {
        let r = root(params("R", None, 3650));
        let sec1 = "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n";
        for pem in ["", "garbage", sec1, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", &r.pem] {
            let Err(e) = software_key_from_pem(pem) else { panic!("{pem:?} accepted") };
            assert_eq!(e.rule(), "import.key");
            assert!(!e.to_string().contains("AAAA"));
        }
        assert!(software_key_from_pem(sec1).err().unwrap().to_string().contains("openssl pkcs8 -topk8"));
    }

    #[test]
    fn rule_ca() {
        let leaf = root(params("Leaf", None, 3650));
        let mut p = params("Leaf", None, 3650);
        p.is_ca = IsCa::ExplicitNoCa;
        let leaf2 = root(p);
        assert_eq!(rule(&leaf2.pem, key_of(&leaf2)), "import.ca");
        // An issuing sub-CA must sign CRLs; a root only signs the sub-CA below it.
        let mut p = params("No CRL signing", None, 3650);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let r = root(p);
        assert!(import_ca(&r.pem, key_of(&r), now()).is_ok());
        let mut p = params("Sub without CRL signing", Some(0), 2000);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let sub = below(p, &r);
        let e = import_ca(&format!("{}{}", sub.pem, r.pem), key_of(&sub), now()).unwrap_err();
        assert_eq!(e.rule(), "import.ca");
        assert!(e.to_string().contains("cRLSign"), "{e}");
        let mut p = params("No certificate signing", None, 3650);
        p.key_usages = vec![KeyUsagePurpose::CrlSign];
        let r = root(p);
        assert_eq!(rule(&r.pem, key_of(&r)), "import.ca");
        // No subjectKeyIdentifier (openssl can leave it out).
        let (cert, key) = openssl_root("/O=Operator/CN=No SKI", &["subjectKeyIdentifier=none"]);
        let e = import_ca(&cert, software_key_from_pem(&key).unwrap(), OffsetDateTime::now_utc()).unwrap_err();
        assert_eq!(e.rule(), "import.ca");
        assert!(e.to_string().contains("subjectKeyIdentifier"), "{e}");
        // Sanity: the helper makes CAs by default.
        assert!(import_ca(&leaf.pem, key_of(&leaf), now()).is_ok());
    }

    #[test]
    fn rule_key_match() {
        let (a, b) = (root(params("A", None, 3650)), root(params("B", None, 3650)));
        assert_eq!(rule(&a.pem, key_of(&b)), "import.key_match");
    }

    #[test]
    fn rule_validity() {
        let mut p = params("Old", None, 3650);
        p.not_after = now() - Duration::days(1);
        p.not_before = now() - Duration::days(100);
        let old = root(p);
        assert_eq!(rule(&old.pem, key_of(&old)), "import.validity");
        let soon = root(params("Soon", None, 10));
        let e = import_ca(&soon.pem, key_of(&soon), now()).unwrap_err();
        assert_eq!(e.rule(), "import.validity");
        assert!(e.to_string().contains("within 30 days"), "{e}");
        let mut p = params("Future", None, 3650);
        p.not_before = now() + Duration::days(1);
        let future = root(p);
        assert_eq!(rule(&future.pem, key_of(&future)), "import.validity");
        // A root ending before the sub-CA below it.
        let r = root(params("Short root", None, 400));
        let sub = below(params("Long sub", Some(0), 2000), &r);
        let e = import_ca(&format!("{}{}", sub.pem, r.pem), key_of(&sub), now()).unwrap_err();
        assert_eq!(e.rule(), "import.validity");
        assert!(e.to_string().contains("before the CA"), "{e}");
    }

    /// A self-signed CA made by openssl: (certificate PEM, PKCS#8 key PEM).
    fn openssl_root(subj: &str, extra: &[&str]) -> (String, String) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let base =
            std::env::temp_dir().join(format!("ap-import-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst)));
        let (cert, key) = (base.with_extension("pem"), base.with_extension("key"));
        let mut args = vec!["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        args.extend(["-days", "3650", "-subj", subj, "-keyout", key.to_str().unwrap(), "-out", cert.to_str().unwrap()]);
        args.extend([
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        for e in extra {
            args.extend(["-addext", e]);
        }
        crate::test_support::openssl(&args);
        let out = (std::fs::read_to_string(&cert).unwrap(), std::fs::read_to_string(&key).unwrap());
        let _ = (std::fs::remove_file(cert), std::fs::remove_file(key));
        out
    }

    #[test]
    fn an_openssl_root_is_accepted() {
        let (cert, key) = openssl_root("/O=Operator/CN=Operator Root", &[]);
        let imported = import_ca(&cert, software_key_from_pem(&key).unwrap(), OffsetDateTime::now_utc()).unwrap();
        assert!(imported.is_root());
    }

    #[test]
    fn rule_name() {
        // Two OUs (as openssl writes them): rcgen would name the issuer with one, so
        // nothing the CA signs would chain.
        let (cert, key) = openssl_root("/O=Operator/OU=a/OU=b/CN=Two OUs", &[]);
        let e = import_ca(&cert, software_key_from_pem(&key).unwrap(), OffsetDateTime::now_utc()).unwrap_err();
        assert_eq!(e.rule(), "import.name", "{e}");
        // No CN.
        let mut p = params("x", None, 3650);
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(DnType::OrganizationName, "Only O");
        let r = root(p);
        assert_eq!(rule(&r.pem, key_of(&r)), "import.name");
    }

    #[test]
    fn rule_chain() {
        let r = root(params("Root", None, 3650));
        let sub = below(params("Sub", Some(0), 2000), &r);
        // Without the root: the chain does not end at a self-signed certificate.
        let e = import_ca(&sub.pem, key_of(&sub), now()).unwrap_err();
        assert_eq!(e.rule(), "import.chain");
        assert!(e.to_string().contains("up to the root"), "{e}");
        // Followed by a root that did not issue it.
        let other = root(params("Other Root", None, 3650));
        assert_eq!(rule(&format!("{}{}", sub.pem, other.pem), key_of(&sub)), "import.chain");
        // Same name, different key: the signature does not verify.
        let impostor = root(params("Root", None, 3650));
        let e = import_ca(&format!("{}{}", sub.pem, impostor.pem), key_of(&sub), now()).unwrap_err();
        assert_eq!(e.rule(), "import.chain");
        assert!(e.to_string().contains("signature"), "{e}");
        // A non-CA above the CA.
        let mut p = params("Leaf above", None, 3650);
        p.is_ca = IsCa::ExplicitNoCa;
        let leaf_root = root(p);
        let sub2 = below(params("Sub2", Some(0), 2000), &leaf_root);
        assert_eq!(rule(&format!("{}{}", sub2.pem, leaf_root.pem), key_of(&sub2)), "import.chain");
    }

    #[test]
    fn rule_path_length() {
        // A root that allows no CA below it cannot get Anchorpoint's sub-CA.
        let r = root(params("Root", Some(0), 3650));
        let e = import_ca(&r.pem, key_of(&r), now()).unwrap_err();
        assert_eq!(e.rule(), "import.path_length");
        // A root with pathlen 0 above an intermediate above the issuing CA.
        let mid = below(params("Mid", Some(0), 3000), &r);
        let issuing = below(params("Issuing", Some(0), 2000), &mid);
        let chain = format!("{}{}{}", issuing.pem, mid.pem, r.pem);
        assert_eq!(rule(&chain, key_of(&issuing)), "import.path_length");
        // The same shape with room is fine.
        let r = root(params("Root", Some(1), 3650));
        let sub = below(params("Sub", Some(0), 2000), &r);
        assert!(import_ca(&format!("{}{}", sub.pem, r.pem), key_of(&sub), now()).is_ok());
    }
}
