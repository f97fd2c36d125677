//! wsvault keeps WebSocket subscriptions to real-time event APIs alive and records
//! every event they deliver in SQLite or PostgreSQL.
//!
//! A supervisor keeps one session per configured source; each session turns frames
//! into [`record::Record`]s through a pure [`protocol`] state machine; one writer
//! ([`store`]) commits records in batches. `ARCHITECTURE.md` at the repository root
//! describes the data path, the module rules, the lifecycle, the storage contract
//! and the conventions.

pub mod backfill;
pub mod bench;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod id_slots;
pub mod ids;
pub mod login;
#[cfg(test)]
mod module_graph;
pub mod ops;
pub mod protocol;
pub mod record;
pub mod redact;
pub mod session;
pub mod sim;
pub mod store;
pub mod supervisor;
pub mod telemetry;
pub mod tls;

#[cfg(test)]
mod test_db;
