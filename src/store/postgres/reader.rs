//! Read access for analysts survives migrations.
//!
//! README's setup gives a `wsvault_reader` role `SELECT` on the schema's tables and
//! views plus default privileges for new ones. Default privileges only cover objects
//! created by the role they were set for, so a migration run by another role (an
//! administrator running `wsvault migrate`), or a view dropped and re-created, would
//! silently lock the analysts out. After every migration run the owner therefore
//! grants `SELECT` again on everything it owns in its schema — only when the role
//! exists, so installations without it see no difference.

use sqlx::postgres::PgPool;

/// Grants `SELECT` on every table and view of the current schema that the migrating
/// role owns (or is a member of the owner of) to `wsvault_reader`, the role README
/// tells operators to create for read-only SQL access, when that role exists.
/// Objects of other owners are left alone: granting on them would fail.
///
/// Several daemons start (and migrate) at once: two concurrent `GRANT`s on one table
/// fail with "tuple concurrently updated". So the grants run in one transaction
/// under a transaction-scoped advisory lock (released at commit, so it also works
/// behind PgBouncer's transaction pooling), and only where the privilege is missing.
pub(crate) async fn regrant(pool: &PgPool) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('wsvault.reader_grants'))")
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        r#"
DO $$
DECLARE
    r record;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'wsvault_reader') THEN
        RETURN;
    END IF;
    FOR r IN
        SELECT c.relname
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = current_schema()
          AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
          AND pg_has_role(c.relowner, 'USAGE')
          AND NOT has_table_privilege('wsvault_reader', c.oid, 'SELECT')
    LOOP
        EXECUTE format('GRANT SELECT ON %I.%I TO wsvault_reader', current_schema(), r.relname);
    END LOOP;
END
$$"#,
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}
