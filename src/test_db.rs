//! Fresh databases for the library's own tests that need one (`cluster`, `id_slots`):
//! a SQLite file in a temp dir, and a PostgreSQL database created from the admin URL
//! in `WSVAULT_TEST_POSTGRES_URL` and dropped afterwards. Without that variable the
//! PostgreSQL half is skipped with a note on stderr, as in the integration tests.

use crate::config::{RawEvents, StorageConfig};
use crate::store::Store;
use sqlx::Connection as _;
use std::time::Duration;

/// The variable naming the PostgreSQL admin URL.
pub(crate) const PG_ENV: &str = "WSVAULT_TEST_POSTGRES_URL";

/// One fresh, migrated database; dropped (PostgreSQL) or deleted (SQLite) on drop.
pub(crate) struct TestDb {
    pub label: &'static str,
    pub cfg: StorageConfig,
    pub store: Store,
    _dir: Option<tempfile::TempDir>,
    pg_drop: Option<(String, String)>,
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((admin, name)) = self.pg_drop.take() else {
            return;
        };
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
                    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut c).await;
                }
            });
        })
        .join();
    }
}

/// Storage settings for a test database.
pub(crate) fn storage(url: String) -> StorageConfig {
    StorageConfig {
        url,
        batch_size: 500,
        commit_max_rows: crate::config::DEFAULT_COMMIT_MAX_ROWS,
        commit_max_bytes: crate::config::DEFAULT_COMMIT_MAX_BYTES,
        flush_interval: Duration::from_millis(20),
        queue_capacity: 10_000,
        raw_events: RawEvents::Envelope,
        traffic: false,
        busy_timeout: Duration::from_secs(5),
        retry_max: Duration::from_millis(400),
        drain_timeout: Duration::from_secs(30),
        ca_file: None,
        partition: crate::config::DEFAULT_PARTITION,
    }
}

async fn migrated(cfg: &StorageConfig) -> Store {
    let store = Store::connect(cfg)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    store
        .migrate()
        .await
        .unwrap_or_else(|e| panic!("migrate: {e}"));
    store
}

/// A fresh SQLite database file.
pub(crate) async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = storage(format!(
        "sqlite://{}",
        dir.path().join("wsvault-test.db").display()
    ));
    TestDb {
        label: "sqlite",
        store: migrated(&cfg).await,
        cfg,
        _dir: Some(dir),
        pg_drop: None,
    }
}

/// A fresh PostgreSQL database, or `None` (with a note) when the variable is unset.
pub(crate) async fn postgres() -> Option<TestDb> {
    let admin = match std::env::var(PG_ENV) {
        Ok(a) if !a.trim().is_empty() => a.trim().to_string(),
        _ => {
            static NOTICE: std::sync::Once = std::sync::Once::new();
            NOTICE.call_once(|| {
                use std::io::Write as _;
                let _ = writeln!(
                    std::io::stderr(),
                    "PostgreSQL tests skipped: {PG_ENV} is not set"
                );
            });
            return None;
        }
    };
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("{PG_ENV}: cannot connect: {e}"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let name = format!("wsvault_t_{now}_{:08x}", rand::random::<u32>());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
    let _ = conn.close().await;
    let mut url = url::Url::parse(&admin).expect("admin url");
    url.set_path(&format!("/{name}"));
    let cfg = storage(url.to_string());
    Some(TestDb {
        label: "postgres",
        store: migrated(&cfg).await,
        cfg,
        _dir: None,
        pg_drop: Some((admin, name)),
    })
}

/// SQLite, plus PostgreSQL when available.
pub(crate) async fn all() -> Vec<TestDb> {
    let mut dbs = vec![sqlite().await];
    dbs.extend(postgres().await);
    dbs
}

/// Polls `check` every 10 ms until it returns true; panics naming `what` after `limit`.
pub(crate) async fn wait_until<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
