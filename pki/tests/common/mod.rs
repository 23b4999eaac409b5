//! Helpers shared by the integration tests that let implementations no one here
//! wrote (the `openssl` tool, Python `cryptography`) judge what the CA produces.
//! Each tool is required: a missing one fails the test, it never skips.
#![allow(dead_code)] // each test crate uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use pki::{CertificateAuthority, Hierarchy, generate_hierarchy, import_ca, software_key_from_pem};
use time::{Duration, OffsetDateTime};

/// The operator organisation the tests issue for.
pub const ORG: &str = "Acme Charging GmbH";

/// Now, in whole seconds (certificate, CRL and OCSP times carry no fractions).
pub fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(OffsetDateTime::now_utc().unix_timestamp()).unwrap()
}

pub fn hierarchy() -> Hierarchy {
    generate_hierarchy(ORG, "Acme CSMS Root", now() - Duration::minutes(5)).unwrap()
}

/// `openssl req -newkey` arguments for a P-256 station key.
pub const P256: &[&str] = &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];

/// `openssl req -newkey` arguments for a P-521 station key (ISO 15118-20), SHA-512.
#[allow(dead_code)] // not every test crate uses it
pub const P521: &[&str] = &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp521r1", "-sha512"];

/// The key types of operators' own roots, as `openssl req` arguments.
pub const OPERATOR_ROOT_KEYS: &[(&str, &[&str])] = &[
    ("rsa", &["-newkey", "rsa:2048"]),
    ("p384", &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp384r1"]),
    ("p521", &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp521r1", "-sha512"]),
    ("ed25519", &["-newkey", "ed25519"]),
];

/// An operator's root made by `openssl req -x509` with `newkey`, imported; returns
/// the root's PEM file and the CA.
pub fn operator_root(dir: &TempDir, name: &str, newkey: &[&str]) -> (PathBuf, CertificateAuthority) {
    let (root, key) = (dir.path(&format!("{name}-root.pem")), dir.path(&format!("{name}-root.key")));
    let mut args = vec!["req", "-x509", "-nodes", "-days", "3650", "-subj", "/O=Operator/CN=Operator Root"];
    args.extend(newkey);
    args.extend(["-keyout", s(&key), "-out", s(&root)]);
    args.extend(["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
    openssl(&args);
    let ca_key = software_key_from_pem(&std::fs::read_to_string(&key).unwrap()).unwrap();
    let ca = import_ca(&std::fs::read_to_string(&root).unwrap(), ca_key, now()).unwrap().ca;
    (root, ca)
}

/// `openssl req` CSR with extensions a station should not get (they must not be copied).
pub fn openssl_csr(dir: &TempDir, name: &str, newkey: &[&str], cn: &str) -> (String, PathBuf) {
    let key = dir.path(&format!("{name}.key"));
    let subj = format!("/O=Someone Else/CN={cn}");
    let mut args = vec!["req", "-new"];
    args.extend_from_slice(newkey);
    args.extend_from_slice(&[
        "-nodes",
        "-subj",
        &subj,
        "-keyout",
        s(&key),
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "subjectAltName=DNS:evil.example",
    ]);
    (openssl(&args), key)
}

/// A scratch directory, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "pki-interop-{}-{name}-{}",
            std::process::id(),
            OffsetDateTime::now_utc().unix_timestamp_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }

    pub fn write(&self, file: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(file);
        std::fs::write(&p, content).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

pub fn openssl_raw(args: &[&str]) -> Output {
    Command::new("openssl")
        .args(args)
        .output()
        .expect("the openssl command line tool is required for the interop tests")
}

pub fn openssl(args: &[&str]) -> String {
    let out = openssl_raw(args);
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The Python with the `cryptography` package: `$ANCHORPOINT_PYTHON`, else the
/// workspace `.venv` (made by .ci/run), else `python3`.
fn python_interpreter() -> PathBuf {
    if let Some(p) = std::env::var_os("ANCHORPOINT_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("python3")
}

/// Runs `script` (Python source) with `args` as `sys.argv[1:]`; returns its stdout.
/// A missing interpreter, a missing package or a failing assertion fails the test.
pub fn python(script: &str, args: &[&str]) -> String {
    let interpreter = python_interpreter();
    let out = Command::new(&interpreter).arg("-c").arg(script).args(args).output().unwrap_or_else(|e| {
        panic!(
            "cannot run the Python interpreter {}: {e}. Set ANCHORPOINT_PYTHON or create the \
             workspace .venv (tests/requirements.txt, with `cryptography`)",
            interpreter.display()
        )
    });
    assert!(
        out.status.success(),
        "{} failed ({}); it needs the package `cryptography`:\n{}",
        interpreter.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
