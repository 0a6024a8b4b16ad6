//! GenAI client metrics through the [`metrics`](https://docs.rs/metrics/0.24) facade (feature `metrics`), so the
//! application's own recorder — Prometheus, StatsD, OpenTelemetry — receives them.
//!
//! ```
//! use llm_observability::metrics::GenAiMetrics;
//! use llm_observability::LlmObservabilityLayer;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let metrics = GenAiMetrics::new(); // labels capped at 100 distinct values each
//! let layer = LlmObservabilityLayer::builder().metrics(metrics.clone()).build()?;
//! // on a scrape (or a timer): the dispatcher's health as gauges and counters
//! metrics.record_dispatcher(layer.dispatcher());
//! # Ok(()) }
//! ```
//!
//! # What is recorded, and where
//!
//! Per finished call, following the OpenTelemetry GenAI metrics conventions (v1.41):
//!
//! | facade name | kind | Prometheus name (recommended naming) |
//! |---|---|---|
//! | [`TOKEN_USAGE`] `gen_ai.client.token.usage` (`gen_ai.token.type` = `input`/`output`; `input` counts every input token, cache reads and writes included, for every API family) | histogram, tokens | `gen_ai_client_token_usage` |
//! | [`OPERATION_DURATION`] `gen_ai.client.operation.duration` | histogram, seconds | `gen_ai_client_operation_duration_seconds` |
//! | [`TIME_TO_FIRST_CHUNK`] `gen_ai.client.operation.time_to_first_chunk` (streams) | histogram, seconds | `gen_ai_client_operation_time_to_first_chunk_seconds` |
//! | [`REQUESTS`] `llm_observability.requests` (`llm_observability.status`, `error.type`) | counter | `llm_observability_requests_total` |
//! | [`CACHED_INPUT_TOKENS`] `llm_observability.usage.cached_input_tokens` | counter | `llm_observability_usage_cached_input_tokens_total` |
//! | [`CACHE_CREATION_INPUT_TOKENS`] `llm_observability.usage.cache_creation_input_tokens` | counter | `llm_observability_usage_cache_creation_input_tokens_total` |
//! | [`REASONING_TOKENS`] `llm_observability.usage.reasoning_tokens` | counter | `llm_observability_usage_reasoning_tokens_total` |
//! | [`COST`] `llm_observability.cost.nano_usd` (when [`LlmCall::cost`] is known) | counter, 10⁻⁹ USD | `llm_observability_cost_nano_usd_total` |
//!
//! They are recorded **synchronously where the finished call is handed to the dispatcher**,
//! before its bounded `try_send`: a full queue, a slow sink or a shutdown can drop a payload
//! but never its metrics. The cost is that of the layer's
//! [`pricing`](crate::LlmObservabilityLayerBuilder::pricing), applied as the call ends and
//! before this point (a cost set later, by a processor, is not counted here). The facade's
//! counters are integers: the cost counts nano-dollars (divide by 10⁹ in queries), exact to
//! 10⁻⁹ USD per call. Recording takes no await and no contended lock (label values are
//! looked up in a read-copy-update set, see below); the cost per call is measured in
//! `benches/metrics.rs`.
//!
//! The dispatcher's own health, read from [`Dispatcher::stats`] by
//! [`record_dispatcher`](GenAiMetrics::record_dispatcher) (call it before rendering a scrape,
//! or on a timer): [`DISPATCHER_OBSERVED`] (calls handed to the dispatcher),
//! [`SINK_CALLS`] per `sink` and `outcome` (`delivered`, `dropped`, `failed`, `filtered`) and
//! [`SINK_PENDING`] per `sink`, the queue depth: calls observed but not yet accounted for by
//! the sink (queued, being processed, or in a batch being exported).
//!
//! # Labels and the cap
//!
//! `gen_ai.operation.name`, `gen_ai.provider.name`, `gen_ai.request.model`,
//! `gen_ai.response.model` (from the [GenAI mapping](crate::genai), each left out when
//! unknown), and on [`REQUESTS`] `llm_observability.status` and, for failures, `error.type`
//! (also on the duration histogram, as the conventions say). Each label admits at most
//! [`DEFAULT_LABEL_CAP`] distinct values (see [`GenAiMetricsBuilder::label_cap`]); later values
//! become `other`, so no client can blow up the number of series. User or session labels are
//! only recorded when asked for, from the call's metadata
//! ([`GenAiMetricsBuilder::metadata_label`]), under the same cap.
//!
//! # Prometheus
//!
//! The facade has no bucket boundaries: configure the exporter with [`prometheus_builder`]
//! (feature `prometheus`), which sets the conventions' buckets on the histograms
//! (`set_buckets_for_metric`) and Prometheus' recommended naming (`_total` on counters, unit
//! suffixes), so `promtool check metrics` finds no problems.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once};

