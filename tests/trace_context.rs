//! Where a call's trace and span ids come from — the caller's OpenTelemetry span, an incoming
//! `traceparent`, or fresh ids — and where they go: the payload, the `CallId` extension on the
//! request and the response, and (opt-in) the upstream's `traceparent`.

mod support;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::extract::Request as AxumRequest;
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use llm_observability::{CallId, LlmCall, LlmObservabilityLayer, MemorySink, RequestBody};
use serde_json::{json, Value};
use tower::{ServiceBuilder, ServiceExt};

const CHAT: &str = r#"{"id":"chatcmpl-tc","object":"chat.completion","created":1,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"pong"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}"#;
const INCOMING: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn chat_body() -> String {
    json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "ping"}]}).to_string()
}

fn chat_request(uri: &str, traceparent: Option<&str>) -> Request<Full<Bytes>> {
    let mut request = Request::post(uri).header("content-type", "application/json");
    if let Some(traceparent) = traceparent {
        request = request.header("traceparent", traceparent);
    }
    request
        .body(Full::new(Bytes::from(chat_body())))
        .expect("valid request")
}

fn layer(propagate: bool) -> (LlmObservabilityLayer, MemorySink) {
    let memory = MemorySink::new();
    let layer = LlmObservabilityLayer::builder()
        .sink(memory.clone())
        .propagate_trace_context(propagate)
        .build()
        .expect("inside a runtime");
    (layer, memory)
}

/// The `traceparent` each request to an upstream carried (`None`: it had none).
#[derive(Clone, Default)]
struct SeenTraceparents(Arc<Mutex<Vec<Option<String>>>>);

impl SeenTraceparents {
    fn record(&self, headers: &HeaderMap) {
        let value = headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        self.0.lock().expect("not poisoned").push(value);
    }

    fn all(&self) -> Vec<Option<String>> {
        self.0.lock().expect("not poisoned").clone()
    }
}

/// An OpenAI-shaped upstream on 127.0.0.1 that notes the `traceparent` it receives.
async fn upstream(seen: SeenTraceparents) -> std::net::SocketAddr {
    let app = Router::new().route(
        "/v1/chat/completions",
        post(move |request: AxumRequest| {
            let seen = seen.clone();
            async move {
                seen.record(request.headers());
                ([("content-type", "application/json")], CHAT)
            }
        }),
    );
    support::serve(app).await
}

