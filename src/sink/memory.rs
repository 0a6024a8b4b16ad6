//! `MemorySink`: keeps calls in memory, for tests (yours and ours).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

use super::{Sink, SinkError};
use crate::payload::LlmCall;

/// Collects every call it receives. Clones share the same store, so keep one clone to read
/// from and give the other to the layer.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use llm_observability::{LlmObservabilityLayer, MemorySink};
/// let memory = MemorySink::new();
/// let layer = LlmObservabilityLayer::builder().sink(memory.clone()).build()?;
/// // ... run calls through `layer` ...
/// layer.dispatcher().flush(std::time::Duration::from_secs(1)).await?;
/// assert!(memory.calls().is_empty());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemorySink {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    calls: Mutex<Vec<Arc<LlmCall>>>,
    arrived: Notify,
}

impl MemorySink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// The calls received so far, in arrival order.
    pub fn calls(&self) -> Vec<Arc<LlmCall>> {
        self.lock().clone()
    }

    /// Removes and returns the calls received so far.
    pub fn take(&self) -> Vec<Arc<LlmCall>> {
        std::mem::take(&mut *self.lock())
    }

    /// Waits until at least `count` calls have arrived (or `timeout` passes) and returns what
    /// has arrived.
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> Vec<Arc<LlmCall>> {
        let wait = async {
            loop {
                let arrived = self.inner.arrived.notified();
                if self.lock().len() >= count {
                    return;
                }
                arrived.await;
            }
        };
        let _ = tokio::time::timeout(timeout, wait).await;
        self.calls()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<LlmCall>>> {
        self.inner
            .calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl Sink for MemorySink {
    fn name(&self) -> &str {
        "memory"
    }

    async fn export(&self, batch: &[Arc<LlmCall>]) -> Result<(), SinkError> {
        self.lock().extend(batch.iter().cloned());
        self.inner.arrived.notify_waiters();
        Ok(())
    }
}
