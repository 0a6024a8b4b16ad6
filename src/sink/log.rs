//! `LogSink`: a one-line summary of each call through `tracing`.

use std::sync::Arc;

use async_trait::async_trait;

use super::{Sink, SinkError};
use crate::payload::LlmCall;

/// Logs one `INFO` event per call (target `llm_observability::calls`) with endpoint, model,
/// status, tokens, time to first token and latency — for development, or for log pipelines
/// that already collect `tracing` output.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogSink;

#[async_trait]
impl Sink for LogSink {
    fn name(&self) -> &str {
        "log"
    }

    async fn export(&self, batch: &[Arc<LlmCall>]) -> Result<(), SinkError> {
        for call in batch {
            let usage = call.usage.unwrap_or_default();
            tracing::info!(
                target: "llm_observability::calls",
                id = %call.id,
                endpoint = %call.endpoint,
                model = call.requested_model().unwrap_or("-"),
                status = call.status.as_str(),
                http_status = call.http_status,
                input_tokens = usage.input_tokens,
                output_tokens = usage.output_tokens,
                ttft_ms = call.timing.time_to_first_token_ms,
                duration_ms = call.timing.duration_ms,
                error = call.error.as_ref().and_then(|e| e.message.as_deref()),
                "llm call"
            );
        }
        Ok(())
    }
}
