//! Hard storage faults (issue 16): a SQLite disk that fills up and frees again, several
//! processes migrating one fresh database at the same time, and the permissions of a
//! SQLite database wsvault creates.

use crate::support::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;
use wsvault::record::{Event, Record};
use wsvault::store::{Store, Writer};

/// A size-limited tmpfs mounted for one test; unmounted on drop.
struct TinyDisk {
    dir: tempfile::TempDir,
}

impl TinyDisk {
    /// Mounts `size` of tmpfs on a temp dir; `None` (test skipped) where mounting is
    /// not permitted (not root, no CAP_SYS_ADMIN, a restricted container).
    fn mount(size: &str) -> Option<TinyDisk> {
        let dir = tempfile::tempdir().ok()?;
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "disk-full test skipped: cannot mount a tmpfs here"
            );
            return None;
        }
        Some(TinyDisk { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a filler file until the file system refuses more (ENOSPC).
    fn fill(&self) -> PathBuf {
        use std::io::Write as _;
        let filler = self.path().join("filler");
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0x5a_u8; 16 * 1024];
        loop {
            if let Err(e) = f.write_all(&chunk).and_then(|()| f.sync_all()) {
                assert_eq!(e.raw_os_error(), Some(28), "expected ENOSPC, got {e}");
                break;
            }
        }
        // Byte-sized writes take the last partial page too.
        while f.write_all(&[0]).and_then(|()| f.flush()).is_ok() {
            if f.sync_all().is_err() {
                break;
            }
        }
        filler
    }
}

impl Drop for TinyDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

/// An `events` record with a ~1 KiB payload, so a few thousand outgrow the free space.
fn big_event(n: i64) -> Record {
    let Record::Event(e) = event("disk", n) else {
        unreachable!("event() builds an Event")
    };
    Record::Event(Event {
        payload: format!(r#"{{"n":{n},"pad":"{}"}}"#, "x".repeat(1000)),
        ..e
    })
}

/// Issue 16 point 1: on a full disk the writer retries (like any outage) on a fresh
/// connection, and once space returns it commits again within `retry_max` and stores
/// every record queued meanwhile. Before the fix the held connection was left inside
/// a transaction SQLite had already rolled back: every retry failed with
/// "attempted to call begin_with at non-zero transaction depth", classed permanent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_writer_recovers_after_the_disk_was_full() {
    let Some(disk) = TinyDisk::mount("16m") else {
        return;
    };
    let cfg = storage_config(format!(
        "sqlite://{}",
        disk.path().join("wsvault.db").display()
    ));
    let store = store_for(&cfg).await;
    let (sink, handle) = Writer::spawn(store.clone(), &cfg);
    let stats = handle.stats();

    for n in 0..100 {
        sink.send(big_event(n)).await.unwrap();
    }
    let s = stats.clone();
    wait_until(Duration::from_secs(10), "first commits", || {
        let s = s.clone();
        async move { s.written() >= 100 }
    })
    .await;

    let filler = disk.fill();
    // ~3 MiB more than fits: the WAL must grow into the full disk, while the
    // database and its WAL fit easily once the filler is gone.
    let total = 3_000;
    for n in 100..total {
        sink.send(big_event(n)).await.unwrap();
    }
    let s = stats.clone();
    wait_until(
        Duration::from_secs(10),
        "failed attempts on the full disk",
        || {
            let s = s.clone();
            async move { s.retries.load(Ordering::Relaxed) >= 3 && !s.is_healthy() }
        },
    )
    .await;
    let error = stats.last_error().unwrap_or_default();
    assert!(
        !error.contains("transaction depth"),
        "the retry must start on a clean connection: {error}"
    );

    std::fs::remove_file(&filler).unwrap();
    let progress = || async {
        let written = stats.written();
        let retries = stats.retries.load(Ordering::Relaxed);
        (stats.is_healthy(), written, retries, stats.last_error())
    };
    let what = "recovery after space returned (last: healthy, written, retries, last error)";
    wait_for(Duration::from_secs(15), what, None, progress, |p| {
        p.0 && p.1 >= total as u64
    })
    .await;
    drop(sink);
    let report = tokio::time::timeout(Duration::from_secs(30), handle.join())
        .await
        .expect("writer drains");
    assert_eq!(report.lost, 0, "{report:?}");
    assert_eq!(report.rejected, 0, "{report:?}");
    assert_eq!(count(&store, "events").await, total);
    assert_eq!(count(&store, "rejected").await, 0);
    store.close().await;
}

each_backend!(concurrent_migrations_on_a_fresh_database_all_succeed);
/// Issue 16 point 7: four migrators (separate pools, as four processes) start on one
/// fresh database at the same moment; every one succeeds, and the schema is applied
/// once. Repeated, since a race does not show every time. Both backends.
async fn concurrent_migrations_on_a_fresh_database_all_succeed(backend: Backend) {
    for round in 0..5 {
        for db in test_databases(backend).await {
            let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(4));
            let tasks: Vec<_> = (0..4)
                .map(|_| {
                    let cfg = db.config();
                    let barrier = barrier.clone();
                    tokio::spawn(async move {
                        // Together from the first open: creating the file and
                        // switching it to WAL race as well as the migrations.
                        barrier.wait().await;
                        let store = Store::connect(&cfg).await.map_err(|e| e.to_string())?;
                        let result = store.migrate().await.map_err(|e| e.to_string());
                        store.close().await;
                        result
                    })
                })
                .collect();
            for t in tasks {
                let result = t.await.unwrap();
                assert!(result.is_ok(), "[{} round {round}] {result:?}", db.label);
            }
            let store = Store::connect(&db.cfg).await.unwrap();
            let applied = fetch_cells(&store, "SELECT count(*) FROM _sqlx_migrations").await;
            let expected = std::fs::read_dir(format!(
                "{}/migrations/{}",
                env!("CARGO_MANIFEST_DIR"),
                db.label
            ))
            .unwrap()
            .count() as i64;
            assert_eq!(applied[0][0].i64(), expected, "[{}]", db.label);
            store.close().await;
        }
    }
}

/// Issue 16 point 13 (file modes): a SQLite database wsvault creates, and the `-wal`
/// and `-shm` files beside it, are readable by their owner only, whatever the umask
/// of the process (the records may hold positions and personal data).
#[tokio::test]
async fn a_new_sqlite_database_and_its_wal_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fresh.db");
    let cfg = storage_config(format!("sqlite://{}", path.display()));
    let store = store_for(&cfg).await;
    let report = write_all(&store, &cfg, vec![event("modes", 1)]).await;
    assert_eq!(report.written, 1);
    for suffix in ["", "-wal", "-shm"] {
        let file = PathBuf::from(format!("{}{suffix}", path.display()));
        let mode = std::fs::metadata(&file)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{} has mode {mode:o}", file.display());
    }
    store.close().await;
}
