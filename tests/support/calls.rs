//! One recorded call through a layer, with extra request headers (e.g. `traceparent`) and
//! `CallMetadata`: what the backend preset suites send.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use llm_observability::{CallMetadata, LlmObservabilityLayer, RequestBody};
use tower::{Service, ServiceBuilder, ServiceExt};

use super::Interaction;

/// Sends `interaction`'s request through `layer` (with `headers` and `metadata` added) to an
/// in-process upstream that reads the request and answers the recorded status, content type
/// and body; reads the response to its end. Flushing the sinks is the caller's.
pub async fn send(
    layer: &LlmObservabilityLayer,
    interaction: &Interaction,
    headers: &[(&str, &str)],
    metadata: Option<CallMetadata>,
) {
    let recorded = interaction.clone();
    let upstream = tower::service_fn(move |request: Request<RequestBody<Full<Bytes>>>| {
        let recorded = recorded.clone();
        async move {
            let _ = request.into_body().collect().await;
            let mut response = Response::builder().status(recorded.status);
            if !recorded.content_type.is_empty() {
                response = response.header(http::header::CONTENT_TYPE, &recorded.content_type);
            }
            Ok::<_, Infallible>(
                response
                    .body(Full::new(Bytes::from(recorded.response_body.clone())))
                    .expect("valid response"),
            )
        }
    });
    let mut service = ServiceBuilder::new().layer(layer.clone()).service(upstream);
    let mut request = Request::builder()
        .method(interaction.method.as_str())
        .uri(&interaction.uri)
        .header(http::header::CONTENT_TYPE, "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut request = request
        .body(Full::new(Bytes::from(interaction.request_body.clone())))
        .expect("valid request");
    if let Some(metadata) = metadata {
        request.extensions_mut().insert(metadata);
    }
    let response = service
        .ready()
        .await
        .expect("ready")
        .call(request)
        .await
        .expect("infallible upstream");
    let _ = response.into_body().collect().await.expect("recorded body");
}

/// What a recorded Anthropic Messages call says, read straight from its recording (the SSE
/// events or the JSON Message) apart from the code under test: the oracle the sink suites
/// compare the backends' read-back with.
#[derive(Debug, Clone)]
pub struct AnthropicExpect {
    pub id: String,
    pub model: String,
    /// Every input token: Anthropic's `input_tokens` plus the cache reads and writes.
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read: u64,
    pub cache_creation: u64,
    pub text: String,
    pub thinking: String,
    /// `(id, name, input)` of each `tool_use` block, its input parsed from the joined
    /// `input_json_delta` fragments.
    pub tool_calls: Vec<(String, String, serde_json::Value)>,
    pub stop_reason: String,
}

impl AnthropicExpect {
    /// Asserts that `message` — a backend's copy of the call's response — is the Message the
    /// recording says: type, id, stop reason, text, thinking, and each tool call's id, name
    /// and input (parsed from its fragments), in order.
    pub fn assert_message(&self, message: &serde_json::Value, label: &str) {
        assert_eq!(message["type"], "message", "{label}: type");
        assert_eq!(message["id"], self.id.as_str(), "{label}: id");
        assert_eq!(
            message["stop_reason"],
            self.stop_reason.as_str(),
            "{label}: stop_reason"
        );
        let blocks = message["content"].as_array().expect("content blocks");
        let joined =
            |key: &str| -> String { blocks.iter().filter_map(|b| b[key].as_str()).collect() };
        assert_eq!(joined("text"), self.text, "{label}: text");
        assert_eq!(joined("thinking"), self.thinking, "{label}: thinking");
        let tool_calls: Vec<(String, String, serde_json::Value)> = blocks
            .iter()
            .filter(|b| b["type"] == "tool_use")
            .map(|b| {
                (
                    b["id"].as_str().unwrap_or("").to_owned(),
                    b["name"].as_str().unwrap_or("").to_owned(),
                    b["input"].clone(),
                )
            })
            .collect();
        assert_eq!(tool_calls, self.tool_calls, "{label}: tool calls");
    }
}

/// One recorded Anthropic call to send through a layer, with its request and expectations.
#[derive(Debug, Clone)]
pub struct AnthropicCase {
    /// `tools` (streamed, two `tool_use` blocks), `thinking` (streamed), `cache-write`
    /// (streamed, cache creation), `cache-read` (not streamed, cache read).
    pub name: &'static str,
    pub interaction: Interaction,
    pub request: serde_json::Value,
    pub expect: AnthropicExpect,
}

impl AnthropicCase {
    pub fn streamed(&self) -> bool {
        self.request["stream"] == true
    }
}

/// The recordings [`anthropic_cases`] picks (traceloop/openllmetry cassettes of real
/// `api.anthropic.com` traffic): file part and interaction index.
const ANTHROPIC_CASES: [(&str, &str, usize); 4] = [
    (
        "tools",
        "test_messages/test_anthropic_tools_streaming_legacy.yaml",
        0,
    ),
    (
        "thinking",
        "test_thinking/test_anthropic_thinking_streaming_legacy.yaml",
        0,
    ),
    (
        "cache-write",
        "test_prompt_caching/test_anthropic_prompt_caching_stream_legacy.yaml",
        0,
    ),
    (
        "cache-read",
        "test_prompt_caching/test_anthropic_prompt_caching_legacy.yaml",
        1,
    ),
];

/// Four recorded Anthropic calls — streamed with tool calls, streamed with thinking, streamed
/// writing the prompt cache, and a JSON one reading it — each with what its recording says;
/// `None` (after the loader's banner) without the provider fixtures.
pub fn anthropic_cases() -> Option<Vec<AnthropicCase>> {
    let all = super::load_provider_interactions()?;
    let cases = ANTHROPIC_CASES
        .iter()
        .map(|(name, file, index)| {
            let found = all
                .iter()
                .find(|p| p.interaction.file.contains(file) && p.interaction.index == *index)
                .unwrap_or_else(|| panic!("no recorded interaction {file}#{index}"));
            let interaction = found.interaction.clone();
            let request = interaction.request_json().expect("a JSON request");
            let expect = read_anthropic(&interaction.response_body);
            AnthropicCase {
                name,
                interaction,
                request,
                expect,
            }
        })
        .collect();
    Some(cases)
}

/// Reads a recorded Messages response (SSE or JSON) the plain way.
fn read_anthropic(body: &str) -> AnthropicExpect {
    use serde_json::Value;
    let mut expect = AnthropicExpect {
        id: String::new(),
        model: String::new(),
        input_tokens: 0,
        output_tokens: 0,
        cache_read: 0,
        cache_creation: 0,
        text: String::new(),
        thinking: String::new(),
        tool_calls: Vec::new(),
        stop_reason: String::new(),
    };
    let count = |usage: &Value, key: &str| usage[key].as_u64().unwrap_or(0);
    let set_usage = |expect: &mut AnthropicExpect, usage: &Value| {
        expect.cache_read = count(usage, "cache_read_input_tokens");
        expect.cache_creation = count(usage, "cache_creation_input_tokens");
        expect.input_tokens =
            count(usage, "input_tokens") + expect.cache_read + expect.cache_creation;
        expect.output_tokens = count(usage, "output_tokens");
    };
    if body.trim_start().starts_with('{') {
        let message: Value = serde_json::from_str(body).expect("a JSON Message");
        expect.id = message["id"].as_str().unwrap_or("").to_owned();
        expect.model = message["model"].as_str().unwrap_or("").to_owned();
        expect.stop_reason = message["stop_reason"].as_str().unwrap_or("").to_owned();
        set_usage(&mut expect, &message["usage"]);
        for block in message["content"].as_array().expect("content blocks") {
            match block["type"].as_str() {
                Some("text") => expect.text.push_str(block["text"].as_str().unwrap_or("")),
                Some("thinking") => expect
                    .thinking
                    .push_str(block["thinking"].as_str().unwrap_or("")),
                Some("tool_use") => expect.tool_calls.push((
                    block["id"].as_str().unwrap_or("").to_owned(),
                    block["name"].as_str().unwrap_or("").to_owned(),
                    block["input"].clone(),
                )),
                _ => {}
            }
        }
        return expect;
    }
    let mut arguments: Vec<String> = Vec::new();
    for line in body.lines() {
        let Some(data) = line.strip_prefix("data:") else {
            continue;
        };
        let Ok(event) = serde_json::from_str::<Value>(data.trim()) else {
            continue;
        };
        match event["type"].as_str() {
            Some("message_start") => {
                let message = &event["message"];
                expect.id = message["id"].as_str().unwrap_or("").to_owned();
                expect.model = message["model"].as_str().unwrap_or("").to_owned();
                set_usage(&mut expect, &message["usage"]);
            }
            Some("content_block_start") => {
                let block = &event["content_block"];
                if block["type"] == "tool_use" {
                    expect.tool_calls.push((
                        block["id"].as_str().unwrap_or("").to_owned(),
                        block["name"].as_str().unwrap_or("").to_owned(),
                        Value::Null,
                    ));
                    arguments.push(String::new());
                }
            }
            Some("content_block_delta") => {
                let delta = &event["delta"];
                match delta["type"].as_str() {
                    Some("text_delta") => {
                        expect.text.push_str(delta["text"].as_str().unwrap_or(""))
                    }
                    Some("thinking_delta") => expect
                        .thinking
                        .push_str(delta["thinking"].as_str().unwrap_or("")),
                    Some("input_json_delta") => arguments
                        .last_mut()
                        .expect("a tool_use block is open")
                        .push_str(delta["partial_json"].as_str().unwrap_or("")),
                    _ => {}
                }
            }
            Some("message_delta") => {
                if let Some(reason) = event["delta"]["stop_reason"].as_str() {
                    expect.stop_reason = reason.to_owned();
                }
                // Cumulative: the last one is the call's output.
                if let Some(output) = event["usage"]["output_tokens"].as_u64() {
                    expect.output_tokens = output;
                }
            }
            _ => {}
        }
    }
    for (call, text) in expect.tool_calls.iter_mut().zip(arguments) {
        call.2 = if text.is_empty() {
            serde_json::json!({})
        } else {
            serde_json::from_str(&text).expect("tool input JSON")
        };
    }
    expect
}
