//! `ArchiveSink`: calls archived as NDJSON objects in object storage (S3 and S3-compatible
//! stores, local disk) through the `object_store` crate.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use flate2::write::GzEncoder;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tokio::time::Instant;

use super::{Sink, SinkError};
use crate::payload::LlmCall;

/// Why an [`ArchiveSink`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// The URL is not `s3://bucket[/prefix]` or `file:///dir`.
    #[error("unsupported archive URL {0:?}: use s3://bucket/prefix or file:///dir")]
    Url(String),
    /// The store could not be set up (bad S3 settings, a directory that cannot be created).
    #[error("cannot set up the archive store")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Archives calls as newline-delimited JSON objects (the [`LlmCall`] schema, one call per
/// line, gzip optional) under `prefix/yyyy/mm/dd/hh/<uuid>.jsonl[.gz]`, through
/// [`object_store`]: Amazon S3 and S3-compatible stores (`s3://bucket/prefix`, with endpoint,
/// region and credentials from the usual `AWS_*` environment variables), local disk
/// (`file:///dir`), or any [`ObjectStore`] you build yourself (GCS, Azure, ...).
///
/// Calls are buffered, and an object is written when the buffer holds
/// [`max_bytes`](ArchiveSinkBuilder::max_bytes) of NDJSON (default 8 MiB, before compression)
/// or when its first call has waited [`max_age`](ArchiveSinkBuilder::max_age) (default 60 s),
/// on [`flush`](Sink::flush) (what [`Dispatcher::flush`](crate::Dispatcher::flush) calls) and
/// at shutdown. The folder is the UTC hour of the first call's start time; a call from another
/// hour starts a new object. Object names are UUID v7, so they sort by the time they were made.
///
/// Accounting: a call counts `delivered` once it is in the buffer; an object that cannot be
/// written (a transient failure: the store is down, a timeout) stays in the buffer under the
/// same name and is written again before anything else, and the batches that arrive meanwhile
/// fail (retryably) with that error, so the dispatcher retries them, reports the streak once,
/// and counts them `failed` if the store does not come back. A buffer that cannot be written
/// at shutdown is reported as an error with the number of calls it holds.
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let _rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
/// # let _guard = _rt.enter();
/// let sink = llm_observability::ArchiveSink::builder_from_url("s3://my-bucket/llm-calls")?
///     .gzip(true)
///     .max_age(std::time::Duration::from_secs(300))
///     .build();
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct ArchiveSink {
    inner: Arc<Inner>,
}

/// Builder of [`ArchiveSink`].
#[derive(Debug)]
pub struct ArchiveSinkBuilder {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    gzip: bool,
    max_bytes: usize,
    max_age: Duration,
}

impl ArchiveSinkBuilder {
    /// Compress each object with gzip (`.jsonl.gz`; default: off).
    pub fn gzip(mut self, gzip: bool) -> Self {
        self.gzip = gzip;
        self
    }

    /// Write an object once the buffer holds this many bytes of NDJSON (default 8 MiB).
    pub fn max_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = bytes.max(1);
        self
    }

    /// Write an object once its first call has waited this long (default 60 s).
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = age;
        self
    }

    /// Builds the sink. Inside a tokio runtime it starts a task that writes a buffer when it
    /// comes of age, even when no further call arrives; outside one, ageing is checked when
    /// calls arrive and on flush.
    pub fn build(self) -> ArchiveSink {
        let inner = Arc::new(Inner {
            store: self.store,
            prefix: self.prefix,
            gzip: self.gzip,
            max_bytes: self.max_bytes,
            max_age: self.max_age,
            state: tokio::sync::Mutex::new(State::default()),
            timer_failing: AtomicBool::new(false),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(age_timer(Arc::downgrade(&inner), self.max_age));
        }
        ArchiveSink { inner }
    }
}

impl ArchiveSink {
    /// A sink writing to `store` under `prefix` (may be empty).
    pub fn builder(store: Arc<dyn ObjectStore>, prefix: &str) -> ArchiveSinkBuilder {
        ArchiveSinkBuilder {
            store,
            prefix: Path::from(prefix.trim_matches('/')),
            gzip: false,
            max_bytes: 8 << 20,
            max_age: Duration::from_secs(60),
        }
    }

