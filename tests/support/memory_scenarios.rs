//! Memory scenarios shared by `tests/memory.rs` and `benches/memory.rs`: whole in-process calls
//! through a tower service, once without and once with `LlmObservabilityLayer`, with the heap
//! each adds at its peak measured by the counting allocator in `alloc_meter.rs`.
//!
//! The response body is generated lazily, one frame per poll (each frame a fresh allocation, as
//! a network read gives), and the client drops each frame after counting and checksumming it,
//! so neither end holds the body: whatever the layer keeps shows up as its own. The layer's
//! cost is `with_layer.peak - without_layer.peak`, both measured in the same process.
//!
//! Needs, in the including crate: `mod alloc_meter` (that file) and `mod support`
//! (`tests/support/mod.rs`).
#![allow(dead_code)]

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use llm_observability::{LlmCall, LlmObservabilityLayer, MemorySink};
use tower::{Service, ServiceBuilder, ServiceExt};

use crate::alloc_meter::{self, Added};

const MIB: usize = 1 << 20;

/// Response limit for the stream scenarios: room for 10 MiB of assembled content (the default,
/// `DEFAULT_RESPONSE_CAPTURE_LIMIT`, is 8 MiB and bounds assembled stream content too).
pub const STREAM_RESPONSE_LIMIT: usize = 16 * MIB;

/// What the layer may add for a non-stream body past its capture cap, beyond the cap itself:
/// the call's own state (span, timings, the capture's vector of at most cap/64 KiB frame
/// handles, the request record, the payload with its error strings, the dispatcher's batch) is
/// a few KiB; 1 MiB is 16 frames of 64 KiB, so a layer that kept even a handful of frames past
/// the cap, or copied what it captured, would not fit.
pub const OVER_CAP_CONSTANT: usize = MIB;

/// The shape of a generated response body.
#[derive(Debug, Clone, Copy)]
pub enum BodySpec {
    /// A chat-completions event stream of token-sized deltas (like recorded OpenAI and DeepSeek
    /// streams: one `chat.completion.chunk` per frame), until about `wire` bytes.
    SseTokens { wire: usize },
    /// A chat-completions event stream whose deltas carry `delta` bytes of text each, until
    /// `content` bytes of assembled content.
    SseBulk { content: usize, delta: usize },
    /// One `chat.completion` JSON object of `wire` bytes (nearly all of it the message content),
    /// served in frames of `frame` bytes.
    Json { wire: usize, frame: usize },
}

impl BodySpec {
    /// Whether the body is an event stream, or JSON.
    pub fn is_stream(&self) -> bool {
        !matches!(self, BodySpec::Json { .. })
    }
}

/// One scenario: a body, the layer's response capture limit, and how many such calls run
/// at once (concurrently on the one runtime thread, through one layer).
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    pub name: &'static str,
    pub body: BodySpec,
    pub response_limit: usize,
    pub calls: usize,
}

impl Scenario {
    /// Whether the body is an event stream (bounded by its content) or JSON (by the cap).
    pub fn is_stream(&self) -> bool {
        self.body.is_stream()
    }

    /// The same shape, `1/divisor` the size: a warm-up run, so that one-time allocations
    /// (thread-locals, lazily built statics) are not charged to the measured call.
    fn scaled_down(&self, divisor: usize) -> Scenario {
        let body = match self.body {
            BodySpec::SseTokens { wire } => BodySpec::SseTokens {
                wire: wire / divisor,
            },
            BodySpec::SseBulk { content, delta } => BodySpec::SseBulk {
                content: content / divisor,
                delta,
            },
            BodySpec::Json { wire, frame } => BodySpec::Json {
                wire: wire / divisor,
                frame,
            },
        };
        Scenario { body, ..*self }
    }
}