fn is_lower_hex(text: &str, digits: usize) -> bool {
    text.len() == digits && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

async fn one_call(layer: &LlmObservabilityLayer, memory: &MemorySink) -> Arc<LlmCall> {
    let calls = support::flushed(layer, memory).await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    calls[0].clone()
}

/// (b) Server side: the incoming `traceparent` makes the call a child of the caller's span, and
/// the handler reads the call's id from the request.
#[tokio::test]
async fn server_honours_incoming_traceparent_and_hands_the_call_id_to_the_handler() {
    let (layer, memory) = layer(false);
    let app = Router::new()
        .route(
            "/v1/chat/completions",
            post(|request: AxumRequest| async move {
                let call = request.extensions().get::<CallId>().cloned();
                let body = json!({
                    "id": "chatcmpl-srv", "object": "chat.completion", "model": "gpt-4o-mini",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                    "call_id": call.as_ref().map(|c| c.to_string()),
                    "call_trace": call.as_ref().map(|c| c.trace().traceparent()),
                });
                axum::Json(body)
            }),
        )
        .layer(layer.clone());
    let addr = support::serve(app).await;

    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let uri = format!("http://{addr}/v1/chat/completions");
    let response = client
        .request(chat_request(&uri, Some(INCOMING)))
        .await
        .expect("served");
    let body: Value = serde_json::from_slice(
        &response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes(),
    )
    .expect("JSON");

    let call = one_call(&layer, &memory).await;
    assert_eq!(
        call.trace.trace_id.to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(
        call.trace.parent_span_id.map(|s| s.to_string()).as_deref(),
        Some("00f067aa0ba902b7")
    );
    assert_ne!(call.trace.span_id.to_string(), "00f067aa0ba902b7");
    assert_eq!(body["call_id"], call.id.as_str());
    assert_eq!(body["call_trace"], call.trace.traceparent());
    let line: Value = serde_json::to_value(call.as_ref()).expect("serialisable");
    assert_eq!(
        line["trace"]["trace_id"],
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(line["trace"]["parent_span_id"], "00f067aa0ba902b7");
}

/// (c) No trace anywhere: every call is a valid root span of a trace of its own; the client
/// reads the call id from the response; nothing is added to the upstream request by default.
#[tokio::test]
async fn fresh_ids_are_valid_and_unique_and_nothing_is_propagated_by_default() {
    let seen = SeenTraceparents::default();
    let addr = upstream(seen.clone()).await;
    let (layer, memory) = layer(false);
    let client = ServiceBuilder::new()
        .layer(layer.clone())
        .service(Client::builder(TokioExecutor::new()).build_http::<RequestBody<Full<Bytes>>>());
    let uri = format!("http://{addr}/v1/chat/completions");
    let mut ids = Vec::new();
    for _ in 0..3 {
        let response = client
            .clone()
            .oneshot(chat_request(&uri, None))
            .await
            .expect("served");
        let id = response
            .extensions()
            .get::<CallId>()
            .cloned()
            .expect("CallId on the response");
        response.into_body().collect().await.expect("body");
        ids.push(id);
    }
    let calls = support::flushed(&layer, &memory).await;
    assert_eq!(calls.len(), 3);
    for (call, id) in calls.iter().zip(&ids) {
        assert_eq!(call.id, id.as_str());
        assert_eq!(&call.trace, id.trace());
        assert!(is_lower_hex(&call.trace.trace_id.to_string(), 32));
        assert!(is_lower_hex(&call.trace.span_id.to_string(), 16));
        assert_eq!(call.trace.parent_span_id, None);
    }
    assert_ne!(calls[0].trace.trace_id, calls[1].trace.trace_id);
    assert_ne!(calls[1].trace.trace_id, calls[2].trace.trace_id);
    assert_ne!(calls[0].id, calls[1].id);
    assert_eq!(seen.all(), vec![None, None, None]);
}

/// Propagation on: the upstream receives the call's own span as its parent, both through a
/// tower client stack and through the reqwest middleware; a caller's `traceparent` is
/// continued, not lost.
#[tokio::test]
async fn propagation_sends_the_calls_traceparent_upstream() {
    let seen = SeenTraceparents::default();
    let addr = upstream(seen.clone()).await;
    let uri = format!("http://{addr}/v1/chat/completions");
    let (layer, memory) = layer(true);

    let tower_client = ServiceBuilder::new()
        .layer(layer.clone())
        .service(Client::builder(TokioExecutor::new()).build_http::<RequestBody<Full<Bytes>>>());
    for traceparent in [None, Some(INCOMING)] {
        let response = tower_client
            .clone()
            .oneshot(chat_request(&uri, traceparent))
            .await
            .expect("served");
        response.into_body().collect().await.expect("body");
    }
    let reqwest_client = support::reqwest_fixture::observed_client(&layer);
    let response = reqwest_client
        .post(&uri)
        .header("content-type", "application/json")
        .body(chat_body())
        .send()
        .await
        .expect("served");
    let id = response
        .extensions()
        .get::<CallId>()
        .cloned()
        .expect("CallId on the reqwest response");
    response.bytes().await.expect("body");

    let calls = support::flushed(&layer, &memory).await;
    assert_eq!(calls.len(), 3);
    let sent: Vec<Option<String>> = calls.iter().map(|c| Some(c.trace.traceparent())).collect();
    assert_eq!(seen.all(), sent);
    assert_eq!(
        calls[1].trace.trace_id.to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "the caller's trace is continued"
    );
    assert_eq!(calls[2].id, id.as_str());
}

/// A handler that is not an LLM endpoint sees no `CallId`.
#[tokio::test]
async fn non_llm_requests_carry_no_call_id() {
    let (layer, memory) = layer(true);
    let service = ServiceBuilder::new().layer(layer.clone()).service_fn(
        |request: Request<RequestBody<Full<Bytes>>>| async move {
            assert!(request.extensions().get::<CallId>().is_none());
            assert!(request.headers().get("traceparent").is_none());
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
        },
    );
    let response = service
        .oneshot(
            Request::get("http://localhost/healthz")
                .body(Full::new(Bytes::new()))
                .expect("valid"),
        )
        .await
        .expect("served");
    assert!(response.extensions().get::<CallId>().is_none());
    assert!(support::flushed(&layer, &memory).await.is_empty());
}
