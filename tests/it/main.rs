//! The integration tests, as one test binary: one module per subject, all sharing
//! [`support`]. One binary links once and lets libtest run every test in parallel
//! (a process per file used to link ~40 binaries and run them one after another).
//!
//! Tests share the process, so none may change process-wide state: no
//! `std::env::set_var`, no current-directory change, no global tracing subscriber or
//! metrics recorder, no signal handlers, no secrets published to
//! `wsvault::redact::secrets`. Whatever needs those runs in the real daemon, started
//! as a child process ([`support::daemon`]).

mod support;

mod bench_queries;
mod bench_smoke;
mod cluster_config;
mod cluster_failover;
mod config_check;
mod contrib_monitoring;
mod jsonrpc_notifications;
mod jsonrpc_traffic;
mod lifecycle_kill;
mod lifecycle_rows;
mod lifecycle_signals;
mod navixy_auth;
mod navixy_backfill;
mod navixy_faults;
mod navixy_flow;
mod navixy_frames;
mod navixy_secrets;
mod navixy_size_limits;
mod navixy_wire;
mod ops_drain;
mod ops_http;
mod ops_retention;
mod ops_signals;
mod ops_systemd;
mod ops_tools;
mod packaging_docs;
mod secrets_echoed;
mod session_tls;
mod sim_jsonrpc;
mod sim_navixy;
mod sim_navixy_faults;
mod sim_tradernet;
mod storage_bulk_paths;
mod storage_cookbook;
mod storage_faults;
mod storage_group_commit;
mod storage_latest;
mod storage_latest_edges;
mod storage_outage;
mod storage_partitions;
mod storage_reader_grants;
mod storage_writer;
mod systemd_unit;
mod tradernet_faults;
mod tradernet_sessions;
mod tradernet_traffic;