/// The scenarios of the performance issue's memory item.
pub fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "sse 10 MiB, token deltas",
            body: BodySpec::SseTokens { wire: 10 * MIB },
            response_limit: STREAM_RESPONSE_LIMIT,
            calls: 1,
        },
        Scenario {
            name: "sse 10 MiB content, 1 KiB deltas",
            body: BodySpec::SseBulk {
                content: 10 * MIB,
                delta: 1024,
            },
            response_limit: STREAM_RESPONSE_LIMIT,
            calls: 1,
        },
        Scenario {
            name: "json 100 MiB, 64 KiB frames",
            body: BodySpec::Json {
                wire: 100 * MIB,
                frame: 64 << 10,
            },
            response_limit: llm_observability::DEFAULT_RESPONSE_CAPTURE_LIMIT,
            calls: 1,
        },
    ]
}

// ---------------------------------------------------------------------------------------------
// Checksums

/// Byte count, frame count and an FNV-1a-style hash over 8-byte words of the bytes in order:
/// cheap enough for 100 MiB in a debug build. The hash does not depend on where the frames
/// were cut (the frame count does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digest {
    pub bytes: u64,
    pub frames: u64,
    hash: u64,
    /// Bytes of a word not yet complete, little-endian, and how many.
    pending: u64,
    pending_len: u32,
}

impl Default for Digest {
    fn default() -> Self {
        Digest {
            bytes: 0,
            frames: 0,
            hash: 0xcbf2_9ce4_8422_2325,
            pending: 0,
            pending_len: 0,
        }
    }
}

impl Digest {
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    /// Adds one frame.
    pub fn update(&mut self, mut data: &[u8]) {
        self.bytes += data.len() as u64;
        self.frames += 1;
        while self.pending_len > 0 && !data.is_empty() {
            self.push_byte(data[0]);
            data = &data[1..];
        }
        let mut words = data.chunks_exact(8);
        let mut hash = self.hash;
        for word in &mut words {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            hash = (hash ^ u64::from_le_bytes(w)).wrapping_mul(Self::PRIME);
        }
        self.hash = hash;
        for &byte in words.remainder() {
            self.push_byte(byte);
        }
    }

    fn push_byte(&mut self, byte: u8) {
        self.pending |= u64::from(byte) << (8 * self.pending_len);
        self.pending_len += 1;
        if self.pending_len == 8 {
            self.hash = (self.hash ^ self.pending).wrapping_mul(Self::PRIME);
            self.pending = 0;
            self.pending_len = 0;
        }
    }

    /// The hash of all bytes so far, whatever their framing.
    pub fn hash(&self) -> u64 {
        (self.hash ^ self.pending ^ u64::from(self.pending_len)).wrapping_mul(Self::PRIME)
    }
}

// ---------------------------------------------------------------------------------------------
// Lazily generated bodies

/// What a generated body served: its frames, and the message content they carry (as the
/// assembled message will hold it, escapes decoded).
#[derive(Debug, Clone, Copy, Default)]
pub struct Served {
    pub wire: Digest,
    pub content: Digest,
}

/// Produces the next frame of a body, or `None` at its end.
trait FrameSource {
    fn next_frame(&mut self, content: &mut Digest) -> Option<Vec<u8>>;
}

/// A response body that makes each frame when polled: the body is never held whole.
pub struct LazyBody {
    source: Box<dyn FrameSource + Send + Sync>,
    served: Arc<Mutex<Served>>,
}

impl LazyBody {
    fn new(spec: BodySpec, served: Arc<Mutex<Served>>) -> Self {
        let source: Box<dyn FrameSource + Send + Sync> = match spec {
            BodySpec::SseTokens { wire } => Box::new(SseSource::new(SseDeltas::Tokens { wire })),
            BodySpec::SseBulk { content, delta } => {
                Box::new(SseSource::new(SseDeltas::Bulk { content, delta }))
            }
            BodySpec::Json { wire, frame } => Box::new(JsonSource::new(wire, frame)),
        };
        LazyBody { source, served }
    }
}

