//! Decoder micro benchmarks on recorded traffic: time and allocations per SSE event for OpenAI
//! chat, tool-call and Responses API streams and Anthropic Messages text, tool-use and thinking
//! streams (one frame per event, as on the wire), request decoding, non-stream response
//! decoding, and writing a payload as the JSONL sink does.
//!
//! `cargo bench --bench decode` (needs `../shared/fixtures/openai-recorded` and
//! `../shared/fixtures/provider-recorded`, or `$LLM_OBS_FIXTURES` / `$LLM_OBS_PROVIDER_FIXTURES`).

#[path = "../tests/support/mod.rs"]
#[allow(unused)]
mod support;

use bytes::Bytes;
use divan::counter::{BytesCount, ItemsCount};
use divan::{AllocProfiler, Bencher};
use llm_observability::internals::{decode_request, BodyDecoder};
use llm_observability::{Endpoint, LlmCall};
use support::Interaction;

#[global_allocator]
static ALLOC: AllocProfiler = AllocProfiler::system();

fn main() {
    divan::main();
}

fn recorded(file: &str, index: usize) -> Interaction {
    support::load_interactions()
        .expect("benchmarks need the recorded fixtures")
        .into_iter()
        .find(|i| i.file.contains(file) && i.index == index)
        .unwrap_or_else(|| panic!("fixture {file}#{index} not found"))
}

/// A recorded stream cut into one frame per event (SSE event, NDJSON line, event-stream frame).
struct Stream {
    endpoint: Endpoint,
    content_type: &'static str,
    frames: Vec<Bytes>,
}

/// A recorded provider stream (a file under `provider-recorded`, interaction 0).
fn recorded_provider(file: &str) -> Interaction {
    support::load_provider_interactions()
        .expect("benchmarks need the recorded provider fixtures")
        .into_iter()
        .map(|p| p.interaction)
        .find(|i| i.file.contains(file) && i.index == 0)
        .unwrap_or_else(|| panic!("fixture {file} not found"))
}

fn stream(kind: &str) -> Stream {
    let anthropic = match kind {
        "anthropic_text" => Some("test_anthropic_message_streaming_legacy"),
        "anthropic_tool_use" => Some("test_anthropic_tools_streaming_legacy"),
        "anthropic_thinking" => Some("test_anthropic_thinking_streaming_legacy"),
        _ => None,
    };
    if let Some(file) = anthropic {
        let body = recorded_provider(file).response_body;
        let frames = body
            .split_inclusive("\n\n")
            .map(|event| Bytes::copy_from_slice(event.as_bytes()))
            .collect();
        return Stream {
            endpoint: Endpoint::AnthropicMessages,
            content_type: "text/event-stream",
            frames,
        };
    }
    match kind {
        // Gemini's `?alt=sse` streams end events with `\r\n\r\n`.
        "gemini_text" | "gemini_reasoning" => {
            let file = if kind == "gemini_text" {
                "test_instrumentation/test_streaming_text_content.yaml"
            } else {
                "test_instrumentation/test_streaming_reasoning.yaml"
            };
            let body = recorded_provider(file).response_body;
            let frames = body
                .split_inclusive("\r\n\r\n")
                .map(|event| Bytes::copy_from_slice(event.as_bytes()))
                .collect();
            return Stream {
                endpoint: Endpoint::GeminiStreamGenerateContent,
                content_type: "text/event-stream",
                frames,
            };
        }
        "ollama_chat" => {
            let body = recorded_provider("test_ollama_streaming_chat_legacy.yaml").response_body;
            let frames = body
                .split_inclusive('\n')
                .map(|line| Bytes::copy_from_slice(line.as_bytes()))
                .collect();
            return Stream {
                endpoint: Endpoint::OllamaChat,
                content_type: "application/x-ndjson",
                frames,
            };
        }
        "bedrock_tool_use" => {
            let body = recorded_provider("test_anthropic_converse_stream_with_tool_use.yaml");
            let mut body = support::base64_decode(&body.response_body)
                .as_slice()
                .to_vec();
            // One frame per event-stream message: each opens with its total length.
            let mut frames = Vec::new();
            while body.len() >= 4 {
                let length = u32::from_be_bytes([body[0], body[1], body[2], body[3]]) as usize;
                let rest = body.split_off(length.min(body.len()));
                frames.push(Bytes::from(std::mem::replace(&mut body, rest)));
            }
            return Stream {
                endpoint: Endpoint::BedrockConverseStream,
                content_type: "application/vnd.amazon.eventstream",
                frames,
            };
        }
        _ => {}
    }
    let (file, index, endpoint) = match kind {
        "chat" => (
            "test_streaming_with_api_usage_capture",
            0,
            Endpoint::ChatCompletions,
        ),
        "tool_calls" => (
            "test_open_ai_function_calls_tools_streaming_parallel",
            0,
            Endpoint::ChatCompletions,
        ),
        "responses" => ("test_responses_streaming", 0, Endpoint::Responses),
        other => panic!("{other}"),
    };
    let body = recorded(file, index).response_body;
    let frames = body
        .split_inclusive("\n\n")
        .map(|event| Bytes::copy_from_slice(event.as_bytes()))
        .collect();
    Stream {
        endpoint,
        content_type: "text/event-stream",
        frames,
    }
}

