//! `JsonlSink`: one JSON line per call, appended to a file.
//!
//! All file I/O runs on tokio's blocking pool, one task at a time. The task of the last export
//! or flush is kept until its outcome is known: an export the dispatcher timed out leaves its
//! write running, and the next call to the sink waits for it instead of writing beside it.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use tokio::task::JoinHandle;

use super::{Sink, SinkError};
use crate::payload::LlmCall;

/// Appends each call as one line of JSON (the [`LlmCall`] schema) to a file. Each batch is
/// written with one `write_all` on tokio's blocking pool, so lines reach the file within the
/// dispatcher's batch interval; the checks below cost a `stat` or two per batch, not per call.
///
/// What it guarantees, when it is the file's only writer:
///
/// - **A record is in the file whole or not at all.** A batch that cannot be written in full
///   (a full disk) is cut off again: the file is truncated back to its length from before the
///   batch and the export fails with a retryable error that says so. When the file does not
///   end in a newline (a line torn by a crash, or a cut that failed too), the next batch starts
///   with one: the torn fragment stays alone on its line, where a reader skips it, and is never
///   glued onto a record. (A FIFO or a device cannot be cut or looked at: after a write to it
///   failed, the next batch starts with a newline.)
/// - **The file holds what [`SinkStats::delivered`](crate::SinkStats::delivered) counts.** A
///   write still running when its export timed out is never run a second time beside itself:
///   the retry waits for it and takes its outcome. If the dispatcher gave the batch up (counted
///   it failed) and the write then completes anyway, it is cut back out of the file by the
///   sink's next batch or flush. (A FIFO or a device cannot be cut: there such a batch stays,
///   with a warning; so does one whose write outlasts the flush at shutdown.)
/// - **Rotation is followed.** Before each batch the sink checks that the path still names the
///   file it has open (on unix: same device and inode; elsewhere: the path exists); a file
///   moved away or deleted is synced and followed by a new one at the path.
///   [`reopen`](Self::reopen) asks for a new file explicitly, e.g. from a rotation tool's
///   `postrotate` signal.
/// - **Private by default.** A file the sink creates has mode `0600` on unix (the lines hold
///   prompts and outputs); an existing file keeps its mode.
/// - **Errors are reported at once.** A failed write is the batch's export error (counted in
///   [`SinkStats::failed`](crate::SinkStats::failed) after the retries, and logged by the
///   dispatcher); [`flush`](Sink::flush) syncs a regular file to disk (`fdatasync`) and
///   reports its error. A FIFO or a device (`/dev/stdout`) has nothing to sync.
///
/// ```no_run
/// # fn main() -> std::io::Result<()> {
/// let sink = llm_observability::JsonlSink::create("llm-calls.jsonl")?;
/// # Ok(()) }
/// ```
pub struct JsonlSink {
    target: Arc<Target>,
    /// The file task of the last export or flush, until someone has seen its outcome.
    in_flight: tokio::sync::Mutex<Option<InFlight>>,
}

impl std::fmt::Debug for JsonlSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonlSink")
            .field("path", &self.target.path)
            .finish_non_exhaustive()
    }
}

impl JsonlSink {
    /// Opens `path` for appending, creating it (mode `0600` on unix) if needed.
    pub fn create(path: impl AsRef<Path>) -> std::io::Result<Self> {
        Self::on_disk(path.as_ref(), Box::new(RealDisk))
    }

    fn on_disk(path: &Path, disk: Box<dyn Disk>) -> io::Result<Self> {
        let file = open_file(path)?;
        Ok(JsonlSink {
            target: Arc::new(Target {
                path: path.to_path_buf(),
                disk,
                reopen: AtomicBool::new(false),
                open: Mutex::new(Open::new(file, 0)),
            }),
            in_flight: tokio::sync::Mutex::new(None),
        })
    }

    /// The file this sink appends to.
    pub fn path(&self) -> &Path {
        &self.target.path
    }

