//! Where payloads go: the [`Sink`] trait, the [`Dispatcher`] that feeds sinks off the request
//! path, and the built-in sinks.
//!
//! # Writing a sink
//!
//! Implement [`Sink`]; `export` receives batches of calls on the sink's own worker task, never
//! on the request path. Return [`SinkError::Transient`] for failures worth retrying.
//!
//! ```
//! use std::sync::Arc;
//! use llm_observability::{LlmCall, LlmObservabilityLayer, Sink, SinkError};
//!
//! struct CountTokens(std::sync::atomic::AtomicU64);
//!
//! #[async_trait::async_trait]
//! impl Sink for CountTokens {
//!     fn name(&self) -> &str {
//!         "count-tokens"
//!     }
//!     async fn export(&self, batch: &[Arc<LlmCall>]) -> Result<(), SinkError> {
//!         for call in batch {
//!             let tokens = call.usage.and_then(|u| u.total_tokens).unwrap_or(0);
//!             self.0.fetch_add(tokens, std::sync::atomic::Ordering::Relaxed);
//!         }
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let layer = LlmObservabilityLayer::builder()
//!     .sink(CountTokens(Default::default()))
//!     .build()?;
//! # Ok(()) }
//! ```

use std::sync::Arc;

use async_trait::async_trait;

use crate::payload::LlmCall;

mod dispatcher;
mod jsonl;
mod log;
mod memory;

pub use dispatcher::{DispatchError, Dispatcher, DispatcherConfig, DispatcherStats, SinkStats};
pub use jsonl::JsonlSink;
pub use log::LogSink;
pub use memory::MemorySink;

/// A destination for [`LlmCall`] payloads.
///
/// Each sink gets its own bounded queue and worker task: a slow or failing sink never slows
/// the requests or the other sinks. Calls arrive in batches (by size or interval, see
/// [`DispatcherConfig`]); `export` is never called concurrently for the same sink.
#[async_trait]
pub trait Sink: Send + Sync + 'static {
    /// A short name for logs and [`SinkStats`].
    fn name(&self) -> &str;

    /// Delivers one batch. A [`SinkError::is_retryable`] error is retried with backoff; after
    /// the last attempt the batch counts as failed in [`SinkStats::failed`].
    async fn export(&self, batch: &[Arc<LlmCall>]) -> Result<(), SinkError>;

    /// Makes everything exported so far durable (called by [`Dispatcher::flush`] and
    /// [`Dispatcher::shutdown`]).
    async fn flush(&self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Why a sink could not take a batch.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// An I/O error (retried).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The payload could not be serialised (not retried).
    #[error("could not serialise the payload: {0}")]
    Serialize(#[from] serde_json::Error),
    /// A failure that may go away on retry (a timeout, a 5xx from a backend, ...).
    #[error("transient failure: {0}")]
    Transient(String),
    /// A failure that retrying cannot fix (bad credentials, rejected payload, ...).
    #[error("permanent failure: {0}")]
    Permanent(String),
}

impl SinkError {
    /// Whether the dispatcher should try the batch again.
    pub fn is_retryable(&self) -> bool {
        matches!(self, SinkError::Io(_) | SinkError::Transient(_))
    }
}
