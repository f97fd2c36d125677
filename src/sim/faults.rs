//! Fault switches shared by the simulators: drop connections without a close
//! frame, go silent, inject raw frames, and protocol-specific commands.
//!
//! Owns the switches and their delivery to connection tasks. It never writes to a
//! socket itself: each connection loop asks its [`FaultListener`] what to do.

use std::collections::VecDeque;
use std::future::Future;
use std::time::Duration;

use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

/// A command for every connection open at the time it is issued.
#[derive(Debug, Clone)]
pub(crate) enum Command<P> {
    /// Drop the TCP stream without a close frame.
    Drop,
    /// Send this text as one frame, verbatim.
    Raw(String),
    /// A command only the protocol's own connection loop understands.
    Proto(P),
}

/// What a connection loop must do next, as decided by the switches.
#[derive(Debug)]
pub(crate) enum FaultEvent<P> {
    Drop,
    Raw(String),
    Proto(P),
    /// A switch changed (silence, drop period): re-check the switches.
    Changed,
}

/// The switches of one simulator.
#[derive(Debug)]
pub(crate) struct Faults<P> {
    commands: broadcast::Sender<Command<P>>,
    silent: watch::Sender<bool>,
    drop_every: watch::Sender<Option<Duration>>,
}

impl<P: Clone + Send + 'static> Faults<P> {
    /// Switches in their initial positions.
    pub fn new(silent: bool, drop_every: Option<Duration>) -> Self {
        Self {
            commands: broadcast::Sender::new(256),
            silent: watch::Sender::new(silent),
            drop_every: watch::Sender::new(drop_every),
        }
    }

    /// Sends `cmd` to every open connection; returns how many connections got it.
    pub fn command(&self, cmd: Command<P>) -> usize {
        self.commands.send(cmd).unwrap_or(0)
    }

    /// Switches silence on or off for every connection.
    pub fn set_silent(&self, silent: bool) {
        self.silent.send_replace(silent);
    }

    /// Whether silence is on now.
    pub fn is_silent(&self) -> bool {
        *self.silent.borrow()
    }

    /// A receiver that changes whenever silence is switched.
    pub fn silent_rx(&self) -> watch::Receiver<bool> {
        self.silent.subscribe()
    }

    /// Changes the drop period; open connections apply it from their own opening time.
    pub fn set_drop_every(&self, every: Option<Duration>) {
        self.drop_every.send_replace(every);
    }

    /// Subscribes a new connection. Call it before the upgrade completes so that no
    /// command issued after the client sees the connection open can be missed.
    pub fn listener(&self) -> FaultListener<P> {
        FaultListener {
            commands: self.commands.subscribe(),
            silent: self.silent.subscribe(),
            drop_every: self.drop_every.subscribe(),
            opened: Instant::now(),
            pending: VecDeque::new(),
        }
    }
}

/// One connection's view of the switches.
#[derive(Debug)]
pub(crate) struct FaultListener<P> {
    commands: broadcast::Receiver<Command<P>>,
    silent: watch::Receiver<bool>,
    drop_every: watch::Receiver<Option<Duration>>,
    opened: Instant,
    /// Events that arrived while a send was in progress, delivered next.
    pending: VecDeque<FaultEvent<P>>,
}

/// What a connection loop does after handling one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    /// The client went away (close frame, error, end of stream).
    Stop,
    /// Drop the TCP stream on purpose.
    Drop,
}

impl<P: Clone> FaultListener<P> {
    /// Whether the connection must send nothing (and read nothing, so that not even
    /// an automatic pong leaves).
    pub fn is_silent(&mut self) -> bool {
        *self.silent.borrow_and_update()
    }

    fn drop_deadline(&mut self) -> Option<Instant> {
        (*self.drop_every.borrow_and_update()).map(|every| later(self.opened, every))
    }

