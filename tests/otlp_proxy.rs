//! The proxy's OpenTelemetry and MLflow flags as a real process: with `--otlp-endpoint` (and
//! `--otlp-header`) each recorded call arrives at an OTLP receiver as one GenAI span with the
//! record's ids; with `--mlflow --mlflow-experiment` it appears in that MLflow experiment
//! (a real server, scripts/backends/mlflow.sh) within seconds.

mod support;

use std::time::{Duration, Instant};

use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use support::backend::Backend;
use support::otlp_receiver::OtlpReceiver;
use support::proxy::Proxy;

async fn chat(Json(request): Json<Value>) -> Json<Value> {
    Json(
        json!({"id": "chatcmpl-p", "object": "chat.completion", "created": 1,
        "model": request["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "pong"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 1, "total_tokens": 8}}),
    )
}

async fn ask(proxy: &Proxy) {
    let response = reqwest::Client::new()
        .post(proxy.url("/v1/chat/completions"))
        .json(&json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "ping"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.bytes().await.unwrap();
}

#[tokio::test]
async fn otlp_endpoint_and_headers() {
    let upstream = support::serve(Router::new().route("/v1/chat/completions", post(chat))).await;
    let receiver = OtlpReceiver::start().await;
    let traces = receiver.traces_url();
    let proxy = Proxy::start(
        &format!("http://{upstream}"),
        &[
            "--otlp-endpoint",
            &traces,
            "--otlp-header",
            "Authorization=Bearer proxy-token",
            "--otlp-header",
            "x-team=search",
        ],
    )
    .await;
    ask(&proxy).await;
    let line = proxy.wait_for_lines(1).await.remove(0);
    let spans = receiver.wait_for_spans(1, Duration::from_secs(20)).await;
    let span = &spans[0];
    assert_eq!(span.span.name, "chat gpt-4o-mini");
    assert_eq!(
        span.trace_id_hex(),
        line["trace"]["trace_id"].as_str().unwrap()
    );
    assert_eq!(
        span.span_id_hex(),
        line["trace"]["span_id"].as_str().unwrap()
    );
    assert_eq!(span.string("gen_ai.response.id"), Some("chatcmpl-p"));
    assert_eq!(span.string("server.address"), Some("127.0.0.1"));
    assert_eq!(
        span.attribute("gen_ai.input.messages"),
        None,
        "content is opt-in"
    );
    assert_eq!(
        span.resource_string("service.name"),
        Some("llm-observability-proxy")
    );
    let request = &receiver.requests()[0];
    assert_eq!(request.headers["authorization"], "Bearer proxy-token");
    assert_eq!(request.headers["x-team"], "search");
}

#[tokio::test]
async fn mlflow_experiment_gets_each_call() {
    let server = tokio::task::spawn_blocking(|| Backend::start("mlflow", Duration::from_secs(240)))
        .await
        .unwrap();
    let upstream = support::serve(Router::new().route("/v1/chat/completions", post(chat))).await;
    let experiment = format!("proxy-{}", uuid::Uuid::new_v4().simple());
    let proxy = Proxy::start(
        &format!("http://{upstream}"),
        &[
            "--mlflow",
            &server.base_url(),
            "--mlflow-experiment",
            &experiment,
        ],
    )
    .await;
    ask(&proxy).await;
    let line = proxy.wait_for_lines(1).await.remove(0);
    let client = reqwest::Client::new();
    let found: Value = client
        .get(format!(
            "{}/api/2.0/mlflow/experiments/get-by-name?experiment_name={experiment}",
            server.base_url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // The proxy's sink creates the experiment on its first batch: poll for it and the trace.
    let deadline = Instant::now() + Duration::from_secs(20);
    let trace_id = format!("tr-{}", line["trace"]["trace_id"].as_str().unwrap());
    let mut last = found;
    loop {
        if let Some(id) = last["experiment"]["experiment_id"].as_str() {
            let traces: Value = client
                .post(format!("{}/api/3.0/mlflow/traces/search", server.base_url()))
                .json(&json!({"locations": [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": id}}]}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if let Some(trace) = traces["traces"]
                .as_array()
                .and_then(|t| t.iter().find(|t| t["trace_id"] == trace_id.as_str()))
            {
                assert_eq!(trace["state"], "OK");
                assert_eq!(trace["request_preview"], "ping");
                assert_eq!(trace["response_preview"], "pong");
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no trace {trace_id}: {last:#}\n{}",
            proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        last = client
            .get(format!(
                "{}/api/2.0/mlflow/experiments/get-by-name?experiment_name={experiment}",
                server.base_url()
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    }
}
