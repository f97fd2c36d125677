//! What the integration tests share, once each: test databases ([`db`]), the daemon
//! config file ([`config`]), starting and stopping the real binary ([`daemon`]),
//! waiting for a condition ([`wait`]), taking the database away ([`outage`]), the
//! lifecycle rows ([`lifecycle`]), the daemon's HTTP side ([`http`]), Navixy
//! simulator helpers ([`navixy`]) and a plain WebSocket client for the simulator
//! tests ([`ws`]).
//!
//! A test that depends on the storage backend is written once, as
//! `async fn name(backend: Backend)`, and declared with [`each_backend!`], which makes
//! it two tests, `name::sqlite` and `name::postgres`, so a failure names its backend.
#![allow(dead_code)]

pub mod config;
pub mod daemon;
pub mod db;
pub mod http;
pub mod lifecycle;
pub mod navixy;
pub mod outage;
pub mod wait;
pub mod ws;

use std::time::Duration;

pub use config::*;
pub use daemon::*;
pub use db::*;
pub use http::*;
pub use lifecycle::*;
pub use outage::Outage;
pub use wait::*;
pub use wsvault::store::Backend;

/// Upper bound for anything that should happen "soon" on a loaded machine.
pub const LIMIT: Duration = Duration::from_secs(30);

/// Declares the tests `$name::sqlite` and `$name::postgres`, each running
/// `async fn $name(backend: Backend)` (which takes its database from
/// [`test_databases`]) on its own tokio runtime: two workers by default (a test that
/// drives the daemon also serves its simulators), or `current_thread`.
macro_rules! each_backend {
    ($name:ident) => {
        $crate::support::each_backend!(
            @tests [tokio::test(flavor = "multi_thread", worker_threads = 2)] $name
        );
    };
    ($name:ident, current_thread) => {
        $crate::support::each_backend!(@tests [tokio::test] $name);
    };
    (@tests [$($test:tt)*] $name:ident) => {
        mod $name {
            #[$($test)*]
            async fn sqlite() {
                super::$name($crate::support::Backend::Sqlite).await
            }

            #[$($test)*]
            async fn postgres() {
                super::$name($crate::support::Backend::Postgres).await
            }
        }
    };
}
pub(crate) use each_backend;
