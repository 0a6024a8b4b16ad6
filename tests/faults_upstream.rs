//! Upstream and client faults over real TCP on 127.0.0.1, with the layer around hyper-util's
//! client: an upstream that closes the connection mid-stream, one that sends headers and stalls,
//! a refused connection, and a graceful shutdown right after a burst of streaming calls. Each
//! test checks what the client saw and the accounting identity.

mod support;

#[path = "../examples/support/mock_upstream.rs"]
mod mock_upstream;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use llm_observability::{
    CallStatus, DispatcherConfig, JsonlSink, LlmObservabilityLayer, LlmObservabilityService,
    MemorySink, RequestBody,
};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::{Service, ServiceBuilder, ServiceExt};

type ObservedClient = LlmObservabilityService<Client<HttpConnector, RequestBody<Full<Bytes>>>>;

fn observed_client(layer: &LlmObservabilityLayer) -> ObservedClient {
    ServiceBuilder::new()
        .layer(layer.clone())
        .service(Client::builder(TokioExecutor::new()).build_http())
}

fn chat(addr: std::net::SocketAddr, stream: bool) -> http::Request<Full<Bytes>> {
    let body = json!({"model": "gpt-4o-mini", "stream": stream, "messages": [{"role": "user", "content": "tell me about faults"}]});
    http::Request::post(format!("http://{addr}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

const FIRST_EVENT: &str = "data: {\"id\":\"c\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Partial\"},\"finish_reason\":null}]}\n\n";

/// What the raw upstream does after sending the head and one SSE event.
#[derive(Clone, Copy)]
enum Misbehaviour {
    CloseConnection,
    Stall,
}

/// An upstream speaking just enough HTTP/1.1 by hand to misbehave precisely.
async fn raw_upstream(then: Misbehaviour) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                // Read the head and the body (Content-Length) before answering.
                loop {
                    let n = socket.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&request);
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text[..end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if request.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
                let chunk = format!("{:x}\r\n{FIRST_EVENT}\r\n", FIRST_EVENT.len());
                let _ = socket.write_all(format!("{head}{chunk}").as_bytes()).await;
                let _ = socket.flush().await;
                match then {
                    Misbehaviour::CloseConnection => drop(socket),
                    Misbehaviour::Stall => {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        drop(socket);
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn upstream_closing_mid_stream_is_a_body_error_with_the_partial_output() {
    let addr = raw_upstream(Misbehaviour::CloseConnection).await;
    let (layer, memory) = support::memory_layer();
    let mut client = observed_client(&layer);
    let response = client
        .ready()
        .await
        .unwrap()
        .call(chat(addr, true))
        .await
        .unwrap();
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(
        first,
        FIRST_EVENT.as_bytes(),
        "the client got the first event as sent"
    );
    let next = body.frame().await.expect("an error, not a clean end");
    assert!(next.is_err(), "the client sees the broken connection");
    drop(body);
    let calls = support::flushed(&layer, &memory).await;
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.status, CallStatus::Error);
    assert_eq!(call.error.as_ref().unwrap().kind.as_deref(), Some("body"));
    assert_eq!(
        call.response.as_ref().unwrap()["choices"][0]["message"]["content"],
        "Partial"
    );
    support::assert_accounted(&layer, 1).await;
}

#[tokio::test]
async fn upstream_stalling_after_headers_then_client_giving_up_is_cancelled() {
    let addr = raw_upstream(Misbehaviour::Stall).await;
    let (layer, memory) = support::memory_layer();
    let mut client = observed_client(&layer);
    let response = client
        .ready()
        .await
        .unwrap()
        .call(chat(addr, true))
        .await
        .unwrap();
    let mut body = response.into_body();
    body.frame().await.unwrap().unwrap();
    // Nothing more comes; the client's own timeout fires and it gives up on the body.
    let waited = tokio::time::timeout(Duration::from_millis(100), body.frame()).await;
    assert!(waited.is_err(), "the upstream is stalled");
    drop(body);
    let calls = support::flushed(&layer, &memory).await;
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].status, CallStatus::Cancelled);
    assert_eq!(calls[0].http_status, Some(200));
    assert_eq!(
        calls[0].response.as_ref().unwrap()["choices"][0]["message"]["content"],
        "Partial"
    );
    support::assert_accounted(&layer, 1).await;
}

#[tokio::test]
async fn refused_connection_is_a_transport_error() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let (layer, memory) = support::memory_layer();
    let mut client = observed_client(&layer);
    let error = client
        .ready()
        .await
        .unwrap()
        .call(chat(closed, false))
        .await
        .unwrap_err();
    assert!(error.is_connect(), "the caller gets hyper's own error");
    let calls = support::flushed(&layer, &memory).await;
    assert_eq!(
        calls[0].error.as_ref().unwrap().kind.as_deref(),
        Some("transport")
    );
    support::assert_accounted(&layer, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_right_after_a_burst_of_streams_delivers_every_call_to_every_healthy_sink() {
    let upstream = mock_upstream::start().await.unwrap();
    let memory = MemorySink::new();
    let jsonl_path =
        std::env::temp_dir().join(format!("llm-obs-burst-{}.jsonl", uuid::Uuid::new_v4()));
    let layer = LlmObservabilityLayer::builder()
        .sink(memory.clone())
        .sink(JsonlSink::create(&jsonl_path).unwrap())
        .sink(support::sinks::Hangs)
        .dispatcher_config(
            DispatcherConfig::builder()
                .batch_size(16)
                .batch_interval(Duration::from_secs(3600))
                .export_timeout(Duration::from_millis(100))
                .max_retries(0)
                .build(),
        )
        .build()
        .unwrap();
    let client = observed_client(&layer);
    let calls: Vec<_> = (0..60)
        .map(|_| {
            let mut client = client.clone();
            let request = chat(upstream.addr, true);
            tokio::spawn(async move {
                let response = client.ready().await.unwrap().call(request).await.unwrap();
                response.into_body().collect().await.unwrap().to_bytes()
            })
        })
        .collect();
    for call in calls {
        assert!(call.await.unwrap().ends_with(b"data: [DONE]\n\n"));
    }
    // Shut down at once: most payloads are still queued (a batch waits up to an hour).
    layer
        .dispatcher()
        .shutdown(Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(memory.calls().len(), 60);
    assert!(memory
        .calls()
        .iter()
        .all(|c| c.status == CallStatus::Success));
    let lines = std::fs::read_to_string(&jsonl_path).unwrap();
    assert_eq!(lines.lines().count(), 60);
    let stats = support::assert_accounted(&layer, 60).await;
    assert_eq!(
        stats.sinks[2].failed, 60,
        "the hanging sink's batches timed out and were counted"
    );
    let _ = std::fs::remove_file(jsonl_path);
}