use ::metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Label,
    SharedString, Unit,
};
use arc_swap::ArcSwap;

use crate::payload::{CallStatus, LlmCall};
use crate::sink::Dispatcher;
use crate::span::{
    ERROR_TYPE, GEN_AI_OPERATION_NAME, GEN_AI_PROVIDER_NAME, GEN_AI_REQUEST_MODEL,
    GEN_AI_RESPONSE_MODEL,
};

/// `gen_ai.client.token.usage`: tokens per call, by `gen_ai.token.type` (histogram).
pub const TOKEN_USAGE: &str = "gen_ai.client.token.usage";
/// `gen_ai.client.operation.duration`: seconds from the request to the end of the response
/// (histogram).
pub const OPERATION_DURATION: &str = "gen_ai.client.operation.duration";
/// `gen_ai.client.operation.time_to_first_chunk`: seconds to the first streamed chunk with
/// content (histogram; streams only).
pub const TIME_TO_FIRST_CHUNK: &str = "gen_ai.client.operation.time_to_first_chunk";
/// `llm_observability.requests`: finished calls, by status and error type (counter).
pub const REQUESTS: &str = "llm_observability.requests";
/// `llm_observability.usage.cached_input_tokens`: input tokens served from the prompt cache
/// (counter).
pub const CACHED_INPUT_TOKENS: &str = "llm_observability.usage.cached_input_tokens";
/// `llm_observability.usage.cache_creation_input_tokens`: input tokens written to the prompt
/// cache (counter; Anthropic reports them).
pub const CACHE_CREATION_INPUT_TOKENS: &str = "llm_observability.usage.cache_creation_input_tokens";
/// `llm_observability.usage.reasoning_tokens`: output tokens spent on reasoning (counter).
pub const REASONING_TOKENS: &str = "llm_observability.usage.reasoning_tokens";
/// `llm_observability.cost.nano_usd`: what calls cost, in 10⁻⁹ US dollars (counter; the
/// facade's counters are integers).
pub const COST: &str = "llm_observability.cost.nano_usd";
/// `llm_observability.dispatcher.observed_calls`: calls handed to the dispatcher (counter).
pub const DISPATCHER_OBSERVED: &str = "llm_observability.dispatcher.observed_calls";
/// `llm_observability.sink.calls`: calls per `sink` and `outcome` (counter).
pub const SINK_CALLS: &str = "llm_observability.sink.calls";
/// `llm_observability.sink.pending_calls`: calls observed and not yet accounted for, per
/// `sink` (gauge).
pub const SINK_PENDING: &str = "llm_observability.sink.pending_calls";

/// `gen_ai.token.type`
pub const GEN_AI_TOKEN_TYPE: &str = "gen_ai.token.type";
/// `llm_observability.status`: `success`, `error` or `cancelled`.
pub const STATUS: &str = "llm_observability.status";
/// `sink`: a sink's [`name`](crate::Sink::name).
pub const SINK: &str = "sink";
/// `outcome`: `delivered`, `dropped`, `failed` or `filtered`.
pub const OUTCOME: &str = "outcome";

/// The value a capped label takes once it has admitted its maximum of distinct values.
pub const OVERFLOW: &str = "other";
/// Distinct values each label admits by default.
pub const DEFAULT_LABEL_CAP: usize = 100;

/// The conventions' bucket boundaries for [`TOKEN_USAGE`].
pub const TOKEN_USAGE_BUCKETS: &[f64] = &[
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0, 67108864.0,
];

