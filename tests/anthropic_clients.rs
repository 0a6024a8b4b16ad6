//! Anthropic Messages calls through the client-side adapters: the reqwest middleware and (feature
//! `proxy`) the `llm-observability-proxy` binary, each in front of an Anthropic-shaped upstream on
//! 127.0.0.1 that answers with real recorded bodies (`../shared/fixtures/provider-recorded`).
//!
//! The client sends `x-api-key` and `anthropic-version` as Anthropic's SDKs do. Checked: the
//! record's fields against an independent reading of the recorded body (a JSON message with a
//! cache write, a stream with a cache read, a stream with two tool calls, a `?beta=true` call);
//! that the bytes and headers pass untouched; that the key is in no record, not even echoed by a
//! 401; that a stream dropped after its first text delta keeps that text; that `count_tokens` is
//! forwarded and not recorded.

mod support;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, StatusCode};
use llm_observability::{LlmObservabilityLayer, MemorySink};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use serde_json::{json, Value};

use support::reqwest_fixture::{observed_client, plain_client, TestResult};
use support::Interaction;

/// The key the upstream accepts. Not `sk-`-shaped, so only the layer's knowledge of the
/// request's headers can keep it out of the record.
const API_KEY: &str = "ant-test-key-0123456789abcdef";
/// A key the upstream refuses with a 401 whose message repeats it.
const WRONG_KEY: &str = "ant-wrong-key-9876543210fedcba";
const ANTHROPIC_VERSION: &str = "2023-06-01";
/// Header asking the upstream to stop a stream after its first text delta and hang.
const CUT_HEADER: &str = "x-test-cut-after-first-delta";
/// Pause before a stream's first `content_block_delta`: time to first token must count to the
/// first content, not to `message_start`.
const FIRST_DELTA_DELAY: Duration = Duration::from_millis(150);

/// A non-streamed Message with a cache write (`cache_creation_input_tokens` 1733).
const JSON_CALL: (&str, usize) = (
    "test_instrumentor/test_anthropic_instrumentation_messages_token_counts.yaml.json",
    0,
);
/// A streamed Message with a cache read (`cache_read_input_tokens` 1165).
const STREAM_CALL: (&str, usize) = (
    "test_prompt_caching/test_anthropic_prompt_caching_stream_legacy.yaml.json",
    1,
);
/// A streamed Message: a text block, then two `tool_use` blocks streamed as `input_json_delta`.
const TOOLS_STREAM_CALL: (&str, usize) = (
    "test_instrumentor/test_anthropic_instrumentation_multiple_tool_calling_streaming.yaml.json",
    0,
);
/// A beta call: `POST /v1/messages?beta=true`.
const BETA_CALL: (&str, usize) = (
    "test_instrumentor/test_anthropic_instrumentation_beta_messages_create.yaml.json",
    0,
);

// ---------------------------------------------------------------------------------------------
// Recorded calls and what they should become

/// The recorded interaction `(file suffix, index)`; `None` without the fixtures (the loader
/// says so loudly, and fails under `CI`).
fn recorded((file, index): (&str, usize)) -> Option<Interaction> {
    let found = support::load_provider_interactions()?
        .into_iter()
        .find(|p| p.interaction.file.ends_with(file) && p.interaction.index == index)
        .unwrap_or_else(|| panic!("fixture {file}#{index}"));
    Some(found.interaction)
}

/// The `data:` JSON of each SSE event of a recorded body, with its `event:` name.
fn sse_events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter_map(|block| {
            let name = block.lines().find_map(|l| l.strip_prefix("event: "))?;
            let data = block.lines().find_map(|l| l.strip_prefix("data: "))?;
            Some((
                name.to_owned(),
                serde_json::from_str(data).expect("data is JSON"),
            ))
        })
        .collect()
}

/// What a recorded Anthropic stream says, read here without the crate: the Message it
/// amounts to (content blocks in order, tool inputs parsed), its usage (`message_start`'s,
/// with `message_delta`'s put over it) and its stop reason.
struct Oracle {
    id: String,
    model: String,
    blocks: Vec<Value>,
    usage: serde_json::Map<String, Value>,
    stop_reason: String,
    first_text: String,
}

