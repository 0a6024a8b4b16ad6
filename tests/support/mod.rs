//! Shared test support: recorded fixtures, in-process upstreams, bodies fed frame by frame,
//! and a span recorder.
#![allow(dead_code)]

pub mod backend;
pub mod calls;
pub mod eventstream;
#[cfg(feature = "otlp")]
pub mod otlp_receiver;
pub mod provider_expect;
#[cfg(feature = "proxy")]
pub mod proxy;
pub mod reqwest_fixture;
pub mod sinks;
pub mod spans;
pub mod storage;

use std::convert::Infallible;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use llm_observability::{LlmCall, LlmObservabilityLayer, MemorySink, RequestBody, ResponseBody};
use serde_json::Value;
use tokio::sync::mpsc;
use tower::{Service, ServiceBuilder, ServiceExt};

/// One recorded request/response pair from `shared/fixtures/openai-recorded`.
#[derive(Debug, Clone)]
pub struct Interaction {
    pub file: String,
    pub index: usize,
    pub method: String,
    pub uri: String,
    pub request_body: String,
    pub status: u16,
    pub content_type: String,
    pub response_body: String,
    /// `Content-Encoding` to serve the response with (the recordings hold decoded bodies; a
    /// test that compresses the frames sets this).
    pub serve_encoding: Option<String>,
}

impl Interaction {
    pub fn name(&self) -> String {
        format!("{}#{}", self.file, self.index)
    }

    pub fn request_json(&self) -> Option<Value> {
        serde_json::from_str(&self.request_body).ok()
    }
}

/// The recorded-traffic folder: `$LLM_OBS_FIXTURES`, or `../shared/fixtures/openai-recorded`
/// beside the repository.
pub fn fixtures_dir() -> PathBuf {
    match std::env::var_os("LLM_OBS_FIXTURES") {
        Some(dir) => PathBuf::from(dir),
        None => {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/openai-recorded")
        }
    }
}

/// Every interaction of every decoded cassette, in a stable order; `None` (after saying so
/// loudly) when the folder is absent.
pub fn load_interactions() -> Option<Vec<Interaction>> {
    let root = fixtures_dir();
    if !root.is_dir() {
        eprintln!(
            "\n!!! SKIPPED: recorded OpenAI fixtures not found at {} — set LLM_OBS_FIXTURES or \
             check out shared/ beside the repository. Conformance against real traffic was NOT run.\n",
            root.display()
        );
        return None;
    }
    let mut files = Vec::new();
    collect_json(&root, &mut files);
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).expect("fixture readable");
        let doc: Value = serde_json::from_str(&text).expect("fixture is JSON");
        let file = path
            .strip_prefix(&root)
            .unwrap_or(&path)
            .display()
            .to_string();
        for interaction in doc["interactions"].as_array().expect("interactions") {
            let request = &interaction["request"];
            let response = &interaction["response"];
            out.push(Interaction {
                file: file.clone(),
                index: interaction["index"].as_u64().expect("index") as usize,
                method: request["method"].as_str().expect("method").to_owned(),
                uri: request["uri"].as_str().expect("uri").to_owned(),
                request_body: request["body"].as_str().unwrap_or("").to_owned(),
                status: response["status"].as_u64().expect("status") as u16,
                content_type: response["content_type"].as_str().unwrap_or("").to_owned(),
                response_body: response["body"].as_str().unwrap_or("").to_owned(),
                serve_encoding: None,
            });
        }
    }
    assert!(!out.is_empty(), "no interactions under {}", root.display());
    Some(out)
}

fn collect_json(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            collect_json(&path, out);
        } else if path.extension().is_some_and(|e| e == "json")
            && path.components().any(|c| c.as_os_str() == "_decoded")
        {
            out.push(path);
        }
    }
}

/// A response body fed from a channel: each message is one frame; the body ends when the
/// sender is dropped, and stays pending while the sender is alive and silent.
pub struct ChannelBody {
    rx: mpsc::UnboundedReceiver<Result<Bytes, std::io::Error>>,
}

impl ChannelBody {
    pub fn new() -> (mpsc::UnboundedSender<Result<Bytes, std::io::Error>>, Self) {
        let (tx, rx) = mpsc::unbounded_channel();
        (tx, ChannelBody { rx })
    }

