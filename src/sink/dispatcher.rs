//! The dispatcher: hands payloads to sinks without ever blocking the request path.
//!
//! With no layer-wide processors, a finished call is offered straight to each sink's bounded
//! queue. With processors, it goes through one bounded processing queue first: a task runs the
//! processors once, off the request path, and then offers the call to the sinks. Each sink's
//! worker filters, runs the sink's own processors on its copy, batches, exports and retries.

use std::future::Future;
use std::ops::ControlFlow;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;

use super::config::{CallFilter, DispatcherConfig, SinkConfig};
use super::{Sink, SinkError};
use crate::payload::LlmCall;
use crate::process::{Pipeline, Processor};

/// Why [`Dispatcher::flush`] or [`Dispatcher::shutdown`] did not complete.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DispatchError {
    /// Some sinks had not drained their queue when the deadline passed.
    #[error("sinks {pending:?} did not finish within {deadline:?}")]
    Timeout {
        /// Names of the sinks still busy (`(processors)` for the processing stage).
        pending: Vec<String>,
        /// The deadline that passed.
        deadline: Duration,
    },
}

/// Counters of one sink. At any quiescent point (e.g. after [`Dispatcher::flush`]),
/// `observed == delivered + dropped + failed + filtered`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SinkStats {
    /// The sink's [`Sink::name`].
    pub name: String,
    /// Calls the sink accepted.
    pub delivered: u64,
    /// Calls dropped because a queue was full — of calls, or of bytes — or the dispatcher had
    /// shut down.
    pub dropped: u64,
    /// Calls in batches that failed after every retry, timed out, or made the sink panic.
    pub failed: u64,
    /// Calls the sink's [`CallFilter`] left out.
    pub filtered: u64,
}

impl SinkStats {
    /// Every call this sink has accounted for: `delivered + dropped + failed + filtered`.
    pub fn accounted(&self) -> u64 {
        self.delivered + self.dropped + self.failed + self.filtered
    }
}

/// A snapshot of the dispatcher's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DispatcherStats {
    /// Calls that finished and were handed to the dispatcher.
    pub observed: u64,
    /// Per sink, in the order the sinks were added.
    pub sinks: Vec<SinkStats>,
}

/// A request to a worker. It travels apart from the calls: a full call queue never holds it
/// back, and the worker hears it while it waits out a batch interval.
enum Control {
    Flush(oneshot::Sender<()>),
    Shutdown(oneshot::Sender<()>),
}

#[derive(Default)]
struct Counters {
    delivered: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
    filtered: AtomicU64,
}

/// A call in a queue, with the bytes it was counted as.
type Queued = (Arc<LlmCall>, usize);

/// The bytes of the calls in one queue, and their bound.
#[derive(Debug)]
struct ByteBound {
    used: AtomicUsize,
    max: usize,
}

impl ByteBound {
    fn new(max: usize) -> Self {
        ByteBound {
            used: AtomicUsize::new(0),
            max,
        }
    }

    /// Counts `bytes` in, unless that would pass the bound. An empty queue takes any one call,
    /// so a call larger than the bound is still delivered.
    fn reserve(&self, bytes: usize) -> bool {
        let before = self.used.fetch_add(bytes, Ordering::Relaxed);
        if before > 0 && before + bytes > self.max {
            self.used.fetch_sub(bytes, Ordering::Relaxed);
            return false;
        }
        true
    }

    fn release(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::Relaxed);
    }
}

struct SinkHandle {
    name: String,
    queue: mpsc::Sender<Queued>,
    bytes: Arc<ByteBound>,
    control: mpsc::UnboundedSender<Control>,
    /// Told when the queue and the worker's partial batch make a whole batch, so the worker
    /// need not wait for the interval.
    batch_ready: Arc<Notify>,
    batch_size: usize,
    /// Calls the worker holds in its partial batch.
    taken: Arc<AtomicUsize>,
    counters: Arc<Counters>,
}

impl SinkHandle {
    /// Queues `call` of `size` bytes; `false` when the queue is full (of calls or bytes) or
    /// closed. The worker is woken only by the first call of a batch and when a batch is full,
    /// not by every call.
    fn offer(&self, call: Arc<LlmCall>, size: usize) -> bool {
        if !self.bytes.reserve(size) {
            return false;
        }
        if self.queue.try_send((call, size)).is_err() {
            self.bytes.release(size);
            return false;
        }
        let queued = self.queue.max_capacity() - self.queue.capacity();
        if queued + self.taken.load(Ordering::Relaxed) >= self.batch_size {
            self.batch_ready.notify_one();
        }
        true
    }

