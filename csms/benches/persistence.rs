//! The persistence batch: one group commit of station reports, as the writer
//! task applies it (`Store::apply_writes`, one transaction, one fsync). A group
//! mixes Heartbeat : StatusNotification : MeterValues = 1 : 1 : 4 as the load
//! tool sends them, each from another of 2,000 registered stations; the
//! MeterValues are the load tool's 11-sample payload, stored verbatim.
//!
//! Group sizes 1, 64 and 512 (the server's largest group). SQLite in a
//! temporary directory (WAL, synchronous=FULL, as the server runs it); with
//! `ANCHORPOINT_BENCH_PG_URL=postgres://...` also PostgreSQL, in a database
//! created for the run and dropped after.
//!
//! `cargo bench -p csms --bench persistence`; "elem/s" is reports per second.

#![allow(clippy::expect_used)] // a benchmark: a failure is a panic

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use csms::store::{ConnectorStatus, NewStation, Registration, StationWrite, Store};

const STATIONS: usize = 2000;
/// MeterValues as the load tool sends them: 11 sampled values of a 3-phase AC charger.
const METER_VALUES: &str = include_str!("../../ocpp/benches/meter_values.json");

/// Report number `n` of the run: its kind by the 1:1:4 mix, its station by `n`.
fn report(n: u64) -> StationWrite {
    let (tenant_id, station_id) = ("bench".to_owned(), format!("CS-{:05}", n % STATIONS as u64));
    let at = 1_780_000_000_000 + i64::try_from(n).unwrap_or(0);
    match n % 6 {
        0 => StationWrite::Heartbeat { tenant_id, station_id, at },
        1 => StationWrite::ConnectorStatus {
            tenant_id,
            station_id,
            status: ConnectorStatus {
                evse_id: 1,
                connector_id: 1,
                status: if n % 12 == 1 { "Occupied" } else { "Available" }.into(),
                reported_at: at,
                received_at: at,
            },
        },
        _ => StationWrite::Message {
            tenant_id,
            station_id,
            action: "MeterValues",
            payload: METER_VALUES.trim().to_owned(),
            at,
            prune_to: None,
        },
    }
}

async fn prepared(url: &str) -> Store {
    let store = Store::open(url, 4).await.expect("store");
    store.create_tenant("bench", "Bench Org", None, 0).await.expect("tenant");
    let stations: Vec<NewStation> = (0..STATIONS)
        .map(|i| NewStation {
            id: format!("CS-{i:05}"),
            tenant_id: "bench".into(),
            security_profile: 3,
            password_hash: None,
            registration: Registration::Accepted,
            description: None,
            tags: Vec::new(),
        })
        .collect();
    store.create_stations(&stations, 0).await.expect("stations");
    store
}

fn batches(c: &mut Criterion, backend: &str, rt: &tokio::runtime::Runtime, store: &Store) {
    let mut group = c.benchmark_group(format!("persistence_batch_{backend}"));
    group.sample_size(20);
    let mut n: u64 = 0;
    for size in [1usize, 64, 512] {
        group.throughput(Throughput::Elements(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, &size| {
            b.iter_batched(
                || {
                    let writes: Vec<StationWrite> = (n..n + size as u64).map(report).collect();
                    n += size as u64;
                    writes
                },
                |writes| rt.block_on(store.apply_writes(&writes)).expect("committed"),
                criterion::BatchSize::PerIteration,
            );
        });
    }
    group.finish();
}

fn persistence(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = rt.block_on(prepared(&Store::sqlite_url(dir.path())));
    batches(c, "sqlite", &rt, &sqlite);

    if let Ok(base) = std::env::var("ANCHORPOINT_BENCH_PG_URL") {
        let name = format!("ap_bench_{}", std::process::id());
        let admin = |sql: String| {
            rt.block_on(async {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(&base).await.expect("PostgreSQL");
                sqlx::query(&sql).execute(&mut conn).await.expect("admin statement");
            });
        };
        admin(format!("CREATE DATABASE {name}"));
        let (prefix, _) = base.rsplit_once('/').expect("a database URL");
        let pg = rt.block_on(prepared(&format!("{prefix}/{name}")));
        batches(c, "postgres", &rt, &pg);
        rt.block_on(pg.close());
        admin(format!("DROP DATABASE {name}"));
    }
}

criterion_group!(benches, persistence);
criterion_main!(benches);
