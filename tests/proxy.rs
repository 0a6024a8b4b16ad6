//! The `llm-observability-proxy` binary (feature `proxy`; cargo builds it for this test and gives
//! its path in `CARGO_BIN_EXE_llm-observability-proxy`) as a real process between a client and an
//! in-process upstream on 127.0.0.1: forwarding, recording, errors, disconnects, graceful
//! shutdown, and its `--help`.

mod support;

use support::proxy::{Proxy, PROXY};

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

/// Upstream behaviour the tests control: `gate` holds back the rest of a gated stream.
#[derive(Clone)]
struct Upstream {
    gate: Arc<Semaphore>,
}

fn sse_chunk(content: &str, finish: Option<&str>) -> String {
    let chunk = json!({"id": "chatcmpl-p", "object": "chat.completion.chunk", "created": 1_760_000_000, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}]});
    format!("data: {chunk}\n\n")
}

async fn chat(
    State(upstream): State<Upstream>,
    headers: http::HeaderMap,
    Json(request): Json<Value>,
) -> axum::response::Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer sk-test") {
        let body = json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}});
        return (http::StatusCode::UNAUTHORIZED, Json(body)).into_response();
    }
    if request["stream"] != json!(true) {
        return Json(json!({"id": "chatcmpl-p", "object": "chat.completion", "created": 1_760_000_000, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "pong"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 4, "completion_tokens": 1, "total_tokens": 5}}))
        .into_response();
    }
    let gated = request["model"] == "gated";
    let gate = upstream.gate.clone();
    let stream = futures_util::stream::unfold(0, move |step| {
        let gate = gate.clone();
        async move {
            let frame = match step {
                0 => sse_chunk("Hel", None),
                1 => {
                    if gated {
                        gate.acquire().await.ok()?.forget();
                    }
                    sse_chunk("lo", None)
                }
                2 => sse_chunk("", Some("stop")),
                3 => "data: [DONE]\n\n".to_owned(),
                _ => return None,
            };
            Some((Ok::<_, std::io::Error>(Bytes::from(frame)), step + 1))
        }
    });
    (
        [(http::header::CONTENT_TYPE, "text/event-stream")],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}

async fn start_upstream() -> (String, Upstream) {
    let upstream = Upstream {
        gate: Arc::new(Semaphore::new(0)),
    };
    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route(
            "/v1/models",
            axum::routing::get(|| async { Json(json!({"object": "list", "data": []})) }),
        )
        .with_state(upstream.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), upstream)
}

fn client() -> Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

fn chat_request(url: String, model: &str, stream: bool) -> http::Request<Full<Bytes>> {
    let body = json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "ping"}]});
    http::Request::post(url)
        .header("content-type", "application/json")
        .header("authorization", "Bearer sk-test")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

#[tokio::test]
async fn forwards_and_records_streaming_and_plain_calls() {
    let (upstream_url, _upstream) = start_upstream().await;
    let proxy = Proxy::start(&upstream_url, &[]).await;
    let client = client();

    let response = client
        .request(chat_request(
            proxy.url("/v1/chat/completions"),
            "gpt-4o-mini",
            false,
        ))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "pong");

    let response = client
        .request(chat_request(
            proxy.url("/v1/chat/completions"),
            "gpt-4o-mini",
            true,
        ))
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let expected = format!(
        "{}{}{}data: [DONE]\n\n",
        sse_chunk("Hel", None),
        sse_chunk("lo", None),
        sse_chunk("", Some("stop"))
    );
    assert_eq!(bytes, expected.as_bytes(), "SSE bytes unchanged");

    let models = client
        .get(proxy.url("/v1/models").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(models.status(), 200, "non-LLM routes are forwarded too");

    let lines = proxy.wait_for_lines(2).await;
    assert_eq!(lines.len(), 2, "one line per LLM call, none for /v1/models");
    assert_eq!(lines[0]["status"], "success");
    assert_eq!(lines[0]["usage"]["total_tokens"], 5);
    assert_eq!(
        lines[1]["response"]["choices"][0]["message"]["content"],
        "Hello"
    );
    assert_eq!(lines[1]["finish_reasons"], json!(["stop"]));
    let file = std::fs::read_to_string(&proxy.jsonl).unwrap();
    assert!(
        !file.contains("sk-test"),
        "the Authorization header is never recorded"
    );
}

