//! `OtlpSink`: each call as one OpenTelemetry GenAI span, exported over OTLP/HTTP protobuf.
//!
//! The span is built from the payload alone — its trace context ([`LlmCall::trace`]), its real
//! start and end times, kind `CLIENT`, the [GenAI mapping](crate::genai), ERROR status and an
//! `exception` event for a failed call — and sent with `opentelemetry-otlp`'s HTTP/protobuf
//! exporter, one request per dispatcher batch. Message content is opt-in
//! ([`OtlpSinkBuilder::message_content`]).
//!
//! ```no_run
//! use llm_observability::{LlmObservabilityLayer, OtlpSink};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let otlp = OtlpSink::builder()
//!     .endpoint("http://localhost:4318/v1/traces")
//!     .service_name("checkout")
//!     .build()?;
//! let layer = LlmObservabilityLayer::builder().sink(otlp).build()?;
//! # Ok(()) }
//! ```

mod client;
mod config;
#[cfg(feature = "langfuse")]
#[cfg_attr(docsrs, doc(cfg(feature = "langfuse")))]
pub mod langfuse;
#[cfg(feature = "mlflow")]
#[cfg_attr(docsrs, doc(cfg(feature = "mlflow")))]
pub mod mlflow;
#[cfg(feature = "phoenix")]
#[cfg_attr(docsrs, doc(cfg(feature = "phoenix")))]
pub mod openinference;
#[cfg(feature = "phoenix")]
#[cfg_attr(docsrs, doc(cfg(feature = "phoenix")))]
pub mod phoenix;
#[cfg(any(feature = "langfuse", feature = "phoenix"))]
mod presets;

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use opentelemetry::trace::{
    Event, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{Array, InstrumentationScope, KeyValue, StringValue, Value};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter as _, SpanLinks};
use opentelemetry_sdk::Resource;

use super::{Sink, SinkError};
use crate::genai::{self, Attribute, AttributeValue};
use crate::payload::{CallStatus, LlmCall};

use client::{Outcome, ReportingClient};
pub use config::DEFAULT_ENDPOINT;
#[cfg(feature = "langfuse")]
pub use langfuse::{LangfuseBuilder, LangfuseError};
#[cfg(feature = "phoenix")]
pub use phoenix::PhoenixBuilder;
#[cfg(any(feature = "langfuse", feature = "phoenix"))]
pub use presets::{find_attribute, metadata_keys, PresetAttribute};

/// A hook that adds (or changes) span attributes after the GenAI mapping: what presets for
/// particular backends are made of. See [`OtlpSinkBuilder::span_attributes`].
pub type SpanAttributesHook = Arc<dyn Fn(&LlmCall, &mut Vec<KeyValue>) + Send + Sync>;

/// Why an [`OtlpSink`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OtlpError {
    /// The endpoint is not an `http://` or `https://` URL.
    #[error("invalid OTLP endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A header name or value that HTTP does not allow.
    #[error("invalid OTLP header {name:?}")]
    InvalidHeader {
        /// The header's name.
        name: String,
    },
    /// A value of an `OTEL_*` environment variable that cannot be read.
    #[error("invalid {variable}: {value:?}")]
    InvalidEnvironment {
        /// The variable's name.
        variable: &'static str,
        /// Its value.
        value: String,
    },
    /// `opentelemetry-otlp` refused the configuration.
    #[error("cannot create the OTLP exporter")]
    Exporter(#[source] opentelemetry_otlp::ExporterBuildError),
}

