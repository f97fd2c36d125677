//! Group commit (issue 15): a backlog goes in fewer, larger transactions, bounded by
//! `commit_max_rows` and `commit_max_bytes`, and every record is still stored once.
//! The records are queued before the writer task first runs (current-thread runtime,
//! no `.await` in between), so the backlog is there when it takes its first batch and
//! the number of transactions follows from the caps alone.

use crate::support::*;
use wsvault::record::Record;
use wsvault::store::Writer;

/// Queues every record at once, then lets the writer drain them; returns the report.
async fn drain_backlog(
    store: &wsvault::store::Store,
    cfg: &wsvault::config::StorageConfig,
    records: Vec<Record>,
) -> wsvault::store::WriterReport {
    let (sink, handle) = Writer::spawn(store.clone(), cfg);
    for r in records {
        assert!(
            sink.try_send(r).expect("writer running").is_none(),
            "the queue holds the whole backlog"
        );
    }
    drop(sink);
    tokio::time::timeout(std::time::Duration::from_secs(60), handle.join())
        .await
        .expect("the writer drains its queue")
}

each_backend!(
    backlog_is_written_in_transactions_up_to_the_row_cap,
    current_thread
);
async fn backlog_is_written_in_transactions_up_to_the_row_cap(backend: Backend) {
    for db in test_databases(backend).await {
        let store = db.store().await;
        let cfg = wsvault::config::StorageConfig {
            batch_size: 10,
            commit_max_rows: 200,
            queue_capacity: 2_000,
            ..db.cfg.clone()
        };
        let records: Vec<Record> = (0..1_000).map(|n| event("backlog", n)).collect();
        let report = drain_backlog(&store, &cfg, records).await;
        assert_eq!(report.written, 1_000, "{}", db.label);
        assert_eq!((report.rejected, report.lost), (0, 0), "{}", db.label);
        // 1 000 queued records, 200 per transaction: 5, where batches of
        // `batch_size` would have taken 100.
        assert_eq!(report.batches, 5, "{}", db.label);
        assert_eq!(count(&store, "events").await, 1_000, "{}", db.label);
        store.close().await;
    }
}

each_backend!(
    backlog_of_large_records_stops_at_the_byte_cap,
    current_thread
);
async fn backlog_of_large_records_stops_at_the_byte_cap(backend: Backend) {
    for db in test_databases(backend).await {
        let store = db.store().await;
        let cfg = wsvault::config::StorageConfig {
            batch_size: 10,
            commit_max_rows: 1_000,
            commit_max_bytes: 65_536,
            queue_capacity: 2_000,
            ..db.cfg.clone()
        };
        let filler = "x".repeat(4_000);
        let records: Vec<Record> = (0..1_000)
            .map(|n| {
                let mut r = event("big", n);
                if let Record::Event(e) = &mut r {
                    e.payload = format!(r#"{{"n":{n},"fill":"{filler}"}}"#);
                }
                r
            })
            .collect();
        let report = drain_backlog(&store, &cfg, records).await;
        assert_eq!(report.written, 1_000, "{}", db.label);
        // About 4 KB per record and 64 KiB per transaction: at most ~17 records
        // each (never fewer than `batch_size`), so far more than one transaction
        // and at most one per `batch_size` records.
        assert!(
            (1_000 / 17..=100).contains(&report.batches),
            "{}: {} transactions",
            db.label,
            report.batches
        );
        assert_eq!(count(&store, "events").await, 1_000, "{}", db.label);
        store.close().await;
    }
}
