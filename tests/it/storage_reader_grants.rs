//! README's read-only analyst role on PostgreSQL: `wsvault migrate` keeps
//! `wsvault_reader`'s `SELECT` working on tables a later migration creates, while the
//! role still cannot write. PostgreSQL only (SQLite read-only access is a file mode).

use crate::support::*;
use sqlx::{Connection as _, PgConnection};

/// Creates the cluster-wide role when absent; tolerates a concurrent creation.
pub(crate) async fn ensure_reader_role(conn: &mut PgConnection) {
    sqlx::query(
        "DO $$ BEGIN
           IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'wsvault_reader') THEN
             CREATE ROLE wsvault_reader NOLOGIN;
           END IF;
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
         END $$",
    )
    .execute(&mut *conn)
    .await
    .unwrap_or_else(|e| {
        panic!("cannot create role wsvault_reader ({e}); .ci/run creates it for the test role")
    });
}

/// Runs `sql` as `wsvault_reader` in a transaction that is rolled back.
pub(crate) async fn as_reader(conn: &mut PgConnection, sql: &str) -> Result<(), sqlx::Error> {
    let mut tx = conn.begin().await?;
    sqlx::query("SET LOCAL ROLE wsvault_reader")
        .execute(&mut *tx)
        .await?;
    let r = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut *tx)
        .await
        .map(|_| ());
    tx.rollback().await?;
    r
}

#[tokio::test]
async fn migrate_keeps_the_reader_role_able_to_select_new_tables() {
    let Some(db) = test_databases(Backend::Postgres).await.pop() else {
        return; // skip notice printed by test_databases
    };
    let mut conn = PgConnection::connect(&db.cfg.url).await.unwrap();
    ensure_reader_role(&mut conn).await;
    // The schema itself: part of README's one-time setup, not of migrate.
    sqlx::query("GRANT USAGE ON SCHEMA public TO wsvault_reader")
        .execute(&mut conn)
        .await
        .unwrap();

    let store = store_for(&db.cfg).await;
    for relation in ["session_events", "tracker_states", "latest_tracker_states"] {
        as_reader(&mut conn, &format!("SELECT count(*) FROM {relation}"))
            .await
            .unwrap_or_else(|e| panic!("reader cannot read {relation} after migrate: {e}"));
    }

    // A later migration creates a table (no default privileges are set here: the
    // grant must come from migrate itself).
    sqlx::query("CREATE TABLE later_partition (id bigint)")
        .execute(&mut conn)
        .await
        .unwrap();
    let before = as_reader(&mut conn, "SELECT count(*) FROM later_partition").await;
    assert!(before.is_err(), "a new table is readable before migrate");
    store.migrate().await.unwrap();
    let granted = fetch_cells(
        &store,
        "SELECT count(*) FROM information_schema.role_table_grants \
         WHERE grantee = 'wsvault_reader' AND table_name = 'later_partition' \
           AND privilege_type = 'SELECT'",
    )
    .await;
    assert_eq!(granted[0][0].i64(), 1, "no SELECT grant on the new table");
    as_reader(&mut conn, "SELECT count(*) FROM later_partition")
        .await
        .unwrap_or_else(|e| panic!("reader cannot read a table created by a later migration: {e}"));

    let write = as_reader(
        &mut conn,
        "INSERT INTO session_events (id, source, event, occurred_at) VALUES (1, 'x', 'opened', now())",
    )
    .await;
    let err = write.expect_err("reader could write").to_string();
    assert!(err.contains("permission denied"), "unexpected error: {err}");
}
