//! The tracing subscriber, built in one place.
//!
//! Plain text without colours by default (journald adds its own timestamps and
//! levels, but keeping ours makes `journalctl -o cat` and captured logs readable);
//! JSON on request for log shippers. `RUST_LOG` wins over the config's level so an
//! operator can turn on debug logging for one run without editing the file.

use crate::config::{LogConfig, LogFormat};
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; a second call (tests) is a no-op.
pub fn init(cfg: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(cfg.level.as_deref().unwrap_or("info")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false);
    let _ = match cfg.format {
        LogFormat::Plain => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
