//! `JsonlSink` against the file system as it really behaves: a device that is always full, a
//! file created for prompts, a file rotated or deleted under the sink, a torn last line left
//! by an earlier crash, and a write that blocks (a FIFO nobody reads) past the export timeout.
//! Every test ends with the file's lines checked against the dispatcher's counters. Faults the
//! file system cannot be made to produce on demand (a disk filling up mid-batch, a failed
//! `fsync`, a write slower than every retry) are unit tests in `src/sink/jsonl.rs`.

#![cfg(unix)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use llm_observability::{
    DispatcherConfig, DispatcherStats, Endpoint, JsonlSink, LlmCall, LlmObservabilityLayer, Sink,
    SinkConfig, SinkError,
};

const DEADLINE: Duration = Duration::from_secs(20);

/// A fresh directory, removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("llm-obs-jsonl-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Quick batches and quick retries, so that a test never waits on the defaults.
fn quick() -> DispatcherConfig {
    DispatcherConfig::builder()
        .batch_interval(Duration::from_millis(5))
        .max_retries(2)
        .initial_backoff(Duration::from_millis(1))
        .max_backoff(Duration::from_millis(5))
        .build()
}

fn layer(sink: impl Sink, config: DispatcherConfig) -> LlmObservabilityLayer {
    LlmObservabilityLayer::builder()
        .sink_with(sink, SinkConfig::new().dispatch(config))
        .build()
        .unwrap()
}

/// Dispatches `count` fresh calls; returns their ids.
fn dispatch(layer: &LlmObservabilityLayer, count: usize) -> Vec<String> {
    (0..count)
        .map(|_| {
            let call = LlmCall::new(Endpoint::ChatCompletions);
            let id = call.id.clone();
            layer.dispatcher().dispatch(Arc::new(call));
            id
        })
        .collect()
}

async fn flush(layer: &LlmObservabilityLayer) -> DispatcherStats {
    layer.dispatcher().flush(DEADLINE).await.unwrap();
    layer.dispatcher().stats()
}

/// The ids of the calls in a JSONL file, in file order; panics on a line that is not a call.
fn ids_in(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "torn last line: {text:?}"
    );
    text.lines()
        .map(|line| match serde_json::from_str::<LlmCall>(line) {
            Ok(call) => call.id,
            Err(error) => panic!("not an LlmCall line ({error}): {line:?}"),
        })
        .collect()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn a_device_that_is_always_full_counts_every_call_failed_at_once() {
    let sink = JsonlSink::create("/dev/full").unwrap();
    // The sink's own answer: an error for the batch, not a success that loses it.
    let batch = vec![Arc::new(LlmCall::new(Endpoint::ChatCompletions))];
    let error = sink.export(&batch).await.unwrap_err();
    assert!(error.is_retryable(), "a full disk may clear up");
    assert!(error.chain().contains("/dev/full"), "{}", error.chain());
    // A device has nothing to sync: flushing it is not an error.
    sink.flush().await.unwrap();

    let layer = layer(sink, quick());
    dispatch(&layer, 3);
    // Counted failed by the first flush, not only at shutdown.
    let stats = flush(&layer).await;
    let sink = &stats.sinks[0];
    assert_eq!(
        (stats.observed, sink.delivered, sink.failed),
        (3, 0, 3),
        "{stats:?}"
    );
    dispatch(&layer, 2);
    let stats = flush(&layer).await;
    assert_eq!((stats.sinks[0].delivered, stats.sinks[0].failed), (0, 5));
    layer.dispatcher().shutdown(DEADLINE).await.unwrap();
}

#[tokio::test]
async fn a_new_file_is_private_and_an_existing_file_keeps_its_mode() {
    let dir = TempDir::new();
    let new = dir.join("new.jsonl");
    let _sink = JsonlSink::create(&new).unwrap();
    assert_eq!(mode(&new), 0o600, "a new file holds prompts: owner only");

    let existing = dir.join("existing.jsonl");
    std::fs::write(&existing, b"").unwrap();
    std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o640)).unwrap();
    let sink = JsonlSink::create(&existing).unwrap();
    let layer = layer(sink, quick());
    let ids = dispatch(&layer, 2);
    flush(&layer).await;
    assert_eq!(mode(&existing), 0o640, "the owner's choice stands");
    assert_eq!(ids_in(&existing), ids);
}

