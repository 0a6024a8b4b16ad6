//! GenAI metrics on a Prometheus `/metrics` route:
//! `cargo run --example prometheus --features prometheus [-- ADDR]` (default `127.0.0.1:9464`).
//!
//! An axum app serves an OpenAI-compatible API (an embedded mock, so this runs offline) behind
//! the layer, and `GET /metrics` rendered by `metrics-exporter-prometheus`. The example makes
//! three calls to itself — streamed, not streamed, and one that fails — prints the exposition,
//! and keeps serving until Ctrl-C (pass `--once` to exit instead). Point Prometheus at it:
//!
//! ```yaml
//! scrape_configs:
//!   - job_name: llm
//!     static_configs: [{targets: ["127.0.0.1:9464"]}]
//! ```

#[path = "support/mock_upstream.rs"]
mod mock_upstream;

use std::time::Duration;

use axum::routing::get;
use axum::Router;
use llm_observability::metrics::{self as genai_metrics, GenAiMetrics};
use llm_observability::{LlmObservabilityLayer, LogSink};
use metrics_exporter_prometheus::PrometheusHandle;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The app: the mock OpenAI API behind `layer`, and `GET /metrics` (outside the layer), which
/// records the dispatcher's health and renders everything `handle`'s recorder holds.
pub fn app(
    layer: &LlmObservabilityLayer,
    metrics: GenAiMetrics,
    handle: PrometheusHandle,
) -> Router {
    let observed = layer.clone();
    let scrape = move || {
        let (observed, metrics, handle) = (observed.clone(), metrics.clone(), handle.clone());
        async move {
            metrics.record_dispatcher(observed.dispatcher());
            handle.run_upkeep();
            (
                [(
                    http::header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )],
                handle.render(),
            )
        }
    };
    mock_upstream::MockUpstream::router()
        .layer(layer.clone())
        .route("/metrics", get(scrape))
}

/// Three calls to the app at `base`: streamed with usage, not streamed, and an unknown model
/// (a 404 `model_not_found`).
pub async fn known_calls(base: &str) -> Result<(), BoxError> {
    let client = reqwest::Client::new();
    let url = format!("{base}/v1/chat/completions");
    let ask = |body: serde_json::Value| client.post(&url).json(&body).send();
    ask(serde_json::json!({
        "model": "gpt-4o-mini",
        "stream": true,
        "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "Say hello to Prometheus"}],
    }))
    .await?
    .bytes()
    .await?;
    ask(serde_json::json!({
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "Count to three"}],
    }))
    .await?
    .bytes()
    .await?;
    ask(serde_json::json!({
        "model": "does-not-exist",
        "messages": [{"role": "user", "content": "Anyone there?"}],
    }))
    .await?
    .bytes()
    .await?;
    Ok(())
}

#[allow(dead_code)] // unused when a test includes this file for `app`
#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut addr = "127.0.0.1:9464".to_owned();
    let mut once = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--once" => once = true,
            other => addr = other.to_owned(),
        }
    }

    // 1. A Prometheus recorder with the GenAI buckets and Prometheus naming, installed globally.
    let handle = genai_metrics::prometheus_builder()?.install_recorder()?;
    // The exporter keeps histogram samples until its upkeep folds them into buckets: run it
    // every few seconds, scraped or not.
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    // 2. The layer records metrics for every call (and payloads to its sinks, here the log).
    let metrics = GenAiMetrics::new();
    let layer = LlmObservabilityLayer::builder()
        .sink(LogSink)
        .metrics(metrics.clone())
        .build()?;
    // 3. Serve the API and /metrics.
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let local = listener.local_addr()?;
    let router = app(&layer, metrics, handle);
    let server = tokio::spawn(async move { axum::serve(listener, router).await });

    let base = format!("http://{local}");
    known_calls(&base).await?;
    layer.dispatcher().flush(Duration::from_secs(5)).await?;
    let exposition = reqwest::get(format!("{base}/metrics"))
        .await?
        .text()
        .await?;
    println!("{exposition}");
    if once {
        layer.dispatcher().shutdown(Duration::from_secs(5)).await?;
        return Ok(());
    }
    println!("# serving the API and /metrics on {base}; Ctrl-C to stop");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        result = server => result??,
    }
    layer.dispatcher().shutdown(Duration::from_secs(5)).await?;
    Ok(())
}
