//! Several [`Cluster`]s (distinct node names, each with its own pool) against one real
//! PostgreSQL database, with short ttls. Skipped, with a note, without
//! `WSVAULT_TEST_POSTGRES_URL`.

use super::*;
use crate::store::Store;
use crate::test_db::{self, TestDb};
use std::collections::BTreeMap;

fn cfg(node: &str, ttl_ms: u64) -> ClusterConfig {
    ClusterConfig {
        node: node.into(),
        lease_ttl: Duration::from_millis(ttl_ms),
        renew_every: Duration::from_millis(ttl_ms / 3),
    }
}

fn sources(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("src-{i}")).collect()
}

async fn pool(db: &TestDb) -> PgPool {
    let store = Store::connect(&db.cfg).await.unwrap();
    store.postgres_pool().unwrap().clone()
}

async fn node(db: &TestDb, name: &str, ttl_ms: u64, n: usize) -> Cluster {
    Cluster::register(pool(db).await, &cfg(name, ttl_ms), &sources(n))
        .await
        .unwrap_or_else(|e| panic!("register {name}: {e}"))
}

/// (holder, term, unexpired) of every lease row, by source.
async fn leases(db: &TestDb) -> BTreeMap<String, (Option<String>, i64, bool)> {
    let rows: Vec<(String, Option<String>, i64, bool)> = sqlx::query_as(
        "SELECT source, holder, term, coalesce(expires_at > now(), false) FROM leases",
    )
    .fetch_all(db.store.postgres_pool().unwrap())
    .await
    .unwrap();
    rows.into_iter()
        .map(|(s, h, t, live)| (s, (h, t, live)))
        .collect()
}

/// How many unexpired leases each node holds, by the database.
async fn holdings(db: &TestDb) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for (holder, _, live) in leases(db).await.into_values() {
        if let (Some(h), true) = (holder, live) {
            *out.entry(h).or_default() += 1;
        }
    }
    out
}

/// Ticks every node in turn until a round changes nothing.
async fn settle(nodes: &mut [&mut Cluster]) {
    for _ in 0..10 {
        let mut changed = false;
        for n in nodes.iter_mut() {
            let t = n.tick().await.unwrap();
            changed |= !t.start.is_empty() || !t.stop.is_empty() || !t.handover.is_empty();
        }
        if !changed {
            return;
        }
    }
    panic!("the nodes did not settle in 10 rounds");
}

#[tokio::test]
async fn three_nodes_share_six_sources_two_each() {
    let Some(db) = test_db::postgres().await else {
        return;
    };
    let (mut a, mut b, mut c) = (
        node(&db, "a", 3000, 6).await,
        node(&db, "b", 3000, 6).await,
        node(&db, "c", 3000, 6).await,
    );
    let first = a.tick().await.unwrap();
    assert_eq!((first.live_nodes, first.cap, first.start.len()), (3, 2, 2));
    assert!(first.start.iter().all(|s| s.change == Change::ClaimedNew));
    settle(&mut [&mut a, &mut b, &mut c]).await;
    for n in [&a, &b, &c] {
        assert_eq!(n.held().len(), 2, "{} holds {:?}", n.node(), n.held());
    }
    let by_db = holdings(&db).await;
    assert_eq!(
        by_db,
        BTreeMap::from([("a".into(), 2), ("b".into(), 2), ("c".into(), 2)])
    );
    // Every source held once, and each node's local view is what the database says.
    for n in [&a, &b, &c] {
        for l in n.held() {
            let (holder, term, live) = &leases(&db).await[&l.source];
            assert_eq!(
                (holder.as_deref(), *term, *live),
                (Some(n.node()), l.term, true)
            );
            assert_eq!(n.fence_view().term(&l.source), Some(l.term));
        }
    }
    // `wsvault status` shows each source's holder, term and expiry, and each node.
    let report = crate::ops::status::gather(&db.store, &sources(6))
        .await
        .unwrap();
    let text = crate::ops::status::render(&report, Utc::now());
    for l in a.held() {
        let line = format!("lease: held by a, term {}, expires ", l.term);
        let block = text
            .split("\nsource ")
            .find(|b| b.starts_with(&format!("{}:", l.source)))
            .unwrap_or_else(|| panic!("no block for {} in:\n{text}", l.source));
        assert!(block.contains(&line), "{line:?} not in:\n{block}");
    }
    assert!(text.contains("\nnodes:\n"), "{text}");
    for name in ["a", "b", "c"] {
        assert!(
            text.contains(&format!("  {name} (host ")) && text.contains("last heartbeat"),
            "{name} missing in:\n{text}"
        );
    }
    a.shutdown().await.unwrap();
    let text = crate::ops::status::render(
        &crate::ops::status::gather(&db.store, &sources(6))
            .await
            .unwrap(),
        Utc::now(),
    );
    assert!(text.contains("released (term 1), free to claim"), "{text}");
    assert!(
        text.contains("  a (host ") && text.contains(": stopped "),
        "{text}"
    );
}

