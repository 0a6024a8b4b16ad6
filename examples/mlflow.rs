//! LLM calls as MLflow traces: `MlflowSink` sends each call to an MLflow tracking server, in an
//! experiment it creates if needed, with the `mlflow.*` attributes MLflow's trace view reads
//! (span type, inputs, outputs, token usage, model, tools).
//!
//! ```text
//! pip install mlflow && mlflow server --host 127.0.0.1 --port 5000     # in another terminal
//! cargo run --example mlflow --features mlflow -- http://127.0.0.1:5000
//! ```
//!
//! The LLM calls go to an OpenAI-shaped mock upstream on 127.0.0.1 (offline), each with a user
//! and a session id. Open the MLflow UI, experiment `llm-observability-example`, Traces tab. The tracking URI is the first argument, else
//! `MLFLOW_TRACKING_URI`, else `http://127.0.0.1:5000`.

#[path = "support/mock_upstream.rs"]
mod mock_upstream;

use std::time::Duration;

use llm_observability::{CallMetadata, LlmObservabilityLayer, MlflowSink};
use serde_json::{json, Value};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let tracking_uri = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("MLFLOW_TRACKING_URI").ok())
        .unwrap_or_else(|| "http://127.0.0.1:5000".to_owned());

    // The three lines that matter: an MLflow sink on the layer.
    let mlflow = MlflowSink::builder(&tracking_uri)
        .experiment("llm-observability-example")
        .build()?;
    let layer = LlmObservabilityLayer::builder().sink(mlflow).build()?;

    let upstream = mock_upstream::start().await?;
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(layer.middleware())
        .build();
    let url = format!("{}/chat/completions", upstream.base_url());
    for (question, user) in [("What is Rust?", "user-1"), ("And tokio?", "user-2")] {
        let answer: Value = client
            .post(&url)
            .with_extension(
                CallMetadata::new()
                    .with("user_id", user)
                    .with("session_id", "example-session"),
            )
            .json(&json!({
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": question}]
            }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        println!(
            "{question} -> {}",
            answer["choices"][0]["message"]["content"]
        );
    }

    // Deliver everything queued; a server that cannot be reached is reported once, here.
    layer.dispatcher().shutdown(Duration::from_secs(10)).await?;
    let stats = layer.dispatcher().stats();
    println!(
        "sent to MLflow at {tracking_uri}: {} delivered, {} failed",
        stats.sinks[0].delivered, stats.sinks[0].failed
    );
    Ok(())
}