fn oracle(body: &str) -> Oracle {
    let mut oracle = Oracle {
        id: String::new(),
        model: String::new(),
        blocks: Vec::new(),
        usage: serde_json::Map::new(),
        stop_reason: String::new(),
        first_text: String::new(),
    };
    let mut tool_json: Vec<String> = Vec::new();
    for (name, data) in sse_events(body) {
        match name.as_str() {
            "message_start" => {
                let message = &data["message"];
                oracle.id = message["id"].as_str().unwrap().to_owned();
                oracle.model = message["model"].as_str().unwrap().to_owned();
                oracle.usage = message["usage"].as_object().unwrap().clone();
            }
            "content_block_start" => {
                oracle.blocks.push(data["content_block"].clone());
                tool_json.push(String::new());
            }
            "content_block_delta" => {
                let at = data["index"].as_u64().unwrap() as usize;
                let delta = &data["delta"];
                match delta["type"].as_str().unwrap() {
                    "text_delta" => {
                        let text = delta["text"].as_str().unwrap();
                        if oracle.first_text.is_empty() {
                            oracle.first_text = text.to_owned();
                        }
                        let block = &mut oracle.blocks[at]["text"];
                        *block = json!(format!("{}{text}", block.as_str().unwrap()));
                    }
                    "input_json_delta" => {
                        tool_json[at].push_str(delta["partial_json"].as_str().unwrap())
                    }
                    other => panic!("delta {other} not expected in these fixtures"),
                }
            }
            "message_delta" => {
                oracle.stop_reason = data["delta"]["stop_reason"].as_str().unwrap().to_owned();
                for (key, value) in data["usage"].as_object().unwrap() {
                    oracle.usage.insert(key.clone(), value.clone());
                }
            }
            _ => {}
        }
    }
    for (block, input) in oracle.blocks.iter_mut().zip(tool_json) {
        if block["type"] == "tool_use" {
            block["input"] = serde_json::from_str(&input).expect("tool input is JSON");
        }
    }
    oracle
}

/// Anthropic's usage normalised as the crate documents it: every input token in
/// `input_tokens`, the cache reads and writes apart too, the total input plus output.
fn expected_usage(usage: &serde_json::Map<String, Value>) -> Value {
    let count = |key: &str| usage.get(key).and_then(Value::as_u64);
    let cached = count("cache_read_input_tokens");
    let written = count("cache_creation_input_tokens");
    let input = count("input_tokens").unwrap() + cached.unwrap_or(0) + written.unwrap_or(0);
    let output = count("output_tokens").unwrap();
    json!({"input_tokens": input, "output_tokens": output, "total_tokens": input + output,
           "cached_input_tokens": cached, "cache_creation_input_tokens": written,
           "reasoning_tokens": null})
}

/// The checks every recorded Messages call passes, on its JSON form.
fn assert_anthropic_record(record: &Value, request: &Value) {
    assert_eq!(record["schema_version"], 2);
    assert_eq!(record["endpoint"], "anthropic.messages");
    assert_eq!(record["provider"], "anthropic");
    assert_eq!(record["operation"], "chat");
    assert_eq!(record["request_model"], request["model"]);
    assert_eq!(record["request"]["model"], request["model"]);
    assert_eq!(record["request"]["max_tokens"], request["max_tokens"]);
    assert_eq!(record["request"]["messages"], request["messages"]);
    assert_eq!(
        record["request"]["stream"],
        request.get("stream").cloned().unwrap_or(json!(false))
    );
    let text = record.to_string();
    assert!(!text.contains(API_KEY), "the API key is never recorded");
    assert!(!text.contains(WRONG_KEY), "nor a refused one");
}

/// A non-streamed Message call recorded from `interaction`.
fn assert_json_call(record: &Value, interaction: &Interaction) {
    let request = interaction.request_json().unwrap();
    let body: Value = serde_json::from_str(&interaction.response_body).unwrap();
    assert_anthropic_record(record, &request);
    assert_eq!(record["status"], "success", "{record:#}");
    assert_eq!(record["http_status"], 200);
    assert_eq!(record["response"], body, "the Message as it came");
    assert_eq!(record["response_model"], body["model"]);
    assert_eq!(record["response_id"], body["id"]);
    assert_eq!(record["finish_reasons"], json!([body["stop_reason"]]));
    assert_eq!(
        record["usage"],
        expected_usage(body["usage"].as_object().unwrap())
    );
    assert_eq!(record["usage_source"], "provider");
    assert_eq!(record["timing"]["time_to_first_token_ms"], Value::Null);
    assert_eq!(record["error"], Value::Null);
}