/// Sends each call as one OpenTelemetry span with GenAI attributes to an OTLP/HTTP endpoint
/// (protobuf), through `opentelemetry-otlp`.
///
/// Configure it with [`OtlpSink::builder`]; the standard `OTEL_EXPORTER_OTLP_*`,
/// `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` variables give the defaults. Failures are
/// reported to the dispatcher as the project's sinks do: connection errors, timeouts, 408, 429
/// and 5xx are retryable (with the backend's `Retry-After`), other refusals are permanent and
/// say what the backend answered. `opentelemetry-otlp`'s own retries are off: the dispatcher
/// retries with backoff.
pub struct OtlpSink {
    exporter: opentelemetry_otlp::SpanExporter,
    client: Arc<ReportingClient>,
    endpoint: String,
    name: String,
    message_content: bool,
    hooks: Vec<SpanAttributesHook>,
    scope: InstrumentationScope,
    /// Leave each span's parent out (MLflow's `root_spans`).
    pub(crate) root_spans: bool,
    /// `SpanExporter::export` must not run concurrently.
    export_lock: tokio::sync::Mutex<()>,
}

impl fmt::Debug for OtlpSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpSink")
            .field("endpoint", &self.endpoint)
            .field("message_content", &self.message_content)
            .field("hooks", &self.hooks.len())
            .finish_non_exhaustive()
    }
}

/// Configures an [`OtlpSink`]; made by [`OtlpSink::builder`].
pub struct OtlpSinkBuilder {
    endpoint: Option<String>,
    headers: Vec<(String, String)>,
    service_name: Option<String>,
    resource: Vec<KeyValue>,
    gzip: Option<bool>,
    timeout: Option<Duration>,
    message_content: bool,
    hooks: Vec<SpanAttributesHook>,
    name: String,
    env: Environment,
}

/// Where `OTEL_*` settings are read from.
type Environment = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

impl fmt::Debug for OtlpSinkBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpSinkBuilder")
            .field("endpoint", &self.endpoint)
            .field(
                "headers",
                &self.headers.iter().map(|h| &h.0).collect::<Vec<_>>(),
            )
            .field("service_name", &self.service_name)
            .field("gzip", &self.gzip)
            .field("timeout", &self.timeout)
            .field("message_content", &self.message_content)
            .field("hooks", &self.hooks.len())
            .finish_non_exhaustive()
    }
}

impl OtlpSink {
    /// A builder with the defaults: the endpoint from `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
    /// else `OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/traces`, else [`DEFAULT_ENDPOINT`]; no message
    /// content.
    pub fn builder() -> OtlpSinkBuilder {
        OtlpSinkBuilder {
            endpoint: None,
            headers: Vec::new(),
            service_name: None,
            resource: Vec::new(),
            gzip: None,
            timeout: None,
            message_content: false,
            hooks: Vec::new(),
            name: "otlp".to_owned(),
            env: Arc::new(|name| std::env::var(name).ok()),
        }
    }

    /// The URL spans are sent to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The span this sink sends for `call`: ids from its trace context, its start and end
    /// times, kind `CLIENT`, the GenAI attributes (with content when configured) and those of
    /// the [hooks](OtlpSinkBuilder::span_attributes), status and events.
    pub fn span_data(&self, call: &LlmCall) -> SpanData {
        let trace = &call.trace;
        let flags = if trace.sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        let span_context = SpanContext::new(
            TraceId::from_bytes(trace.trace_id.to_bytes()),
            SpanId::from_bytes(trace.span_id.to_bytes()),
            flags,
            false,
            TraceState::default(),
        );
        let start_time = SystemTime::from(call.timing.start_time);
        let end_time = SystemTime::from(call.timing.end_time).max(start_time);
        let mut attributes: Vec<KeyValue> =
            genai::attributes(call).into_iter().map(key_value).collect();
        if self.message_content {
            attributes.extend(genai::content_attributes(call).into_iter().map(key_value));
        }
        for hook in &self.hooks {
            hook(call, &mut attributes);
        }
        let (status, events) = match call.status {
            CallStatus::Error => {
                let description = error_description(call);
                let mut event = vec![KeyValue::new(
                    "exception.type",
                    call.error_type.clone().unwrap_or_else(|| "_OTHER".into()),
                )];
                event.push(KeyValue::new("exception.message", description.clone()));
                (
                    Status::error(description),
                    vec![Event::new("exception", end_time, event, 0)],
                )
            }
            _ => (Status::Unset, Vec::new()),
        };
        let mut span_events = SpanEvents::default();
        span_events.events = events;
        SpanData {
            span_context,
            parent_span_id: match trace.parent_span_id {
                Some(parent) if !self.root_spans => SpanId::from_bytes(parent.to_bytes()),
                _ => SpanId::INVALID,
            },
            parent_span_is_remote: false,
            span_kind: SpanKind::Client,
            name: Cow::Owned(genai::span_name(call)),
            start_time,
            end_time,
            attributes,
            dropped_attributes_count: 0,
            events: span_events,
            links: SpanLinks::default(),
            status,
            instrumentation_scope: self.scope.clone(),
        }
    }

