//! The offline demo: `cargo run --example demo`.
//!
//! ```text
//!  hyper client ──► gateway (axum on 127.0.0.1)                       ──► mock OpenAI, Anthropic,
//!  span demo.call     TraceLayer: span `request`                            Gemini, Bedrock
//!                                                                            (examples/support/
//!                       LlmObservabilityLayer: span `gen_ai`, LlmCall ──►    mock_upstream.rs)
//!                         forwarder (hyper-util client, streamed)            upstream; JsonlSink +
//!                                                                             MemorySink
//! ```
//!
//! Makes a round of calls through the gateway — a streamed chat that calls a tool, a streamed
//! chat answer, a plain chat, embeddings, a Responses API stream, a legacy completion, a streamed
//! Anthropic Messages call (prompt cache write, a tool call), a Gemini stream with thinking, a
//! Bedrock `converse-stream` with a tool call, a 404 and one non-LLM call — then
//! prints one row per recorded call, the span tree, the dispatcher's
//! counters and where the JSONL payloads went. Nothing leaves 127.0.0.1. Exits non-zero when a
//! call was not recorded as expected.

#[path = "../src/bin/llm-observability-proxy/forward.rs"]
mod forward;
#[path = "support/mock_upstream.rs"]
mod mock_upstream;

use std::collections::BTreeMap;
use std::num::NonZeroU64;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::serve::ListenerExt;
use axum::Router;
use bytes::Bytes;
use forward::{BoxError, Forward, Upstream};
use http::Method;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use llm_observability::{
    CallStatus, Endpoint, JsonlSink, LlmCall, LlmObservabilityLayer, MemorySink, ModelPrice,
    Pricing,
};
use serde_json::{json, Value};
use tower::Service;
use tower_http::trace::TraceLayer;
use tracing::Instrument;
use tracing_subscriber::layer::{Layer as _, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// Where the payloads go, one JSON line per call (truncated at start).
const JSONL: &str = "llm-calls.jsonl";
/// Request header naming the demo call; the layer copies it into `LlmCall::metadata`.
const CALL_HEADER: &str = "x-demo-call";
/// Request header carrying the caller's span id to the gateway. Client and gateway share one
/// process and one subscriber, so the id is all the gateway needs to parent its spans under the
/// caller's; across processes this is what W3C `traceparent` (tracing-opentelemetry) does.
const PARENT_SPAN_HEADER: &str = "x-demo-parent-span";

/// One call the demo makes, and what the layer should record for it (`None`: nothing).
struct DemoCall {
    label: &'static str,
    method: Method,
    path: &'static str,
    body: Value,
    expect: Option<Expect>,
}

struct Expect {
    endpoint: Endpoint,
    status: CallStatus,
    http_status: u16,
    usage: bool,
    ttft: bool,
}

fn demo_calls() -> Vec<DemoCall> {
    let weather_tool = json!([{"type": "function", "function": {"name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}},
                       "required": ["location"]}}}]);
    let post = |label, path, body, endpoint, http_status, usage, ttft| DemoCall {
        label,
        method: Method::POST,
        path,
        body,
        expect: Some(Expect {
            endpoint,
            status: if http_status < 400 {
                CallStatus::Success
            } else {
                CallStatus::Error
            },
            http_status,
            usage,
            ttft,
        }),
    };
    use Endpoint::*;
    vec![
        post(
            "chat, streamed, tool call + usage",
            "/v1/chat/completions",
            json!({"model": "gpt-4o-mini", "stream": true, "stream_options": {"include_usage": true},
                   "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
                   "tools": weather_tool}),
            ChatCompletions,
            200,
            true,
            true,
        ),
        post(
            "chat, streamed text + usage",
            "/v1/chat/completions",
            json!({"model": "gpt-4o-mini", "stream": true, "stream_options": {"include_usage": true},
                   "temperature": 0.2,
                   "messages": [{"role": "user", "content": "Tell me about tracing"}]}),
            ChatCompletions,
            200,
            true,
            true,
        ),
        post(
            "chat, not streamed",
            "/v1/chat/completions",
            json!({"model": "gpt-4o", "max_tokens": 64,
                   "messages": [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "Explain spans"}]}),
            ChatCompletions,
            200,
            true,
            false,
        ),
        post(
            "embeddings",
            "/v1/embeddings",
            json!({"model": "text-embedding-3-small",
                   "input": ["observability for LLM calls", "tower layers"]}),
            Embeddings,
            200,
            true,
            false,
        ),
        post(
            "responses, streamed",
            "/v1/responses",
            json!({"model": "gpt-4.1", "stream": true, "input": "Write about unicorns"}),
            Responses,
            200,
            true,
            true,
        ),
        post(
            "legacy completion",
            "/v1/completions",
            json!({"model": "gpt-3.5-turbo-instruct", "prompt": "Say something about Rust",
                   "max_tokens": 16}),
            Completions,
            200,
            true,
            false,
        ),
        post(
            "anthropic messages, streamed, tool",
            "/v1/messages",
            json!({"model": "claude-haiku-4-5", "max_tokens": 256, "stream": true,
                   "system": [{"type": "text", "text": "You are a weather assistant. Answer in one sentence.",
                               "cache_control": {"type": "ephemeral"}}],
                   "messages": [{"role": "user", "content": "What is the weather in Oslo?"}],
                   "tools": [{"name": "get_weather", "description": "Current weather in a city",
                              "input_schema": {"type": "object",
                                               "properties": {"location": {"type": "string"}},
                                               "required": ["location"]}}]}),
            AnthropicMessages,
            200,
            true,
            true,
        ),
        post(
            "gemini stream, thinking",
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
            json!({"contents": [{"role": "user", "parts": [{"text": "Why do tower layers compose?"}]}],
                   "generationConfig": {"temperature": 0.3,
                                        "thinkingConfig": {"includeThoughts": true}}}),
            GeminiStreamGenerateContent,
            200,
            true,
            true,
        ),
        post(
            "bedrock converse-stream, tool",
            "/model/us.amazon.nova-2-lite-v1%3A0/converse-stream",
            json!({"messages": [{"role": "user", "content": [{"text": "What is the weather in Lima?"}]}],
                   "inferenceConfig": {"maxTokens": 256},
                   "toolConfig": {"tools": [{"toolSpec": {"name": "get_weather",
                       "description": "Current weather in a city",
                       "inputSchema": {"json": {"type": "object",
                                                "properties": {"location": {"type": "string"}},
                                                "required": ["location"]}}}}]}}),
            BedrockConverseStream,
            200,
            true,
            true,
        ),
        post(
            "unknown model",
            "/v1/chat/completions",
            json!({"model": "does-not-exist", "messages": [{"role": "user", "content": "hi"}]}),
            ChatCompletions,
            404,
            false,
            false,
        ),
        DemoCall {
            label: "list models (not an LLM call)",
            method: Method::GET,
            path: "/v1/models",
            body: Value::Null,
            expect: None,
        },
    ]
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let tree = SpanTree::default();
    tracing_subscriber::registry()
        .with(tree.clone())
        .with(
            tracing_subscriber::fmt::layer()
                .with_filter(tracing_subscriber::filter::LevelFilter::WARN),
        )
        .init();

    // The upstream, and the layer: every call to both sinks.
    let upstream = mock_upstream::start().await?;
    std::fs::write(JSONL, "")?; // each run shows only its own calls
    let memory = MemorySink::new();
    let layer = LlmObservabilityLayer::builder()
        .sink(JsonlSink::create(JSONL)?)
        .sink(memory.clone())
        .capture_header(CALL_HEADER, "demo_call")
        // The built-in tables hold OpenAI's and Anthropic's prices; Gemini's and Bedrock's come
        // from LiteLLM's price file in production (`Pricing::load_litellm`). These two are the
        // list prices that file gives (USD per 1M tokens: input, cache read, output).
        .pricing(
            Pricing::built_in()
                .with_price(
                    "gemini-2.5-flash",
                    ModelPrice::per_million(0.30, Some(0.03), 2.50),
                )
                .with_price(
                    "us.amazon.nova-2-lite-v1:0",
                    ModelPrice::per_million(0.33, Some(0.0825), 2.75),
                ),
        )
        .build()?;

    // The gateway: TraceLayer outside, our layer inside, then the streaming forwarder.
    let forward = Forward::new(Upstream::parse(
        &format!("http://{}", upstream.addr).parse()?,
    )?)?;
    let gateway = Router::new()
        .fallback(any(forward_to_upstream))
        .with_state(forward)
        .layer(layer.clone())
        .layer(TraceLayer::new_for_http().make_span_with(request_span));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let gateway_addr = listener.local_addr()?;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true); // pass each SSE event on at once
    });
    tokio::spawn(async move { axum::serve(listener, gateway).await });
    println!("mock upstream   {}", upstream.base_url());
    println!("gateway         http://{gateway_addr}/v1  (TraceLayer > LlmObservabilityLayer > forwarder)\n");

    // The calls, each in a caller span, each body read to its end.
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client = Client::builder(TokioExecutor::new()).build::<_, Full<Bytes>>(connector);
    let calls = demo_calls();
    for (n, call) in (1..).zip(&calls) {
        let span = tracing::info_span!("demo.call", n, label = call.label);
        let mut request = http::Request::builder()
            .method(call.method.clone())
            .uri(format!("http://{gateway_addr}{}", call.path))
            .header(CALL_HEADER, n.to_string());
        // Each API's own credentials; none is ever recorded.
        request = if call.path == "/v1/messages" {
            (request.header("x-api-key", "sk-ant-demo-never-recorded"))
                .header("anthropic-version", "2023-06-01")
        } else if call.path.starts_with("/v1beta/") {
            request.header("x-goog-api-key", "AIza-demo-never-recorded")
        } else if call.path.starts_with("/model/") {
            // What a SigV4-signing client sends (the signature is not checked here).
            (request.header("x-amz-date", "20261206T120000Z"))
                .header("x-amz-security-token", "demo-session-token-never-recorded")
                .header(
                    "authorization",
                    "AWS4-HMAC-SHA256 Credential=AKIADEMO/20261206/us-east-1/bedrock/aws4_request, \
                     SignedHeaders=host;x-amz-date, Signature=never-recorded",
                )
        } else {
            request.header("authorization", "Bearer sk-demo-never-recorded")
        };
        if let Some(id) = span.id() {
            request = request.header(PARENT_SPAN_HEADER, id.into_u64().to_string());
        }
        let body = match &call.body {
            Value::Null => Bytes::new(),
            body => {
                request = request.header("content-type", "application/json");
                Bytes::from(body.to_string())
            }
        };
        let request = request.body(Full::new(body))?;
        let (status, bytes) = async {
            let response = client.request(request).await?;
            let status = response.status();
            let bytes = response.into_body().collect().await?.to_bytes();
            Ok::<_, BoxError>((status, bytes.len()))
        }
        .instrument(span)
        .await?;
        println!(
            "  #{n:<2} {:<35} {:<4} {:<21} -> {status}, {bytes} bytes",
            call.label,
            call.method.as_str(),
            call.path
        );
    }

    // Deliver every payload, then look at what was recorded.
    layer.dispatcher().shutdown(Duration::from_secs(5)).await?;
    let recorded = memory.calls();
    print_calls(&recorded);
    println!("\nSpans: the caller's `demo.call` > tower-http's `request` > the layer's `gen_ai` > `forward`.");
    println!("(`forward` ends with the response head; `gen_ai` and `request` with the body's last byte.)");
    tree.print();
    let stats = layer.dispatcher().stats();
    println!("\nDispatcher: {} calls observed", stats.observed);
    for sink in &stats.sinks {
        println!(
            "  {:<7} delivered {}, dropped {}, failed {}",
            sink.name, sink.delivered, sink.dropped, sink.failed
        );
    }
    let jsonl = std::fs::read_to_string(JSONL)?;
    let lines = jsonl.lines().count();
    let path = Path::new(JSONL).canonicalize()?;
    println!(
        "Payloads: {} ({lines} lines; try `jq . {JSONL}`)",
        path.display()
    );

    upstream.shutdown().await;
    check(&calls, &recorded, &jsonl)
}

