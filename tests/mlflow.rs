//! `MlflowSink` against a real MLflow tracking server (PyPI mlflow 3.17.2, SQLite store,
//! started by scripts/backends/mlflow.sh, one per test binary). Each test uses its own
//! experiment and reads the traces back through MLflow's REST API
//! (`/api/3.0/mlflow/traces/search`, `/api/3.0/mlflow/traces/batchGet`).
#![cfg(feature = "mlflow")]

mod support;

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use llm_observability::{
    CallMetadata, Endpoint, LlmCall, LlmObservabilityLayer, MemorySink, MlflowSink, RequestBody,
    Sink, TraceContext,
};
use serde_json::{json, Value};
use support::backend::Backend;
use tower::{ServiceBuilder, ServiceExt};

const WAIT: Duration = Duration::from_secs(30);

fn mlflow() -> &'static Backend {
    static SERVER: OnceLock<Backend> = OnceLock::new();
    SERVER.get_or_init(|| Backend::start("mlflow", Duration::from_secs(240)))
}

fn base() -> String {
    mlflow().base_url()
}

async fn rest(method: &str, path: &str, body: Option<Value>) -> Value {
    let client = reqwest::Client::new();
    let url = format!("{}{path}", base());
    let request = match method {
        "GET" => client.get(&url),
        _ => client.post(&url).json(&body.unwrap_or(Value::Null)),
    };
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_success(), "{method} {path}: {status} {text}");
    serde_json::from_str(&text).unwrap()
}