#[tokio::test]
async fn a_dead_nodes_sources_are_taken_over_after_expiry_and_it_stops_first() {
    let Some(db) = test_db::postgres().await else {
        return;
    };
    let ttl = 3000;
    let pg = db.store.postgres_pool().unwrap().clone();
    let (mut a, mut b) = (node(&db, "a", ttl, 4).await, node(&db, "b", ttl, 4).await);
    settle(&mut [&mut a, &mut b]).await;
    let a_held = a.held();
    assert_eq!(a_held.len(), 2);
    let a_expiry: DateTime<Utc> =
        sqlx::query_scalar("SELECT max(expires_at) FROM leases WHERE holder = 'a'")
            .fetch_one(&pg)
            .await
            .unwrap();
    // `a` stops renewing (frozen or cut off). Its own deadline comes first: when it
    // passes, the database still has the leases as a's, so a stops recording before
    // anyone can take over.
    let deadline = a.next_deadline().unwrap();
    // b goes on renewing meanwhile (its own deadline may come before a's, depending
    // on which of them renewed last while settling).
    while Instant::now() < deadline {
        let t = b.tick().await.unwrap();
        assert!(
            t.stop.is_empty(),
            "b lost its own leases while a froze: {t:?}"
        );
        let left = deadline.saturating_duration_since(Instant::now());
        tokio::time::sleep(left.min(Duration::from_millis(200))).await;
    }
    let lost = a.expire_local(Instant::now());
    let still_valid: bool =
        sqlx::query_scalar("SELECT bool_and(expires_at > now()) FROM leases WHERE holder = 'a'")
            .fetch_one(&pg)
            .await
            .unwrap();
    assert!(
        still_valid,
        "a's leases expired in the database before a gave them up"
    );
    assert_eq!(lost.len(), 2);
    assert!(lost.iter().all(|l| l.change == Change::Expired));
    assert!(a.held().is_empty() && a.fence_view().term(&a_held[0].source).is_none());
    // b keeps ticking and takes both over once they expired by the database clock.
    let until = Instant::now() + Duration::from_secs(15);
    let mut starts = Vec::new();
    while b.held().len() < 4 {
        assert!(Instant::now() < until, "b never took over: {:?}", b.held());
        let t = b.tick().await.unwrap();
        assert!(t.stop.is_empty(), "b lost its own leases: {t:?}");
        starts.extend(t.start);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(starts.len(), 2, "{starts:?}");
    for acq in &starts {
        let before = a_held
            .iter()
            .find(|l| l.source == acq.lease.source)
            .unwrap();
        assert_eq!(acq.change, Change::TakenOver);
        assert_eq!(acq.previous_holder.as_deref(), Some("a"));
        assert_eq!(acq.previous_term, before.term);
        assert_eq!(acq.lease.term, before.term + 1);
        assert!(acq.follows_another_holder());
        // Never before the old lease expired, by the database clock.
        let acquired: DateTime<Utc> =
            sqlx::query_scalar("SELECT acquired_at FROM leases WHERE source = $1")
                .bind(&acq.lease.source)
                .fetch_one(&pg)
                .await
                .unwrap();
        assert!(
            acquired >= a_expiry,
            "taken at {acquired}, a's lease ran to {a_expiry}"
        );
    }
}

#[tokio::test]
async fn a_joining_node_gets_the_extra_sources_handed_over() {
    let Some(db) = test_db::postgres().await else {
        return;
    };
    let (mut a, mut b) = (node(&db, "a", 5000, 6).await, node(&db, "b", 5000, 6).await);
    settle(&mut [&mut a, &mut b]).await;
    assert_eq!((a.held().len(), b.held().len()), (3, 3));
    let mut c = node(&db, "c", 5000, 6).await;
    // c finds nothing free: the sources stay with a and b until they let go.
    assert!(c.tick().await.unwrap().start.is_empty());
    let ta = a.tick().await.unwrap();
    let tb = b.tick().await.unwrap();
    assert_eq!((ta.cap, ta.handover.len(), tb.handover.len()), (2, 1, 1));
    // While the sessions close, the handed-over leases stay held and renewed: no
    // source can have two holders (or two live connections) at once.
    assert!(c.tick().await.unwrap().start.is_empty());
    assert!(
        a.tick().await.unwrap().handover.is_empty(),
        "handed over twice"
    );
    let moving = [ta.handover[0].clone(), tb.handover[0].clone()];
    for l in &moving {
        let (holder, _, live) = &leases(&db).await[&l.source];
        assert!(*live && holder.is_some());
    }
    assert!(a.release(&moving[0].source).await.unwrap());
    assert!(b.release(&moving[1].source).await.unwrap());
    let tc = c.tick().await.unwrap();
    assert_eq!(tc.start.len(), 2, "{tc:?}");
    for acq in &tc.start {
        assert_eq!(acq.change, Change::ClaimedReleased);
        assert!(moving.iter().any(|m| m.source == acq.lease.source
            && acq.previous_term == m.term
            && acq.lease.term == m.term + 1));
    }
    settle(&mut [&mut a, &mut b, &mut c]).await;
    assert_eq!(
        holdings(&db).await,
        BTreeMap::from([("a".into(), 2), ("b".into(), 2), ("c".into(), 2)])
    );
}

#[tokio::test]
async fn a_fourth_node_gets_a_share_of_six() {
    let Some(db) = test_db::postgres().await else {
        return;
    };
    let mut a = node(&db, "a", 5000, 6).await;
    let mut b = node(&db, "b", 5000, 6).await;
    let mut c = node(&db, "c", 5000, 6).await;
    settle(&mut [&mut a, &mut b, &mut c]).await;
    let mut d = node(&db, "d", 5000, 6).await;
    // One round: the richest node (a, by name among equals) hands one over.
    let mut released = 0;
    for n in [&mut a, &mut b, &mut c, &mut d] {
        let t = n.tick().await.unwrap();
        for l in t.handover {
            assert!(n.release(&l.source).await.unwrap());
            released += 1;
        }
    }
    assert_eq!(released, 1, "exactly one source moves");
    settle(&mut [&mut a, &mut b, &mut c, &mut d]).await;
    let by_db = holdings(&db).await;
    assert_eq!(by_db.values().sum::<usize>(), 6);
    assert_eq!(by_db.get("d"), Some(&1), "{by_db:?}");
    assert!(by_db.values().all(|n| (1..=2).contains(n)), "{by_db:?}");
}

#[tokio::test]
async fn shutdown_releases_at_once_and_another_node_claims_immediately() {
    let Some(db) = test_db::postgres().await else {
        return;
    };
    // A long ttl: anything that moves within it moved because of the release.
    let ttl = 30_000;
    let (mut a, mut b) = (node(&db, "a", ttl, 4).await, node(&db, "b", ttl, 4).await);
    settle(&mut [&mut a, &mut b]).await;
    let a_held = a.held();
    let started = Instant::now();
    assert_eq!(a.shutdown().await.unwrap(), 2);
    let t = b.tick().await.unwrap();
    let moved = started.elapsed();
    assert_eq!((t.live_nodes, t.cap, t.start.len()), (1, 4, 2), "{t:?}");
    assert!(t.start.iter().all(|s| s.change == Change::ClaimedReleased));
    assert!(
        moved < Duration::from_secs(5),
        "took {moved:?} with a ttl of {ttl} ms"
    );
    for l in a_held {
        assert_eq!(
            leases(&db).await[&l.source],
            (Some("b".to_string()), l.term + 1, true)
        );
    }
    // A clean stop frees the name at once.
    node(&db, "a", ttl, 4).await;
}

#[tokio::test]
async fn a_second_live_node_with_the_same_name_is_refused() {
    let Some(db) = test_db::postgres().await else {
        return;
    };
    let ttl = 2000;
    let mut a = node(&db, "same", ttl, 2).await;
    a.tick().await.unwrap();
    let err = Cluster::register(pool(&db).await, &cfg("same", ttl), &sources(2))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ClusterError::NodeNameTaken { .. }), "{text}");
    for needle in [
        "another wsvault daemon is running as node `same`",
        &format!("pid {}", std::process::id()),
        "give every daemon its own [cluster] node name",
    ] {
        assert!(text.contains(needle), "{needle:?} not in: {text}");
    }
    // Once `same` missed its heartbeats for the ttl (it died), the name is free; the
    // old instance, should it wake, learns it was superseded and gives up everything.
    let pool = db.store.postgres_pool().unwrap().clone();
    test_db::wait_until(Duration::from_secs(10), "the old node to go stale", || {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, bool>(
                "SELECT last_seen_at <= now() - interval '2000 milliseconds' FROM nodes \
                 WHERE node = 'same'",
            )
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    })
    .await;
    let mut again = node(&db, "same", ttl, 2).await;
    again.tick().await.unwrap();
    match a.tick().await {
        Err(ClusterError::Superseded { node, .. }) => assert_eq!(node, "same"),
        other => panic!("expected Superseded, got {other:?}"),
    }
    assert!(a.held().is_empty());
}