/// The gateway's only handler: forward to the upstream inside a `forward` span.
async fn forward_to_upstream(State(mut forward): State<Forward>, request: Request) -> Response {
    let span = tracing::info_span!("forward", path = request.uri().path());
    match forward.call(request).instrument(span).await {
        Ok(response) => response.into_response(),
        Err(error) => (
            http::StatusCode::BAD_GATEWAY,
            format!("upstream unreachable: {error}"),
        )
            .into_response(),
    }
}

/// tower-http's `request` span, parented under the caller's span when the caller named it.
fn request_span(request: &Request) -> tracing::Span {
    let parent = (request.headers().get(PARENT_SPAN_HEADER))
        .and_then(|value| value.to_str().ok()?.parse().ok())
        .and_then(NonZeroU64::new)
        .map(tracing::Id::from_non_zero_u64);
    tracing::info_span!(parent: parent, "request", method = %request.method(), uri = %request.uri())
}

/// (a) One row per recorded call, then what came back.
fn print_calls(recorded: &[Arc<LlmCall>]) {
    let dash = || "-".to_owned();
    let count = |value: Option<u64>| value.map_or_else(dash, |v| v.to_string());
    let millis = |value: Option<f64>| value.map_or_else(dash, |v| format!("{v:.1}"));
    println!("\nRecorded calls ({}):", recorded.len());
    println!(
        "  {:<3} {:<31} {:<26} {:<8} {:>4} {:>5} {:>5} {:>8} {:>8} {:>10}",
        "#", "endpoint", "model", "status", "http", "in", "out", "ttft ms", "total ms", "cost $"
    );
    for call in recorded {
        let usage = call.usage.unwrap_or_default();
        let model = (call.response_model.as_deref())
            .or(call.requested_model())
            .unwrap_or("-");
        println!(
            "  {:<3} {:<31} {:<26} {:<8} {:>4} {:>5} {:>5} {:>8} {:>8} {:>10}",
            demo_call(call).unwrap_or("?"),
            call.endpoint.as_str(),
            model,
            call.status.as_str(),
            count(call.http_status.map(u64::from)),
            count(usage.input_tokens),
            count(usage.output_tokens),
            millis(call.timing.time_to_first_token_ms),
            millis(Some(call.timing.duration_ms)),
            (call.cost.as_ref()).map_or_else(dash, |cost| format!("{:.7}", cost.total_usd)),
        );
    }
    println!("\nWhat came back (streams as assembled by the layer):");
    for call in recorded {
        println!("  #{} {}", demo_call(call).unwrap_or("?"), output_of(call));
    }
}

