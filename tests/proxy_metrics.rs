//! `llm-observability-proxy --metrics-listen ADDR`: GenAI metrics on `GET /metrics`, in an
//! exposition `promtool check metrics` accepts, with the values of the proxied calls.

mod support;

#[path = "../examples/support/mock_upstream.rs"]
mod mock_upstream;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;
use support::proxy::Proxy;

fn value_of(exposition: &str, prefix: &str) -> Option<f64> {
    exposition
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse().ok())
}

#[tokio::test]
async fn metrics_listen_serves_the_proxied_calls() {
    let upstream = mock_upstream::start().await.expect("mock upstream");
    let metrics_port = support::backend::free_port();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let proxy = Proxy::start(
        &format!("http://{}", upstream.addr),
        &["--metrics-listen", &metrics_addr],
    )
    .await;
    assert!(proxy.wait_for_log("metrics on").await, "{}", proxy.log());

    let client = reqwest::Client::new();
    for (model, stream) in [("gpt-4o-mini", true), ("gpt-4o", false)] {
        let body = json!({
            "model": model,
            "stream": stream,
            "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "one two three"}],
        });
        let response = client
            .post(proxy.url("/v1/chat/completions"))
            .json(&body)
            .send()
            .await
            .expect("proxied");
        assert!(response.status().is_success());
        response.bytes().await.expect("body");
    }
    let lines = proxy.wait_for_lines(2).await;
    assert_eq!(lines.len(), 2);

    let scrape = || async {
        client
            .get(format!("http://{metrics_addr}/metrics"))
            .send()
            .await
            .expect("scrape")
            .text()
            .await
            .expect("text")
    };
    // The JSONL sink delivers within its batch interval; the scrape reads its counters.
    let mut exposition = scrape().await;
    for _ in 0..100 {
        if value_of(
            &exposition,
            "llm_observability_sink_calls_total{sink=\"jsonl\",outcome=\"delivered\"}",
        ) == Some(2.0)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        exposition = scrape().await;
    }
    for line in &lines {
        let model = line["request"]["model"].as_str().expect("model");
        let input = line["usage"]["input_tokens"].as_f64().expect("usage");
        let sum = exposition
            .lines()
            .find(|l| {
                l.starts_with("gen_ai_client_token_usage_sum{")
                    && l.contains(&format!("gen_ai_request_model=\"{model}\""))
                    && l.contains("gen_ai_token_type=\"input\"")
            })
            .and_then(|l| l.rsplit_once(' '))
            .and_then(|(_, v)| v.parse::<f64>().ok());
        assert_eq!(sum, Some(input), "{model} in\n{exposition}");
    }
    assert_eq!(
        value_of(
            &exposition,
            "llm_observability_sink_calls_total{sink=\"jsonl\",outcome=\"delivered\"}"
        ),
        Some(2.0),
        "{exposition}"
    );
    assert_eq!(
        value_of(
            &exposition,
            "llm_observability_dispatcher_observed_calls_total"
        ),
        Some(2.0)
    );

    support::backend::install("prometheus");
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    promtool
        .stdin
        .take()
        .expect("stdin")
        .write_all(exposition.as_bytes())
        .expect("write");
    let output = promtool.wait_with_output().expect("promtool ran");
    assert!(
        output.status.success() && output.stdout.is_empty() && output.stderr.is_empty(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    let missing = client
        .get(format!("http://{metrics_addr}/other"))
        .send()
        .await
        .expect("answered");
    assert_eq!(missing.status(), 404);
}
