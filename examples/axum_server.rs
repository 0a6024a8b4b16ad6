//! The layer on both sides of the wire: `cargo run --example axum_server`.
//!
//! (a) Server side: an axum app that *serves* an OpenAI-compatible API adds
//!     `.layer(LlmObservabilityLayer)` to its router — one line.
//! (b) Client side: a service that *calls* such an API wraps its HTTP client in the same layer
//!     with `tower::ServiceBuilder`.
//!
//! One streamed chat call goes from (b) to (a); each side records it, and both payloads are
//! printed. They agree on what was asked and answered; the timings differ by the network hop.
//! Everything runs on 127.0.0.1.

#[path = "support/mock_upstream.rs"]
mod mock_upstream;

use std::time::Duration;

use axum::serve::ListenerExt;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use llm_observability::{LlmObservabilityLayer, MemorySink, RequestBody};
use tower::{Service, ServiceBuilder, ServiceExt};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // ---- (a) Server side -------------------------------------------------------------------
    //
    // A layer is built once (inside the Tokio runtime: it starts the sink workers) and cloned
    // wherever it is needed; clones share sinks and counters. `MemorySink` keeps payloads in
    // memory for this example; a real server would use `JsonlSink` or its own `Sink`.
    let server_calls = MemorySink::new();
    let server_layer = LlmObservabilityLayer::builder()
        .sink(server_calls.clone())
        // `gen_ai.provider.name` / `LlmCall::provider`: who answers the calls (default "openai").
        .provider("my-inference-server")
        .build()?;

    // Your OpenAI-compatible routes (here the mock's `/v1/chat/completions`, `/v1/embeddings`,
    // ...), plus the layer. Non-LLM routes (`GET /v1/models`) pass through untouched.
    let app = mock_upstream::MockUpstream::router().layer(server_layer.clone());

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    // TCP_NODELAY: each SSE event leaves as soon as it is written (no Nagle delay).
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, app).await });

    // ---- (b) Client side -------------------------------------------------------------------
    //
    // Any tower `Service<http::Request<B>>` that returns `http::Response<_>` can be wrapped;
    // here hyper-util's pooled client. The layer hands the inner service the request body
    // wrapped in its tee, `RequestBody<B>`: that is the inner client's request body type.
    // (One layer value could wrap both sides; this example gives each side its own, so their
    // payloads land in separate sinks.)
    let client_calls = MemorySink::new();
    let client_layer = LlmObservabilityLayer::builder()
        .sink(client_calls.clone())
        .build()?;
    let mut client = ServiceBuilder::new()
        .layer(client_layer.clone())
        .service(Client::builder(TokioExecutor::new()).build_http::<RequestBody<Full<Bytes>>>());

    // A streamed chat completion, with usage reported at the end of the stream.
    let body = serde_json::json!({
        "model": "gpt-4o-mini",
        "stream": true,
        "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "Say hello to tower"}],
    });
    let request = http::Request::post(format!("http://{addr}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))?;
    // The call's `gen_ai` span is a child of the span that is current when `call` runs: here
    // `ask`, entered just for the call (inside an `#[instrument]`ed function it is the
    // function's span, with no extra code).
    let ask = tracing::info_span!("ask");
    let ready = client.ready().await?;
    let response = ask.in_scope(|| ready.call(request)).await?;

    // Read the stream as any client would. The layers only watch the frames go by: the bytes,
    // their boundaries and their timing are those the server sent. A call is recorded when its
    // body ends (or is dropped: then it is recorded as cancelled).
    let status = response.status();
    let streamed = response.into_body().collect().await?.to_bytes();
    println!(
        "client received {status}, {} bytes of SSE\n",
        streamed.len()
    );

    // ---- The two payloads --------------------------------------------------------------------
    //
    // Sinks run off the request path, in batches; `flush` waits until everything recorded so
    // far has been delivered. (Before a process exits, call `shutdown` instead.)
    for layer in [&server_layer, &client_layer] {
        layer.dispatcher().flush(Duration::from_secs(5)).await?;
    }
    for (side, calls) in [("server", &server_calls), ("client", &client_calls)] {
        for call in calls.calls() {
            println!("--- {side} side ---");
            println!("{}\n", serde_json::to_string_pretty(call.as_ref())?);
        }
    }
    Ok(())
}
