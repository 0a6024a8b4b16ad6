//! `LlmObservabilityLayer` and its builder, the one place the crate is configured.

use std::sync::Arc;

use http::HeaderName;
use tower_layer::Layer;

use crate::call::Observer;
use crate::process::pricing::Pricing;
use crate::process::redact::Redaction;
use crate::process::{Pipeline, Processor};
use crate::scrub;
use crate::service::LlmObservabilityService;
use crate::sink::dispatcher::SinkPlan;
use crate::sink::{Dispatcher, DispatcherConfig, Sink, SinkConfig};
use crate::stream_usage::StreamUsage;
use crate::wire::endpoint::EndpointMatcher;

/// Default limit on the request bytes kept for decoding (8 MiB).
pub const DEFAULT_REQUEST_CAPTURE_LIMIT: usize = 8 << 20;
/// Default limit on the response bytes kept for decoding, and on assembled stream content
/// (8 MiB).
pub const DEFAULT_RESPONSE_CAPTURE_LIMIT: usize = 8 << 20;

/// Why a layer could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A name given to [`capture_header`](LlmObservabilityLayerBuilder::capture_header) is not
    /// a valid header name.
    #[error("{0:?} is not a valid header name")]
    InvalidHeaderName(String),
    /// A name given to [`capture_header`](LlmObservabilityLayerBuilder::capture_header) is that
    /// of a credential (`Authorization`, `Proxy-Authorization`, `api-key`, `x-api-key`,
    /// cookies, or a name containing auth, token, key, secret or password): such a header
    /// is never recorded.
    #[error(
        "header {0:?} carries credentials and is never recorded (names containing auth, token, \
         key, secret, password or cookie are refused); capture a header that identifies the \
         caller without being a secret instead"
    )]
    SecretHeader(String),
    /// A setting needs a cargo feature this build was made without.
    #[error("{setting} needs the cargo feature {feature:?}")]
    FeatureDisabled {
        /// The setting, e.g. `StreamUsage::Estimate`.
        setting: &'static str,
        /// The feature it needs.
        feature: &'static str,
    },
}

/// Tower layer that records every OpenAI-shaped call passing through it.
///
/// Works on a server (`axum::Router::layer`) and around a client service. Cloning is cheap;
/// clones share sinks and counters.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use llm_observability::{JsonlSink, LlmObservabilityLayer};
/// # let dir = std::env::temp_dir().join(format!("llm-obs-doc-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir)?;
/// let layer = LlmObservabilityLayer::builder()
///     .sink(JsonlSink::create(dir.join("llm-calls.jsonl"))?)
///     .provider("openai")
///     .capture_header("x-user-id", "user_id")
///     .build()?;
/// let app: axum::Router = axum::Router::new().layer(layer.clone());
/// // ... serve `app`; before exiting:
/// layer.dispatcher().shutdown(std::time::Duration::from_secs(5)).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct LlmObservabilityLayer {
    observer: Arc<Observer>,
}

impl LlmObservabilityLayer {
    /// Starts configuring a layer.
    pub fn builder() -> LlmObservabilityLayerBuilder {
        LlmObservabilityLayerBuilder::default()
    }

    /// The dispatcher that feeds this layer's sinks: counters, `flush`, `shutdown`.
    pub fn dispatcher(&self) -> &Dispatcher {
        &self.observer.dispatcher
    }

    #[cfg_attr(not(feature = "reqwest"), allow(dead_code))]
    pub(crate) fn observer(&self) -> &Arc<Observer> {
        &self.observer
    }
}

impl<S> Layer<S> for LlmObservabilityLayer {
    type Service = LlmObservabilityService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LlmObservabilityService::new(inner, self.observer.clone())
    }
}

