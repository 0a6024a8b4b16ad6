//! The dispatcher: hands payloads to sinks without ever blocking the request path.

use std::ops::ControlFlow;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;

use super::{Sink, SinkError};
use crate::payload::LlmCall;

/// Queueing, batching and retry settings, shared by every sink of a layer.
#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    /// Capacity of each sink's queue; a call that finds it full is dropped and counted.
    pub queue_capacity: usize,
    /// A batch is exported when it holds this many calls...
    pub batch_size: usize,
    /// ... or when its first call has waited this long.
    pub batch_interval: Duration,
    /// Retries of a failed export (after the first attempt) for retryable errors.
    pub max_retries: u32,
    /// Wait before the first retry; doubled for each further one.
    pub initial_backoff: Duration,
    /// One `export` or `flush` call taking longer than this counts as a (retryable) failure.
    pub export_timeout: Duration,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        DispatcherConfig {
            queue_capacity: 10_000,
            batch_size: 64,
            batch_interval: Duration::from_millis(200),
            max_retries: 3,
            initial_backoff: Duration::from_millis(100),
            export_timeout: Duration::from_secs(30),
        }
    }
}

/// Why [`Dispatcher::flush`] or [`Dispatcher::shutdown`] did not complete.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// Some sinks had not drained their queue when the deadline passed.
    #[error("sinks {pending:?} did not finish within {deadline:?}")]
    Timeout {
        /// Names of the sinks still busy.
        pending: Vec<String>,
        /// The deadline that passed.
        deadline: Duration,
    },
}

/// Counters of one sink. At any quiescent point (e.g. after [`Dispatcher::flush`]),
/// `observed == delivered + dropped + failed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkStats {
    /// The sink's [`Sink::name`].
    pub name: String,
    /// Calls the sink accepted.
    pub delivered: u64,
    /// Calls dropped because the sink's queue was full (or the dispatcher shut down).
    pub dropped: u64,
    /// Calls in batches that failed after every retry, timed out, or made the sink panic.
    pub failed: u64,
}

/// A snapshot of the dispatcher's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispatcherStats {
    /// Calls that finished and were handed to the dispatcher.
    pub observed: u64,
    /// Per sink, in the order the sinks were added.
    pub sinks: Vec<SinkStats>,
}

/// A request to a sink's worker. It travels apart from the calls: a full call queue never
/// holds it back, and the worker hears it while it waits out a batch interval.
enum Control {
    Flush(oneshot::Sender<()>),
    Shutdown(oneshot::Sender<()>),
}

#[derive(Default)]
struct Counters {
    delivered: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
}

struct SinkHandle {
    name: String,
    queue: mpsc::Sender<Arc<LlmCall>>,
    control: mpsc::UnboundedSender<Control>,
    /// Told when the queue holds a whole batch, so the worker need not wait for the interval.
    batch_ready: Arc<Notify>,
    batch_size: usize,
    counters: Arc<Counters>,
}

impl SinkHandle {
    /// Queues `call`; `false` when the queue is full or closed. The worker is woken only by the
    /// first call of a batch and when a batch is full, not by every call.
    fn offer(&self, call: Arc<LlmCall>) -> bool {
        if self.queue.try_send(call).is_err() {
            return false;
        }
        let queued = self.queue.max_capacity() - self.queue.capacity();
        if queued >= self.batch_size {
            self.batch_ready.notify_one();
        }
        true
    }
}

struct Shared {
    sinks: Vec<SinkHandle>,
    observed: AtomicU64,
    closed: AtomicBool,
}

/// Feeds finished calls to the sinks. Cloning is cheap; all clones share the same queues.
///
/// [`dispatch`](Self::dispatch) never waits: each sink has a bounded queue and its own worker
/// task that batches, retries and times out exports. Use [`flush`](Self::flush) to wait for
/// everything queued so far and [`shutdown`](Self::shutdown) before the process exits.
#[derive(Clone)]
pub struct Dispatcher {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("stats", &self.stats())
            .finish()
    }
}

