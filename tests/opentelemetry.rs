//! Composition with `tracing-opentelemetry` at its default settings (versions pinned in
//! Cargo.toml: opentelemetry 0.33, tracing-opentelemetry 0.34), as a new user sets it up: the
//! SDK's in-memory exporter behind `tracing_opentelemetry::layer()`, and the layer in an axum
//! app behind tower-http's `TraceLayer`, around a tower client, and in the reqwest middleware.
//!
//! Checked on the exported spans: the name `"{operation} {model}"`, kind CLIENT, the parent,
//! attribute types as the GenAI conventions give them, error status with its description, and
//! that the payload's trace ids are the exported span's.
#![cfg(feature = "opentelemetry")]

mod support;

use std::sync::Arc;

use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use llm_observability::{LlmCall, LlmObservabilityLayer, MemorySink, RequestBody};
use opentelemetry::trace::{SpanId, SpanKind, Status, TraceId, TracerProvider as _};
use opentelemetry::{Array, Value};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde_json::{json, Value as Json};
use tower::{ServiceBuilder, ServiceExt};
use tower_http::trace::TraceLayer;
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

const CHAT: &str = r#"{"id":"chatcmpl-ot","object":"chat.completion","created":1,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"pong"},"finish_reason":"stop"},{"index":1,"message":{"role":"assistant","content":"pang"},"finish_reason":"length"}],"usage":{"prompt_tokens":11,"completion_tokens":4,"total_tokens":15,"prompt_tokens_details":{"cached_tokens":3}}}"#;
const STREAM: &str = concat!(
    "data: {\"id\":\"chatcmpl-os\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"po\"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"chatcmpl-os\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"ng\"},\"finish_reason\":\"stop\"}]}\n\n",
    "data: [DONE]\n\n",
);
const RATE_LIMITED: &str = r#"{"error":{"message":"Rate limit reached for gpt-4o-mini","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
const INCOMING: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// The OpenTelemetry pipeline a user installs, on this thread (the tests run on a
/// current-thread runtime, so every task sees it).
struct Otel {
    exporter: InMemorySpanExporter,
    provider: SdkTracerProvider,
    _guard: tracing::subscriber::DefaultGuard,
}

impl Otel {
    fn install() -> Otel {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        Otel {
            exporter,
            provider,
            _guard: tracing::subscriber::set_default(subscriber),
        }
    }

    fn spans(&self) -> Vec<SpanData> {
        self.provider.force_flush().expect("flushed");
        self.exporter.get_finished_spans().expect("spans")
    }

    fn named(&self, name: &str) -> SpanData {
        let spans = self.spans();
        let found: Vec<_> = spans.iter().filter(|s| s.name == name).collect();
        assert_eq!(
            found.len(),
            1,
            "one span {name:?} among {:#?}",
            names(&spans)
        );
        found[0].clone()
    }

    /// The one `gen_ai` span (whatever its name).
    fn gen_ai(&self) -> SpanData {
        let spans = self.spans();
        let found: Vec<_> = spans
            .iter()
            .filter(|s| attribute(s, "gen_ai.operation.name").is_some())
            .collect();
        assert_eq!(found.len(), 1, "{:#?}", names(&spans));
        found[0].clone()
    }
}

fn names(spans: &[SpanData]) -> Vec<String> {
    spans.iter().map(|s| s.name.to_string()).collect()
}

fn attribute(span: &SpanData, key: &str) -> Option<Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.clone())
}

fn strings(values: &[&str]) -> Value {
    Value::Array(Array::String(
        values.iter().map(|v| v.to_string().into()).collect(),
    ))
}

fn hex_trace(id: TraceId) -> String {
    format!("{id:032x}")
}

fn hex_span(id: SpanId) -> String {
    format!("{id:016x}")
}

/// The payload's ids are the exported span's, and its parent's.
fn assert_same_ids(call: &LlmCall, span: &SpanData) {
    assert_eq!(
        call.trace.trace_id.to_string(),
        hex_trace(span.span_context.trace_id())
    );
    assert_eq!(
        call.trace.span_id.to_string(),
        hex_span(span.span_context.span_id())
    );
    assert_eq!(
        call.trace.parent_span_id.map(|s| s.to_string()),
        Some(hex_span(span.parent_span_id))
    );
}

/// An OpenAI-shaped upstream handler: JSON, a stream when asked, a 429 for model `limited`.
async fn openai(request: axum::extract::Request) -> axum::response::Response {
    use axum::response::IntoResponse;
    let body = request
        .into_body()
        .collect()
        .await
        .expect("request body")
        .to_bytes();
    let request: Json = serde_json::from_slice(&body).expect("JSON request");
    if request["model"] == "limited" {
        return (
            http::StatusCode::TOO_MANY_REQUESTS,
            [("content-type", "application/json")],
            RATE_LIMITED,
        )
            .into_response();
    }
    if request["stream"] == true {
        return ([("content-type", "text/event-stream")], STREAM).into_response();
    }
    ([("content-type", "application/json")], CHAT).into_response()
}