    /// Asks for the path to be opened anew (and created if it is gone) before the next batch:
    /// call it when a log rotation tool says it has moved the file (a `SIGHUP`, `postrotate`).
    /// It returns at once and never blocks; if the path cannot be opened, the next batch fails
    /// with that error and the next one tries again. On unix a file moved away, deleted or
    /// replaced is noticed without it; elsewhere a file replaced at the path is not. Keep the
    /// sink in an `Arc` to call this after handing it to the layer
    /// ([`shared_sink`](crate::LlmObservabilityLayerBuilder::shared_sink)).
    pub fn reopen(&self) {
        self.target.reopen.store(true, Ordering::Release);
    }

    /// Runs `op` on the blocking pool once the previous file task is done. `batch` names the
    /// batch an export writes: if the previous task wrote that same batch (an earlier attempt
    /// that timed out), its outcome is this attempt's and nothing is written again.
    async fn run(&self, batch: Option<BatchTag>, op: Op) -> Result<(), SinkError> {
        let mut slot = self.in_flight.lock().await;
        let mut take_back = None;
        if let Some(earlier) = settle(&mut slot).await {
            match (earlier.batch, batch.as_ref()) {
                (Some(written), Some(current)) if written.is(current) => {
                    return earlier.outcome.map(drop);
                }
                // Nobody waited for this batch's outcome: the dispatcher gave it up.
                (Some(_given_up), _) => take_back = self.target.given_up(earlier.outcome),
                (None, _) => {
                    if let Err(error) = earlier.outcome {
                        tracing::warn!(target: "llm_observability", sink = "jsonl", error = %error.chain(), "a flush that timed out failed");
                    }
                }
            }
        }
        let target = self.target.clone();
        let task = tokio::task::spawn_blocking(move || target.run(op, take_back));
        *slot = Some(InFlight { batch, task });
        match settle(&mut slot).await {
            Some(done) => done.outcome.map(drop),
            None => Ok(()),
        }
    }
}

#[async_trait]
impl Sink for JsonlSink {
    fn name(&self) -> &str {
        "jsonl"
    }

    async fn export(&self, batch: &[Arc<LlmCall>]) -> Result<(), SinkError> {
        let Some(tag) = BatchTag::of(batch) else {
            return Ok(());
        };
        // The first byte is a separator, written only when the file ends in a torn line.
        let mut lines = vec![b'\n'];
        super::ndjson::encode(batch, &mut lines)?;
        self.run(Some(tag), Op::Append(lines)).await
    }

    async fn flush(&self) -> Result<(), SinkError> {
        self.run(None, Op::Sync).await
    }
}

/// Opens `path` for appending, creating it private to its owner. A regular file is opened for
/// reading too, to look at its last byte; a FIFO or a device only for writing, as before.
fn open_file(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let regular = std::fs::metadata(path).map_or(true, |meta| meta.is_file());
    if regular {
        match options.clone().read(true).open(path) {
            // A file we may write but not read: append without looking at its tail.
            Err(error) if error.kind() == io::ErrorKind::PermissionDenied => {}
            opened => return opened,
        }
    }
    options.open(path)
}

/// The I/O of a batch, behind a trait so that unit tests can bring the faults a real disk
/// only has on bad days.
trait Disk: Send + Sync + 'static {
    fn append(&self, file: &mut File, bytes: &[u8]) -> io::Result<()> {
        file.write_all(bytes)
    }

    fn cut(&self, file: &File, len: u64) -> io::Result<()> {
        file.set_len(len)
    }

    fn sync(&self, file: &File) -> io::Result<()> {
        file.sync_data()
    }
}

struct RealDisk;

impl Disk for RealDisk {}

/// What a file task does.
enum Op {
    /// Appends the lines after their first byte, or with it when the file ends in a torn line.
    Append(Vec<u8>),
    Sync,
}