    /// Sets (or replaces) a header on every later request: for presets whose headers are
    /// known only after a first request (MLflow's experiment id).
    #[cfg_attr(not(feature = "mlflow"), allow(dead_code))]
    pub(crate) fn set_header(&self, name: http::HeaderName, value: http::HeaderValue) {
        self.client.set_header(name, value);
    }

    fn refusal(&self, outcome: Option<Outcome>, error: impl fmt::Display) -> SinkError {
        let endpoint = &self.endpoint;
        match outcome {
            Some(Outcome::Status {
                status,
                retry_after,
                body,
            }) => {
                let retryable = status == 408 || status == 429 || status >= 500;
                let hint = match status {
                    401 | 403 => " (check the authentication headers)",
                    404 | 405 => " (check the endpoint: it is the full traces URL, e.g. http://host:4318/v1/traces)",
                    _ => "",
                };
                let message = format!(
                    "OTLP endpoint {endpoint} answered HTTP {status}{hint}{}{}",
                    if body.is_empty() { "" } else { ": " },
                    body
                );
                if retryable {
                    let error = SinkError::transient(message);
                    match retry_after {
                        Some(delay) => error.with_retry_after(delay),
                        None => error,
                    }
                } else {
                    SinkError::permanent(message)
                }
            }
            Some(Outcome::Failed { error }) => {
                SinkError::transient(format!("cannot reach OTLP endpoint {endpoint}: {error}"))
            }
            None => SinkError::permanent(format!(
                "could not export spans to OTLP endpoint {endpoint}: {error}"
            )),
        }
    }
}

/// The description of a failed call's span status and exception event.
fn error_description(call: &LlmCall) -> String {
    call.error
        .as_ref()
        .and_then(|e| e.message.clone())
        .or_else(|| call.error_type.clone())
        .unwrap_or_else(|| "the call failed".to_owned())
}

/// A GenAI attribute as an OpenTelemetry `KeyValue`.
///
/// ```
/// use llm_observability::genai;
/// use llm_observability::sink::otlp::key_value;
/// use llm_observability::{Endpoint, LlmCall};
/// let call = LlmCall::new(Endpoint::ChatCompletions);
/// let first = key_value(genai::attributes(&call).remove(0));
/// assert_eq!(first.key.as_str(), "gen_ai.operation.name");
/// assert_eq!(first.value.as_str(), "chat");
/// ```
pub fn key_value(attribute: Attribute<'_>) -> KeyValue {
    let value = match attribute.value {
        AttributeValue::Str(text) => Value::String(StringValue::from(text.into_owned())),
        AttributeValue::Int(n) => Value::I64(n),
        AttributeValue::Float(x) => Value::F64(x),
        AttributeValue::Bool(b) => Value::Bool(b),
        AttributeValue::StrArray(values) => Value::Array(Array::String(
            values
                .into_iter()
                .map(|v| StringValue::from(v.into_owned()))
                .collect(),
        )),
        #[allow(unreachable_patterns)]
        _ => Value::String(StringValue::from("")),
    };
    KeyValue::new(attribute.key, value)
}

