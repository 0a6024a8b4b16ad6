//! The cost of recording GenAI metrics, against its baseline in the same run: one whole
//! in-process streamed call (the recorded 100+-event SSE chat of `benches/layer.rs`) through the
//! layer without and with [`GenAiMetrics`], a Prometheus recorder installed; and
//! `GenAiMetrics::record` alone on a finished call.
//!
//! `cargo bench --bench metrics --features prometheus`. `with_metrics - without_metrics` is the
//! cost of recording per call.

#[path = "../tests/support/mod.rs"]
#[allow(unused)]
mod support;

use std::convert::Infallible;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use divan::Bencher;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use llm_observability::metrics::GenAiMetrics;
use llm_observability::{
    DispatcherConfig, Endpoint, LlmCall, LlmObservabilityLayer, Sink, SinkError, Usage,
};
use tower::{ServiceBuilder, ServiceExt};

fn main() {
    let handle = llm_observability::metrics::prometheus_builder()
        .expect("buckets")
        .install_recorder()
        .expect("the only recorder");
    divan::main();
    // What the runs recorded, so a reader can see the metrics were live.
    let rendered = handle.render();
    let series = rendered
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .count();
    eprintln!("prometheus exposition after the runs: {series} series");
}

struct Discard;

#[async_trait]
impl Sink for Discard {
    fn name(&self) -> &str {
        "discard"
    }
    async fn export(&self, _batch: &[Arc<LlmCall>]) -> Result<(), SinkError> {
        Ok(())
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

fn layer(metrics: Option<GenAiMetrics>) -> LlmObservabilityLayer {
    let builder = LlmObservabilityLayer::builder()
        .sink(Discard)
        .dispatcher_config(DispatcherConfig::builder().queue_capacity(1 << 20).build());
    match metrics {
        Some(metrics) => builder.metrics(metrics),
        None => builder,
    }
    .build()
    .expect("in a runtime")
}

fn recorded_chat() -> (Bytes, Vec<Bytes>) {
    let interaction = support::load_interactions()
        .expect("benchmarks need the recorded fixtures")
        .into_iter()
        .find(|i| i.file.contains("test_streaming_with_api_usage_capture"))
        .expect("fixture");
    let frames = interaction
        .response_body
        .split_inclusive("\n\n")
        .map(|e| Bytes::copy_from_slice(e.as_bytes()))
        .collect();
    (Bytes::from(interaction.request_body), frames)
}

fn bench_calls(bencher: Bencher, metrics: Option<GenAiMetrics>) {
    let runtime = runtime();
    let (body, frames) = recorded_chat();
    let layer = runtime.block_on(async { layer(metrics) });
    let upstream = tower::service_fn(
        move |request: Request<llm_observability::RequestBody<Full<Bytes>>>| {
            let frames = frames.clone();
            async move {
                let _ = request.into_body().collect().await;
                Ok::<_, Infallible>(
                    Response::builder()
                        .header("content-type", "text/event-stream")
                        .body(support::ChannelBody::from_chunks(frames))
                        .expect("response"),
                )
            }
        },
    );
    let service = ServiceBuilder::new().layer(layer).service(upstream);
    bencher.bench_local(|| {
        runtime.block_on(async {
            let request = Request::post("http://api.example.test/v1/chat/completions")
                .body(Full::new(body.clone()))
                .expect("request");
            let response = service.clone().oneshot(request).await.expect("ok");
            response
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes()
        })
    });
}

#[divan::bench]
fn streamed_call_without_metrics(bencher: Bencher) {
    bench_calls(bencher, None);
}

#[divan::bench]
fn streamed_call_with_metrics(bencher: Bencher) {
    bench_calls(bencher, Some(GenAiMetrics::new()));
}

/// `record` alone, on a finished streamed call with usage, cached and reasoning tokens.
#[divan::bench]
fn record_only(bencher: Bencher) {
    let metrics = GenAiMetrics::new();
    let mut call = LlmCall::new(Endpoint::ChatCompletions);
    call.request.model = Some("gpt-4o-mini".into());
    call.response_model = Some("gpt-4o-mini-2024-07-18".into());
    call.timing.duration_ms = 812.5;
    call.timing.time_to_first_token_ms = Some(240.0);
    let mut usage = Usage::new(120, 48);
    usage.cached_input_tokens = Some(64);
    usage.reasoning_tokens = Some(16);
    call.usage = Some(usage);
    bencher.bench_local(|| metrics.record(&call));
}
