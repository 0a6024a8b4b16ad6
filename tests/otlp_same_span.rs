//! Same span either way: for one call, the `gen_ai` span exported through
//! `tracing-opentelemetry` (SDK in-memory exporter) and the span `OtlpSink` builds from the
//! payload (decoded by the in-process OTLP receiver) have the same name, kind, trace id, span
//! id, parent and `gen_ai.*` attributes — for a chat call, a stream and a failed call.
#![cfg(all(feature = "otlp", feature = "opentelemetry"))]

mod support;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use llm_observability::{LlmObservabilityLayer, MemorySink, OtlpSink, RequestBody};
use opentelemetry::trace::{SpanKind, TracerProvider as _};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde_json::{json, Value};
use support::otlp_receiver::{OtlpReceiver, ReceivedSpan};
use tower::{ServiceBuilder, ServiceExt};
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

const CHAT: &str = r#"{"id":"chatcmpl-same","object":"chat.completion","created":1,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"pong"},"finish_reason":"stop"},{"index":1,"message":{"role":"assistant","content":"pang"},"finish_reason":"length"}],"usage":{"prompt_tokens":11,"completion_tokens":4,"total_tokens":15,"prompt_tokens_details":{"cached_tokens":3}}}"#;
const STREAM: &str = concat!(
    "data: {\"id\":\"chatcmpl-ss\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"po\"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"chatcmpl-ss\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"ng\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7}}\n\n",
    "data: [DONE]\n\n",
);
const LIMITED: &str = r#"{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;

/// One call made inside an app span, with both exports on; returns the two spans.
async fn both_ways(
    body: Value,
    status: u16,
    content_type: &'static str,
    reply: &'static str,
) -> (SpanData, ReceivedSpan) {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    let _guard = tracing::subscriber::set_default(subscriber);

    let receiver = OtlpReceiver::start().await;
    let sink = OtlpSink::builder()
        .environment(|_| None)
        .endpoint(receiver.traces_url())
        .build()
        .unwrap();
    let memory = MemorySink::new();
    let layer = LlmObservabilityLayer::builder()
        .sink(sink)
        .sink(memory.clone())
        .build()
        .unwrap();
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
    let request = Request::post("http://api.example.test/v1/chat/completions")
        .header("host", "api.example.test")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    async {
        let response = service.oneshot(request).await.unwrap();
        response.into_body().collect().await.unwrap();
    }
    .instrument(tracing::info_span!("handle_request"))
    .await;
    layer
        .dispatcher()
        .flush(Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(memory.calls().len(), 1);

    provider.force_flush().unwrap();
    let exported: Vec<SpanData> = exporter
        .get_finished_spans()
        .unwrap()
        .into_iter()
        .filter(|s| {
            s.attributes
                .iter()
                .any(|kv| kv.key.as_str() == "gen_ai.operation.name")
        })
        .collect();
    assert_eq!(exported.len(), 1);
    let sent = receiver.wait_for_spans(1, Duration::from_secs(10)).await;
    assert_eq!(sent.len(), 1);
    (exported[0].clone(), sent[0].clone())
}

fn sdk_json(value: &opentelemetry::Value) -> Value {
    use opentelemetry::{Array, Value as V};
    match value {
        V::Bool(b) => json!(b),
        V::I64(n) => json!(n),
        V::F64(x) => json!(x),
        V::String(s) => json!(s.as_str()),
        V::Array(Array::String(values)) => {
            json!(values.iter().map(|v| v.as_str()).collect::<Vec<_>>())
        }
        other => panic!("unexpected value {other:?}"),
    }
}

fn proto_json(value: &Any) -> Value {
    match value {
        Any::BoolValue(b) => json!(b),
        Any::IntValue(n) => json!(n),
        Any::DoubleValue(x) => json!(x),
        Any::StringValue(s) => json!(s),
        Any::ArrayValue(array) => Value::Array(
            array
                .values
                .iter()
                .map(|v| proto_json(v.value.as_ref().unwrap()))
                .collect(),
        ),
        other => panic!("unexpected value {other:?}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    support::otlp_receiver::hex(bytes)
}

fn assert_same(exported: &SpanData, sent: &ReceivedSpan) {
    assert_eq!(exported.name, sent.span.name);
    assert_eq!(exported.span_kind, SpanKind::Client);
    assert_eq!(sent.span.kind, 3, "SPAN_KIND_CLIENT");
    assert_eq!(
        hex(&exported.span_context.trace_id().to_bytes()),
        sent.trace_id_hex()
    );
    assert_eq!(
        hex(&exported.span_context.span_id().to_bytes()),
        sent.span_id_hex()
    );
    assert_eq!(
        hex(&exported.parent_span_id.to_bytes()),
        sent.parent_span_id_hex()
    );
    assert_ne!(
        sent.parent_span_id_hex(),
        "0000000000000000",
        "nested in the app span"
    );
    let ours: BTreeMap<String, Value> = exported
        .attributes
        .iter()
        .filter(|kv| kv.key.as_str().starts_with("gen_ai."))
        .map(|kv| (kv.key.to_string(), sdk_json(&kv.value)))
        .collect();
    let theirs: BTreeMap<String, Value> = sent
        .span
        .attributes
        .iter()
        .filter(|kv| kv.key.starts_with("gen_ai."))
        .map(|kv| {
            (
                kv.key.clone(),
                proto_json(kv.value.as_ref().unwrap().value.as_ref().unwrap()),
            )
        })
        .collect();
    assert_eq!(ours, theirs);
    assert!(ours.len() >= 4, "{ours:?}");
    // The status agrees too.
    let error = matches!(exported.status, opentelemetry::trace::Status::Error { .. });
    assert_eq!(
        error,
        sent.span.status.as_ref().is_some_and(|s| s.code == 2)
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_chat_call() {
    let (exported, sent) = both_ways(
        json!({"model": "gpt-4o-mini", "temperature": 0.5, "max_tokens": 20, "stop": ["END"], "n": 2,
               "messages": [{"role": "user", "content": "ping"}]}),
        200,
        "application/json",
        CHAT,
    )
    .await;
    assert_same(&exported, &sent);
    assert_eq!(sent.span.name, "chat gpt-4o-mini");
}

#[tokio::test(flavor = "current_thread")]
async fn a_streamed_call() {
    let (exported, sent) = both_ways(
        json!({"model": "gpt-4o-mini", "stream": true, "stream_options": {"include_usage": true},
               "messages": [{"role": "user", "content": "ping"}]}),
        200,
        "text/event-stream",
        STREAM,
    )
    .await;
    assert_same(&exported, &sent);
    assert!(sent
        .attribute("gen_ai.response.time_to_first_chunk")
        .is_some());
}

#[tokio::test(flavor = "current_thread")]
async fn a_failed_call() {
    let (exported, sent) = both_ways(
        json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "ping"}]}),
        429,
        "application/json",
        LIMITED,
    )
    .await;
    assert_same(&exported, &sent);
    assert_eq!(sent.string("error.type"), Some("requests"));
}
