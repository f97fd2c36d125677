//! PostgreSQL time partitions (issue 14, point 5): a new database's history tables
//! are partitioned by migration 0008; partitions are created ahead and rows that
//! landed in the DEFAULT partition are split off; retention drops whole partitions
//! and deletes only the remainder; an existing filled database is converted by
//! `wsvault migrate --partition`, resumably, keeping every row, after which the
//! daemon writes into partitions. PostgreSQL only: SQLite has no partitions (its
//! retention is covered by `ops_retention`).

use crate::storage_reader_grants::{as_reader, ensure_reader_role};
use crate::support::*;
use chrono::{DateTime, Duration as Age, Utc};
use sqlx::{Connection as _, PgConnection};
use std::borrow::Cow;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use wsvault::config::RetentionConfig;
use wsvault::ids::next_id;
use wsvault::ops::partitions::{self, TABLES, part_name, period_start};
use wsvault::ops::retention::prune_once;
use wsvault::record::{Event, Origin, Record, TrackerReading, TrackerState, Traffic};
use wsvault::sim::jsonrpc::{JsonRpcSim, JsonRpcSimConfig};
use wsvault::store::Store;

const DAY: Duration = Duration::from_secs(86_400);

fn event(at: DateTime<Utc>) -> Record {
    Record::Event(Event {
        id: next_id(),
        source: Arc::from("p"),
        connection_id: Some(1),
        received_at: at,
        kind: "state_batch".into(),
        payload: r#"{"x":1}"#.into(),
        item_count: None,
    })
}

fn traffic(at: DateTime<Utc>) -> Record {
    Record::Traffic(Traffic {
        id: next_id(),
        source: Arc::from("p"),
        connection_id: Some(1),
        at,
        direction: "received".into(),
        payload: "{}".into(),
    })
}

fn state(id: i64, state_time: DateTime<Utc>, received_at: DateTime<Utc>) -> Record {
    Record::TrackerState(TrackerState {
        source: Arc::from("p"),
        source_id: id,
        state_time,
        received_at,
        lat: Some(1.0),
        lng: Some(2.0),
        speed: None,
        heading: None,
        connection_status: None,
        movement_status: None,
        payload: "{}".into(),
        origin: Origin::Live,
        event_id: None,
        connection_id: None,
    })
}

fn reading(id: i64, at: DateTime<Utc>) -> Record {
    Record::TrackerReading(TrackerReading {
        source: Arc::from("p"),
        tracker_id: id,
        reading_kind: "input".into(),
        name: "door".into(),
        value: "1".into(),
        value_num: Some(1.0),
        units: None,
        update_time: at,
        received_at: at,
        payload: "{}".into(),
        origin: Origin::Live,
        event_id: None,
        connection_id: None,
    })
}

/// One row of each partitioned table at `at`.
fn rows_at(id: i64, at: DateTime<Utc>) -> Vec<Record> {
    vec![event(at), traffic(at), state(id, at, at), reading(id, at)]
}

async fn write(store: &Store, db: &TestDb, records: Vec<Record>) {
    let report = write_all(store, &db.cfg, records).await;
    assert_eq!(report.lost + report.rejected, 0, "rows lost or rejected");
}

async fn n(store: &Store, sql: &str) -> i64 {
    scalar(store, sql).await
}

async fn exists(store: &Store, relation: &str) -> bool {
    n(
        store,
        &format!("SELECT count(*) FROM pg_class WHERE oid = to_regclass('{relation}')"),
    )
    .await
        == 1
}

async fn partitioned(store: &Store, table: &str) -> bool {
    n(
        store,
        &format!("SELECT count(*) FROM pg_class WHERE relname = '{table}' AND relkind = 'p'"),
    )
    .await
        == 1
}

/// Every row count of the partitioned tables, in [`TABLES`] order.
async fn counts(store: &Store) -> Vec<i64> {
    let mut out = Vec::new();
    for (t, _) in TABLES {
        out.push(count(store, t).await);
    }
    out
}

