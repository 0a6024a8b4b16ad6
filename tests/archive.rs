//! `ArchiveSink` against `moto_server` (an S3 API on 127.0.0.1, `scripts/backends/moto.sh`) and
//! against local disk: objects read back (through the S3 API, and from the files) hold exactly
//! the calls, under `prefix/yyyy/mm/dd/hh/<uuid>.jsonl[.gz]`; gzip; rollover by size and by age.

mod support;

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_util::TryStreamExt;
use llm_observability::{
    ArchiveSink, ArchiveSinkBuilder, LlmCall, LlmObservabilityLayer, SinkConfig,
};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use support::backend::Backend;
use support::storage::{quick_dispatch, sample_calls};

fn moto() -> &'static Backend {
    static SERVER: OnceLock<Backend> = OnceLock::new();
    SERVER.get_or_init(|| Backend::start("moto", Duration::from_secs(180)))
}

/// A fresh bucket on moto, made through the S3 API, and a store for it.
async fn bucket() -> Arc<dyn ObjectStore> {
    let backend = moto();
    let name = format!("archive-{}", uuid::Uuid::new_v4().simple());
    let response = reqwest::Client::new()
        .put(format!("{}/{name}", backend.base_url()))
        .send()
        .await
        .expect("moto answers");
    assert!(
        response.status().is_success(),
        "create bucket: {}",
        response.status()
    );
    Arc::new(
        object_store::aws::AmazonS3Builder::new()
            .with_endpoint(backend.base_url())
            .with_bucket_name(name)
            .with_region("us-east-1")
            .with_access_key_id("testing")
            .with_secret_access_key("testing")
            .with_allow_http(true)
            .build()
            .unwrap(),
    )
}

/// Runs `calls` through a layer whose only sink is `sink`, flushes, checks the accounting.
async fn archive(sink: ArchiveSinkBuilder, calls: &[Arc<LlmCall>], batch_size: usize) {
    let layer = LlmObservabilityLayer::builder()
        .sink_with(
            sink.build(),
            SinkConfig::new().dispatch(quick_dispatch(batch_size)),
        )
        .build()
        .unwrap();
    for call in calls {
        layer.dispatcher().dispatch(call.clone());
    }
    let stats = support::assert_accounted(&layer, calls.len() as u64).await;
    assert_eq!(stats.sinks[0].delivered, calls.len() as u64, "{stats:?}");
}

/// Every object under `prefix`: its key and the calls in it, in line order.
async fn objects(store: &dyn ObjectStore, prefix: &str) -> BTreeMap<String, Vec<LlmCall>> {
    let metas: Vec<_> = store
        .list(Some(&Path::from(prefix)))
        .try_collect()
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    for meta in metas {
        let bytes = store
            .get(&meta.location)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let key = meta.location.to_string();
        out.insert(key.clone(), decode(&key, &bytes));
    }
    out
}

fn decode(key: &str, bytes: &[u8]) -> Vec<LlmCall> {
    let text = if key.ends_with(".jsonl.gz") {
        assert_eq!(&bytes[..2], &[0x1f, 0x8b], "{key} is gzip");
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut plain)
            .unwrap();
        plain
    } else {
        assert!(key.ends_with(".jsonl"), "{key}");
        bytes.to_vec()
    };
    assert_eq!(text.last(), Some(&b'\n'), "{key} ends in a newline");
    text.split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| serde_json::from_slice(line).expect("one call per line"))
        .collect()
}

/// Checks each key's shape (`prefix/yyyy/mm/dd/hh/<uuid v7>.ext`, the folder being the UTC hour
/// of each of its calls) and returns the calls of all objects, by id.
fn check_keys(
    objects: &BTreeMap<String, Vec<LlmCall>>,
    prefix: &str,
    extension: &str,
) -> BTreeMap<String, LlmCall> {
    let mut all = BTreeMap::new();
    for (key, calls) in objects {
        let rest = key
            .strip_prefix(&format!("{prefix}/"))
            .unwrap_or_else(|| panic!("{key} is under {prefix}/"));
        let parts: Vec<&str> = rest.split('/').collect();
        assert_eq!(parts.len(), 5, "{key}");
        let name = parts[4]
            .strip_suffix(extension)
            .unwrap_or_else(|| panic!("{key} ends in {extension}"));
        let id = uuid::Uuid::parse_str(name).expect("a UUID");
        assert_eq!(id.get_version_num(), 7, "{key}");
        assert!(!calls.is_empty(), "{key} holds calls");
        for call in calls {
            let t = call.timing.start_time;
            let folder = format!(
                "{:04}/{:02}/{:02}/{:02}",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour()
            );
            assert_eq!(parts[..4].join("/"), folder, "{key}: call {}", call.id);
            assert!(
                all.insert(call.id.clone(), call.clone()).is_none(),
                "{} twice",
                call.id
            );
        }
    }
    all
}

