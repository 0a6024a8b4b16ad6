//! Observability for OpenAI-shaped LLM traffic in Rust services: a tower layer (and a
//! reqwest-middleware adapter) that records every chat, completion, embeddings and Responses API
//! call as one [`LlmCall`] payload — model, parameters, messages, assembled output, tool calls,
//! usage, latency, time to first token, status — and a `tracing` span with OpenTelemetry GenAI
//! fields, while the bytes on the wire pass through unchanged and undelayed.
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
//! payload schema), [`Sink`] and the built-in [`JsonlSink`], [`MemorySink`], [`LogSink`], and
//! the [`Dispatcher`] that feeds sinks off the request path (counters, `flush`, `shutdown`).
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
mod openai;
mod payload;
pub mod process;
#[cfg(feature = "reqwest")]
mod reqwest;
mod service;
pub mod sink;
pub mod span;
mod trace_context;

pub use async_trait::async_trait;
pub use body::{RequestBody, ResponseBody};
pub use call_id::CallId;
pub use json::Json;
pub use layer::{
    BuildError, LlmObservabilityLayer, LlmObservabilityLayerBuilder, DEFAULT_REQUEST_CAPTURE_LIMIT,
    DEFAULT_RESPONSE_CAPTURE_LIMIT,
};
pub use metadata::CallMetadata;
pub use openai::endpoint::{Endpoint, EndpointMatcher};
pub use payload::{CallError, CallStatus, LlmCall, RequestRecord, Timing, Usage, SCHEMA_VERSION};
pub use process::{ProcessError, Processor};
#[cfg(feature = "reqwest")]
pub use reqwest::LlmObservabilityMiddleware;
pub use service::{LlmObservabilityService, ResponseFuture};
pub use sink::{
    CallFilter, DispatchError, Dispatcher, DispatcherConfig, DispatcherStats, JsonlSink, LogSink,
    MemorySink, Sink, SinkConfig, SinkError, SinkStats,
};
pub use trace_context::{IdError, SpanId, TraceContext, TraceId, TRACEPARENT};

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
