//! `OtlpSink` against an in-process OTLP/HTTP receiver that decodes what it gets with the
//! `opentelemetry-proto` crate (tests/support/otlp_receiver.rs): calls made through the layer
//! arrive as one span each with every id, time, attribute, resource attribute and header
//! checked; failed calls carry ERROR status and an exception event; the message content is
//! there only when asked for; refusals and outages are counted as the dispatcher counts them.
#![cfg(feature = "otlp")]

mod support;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use llm_observability::{
    LlmCall, LlmObservabilityLayer, MemorySink, OtlpSink, RequestBody, SinkConfig,
};
use opentelemetry::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::ArrayValue;
use serde_json::{json, Value};
use support::otlp_receiver::{Answer, OtlpReceiver, ReceivedSpan};
use tower::{ServiceBuilder, ServiceExt};

const WAIT: Duration = Duration::from_secs(20);
const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const CHAT: &str = r#"{"id":"chatcmpl-otlp","object":"chat.completion","created":1,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"pong"},"finish_reason":"stop"}],"usage":{"prompt_tokens":11,"completion_tokens":4,"total_tokens":15,"prompt_tokens_details":{"cached_tokens":3}}}"#;
const BAD_REQUEST: &str = r#"{"error":{"message":"The model `nope` does not exist","type":"invalid_request_error","param":"model","code":"model_not_found"}}"#;

fn chat_request(body: Value) -> Request<Full<Bytes>> {
    Request::post("http://api.example.test/v1/chat/completions")
        .header("host", "api.example.test")
        .header("content-type", "application/json")
        .header("traceparent", PARENT)
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

/// Sends `request` through `layer` to an upstream that answers `status` with `reply`.
async fn call(
    layer: &LlmObservabilityLayer,
    request: Request<Full<Bytes>>,
    status: u16,
    reply: &'static str,
) {
    let service = ServiceBuilder::new().layer(layer.clone()).service_fn(
        move |request: Request<RequestBody<Full<Bytes>>>| async move {
            request.into_body().collect().await?;
            Ok::<_, Infallible>(
                Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from_static(reply.as_bytes())))
                    .unwrap(),
            )
        },
    );
    let response = service.oneshot(request).await.unwrap();
    response.into_body().collect().await.unwrap();
}

async fn flushed(layer: &LlmObservabilityLayer, memory: &MemorySink) -> Vec<Arc<LlmCall>> {
    layer.dispatcher().flush(WAIT).await.unwrap();
    memory.calls()
}

fn nanos(time: time::OffsetDateTime) -> u64 {
    u64::try_from(time.unix_timestamp_nanos()).unwrap()
}

fn s(text: &str) -> Any {
    Any::StringValue(text.to_owned())
}

fn strings(values: &[&str]) -> Any {
    Any::ArrayValue(ArrayValue {
        values: values
            .iter()
            .map(|v| opentelemetry_proto::tonic::common::v1::AnyValue { value: Some(s(v)) })
            .collect(),
    })
}

fn json_attribute(span: &ReceivedSpan, key: &str) -> Value {
    serde_json::from_str(span.string(key).unwrap_or_else(|| panic!("no {key}"))).unwrap()
}

fn keys(span: &ReceivedSpan) -> Vec<String> {
    let mut keys: Vec<String> = span
        .span
        .attributes
        .iter()
        .map(|kv| kv.key.clone())
        .collect();
    keys.sort();
    keys
}