fn request_body(model: &str, stream: bool) -> String {
    json!({
        "model": model, "stream": stream, "messages": [{"role": "user", "content": "ping"}],
        "max_tokens": 50, "n": 2, "seed": 7, "temperature": 0.25, "top_p": 0.5, "stop": ["\n\n", "END"]
    })
    .to_string()
}

fn chat_request(uri: &str, model: &str, stream: bool) -> Request<Full<Bytes>> {
    Request::post(uri)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(request_body(model, stream))))
        .expect("valid request")
}

async fn upstream() -> std::net::SocketAddr {
    support::serve(Router::new().route("/v1/chat/completions", post(openai))).await
}

fn memory_layer() -> (LlmObservabilityLayer, MemorySink) {
    support::memory_layer()
}

async fn one_call(layer: &LlmObservabilityLayer, memory: &MemorySink) -> Arc<LlmCall> {
    let calls = support::flushed(layer, memory).await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    calls[0].clone()
}

/// The attributes of a call with every parameter set, typed as the conventions give them.
fn assert_typed_attributes(span: &SpanData) {
    let at = |key| attribute(span, key);
    assert_eq!(at("gen_ai.operation.name"), Some(Value::from("chat")));
    assert_eq!(at("gen_ai.provider.name"), Some(Value::from("openai")));
    assert_eq!(at("gen_ai.request.model"), Some(Value::from("gpt-4o-mini")));
    assert_eq!(at("gen_ai.request.max_tokens"), Some(Value::I64(50)));
    assert_eq!(at("gen_ai.request.choice.count"), Some(Value::I64(2)));
    assert_eq!(at("gen_ai.request.seed"), Some(Value::I64(7)));
    assert_eq!(at("gen_ai.request.temperature"), Some(Value::F64(0.25)));
    assert_eq!(at("gen_ai.request.top_p"), Some(Value::F64(0.5)));
    assert_eq!(
        at("gen_ai.request.stop_sequences"),
        Some(strings(&["\n\n", "END"]))
    );
    assert_eq!(
        at("gen_ai.response.model"),
        Some(Value::from("gpt-4o-mini-2024-07-18"))
    );
}

#[tokio::test(flavor = "current_thread")]
async fn axum_server_behind_trace_layer_exports_a_genai_client_span() {
    let otel = Otel::install();
    let (layer, memory) = memory_layer();
    let app = Router::new()
        .route("/v1/chat/completions", post(openai))
        .layer(layer.clone())
        .layer(TraceLayer::new_for_http());
    let addr = support::serve(app).await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let response = client
        .request(chat_request(
            &format!("http://{addr}/v1/chat/completions"),
            "gpt-4o-mini",
            false,
        ))
        .await
        .expect("served");
    response.into_body().collect().await.expect("body");
    let call = one_call(&layer, &memory).await;

    let span = otel.named("chat gpt-4o-mini");
    let request_span = otel.named("request");
    assert_eq!(span.span_kind, SpanKind::Client);
    assert_eq!(span.parent_span_id, request_span.span_context.span_id());
    assert_eq!(span.status, Status::Unset);
    assert_typed_attributes(&span);
    assert_eq!(
        attribute(&span, "gen_ai.response.finish_reasons"),
        Some(strings(&["stop", "length"]))
    );
    assert_eq!(
        attribute(&span, "gen_ai.usage.input_tokens"),
        Some(Value::I64(11))
    );
    assert_eq!(
        attribute(&span, "gen_ai.usage.output_tokens"),
        Some(Value::I64(4))
    );
    assert_eq!(
        attribute(&span, "gen_ai.usage.cache_read.input_tokens"),
        Some(Value::I64(3))
    );
    assert_eq!(
        attribute(&span, "gen_ai.response.id"),
        Some(Value::from("chatcmpl-ot"))
    );
    assert_eq!(attribute(&span, "error.type"), None);
    assert_same_ids(&call, &span);
}