/// The open file and what the sink knows about it.
struct Open {
    file: File,
    /// Counts the (re)openings: a batch written to an earlier file is never cut from this one.
    generation: u64,
    /// A length at which the file is known to end in a newline; `None` when it must be looked
    /// at (just opened, or a write failed halfway).
    clean_end: Option<u64>,
    /// A FIFO or a device, whose tail cannot be looked at: whether a write to it failed, maybe
    /// partway through a line.
    stream_torn: bool,
}

impl Open {
    fn new(file: File, generation: u64) -> Self {
        Open {
            file,
            generation,
            clean_end: None,
            stream_torn: false,
        }
    }
}

/// Where a batch landed in a regular file: bytes `start..end` of the file `generation`.
#[derive(Debug, Clone, Copy)]
struct Landed {
    generation: u64,
    start: u64,
    end: u64,
}

/// A file task's outcome; `Ok(None)` when there is nothing to cut back (a sync, or a write to a
/// FIFO or a device).
type Outcome = Result<Option<Landed>, SinkError>;

/// A batch, recognised by its size and the ids of its first and last calls: the dispatcher
/// retries the very same batch.
struct BatchTag {
    first: Arc<LlmCall>,
    last: Arc<LlmCall>,
    len: usize,
}

impl BatchTag {
    fn of(batch: &[Arc<LlmCall>]) -> Option<Self> {
        Some(BatchTag {
            first: batch.first()?.clone(),
            last: batch.last()?.clone(),
            len: batch.len(),
        })
    }

    fn is(&self, other: &BatchTag) -> bool {
        self.len == other.len && self.first.id == other.first.id && self.last.id == other.last.id
    }
}

struct InFlight {
    /// The batch the task writes; `None` for a sync.
    batch: Option<BatchTag>,
    task: JoinHandle<Outcome>,
}

struct Settled {
    batch: Option<BatchTag>,
    outcome: Outcome,
}

/// Waits for the task in `slot`, if any, and takes it out with its outcome. A caller dropped
/// while waiting (an export that timed out) leaves the task in the slot for the next caller.
async fn settle(slot: &mut Option<InFlight>) -> Option<Settled> {
    let joined = (&mut slot.as_mut()?.task).await;
    let batch = slot.take()?.batch;
    let outcome = joined.unwrap_or_else(|failed| {
        Err(SinkError::permanent("the file task failed").with_source(failed))
    });
    Some(Settled { batch, outcome })
}

/// The file, shared with the tasks on the blocking pool.
struct Target {
    path: PathBuf,
    disk: Box<dyn Disk>,
    reopen: AtomicBool,
    open: Mutex<Open>,
}

impl Target {
    /// Runs on the blocking pool: first cuts out a batch the dispatcher gave up, then `op`.
    fn run(&self, op: Op, take_back: Option<Landed>) -> Outcome {
        // A panic while writing poisons the lock; the file is still usable, and its tail is
        // looked at again (`clean_end` is `None` during a write).
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(landed) = take_back {
            self.take_back(&mut open, landed);
        }
        match op {
            Op::Append(lines) => self.append(&mut open, &lines),
            Op::Sync => self.sync(&open).map(|()| None),
        }
    }

    /// The outcome of a write whose batch the dispatcher gave up (counted failed): what to cut
    /// back out of the file, if the write got there after all.
    fn given_up(&self, outcome: Outcome) -> Option<Landed> {
        match outcome {
            Ok(Some(landed)) => Some(landed),
            Ok(None) => {
                tracing::warn!(target: "llm_observability", sink = "jsonl", path = %self.path.display(), "a batch given up after its export timed out was written after all, and a FIFO or device cannot be cut back: its calls, counted failed, were delivered");
                None
            }
            // Cut back already, or never written.
            Err(_) => None,
        }
    }