#[divan::bench(args = [
    "chat",
    "tool_calls",
    "responses",
    "anthropic_text",
    "anthropic_tool_use",
    "anthropic_thinking",
    "gemini_text",
    "gemini_reasoning",
    "ollama_chat",
    "bedrock_tool_use",
])]
fn sse_parse_and_assemble_per_event(bencher: Bencher, kind: &str) {
    let stream = stream(kind);
    let bytes: usize = stream.frames.iter().map(Bytes::len).sum();
    bencher
        .counter(ItemsCount::new(stream.frames.len()))
        .counter(BytesCount::new(bytes))
        .bench(|| {
            let mut decoder = BodyDecoder::new(stream.endpoint, Some(stream.content_type), 8 << 20);
            for frame in &stream.frames {
                decoder.feed(frame);
            }
            decoder.finish()
        });
}

#[divan::bench]
fn request_decode(bencher: Bencher) {
    let body = recorded("test_tool_calls.yaml", 0).request_body;
    bencher
        .counter(BytesCount::new(body.len()))
        .bench(|| decode_request(divan::black_box(body.as_bytes())));
}

#[divan::bench]
fn non_stream_response_decode(bencher: Bencher) {
    let body = Bytes::from(recorded("test_tool_calls.yaml", 0).response_body);
    bencher.counter(BytesCount::new(body.len())).bench(|| {
        let mut decoder =
            BodyDecoder::new(Endpoint::ChatCompletions, Some("application/json"), 8 << 20);
        decoder.feed(&body);
        decoder.finish()
    });
}

/// One payload (the recorded tool-call request and response) written as a JSONL line.
#[divan::bench]
fn payload_to_jsonl_line(bencher: Bencher) {
    let interaction = recorded("test_tool_calls.yaml", 0);
    let mut decoder =
        BodyDecoder::new(Endpoint::ChatCompletions, Some("application/json"), 8 << 20);
    decoder.feed(&Bytes::from(interaction.response_body));
    let mut call = LlmCall::new(Endpoint::ChatCompletions);
    call.server_address = Some("api.openai.com".to_owned());
    call.request = decode_request(interaction.request_body.as_bytes()).expect("recorded request");
    call.response = decoder.finish();
    call.finish_reasons = vec!["tool_calls".to_owned()];
    call.timing.duration_ms = 812.5;
    let mut line = Vec::with_capacity(4096);
    bencher.bench_local(|| {
        line.clear();
        serde_json::to_writer(&mut line, divan::black_box(&call)).expect("serializable");
        line.push(b'\n');
        line.len()
    });
}
