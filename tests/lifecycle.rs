//! How calls end: completed, cancelled half-way, failed in transport or mid-body, HTTP errors,
//! and requests that are not LLM calls at all.

mod support;

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Body as _;
use http_body_util::{BodyExt, Full};
use llm_observability::{
    CallMetadata, CallStatus, LlmObservabilityLayer, MemorySink, RequestBody, ResponseBody,
};
use serde_json::json;
use support::{ChannelBody, Frames};
use tower::{Service, ServiceBuilder, ServiceExt};

fn chat_request(stream: bool) -> Request<Full<Bytes>> {
    let body = json!({"model": "gpt-4o-mini", "stream": stream,
        "messages": [{"role": "user", "content": "Say hello"}]});
    Request::post("http://llm.internal/v1/chat/completions")
        .header("content-type", "application/json")
        .header("x-user-id", "user-7")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("request")
}

fn chunk(delta: serde_json::Value) -> Bytes {
    let chunk = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "gpt-4o-mini-2024",
        "choices": [{"index": 0, "delta": delta, "finish_reason": null}]});
    Bytes::from(format!("data: {chunk}\n\n"))
}

/// Starts a streamed chat call through the layer, against an upstream whose SSE body the test
/// feeds by hand: returns the body the client reads and the upstream's frame sender.
async fn open_stream() -> (
    ResponseBody<ChannelBody>,
    Frames,
    LlmObservabilityLayer,
    MemorySink,
) {
    let (layer, memory) = support::memory_layer();
    let (body, frames) = support::open_stream(
        &layer,
        chat_request(true),
        &[("content-type", "text/event-stream")],
    )
    .await;
    (body, frames, layer, memory)
}

#[tokio::test]
async fn client_hanging_up_half_way_gives_one_cancelled_payload_with_the_partial_output() {
    let (mut body, frames, layer, memory) = open_stream().await;
    for piece in [
        json!({"role": "assistant", "content": ""}),
        json!({"content": "Hello"}),
        json!({"content": " wor"}),
    ] {
        frames.send(Ok(chunk(piece))).unwrap();
        let frame = body.frame().await.expect("frame").expect("ok");
        assert!(frame.is_data());
    }
    // The upstream is still streaming; the client goes away.
    drop(body);
    let calls = support::flushed(&layer, &memory).await;
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.status, CallStatus::Cancelled);
    assert_eq!(call.http_status, Some(200));
    assert_eq!(
        call.response.as_ref().unwrap()["choices"][0]["message"]["content"],
        "Hello wor"
    );
    assert!(call.finish_reasons.is_empty());
    assert!(call.timing.time_to_first_token_ms.is_some());
    assert_eq!(
        call.error.as_ref().unwrap().kind.as_deref(),
        Some("cancelled")
    );
    // The upstream's later frames go nowhere and record nothing more.
    let _ = frames.send(Ok(chunk(json!({"content": "ld"}))));
    assert_eq!(support::flushed(&layer, &memory).await.len(), 1);
}

#[tokio::test]
async fn dropping_the_response_future_before_the_head_is_cancelled_without_status() {
    let (layer, memory) = support::memory_layer();
    let upstream = tower::service_fn(|_request: Request<RequestBody<Full<Bytes>>>| async {
        std::future::pending::<Result<Response<Full<Bytes>>, Infallible>>().await
    });
    let mut service = ServiceBuilder::new().layer(layer.clone()).service(upstream);
    let future = service.ready().await.unwrap().call(chat_request(false));
    drop(future);
    let calls = support::flushed(&layer, &memory).await;
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].status, CallStatus::Cancelled);
    assert_eq!(calls[0].http_status, None);
}