#[tokio::test(flavor = "current_thread")]
async fn a_streamed_call_has_time_to_first_chunk_as_a_double() {
    let otel = Otel::install();
    let (layer, memory) = memory_layer();
    let app = Router::new()
        .route("/v1/chat/completions", post(openai))
        .layer(layer.clone());
    let service = app.into_service::<Full<Bytes>>();
    let response = service
        .oneshot(chat_request(
            "http://localhost/v1/chat/completions",
            "gpt-4o-mini",
            true,
        ))
        .await
        .expect("served");
    response.into_body().collect().await.expect("body");
    let call = one_call(&layer, &memory).await;
    let span = otel.named("chat gpt-4o-mini");
    assert_eq!(
        attribute(&span, "gen_ai.request.stream"),
        Some(Value::Bool(true))
    );
    let ttft = call
        .timing
        .time_to_first_token_ms
        .expect("a streamed first chunk");
    assert_eq!(
        attribute(&span, "gen_ai.response.time_to_first_chunk"),
        Some(Value::F64(ttft / 1000.0))
    );
    assert_eq!(
        attribute(&span, "gen_ai.response.finish_reasons"),
        Some(strings(&["stop"]))
    );
}

#[tokio::test(flavor = "current_thread")]
async fn an_error_status_carries_its_message_and_error_type() {
    let otel = Otel::install();
    let (layer, memory) = memory_layer();
    let app = Router::new()
        .route("/v1/chat/completions", post(openai))
        .layer(layer.clone());
    let response = app
        .into_service::<Full<Bytes>>()
        .oneshot(chat_request(
            "http://localhost/v1/chat/completions",
            "limited",
            false,
        ))
        .await
        .expect("served");
    assert_eq!(response.status(), 429);
    response.into_body().collect().await.expect("body");
    let call = one_call(&layer, &memory).await;
    let span = otel.named("chat limited");
    assert_eq!(
        span.status,
        Status::error("Rate limit reached for gpt-4o-mini")
    );
    assert_eq!(
        attribute(&span, "error.type"),
        Some(Value::from("requests"))
    );
    assert_eq!(call.error_type.as_deref(), Some("requests"));
}

#[tokio::test(flavor = "current_thread")]
async fn tower_client_stack_parents_the_span_under_the_callers_span() {
    let otel = Otel::install();
    let addr = upstream().await;
    let (layer, memory) = memory_layer();
    let client = ServiceBuilder::new()
        .layer(layer.clone())
        .service(Client::builder(TokioExecutor::new()).build_http::<RequestBody<Full<Bytes>>>());
    let app_span = tracing::info_span!("answer_question");
    async {
        let response = client
            .oneshot(chat_request(
                &format!("http://{addr}/v1/chat/completions"),
                "gpt-4o-mini",
                false,
            ))
            .await
            .expect("served");
        response.into_body().collect().await.expect("body");
    }
    .instrument(app_span.clone())
    .await;
    drop(app_span);
    let call = one_call(&layer, &memory).await;
    let span = otel.named("chat gpt-4o-mini");
    let app = otel.named("answer_question");
    assert_eq!(span.span_kind, SpanKind::Client);
    assert_eq!(span.parent_span_id, app.span_context.span_id());
    assert_eq!(span.span_context.trace_id(), app.span_context.trace_id());
    assert_typed_attributes(&span);
    assert_same_ids(&call, &span);
}

#[tokio::test(flavor = "current_thread")]
async fn reqwest_middleware_parents_the_span_under_the_callers_span() {
    let otel = Otel::install();
    let addr = upstream().await;
    let (layer, memory) = memory_layer();
    let client = support::reqwest_fixture::observed_client(&layer);
    let app_span = tracing::info_span!("summarise");
    async {
        let response = client
            .post(format!("http://{addr}/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(request_body("gpt-4o-mini", false))
            .send()
            .await
            .expect("served");
        response.bytes().await.expect("body");
    }
    .instrument(app_span.clone())
    .await;
    drop(app_span);
    let call = one_call(&layer, &memory).await;
    let span = otel.named("chat gpt-4o-mini");
    let app = otel.named("summarise");
    assert_eq!(span.span_kind, SpanKind::Client);
    assert_eq!(span.parent_span_id, app.span_context.span_id());
    assert_typed_attributes(&span);
    assert_same_ids(&call, &span);
}

#[tokio::test(flavor = "current_thread")]
async fn an_incoming_traceparent_parents_the_exported_span_when_the_app_has_no_trace() {
    let otel = Otel::install();
    let (layer, memory) = memory_layer();
    let mut request = chat_request("http://localhost/v1/chat/completions", "gpt-4o-mini", false);
    request
        .headers_mut()
        .insert("traceparent", http::HeaderValue::from_static(INCOMING));
    support::through_json_upstream(&layer, request, CHAT).await;
    let call = one_call(&layer, &memory).await;
    let span = otel.gen_ai();
    assert_eq!(
        hex_trace(span.span_context.trace_id()),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(hex_span(span.parent_span_id), "00f067aa0ba902b7");
    assert_same_ids(&call, &span);
}