#[tokio::test]
async fn a_call_is_one_span_with_every_id_time_attribute_and_header() {
    let receiver = OtlpReceiver::start().await;
    let sink = OtlpSink::builder()
        .environment(|_| None)
        .endpoint(receiver.traces_url())
        .header("Authorization", "Bearer otlp-token")
        .service_name("checkout")
        .resource_attribute("deployment.environment.name", "test")
        .gzip(true)
        .message_content(true)
        .span_attributes(|call, attributes| {
            attributes.push(KeyValue::new("app.call.id", call.id.clone()));
        })
        .build()
        .unwrap();
    let memory = MemorySink::new();
    let layer = support::quick_layer(sink, &memory);
    let body = json!({
        "model": "gpt-4o-mini",
        "temperature": 0.2,
        "max_tokens": 50,
        "messages": [
            {"role": "system", "content": "Answer in one word."},
            {"role": "user", "content": "ping"}
        ],
        "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    });
    call(&layer, chat_request(body), 200, CHAT).await;
    let calls = flushed(&layer, &memory).await;
    let payload = &calls[0];
    let spans = receiver.wait_for_spans(1, WAIT).await;
    assert_eq!(spans.len(), 1);
    let span = &spans[0];

    assert_eq!(span.span.name, "chat gpt-4o-mini");
    assert_eq!(span.span.kind, 3, "SPAN_KIND_CLIENT");
    assert_eq!(span.trace_id_hex(), payload.trace.trace_id.to_string());
    assert_eq!(span.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(span.span_id_hex(), payload.trace.span_id.to_string());
    assert_eq!(span.parent_span_id_hex(), "00f067aa0ba902b7");
    assert_eq!(
        span.span.start_time_unix_nano,
        nanos(payload.timing.start_time)
    );
    assert_eq!(span.span.end_time_unix_nano, nanos(payload.timing.end_time));
    assert!(span.span.end_time_unix_nano >= span.span.start_time_unix_nano);
    assert_eq!(span.span.status.as_ref().map_or(0, |s| s.code), 0, "UNSET");
    assert!(span.span.events.is_empty());
    assert_eq!(span.scope_name, "llm-observability");
    assert_eq!(span.scope_version, env!("CARGO_PKG_VERSION"));

    let expected = [
        ("gen_ai.operation.name", s("chat")),
        ("gen_ai.provider.name", s("openai")),
        ("server.address", s("api.example.test")),
        ("gen_ai.request.model", s("gpt-4o-mini")),
        ("gen_ai.request.stream", Any::BoolValue(false)),
        ("gen_ai.request.temperature", Any::DoubleValue(0.2)),
        ("gen_ai.request.max_tokens", Any::IntValue(50)),
        ("gen_ai.response.model", s("gpt-4o-mini-2024-07-18")),
        ("gen_ai.response.id", s("chatcmpl-otlp")),
        ("gen_ai.response.finish_reasons", strings(&["stop"])),
        ("gen_ai.usage.input_tokens", Any::IntValue(11)),
        ("gen_ai.usage.output_tokens", Any::IntValue(4)),
        ("gen_ai.usage.cache_read.input_tokens", Any::IntValue(3)),
        ("app.call.id", s(&payload.id)),
    ];
    for (key, value) in &expected {
        assert_eq!(span.attribute(key), Some(value), "{key}");
    }
    assert_eq!(
        json_attribute(span, "gen_ai.system_instructions"),
        json!([{"type": "text", "content": "Answer in one word."}])
    );
    assert_eq!(
        json_attribute(span, "gen_ai.input.messages"),
        json!([{"role": "user", "parts": [{"type": "text", "content": "ping"}]}])
    );
    assert_eq!(
        json_attribute(span, "gen_ai.output.messages"),
        json!([{"role": "assistant", "parts": [{"type": "text", "content": "pong"}], "finish_reason": "stop"}])
    );
    assert_eq!(
        json_attribute(span, "gen_ai.tool.definitions"),
        json!([{"type": "function", "name": "lookup", "parameters": {"type": "object"}}])
    );
    // Nothing else: every attribute the span carries is checked above.
    let mut all: Vec<String> = expected.iter().map(|(k, _)| k.to_string()).collect();
    all.extend(
        [
            "gen_ai.system_instructions",
            "gen_ai.input.messages",
            "gen_ai.output.messages",
            "gen_ai.tool.definitions",
        ]
        .map(String::from),
    );
    all.sort();
    assert_eq!(keys(span), all);

    assert_eq!(span.resource_string("service.name"), Some("checkout"));
    assert_eq!(
        span.resource_string("deployment.environment.name"),
        Some("test")
    );
    assert_eq!(span.resource_string("telemetry.sdk.language"), Some("rust"));

    let requests = receiver.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.path, "/v1/traces");
    assert!(request.gzip);
    assert_eq!(request.headers["authorization"], "Bearer otlp-token");
    assert_eq!(request.headers["content-type"], "application/x-protobuf");
    assert_eq!(request.headers["content-encoding"], "gzip");
    let stats = layer.dispatcher().stats();
    assert_eq!(stats.sinks[0].name, "otlp");
    assert_eq!(stats.sinks[0].delivered, 1);
}

#[tokio::test]
async fn content_is_opt_in_and_environment_settings_apply() {
    let receiver = OtlpReceiver::start().await;
    let base = receiver.base_url();
    let sink = OtlpSink::builder()
        .environment(move |name| match name {
            "OTEL_EXPORTER_OTLP_ENDPOINT" => Some(base.clone()),
            "OTEL_EXPORTER_OTLP_HEADERS" => {
                Some("x-tenant=blue%20team,authorization=Basic%20eA==".into())
            }
            "OTEL_SERVICE_NAME" => Some("from-env".into()),
            "OTEL_RESOURCE_ATTRIBUTES" => Some("service.version=1.2,team=ml".into()),
            _ => None,
        })
        .build()
        .unwrap();
    let memory = MemorySink::new();
    let layer = support::quick_layer(sink, &memory);
    call(
        &layer,
        chat_request(
            json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "secret"}]}),
        ),
        200,
        CHAT,
    )
    .await;
    flushed(&layer, &memory).await;
    let spans = receiver.wait_for_spans(1, WAIT).await;
    let span = &spans[0];
    for key in [
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "gen_ai.system_instructions",
        "gen_ai.tool.definitions",
    ] {
        assert_eq!(span.attribute(key), None, "{key} without message_content");
    }
    assert!(!keys(span).iter().any(|k| k.contains("message")));
    assert_eq!(span.resource_string("service.name"), Some("from-env"));
    assert_eq!(span.resource_string("service.version"), Some("1.2"));
    assert_eq!(span.resource_string("team"), Some("ml"));
    let request = &receiver.requests()[0];
    assert_eq!(request.path, "/v1/traces");
    assert!(!request.gzip);
    assert_eq!(request.headers["x-tenant"], "blue team");
    assert_eq!(request.headers["authorization"], "Basic eA==");
}

