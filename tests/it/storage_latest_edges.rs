//! `tracker_latest` where the batch's newest state of a tracker is not the one
//! stored — a redelivered duplicate beside a new but older state — and one
//! `source_id` under two sources in one batch (PostgreSQL: the `UNNEST … ON
//! CONFLICT` statement, which upserts `tracker_latest` from its own `RETURNING`).

use crate::storage_latest::{latest, micros, state, stored_id};
use crate::support::*;
use chrono::{Duration as Age, Utc};
use wsvault::store::Backend;

each_backend!(
    redelivered_newest_and_shared_source_ids_keep_latest_right,
    current_thread
);
async fn redelivered_newest_and_shared_source_ids_keep_latest_right(backend: Backend) {
    for db in test_databases(backend).await {
        let store = db.store().await;
        let l = db.label;
        let t0 = micros(Utc::now()) - Age::hours(1);
        let at = |s: i64| t0 + Age::seconds(s);

        write_all(
            &store,
            &db.cfg,
            vec![state("s", 1, at(20), 1.20), state("t", 1, at(30), 3.0)],
        )
        .await;
        let s_20 = stored_id(&store, "s", 1, at(20)).await;

        // Tracker 1 of "s": its newest state in the batch is a redelivery (skipped by
        // the insert), the one stored is new but older than `tracker_latest`'s. Tracker
        // 1 of "t" (same source_id) moves forward.
        write_all(
            &store,
            &db.cfg,
            vec![
                state("s", 1, at(20), 9.99),
                state("s", 1, at(15), 1.15),
                state("t", 1, at(40), 4.0),
            ],
        )
        .await;
        let t_40 = stored_id(&store, "t", 1, at(40)).await;
        assert_eq!(
            latest(&store, "s", 1).await,
            Some((s_20, at(20), 1.20)),
            "[{l}] never back in time, first row's id kept"
        );
        assert_eq!(
            latest(&store, "t", 1).await,
            Some((t_40, at(40), 4.0)),
            "[{l}] the other source's tracker moved"
        );
        store.close().await;
    }
}