    /// Cuts the batch that `landed` describes out of the file, if nothing was written after it.
    fn take_back(&self, open: &mut Open, landed: Landed) {
        let cut = if open.generation != landed.generation {
            Err("the file was reopened since".to_owned())
        } else {
            match open.file.metadata() {
                Ok(meta) if meta.len() == landed.end => self
                    .disk
                    .cut(&open.file, landed.start)
                    .map_err(|error| error.to_string()),
                Ok(_) => Err("the file changed since".to_owned()),
                Err(error) => Err(error.to_string()),
            }
        };
        open.clean_end = None;
        match cut {
            Ok(()) => {
                tracing::debug!(target: "llm_observability", sink = "jsonl", path = %self.path.display(), "a batch given up after its export timed out was written after all; cut it back out");
            }
            Err(why) => {
                tracing::warn!(target: "llm_observability", sink = "jsonl", path = %self.path.display(), why, "a batch given up after its export timed out was written after all and could not be cut back: its calls, counted failed, are in the file");
            }
        }
    }

    fn append(&self, open: &mut Open, lines: &[u8]) -> Outcome {
        let path = self.path.display();
        let meta = self.follow_path(open)?;
        let Some(records) = lines.get(1..) else {
            return Ok(None);
        };
        if !meta.is_file() {
            // A FIFO or a device: nothing to look at or cut back.
            let bytes = if open.stream_torn { lines } else { records };
            open.stream_torn = true;
            return match self.disk.append(&mut open.file, bytes) {
                Ok(()) => {
                    open.stream_torn = false;
                    Ok(None)
                }
                Err(error) => Err(SinkError::transient(format!(
                    "could not write the batch to {path} (a FIFO or a device: what was written of it stays; the next batch starts on a new line)"
                ))
                .with_source(error)),
            };
        }
        let start = meta.len();
        let whole = start == 0 || open.clean_end == Some(start) || ends_in_newline(open, start);
        let bytes = if whole { records } else { lines };
        open.clean_end = None;
        match self.disk.append(&mut open.file, bytes) {
            Ok(()) => {
                let end = start.saturating_add(bytes.len() as u64);
                open.clean_end = Some(end);
                Ok(Some(Landed {
                    generation: open.generation,
                    start,
                    end,
                }))
            }
            Err(error) => Err(self.cut_back(open, start, whole, error)),
        }
    }

    /// After a failed write: truncates the file back to `start`, its length before the batch.
    fn cut_back(&self, open: &mut Open, start: u64, whole: bool, error: io::Error) -> SinkError {
        let path = self.path.display();
        match self.disk.cut(&open.file, start) {
            Ok(()) => {
                open.clean_end = whole.then_some(start);
                SinkError::transient(format!(
                    "could not append the batch to {path}; cut the file back to its {start} bytes from before the batch"
                ))
                .with_source(error)
            }
            Err(cut) => SinkError::transient(format!(
                "could not append the batch to {path}, nor cut the part written back off ({cut}); the next batch starts on a new line"
            ))
            .with_source(error),
        }
    }

    /// Opens the path anew when asked to or when it no longer names the open file; returns the
    /// metadata of the file to write.
    fn follow_path(&self, open: &mut Open) -> Result<std::fs::Metadata, SinkError> {
        let path = self.path.display();
        let stat = |file: &File| {
            file.metadata().map_err(|error| {
                SinkError::transient(format!("could not stat {path}")).with_source(error)
            })
        };
        let meta = stat(&open.file)?;
        let asked = self.reopen.swap(false, Ordering::AcqRel);
        if !asked && !self.moved(&meta) {
            return Ok(meta);
        }
        let file = open_file(&self.path).map_err(|error| {
            if asked {
                self.reopen.store(true, Ordering::Release);
            }
            SinkError::transient(format!("could not open {path} again")).with_source(error)
        })?;
        let generation = open.generation.wrapping_add(1);
        let old = std::mem::replace(open, Open::new(file, generation));
        // What went to the old file since the last flush would not be synced by the next one.
        if meta.is_file() {
            if let Err(error) = self.disk.sync(&old.file) {
                tracing::warn!(target: "llm_observability", sink = "jsonl", path = %self.path.display(), error = %error, "could not sync the file left behind (moved, deleted or reopened): its last lines may be lost");
            }
        }
        stat(&open.file)
    }