impl Body for LazyBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        let mut served = this.served.lock().unwrap_or_else(PoisonError::into_inner);
        let frame = this.source.next_frame(&mut served.content);
        Poll::Ready(frame.map(|frame| {
            served.wire.update(&frame);
            Ok(Frame::data(Bytes::from(frame)))
        }))
    }
}

/// Token-sized deltas as they appear on the wire (JSON-escaped) and once decoded.
const TOKENS: [(&str, &str); 16] = [
    (" The", " The"),
    (" layer", " layer"),
    (" forwards", " forwards"),
    (" every", " every"),
    (" frame", " frame"),
    (",", ","),
    (" and", " and"),
    (" the", " the"),
    (" tee", " tee"),
    (" keeps", " keeps"),
    (" only", " only"),
    (" \\\"what\\\"", " \"what\""),
    (" it", " it"),
    (" needs", " needs"),
    (" — café", " — café"),
    (".\\n", ".\n"),
];

const CHUNK_HEAD: &str = r#"data: {"id":"chatcmpl-BmemoryScenario0000000000001","object":"chat.completion.chunk","created":1752602178,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_62a23a81ef","choices":[{"index":0,"delta":"#;
const CHUNK_TAIL: &str = r#","logprobs":null,"finish_reason":null}]}"#;

enum SseDeltas {
    Tokens { wire: usize },
    Bulk { content: usize, delta: usize },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum SsePhase {
    Role,
    Deltas,
    Usage,
    Done,
    End,
}

/// A chat-completions stream with `stream_options.include_usage`: a role chunk, content
/// chunks, a `finish_reason: "stop"` chunk, a usage chunk with `choices: []`, `[DONE]`.
struct SseSource {
    deltas: SseDeltas,
    phase: SsePhase,
    wire: usize,
    content: usize,
    events: usize,
    bulk_text: String,
}

impl SseSource {
    fn new(deltas: SseDeltas) -> Self {
        let bulk_text = match deltas {
            SseDeltas::Bulk { delta, .. } => filler(delta),
            SseDeltas::Tokens { .. } => String::new(),
        };
        SseSource {
            deltas,
            phase: SsePhase::Role,
            wire: 0,
            content: 0,
            events: 0,
            bulk_text,
        }
    }

