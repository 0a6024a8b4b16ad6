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
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

mod body;
mod call;
mod capture;
mod decompress;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;
#[doc(hidden)]
pub mod internals;
mod json;
mod layer;
mod metadata;
mod openai;
mod payload;
#[cfg(feature = "reqwest")]
mod reqwest;
mod service;
pub mod sink;
pub mod span;

pub use body::{RequestBody, ResponseBody};
pub use json::Json;
pub use layer::{
    BuildError, LlmObservabilityLayer, LlmObservabilityLayerBuilder, DEFAULT_REQUEST_CAPTURE_LIMIT,
    DEFAULT_RESPONSE_CAPTURE_LIMIT,
};
pub use metadata::CallMetadata;
pub use openai::endpoint::{Endpoint, EndpointMatcher};
pub use payload::{CallError, CallStatus, LlmCall, RequestRecord, Timing, Usage, SCHEMA_VERSION};
#[cfg(feature = "reqwest")]
pub use reqwest::LlmObservabilityMiddleware;
pub use service::{LlmObservabilityService, ResponseFuture};
pub use sink::{
    DispatchError, Dispatcher, DispatcherConfig, DispatcherStats, JsonlSink, LogSink, MemorySink,
    Sink, SinkError, SinkStats,
};

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
