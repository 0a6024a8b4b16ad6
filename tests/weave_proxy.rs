//! `llm-observability-proxy --weave URL --weave-project ENTITY/PROJECT`: a call made through the
//! proxy lands in W&B's own trace server (`scripts/backends/weave.sh`), read back through its
//! `POST /calls/query`.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::backend::Backend;
use support::proxy::Proxy;

const REPLY: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o-mini-2024-07-18",
"choices":[{"index":0,"message":{"role":"assistant","content":"Hello from upstream"},"finish_reason":"stop"}],
"usage":{"prompt_tokens":9,"completion_tokens":4,"total_tokens":13}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_through_the_proxy_lands_in_the_weave_project() {
    let server = Backend::start("weave", Duration::from_secs(180));
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(|| async {
            ([(http::header::CONTENT_TYPE, "application/json")], REPLY)
        }),
    );
    let upstream = support::serve(app).await;
    let project = "llm-obs/proxy";
    let mut proxy = Proxy::start(
        &format!("http://{upstream}"),
        &["--weave", &server.base_url(), "--weave-project", project],
    )
    .await;
    let request = json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Say hello"}],
    });
    let answer: Value = reqwest::Client::new()
        .post(proxy.url("/v1/chat/completions"))
        .json(&request)
        .send()
        .await
        .expect("through the proxy")
        .json()
        .await
        .expect("JSON answer");
    assert_eq!(
        answer["choices"][0]["message"]["content"],
        "Hello from upstream"
    );

    // The proxy delivers within its batch interval; poll the trace server with a deadline.
    let deadline = Instant::now() + Duration::from_secs(20);
    let calls = loop {
        let body: Value = reqwest::Client::new()
            .post(format!("{}/calls/query", server.base_url()))
            .json(&json!({"project_id": project}))
            .send()
            .await
            .expect("query")
            .json()
            .await
            .expect("query answer");
        let calls = body["calls"].as_array().cloned().unwrap_or_default();
        if !calls.is_empty() || Instant::now() > deadline {
            break calls;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(calls.len(), 1, "{calls:#?}\n{}", proxy.log());
    let call = &calls[0];
    assert_eq!(call["op_name"], "openai.chat.completions.create");
    assert_eq!(call["inputs"]["model"], "gpt-4o-mini");
    assert_eq!(call["inputs"]["messages"], request["messages"]);
    let reply: Value = serde_json::from_str(REPLY).expect("reply");
    assert_eq!(call["output"], reply);
    assert_eq!(
        call["summary"]["usage"]["gpt-4o-mini-2024-07-18"],
        json!({"requests": 1, "prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13})
    );
    assert_eq!(
        call["attributes"]["server.address"], "127.0.0.1",
        "the upstream host"
    );

    proxy.terminate();
    assert!(proxy.wait().await, "{}", proxy.log());
    let log = proxy.log();
    assert!(
        log.contains("sink weave: 1 delivered, 0 dropped, 0 failed"),
        "{log}"
    );
}