impl OtlpSinkBuilder {
    /// The full URL of the traces endpoint, e.g. `http://localhost:4318/v1/traces` (nothing is
    /// appended to it).
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// A header sent with every export (e.g. `Authorization`); repeatable. It wins over the
    /// same header in `OTEL_EXPORTER_OTLP_HEADERS`.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The resource's `service.name` (default: `OTEL_SERVICE_NAME`, else
    /// `OTEL_RESOURCE_ATTRIBUTES`' `service.name`, else the SDK's `unknown_service`).
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = Some(name.into());
        self
    }

    /// A resource attribute (besides those of `OTEL_RESOURCE_ATTRIBUTES`, which it overrides).
    pub fn resource_attribute(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.resource.push(KeyValue::new(key.into(), value.into()));
        self
    }

    /// Gzip the requests (default: `OTEL_EXPORTER_OTLP_COMPRESSION=gzip`, else off). Note that
    /// `opentelemetry-otlp` itself gzips when that variable says `gzip`, even after
    /// `.gzip(false)`.
    pub fn gzip(mut self, gzip: bool) -> Self {
        self.gzip = Some(gzip);
        self
    }

    /// How long one export may take (default: `OTEL_EXPORTER_OTLP_TIMEOUT` milliseconds, else
    /// 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Also send the message content: `gen_ai.input.messages`, `gen_ai.output.messages`,
    /// `gen_ai.system_instructions` and `gen_ai.tool.definitions`, as JSON in the GenAI
    /// conventions' parts format (see [`genai::content_attributes`]). Off by default.
    pub fn message_content(mut self, on: bool) -> Self {
        self.message_content = on;
        self
    }

    /// A hook that adds attributes to each span, after the GenAI mapping (and the content):
    /// what backend presets are made of. Several hooks may be set; all run, in order.
    ///
    /// The hook takes OpenTelemetry `KeyValue`s, whose keys may be made at run time
    /// (e.g. `llm.input_messages.0.message.role`).
    ///
    /// ```
    /// use llm_observability::OtlpSink;
    /// use opentelemetry::KeyValue;
    /// let sink = OtlpSink::builder()
    ///     .span_attributes(|call, attributes| {
    ///         if let Some(user) = call.metadata.get("user").and_then(|u| u.as_str()) {
    ///             attributes.push(KeyValue::new("user.id", user.to_owned()));
    ///         }
    ///     })
    ///     .build();
    /// assert!(sink.is_ok());
    /// ```
    pub fn span_attributes<F>(mut self, hook: F) -> Self
    where
        F: Fn(&LlmCall, &mut Vec<KeyValue>) + Send + Sync + 'static,
    {
        self.hooks.push(Arc::new(hook));
        self
    }

    /// The sink's name in logs and [`SinkStats`](crate::SinkStats) (default `otlp`): presets
    /// set their own.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Reads `OTEL_*` settings through `lookup` instead of the process environment (for tests).
    #[doc(hidden)]
    pub fn environment(
        mut self,
        lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.env = Arc::new(lookup);
        self
    }

    /// Builds the sink. Nothing is sent until the first batch.
    pub fn build(self) -> Result<OtlpSink, OtlpError> {
        let env = |name: &str| (self.env)(name).filter(|v| !v.trim().is_empty());
        let settings = config::resolve(&self, &env)?;
        let client = Arc::new(ReportingClient::new(settings.headers, settings.timeout));
        let mut builder = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(settings.endpoint.clone())
            .with_timeout(settings.timeout)
            .with_retry_policy(opentelemetry_otlp::RetryPolicy::disabled())
            .with_shared_http_client(client.clone());
        if settings.gzip {
            builder = builder.with_compression(opentelemetry_otlp::Compression::Gzip);
        }
        let mut exporter = builder.build().map_err(OtlpError::Exporter)?;
        exporter.set_resource(&resource(&self, &env));
        Ok(OtlpSink {
            exporter,
            client,
            endpoint: settings.endpoint,
            name: self.name,
            message_content: self.message_content,
            hooks: self.hooks,
            scope: InstrumentationScope::builder("llm-observability")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
            root_spans: false,
            export_lock: tokio::sync::Mutex::new(()),
        })
    }
}