    /// Counts a call this sink will never see, and warns at a decreasing rate.
    fn count_drop(&self, reason: &'static str) {
        let dropped = self.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        if dropped.is_power_of_two() {
            tracing::warn!(
                target: "llm_observability",
                sink = %self.name,
                dropped,
                reason,
                "LLM call payload dropped"
            );
        }
    }
}

/// Offers `call` to every sink; a sink whose queue is full drops it and counts the drop.
fn fan_out(sinks: &[SinkHandle], call: Arc<LlmCall>) {
    let size = call.approx_size();
    for sink in sinks {
        if !sink.offer(call.clone(), size) {
            sink.count_drop("sink queue full");
        }
    }
}

/// The processing queue in front of the sinks, when the layer has processors.
struct Stage {
    queue: mpsc::Sender<Queued>,
    bytes: Arc<ByteBound>,
    control: mpsc::UnboundedSender<Control>,
}

/// A worker task not spawned yet: the dispatcher was made outside a Tokio runtime.
type Pending = Pin<Box<dyn Future<Output = ()> + Send>>;

struct Shared {
    sinks: Arc<[SinkHandle]>,
    stage: Option<Stage>,
    observed: AtomicU64,
    closed: AtomicBool,
    /// Whether the workers run; until then they wait in `pending`.
    started: AtomicBool,
    pending: Mutex<Vec<Pending>>,
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

/// A sink and its settings, as the layer's builder collected them.
pub(crate) struct SinkPlan {
    pub(crate) sink: Arc<dyn Sink>,
    pub(crate) config: SinkConfig,
}

impl Dispatcher {
    /// One worker task per sink (and one for `processors`, when there are any), started on the
    /// current Tokio runtime, or on the first runtime that dispatches, flushes or shuts down
    /// when there is none yet. `defaults` applies to the sinks without settings of their own.
    pub(crate) fn start(
        sinks: Vec<SinkPlan>,
        defaults: DispatcherConfig,
        processors: Vec<Arc<dyn Processor>>,
    ) -> Self {
        let mut workers: Vec<Pending> = Vec::new();
        let sinks: Arc<[SinkHandle]> = sinks
            .into_iter()
            .map(|plan| {
                let (handle, worker) = sink_worker(plan, &defaults);
                workers.push(Box::pin(worker.run()));
                handle
            })
            .collect();
        let stage = (!processors.is_empty()).then(|| {
            let (queue, calls) = mpsc::channel(defaults.queue_capacity.max(1));
            let (control, commands) = mpsc::unbounded_channel();
            let bytes = Arc::new(ByteBound::new(defaults.queue_bytes));
            let worker = StageWorker {
                pipeline: Pipeline::new(processors),
                calls,
                bytes: bytes.clone(),
                commands,
                sinks: sinks.clone(),
            };
            workers.push(Box::pin(worker.run()));
            Stage {
                queue,
                bytes,
                control,
            }
        });
        let dispatcher = Dispatcher {
            shared: Arc::new(Shared {
                sinks,
                stage,
                observed: AtomicU64::new(0),
                closed: AtomicBool::new(false),
                started: AtomicBool::new(false),
                pending: Mutex::new(workers),
            }),
        };
        dispatcher.ensure_started();
        dispatcher
    }

    /// Spawns the workers if they are not running yet and a runtime is at hand.
    fn ensure_started(&self) {
        if !self.shared.started.load(Ordering::Acquire) {
            self.spawn_pending();
        }
    }

    #[cold]
    fn spawn_pending(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        // A poisoned lock still holds the workers: nothing inside can be half-done.
        let mut pending = self
            .shared
            .pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for worker in pending.drain(..) {
            runtime.spawn(worker);
        }
        self.shared.started.store(true, Ordering::Release);
    }

    /// Hands a call to the sinks (through the processors, when there are any). Never blocks
    /// or awaits: a full queue drops the call, counts it, and warns (at a decreasing rate).
    pub fn dispatch(&self, call: Arc<LlmCall>) {
        self.ensure_started();
        self.shared.observed.fetch_add(1, Ordering::Relaxed);
        let reason = if self.shared.closed.load(Ordering::Acquire) {
            "dispatcher shut down"
        } else {
            match &self.shared.stage {
                None => return fan_out(&self.shared.sinks, call),
                Some(stage) => {
                    let size = call.approx_size();
                    if !stage.bytes.reserve(size) {
                        "processing queue full (bytes)"
                    } else if stage.queue.try_send((call, size)).is_err() {
                        stage.bytes.release(size);
                        "processing queue full"
                    } else {
                        return;
                    }
                }
            }
        };
        for sink in self.shared.sinks.iter() {
            sink.count_drop(reason);
        }
    }

