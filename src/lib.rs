//! Observability for LLM traffic in Rust services: a tower layer (and a reqwest-middleware
//! adapter) that records every call as one [`LlmCall`] payload — model, parameters, messages,
//! assembled output, tool calls, usage (cache reads and writes included), latency, time to first
//! token, status — and a `tracing` span with OpenTelemetry GenAI fields, while the bytes on the
//! wire pass through unchanged and undelayed.
//!
//! Recorded API families ([`Endpoint`]): OpenAI chat completions, completions, embeddings and
//! the Responses API — from OpenAI, Azure OpenAI and every OpenAI-compatible server (vLLM,
//! Ollama's `/v1`, OpenRouter, DeepSeek, ...) — and Anthropic's Messages API. Each family is
//! one wire format; other requests pass through untouched and unrecorded.
//!
//! ```
//! use axum::{routing::post, Router};
//! use llm_observability::{LlmObservabilityLayer, MemorySink};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let calls = MemorySink::new();
//! let layer = LlmObservabilityLayer::builder().sink(calls.clone()).build()?;
//! let app: Router = Router::new()
//!     .route("/v1/chat/completions", post(|| async { "{}" }))
//!     .layer(layer.clone());
//! // serve `app` with axum::serve(...); every LLM call ends up in `calls`.
//! # Ok(()) }
//! ```
//!
//! The pieces: [`LlmObservabilityLayer`] (configure with its builder), [`LlmCall`] (the
//! payload schema), [`Sink`] and the built-in [`JsonlSink`], [`MemorySink`], [`LogSink`], the
//! [`Dispatcher`] that feeds sinks off the request path (counters, `flush`, `shutdown`),
//! [processors](process) that change a call once before the sinks see it, and the
//! [GenAI mapping](genai) that every span and exporter reads.
//!
//! # How a call ends
//!
//! Every recognised call ends in exactly one [`LlmCall`] (or one counted drop, see
//! [`SinkStats`]), with a [`CallStatus`]:
//!
//! - **success**: the response body ended and was not an error. A stream whose body is dropped
//!   after it said its last word (`data: [DONE]`, a terminal Responses API event, Anthropic's
//!   `message_stop`) is a success too — clients such as async-openai stop reading there.
//! - **error**: an HTTP status of 400 or more, a transport error before the response head
//!   (`error.type` `transport`), a body that failed mid-way (`body`), an HTTP 200 whose body is
//!   an error object (Azure's content filter), or an error inside a stream
//!   (`data: {"error": ...}`, Responses `error` / `response.failed`, Anthropic `event: error`).
//! - **cancelled**: the response future or body was dropped before its end — the client hung
//!   up. The payload keeps the partial output assembled so far.
//!
//! The bytes on the wire are never changed, delayed or re-chunked; what could not be decoded
//! is said in [`LlmCall::decode_errors`].
//!
//! # Trace context
//!
//! Each call has a [`TraceContext`] from its start: with the `opentelemetry` feature and
//! `tracing-opentelemetry` installed, the ids of the exported `gen_ai` span and of its parent;
//! otherwise a W3C `traceparent` header on the request makes the call a child of that span;
//! otherwise the call is the root of a fresh trace. The request and the response carry the
//! call's [`CallId`] as an extension, and
//! [`propagate_trace_context`](LlmObservabilityLayerBuilder::propagate_trace_context) sends
//! the call's span upstream as `traceparent`.
//!
//! # Cargo features
#![doc = document_features::document_features!()]
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms,
    rustdoc::broken_intra_doc_links
)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod body;
mod call;
mod call_id;
mod capture;
mod decompress;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;
pub mod genai;
#[doc(hidden)]
pub mod internals;
mod json;
mod layer;
mod metadata;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
mod payload;
pub mod process;
#[cfg(feature = "reqwest")]
mod reqwest;
mod scrub;
mod service;
pub mod sink;
pub mod span;
mod stream_usage;
mod trace_context;
mod wire;

pub use async_trait::async_trait;
pub use body::{RequestBody, ResponseBody};
pub use call_id::CallId;
pub use json::Json;
pub use layer::{
    BuildError, LlmObservabilityLayer, LlmObservabilityLayerBuilder, DEFAULT_REQUEST_CAPTURE_LIMIT,
    DEFAULT_RESPONSE_CAPTURE_LIMIT,
};
pub use metadata::CallMetadata;
pub use payload::{
    CallError, CallStatus, Cost, LlmCall, RequestRecord, Timing, Usage, UsageSource, SCHEMA_VERSION,
};
pub use process::pricing::{ModelPrice, Pricing, PricingError};
pub use process::redact::{Redact, Redaction};
pub use process::{ProcessError, Processor};
#[cfg(feature = "reqwest")]
pub use reqwest::LlmObservabilityMiddleware;
pub use service::{LlmObservabilityService, ResponseFuture};
#[cfg(feature = "mlflow")]
#[cfg_attr(docsrs, doc(cfg(feature = "mlflow")))]
pub use sink::otlp::mlflow::{MlflowError, MlflowSink, MlflowSinkBuilder};
#[cfg(feature = "otlp")]
#[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
pub use sink::otlp::{OtlpError, OtlpSink, OtlpSinkBuilder};
#[cfg(feature = "object-store")]
#[cfg_attr(docsrs, doc(cfg(feature = "object-store")))]
pub use sink::{ArchiveError, ArchiveSink, ArchiveSinkBuilder};
pub use sink::{
    CallFilter, DispatchError, Dispatcher, DispatcherConfig, DispatcherStats, JsonlSink, LogSink,
    MemorySink, Sink, SinkConfig, SinkError, SinkStats,
};
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use sink::{PostgresError, PostgresSink, PostgresSinkBuilder};
#[cfg(feature = "weave")]
#[cfg_attr(docsrs, doc(cfg(feature = "weave")))]
pub use sink::{WeaveError, WeaveSink, WeaveSinkBuilder};
#[cfg(feature = "webhook")]
#[cfg_attr(docsrs, doc(cfg(feature = "webhook")))]
pub use sink::{WebhookError, WebhookFormat, WebhookSink, WebhookSinkBuilder};
#[cfg(feature = "estimate-usage")]
#[cfg_attr(docsrs, doc(cfg(feature = "estimate-usage")))]
pub use stream_usage::estimate::EstimateUsage;
pub use stream_usage::StreamUsage;
pub use trace_context::{IdError, SpanId, TraceContext, TraceId, TRACEPARENT};
pub use wire::endpoint::{Endpoint, EndpointMatcher};

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