    /// A body that yields exactly these frames and ends.
    pub fn from_chunks(chunks: Vec<Bytes>) -> Self {
        let (tx, body) = Self::new();
        for chunk in chunks {
            tx.send(Ok(chunk)).expect("receiver alive");
        }
        body
    }
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.rx
            .poll_recv(cx)
            .map(|next| next.map(|result| result.map(Frame::data)))
    }
}

/// The upstream's end of a [`ChannelBody`]: each message is one frame.
pub type Frames = mpsc::UnboundedSender<Result<Bytes, std::io::Error>>;

/// Starts `request` through `layer` against an upstream that reads the whole request and
/// answers `headers` with a body the test feeds by hand: returns the body the client reads
/// and the upstream's frame sender (for streams cut, failed or dropped half-way).
pub async fn open_stream(
    layer: &LlmObservabilityLayer,
    request: Request<Full<Bytes>>,
    headers: &[(&str, &str)],
) -> (ResponseBody<ChannelBody>, Frames) {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
    let (feeds_tx, mut feeds_rx) = mpsc::unbounded_channel();
    let upstream = tower::service_fn(move |request: Request<RequestBody<Full<Bytes>>>| {
        let feeds_tx = feeds_tx.clone();
        let headers = headers.clone();
        async move {
            let _ = request.into_body().collect().await;
            let (frames, body) = ChannelBody::new();
            let _ = feeds_tx.send(frames);
            let mut response = Response::builder();
            for (name, value) in &headers {
                response = response.header(name.as_str(), value.as_str());
            }
            Ok::<_, Infallible>(response.body(body).expect("valid response"))
        }
    });
    let mut service = ServiceBuilder::new().layer(layer.clone()).service(upstream);
    let response = service
        .ready()
        .await
        .expect("ready")
        .call(request)
        .await
        .expect("infallible upstream");
    let frames = feeds_rx.recv().await.expect("upstream called");
    (response.into_body(), frames)
}

/// Has the upstream send each of `pieces` and the client read it: one frame each, the same
/// bytes.
pub async fn relay<B>(body: &mut B, frames: &Frames, pieces: &[Bytes])
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Debug,
{
    for piece in pieces {
        frames.send(Ok(piece.clone())).expect("the body is read");
        let frame = body.frame().await.expect("a frame").expect("no error");
        assert_eq!(
            frame.into_data().ok().as_ref(),
            Some(piece),
            "bytes changed"
        );
    }
}

/// Splits `body` into frames at the given sizes (cycled); sizes of 0 are read as 1.
pub fn split(body: &[u8], sizes: &[usize]) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while start < body.len() {
        let size = sizes
            .get(i % sizes.len().max(1))
            .copied()
            .unwrap_or(body.len());
        let end = (start + size.max(1)).min(body.len());
        out.push(Bytes::copy_from_slice(&body[start..end]));
        start = end;
        i += 1;
    }
    out
}

/// A layer whose only sink is a fresh [`MemorySink`].
pub fn memory_layer() -> (LlmObservabilityLayer, MemorySink) {
    let memory = MemorySink::new();
    let layer = LlmObservabilityLayer::builder()
        .sink(memory.clone())
        .build()
        .expect("inside a runtime");
    (layer, memory)
}

/// Quick batches and two quick retries, so a sink test never waits on the defaults.
pub fn quick_dispatch() -> llm_observability::DispatcherConfig {
    llm_observability::DispatcherConfig::builder()
        .batch_interval(Duration::from_millis(5))
        .max_retries(2)
        .initial_backoff(Duration::from_millis(1))
        .max_backoff(Duration::from_millis(20))
        .build()
}

/// A layer with `sink` on [`quick_dispatch`] and `memory` beside it.
pub fn quick_layer(
    sink: impl llm_observability::Sink,
    memory: &MemorySink,
) -> LlmObservabilityLayer {
    LlmObservabilityLayer::builder()
        .sink_with(
            sink,
            llm_observability::SinkConfig::new().dispatch(quick_dispatch()),
        )
        .sink(memory.clone())
        .build()
        .expect("inside a runtime")
}

/// Flushes the layer's dispatcher and returns what the memory sink holds.
pub async fn flushed(layer: &LlmObservabilityLayer, memory: &MemorySink) -> Vec<Arc<LlmCall>> {
    layer
        .dispatcher()
        .flush(Duration::from_secs(10))
        .await
        .expect("flush in time");
    memory.calls()
}

