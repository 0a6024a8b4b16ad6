//! Where payloads go: the [`Sink`] trait, the [`Dispatcher`] that feeds sinks off the request
//! path, and the built-in sinks.
//!
//! # Writing a sink
//!
//! Implement [`Sink`]; `export` receives batches of calls on the sink's own worker task, never
//! on the request path. Return [`SinkError::transient`] for failures worth retrying.
//!
//! ```
//! use std::sync::Arc;
//! use llm_observability::{LlmCall, LlmObservabilityLayer, Sink, SinkError};
//!
//! struct CountTokens(std::sync::atomic::AtomicU64);
//!
//! #[llm_observability::async_trait]
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

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::payload::LlmCall;

mod config;
pub(crate) mod dispatcher;
mod jsonl;
mod log;
mod memory;
pub mod ndjson;
#[cfg(feature = "otlp")]
#[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
pub mod otlp;

pub use config::{CallFilter, DispatcherConfig, DispatcherConfigBuilder, SinkConfig};
pub use dispatcher::{DispatchError, Dispatcher, DispatcherStats, SinkStats};
pub use jsonl::JsonlSink;
pub use log::LogSink;
pub use memory::MemorySink;

/// A destination for [`LlmCall`] payloads.
///
/// Each sink gets its own bounded queue and worker task: a slow or failing sink never slows
/// the requests or the other sinks. Calls arrive in batches (by size or interval, see
/// [`DispatcherConfig`]); no method is ever called concurrently for the same sink.
///
/// The trait uses [`async_trait`](macro@crate::async_trait), re-exported by this crate: put
/// `#[llm_observability::async_trait]` on your `impl Sink`.
#[async_trait]
pub trait Sink: Send + Sync + 'static {
    /// A short name for logs and [`SinkStats`].
    fn name(&self) -> &str;

    /// Delivers one batch. A [`SinkError::is_retryable`] error is retried with backoff (or
    /// after its [`retry_after`](SinkError::retry_after)); after the last attempt the batch
    /// counts as failed in [`SinkStats::failed`].
    async fn export(&self, batch: &[Arc<LlmCall>]) -> Result<(), SinkError>;

    /// Makes everything exported so far durable (called by [`Dispatcher::flush`]).
    async fn flush(&self) -> Result<(), SinkError> {
        Ok(())
    }

    /// Called once, after the last batch, when the dispatcher shuts down (or every handle to
    /// it is gone): release connections, write trailers. Default: [`flush`](Self::flush).
    async fn shutdown(&self) -> Result<(), SinkError> {
        self.flush().await
    }
}

/// Why a sink could not take a batch: retryable or not, with the error that caused it and,
/// for a backend that said when to come back (a 429 with `Retry-After`), how long to wait.
///
/// ```
/// use std::time::Duration;
/// use llm_observability::SinkError;
/// let busy = SinkError::transient("backend answered 429").with_retry_after(Duration::from_secs(2));
/// assert!(busy.is_retryable());
/// assert_eq!(busy.retry_after(), Some(Duration::from_secs(2)));
/// let refused = SinkError::permanent("backend answered 401: check the API key");
/// assert!(!refused.is_retryable());
/// ```
///
/// Its `Display` is the message alone; [`SinkError::chain`] adds the causes.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SinkError {
    message: String,
    retryable: bool,
    retry_after: Option<Duration>,
    #[source]
    source: Option<Box<dyn StdError + Send + Sync>>,
}

impl SinkError {
    /// A failure that may go away on retry (a timeout, a 5xx or 429 from a backend, ...).
    pub fn transient(message: impl Into<String>) -> Self {
        SinkError {
            message: message.into(),
            retryable: true,
            retry_after: None,
            source: None,
        }
    }

    /// A failure that retrying cannot fix (bad credentials, a rejected payload, ...).
    pub fn permanent(message: impl Into<String>) -> Self {
        SinkError {
            retryable: false,
            ..SinkError::transient(message)
        }
    }

    /// Attaches the error that caused this one (see [`std::error::Error::source`]).
    pub fn with_source(mut self, source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Asks the dispatcher to wait `delay` before the next attempt (capped by
    /// [`DispatcherConfig::max_backoff`]); makes the error retryable.
    pub fn with_retry_after(mut self, delay: Duration) -> Self {
        self.retry_after = Some(delay);
        self.retryable = true;
        self
    }

    /// Whether the dispatcher should try the batch again.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// How long the backend asked to wait before the next attempt.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The message, without the source.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The message followed by every cause, `: `-separated.
    ///
    /// ```
    /// use llm_observability::SinkError;
    /// let error = SinkError::from(std::io::Error::other("disk full"));
    /// assert_eq!(error.to_string(), "I/O error");
    /// assert_eq!(error.chain(), "I/O error: disk full");
    /// ```
    pub fn chain(&self) -> String {
        let mut text = self.message.clone();
        let mut cause = self.source();
        while let Some(error) = cause {
            text.push_str(": ");
            text.push_str(&error.to_string());
            cause = error.source();
        }
        text
    }
}

/// I/O errors are retried.
impl From<std::io::Error> for SinkError {
    fn from(error: std::io::Error) -> Self {
        SinkError::transient("I/O error").with_source(error)
    }
}

/// A payload that cannot be serialised will not serialise on retry either.
impl From<serde_json::Error> for SinkError {
    fn from(error: serde_json::Error) -> Self {
        SinkError::permanent("could not serialise the payload").with_source(error)
    }
}
