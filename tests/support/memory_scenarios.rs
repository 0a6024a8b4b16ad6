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
use std::io::Write as _;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use llm_observability::{CallStatus, Endpoint, LlmCall, LlmObservabilityLayer, MemorySink};
use tower::{Service, ServiceBuilder, ServiceExt};

use crate::alloc_meter::{self, Added};
use crate::support::eventstream;

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
    /// A body an attacker shapes against the decoder (issue #12).
    Hostile(Hostile),
}

impl BodySpec {
    /// Whether the body is a stream (SSE, AWS event-stream frames, a streamed JSON array,
    /// NDJSON), or one JSON body.
    pub fn is_stream(&self) -> bool {
        !matches!(
            self,
            BodySpec::Json { .. }
                | BodySpec::Hostile(
                    Hostile::Zeros { .. } | Hostile::EmptyChoices { stream: false, .. }
                )
        )
    }

    /// The API the body answers.
    pub fn api(&self) -> Api {
        match self {
            BodySpec::Hostile(hostile) => hostile.api(),
            _ => Api::OpenAi,
        }
    }

    /// The response's content type, as the API sends it.
    pub fn content_type(&self) -> &'static str {
        match self.api() {
            Api::Bedrock => "application/vnd.amazon.eventstream",
            // `streamGenerateContent` without `?alt=sse`: one JSON array, written piece by piece.
            Api::Gemini => "application/json; charset=UTF-8",
            Api::Ollama => "application/x-ndjson",
            Api::OpenAi | Api::Anthropic if self.is_stream() => "text/event-stream; charset=utf-8",
            Api::OpenAi | Api::Anthropic => "application/json",
        }
    }
}

/// The API a scenario's call is made to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `/v1/chat/completions`.
    OpenAi,
    /// Anthropic `/v1/messages`.
    Anthropic,
    /// Bedrock `.../model/{id}/converse-stream` (AWS event-stream frames).
    Bedrock,
    /// Gemini `.../models/{m}:streamGenerateContent` without `?alt=sse` (a streamed JSON array).
    Gemini,
    /// Ollama `/api/chat` (NDJSON).
    Ollama,
}

impl Api {
    /// The request's URI and JSON body.
    fn request(self) -> (&'static str, &'static str) {
        match self {
            Api::OpenAi => ("http://api.example.test/v1/chat/completions", REQUEST),
            Api::Anthropic => ("http://api.example.test/v1/messages", ANTHROPIC_REQUEST),
            Api::Bedrock => (
                "https://bedrock-runtime.us-east-1.amazonaws.com/model/us.amazon.nova-2-lite-v1%3A0/converse-stream",
                r#"{"messages":[{"role":"user","content":[{"text":"Tell me a very, very long story."}]}]}"#,
            ),
            Api::Gemini => (
                "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent",
                r#"{"contents":[{"role":"user","parts":[{"text":"Tell me a very, very long story."}]}]}"#,
            ),
            Api::Ollama => (
                "http://127.0.0.1:11434/api/chat",
                r#"{"model":"llama3.2","messages":[{"role":"user","content":"Tell me a very, very long story."}],"stream":true}"#,
            ),
        }
    }

    /// The endpoint the layer recognises in the request.
    pub fn endpoint(self) -> Endpoint {
        match self {
            Api::OpenAi => Endpoint::ChatCompletions,
            Api::Anthropic => Endpoint::AnthropicMessages,
            Api::Bedrock => Endpoint::BedrockConverseStream,
            Api::Gemini => Endpoint::GeminiStreamGenerateContent,
            Api::Ollama => Endpoint::OllamaChat,
        }
    }
}