    /// Whether the path was moved away, deleted, or now names another file. When that cannot
    /// be told (the directory is unreadable), the open file is kept.
    #[cfg(unix)]
    fn moved(&self, open: &std::fs::Metadata) -> bool {
        use std::os::unix::fs::MetadataExt;
        match std::fs::metadata(&self.path) {
            Ok(at_path) => (at_path.dev(), at_path.ino()) != (open.dev(), open.ino()),
            Err(error) => error.kind() == io::ErrorKind::NotFound,
        }
    }

    /// Whether the path was deleted or moved away (a file put in its place is not noticed here
    /// without an inode number: [`JsonlSink::reopen`] is for that).
    #[cfg(not(unix))]
    fn moved(&self, _open: &std::fs::Metadata) -> bool {
        matches!(std::fs::metadata(&self.path), Err(error) if error.kind() == io::ErrorKind::NotFound)
    }

    fn sync(&self, open: &Open) -> Result<(), SinkError> {
        // A FIFO or a device has nothing to sync (and `fdatasync` would fail on it).
        if open.file.metadata().is_ok_and(|meta| !meta.is_file()) {
            return Ok(());
        }
        self.disk.sync(&open.file).map_err(|error| {
            SinkError::transient(format!(
                "could not sync {} to disk: lines written since the last flush may be lost",
                self.path.display()
            ))
            .with_source(error)
        })
    }
}

/// Whether the file's byte at `len - 1` is a newline. When it cannot be read (a file opened
/// for writing only), the tail is taken to be whole.
fn ends_in_newline(open: &Open, len: u64) -> bool {
    let mut last = [0u8; 1];
    let read = last_byte(&open.file, len.saturating_sub(1), &mut last);
    read.is_err() || last[0] == b'\n'
}

#[cfg(unix)]
fn last_byte(file: &File, at: u64, byte: &mut [u8; 1]) -> io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, byte, at)
}

#[cfg(not(unix))]
fn last_byte(mut file: &File, at: u64, byte: &mut [u8; 1]) -> io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    file.seek(SeekFrom::Start(at))?;
    file.read_exact(byte)
}

#[cfg(test)]
mod tests {
    //! The faults a real disk has only on bad days, brought by a [`Disk`] that fills up, fails
    //! to cut or to sync, or holds a write back until the test lets it go. The faults a file
    //! system shows on demand (`/dev/full`, rotation, a FIFO) are in `tests/jsonl.rs`.

    use std::sync::atomic::AtomicUsize;
    use std::sync::Condvar;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::{DispatcherConfig, Endpoint, LlmObservabilityLayer, SinkConfig};

    const DEADLINE: Duration = Duration::from_secs(20);

    struct Faults {
        /// Bytes that still fit on the disk; `None`: no limit.
        room: Mutex<Option<usize>>,
        cut_fails: AtomicBool,
        sync_fails: AtomicBool,
        /// While closed, a write waits (up to [`DEADLINE`]) before it starts.
        open: Mutex<bool>,
        opened: Condvar,
        writes_started: AtomicUsize,
        writes_done: AtomicUsize,
    }

    impl Faults {
        fn new() -> Arc<Self> {
            Arc::new(Faults {
                room: Mutex::new(None),
                cut_fails: AtomicBool::new(false),
                sync_fails: AtomicBool::new(false),
                open: Mutex::new(true),
                opened: Condvar::new(),
                writes_started: AtomicUsize::new(0),
                writes_done: AtomicUsize::new(0),
            })
        }

        fn room(&self, bytes: Option<usize>) {
            *self.room.lock().unwrap() = bytes;
        }

        fn gate(&self, open: bool) {
            *self.open.lock().unwrap() = open;
            self.opened.notify_all();
        }

