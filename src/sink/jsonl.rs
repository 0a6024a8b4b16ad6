//! `JsonlSink`: one JSON line per call, appended to a file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

use super::{Sink, SinkError};
use crate::payload::LlmCall;

/// Appends each call as one line of JSON (the [`LlmCall`] schema) to a file. Each batch is
/// written with one `write` and flushed, so lines reach the file within the dispatcher's batch
/// interval and a reader never sees half a line from a batch.
///
/// ```no_run
/// # fn main() -> std::io::Result<()> {
/// let sink = llm_observability::JsonlSink::create("llm-calls.jsonl")?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct JsonlSink {
    path: PathBuf,
    file: Mutex<tokio::fs::File>,
}

impl JsonlSink {
    /// Opens `path` for appending, creating it if needed.
    pub fn create(path: impl AsRef<Path>) -> std::io::Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        Ok(JsonlSink {
            path,
            file: Mutex::new(tokio::fs::File::from_std(file)),
        })
    }

    /// The file this sink appends to.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[async_trait]
impl Sink for JsonlSink {
    fn name(&self) -> &str {
        "jsonl"
    }

    async fn export(&self, batch: &[Arc<LlmCall>]) -> Result<(), SinkError> {
        let mut lines = Vec::with_capacity(batch.len() * 1024);
        for call in batch {
            serde_json::to_writer(&mut lines, call.as_ref())?;
            lines.push(b'\n');
        }
        let mut file = self.file.lock().await;
        file.write_all(&lines).await?;
        file.flush().await?;
        Ok(())
    }

    async fn flush(&self) -> Result<(), SinkError> {
        self.file.lock().await.sync_data().await?;
        Ok(())
    }
}
