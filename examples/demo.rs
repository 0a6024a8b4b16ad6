//! The offline demo: `cargo run --example demo`.
//!
//! Starts an embedded mock OpenAI-compatible upstream and an axum gateway in front of it with
//! `tower_http::trace::TraceLayer` (outside) and `LlmObservabilityLayer` (inside), makes a round of
//! calls through the gateway — streamed chat with tools and usage, streamed text, plain chat,
//! embeddings, a Responses API stream, a legacy completion, a 404, and a non-LLM call — then
//! prints one row per recorded call, the span tree, the dispatcher counters, and where the JSONL
//! went. Nothing leaves 127.0.0.1.

#[path = "support/forward.rs"]
mod forward;
#[path = "support/mock_upstream.rs"]
mod mock_upstream;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use bytes::Bytes;
use forward::{Forward, Upstream};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use llm_observability::{CallStatus, JsonlSink, LlmObservabilityLayer, MemorySink};
use serde_json::{json, Value};
use tower::Service;
use tracing::Instrument;
use tracing_subscriber::layer::{Layer as _, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const JSONL: &str = "llm-calls.jsonl";

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let tree = SpanTree::default();
    tracing_subscriber::registry()
        .with(tree.clone())
        .with(
            tracing_subscriber::fmt::layer()
                .with_filter(tracing_subscriber::filter::LevelFilter::WARN),
        )
        .init();

    let upstream = mock_upstream::start().await?;
    std::fs::write(JSONL, "")?; // each run shows its own calls
    let memory = MemorySink::new();
    let layer = LlmObservabilityLayer::builder()
        .sink(JsonlSink::create(JSONL)?)
        .sink(memory.clone())
        .capture_header("x-user-id", "user_id")
        .build()?;
    let forward = Forward::new(Upstream::parse(
        &format!("http://{}", upstream.addr).parse()?,
    )?)?;
    let gateway = Router::new()
        .route("/v1/{*path}", any(forward_to_upstream))
        .with_state(forward)
        .layer(layer.clone())
        .layer(tower_http::trace::TraceLayer::new_for_http());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let gateway_addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, gateway).await });
    println!(
        "mock upstream on {}, gateway (with the layer) on http://{gateway_addr}\n",
        upstream.base_url()
    );

    let calls = [
        (
            "chat, streamed, tool call + usage",
            "/v1/chat/completions",
            json!({"model": "gpt-4o-mini", "stream": true,
            "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]}),
        ),
        (
            "chat, streamed text + usage",
            "/v1/chat/completions",
            json!({"model": "gpt-4o-mini", "stream": true, "temperature": 0.2,
            "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": "Tell me about tracing"}]}),
        ),
        (
            "chat, not streamed",
            "/v1/chat/completions",
            json!({"model": "gpt-4o", "max_tokens": 64,
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Explain spans"}]}),
        ),
        (
            "embeddings",
            "/v1/embeddings",
            json!({"model": "text-embedding-3-small", "input": ["observability for LLM calls", "tower layers"]}),
        ),
        (
            "responses, streamed",
            "/v1/responses",
            json!({"model": "gpt-4.1", "stream": true, "input": "Write about unicorns"}),
        ),
        (
            "legacy completion",
            "/v1/completions",
            json!({"model": "gpt-3.5-turbo-instruct", "prompt": "Say something about Rust", "max_tokens": 16}),
        ),
        (
            "unknown model (404)",
            "/v1/chat/completions",
            json!({"model": "does-not-exist", "messages": [{"role": "user", "content": "hi"}]}),
        ),
    ];
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    for (n, (label, path, body)) in calls.iter().enumerate() {
        let request = http::Request::post(format!("http://{gateway_addr}{path}"))
            .header("content-type", "application/json")
            .header("authorization", "Bearer sk-demo-not-recorded")
            .header("x-user-id", format!("demo-user-{}", n % 2))
            .body(Full::new(Bytes::from(body.to_string())))?;
        let response = client
            .request(request)
            .instrument(tracing::info_span!("demo.call", n, label))
            .await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        println!("  {label:<36} -> HTTP {status}, {} bytes", bytes.len());
    }
    let models = client
        .get(format!("http://{gateway_addr}/v1/models").parse()?)
        .await?;
    let models_status = models.status();
    models.into_body().collect().await?;
    println!(
        "  {:<36} -> HTTP {models_status} (not an LLM call: nothing recorded)",
        "GET /v1/models"
    );

    layer.dispatcher().shutdown(Duration::from_secs(5)).await?;
    let recorded = memory.calls();

    println!("\nRecorded calls");
    println!(
        "{:<17} {:<26} {:<9} {:>4} {:>6} {:>6} {:>8} {:>9}",
        "endpoint", "model", "status", "http", "in", "out", "ttft ms", "total ms"
    );
    for call in &recorded {
        let usage = call.usage.unwrap_or_default();
        let show = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
        let model = call
            .response
            .as_ref()
            .and_then(|r| r.get("model"))
            .and_then(Value::as_str)
            .or(call.request.model.as_deref())
            .unwrap_or("-");
        println!(
            "{:<17} {:<26} {:<9} {:>4} {:>6} {:>6} {:>8} {:>9.2}",
            call.endpoint.as_str(),
            model,
            call.status.as_str(),
            call.http_status.map_or("-".into(), |s| s.to_string()),
            show(usage.input_tokens),
            show(usage.output_tokens),
            call.timing
                .time_to_first_token_ms
                .map_or("-".into(), |t| format!("{t:.2}")),
            call.timing.duration_ms,
        );
    }

    println!(
        "\nSpan tree (server side: tower-http's request span > the LLM call span > the forwarding)"
    );
    tree.print();

    let stats = layer.dispatcher().stats();
    println!(
        "\nDispatcher: {} calls observed; {:?}",
        stats.observed, stats.sinks
    );
    println!(
        "Payloads written to {} ({} lines)",
        JSONL,
        std::fs::read_to_string(JSONL)?.lines().count()
    );

    check(&recorded, calls.len())
}

/// The gateway's only handler: forward to the upstream inside a `forward` span.
async fn forward_to_upstream(State(mut forward): State<Forward>, request: Request) -> Response {
    let span = tracing::info_span!("forward", path = request.uri().path());
    match forward.call(request).instrument(span).await {
        Ok(response) => response.into_response(),
        Err(error) => forward::bad_gateway(&error).into_response(),
    }
}

/// Fails the demo (non-zero exit) if what was recorded is not what was called.
fn check(recorded: &[Arc<llm_observability::LlmCall>], expected: usize) -> Result<(), BoxError> {
    if recorded.len() != expected {
        return Err(format!("expected {expected} recorded calls, got {}", recorded.len()).into());
    }
    let errors = recorded
        .iter()
        .filter(|c| c.status == CallStatus::Error)
        .count();
    let with_content = recorded.iter().filter(|c| c.response.is_some()).count();
    if errors != 1 || with_content != expected {
        return Err(format!(
            "expected 1 error and {expected} responses, got {errors} and {with_content}"
        )
        .into());
    }
    Ok(())
}

/// A tracing layer that remembers every span (with a few fields) and prints them as a tree.
#[derive(Clone, Default)]
struct SpanTree {
    spans: Arc<Mutex<Vec<TreeNode>>>,
}

struct TreeNode {
    name: String,
    parent: Option<usize>,
    fields: BTreeMap<String, String>,
}

/// Our own index of a span, kept in its extensions (tracing reuses span ids).
struct NodeIndex(usize);

struct FieldCollector<'a>(&'a mut BTreeMap<String, String>);

