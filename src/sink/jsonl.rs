//! `JsonlSink`: one JSON line per call, appended to a file.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::{Sink, SinkError};
use crate::payload::LlmCall;

/// Appends each call as one line of JSON (the [`LlmCall`] schema) to a file. Each batch is
/// written with one `write_all` on tokio's blocking pool (the lines are handed over, not
/// copied), so lines reach the file within the dispatcher's batch interval and a reader never
/// sees half a line from a batch.
///
/// ```no_run
/// # fn main() -> std::io::Result<()> {
/// let sink = llm_observability::JsonlSink::create("llm-calls.jsonl")?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct JsonlSink {
    path: PathBuf,
    file: Arc<Mutex<File>>,
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
            file: Arc::new(Mutex::new(file)),
        })
    }

    /// The file this sink appends to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs blocking file I/O on tokio's blocking pool, one operation at a time.
    async fn with_file(
        &self,
        operation: impl FnOnce(&mut File) -> std::io::Result<()> + Send + 'static,
    ) -> Result<(), SinkError> {
        let file = self.file.clone();
        let done = tokio::task::spawn_blocking(move || {
            // A panic while writing poisons the lock; the file itself is still usable.
            let mut file = file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            operation(&mut file)
        })
        .await;
        match done {
            Ok(written) => Ok(written?),
            Err(failed) => Err(SinkError::permanent("file task failed").with_source(failed)),
        }
    }
}

#[async_trait]
impl Sink for JsonlSink {
    fn name(&self) -> &str {
        "jsonl"
    }

    async fn export(&self, batch: &[Arc<LlmCall>]) -> Result<(), SinkError> {
        let mut lines = Vec::new();
        super::ndjson::encode(batch, &mut lines)?;
        self.with_file(move |file| file.write_all(&lines)).await
    }

    async fn flush(&self) -> Result<(), SinkError> {
        self.with_file(|file| file.sync_data()).await
    }
}