/// Flushes, then checks the accounting identity
/// `observed == delivered + dropped + failed + filtered` for
/// every sink and that `observed` calls were seen; returns the counters.
pub async fn assert_accounted(
    layer: &LlmObservabilityLayer,
    observed: u64,
) -> llm_observability::DispatcherStats {
    layer
        .dispatcher()
        .flush(Duration::from_secs(10))
        .await
        .expect("flush in time");
    let stats = layer.dispatcher().stats();
    assert_eq!(stats.observed, observed, "{stats:?}");
    for sink in &stats.sinks {
        assert_eq!(sink.accounted(), stats.observed, "{sink:?}");
    }
    stats
}

/// What an upstream saw and what the client got back.
pub struct Exchange {
    pub status: http::StatusCode,
    pub upstream_request_body: Bytes,
    pub response_body: Bytes,
}

/// Replays `interaction` through the tower layer: an in-process upstream reads the request
/// Every recorded interaction with a JSON request, replayed whole through a fresh memory layer,
/// with that request and the call it became (interactions that are not LLM calls are left
/// out); `None` without the recorded fixtures.
pub async fn recorded_calls() -> Option<Vec<(Interaction, Value, Arc<LlmCall>)>> {
    let mut recorded = Vec::new();
    for interaction in load_interactions()? {
        let Some(request) = interaction.request_json() else {
            continue;
        };
        let (layer, memory) = memory_layer();
        let frames = vec![Bytes::from(interaction.response_body.clone())];
        replay_tower(&layer, &interaction, frames).await;
        if let Some(call) = flushed(&layer, &memory).await.first() {
            recorded.push((interaction, request, call.clone()));
        }
        layer
            .dispatcher()
            .shutdown(Duration::from_secs(5))
            .await
            .ok();
    }
    Some(recorded)
}
/// body and answers with the recorded status, content type and body, split into `frames`.
pub async fn replay_tower(
    layer: &LlmObservabilityLayer,
    interaction: &Interaction,
    frames: Vec<Bytes>,
) -> Exchange {
    let mut headers = Vec::new();
    if !interaction.content_type.is_empty() {
        headers.push(("content-type".to_owned(), interaction.content_type.clone()));
    }
    if let Some(encoding) = &interaction.serve_encoding {
        headers.push(("content-encoding".to_owned(), encoding.clone()));
    }
    replay_tower_bytes(layer, interaction, &headers, frames).await
}

/// Serves `interaction`'s recorded response on 127.0.0.1 (any path) and replays its request
/// through a reqwest client with the layer's middleware.
pub async fn replay_reqwest(layer: &LlmObservabilityLayer, interaction: &Interaction) -> Exchange {
    let mut headers = Vec::new();
    if !interaction.content_type.is_empty() {
        headers.push(("content-type".to_owned(), interaction.content_type.clone()));
    }
    let body = Bytes::from(interaction.response_body.clone());
    replay_reqwest_bytes(layer, interaction, &headers, body).await
}

/// The recorded URI's path and query, aimed at `addr`.
pub fn local_url(recorded: &str, addr: std::net::SocketAddr) -> String {
    let uri: http::Uri = recorded.parse().expect("recorded uri");
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    format!("http://{addr}{path}")
}

/// Serves `app` on 127.0.0.1 (any free port) for the rest of the test.
pub async fn serve(app: axum::Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("bound");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// Sends `request` through `layer` to an in-process upstream that reads the whole request (as
/// a real one does, so the layer sees all of it) and answers `reply` as JSON; reads the
/// response to its end and returns it.
pub async fn through_json_upstream(
    layer: &LlmObservabilityLayer,
    request: Request<Full<Bytes>>,
    reply: &'static str,
) -> Bytes {
    let service = ServiceBuilder::new().layer(layer.clone()).service_fn(
        move |request: Request<RequestBody<Full<Bytes>>>| async move {
            request.into_body().collect().await?;
            Ok::<_, Infallible>(
                Response::builder()
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from_static(reply.as_bytes())))
                    .expect("valid response"),
            )
        },
    );
    let response = service.oneshot(request).await.expect("served");
    response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
}