#[tokio::test]
async fn a_file_rotated_away_or_deleted_is_created_again_at_the_path() {
    let dir = TempDir::new();
    let path = dir.join("calls.jsonl");
    let layer = layer(JsonlSink::create(&path).unwrap(), quick());

    let first = dispatch(&layer, 2);
    flush(&layer).await;
    // logrotate's default: rename, and let the writer create a new file.
    let rotated = dir.join("calls.jsonl.1");
    std::fs::rename(&path, &rotated).unwrap();
    let second = dispatch(&layer, 3);
    flush(&layer).await;
    assert_eq!(ids_in(&rotated), first, "nothing more in the rotated file");
    assert_eq!(ids_in(&path), second, "later calls land at the path");
    assert_eq!(mode(&path), 0o600, "the new file is private too");

    // Deleted outright: created again, not written into the unlinked file.
    std::fs::remove_file(&path).unwrap();
    let third = dispatch(&layer, 2);
    let stats = flush(&layer).await;
    assert_eq!(ids_in(&path), third);
    assert_eq!(
        (stats.sinks[0].delivered, stats.sinks[0].failed),
        (7, 0),
        "{stats:?}"
    );
}

#[tokio::test]
async fn reopen_starts_a_new_file_at_the_path_from_the_next_batch() {
    let dir = TempDir::new();
    let path = dir.join("calls.jsonl");
    // Kept behind an Arc, to call `reopen` on a SIGHUP from a rotation tool.
    let sink = Arc::new(JsonlSink::create(&path).unwrap());
    let layer = LlmObservabilityLayer::builder()
        .shared_sink_with(sink.clone(), SinkConfig::new().dispatch(quick()))
        .build()
        .unwrap();
    let first = dispatch(&layer, 2);
    flush(&layer).await;

    let rotated = dir.join("calls.jsonl.1");
    std::fs::rename(&path, &rotated).unwrap();
    sink.reopen();
    let second = dispatch(&layer, 2);
    flush(&layer).await;
    assert_eq!(ids_in(&rotated), first);
    assert_eq!(ids_in(&path), second);

    // Asked with nothing rotated: the same file is opened again, nothing lost or repeated.
    sink.reopen();
    let third = dispatch(&layer, 2);
    let stats = flush(&layer).await;
    assert_eq!(ids_in(&path), [second, third].concat());
    assert_eq!((stats.sinks[0].delivered, stats.sinks[0].failed), (6, 0));
}

#[tokio::test]
async fn a_torn_last_line_is_never_glued_to_the_next_record() {
    let dir = TempDir::new();
    let path = dir.join("calls.jsonl");
    let whole = serde_json::to_string(&LlmCall::new(Endpoint::Embeddings)).unwrap();
    // A crash (or a full disk) in some earlier process cut its last line short.
    let torn = &whole[..whole.len() / 2];
    std::fs::write(&path, format!("{whole}\n{torn}")).unwrap();

    let layer = layer(JsonlSink::create(&path).unwrap(), quick());
    let ids = dispatch(&layer, 3);
    let stats = flush(&layer).await;
    assert_eq!(stats.sinks[0].delivered, 3);

    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    // The torn fragment stays, alone on its line; every record after it reads back whole.
    assert_eq!((lines[0], lines[1]), (whole.as_str(), torn));
    let written: Vec<String> = lines[2..]
        .iter()
        .map(|line| serde_json::from_str::<LlmCall>(line).unwrap().id)
        .collect();
    assert_eq!(written, ids);
    assert!(text.ends_with('\n'));
}

/// Delegates to a [`JsonlSink`], counting the dispatcher's export attempts.
struct Attempts {
    inner: JsonlSink,
    exports: Arc<AtomicUsize>,
}

