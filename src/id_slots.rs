//! The node number of row ids, claimed through the database so that any number of
//! daemons writing one database never mint the same id.
//!
//! `ids` puts 10 bits of a node number into every id. Each daemon claims one of the
//! 1 024 numbers in the `id_slots` table at start ([`claim`]), renews the claim every
//! [`RENEW_EVERY`] ([`IdSlot::renew`]), and gives it back when it stops
//! ([`IdSlot::release`]). It works the same on SQLite and PostgreSQL and does not
//! need `[cluster]`: two daemons recording different sources into one database need
//! distinct numbers just as much.
//!
//! **Why no two processes mint the same id.** Let P hold slot *s* and Q claim it.
//! 1. A slot is claimed only when its `seen_at` (the holder's last renewal) is older
//!    than [`STALE`] by the database clock, in one statement under a row lock
//!    (PostgreSQL `FOR UPDATE SKIP LOCKED`; SQLite's write lock), so two processes
//!    claim it at once never, and Q can claim *s* only at database time
//!    T_q > T_p + STALE, where T_p is P's last successful renewal.
//! 2. P's ids never show a millisecond past its horizon, T_p + STALE/2
//!    ([`crate::ids::set_node`]): after that its stamps only count up, one
//!    millisecond per 4 096 ids.
//! 3. Q's ids start above max(T_q, the slot's `high_water`), `high_water` being the
//!    largest id P reported at its renewals and release.
//!
//! So an id of Q can equal one of P only if P minted more than 4 096 × STALE/2 ms
//! (7.4 × 10⁹ with STALE = 1 h) ids after losing touch with the database — while a
//! daemon that cannot write stops reading its sockets once its queue is full. Every
//! time here is the database's: PostgreSQL's `now()`; for SQLite, whose file is local,
//! the host clock. The slot lookups use no daemon clock.
//!
//! This module must never hold a slot it did not claim, and never run on the hot
//! path: it is a few statements per minute.

use crate::store::Store;
use std::time::Duration;

/// How long a slot must have gone without renewal before another process may claim
/// it. Long, because a holder that lost touch with the database may still mint.
pub const STALE: Duration = Duration::from_secs(3600);

/// How often a holder renews its slot; far below [`STALE`] so an outage of the
/// database costs the claim only after most of an hour.
pub const RENEW_EVERY: Duration = Duration::from_secs(60);

/// Why a slot could not be claimed or kept.
#[derive(Debug, thiserror::Error)]
pub enum IdSlotError {
    /// All 1 024 numbers were renewed within [`STALE`]: that many processes, or a
    /// crash loop that claimed a new one at every start.
    #[error(
        "every id slot ({n} of them) is held by a process that renewed it within the last \
         {stale}: stop some daemons, or wait until the slots of crashed ones go stale"
    )]
    Exhausted {
        /// How many slots exist.
        n: u16,
        /// The stale window, formatted.
        stale: String,
    },
    /// The slot was claimed by another process: this one did not renew it for
    /// [`STALE`]. It must claim a new one before minting again.
    #[error(
        "id slot {slot} was claimed by another process after this one could not renew it \
         for {stale}; claim a new slot"
    )]
    Lost {
        /// The slot that is gone.
        slot: u16,
        /// The stale window, formatted.
        stale: String,
    },
    /// A statement failed.
    #[error("id slot statement failed while {what}: {source}")]
    Db {
        /// What was being done.
        what: &'static str,
        #[source]
        source: sqlx::Error,
    },
}

fn db(what: &'static str) -> impl FnOnce(sqlx::Error) -> IdSlotError {
    move |source| IdSlotError::Db { what, source }
}

fn stale_text(stale: Duration) -> String {
    humantime::format_duration(stale).to_string()
}

/// A claimed slot: the node number of this process's ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdSlot {
    /// The node number, `0..ids::NODE_COUNT`.
    pub slot: u16,
    /// Random proof of this claim: renewals and the release match on it.
    pub token: i64,
    /// Every id of this process must be above this (the previous holder's mark).
    pub floor_id: i64,
    /// The database time of the claim or of the last renewal, in Unix milliseconds.
    pub seen_ms: u64,
    /// The stale window this claim was made under.
    pub stale: Duration,
    /// Who holds it, as written in the table (node or host, pid).
    pub holder: String,
}

impl IdSlot {
    /// The last millisecond ids may show until the next renewal: half the stale
    /// window after the database time of the last renewal.
    pub fn horizon_ms(&self) -> u64 {
        self.seen_ms + (self.stale / 2).as_millis() as u64
    }

    /// Makes this slot the node number of every id minted from now on.
    pub fn install(&self) {
        crate::ids::set_node(self.slot, self.floor_id, self.horizon_ms());
    }

    /// Renews the claim, reporting the largest id minted so far, and moves the ids'
    /// horizon. Call every [`RENEW_EVERY`].
    pub async fn renew(&mut self, store: &Store) -> Result<(), IdSlotError> {
        self.seen_ms = renew_with(store, self, crate::ids::high_water()).await?;
        crate::ids::extend_horizon(self.horizon_ms());
        Ok(())
    }

