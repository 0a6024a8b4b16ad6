//! The `llm-observability-proxy` binary against slow and hostile clients (issue #12): timeouts
//! (header read, the HTTP/1-or-2 detection included; idle; request body), the connection limit,
//! the backoff when `accept` fails, and the requests it refuses to forward. Clients speak raw
//! TCP on 127.0.0.1, so every byte is the test's choice. Deadlines are generous and only bound
//! what must happen; timeouts are set low through the flags to keep the tests fast.

mod support;

use support::proxy::{Proxy, PROXY};

/// The deadline for anything that must happen.
const DEADLINE: Duration = Duration::from_secs(15);

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::response::IntoResponse;
use axum::Router;
use bytes::Bytes;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

/// An upstream that records every request it sees (`METHOD path`) and answers 200; a chat
/// call with model `gated` streams one chunk, then waits for a permit of `gate`.
#[derive(Clone)]
struct Upstream {
    seen: Arc<Mutex<Vec<String>>>,
    gate: Arc<Semaphore>,
}

impl Upstream {
    async fn start() -> (String, Upstream) {
        let upstream = Upstream {
            seen: Arc::default(),
            gate: Arc::new(Semaphore::new(0)),
        };
        let app = Router::new().fallback(answer).with_state(upstream.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}"), upstream)
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

fn chunk(content: &str) -> String {
    let chunk = json!({"id": "chatcmpl-h", "object": "chat.completion.chunk", "created": 1, "model": "gated",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": null}]});
    format!("data: {chunk}\n\n")
}

async fn answer(
    State(upstream): State<Upstream>,
    request: axum::extract::Request,
) -> axum::response::Response {
    let line = format!("{} {}", request.method(), request.uri().path());
    upstream
        .seen
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(line);
    let body = axum::body::to_bytes(request.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let gated = serde_json::from_slice::<Value>(&body).is_ok_and(|v| v["model"] == "gated");
    if !gated {
        return axum::Json(json!({"object": "list", "data": []})).into_response();
    }
    let gate = upstream.gate.clone();
    let stream = futures_util::stream::unfold(0, move |step| {
        let gate = gate.clone();
        async move {
            let frame = match step {
                0 => chunk("Hel"),
                1 => {
                    gate.acquire().await.ok()?.forget();
                    chunk("lo")
                }
                2 => "data: [DONE]\n\n".to_owned(),
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

/// Reads until the peer closes the connection (or fails it); panics after [`DEADLINE`].
async fn closed_by_peer(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let read = tokio::time::timeout(DEADLINE, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the proxy closes the connection");
    received
}

/// Sends `request` (with `Connection: close`) and returns the status and the JSON body.
async fn exchange(proxy: &Proxy, request: &str) -> (u16, Value) {
    let mut stream = proxy.connect().await;
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write request");
    let response = closed_by_peer(&mut stream).await;
    parse_response(&response)
}

fn parse_response(response: &[u8]) -> (u16, Value) {
    let text = String::from_utf8_lossy(response);
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("an HTTP/1.1 response: {text:?}"));
    let body = text.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn request(method: &str, path: &str, extra_headers: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: 2\r\n{extra_headers}Connection: close\r\n\r\n{{}}"
    )
}

fn assert_openai_error(body: &Value, code: &str) {
    let error = &body["error"];
    assert_eq!(error["code"], code, "{body}");
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert_eq!(error["type"], "invalid_request_error");
    assert!(error.get("param").is_some(), "OpenAI's shape has param");
}

#[tokio::test]
async fn silent_connections_and_incomplete_heads_are_closed_after_the_header_read_timeout() {
    let (upstream_url, upstream) = Upstream::start().await;
    let proxy = Proxy::start(&upstream_url, &["--header-read-timeout", "1"]).await;
    let partial = [
        &b""[..],                                             // nothing at all
        b"PRI * HTTP/2.0\r\n",                                // half an HTTP/2 preface
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", // a preface, then no SETTINGS nor request
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n", // an HTTP/1 head, unfinished
    ];
    let mut waits = Vec::new();
    for bytes in partial {
        let mut stream = proxy.connect().await;
        stream.write_all(bytes).await.expect("write");
        waits.push(tokio::spawn(async move {
            closed_by_peer(&mut stream).await;
        }));
    }
    for wait in waits {
        wait.await.expect("closed within the deadline");
    }
    assert!(upstream.seen().is_empty(), "nothing was forwarded");
}

#[tokio::test]
async fn an_unfinished_second_head_on_a_kept_alive_connection_is_closed_too() {
    let (upstream_url, _upstream) = Upstream::start().await;
    let proxy = Proxy::start(
        &upstream_url,
        &["--header-read-timeout", "1", "--idle-timeout", "600"],
    )
    .await;
    let mut stream = proxy.connect().await;
    stream
        .write_all(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut first = vec![0u8; 4096];
    let n = tokio::time::timeout(DEADLINE, stream.read(&mut first))
        .await
        .expect("a response")
        .expect("read");
    assert!(first[..n].starts_with(b"HTTP/1.1 200"));
    stream
        .write_all(b"GET /v1/models HTTP/1.1\r\nHo")
        .await
        .expect("write");
    closed_by_peer(&mut stream).await;
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_after_the_idle_timeout() {
    let (upstream_url, _upstream) = Upstream::start().await;
    let proxy = Proxy::start(
        &upstream_url,
        &["--header-read-timeout", "600", "--idle-timeout", "1"],
    )
    .await;
    let mut stream = proxy.connect().await;
    stream
        .write_all(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let response = closed_by_peer(&mut stream).await;
    assert!(response.starts_with(b"HTTP/1.1 200"), "served, then closed");
}

#[tokio::test]
async fn a_response_in_flight_outlives_every_timeout() {
    let (upstream_url, upstream) = Upstream::start().await;
    let proxy = Proxy::start(
        &upstream_url,
        &[
            "--header-read-timeout",
            "1",
            "--idle-timeout",
            "1",
            "--request-body-timeout",
            "1",
        ],
    )
    .await;
    let mut stream = proxy.connect().await;
    let body = json!({"model": "gated", "stream": true, "messages": []}).to_string();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut first = vec![0u8; 4096];
    let n = tokio::time::timeout(DEADLINE, stream.read(&mut first))
        .await
        .expect("the first chunk")
        .expect("read");
    assert!(String::from_utf8_lossy(&first[..n]).contains("Hel"));
    // Longer than every timeout above; the stream is held at the upstream meanwhile.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    upstream.gate.add_permits(1);
    let rest = closed_by_peer(&mut stream).await;
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.contains("lo"), "the stream went on: {rest}");
    assert!(rest.contains("data: [DONE]"), "and ended: {rest}");
    let lines = proxy.wait_for_lines(1).await;
    assert_eq!(lines[0]["status"], "success");
}

#[tokio::test]
async fn a_request_body_that_stalls_or_trickles_is_answered_408_and_recorded() {
    let (upstream_url, _upstream) = Upstream::start().await;
    let proxy = Proxy::start(&upstream_url, &["--request-body-timeout", "1"]).await;
    let head =
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                Content-Length: 100000\r\n\r\n";

    // Stalls: a few bytes, then nothing.
    let mut stalled = proxy.connect().await;
    stalled
        .write_all(format!("{head}{{\"model\":").as_bytes())
        .await
        .expect("write");
    let (status, body) = parse_response(&closed_by_peer(&mut stalled).await);
    assert_eq!(status, 408);
    assert_openai_error(&body, "request_body_timeout");

    // Trickles: one byte every 100 ms never stalls for a second, but stays far under the
    // default minimum rate (500 bytes/s).
    let mut trickle = proxy.connect().await;
    trickle.write_all(head.as_bytes()).await.expect("write");
    let sender = tokio::spawn(async move {
        let (mut read, mut write) = trickle.into_split();
        let writing = async {
            for _ in 0..150 {
                if write.write_all(b" ").await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        let mut response = Vec::new();
        let reading = read.read_to_end(&mut response);
        tokio::pin!(reading);
        tokio::select! {
            _ = &mut reading => {}
            () = writing => { let _ = tokio::time::timeout(DEADLINE, reading).await; }
        }
        response
    });
    let response = tokio::time::timeout(DEADLINE, sender)
        .await
        .expect("answered within the deadline")
        .expect("task");
    let (status, body) = parse_response(&response);
    assert_eq!(status, 408, "a trickle is too slow");
    assert_openai_error(&body, "request_body_timeout");

    let lines = proxy.wait_for_lines(2).await;
    assert_eq!(lines.len(), 2, "each call is recorded");
    for line in lines {
        assert_eq!(line["status"], "error");
        assert_eq!(line["error"]["type"], "transport");
    }
}

#[tokio::test]
async fn connect_is_refused_with_a_json_error() {
    let (upstream_url, upstream) = Upstream::start().await;
    let proxy = Proxy::start(&upstream_url, &[]).await;
    let (status, body) = exchange(
        &proxy,
        "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 405);
    assert_openai_error(&body, "method_not_allowed");
    assert!(upstream.seen().is_empty(), "nothing reached the upstream");
}

#[tokio::test]
async fn paths_not_in_normal_form_or_dodging_the_record_are_refused() {
    let (upstream_url, upstream) = Upstream::start().await;
    let proxy = Proxy::start(&upstream_url, &[]).await;
    for (method, path, headers) in [
        ("GET", "/../etc/passwd", ""),
        ("GET", "/v1/./models", ""),
        ("POST", "/v1/../v1/chat/completions", ""),
        ("POST", "/v1/./chat/completions", ""),
        ("POST", "/v1//chat/completions", ""),
        ("POST", "/v1/chat/%63ompletions", ""),
        ("POST", "/v1/chat/%2563ompletions", ""),
        ("POST", "/v1/chat%2Fcompletions", ""),
        ("POST", "/v1/chat\\completions", ""),
        ("POST", "/v1/chat/completions;x=1", ""),
        ("post", "/v1/chat/completions", ""),
        (
            "GET",
            "/v1/chat/completions",
            "X-HTTP-Method-Override: POST\r\n",
        ),
        ("OPTIONS", "*", ""),
    ] {
        let (status, body) = exchange(&proxy, &request(method, path, headers)).await;
        assert_eq!(status, 400, "{method} {path}");
        assert_openai_error(&body, "invalid_path");
    }
    assert!(upstream.seen().is_empty(), "{:?}", upstream.seen());

    // Endpoints are recognised whatever their case, as case-insensitive routers serve them.
    for (method, path) in [
        ("POST", "/v1/chat/completions"),
        ("POST", "/V1/chat/completions/"),
        ("POST", "/v1/CHAT/completions"),
        ("GET", "/v1/chat/completions"),
        ("GET", "/v1/files/my%20file"),
    ] {
        let (status, _) = exchange(&proxy, &request(method, path, "")).await;
        assert_eq!(status, 200, "{method} {path} is forwarded");
    }
    assert_eq!(
        upstream.seen(),
        [
            "POST /v1/chat/completions",
            "POST /V1/chat/completions/",
            "POST /v1/CHAT/completions",
            "GET /v1/chat/completions",
            "GET /v1/files/my%20file",
        ]
    );
    let lines = proxy.wait_for_lines(3).await;
    assert_eq!(lines.len(), 3, "every POST forwarded was recorded");
    assert!(
        lines
            .iter()
            .all(|line| line["endpoint"] == "chat.completions"),
        "{lines:?}"
    );
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_until_one_closes() {
    let (upstream_url, upstream) = Upstream::start().await;
    let proxy = Proxy::start(
        &upstream_url,
        &["--max-connections", "2", "--header-read-timeout", "600"],
    )
    .await;
    let first = proxy.connect().await;
    let _second = proxy.connect().await;
    let mut third = proxy.connect().await;
    third
        .write_all(request("GET", "/v1/models", "").as_bytes())
        .await
        .expect("write");
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(500), third.read(&mut byte)).await;
    assert!(early.is_err(), "the third connection waits");
    assert!(upstream.seen().is_empty());
    drop(first);
    let response = closed_by_peer(&mut third).await;
    assert!(
        response.starts_with(b"HTTP/1.1 200"),
        "served once a slot is free"
    );
    assert_eq!(upstream.seen(), ["GET /v1/models"]);
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn running_out_of_file_descriptors_neither_spins_nor_floods_the_log() {
    let (upstream_url, _upstream) = Upstream::start().await;
    // A shell lowers the open-file limit, then becomes the proxy.
    let mut shell = Command::new("sh");
    shell.args(["-c", "ulimit -n 48 && exec \"$0\" \"$@\"", PROXY]);
    let proxy = Proxy::start_command(
        shell,
        &upstream_url,
        support::proxy::temp_jsonl(),
        &["--no-observe", "--header-read-timeout", "600"],
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..80 {
        held.push(proxy.connect().await);
    }
    for _ in 0..(DEADLINE.as_millis() / 50) {
        if proxy.log().contains("accept failed") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(proxy.log().contains("accept failed"), "{}", proxy.log());
    // Accept keeps failing for a while; unthrottled, this was ~100k lines a second.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let failures = proxy.log().matches("accept failed").count();
    assert!(failures <= 3, "{failures} lines:\n{}", proxy.log());

    drop(held);
    let (status, _) = exchange(&proxy, &request("GET", "/v1/models", "")).await;
    assert_eq!(
        status, 200,
        "the proxy serves again once descriptors are free"
    );
}
