//! Loopback simulators of each upstream, for tests, the demo and the benchmarks.
//!
//! They speak the same public protocols as the real servers and can misbehave on
//! demand (drops without a close frame, silence, garbage frames, dead credentials).

pub mod jsonrpc;
pub mod navixy;
pub mod proxy;
pub mod tradernet;
