//! An embedded mock of an OpenAI-compatible API on 127.0.0.1, shaped after recorded real traffic:
//! chat completions (plain, streamed with optional usage, tool calls), legacy completions,
//! embeddings, the Responses API (streamed `event:`/`data:` pairs), a 404 for an unknown model,
//! and `GET /v1/models`. Deterministic; streamed events go out as separate frames a few
//! milliseconds apart, so time to first token means something.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::{json, Value};

/// Delay between streamed events.
const EVENT_GAP: Duration = Duration::from_millis(5);

/// A running mock upstream; stops when dropped.
pub struct MockUpstream {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

/// Starts the mock on 127.0.0.1 with a free port.
pub async fn start() -> std::io::Result<MockUpstream> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, MockUpstream::router()).await;
    });
    Ok(MockUpstream { addr, task })
}

impl MockUpstream {
    /// `http://127.0.0.1:PORT/v1`
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The bare routes, to serve behind your own layers.
    pub fn router() -> Router {
        Router::new()
            .route("/v1/chat/completions", post(chat_completions))
            .route("/v1/completions", post(completions))
            .route("/v1/embeddings", post(embeddings))
            .route("/v1/responses", post(responses))
            .route("/v1/models", get(models))
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The deterministic answer to a prompt, in pieces as a model would stream it.
fn answer_pieces(prompt: &str) -> Vec<String> {
    let topic = prompt
        .split_whitespace()
        .last()
        .unwrap_or("that")
        .trim_matches(|c: char| !c.is_alphanumeric());
    format!("Here is a short answer about {topic}: it works as expected.")
        .split_inclusive(' ')
        .map(str::to_owned)
        .collect()
}

fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

fn last_user_text(request: &Value) -> String {
    let from_messages = request["messages"].as_array().and_then(|messages| {
        messages
            .iter()
            .rev()
            .find(|m| m["role"] == "user")
            .and_then(|m| m["content"].as_str())
    });
    from_messages
        .or(request["prompt"].as_str())
        .or(request["input"].as_str())
        .unwrap_or("")
        .to_owned()
}

fn model_of(request: &Value) -> String {
    request["model"]
        .as_str()
        .unwrap_or("gpt-4o-mini")
        .to_owned()
}

fn not_found(model: &str) -> Response {
    let body = json!({"error": {
        "message": format!("The model `{model}` does not exist or you do not have access to it."),
        "type": "invalid_request_error", "param": null, "code": "model_not_found"}});
    (axum::http::StatusCode::NOT_FOUND, Json(body)).into_response()
}

/// Sends `events` (already formatted SSE blocks) as separate frames, `EVENT_GAP` apart.
fn event_stream(events: Vec<String>) -> Response {
    let stream = futures_util::stream::unfold(events.into_iter(), |mut events| async move {
        let event = events.next()?;
        tokio::time::sleep(EVENT_GAP).await;
        Some((Ok::<_, Infallible>(Bytes::from(event)), events))
    });
    (
        [(axum::http::header::CONTENT_TYPE, "text/event-stream")],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}

fn data(value: &Value) -> String {
    format!("data: {value}\n\n")
}

fn chat_usage(prompt_tokens: u64, completion_tokens: u64) -> Value {
    json!({"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0}})
}

/// The first tool of the request and arguments for it.
fn tool_call(request: &Value) -> Option<(String, String)> {
    let name = request["tools"].as_array()?.first()?["function"]["name"]
        .as_str()?
        .to_owned();
    Some((
        name,
        json!({"location": "Paris", "unit": "celsius"}).to_string(),
    ))
}

async fn chat_completions(Json(request): Json<Value>) -> Response {
    let model = model_of(&request);
    if model == "does-not-exist" {
        return not_found(&model);
    }
    let prompt = last_user_text(&request);
    let pieces = answer_pieces(&prompt);
    let (prompt_tokens, completion_tokens) = (words(&prompt) + 3, pieces.len() as u64);
    let id = "chatcmpl-mock0001";
    let created = 1_760_000_000;
    let tool = tool_call(&request);
    if request["stream"] != json!(true) {
        let message = match &tool {
            Some((name, arguments)) => {
                json!({"role": "assistant", "content": null, "refusal": null,
                "tool_calls": [{"id": "call_mock0001", "type": "function", "function": {"name": name, "arguments": arguments}}]})
            }
            None => json!({"role": "assistant", "content": pieces.concat(), "refusal": null}),
        };
        let finish = if tool.is_some() { "tool_calls" } else { "stop" };
        return Json(json!({"id": id, "object": "chat.completion", "created": created, "model": format!("{model}-2024-07-18"),
            "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
            "usage": chat_usage(prompt_tokens, completion_tokens)}))
        .into_response();
    }
    let chunk = |delta: Value, finish: Value| {
        data(
            &json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": format!("{model}-2024-07-18"),
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]}),
        )
    };
    let mut events = Vec::new();
    match &tool {
        Some((name, arguments)) => {
            events.push(chunk(json!({"role": "assistant", "content": null, "tool_calls": [{"index": 0, "id": "call_mock0001",
                "type": "function", "function": {"name": name, "arguments": ""}}]}), Value::Null));
            let bytes = arguments.as_bytes();
            for part in bytes.chunks(8) {
                let part = String::from_utf8_lossy(part);
                events.push(chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": part}}]}),
                    Value::Null,
                ));
            }
            events.push(chunk(json!({}), json!("tool_calls")));
        }
        None => {
            events.push(chunk(
                json!({"role": "assistant", "content": "", "refusal": null}),
                Value::Null,
            ));
            for piece in &pieces {
                events.push(chunk(json!({"content": piece}), Value::Null));
            }
            events.push(chunk(json!({}), json!("stop")));
        }
    }
    if request["stream_options"]["include_usage"] == json!(true) {
        events.push(data(&json!({"id": id, "object": "chat.completion.chunk", "created": created,
            "model": format!("{model}-2024-07-18"), "choices": [], "usage": chat_usage(prompt_tokens, completion_tokens)})));
    }
    events.push("data: [DONE]\n\n".to_owned());
    event_stream(events)
}

async fn completions(Json(request): Json<Value>) -> Response {
    let model = model_of(&request);
    let prompt = last_user_text(&request);
    let pieces = answer_pieces(&prompt);
    let usage = json!({"prompt_tokens": words(&prompt), "completion_tokens": pieces.len(), "total_tokens": words(&prompt) + pieces.len() as u64});
    if request["stream"] != json!(true) {
        return Json(json!({"id": "cmpl-mock0001", "object": "text_completion", "created": 1_760_000_000, "model": model,
            "choices": [{"text": pieces.concat(), "index": 0, "logprobs": null, "finish_reason": "length"}], "usage": usage}))
        .into_response();
    }
    let mut events: Vec<String> = pieces
        .iter()
        .enumerate()
        .map(|(i, piece)| {
            let finish = if i + 1 == pieces.len() { json!("length") } else { Value::Null };
            data(&json!({"id": "cmpl-mock0001", "object": "text_completion", "created": 1_760_000_000, "model": model,
                "choices": [{"text": piece, "index": 0, "logprobs": null, "finish_reason": finish}]}))
        })
        .collect();
    events.push("data: [DONE]\n\n".to_owned());
    event_stream(events)
}

async fn embeddings(Json(request): Json<Value>) -> Response {
    let inputs: Vec<String> = match &request["input"] {
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().unwrap_or("").to_owned())
            .collect(),
        other => vec![other.as_str().unwrap_or("").to_owned()],
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let seed = text.len() as f64;
            let vector: Vec<f64> = (0..8).map(|d| ((seed + d as f64) * 0.37).sin()).collect();
            json!({"object": "embedding", "index": i, "embedding": vector})
        })
        .collect();
    let tokens: u64 = inputs.iter().map(|t| words(t)).sum();
    Json(
        json!({"object": "list", "data": data, "model": model_of(&request),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}),
    )
    .into_response()
}

