//! The layer against its baseline, in the same run: one whole in-process call (request body,
//! inner service, a recorded 100+-event SSE response read to the end) through a tower service
//! with and without `LlmObservabilityLayer`; and the dispatcher's enqueue on the request path.
//!
//! `cargo bench --bench layer`. The ratio `with_layer / without_layer` is the layer's cost.

#[path = "../tests/support/mod.rs"]
#[allow(unused)]
mod support;

use std::convert::Infallible;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use divan::{AllocProfiler, Bencher};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use llm_observability::{DispatcherConfig, LlmCall, LlmObservabilityLayer, Sink, SinkError};
use tower::{Service, ServiceBuilder, ServiceExt};

#[global_allocator]
static ALLOC: AllocProfiler = AllocProfiler::system();

fn main() {
    divan::main();
}

/// Takes batches and forgets them.
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

fn layer() -> LlmObservabilityLayer {
    LlmObservabilityLayer::builder()
        .sink(Discard)
        .dispatcher_config(DispatcherConfig::builder().queue_capacity(1 << 20).build())
        .build()
        .expect("in a runtime")
}

/// The recorded DeepSeek chat stream (100+ events), one frame per event, and its request.
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

fn upstream<B>(
    frames: Vec<Bytes>,
) -> impl Service<Request<B>, Response = Response<support::ChannelBody>, Error = Infallible> + Clone
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::fmt::Debug,
{
    tower::service_fn(move |request: Request<B>| {
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
    })
}

fn request(body: &Bytes) -> Request<Full<Bytes>> {
    Request::post("http://api.example.test/v1/chat/completions")
        .body(Full::new(body.clone()))
        .expect("request")
}

/// Times one whole call (request in, body read to its end) through `service`.
fn bench_calls<S, B>(bencher: Bencher, runtime: &tokio::runtime::Runtime, service: S, body: Bytes)
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone,
    S::Error: std::fmt::Debug,
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    bencher.bench_local(|| {
        runtime.block_on(async {
            let response = service.clone().oneshot(request(&body)).await.expect("ok");
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
fn streamed_call_without_layer(bencher: Bencher) {
    let runtime = runtime();
    let (body, frames) = recorded_chat();
    bench_calls(bencher, &runtime, upstream::<Full<Bytes>>(frames), body);
}

fn observed_service(
    layer: LlmObservabilityLayer,
    frames: Vec<Bytes>,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<llm_observability::ResponseBody<support::ChannelBody>>,
    Error = Infallible,
> + Clone {
    ServiceBuilder::new().layer(layer).service(upstream::<
        llm_observability::RequestBody<Full<Bytes>>,
    >(frames))
}

#[divan::bench]
fn streamed_call_with_layer(bencher: Bencher) {
    let runtime = runtime();
    let (body, frames) = recorded_chat();
    let layer = runtime.block_on(async { layer() });
    bench_calls(bencher, &runtime, observed_service(layer, frames), body);
}

/// The same with a layer that has no sinks: what the dispatcher adds.
#[divan::bench]
fn streamed_call_with_layer_no_sinks(bencher: Bencher) {
    let runtime = runtime();
    let (body, frames) = recorded_chat();
    let layer = runtime.block_on(async {
        LlmObservabilityLayer::builder()
            .build()
            .expect("in a runtime")
    });
    bench_calls(bencher, &runtime, observed_service(layer, frames), body);
}

/// Only the SSE decoding of the same stream: what the tee's decoder accounts for.
#[divan::bench]
fn decode_only(bencher: Bencher) {
    let (_body, frames) = recorded_chat();
    bencher.bench_local(|| {
        let mut decoder = llm_observability::internals::BodyDecoder::new(
            llm_observability::Endpoint::ChatCompletions,
            Some("text/event-stream"),
            8 << 20,
        );
        for frame in &frames {
            decoder.feed(frame);
        }
        decoder.finish()
    });
}

#[divan::bench]
fn dispatcher_enqueue(bencher: Bencher) {
    let runtime = runtime();
    let layer = runtime.block_on(async { layer() });
    let line = r#"{"schema_version":1,"id":"x","endpoint":"chat.completions","operation":"chat","provider":"openai","server_address":null,"request":{"model":"gpt-4o","stream":false},"response":null,"usage":null,"finish_reasons":[],"status":"success","http_status":200,"error":null,"timing":{"start_time":"2026-01-01T00:00:00Z","end_time":"2026-01-01T00:00:01Z","duration_ms":1.0,"time_to_first_token_ms":null},"truncated":false,"metadata":{}}"#;
    let call: Arc<LlmCall> = Arc::new(serde_json::from_str(line).expect("payload"));
    let dispatcher = layer.dispatcher().clone();
    bencher.bench_local(|| dispatcher.dispatch(call.clone()));
    let stats = dispatcher.stats();
    eprintln!(
        "dispatcher_enqueue: {} observed, {} dropped (queue full) — never blocked",
        stats.observed, stats.sinks[0].dropped
    );
}
