//! Processors: code that changes a call once, after it ended and before sinks see it (pricing,
//! redaction, enrichment, your own closures).
//!
//! Processors added with
//! [`LlmObservabilityLayerBuilder::processor`](crate::LlmObservabilityLayerBuilder::processor)
//! run once per call, in the order added, before the call is handed to the sinks; those of a
//! [`SinkConfig`](crate::SinkConfig) run on that sink's own copy only (e.g. stricter
//! redaction for one destination). Neither runs on the request path: never inside the body
//! tee, never in `Drop`.
//!
//! A processor that returns an error or panics never lets through what it was meant to
//! remove: the call goes on with its content removed ([`LlmCall::remove_content`]) and a note
//! in [`LlmCall::processing_errors`].
//!
//! ```
//! use llm_observability::{LlmCall, LlmObservabilityLayer, MemorySink, ProcessError};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let layer = LlmObservabilityLayer::builder()
//!     .processor(|call: &mut LlmCall| {
//!         call.metadata.insert("environment".into(), "staging".into());
//!         Ok::<(), ProcessError>(())
//!     })
//!     .sink(MemorySink::new())
//!     .build()?;
//! # Ok(()) }
//! ```

pub mod pricing;
pub mod redact;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::payload::LlmCall;

/// Why a processor could not process a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProcessError(String);

impl ProcessError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        ProcessError(message.into())
    }
}

/// Changes a call once before sinks see it. Closures
/// `Fn(&mut LlmCall) -> Result<(), ProcessError>` are processors.
///
/// `process` runs on a background task: it may take its time, but it should not block on I/O
/// for long, as calls queue behind it.
pub trait Processor: Send + Sync + 'static {
    /// A short name for notes and logs.
    fn name(&self) -> &str {
        "processor"
    }

    /// Changes `call` in place. An error (or a panic) removes the call's content.
    fn process(&self, call: &mut LlmCall) -> Result<(), ProcessError>;
}

impl<F> Processor for F
where
    F: Fn(&mut LlmCall) -> Result<(), ProcessError> + Send + Sync + 'static,
{
    fn name(&self) -> &str {
        "closure"
    }

    fn process(&self, call: &mut LlmCall) -> Result<(), ProcessError> {
        self(call)
    }
}

/// Processors run in order, each with a failure count for rate-limited warnings.
#[derive(Default)]
pub(crate) struct Pipeline {
    stages: Vec<(Arc<dyn Processor>, AtomicU64)>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.stages.iter().map(|(p, _)| p.name()))
            .finish()
    }
}

impl Pipeline {
    pub(crate) fn new(processors: Vec<Arc<dyn Processor>>) -> Self {
        Pipeline {
            stages: processors
                .into_iter()
                .map(|p| (p, AtomicU64::new(0)))
                .collect(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.stages.is_empty()
    }

    /// Runs every processor on `call`. One that fails or panics removes the call's content and
    /// leaves a note; the later ones still run.
    pub(crate) fn run(&self, call: &mut LlmCall) {
        for (processor, failures) in &self.stages {
            let problem = match catch_unwind(AssertUnwindSafe(|| processor.process(call))) {
                Ok(Ok(())) => continue,
                Ok(Err(error)) => error.to_string(),
                Err(panic) => format!("panicked: {}", panic_message(panic.as_ref())),
            };
            call.remove_content();
            call.processing_errors.push(format!(
                "processor {:?} failed ({problem}); the call's content was removed",
                processor.name()
            ));
            let failed = failures.fetch_add(1, Ordering::Relaxed) + 1;
            if failed.is_power_of_two() {
                tracing::warn!(
                    target: "llm_observability",
                    processor = processor.name(),
                    failed,
                    %problem,
                    "processor failed; the call's content was removed"
                );
            }
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a non-string panic payload")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Endpoint;
    use serde_json::json;

    fn call_with_content() -> LlmCall {
        let mut call = LlmCall::new(Endpoint::ChatCompletions);
        call.request.messages = Some(json!([{"role": "user", "content": "secret"}]).into());
        call.response = Some(json!({"choices": [{"message": {"content": "reply"}}]}).into());
        call
    }

    #[test]
    fn a_failing_or_panicking_processor_removes_the_content() {
        let tag: Arc<dyn Processor> = Arc::new(|call: &mut LlmCall| {
            call.metadata.insert("tagged".into(), true.into());
            Ok(())
        });
        let fails: Arc<dyn Processor> =
            Arc::new(|_: &mut LlmCall| Err(ProcessError::new("no pricing table")));
        let panics: Arc<dyn Processor> = Arc::new(|call: &mut LlmCall| {
            call.request.model = Some("half-changed".into());
            panic!("redactor bug")
        });
        for (bad, note) in [
            (fails, "no pricing table"),
            (panics, "panicked: redactor bug"),
        ] {
            let pipeline = Pipeline::new(vec![bad, tag.clone()]);
            let mut call = call_with_content();
            pipeline.run(&mut call);
            assert!(call.request.messages.is_none());
            assert!(call.response.is_none());
            assert_eq!(call.processing_errors.len(), 1);
            assert!(call.processing_errors[0].contains(note), "{call:?}");
            assert_eq!(call.metadata["tagged"], true, "later processors still run");
        }
    }

    #[test]
    fn a_good_processor_changes_the_call_and_leaves_no_note() {
        let pipeline = Pipeline::new(vec![Arc::new(|call: &mut LlmCall| {
            if let Some(messages) = &mut call.request.messages {
                messages.map(|value| value[0]["content"] = json!("[redacted]"));
            }
            Ok(())
        })]);
        let mut call = call_with_content();
        pipeline.run(&mut call);
        assert_eq!(
            call.request.messages.as_ref().map(|m| m.text()),
            Some(r#"[{"content":"[redacted]","role":"user"}]"#)
        );
        assert!(call.processing_errors.is_empty());
        assert!(call.response.is_some());
    }
}
