//! Observing the LLM calls an application makes with `reqwest`: add `layer.middleware()` to a
//! `reqwest_middleware` client and every OpenAI-shaped call it makes is recorded.
//!
//! ```text
//! cargo run --example reqwest_client
//! ```
//!
//! Runs offline: it starts an OpenAI-shaped mock upstream on 127.0.0.1, makes a non-streaming
//! and a streaming chat completion through the client, logs one line per call (`LogSink`, via
//! `tracing`; `RUST_LOG` sets the filter) and prints the recorded payloads (`MemorySink`) as
//! JSON. Point `base_url` at a real OpenAI-compatible server (and add an `Authorization`
//! header) to observe real traffic the same way.

#[path = "support/mock_upstream.rs"]
mod mock_upstream;

use std::time::Duration;

use futures_util::StreamExt;
use llm_observability::{CallMetadata, LlmObservabilityLayer, LogSink, MemorySink};
use serde_json::{json, Value};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();

    let upstream = mock_upstream::start().await?;
    let base_url = upstream.base_url();

    // One layer, two sinks: a log line per call, and the payloads kept in memory to print.
    let memory = MemorySink::new();
    let layer = LlmObservabilityLayer::builder()
        .sink(LogSink)
        .sink(memory.clone())
        .build()?;
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(layer.middleware())
        .build();
    let url = format!("{base_url}/chat/completions");

    // A non-streaming call, with per-call metadata.
    let completion: Value = client
        .post(&url)
        .with_extension(
            CallMetadata::new()
                .with("user_id", "user-42")
                .with("feature", "greeting"),
        )
        .json(&json!({
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "Tell me about Rust"}],
            "temperature": 0.2
        }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    println!(
        "non-streaming reply: {}",
        completion["choices"][0]["message"]["content"]
    );

    // A streaming call: the SSE bytes arrive as the upstream sends them, untouched.
    let mut events = client
        .post(&url)
        .json(&json!({
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "Tell me about streaming"}],
            "stream": true,
            "stream_options": {"include_usage": true}
        }))
        .send()
        .await?
        .error_for_status()?
        .bytes_stream();
    let (mut chunks, mut bytes) = (0, 0);
    while let Some(chunk) = events.next().await {
        let chunk = chunk?;
        chunks += 1;
        bytes += chunk.len();
    }
    println!("streaming reply: {bytes} bytes of SSE in {chunks} chunks");

    // Deliver everything still queued (do this before exiting), then show what was recorded.
    layer.dispatcher().shutdown(Duration::from_secs(5)).await?;
    for call in memory.calls() {
        println!("{}", serde_json::to_string_pretty(&*call)?);
    }
    Ok(())
}
