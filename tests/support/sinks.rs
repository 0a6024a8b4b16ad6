//! Misbehaving sinks for fault tests.

use std::sync::Arc;

use async_trait::async_trait;
use llm_observability::{LlmCall, Sink, SinkError};

/// Never returns from `export`.
pub struct Hangs;

#[async_trait]
impl Sink for Hangs {
    fn name(&self) -> &str {
        "hangs"
    }
    async fn export(&self, _batch: &[Arc<LlmCall>]) -> Result<(), SinkError> {
        std::future::pending().await
    }
}