impl tracing::field::Visit for FieldCollector<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S> tracing_subscriber::Layer<S> for SpanTree
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let Some(span) = ctx.span(id) else { return };
        let parent = span
            .parent()
            .and_then(|p| p.extensions().get::<NodeIndex>().map(|i| i.0));
        let mut fields = BTreeMap::new();
        attrs.record(&mut FieldCollector(&mut fields));
        let mut spans = self.spans.lock().unwrap_or_else(|e| e.into_inner());
        spans.push(TreeNode {
            name: attrs.metadata().name().to_owned(),
            parent,
            fields,
        });
        span.extensions_mut().insert(NodeIndex(spans.len() - 1));
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let Some(index) = ctx
            .span(id)
            .and_then(|s| s.extensions().get::<NodeIndex>().map(|i| i.0))
        else {
            return;
        };
        let mut spans = self.spans.lock().unwrap_or_else(|e| e.into_inner());
        values.record(&mut FieldCollector(&mut spans[index].fields));
    }
}

impl SpanTree {
    fn print(&self) {
        let spans = self.spans.lock().unwrap_or_else(|e| e.into_inner());
        let shown = [
            "method",
            "uri",
            "otel.name",
            "gen_ai.response.model",
            "gen_ai.usage.input_tokens",
            "gen_ai.usage.output_tokens",
            "gen_ai.response.finish_reasons",
            "error.type",
            "path",
        ];
        fn walk(spans: &[TreeNode], shown: &[&str], parent: Option<usize>, depth: usize) {
            for (index, node) in spans.iter().enumerate().filter(|(_, n)| n.parent == parent) {
                let fields: Vec<String> = shown
                    .iter()
                    .filter_map(|k| node.fields.get(*k).map(|v| format!("{k}={v}")))
                    .collect();
                println!(
                    "{}{} {}",
                    "  ".repeat(depth + 1),
                    node.name,
                    fields.join(" ")
                );
                walk(spans, shown, Some(index), depth + 1);
            }
        }
        // Only trees that contain an LLM call span, so the output stays about the demo.
        for (index, root) in spans.iter().enumerate().filter(|(_, n)| n.parent.is_none()) {
            let has_llm = spans
                .iter()
                .any(|n| n.name == "gen_ai" && n.parent == Some(index));
            if has_llm {
                let fields: Vec<String> = ["method", "uri"]
                    .iter()
                    .filter_map(|k| root.fields.get(*k).map(|v| format!("{k}={v}")))
                    .collect();
                println!("  {} {}", root.name, fields.join(" "));
                walk(&spans, &shown, Some(index), 1);
            }
        }
    }
}
