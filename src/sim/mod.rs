//! Loopback simulators of each upstream, for tests, the demo and the benchmarks.
//!
//! They speak the same public protocols as the real servers (written from each
//! upstream's public documentation, never from wsvault's client code) and can
//! misbehave on demand: drops without a close frame, silence, garbage frames, dead
//! credentials. Each simulator exposes a control handle whose counters tests can
//! wait on.
//!
//! Simulators must never be reachable from the daemon's production paths; they
//! serve loopback clients only.

mod fanout;
mod faults;
mod http;
pub mod jsonrpc;
pub mod navixy;
pub mod observe;
pub mod proxy;
mod server;
pub mod tradernet;