/// Builder of [`LlmObservabilityLayer`].
#[derive(Default)]
pub struct LlmObservabilityLayerBuilder {
    sinks: Vec<SinkPlan>,
    processors: Vec<Arc<dyn Processor>>,
    propagate_trace_context: bool,
    server_address: Option<String>,
    matcher: Option<EndpointMatcher>,
    provider: Option<String>,
    request_limit: Option<usize>,
    response_limit: Option<usize>,
    captured_headers: Vec<(String, String)>,
    redaction: Option<Redaction>,
    pricing: Option<Pricing>,
    model_aliases: Vec<(String, String)>,
    dispatcher: DispatcherConfig,
    stream_usage: StreamUsage,
    #[cfg(feature = "metrics")]
    metrics: Option<crate::metrics::GenAiMetrics>,
}

impl std::fmt::Debug for LlmObservabilityLayerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmObservabilityLayerBuilder")
            .field(
                "sinks",
                &self.sinks.iter().map(|s| s.sink.name()).collect::<Vec<_>>(),
            )
            .field(
                "processors",
                &self.processors.iter().map(|p| p.name()).collect::<Vec<_>>(),
            )
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

impl LlmObservabilityLayerBuilder {
    /// Sends every call to `sink` (may be called several times: each sink gets every call).
    pub fn sink(self, sink: impl Sink) -> Self {
        self.shared_sink(Arc::new(sink))
    }

    /// Like [`sink`](Self::sink), for a sink already behind an `Arc`.
    pub fn shared_sink(self, sink: Arc<dyn Sink>) -> Self {
        self.shared_sink_with(sink, SinkConfig::default())
    }

    /// Sends calls to `sink` with settings of its own: queue, batching, retry and timeout,
    /// which calls it gets, and processors that run on its copy only (see [`SinkConfig`]).
    pub fn sink_with(self, sink: impl Sink, config: SinkConfig) -> Self {
        self.shared_sink_with(Arc::new(sink), config)
    }

    /// Like [`sink_with`](Self::sink_with), for a sink already behind an `Arc`.
    pub fn shared_sink_with(mut self, sink: Arc<dyn Sink>, config: SinkConfig) -> Self {
        self.sinks.push(SinkPlan { sink, config });
        self
    }

    /// Adds a processor that changes every call once, after it ended and before any sink sees
    /// it (several run in the order added). See [`process`](crate::process).
    pub fn processor(mut self, processor: impl Processor) -> Self {
        self.processors.push(Arc::new(processor));
        self
    }

    /// Redacts every call as it ends, before its span records it and before any processor or
    /// sink sees it — on success, error, streamed and cancelled calls alike, the error message
    /// included (see [`Redaction`]). Its cut of base64 data (images, audio) runs off the
    /// request path, as the first processor. A sink that needs stricter redaction adds its own
    /// with [`SinkConfig::processor`]. A redactor that fails or panics removes the call's
    /// content and leaves a note in `processing_errors`.
    ///
    /// Without it, calls are recorded as they were sent and answered (credentials aside).
    ///
    /// ```
    /// use llm_observability::{LlmObservabilityLayer, MemorySink, Redaction};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let layer = LlmObservabilityLayer::builder()
    ///     .redact(Redaction::content())
    ///     .sink(MemorySink::new())
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn redact(mut self, redaction: Redaction) -> Self {
        self.redaction = Some(redaction);
        self
    }

    /// Prices every call as it ends ([`LlmCall::cost`](crate::LlmCall::cost)), from its usage
    /// and `pricing`'s table (a few table lookups), so the call's span carries the cost as well
    /// as every sink. To price off the request path instead, or for one sink only, add the
    /// [`Pricing`] as a [`processor`](Self::processor).
    ///
    /// ```
    /// use llm_observability::{LlmObservabilityLayer, MemorySink, Pricing};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let layer = LlmObservabilityLayer::builder()
    ///     .pricing(Pricing::built_in())
    ///     .sink(MemorySink::new())
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn pricing(mut self, pricing: Pricing) -> Self {
        self.pricing = Some(pricing);
        self
    }