/// One recorded interaction from `shared/fixtures/provider-recorded` (Anthropic, Gemini,
/// Bedrock, Ollama), with what `INDEX.tsv` says about it.
#[derive(Debug, Clone)]
pub struct ProviderInteraction {
    /// The recorded exchange. `file` is the decoded cassette's path under the fixtures folder
    /// (`<owner>+<repo>/_decoded/<path>.json`); bodies are text as stored, so a `base64` body
    /// is its base64 text, not its bytes.
    pub interaction: Interaction,
    /// Host of the recorded request URI (e.g. `api.anthropic.com`), empty when it has none.
    pub host: String,
    /// `request.body_form` of the recording (`plain-text`, `base64`, ...).
    pub request_body_form: String,
    /// `response.body_form` of the recording (`plain-text`, `gzip(!!binary)->decoded`,
    /// `base64`, ...).
    pub response_body_form: String,
    /// The `INDEX.tsv` row of this interaction (column name to value), when it has one.
    pub index_row: Option<std::collections::BTreeMap<String, String>>,
}

impl ProviderInteraction {
    /// `INDEX.tsv`'s `family` (anthropic, gemini, bedrock-converse, ...), when indexed.
    pub fn family(&self) -> Option<&str> {
        self.index_row
            .as_ref()
            .and_then(|row| row.get("family"))
            .map(String::as_str)
    }

    /// `INDEX.tsv`'s `operation` (messages, complete, ...), when indexed.
    pub fn operation(&self) -> Option<&str> {
        self.index_row
            .as_ref()
            .and_then(|row| row.get("operation"))
            .map(String::as_str)
    }

    /// Whether either body is binary (kept as base64 text in the recording).
    pub fn is_binary(&self) -> bool {
        self.request_body_form == "base64" || self.response_body_form == "base64"
    }

    /// Whether the call went to Anthropic's API (by host, or by `INDEX.tsv` family).
    pub fn is_anthropic(&self) -> bool {
        self.host == "api.anthropic.com" || self.family() == Some("anthropic")
    }
}

/// The recorded non-OpenAI provider traffic: `$LLM_OBS_PROVIDER_FIXTURES`, or
/// `../shared/fixtures/provider-recorded` beside the repository.
pub fn provider_fixtures_dir() -> PathBuf {
    match std::env::var_os("LLM_OBS_PROVIDER_FIXTURES") {
        Some(dir) => PathBuf::from(dir),
        None => {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/provider-recorded")
        }
    }
}

/// `INDEX.tsv` of the provider fixtures, one map (column name to value) per row; `None` (after
/// saying so loudly, or failing under `CI`) when the folder is absent.
pub fn load_provider_index() -> Option<Vec<std::collections::BTreeMap<String, String>>> {
    let root = provider_fixtures_present()?;
    let text = std::fs::read_to_string(root.join("INDEX.tsv")).expect("INDEX.tsv readable");
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .expect("INDEX.tsv header")
        .split('\t')
        .collect();
    Some(
        lines
            .filter(|line| !line.is_empty())
            .map(|line| {
                header
                    .iter()
                    .zip(line.split('\t').chain(std::iter::repeat("")))
                    .map(|(k, v)| ((*k).to_owned(), v.to_owned()))
                    .collect()
            })
            .collect(),
    )
}

/// The provider fixtures folder when present; else `None` after a SKIPPED banner, or a panic
/// when `CI` is set (a CI run must not pass by skipping).
fn provider_fixtures_present() -> Option<PathBuf> {
    let root = provider_fixtures_dir();
    if root.is_dir() {
        return Some(root);
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "recorded provider fixtures not found at {} (CI is set, so this fails instead of \
             skipping) — set LLM_OBS_PROVIDER_FIXTURES or check out shared/ beside the repository",
            root.display()
        );
    }
    eprintln!(
        "\n!!! SKIPPED: recorded provider fixtures not found at {} — set LLM_OBS_PROVIDER_FIXTURES \
         or check out shared/ beside the repository. Conformance against real provider traffic \
         was NOT run.\n",
        root.display()
    );
    None
}

