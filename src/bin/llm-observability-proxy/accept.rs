//! Accepting connections: at most `--max-connections` at a time (beyond it, new connections
//! wait in the kernel's listen backlog), and a backoff when `accept` fails, so that running out
//! of file descriptors (EMFILE) neither spins a core nor floods the log.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// The first wait after a failed `accept`; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
/// The longest wait after a failed `accept`.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// At most one log line per this period while `accept` keeps failing.
const LOG_PERIOD: Duration = Duration::from_secs(5);

/// A listener that hands out connections with a permit each.
#[derive(Debug)]
pub struct Acceptor {
    listener: TcpListener,
    permits: Arc<Semaphore>,
    backoff: Backoff,
}

/// An accepted connection; it counts against the limit until `permit` is dropped.
#[derive(Debug)]
pub struct Accepted {
    pub stream: TcpStream,
    pub permit: OwnedSemaphorePermit,
}

impl Acceptor {
    pub fn new(listener: TcpListener, max_connections: usize) -> Self {
        Acceptor {
            listener,
            permits: Arc::new(Semaphore::new(max_connections.max(1))),
            backoff: Backoff::default(),
        }
    }

    /// Waits for a free slot, then for a connection.
    pub async fn accept(&mut self) -> Accepted {
        // The semaphore is never closed.
        let permit = loop {
            if let Ok(permit) = self.permits.clone().acquire_owned().await {
                break permit;
            }
        };
        loop {
            match self.listener.accept().await {
                Ok((stream, _peer)) => {
                    self.backoff.succeeded();
                    return Accepted { stream, permit };
                }
                // The client gave up before we accepted it: nothing wrong on our side.
                Err(error) if is_connection_error(&error) => {
                    tracing::debug!(%error, "connection reset before accept");
                }
                Err(error) => tokio::time::sleep(self.backoff.failed(&error)).await,
            }
        }
    }
}

fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Exponential backoff after failed accepts, with a rate-limited log.
#[derive(Debug, Default)]
struct Backoff {
    /// The next wait; `None` after a success.
    next: Option<Duration>,
    /// Failures not logged yet.
    unlogged: u64,
    last_log: Option<Instant>,
}

impl Backoff {
    /// Counts a failure; returns how long to wait before accepting again.
    fn failed(&mut self, error: &io::Error) -> Duration {
        let wait = self.next.unwrap_or(FIRST_BACKOFF);
        self.next = Some((wait * 2).min(MAX_BACKOFF));
        self.unlogged += 1;
        let now = Instant::now();
        if self
            .last_log
            .is_none_or(|last| now.duration_since(last) >= LOG_PERIOD)
        {
            tracing::warn!(
                %error,
                failures = self.unlogged,
                retry_in = ?wait,
                "accept failed (at most one such line every {LOG_PERIOD:?}; out of file descriptors? see ulimit -n and --max-connections)"
            );
            self.unlogged = 0;
            self.last_log = Some(now);
        }
        wait
    }

    fn succeeded(&mut self) {
        if self.next.take().is_some() && self.unlogged > 0 {
            tracing::info!(
                failures = self.unlogged,
                "accepting again after failed accepts"
            );
        }
        self.unlogged = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn backoff_doubles_up_to_a_second_and_resets_on_success() {
        let mut backoff = Backoff::default();
        let error = io::Error::from_raw_os_error(24); // EMFILE
        let waits: Vec<Duration> = (0..10).map(|_| backoff.failed(&error)).collect();
        assert_eq!(waits[0], Duration::from_millis(10));
        assert_eq!(waits[1], Duration::from_millis(20));
        assert_eq!(waits[7], Duration::from_secs(1));
        assert_eq!(waits[9], Duration::from_secs(1));
        assert_eq!(
            backoff.unlogged, 9,
            "one line for ten failures in an instant"
        );
        backoff.succeeded();
        assert_eq!(backoff.failed(&error), FIRST_BACKOFF);
    }
}