    /// Prices calls that name `alias` as `model` ([`Pricing::with_alias`]): an Azure
    /// deployment name, which is the call's requested model, priced as the model it deploys.
    /// Applies to the [`pricing`](Self::pricing) table, in whichever order the two are set; a
    /// [`Pricing`] added as a processor takes its own aliases.
    ///
    /// ```
    /// use llm_observability::{LlmObservabilityLayer, MemorySink, Pricing};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let layer = LlmObservabilityLayer::builder()
    ///     .pricing(Pricing::built_in())
    ///     .model_alias("my-gpt4o", "gpt-4o")
    ///     .sink(MemorySink::new())
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn model_alias(mut self, alias: impl Into<String>, model: impl Into<String>) -> Self {
        self.model_aliases.push((alias.into(), model.into()));
        self
    }

    /// Client side: sets the `traceparent` header of each outgoing LLM request to the call's
    /// span, so the upstream (e.g. another service with this layer, or the proxy) continues
    /// the same trace. Off by default, as it adds a header to the request.
    pub fn propagate_trace_context(mut self, propagate: bool) -> Self {
        self.propagate_trace_context = propagate;
        self
    }

    /// Decides which requests are LLM calls (default: [`Endpoint::classify`](crate::Endpoint::classify)).
    pub fn endpoint_matcher(mut self, matcher: EndpointMatcher) -> Self {
        self.matcher = Some(matcher);
        self
    }

    /// `gen_ai.provider.name` recorded for every call, whatever its API family (default: the
    /// call's wire format names it — `openai`, `azure.ai.openai` for Azure OpenAI hosts and
    /// deployment paths, `anthropic`). Set it for an OpenAI-compatible server such as vLLM or
    /// DeepSeek.
    pub fn provider(mut self, provider: impl Into<String>) -> Self {
        self.provider = Some(provider.into());
        self
    }

    /// `server.address` recorded for every call (e.g. the upstream a proxy forwards to).
    /// Without it, a call records the host of the request's URI (client side), or else of its
    /// `Host` header — a value the client chose (server side).
    pub fn server_address(mut self, host: impl Into<String>) -> Self {
        self.server_address = Some(host.into());
        self
    }

    /// Request bytes kept for decoding (default [`DEFAULT_REQUEST_CAPTURE_LIMIT`]). Larger
    /// bodies still flow; the payload says `truncated`.
    pub fn request_capture_limit(mut self, bytes: usize) -> Self {
        self.request_limit = Some(bytes);
        self
    }

    /// Response bytes kept for decoding a JSON body, and the limit on assembled stream content
    /// (default [`DEFAULT_RESPONSE_CAPTURE_LIMIT`]).
    pub fn response_capture_limit(mut self, bytes: usize) -> Self {
        self.response_limit = Some(bytes);
        self
    }

    /// Copies request header `header` (when present and text) into the payload's metadata under
    /// `key`. Headers are otherwise never recorded. [`build`](Self::build) fails with
    /// [`BuildError::InvalidHeaderName`] when `header` is not a header name, and with
    /// [`BuildError::SecretHeader`] when it names a credential (`Authorization`, `api-key`,
    /// `Cookie`, or any name containing auth, token, key, secret, password or cookie).
    pub fn capture_header(mut self, header: &str, key: impl Into<String>) -> Self {
        self.captured_headers.push((header.to_owned(), key.into()));
        self
    }

    /// Queue, batch and retry settings for the sinks that have none of their own (and the
    /// capacity of the processing queue).
    pub fn dispatcher_config(mut self, config: DispatcherConfig) -> Self {
        self.dispatcher = config;
        self
    }

    /// What to do about streamed chat completions that do not ask for their usage (default
    /// [`StreamUsage::Off`]): [`StreamUsage::Ask`] asks the provider and restores the bytes
    /// the client expects (the one setting that changes bytes on the wire);
    /// [`StreamUsage::Estimate`] (feature `estimate-usage`) counts tokens off the request path.
    /// See [`StreamUsage`] for each one's trade-offs.
    pub fn stream_usage(mut self, stream_usage: StreamUsage) -> Self {
        self.stream_usage = stream_usage;
        self
    }