async fn experiment_id(name: &str) -> String {
    let found = rest(
        "GET",
        &format!("/api/2.0/mlflow/experiments/get-by-name?experiment_name={name}"),
        None,
    )
    .await;
    found["experiment"]["experiment_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The experiment's trace infos, polled until there are `count` of them in a final state.
async fn traces(experiment: &str, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let found = rest(
            "POST",
            "/api/3.0/mlflow/traces/search",
            Some(json!({
                "locations": [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": experiment}}],
                "max_results": 100,
            })),
        )
        .await;
        let traces = found["traces"].as_array().cloned().unwrap_or_default();
        let done = traces
            .iter()
            .filter(|t| t["state"] != "IN_PROGRESS")
            .count();
        if traces.len() >= count && done >= count {
            return traces;
        }
        assert!(
            Instant::now() < deadline,
            "expected {count} finished traces, got {found:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Whole traces (info and spans) by id.
async fn batch_get(ids: &[&str]) -> Vec<Value> {
    let query: Vec<String> = ids.iter().map(|id| format!("trace_ids={id}")).collect();
    let found = rest(
        "GET",
        &format!("/api/3.0/mlflow/traces/batchGet?{}", query.join("&")),
        None,
    )
    .await;
    found["traces"].as_array().cloned().unwrap_or_default()
}

const CHAT: &str = r#"{"id":"chatcmpl-ml","object":"chat.completion","created":1,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"pong"},"finish_reason":"stop"}],"usage":{"prompt_tokens":11,"completion_tokens":4,"total_tokens":15}}"#;
const EMBEDDING: &str = r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,0.2]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":3,"total_tokens":3}}"#;
const STREAM: &str = concat!(
    "data: {\"id\":\"chatcmpl-mls\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"po\"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"chatcmpl-mls\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"ng\"},\"finish_reason\":\"stop\"}]}\n\n",
    "data: {\"id\":\"chatcmpl-mls\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11}}\n\n",
    "data: [DONE]\n\n",
);
const NOT_FOUND: &str = r#"{"error":{"message":"The model `gpt-nope` does not exist","type":"invalid_request_error","param":"model","code":"model_not_found"}}"#;

fn unique(name: &str) -> String {
    format!("{name}-{}", uuid::Uuid::new_v4().simple())
}

/// Sends `body` to `path` through `layer`, to an upstream answering `status` with `reply`.
async fn call(
    layer: &LlmObservabilityLayer,
    path: &str,
    body: Value,
    extra: impl FnOnce(&mut Request<Full<Bytes>>),
    status: u16,
    content_type: &'static str,
    reply: &'static str,
) {
    let service = ServiceBuilder::new().layer(layer.clone()).service_fn(
        move |request: Request<RequestBody<Full<Bytes>>>| async move {
            request.into_body().collect().await?;
            Ok::<_, Infallible>(
                Response::builder()
                    .status(status)
                    .header("content-type", content_type)
                    .body(Full::new(Bytes::from_static(reply.as_bytes())))
                    .unwrap(),
            )
        },
    );
    let mut request = Request::post(format!("http://api.example.test{path}"))
        .header("host", "api.example.test")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    extra(&mut request);
    let response = service.oneshot(request).await.unwrap();
    response.into_body().collect().await.unwrap();
}

/// An OTLP JSON `AnyValue` as plain JSON.
fn plain(value: &Value) -> Value {
    let Some((kind, inner)) = value.as_object().and_then(|o| o.iter().next()) else {
        return Value::Null;
    };
    match kind.as_str() {
        "string_value" | "bool_value" | "double_value" => inner.clone(),
        "int_value" => match inner {
            Value::String(text) => json!(text.parse::<i64>().unwrap()),
            other => other.clone(),
        },
        "array_value" => Value::Array(
            inner["values"]
                .as_array()
                .into_iter()
                .flatten()
                .map(plain)
                .collect(),
        ),
        "kvlist_value" => Value::Object(
            inner["values"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|kv| (kv["key"].as_str().unwrap().to_owned(), plain(&kv["value"])))
                .collect(),
        ),
        other => panic!("unexpected value kind {other}"),
    }
}

/// A span's attributes, as plain JSON by key.
fn attributes(span: &Value) -> serde_json::Map<String, Value> {
    span["attributes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|kv| (kv["key"].as_str().unwrap().to_owned(), plain(&kv["value"])))
        .collect()
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn mlflow_trace_id(call: &LlmCall) -> String {
    format!("tr-{}", call.trace.trace_id)
}

/// The one trace of `call` (info and spans), once MLflow has it in a final state.
async fn trace_of(experiment: &str, call: &LlmCall) -> Value {
    let id = mlflow_trace_id(call);
    let deadline = Instant::now() + WAIT;
    loop {
        let infos = traces(experiment, 0).await;
        if infos
            .iter()
            .any(|t| t["trace_id"] == id.as_str() && t["state"] != "IN_PROGRESS")
        {
            let mut found = batch_get(&[&id]).await;
            assert_eq!(found.len(), 1);
            return found.remove(0);
        }
        assert!(
            Instant::now() < deadline,
            "no finished trace {id} in {infos:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn each_call_is_one_trace_with_what_mlflows_ui_reads() {
    let name = unique("chat");
    let sink = MlflowSink::builder(base())
        .experiment(&name)
        .build()
        .unwrap();
    let memory = MemorySink::new();
    let layer = support::quick_layer(sink, &memory);
    let chat = json!({
        "model": "gpt-4o-mini",
        "temperature": 0.3,
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "ping"}],
        "tools": [{"type": "function", "function": {"name": "lookup", "description": "Looks up", "parameters": {"type": "object", "properties": {}}}}]
    });
    call(
        &layer,
        "/v1/chat/completions",
        chat.clone(),
        |request| {
            request.extensions_mut().insert(
                CallMetadata::new()
                    .with("user_id", "user-7")
                    .with("session_id", "session-42"),
            );
        },
        200,
        "application/json",
        CHAT,
    )
    .await;
    call(
        &layer,
        "/v1/embeddings",
        json!({"model": "text-embedding-3-small", "input": "ping"}),
        |_| {},
        200,
        "application/json",
        EMBEDDING,
    )
    .await;
    layer.dispatcher().flush(WAIT).await.unwrap();
    let stats = layer.dispatcher().stats();
    assert_eq!(stats.sinks[0].delivered, 2, "{stats:?}");
    let calls = memory.calls();
    let (chat_call, embedding_call) = if calls[0].endpoint == Endpoint::ChatCompletions {
        (&calls[0], &calls[1])
    } else {
        (&calls[1], &calls[0])
    };

    // The sink created the experiment; one trace per call.
    let experiment = experiment_id(&name).await;
    let infos = traces(&experiment, 2).await;
    assert_eq!(infos.len(), 2, "{infos:#?}");

    let trace = trace_of(&experiment, chat_call).await;
    let info = &trace["trace_info"];
    assert_eq!(info["state"], "OK");
    assert_eq!(info["request_preview"], "ping");
    assert_eq!(info["response_preview"], "pong");
    assert_eq!(
        info["trace_location"]["mlflow_experiment"]["experiment_id"],
        experiment.as_str()
    );
    let metadata = &info["trace_metadata"];
    let usage: Value =
        serde_json::from_str(metadata["mlflow.trace.tokenUsage"].as_str().unwrap()).unwrap();
    assert_eq!(
        usage,
        json!({"input_tokens": 11, "output_tokens": 4, "total_tokens": 15})
    );
    assert_eq!(metadata["mlflow.trace.user"], "user-7", "{info:#}");
    assert_eq!(metadata["mlflow.trace.session"], "session-42", "{info:#}");

    let spans = trace["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 1);
    let span = &spans[0];
    assert_eq!(span["name"], "chat gpt-4o-mini");
    assert_eq!(
        span["trace_id"],
        base64(&chat_call.trace.trace_id.to_bytes())
    );
    assert_eq!(span["span_id"], base64(&chat_call.trace.span_id.to_bytes()));
    assert_eq!(span["parent_span_id"].as_str().unwrap_or(""), "");
    let start = u64::try_from(chat_call.timing.start_time.unix_timestamp_nanos()).unwrap();
    assert_eq!(
        span["start_time_unix_nano"]
            .as_u64()
            .or_else(|| span["start_time_unix_nano"].as_str()?.parse().ok()),
        Some(start)
    );
    let at = attributes(span);
    assert_eq!(at["mlflow.spanType"], "CHAT_MODEL");
    assert_eq!(at["mlflow.llm.model"], "gpt-4o-mini");
    assert_eq!(at["mlflow.llm.provider"], "openai");
    assert_eq!(at["mlflow.message.format"], "openai");
    assert_eq!(
        at["mlflow.chat.tokenUsage"],
        json!({"input_tokens": 11, "output_tokens": 4, "total_tokens": 15})
    );
    assert_eq!(at["mlflow.spanInputs"], chat);
    let response: Value = serde_json::from_str(CHAT).unwrap();
    assert_eq!(at["mlflow.spanOutputs"], response);
    assert_eq!(at["mlflow.chat.tools"], chat["tools"]);
    assert_eq!(at["gen_ai.request.model"], "gpt-4o-mini");
    assert_eq!(at["gen_ai.response.model"], "gpt-4o-mini-2024-07-18");
    assert_eq!(at["gen_ai.usage.input_tokens"], 11);
    assert_eq!(at["gen_ai.usage.output_tokens"], 4);
    assert_eq!(at["user.id"], "user-7");
    assert_eq!(at["session.id"], "session-42");

    let trace = trace_of(&experiment, embedding_call).await;
    let span = &trace["spans"][0];
    let at = attributes(span);
    assert_eq!(span["name"], "embeddings text-embedding-3-small");
    assert_eq!(at["mlflow.spanType"], "EMBEDDING");
    assert_eq!(
        at["mlflow.spanInputs"],
        json!({"model": "text-embedding-3-small", "input": "ping"})
    );
    let usage: Value = serde_json::from_str(
        trace["trace_info"]["trace_metadata"]["mlflow.trace.tokenUsage"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(usage["input_tokens"], 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_call_is_an_error_trace_with_an_exception_event() {
    let name = unique("errors");
    let sink = MlflowSink::builder(base())
        .experiment(&name)
        .build()
        .unwrap();
    let memory = MemorySink::new();
    let layer = support::quick_layer(sink, &memory);
    call(
        &layer,
        "/v1/chat/completions",
        json!({"model": "gpt-nope", "messages": [{"role": "user", "content": "hi"}]}),
        |_| {},
        404,
        "application/json",
        NOT_FOUND,
    )
    .await;
    layer.dispatcher().flush(WAIT).await.unwrap();
    let calls = memory.calls();
    let experiment = experiment_id(&name).await;
    let trace = trace_of(&experiment, &calls[0]).await;
    assert_eq!(trace["trace_info"]["state"], "ERROR");
    let span = &trace["spans"][0];
    assert_eq!(span["status"]["code"], "STATUS_CODE_ERROR", "{span:#}");
    assert_eq!(
        span["status"]["message"],
        "The model `gpt-nope` does not exist"
    );
    let events = span["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["name"], "exception");
    let event = attributes(&events[0]);
    assert_eq!(
        event["exception.message"],
        "The model `gpt-nope` does not exist"
    );
    assert_eq!(event["exception.type"], "invalid_request_error");
    let at = attributes(span);
    assert_eq!(at["error.type"], "invalid_request_error");
    assert_eq!(
        at["mlflow.spanOutputs"],
        serde_json::from_str::<Value>(NOT_FOUND).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_streamed_call_is_one_span_with_the_assembled_output() {
    let name = unique("stream");
    let sink = MlflowSink::builder(base())
        .experiment(&name)
        .build()
        .unwrap();
    let memory = MemorySink::new();
    let layer = support::quick_layer(sink, &memory);
    call(
        &layer,
        "/v1/chat/completions",
        json!({"model": "gpt-4o-mini", "stream": true, "stream_options": {"include_usage": true},
               "messages": [{"role": "user", "content": "ping"}]}),
        |_| {},
        200,
        "text/event-stream",
        STREAM,
    )
    .await;
    layer.dispatcher().flush(WAIT).await.unwrap();
    let calls = memory.calls();
    let experiment = experiment_id(&name).await;
    let trace = trace_of(&experiment, &calls[0]).await;
    let spans = trace["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 1, "one span for the whole stream");
    let at = attributes(&spans[0]);
    assert_eq!(
        at["mlflow.spanOutputs"]["choices"][0]["message"]["content"],
        "pong"
    );
    assert_eq!(
        at["mlflow.spanOutputs"]["choices"][0]["finish_reason"],
        "stop"
    );
    assert_eq!(at["mlflow.spanInputs"]["stream"], true);
    assert_eq!(
        at["mlflow.chat.tokenUsage"],
        json!({"input_tokens": 9, "output_tokens": 2, "total_tokens": 11})
    );
    assert_eq!(trace["trace_info"]["response_preview"], "pong");
    let usage: Value = serde_json::from_str(
        trace["trace_info"]["trace_metadata"]["mlflow.trace.tokenUsage"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        usage,
        json!({"input_tokens": 9, "output_tokens": 2, "total_tokens": 11})
    );
}

/// Exports an app span (a SERVER span around the call) to the experiment, as an app's own
/// OpenTelemetry pipeline would (OTLP protobuf made with the `opentelemetry-proto` types).
async fn export_app_span(experiment: &str, app: &TraceContext, start: std::time::SystemTime) {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::{
        span::SpanKind, status::StatusCode, ResourceSpans, ScopeSpans, Span, Status,
    };
    use prost::Message;
    let nanos = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    };
    let span = Span {
        trace_id: app.trace_id.to_bytes().to_vec(),
        span_id: app.span_id.to_bytes().to_vec(),
        name: "POST /ask".into(),
        kind: SpanKind::Server as i32,
        start_time_unix_nano: nanos(start),
        end_time_unix_nano: nanos(std::time::SystemTime::now()),
        status: Some(Status {
            code: StatusCode::Ok as i32,
            message: String::new(),
        }),
        ..Default::default()
    };
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![span],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let response = reqwest::Client::new()
        .post(format!("{}/v1/traces", base()))
        .header("content-type", "application/x-protobuf")
        .header("x-mlflow-experiment-id", experiment)
        .body(request.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{:?}",
        response.text().await
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_inside_an_app_span_nests_under_it_in_the_same_trace() {
    let name = unique("nested");
    let sink = MlflowSink::builder(base())
        .experiment(&name)
        .build()
        .unwrap();
    let memory = MemorySink::new();
    let layer = support::quick_layer(sink, &memory);
    let app = TraceContext::root();
    let start = std::time::SystemTime::now();
    call(
        &layer,
        "/v1/chat/completions",
        json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "ping"}]}),
        |request| {
            request
                .headers_mut()
                .insert("traceparent", app.traceparent().parse().unwrap());
        },
        200,
        "application/json",
        CHAT,
    )
    .await;
    layer.dispatcher().flush(WAIT).await.unwrap();
    let experiment = experiment_id(&name).await;
    export_app_span(&experiment, &app, start).await;
    let calls = memory.calls();
    let llm = &calls[0];
    assert_eq!(llm.trace.trace_id, app.trace_id);
    let trace = trace_of(&experiment, llm).await;
    assert_eq!(trace["trace_info"]["state"], "OK");
    let spans = trace["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 2, "{spans:#?}");
    let root = spans.iter().find(|s| s["name"] == "POST /ask").unwrap();
    let child = spans
        .iter()
        .find(|s| s["name"] == "chat gpt-4o-mini")
        .unwrap();
    assert_eq!(root["span_id"], base64(&app.span_id.to_bytes()));
    assert_eq!(child["parent_span_id"], base64(&app.span_id.to_bytes()));
    assert_eq!(child["trace_id"], root["trace_id"]);
    assert_eq!(
        traces(&experiment, 1).await.len(),
        1,
        "one trace for app span and call"
    );

    // With root_spans, a call whose parent MLflow never sees is a finished trace of its own.
    let name = unique("rooted");
    let sink = MlflowSink::builder(base())
        .experiment(&name)
        .root_spans(true)
        .build()
        .unwrap();
    let memory = MemorySink::new();
    let layer = support::quick_layer(sink, &memory);
    call(
        &layer,
        "/v1/chat/completions",
        json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "ping"}]}),
        |request| {
            request.headers_mut().insert(
                "traceparent",
                TraceContext::root().traceparent().parse().unwrap(),
            );
        },
        200,
        "application/json",
        CHAT,
    )
    .await;
    layer.dispatcher().flush(WAIT).await.unwrap();
    let calls = memory.calls();
    assert!(calls[0].trace.parent_span_id.is_some());
    let trace = trace_of(&experiment_id(&name).await, &calls[0]).await;
    assert_eq!(trace["trace_info"]["state"], "OK");
    assert_eq!(
        trace["spans"][0]["parent_span_id"].as_str().unwrap_or(""),
        ""
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_url_or_a_deleted_experiment_is_a_clear_permanent_error() {
    let batch = [Arc::new(LlmCall::new(Endpoint::ChatCompletions))];

    // Not an MLflow server (the server's HTML 404 page).
    let sink = MlflowSink::builder(format!("{}/not-mlflow", base()))
        .experiment("x")
        .build()
        .unwrap();
    let error = sink.export(&batch).await.unwrap_err();
    assert!(!error.is_retryable());
    assert!(
        error
            .message()
            .contains("does not look like an MLflow tracking server (is the URL right?)"),
        "{}",
        error.message()
    );

    // A deleted experiment.
    let name = unique("deleted");
    let created = rest(
        "POST",
        "/api/2.0/mlflow/experiments/create",
        Some(json!({"name": name})),
    )
    .await;
    rest(
        "POST",
        "/api/2.0/mlflow/experiments/delete",
        Some(json!({"experiment_id": created["experiment_id"]})),
    )
    .await;
    let sink = MlflowSink::builder(base())
        .experiment(&name)
        .build()
        .unwrap();
    let error = sink.export(&batch).await.unwrap_err();
    assert!(!error.is_retryable());
    assert_eq!(
        error.message(),
        format!(
            "MLflow experiment {name:?} at {} is deleted: restore it or choose another name",
            base()
        )
    );

    // Nothing listening: retryable, says where.
    let port = support::backend::free_port();
    let uri = format!("http://127.0.0.1:{port}");
    let sink = MlflowSink::builder(&uri).build().unwrap();
    let error = sink.export(&batch).await.unwrap_err();
    assert!(error.is_retryable());
    assert_eq!(
        error.message(),
        format!("cannot reach the MLflow tracking server at {uri}")
    );

    // Through the dispatcher: every call of the streak is counted as failed, none delivered.
    let sink = MlflowSink::builder(format!("{}/not-mlflow", base()))
        .build()
        .unwrap();
    let memory = MemorySink::new();
    let layer = support::quick_layer(sink, &memory);
    for _ in 0..3 {
        layer
            .dispatcher()
            .dispatch(Arc::new(LlmCall::new(Endpoint::ChatCompletions)));
    }
    layer.dispatcher().flush(WAIT).await.unwrap();
    let stats = layer.dispatcher().stats();
    assert_eq!(
        (stats.sinks[0].delivered, stats.sinks[0].failed),
        (0, 3),
        "{stats:?}"
    );
}

/// The `mlflow.message.format` of each provider: the format names MLflow's own autologging
/// writes and its chat view parses (`anthropic`, `gemini`, `bedrock`); MLflow has no Ollama
/// format, and the crate names the API.
fn message_format(provider: &str) -> &'static str {
    match provider {
        "anthropic" => "anthropic",
        "gcp.gemini" => "gemini",
        "aws.bedrock" => "bedrock",
        "ollama" => "ollama",
        other => panic!("no message format for {other}"),
    }
}

/// Recorded calls of every API family (Anthropic: streamed tool calls, streamed thinking, a
/// cache write, a cache read; a streamed Gemini call with function calls and reasoning tokens;
/// a Bedrock converse-stream with a tool use; a streamed Ollama chat with thinking) become
/// MLflow traces in their provider's message format: MLflow reads back provider, model, the
/// token usage with the cache counts the recordings report, the request as sent (its messages
/// and tools) and the response as output (read as the recording reads: id, counts, text,
/// reasoning, tool calls, finish reason), and the tools as chat tools.
#[tokio::test(flavor = "multi_thread")]
async fn recorded_calls_of_every_family_are_traces_in_their_format_with_usage() {
    let Some(cases) = support::calls::provider_cases() else {
        return;
    };
    let name = unique("providers");
    let sink = MlflowSink::builder(base())
        .experiment(&name)
        .build()
        .unwrap();
    let memory = MemorySink::new();
    let layer = support::quick_layer(sink, &memory);
    let sent = support::calls::send_each(&layer, &memory, &cases).await;
    let stats = layer.dispatcher().stats();
    assert_eq!(stats.sinks[0].delivered, cases.len() as u64, "{stats:?}");
    let experiment = experiment_id(&name).await;
    for (case, call) in sent {
        let (label, expect) = (case.name, &case.expect);
        let trace = trace_of(&experiment, &call).await;
        let info = &trace["trace_info"];
        assert_eq!(info["state"], "OK", "{label}");
        let usage: Value = serde_json::from_str(
            info["trace_metadata"]["mlflow.trace.tokenUsage"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            usage["input_tokens"], expect.input_tokens,
            "{label}: {usage}"
        );
        assert_eq!(usage["output_tokens"], expect.output_tokens, "{label}");
        assert_eq!(usage["total_tokens"], expect.total_tokens, "{label}");
        let span = &trace["spans"][0];
        let at = attributes(span);
        let model = expect.request_model.as_str();
        assert_eq!(span["name"], format!("{} {model}", case.operation));
        assert_eq!(at["mlflow.spanType"], "CHAT_MODEL");
        assert_eq!(
            at["mlflow.message.format"],
            message_format(case.provider),
            "{label}"
        );
        assert_eq!(at["mlflow.llm.provider"], case.provider);
        assert_eq!(at["mlflow.llm.model"], model);
        assert_eq!(at["gen_ai.provider.name"], case.provider);
        assert_eq!(
            at.get("gen_ai.response.model").and_then(Value::as_str),
            expect.response_model.as_deref(),
            "{label}"
        );
        let mut token_usage = json!({
            "input_tokens": expect.input_tokens,
            "output_tokens": expect.output_tokens,
            "total_tokens": expect.total_tokens,
        });
        if let Some(read) = expect.cache_read {
            token_usage["cache_read_input_tokens"] = json!(read);
        }
        if let Some(written) = expect.cache_creation {
            token_usage["cache_creation_input_tokens"] = json!(written);
        }
        assert_eq!(at["mlflow.chat.tokenUsage"], token_usage, "{label}");
        let inputs = &at["mlflow.spanInputs"];
        assert_eq!(
            inputs.pointer(case.model_pointer()),
            Some(&json!(model)),
            "{label}: spanInputs{}",
            case.model_pointer()
        );
        for pointer in [case.messages_pointer(), case.tools_pointer()] {
            assert_eq!(
                inputs.pointer(pointer),
                case.request.pointer(pointer),
                "{label}: spanInputs{pointer}"
            );
        }
        if case.provider == "anthropic" {
            assert_eq!(inputs["max_tokens"], case.request["max_tokens"], "{label}");
        }
        case.assert_response(&at["mlflow.spanOutputs"], label);
        let tools: Vec<(String, Value)> = at
            .get("mlflow.chat.tools")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|tool| {
                assert_eq!(tool["type"], "function", "{label}");
                let function = &tool["function"];
                (
                    function["name"].as_str().unwrap_or("").to_owned(),
                    function["parameters"].clone(),
                )
            })
            .collect();
        assert_eq!(tools, expect.tools, "{label}: mlflow.chat.tools");
    }
}