    /// Gives the slot back at a clean stop, after the last id was minted, so the next
    /// start may reuse it at once (above the reported high-water mark).
    pub async fn release(self, store: &Store) -> Result<(), IdSlotError> {
        release_with(store, &self, crate::ids::high_water()).await
    }
}

/// A claimed slot kept alive by a background task: renewed every [`RENEW_EVERY`],
/// claimed anew (with a logged error) should another process have taken it, and
/// released by [`Keeper::release`].
#[derive(Debug)]
pub struct Keeper {
    task: tokio::task::JoinHandle<()>,
    slot: std::sync::Arc<std::sync::Mutex<IdSlot>>,
    store: Store,
}

impl IdSlot {
    /// Starts renewing this (installed) slot every [`RENEW_EVERY`].
    pub fn keep(self, store: Store) -> Keeper {
        self.keep_every(store, RENEW_EVERY)
    }

    /// [`IdSlot::keep`] with another period (tests).
    pub fn keep_every(self, store: Store, every: Duration) -> Keeper {
        let slot = std::sync::Arc::new(std::sync::Mutex::new(self));
        let task = tokio::spawn(renew_loop(store.clone(), slot.clone(), every));
        Keeper { task, slot, store }
    }
}

fn lock(slot: &std::sync::Mutex<IdSlot>) -> std::sync::MutexGuard<'_, IdSlot> {
    // Only whole values are stored under the lock: a poisoned one is still sound.
    slot.lock().unwrap_or_else(|p| p.into_inner())
}

async fn renew_loop(store: Store, slot: std::sync::Arc<std::sync::Mutex<IdSlot>>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let mut current = lock(&slot).clone();
        match current.renew(&store).await {
            Ok(()) => *lock(&slot) = current,
            Err(IdSlotError::Lost { .. }) => {
                tracing::error!(
                    slot = current.slot,
                    "id slot taken by another process after this one could not renew it for                      an hour; claiming a new one"
                );
                match claim(&store, &current.holder, STALE).await {
                    Ok(fresh) => {
                        fresh.install();
                        *lock(&slot) = fresh;
                    }
                    Err(e) => tracing::error!("cannot claim a new id slot: {e}"),
                }
            }
            Err(e) => tracing::warn!("renewing the id slot failed ({e}); retrying"),
        }
    }
}

impl Keeper {
    /// The slot held now.
    pub fn slot(&self) -> IdSlot {
        lock(&self.slot).clone()
    }

    /// Stops renewing and releases the slot: call it at a clean stop, after the
    /// writer committed its last batch (no id is minted after this).
    pub async fn release(self) -> Result<(), IdSlotError> {
        self.task.abort();
        let slot = lock(&self.slot).clone();
        slot.release(&self.store).await
    }
}

/// Claims the least recently used slot that nobody renewed within [`STALE`], and
/// installs it for [`crate::ids`]. `holder` says who holds it (node or host, pid),
/// for people reading the table.
pub async fn claim_and_install(store: &Store, holder: &str) -> Result<IdSlot, IdSlotError> {
    let slot = claim(store, holder, STALE).await?;
    slot.install();
    Ok(slot)
}

/// Claims a slot without installing it (tests use short stale windows).
pub async fn claim(store: &Store, holder: &str, stale: Duration) -> Result<IdSlot, IdSlotError> {
    let token = rand::random::<i64>();
    let row = store
        .claim_id_slot(holder, token, stale)
        .await
        .map_err(db("claiming an id slot"))?;
    let Some((slot, high_water, now_ms)) = row else {
        return Err(IdSlotError::Exhausted {
            n: crate::ids::NODE_COUNT,
            stale: stale_text(stale),
        });
    };
    let now_ms = now_ms.max(0) as u64;
    // Above the previous holder's mark and above the database's present millisecond,
    // whatever this host's clock says.
    let floor_id = high_water.max(floor_of_millis(now_ms));
    Ok(IdSlot {
        slot: slot as u16,
        token,
        floor_id,
        seen_ms: now_ms,
        stale,
        holder: holder.to_string(),
    })
}

/// The smallest id of millisecond `ms`, minus one: ids of that millisecond are above it.
fn floor_of_millis(ms: u64) -> i64 {
    let first = (ms << (crate::ids::COUNTER_BITS + crate::ids::NODE_BITS)) & (i64::MAX as u64);
    (first as i64).saturating_sub(1)
}

/// Renews `slot`, recording `high_water`; returns the database time in Unix ms.
pub async fn renew_with(store: &Store, slot: &IdSlot, high_water: i64) -> Result<u64, IdSlotError> {
    let what = "renewing the id slot";
    let now_ms = store
        .renew_id_slot(slot.slot, slot.token, high_water)
        .await
        .map_err(db(what))?;
    match now_ms {
        Some(ms) => Ok(ms.max(0) as u64),
        None => Err(IdSlotError::Lost {
            slot: slot.slot,
            stale: stale_text(slot.stale),
        }),
    }
}

/// Releases `slot`, recording `high_water`: the slot sorts first for the next claim.
pub async fn release_with(
    store: &Store,
    slot: &IdSlot,
    high_water: i64,
) -> Result<(), IdSlotError> {
    let what = "releasing the id slot";
    store
        .release_id_slot(slot.slot, slot.token, high_water)
        .await
        .map_err(db(what))?;
    Ok(())
}

#[cfg(test)]
mod tests;