/// The resource: `OTEL_RESOURCE_ATTRIBUTES`, then `OTEL_SERVICE_NAME`, then what the builder
/// says.
fn resource(builder: &OtlpSinkBuilder, env: &dyn Fn(&str) -> Option<String>) -> Resource {
    let mut attributes: Vec<KeyValue> = Vec::new();
    let mut service_name = None;
    if let Some(pairs) = env("OTEL_RESOURCE_ATTRIBUTES") {
        for (key, value) in config::parse_pairs(&pairs) {
            if key == "service.name" {
                service_name = Some(value);
            } else {
                attributes.push(KeyValue::new(key, value));
            }
        }
    }
    if let Some(name) = env("OTEL_SERVICE_NAME") {
        service_name = Some(name);
    }
    if let Some(name) = &builder.service_name {
        service_name = Some(name.clone());
    }
    attributes.extend(builder.resource.iter().cloned());
    let mut resource = Resource::builder_empty()
        .with_service_name(service_name.unwrap_or_else(|| "unknown_service".to_owned()))
        .with_attributes([
            KeyValue::new("telemetry.sdk.name", "opentelemetry"),
            KeyValue::new("telemetry.sdk.language", "rust"),
        ]);
    resource = resource.with_attributes(attributes);
    resource.build()
}

#[async_trait]
impl Sink for OtlpSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn export(&self, batch: &[Arc<LlmCall>]) -> Result<(), SinkError> {
        if batch.is_empty() {
            return Ok(());
        }
        let spans: Vec<SpanData> = batch.iter().map(|call| self.span_data(call)).collect();
        let _exclusive = self.export_lock.lock().await;
        self.client.take_outcome();
        let result = self.exporter.export(spans).await;
        let outcome = self.client.take_outcome();
        match result {
            Ok(()) => Ok(()),
            Err(error) => Err(self.refusal(outcome, error)),
        }
    }

    async fn shutdown(&self) -> Result<(), SinkError> {
        let _exclusive = self.export_lock.lock().await;
        // Each batch was sent when exported: nothing is buffered, only the client is let go.
        let _ = self.exporter.shutdown();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CallError, Endpoint, Usage};

    #[test]
    fn span_of_a_failed_call() {
        let sink = OtlpSink::builder()
            .environment(|_| None)
            .span_attributes(|call, attributes| {
                attributes.push(KeyValue::new("app.call_id", call.id.clone()))
            })
            .build()
            .unwrap();
        let mut call = LlmCall::new(Endpoint::ChatCompletions);
        call.request.model = Some("gpt-4o".into());
        call.usage = Some(Usage::new(3, 4));
        call.status = CallStatus::Error;
        call.error = Some(CallError::new("invalid_request_error", "bad model"));
        call.error_type = Some("invalid_request_error".into());
        let span = sink.span_data(&call);
        assert_eq!(span.name, "chat gpt-4o");
        assert_eq!(span.span_kind, SpanKind::Client);
        assert_eq!(span.status, Status::error("bad model"));
        assert_eq!(
            span.span_context.trace_id().to_bytes(),
            call.trace.trace_id.to_bytes()
        );
        assert_eq!(span.parent_span_id, SpanId::INVALID);
        assert_eq!(span.events.len(), 1);
        assert_eq!(span.events[0].name, "exception");
        let find = |key: &str| {
            span.attributes
                .iter()
                .find(|kv| kv.key.as_str() == key)
                .map(|kv| kv.value.clone())
        };
        assert_eq!(find("gen_ai.usage.output_tokens"), Some(Value::I64(4)));
        assert_eq!(find("app.call_id"), Some(Value::from(call.id.clone())));
        assert_eq!(find("gen_ai.input.messages"), None);
    }
}