#[tokio::test]
async fn body_error_mid_stream_is_an_error_with_the_partial_output() {
    let (body, frames, layer, memory) = open_stream().await;
    frames
        .send(Ok(chunk(
            json!({"role": "assistant", "content": "Partial"}),
        )))
        .unwrap();
    frames
        .send(Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "upstream reset",
        )))
        .unwrap();
    let result = body.collect().await;
    assert!(result.is_err(), "the client sees the body error unchanged");
    let calls = support::flushed(&layer, &memory).await;
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.status, CallStatus::Error);
    let error = call.error.as_ref().unwrap();
    assert_eq!(error.kind.as_deref(), Some("body"));
    assert!(error.message.as_deref().unwrap().contains("upstream reset"));
    assert_eq!(
        call.response.as_ref().unwrap()["choices"][0]["message"]["content"],
        "Partial"
    );
}

#[tokio::test]
async fn inner_service_error_is_a_transport_error() {
    let (layer, memory) = support::memory_layer();
    let upstream = tower::service_fn(|_request: Request<RequestBody<Full<Bytes>>>| async {
        Err::<Response<Full<Bytes>>, _>(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "connect: connection refused",
        ))
    });
    let mut service = ServiceBuilder::new().layer(layer.clone()).service(upstream);
    let error = service
        .ready()
        .await
        .unwrap()
        .call(chat_request(false))
        .await
        .unwrap_err();
    assert_eq!(
        error.kind(),
        std::io::ErrorKind::ConnectionRefused,
        "the caller gets the same error"
    );
    let calls = support::flushed(&layer, &memory).await;
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.status, CallStatus::Error);
    assert_eq!(call.http_status, None);
    let error = call.error.as_ref().unwrap();
    assert_eq!(error.kind.as_deref(), Some("transport"));
    assert_eq!(
        error.message.as_deref(),
        Some("connect: connection refused")
    );
    // The upstream failed without reading the request body; its frames were taken as the
    // body was dropped, so the record still says what was asked.
    assert_eq!(call.request.model.as_deref(), Some("gpt-4o-mini"));
    assert!(call.request.messages.is_some());
    assert!(call.decode_errors.is_empty(), "{:?}", call.decode_errors);
}

/// A body that has nothing ready when it is dropped unread (a slow client) is recorded as
/// not read, without waiting for it.
#[tokio::test]
async fn a_request_body_dropped_unread_and_not_ready_is_not_waited_for() {
    let (layer, memory) = support::memory_layer();
    let upstream = tower::service_fn(
        |_request: Request<RequestBody<support::ChannelBody>>| async {
            Err::<Response<Full<Bytes>>, _>(std::io::Error::other("upstream unreachable"))
        },
    );
    let (sender, body) = support::ChannelBody::new();
    let request = Request::post("http://localhost/v1/chat/completions")
        .body(body)
        .unwrap();
    let mut service = ServiceBuilder::new().layer(layer.clone()).service(upstream);
    service
        .ready()
        .await
        .unwrap()
        .call(request)
        .await
        .unwrap_err();
    drop(sender);
    let calls = support::flushed(&layer, &memory).await;
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].request.model, None);
    assert_eq!(
        calls[0].decode_errors,
        vec!["request body was not read to its end (0 bytes seen); not decoded".to_owned()]
    );
}

async fn one_response(
    status: StatusCode,
    content_type: &str,
    body: &'static str,
) -> std::sync::Arc<llm_observability::LlmCall> {
    let (layer, memory) = support::memory_layer();
    let content_type = content_type.to_owned();
    let upstream = tower::service_fn(move |request: Request<RequestBody<Full<Bytes>>>| {
        let content_type = content_type.clone();
        async move {
            let _ = request.into_body().collect().await;
            Ok::<_, Infallible>(
                Response::builder()
                    .status(status)
                    .header("content-type", content_type)
                    .body(Full::new(Bytes::from_static(body.as_bytes())))
                    .unwrap(),
            )
        }
    });
    let mut service = ServiceBuilder::new().layer(layer.clone()).service(upstream);
    let response = service
        .ready()
        .await
        .unwrap()
        .call(chat_request(false))
        .await
        .unwrap();
    let got = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(got, body.as_bytes());
    let calls = support::flushed(&layer, &memory).await;
    assert_eq!(calls.len(), 1);
    calls[0].clone()
}