/// Every interaction of every decoded provider cassette, in a stable order, joined with its
/// `INDEX.tsv` row; `None` (after saying so loudly, or failing under `CI`) when the folder is
/// absent.
pub fn load_provider_interactions() -> Option<Vec<ProviderInteraction>> {
    let root = provider_fixtures_present()?;
    let rows: std::collections::HashMap<
        (String, usize),
        std::collections::BTreeMap<String, String>,
    > = load_provider_index()?
        .into_iter()
        .filter_map(|row| {
            let at = row.get("interaction")?.parse().ok()?;
            Some(((row.get("file")?.clone(), at), row))
        })
        .collect();
    let mut files = Vec::new();
    collect_json(&root, &mut files);
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).expect("fixture readable");
        let doc: Value = serde_json::from_str(&text).expect("fixture is JSON");
        let file = path
            .strip_prefix(&root)
            .unwrap_or(&path)
            .display()
            .to_string();
        // `<owner>+<repo>/_decoded/<path>.json` is the cassette `<owner>+<repo>/<path>`.
        let cassette = file
            .replacen("/_decoded/", "/", 1)
            .strip_suffix(".json")
            .unwrap_or(&file)
            .to_owned();
        for interaction in doc["interactions"].as_array().expect("interactions") {
            let request = &interaction["request"];
            let response = &interaction["response"];
            let index = interaction["index"].as_u64().expect("index") as usize;
            let uri = request["uri"].as_str().expect("uri").to_owned();
            let host = uri
                .parse::<http::Uri>()
                .ok()
                .and_then(|u| u.host().map(str::to_owned))
                .unwrap_or_default();
            out.push(ProviderInteraction {
                interaction: Interaction {
                    file: file.clone(),
                    index,
                    method: request["method"].as_str().expect("method").to_owned(),
                    uri,
                    request_body: request["body"].as_str().unwrap_or("").to_owned(),
                    status: response["status"].as_u64().expect("status") as u16,
                    content_type: response["content_type"].as_str().unwrap_or("").to_owned(),
                    response_body: response["body"].as_str().unwrap_or("").to_owned(),
                    serve_encoding: None,
                },
                host,
                request_body_form: request["body_form"].as_str().unwrap_or("").to_owned(),
                response_body_form: response["body_form"].as_str().unwrap_or("").to_owned(),
                index_row: rows.get(&(cassette.clone(), index)).cloned(),
            });
        }
    }
    assert!(!out.is_empty(), "no interactions under {}", root.display());
    Some(out)
}

/// `data:` payloads (with their `event:` names) of an SSE body, split the simple way: the
/// recordings use `\n` line ends (`\r\n` is read as `\n`).
pub fn sse_events(body: &str) -> Vec<(String, String)> {
    body.replace("\r\n", "\n")
        .split("\n\n")
        .filter_map(|block| {
            let mut event = String::new();
            let mut data = Vec::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push(v.strip_prefix(' ').unwrap_or(v).to_owned());
                }
            }
            (!data.is_empty()).then(|| (event, data.join("\n")))
        })
        .collect()
}

/// Standard base64 (padding and whitespace ignored) decoded: how the provider recordings keep
/// binary bodies (`body_form` `base64`, e.g. every AWS event stream). Panics on other bytes.
pub fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a') as u32 + 26,
            b'0'..=b'9' => (c - b'0') as u32 + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            other => panic!("not base64: {other:?}"),
        }
    };
    let digits: Vec<u8> = text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for group in digits.chunks(4) {
        let mut n = 0u32;
        for (i, c) in group.iter().enumerate() {
            n |= value(*c) << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..group.len()]);
    }
    out
}

impl ProviderInteraction {
    /// The response body's bytes as they went over the wire (a `base64` body decoded).
    pub fn response_bytes(&self) -> Vec<u8> {
        if self.response_body_form == "base64" {
            base64_decode(&self.interaction.response_body)
        } else {
            self.interaction.response_body.as_bytes().to_vec()
        }
    }

    /// The recorded response headers (names lower-case, each value once), read again from the
    /// decoded cassette.
    pub fn response_headers(&self) -> Vec<(String, String)> {
        let path = provider_fixtures_dir().join(&self.interaction.file);
        let Ok(text) = std::fs::read_to_string(path) else {
            return Vec::new();
        };
        let doc: Value = serde_json::from_str(&text).expect("fixture is JSON");
        let Some(interaction) = doc["interactions"]
            .as_array()
            .and_then(|all| all.iter().find(|i| i["index"] == self.interaction.index))
        else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if let Some(headers) = interaction["response"]["headers"].as_object() {
            for (name, values) in headers {
                for value in values.as_array().into_iter().flatten() {
                    if let Some(value) = value.as_str() {
                        out.push((name.clone(), value.to_owned()));
                    }
                }
            }
        }
        out
    }
}

