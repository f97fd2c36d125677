//! Telemetry: the log subscriber and the daemon's internal events, in one leaf that
//! every other module calls *down* into.
//!
//! [`events`] follows Vector's "internal events" pattern: each thing worth telling an
//! operator about is one type whose `emit` writes its log line and bumps its metric
//! together, so the two can never drift apart and a metric name is spelled in one
//! place. [`log`] builds the tracing subscriber (plain or JSON, secrets masked).
//!
//! This module must never import `session`, `store`, `backfill`, `ops` or
//! `supervisor` (it sits below all of them; `tests` in the crate root check the
//! module graph), and never render metrics: `/metrics` exposition, the Prometheus
//! recorder and the gauges copied from the live registry at scrape time belong to
//! `ops::metrics`.

pub mod events;
pub mod log;

pub use events::{InternalEvent, emit};
pub use log::init;
