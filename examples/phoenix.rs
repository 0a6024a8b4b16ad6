//! Sending the LLM calls of an application to Arize Phoenix: one builder call adds the Phoenix
//! preset of `OtlpSink` to the layer, and every call shows up in the Phoenix project as an LLM
//! span with its model, token counts, messages and output.
//!
//! ```text
//! pip install arize-phoenix && phoenix serve          # Phoenix on http://localhost:6006
//! cargo run --example phoenix --features phoenix      # or: -- http://phoenix:6006 my-project
//! ```
//!
//! It starts an OpenAI-shaped mock upstream on 127.0.0.1 (so no API key is needed), makes a
//! non-streaming and a streaming chat completion through a `reqwest_middleware` client, and
//! sends both calls to Phoenix (project `llm-observability-example` unless given). Open
//! Phoenix and look at the project's traces.

#[path = "support/mock_upstream.rs"]
mod mock_upstream;

use std::time::Duration;

use futures_util::StreamExt;
use llm_observability::{CallMetadata, LlmObservabilityLayer, OtlpSink};
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    tracing_subscriber::fmt().init();
    let mut args = std::env::args().skip(1);
    let phoenix_url = args
        .next()
        .unwrap_or_else(|| "http://localhost:6006".to_owned());
    let project = args
        .next()
        .unwrap_or_else(|| "llm-observability-example".to_owned());

    let upstream = mock_upstream::start().await?;
    let url = format!("{}/chat/completions", upstream.base_url());

    // The Phoenix preset: OTLP to {phoenix_url}/v1/traces, OpenInference attributes, project.
    let phoenix = OtlpSink::phoenix(&phoenix_url).project(&project).build()?;
    let layer = LlmObservabilityLayer::builder().sink(phoenix).build()?;
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(layer.middleware())
        .build();

    // A non-streaming call, with a user and a session Phoenix shows.
    client
        .post(&url)
        .with_extension(
            CallMetadata::new()
                .with("user_id", "user-42")
                .with("session_id", "session-1"),
        )
        .json(&json!({
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "Tell me about Rust"}],
        }))
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;

    // A streaming call: Phoenix gets the assembled answer.
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
    while let Some(chunk) = events.next().await {
        chunk?;
    }

    // Deliver what is queued before exiting; the stats say whether Phoenix took it.
    layer.dispatcher().shutdown(Duration::from_secs(10)).await?;
    let stats = layer.dispatcher().stats();
    for sink in &stats.sinks {
        println!(
            "{}: {} delivered, {} failed, {} dropped",
            sink.name, sink.delivered, sink.failed, sink.dropped
        );
    }
    println!("open {phoenix_url}/projects and pick the project {project:?}");
    Ok(())
}