    fn chunk(delta_json: &str, finish: Option<&str>) -> String {
        let tail = match finish {
            Some(reason) => CHUNK_TAIL.replace(
                r#""finish_reason":null"#,
                &format!(r#""finish_reason":"{reason}""#),
            ),
            None => CHUNK_TAIL.to_owned(),
        };
        format!("{CHUNK_HEAD}{delta_json}{tail}\n\n")
    }

    fn more_deltas(&self) -> bool {
        match self.deltas {
            // Leave room for the three closing events (~700 bytes).
            SseDeltas::Tokens { wire } => self.wire + 1024 < wire,
            SseDeltas::Bulk { content, .. } => self.content < content,
        }
    }
}

impl FrameSource for SseSource {
    fn next_frame(&mut self, content: &mut Digest) -> Option<Vec<u8>> {
        let event = match self.phase {
            SsePhase::Role => {
                self.phase = SsePhase::Deltas;
                Self::chunk(r#"{"role":"assistant","content":"","refusal":null}"#, None)
            }
            SsePhase::Deltas if self.more_deltas() => {
                let (wire, decoded) = match self.deltas {
                    SseDeltas::Tokens { .. } => TOKENS[self.events % TOKENS.len()],
                    SseDeltas::Bulk { content: total, .. } => {
                        let n = self.bulk_text.len().min(total - self.content);
                        (&self.bulk_text[..n], &self.bulk_text[..n])
                    }
                };
                content.update(decoded.as_bytes());
                self.content += decoded.len();
                Self::chunk(&format!(r#"{{"content":"{wire}"}}"#), None)
            }
            SsePhase::Deltas => {
                self.phase = SsePhase::Usage;
                Self::chunk("{}", Some("stop"))
            }
            SsePhase::Usage => {
                self.phase = SsePhase::Done;
                let completion = self.events;
                format!(
                    "data: {{\"id\":\"chatcmpl-BmemoryScenario0000000000001\",\"object\":\"chat.completion.chunk\",\"created\":1752602178,\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_62a23a81ef\",\"choices\":[],\"usage\":{{\"prompt_tokens\":14,\"completion_tokens\":{completion},\"total_tokens\":{},\"prompt_tokens_details\":{{\"cached_tokens\":0,\"audio_tokens\":0}},\"completion_tokens_details\":{{\"reasoning_tokens\":0,\"audio_tokens\":0,\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}}}}}}\n\n",
                    completion + 14
                )
            }
            SsePhase::Done => {
                self.phase = SsePhase::End;
                "data: [DONE]\n\n".to_owned()
            }
            SsePhase::End => return None,
        };
        self.events += 1;
        self.wire += event.len();
        Some(event.into_bytes())
    }
}

/// `len` bytes of plain prose (no JSON escapes), the same for every call.
fn filler(len: usize) -> String {
    const PROSE: &str =
        "Once upon a time, a layer watched every frame go by and kept only what it needed. ";
    PROSE.chars().cycle().take(len).collect()
}

/// One `chat.completion` object: a fixed head, `wire - head - tail` bytes of content, a
/// fixed tail; cut into frames of `frame` bytes, each made when asked for.
struct JsonSource {
    head: Vec<u8>,
    tail: Vec<u8>,
    pattern: Vec<u8>,
    content_len: usize,
    total: usize,
    offset: usize,
    frame: usize,
}

impl JsonSource {
    fn new(wire: usize, frame: usize) -> Self {
        let head = br#"{"id":"chatcmpl-BmemoryScenario0000000000002","object":"chat.completion","created":1752602178,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":""#.to_vec();
        let tail = br#"","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"length"}],"usage":{"prompt_tokens":14,"completion_tokens":26214400,"total_tokens":26214414},"service_tier":"default","system_fingerprint":"fp_62a23a81ef"}"#.to_vec();
        let content_len = wire.saturating_sub(head.len() + tail.len());
        JsonSource {
            total: head.len() + content_len + tail.len(),
            head,
            tail,
            pattern: filler(4096).into_bytes(),
            content_len,
            offset: 0,
            frame: frame.max(1),
        }
    }

    /// Appends the body's bytes `from..to` (`to` within the body) to `out`.
    fn fill(&self, out: &mut Vec<u8>, from: usize, to: usize) {
        let mut at = from;
        while at < to {
            let content_start = self.head.len();
            let tail_start = content_start + self.content_len;
            if at < content_start {
                let end = to.min(content_start);
                out.extend_from_slice(&self.head[at..end]);
                at = end;
            } else if at < tail_start {
                let in_pattern = (at - content_start) % self.pattern.len();
                let end = to.min(tail_start).min(at + self.pattern.len() - in_pattern);
                out.extend_from_slice(&self.pattern[in_pattern..in_pattern + (end - at)]);
                at = end;
            } else {
                out.extend_from_slice(&self.tail[at - tail_start..to - tail_start]);
                at = to;
            }
        }
    }
}

impl FrameSource for JsonSource {
    fn next_frame(&mut self, content: &mut Digest) -> Option<Vec<u8>> {
        if self.offset >= self.total {
            return None;
        }
        let end = self.total.min(self.offset + self.frame);
        let mut frame = Vec::with_capacity(end - self.offset);
        self.fill(&mut frame, self.offset, end);
        self.offset = end;
        // Only the length of the content is tracked: the layer does not decode a body this big.
        content.bytes = self.content_len as u64;
        Some(frame)
    }
}

// ---------------------------------------------------------------------------------------------
// One call, with or without the layer

const REQUEST: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a storyteller."},{"role":"user","content":"Tell me a very, very long story."}],"stream":true,"stream_options":{"include_usage":true},"temperature":0.7}"#;

/// An upstream that reads the request body and answers with a lazily generated body.
fn upstream<B>(
    spec: BodySpec,
    served: Arc<Mutex<Served>>,
) -> impl Service<Request<B>, Response = Response<LazyBody>, Error = Infallible> + Clone
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: std::fmt::Debug,
{
    tower::service_fn(move |request: Request<B>| {
        let served = served.clone();
        async move {
            let _ = request.into_body().collect().await;
            let content_type = if spec.is_stream() {
                "text/event-stream; charset=utf-8"
            } else {
                "application/json"
            };
            Ok::<_, Infallible>(
                Response::builder()
                    .header(http::header::CONTENT_TYPE, content_type)
                    .body(LazyBody::new(spec, served))
                    .expect("valid response"),
            )
        }
    })
}

/// Sends the request and reads the response body to its end, dropping each frame after
/// counting and checksumming it.
async fn drive<S, B>(service: S) -> Digest
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let request = Request::post("http://api.example.test/v1/chat/completions")
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from_static(REQUEST.as_bytes())))
        .expect("valid request");
    let response = service.oneshot(request).await.expect("infallible upstream");
    let mut body = std::pin::pin!(response.into_body());
    let mut received = Digest::default();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("generated body has no errors").into_data() {
            received.update(&data);
        }
        // A generated body is always ready: without a yield, calls run at once would run one
        // after the other. (A network read yields between frames too.)
        tokio::task::yield_now().await;
    }
    received
}

/// Time taken by a measured piece of work.
#[derive(Debug, Clone, Copy, Default)]
pub struct Elapsed {
    pub wall: Duration,
    /// CPU time of the whole process (every thread), where the platform reports it.
    pub cpu: Option<Duration>,
}

/// CPU time of the whole process so far, every thread counted.
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
pub fn process_cpu() -> Option<Duration> {
    #[repr(C)]
    struct Timespec {
        sec: i64,
        nsec: i64,
    }
    extern "C" {
        fn clock_gettime(clock: i32, time: *mut Timespec) -> i32;
    }
    const CLOCK_PROCESS_CPUTIME_ID: i32 = 2;
    let mut time = Timespec { sec: 0, nsec: 0 };
    // SAFETY: the C library's `clock_gettime` (std links it on Linux), with a valid clock id and
    // a pointer to a `timespec` (two 64-bit fields on 64-bit Linux) that outlives the call.
    let status = unsafe { clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &mut time) };
    (status == 0).then(|| Duration::new(time.sec as u64, time.nsec as u32))
}