    /// Records GenAI client metrics for every call through the `metrics` facade (see
    /// [`metrics`](crate::metrics)), synchronously as the call ends (after its redaction and
    /// [`pricing`](Self::pricing)), before it is queued.
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn metrics(mut self, metrics: crate::metrics::GenAiMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Builds the layer. The sink workers start on the current Tokio runtime, or, when built
    /// outside one, on the runtime of the first call (or `flush`/`shutdown`).
    pub fn build(mut self) -> Result<LlmObservabilityLayer, BuildError> {
        let aliases = std::mem::take(&mut self.model_aliases);
        self.pricing = self.pricing.map(|pricing| {
            aliases
                .into_iter()
                .fold(pricing, |pricing, (alias, model)| {
                    pricing.with_alias(alias, model)
                })
        });
        let captured_headers = self
            .captured_headers
            .into_iter()
            .map(
                |(header, key)| match HeaderName::from_bytes(header.as_bytes()) {
                    Ok(_) if scrub::is_secret_name(&header) => {
                        Err(BuildError::SecretHeader(header))
                    }
                    Ok(name) => Ok((name, key)),
                    Err(_) => Err(BuildError::InvalidHeaderName(header)),
                },
            )
            .collect::<Result<Vec<_>, _>>()?;
        // The redaction policy runs as each call ends (its span must not see what it removes);
        // cutting base64 data, which may mean parsing megabytes, runs off the request path,
        // before the other processors.
        let (redaction, data_cut): (Vec<Arc<dyn Processor>>, _) = match self.redaction {
            Some(redaction) => {
                let (policy, cut) = redaction.split();
                (vec![Arc::new(policy)], cut)
            }
            None => (Vec::new(), None),
        };
        let mut processors = self.processors;
        if let Some(cut) = data_cut {
            processors.insert(0, Arc::new(cut));
        }
        let estimate_usage = self.stream_usage == StreamUsage::Estimate;
        if estimate_usage {
            // First, so that the processors after it see the counts; a call without usage is
            // priced once its usage is estimated (the layer's pricing skips it as it ends).
            #[cfg(feature = "estimate-usage")]
            {
                processors.insert(
                    0,
                    Arc::new(crate::stream_usage::estimate::EstimateUsage::new()),
                );
                if let Some(pricing) = self.pricing.clone() {
                    processors.insert(1, Arc::new(EstimatedUsagePricing(pricing)));
                }
            }
            #[cfg(not(feature = "estimate-usage"))]
            return Err(BuildError::FeatureDisabled {
                setting: "StreamUsage::Estimate",
                feature: "estimate-usage",
            });
        }
        let dispatcher = Dispatcher::start(self.sinks, self.dispatcher, processors);
        Ok(LlmObservabilityLayer {
            observer: Arc::new(Observer {
                matcher: self.matcher.unwrap_or_default(),
                provider: self.provider,
                request_limit: self.request_limit.unwrap_or(DEFAULT_REQUEST_CAPTURE_LIMIT),
                response_limit: self
                    .response_limit
                    .unwrap_or(DEFAULT_RESPONSE_CAPTURE_LIMIT),
                captured_headers,
                propagate_trace_context: self.propagate_trace_context,
                server_address: self.server_address,
                redaction: Pipeline::new(redaction),
                pricing: self.pricing,
                price_estimated_later: estimate_usage,
                ask_stream_usage: self.stream_usage == StreamUsage::Ask,
                dispatcher,
                #[cfg(feature = "metrics")]
                metrics: self.metrics,
            }),
        })
    }
}

/// The layer's [`Pricing`] for calls whose usage [`StreamUsage::Estimate`] filled in after they
/// ended (the layer prices every other call as it ends).
#[cfg(feature = "estimate-usage")]
#[derive(Debug)]
struct EstimatedUsagePricing(Pricing);

#[cfg(feature = "estimate-usage")]
impl Processor for EstimatedUsagePricing {
    fn process(&self, call: &mut crate::LlmCall) -> Result<(), crate::ProcessError> {
        if call.usage_source == crate::UsageSource::Estimated {
            self.0.process(call)
        } else {
            Ok(())
        }
    }
}