/// Replays a request through the tower layer to an upstream that answers `status`, `headers`
/// and `frames` (bytes, not text: for binary bodies).
pub async fn replay_tower_bytes(
    layer: &LlmObservabilityLayer,
    interaction: &Interaction,
    headers: &[(String, String)],
    frames: Vec<Bytes>,
) -> Exchange {
    let status = interaction.status;
    let headers = headers.to_vec();
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel();
    let upstream = tower::service_fn(move |request: Request<RequestBody<Full<Bytes>>>| {
        let frames = frames.clone();
        let headers = headers.clone();
        let seen_tx = seen_tx.clone();
        async move {
            let body = request.into_body().collect().await.map(|c| c.to_bytes());
            let _ = seen_tx.send(body.unwrap_or_default());
            let mut response = Response::builder().status(status);
            for (name, value) in &headers {
                response = response.header(name.as_str(), value.as_str());
            }
            Ok::<_, Infallible>(
                response
                    .body(ChannelBody::from_chunks(frames))
                    .expect("valid response"),
            )
        }
    });
    let mut service = ServiceBuilder::new().layer(layer.clone()).service(upstream);
    let request = Request::builder()
        .method(interaction.method.as_str())
        .uri(&interaction.uri)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(interaction.request_body.clone())))
        .expect("valid request");
    let response = service
        .ready()
        .await
        .expect("ready")
        .call(request)
        .await
        .expect("infallible upstream");
    let status = response.status();
    let response_body = response
        .into_body()
        .collect()
        .await
        .expect("recorded body has no errors")
        .to_bytes();
    Exchange {
        status,
        upstream_request_body: seen_rx.recv().await.unwrap_or_default(),
        response_body,
    }
}

/// Serves `status`, `headers` and `body` on 127.0.0.1 (any path) and replays `interaction`'s
/// request through a reqwest client with the layer's middleware.
pub async fn replay_reqwest_bytes(
    layer: &LlmObservabilityLayer,
    interaction: &Interaction,
    headers: &[(String, String)],
    body: Bytes,
) -> Exchange {
    let status = interaction.status;
    let headers = headers.to_vec();
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel();
    let app = axum::Router::new().fallback(move |request: Bytes| {
        let headers = headers.clone();
        let body = body.clone();
        let seen_tx = seen_tx.clone();
        async move {
            let _ = seen_tx.send(request);
            let mut response = Response::builder().status(status);
            for (name, value) in &headers {
                response = response.header(name.as_str(), value.as_str());
            }
            response
                .body(axum::body::Body::from(body))
                .expect("valid response")
        }
    });
    let addr = serve(app).await;
    let url = local_url(&interaction.uri, addr);
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(layer.middleware())
        .build();
    let response = client
        .request(interaction.method.parse().expect("method"), url.as_str())
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(interaction.request_body.clone())
        .send()
        .await
        .expect("loopback request");
    assert_eq!(response.url().as_str(), url, "response URL preserved");
    let status = response.status();
    let response_body = response.bytes().await.expect("body");
    Exchange {
        status,
        upstream_request_body: seen_rx.recv().await.unwrap_or_default(),
        response_body,
    }
}

/// The one record of a call whose client dropped the response body half-way, checked to say
/// so (error type `cancelled`, the layer's message); `None` (noted in `fails`) unless there is
/// exactly one record.
pub fn cancelled_record<'a>(
    fails: &mut Failures,
    calls: &'a [Arc<LlmCall>],
    at: &str,
) -> Option<&'a LlmCall> {
    fails.eq(calls.len(), 1, format!("{at}: records"));
    let [call] = calls else { return None };
    let error = call.error.as_ref();
    fails.eq(
        error.and_then(|e| e.kind.as_deref()),
        Some("cancelled"),
        format!("{at}: error type"),
    );
    fails.eq(
        error.and_then(|e| e.message.as_deref()),
        Some("the response body was dropped before its end"),
        format!("{at}: error message"),
    );
    Some(call)
}

/// Collects in `fails` every way `exchange` (`interaction` replayed `at` some chunking or
/// adapter) differs from the recording: the status passed on, the response bytes, the request
/// bytes the upstream got.
pub fn check_exchange(
    fails: &mut Failures,
    interaction: &Interaction,
    exchange: &Exchange,
    at: &str,
) {
    let at = format!("{} via {at}", interaction.name());
    fails.eq(
        exchange.status.as_u16(),
        interaction.status,
        format!("{at}: status passed on"),
    );
    fails.ok(
        exchange.response_body == interaction.response_body.as_bytes(),
        format!("{at}: response bytes changed"),
    );
    fails.ok(
        exchange.upstream_request_body == interaction.request_body.as_bytes(),
        format!("{at}: request bytes changed"),
    );
}

