//! The proxy's storage flags end to end: `--webhook` and `--postgres` (against a real PostgreSQL
//! server) and `--archive file://...`, with one chat call through the proxy; after a graceful
//! shutdown the webhook receiver, the table and the archive hold the very call the JSONL file holds.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use llm_observability::LlmCall;
use serde_json::{json, Value};
use support::backend::Backend;
use support::proxy::Proxy;

async fn upstream() -> std::net::SocketAddr {
    let app = Router::new().route(
        "/v1/chat/completions",
        post(|Json(_request): Json<Value>| async {
            Json(json!({"id": "chatcmpl-s", "object": "chat.completion", "created": 1_760_000_000,
                "model": "gpt-4o-mini",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "stored"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10}}))
        }),
    );
    support::serve(app).await
}

type Seen = Arc<Mutex<Vec<(http::HeaderMap, Bytes)>>>;

async fn receiver() -> (Seen, std::net::SocketAddr) {
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route(
            "/hook",
            post(
                |State(seen): State<Seen>, headers: http::HeaderMap, body: Bytes| async move {
                    seen.lock().unwrap().push((headers, body));
                    "ok"
                },
            ),
        )
        .with_state(seen.clone());
    (seen, support::serve(app).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_postgres_and_archive_flags_record_the_call() {
    let postgres = Backend::start("postgres", Duration::from_secs(120));
    let postgres_url = format!("postgres://postgres@127.0.0.1:{}/postgres", postgres.port);
    let upstream = upstream().await;
    let (seen, hook) = receiver().await;
    let archive =
        std::env::temp_dir().join(format!("llm-obs-proxy-archive-{}", uuid::Uuid::new_v4()));
    let webhook = format!("http://{hook}/hook");
    let archive_url = format!("file://{}", archive.display());
    let mut proxy = Proxy::start(
        &format!("http://{upstream}"),
        &[
            "--webhook",
            &webhook,
            "--webhook-header",
            "Authorization: Bearer hook-token",
            "--webhook-format",
            "ndjson",
            "--postgres",
            &postgres_url,
            "--postgres-table",
            "proxy_calls",
            "--archive",
            &archive_url,
        ],
    )
    .await;

    let response = reqwest::Client::new()
        .post(proxy.url("/v1/chat/completions"))
        .header("authorization", "Bearer sk-test")
        .json(
            &json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "keep me"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap()["choices"][0]["message"]["content"],
        "stored"
    );
    proxy.terminate();
    assert!(proxy.wait().await, "the proxy exits 0:\n{}", proxy.log());
    for sink in ["webhook", "postgres", "archive", "jsonl"] {
        assert!(
            proxy
                .log()
                .contains(&format!("sink {sink}: 1 delivered, 0 dropped, 0 failed")),
            "{sink}:\n{}",
            proxy.log()
        );
    }

    let lines = proxy.lines();
    assert_eq!(lines.len(), 1);
    let recorded: LlmCall = serde_json::from_value(lines[0].clone()).unwrap();
    assert_eq!(recorded.usage.unwrap().input_tokens, Some(9));

    // Webhook: one NDJSON request with the header, holding the call.
    let requests = seen.lock().unwrap().clone();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].0["authorization"], "Bearer hook-token");
    assert_eq!(requests[0].0["content-type"], "application/x-ndjson");
    let text = std::str::from_utf8(&requests[0].1).unwrap();
    assert_eq!(text.lines().count(), 1);
    let posted: LlmCall = serde_json::from_str(text.trim_end()).unwrap();
    assert_eq!(posted, recorded);

    // PostgreSQL: one row with the call.
    let (client, connection) = tokio_postgres::connect(&postgres_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let rows = client
        .query(
            "SELECT id, model, input_tokens, payload::text FROM proxy_calls",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, String>(0), recorded.id);
    assert_eq!(
        rows[0].get::<_, Option<String>>(1).as_deref(),
        Some("gpt-4o-mini")
    );
    assert_eq!(rows[0].get::<_, Option<i64>>(2), Some(9));
    let stored: LlmCall = serde_json::from_str(&rows[0].get::<_, String>(3)).unwrap();
    assert_eq!(stored, recorded);

    // Archive: one object, written at shutdown, holding the call.
    let mut files = Vec::new();
    let mut pending = vec![archive.clone()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].to_string_lossy().ends_with(".jsonl"));
    let archived: LlmCall =
        serde_json::from_str(std::fs::read_to_string(&files[0]).unwrap().trim_end()).unwrap();
    assert_eq!(archived, recorded);
    let _ = std::fs::remove_dir_all(&archive);
    let _ = std::fs::remove_file(&proxy.jsonl);
}

#[tokio::test]
async fn an_unreachable_postgres_stops_the_proxy_at_start() {
    let port = support::backend::free_port();
    let output = tokio::process::Command::new(support::proxy::PROXY)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "http://127.0.0.1:9",
            "--jsonl",
        ])
        .arg(support::proxy::temp_jsonl())
        .args([
            "--postgres",
            &format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--postgres"), "{stderr}");
}

#[test]
fn help_explains_the_storage_flags() {
    let output = std::process::Command::new(support::proxy::PROXY)
        .arg("--help")
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for flag in [
        "--postgres <URL>",
        "--postgres-table <NAME>",
        "--archive <URL>",
        "--archive-gzip",
        "--archive-max-age <SECS>",
        "--archive-max-bytes <BYTES>",
        "--webhook <URL>",
        "--webhook-header <HEADER>",
        "--webhook-format <FORMAT>",
        "--webhook-gzip",
        "--webhook-timeout <SECS>",
    ] {
        assert!(help.contains(flag), "--help mentions {flag}:\n{help}");
    }
}
