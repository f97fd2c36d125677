//! The tracing subscriber, built in one place.
//!
//! Plain text without colours by default (journald adds its own timestamps and
//! levels, but keeping ours makes `journalctl -o cat` and captured logs readable);
//! JSON on request for log shippers. `RUST_LOG` wins over the config's level so an
//! operator can turn on debug logging for one run without editing the file.
//!
//! No log line may carry a secret, whatever the level and whoever wrote the line
//! (our code or a dependency): every formatted line passes through the process-wide
//! secret set ([`crate::redact::secrets`]) on its way to stderr. One thing sink
//! masking cannot do is recognise a credential printed in pieces: at `trace` the
//! WebSocket, HTTP and TLS libraries dump raw frames and buffers (in hex, a frame at
//! a time, so a secret split over two frames is two unrelated halves). Those
//! targets are therefore capped at `debug` even when `RUST_LOG` asks for `trace`;
//! `traffic = true` records the frames, masked, for whoever needs them.

use crate::config::{LogConfig, LogFormat};
use std::io::Write;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Dependencies whose `trace` output dumps raw frames, requests or buffers.
const RAW_DUMPERS: &[&str] = &[
    "tungstenite",
    "tokio_tungstenite",
    "hyper",
    "hyper_util",
    "h2",
    "rustls",
    "tokio_rustls",
    "reqwest",
];

/// Installs the global subscriber; a second call (tests) is a no-op.
pub fn init(cfg: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(cfg.level.as_deref().unwrap_or("info")));
    let caps = RAW_DUMPERS.iter().fold(
        Targets::new().with_default(LevelFilter::TRACE),
        |t, target| t.with_target(*target, LevelFilter::DEBUG),
    );
    let registry = tracing_subscriber::registry().with(filter).with(caps);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(RedactedStderr)
        .with_ansi(false)
        .with_target(false);
    let _ = match cfg.format {
        LogFormat::Plain => registry.with(fmt).try_init(),
        LogFormat::Json => registry.with(fmt.json().flatten_event(true)).try_init(),
    };
}

/// Hands the formatter a buffer per event; see [`EventBuffer`].
struct RedactedStderr;

impl<'a> MakeWriter<'a> for RedactedStderr {
    type Writer = EventBuffer;

    fn make_writer(&'a self) -> Self::Writer {
        EventBuffer(Vec::with_capacity(256))
    }
}

/// Collects one formatted event whole, so a secret is never cut by a write
/// boundary, and writes it masked to stderr when the formatter is done with it.
struct EventBuffer(Vec<u8>);

impl Write for EventBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for EventBuffer {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let masked = crate::redact::secrets::bytes(&self.0);
        // Nowhere to report a failed write to stderr.
        let _ = std::io::stderr().lock().write_all(&masked);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_buffers_are_masked_whole() {
        crate::redact::secrets::publish("telemetry-test", ["log-secret-9f8e7d"]);
        let mut b = EventBuffer(Vec::new());
        b.write_all(b"token log-secret").unwrap();
        b.write_all(b"-9f8e7d end\n").unwrap();
        let masked = crate::redact::secrets::bytes(&b.0).into_owned();
        assert_eq!(masked, b"token *** end\n");
        b.0.clear();
    }
}
