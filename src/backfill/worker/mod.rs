//! One source's backfill task: opens gaps as the session reports them, and fills
//! each one tracker by tracker, saving progress after each so a restart resumes
//! where it stopped and never fetches a finished gap again.

mod history;

use super::gaps::{self, Gap};
use super::rest::{Rest, RestError};
use super::{Cause, Notice};
use crate::config::{NavixyBackfill, NavixyConfig, NavixyRequestType, NavixyTarget, SourceConfig};
use crate::login::SharedLogin;
use crate::protocol::time::parse_timestamp_value;
use crate::record::{Origin, Record, SourceName, TrackerReading, TrackerState};
use crate::store::{RecordSink, Store};
use crate::telemetry::emit;
use crate::telemetry::events::{BackfillPoints, BackfillStarted, GapsCounted};
use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use chrono_tz::Tz;
use serde_json::{Map, Value, json};
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// A gap that failed this often (transient errors each time) is given up as `failed`.
const MAX_ATTEMPTS: i64 = 5;
/// A window this short is not split further on 211 (times have whole seconds).
const MIN_SPAN: Duration = Duration::from_secs(2);
/// `tracker/sensor/data/read` refuses windows over `maxReportTimeSpan` (30 days by default).
const SENSOR_MAX_SPAN: Duration = Duration::from_secs(30 * 86_400);
/// The tracker list is read again after this long, or when it misses a tracker.
const LIST_MAX_AGE: Duration = Duration::from_secs(600);
/// How often a running gap saves its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// Longest note kept in `gaps.error`.
const MAX_ERROR: usize = 2000;

/// How filling a gap ended, short of success.
enum Failure {
    /// Try the gap again later (rate limits, server errors, network, auth for now).
    Retry(String),
    /// The writer has stopped: nothing more can be stored.
    Stop,
}

/// A tracker as `tracker/list` describes it.
#[derive(Debug, Clone)]
struct Tracker {
    id: i64,
    source_id: i64,
    blocked: bool,
}

pub(super) struct Worker {
    source: SourceName,
    cfg: NavixyBackfill,
    tz: Tz,
    store: Store,
    sink: RecordSink,
    rest: Rest,
    /// Newest frame stored before this run; opens the `down` gap at the first frame.
    prior_last: Option<DateTime<Utc>>,
    /// What the blind period up to the first frame of this run is: `Down`, or
    /// `Handover` when another daemon recorded the source until it moved here.
    first_cause: Cause,
    /// Fill readings too (readings_batch subscribed and `backfill_readings`).
    readings: bool,
    /// Tracker ids the source subscribes to, when not all of them.
    selected: Option<HashSet<i64>>,
    trackers: Option<(Instant, Vec<Tracker>)>,
    retry_after: Duration,
    /// The last row handed to the writer since the last saved progress.
    last_handed: Option<Record>,
}

impl Worker {
    pub(super) fn new(
        source: &SourceConfig,
        n: &NavixyConfig,
        store: Store,
        sink: RecordSink,
        login: Option<Arc<SharedLogin>>,
        prior_last: Option<DateTime<Utc>>,
        first_cause: Cause,
    ) -> Worker {
        let t = &source.timing;
        let rest = Rest::new(
            &source.name,
            n,
            login,
            (t.backoff_initial, t.backoff_max),
            t.connect_timeout,
            source.ca_file.as_deref(),
        );
        let states = n.subscriptions.iter().filter(|s| {
            matches!(
                s.kind,
                NavixyRequestType::State | NavixyRequestType::StateBatch
            )
        });
        let mut selected = Some(HashSet::new());
        for s in states {
            match &s.target {
                NavixyTarget::All => selected = None,
                NavixyTarget::Selected(ids) => {
                    if let Some(set) = selected.as_mut() {
                        set.extend(ids.iter().copied());
                    }
                }
            }
        }
        let readings = n.backfill.readings
            && n.subscriptions
                .iter()
                .any(|s| s.kind == NavixyRequestType::ReadingsBatch);
        Worker {
            source: source.name.as_str().into(),
            cfg: n.backfill.clone(),
            tz: source.timezone,
            store,
            sink,
            rest,
            prior_last,
            first_cause,
            readings,
            selected,
            trackers: None,
            retry_after: t.backoff_max,
            last_handed: None,
        }
    }