    /// Waits for the next switch event. Cancel-safe: use it as a `select!` branch.
    pub async fn next(&mut self) -> FaultEvent<P> {
        match self.pending.pop_front() {
            Some(ev) => ev,
            None => self.next_fresh().await,
        }
    }

    /// Runs `work` (one step of a connection, usually a send) unless a drop comes
    /// first: a client that stops reading blocks a send forever, and a drop must
    /// still happen then. Other events arriving meanwhile are kept for `next`.
    pub async fn guard(&mut self, work: impl Future<Output = Flow>) -> Flow {
        tokio::select! {
            flow = work => flow,
            () = self.until_drop() => Flow::Drop,
        }
    }

    async fn until_drop(&mut self) {
        loop {
            match self.next_fresh().await {
                FaultEvent::Drop => return,
                FaultEvent::Changed => {}
                other => self.pending.push_back(other),
            }
        }
    }

    async fn next_fresh(&mut self) -> FaultEvent<P> {
        let deadline = self.drop_deadline();
        tokio::select! {
            cmd = self.commands.recv() => match cmd {
                Ok(Command::Drop) => FaultEvent::Drop,
                Ok(Command::Raw(text)) => FaultEvent::Raw(text),
                Ok(Command::Proto(p)) => FaultEvent::Proto(p),
                Err(broadcast::error::RecvError::Lagged(_)) => FaultEvent::Changed,
                Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
            },
            _ = sleep_until_opt(deadline) => FaultEvent::Drop,
            changed = self.silent.changed() => match changed {
                Ok(()) => FaultEvent::Changed,
                Err(_) => std::future::pending().await,
            },
            changed = self.drop_every.changed() => match changed {
                Ok(()) => FaultEvent::Changed,
                Err(_) => std::future::pending().await,
            },
        }
    }

    /// Waits while silent. Returns `false` if the connection must be dropped meanwhile
    /// (a drop command or the drop period); every other command is discarded, as a
    /// silent server sends nothing.
    pub async fn wait_while_silent(&mut self) -> bool {
        while self.is_silent() {
            if let FaultEvent::Drop = self.next().await {
                return false;
            }
        }
        true
    }
}

/// `at + d`, saturating about thirty years ahead instead of overflowing, so an
/// absurd period from the command line means "never" rather than a panic.
pub(crate) fn later(at: Instant, d: Duration) -> Instant {
    at.checked_add(d)
        .unwrap_or_else(|| at + Duration::from_secs(30 * 365 * 24 * 3600))
}

/// Sleeps until `deadline`, or forever when there is none.
pub(crate) async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A frame that is not JSON in any protocol, for the malformed-frame switch.
pub(crate) const MALFORMED_FRAME: &str = "}{ not json \u{1} <<garbage>> [[";

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn listener_sees_commands_and_drop_period() {
        let faults: Faults<u8> = Faults::new(false, None);
        let mut l = faults.listener();
        assert_eq!(faults.command(Command::Proto(7)), 1);
        assert!(matches!(l.next().await, FaultEvent::Proto(7)));
        // A drop period set before waiting is picked up at once, and one set while
        // waiting wakes the waiter to re-check.
        faults.set_drop_every(Some(Duration::from_secs(3600)));
        let waited = tokio::time::timeout(Duration::from_millis(20), l.next()).await;
        assert!(waited.is_err());
        let setter = tokio::spawn(async move {
            tokio::task::yield_now().await;
            faults.set_drop_every(Some(Duration::from_millis(10)));
            faults
        });
        assert!(matches!(l.next().await, FaultEvent::Changed));
        assert!(matches!(l.next().await, FaultEvent::Drop));
        drop(setter.await);
    }

    #[tokio::test]
    async fn silence_discards_commands_but_not_drops() {
        let faults: Faults<u8> = Faults::new(true, None);
        let mut l = faults.listener();
        faults.command(Command::Raw("x".into()));
        faults.command(Command::Drop);
        assert!(!l.wait_while_silent().await);
        faults.set_silent(false);
        assert!(l.wait_while_silent().await);
    }
}
