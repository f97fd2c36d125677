//! Configuration: TOML file layered with `WSVAULT__SECTION__KEY` environment
//! overrides, validated into typed values with one clear message per mistake.

mod load;
mod types;

pub use load::*;
pub use types::*;
