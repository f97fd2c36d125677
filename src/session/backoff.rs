//! Reconnect delays: jittered exponential backoff, capped, reset only after a stable
//! period.
//!
//! The sequence comes from `backon`; this wrapper adds what a long-lived daemon needs
//! on top: the cap holds *after* jitter (backon's jitter may add up to 100 %, so the
//! exponential part is capped at half the configured maximum), and the attempt
//! counter restarts only when the caller says the connection was stable.

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use std::time::Duration;

/// Delays between reconnect attempts of one source.
pub struct Backoff {
    builder: ExponentialBuilder,
    iter: ExponentialBackoff,
    max: Duration,
    attempts: u64,
}

impl Backoff {
    /// Starts at `initial` (plus jitter) and never exceeds `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        let half = (max / 2).max(initial.min(max));
        let builder = ExponentialBuilder::default()
            .with_min_delay(initial.min(half))
            .with_max_delay(half)
            .with_jitter()
            .without_max_times();
        Backoff {
            iter: builder.build(),
            builder,
            max,
            attempts: 0,
        }
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        self.attempts += 1;
        self.iter.next().unwrap_or(self.max).min(self.max)
    }

    /// The delay when retrying soon cannot help (dead credential, refused login):
    /// the cap, with jitter downwards so a fleet of daemons does not reconnect in step.
    pub fn cap_delay(&mut self) -> Duration {
        self.attempts += 1;
        self.max.mul_f64(0.75 + rand::random::<f64>() * 0.25)
    }

    /// Attempts since the last reset.
    pub fn attempts(&self) -> u64 {
        self.attempts
    }

    /// Starts the sequence over; call only after a stable connection.
    pub fn reset(&mut self) {
        self.iter = self.builder.build();
        self.attempts = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_stay_capped_and_reset() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let first = b.next_delay();
        assert!(first >= Duration::from_millis(100) && first <= Duration::from_millis(200));
        let later: Vec<_> = (0..20).map(|_| b.next_delay()).collect();
        assert!(later.iter().all(|d| *d <= Duration::from_secs(2)));
        assert!(later.iter().any(|d| *d >= Duration::from_secs(1)));
        assert_eq!(b.attempts(), 21);
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(200));
        let cap = b.cap_delay();
        assert!(cap >= Duration::from_millis(1500) && cap <= Duration::from_secs(2));
    }
}