/// The demo call number the layer copied from the `x-demo-call` header.
fn demo_call(call: &LlmCall) -> Option<&str> {
    call.metadata.get("demo_call")?.as_str()
}

/// A one-line summary of a call's output.
fn output_of(call: &LlmCall) -> String {
    if let Some(error) = &call.error {
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        return format!("error {}: {}", text(&error.code), text(&error.message));
    }
    let Some(response) = &call.response else {
        return "(no response)".to_owned();
    };
    let quoted = |v: &Value| format!("{:?}", v.as_str().unwrap_or_default());
    match call.endpoint {
        Endpoint::ChatCompletions => {
            let message = &response["choices"][0]["message"];
            match message["tool_calls"]
                .as_array()
                .and_then(|calls| calls.first())
            {
                Some(tool) => format!(
                    "tool call {}({})",
                    tool["function"]["name"].as_str().unwrap_or("?"),
                    tool["function"]["arguments"].as_str().unwrap_or("")
                ),
                None => quoted(&message["content"]),
            }
        }
        Endpoint::Completions => quoted(&response["choices"][0]["text"]),
        Endpoint::Responses => quoted(&response["output"][0]["content"][0]["text"]),
        Endpoint::Embeddings => {
            let count = response["data"].as_array().map_or(0, Vec::len);
            format!("{count} embeddings (the payload keeps no vectors, only their count and usage)")
        }
        Endpoint::AnthropicMessages => {
            // The Message's content blocks, in order: text, then a tool call.
            let blocks = response["content"].as_array().into_iter().flatten();
            let shown: Vec<String> = blocks
                .map(|block| match block["type"].as_str() {
                    Some("text") => quoted(&block["text"]),
                    Some("tool_use") => format!(
                        "tool_use {}({})",
                        block["name"].as_str().unwrap_or("?"),
                        block["input"]
                    ),
                    other => format!("[{} block]", other.unwrap_or("?")),
                })
                .collect();
            let usage = call.usage.unwrap_or_default();
            format!(
                "{} (input tokens incl. cache: {} written, {} read)",
                shown.join(" + "),
                usage.cache_creation_input_tokens.unwrap_or(0),
                usage.cached_input_tokens.unwrap_or(0),
            )
        }
        Endpoint::GeminiStreamGenerateContent => {
            // The candidate's parts, in order: the thought summary, the text.
            let parts = response["candidates"][0]["content"]["parts"].as_array();
            let shown: Vec<String> = (parts.into_iter().flatten())
                .map(|part| match (&part["text"], part["thought"] == true) {
                    (text, true) => format!("thought {}", quoted(text)),
                    (text, false) if text.is_string() => quoted(text),
                    _ => format!("functionCall {}", part["functionCall"]),
                })
                .collect();
            let reasoning = call.usage.and_then(|u| u.reasoning_tokens).unwrap_or(0);
            format!("{} ({reasoning} thinking tokens)", shown.join(" + "))
        }
        Endpoint::BedrockConverseStream => {
            // The Converse message's content blocks: text, then the tool use.
            let blocks = response["output"]["message"]["content"].as_array();
            let shown: Vec<String> = (blocks.into_iter().flatten())
                .map(|block| match block.get("toolUse") {
                    Some(tool) => format!(
                        "toolUse {}({})",
                        tool["name"].as_str().unwrap_or("?"),
                        tool["input"]
                    ),
                    None => quoted(&block["text"]),
                })
                .collect();
            format!(
                "{} (stopReason {})",
                shown.join(" + "),
                response["stopReason"]
            )
        }
        _ => "(an endpoint this demo does not call)".to_owned(),
    }
}