/// The conventions' bucket boundaries for [`OPERATION_DURATION`] and [`TIME_TO_FIRST_CHUNK`]
/// (seconds).
pub const DURATION_BUCKETS: &[f64] = &[
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];

/// One label's admitted values: at most `cap` distinct ones, the rest become [`OVERFLOW`].
///
/// Lookups are lock-free (a read of an [`ArcSwap`] snapshot); only a value seen for the first
/// time takes a mutex, to copy the set with it added — at most `cap` times in the life of the
/// label. Once full, new values cost a lookup and nothing else.
///
/// ```
/// use llm_observability::metrics::LabelCap;
/// let cap = LabelCap::new(2);
/// assert_eq!(&*cap.admit("gpt-4o"), "gpt-4o");
/// assert_eq!(&*cap.admit("gpt-4o-mini"), "gpt-4o-mini");
/// assert_eq!(&*cap.admit("gpt-5"), "other");
/// assert_eq!(&*cap.admit("gpt-4o"), "gpt-4o");
/// assert_eq!(cap.len(), 2);
/// ```
#[derive(Debug)]
pub struct LabelCap {
    cap: usize,
    seen: ArcSwap<HashSet<Arc<str>>>,
    full: AtomicBool,
    grow: Mutex<()>,
}

impl LabelCap {
    /// A label that admits `cap` distinct values (0: every value is [`OVERFLOW`]).
    pub fn new(cap: usize) -> Self {
        LabelCap {
            cap,
            seen: ArcSwap::from_pointee(HashSet::new()),
            full: AtomicBool::new(cap == 0),
            grow: Mutex::new(()),
        }
    }

    /// `value` if it was admitted before or there is room for it, else [`OVERFLOW`].
    pub fn admit(&self, value: &str) -> SharedString {
        if let Some(known) = self.seen.load().get(value) {
            return SharedString::from_shared(known.clone());
        }
        if self.full.load(Ordering::Relaxed) {
            return SharedString::const_str(OVERFLOW);
        }
        // A poisoned mutex guards no data: the set lives in the ArcSwap.
        let _writer = self.grow.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.seen.load_full();
        if let Some(known) = current.get(value) {
            return SharedString::from_shared(known.clone());
        }
        if current.len() >= self.cap {
            self.full.store(true, Ordering::Relaxed);
            return SharedString::const_str(OVERFLOW);
        }
        let admitted: Arc<str> = Arc::from(value);
        let mut next = HashSet::with_capacity(current.len() + 1);
        next.extend(current.iter().cloned());
        next.insert(admitted.clone());
        if next.len() >= self.cap {
            self.full.store(true, Ordering::Relaxed);
        }
        self.seen.store(Arc::new(next));
        SharedString::from_shared(admitted)
    }

    /// How many distinct values were admitted.
    pub fn len(&self) -> usize {
        self.seen.load().len()
    }

    /// Whether no value was admitted yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Builder of [`GenAiMetrics`].
#[derive(Debug, Clone)]
pub struct GenAiMetricsBuilder {
    label_cap: usize,
    metadata_labels: Vec<(String, String)>,
}

impl Default for GenAiMetricsBuilder {
    fn default() -> Self {
        GenAiMetricsBuilder {
            label_cap: DEFAULT_LABEL_CAP,
            metadata_labels: Vec::new(),
        }
    }
}

impl GenAiMetricsBuilder {
    /// Distinct values each label admits before later ones become [`OVERFLOW`] (default
    /// [`DEFAULT_LABEL_CAP`]).
    pub fn label_cap(mut self, cap: usize) -> Self {
        self.label_cap = cap;
        self
    }

    /// Opt-in: adds label `label` with the value of the call's metadata entry `key` (e.g. a
    /// user or session id captured with
    /// [`capture_header`](crate::LlmObservabilityLayerBuilder::capture_header)), under the
    /// same cap as every label. Calls without the entry leave the label out.
    ///
    /// ```
    /// use llm_observability::metrics::GenAiMetrics;
    /// let metrics = GenAiMetrics::builder().metadata_label("user_id", "user").build();
    /// ```
    pub fn metadata_label(mut self, key: impl Into<String>, label: impl Into<String>) -> Self {
        self.metadata_labels.push((key.into(), label.into()));
        self
    }