#[async_trait]
impl Sink for Attempts {
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn export(&self, batch: &[Arc<LlmCall>]) -> Result<(), SinkError> {
        self.exports.fetch_add(1, Ordering::SeqCst);
        self.inner.export(batch).await
    }
    async fn flush(&self) -> Result<(), SinkError> {
        self.inner.flush().await
    }
}

/// Reads the FIFO once `go` says so, until the line `end` arrives; sends what came before it.
fn drain_fifo(
    mut fifo: std::fs::File,
    go: std::sync::mpsc::Receiver<()>,
    end: &'static str,
    done: std::sync::mpsc::Sender<Vec<u8>>,
) {
    if go.recv().is_err() {
        return;
    }
    let mut seen = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    while !seen.ends_with(end.as_bytes()) {
        match fifo.read(&mut chunk) {
            Ok(read) if read > 0 => seen.extend_from_slice(&chunk[..read]),
            // The test holds the FIFO open for writing: no end of file, no error expected.
            _ => return,
        }
    }
    seen.truncate(seen.len() - end.len());
    let _ = done.send(seen);
}

#[tokio::test]
async fn a_write_stalled_past_the_export_timeout_is_not_repeated_by_the_retries() {
    let dir = TempDir::new();
    let fifo_path = dir.join("calls.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo_path)
        .status()
        .unwrap();
    assert!(made.success());
    // Opened for reading and writing, a FIFO never blocks the open; the test is its reader.
    let fifo = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo_path)
        .unwrap();
    let mut sentinel = fifo.try_clone().unwrap();
    let (go, wait) = std::sync::mpsc::channel();
    let (done, drained) = std::sync::mpsc::channel();
    std::thread::spawn(move || drain_fifo(fifo, wait, "END\n", done));

    let exports = Arc::new(AtomicUsize::new(0));
    let sink = Attempts {
        inner: JsonlSink::create(&fifo_path).unwrap(),
        exports: exports.clone(),
    };
    let config = DispatcherConfig::builder()
        // One batch of 3, sent when full.
        .batch_size(3)
        .batch_interval(Duration::from_secs(3600))
        .export_timeout(Duration::from_millis(50))
        .max_retries(1000)
        .initial_backoff(Duration::from_millis(1))
        .max_backoff(Duration::from_millis(2))
        .build();
    let layer = layer(sink, config);
    // One call larger than the pipe's buffer: its write blocks until the test reads. (The
    // runtime has one thread: the worker takes the three calls only once they are all queued.)
    let mut big = LlmCall::new(Endpoint::ChatCompletions);
    big.metadata
        .insert("filler".into(), "x".repeat(256 * 1024).into());
    let mut ids = vec![big.id.clone()];
    layer.dispatcher().dispatch(Arc::new(big));
    ids.extend(dispatch(&layer, 2));

    // The first attempt timed out with its write still blocked, and the dispatcher retried.
    let until = tokio::time::Instant::now() + DEADLINE;
    while exports.load(Ordering::SeqCst) < 3 {
        assert!(tokio::time::Instant::now() < until, "no retry came");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    go.send(()).unwrap();
    layer.dispatcher().shutdown(DEADLINE).await.unwrap();
    sentinel.write_all(b"END\n").unwrap();
    let written = drained.recv_timeout(DEADLINE).unwrap();

    let mut counts: HashMap<String, usize> = HashMap::new();
    for line in written.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let call: LlmCall = serde_json::from_slice(line).unwrap();
        *counts.entry(call.id).or_default() += 1;
    }
    for id in &ids {
        assert_eq!(
            counts.get(id),
            Some(&1),
            "each call exactly once: {counts:?}"
        );
    }
    assert_eq!(counts.len(), 3);
    let stats = layer.dispatcher().stats();
    assert_eq!(
        (stats.sinks[0].delivered, stats.sinks[0].failed),
        (3, 0),
        "the counters say what the FIFO got: {stats:?}"
    );
}