/// Fails the demo (non-zero exit) unless every call was recorded as expected, and only those.
fn check(calls: &[DemoCall], recorded: &[Arc<LlmCall>], jsonl: &str) -> Result<(), BoxError> {
    let mut problems = Vec::new();
    if jsonl.contains("never-recorded") {
        problems.push("a credential reached the JSONL file".to_owned());
    }
    for (n, call) in (1..).zip(calls) {
        let n = n.to_string();
        let found: Vec<_> = recorded
            .iter()
            .filter(|c| demo_call(c) == Some(&n))
            .collect();
        let Some(expect) = &call.expect else {
            if !found.is_empty() {
                problems.push(format!(
                    "#{n} {}: recorded, but is not an LLM call",
                    call.label
                ));
            }
            continue;
        };
        let [got] = found[..] else {
            problems.push(format!(
                "#{n} {}: recorded {} times, not once",
                call.label,
                found.len()
            ));
            continue;
        };
        let mut expect_that = |ok: bool, what: &str| {
            if !ok {
                problems.push(format!("#{n} {}: {what}", call.label));
            }
        };
        expect_that(got.endpoint == expect.endpoint, "wrong endpoint");
        expect_that(got.status == expect.status, "wrong status");
        expect_that(
            got.http_status == Some(expect.http_status),
            "wrong HTTP status",
        );
        expect_that(got.usage.is_some() == expect.usage, "usage (not) recorded");
        expect_that(
            got.timing.time_to_first_token_ms.is_some() == expect.ttft,
            "time to first token (not) recorded",
        );
        expect_that(
            got.response.is_some() || got.error.is_some(),
            "no response recorded",
        );
        let provider = match got.endpoint {
            Endpoint::AnthropicMessages => "anthropic",
            Endpoint::GeminiStreamGenerateContent => "gcp.gemini",
            Endpoint::BedrockConverseStream => "aws.bedrock",
            _ => "openai",
        };
        expect_that(got.provider == provider, "wrong provider");
        if got.endpoint == Endpoint::GeminiStreamGenerateContent {
            let thinking = got.usage.and_then(|u| u.reasoning_tokens);
            expect_that(thinking > Some(0), "thinking tokens not recorded");
        }
        if got.endpoint == Endpoint::BedrockConverseStream {
            let tool = (got.response.as_ref())
                .and_then(|r| r["output"]["message"]["content"][1]["toolUse"]["input"].as_object())
                .and_then(|input| input.get("location"));
            expect_that(
                tool == Some(&json!("Lima")),
                "the tool input was not assembled",
            );
        }
        if got.endpoint == Endpoint::AnthropicMessages {
            let written = got.usage.and_then(|u| u.cache_creation_input_tokens);
            let priced = got.cost.as_ref().map(|c| c.cache_write_usd);
            expect_that(
                written > Some(0) && priced > Some(0.0),
                "prompt cache write not recorded or not priced",
            );
        }
    }
    if problems.is_empty() {
        println!("\nAll {} calls recorded as expected.", recorded.len());
        return Ok(());
    }
    for problem in &problems {
        eprintln!("demo: {problem}");
    }
    Err(format!("{} problem(s) with the recorded calls", problems.len()).into())
}

