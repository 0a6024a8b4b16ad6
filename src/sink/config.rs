//! How calls reach a sink: queue, batching, retry and timeout settings
//! ([`DispatcherConfig`]), and per sink a filter and processors ([`SinkConfig`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::payload::{CallStatus, LlmCall};
use crate::process::Processor;

/// Queueing, batching and retry settings of a sink's worker: the layer's default for every
/// sink ([`dispatcher_config`](crate::LlmObservabilityLayerBuilder::dispatcher_config)), or one
/// sink's own ([`SinkConfig::dispatch`]).
///
/// ```
/// use std::time::Duration;
/// use llm_observability::DispatcherConfig;
/// let config = DispatcherConfig::builder()
///     .batch_size(256)
///     .batch_interval(Duration::from_secs(1))
///     .export_timeout(Duration::from_secs(10))
///     .build();
/// assert_eq!(config.batch_size, 256);
/// assert_eq!(config.queue_capacity, DispatcherConfig::default().queue_capacity);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DispatcherConfig {
    /// Capacity of the sink's queue; a call that finds it full is dropped and counted.
    pub queue_capacity: usize,
    /// Bytes the calls in the sink's queue may hold (their messages, responses and the like,
    /// about); a call that would pass it is dropped and counted. An empty queue takes any one
    /// call.
    pub queue_bytes: usize,
    /// A batch is exported when it holds this many calls...
    pub batch_size: usize,
    /// ... or when its first call has waited this long.
    pub batch_interval: Duration,
    /// Retries of a failed export (after the first attempt) for retryable errors.
    pub max_retries: u32,
    /// Wait before the first retry; doubled for each further one.
    pub initial_backoff: Duration,
    /// The longest wait between attempts, whether from backoff or from a backend's
    /// [`retry_after`](crate::SinkError::retry_after).
    pub max_backoff: Duration,
    /// One `export`, `flush` or `shutdown` call taking longer than this counts as a (retryable)
    /// failure.
    pub export_timeout: Duration,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        DispatcherConfig {
            queue_capacity: 10_000,
            queue_bytes: 64 << 20,
            batch_size: 64,
            batch_interval: Duration::from_millis(200),
            max_retries: 3,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(30),
            export_timeout: Duration::from_secs(30),
        }
    }
}

impl DispatcherConfig {
    /// Starts from the defaults.
    pub fn builder() -> DispatcherConfigBuilder {
        DispatcherConfigBuilder(DispatcherConfig::default())
    }

    /// The wait before retry number `attempt` (0 for the first retry), or the backend's
    /// `retry_after`, capped by `max_backoff`.
    pub(crate) fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exponential = self
            .initial_backoff
            .saturating_mul(2u32.saturating_pow(attempt));
        retry_after.unwrap_or(exponential).min(self.max_backoff)
    }
}

/// Builder of [`DispatcherConfig`]; every setting starts at its default.
#[derive(Debug, Clone)]
pub struct DispatcherConfigBuilder(DispatcherConfig);

impl DispatcherConfigBuilder {
    /// See [`DispatcherConfig::queue_capacity`].
    pub fn queue_capacity(mut self, calls: usize) -> Self {
        self.0.queue_capacity = calls;
        self
    }

    /// See [`DispatcherConfig::queue_bytes`].
    pub fn queue_bytes(mut self, bytes: usize) -> Self {
        self.0.queue_bytes = bytes;
        self
    }

    /// See [`DispatcherConfig::batch_size`].
    pub fn batch_size(mut self, calls: usize) -> Self {
        self.0.batch_size = calls;
        self
    }

    /// See [`DispatcherConfig::batch_interval`].
    pub fn batch_interval(mut self, interval: Duration) -> Self {
        self.0.batch_interval = interval;
        self
    }

