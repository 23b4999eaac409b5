//! Per-station quotas on what is stored verbatim, seen by the PyPI `ocpp`
//! station over TLS (the stored volume on both databases is checked in
//! `csms/tests/quota.rs`).

use crate::harness::{Db, Env, py, strs, tls_args};

/// The audit's flood (DataTransfer messages of 60 KB), by the PyPI `ocpp`
/// station over TLS: with the default burst of 512 KiB and no refill to speak
/// of, the first eight are kept and every later one is refused with a reason.
fn data_transfer_flood_is_refused_beyond_the_quota(db: Db) {
    let env = Env::new(db);
    let creds = env.add_station("CS-FLOOD", 3, None).unwrap();
    let server = env.serve_env(&[], &[("ANCHORPOINT_VERBATIM_BYTES_PER_SECOND", "1")]);
    let args = tls_args(&server, &server.wss(), "CS-FLOOD", Some(&creds));
    let (ok, lines) = py(
        "charger.py",
        &[strs(&args), vec!["--steps", "boot,flood", "--flood-count", "20", "--flood-bytes", "60000"]].concat(),
    );
    assert!(ok, "{lines:?}");
    let flood: Vec<(&str, &str)> = lines
        .iter()
        .filter(|l| l["step"] == "flood")
        .map(|l| (l["status"].as_str().unwrap(), l["reason_code"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(flood.len(), 20, "{lines:?}");
    assert_eq!(flood[..8], [("UnknownVendorId", ""); 8], "{flood:?}");
    assert_eq!(flood[8..], [("Rejected", "RateLimitExceeded"); 12], "{flood:?}");
}

#[test]
fn data_transfer_flood_is_refused_beyond_the_quota_sqlite() {
    data_transfer_flood_is_refused_beyond_the_quota(Db::Sqlite);
}

#[test]
fn data_transfer_flood_is_refused_beyond_the_quota_postgres() {
    data_transfer_flood_is_refused_beyond_the_quota(Db::Postgres);
}