    /// Builds the metrics.
    pub fn build(self) -> GenAiMetrics {
        let cap = self.label_cap;
        GenAiMetrics {
            inner: Arc::new(Inner {
                operation: LabelCap::new(cap),
                provider: LabelCap::new(cap),
                request_model: LabelCap::new(cap),
                response_model: LabelCap::new(cap),
                error_type: LabelCap::new(cap),
                metadata: self
                    .metadata_labels
                    .into_iter()
                    .map(|(key, label)| MetadataLabel {
                        key,
                        label: SharedString::from_owned(label),
                        values: LabelCap::new(cap),
                    })
                    .collect(),
                sinks: LabelCap::new(cap),
                described: Once::new(),
            }),
        }
    }
}

#[derive(Debug)]
struct MetadataLabel {
    key: String,
    label: SharedString,
    values: LabelCap,
}

#[derive(Debug)]
struct Inner {
    operation: LabelCap,
    provider: LabelCap,
    request_model: LabelCap,
    response_model: LabelCap,
    error_type: LabelCap,
    metadata: Vec<MetadataLabel>,
    sinks: LabelCap,
    described: Once,
}

/// Records GenAI client metrics for every call of the layers it is given to (see the
/// [module docs](self)). Cloning is cheap; clones share the label caps.
#[derive(Debug, Clone)]
pub struct GenAiMetrics {
    inner: Arc<Inner>,
}

impl Default for GenAiMetrics {
    fn default() -> Self {
        GenAiMetrics::new()
    }
}

fn label(key: &'static str, value: SharedString) -> Label {
    Label::new(SharedString::const_str(key), value)
}

impl GenAiMetrics {
    /// Metrics with the default label cap and no opt-in labels.
    pub fn new() -> Self {
        GenAiMetrics::builder().build()
    }

    /// Starts configuring metrics.
    pub fn builder() -> GenAiMetricsBuilder {
        GenAiMetricsBuilder::default()
    }

    /// Describes every metric (unit and help text) to the installed recorder. Done on the
    /// first recorded call and on each [`record_dispatcher`](Self::record_dispatcher); call it
    /// yourself if the recorder is installed later.
    pub fn describe(&self) {
        describe_histogram!(
            TOKEN_USAGE,
            Unit::Count,
            "Number of input and output tokens used per GenAI call."
        );
        describe_histogram!(
            OPERATION_DURATION,
            Unit::Seconds,
            "Duration of GenAI calls, from the request to the end of the response."
        );
        describe_histogram!(
            TIME_TO_FIRST_CHUNK,
            Unit::Seconds,
            "Time from the request to the first streamed chunk with content."
        );
        describe_counter!(
            REQUESTS,
            Unit::Count,
            "Finished GenAI calls, by status and error type."
        );
        describe_counter!(
            CACHED_INPUT_TOKENS,
            Unit::Count,
            "Input tokens served from the provider's prompt cache."
        );
        describe_counter!(
            CACHE_CREATION_INPUT_TOKENS,
            Unit::Count,
            "Input tokens written to the provider's prompt cache."
        );
        describe_counter!(
            REASONING_TOKENS,
            Unit::Count,
            "Output tokens spent on reasoning."
        );
        describe_counter!(
            COST,
            Unit::Count,
            "Cost of GenAI calls in nano-dollars (1e-9 USD), when their price was known."
        );
        describe_counter!(
            DISPATCHER_OBSERVED,
            Unit::Count,
            "Finished calls handed to the dispatcher."
        );
        describe_counter!(
            SINK_CALLS,
            Unit::Count,
            "Calls per sink, by outcome: delivered, dropped (queue full or shut down), failed (after retries) or filtered."
        );
        describe_gauge!(
            SINK_PENDING,
            Unit::Count,
            "Calls observed but not yet delivered, dropped, failed or filtered by the sink (its queue depth)."
        );
    }