    /// See [`DispatcherConfig::max_retries`].
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.0.max_retries = retries;
        self
    }

    /// See [`DispatcherConfig::initial_backoff`].
    pub fn initial_backoff(mut self, backoff: Duration) -> Self {
        self.0.initial_backoff = backoff;
        self
    }

    /// See [`DispatcherConfig::max_backoff`].
    pub fn max_backoff(mut self, backoff: Duration) -> Self {
        self.0.max_backoff = backoff;
        self
    }

    /// See [`DispatcherConfig::export_timeout`].
    pub fn export_timeout(mut self, timeout: Duration) -> Self {
        self.0.export_timeout = timeout;
        self
    }

    /// The configuration.
    pub fn build(self) -> DispatcherConfig {
        self.0
    }
}

/// Which calls a sink receives. Calls a filter leaves out are counted per sink in
/// [`SinkStats::filtered`](crate::SinkStats::filtered).
///
/// ```
/// use llm_observability::{CallFilter, SinkConfig};
/// let failures_only = SinkConfig::new().filter(CallFilter::only_failures());
/// let one_in_ten = SinkConfig::new().filter(CallFilter::sample(0.1));
/// let big_calls = SinkConfig::new().filter(CallFilter::predicate(|call| {
///     call.usage.and_then(|u| u.total_tokens).unwrap_or(0) > 10_000
/// }));
/// ```
#[derive(Clone)]
pub struct CallFilter(Keep);

#[derive(Clone)]
enum Keep {
    All,
    Failures,
    Successes,
    /// Keep when the trace id's last 8 bytes, as a number, fall below this.
    Sample(u64),
    Predicate(Arc<dyn Fn(&LlmCall) -> bool + Send + Sync>),
}

impl CallFilter {
    /// Every call (the default).
    pub fn all() -> Self {
        CallFilter(Keep::All)
    }

    /// Calls that did not succeed: `status` is `error` or `cancelled`.
    pub fn only_failures() -> Self {
        CallFilter(Keep::Failures)
    }

    /// Calls whose `status` is `success`.
    pub fn only_successes() -> Self {
        CallFilter(Keep::Successes)
    }

    /// A share `rate` (0.0 to 1.0) of the calls, chosen by trace id: every call of a trace
    /// is kept or left out together, in every sink and service that samples this way.
    pub fn sample(rate: f64) -> Self {
        let rate = if rate.is_nan() {
            0.0
        } else {
            rate.clamp(0.0, 1.0)
        };
        if rate >= 1.0 {
            return CallFilter::all();
        }
        // Exact enough: the float-to-int conversion saturates, and rate < 1 here.
        CallFilter(Keep::Sample((rate * u64::MAX as f64) as u64))
    }

    /// The calls for which `keep` returns `true`. It runs on the sink's worker, not on the
    /// request path.
    pub fn predicate(keep: impl Fn(&LlmCall) -> bool + Send + Sync + 'static) -> Self {
        CallFilter(Keep::Predicate(Arc::new(keep)))
    }

    /// Whether `call` passes.
    pub fn keeps(&self, call: &LlmCall) -> bool {
        match &self.0 {
            Keep::All => true,
            Keep::Failures => call.status != CallStatus::Success,
            Keep::Successes => call.status == CallStatus::Success,
            Keep::Sample(below) => {
                let bytes = call.trace.trace_id.to_bytes();
                let mut low = [0u8; 8];
                low.copy_from_slice(&bytes[8..]);
                u64::from_be_bytes(low) < *below
            }
            Keep::Predicate(keep) => keep(call),
        }
    }
}

impl Default for CallFilter {
    fn default() -> Self {
        CallFilter::all()
    }
}

impl fmt::Debug for CallFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Keep::All => f.write_str("CallFilter::all"),
            Keep::Failures => f.write_str("CallFilter::only_failures"),
            Keep::Successes => f.write_str("CallFilter::only_successes"),
            Keep::Sample(below) => {
                write!(f, "CallFilter::sample({})", *below as f64 / u64::MAX as f64)
            }
            Keep::Predicate(_) => f.write_str("CallFilter::predicate(..)"),
        }
    }
}