#[tokio::test]
async fn fencing_finds_a_lease_lost_to_a_takeover() {
    let Some(db) = test_db::postgres().await else {
        return;
    };
    let ttl = 2000;
    let mut a = node(&db, "a", ttl, 1).await;
    a.tick().await.unwrap();
    let lease = a.held().pop().unwrap();
    let held = vec![(lease.source.clone(), lease.term)];
    let pg = db.store.postgres_pool().unwrap();

    // While a holds it, a batch transaction passes the fence and keeps a share lock:
    // a takeover cannot commit before the batch does.
    let mut batch = pg.begin().await.unwrap();
    assert!(fence(&mut batch, "a", &held).await.unwrap().is_empty());
    let mut other = pg.begin().await.unwrap();
    sqlx::query("SET LOCAL lock_timeout = '200ms'")
        .execute(&mut *other)
        .await
        .unwrap();
    let blocked = sqlx::query("UPDATE leases SET holder = 'b', term = term + 1 WHERE source = $1")
        .bind(&lease.source)
        .execute(&mut *other)
        .await;
    assert!(blocked.is_err(), "a takeover went through a fenced batch");
    drop(other);
    batch.commit().await.unwrap();

    // a freezes past the ttl; b takes over.
    let pool_b = pool(&db).await;
    let mut b = Cluster::register(pool_b, &cfg("b", ttl), &sources(1))
        .await
        .unwrap();
    let pgc = pg.clone();
    test_db::wait_until(Duration::from_secs(10), "a's lease to expire", || {
        let pg = pgc.clone();
        async move {
            sqlx::query_scalar::<_, bool>("SELECT bool_and(expires_at <= now()) FROM leases")
                .fetch_one(&pg)
                .await
                .unwrap()
        }
    })
    .await;
    let t = b.tick().await.unwrap();
    assert_eq!(t.start.len(), 1);
    // a wakes before its cluster loop noticed: its writer's next batch is fenced.
    let view_before = a.fence_view();
    assert_eq!(view_before.term(&lease.source), Some(lease.term));
    let mut conn = pg.acquire().await.unwrap();
    let mut tx = sqlx::Connection::begin(&mut *conn).await.unwrap();
    let src = lease.source.clone();
    let a_rows = [(src.clone(), None), (src.clone(), Some(lease.term))];
    let lost = fence_batch(&mut tx, "a", &view_before, &a_rows)
        .await
        .unwrap();
    assert_eq!(lost, a_rows.to_vec());
    // b's own batches pass under the new term.
    let b_held = vec![(src.clone(), lease.term + 1)];
    assert!(fence(&mut tx, "b", &b_held).await.unwrap().is_empty());
    // Rows stamped with an earlier term are fenced even on the node that holds the
    // source now: they were built by a session of a lease that has ended.
    let b_rows = [
        (src.clone(), None),
        (src.clone(), Some(lease.term)),
        (src.clone(), Some(lease.term + 1)),
    ];
    let lost = fence_batch(&mut tx, "b", &b.fence_view(), &b_rows)
        .await
        .unwrap();
    assert_eq!(lost, vec![(src.clone(), Some(lease.term))]);
    tx.rollback().await.unwrap();
    // a's next tick reports the loss and who has it now; the view forgets it.
    let ta = a.tick().await.unwrap();
    assert_eq!(ta.stop.len(), 1, "{ta:?}");
    let gone = &ta.stop[0];
    assert!(matches!(gone.change, Change::Lost | Change::Expired));
    assert_eq!(view_before.term(&lease.source), None);
    // Metric helpers accept the count (no recorder installed here: a no-op).
    metrics::fenced_records(&lease.source, 3);
}

