//! `WebhookSink` against an in-process axum receiver that records every request and answers
//! from a script: batches arrive intact (JSON array, NDJSON, gzip), a 500 or a 429 with
//! `Retry-After` is retried, a 4xx is not, and a receiver that never answers times out and the
//! batch counts failed. Every test ends with the dispatcher's accounting checked.

mod support;

use std::collections::VecDeque;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use llm_observability::{
    DispatcherConfig, LlmCall, LlmObservabilityLayer, SinkConfig, SinkStats, WebhookFormat,
    WebhookSink,
};
use support::storage::{quick_dispatch, sample_calls};

/// What the receiver answers to one request.
#[derive(Clone)]
enum Answer {
    Status(u16, Option<&'static str>),
    Never,
}

#[derive(Default)]
struct Receiver {
    seen: Mutex<Vec<(HeaderMap, Bytes)>>,
    script: Mutex<VecDeque<Answer>>,
}

impl Receiver {
    fn requests(&self) -> Vec<(HeaderMap, Bytes)> {
        self.seen.lock().unwrap().clone()
    }
}

async fn receive(
    State(receiver): State<Arc<Receiver>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    receiver.seen.lock().unwrap().push((headers, body));
    let answer = receiver
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(Answer::Status(200, None));
    match answer {
        Answer::Status(code, retry_after) => {
            let status = StatusCode::from_u16(code).unwrap();
            match retry_after {
                Some(value) => (status, [("retry-after", value)], "scripted").into_response(),
                None => (status, "scripted").into_response(),
            }
        }
        Answer::Never => std::future::pending().await,
    }
}

/// A receiver on 127.0.0.1 answering `script` in order, then 200s; returns it and its URL.
async fn receiver(script: Vec<Answer>) -> (Arc<Receiver>, String) {
    let receiver = Arc::new(Receiver {
        seen: Mutex::default(),
        script: Mutex::new(script.into()),
    });
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(receiver.clone());
    let addr = support::serve(app).await;
    (receiver, format!("http://{addr}/hook"))
}

fn layer(sink: WebhookSink, config: DispatcherConfig) -> LlmObservabilityLayer {
    LlmObservabilityLayer::builder()
        .sink_with(sink, SinkConfig::new().dispatch(config))
        .build()
        .unwrap()
}

async fn send(layer: &LlmObservabilityLayer, calls: &[Arc<LlmCall>]) -> SinkStats {
    for call in calls {
        layer.dispatcher().dispatch(call.clone());
    }
    let stats = support::assert_accounted(layer, calls.len() as u64).await;
    stats.sinks[0].clone()
}

fn decode_array(body: &[u8]) -> Vec<LlmCall> {
    serde_json::from_slice(body).expect("a JSON array of calls")
}

fn decode_ndjson(body: &[u8]) -> Vec<LlmCall> {
    assert_eq!(body.last(), Some(&b'\n'));
    body.split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| serde_json::from_slice(line).expect("one call per line"))
        .collect()
}

fn owned(calls: &[Arc<LlmCall>]) -> Vec<LlmCall> {
    calls.iter().map(|c| LlmCall::clone(c)).collect()
}

#[tokio::test]
async fn json_array_batches_arrive_intact_with_the_headers() {
    let (receiver, url) = receiver(vec![]).await;
    let sink = WebhookSink::builder(url)
        .header("authorization", "Bearer t0ken")
        .header("x-tenant", "acme")
        .build()
        .unwrap();
    let calls = sample_calls(10);
    let layer = layer(sink, quick_dispatch(4));
    let stats = send(&layer, &calls).await;
    assert_eq!((stats.delivered, stats.failed), (10, 0));

    let requests = receiver.requests();
    let mut received = Vec::new();
    for (headers, body) in &requests {
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(headers["authorization"], "Bearer t0ken");
        assert_eq!(headers["x-tenant"], "acme");
        assert!(headers.get("content-encoding").is_none());
        let batch = decode_array(body);
        assert!(!batch.is_empty() && batch.len() <= 4, "{}", batch.len());
        received.extend(batch);
    }
    assert_eq!(received, owned(&calls));
}