/// (b) A `tracing_subscriber::Layer` that remembers every span — name, parent, fields, when it
/// opened and closed — and prints them as a tree.
#[derive(Clone, Default)]
struct SpanTree {
    spans: Arc<Mutex<Vec<SpanNode>>>,
}

struct SpanNode {
    name: &'static str,
    parent: Option<usize>,
    fields: BTreeMap<String, String>,
    opened: Instant,
    closed: Option<Instant>,
}

/// Our index of a span, kept in the span's extensions (tracing reuses span ids).
struct NodeIndex(usize);

/// Fields worth showing, in this order; `gen_ai.*` ones go on a line of their own.
const SHOWN: &[&str] = &[
    "n",
    "label",
    "method",
    "uri",
    "path",
    "otel.name",
    "gen_ai.response.model",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.response.finish_reasons",
    "gen_ai.response.time_to_first_chunk",
    "error.type",
];

impl SpanTree {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<SpanNode>> {
        self.spans.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Prints every tree whose root is a `demo.call` span.
    fn print(&self) {
        let spans = self.lock();
        for (index, root) in spans.iter().enumerate() {
            if root.parent.is_none() && root.name == "demo.call" {
                Self::print_node(&spans, index, 1);
            }
        }
    }

    fn print_node(spans: &[SpanNode], index: usize, depth: usize) {
        let node = &spans[index];
        let indent = "  ".repeat(depth);
        let (gen_ai, plain): (Vec<_>, Vec<_>) = (SHOWN.iter())
            .filter_map(|&key| Some((key, node.fields.get(key)?)))
            .partition(|(key, _)| key.starts_with("gen_ai."));
        let plain: Vec<String> = plain.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let took = node.closed.map_or("still open".to_owned(), |closed| {
            format!("{:.1} ms", (closed - node.opened).as_secs_f64() * 1000.0)
        });
        println!("{indent}{} {}  [{took}]", node.name, plain.join(" "));
        // The GenAI fields, wrapped at about 100 columns.
        let mut line = String::new();
        for (key, value) in gen_ai {
            if !line.is_empty() && indent.len() + line.len() + key.len() + value.len() > 96 {
                println!("{indent}    {}", line.trim_end());
                line.clear();
            }
            line.push_str(&format!("{key}={value} "));
        }
        if !line.is_empty() {
            println!("{indent}    {}", line.trim_end());
        }
        for child in (0..spans.len()).filter(|&i| spans[i].parent == Some(index)) {
            Self::print_node(spans, child, depth + 1);
        }
    }
}

struct FieldCollector<'a>(&'a mut BTreeMap<String, String>);