#[tokio::test]
async fn a_failed_call_has_error_status_and_an_exception_event() {
    let receiver = OtlpReceiver::start().await;
    let sink = OtlpSink::builder()
        .environment(|_| None)
        .endpoint(receiver.traces_url())
        .build()
        .unwrap();
    let memory = MemorySink::new();
    let layer = support::quick_layer(sink, &memory);
    call(
        &layer,
        chat_request(json!({"model": "nope", "messages": [{"role": "user", "content": "hi"}]})),
        404,
        BAD_REQUEST,
    )
    .await;
    let calls = flushed(&layer, &memory).await;
    let spans = receiver.wait_for_spans(1, WAIT).await;
    let span = &spans[0];
    let status = span.span.status.as_ref().unwrap();
    assert_eq!(status.code, 2, "STATUS_CODE_ERROR");
    assert_eq!(status.message, "The model `nope` does not exist");
    assert_eq!(span.string("error.type"), Some("invalid_request_error"));
    assert_eq!(span.span.events.len(), 1);
    let event = &span.span.events[0];
    assert_eq!(event.name, "exception");
    assert_eq!(event.time_unix_nano, nanos(calls[0].timing.end_time));
    let find = |key: &str| support::otlp_receiver::find(&event.attributes, key).cloned();
    assert_eq!(find("exception.type"), Some(s("invalid_request_error")));
    assert_eq!(
        find("exception.message"),
        Some(s("The model `nope` does not exist"))
    );
}

