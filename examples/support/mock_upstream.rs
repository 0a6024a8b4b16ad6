//! An embedded mock of an OpenAI-compatible API and of Anthropic's Messages API on 127.0.0.1,
//! shaped after real recorded traffic (`../shared/fixtures/openai-recorded`,
//! `../shared/fixtures/provider-recorded`), for examples and tests:
//!
//! - `POST /v1/chat/completions`: JSON or SSE (`chat.completion.chunk`s, a usage chunk with
//!   `choices: []` only when `stream_options.include_usage` is set, then `[DONE]`); with `tools`,
//!   a call of the first tool whose `arguments` stream in several pieces;
//! - `POST /v1/completions` (legacy `text_completion`), JSON or SSE;
//! - `POST /v1/embeddings`: small deterministic vectors;
//! - `POST /v1/responses`: JSON, or `event:`/`data:` pairs ending in `response.completed` (no
//!   `[DONE]`);
//! - `POST /v1/messages` (Anthropic Messages): a Message as JSON, or SSE `event:`/`data:` pairs
//!   (`message_start`, `content_block_start`, `ping`, `content_block_delta`, `content_block_stop`,
//!   `message_delta`, `message_stop`); with `tools`, a text block then a `tool_use` block whose
//!   input streams as `input_json_delta` pieces (`stop_reason: "tool_use"`). Usage counts the
//!   prompt cache as Anthropic does: text in blocks marked `cache_control` is written to the
//!   cache the first time (`cache_creation_input_tokens`) and read from it afterwards
//!   (`cache_read_input_tokens`), apart from `input_tokens`;
//! - `POST /v1/messages/count_tokens`: `{"input_tokens": N}`;
//! - `GET /v1/models`;
//! - model `does-not-exist` on any `POST`: a 404 in the API's error shape (OpenAI
//!   `model_not_found`, Anthropic `not_found_error`); a body that is not JSON: a 400
//!   `invalid_request_error`.
//!
//! Everything is deterministic: the answer is built from the last user message and tokens are
//! counted as words. Streamed events go out as separate body frames [`EVENT_GAP`] apart, so time
//! to first token means something.
//!
//! Use it with `#[path = "support/mock_upstream.rs"] mod mock_upstream;` (from `tests/`:
//! `#[path = "../examples/support/mock_upstream.rs"]`).
#![allow(dead_code)]

#[path = "mock_bedrock.rs"]
mod bedrock;
#[path = "mock_gemini.rs"]
mod gemini;

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Delay before each streamed event.
pub const EVENT_GAP: Duration = Duration::from_millis(5);

/// `created` / `created_at` of every response.
const CREATED: u64 = 1_760_000_000;

/// A running mock upstream. Dropping it stops the server (in the background); `shutdown` stops it
/// and waits.
pub struct MockUpstream {
    /// The bound address (127.0.0.1, a free port).
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// Starts the mock on 127.0.0.1 with a free port.
pub async fn start() -> std::io::Result<MockUpstream> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    // Without TCP_NODELAY, Nagle's algorithm holds small SSE events back for up to ~40 ms.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, MockUpstream::router())
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
    });
    Ok(MockUpstream {
        addr,
        stop: Some(stop),
        task: Some(task),
    })
}

impl MockUpstream {
    /// `http://127.0.0.1:PORT/v1`, the base URL an OpenAI client expects.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The bare routes, without any layer, to serve behind your own.
    pub fn router() -> Router {
        Router::new()
            .route("/v1/chat/completions", post(chat_completions))
            .route("/v1/completions", post(completions))
            .route("/v1/embeddings", post(embeddings))
            .route("/v1/responses", post(responses))
            .route("/v1/messages", post(messages))
            .route("/v1/messages/count_tokens", post(count_tokens))
            .route("/v1/models", get(models))
            .route("/v1beta/models/{model_method}", post(gemini::models))
            .route("/model/{model_id}/{operation}", post(bedrock::model))
    }