/// Hostile bodies, served in frames of at least [`HOSTILE_FRAME`] bytes (as network reads
/// come), each made when polled.
#[derive(Debug, Clone, Copy)]
pub enum Hostile {
    /// One event, `data: {"choices":[...]}`, of `choices` choices with descending indices
    /// (`choices - 1` first), each a one-character content delta.
    OneEventDescending { choices: u32 },
    /// `indices` distinct choice indices, descending, `per_event` choices to an event, each a
    /// one-character content delta.
    ManyIndices { indices: u32, per_event: u32 },
    /// `choices` events, one choice each (index 0, 1, ...), with an empty delta and a
    /// `finish_reason` of `reason` bytes.
    LongFinishReasons { choices: u32, reason: usize },
    /// A JSON body (`application/json`) of about `wire` bytes: `[0,0,...,0]`, or
    /// `{"choices":[0,0,...,0]}` when `object`.
    Zeros { wire: usize, object: bool },
    /// `{"choices":[{},{},...,{}]}` of about `line` bytes: one SSE event (`data: ` and all)
    /// when `stream`, else a JSON body. Every `{}` is a valid choice.
    EmptyChoices { line: usize, stream: bool },
    /// An Anthropic Messages stream: `message_start`, then `blocks` one-character
    /// `text_delta`s to distinct content blocks with descending indices (`blocks - 1` first),
    /// then `message_stop`.
    AnthropicBlocksDescending { blocks: u32 },
    /// An Anthropic Messages stream with one `tool_use` block whose input arrives as
    /// `fragments` `input_json_delta`s of [`TOOL_FRAGMENT`] bytes (`{"a":[1,1,1,...`) and never
    /// closes; then `message_delta` and `message_stop`.
    AnthropicOpenToolInput { fragments: u32 },
    /// An Anthropic Messages stream of one text delta, then `pings` `ping` events, then
    /// `message_delta` (`end_turn`) and `message_stop`.
    AnthropicPings { pings: u32 },
    /// A Bedrock `converse-stream` (issue #24): `messageStart` and a text delta `x`, then a
    /// frame whose prelude (its CRC right) claims 4 GiB, followed by `junk` bytes of zeros.
    BedrockHugeFrame { junk: usize },
    /// A Bedrock stream of `deltas` one-character text deltas (`x`), the one after the first
    /// half with a bad prelude CRC (`prelude`) or a bad message CRC; the rest valid, to
    /// `messageStop` and `metadata`.
    BedrockBadCrc { deltas: u32, prelude: bool },
    /// A Bedrock stream: `messageStart`, a delta `x`, then one delta frame with `headers` more
    /// headers (its headers section within the 128 KiB the spec allows), then a valid delta `y`
    /// and the end.
    BedrockHeaderFlood { headers: u32 },
    /// A Bedrock stream: `messageStart`, a delta `x`, then one delta frame whose headers
    /// section is [`HUGE_HEADERS`] bytes (16 string headers of ~64 KiB: past the 128 KiB the
    /// spec allows, within the frame limit), then a valid delta `y` and the end.
    BedrockHugeHeaders,
    /// A Gemini `streamGenerateContent` JSON array (no `?alt=sse`) of `elements` chunks, each
    /// a one-character text part (`x`) with its `usageMetadata`, that never closes: no `]`.
    GeminiOpenArray { elements: u32 },
    /// A Gemini JSON array: a chunk with text `x`, one chunk whose text is `text` bytes (`y`),
    /// a last chunk with text `z` and `finishReason: STOP`, then `]`.
    GeminiHugeElement { text: usize },
    /// An Ollama `/api/chat` NDJSON stream: a line with content `Hi`, one line whose content
    /// is `content` bytes (`x`), then the final `done: true` line (`stop`, 10 + 3 tokens).
    OllamaLongLine { content: usize },
}

/// The headers section of [`Hostile::BedrockHugeHeaders`]' big frame, about.
pub const HUGE_HEADERS: usize = 16 * 65_000;

/// One `input_json_delta` fragment of [`Hostile::AnthropicOpenToolInput`]: 1,000 array items.
pub const TOOL_FRAGMENT: usize = 2000;

impl Hostile {
    /// Whether the body is an Anthropic Messages stream (sent to `/v1/messages`).
    pub fn is_anthropic(self) -> bool {
        self.api() == Api::Anthropic
    }

    /// The API whose response the body is.
    pub fn api(self) -> Api {
        match self {
            Hostile::AnthropicBlocksDescending { .. }
            | Hostile::AnthropicOpenToolInput { .. }
            | Hostile::AnthropicPings { .. } => Api::Anthropic,
            Hostile::BedrockHugeFrame { .. }
            | Hostile::BedrockBadCrc { .. }
            | Hostile::BedrockHeaderFlood { .. }
            | Hostile::BedrockHugeHeaders => Api::Bedrock,
            Hostile::GeminiOpenArray { .. } | Hostile::GeminiHugeElement { .. } => Api::Gemini,
            Hostile::OllamaLongLine { .. } => Api::Ollama,
            Hostile::OneEventDescending { .. }
            | Hostile::ManyIndices { .. }
            | Hostile::LongFinishReasons { .. }
            | Hostile::Zeros { .. }
            | Hostile::EmptyChoices { .. } => Api::OpenAi,
        }
    }
}

/// Hostile frames are at least this long: a unit of a hostile body is at most this long too.
pub const HOSTILE_FRAME: usize = 64 << 10;

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
            BodySpec::Hostile(hostile) => BodySpec::Hostile(hostile.scaled_down(divisor)),
        };
        Scenario { body, ..*self }
    }
}