/// CPU time of the whole process so far: not read on this platform.
#[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
pub fn process_cpu() -> Option<Duration> {
    None
}

/// Runs `f`, timing it by the wall clock and the process's CPU clock.
fn timed<T>(f: impl FnOnce() -> T) -> (T, Elapsed) {
    let (cpu, wall) = (process_cpu(), Instant::now());
    let value = f();
    let elapsed = Elapsed {
        wall: wall.elapsed(),
        cpu: process_cpu().zip(cpu).map(|(end, start)| end - start),
    };
    (value, elapsed)
}

/// One measured run: `scenario.calls` calls at once.
#[derive(Debug)]
pub struct Run {
    /// What each call's upstream served.
    pub served: Vec<Served>,
    /// What each call's client received.
    pub received: Vec<Digest>,
    pub heap: Added,
    /// Wall and CPU time of the run: its calls, and with the layer, the sink's flush.
    pub time: Elapsed,
    /// What the layer's memory sink received (empty without the layer).
    pub payloads: Vec<Arc<LlmCall>>,
    /// Payloads the dispatcher dropped (its queue full), by its own count.
    pub dropped: u64,
}

impl Run {
    /// Whether every call's client received exactly the bytes its upstream served (count,
    /// frames, checksum).
    pub fn intact(&self) -> bool {
        self.served.len() == self.received.len()
            && self
                .served
                .iter()
                .zip(&self.received)
                .all(|(s, r)| s.wire == *r)
    }

