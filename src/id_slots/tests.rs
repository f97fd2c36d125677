//! Id slots against real databases (SQLite always, PostgreSQL when
//! `WSVAULT_TEST_POSTGRES_URL` is set), and ids minted by several processes at once.

use super::*;
use crate::store::format_ts;
use crate::test_db::{self, TestDb};
use chrono::Utc;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Instant;

/// Makes slot `slot` look unrenewed for two hours (instead of waiting an hour).
async fn age(db: &TestDb, slot: u16) {
    if let Some(pool) = db.store.postgres_pool() {
        sqlx::query("UPDATE id_slots SET seen_at = now() - interval '2 hours' WHERE slot = $1")
            .bind(i32::from(slot))
            .execute(pool)
            .await
            .unwrap();
    } else if let Some(pool) = db.store.sqlite_pool() {
        let t = Utc::now() - chrono::TimeDelta::hours(2);
        sqlx::query("UPDATE id_slots SET seen_at = ?1 WHERE slot = ?2")
            .bind(format_ts(&t))
            .bind(i64::from(slot))
            .execute(pool)
            .await
            .unwrap();
    }
}

/// Marks every slot but `slot` as renewed now by some other process.
async fn fresh_except(db: &TestDb, slot: u16) {
    if let Some(pool) = db.store.postgres_pool() {
        sqlx::query("UPDATE id_slots SET seen_at = now(), holder = 'other' WHERE slot <> $1")
            .bind(i32::from(slot))
            .execute(pool)
            .await
            .unwrap();
    } else if let Some(pool) = db.store.sqlite_pool() {
        sqlx::query("UPDATE id_slots SET seen_at = ?1, holder = 'other' WHERE slot <> ?2")
            .bind(format_ts(&Utc::now()))
            .bind(i64::from(slot))
            .execute(pool)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claims_get_distinct_slots() {
    for db in test_db::all().await {
        let tasks: Vec<_> = (0..12)
            .map(|i| {
                let cfg = db.cfg.clone();
                tokio::spawn(async move {
                    let store = Store::connect(&cfg).await.unwrap();
                    let slot = claim(&store, &format!("task {i}"), STALE).await;
                    store.close().await;
                    slot
                })
            })
            .collect();
        let mut slots = HashSet::new();
        for t in tasks {
            let slot = t
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("[{}] {e}", db.label));
            assert!(
                slots.insert(slot.slot),
                "[{}] slot {} twice",
                db.label,
                slot.slot
            );
        }
        assert_eq!(slots.len(), 12, "[{}]", db.label);
    }
}

#[tokio::test]
async fn a_released_slot_is_reused_above_its_high_water_mark() {
    for db in test_db::all().await {
        let first = claim(&db.store, "first", STALE).await.unwrap();
        // The holder minted ids up to one far ahead of the clock (a burst), reported
        // at release.
        let high = first.floor_id + (1_i64 << 40);
        release_with(&db.store, &first, high).await.unwrap();
        let second = claim(&db.store, "second", STALE).await.unwrap();
        assert_eq!(
            second.slot, first.slot,
            "[{}] released slot not reused",
            db.label
        );
        assert!(
            second.floor_id >= high,
            "[{}] floor below the mark",
            db.label
        );
        // A slot held and renewed is never handed out.
        let third = claim(&db.store, "third", STALE).await.unwrap();
        assert_ne!(third.slot, second.slot, "[{}]", db.label);
    }
}

#[tokio::test]
async fn a_slot_unrenewed_for_the_stale_window_moves_and_its_old_holder_learns_it() {
    for db in test_db::all().await {
        let old = claim(&db.store, "old", STALE).await.unwrap();
        let reported = old.floor_id + 12_345;
        renew_with(&db.store, &old, reported).await.unwrap();
        // Every other slot busy (renewed just now), this one unrenewed for two hours:
        // it is the only one a claim may take.
        fresh_except(&db, old.slot).await;
        age(&db, old.slot).await;
        let new = claim(&db.store, "new", STALE).await.unwrap();
        assert_eq!(new.slot, old.slot, "[{}] the stale slot is taken", db.label);
        assert!(new.floor_id >= reported, "[{}]", db.label);
        // The new holder's first ids are above the database's present millisecond.
        let now_ms = Utc::now().timestamp_millis() as u64;
        assert!(crate::ids::millis_of(new.floor_id + 1) + 5_000 >= now_ms);
        let err = renew_with(&db.store, &old, reported).await.unwrap_err();
        assert!(
            matches!(err, IdSlotError::Lost { slot, .. } if slot == old.slot),
            "[{}] {err}",
            db.label
        );
        assert!(err.to_string().contains("claim a new slot"), "{err}");
        // The new holder renews fine.
        renew_with(&db.store, &new, new.floor_id).await.unwrap();
    }
}

#[tokio::test]
async fn a_full_table_is_refused_with_a_clear_message() {
    let db = test_db::sqlite().await;
    let pool = db.store.sqlite_pool().unwrap();
    sqlx::query("UPDATE id_slots SET seen_at = ?1, holder = 'x'")
        .bind(format_ts(&Utc::now()))
        .execute(pool)
        .await
        .unwrap();
    let err = claim(&db.store, "late", STALE).await.unwrap_err();
    assert!(
        err.to_string().contains("every id slot (1024 of them)"),
        "{err}"
    );
}

#[tokio::test]
async fn a_kept_slot_is_renewed_and_released() {
    let db = test_db::sqlite().await;
    let pool = db.store.sqlite_pool().unwrap().clone();
    let slot = claim(&db.store, "kept", STALE).await.unwrap();
    let n = i64::from(slot.slot);
    let claimed_seen: String = sqlx::query_scalar("SELECT seen_at FROM id_slots WHERE slot = ?1")
        .bind(n)
        .fetch_one(&pool)
        .await
        .unwrap();
    let keeper = slot.keep_every(db.store.clone(), Duration::from_millis(30));
    test_db::wait_until(Duration::from_secs(10), "a renewal", || {
        let pool = pool.clone();
        let claimed_seen = claimed_seen.clone();
        async move {
            let seen: String = sqlx::query_scalar("SELECT seen_at FROM id_slots WHERE slot = ?1")
                .bind(n)
                .fetch_one(&pool)
                .await
                .unwrap();
            seen > claimed_seen
        }
    })
    .await;
    assert!(keeper.slot().seen_ms > 0);
    keeper.release().await.unwrap();
    let (holder, seen): (Option<String>, String) =
        sqlx::query_as("SELECT holder, seen_at FROM id_slots WHERE slot = ?1")
            .bind(n)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        (holder, seen.as_str()),
        (None, "0000-01-01T00:00:00.000000Z")
    );
}