    /// A sink for `s3://bucket[/prefix]` (settings from the `AWS_*` environment variables:
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT` for an
    /// S3-compatible store, `AWS_ALLOW_HTTP=true` for a plain-HTTP one) or `file:///dir`
    /// (created if missing).
    pub fn builder_from_url(url: &str) -> Result<ArchiveSinkBuilder, ArchiveError> {
        let bad = || ArchiveError::Url(url.to_owned());
        let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
        match scheme {
            "s3" | "s3a" => {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(bad());
                }
                let store = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .build()
                    .map_err(|e| ArchiveError::Store(Box::new(e)))?;
                Ok(Self::builder(Arc::new(store), prefix))
            }
            "file" => {
                let dir = rest.strip_prefix("localhost").unwrap_or(rest);
                if !dir.starts_with('/') {
                    return Err(bad());
                }
                std::fs::create_dir_all(dir).map_err(|e| ArchiveError::Store(Box::new(e)))?;
                let store = object_store::local::LocalFileSystem::new_with_prefix(dir)
                    .map_err(|e| ArchiveError::Store(Box::new(e)))?;
                Ok(Self::builder(Arc::new(store), ""))
            }
            _ => Err(bad()),
        }
    }

    /// The store the objects go to.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.inner.store
    }
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    gzip: bool,
    max_bytes: usize,
    max_age: Duration,
    state: tokio::sync::Mutex<State>,
    /// Whether the age timer's last write failed (it says so once per streak).
    timer_failing: AtomicBool,
}

#[derive(Debug, Default)]
struct State {
    /// Objects named and encoded, waiting to be written, oldest first.
    sealed: VecDeque<Sealed>,
    /// The object being filled.
    open: Open,
    /// The last batch put in the buffer, by size and first and last id: an export that timed
    /// out after taking its batch in is retried with the very same batch, which must not go
    /// in twice.
    last_batch: Option<(usize, String, String)>,
}

#[derive(Debug, Default)]
struct Open {
    lines: Vec<u8>,
    calls: usize,
    /// The UTC `(year, month, day, hour)` of the first call's start time.
    hour: Option<(i32, u8, u8, u8)>,
    /// When the first call went in.
    since: Option<Instant>,
}

#[derive(Debug)]
struct Sealed {
    key: Path,
    body: Bytes,
    calls: usize,
}

fn hour_of(call: &LlmCall) -> (i32, u8, u8, u8) {
    let t = call.timing.start_time.to_offset(time::UtcOffset::UTC);
    (t.year(), u8::from(t.month()), t.day(), t.hour())
}

impl Inner {
    /// Closes the open object: names it and encodes its body.
    fn seal(&self, state: &mut State) -> Result<(), SinkError> {
        let open = std::mem::take(&mut state.open);
        let Some((year, month, day, hour)) = open.hour else {
            return Ok(());
        };
        let extension = if self.gzip { "jsonl.gz" } else { "jsonl" };
        let name = format!(
            "{year:04}/{month:02}/{day:02}/{hour:02}/{}.{extension}",
            uuid::Uuid::now_v7()
        );
        let key = if self.prefix.as_ref().is_empty() {
            Path::from(name)
        } else {
            Path::from(format!("{}/{name}", self.prefix))
        };
        let body = if self.gzip {
            let mut encoder = GzEncoder::new(
                Vec::with_capacity(open.lines.len() / 4),
                flate2::Compression::default(),
            );
            encoder.write_all(&open.lines)?;
            encoder.finish()?
        } else {
            open.lines
        };
        state.sealed.push_back(Sealed {
            key,
            body: Bytes::from(body),
            calls: open.calls,
        });
        Ok(())
    }

    /// Writes the sealed objects in order; one that fails stays first in line.
    async fn write_sealed(&self, state: &mut State) -> Result<(), SinkError> {
        while let Some(object) = state.sealed.front() {
            let payload = PutPayload::from_bytes(object.body.clone());
            if let Err(error) = self.store.put(&object.key, payload).await {
                let message = format!(
                    "cannot write archive object {} ({} calls; {} objects waiting)",
                    object.key,
                    object.calls,
                    state.sealed.len()
                );
                return Err(store_error(message, error));
            }
            tracing::debug!(target: "llm_observability", sink = "archive", key = %object.key, calls = object.calls, "archive object written");
            state.sealed.pop_front();
        }
        Ok(())
    }

    fn is_old(&self, state: &State) -> bool {
        state
            .open
            .since
            .is_some_and(|since| since.elapsed() >= self.max_age)
    }