/// One sink's own settings, for
/// [`LlmObservabilityLayerBuilder::sink_with`](crate::LlmObservabilityLayerBuilder::sink_with):
/// its queue, batching, retry and timeout ([`DispatcherConfig`]), which calls it gets
/// ([`CallFilter`]) and processors that run on its own copy of each call.
///
/// ```
/// use std::time::Duration;
/// use llm_observability::{
///     CallFilter, DispatcherConfig, LlmCall, LlmObservabilityLayer, LogSink, ProcessError,
///     SinkConfig,
/// };
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let layer = LlmObservabilityLayer::builder()
///     .sink_with(
///         LogSink,
///         SinkConfig::new()
///             .filter(CallFilter::only_failures())
///             .dispatch(DispatcherConfig::builder().batch_size(1).build())
///             .processor(|call: &mut LlmCall| {
///                 call.remove_content(); // this sink never sees prompts or outputs
///                 Ok::<(), ProcessError>(())
///             }),
///     )
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Default, Clone)]
pub struct SinkConfig {
    pub(crate) dispatch: Option<DispatcherConfig>,
    pub(crate) filter: CallFilter,
    pub(crate) processors: Vec<Arc<dyn Processor>>,
}

impl SinkConfig {
    /// The layer's dispatcher settings, every call, no processors.
    pub fn new() -> Self {
        SinkConfig::default()
    }

    /// Queue, batching, retry and timeout settings for this sink only.
    pub fn dispatch(mut self, config: DispatcherConfig) -> Self {
        self.dispatch = Some(config);
        self
    }

    /// Which calls this sink gets.
    pub fn filter(mut self, filter: CallFilter) -> Self {
        self.filter = filter;
        self
    }

    /// Adds a processor that runs on this sink's own copy of each call, after the layer's
    /// processors (several run in the order added).
    pub fn processor(mut self, processor: impl Processor) -> Self {
        self.processors.push(Arc::new(processor));
        self
    }
}

impl fmt::Debug for SinkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SinkConfig")
            .field("dispatch", &self.dispatch)
            .field("filter", &self.filter)
            .field(
                "processors",
                &self.processors.iter().map(|p| p.name()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Endpoint;

    #[test]
    fn sampling_follows_the_trace_id_and_the_rate() {
        let calls: Vec<LlmCall> = (0..4000)
            .map(|_| LlmCall::new(Endpoint::ChatCompletions))
            .collect();
        let kept = |filter: &CallFilter| calls.iter().filter(|c| filter.keeps(c)).count();
        assert_eq!(kept(&CallFilter::sample(0.0)), 0);
        assert_eq!(kept(&CallFilter::sample(1.0)), 4000);
        let quarter = kept(&CallFilter::sample(0.25));
        // Binomial(4000, 0.25): mean 1000, standard deviation 27; 8 deviations either way.
        assert!((780..=1220).contains(&quarter), "{quarter}");
        let filter = CallFilter::sample(0.5);
        for call in &calls[..50] {
            let mut same_trace = LlmCall::new(Endpoint::ChatCompletions);
            same_trace.trace = call.trace.child();
            assert_eq!(filter.keeps(call), filter.keeps(&same_trace));
        }
    }

    #[test]
    fn status_filters() {
        let mut call = LlmCall::new(Endpoint::Embeddings);
        assert!(CallFilter::only_successes().keeps(&call));
        assert!(!CallFilter::only_failures().keeps(&call));
        call.status = CallStatus::Cancelled;
        assert!(CallFilter::only_failures().keeps(&call));
        call.status = CallStatus::Error;
        assert!(CallFilter::only_failures().keeps(&call));
        assert!(!CallFilter::only_successes().keeps(&call));
    }

    #[test]
    fn backoff_honours_retry_after_within_the_cap() {
        let config = DispatcherConfig::builder()
            .initial_backoff(Duration::from_millis(100))
            .max_backoff(Duration::from_secs(5))
            .build();
        assert_eq!(config.backoff(0, None), Duration::from_millis(100));
        assert_eq!(config.backoff(3, None), Duration::from_millis(800));
        assert_eq!(config.backoff(30, None), Duration::from_secs(5));
        assert_eq!(
            config.backoff(0, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(
            config.backoff(0, Some(Duration::from_secs(60))),
            Duration::from_secs(5)
        );
    }
}