    /// Waits until every call dispatched before this point has been exported (or has failed)
    /// and each sink has flushed, or until `deadline` passes.
    pub async fn flush(&self, deadline: Duration) -> Result<(), DispatchError> {
        self.broadcast(Control::Flush, deadline).await
    }

    /// Stops accepting calls (later ones count as dropped), delivers everything already queued,
    /// calls each sink's [`Sink::shutdown`] once and stops the workers — or gives up when
    /// `deadline` passes.
    pub async fn shutdown(&self, deadline: Duration) -> Result<(), DispatchError> {
        self.shared.closed.store(true, Ordering::Release);
        self.broadcast(Control::Shutdown, deadline).await
    }

    async fn broadcast(
        &self,
        command: fn(oneshot::Sender<()>) -> Control,
        deadline: Duration,
    ) -> Result<(), DispatchError> {
        self.ensure_started();
        let until = Instant::now() + deadline;
        let mut late = Vec::new();
        // The processors first: what they hold reaches the sinks' queues before the sinks hear.
        if let Some(stage) = &self.shared.stage {
            let (ack, done) = oneshot::channel();
            // An error means the worker already stopped: nothing is left to wait for.
            if stage.control.send(command(ack)).is_ok()
                && tokio::time::timeout_at(until, done).await.is_err()
            {
                late.push("(processors)".to_owned());
            }
        }
        let mut pending = Vec::new();
        for sink in self.shared.sinks.iter() {
            let (ack, done) = oneshot::channel();
            if sink.control.send(command(ack)).is_ok() {
                pending.push((sink.name.clone(), done));
            }
        }
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
                    filtered: s.counters.filtered.load(Ordering::Relaxed),
                })
                .collect(),
        }
    }
}

/// A sink's handle and its worker, not started.
fn sink_worker(plan: SinkPlan, defaults: &DispatcherConfig) -> (SinkHandle, Worker) {
    let config = Arc::new(plan.config.dispatch.unwrap_or_else(|| defaults.clone()));
    let (queue, calls) = mpsc::channel(config.queue_capacity.max(1));
    let bytes = Arc::new(ByteBound::new(config.queue_bytes));
    let (control, commands) = mpsc::unbounded_channel();
    let batch_ready = Arc::new(Notify::new());
    let taken = Arc::new(AtomicUsize::new(0));
    let counters = Arc::new(Counters::default());
    let name = plan.sink.name().to_owned();
    let worker = Worker {
        sink: plan.sink,
        name: name.clone(),
        calls,
        bytes: bytes.clone(),
        commands,
        batch_ready: batch_ready.clone(),
        taken: taken.clone(),
        counters: counters.clone(),
        filter: plan.config.filter,
        processors: Pipeline::new(plan.config.processors),
        healthy: true,
        config: config.clone(),
    };
    let handle = SinkHandle {
        name,
        queue,
        bytes,
        control,
        batch_ready,
        batch_size: config.batch_size.max(1),
        taken,
        counters,
    };
    (handle, worker)
}

/// Runs the layer's processors once per call, then offers the call to the sinks.
struct StageWorker {
    pipeline: Pipeline,
    calls: mpsc::Receiver<Queued>,
    bytes: Arc<ByteBound>,
    commands: mpsc::UnboundedReceiver<Control>,
    sinks: Arc<[SinkHandle]>,
}

impl StageWorker {
    async fn run(mut self) {
        loop {
            tokio::select! {
                biased;
                command = self.commands.recv() => {
                    let (ack, stop) = match command {
                        Some(Control::Flush(ack)) => (Some(ack), false),
                        Some(Control::Shutdown(ack)) => (Some(ack), true),
                        None => (None, true),
                    };
                    if stop {
                        self.calls.close();
                    }
                    while let Ok(queued) = self.calls.try_recv() {
                        self.process(queued);
                    }
                    if let Some(ack) = ack {
                        let _ = ack.send(());
                    }
                    if stop {
                        return;
                    }
                }
                queued = self.calls.recv() => match queued {
                    Some(queued) => self.process(queued),
                    None => return,
                },
            }
        }
    }