    /// The labels every per-call metric carries: operation, provider, models, opt-in labels.
    fn call_labels(&self, call: &LlmCall) -> Vec<Label> {
        let inner = &*self.inner;
        let mut labels = Vec::with_capacity(6 + inner.metadata.len());
        labels.push(label(
            GEN_AI_OPERATION_NAME,
            inner.operation.admit(&call.operation),
        ));
        labels.push(label(
            GEN_AI_PROVIDER_NAME,
            inner.provider.admit(&call.provider),
        ));
        if let Some(model) = call.requested_model() {
            labels.push(label(
                GEN_AI_REQUEST_MODEL,
                inner.request_model.admit(model),
            ));
        }
        if let Some(model) = &call.response_model {
            labels.push(label(
                GEN_AI_RESPONSE_MODEL,
                inner.response_model.admit(model),
            ));
        }
        for extra in &inner.metadata {
            if let Some(value) = call.metadata.get(&extra.key) {
                let admitted = match value {
                    serde_json::Value::String(text) => extra.values.admit(text),
                    other => extra.values.admit(&other.to_string()),
                };
                labels.push(Label::new(extra.label.clone(), admitted));
            }
        }
        labels
    }

    /// Records one finished call. The layer calls this for you; call it yourself for calls
    /// observed some other way.
    pub fn record(&self, call: &LlmCall) {
        self.inner.described.call_once(|| self.describe());
        let labels = self.call_labels(call);
        let error_type = call
            .error_type
            .as_deref()
            .map(|e| label(ERROR_TYPE, self.inner.error_type.admit(e)));

        let mut requests = Vec::with_capacity(labels.len() + 2);
        requests.extend(labels.iter().cloned());
        requests.push(label(STATUS, SharedString::const_str(call.status.as_str())));
        requests.extend(error_type.iter().cloned());
        counter!(REQUESTS, requests).increment(1);

        let mut duration = Vec::with_capacity(labels.len() + 1);
        duration.extend(labels.iter().cloned());
        duration.extend(error_type);
        histogram!(OPERATION_DURATION, duration).record(call.timing.duration_ms / 1000.0);

        if let Some(cost) = call
            .cost
            .as_ref()
            .filter(|c| c.total_usd.is_finite() && c.total_usd >= 0.0)
        {
            counter!(COST, labels.clone()).increment((cost.total_usd * 1e9).round() as u64);
        }
        if let Some(ttft) = call.timing.time_to_first_token_ms {
            histogram!(TIME_TO_FIRST_CHUNK, labels.clone()).record(ttft / 1000.0);
        }
        // Cancelled calls report what they had; usage is only known from a response.
        if let Some(usage) = call.usage.filter(|_| call.status != CallStatus::Cancelled) {
            for (kind, count) in [
                ("input", usage.input_tokens),
                ("output", usage.output_tokens),
            ] {
                if let Some(count) = count {
                    let mut tokens = Vec::with_capacity(labels.len() + 1);
                    tokens.extend(labels.iter().cloned());
                    tokens.push(label(GEN_AI_TOKEN_TYPE, SharedString::const_str(kind)));
                    histogram!(TOKEN_USAGE, tokens).record(count as f64);
                }
            }
            if let Some(cached) = usage.cached_input_tokens {
                counter!(CACHED_INPUT_TOKENS, labels.clone()).increment(cached);
            }
            if let Some(written) = usage.cache_creation_input_tokens {
                counter!(CACHE_CREATION_INPUT_TOKENS, labels.clone()).increment(written);
            }
            if let Some(reasoning) = usage.reasoning_tokens {
                counter!(REASONING_TOKENS, labels).increment(reasoning);
            }
        }
    }