#[tokio::test]
async fn terms_grow_at_every_change_of_holder() {
    let Some(db) = test_db::postgres().await else {
        return;
    };
    let ttl = 2000;
    let mut a = node(&db, "a", ttl, 1).await;
    let mut b = node(&db, "b", ttl, 1).await;
    let mut terms = Vec::new();
    let term_now = |db: &TestDb| {
        let pg = db.store.postgres_pool().unwrap().clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT term FROM leases WHERE source = 'src-1'")
                .fetch_one(&pg)
                .await
                .unwrap()
        }
    };
    assert_eq!(term_now(&db).await, 0, "a fresh lease row starts at term 0");
    // Claim (a), renewals keep the term, release keeps it, claim (b) raises it.
    a.tick().await.unwrap();
    terms.push(term_now(&db).await);
    a.tick().await.unwrap();
    assert_eq!(term_now(&db).await, terms[0], "a renewal changed the term");
    a.release("src-1").await.unwrap();
    assert_eq!(term_now(&db).await, terms[0], "a release changed the term");
    b.tick().await.unwrap();
    terms.push(term_now(&db).await);
    // Takeover after expiry (b stops renewing), by a.
    let pg = db.store.postgres_pool().unwrap().clone();
    test_db::wait_until(Duration::from_secs(10), "b's lease to expire", || {
        let pg = pg.clone();
        async move {
            sqlx::query_scalar::<_, bool>(
                "SELECT expires_at <= now() FROM leases WHERE source = 'src-1'",
            )
            .fetch_one(&pg)
            .await
            .unwrap()
        }
    })
    .await;
    let t = a.tick().await.unwrap();
    assert_eq!(t.start.len(), 1, "{t:?}");
    terms.push(term_now(&db).await);
    // b learns it lost the lease; a gives it back to b through a shutdown.
    let tb = b.tick().await.unwrap();
    assert_eq!(tb.stop.len(), 1);
    a.shutdown().await.unwrap();
    b.tick().await.unwrap();
    terms.push(term_now(&db).await);
    assert_eq!(terms, [1, 2, 3, 4], "terms: {terms:?}");
}