impl Dispatcher {
    /// Starts one worker task per sink on the current Tokio runtime.
    pub fn start(
        sinks: Vec<Arc<dyn Sink>>,
        config: DispatcherConfig,
    ) -> Result<Self, crate::BuildError> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| crate::BuildError::NoRuntime)?;
        let config = Arc::new(config);
        let sinks = sinks
            .into_iter()
            .map(|sink| {
                let (queue, calls) = mpsc::channel(config.queue_capacity.max(1));
                let (control, commands) = mpsc::unbounded_channel();
                let batch_ready = Arc::new(Notify::new());
                let counters = Arc::new(Counters::default());
                let name = sink.name().to_owned();
                let worker = Worker {
                    sink,
                    name: name.clone(),
                    calls,
                    commands,
                    batch_ready: batch_ready.clone(),
                    counters: counters.clone(),
                    config: config.clone(),
                };
                runtime.spawn(worker.run());
                SinkHandle {
                    name,
                    queue,
                    control,
                    batch_ready,
                    batch_size: config.batch_size.max(1),
                    counters,
                }
            })
            .collect();
        Ok(Dispatcher {
            shared: Arc::new(Shared {
                sinks,
                observed: AtomicU64::new(0),
                closed: AtomicBool::new(false),
            }),
        })
    }

    /// Hands a call to every sink's queue. Never blocks or awaits: a full queue drops the call
    /// for that sink, counts it, and warns (at a decreasing rate).
    pub fn dispatch(&self, call: Arc<LlmCall>) {
        self.shared.observed.fetch_add(1, Ordering::Relaxed);
        let closed = self.shared.closed.load(Ordering::Acquire);
        for sink in &self.shared.sinks {
            let accepted = !closed && sink.offer(call.clone());
            if !accepted {
                let dropped = sink.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if dropped.is_power_of_two() {
                    tracing::warn!(
                        target: "llm_observability",
                        sink = %sink.name,
                        dropped,
                        shut_down = closed,
                        "sink queue full or closed: LLM call payload dropped"
                    );
                }
            }
        }
    }

    /// Waits until every call dispatched before this point has been exported (or has failed)
    /// and each sink has flushed, or until `deadline` passes.
    pub async fn flush(&self, deadline: Duration) -> Result<(), DispatchError> {
        self.broadcast(Control::Flush, deadline).await
    }

    /// Stops accepting calls (later ones count as dropped), delivers everything already queued,
    /// flushes each sink and stops the workers — or gives up when `deadline` passes.
    pub async fn shutdown(&self, deadline: Duration) -> Result<(), DispatchError> {
        self.shared.closed.store(true, Ordering::Release);
        self.broadcast(Control::Shutdown, deadline).await
    }

    async fn broadcast(
        &self,
        command: fn(oneshot::Sender<()>) -> Control,
        deadline: Duration,
    ) -> Result<(), DispatchError> {
        let until = Instant::now() + deadline;
        let mut pending = Vec::new();
        for sink in &self.shared.sinks {
            let (ack, done) = oneshot::channel();
            // An error means the worker already stopped: nothing is left to wait for.
            if sink.control.send(command(ack)).is_ok() {
                pending.push((sink.name.clone(), done));
            }
        }
        let mut late = Vec::new();
        for (name, done) in pending {
            if tokio::time::timeout_at(until, done).await.is_err() {
                late.push(name);
            }
        }
        if late.is_empty() {
            Ok(())
        } else {
            Err(DispatchError::Timeout {
                pending: late,
                deadline,
            })
        }
    }

    /// Current counters.
    pub fn stats(&self) -> DispatcherStats {
        DispatcherStats {
            observed: self.shared.observed.load(Ordering::Relaxed),
            sinks: self
                .shared
                .sinks
                .iter()
                .map(|s| SinkStats {
                    name: s.name.clone(),
                    delivered: s.counters.delivered.load(Ordering::Relaxed),
                    dropped: s.counters.dropped.load(Ordering::Relaxed),
                    failed: s.counters.failed.load(Ordering::Relaxed),
                })
                .collect(),
        }
    }
}

struct Worker {
    sink: Arc<dyn Sink>,
    name: String,
    calls: mpsc::Receiver<Arc<LlmCall>>,
    commands: mpsc::UnboundedReceiver<Control>,
    batch_ready: Arc<Notify>,
    counters: Arc<Counters>,
    config: Arc<DispatcherConfig>,
}