/// Calls made by hand, straight to the sink through a dispatcher with quick retries.
async fn dispatch(sink: OtlpSink, count: usize) -> llm_observability::SinkStats {
    let layer = LlmObservabilityLayer::builder()
        .sink_with(sink, SinkConfig::new().dispatch(support::quick_dispatch()))
        .build()
        .unwrap();
    for _ in 0..count {
        let mut call = LlmCall::new(llm_observability::Endpoint::ChatCompletions);
        call.request.model = Some("gpt-4o-mini".into());
        layer.dispatcher().dispatch(Arc::new(call));
    }
    layer.dispatcher().flush(WAIT).await.unwrap();
    layer.dispatcher().stats().sinks.remove(0)
}

#[tokio::test]
async fn unavailable_is_retried_refused_is_counted_unreachable_fails() {
    // 503 with Retry-After, then 429: retried, then delivered.
    let receiver = OtlpReceiver::start().await;
    receiver.answer([Answer::status(503).retry_after("0"), Answer::status(429)]);
    let sink = OtlpSink::builder()
        .environment(|_| None)
        .endpoint(receiver.traces_url())
        .build()
        .unwrap();
    let stats = dispatch(sink, 1).await;
    assert_eq!((stats.delivered, stats.failed), (1, 0), "{stats:?}");
    let requests = receiver.requests();
    assert_eq!(
        requests.iter().map(|r| r.answered).collect::<Vec<_>>(),
        [503, 429, 200]
    );
    let ids: Vec<_> = requests
        .iter()
        .map(|r| {
            r.request.resource_spans[0].scope_spans[0].spans[0]
                .span_id
                .clone()
        })
        .collect();
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "the same span each time"
    );

    // 400: permanent, one attempt, counted as failed.
    let receiver = OtlpReceiver::start().await;
    receiver.answer([Answer::status(400).body("bad span")]);
    let sink = OtlpSink::builder()
        .environment(|_| None)
        .endpoint(receiver.traces_url())
        .build()
        .unwrap();
    let stats = dispatch(sink, 2).await;
    assert_eq!((stats.delivered, stats.failed), (0, 2), "{stats:?}");
    assert_eq!(receiver.requests().len(), 1, "a refusal is not retried");

    // Nothing listens: failed after the retries.
    let port = support::backend::free_port();
    let sink = OtlpSink::builder()
        .environment(|_| None)
        .endpoint(format!("http://127.0.0.1:{port}/v1/traces"))
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let stats = dispatch(sink, 1).await;
    assert_eq!((stats.delivered, stats.failed), (0, 1), "{stats:?}");
}

#[tokio::test]
async fn export_errors_say_what_the_backend_answered() {
    use llm_observability::Sink;
    let receiver = OtlpReceiver::start().await;
    receiver.answer([
        Answer::status(401).body("{\"error\": \"bad key\"}"),
        Answer::status(429).retry_after("7"),
    ]);
    let sink = OtlpSink::builder()
        .environment(|_| None)
        .endpoint(receiver.traces_url())
        .build()
        .unwrap();
    let batch = [Arc::new(LlmCall::new(
        llm_observability::Endpoint::Embeddings,
    ))];
    let error = sink.export(&batch).await.unwrap_err();
    assert!(!error.is_retryable());
    let url = receiver.traces_url();
    assert_eq!(
        error.message(),
        format!("OTLP endpoint {url} answered HTTP 401 (check the authentication headers): {{\"error\": \"bad key\"}}")
    );
    let error = sink.export(&batch).await.unwrap_err();
    assert!(error.is_retryable());
    assert_eq!(error.retry_after(), Some(Duration::from_secs(7)));
    sink.export(&batch).await.unwrap();
    assert_eq!(receiver.spans().len(), 1);

    let port = support::backend::free_port();
    let sink = OtlpSink::builder()
        .environment(|_| None)
        .endpoint(format!("http://127.0.0.1:{port}/v1/traces"))
        .build()
        .unwrap();
    let error = sink.export(&batch).await.unwrap_err();
    assert!(error.is_retryable());
    assert!(
        error.message().starts_with(&format!(
            "cannot reach OTLP endpoint http://127.0.0.1:{port}/v1/traces: "
        )),
        "{}",
        error.message()
    );
}