        fn wait_for_gate(&self) {
            let until = Instant::now() + DEADLINE;
            let mut open = self.open.lock().unwrap();
            while !*open {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return;
                }
                open = self.opened.wait_timeout(open, left).unwrap().0;
            }
        }
    }

    struct FaultyDisk(Arc<Faults>);

    impl Disk for FaultyDisk {
        fn append(&self, file: &mut File, bytes: &[u8]) -> io::Result<()> {
            self.0.writes_started.fetch_add(1, Ordering::SeqCst);
            self.0.wait_for_gate();
            let mut room = self.0.room.lock().unwrap();
            let written = match *room {
                // What fits is written, then the disk is full: a torn batch.
                Some(left) if left < bytes.len() => {
                    *room = Some(0);
                    file.write_all(&bytes[..left]).and(Err(io::Error::new(
                        io::ErrorKind::StorageFull,
                        "no space left on device",
                    )))
                }
                Some(left) => {
                    *room = Some(left - bytes.len());
                    file.write_all(bytes)
                }
                None => file.write_all(bytes),
            };
            self.0.writes_done.fetch_add(1, Ordering::SeqCst);
            written
        }

        fn cut(&self, file: &File, len: u64) -> io::Result<()> {
            if self.0.cut_fails.load(Ordering::SeqCst) {
                return Err(io::Error::other("truncate refused"));
            }
            file.set_len(len)
        }

        fn sync(&self, file: &File) -> io::Result<()> {
            if self.0.sync_fails.load(Ordering::SeqCst) {
                return Err(io::Error::other("input/output error"));
            }
            file.sync_data()
        }
    }

    /// A fresh directory, removed when the test ends.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            let dir =
                std::env::temp_dir().join(format!("llm-obs-jsonl-unit-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn file(&self) -> PathBuf {
            self.0.join("calls.jsonl")
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn batch(calls: usize) -> Vec<Arc<LlmCall>> {
        (0..calls)
            .map(|_| Arc::new(LlmCall::new(Endpoint::ChatCompletions)))
            .collect()
    }

    fn ids(batches: &[&[Arc<LlmCall>]]) -> Vec<String> {
        batches
            .iter()
            .flat_map(|batch| batch.iter().map(|call| call.id.clone()))
            .collect()
    }

    /// The ids of the calls in the file, in order; panics on a line that is not a call.
    fn ids_in(path: &Path) -> Vec<String> {
        let text = std::fs::read_to_string(path).unwrap();
        assert!(text.is_empty() || text.ends_with('\n'), "torn: {text:?}");
        text.lines()
            .map(|line| serde_json::from_str::<LlmCall>(line).unwrap().id)
            .collect()
    }

    fn len(path: &Path) -> u64 {
        std::fs::metadata(path).unwrap().len()
    }

    #[tokio::test]
    async fn a_batch_that_does_not_fit_is_cut_off_and_written_whole_later() {
        let dir = TempDir::new();
        let faults = Faults::new();
        let sink = JsonlSink::on_disk(&dir.file(), Box::new(FaultyDisk(faults.clone()))).unwrap();
        let first = batch(2);
        sink.export(&first).await.unwrap();
        let before = len(&dir.file());

        faults.room(Some(100));
        let second = batch(3);
        let error = sink.export(&second).await.unwrap_err();
        assert!(error.is_retryable());
        let chain = error.chain();
        assert!(
            chain.contains(&format!("cut the file back to its {before} bytes"))
                && chain.contains("no space left on device"),
            "{chain}"
        );
        assert_eq!(len(&dir.file()), before, "the torn part is gone");
        assert_eq!(ids_in(&dir.file()), ids(&[&first]));

        // The disk has room again: the retry writes the batch whole, right after the first.
        faults.room(None);
        sink.export(&second).await.unwrap();
        assert_eq!(ids_in(&dir.file()), ids(&[&first, &second]));
    }

    #[tokio::test]
    async fn when_the_cut_fails_too_the_next_batch_starts_on_a_line_of_its_own() {
        let dir = TempDir::new();
        let faults = Faults::new();
        let sink = JsonlSink::on_disk(&dir.file(), Box::new(FaultyDisk(faults.clone()))).unwrap();
        let first = batch(2);
        sink.export(&first).await.unwrap();
        let before = len(&dir.file());

        faults.room(Some(100));
        faults.cut_fails.store(true, Ordering::SeqCst);
        let error = sink.export(&batch(3)).await.unwrap_err();
        let chain = error.chain();
        assert!(
            chain.contains("nor cut the part written back off (truncate refused)")
                && chain.contains("the next batch starts on a new line"),
            "{chain}"
        );
        assert_eq!(len(&dir.file()), before + 100, "a torn line is left");

        faults.room(None);
        faults.cut_fails.store(false, Ordering::SeqCst);
        let third = batch(2);
        sink.export(&third).await.unwrap();
        let text = std::fs::read_to_string(dir.file()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2 + 1 + 2, "{text}");
        assert_eq!(lines[2].len(), 100, "the fragment, alone on its line");
        assert!(serde_json::from_str::<LlmCall>(lines[2]).is_err());
        let whole: Vec<String> = [&lines[..2], &lines[3..]]
            .concat()
            .iter()
            .map(|line| serde_json::from_str::<LlmCall>(line).unwrap().id)
            .collect();
        assert_eq!(whole, ids(&[&first, &third]));
        assert!(text.ends_with('\n'));
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn after_a_write_to_a_fifo_failed_partway_the_next_batch_starts_on_a_new_line() {
        use std::io::Read;
        let dir = TempDir::new();
        let fifo = dir.0.join("calls.fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        // Opened for reading and writing, a FIFO never blocks the open; the test is its reader.
        let reader = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&fifo)
            .unwrap();
        let faults = Faults::new();
        let sink = JsonlSink::on_disk(&fifo, Box::new(FaultyDisk(faults.clone()))).unwrap();
        faults.room(Some(100));
        let error = sink.export(&batch(2)).await.unwrap_err();
        assert!(error
            .chain()
            .contains("the next batch starts on a new line"));
        faults.room(None);
        let second = batch(2);
        sink.export(&second).await.unwrap();
        sink.flush().await.unwrap();

        let mut encoded = Vec::new();
        crate::sink::ndjson::encode(&second, &mut encoded).unwrap();
        // Read on a thread of its own, so that a missing byte fails the test at the deadline.
        let expected = 100 + 1 + encoded.len();
        let (done, read) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = reader;
            let mut got = vec![0u8; expected];
            let _ = done.send(reader.read_exact(&mut got).map(|()| got));
        });
        let got = read.recv_timeout(DEADLINE).unwrap().unwrap();
        assert_eq!(got[100], b'\n', "the torn line ends before the next batch");
        assert_eq!(&got[101..], &encoded[..]);
    }

    #[tokio::test]
    async fn a_failed_sync_is_a_flush_error() {
        let dir = TempDir::new();
        let faults = Faults::new();
        let sink = JsonlSink::on_disk(&dir.file(), Box::new(FaultyDisk(faults.clone()))).unwrap();
        sink.export(&batch(1)).await.unwrap();
        sink.flush().await.unwrap();
        faults.sync_fails.store(true, Ordering::SeqCst);
        let error = sink.flush().await.unwrap_err();
        let chain = error.chain();
        assert!(
            chain.contains("may be lost") && chain.contains("input/output error"),
            "{chain}"
        );
        assert!(sink.shutdown().await.is_err(), "shutdown flushes too");
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

    /// A layer whose one sink is a [`JsonlSink`] on the faulty disk.
    fn slow_layer(
        path: &Path,
        faults: &Arc<Faults>,
        export_timeout: Duration,
        retries: u32,
    ) -> (LlmObservabilityLayer, Arc<AtomicUsize>) {
        let exports = Arc::new(AtomicUsize::new(0));
        let sink = Attempts {
            inner: JsonlSink::on_disk(path, Box::new(FaultyDisk(faults.clone()))).unwrap(),
            exports: exports.clone(),
        };
        let config = DispatcherConfig::builder()
            // One batch of 4, sent when full.
            .batch_size(4)
            .batch_interval(Duration::from_secs(3600))
            .export_timeout(export_timeout)
            .max_retries(retries)
            .initial_backoff(Duration::from_millis(1))
            .max_backoff(Duration::from_millis(2))
            .build();
        let layer = LlmObservabilityLayer::builder()
            .sink_with(sink, SinkConfig::new().dispatch(config))
            .build()
            .unwrap();
        (layer, exports)
    }

    /// Dispatches `calls` calls; on a current-thread runtime they are all queued before the
    /// worker runs, so they form one batch.
    fn dispatch(layer: &LlmObservabilityLayer, calls: usize) -> Vec<String> {
        let calls = batch(calls);
        for call in &calls {
            layer.dispatcher().dispatch(call.clone());
        }
        ids(&[&calls])
    }

    async fn until(what: &str, done: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while !done() {
            assert!(tokio::time::Instant::now() < deadline, "waited for: {what}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    #[tokio::test]
    async fn a_retry_waits_for_the_write_still_running_and_takes_its_outcome() {
        let dir = TempDir::new();
        let faults = Faults::new();
        faults.gate(false);
        let (layer, exports) = slow_layer(&dir.file(), &faults, Duration::from_millis(20), 1000);
        let sent = dispatch(&layer, 4);
        until("the write", || {
            faults.writes_started.load(Ordering::SeqCst) == 1
        })
        .await;
        // Two retries begin while the write is held: the attempts before them timed out.
        let attempts = exports.load(Ordering::SeqCst);
        until("retries", || exports.load(Ordering::SeqCst) >= attempts + 2).await;
        faults.gate(true);
        layer.dispatcher().flush(DEADLINE).await.unwrap();

        assert_eq!(ids_in(&dir.file()), sent, "each call once");
        assert_eq!(faults.writes_started.load(Ordering::SeqCst), 1, "one write");
        let stats = layer.dispatcher().stats();
        assert_eq!((stats.sinks[0].delivered, stats.sinks[0].failed), (4, 0));
    }

    #[tokio::test]
    async fn a_batch_given_up_while_its_write_ran_on_is_cut_back_out() {
        let dir = TempDir::new();
        let faults = Faults::new();
        faults.gate(false);
        // Timeouts long enough for an unheld write and sync on a busy machine.
        let (layer, _exports) = slow_layer(&dir.file(), &faults, Duration::from_millis(250), 2);
        let given_up = dispatch(&layer, 4);
        let stats = || layer.dispatcher().stats().sinks[0].clone();
        until("the batch given up", || stats().failed == 4).await;

        // The write the dispatcher stopped waiting for gets through after all...
        faults.gate(true);
        until("the late write", || {
            faults.writes_done.load(Ordering::SeqCst) == 1
        })
        .await;
        assert_eq!(ids_in(&dir.file()), given_up);
        // ... and the sink's next task (here a flush) cuts it back out: the file agrees with the
        // counters.
        layer.dispatcher().flush(DEADLINE).await.unwrap();
        until("the cut", || ids_in(&dir.file()).is_empty()).await;
        assert_eq!((stats().delivered, stats().failed), (0, 4));

        let sent = dispatch(&layer, 4);
        layer.dispatcher().flush(DEADLINE).await.unwrap();
        assert_eq!(ids_in(&dir.file()), sent);
        assert_eq!((stats().delivered, stats().failed), (4, 4));
        assert_eq!(faults.writes_started.load(Ordering::SeqCst), 2);
    }
}