    /// Stops accepting, lets requests in flight finish, and waits for the server to end.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Endpoints
// ---------------------------------------------------------------------------------------------

/// `POST /v1/chat/completions`
async fn chat_completions(OpenAiRequest(request): OpenAiRequest) -> Response {
    let chat = Chat::from_request(&request);
    if is_stream(&request) {
        event_stream(chat.chunks(include_usage(&request)))
    } else {
        Json(chat.completion()).into_response()
    }
}

/// `POST /v1/completions` (legacy text completions).
async fn completions(OpenAiRequest(request): OpenAiRequest) -> Response {
    let model = model_of(&request);
    let prompt = prompt_of(&request);
    let pieces = answer_pieces(&prompt);
    let choice = |text: &str, finish: Value| json!({"text": text, "index": 0, "logprobs": null, "finish_reason": finish});
    let completion = |choice: Value| {
        json!({"id": "cmpl-mock0001", "object": "text_completion", "created": CREATED,
               "model": model, "choices": [choice]})
    };
    if !is_stream(&request) {
        let mut body = completion(choice(&pieces.concat(), json!("stop")));
        body["usage"] = usage(words(&prompt), pieces.len() as u64);
        return Json(body).into_response();
    }
    let last = pieces.len() - 1;
    let mut events: Vec<String> = (pieces.iter().enumerate())
        .map(|(i, piece)| {
            let finish = if i == last {
                json!("stop")
            } else {
                Value::Null
            };
            data(&completion(choice(piece, finish)))
        })
        .collect();
    events.push(DONE.to_owned());
    event_stream(events)
}

/// `POST /v1/embeddings`: one 8-dimensional vector per input string.
async fn embeddings(OpenAiRequest(request): OpenAiRequest) -> Response {
    let inputs: Vec<String> = match &request["input"] {
        Value::Array(items) => items.iter().map(text_of).collect(),
        one => vec![text_of(one)],
    };
    let data: Vec<Value> = (inputs.iter().enumerate())
        .map(|(index, text)| {
            json!({"object": "embedding", "index": index, "embedding": embedding(text)})
        })
        .collect();
    let tokens: u64 = inputs.iter().map(|text| words(text)).sum();
    Json(
        json!({"object": "list", "data": data, "model": model_of(&request),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}),
    )
    .into_response()
}

/// `POST /v1/responses` (Responses API).
async fn responses(OpenAiRequest(request): OpenAiRequest) -> Response {
    let model = format!("{}-2025-04-14", model_of(&request));
    let prompt = prompt_of(&request);
    let pieces = answer_pieces(&prompt);
    let message = |status: &str, text: &str| {
        json!({"id": "msg_mock0001", "type": "message", "status": status, "role": "assistant",
               "content": [{"type": "output_text", "annotations": [], "text": text}]})
    };
    let done = message("completed", &pieces.concat());
    let input_tokens = words(&prompt);
    let output_tokens = pieces.len() as u64;
    let usage = json!({"input_tokens": input_tokens, "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens});
    let response = |status: &str, output: Value, usage: Value| {
        json!({"id": "resp_mock0001", "object": "response", "created_at": CREATED,
               "status": status, "error": null, "incomplete_details": null, "model": model,
               "output": output, "usage": usage})
    };
    if !is_stream(&request) {
        return Json(response("completed", json!([done]), usage)).into_response();
    }
    let mut events = vec![
        (
            "response.created",
            json!({"response": response("in_progress", json!([]), Value::Null)}),
        ),
        (
            "response.output_item.added",
            json!({"output_index": 0, "item": {"id": "msg_mock0001", "type": "message",
                   "status": "in_progress", "role": "assistant", "content": []}}),
        ),
    ];
    for piece in &pieces {
        events.push((
            "response.output_text.delta",
            json!({"item_id": "msg_mock0001", "output_index": 0, "content_index": 0,
                   "delta": piece}),
        ));
    }
    events.push((
        "response.output_item.done",
        json!({"output_index": 0, "item": done}),
    ));
    events.push((
        "response.completed",
        json!({"response": response("completed", json!([done]), usage)}),
    ));
    for (sequence, (_, body)) in events.iter_mut().enumerate() {
        body["sequence_number"] = json!(sequence);
    }
    named_event_stream(events)
}

/// `GET /v1/models`
async fn models() -> Json<Value> {
    let model =
        |id: &str| json!({"id": id, "object": "model", "created": CREATED, "owned_by": "mock"});
    Json(json!({"object": "list", "data": [model("gpt-4o-mini"), model("text-embedding-3-small")]}))
}

// ---------------------------------------------------------------------------------------------
// Chat completions
// ---------------------------------------------------------------------------------------------

/// What a chat completion answers: text, or a call of the request's first tool.
struct Chat {
    model: String,
    text_pieces: Vec<String>,
    /// `(tool name, arguments JSON)` when the request offered tools.
    tool_call: Option<(String, String)>,
    prompt_tokens: u64,
}

impl Chat {
    fn from_request(request: &Value) -> Chat {
        let prompt = prompt_of(request);
        let tool_call = request["tools"]
            .as_array()
            .and_then(|tools| tools.first())
            .and_then(|tool| {
                let function = &tool["function"];
                tool_call_for(&function["name"], &function["parameters"], &prompt)
            });
        let all_messages: u64 = (request["messages"].as_array().into_iter().flatten())
            .map(|m| words(&text_of(&m["content"])) + 3)
            .sum();
        Chat {
            model: format!("{}-2024-07-18", model_of(request)),
            text_pieces: answer_pieces(&prompt),
            tool_call,
            prompt_tokens: all_messages.max(1),
        }
    }

    fn completion_tokens(&self) -> u64 {
        match &self.tool_call {
            Some((name, arguments)) => words(name) + argument_pieces(arguments).len() as u64,
            None => self.text_pieces.len() as u64,
        }
    }

    fn finish_reason(&self) -> &'static str {
        if self.tool_call.is_some() {
            "tool_calls"
        } else {
            "stop"
        }
    }

    fn usage(&self) -> Value {
        let mut usage = usage(self.prompt_tokens, self.completion_tokens());
        usage["prompt_tokens_details"] = json!({"cached_tokens": 0, "audio_tokens": 0});
        usage["completion_tokens_details"] = json!({"reasoning_tokens": 0, "audio_tokens": 0});
        usage
    }

    /// The non-streamed `chat.completion`.
    fn completion(&self) -> Value {
        let message = match &self.tool_call {
            Some((name, arguments)) => json!({"role": "assistant", "content": null,
                "refusal": null, "tool_calls": [{"id": "call_mock0001", "type": "function",
                "function": {"name": name, "arguments": arguments}}]}),
            None => json!({"role": "assistant", "content": self.text_pieces.concat(),
                "refusal": null}),
        };
        json!({"id": "chatcmpl-mock0001", "object": "chat.completion", "created": CREATED,
               "model": self.model, "system_fingerprint": "fp_mock",
               "choices": [{"index": 0, "message": message, "logprobs": null,
                            "finish_reason": self.finish_reason()}],
               "usage": self.usage()})
    }

    /// The streamed `chat.completion.chunk` events, `[DONE]` included.
    fn chunks(&self, include_usage: bool) -> Vec<String> {
        let chunk = |choices: Value| {
            let mut chunk = json!({"id": "chatcmpl-mock0001", "object": "chat.completion.chunk",
                "created": CREATED, "model": self.model, "system_fingerprint": "fp_mock",
                "choices": choices});
            if include_usage {
                // OpenAI sends `usage: null` in every chunk but the usage chunk.
                chunk["usage"] = Value::Null;
            }
            chunk
        };
        let delta = |delta: Value, finish: Value| {
            data(&chunk(
                json!([{"index": 0, "delta": delta, "logprobs": null,
                                "finish_reason": finish}]),
            ))
        };
        let mut events = Vec::new();
        match &self.tool_call {
            Some((name, arguments)) => {
                events.push(delta(
                    json!({"role": "assistant", "content": null, "tool_calls": [{"index": 0,
                        "id": "call_mock0001", "type": "function",
                        "function": {"name": name, "arguments": ""}}]}),
                    Value::Null,
                ));
                for piece in argument_pieces(arguments) {
                    events.push(delta(
                        json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
                        Value::Null,
                    ));
                }
            }
            None => {
                events.push(delta(
                    json!({"role": "assistant", "content": "", "refusal": null}),
                    Value::Null,
                ));
                for piece in &self.text_pieces {
                    events.push(delta(json!({"content": piece}), Value::Null));
                }
            }
        }
        events.push(delta(json!({}), json!(self.finish_reason())));
        if include_usage {
            let mut last = chunk(json!([]));
            last["usage"] = self.usage();
            events.push(data(&last));
        }
        events.push(DONE.to_owned());
        events
    }
}

/// A call of the tool named `name` whose parameters `schema` (a JSON Schema object) declares:
/// its first declared parameter (or `query`) set to the topic of the prompt; `(name, arguments
/// as JSON text)`.
fn tool_call_for(name: &Value, schema: &Value, prompt: &str) -> Option<(String, String)> {
    let name = name.as_str()?.to_owned();
    let parameter = (schema["properties"].as_object())
        .and_then(|properties| properties.keys().next().cloned())
        .unwrap_or_else(|| "query".to_owned());
    let arguments = json!({ parameter: topic_of(prompt) }).to_string();
    Some((name, arguments))
}

/// Anthropic's (and Bedrock's) stop reason of an answer that does or does not call a tool.
fn stop_reason(calls_a_tool: bool) -> &'static str {
    if calls_a_tool {
        "tool_use"
    } else {
        "end_turn"
    }
}

/// Tool-call arguments cut the way OpenAI streams them: a few characters at a time.
fn argument_pieces(arguments: &str) -> Vec<String> {
    let chars: Vec<char> = arguments.chars().collect();
    chars
        .chunks(6)
        .map(|piece| piece.iter().collect())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Anthropic Messages
// ---------------------------------------------------------------------------------------------

/// `POST /v1/messages`
async fn messages(AnthropicRequest(request): AnthropicRequest) -> Response {
    let message = Message::from_request(&request);
    if is_stream(&request) {
        named_event_stream(message.events())
    } else {
        Json(message.message()).into_response()
    }
}

/// `POST /v1/messages/count_tokens`: what `input_tokens` would be, cache included.
async fn count_tokens(AnthropicRequest(request): AnthropicRequest) -> Json<Value> {
    let (cached, uncached) = anthropic_input_words(&request);
    Json(json!({"input_tokens": cached + uncached}))
}

/// What a Messages call answers: text, and a call of the request's first tool when it offered
/// tools.
struct Message {
    model: String,
    text_pieces: Vec<String>,
    /// `(tool name, input JSON)` when the request offered tools.
    tool_use: Option<(String, String)>,
    input_tokens: u64,
    cache_read_input_tokens: u64,
    cache_creation_input_tokens: u64,
}

/// Cached prompt prefixes this process has seen: the first request writes one to the cache, the
/// next ones read it.
static PROMPT_CACHE: Mutex<Option<HashSet<String>>> = Mutex::new(None);

impl Message {
    fn from_request(request: &Value) -> Message {
        let prompt = prompt_of(request);
        let tool_use = (request["tools"].as_array())
            .and_then(|tools| tools.first())
            .and_then(|tool| tool_call_for(&tool["name"], &tool["input_schema"], &prompt));
        let text_pieces = match &tool_use {
            Some(_) => answer_pieces_for_tool(&prompt),
            None => answer_pieces(&prompt),
        };
        let (cached, uncached) = anthropic_input_words(request);
        let cached_text = cached_text_of(request);
        let seen_before = cached > 0 && {
            let mut cache = PROMPT_CACHE.lock().unwrap_or_else(|p| p.into_inner());
            !cache.get_or_insert_with(HashSet::new).insert(cached_text)
        };
        Message {
            model: format!("{}-20251001", model_of_or(request, "claude-haiku-4-5")),
            text_pieces,
            tool_use,
            input_tokens: uncached.max(1),
            cache_read_input_tokens: if seen_before { cached } else { 0 },
            cache_creation_input_tokens: if seen_before { 0 } else { cached },
        }
    }

    fn output_tokens(&self) -> u64 {
        let tool = (self.tool_use.as_ref()).map_or(0, |(name, input)| {
            words(name) + input_pieces(input).len() as u64
        });
        self.text_pieces.len() as u64 + tool
    }

    fn stop_reason(&self) -> &'static str {
        stop_reason(self.tool_use.is_some())
    }

    fn usage(&self, output_tokens: u64) -> Value {
        json!({"input_tokens": self.input_tokens,
               "cache_creation_input_tokens": self.cache_creation_input_tokens,
               "cache_read_input_tokens": self.cache_read_input_tokens,
               "output_tokens": output_tokens, "service_tier": "standard"})
    }

    fn content(&self) -> Vec<Value> {
        let mut content = vec![json!({"type": "text", "text": self.text_pieces.concat()})];
        if let Some((name, input)) = &self.tool_use {
            let input: Value = serde_json::from_str(input).unwrap_or_default();
            content.push(
                json!({"type": "tool_use", "id": "toolu_mock0001", "name": name,
                                "input": input}),
            );
        }
        content
    }

    fn envelope(&self, content: Vec<Value>, stop_reason: Value, usage: Value) -> Value {
        json!({"id": "msg_mock0001", "type": "message", "role": "assistant", "model": self.model,
               "content": content, "stop_reason": stop_reason, "stop_sequence": null,
               "usage": usage})
    }

    /// The non-streamed Message.
    fn message(&self) -> Value {
        let usage = self.usage(self.output_tokens());
        self.envelope(self.content(), json!(self.stop_reason()), usage)
    }

    /// The streamed events, `(event name, data)`, as Anthropic sends them.
    fn events(&self) -> Vec<(&'static str, Value)> {
        let start = self.envelope(Vec::new(), Value::Null, self.usage(1));
        let mut events = vec![
            ("message_start", json!({"message": start})),
            (
                "content_block_start",
                json!({"index": 0, "content_block": {"type": "text", "text": ""}}),
            ),
            ("ping", json!({})),
        ];
        for piece in &self.text_pieces {
            events.push((
                "content_block_delta",
                json!({"index": 0, "delta": {"type": "text_delta", "text": piece}}),
            ));
        }
        events.push(("content_block_stop", json!({"index": 0})));
        if let Some((name, input)) = &self.tool_use {
            events.push((
                "content_block_start",
                json!({"index": 1, "content_block": {"type": "tool_use", "id": "toolu_mock0001",
                       "name": name, "input": {}}}),
            ));
            // Anthropic opens a tool's input with an empty piece.
            for piece in std::iter::once(String::new()).chain(input_pieces(input)) {
                events.push((
                    "content_block_delta",
                    json!({"index": 1, "delta": {"type": "input_json_delta",
                           "partial_json": piece}}),
                ));
            }
            events.push(("content_block_stop", json!({"index": 1})));
        }
        events.push((
            "message_delta",
            json!({"delta": {"stop_reason": self.stop_reason(), "stop_sequence": null},
                   "usage": {"output_tokens": self.output_tokens()}}),
        ));
        events.push(("message_stop", json!({})));
        events
    }
}

/// A tool's input cut the way Anthropic streams it: a few characters at a time.
fn input_pieces(input: &str) -> Vec<String> {
    argument_pieces(input)
}

/// The text before a tool call, as the 4 pieces a model would stream.
fn answer_pieces_for_tool(prompt: &str) -> Vec<String> {
    let answer = format!("I'll look up {} for you.", topic_of(prompt));
    answer.split_inclusive(' ').map(str::to_owned).collect()
}

/// Input words of a Messages request: `(in blocks marked cache_control, the rest)`. System
/// blocks and message content blocks count; a string is never cached.
fn anthropic_input_words(request: &Value) -> (u64, u64) {
    let mut cached = 0;
    let mut uncached = 0;
    let mut count = |content: &Value| match content {
        Value::Array(blocks) => {
            for block in blocks {
                let n = words(&text_of(&Value::Array(vec![block.clone()])));
                if block.get("cache_control").is_some() {
                    cached += n;
                } else {
                    uncached += n;
                }
            }
        }
        other => uncached += words(&text_of(other)),
    };
    count(&request["system"]);
    for message in request["messages"].as_array().into_iter().flatten() {
        count(&message["content"]);
    }
    (cached, uncached)
}

/// The text of every block marked `cache_control`: the prompt prefix the cache holds.
fn cached_text_of(request: &Value) -> String {
    let messages = request["messages"].as_array().into_iter().flatten();
    let contents = std::iter::once(&request["system"]).chain(messages.map(|m| &m["content"]));
    (contents.filter_map(Value::as_array).flatten())
        .filter(|block| block.get("cache_control").is_some())
        .map(|block| text_of(&Value::Array(vec![block.clone()])))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The request body as JSON, with Anthropic's error shape for a body that is not JSON (400)
/// and the model `does-not-exist` (404).
struct AnthropicRequest(Value);

impl<S: Send + Sync> FromRequest<S> for AnthropicRequest {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Response> {
        let body = Bytes::from_request(request, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let request: Value = serde_json::from_slice(&body).map_err(|error| {
            let message = format!("There was an issue with the JSON of your request: {error}");
            anthropic_error(StatusCode::BAD_REQUEST, "invalid_request_error", &message)
        })?;
        if request["model"] == "does-not-exist" {
            let message = "model: does-not-exist";
            return Err(anthropic_error(
                StatusCode::NOT_FOUND,
                "not_found_error",
                message,
            ));
        }
        Ok(AnthropicRequest(request))
    }
}

/// `{"type": "error", "error": {type, message}, "request_id"}` with `status`.
fn anthropic_error(status: StatusCode, kind: &str, message: &str) -> Response {
    let body = json!({"type": "error", "error": {"type": kind, "message": message},
                      "request_id": "req_mock0001"});
    (status, Json(body)).into_response()
}

/// Sends each `(event, data)` as an `event:`/`data:` pair in its own body frame,
/// [`EVENT_GAP`] apart; `data` gets `"type": event`.
fn named_event_stream(events: Vec<(&'static str, Value)>) -> Response {
    let events = (events.into_iter())
        .map(|(kind, mut body)| {
            body["type"] = json!(kind);
            format!("event: {kind}\ndata: {body}\n\n")
        })
        .collect();
    event_stream(events)
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The request body as JSON. Rejects a body that is not JSON with 400 and the model
/// `does-not-exist` with 404, in OpenAI's error shape.
struct OpenAiRequest(Value);

impl<S: Send + Sync> FromRequest<S> for OpenAiRequest {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Response> {
        let body = Bytes::from_request(request, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let request: Value = serde_json::from_slice(&body).map_err(|error| {
            let message = format!("We could not parse the JSON body of your request: {error}");
            openai_error(
                StatusCode::BAD_REQUEST,
                &message,
                "invalid_request_error",
                None,
            )
        })?;
        if request["model"] == "does-not-exist" {
            let message =
                "The model `does-not-exist` does not exist or you do not have access to it.";
            return Err(openai_error(
                StatusCode::NOT_FOUND,
                message,
                "invalid_request_error",
                Some("model_not_found"),
            ));
        }
        Ok(OpenAiRequest(request))
    }
}

/// `{"error": {message, type, param, code}}` with `status`.
fn openai_error(status: StatusCode, message: &str, kind: &str, code: Option<&str>) -> Response {
    let body = json!({"error": {"message": message, "type": kind, "param": null, "code": code}});
    (status, Json(body)).into_response()
}

/// Sends each of `events` (complete SSE blocks) as its own body frame, [`EVENT_GAP`] apart.
fn event_stream(events: Vec<String>) -> Response {
    frames_apart("text/event-stream; charset=utf-8", events, [])
}

/// A `content_type` response with `headers` that sends each of `frames` as its own body
/// frame, [`EVENT_GAP`] apart.
fn frames_apart<B, const N: usize>(
    content_type: &'static str,
    frames: Vec<B>,
    headers: [(&'static str, String); N],
) -> Response
where
    B: Into<Bytes> + Send + 'static,
{
    let frames = futures_util::stream::unfold(frames.into_iter(), |mut frames| async move {
        let frame = frames.next()?;
        tokio::time::sleep(EVENT_GAP).await;
        Some((Ok::<_, Infallible>(frame.into()), frames))
    });
    let mut response = axum::body::Body::from_stream(frames).into_response();
    let response_headers = response.headers_mut();
    response_headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    for (name, value) in headers {
        if let Ok(value) = header::HeaderValue::from_str(&value) {
            response_headers.insert(name, value);
        }
    }
    response
}

/// One `data:` event.
fn data(value: &Value) -> String {
    format!("data: {value}\n\n")
}

/// The last event of a chat or completions stream.
const DONE: &str = "data: [DONE]\n\n";

fn is_stream(request: &Value) -> bool {
    request["stream"] == true
}

fn include_usage(request: &Value) -> bool {
    request["stream_options"]["include_usage"] == true
}

fn model_of(request: &Value) -> String {
    model_of_or(request, "gpt-4o-mini")
}

fn model_of_or(request: &Value, default: &str) -> String {
    request["model"].as_str().unwrap_or(default).to_owned()
}

/// The text the answer is about: the last user message (chat), `prompt` (completions) or
/// `input` (Responses API).
fn prompt_of(request: &Value) -> String {
    let last_user = (request["messages"].as_array().into_iter().flatten())
        .rev()
        .find(|message| message["role"] == "user")
        .map(|message| &message["content"]);
    let prompt = last_user
        .or(request.get("prompt"))
        .or(request.get("input"))
        .unwrap_or(&Value::Null);
    text_of(prompt)
}

/// Text of a string, a list of strings, or a list of content parts / input messages.
fn text_of(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Array(parts) => (parts.iter())
            .map(|part| match part {
                Value::String(text) => text.clone(),
                part => (part["text"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| text_of(&part["content"])),
            })
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// The last word of the prompt, e.g. `Paris` for "What is the weather in Paris?".
fn topic_of(prompt: &str) -> String {
    let topic = (prompt.split_whitespace().last().unwrap_or("that"))
        .trim_matches(|c: char| !c.is_alphanumeric());
    if topic.is_empty() {
        "that".to_owned()
    } else {
        topic.to_owned()
    }
}

/// The deterministic answer to `prompt`, as the 8 pieces a model would stream.
fn answer_pieces(prompt: &str) -> Vec<String> {
    let answer = format!(
        "Here is a short, deterministic answer about {}.",
        topic_of(prompt)
    );
    answer.split_inclusive(' ').map(str::to_owned).collect()
}

/// Token counts are word counts.
fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

fn usage(prompt_tokens: u64, completion_tokens: u64) -> Value {
    json!({"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
           "total_tokens": prompt_tokens + completion_tokens})
}

/// A small unit-free vector that depends only on `text`.
fn embedding(text: &str) -> Vec<f64> {
    let seed = text.bytes().map(f64::from).sum::<f64>();
    (0..8)
        .map(|d| ((seed + f64::from(d)) * 0.37).sin() * 0.5)
        .map(|x| (x * 1e6).round() / 1e6)
        .collect()
}