    /// What the first call served (all calls of a run serve the same body).
    pub fn first(&self) -> Served {
        self.served.first().copied().unwrap_or_default()
    }
}

/// Where each of `scenario.calls` upstreams records what it serves.
fn served_cells(scenario: &Scenario) -> Vec<Arc<Mutex<Served>>> {
    let cells = (0..scenario.calls.max(1)).map(|_| Arc::new(Mutex::new(Served::default())));
    cells.collect()
}

fn served(cells: &[Arc<Mutex<Served>>]) -> Vec<Served> {
    let read = |cell: &Arc<Mutex<Served>>| *cell.lock().unwrap_or_else(PoisonError::into_inner);
    cells.iter().map(read).collect()
}

/// The calls without the layer.
fn run_without_layer(runtime: &tokio::runtime::Runtime, scenario: &Scenario) -> Run {
    let cells = served_cells(scenario);
    let services: Vec<_> = cells
        .iter()
        .map(|cell| upstream::<Full<Bytes>>(scenario.body, cell.clone()))
        .collect();
    let ((received, time), heap) = alloc_meter::measure(|| {
        timed(|| {
            runtime.block_on(futures_util::future::join_all(
                services.into_iter().map(drive),
            ))
        })
    });
    Run {
        served: served(&cells),
        received,
        heap,
        time,
        payloads: Vec::new(),
        dropped: 0,
    }
}

/// The calls through one layer (memory sink, `scenario.response_limit`); the measurement
/// includes the dispatcher delivering the payloads to the sink.
fn run_with_layer(runtime: &tokio::runtime::Runtime, scenario: &Scenario) -> Run {
    let memory = MemorySink::new();
    let layer = runtime.block_on(async {
        LlmObservabilityLayer::builder()
            .sink(memory.clone())
            .response_capture_limit(scenario.response_limit)
            .build()
            .expect("inside a runtime")
    });
    let cells = served_cells(scenario);
    let services: Vec<_> = cells
        .iter()
        .map(|cell| {
            let upstream = upstream::<llm_observability::RequestBody<Full<Bytes>>>(
                scenario.body,
                cell.clone(),
            );
            ServiceBuilder::new().layer(layer.clone()).service(upstream)
        })
        .collect();
    let ((received, time), heap) = alloc_meter::measure(|| {
        timed(|| {
            runtime.block_on(async {
                let calls = services.into_iter().map(drive);
                let received = futures_util::future::join_all(calls).await;
                crate::support::flushed(&layer, &memory).await;
                received
            })
        })
    });
    let payloads = memory.take();
    let dropped = layer
        .dispatcher()
        .stats()
        .sinks
        .iter()
        .map(|s| s.dropped)
        .sum();
    runtime.block_on(async {
        layer
            .dispatcher()
            .shutdown(std::time::Duration::from_secs(10))
            .await
            .expect("shutdown in time");
    });
    Run {
        served: served(&cells),
        received,
        heap,
        time,
        payloads,
        dropped,
    }
}

/// A scenario measured both ways.
#[derive(Debug)]
pub struct Measured {
    pub scenario: Scenario,
    pub without_layer: Run,
    pub with_layer: Run,
}

impl Measured {
    /// The heap the layer adds at its peak: with minus without.
    pub fn layer_peak(&self) -> usize {
        self.with_layer
            .heap
            .peak
            .saturating_sub(self.without_layer.heap.peak)
    }

    /// The message content in the payload, when there is one.
    pub fn payload_content(&self) -> Option<&str> {
        let call = self.with_layer.payloads.first()?;
        call.response.as_ref()?["choices"][0]["message"]["content"].as_str()
    }

    /// Assembled content length for streams (what the payload holds), served content length
    /// for JSON bodies.
    pub fn content_len(&self) -> usize {
        if self.scenario.is_stream() {
            self.payload_content().map_or(0, str::len)
        } else {
            self.with_layer.first().content.bytes as usize
        }
    }

