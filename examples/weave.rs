//! Sending each LLM call to W&B Weave: add a `WeaveSink` to the layer and every OpenAI-shaped
//! call shows up in the Weave project as a call with its inputs, output, latency and token usage.
//!
//! ```text
//! WANDB_API_KEY=... cargo run --example weave --features weave -- my-team/my-project
//! # or against a local Weave trace server (no key needed):
//! bash scripts/backends/weave.sh serve 6345 /tmp/weave &
//! WEAVE_URL=http://127.0.0.1:6345 cargo run --example weave --features weave -- me/demo
//! ```
//!
//! The LLM side runs offline: an OpenAI-shaped mock upstream on 127.0.0.1 answers a
//! non-streaming and a streaming chat completion made through a reqwest client with the layer's
//! middleware. At the end the dispatcher delivers what is queued and the example prints what the
//! Weave sink delivered or failed (a wrong key shows here, and once in the log).

#[path = "support/mock_upstream.rs"]
mod mock_upstream;

use std::time::Duration;

use futures_util::StreamExt;
use llm_observability::{LlmObservabilityLayer, WeaveSink};
use serde_json::{json, Value};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let project = std::env::args()
        .nth(1)
        .ok_or("usage: weave ENTITY/PROJECT (WEAVE_URL sets the trace server)")?;

    // W&B cloud by default; the key comes from WANDB_API_KEY.
    let mut sink = WeaveSink::builder(project.as_str());
    if let Ok(url) = std::env::var("WEAVE_URL") {
        sink = sink.base_url(url);
    }
    let sink = sink.build()?;
    println!("sending calls to {} ({})", sink.endpoint(), sink.project());
    let layer = LlmObservabilityLayer::builder().sink(sink).build()?;

    let upstream = mock_upstream::start().await?;
    let url = format!("{}/chat/completions", upstream.base_url());
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(layer.middleware())
        .build();

    let completion: Value = client
        .post(&url)
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
    println!("reply: {}", completion["choices"][0]["message"]["content"]);

    // A stream: Weave gets the assembled message and the usage of the last chunk.
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

    // Deliver everything still queued before exiting.
    layer.dispatcher().shutdown(Duration::from_secs(10)).await?;
    for sink in layer.dispatcher().stats().sinks {
        println!(
            "{}: {} delivered, {} failed, {} dropped",
            sink.name, sink.delivered, sink.failed, sink.dropped
        );
    }
    Ok(())
}
