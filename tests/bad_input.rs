//! Bad input: whatever comes over the wire, the client gets exactly the same frames, the call
//! ends in exactly one payload, and the payload says clearly what could not be decoded.

mod support;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use llm_observability::{CallStatus, LlmCall, LlmObservabilityLayer, MemorySink, RequestBody};
use tower::{Service, ServiceBuilder, ServiceExt};

/// A response body that yields the given frames (data and trailers) in order.
struct Frames(VecDeque<Frame<Bytes>>);

impl Body for Frames {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(Ok))
    }
}

struct Case {
    content_type: Option<&'static str>,
    request: Bytes,
    frames: Vec<Frame<Bytes>>,
}

impl Case {
    fn response(content_type: Option<&'static str>, chunks: Vec<Bytes>) -> Case {
        Case {
            content_type,
            request: Bytes::from_static(br#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}"#),
            frames: chunks.into_iter().map(Frame::data).collect(),
        }
    }
}

/// Runs one case through the layer; asserts the client got exactly the frames sent and that
/// exactly one payload was produced, and returns it.
async fn run(case: Case) -> LlmCall {
    let (layer, memory) = support::memory_layer();
    run_with(case, layer, memory).await
}

async fn run_with(case: Case, layer: LlmObservabilityLayer, memory: MemorySink) -> LlmCall {
    let sent: Vec<(Option<Bytes>, Option<HeaderMap>)> = case
        .frames
        .iter()
        .map(|f| (f.data_ref().cloned(), f.trailers_ref().cloned()))
        .collect();
    // Shared: the layer's service needs a `Clone` inner service.
    let frames = std::sync::Arc::new(std::sync::Mutex::new(Some(case.frames)));
    let content_type = case.content_type;
    let upstream = tower::service_fn(move |request: Request<RequestBody<Full<Bytes>>>| {
        let frames = frames.lock().unwrap().take().unwrap_or_default();
        async move {
            let _ = request.into_body().collect().await;
            let mut response = Response::new(Frames(frames.into()));
            if let Some(ct) = content_type {
                response
                    .headers_mut()
                    .insert("content-type", HeaderValue::from_static(ct));
            }
            Ok::<_, Infallible>(response)
        }
    });
    let mut service = ServiceBuilder::new().layer(layer.clone()).service(upstream);
    let request = Request::post("/v1/chat/completions")
        .body(Full::new(case.request))
        .unwrap();
    let response = service.ready().await.unwrap().call(request).await.unwrap();
    let mut body = response.into_body();
    let mut received = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.unwrap();
        received.push((frame.data_ref().cloned(), frame.trailers_ref().cloned()));
    }
    assert_eq!(received.len(), sent.len(), "same number of frames");
    assert!(received == sent, "frames changed on the way through");
    let calls = support::flushed(&layer, &memory).await;
    assert_eq!(calls.len(), 1, "exactly one payload");
    (*calls[0]).clone()
}

fn sse(data: &str) -> Bytes {
    Bytes::from(format!("data: {data}\n\n"))
}

const CHUNK: &str = r#"{"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"ok"},"finish_reason":null}]}"#;

#[tokio::test]
async fn truncated_json() {
    let call = run(Case::response(
        Some("application/json"),
        vec![Bytes::from_static(b"{\"id\":\"c\",\"choices\":[{\"ind")],
    ))
    .await;
    assert_eq!(call.status, CallStatus::Success);
    assert!(call.response.is_none());
    assert!(
        call.decode_errors[0].contains("not valid JSON"),
        "{:?}",
        call.decode_errors
    );
}

#[tokio::test]
async fn json_that_is_not_openai_shaped() {
    let call = run(Case::response(
        Some("application/json"),
        vec![Bytes::from_static(b"[1, 2, {\"x\": null}]")],
    ))
    .await;
    assert_eq!(call.status, CallStatus::Success);
    assert_eq!(
        call.response.as_deref(),
        Some(&serde_json::json!([1, 2, {"x": null}]))
    );
    assert!(
        call.usage.is_none() && call.finish_reasons.is_empty() && call.decode_errors.is_empty()
    );
}

#[tokio::test]
async fn sse_with_garbage_lines_keeps_what_it_can() {
    let body = vec![
        Bytes::from_static(b"garbage without colon\n: comment\nretry: x\n\n"),
        sse("{not json"),
        sse(CHUNK),
        Bytes::from_static(b"data: \xff\xfe\n\n"),
        sse("[DONE]"),
    ];
    let call = run(Case::response(Some("text/event-stream"), body)).await;
    assert_eq!(call.status, CallStatus::Success);
    assert_eq!(
        call.response.unwrap()["choices"][0]["message"]["content"],
        "ok"
    );
    assert_eq!(call.decode_errors.len(), 1);
    assert!(
        call.decode_errors[0].starts_with("2 of 4 SSE events could not be decoded"),
        "{:?}",
        call.decode_errors
    );
}

#[tokio::test]
async fn a_10_mb_sse_line_is_skipped_and_flagged() {
    let huge = Bytes::from(format!(
        "data: {{\"pad\":\"{}\"}}\n\n",
        "x".repeat(10 << 20)
    ));
    let chunks: Vec<Bytes> = (0..huge.len())
        .step_by(64 << 10)
        .map(|at| huge.slice(at..(at + (64 << 10)).min(huge.len())))
        .collect();
    let mut body = chunks;
    body.push(sse(CHUNK));
    let call = run(Case::response(Some("text/event-stream"), body)).await;
    assert!(call.truncated);
    assert_eq!(
        call.response.unwrap()["choices"][0]["message"]["content"],
        "ok"
    );
    assert!(
        call.decode_errors[0].starts_with("1 SSE line(s) longer than"),
        "{:?}",
        call.decode_errors
    );
}