/// A streamed Message call recorded from `interaction`, read to its end.
fn assert_stream_call(record: &Value, interaction: &Interaction) {
    let request = interaction.request_json().unwrap();
    let oracle = oracle(&interaction.response_body);
    assert_anthropic_record(record, &request);
    assert_eq!(record["status"], "success", "{record:#}");
    assert_eq!(record["http_status"], 200);
    let response = &record["response"];
    assert_eq!(response["type"], "message");
    assert_eq!(response["role"], "assistant");
    assert_eq!(response["id"], oracle.id.as_str());
    assert_eq!(response["model"], oracle.model.as_str());
    assert_eq!(response["stop_reason"], oracle.stop_reason.as_str());
    let content = response["content"].as_array().expect("content blocks");
    assert_eq!(content.len(), oracle.blocks.len(), "{response:#}");
    for (got, want) in content.iter().zip(&oracle.blocks) {
        assert_eq!(got["type"], want["type"]);
        match want["type"].as_str() {
            Some("text") => assert_eq!(got["text"], want["text"]),
            _ => {
                assert_eq!(got["id"], want["id"]);
                assert_eq!(got["name"], want["name"]);
                assert_eq!(got["input"], want["input"], "tool input assembled");
            }
        }
    }
    assert_eq!(record["response_model"], oracle.model.as_str());
    assert_eq!(record["response_id"], oracle.id.as_str());
    assert_eq!(record["finish_reasons"], json!([oracle.stop_reason]));
    assert_eq!(record["usage"], expected_usage(&oracle.usage));
    assert_eq!(record["error"], Value::Null);
    let timing = &record["timing"];
    let ttft = timing["time_to_first_token_ms"].as_f64().expect("ttft");
    assert!(
        ttft >= FIRST_DELTA_DELAY.as_secs_f64() * 1000.0,
        "time to first token counts to the first content delta, not message_start: {timing}"
    );
    assert!(ttft <= timing["duration_ms"].as_f64().unwrap(), "{timing}");
}

/// A stream the client dropped after its first text delta.
fn assert_cancelled_call(record: &Value, interaction: &Interaction) {
    let request = interaction.request_json().unwrap();
    let oracle = oracle(&interaction.response_body);
    assert_anthropic_record(record, &request);
    assert_eq!(record["status"], "cancelled", "{record:#}");
    assert_eq!(record["http_status"], 200);
    assert_eq!(record["response"]["id"], oracle.id.as_str());
    assert_eq!(
        record["response"]["content"][0]["text"],
        oracle.first_text.as_str(),
        "the partial output is kept"
    );
    assert_eq!(record["response_id"], oracle.id.as_str());
    assert!(record["timing"]["time_to_first_token_ms"].is_f64());
}

/// A 401 whose message echoed the refused key.
fn assert_unauthorized_call(record: &Value, interaction: &Interaction) {
    assert_anthropic_record(record, &interaction.request_json().unwrap());
    assert_eq!(record["status"], "error");
    assert_eq!(record["http_status"], 401);
    assert_eq!(record["error"]["type"], "authentication_error");
    assert_eq!(
        record["error"]["message"], "invalid x-api-key: [redacted]",
        "the echoed key is scrubbed from the message"
    );
    assert_eq!(record["error_type"], "authentication_error");
}

// ---------------------------------------------------------------------------------------------
// The upstream: Anthropic-shaped, on 127.0.0.1

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
struct Seen {
    path_and_query: String,
    headers: HeaderMap,
    body: Bytes,
}