fn by_id(calls: &[Arc<LlmCall>]) -> BTreeMap<String, LlmCall> {
    calls
        .iter()
        .map(|c| (c.id.clone(), LlmCall::clone(c)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_objects_hold_the_calls_one_object_per_hour() {
    let store = bucket().await;
    // 70 calls a minute apart: 05:06 to 06:16, two hours.
    let calls = sample_calls(70);
    let sink = ArchiveSink::builder(store.clone(), "llm/calls").max_age(Duration::from_secs(3600));
    archive(sink, &calls, 10).await;

    let objects = objects(store.as_ref(), "llm/calls").await;
    assert_eq!(objects.len(), 2, "{:?}", objects.keys().collect::<Vec<_>>());
    let hours: Vec<&str> = objects.keys().map(|k| &k[10..23]).collect();
    assert_eq!(hours, ["2026/03/04/05", "2026/03/04/06"]);
    assert_eq!(check_keys(&objects, "llm/calls", ".jsonl"), by_id(&calls));
    // Within an object, the calls keep their order.
    let first: Vec<String> = objects
        .values()
        .next()
        .unwrap()
        .iter()
        .map(|c| c.id.clone())
        .collect();
    let want: Vec<String> = calls[..first.len()].iter().map(|c| c.id.clone()).collect();
    assert_eq!(first, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_gzip_objects_decode_to_the_calls() {
    let store = bucket().await;
    let calls = sample_calls(12);
    let sink = ArchiveSink::builder(store.clone(), "gz").gzip(true);
    archive(sink, &calls, 5).await;
    let objects = objects(store.as_ref(), "gz").await;
    assert_eq!(objects.len(), 1);
    assert_eq!(check_keys(&objects, "gz", ".jsonl.gz"), by_id(&calls));
}

/// The NDJSON line of each call, as the sink writes it.
fn line_lengths(calls: &[Arc<LlmCall>]) -> Vec<usize> {
    calls
        .iter()
        .map(|call| serde_json::to_vec(call.as_ref()).unwrap().len() + 1)
        .collect()
}

struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> Self {
        TempDir(std::env::temp_dir().join(format!("llm-obs-archive-{}", uuid::Uuid::new_v4())))
    }
    fn url(&self) -> String {
        format!("file://{}", self.0.display())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Every file under `dir`, by path relative to it (the object key), decoded.
fn files(dir: &std::path::Path) -> BTreeMap<String, Vec<LlmCall>> {
    let mut out = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        for entry in std::fs::read_dir(&path).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let key = path.strip_prefix(dir).unwrap().display().to_string();
                let bytes = std::fs::read(&path).unwrap();
                out.insert(key.clone(), decode(&key, &bytes));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_disk_rolls_over_by_size() {
    let dir = TempDir::new();
    let calls = sample_calls(20);
    let lengths = line_lengths(&calls);
    let max_bytes = lengths[..3].iter().sum::<usize>();
    // Where the sink must cut: after the line that brings an object to max_bytes.
    let mut expected: Vec<Vec<String>> = vec![vec![]];
    let mut size = 0;
    for (call, length) in calls.iter().zip(&lengths) {
        expected.last_mut().unwrap().push(call.id.clone());
        size += length;
        if size >= max_bytes {
            expected.push(vec![]);
            size = 0;
        }
    }
    expected.retain(|ids| !ids.is_empty());
    assert!(expected.len() >= 5, "{}", expected.len());

    let sink = ArchiveSink::builder_from_url(&format!("{}/archive", dir.url()))
        .unwrap()
        .max_bytes(max_bytes);
    archive(sink, &calls, 4).await;

    let files = files(&dir.0.join("archive"));
    let mut got: Vec<Vec<String>> = files
        .values()
        .map(|calls| calls.iter().map(|c| c.id.clone()).collect())
        .collect();
    // Object names sort by creation; sort by content to compare whatever the ties.
    got.sort();
    expected.sort();
    assert_eq!(got, expected);
    let mut all = BTreeMap::new();
    for (key, calls) in &files {
        assert!(key.starts_with("2026/03/04/05/"), "{key}");
        for call in calls {
            all.insert(call.id.clone(), call.clone());
        }
    }
    assert_eq!(all, by_id(&calls));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_buffer_is_written_without_a_flush() {
    let dir = TempDir::new();
    let calls = sample_calls(3);
    let sink = ArchiveSink::builder_from_url(&dir.url())
        .unwrap()
        .max_age(Duration::from_millis(200))
        .build();
    let layer = LlmObservabilityLayer::builder()
        .sink_with(sink, SinkConfig::new().dispatch(quick_dispatch(3)))
        .build()
        .unwrap();
    for call in &calls {
        layer.dispatcher().dispatch(call.clone());
    }
    // No flush: the age timer writes the object.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let files = loop {
        let files = if dir.0.exists() {
            files(&dir.0)
        } else {
            BTreeMap::new()
        };
        if !files.is_empty() {
            break files;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no object within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(files.len(), 1);
    let written: Vec<LlmCall> = files.into_values().next().unwrap();
    let want: Vec<LlmCall> = calls.iter().map(|c| LlmCall::clone(c)).collect();
    assert_eq!(written, want);
    support::assert_accounted(&layer, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_store_fails_retryably_and_keeps_the_buffer() {
    use llm_observability::Sink;
    let port = support::backend::free_port();
    let store: Arc<dyn ObjectStore> = Arc::new(
        object_store::aws::AmazonS3Builder::new()
            .with_endpoint(format!("http://127.0.0.1:{port}"))
            .with_bucket_name("nowhere")
            .with_region("us-east-1")
            .with_access_key_id("testing")
            .with_secret_access_key("testing")
            .with_allow_http(true)
            .with_retry(object_store::RetryConfig {
                max_retries: 0,
                ..Default::default()
            })
            .build()
            .unwrap(),
    );
    let sink = ArchiveSink::builder(store, "p").build();
    let calls = sample_calls(4);
    sink.export(&calls[..2]).await.expect("buffered");
    let error = sink.flush().await.expect_err("nothing listens");
    assert!(error.is_retryable(), "{}", error.chain());
    assert!(error.message().contains("2 calls"), "{}", error.chain());
    // The next batch is refused (retryably) while the object is not written.
    let error = sink.export(&calls[2..]).await.expect_err("still down");
    assert!(error.is_retryable());
}