impl Hostile {
    /// The same shape, about `1/divisor` the size (at least one of everything).
    pub fn scaled_down(self, divisor: usize) -> Hostile {
        let fewer = |n: u32| (n / divisor as u32).max(1);
        match self {
            Hostile::OneEventDescending { choices } => Hostile::OneEventDescending {
                choices: fewer(choices),
            },
            Hostile::ManyIndices { indices, per_event } => Hostile::ManyIndices {
                indices: fewer(indices),
                per_event,
            },
            Hostile::LongFinishReasons { choices, reason } => Hostile::LongFinishReasons {
                choices: fewer(choices),
                reason,
            },
            Hostile::Zeros { wire, object } => Hostile::Zeros {
                wire: wire / divisor,
                object,
            },
            Hostile::EmptyChoices { line, stream } => Hostile::EmptyChoices {
                line: line / divisor,
                stream,
            },
            Hostile::AnthropicBlocksDescending { blocks } => Hostile::AnthropicBlocksDescending {
                blocks: fewer(blocks),
            },
            Hostile::AnthropicOpenToolInput { fragments } => Hostile::AnthropicOpenToolInput {
                fragments: fewer(fragments),
            },
            Hostile::AnthropicPings { pings } => Hostile::AnthropicPings {
                pings: fewer(pings),
            },
            Hostile::BedrockHugeFrame { junk } => Hostile::BedrockHugeFrame {
                junk: junk / divisor,
            },
            Hostile::BedrockBadCrc { deltas, prelude } => Hostile::BedrockBadCrc {
                deltas: fewer(deltas),
                prelude,
            },
            Hostile::BedrockHeaderFlood { headers } => Hostile::BedrockHeaderFlood {
                headers: fewer(headers),
            },
            Hostile::BedrockHugeHeaders => Hostile::BedrockHugeHeaders,
            Hostile::GeminiOpenArray { elements } => Hostile::GeminiOpenArray {
                elements: fewer(elements),
            },
            Hostile::GeminiHugeElement { text } => Hostile::GeminiHugeElement {
                text: text / divisor,
            },
            Hostile::OllamaLongLine { content } => Hostile::OllamaLongLine {
                content: content / divisor,
            },
        }
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

/// How large the hostile bodies are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// As the attacker of issue #12 sent them (`benches/hostile.rs`).
    Full,
    /// Scaled down where a debug build would take long (`tests/hostile.rs`): still far past
    /// every budget, so the same code paths run.
    Test,
}

/// The hostile bodies of issue #12, each against the default response limit
/// (`DEFAULT_RESPONSE_CAPTURE_LIMIT`, 8 MiB: 8 MiB of content, 1 MiB of other stream state, and
/// the longest SSE line kept). With [`Size::Full`], also 16 of each JSON body at once.
pub fn hostile_scenarios(size: Size) -> Vec<Scenario> {
    let limit = llm_observability::DEFAULT_RESPONSE_CAPTURE_LIMIT;
    let full = size == Size::Full;
    let scenario = |name, hostile, calls| Scenario {
        name,
        body: BodySpec::Hostile(hostile),
        response_limit: limit,
        calls,
    };
    // Just under the capture cap, so the body is decoded, not let go as over the cap.
    let zeros = limit - 1024;
    let mut scenarios = vec![
        scenario(
            "1 event, 100k choices, descending",
            Hostile::OneEventDescending { choices: 100_000 },
            1,
        ),
        if full {
            scenario(
                "3M descending indices, 8 an event",
                Hostile::ManyIndices {
                    indices: 3_000_000,
                    per_event: 8,
                },
                1,
            )
        } else {
            scenario(
                "300k descending indices, 8 an event",
                Hostile::ManyIndices {
                    indices: 300_000,
                    per_event: 8,
                },
                1,
            )
        },
        if full {
            scenario(
                "200 choices, 4 MiB finish_reason each",
                Hostile::LongFinishReasons {
                    choices: 200,
                    reason: 4 * MIB,
                },
                1,
            )
        } else {
            scenario(
                "8 choices, 4 MiB finish_reason each",
                Hostile::LongFinishReasons {
                    choices: 8,
                    reason: 4 * MIB,
                },
                1,
            )
        },
        scenario(
            "json [0,0,...] under the cap",
            Hostile::Zeros {
                wire: zeros,
                object: false,
            },
            1,
        ),
        scenario(
            r#"json {"choices":[0,0,...]} under the cap"#,
            Hostile::Zeros {
                wire: zeros,
                object: true,
            },
            1,
        ),
        // Every `{}` is a choice: at most 4,096 of an event's (or a body's) are read.
        scenario(
            "1 event of {} choices under the line limit",
            Hostile::EmptyChoices {
                line: zeros,
                stream: true,
            },
            1,
        ),
        scenario(
            r#"json {"choices":[{},{},...]} under the cap"#,
            Hostile::EmptyChoices {
                line: zeros,
                stream: false,
            },
            1,
        ),
        // Anthropic (issue #23): content blocks out of order past the state budget, a tool
        // input that never closes (4 MiB: under the content limit, over the tree limit), and
        // 4 MiB of pings.
        scenario(
            "anthropic: 100k blocks, descending",
            Hostile::AnthropicBlocksDescending { blocks: 100_000 },
            1,
        ),
        scenario(
            "anthropic: 4 MiB tool input never closed",
            Hostile::AnthropicOpenToolInput {
                fragments: (4 * MIB / TOOL_FRAGMENT) as u32,
            },
            1,
        ),
        scenario(
            "anthropic: 4 MiB of pings",
            Hostile::AnthropicPings {
                pings: (4 * MIB / ANTHROPIC_PING.len()) as u32,
            },
            1,
        ),
        // Bedrock, Gemini and Ollama (issue #24): binary frames that lie about their lengths,
        // fail their CRCs or flood their headers; a streamed array that never closes, and one
        // element past the limit; an NDJSON line of 100 MiB.
        scenario(
            "bedrock: a frame claiming 4 GiB",
            Hostile::BedrockHugeFrame {
                junk: if full { 256 * MIB } else { 16 * MIB },
            },
            1,
        ),
        scenario(
            "bedrock: bad prelude CRC mid-stream",
            Hostile::BedrockBadCrc {
                deltas: 20_000,
                prelude: true,
            },
            1,
        ),
        scenario(
            "bedrock: bad message CRC mid-stream",
            Hostile::BedrockBadCrc {
                deltas: 20_000,
                prelude: false,
            },
            1,
        ),
        scenario(
            "bedrock: a frame of 5,000 headers",
            Hostile::BedrockHeaderFlood { headers: 5_000 },
            1,
        ),
        scenario(
            "bedrock: a 1 MiB headers section",
            Hostile::BedrockHugeHeaders,
            1,
        ),
        scenario(
            "gemini: 16 MiB array never closed",
            Hostile::GeminiOpenArray {
                elements: if full { 640_000 } else { 64_000 },
            },
            1,
        ),
        scenario(
            "gemini: one 12 MiB array element",
            Hostile::GeminiHugeElement { text: 12 * MIB },
            1,
        ),
        scenario(
            "ollama: one NDJSON line of 100 MiB",
            Hostile::OllamaLongLine {
                content: if full { 1024 * MIB } else { 100 * MIB },
            },
            1,
        ),
    ];
    if full {
        scenarios.extend([
            scenario(
                "16 x json [0,0,...] at once",
                Hostile::Zeros {
                    wire: zeros,
                    object: false,
                },
                16,
            ),
            scenario(
                r#"16 x json {"choices":[0,...]} at once"#,
                Hostile::Zeros {
                    wire: zeros,
                    object: true,
                },
                16,
            ),
        ]);
    }
    scenarios
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
            BodySpec::Hostile(hostile) => Box::new(HostileSource::new(hostile)),
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
// Hostile bodies

/// A body that is one short item repeated, comma-separated, between an opening and a closing.
struct Repeated {
    open: &'static str,
    item: &'static str,
    close: &'static str,
    count: u64,
}

impl Repeated {
    /// As many items as make the body about `wire` bytes.
    fn new(wire: usize, open: &'static str, item: &'static str, close: &'static str) -> Self {
        let room = wire.saturating_sub(open.len() + close.len()) + 1;
        let count = (room / (item.len() + 1)).max(1) as u64;
        Repeated {
            open,
            item,
            close,
            count,
        }
    }

    /// Items a unit holds: a unit is at most [`HOSTILE_FRAME`] bytes.
    fn per_unit(&self) -> u64 {
        (HOSTILE_FRAME / (self.item.len() + 1)) as u64
    }

    /// Units: the opening, the items, the closing.
    fn units(&self) -> u64 {
        self.count.div_ceil(self.per_unit()) + 2
    }

    fn write_unit(&self, k: u64, out: &mut Vec<u8>) {
        let units = self.units();
        match k {
            0 => out.extend_from_slice(self.open.as_bytes()),
            k if k + 1 < units => {
                let from = (k - 1) * self.per_unit();
                let to = self.count.min(k * self.per_unit());
                for _ in from..to {
                    out.extend_from_slice(self.item.as_bytes());
                    out.push(b',');
                }
                if to == self.count {
                    out.pop();
                }
            }
            _ => out.extend_from_slice(self.close.as_bytes()),
        }
    }
}

impl Hostile {
    /// The shape of a body that is one item repeated.
    fn repeated(self) -> Option<Repeated> {
        let (wire, open, item, close) = match self {
            Hostile::Zeros {
                wire,
                object: false,
            } => (wire, "[", "0", "]"),
            Hostile::Zeros { wire, object: true } => (wire, r#"{"choices":["#, "0", "]}"),
            Hostile::EmptyChoices { line, stream: true } => (
                // The event's line is `line` bytes; `[DONE]` follows.
                line + 16,
                r#"data: {"choices":["#,
                "{}",
                "]}\n\ndata: [DONE]\n\n",
            ),
            Hostile::EmptyChoices {
                line,
                stream: false,
            } => (line, r#"{"choices":["#, "{}", "]}"),
            _ => return None,
        };
        Some(Repeated::new(wire, open, item, close))
    }

    /// The body as a sequence of units, each at most [`HOSTILE_FRAME`] bytes: how many.
    fn units(self) -> u64 {
        if let Some(units) = self.provider_units() {
            return units;
        }
        match self {
            // `message_start`, a unit a block, `message_stop`.
            Hostile::AnthropicBlocksDescending { blocks } => return u64::from(blocks) + 2,
            // `message_start` and the block's start, a unit a fragment, the end.
            Hostile::AnthropicOpenToolInput { fragments } => return u64::from(fragments) + 2,
            // `message_start`, the block and its delta; a unit a ping; the end.
            Hostile::AnthropicPings { pings } => return u64::from(pings) + 2,
            _ => {}
        }
        if let Some(repeated) = self.repeated() {
            return repeated.units();
        }
        match self {
            // The event's opening, one unit a choice, its end and `[DONE]`.
            Hostile::OneEventDescending { choices } => u64::from(choices) + 2,
            // One unit a choice (opening or ending its event as needed), then `[DONE]`.
            Hostile::ManyIndices { indices, .. } => u64::from(indices) + 1,
            // A choice's event: its opening, its reason in pieces, its end. Then `[DONE]`.
            Hostile::LongFinishReasons { choices, reason } => {
                u64::from(choices) * (reason.div_ceil(HOSTILE_FRAME) as u64 + 2) + 1
            }
            Hostile::Zeros { .. } | Hostile::EmptyChoices { .. } => unreachable!("repeated"),
            _ => unreachable!("counted above"),
        }
    }

    /// Appends unit `k` of an Anthropic stream to `out`.
    fn write_anthropic_unit(self, k: u64, out: &mut Vec<u8>) {
        let units = self.units();
        if k == 0 {
            out.extend_from_slice(ANTHROPIC_START.as_bytes());
            match self {
                Hostile::AnthropicOpenToolInput { .. } => out.extend_from_slice(
                    br#"event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_1","name":"f","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"a\":["}}

"#,
                ),
                Hostile::AnthropicPings { .. } => out.extend_from_slice(
                    br#"event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x"}}

"#,
                ),
                _ => {}
            }
            return;
        }
        if k + 1 == units {
            out.extend_from_slice(ANTHROPIC_END.as_bytes());
            return;
        }
        match self {
            Hostile::AnthropicBlocksDescending { blocks } => {
                let index = u64::from(blocks) - k;
                write!(
                    out,
                    "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":{index},\"delta\":{{\"type\":\"text_delta\",\"text\":\"x\"}}}}\n\n"
                )
                .expect("in memory");
            }
            Hostile::AnthropicOpenToolInput { .. } => {
                out.extend_from_slice(
                    br#"event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":""#,
                );
                for _ in 0..TOOL_FRAGMENT / 2 {
                    out.extend_from_slice(b"1,");
                }
                out.extend_from_slice(b"\"}}\n\n");
            }
            Hostile::AnthropicPings { .. } => out.extend_from_slice(ANTHROPIC_PING.as_bytes()),
            _ => unreachable!("Anthropic shapes only"),
        }
    }

    /// Appends unit `k` (of [`Hostile::units`]) to `out`.
    fn write_unit(self, k: u64, out: &mut Vec<u8>) {
        const DONE: &[u8] = b"data: [DONE]\n\n";
        const EVENT_OPEN: &[u8] = br#"data: {"choices":["#;
        const EVENT_CLOSE: &[u8] = b"]}\n\n";
        let choice = |out: &mut Vec<u8>, index: u64| {
            write!(out, r#"{{"index":{index},"delta":{{"content":"x"}}}}"#).expect("in memory");
        };
        if let Some(repeated) = self.repeated() {
            return repeated.write_unit(k, out);
        }
        if self.is_anthropic() {
            return self.write_anthropic_unit(k, out);
        }
        if self.provider_units().is_some() {
            return self.write_provider_unit(k, out);
        }
        match self {
            Hostile::OneEventDescending { choices } => {
                let choices = u64::from(choices);
                match k {
                    0 => out.extend_from_slice(EVENT_OPEN),
                    k if k <= choices => {
                        if k > 1 {
                            out.push(b',');
                        }
                        choice(out, choices - k);
                    }
                    _ => {
                        out.extend_from_slice(EVENT_CLOSE);
                        out.extend_from_slice(DONE);
                    }
                }
            }
            Hostile::ManyIndices { indices, per_event } => {
                let (indices, per_event) = (u64::from(indices), u64::from(per_event));
                if k == indices {
                    out.extend_from_slice(DONE);
                    return;
                }
                let at = k % per_event;
                out.extend_from_slice(if at == 0 { EVENT_OPEN } else { b"," });
                choice(out, indices - 1 - k);
                if at + 1 == per_event || k + 1 == indices {
                    out.extend_from_slice(EVENT_CLOSE);
                }
            }
            Hostile::LongFinishReasons { choices, reason } => {
                let per_choice = reason.div_ceil(HOSTILE_FRAME) as u64 + 2;
                let (index, at) = (k / per_choice, k % per_choice);
                if index == u64::from(choices) {
                    out.extend_from_slice(DONE);
                } else if at == 0 {
                    write!(
                        out,
                        r#"data: {{"choices":[{{"index":{index},"delta":{{}},"finish_reason":""#
                    )
                    .expect("in memory");
                } else if at + 1 == per_choice {
                    out.extend_from_slice(b"\"}]}\n\n");
                } else {
                    let written = (at as usize - 1) * HOSTILE_FRAME;
                    let len = HOSTILE_FRAME.min(reason - written);
                    out.resize(out.len() + len, b'r');
                }
            }
            Hostile::Zeros { .. } | Hostile::EmptyChoices { .. } => unreachable!("repeated"),
            _ => unreachable!("Anthropic shapes are written above"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Bedrock, Gemini and Ollama hostile bodies (issue #24)

/// A frame made once (frames are written with a bit-by-bit CRC: slow in a debug build).
fn cached(cell: &'static OnceLock<Vec<u8>>, make: fn() -> Vec<u8>) -> &'static [u8] {
    cell.get_or_init(make)
}

fn bedrock_delta(text: &str) -> Vec<u8> {
    eventstream::event(
        "contentBlockDelta",
        serde_json::json!({"contentBlockIndex": 0, "delta": {"text": text}}),
    )
}

/// `messageStart`, then a text delta `x`.
fn bedrock_start() -> &'static [u8] {
    static START: OnceLock<Vec<u8>> = OnceLock::new();
    cached(&START, || {
        let mut out = eventstream::event("messageStart", serde_json::json!({"role": "assistant"}));
        out.extend(bedrock_delta("x"));
        out
    })
}

fn bedrock_delta_x() -> &'static [u8] {
    static X: OnceLock<Vec<u8>> = OnceLock::new();
    cached(&X, || bedrock_delta("x"))
}

fn bedrock_delta_y() -> &'static [u8] {
    static Y: OnceLock<Vec<u8>> = OnceLock::new();
    cached(&Y, || bedrock_delta("y"))
}

/// `contentBlockStop`, `messageStop` (`end_turn`) and `metadata` (10 + 5 tokens).
fn bedrock_end() -> &'static [u8] {
    static END: OnceLock<Vec<u8>> = OnceLock::new();
    cached(&END, || {
        let mut out = eventstream::event(
            "contentBlockStop",
            serde_json::json!({"contentBlockIndex": 0}),
        );
        out.extend(eventstream::event(
            "messageStop",
            serde_json::json!({"stopReason": "end_turn"}),
        ));
        out.extend(eventstream::event(
            "metadata",
            serde_json::json!({"usage": {"inputTokens": 10, "outputTokens": 5, "totalTokens": 15},
                "metrics": {"latencyMs": 100}}),
        ));
        out
    })
}

/// The frame of [`Hostile::BedrockHugeHeaders`]: a delta whose headers section is about
/// [`HUGE_HEADERS`] bytes, both CRCs right.
fn bedrock_huge_headers() -> &'static [u8] {
    static FRAME: OnceLock<Vec<u8>> = OnceLock::new();
    cached(&FRAME, || {
        let value = "a".repeat(HUGE_HEADERS / 16);
        let names: Vec<String> = (0..16).map(|i| format!("x-pad-{i}")).collect();
        let mut headers = vec![
            (":event-type", "contentBlockDelta"),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ];
        headers.extend(names.iter().map(|name| (name.as_str(), value.as_str())));
        eventstream::frame(
            &headers,
            br#"{"contentBlockIndex":0,"delta":{"text":"HUGE"}}"#,
        )
    })
}

/// One Gemini `GenerateContentResponse` chunk of text `text`, the `n`-th (its usage counts
/// `n` output tokens), `last` with `finishReason: STOP`.
fn gemini_chunk(out: &mut Vec<u8>, text: &str, n: u64, last: bool) {
    let finish = if last {
        r#","finishReason": "STOP""#
    } else {
        ""
    };
    write!(
        out,
        r#"{{"candidates": [{{"content": {{"parts": [{{"text": "{text}"}}],"role": "model"}}{finish},"index": 0}}],"usageMetadata": {{"promptTokenCount": 9,"candidatesTokenCount": {n},"totalTokenCount": {}}},"modelVersion": "gemini-2.5-flash","responseId": "hostile-gemini"}}"#,
        n + 9
    )
    .expect("in memory");
}

/// The opening of an Ollama chat line, up to its content.
const OLLAMA_LINE_HEAD: &str = r#"{"model":"llama3.2","created_at":"2026-01-01T00:00:00.000000Z","message":{"role":"assistant","content":""#;
/// The end of an Ollama chat line after its content.
const OLLAMA_LINE_TAIL: &str = "\"},\"done\":false}\n";
/// The final line of an Ollama chat stream.
const OLLAMA_LAST_LINE: &str = "{\"model\":\"llama3.2\",\"created_at\":\"2026-01-01T00:00:01.000000Z\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done_reason\":\"stop\",\"done\":true,\"total_duration\":1000000,\"load_duration\":1000,\"prompt_eval_count\":10,\"prompt_eval_duration\":1000,\"eval_count\":3,\"eval_duration\":1000}\n";

/// Appends `len` bytes of `byte`, in units of at most [`HOSTILE_FRAME`]: piece `k` of them.
fn filler_piece(out: &mut Vec<u8>, len: usize, k: u64, byte: u8) {
    let written = k as usize * HOSTILE_FRAME;
    let piece = HOSTILE_FRAME.min(len.saturating_sub(written));
    out.resize(out.len() + piece, byte);
}

impl Hostile {
    /// How many units a Bedrock, Gemini or Ollama body has (`None` for the others).
    fn provider_units(self) -> Option<u64> {
        let pieces = |len: usize| len.div_ceil(HOSTILE_FRAME) as u64;
        Some(match self {
            // The start, the lying prelude, the junk.
            Hostile::BedrockHugeFrame { junk } => 2 + pieces(junk),
            // `messageStart`, a unit a delta, the end.
            Hostile::BedrockBadCrc { deltas, .. } => u64::from(deltas) + 2,
            // The start, the flood, a delta, the end.
            Hostile::BedrockHeaderFlood { .. } => 4,
            // The start, the big frame in pieces, a delta, the end.
            Hostile::BedrockHugeHeaders => 3 + pieces(bedrock_huge_headers().len()),
            Hostile::GeminiOpenArray { elements } => u64::from(elements),
            // The first chunk, the big chunk's opening, its text, its end, the last chunk.
            Hostile::GeminiHugeElement { text } => 4 + pieces(text),
            // The first line and the long line's opening, its content, its end and the last.
            Hostile::OllamaLongLine { content } => 2 + pieces(content),
            _ => return None,
        })
    }

    /// Appends unit `k` of a Bedrock, Gemini or Ollama body to `out`.
    fn write_provider_unit(self, k: u64, out: &mut Vec<u8>) {
        let units = self.units();
        match self {
            Hostile::BedrockHugeFrame { junk } => match k {
                0 => out.extend_from_slice(bedrock_start()),
                1 => out.extend(eventstream::prelude(u32::MAX, 0)),
                k => filler_piece(out, junk, k - 2, 0),
            },
            Hostile::BedrockBadCrc { deltas, prelude } => match k {
                0 => out.extend(eventstream::event(
                    "messageStart",
                    serde_json::json!({"role": "assistant"}),
                )),
                k if k + 1 == units => out.extend_from_slice(bedrock_end()),
                k => {
                    let at = out.len();
                    out.extend_from_slice(bedrock_delta_x());
                    if k == u64::from(deltas / 2) + 1 {
                        // Byte 8 is the prelude's CRC; the last, the message's.
                        let byte = if prelude { at + 8 } else { out.len() - 1 };
                        out[byte] ^= 0x5A;
                    }
                }
            },
            Hostile::BedrockHeaderFlood { headers } => match k {
                0 => out.extend_from_slice(bedrock_start()),
                1 => {
                    let names: Vec<String> = (0..headers).map(|i| format!("h{i}")).collect();
                    let mut all = vec![
                        (":event-type", "contentBlockDelta"),
                        (":content-type", "application/json"),
                        (":message-type", "event"),
                    ];
                    all.extend(names.iter().map(|name| (name.as_str(), "v")));
                    out.extend(eventstream::frame(
                        &all,
                        br#"{"contentBlockIndex":0,"delta":{"text":"FLOOD"}}"#,
                    ));
                }
                2 => out.extend_from_slice(bedrock_delta_y()),
                _ => out.extend_from_slice(bedrock_end()),
            },
            Hostile::BedrockHugeHeaders => match k {
                0 => out.extend_from_slice(bedrock_start()),
                k if k + 2 == units => out.extend_from_slice(bedrock_delta_y()),
                k if k + 1 == units => out.extend_from_slice(bedrock_end()),
                k => {
                    let frame = bedrock_huge_headers();
                    let from = (k as usize - 1) * HOSTILE_FRAME;
                    out.extend_from_slice(&frame[from..frame.len().min(from + HOSTILE_FRAME)]);
                }
            },
            Hostile::GeminiOpenArray { .. } => {
                out.extend_from_slice(if k == 0 { b"[" } else { b"\r\n," });
                gemini_chunk(out, "x", k + 1, false);
            }
            Hostile::GeminiHugeElement { text } => match k {
                0 => {
                    out.push(b'[');
                    gemini_chunk(out, "x", 1, false);
                }
                1 => {
                    out.extend_from_slice(b"\r\n,");
                    out.extend_from_slice(br#"{"candidates": [{"content": {"parts": [{"text": ""#);
                }
                k if k + 2 == units => {
                    out.extend_from_slice(br#""}],"role": "model"},"index": 0}]}"#)
                }
                k if k + 1 == units => {
                    out.extend_from_slice(b"\r\n,");
                    gemini_chunk(out, "z", 3, true);
                    out.extend_from_slice(b"]");
                }
                k => filler_piece(out, text, k - 2, b'y'),
            },
            Hostile::OllamaLongLine { content } => match k {
                0 => {
                    out.extend_from_slice(OLLAMA_LINE_HEAD.as_bytes());
                    out.extend_from_slice(b"Hi");
                    out.extend_from_slice(OLLAMA_LINE_TAIL.as_bytes());
                    out.extend_from_slice(OLLAMA_LINE_HEAD.as_bytes());
                }
                k if k + 1 == units => {
                    out.extend_from_slice(OLLAMA_LINE_TAIL.as_bytes());
                    out.extend_from_slice(OLLAMA_LAST_LINE.as_bytes());
                }
                k => filler_piece(out, content, k - 1, b'x'),
            },
            _ => unreachable!("Bedrock, Gemini and Ollama shapes only"),
        }
    }
}

/// The opening of every Anthropic hostile stream.
const ANTHROPIC_START: &str = r#"event: message_start
data: {"type":"message_start","message":{"id":"msg_hostile","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":10,"output_tokens":1}}}

"#;

/// The end of every Anthropic hostile stream.
const ANTHROPIC_END: &str = r#"event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":5}}

event: message_stop
data: {"type":"message_stop"}

"#;

/// One `ping` event, as Anthropic sends it.
pub const ANTHROPIC_PING: &str = "event: ping\ndata: {\"type\": \"ping\"}\n\n";

/// A hostile body, unit by unit, in frames of at least [`HOSTILE_FRAME`] bytes.
struct HostileSource {
    spec: Hostile,
    next: u64,
    units: u64,
    /// Where a frame is written before it is copied out at its exact size (a frame that kept
    /// spare capacity would make whoever holds it look larger).
    scratch: Vec<u8>,
}

impl HostileSource {
    fn new(spec: Hostile) -> Self {
        HostileSource {
            spec,
            next: 0,
            units: spec.units(),
            scratch: Vec::new(),
        }
    }
}

impl FrameSource for HostileSource {
    fn next_frame(&mut self, _content: &mut Digest) -> Option<Vec<u8>> {
        if self.next == self.units {
            return None;
        }
        self.scratch.clear();
        while self.next < self.units && self.scratch.len() < HOSTILE_FRAME {
            self.spec.write_unit(self.next, &mut self.scratch);
            self.next += 1;
        }
        Some(self.scratch.clone())
    }
}

// ---------------------------------------------------------------------------------------------
// One call, with or without the layer

const REQUEST: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a storyteller."},{"role":"user","content":"Tell me a very, very long story."}],"stream":true,"stream_options":{"include_usage":true},"temperature":0.7}"#;

/// The request of the Anthropic shapes.
const ANTHROPIC_REQUEST: &str = r#"{"model":"claude-sonnet-4-5","max_tokens":1024,"system":"You are a storyteller.","messages":[{"role":"user","content":"Tell me a very, very long story."}],"stream":true}"#;

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
            Ok::<_, Infallible>(
                Response::builder()
                    .header(http::header::CONTENT_TYPE, spec.content_type())
                    .body(LazyBody::new(spec, served))
                    .expect("valid response"),
            )
        }
    })
}

/// Sends the request and reads the response body to its end, dropping each frame after
/// counting and checksumming it.
async fn drive<S, B>(service: S, spec: BodySpec) -> Digest
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let (uri, body) = spec.api().request();
    let request = Request::post(uri)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
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
                services
                    .into_iter()
                    .map(|service| drive(service, scenario.body)),
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
                let calls = services
                    .into_iter()
                    .map(|service| drive(service, scenario.body));
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
    /// The payload of a one-call scenario, after asserting what every such call must show:
    /// both clients got exactly the bytes served, both runs served the same body, and the call
    /// ended in one payload, a success with HTTP 200.
    pub fn checked_payload(&self) -> &LlmCall {
        let name = self.scenario.name;
        for run in [&self.without_layer, &self.with_layer] {
            assert!(
                run.intact(),
                "{name}: the client got other bytes than were served: {:?} != {:?}",
                run.received,
                run.served
            );
        }
        assert_eq!(
            self.without_layer.first().wire,
            self.with_layer.first().wire,
            "{name}: both runs serve the same body"
        );
        assert_eq!(
            self.with_layer.payloads.len(),
            1,
            "{name}: exactly one payload"
        );
        let call = &self.with_layer.payloads[0];
        assert_eq!(call.status, CallStatus::Success, "{name}: {:?}", call.error);
        assert_eq!(call.http_status, Some(200), "{name}");
        call
    }

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
    let mut source = LazyBody::new(scenario.body, Arc::new(Mutex::new(Served::default())));
    let base = alloc_meter::reset_peak();
    let mut decoder = BodyDecoder::new(
        scenario.body.api().endpoint(),
        Some(scenario.body.content_type()),
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

fn seconds(time: Duration) -> String {
    format!("{:.3} s", time.as_secs_f64())
}

fn times(elapsed: &Elapsed) -> String {
    let cpu = elapsed.cpu.map_or_else(|| "-".to_owned(), seconds);
    format!("{} / {cpu}", seconds(elapsed.wall))
}

/// A table of measured hostile scenarios: wire size a call, the heap the layer adds at its
/// peak (and as a multiple of the response limit), wall / CPU time without and with the
/// layer, whether the payloads say `truncated`, and the heap kept after (the payloads).
pub fn hostile_table(rows: &[Measured]) -> String {
    let mut out = format!(
        "{:<42} {:>13} {:>11} {:>11} {:>7} {:>19} {:>19} {:>9} {:>11}\n",
        "scenario",
        "calls",
        "wire/call",
        "layer adds",
        "/limit",
        "no layer wall/cpu",
        "layer wall/cpu",
        "truncated",
        "kept after",
    );
    for row in rows {
        let truncated = row
            .with_layer
            .payloads
            .iter()
            .filter(|c| c.truncated)
            .count();
        let truncated = match truncated {
            0 => "no".to_owned(),
            n if n == row.with_layer.payloads.len() => "yes".to_owned(),
            n => format!("{n} of {}", row.with_layer.payloads.len()),
        };
        let calls = match row.with_layer.dropped {
            0 => row.scenario.calls.to_string(),
            dropped => format!("{} ({dropped} drop)", row.scenario.calls),
        };
        out.push_str(&format!(
            "{:<42} {:>13} {:>11} {:>11} {:>6.2}x {:>19} {:>19} {:>9} {:>11}\n",
            row.scenario.name,
            calls,
            mib(row.with_layer.first().wire.bytes as usize),
            mib(row.layer_peak()),
            row.layer_peak() as f64 / row.scenario.response_limit as f64,
            times(&row.without_layer.time),
            times(&row.with_layer.time),
            truncated,
            mib(row.with_layer.heap.retained),
        ));
    }
    out.push_str(
        "layer adds: peak heap with the layer - without (all calls of the row at once); \
         /limit: that over the response limit;\nwall/cpu: the run's wall time and the process's \
         CPU time; kept after: heap live after the run (the payloads in the memory sink);\n\
         (n drop): payloads the dispatcher dropped, its queue full (queue_bytes, 64 MiB by default).\n",
    );
    out
}