#[derive(Clone)]
struct Upstream {
    /// The recorded response for each request body sent (matched by body).
    answers: Arc<Vec<Interaction>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

const COUNT_TOKENS_ANSWER: &str = r#"{"input_tokens":21}"#;

impl Upstream {
    async fn start(answers: Vec<Interaction>) -> (String, Upstream) {
        let upstream = Upstream {
            answers: Arc::new(answers),
            seen: Arc::default(),
        };
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(upstream.clone());
        let addr = support::serve(app).await;
        (format!("http://{addr}"), upstream)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn answer(State(upstream): State<Upstream>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let path_and_query = parts.uri.path_and_query().unwrap().as_str().to_owned();
    upstream.seen.lock().unwrap().push(Seen {
        path_and_query: path_and_query.clone(),
        headers: parts.headers.clone(),
        body: body.clone(),
    });
    if parts.uri.path() == "/v1/messages/count_tokens" {
        return json_response(StatusCode::OK, COUNT_TOKENS_ANSWER.to_owned());
    }
    let key = parts.headers.get("x-api-key").and_then(|v| v.to_str().ok());
    if key != Some(API_KEY) {
        let error = json!({"type": "error", "error": {"type": "authentication_error",
            "message": format!("invalid x-api-key: {}", key.unwrap_or_default())},
            "request_id": "req_011CTest"});
        return json_response(StatusCode::UNAUTHORIZED, error.to_string());
    }
    let Some(recorded) = upstream
        .answers
        .iter()
        .find(|i| i.request_body.as_bytes() == body && path_and_query == path_of(&i.uri))
    else {
        return json_response(StatusCode::NOT_FOUND, r#"{"type":"error"}"#.to_owned());
    };
    if !recorded.response_body.starts_with("event:") {
        return json_response(StatusCode::OK, recorded.response_body.clone());
    }
    let cut = parts.headers.contains_key(CUT_HEADER);
    event_stream(&recorded.response_body, cut)
}

/// The recorded URI's path and query.
fn path_of(uri: &str) -> String {
    let uri: http::Uri = uri.parse().unwrap();
    uri.path_and_query().unwrap().as_str().to_owned()
}

fn json_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// The recorded SSE body, one frame per event, [`FIRST_DELTA_DELAY`] before the first
/// `content_block_delta`; with `cut`, it stops after the first text delta and hangs.
fn event_stream(body: &str, cut: bool) -> Response {
    let mut frames: Vec<Bytes> = body
        .split_inclusive("\n\n")
        .map(|event| Bytes::from(event.to_owned()))
        .collect();
    let first_delta = frames
        .iter()
        .position(|f| f.starts_with(b"event: content_block_delta"))
        .expect("a content delta");
    if cut {
        let first_text = frames
            .iter()
            .position(|f| f.windows(10).any(|w| w == b"text_delta"))
            .expect("a text delta");
        frames.truncate(first_text + 1);
    }
    let events = futures_util::stream::iter(frames.into_iter().enumerate()).then(
        move |(at, frame)| async move {
            if at == first_delta {
                tokio::time::sleep(FIRST_DELTA_DELAY).await;
            }
            Ok::<_, Infallible>(frame)
        },
    );
    let body = if cut {
        Body::from_stream(events.chain(futures_util::stream::pending()))
    } else {
        Body::from_stream(events)
    };
    (
        [(
            http::header::CONTENT_TYPE,
            "text/event-stream; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// Reads `response`'s body until its bytes hold a text delta, then drops it.
async fn read_to_first_text_delta(response: reqwest::Response) -> Vec<u8> {
    let mut got = Vec::new();
    let mut body = response.bytes_stream();
    while !got.windows(10).any(|w| w == b"text_delta") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), body.next())
            .await
            .expect("the first text delta arrives")
            .expect("the stream goes on")
            .expect("no body error");
        got.extend_from_slice(&chunk);
    }
    got
}

// ---------------------------------------------------------------------------------------------
// Clients

/// A Messages request as Anthropic's SDKs send it, to `base` + the recorded path and query.
fn messages_request(
    client: &ClientWithMiddleware,
    base: &str,
    interaction: &Interaction,
    key: &str,
) -> reqwest_middleware::RequestBuilder {
    client
        .post(format!("{base}{}", path_of(&interaction.uri)))
        .header("x-api-key", key)
        .header("anthropic-version", ANTHROPIC_VERSION)
        .header("content-type", "application/json")
        .body(interaction.request_body.clone())
}

/// `POST /v1/messages/count_tokens` (with `query`): not a model call.
fn count_tokens_request(
    client: &ClientWithMiddleware,
    base: &str,
    query: &str,
) -> reqwest_middleware::RequestBuilder {
    let body = json!({"model": "claude-sonnet-4-6",
        "messages": [{"role": "user", "content": "How many tokens is this?"}]});
    client
        .post(format!("{base}/v1/messages/count_tokens{query}"))
        .header("x-api-key", API_KEY)
        .header("anthropic-version", ANTHROPIC_VERSION)
        .header("content-type", "application/json")
        .body(body.to_string())
}

/// Sends `request`, checks the status, and returns the body as the client read it.
async fn body_of(request: reqwest_middleware::RequestBuilder, status: u16) -> Bytes {
    let response = request.send().await.expect("loopback request");
    assert_eq!(response.status().as_u16(), status);
    response.bytes().await.expect("body")
}

/// The upstream saw the request as the client sent it: path and query, the Anthropic headers,
/// the body.
fn assert_forwarded(seen: &Seen, path_and_query: &str, key: &str, body: &[u8]) {
    assert_eq!(seen.path_and_query, path_and_query);
    assert_eq!(seen.headers["x-api-key"], key);
    assert_eq!(seen.headers["anthropic-version"], ANTHROPIC_VERSION);
    assert_eq!(seen.body, body);
}

// ---------------------------------------------------------------------------------------------
// The reqwest middleware

/// A layer whose only sink is memory; it records the `anthropic-version` header as metadata.
fn memory_layer() -> (LlmObservabilityLayer, MemorySink) {
    let memory = MemorySink::new();
    let layer = LlmObservabilityLayer::builder()
        .sink(memory.clone())
        .capture_header("anthropic-version", "anthropic_version")
        .build()
        .expect("inside a runtime");
    (layer, memory)
}

/// Every call recorded so far, as JSON.
async fn records(layer: &LlmObservabilityLayer, memory: &MemorySink) -> Vec<Value> {
    (support::flushed(layer, memory).await.iter())
        .map(|call| serde_json::to_value(&**call).expect("serialises"))
        .collect()
}

#[tokio::test]
async fn json_and_streamed_messages_through_the_middleware() -> TestResult {
    let (Some(json_call), Some(stream_call)) = (recorded(JSON_CALL), recorded(STREAM_CALL)) else {
        return Ok(());
    };
    let (base, upstream) = Upstream::start(vec![json_call.clone(), stream_call.clone()]).await;
    let (layer, memory) = memory_layer();
    let client = observed_client(&layer);

    let body = body_of(messages_request(&client, &base, &json_call, API_KEY), 200).await;
    assert_eq!(
        body,
        json_call.response_body.as_bytes(),
        "JSON bytes untouched"
    );
    let body = body_of(messages_request(&client, &base, &stream_call, API_KEY), 200).await;
    assert_eq!(
        body,
        stream_call.response_body.as_bytes(),
        "SSE bytes untouched"
    );

    let records = records(&layer, &memory).await;
    assert_eq!(records.len(), 2, "{records:#?}");
    assert_json_call(&records[0], &json_call);
    assert_stream_call(&records[1], &stream_call);
    for record in &records {
        assert_eq!(
            record["metadata"],
            json!({"anthropic_version": ANTHROPIC_VERSION}),
            "only the captured header, never the key"
        );
        assert_eq!(record["server_address"], "127.0.0.1");
    }
    let seen = upstream.seen();
    assert_forwarded(
        &seen[0],
        "/v1/messages",
        API_KEY,
        json_call.request_body.as_bytes(),
    );
    assert_forwarded(
        &seen[1],
        "/v1/messages",
        API_KEY,
        stream_call.request_body.as_bytes(),
    );
    Ok(())
}

#[tokio::test]
async fn refused_key_cut_stream_and_count_tokens_through_the_middleware() -> TestResult {
    let Some(stream_call) = recorded(STREAM_CALL) else {
        return Ok(());
    };
    let (base, upstream) = Upstream::start(vec![stream_call.clone()]).await;
    let (layer, memory) = memory_layer();
    let client = observed_client(&layer);

    let refused = body_of(
        messages_request(&client, &base, &stream_call, WRONG_KEY),
        401,
    )
    .await;
    let refused = String::from_utf8(refused.to_vec())?;
    assert!(
        refused.contains(WRONG_KEY),
        "the client gets the body as sent"
    );

    let response = messages_request(&client, &base, &stream_call, API_KEY)
        .header(CUT_HEADER, "1")
        .send()
        .await?;
    read_to_first_text_delta(response).await; // and hangs up

    let counted = body_of(count_tokens_request(&client, &base, ""), 200).await;
    assert_eq!(counted, COUNT_TOKENS_ANSWER.as_bytes());

    let records = records(&layer, &memory).await;
    assert_eq!(
        records.len(),
        2,
        "count_tokens is not recorded: {records:#?}"
    );
    assert_unauthorized_call(&records[0], &stream_call);
    assert_cancelled_call(&records[1], &stream_call);
    let seen = upstream.seen();
    assert_eq!(seen.len(), 3);
    assert_forwarded(
        &seen[0],
        "/v1/messages",
        WRONG_KEY,
        stream_call.request_body.as_bytes(),
    );
    assert_eq!(seen[2].path_and_query, "/v1/messages/count_tokens");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The proxy binary

#[cfg(feature = "proxy")]
mod through_the_proxy {
    use super::*;
    use support::proxy::Proxy;

    #[tokio::test]
    async fn anthropic_calls_through_the_proxy() -> TestResult {
        let calls = (
            recorded(JSON_CALL),
            recorded(TOOLS_STREAM_CALL),
            recorded(BETA_CALL),
            recorded(STREAM_CALL),
        );
        let (Some(json_call), Some(tools_call), Some(beta_call), Some(stream_call)) = calls else {
            return Ok(());
        };
        let answers = vec![
            json_call.clone(),
            tools_call.clone(),
            beta_call.clone(),
            stream_call.clone(),
        ];
        let (upstream_url, upstream) = Upstream::start(answers).await;
        let proxy = Proxy::start(&upstream_url, &[]).await;
        let base = format!("http://{}", proxy.addr);
        let client = ClientBuilder::new(plain_client()).build();

        let body = body_of(messages_request(&client, &base, &json_call, API_KEY), 200).await;
        assert_eq!(
            body,
            json_call.response_body.as_bytes(),
            "JSON bytes untouched"
        );
        let body = body_of(messages_request(&client, &base, &tools_call, API_KEY), 200).await;
        assert_eq!(
            body,
            tools_call.response_body.as_bytes(),
            "SSE bytes untouched"
        );
        let beta = messages_request(&client, &base, &beta_call, API_KEY)
            .header("anthropic-beta", "structured-outputs-2025-11-13");
        let body = body_of(beta, 200).await;
        assert_eq!(body, beta_call.response_body.as_bytes());
        let refused = body_of(messages_request(&client, &base, &json_call, WRONG_KEY), 401).await;
        assert!(String::from_utf8(refused.to_vec())?.contains(WRONG_KEY));
        let counted = body_of(count_tokens_request(&client, &base, "?beta=true"), 200).await;
        assert_eq!(counted, COUNT_TOKENS_ANSWER.as_bytes());
        let response = messages_request(&client, &base, &stream_call, API_KEY)
            .header(CUT_HEADER, "1")
            .send()
            .await?;
        read_to_first_text_delta(response).await; // and hangs up

        let lines = proxy.wait_for_lines(5).await;
        assert_eq!(lines.len(), 5, "{lines:#?}");
        assert_json_call(&lines[0], &json_call);
        assert_stream_call(&lines[1], &tools_call);
        assert_json_call(&lines[2], &beta_call);
        assert_unauthorized_call(&lines[3], &json_call);
        assert_cancelled_call(&lines[4], &stream_call);
        for line in &lines {
            assert_eq!(line["server_address"], "127.0.0.1");
            assert_eq!(line["metadata"], json!({}));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(proxy.lines().len(), 5, "count_tokens is not recorded");
        let file = std::fs::read_to_string(&proxy.jsonl)?;
        assert!(!file.contains(API_KEY) && !file.contains(WRONG_KEY));

        // Forwarded untouched: path and query (`?beta=true`), the Anthropic headers, the body.
        let seen = upstream.seen();
        assert_eq!(seen.len(), 6);
        assert_forwarded(
            &seen[0],
            "/v1/messages",
            API_KEY,
            json_call.request_body.as_bytes(),
        );
        assert_forwarded(
            &seen[1],
            "/v1/messages",
            API_KEY,
            tools_call.request_body.as_bytes(),
        );
        let beta_body = beta_call.request_body.as_bytes();
        assert_forwarded(&seen[2], "/v1/messages?beta=true", API_KEY, beta_body);
        assert_eq!(
            seen[2].headers["anthropic-beta"],
            "structured-outputs-2025-11-13"
        );
        assert_forwarded(
            &seen[3],
            "/v1/messages",
            WRONG_KEY,
            json_call.request_body.as_bytes(),
        );
        assert_eq!(
            seen[4].path_and_query,
            "/v1/messages/count_tokens?beta=true"
        );
        assert_eq!(seen[4].headers["x-api-key"], API_KEY);
        Ok(())
    }
}
