//! `MlflowSink` against a real MLflow tracking server (PyPI mlflow 3.17.2, SQLite store,
//! started by scripts/backends/mlflow.sh, one per test binary). Each test uses its own
//! experiment and reads the traces back through MLflow's REST API
//! (`/api/3.0/mlflow/traces/search`, `/api/3.0/mlflow/traces/batchGet`).
#![cfg(feature = "mlflow")]

mod support;

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use llm_observability::{
    CallMetadata, DispatcherConfig, LlmCall, LlmObservabilityLayer, MemorySink, MlflowSink,
    RequestBody, SinkConfig,
};
use serde_json::{json, Value};
use support::backend::Backend;
use tower::{ServiceBuilder, ServiceExt};

const WAIT: Duration = Duration::from_secs(30);

fn mlflow() -> &'static Backend {
    static SERVER: OnceLock<Backend> = OnceLock::new();
    SERVER.get_or_init(|| Backend::start("mlflow", Duration::from_secs(240)))
}

fn base() -> String {
    mlflow().base_url()
}

fn quick() -> DispatcherConfig {
    DispatcherConfig::builder()
        .batch_interval(Duration::from_millis(10))
        .max_retries(2)
        .initial_backoff(Duration::from_millis(10))
        .max_backoff(Duration::from_millis(100))
        .build()
}

fn layer(sink: MlflowSink, memory: &MemorySink) -> LlmObservabilityLayer {
    LlmObservabilityLayer::builder()
        .sink_with(sink, SinkConfig::new().dispatch(quick()))
        .sink(memory.clone())
        .build()
        .unwrap()
}

async fn rest(method: &str, path: &str, body: Option<Value>) -> Value {
    let client = reqwest::Client::new();
    let url = format!("{}{path}", base());
    let request = match method {
        "GET" => client.get(&url),
        _ => client.post(&url).json(&body.unwrap_or(Value::Null)),
    };
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_success(), "{method} {path}: {status} {text}");
    serde_json::from_str(&text).unwrap()
}

async fn experiment_id(name: &str) -> String {
    let found = rest(
        "GET",
        &format!("/api/2.0/mlflow/experiments/get-by-name?experiment_name={name}"),
        None,
    )
    .await;
    found["experiment"]["experiment_id"].as_str().unwrap().to_owned()
}

/// The experiment's trace infos, polled until there are `count` of them in a final state.
async fn traces(experiment: &str, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let found = rest(
            "POST",
            "/api/3.0/mlflow/traces/search",
            Some(json!({
                "locations": [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": experiment}}],
                "max_results": 100,
            })),
        )
        .await;
        let traces = found["traces"].as_array().cloned().unwrap_or_default();
        let done = traces.iter().filter(|t| t["state"] != "IN_PROGRESS").count();
        if traces.len() >= count && done >= count {
            return traces;
        }
        assert!(Instant::now() < deadline, "expected {count} finished traces, got {found:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Whole traces (info and spans) by id.
async fn batch_get(ids: &[&str]) -> Vec<Value> {
    let query: Vec<String> = ids.iter().map(|id| format!("trace_ids={id}")).collect();
    let found = rest(
        "GET",
        &format!("/api/3.0/mlflow/traces/batchGet?{}", query.join("&")),
        None,
    )
    .await;
    found["traces"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn probe() {
    let sink = MlflowSink::builder(base()).experiment("probe").build().unwrap();
    let memory = MemorySink::new();
    let layer = layer(sink, &memory);
    let service = ServiceBuilder::new().layer(layer.clone()).service_fn(
        |request: Request<RequestBody<Full<Bytes>>>| async move {
            request.into_body().collect().await?;
            Ok::<_, Infallible>(Response::builder().header("content-type", "application/json").body(Full::new(Bytes::from_static(br#"{"id":"c1","object":"chat.completion","model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"pong"},"finish_reason":"stop"}],"usage":{"prompt_tokens":11,"completion_tokens":4,"total_tokens":15}}"#))).unwrap())
        },
    );
    let request = Request::post("http://api.test/v1/chat/completions").body(Full::new(Bytes::from(json!({"model":"gpt-4o-mini","messages":[{"role":"user","content":"ping"}]}).to_string()))).unwrap();
    service.oneshot(request).await.unwrap().into_body().collect().await.unwrap();
    layer.dispatcher().flush(WAIT).await.unwrap();
    println!("{:?}", layer.dispatcher().stats());
    let id = experiment_id("probe").await;
    let infos = traces(&id, 1).await;
    println!("{:#}", infos[0]);
    let ids: Vec<&str> = infos.iter().map(|t| t["trace_id"].as_str().unwrap()).collect();
    println!("{:#}", batch_get(&ids).await[0]);
    let _ = (CallMetadata::new(), Arc::new(()), None::<LlmCall>);
}