    /// The bound the issue sets: `2 x assembled content` for streams (exclusive), `cap + 1 MiB`
    /// for JSON bodies (inclusive).
    pub fn bound(&self) -> usize {
        if self.scenario.is_stream() {
            2 * self.content_len()
        } else {
            self.scenario.response_limit + OVER_CAP_CONSTANT
        }
    }

    pub fn within_bound(&self) -> bool {
        if self.scenario.is_stream() {
            self.layer_peak() < self.bound()
        } else {
            self.layer_peak() <= self.bound()
        }
    }
}

/// Measures `scenario` without and with the layer on `runtime` (a current-thread runtime),
/// after a warm-up of both at 1/64 the size.
pub fn measure(runtime: &tokio::runtime::Runtime, scenario: &Scenario) -> Measured {
    let small = scenario.scaled_down(64);
    run_without_layer(runtime, &small);
    run_with_layer(runtime, &small);
    Measured {
        scenario: *scenario,
        without_layer: run_without_layer(runtime, scenario),
        with_layer: run_with_layer(runtime, scenario),
    }
}

/// The runtime the scenarios run on: one thread, so the sink worker runs on it too.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Only the response decoder the tee drives, fed the same generated frames: its peak while
/// the body flows, and its peak including `finish` (building the assembled response), both
/// relative to the start; and what the assembled response keeps. Attributes the layer's peak.
pub fn decoder_only(scenario: &Scenario) -> (Added, Added) {
    use llm_observability::internals::BodyDecoder;
    use llm_observability::Endpoint;
    let content_type = if scenario.is_stream() {
        "text/event-stream"
    } else {
        "application/json"
    };
    let mut source = LazyBody::new(scenario.body, Arc::new(Mutex::new(Served::default())));
    let base = alloc_meter::reset_peak();
    let mut decoder = BodyDecoder::new(
        Endpoint::ChatCompletions,
        Some(content_type),
        scenario.response_limit,
    );
    let mut content = Digest::default();
    while let Some(frame) = source.source.next_frame(&mut content) {
        decoder.feed(&Bytes::from(frame));
    }
    let fed = Added {
        peak: alloc_meter::peak().saturating_sub(base),
        retained: alloc_meter::current().saturating_sub(base),
    };
    let response = decoder.finish();
    let finished = Added {
        peak: alloc_meter::peak().saturating_sub(base),
        retained: alloc_meter::current().saturating_sub(base),
    };
    drop(response);
    (fed, finished)
}

// ---------------------------------------------------------------------------------------------
// Report

fn mib(bytes: usize) -> String {
    format!("{:.2} MiB", bytes as f64 / MIB as f64)
}

/// A table of measured scenarios, one row each.
pub fn table(rows: &[Measured]) -> String {
    let mut out = format!(
        "{:<34} {:>11} {:>11} {:>12} {:>12} {:>12} {:>13} {:>9} {:>12}\n",
        "scenario",
        "wire",
        "content",
        "peak no-layer",
        "peak layer",
        "layer adds",
        "vs",
        "ratio",
        "kept after",
    );
    for row in rows {
        let (against, denominator) = if row.scenario.is_stream() {
            ("content", row.content_len())
        } else {
            ("cap", row.scenario.response_limit)
        };
        out.push_str(&format!(
            "{:<34} {:>11} {:>11} {:>12} {:>12} {:>12} {:>13} {:>8.3}x {:>12}\n",
            row.scenario.name,
            mib(row.with_layer.first().wire.bytes as usize),
            mib(row.content_len()),
            mib(row.without_layer.heap.peak),
            mib(row.with_layer.heap.peak),
            mib(row.layer_peak()),
            against,
            row.layer_peak() as f64 / denominator.max(1) as f64,
            mib(row.with_layer.heap.retained),
        ));
    }
    out.push_str(
        "peak: most heap live at once during the call, beyond what was live before it; \
         layer adds: peak layer - peak no-layer;\nkept after: heap still live after the call \
         and the sink's flush (the payload in the memory sink).\n",
    );
    out
}
