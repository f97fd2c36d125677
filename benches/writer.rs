//! Writer throughput: pushes N tracker states (default 200 000, or the first
//! argument / `WSVAULT_BENCH_N`) through the batching writer and prints records/s per
//! backend. SQLite always (a temp file); PostgreSQL when `WSVAULT_TEST_POSTGRES_URL`
//! is set (a fresh database, dropped afterwards). Run: `cargo bench --bench writer`.

#[path = "../tests/it/support/db/mod.rs"]
#[allow(unused_imports)]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};
use wsvault::record::{Record, TrackerState};
use wsvault::store::{Backend, Writer};

fn state(source: &Arc<str>, n: i64) -> Record {
    let tracker = n % 1_000;
    let t = common::at(n / 1_000, (n % 1_000) * 7);
    Record::TrackerState(TrackerState {
        source: source.clone(),
        source_id: tracker,
        state_time: t,
        received_at: t,
        lat: Some(52.52 + tracker as f64 * 1e-4),
        lng: Some(13.40),
        speed: Some(37.5),
        heading: Some(270.0),
        connection_status: Some("active".into()),
        movement_status: Some("moving".into()),
        payload: format!(
            r#"{{"source_id":{tracker},"gps":{{"updated":"2024-05-01 00:00:00","signal_level":100,"location":{{"lat":52.52,"lng":13.4}},"heading":270,"speed":37.5,"alt":34}},"connection_status":"active","movement_status":"moving","ignition":true,"battery_level":99,"inputs":[false,true,false],"outputs":[false],"last_update":"2024-05-01 00:00:00","n":{n}}}"#
        ),
        origin: wsvault::record::Origin::Live,
        event_id: None,
        connection_id: None,
    })
}

#[tokio::main]
async fn main() {
    let n: i64 = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .or_else(|| std::env::var("WSVAULT_BENCH_N").ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(200_000);
    let source: Arc<str> = Arc::from("bench");
    let mut dbs = common::test_databases(Backend::Sqlite).await;
    dbs.extend(common::test_databases(Backend::Postgres).await);
    // Build the records first so only the writer is measured.
    for db in dbs {
        let records: Vec<Record> = (0..n).map(|i| state(&source, i)).collect();
        let store = db.store().await;
        let mut cfg = db.config();
        cfg.batch_size = 500;
        cfg.flush_interval = Duration::from_millis(100);
        cfg.queue_capacity = 20_000;
        cfg.busy_timeout = Duration::from_secs(5);
        let started = Instant::now();
        let (sink, handle) = Writer::spawn(store.clone(), &cfg);
        for r in records {
            if sink.send(r).await.is_err() {
                eprintln!("{}: writer stopped early", db.label);
                break;
            }
        }
        drop(sink);
        let report = handle.join().await;
        let secs = started.elapsed().as_secs_f64();
        let rows = common::count(&store, "tracker_states").await;
        println!(
            "{:<8} {:>8} tracker_states in {:>6.2} s = {:>8.0} records/s ({} batches, {} retries, {} rows stored)",
            db.label,
            report.written,
            secs,
            report.written as f64 / secs,
            report.batches,
            report.retries,
            rows
        );
        store.close().await;
    }
}
