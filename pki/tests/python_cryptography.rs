//! What the CA writes, read back by Python `cryptography` (pyca), whose parsers
//! are strict and which no one here wrote. The interpreter is
//! `$ANCHORPOINT_PYTHON` (else the workspace `.venv`, else `python3`); without it or
//! without the package these tests fail, they never skip.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure

mod common;

use common::{TempDir, python, s};
use pki::{MASTER_KEY_LEN, MasterKey};

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