#[tokio::test]
async fn ndjson_gzip_bodies_decode_to_the_calls() {
    let (receiver, url) = receiver(vec![]).await;
    let sink = WebhookSink::builder(url)
        .format(WebhookFormat::Ndjson)
        .gzip(true)
        .build()
        .unwrap();
    let calls = sample_calls(7);
    let layer = layer(sink, quick_dispatch(7));
    let stats = send(&layer, &calls).await;
    assert_eq!((stats.delivered, stats.failed), (7, 0));

    let mut received = Vec::new();
    for (headers, body) in receiver.requests() {
        assert_eq!(headers["content-type"], "application/x-ndjson");
        assert_eq!(headers["content-encoding"], "gzip");
        assert_eq!(&body[..2], &[0x1f, 0x8b], "a gzip stream");
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut plain)
            .expect("valid gzip");
        received.extend(decode_ndjson(&plain));
    }
    assert_eq!(received, owned(&calls));
}

#[tokio::test]
async fn a_500_then_success_delivers_the_batch_once() {
    let (receiver, url) = receiver(vec![Answer::Status(500, None)]).await;
    let sink = WebhookSink::new(url).unwrap();
    let calls = sample_calls(3);
    let layer = layer(sink, quick_dispatch(3));
    let stats = send(&layer, &calls).await;
    assert_eq!((stats.delivered, stats.failed), (3, 0));

    let requests = receiver.requests();
    assert_eq!(requests.len(), 2, "one failed attempt, one retry");
    assert_eq!(
        requests[0].1, requests[1].1,
        "the retry carries the same batch"
    );
    assert_eq!(decode_array(&requests[1].1), owned(&calls));
}

#[tokio::test]
async fn retry_after_is_honoured_over_the_backoff() {
    // The backoff would wait 60 s (past the 10 s flush deadline); the receiver asks for 0 s
    // and then 1 s, so only a sink that passes `Retry-After` on gets the batch through.
    let (receiver, url) = receiver(vec![
        Answer::Status(429, Some("0")),
        Answer::Status(503, Some("1")),
    ])
    .await;
    let sink = WebhookSink::new(url).unwrap();
    let calls = sample_calls(2);
    let config = DispatcherConfig::builder()
        .batch_size(2)
        .batch_interval(Duration::from_millis(20))
        .initial_backoff(Duration::from_secs(60))
        .max_backoff(Duration::from_secs(60))
        .max_retries(3)
        .build();
    let layer = layer(sink, config);
    let stats = send(&layer, &calls).await;
    assert_eq!((stats.delivered, stats.failed), (2, 0));

    let requests = receiver.requests();
    assert_eq!(requests.len(), 3, "429, 503, then 200");
    for (_, body) in &requests {
        assert_eq!(decode_array(body), owned(&calls));
    }
}

#[tokio::test]
async fn a_4xx_is_permanent_and_counted_failed() {
    let (receiver, url) = receiver(vec![Answer::Status(400, None)]).await;
    let sink = WebhookSink::new(url).unwrap();
    let calls = sample_calls(3);
    let layer = layer(sink, quick_dispatch(3));
    let stats = send(&layer, &calls).await;
    assert_eq!((stats.delivered, stats.failed), (0, 3));
    assert_eq!(receiver.requests().len(), 1, "a 400 is not retried");
}

#[tokio::test]
async fn a_receiver_that_never_answers_times_out_and_counts_failed() {
    let (receiver, url) = receiver(vec![Answer::Never, Answer::Never]).await;
    let sink = WebhookSink::builder(url)
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let calls = sample_calls(4);
    let config = DispatcherConfig::builder()
        .batch_size(4)
        .batch_interval(Duration::from_millis(20))
        .initial_backoff(Duration::from_millis(10))
        .max_retries(1)
        .build();
    let layer = layer(sink, config);
    let stats = send(&layer, &calls).await;
    assert_eq!((stats.delivered, stats.failed), (0, 4));
    assert_eq!(
        receiver.requests().len(),
        2,
        "the first attempt and one retry"
    );
}

#[tokio::test]
async fn an_unreachable_receiver_is_transient_then_failed() {
    let port = support::backend::free_port();
    let sink = WebhookSink::new(format!("http://127.0.0.1:{port}/hook")).unwrap();
    let calls = sample_calls(2);
    let config = DispatcherConfig::builder()
        .batch_size(2)
        .batch_interval(Duration::from_millis(20))
        .initial_backoff(Duration::from_millis(10))
        .max_retries(2)
        .build();
    let layer = layer(sink, config);
    let stats = send(&layer, &calls).await;
    assert_eq!((stats.delivered, stats.failed), (0, 2));
}
