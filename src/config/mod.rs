//! Configuration: TOML file layered with `WSVAULT__SECTION__KEY` environment
//! overrides, validated into typed values with one clear message per mistake.

mod build;
mod cluster;
mod load;
mod sources;
mod sqlite_url;
mod types;
mod value;

pub use build::{
    DEFAULT_COMMIT_MAX_BYTES, DEFAULT_COMMIT_MAX_ROWS, DEFAULT_DRAIN_TIMEOUT, DEFAULT_PARTITION,
    DEFAULT_TIMING, RETENTION_TABLES, USER_AGENT, default_user_agent,
};
pub use cluster::{DEFAULT_LEASE_TTL, MIN_LEASE_TTL, host_name};
pub use load::*;
pub use sources::{derive_api_url, derive_auth_url};
pub use types::*;
