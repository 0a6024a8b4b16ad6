//! The layer on both sides of the wire: `cargo run --example axum_server`.
//!
//! (a) Server side: an axum app that serves an OpenAI-compatible API gets `.layer(layer)`.
//! (b) Client side: the same kind of layer wraps hyper-util's client in a `tower::ServiceBuilder`.
//! Both record the same call; the two payloads are printed.

#[path = "support/mock_upstream.rs"]
mod mock_upstream;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use llm_observability::{LlmObservabilityLayer, MemorySink};
use tower::{Service, ServiceBuilder, ServiceExt};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // (a) Server side: your OpenAI-compatible routes (here: the mock's), plus one line.
    let server_calls = MemorySink::new();
    let server_layer = LlmObservabilityLayer::builder()
        .sink(server_calls.clone())
        .provider("my-inference-server")
        .build()?;
    let app = mock_upstream::MockUpstream::router().layer(server_layer.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });

    // (b) Client side: any tower HTTP client, wrapped the same way.
    let client_calls = MemorySink::new();
    let client_layer = LlmObservabilityLayer::builder()
        .sink(client_calls.clone())
        .build()?;
    let mut client = ServiceBuilder::new()
        .layer(client_layer.clone())
        .service(Client::builder(TokioExecutor::new()).build_http::<_>());

    let body = serde_json::json!({
        "model": "gpt-4o-mini",
        "stream": true,
        "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "Say hello to tower"}],
    });
    let request = http::Request::post(format!("http://{addr}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))?;
    let response = client.ready().await?.call(request).await?;
    // Read the stream as any client would; the layers only watch it go by.
    let streamed = response.into_body().collect().await?.to_bytes();
    println!("client received {} bytes of SSE\n", streamed.len());

    // Deliver what is queued, then show both records of the one call.
    server_layer
        .dispatcher()
        .flush(Duration::from_secs(5))
        .await?;
    client_layer
        .dispatcher()
        .flush(Duration::from_secs(5))
        .await?;
    for (side, calls) in [("server", server_calls), ("client", client_calls)] {
        for call in calls.calls() {
            println!(
                "--- {side} side ---\n{}\n",
                serde_json::to_string_pretty(call.as_ref())?
            );
        }
    }
    Ok(())
}