impl tracing::field::Visit for FieldCollector<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        let value = if value.contains(' ') {
            format!("{value:?}")
        } else {
            value.to_owned()
        };
        self.0.insert(field.name().to_owned(), value);
    }
}

impl<S> tracing_subscriber::Layer<S> for SpanTree
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let Some(span) = ctx.span(id) else { return };
        let parent = (span.parent()).and_then(|p| p.extensions().get::<NodeIndex>().map(|i| i.0));
        let mut fields = BTreeMap::new();
        attrs.record(&mut FieldCollector(&mut fields));
        let mut spans = self.lock();
        spans.push(SpanNode {
            name: attrs.metadata().name(),
            parent,
            fields,
            opened: Instant::now(),
            closed: None,
        });
        span.extensions_mut().insert(NodeIndex(spans.len() - 1));
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if let Some(index) = node_index(&ctx, id) {
            values.record(&mut FieldCollector(&mut self.lock()[index].fields));
        }
    }

    fn on_close(&self, id: tracing::span::Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
        if let Some(index) = node_index(&ctx, &id) {
            self.lock()[index].closed = Some(Instant::now());
        }
    }
}

fn node_index<S>(
    ctx: &tracing_subscriber::layer::Context<'_, S>,
    id: &tracing::span::Id,
) -> Option<usize>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let span = ctx.span(id)?;
    let index = span.extensions().get::<NodeIndex>().map(|i| i.0);
    index
}