#[tokio::test]
async fn a_new_database_is_partitioned_and_rows_in_the_default_partition_are_split_off() {
    let Some(db) = test_databases(Backend::Postgres).await.pop() else {
        return;
    };
    let store = db.store().await;
    for (t, _) in TABLES {
        assert!(
            partitioned(&store, t).await,
            "{t} is not partitioned after migrate"
        );
        assert!(
            exists(&store, &format!("{t}_default")).await,
            "{t}_default missing"
        );
    }
    // The partitioned tables keep what later migrations added before 0008 (0007's
    // links; their partial index is dropped again by 0011).
    for t in ["tracker_states", "tracker_readings"] {
        let sql = format!(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = '{t}' \
             AND column_name IN ('event_id', 'connection_id')"
        );
        assert_eq!(n(&store, &sql).await, 2, "{t} lost its link columns");
    }
    assert!(
        !exists(&store, "tracker_states_event").await,
        "0011 drops the event_id index of the high-volume tables"
    );
    let pool = store.postgres_pool().unwrap();
    let now = Utc::now();
    let made = partitions::maintain(pool, DAY, now).await.unwrap();
    for k in 0..3 {
        let day = period_start(now, DAY) + Age::days(k);
        for (t, _) in TABLES {
            let name = part_name(t, day);
            assert!(made.contains(&name), "{name} not created ahead: {made:?}");
        }
    }
    // Rows five days ahead: no partition yet, so they land in the default.
    let later = now + Age::days(5);
    let mut records = Vec::new();
    for i in 0..20 {
        records.extend(rows_at(i, later + Age::seconds(i)));
    }
    records.extend(rows_at(100, now));
    write(&store, &db, records).await;
    for (t, _) in TABLES {
        assert_eq!(
            count(&store, &format!("{t}_default")).await,
            20,
            "{t}_default"
        );
    }
    let before = counts(&store).await;
    let made = partitions::maintain(pool, DAY, now).await.unwrap();
    for (t, _) in TABLES {
        let name = part_name(t, period_start(later, DAY));
        assert!(made.contains(&name), "{name} not split off: {made:?}");
        assert_eq!(
            count(&store, &format!("{t}_default")).await,
            0,
            "{t}_default"
        );
        assert_eq!(count(&store, &name).await, 20, "{name}");
        assert_eq!(
            count(&store, &part_name(t, period_start(now, DAY))).await,
            1,
            "{t}: today's row"
        );
    }
    assert_eq!(counts(&store).await, before, "rows lost in the split");
    // Idempotent: nothing left to create or move.
    assert!(
        partitions::maintain(pool, DAY, now)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn retention_drops_expired_partitions_and_deletes_no_row_one_by_one() {
    let Some(db) = test_databases(Backend::Postgres).await.pop() else {
        return;
    };
    let store = db.store().await;
    let pool = store.postgres_pool().unwrap();
    let now = Utc::now();
    partitions::ensure(pool, DAY, now - Age::days(6), now + Age::days(1))
        .await
        .unwrap();
    let limit = Age::days(3);
    let cutoff = now - limit;
    let mut records = Vec::new();
    let mut id = 0;
    let mut old = |at: DateTime<Utc>, recs: &mut Vec<Record>| {
        id += 1;
        recs.extend(rows_at(id, at));
    };
    // Expired: whole days before the cutoff, and the cutoff's own day before it
    // (kept: its partition has not expired as a whole).
    old(now - Age::days(5), &mut records);
    old(now - Age::days(4), &mut records);
    let same_day = cutoff - Age::seconds(1);
    old(same_day, &mut records);
    // Kept: just after the cutoff, and recent.
    old(cutoff + Age::minutes(1), &mut records);
    old(now - Age::hours(1), &mut records);
    // A late backfill: an old state received now stays (retention ages by receipt),
    // and so does the partition holding it, whole.
    let backfill_day = now - Age::days(5);
    records.push(state(999, backfill_day + Age::seconds(7), now));
    write(&store, &db, records).await;
    let five_days_ago = period_start(now - Age::days(5), DAY);
    let four_days_ago = period_start(now - Age::days(4), DAY);
    assert!(exists(&store, &part_name("events", five_days_ago)).await);

    let cfg = RetentionConfig {
        tables: TABLES
            .iter()
            .map(|(t, _)| (t.to_string(), limit.to_std().unwrap()))
            .collect(),
        interval: Duration::from_secs(300),
        batch: 2,
    };
    let pruned = prune_once(&store, &cfg, now).await.unwrap();
    for (t, col) in TABLES {
        assert!(
            !exists(&store, &part_name(t, four_days_ago)).await,
            "{t}: 4 days ago kept"
        );
        let five = part_name(t, five_days_ago);
        assert_eq!(exists(&store, &five).await, t == "tracker_states", "{five}");
        let older = n(
            &store,
            &format!(
                "SELECT count(*) FROM {t} WHERE {col} < '{}'{}",
                cutoff.to_rfc3339(),
                late_filter(t)
            ),
        )
        .await;
        // Left: the row of the cutoff's own day, and of tracker_states the 5-day
        // partition kept whole for its late row.
        let same_partition = period_start(same_day, DAY) == period_start(cutoff, DAY);
        let want = u64::from(same_partition) + u64::from(t == "tracker_states");
        assert_eq!(older, want as i64, "{t}: rows older than the limit left");
        let newer = n(
            &store,
            &format!(
                "SELECT count(*) FROM {t} WHERE {col} >= '{}'",
                cutoff.to_rfc3339()
            ),
        )
        .await;
        assert_eq!(newer, 2, "{t}: rows newer than the limit");
        assert!(pruned.iter().any(|(p, _)| p == t), "{t}: {pruned:?}");
    }
    assert_eq!(
        n(
            &store,
            "SELECT count(*) FROM tracker_states WHERE source_id = 999"
        )
        .await,
        1,
        "the late backfilled state was pruned"
    );
}

/// The late backfilled state (source_id 999) is the one row of an expired range
/// retention keeps on purpose.
fn late_filter(table: &str) -> String {
    if table == "tracker_states" {
        " AND source_id <> 999".into()
    } else {
        String::new()
    }
}

/// The migrator of the released schema before partitions (0001 … 0006): how an
/// existing database looks before this version's first start.
fn before_partitions() -> sqlx::migrate::Migrator {
    let mut m = sqlx::migrate!("migrations/postgres");
    let older: Vec<_> = m
        .migrations
        .iter()
        .filter(|x| x.version < 8)
        .cloned()
        .collect();
    m.migrations = Cow::Owned(older);
    m
}

fn migrate_partition(dir: &std::path::Path, extra: &[&str]) -> (bool, String) {
    let out = Command::new(binary())
        .args(["migrate", "--config"])
        .arg(dir.join("wsvault.toml"))
        .arg("--partition")
        .args(extra)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filled_database_converts_resumably_and_the_daemon_writes_into_partitions() {
    let Some(db) = test_databases(Backend::Postgres).await.pop() else {
        return;
    };
    let mut conn = PgConnection::connect(&db.cfg.url).await.unwrap();
    ensure_reader_role(&mut conn).await;
    sqlx::query("GRANT USAGE ON SCHEMA public TO wsvault_reader")
        .execute(&mut conn)
        .await
        .unwrap();
    before_partitions().run(&mut conn).await.unwrap();
    let store = Store::connect(&db.cfg).await.unwrap();
    let now = Utc::now();
    let mut records = Vec::new();
    for d in 0..4 {
        for i in 0..25 {
            records.extend(rows_at(d * 100 + i, now - Age::days(d) - Age::seconds(i)));
        }
    }
    write(&store, &db, records).await;
    let before = counts(&store).await;
    assert_eq!(before, vec![100; 4]);

    // This version's migrations leave filled tables alone; the daemon says how to convert.
    let sim = JsonRpcSim::start(
        "127.0.0.1:0".parse().unwrap(),
        JsonRpcSimConfig {
            interval: Duration::from_millis(50),
            ..JsonRpcSimConfig::default()
        },
    )
    .await
    .unwrap();
    let sources = format!(
        "[[sources]]\nname = \"engine\"\nkind = \"jsonrpc\"\nurl = \"{}\"\ntraffic = true\n\
         requests = [ {{ method = \"GetActiveDoc\", handle = -1, params = [] }} ]\n",
        sim.ws_url()
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg_text = config(&db.cfg.url, "", "", &sources);
    let daemon = Daemon::start(dir.path(), &cfg_text);
    daemon.wait_log("wsvault migrate --partition").await;
    let (_, log) = daemon.terminate().await;
    assert_eq!(
        log.matches("wsvault migrate --partition").count(),
        1,
        "{}",
        tail(&log)
    );
    for (t, _) in TABLES {
        assert!(!partitioned(&store, t).await, "{t} rewritten at start");
    }
    let written = counts(&store).await;

    // One range, then stop: an interrupted conversion.
    let (ok, text) = migrate_partition(dir.path(), &["--ranges", "1"]);
    assert!(ok, "{text}");
    assert!(text.contains("paused"), "{text}");
    assert!(text.contains("tracker_states: copied"), "{text}");
    assert!(!partitioned(&store, "tracker_states").await);
    // The re-run goes on and completes.
    let (ok, text) = migrate_partition(dir.path(), &[]);
    assert!(ok, "{text}");
    assert!(
        text.contains("every history table is partitioned"),
        "{text}"
    );
    for (t, _) in TABLES {
        assert!(partitioned(&store, t).await, "{t} not converted: {text}");
        assert!(
            exists(&store, &format!("{t}_old")).await,
            "{t}_old not kept"
        );
        assert_eq!(
            count(&store, &format!("{t}_old")).await,
            count(&store, t).await,
            "{t}: rows differ from the old table"
        );
    }
    assert_eq!(counts(&store).await, written, "rows lost in the conversion");
    // Ids continue after the old table's: a new state gets a fresh id.
    let max_id = n(&store, "SELECT max(id) FROM tracker_states").await;
    for relation in ["tracker_states", "events", "latest_tracker_states"] {
        as_reader(&mut conn, &format!("SELECT count(*) FROM {relation}"))
            .await
            .unwrap_or_else(|e| panic!("reader cannot read {relation} after conversion: {e}"));
    }
    // A third run has nothing left to do.
    let (ok, text) = migrate_partition(dir.path(), &[]);
    assert!(ok && text.contains("tracker_states: partitioned"), "{text}");

    // The daemon now writes into today's partitions, not the default ones.
    let events_before = count(&store, "events").await;
    let daemon = Daemon::start(dir.path(), &cfg_text);
    wait_count(&store, Some(&daemon), "events", |k| k > events_before).await;
    wait_count(&store, Some(&daemon), "traffic", |k| k > written[3] + 3).await;
    let (_, log) = daemon.terminate().await;
    assert!(
        !log.contains("wsvault migrate --partition"),
        "{}",
        tail(&log)
    );
    let today = period_start(Utc::now(), DAY);
    for t in ["events", "traffic"] {
        assert!(
            count(&store, &part_name(t, today)).await > 0,
            "{t}: nothing in today's partition"
        );
        assert_eq!(
            count(&store, &format!("{t}_default")).await,
            0,
            "{t}_default"
        );
    }
    write(&store, &db, vec![state(5000, Utc::now(), Utc::now())]).await;
    assert!(n(&store, "SELECT max(id) FROM tracker_states").await > max_id);
}
