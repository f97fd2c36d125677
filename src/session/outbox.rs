//! The session's side of the writer's queue: records that did not fit wait here, in
//! order, and the connection reads no new frame until they are handed over.
//!
//! That keeps memory flat under a database stall (at most one frame's records wait)
//! and turns a full queue into TCP back-pressure on the upstream instead of loss.
//! Every failure here means one thing, [`WriterClosed`]: the writer has stopped, and
//! what still waited is logged with its count, never dropped silently.

use crate::record::Record;
use crate::store::{RecordSink, SinkPermit, WriterClosed};
use std::collections::VecDeque;

/// The writer's queue plus the records waiting for room in it.
pub(super) struct Outbox {
    sink: RecordSink,
    waiting: VecDeque<Record>,
}

impl Outbox {
    pub(super) fn new(sink: RecordSink) -> Self {
        Outbox {
            sink,
            waiting: VecDeque::new(),
        }
    }

    /// Nothing waits: the connection may read the next frame.
    pub(super) fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// A handle on the queue to wait for room on while the outbox itself is
    /// borrowed elsewhere (the connection's `select!`).
    pub(super) fn room(&self) -> RecordSink {
        self.sink.clone()
    }

    /// Queues `r` without waiting: into the writer's queue while it has room, else
    /// behind the waiting records.
    pub(super) fn queue(&mut self, r: Record) -> Result<(), WriterClosed> {
        self.waiting.push_back(r);
        self.hand_over()
    }

    /// Queues `r` behind any waiting records, waiting for room as long as it takes.
    pub(super) async fn emit(&mut self, r: Record) -> Result<(), WriterClosed> {
        self.flush().await?;
        self.sink.send(r).await
    }

    /// Moves waiting records into the writer's queue, in order, while it has room;
    /// never waits.
    pub(super) fn hand_over(&mut self) -> Result<(), WriterClosed> {
        while let Some(r) = self.waiting.pop_front() {
            match self.sink.try_send(r) {
                Ok(None) => {}
                Ok(Some(r)) => {
                    self.waiting.push_front(r);
                    break;
                }
                Err(e) => {
                    self.abandon(1);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Fills the room `permit` reserved with the oldest waiting record, then hands
    /// over what else fits (the writer frees room a batch at a time).
    pub(super) fn hand_over_with(&mut self, permit: SinkPermit<'_>) -> Result<(), WriterClosed> {
        if let Some(r) = self.waiting.pop_front() {
            permit.send(r);
        }
        self.hand_over()
    }

    /// Hands every waiting record to the writer, in order, waiting for room.
    pub(super) async fn flush(&mut self) -> Result<(), WriterClosed> {
        while let Some(r) = self.waiting.pop_front() {
            if let Err(e) = self.sink.send(r).await {
                self.abandon(1);
                return Err(e);
            }
        }
        Ok(())
    }

    /// The writer has stopped: the waiting records, plus `taken` already taken off
    /// the list, can no longer be stored. Logged with their count, never silently.
    pub(super) fn abandon(&mut self, taken: usize) {
        let lost = self.waiting.len() + taken;
        self.waiting.clear();
        if lost > 0 {
            tracing::error!(
                lost,
                "the storage writer stopped before these records were queued; they are lost"
            );
        }
    }
}