impl Worker {
    /// Idle, the worker waits for the first call of a batch; then it sleeps until the batch is
    /// full or its interval has passed, and takes the queued calls in one go. Flush and shutdown
    /// requests are served in either state.
    async fn run(mut self) {
        let batch_size = self.config.batch_size.max(1);
        let mut batch: Vec<Arc<LlmCall>> = Vec::with_capacity(batch_size);
        let mut deadline = Instant::now();
        loop {
            if batch.is_empty() {
                tokio::select! {
                    biased;
                    command = self.commands.recv() => {
                        if self.obey(command, &mut batch).await.is_break() {
                            return;
                        }
                    }
                    call = self.calls.recv() => match call {
                        Some(call) => {
                            batch.push(call);
                            deadline = Instant::now() + self.config.batch_interval;
                        }
                        // Every dispatcher is gone: nothing more can come.
                        None => {
                            self.flush_sink().await;
                            return;
                        }
                    },
                }
                continue;
            }
            self.take_queued(&mut batch, batch_size);
            if batch.len() >= batch_size {
                self.export(&mut batch).await;
                continue;
            }
            tokio::select! {
                biased;
                command = self.commands.recv() => {
                    if self.obey(command, &mut batch).await.is_break() {
                        return;
                    }
                }
                () = self.batch_ready.notified() => {}
                () = tokio::time::sleep_until(deadline) => self.export(&mut batch).await,
            }
        }
    }

    /// Moves queued calls into `batch` until it holds `batch_size`.
    fn take_queued(&mut self, batch: &mut Vec<Arc<LlmCall>>, batch_size: usize) {
        while batch.len() < batch_size {
            match self.calls.try_recv() {
                Ok(call) => batch.push(call),
                Err(_empty_or_closed) => break,
            }
        }
    }

    /// Exports every queued call, in batches.
    async fn export_queued(&mut self, batch: &mut Vec<Arc<LlmCall>>) {
        let batch_size = self.config.batch_size.max(1);
        loop {
            self.take_queued(batch, batch_size);
            if batch.is_empty() {
                return;
            }
            self.export(batch).await;
        }
    }

    /// Serves a flush or shutdown request; `Break` when the worker must stop.
    async fn obey(
        &mut self,
        command: Option<Control>,
        batch: &mut Vec<Arc<LlmCall>>,
    ) -> ControlFlow<()> {
        match command {
            Some(Control::Flush(ack)) => {
                self.export_queued(batch).await;
                self.flush_sink().await;
                let _ = ack.send(());
                ControlFlow::Continue(())
            }
            Some(Control::Shutdown(ack)) => {
                // Calls that raced past the closed flag are still delivered, not lost.
                self.calls.close();
                self.export_queued(batch).await;
                self.flush_sink().await;
                let _ = ack.send(());
                ControlFlow::Break(())
            }
            // Every dispatcher is gone: deliver what is left and stop.
            None => {
                self.calls.close();
                self.export_queued(batch).await;
                self.flush_sink().await;
                ControlFlow::Break(())
            }
        }
    }

    /// Exports the batch with retries; counts it delivered or failed; leaves it empty.
    async fn export(&self, batch: &mut Vec<Arc<LlmCall>>) {
        if batch.is_empty() {
            return;
        }
        let count = batch.len() as u64;
        let mut attempt = 0;
        loop {
            let outcome = self.guarded(self.sink.export(batch)).await;
            match outcome {
                Ok(()) => {
                    self.counters.delivered.fetch_add(count, Ordering::Relaxed);
                    break;
                }
                Err(error) if error.is_retryable() && attempt < self.config.max_retries => {
                    let backoff = self.config.initial_backoff * 2u32.saturating_pow(attempt);
                    tracing::debug!(target: "llm_observability", sink = %self.name, %error, attempt, "sink export failed; retrying");
                    tokio::time::sleep(backoff).await;
                    attempt += 1;
                }
                Err(error) => {
                    self.counters.failed.fetch_add(count, Ordering::Relaxed);
                    tracing::warn!(target: "llm_observability", sink = %self.name, %error, calls = count, "sink export failed; batch given up");
                    break;
                }
            }
        }
        batch.clear();
    }

    async fn flush_sink(&self) {
        if let Err(error) = self.guarded(self.sink.flush()).await {
            tracing::warn!(target: "llm_observability", sink = %self.name, %error, "sink flush failed");
        }
    }

    /// Runs a sink future with the export timeout, turning a panic into a permanent error.
    async fn guarded(
        &self,
        future: impl std::future::Future<Output = Result<(), SinkError>>,
    ) -> Result<(), SinkError> {
        let timed = tokio::time::timeout(self.config.export_timeout, future);
        match AssertUnwindSafe(timed).catch_unwind().await {
            Ok(Ok(result)) => result,
            Ok(Err(_elapsed)) => Err(SinkError::Transient(format!(
                "timed out after {:?}",
                self.config.export_timeout
            ))),
            Err(_panic) => Err(SinkError::Permanent("the sink panicked".to_owned())),
        }
    }
}