    /// Records the dispatcher's health from [`Dispatcher::stats`]: calls observed, and per
    /// sink its outcomes and pending calls. Call it before rendering a scrape, or on a timer.
    pub fn record_dispatcher(&self, dispatcher: &Dispatcher) {
        self.describe();
        let stats = dispatcher.stats();
        counter!(DISPATCHER_OBSERVED).absolute(stats.observed);
        for sink in &stats.sinks {
            let name = self.inner.sinks.admit(&sink.name);
            for (outcome, count) in [
                ("delivered", sink.delivered),
                ("dropped", sink.dropped),
                ("failed", sink.failed),
                ("filtered", sink.filtered),
            ] {
                counter!(
                    SINK_CALLS,
                    vec![
                        label(SINK, name.clone()),
                        label(OUTCOME, SharedString::const_str(outcome)),
                    ]
                )
                .absolute(count);
            }
            gauge!(SINK_PENDING, vec![label(SINK, name)])
                .set(stats.observed.saturating_sub(sink.accounted()) as f64);
        }
    }
}

/// A Prometheus exporter builder set up for these metrics: the conventions' bucket boundaries
/// on the three histograms ([`TOKEN_USAGE_BUCKETS`], [`DURATION_BUCKETS`]) and Prometheus'
/// recommended naming (`_total` on counters, `_seconds` on durations). Add your own settings,
/// then install it:
///
/// ```
/// let handle = llm_observability::metrics::prometheus_builder()?.install_recorder()?;
/// // serve `handle.render()` on GET /metrics, and call `handle.run_upkeep()` every few seconds:
/// // the exporter keeps histogram samples until its upkeep folds them into the buckets.
/// # Ok::<(), metrics_exporter_prometheus::BuildError>(())
/// ```
#[cfg(feature = "prometheus")]
#[cfg_attr(docsrs, doc(cfg(feature = "prometheus")))]
pub fn prometheus_builder(
) -> Result<metrics_exporter_prometheus::PrometheusBuilder, metrics_exporter_prometheus::BuildError>
{
    configure_prometheus(metrics_exporter_prometheus::PrometheusBuilder::new())
}

/// Adds this crate's bucket boundaries and Prometheus' recommended naming to `builder` (see
/// [`prometheus_builder`]).
#[cfg(feature = "prometheus")]
#[cfg_attr(docsrs, doc(cfg(feature = "prometheus")))]
pub fn configure_prometheus(
    builder: metrics_exporter_prometheus::PrometheusBuilder,
) -> Result<metrics_exporter_prometheus::PrometheusBuilder, metrics_exporter_prometheus::BuildError>
{
    use metrics_exporter_prometheus::Matcher;
    builder
        .with_recommended_naming(true)
        .set_buckets_for_metric(Matcher::Full(TOKEN_USAGE.into()), TOKEN_USAGE_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(OPERATION_DURATION.into()), DURATION_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(TIME_TO_FIRST_CHUNK.into()), DURATION_BUCKETS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_admits_up_to_the_cap_then_overflows() {
        let cap = LabelCap::new(100);
        for i in 0..100 {
            assert_eq!(&*cap.admit(&format!("model-{i}")), format!("model-{i}"));
        }
        for i in 100..10_000 {
            assert_eq!(&*cap.admit(&format!("model-{i}")), OVERFLOW);
        }
        // Admitted values stay admitted.
        assert_eq!(&*cap.admit("model-42"), "model-42");
        assert_eq!(cap.len(), 100);
    }

    #[test]
    fn cap_of_zero_admits_nothing() {
        let cap = LabelCap::new(0);
        assert_eq!(&*cap.admit("gpt-4o"), OVERFLOW);
        assert!(cap.is_empty());
    }

    #[test]
    fn repeated_values_take_one_slot() {
        let cap = LabelCap::new(2);
        for _ in 0..10 {
            assert_eq!(&*cap.admit("a"), "a");
        }
        assert_eq!(&*cap.admit("b"), "b");
        assert_eq!(&*cap.admit("c"), OVERFLOW);
        assert_eq!(cap.len(), 2);
    }

    #[test]
    fn cap_holds_under_concurrent_new_values() {
        let cap = Arc::new(LabelCap::new(50));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let cap = cap.clone();
                std::thread::spawn(move || {
                    (0..1000)
                        .filter(|i| &*cap.admit(&format!("v{t}-{i}")) != OVERFLOW)
                        .count()
                })
            })
            .collect();
        let admitted: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(admitted, 50);
        assert_eq!(cap.len(), 50);
    }
}