#[test]
fn the_horizon_is_half_the_stale_window_after_the_renewal() {
    let slot = IdSlot {
        slot: 3,
        token: 1,
        floor_id: 0,
        seen_ms: 1_000_000,
        stale: Duration::from_secs(3600),
        holder: "h".into(),
    };
    assert_eq!(slot.horizon_ms(), 1_000_000 + 1_800_000);
}

// --- several processes -------------------------------------------------------------

const CHILD_URL: &str = "WSVAULT_ID_CHILD_URL";
const CHILD_DIR: &str = "WSVAULT_ID_CHILD_DIR";
const CHILD_NAME: &str = "WSVAULT_ID_CHILD_NAME";
const CHILD_COUNT: &str = "WSVAULT_ID_CHILD_COUNT";

/// Not a test on its own: [`ids_minted_by_several_processes_never_collide`] runs this
/// binary again with only this test selected, once per child process. It claims a
/// slot, writes `NAME.slot`, waits for `go`, mints, and writes the ids to `NAME.ids`.
#[test]
#[ignore = "run as a child process by ids_minted_by_several_processes_never_collide"]
fn mint_child() {
    let (Ok(url), Ok(dir), Ok(name), Ok(count)) = (
        std::env::var(CHILD_URL),
        std::env::var(CHILD_DIR),
        std::env::var(CHILD_NAME),
        std::env::var(CHILD_COUNT),
    ) else {
        return;
    };
    let dir = Path::new(&dir);
    let count: usize = count.parse().expect("count");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let slot = rt.block_on(async {
        let store = Store::connect(&test_db::storage(url))
            .await
            .expect("connect");
        let slot = claim_and_install(&store, &format!("test child {name}"))
            .await
            .expect("claim");
        store.close().await;
        slot
    });
    std::fs::write(dir.join(format!("{name}.slot")), slot.slot.to_string()).expect("slot file");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !dir.join("go").exists() {
        assert!(Instant::now() < deadline, "no go signal");
        std::thread::sleep(Duration::from_micros(200));
    }
    let ids: Vec<i64> = (0..count).map(|_| crate::ids::next_id()).collect();
    let bytes: Vec<u8> = ids.iter().flat_map(|id| id.to_le_bytes()).collect();
    std::fs::write(dir.join(format!("{name}.ids")), bytes).expect("ids file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_minted_by_several_processes_never_collide() {
    const CHILDREN: usize = 4;
    const COUNT: usize = 300_000;
    let exe = std::env::current_exe().expect("test binary");
    for db in test_db::all().await {
        let dir = tempfile::tempdir().unwrap();
        let children: Vec<_> = (0..CHILDREN)
            .map(|i| {
                std::process::Command::new(&exe)
                    .args([
                        "id_slots::tests::mint_child",
                        "--exact",
                        "--ignored",
                        "--test-threads",
                        "1",
                    ])
                    .env(CHILD_URL, &db.cfg.url)
                    .env(CHILD_DIR, dir.path())
                    .env(CHILD_NAME, format!("c{i}"))
                    .env(CHILD_COUNT, COUNT.to_string())
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .expect("spawn child")
            })
            .collect();
        let path = dir.path().to_path_buf();
        test_db::wait_until(
            Duration::from_secs(60),
            "every child claimed a slot",
            || {
                let path = path.clone();
                async move { (0..CHILDREN).all(|i| path.join(format!("c{i}.slot")).exists()) }
            },
        )
        .await;
        std::fs::write(dir.path().join("go"), b"").unwrap();
        for mut child in children {
            let status = tokio::task::spawn_blocking(move || child.wait())
                .await
                .unwrap()
                .unwrap();
            assert!(status.success(), "[{}] child failed: {status}", db.label);
        }

        let mut all = HashSet::with_capacity(CHILDREN * COUNT);
        let mut stamp_owners: HashMap<i64, usize> = HashMap::new();
        let mut slots = HashSet::new();
        for i in 0..CHILDREN {
            let slot: u16 = std::fs::read_to_string(dir.path().join(format!("c{i}.slot")))
                .unwrap()
                .parse()
                .unwrap();
            assert!(
                slots.insert(slot),
                "[{}] slot {slot} claimed twice",
                db.label
            );
            let bytes = std::fs::read(dir.path().join(format!("c{i}.ids"))).unwrap();
            let ids: Vec<i64> = bytes
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                .collect();
            assert_eq!(ids.len(), COUNT);
            assert!(ids.windows(2).all(|w| w[0] < w[1]), "not increasing");
            for id in ids {
                assert!(id > 0);
                assert_eq!(crate::ids::node_of(id), slot);
                assert!(all.insert(id), "[{}] id {id} minted twice", db.label);
                // The stamp (milliseconds and counter) without the node number.
                let stamp = id >> crate::ids::NODE_BITS;
                let owners = stamp_owners.entry(stamp).or_default();
                *owners |= 1 << i;
            }
        }
        // The processes really minted in the same milliseconds with the same counter
        // values: only the node numbers kept those ids apart.
        let shared = stamp_owners.values().filter(|m| m.count_ones() > 1).count();
        assert!(
            shared > 0,
            "[{}] the children never minted the same stamp; the test proves nothing",
            db.label
        );
        eprintln!(
            "[{}] {} ids from {CHILDREN} processes, {shared} stamps minted by more than one, no collision",
            db.label,
            all.len()
        );
    }
}