/// A loopback address nothing listens on (bound, then closed).
async fn closed_address() -> std::net::SocketAddr {
    tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
}

#[tokio::test]
async fn error_status_and_unreachable_upstream_are_recorded() {
    let (upstream_url, _upstream) = start_upstream().await;
    let proxy = Proxy::start(&upstream_url, &[]).await;
    let mut unauthorized = chat_request(proxy.url("/v1/chat/completions"), "gpt-4o-mini", false);
    unauthorized.headers_mut().remove("authorization");
    let response = client().request(unauthorized).await.unwrap();
    assert_eq!(response.status(), 401);

    let closed = closed_address().await;
    let dead = Proxy::start(&format!("http://{closed}"), &[]).await;
    let response = client()
        .request(chat_request(
            dead.url("/v1/chat/completions"),
            "gpt-4o-mini",
            false,
        ))
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    let body: Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["error"]["code"], "upstream_unreachable");

    let lines = proxy.wait_for_lines(1).await;
    assert_eq!(lines[0]["status"], "error");
    assert_eq!(lines[0]["http_status"], 401);
    assert_eq!(lines[0]["error"]["code"], "invalid_api_key");
    let lines = dead.wait_for_lines(1).await;
    assert_eq!(lines[0]["status"], "error");
    assert_eq!(lines[0]["http_status"], Value::Null);
    assert_eq!(lines[0]["error"]["type"], "transport");
}

/// An unreachable upstream is answered in the error shape of the API the client called (its
/// SDK reads the proxy's error as it reads the API's own), and each call is recorded as a
/// transport error of its own provider.
#[tokio::test]
async fn an_unreachable_upstream_is_answered_in_each_apis_error_shape() {
    let closed = closed_address().await;
    let dead = Proxy::start(&format!("http://{closed}"), &[]).await;
    let message = |body: &Value| -> String {
        let text = [&body["error"]["message"], &body["message"], &body["error"]];
        text.into_iter()
            .find_map(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let cases = [
        (
            "/v1/messages",
            json!({"model": "claude-haiku-4-5", "max_tokens": 8,
                   "messages": [{"role": "user", "content": "hi"}]}),
            "anthropic",
        ),
        (
            "/v1beta/models/gemini-2.5-flash:generateContent",
            json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}),
            "gcp.gemini",
        ),
        (
            "/model/us.amazon.nova-2-lite-v1%3A0/converse",
            json!({"messages": [{"role": "user", "content": [{"text": "hi"}]}]}),
            "aws.bedrock",
        ),
        (
            "/api/chat",
            json!({"model": "llama3", "messages": [{"role": "user", "content": "hi"}]}),
            "ollama",
        ),
    ];
    for (path, request, _) in &cases {
        let request = http::Request::post(dead.url(path))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(request.to_string())))
            .unwrap();
        let response = client().request(request).await.unwrap();
        assert_eq!(response.status(), 502, "{path}");
        let exception = response.headers().get("x-amzn-errortype").cloned();
        let body: Value =
            serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes())
                .unwrap();
        assert!(
            message(&body).starts_with("upstream unreachable: "),
            "{path}: {body}"
        );
        match *path {
            "/v1/messages" => {
                assert_eq!(body["type"], "error");
                assert_eq!(body["error"]["type"], "api_error");
            }
            "/api/chat" => assert!(body["error"].is_string(), "{body}"),
            p if p.starts_with("/model/") => {
                assert_eq!(exception.unwrap(), "ServiceUnavailableException");
                assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
            }
            _ => {
                assert_eq!(body["error"]["status"], "UNAVAILABLE");
                assert_eq!(body["error"]["code"], 502);
            }
        }
    }
    let lines = dead.wait_for_lines(cases.len()).await;
    let providers: Vec<&str> = lines
        .iter()
        .map(|line| line["provider"].as_str().unwrap_or_default())
        .collect();
    let want: Vec<&str> = cases.iter().map(|(_, _, provider)| *provider).collect();
    assert_eq!(providers, want);
    for line in &lines {
        assert_eq!(line["status"], "error");
        assert_eq!(line["error"]["type"], "transport");
    }
}