#[tokio::test]
async fn http_error_without_an_openai_body_still_says_what_happened() {
    let call = one_response(
        StatusCode::SERVICE_UNAVAILABLE,
        "text/html",
        "<h1>busy</h1>",
    )
    .await;
    assert_eq!(call.status, CallStatus::Error);
    assert_eq!(call.http_status, Some(503));
    let error = call.error.as_ref().unwrap();
    assert_eq!(
        (error.kind.as_deref(), error.code.as_deref()),
        (Some("http"), Some("503"))
    );
    assert_eq!(call.decode_errors.len(), 1, "{:?}", call.decode_errors);
    assert!(call.decode_errors[0].contains("not valid JSON"));
}

#[tokio::test]
async fn malformed_json_success_is_recorded_with_a_decode_error() {
    let call = one_response(
        StatusCode::OK,
        "application/json",
        "{\"id\": \"x\", \"choices\": [",
    )
    .await;
    assert_eq!(call.status, CallStatus::Success);
    assert!(call.response.is_none());
    assert!(
        call.decode_errors[0].starts_with("response body is not valid JSON"),
        "{:?}",
        call.decode_errors
    );
}

#[tokio::test]
async fn empty_body_completes_at_once() {
    let call = one_response(StatusCode::OK, "application/json", "").await;
    assert_eq!(call.status, CallStatus::Success);
    assert_eq!(
        call.decode_errors,
        vec!["response body was empty".to_owned()]
    );
}

#[tokio::test]
async fn metadata_comes_from_extensions_and_chosen_headers_only() {
    let memory = MemorySink::new();
    let layer = LlmObservabilityLayer::builder()
        .sink(memory.clone())
        .capture_header("x-user-id", "user_id")
        .provider("azure.ai.openai")
        .build()
        .unwrap();
    let upstream = tower::service_fn(|_request: Request<RequestBody<Full<Bytes>>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"{}"))))
    });
    let mut service = ServiceBuilder::new().layer(layer.clone()).service(upstream);
    let mut request = chat_request(false);
    request
        .headers_mut()
        .insert("authorization", "Bearer sk-secret".parse().unwrap());
    request.extensions_mut().insert(
        CallMetadata::new()
            .with("session_id", "s-1")
            .with("tags", vec!["a", "b"]),
    );
    let response = service.ready().await.unwrap().call(request).await.unwrap();
    let _ = response.into_body().collect().await.unwrap();
    let calls = support::flushed(&layer, &memory).await;
    let call = &calls[0];
    assert_eq!(
        serde_json::Value::Object(call.metadata.clone()),
        json!({"session_id": "s-1", "tags": ["a", "b"], "user_id": "user-7"})
    );
    assert_eq!(call.provider, "azure.ai.openai");
    assert_eq!(call.server_address.as_deref(), Some("llm.internal"));
    let line = serde_json::to_string(call.as_ref()).unwrap();
    assert!(
        !line.contains("sk-secret"),
        "authorization is never recorded"
    );
}

#[tokio::test]
async fn requests_that_are_not_llm_calls_pass_through_unobserved() {
    let (layer, memory) = support::memory_layer();
    let upstream = tower::service_fn(|request: Request<RequestBody<Full<Bytes>>>| async move {
        let body = request.into_body().collect().await.unwrap().to_bytes();
        Ok::<_, Infallible>(Response::new(Full::new(body)))
    });
    let mut service = ServiceBuilder::new().layer(layer.clone()).service(upstream);
    for (method, path) in [
        ("GET", "/v1/models"),
        ("POST", "/v1/files"),
        ("GET", "/v1/chat/completions"),
    ] {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .body(Full::new(Bytes::from_static(b"payload bytes")))
            .unwrap();
        let response = service.ready().await.unwrap().call(request).await.unwrap();
        assert_eq!(
            response.body().size_hint().exact(),
            Some(13),
            "size hint passes through"
        );
        let echoed = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(echoed, "payload bytes");
    }
    assert!(support::flushed(&layer, &memory).await.is_empty());
    assert_eq!(layer.dispatcher().stats().observed, 0);
}