    pub(super) async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Notice>) {
        let mut queue: VecDeque<(Gap, Instant)> = VecDeque::new();
        emit(BackfillStarted {
            source: &self.source,
        });
        match gaps::open_for(&self.store, &self.source).await {
            Ok(open) => {
                if !open.is_empty() {
                    tracing::info!(gaps = open.len(), "resuming unfinished gaps");
                }
                queue.extend(open.into_iter().map(|g| (g, Instant::now())));
            }
            Err(e) => tracing::error!("cannot read unfinished gaps: {e}"),
        }
        self.update_gauge().await;
        loop {
            while let Ok(n) = rx.try_recv() {
                self.on_notice(n, &mut queue).await;
            }
            let now = Instant::now();
            if let Some(i) = queue.iter().position(|(_, due)| *due <= now) {
                if let Some((gap, _)) = queue.remove(i) {
                    match self.fill(gap).await {
                        Ok(None) => {}
                        Ok(Some(again)) => {
                            let due =
                                Instant::now() + self.retry_after * again.attempts.max(1) as u32;
                            queue.push_back((again, due));
                        }
                        Err(()) => return,
                    }
                    self.update_gauge().await;
                }
                continue;
            }
            let next = queue.iter().map(|(_, due)| *due).min();
            tokio::select! {
                n = rx.recv() => match n {
                    Some(n) => self.on_notice(n, &mut queue).await,
                    None if queue.is_empty() => return,
                    None => {}
                },
                _ = sleep_until(next) => {}
            }
        }
    }

    async fn on_notice(&mut self, n: Notice, queue: &mut VecDeque<(Gap, Instant)>) {
        let (from, to, cause) = match n {
            Notice::Resumed { from, to, cause } => (from, to, cause),
            Notice::FirstFrame(at) => match self.prior_last.take() {
                Some(last) if last < at => (last, at, self.first_cause),
                _ => return,
            },
        };
        match gaps::insert(&self.store, &self.source, from, to, cause.as_str()).await {
            Ok(id) => {
                tracing::info!(
                    gap = id,
                    cause = cause.as_str(),
                    "blind from {from} to {to}: gap opened"
                );
                let gap = Gap {
                    id,
                    source: self.source.to_string(),
                    from_time: from,
                    to_time: to,
                    cause: cause.as_str().into(),
                    status: "pending".into(),
                    trackers_total: None,
                    trackers_done: 0,
                    points: 0,
                    attempts: 0,
                    error: None,
                    updated_at: Utc::now(),
                };
                queue.push_back((gap, Instant::now() + self.cfg.delay));
                self.update_gauge().await;
            }
            Err(e) => tracing::error!("cannot record the gap from {from} to {to}: {e}"),
        }
    }

    async fn update_gauge(&self) {
        if let Ok(counts) = gaps::counts(&self.store, &self.source).await {
            for status in gaps::STATUSES {
                let n = counts
                    .iter()
                    .find(|(s, _)| s == status)
                    .map(|(_, n)| *n)
                    .unwrap_or(0);
                emit(GapsCounted {
                    source: &self.source,
                    status,
                    n,
                });
            }
        }
    }

    /// Fills one gap. `Ok(Some(gap))` = try again later; `Err` = the writer stopped.
    async fn fill(&mut self, mut gap: Gap) -> Result<Option<Gap>, ()> {
        match gaps::start(&self.store, gap.id).await {
            Ok(true) => gap.attempts += 1,
            Ok(false) => return Ok(None),
            Err(e) => {
                tracing::error!(gap = gap.id, "cannot start the gap: {e}");
                return Ok(Some(gap));
            }
        }
        tracing::info!(gap = gap.id, attempt = gap.attempts, "filling gap");
        let outcome = self.fill_trackers(&mut gap).await;
        let (status, error) = match outcome {
            Ok(()) => {
                let partial = gap
                    .error
                    .as_deref()
                    .is_some_and(|e| e.contains("limit_exceeded"));
                (if partial { "partial" } else { "done" }, gap.error.clone())
            }
            Err(Failure::Stop) => return Err(()),
            Err(Failure::Retry(reason)) => {
                let note = join_note(
                    gap.error.as_deref(),
                    &format!("attempt {}: {reason}", gap.attempts),
                );
                if gap.attempts >= MAX_ATTEMPTS {
                    tracing::error!(gap = gap.id, "gap failed: {reason}");
                    ("failed", Some(note))
                } else {
                    tracing::warn!(gap = gap.id, "gap will be retried: {reason}");
                    if let Err(e) =
                        gaps::set_status(&self.store, gap.id, "pending", Some(&note)).await
                    {
                        tracing::error!(gap = gap.id, "cannot save the gap: {e}");
                    }
                    gap.status = "pending".into();
                    return Ok(Some(gap));
                }
            }
        };
        if let Err(e) = gaps::set_status(&self.store, gap.id, status, error.as_deref()).await {
            tracing::error!(gap = gap.id, "cannot save the gap: {e}");
            return Ok(Some(gap));
        }
        tracing::info!(gap = gap.id, points = gap.points, status, "gap filled");
        Ok(None)
    }

    async fn fill_trackers(&mut self, gap: &mut Gap) -> Result<(), Failure> {
        let trackers = self.trackers(gap).await?;
        let total = trackers.len() as i64;
        // Seconds are the finest unit of Navixy times and both bounds are exclusive:
        // widen by a second each side; duplicates of live rows collide on the keys.
        let from = gap.from_time.trunc_subsecs(0) - TimeDelta::seconds(1);
        let to = gap.to_time.trunc_subsecs(0) + TimeDelta::seconds(2);
        let start = usize::try_from(gap.trackers_done).unwrap_or(0);
        let mut saved = Instant::now();
        self.last_handed = None;
        for (i, t) in trackers.iter().enumerate().skip(start) {
            if t.blocked {
                gap.error = Some(join_note(
                    gap.error.as_deref(),
                    &format!("tracker {} skipped: blocked (208)", t.id),
                ));
            } else {
                let n = self.tracker_points(gap, t, from, to).await?;
                gap.points += n;
                if self.readings {
                    gap.points += self.tracker_readings(gap, t, from, to).await?;
                }
            }
            gap.trackers_done = i as i64 + 1;
            // Progress is saved about once a second (and at the end), after the rows
            // handed over so far are committed: waiting for a commit per tracker
            // would cap a large fleet at a few trackers per second.
            if i + 1 < trackers.len() && saved.elapsed() < PROGRESS_EVERY {
                continue;
            }
            saved = Instant::now();
            let last = self.last_handed.take();
            self.committed(last).await?;
            self.save_progress(gap, total).await?;
        }
        if start >= trackers.len() {
            self.save_progress(gap, total).await?;
        }
        gap.trackers_total = Some(total);
        Ok(())
    }

    /// Persists how far `gap` got, so a restart resumes after the last saved tracker.
    async fn save_progress(&self, gap: &Gap, total: i64) -> Result<(), Failure> {
        gaps::progress(
            &self.store,
            gap.id,
            total,
            gap.trackers_done,
            gap.points,
            gap.error.as_deref(),
        )
        .await
        .map_err(|e| Failure::Retry(format!("saving progress: {e}")))
    }

    /// The trackers to fill, sorted by id (so `trackers_done` means the same after
    /// a restart). The cached list is read again when old or when a tracker whose
    /// states arrived live since the gap is missing from it.
    async fn trackers(&mut self, gap: &Gap) -> Result<Vec<Tracker>, Failure> {
        let stale = match &self.trackers {
            None => true,
            Some((at, list)) => {
                at.elapsed() > LIST_MAX_AGE || self.misses_live_tracker(gap, list).await
            }
        };
        if stale {
            let answer = self
                .rest
                .call("tracker/list", Map::new())
                .await
                .map_err(|e| Failure::Retry(format!("tracker/list: {e}")))?;
            let mut list: Vec<Tracker> = answer
                .get("list")
                .and_then(Value::as_array)
                .map(|items| items.iter().filter_map(history::tracker).collect())
                .unwrap_or_default();
            list.sort_by_key(|t| t.id);
            self.trackers = Some((Instant::now(), list));
        }
        let list = self
            .trackers
            .as_ref()
            .map(|(_, l)| l.clone())
            .unwrap_or_default();
        Ok(match &self.selected {
            None => list,
            Some(ids) => list.into_iter().filter(|t| ids.contains(&t.id)).collect(),
        })
    }

    async fn misses_live_tracker(&self, gap: &Gap, list: &[Tracker]) -> bool {
        let known: HashSet<i64> = list.iter().map(|t| t.source_id).collect();
        let live = gaps::stored_times_sources(&self.store, &self.source, gap.to_time).await;
        live.is_ok_and(|ids| ids.iter().any(|id| !known.contains(id)))
    }

    /// Queues `records` behind whatever live records wait, using at most half of the
    /// writer's queue. Returns the last one, for [`Worker::committed`].
    async fn hand_over(&self, records: Vec<Record>) -> Result<Option<Record>, Failure> {
        let share = (self.sink.queue_capacity() / 2).max(1);
        let last = records.last().cloned();
        for r in records {
            let mut r = r;
            loop {
                if self.sink.queue_depth() < share {
                    match self.sink.try_send(r) {
                        Ok(None) => break,
                        Ok(Some(back)) => r = back,
                        Err(_) => return Err(Failure::Stop),
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        Ok(last)
    }

    /// Waits until `last` is committed. The writer commits in queue order, so then
    /// every row handed over before it is stored too, and saved progress never runs
    /// ahead of stored rows.
    async fn committed(&self, last: Option<Record>) -> Result<(), Failure> {
        let Some(last) = last else {
            return Ok(());
        };
        let mut wait = Duration::from_millis(5);
        loop {
            let committed = match &last {
                Record::TrackerState(s) => {
                    gaps::state_committed(&self.store, &s.source, s.source_id, s.state_time).await
                }
                Record::TrackerReading(r) => gaps::reading_committed(&self.store, r).await,
                _ => Ok(true),
            };
            match committed {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => tracing::debug!("checking the commit of backfilled rows: {e}"),
            }
            if self.sink.is_closed() {
                return Err(Failure::Stop);
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_millis(200));
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn join_note(old: Option<&str>, note: &str) -> String {
    let mut out = match old {
        Some(o) if !o.is_empty() => format!("{o}; {note}"),
        _ => note.to_string(),
    };
    if out.len() > MAX_ERROR {
        let mut cut = MAX_ERROR;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out
}