#[tokio::test]
async fn removed_sources_are_handed_back_and_new_ones_get_rows() {
    let Some(db) = test_db::postgres().await else {
        return;
    };
    let mut a = node(&db, "a", 5000, 2).await;
    a.tick().await.unwrap();
    assert_eq!(a.held().len(), 2);
    let gone = a.set_sources(&["src-1".to_string(), "src-9".to_string()]);
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].source, "src-2");
    let t = a.tick().await.unwrap();
    assert_eq!(t.start.len(), 1, "{t:?}");
    assert_eq!(t.start[0].lease.source, "src-9");
    assert!(a.release("src-2").await.unwrap());
    let rows = leases(&db).await;
    assert_eq!(rows["src-2"].0, None);
    assert_eq!(
        a.held()
            .iter()
            .map(|l| l.source.as_str())
            .collect::<Vec<_>>(),
        ["src-1", "src-9"]
    );
}

#[tokio::test]
async fn the_reader_role_can_read_the_cluster_tables() {
    let Some(db) = test_db::postgres().await else {
        return;
    };
    let pg = db.store.postgres_pool().unwrap();
    let created = sqlx::query(
        "DO $$ BEGIN
           IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'wsvault_reader') THEN
             CREATE ROLE wsvault_reader NOLOGIN;
           END IF;
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
         END $$",
    )
    .execute(pg)
    .await;
    if created.is_err() {
        eprintln!("reader role check skipped: this role may not create wsvault_reader");
        return;
    }
    db.store.migrate().await.unwrap();
    for table in ["leases", "nodes", "id_slots"] {
        let granted: bool =
            sqlx::query_scalar("SELECT has_table_privilege('wsvault_reader', $1, 'SELECT')")
                .bind(table)
                .fetch_one(pg)
                .await
                .unwrap();
        assert!(granted, "wsvault_reader cannot read {table}");
    }
}