async fn responses(Json(request): Json<Value>) -> Response {
    let model = format!("{}-2025-04-14", model_of(&request));
    let prompt = last_user_text(&request);
    let pieces = answer_pieces(&prompt);
    let text = pieces.concat();
    let usage = json!({"input_tokens": words(&prompt), "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": pieces.len(), "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": words(&prompt) + pieces.len() as u64});
    let message = json!({"id": "msg_mock0001", "type": "message", "status": "completed", "role": "assistant",
        "content": [{"type": "output_text", "annotations": [], "text": text}]});
    let response = |status: &str, output: Value, usage: Value| {
        json!({"id": "resp_mock0001", "object": "response", "created_at": 1_760_000_000, "status": status,
            "model": model, "output": output, "usage": usage, "error": null, "incomplete_details": null})
    };
    if request["stream"] != json!(true) {
        return Json(response("completed", json!([message]), usage)).into_response();
    }
    let event = |kind: &str, body: Value| {
        let mut body = body;
        body["type"] = json!(kind);
        format!("event: {kind}\ndata: {body}\n\n")
    };
    let mut events = vec![
        event(
            "response.created",
            json!({"response": response("in_progress", json!([]), Value::Null)}),
        ),
        event(
            "response.output_item.added",
            json!({"output_index": 0, "item": {"id": "msg_mock0001", "type": "message",
            "status": "in_progress", "role": "assistant", "content": []}}),
        ),
    ];
    for piece in &pieces {
        events.push(event(
            "response.output_text.delta",
            json!({"item_id": "msg_mock0001", "output_index": 0,
            "content_index": 0, "delta": piece}),
        ));
    }
    events.push(event(
        "response.output_item.done",
        json!({"output_index": 0, "item": message}),
    ));
    events.push(event(
        "response.completed",
        json!({"response": response("completed", json!([message]), usage)}),
    ));
    event_stream(events)
}

async fn models() -> Json<Value> {
    Json(
        json!({"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model", "owned_by": "mock"}]}),
    )
}