    fn process(&self, (call, size): Queued) {
        self.bytes.release(size);
        // Only the dispatcher held the call: no copy is made.
        let mut call = Arc::try_unwrap(call).unwrap_or_else(|shared| (*shared).clone());
        self.pipeline.run(&mut call);
        fan_out(&self.sinks, Arc::new(call));
    }
}

struct Worker {
    sink: Arc<dyn Sink>,
    name: String,
    calls: mpsc::Receiver<Queued>,
    bytes: Arc<ByteBound>,
    commands: mpsc::UnboundedReceiver<Control>,
    batch_ready: Arc<Notify>,
    /// Shared with the handle: how many calls `batch` holds while the worker waits.
    taken: Arc<AtomicUsize>,
    counters: Arc<Counters>,
    filter: CallFilter,
    processors: Pipeline,
    /// False from a batch given up until the next one delivered: failures are reported once.
    healthy: bool,
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
                    queued = self.calls.recv() => match queued {
                        Some(queued) => {
                            self.admit(queued, &mut batch);
                            deadline = Instant::now() + self.config.batch_interval;
                        }
                        // Every dispatcher is gone: nothing more can come.
                        None => {
                            self.shutdown_sink().await;
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
            self.taken.store(batch.len(), Ordering::Relaxed);
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

    /// Puts `call` in the batch if the filter keeps it, as this sink's processors leave it.
    fn admit(&self, (call, size): Queued, batch: &mut Vec<Arc<LlmCall>>) {
        self.bytes.release(size);
        if !self.filter.keeps(&call) || call.skip_sinks.contains(&self.name) {
            self.counters.filtered.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self.processors.is_empty() {
            batch.push(call);
            return;
        }
        let mut own = LlmCall::clone(&call);
        self.processors.run(&mut own);
        batch.push(Arc::new(own));
    }

    /// Moves queued calls into `batch` until it holds `batch_size`.
    fn take_queued(&mut self, batch: &mut Vec<Arc<LlmCall>>, batch_size: usize) {
        while batch.len() < batch_size {
            match self.calls.try_recv() {
                Ok(queued) => self.admit(queued, batch),
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
                self.report("flush", self.guarded(self.sink.flush()).await);
                let _ = ack.send(());
                ControlFlow::Continue(())
            }
            Some(Control::Shutdown(ack)) => {
                // Calls that raced past the closed flag are still delivered, not lost.
                self.calls.close();
                self.export_queued(batch).await;
                self.shutdown_sink().await;
                let _ = ack.send(());
                ControlFlow::Break(())
            }
            // Every dispatcher is gone: deliver what is left and stop.
            None => {
                self.calls.close();
                self.export_queued(batch).await;
                self.shutdown_sink().await;
                ControlFlow::Break(())
            }
        }
    }

    /// Exports the batch with retries; counts it delivered or failed; leaves it empty.
    async fn export(&mut self, batch: &mut Vec<Arc<LlmCall>>) {
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
                    if !std::mem::replace(&mut self.healthy, true) {
                        tracing::info!(target: "llm_observability", sink = %self.name, "sink delivers again");
                    }
                    break;
                }
                Err(error) if error.is_retryable() && attempt < self.config.max_retries => {
                    let wait = self.config.backoff(attempt, error.retry_after());
                    tracing::debug!(target: "llm_observability", sink = %self.name, error = %error.chain(), attempt, ?wait, "sink export failed; retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(error) => {
                    let failed = self.counters.failed.fetch_add(count, Ordering::Relaxed) + count;
                    if std::mem::replace(&mut self.healthy, false) {
                        tracing::warn!(target: "llm_observability", sink = %self.name, error = %error.chain(), calls = count, "sink export failed; batch given up (said once until the sink delivers again; see SinkStats::failed)");
                    } else {
                        tracing::debug!(target: "llm_observability", sink = %self.name, error = %error.chain(), failed, "sink export still failing");
                    }
                    break;
                }
            }
        }
        batch.clear();
        self.taken.store(0, Ordering::Relaxed);
    }

    async fn shutdown_sink(&self) {
        self.report("shutdown", self.guarded(self.sink.shutdown()).await);
    }

    fn report(&self, what: &str, outcome: Result<(), SinkError>) {
        if let Err(error) = outcome {
            tracing::warn!(target: "llm_observability", sink = %self.name, error = %error.chain(), "sink {what} failed");
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
            Ok(Err(_elapsed)) => Err(SinkError::transient(format!(
                "timed out after {:?}",
                self.config.export_timeout
            ))),
            Err(_panic) => Err(SinkError::permanent("the sink panicked")),
        }
    }
}
