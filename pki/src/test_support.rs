//! Helpers for unit tests: the `openssl` command line tool as an independent implementation.

use std::process::Command;

/// Run `openssl` with `args`, panicking (failing the test) if it is missing or fails.
pub(crate) fn openssl(args: &[&str]) -> Vec<u8> {
    let out =
        Command::new("openssl").args(args).output().expect("the openssl command line tool is required for these tests");
    assert!(out.status.success(), "openssl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// PEM-encode `der` under `label`.
pub(crate) fn pem(label: &str, der: &[u8]) -> String {
    crate::encoding::pem(label, der)
}