#[tokio::test]
async fn invalid_utf8_json() {
    let call = run(Case::response(
        Some("application/json"),
        vec![Bytes::from_static(b"{\"id\":\"\xff\"}")],
    ))
    .await;
    assert!(
        call.decode_errors[0].contains("not valid JSON"),
        "{:?}",
        call.decode_errors
    );
}

#[tokio::test]
async fn a_100_mb_body_flows_through_and_is_flagged_truncated() {
    let megabyte = Bytes::from(vec![b' '; 1 << 20]);
    let mut body = vec![Bytes::from_static(b"{\"id\":\"big\",\"pad\":\"")];
    body.extend(std::iter::repeat_n(megabyte, 100));
    body.push(Bytes::from_static(b"\"}"));
    let call = run(Case::response(Some("application/json"), body)).await;
    assert!(call.truncated);
    assert!(call.response.is_none());
    assert!(
        call.decode_errors[0].contains("capture limit"),
        "{:?}",
        call.decode_errors
    );
}

#[tokio::test]
async fn wrong_content_types() {
    // An event stream labelled JSON is decoded as the stream it is.
    let call = run(Case::response(
        Some("application/json"),
        vec![sse(CHUNK), sse("[DONE]")],
    ))
    .await;
    assert_eq!(
        call.response.unwrap()["choices"][0]["message"]["content"],
        "ok"
    );
    assert!(call.decode_errors.is_empty(), "{:?}", call.decode_errors);
    // JSON labelled as an event stream carries no events, and says so.
    let call = run(Case::response(
        Some("text/event-stream"),
        vec![Bytes::from_static(b"{\"id\":\"c\"}")],
    ))
    .await;
    assert!(call.response.is_none());
    assert_eq!(
        call.decode_errors,
        vec!["event-stream response carried no events".to_owned()]
    );
    // text/plain: sniffed.
    let call = run(Case::response(Some("text/plain"), vec![sse(CHUNK)])).await;
    assert_eq!(
        call.response.unwrap()["choices"][0]["message"]["content"],
        "ok"
    );
}

#[tokio::test]
async fn empty_body() {
    let call = run(Case::response(Some("application/json"), vec![])).await;
    assert_eq!(call.status, CallStatus::Success);
    assert_eq!(
        call.decode_errors,
        vec!["response body was empty".to_owned()]
    );
}

#[tokio::test]
async fn trailers_pass_through_untouched() {
    let mut trailers = HeaderMap::new();
    trailers.insert("x-upstream-usage", HeaderValue::from_static("7"));
    let mut case = Case::response(Some("text/event-stream"), vec![sse(CHUNK), sse("[DONE]")]);
    case.frames.push(Frame::trailers(trailers));
    let call = run(case).await;
    assert_eq!(call.status, CallStatus::Success);
    assert_eq!(
        call.response.unwrap()["choices"][0]["message"]["content"],
        "ok"
    );
}

#[tokio::test]
async fn bad_and_oversized_requests_are_forwarded_and_flagged() {
    let mut case = Case::response(Some("application/json"), vec![Bytes::from_static(b"{}")]);
    case.request = Bytes::from_static(b"model=gpt-4o&stream=true");
    let call = run(case).await;
    assert!(
        call.decode_errors[0].starts_with("request body is not an OpenAI request"),
        "{:?}",
        call.decode_errors
    );

    let memory = MemorySink::new();
    let small = LlmObservabilityLayer::builder()
        .sink(memory.clone())
        .request_capture_limit(16)
        .build()
        .unwrap();
    let case = Case::response(Some("application/json"), vec![Bytes::from_static(b"{}")]);
    let call = run_with(case, small, memory).await;
    assert!(call.truncated);
    assert!(
        call.decode_errors[0].contains("capture limit"),
        "{:?}",
        call.decode_errors
    );
}

/// A request and a response nested 100k levels deep: passed through untouched, recorded
/// without the deep values, and the record reads back as an `LlmCall`.
#[tokio::test]
async fn deeply_nested_json_is_not_kept_and_records_read_back() {
    let depth = 100_000;
    let deep = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let request = format!(r#"{{"model":"gpt-4o-mini","messages":{deep}}}"#);
    let response = format!(
        r#"{{"id":"c","object":"chat.completion","model":"m","choices":[],"extra":{deep}}}"#
    );
    let call = run(Case {
        content_type: Some("application/json"),
        request: Bytes::from(request),
        frames: vec![Frame::data(Bytes::from(response))],
    })
    .await;
    assert!(call.request.messages.is_none());
    assert!(call.response.is_none());
    assert_eq!(call.decode_errors.len(), 2, "{:?}", call.decode_errors);
    for error in &call.decode_errors {
        assert!(error.contains("nests deeper than 100 levels"), "{error}");
    }
    let line = serde_json::to_string(&call).unwrap();
    let back: LlmCall = serde_json::from_str(&line).expect("the record reads back");
    assert_eq!(back, call);
}