    async fn export(&self, batch: &[Arc<LlmCall>]) -> Result<(), SinkError> {
        let mut state = self.state.lock().await;
        // What could not be written before goes first; until it is, new batches are refused
        // (retryably), so the buffer stays bounded and the failure is seen.
        self.write_sealed(&mut state).await?;
        let tag = match (batch.first(), batch.last()) {
            (Some(first), Some(last)) => (batch.len(), first.id.clone(), last.id.clone()),
            _ => return Ok(()),
        };
        if state.last_batch.as_ref() == Some(&tag) {
            return Ok(());
        }
        state.last_batch = Some(tag);
        let mut line = Vec::with_capacity(1024);
        for call in batch {
            line.clear();
            super::ndjson::encode(std::slice::from_ref(call), &mut line)?;
            let hour = hour_of(call);
            if state.open.hour.is_some_and(|open| open != hour) {
                self.seal(&mut state)?;
            }
            let open = &mut state.open;
            open.hour.get_or_insert(hour);
            open.since.get_or_insert_with(Instant::now);
            open.lines.extend_from_slice(&line);
            open.calls += 1;
            if open.lines.len() >= self.max_bytes {
                self.seal(&mut state)?;
            }
        }
        if self.is_old(&state) {
            self.seal(&mut state)?;
        }
        // The batch is in the buffer now: a failed write is reported by the next batch, which
        // tries it again first.
        if let Err(error) = self.write_sealed(&mut state).await {
            tracing::debug!(target: "llm_observability", sink = "archive", error = %error.chain(), "archive write failed; kept for the next attempt");
        }
        Ok(())
    }

    async fn flush(&self) -> Result<(), SinkError> {
        let mut state = self.state.lock().await;
        self.seal(&mut state)?;
        self.write_sealed(&mut state).await
    }

    /// Seals and writes the open object if it has come of age.
    async fn tick(&self) {
        let mut state = self.state.lock().await;
        if !self.is_old(&state) && state.sealed.is_empty() {
            return;
        }
        let result = match self.seal(&mut state) {
            Ok(()) => self.write_sealed(&mut state).await,
            Err(error) => Err(error),
        };
        match result {
            Ok(()) => {
                if self.timer_failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(target: "llm_observability", sink = "archive", "archive writes succeed again");
                }
            }
            Err(error) => {
                if !self.timer_failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(target: "llm_observability", sink = "archive", error = %error.chain(), "cannot write to the archive; retrying");
                }
            }
        }
    }
}

/// Writes buffers that come of age while no call arrives; ends with the sink.
async fn age_timer(inner: Weak<Inner>, max_age: Duration) {
    let period = (max_age / 4).clamp(Duration::from_millis(10), Duration::from_secs(5));
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        inner.tick().await;
    }
}

fn store_error(message: String, error: object_store::Error) -> SinkError {
    match error {
        // Settings the store refused: retrying cannot fix them.
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. }
        | object_store::Error::NotSupported { .. }
        | object_store::Error::NotImplemented { .. } => {
            SinkError::permanent(message).with_source(error)
        }
        other => SinkError::transient(message).with_source(other),
    }
}

#[async_trait]
impl Sink for ArchiveSink {
    fn name(&self) -> &str {
        "archive"
    }

    async fn export(&self, batch: &[Arc<LlmCall>]) -> Result<(), SinkError> {
        self.inner.export(batch).await
    }

    /// Writes the buffer as an object now, whatever its size and age.
    async fn flush(&self) -> Result<(), SinkError> {
        self.inner.flush().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(matches!(
            ArchiveSink::builder_from_url("gs://bucket/x"),
            Err(ArchiveError::Url(_))
        ));
        assert!(matches!(
            ArchiveSink::builder_from_url("file://relative/dir"),
            Err(ArchiveError::Url(_))
        ));
        assert!(matches!(
            ArchiveSink::builder_from_url("s3:///prefix"),
            Err(ArchiveError::Url(_))
        ));
        let dir = std::env::temp_dir().join(format!("llm-obs-archive-url-{}", std::process::id()));
        let url = format!("file://{}", dir.display());
        assert!(ArchiveSink::builder_from_url(&url).is_ok());
        assert!(dir.is_dir());
        let _ = std::fs::remove_dir_all(dir);
    }
}
