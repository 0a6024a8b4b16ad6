//! The proxy's cost and privacy flags as a real process: `--redact content`, `--pricing
//! FILE` (LiteLLM format) and `--model-alias DEPLOYMENT=MODEL` on the records, and the cost
//! totals per model it logs at shutdown.
//!
//! Prices: gpt-4o-mini from the file written below (0.20 input / 0.10 cached / 0.80 output per
//! 1M tokens, instead of the built-in 0.15 / 0.075 / 0.60); text-embedding-3-small from the
//! built-in table (0.02 per 1M).

mod support;

use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use support::proxy::Proxy;

const PROMPT: &str = "SECRET_PROMPT_c0ffee";
const ANSWER: &str = "SECRET_ANSWER_beef";

async fn chat(Json(request): Json<Value>) -> Json<Value> {
    let model = request["model"].as_str().unwrap_or_default();
    let answered = if model == "gpt-4o-mini" {
        "gpt-4o-mini-2024-07-18"
    } else {
        model
    };
    // 1000 input tokens of which 200 cached, 100 output (40 of them reasoning).
    Json(
        json!({"id": "chatcmpl-c", "object": "chat.completion", "created": 1, "model": answered,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1000, "completion_tokens": 100, "total_tokens": 1100,
            "prompt_tokens_details": {"cached_tokens": 200},
            "completion_tokens_details": {"reasoning_tokens": 40}}}),
    )
}

async fn embeddings() -> Json<Value> {
    Json(json!({"object": "list", "model": "text-embedding-3-small",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
        "usage": {"prompt_tokens": 5000, "total_tokens": 5000}}))
}

#[tokio::test]
async fn redacts_prices_from_the_file_and_logs_totals_per_model_at_shutdown() {
    let upstream = support::serve(
        Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/v1/embeddings", post(embeddings)),
    )
    .await;
    let prices = std::env::temp_dir().join(format!(
        "llm-obs-proxy-prices-{}-{}.json",
        std::process::id(),
        uuid::Uuid::new_v4()
    ));
    std::fs::write(
        &prices,
        r#"{"sample_spec": {"input_cost_per_token": 0.0, "mode": "chat"},
            "gpt-4o-mini": {"input_cost_per_token": 2e-07, "output_cost_per_token": 8e-07,
                "cache_read_input_token_cost": 1e-07, "litellm_provider": "openai", "mode": "chat"}}"#,
    )
    .expect("temp file");
    let prices_arg = prices.display().to_string();
    let mut proxy = Proxy::start(
        &format!("http://{upstream}"),
        &["--redact", "content", "--pricing", &prices_arg],
    )
    .await;
    let client = reqwest::Client::new();
    for (path, body) in [
        (
            "/v1/chat/completions",
            json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": PROMPT}]}),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": PROMPT}]}),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "mystery-model", "messages": [{"role": "user", "content": PROMPT}]}),
        ),
        (
            "/v1/embeddings",
            json!({"model": "text-embedding-3-small", "input": PROMPT}),
        ),
    ] {
        let response = client
            .post(proxy.url(path))
            .bearer_auth("sk-test-0123456789abcdef")
            .json(&body)
            .send()
            .await
            .expect("proxy answers");
        assert_eq!(response.status(), 200);
        let text = response.text().await.expect("body");
        if path.ends_with("completions") {
            assert!(
                text.contains(ANSWER),
                "the client gets the answer unchanged"
            );
        }
    }
    let lines = proxy.wait_for_lines(4).await;
    assert_eq!(lines.len(), 4);
    proxy.terminate();
    assert!(proxy.wait().await, "exits 0");
    std::fs::remove_file(&prices).ok();

    let log = proxy.log();
    // 800 * 0.20e-6 + 200 * 0.10e-6 + 100 * 0.80e-6 = 0.00026 per chat call, reasoning
    // tokens inside the 100 output tokens; 5000 * 0.02e-6 = 0.0001 for the embeddings.
    for expected in [
        "cost gpt-4o-mini-2024-07-18: $0.000520 for 2 of 2 calls",
        "cost mystery-model: $0.000000 for 0 of 1 calls",
        "cost text-embedding-3-small: $0.000100 for 1 of 1 calls",
        "cost total: $0.000620",
    ] {
        assert!(
            log.contains(expected),
            "{expected:?} not in the log:\n{log}"
        );
    }
    let jsonl = std::fs::read_to_string(&proxy.jsonl).expect("records");
    for secret in [PROMPT, ANSWER, "sk-test-0123456789abcdef"] {
        assert!(!jsonl.contains(secret), "{secret} in the records:\n{jsonl}");
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
    let by_model = |model: &str| {
        lines
            .iter()
            .find(|l| l["request"]["model"] == model)
            .unwrap_or_else(|| panic!("no {model} record"))
    };
    let chat = by_model("gpt-4o-mini");
    assert_eq!(chat["request"]["messages"][0]["role"], "user");
    assert_eq!(
        chat["request"]["messages"][0]["content"],
        "[redacted: 20 chars]"
    );
    assert_eq!(chat["cost"]["pricing_source"], format!("file:{prices_arg}"));
    let total = chat["cost"]["total_usd"].as_f64().expect("a number");
    assert!((total - 0.00026).abs() < 1e-12, "{total}");
    assert_eq!(
        by_model("text-embedding-3-small")["cost"]["pricing_source"],
        "built-in"
    );
    let mystery = by_model("mystery-model");
    assert_eq!(mystery["cost"], Value::Null);
    assert_eq!(
        mystery["processing_errors"],
        json!(["no cost: no price for model \"mystery-model\""])
    );
}