#[tokio::test]
async fn completed_stream_records_ttft_usage_and_finish() {
    let (body, frames, layer, memory) = open_stream().await;
    frames
        .send(Ok(chunk(json!({"role": "assistant"}))))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    frames.send(Ok(chunk(json!({"content": "Hi"})))).unwrap();
    let last = json!({"id": "chatcmpl-1", "model": "gpt-4o-mini-2024", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4, "completion_tokens_details": {"reasoning_tokens": 0}}});
    frames
        .send(Ok(Bytes::from(format!(
            "data: {last}\r\n\r\ndata: [DONE]\r\n\r\n"
        ))))
        .unwrap();
    drop(frames);
    body.collect().await.unwrap();
    let calls = support::flushed(&layer, &memory).await;
    let call = &calls[0];
    assert_eq!(call.status, CallStatus::Success);
    assert_eq!(call.finish_reasons, vec!["stop"]);
    let usage = call.usage.unwrap();
    assert_eq!(
        (
            usage.input_tokens,
            usage.output_tokens,
            usage.reasoning_tokens
        ),
        (Some(3), Some(1), Some(0))
    );
    let ttft = call.timing.time_to_first_token_ms.unwrap();
    assert!(ttft <= call.timing.duration_ms);
    assert!(call.request.stream);
}

#[tokio::test]
async fn a_body_dropped_after_done_is_a_completed_call() {
    let (mut body, frames, layer, memory) = open_stream().await;
    let last = json!({"id": "chatcmpl-1", "model": "m", "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": "stop"}]});
    frames
        .send(Ok(Bytes::from(format!("data: {last}\n\ndata: [DONE]\n\n"))))
        .unwrap();
    body.frame().await.unwrap().unwrap();
    // Like async-openai: stop reading at [DONE], before the body itself reports its end.
    drop(body);
    let calls = support::flushed(&layer, &memory).await;
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].status, CallStatus::Success);
    assert_eq!(calls[0].finish_reasons, vec!["stop"]);
    assert!(calls[0].error.is_none());
}

/// An upstream 401 that echoes the key it was sent: the client gets the body as it was; the
/// record never holds the key (in the error message or in the kept error body).
#[tokio::test]
async fn an_echoed_credential_never_reaches_the_record() {
    let (layer, memory) = support::memory_layer();
    let echoed = r#"{"error":{"message":"Incorrect API key provided: gw-key-0123456789abcdef. Also sk-proj-ZYXWVUT98765","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#;
    let upstream = tower::service_fn(
        move |request: Request<RequestBody<Full<Bytes>>>| async move {
            request.into_body().collect().await?;
            Ok::<_, std::convert::Infallible>(
                Response::builder()
                    .status(401)
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from_static(echoed.as_bytes())))
                    .unwrap(),
            )
        },
    );
    let mut service = ServiceBuilder::new().layer(layer.clone()).service(upstream);
    let mut request = chat_request(false);
    request.headers_mut().insert(
        "authorization",
        "Bearer gw-key-0123456789abcdef".parse().unwrap(),
    );
    let response = service.ready().await.unwrap().call(request).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, echoed.as_bytes(), "the client's bytes are untouched");
    let calls = support::flushed(&layer, &memory).await;
    let line = serde_json::to_string(calls[0].as_ref()).unwrap();
    assert!(!line.contains("0123456789abcdef"), "{line}");
    assert!(!line.contains("ZYXWVUT98765"), "{line}");
    assert_eq!(
        calls[0].error.as_ref().and_then(|e| e.message.as_deref()),
        Some("Incorrect API key provided: [redacted]. Also sk-[redacted]")
    );
    assert_eq!(
        calls[0]
            .response
            .as_ref()
            .map(|r| r["error"]["code"].clone()),
        Some(json!("invalid_api_key"))
    );
}