#[test]
fn bad_configuration_is_refused_at_build() {
    for endpoint in ["localhost:4318", "grpc://collector:4317"] {
        let error = OtlpSink::builder()
            .environment(|_| None)
            .endpoint(endpoint)
            .build()
            .unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with(&format!("invalid OTLP endpoint {endpoint:?}")),
            "{error}"
        );
    }
    let error = OtlpSink::builder()
        .environment(|_| None)
        .header("bad name", "1")
        .build()
        .unwrap_err();
    assert!(matches!(
        error,
        llm_observability::OtlpError::InvalidHeader { .. }
    ));
}

/// Recorded calls of every API family — Anthropic (a streamed one with two tool calls, a
/// streamed one with thinking, one writing and one reading the prompt cache), a streamed Gemini
/// call with two function calls and reasoning tokens, a Bedrock converse-stream with text and a
/// tool use, a streamed Ollama chat with thinking — arrive as GenAI spans with their provider
/// (`anthropic`, `gcp.gemini`, `aws.bedrock`, `ollama`) and operation, the models, the response
/// id where the API gives one, the counts the recordings report (input with the cache included,
/// cache reads and writes apart, output with the reasoning included), the finish reason as the
/// API says it, and the content in the conventions' parts: the text, the reasoning text and
/// the tool calls' ids, names and arguments as the recordings have them, and the tools offered.
#[tokio::test]
async fn recorded_calls_of_every_family_arrive_with_provider_counts_tool_calls_and_reasoning() {
    let Some(cases) = support::calls::provider_cases() else {
        return;
    };
    let receiver = OtlpReceiver::start().await;
    let sink = OtlpSink::builder()
        .environment(|_| None)
        .endpoint(receiver.traces_url())
        .message_content(true)
        .build()
        .unwrap();
    let memory = MemorySink::new();
    let layer = support::quick_layer(sink, &memory);
    let sent = support::calls::send_each(&layer, &memory, &cases).await;
    let spans = receiver.wait_for_spans(cases.len(), WAIT).await;
    assert_eq!(spans.len(), cases.len());
    for (case, call) in sent {
        let (label, expect) = (case.name, &case.expect);
        let span_id = call.trace.span_id.to_string();
        let span = spans
            .iter()
            .find(|s| s.span_id_hex() == span_id)
            .unwrap_or_else(|| panic!("{label}: no span {span_id}"));
        let int = |key: &str| match span.attribute(key) {
            Some(Any::IntValue(n)) => u64::try_from(*n).ok(),
            _ => None,
        };
        let model = expect.request_model.as_str();
        assert_eq!(
            span.span.name,
            format!("{} {model}", case.operation),
            "{label}"
        );
        assert_eq!(
            span.string("gen_ai.provider.name"),
            Some(case.provider),
            "{label}"
        );
        assert_eq!(
            span.string("gen_ai.operation.name"),
            Some(case.operation),
            "{label}"
        );
        assert_eq!(span.string("gen_ai.request.model"), Some(model), "{label}");
        assert_eq!(
            span.string("gen_ai.response.model"),
            expect.response_model.as_deref(),
            "{label}"
        );
        assert_eq!(
            span.string("gen_ai.response.id"),
            expect.id.as_deref(),
            "{label}"
        );
        assert_eq!(
            span.attribute("gen_ai.response.finish_reasons"),
            Some(&strings(&[expect.finish_reason.as_str()])),
            "{label}"
        );
        assert_eq!(
            span.attribute("gen_ai.request.stream"),
            Some(&Any::BoolValue(case.streamed)),
            "{label}"
        );
        assert_eq!(
            int("gen_ai.usage.input_tokens"),
            Some(expect.input_tokens),
            "{label}"
        );
        assert_eq!(
            int("gen_ai.usage.output_tokens"),
            Some(expect.output_tokens),
            "{label}"
        );
        assert_eq!(
            int("gen_ai.usage.cache_read.input_tokens"),
            expect.cache_read,
            "{label}"
        );
        assert_eq!(
            int("gen_ai.usage.cache_creation.input_tokens"),
            expect.cache_creation,
            "{label}"
        );
        let output = json_attribute(span, "gen_ai.output.messages");
        let parts = output[0]["parts"].as_array().expect("parts");
        assert_eq!(output.as_array().map(Vec::len), Some(1), "{label}");
        assert_eq!(output[0]["role"], "assistant", "{label}");
        assert_eq!(
            output[0]["finish_reason"],
            expect.finish_reason.as_str(),
            "{label}"
        );
        let of =
            |kind: &str| -> Vec<&Value> { parts.iter().filter(|p| p["type"] == kind).collect() };
        let text: String = of("text")
            .iter()
            .filter_map(|p| p["content"].as_str())
            .collect();
        assert_eq!(text, expect.text, "{label}");
        let reasoning: String = of("reasoning")
            .iter()
            .filter_map(|p| p["content"].as_str())
            .collect();
        assert_eq!(reasoning, expect.reasoning, "{label}");
        let calls: Vec<(String, String, Value)> = of("tool_call")
            .iter()
            .map(|p| {
                (
                    p["id"].as_str().unwrap_or("").to_owned(),
                    p["name"].as_str().unwrap_or("").to_owned(),
                    p["arguments"].clone(),
                )
            })
            .collect();
        assert_eq!(calls, expect.tool_calls, "{label}");
        assert_eq!(
            parts.len(),
            of("text").len() + of("reasoning").len() + of("tool_call").len(),
            "{label}: only text, reasoning and tool-call parts: {parts:?}"
        );
        let definitions: Vec<(String, Value)> = span
            .string("gen_ai.tool.definitions")
            .map(|text| serde_json::from_str::<Value>(text).expect("JSON definitions"))
            .and_then(|d| d.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .map(|d| {
                assert_eq!(d["type"], "function", "{label}");
                (
                    d["name"].as_str().unwrap_or("").to_owned(),
                    d["parameters"].clone(),
                )
            })
            .collect();
        assert_eq!(definitions, expect.tools, "{label}: tool definitions");
    }
    let covered = |provider: &str| cases.iter().filter(|c| c.provider == provider).count();
    assert_eq!(
        ["anthropic", "gcp.gemini", "aws.bedrock", "ollama"].map(covered),
        [4, 1, 1, 1]
    );
    let by_name = |name: &str| &cases.iter().find(|c| c.name == name).expect(name).expect;
    assert!(by_name("tools").tool_calls.len() >= 2 && !by_name("thinking").reasoning.is_empty());
    assert!(by_name("cache-write").cache_creation > Some(0));
    assert!(by_name("cache-read").cache_read > Some(0));
    assert!(
        by_name("gemini").tool_calls.len() == 2 && by_name("gemini").reasoning_tokens > Some(0)
    );
    assert!(by_name("bedrock").tool_calls.len() == 1 && !by_name("bedrock").text.is_empty());
    assert!(!by_name("ollama").reasoning.is_empty() && !by_name("ollama").text.is_empty());
}