// --- the loop as a task -------------------------------------------------------------

/// Waits (at most `limit`) for `n` events matching `want`, recording when each came.
async fn collect(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Event>,
    n: usize,
    limit: Duration,
    want: impl Fn(&Event) -> bool,
) -> Vec<(Instant, Event)> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut out = Vec::new();
    while out.len() < n {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(e)) if want(&e) => out.push((Instant::now(), e)),
            Ok(Some(_)) => {}
            Ok(None) => panic!("the cluster loop ended; got {out:?}"),
            Err(_) => panic!(
                "timed out after {limit:?} with {} of {n} events: {out:?}",
                out.len()
            ),
        }
    }
    out
}

fn is_start(e: &Event) -> bool {
    matches!(e, Event::Start(_))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_the_database_stops_before_another_takes_over_and_rejoins() {
    let Some(db) = test_db::postgres().await else {
        return;
    };
    let ttl = 3000;
    let url = url::Url::parse(&db.cfg.url).unwrap();
    let upstream = (url.host_str().unwrap(), url.port().unwrap_or(5432));
    let upstream = tokio::net::lookup_host(upstream)
        .await
        .unwrap()
        .next()
        .unwrap();
    let proxy = crate::sim::proxy::TcpProxy::start(upstream).await.unwrap();
    let mut via = url.clone();
    via.set_host(Some("127.0.0.1")).unwrap();
    via.set_port(Some(proxy.addr().port())).unwrap();
    let pool_a = Store::connect(&test_db::storage(via.to_string()))
        .await
        .unwrap()
        .postgres_pool()
        .unwrap()
        .clone();
    let a = Cluster::register(pool_a, &cfg("a", ttl), &sources(4))
        .await
        .unwrap();
    let (ha, mut ea) = spawn(a);
    collect(&mut ea, 4, Duration::from_secs(10), is_start).await;
    let b = node(&db, "b", ttl, 4).await;
    let (hb, mut eb) = spawn(b);
    // b joins: a hands two over, b takes them.
    let handovers = collect(&mut ea, 2, Duration::from_secs(10), |e| {
        matches!(e, Event::Handover(_))
    })
    .await;
    for (_, e) in &handovers {
        if let Event::Handover(l) = e {
            ha.release(&l.source);
        }
    }
    collect(&mut eb, 2, Duration::from_secs(10), is_start).await;

    // Cut a off. It must stop recording before b can take over.
    let cut_at = Instant::now();
    proxy.cut();
    let stops = collect(&mut ea, 2, Duration::from_secs(10), |e| {
        matches!(e, Event::Stop(_))
    })
    .await;
    let a_stopped = stops.iter().map(|(t, _)| *t).max().unwrap();
    let still_valid: bool =
        sqlx::query_scalar("SELECT bool_and(expires_at > now()) FROM leases WHERE holder = 'a'")
            .fetch_one(db.store.postgres_pool().unwrap())
            .await
            .unwrap();
    assert!(
        still_valid,
        "a's leases expired in the database before a stopped"
    );
    for (_, e) in &stops {
        let Event::Stop(l) = e else { unreachable!() };
        assert_eq!(l.change, Change::Expired);
    }
    let starts = collect(&mut eb, 2, Duration::from_secs(10), is_start).await;
    let b_started = starts.iter().map(|(t, _)| *t).min().unwrap();
    assert!(a_stopped < b_started, "b started before a stopped");
    for (_, e) in &starts {
        let Event::Start(acq) = e else { unreachable!() };
        assert_eq!(acq.change, Change::TakenOver);
        assert_eq!(acq.previous_holder.as_deref(), Some("a"));
    }
    eprintln!(
        "ttl {ttl} ms: a stopped {:?} after the cut, b took over {:?} after it",
        a_stopped - cut_at,
        b_started - cut_at
    );

    // The line comes back: a rejoins as a normal node and gets its share again.
    proxy.restore();
    let handovers = collect(&mut eb, 2, Duration::from_secs(10), |e| {
        matches!(e, Event::Handover(_))
    })
    .await;
    for (_, e) in &handovers {
        if let Event::Handover(l) = e {
            hb.release(&l.source);
        }
    }
    collect(&mut ea, 2, Duration::from_secs(10), is_start).await;
    assert_eq!(
        holdings(&db).await,
        BTreeMap::from([("a".into(), 2), ("b".into(), 2)])
    );
    hb.shutdown().await.unwrap();
    ha.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_moves_the_sources_within_one_renewal() {
    let Some(db) = test_db::postgres().await else {
        return;
    };
    // A long ttl (renewal every 2 s): the move must not wait for it.
    let ttl = 6000;
    let (ha, mut ea) = spawn(node(&db, "a", ttl, 4).await);
    collect(&mut ea, 4, Duration::from_secs(10), is_start).await;
    let (hb, mut eb) = spawn(node(&db, "b", ttl, 4).await);
    let handovers = collect(&mut ea, 2, Duration::from_secs(10), |e| {
        matches!(e, Event::Handover(_))
    })
    .await;
    for (_, e) in &handovers {
        if let Event::Handover(l) = e {
            ha.release(&l.source);
        }
    }
    collect(&mut eb, 2, Duration::from_secs(10), is_start).await;
    let stopped = Instant::now();
    assert_eq!(ha.shutdown().await.unwrap(), 2);
    let starts = collect(&mut eb, 2, Duration::from_secs(10), is_start).await;
    let moved = starts.iter().map(|(t, _)| *t).max().unwrap() - stopped;
    assert!(
        moved <= Duration::from_millis(ttl / 3 + 500),
        "took {moved:?}, more than one renewal"
    );
    eprintln!(
        "shutdown → claimed by the other node in {moved:?} (renew_every {} ms)",
        ttl / 3
    );
    hb.shutdown().await.unwrap();
}