#[test]
fn help_explains_the_cost_and_privacy_flags() {
    let output = std::process::Command::new(support::proxy::PROXY)
        .arg("--help")
        .output()
        .expect("runs");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for text in [
        "--redact <WHAT>",
        "[redacted: N chars]",
        "--pricing <FILE>",
        "model_prices_and_context_window.json",
        "per model (see --pricing)",
        "--model-alias <DEPLOYMENT=MODEL>",
    ] {
        assert!(help.contains(text), "--help lacks {text:?}:\n{help}");
    }
}

#[tokio::test]
async fn an_unreadable_price_file_stops_the_proxy_at_start() {
    let jsonl = support::proxy::temp_jsonl();
    let output = std::process::Command::new(support::proxy::PROXY)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "http://127.0.0.1:9",
            "--jsonl",
        ])
        .arg(&jsonl)
        .args(["--pricing", "/nonexistent/prices.json"])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot read price file /nonexistent/prices.json"),
        "{stderr}"
    );
    assert!(
        !jsonl.exists(),
        "no records file is made when the prices cannot be read"
    );
}

/// An Azure deployment: the response names `gpt-35-turbo` (Azure's spelling, not priced).
async fn azure_chat() -> Json<Value> {
    Json(
        json!({"id": "chatcmpl-a", "object": "chat.completion", "created": 1, "model": "gpt-35-turbo",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1000, "completion_tokens": 100, "total_tokens": 1100}}),
    )
}

#[tokio::test]
async fn a_model_alias_prices_an_azure_deployment_as_its_model() {
    let upstream = support::serve(Router::new().route(
        "/openai/deployments/{deployment}/chat/completions",
        post(azure_chat),
    ))
    .await;
    let mut proxy = Proxy::start(
        &format!("http://{upstream}"),
        &[
            "--model-alias",
            "my-gpt35=gpt-3.5-turbo",
            "--model-alias",
            "my-gpt4o=gpt-4o",
        ],
    )
    .await;
    let client = reqwest::Client::new();
    for deployment in ["my-gpt35", "other-deployment"] {
        let response = client
            .post(proxy.url(&format!(
                "/openai/deployments/{deployment}/chat/completions?api-version=2024-10-21"
            )))
            .header("api-key", "azure-key-0123456789")
            .json(&json!({"messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .expect("proxy answers");
        assert_eq!(response.status(), 200);
    }
    let lines = proxy.wait_for_lines(2).await;
    proxy.terminate();
    assert!(proxy.wait().await, "exits 0");
    let by_deployment = |name: &str| {
        lines
            .iter()
            .find(|l| l["request_model"] == name)
            .unwrap_or_else(|| panic!("no {name} record in {lines:?}"))
    };
    // gpt-3.5-turbo, built in: 1000 * 0.50e-6 + 100 * 1.50e-6.
    let aliased = by_deployment("my-gpt35");
    assert_eq!(aliased["cost"]["pricing_source"], "built-in");
    let total = aliased["cost"]["total_usd"].as_f64().expect("a number");
    assert!((total - 0.00065).abs() < 1e-12, "{total}");
    let other = by_deployment("other-deployment");
    assert_eq!(other["cost"], Value::Null);
    assert_eq!(
        other["processing_errors"],
        json!(["no cost: no price for model \"gpt-35-turbo\" or \"other-deployment\""])
    );
}

#[test]
fn invalid_model_aliases_are_refused_at_start() {
    for (value, says) in [
        ("gpt-4o", "expected DEPLOYMENT=MODEL"),
        ("=gpt-4o", "both names non-empty"),
        ("my-gpt4o=", "both names non-empty"),
        ("a=b=c", "one '='"),
    ] {
        let output = std::process::Command::new(support::proxy::PROXY)
            .args(["--upstream", "http://127.0.0.1:9", "--model-alias", value])
            .output()
            .expect("runs");
        assert_eq!(output.status.code(), Some(2), "{value}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("--model-alias <DEPLOYMENT=MODEL>") && stderr.contains(says),
            "{value}: {stderr}"
        );
    }
}