#[tokio::test]
async fn client_disconnecting_mid_stream_gives_one_cancelled_line() {
    let (upstream_url, upstream) = start_upstream().await;
    let proxy = Proxy::start(&upstream_url, &[]).await;
    let response = client()
        .request(chat_request(
            proxy.url("/v1/chat/completions"),
            "gated",
            true,
        ))
        .await
        .unwrap();
    let mut body = response.into_body().into_data_stream();
    let first = body.next().await.unwrap().unwrap();
    assert_eq!(first, sse_chunk("Hel", None).as_bytes());
    drop(body); // the client hangs up while the upstream is held at the gate
    let lines = proxy.wait_for_lines(1).await;
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["status"], "cancelled");
    assert_eq!(
        lines[0]["response"]["choices"][0]["message"]["content"],
        "Hel"
    );
    upstream.gate.add_permits(10);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(proxy.lines().len(), 1, "still exactly one line");
}

#[tokio::test]
async fn sigterm_lets_calls_in_flight_finish_and_loses_no_line() {
    let (upstream_url, upstream) = start_upstream().await;
    let mut proxy = Proxy::start(&upstream_url, &[]).await;
    let client = client();
    // Three streams held at the gate, and a few completed calls whose lines may still be queued.
    let mut in_flight = Vec::new();
    for _ in 0..3 {
        let response = client
            .request(chat_request(
                proxy.url("/v1/chat/completions"),
                "gated",
                true,
            ))
            .await
            .unwrap();
        in_flight.push(tokio::spawn(async move {
            response.into_body().collect().await.map(|c| c.to_bytes())
        }));
    }
    for _ in 0..5 {
        let response = client
            .request(chat_request(
                proxy.url("/v1/chat/completions"),
                "gpt-4o-mini",
                false,
            ))
            .await
            .unwrap();
        response.into_body().collect().await.unwrap();
    }
    proxy.terminate();
    tokio::time::sleep(Duration::from_millis(200)).await;
    upstream.gate.add_permits(10);
    for call in in_flight {
        let bytes = call.await.unwrap().expect("the stream in flight completes");
        assert!(bytes.ends_with(b"data: [DONE]\n\n"));
    }
    assert!(proxy.wait().await, "proxy exits 0");
    let lines = proxy.lines();
    assert_eq!(lines.len(), 8, "every call's line reached the file");
    assert_eq!(lines.iter().filter(|l| l["status"] == "success").count(), 8);
}

/// A real third-party client, async-openai with its own HTTP stack, pointed at the proxy.
#[tokio::test]
async fn async_openai_through_the_proxy() {
    use async_openai::config::OpenAIConfig;
    use async_openai::types::chat::{
        ChatCompletionRequestUserMessageArgs, CreateChatCompletionRequestArgs,
    };

    let (upstream_url, _upstream) = start_upstream().await;
    let proxy = Proxy::start(&upstream_url, &[]).await;
    let openai = async_openai::Client::with_config(
        OpenAIConfig::new()
            .with_api_base(proxy.url("/v1"))
            .with_api_key("sk-test"),
    );
    let request = |stream: bool| {
        let mut args = CreateChatCompletionRequestArgs::default();
        args.model("gpt-4o-mini")
            .messages([ChatCompletionRequestUserMessageArgs::default()
                .content("ping")
                .build()
                .unwrap()
                .into()]);
        if stream {
            args.stream(true);
        }
        args.build().unwrap()
    };
    let answer = openai
        .chat()
        .create(request(false))
        .await
        .expect("non-streaming call");
    assert_eq!(answer.choices[0].message.content.as_deref(), Some("pong"));

    let mut stream = openai
        .chat()
        .create_stream(request(true))
        .await
        .expect("stream");
    let mut text = String::new();
    while let Some(chunk) = stream.next().await {
        for choice in chunk.expect("chunk").choices {
            text.push_str(choice.delta.content.as_deref().unwrap_or_default());
        }
    }
    assert_eq!(text, "Hello");

    let lines = proxy.wait_for_lines(2).await;
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["status"], "success");
    assert_eq!(
        lines[0]["response"]["choices"][0]["message"]["content"],
        "pong"
    );
    assert_eq!(
        lines[1]["status"], "success",
        "async-openai stops at [DONE]; still a success"
    );
    assert_eq!(
        lines[1]["response"]["choices"][0]["message"]["content"],
        "Hello"
    );
    assert_eq!(lines[1]["request"]["messages"][0]["content"], "ping");
}