/// Mismatches collected over a test, reported together at its end.
#[derive(Default)]
pub struct Failures(Vec<String>);

impl Failures {
    pub fn eq<T: PartialEq + std::fmt::Debug>(
        &mut self,
        got: T,
        want: T,
        what: impl std::fmt::Display,
    ) {
        if got != want {
            self.0.push(format!("{what}: got {got:?}, want {want:?}"));
        }
    }

    pub fn ok(&mut self, condition: bool, what: impl std::fmt::Display) {
        if !condition {
            self.0.push(what.to_string());
        }
    }

    pub fn finish(self, test: &str) {
        if self.0.is_empty() {
            return;
        }
        for failure in &self.0 {
            eprintln!("FAIL {failure}");
        }
        let shown: Vec<&str> = self.0.iter().take(30).map(String::as_str).collect();
        panic!(
            "{test}: {} mismatch(es); the first {}:\n{}",
            self.0.len(),
            shown.len(),
            shown.join("\n")
        );
    }
}

/// Replays `provider` (its recorded bytes and response headers) through `layer`'s tower
/// service, the response split into frames of `sizes` (see [`split`]); the exchange and every
/// record `memory` got. Shuts the layer's dispatcher down.
pub async fn provider_records_via_tower(
    layer: &LlmObservabilityLayer,
    memory: &MemorySink,
    provider: &ProviderInteraction,
    sizes: &[usize],
) -> (Exchange, Vec<Arc<LlmCall>>) {
    let frames = split(&provider.response_bytes(), sizes);
    let exchange = replay_tower_bytes(
        layer,
        &provider.interaction,
        &provider.response_headers(),
        frames,
    )
    .await;
    let calls = flushed(layer, memory).await;
    shut_down(layer).await;
    (exchange, calls)
}

/// Replays `interaction` through a fresh memory layer's tower service, the response split into
/// frames of `sizes` (see [`split`]); the exchange and every record the layer made.
pub async fn records_via_tower(
    interaction: &Interaction,
    sizes: &[usize],
) -> (Exchange, Vec<Arc<LlmCall>>) {
    let (layer, memory) = memory_layer();
    let frames = split(interaction.response_body.as_bytes(), sizes);
    let exchange = replay_tower(&layer, interaction, frames).await;
    let calls = flushed(&layer, &memory).await;
    shut_down(&layer).await;
    (exchange, calls)
}

/// Replays `interaction` through a fresh memory layer's reqwest middleware; the exchange and
/// every record the layer made.
pub async fn records_via_reqwest(interaction: &Interaction) -> (Exchange, Vec<Arc<LlmCall>>) {
    let (layer, memory) = memory_layer();
    let exchange = replay_reqwest(&layer, interaction).await;
    let calls = flushed(&layer, &memory).await;
    shut_down(&layer).await;
    (exchange, calls)
}

/// Stops a test layer's dispatcher (its worker threads) once the test has its records.
pub async fn shut_down(layer: &LlmObservabilityLayer) {
    layer
        .dispatcher()
        .shutdown(Duration::from_secs(5))
        .await
        .ok();
}

/// Collects in `fails` every way `a` and `b` — records of the same interaction made two ways
/// (another chunking, the other adapter) — differ in what the interaction decided.
pub fn same_record(fails: &mut Failures, name: &str, a: &LlmCall, b: &LlmCall, what: &str) {
    let at = format!("{name}: {what}");
    fails.eq(&a.response, &b.response, format!("{at}: response"));
    fails.eq(&a.request, &b.request, format!("{at}: request"));
    fails.eq(&a.usage, &b.usage, format!("{at}: usage"));
    fails.eq(
        &a.finish_reasons,
        &b.finish_reasons,
        format!("{at}: finish_reasons"),
    );
    fails.eq(&a.error, &b.error, format!("{at}: error"));
    fails.eq(&a.response_id, &b.response_id, format!("{at}: response_id"));
    fails.eq(&a.status, &b.status, format!("{at}: status"));
}