#[test]
fn help_explains_every_flag() {
    let output = Command::new(PROXY)
        .arg("--help")
        .output()
        .expect("proxy runs");
    assert!(output.status.success(), "--help exits 0");
    let help = String::from_utf8(output.stdout).expect("UTF-8 help");
    for flag in [
        "--listen",
        "--upstream",
        "--jsonl",
        "--no-observe",
        "--shutdown-timeout",
        "--header-read-timeout",
        "--idle-timeout",
        "--request-body-timeout",
        "--request-body-min-rate",
        "--max-connections",
    ] {
        assert!(help.contains(flag), "--help mentions {flag}:\n{help}");
    }
    assert!(
        help.contains("listening on ADDR"),
        "--help tells what the proxy prints on startup"
    );
    assert!(
        help.contains("wait in the listen backlog"),
        "--help says what happens beyond --max-connections"
    );
    assert!(help.contains("CONNECT"), "--help says what is refused");
}

#[tokio::test]
async fn calls_still_in_flight_at_the_shutdown_deadline_are_recorded_as_cancelled() {
    // HTTP/2 too: hyper serves each of its streams on a task of its own.
    for http2 in [false, true] {
        let (upstream_url, _upstream) = start_upstream().await;
        let mut proxy = Proxy::start(&upstream_url, &["--shutdown-timeout", "1"]).await;
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
            .http2_only(http2)
            .build_http();
        let response = client
            .request(chat_request(
                proxy.url("/v1/chat/completions"),
                "gated",
                true,
            ))
            .await
            .unwrap();
        let mut body = response.into_body().into_data_stream();
        let first = body.next().await.unwrap().unwrap();
        assert_eq!(first, sse_chunk("Hel", None).as_bytes());
        // The gate never opens: the stream would never end.
        proxy.terminate();
        assert!(proxy.wait().await, "proxy exits 0");
        let lines = proxy.lines();
        assert_eq!(lines.len(), 1, "exactly one line for the call cut off");
        assert_eq!(lines[0]["status"], "cancelled");
        assert_eq!(
            lines[0]["response"]["choices"][0]["message"]["content"], "Hel",
            "with the partial output"
        );
        let log = proxy.log();
        assert!(log.contains("1 call(s) observed"), "{log}");
        assert!(
            log.contains("jsonl: 1 delivered, 0 dropped, 0 failed, 0 filtered out"),
            "{log}"
        );
        drop(body);
    }
}

#[tokio::test]
async fn server_address_is_the_upstream_host_not_the_clients_host_header() {
    let (upstream_url, _upstream) = start_upstream().await;
    let proxy = Proxy::start(&upstream_url, &[]).await;
    let mut request = chat_request(proxy.url("/v1/chat/completions"), "gpt-4o-mini", false);
    request.headers_mut().insert(
        http::header::HOST,
        http::HeaderValue::from_static("attacker.example"),
    );
    let response = client().request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let lines = proxy.wait_for_lines(1).await;
    assert_eq!(lines[0]["server_address"], "127.0.0.1");
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn jsonl_write_errors_are_reported_when_they_happen() {
    let (upstream_url, _upstream) = start_upstream().await;
    let mut proxy = Proxy::start_with_jsonl(&upstream_url, PathBuf::from("/dev/full"), &[]).await;
    let response = client()
        .request(chat_request(
            proxy.url("/v1/chat/completions"),
            "gpt-4o-mini",
            false,
        ))
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "the call itself is unaffected");
    response.into_body().collect().await.unwrap();
    assert!(
        proxy.wait_for_log("sink export failed").await,
        "a warning while the proxy runs: {}",
        proxy.log()
    );
    assert!(
        proxy.log().contains("No space left on device"),
        "{}",
        proxy.log()
    );
    proxy.terminate();
    assert!(proxy.wait().await, "proxy exits 0");
    assert!(
        proxy
            .log()
            .contains("jsonl: 0 delivered, 0 dropped, 1 failed"),
        "{}",
        proxy.log()
    );
}
