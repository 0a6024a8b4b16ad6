//! Redaction and secrets, searched for in every output: the JSONL file, the memory sink, the
//! log sink's lines and every other log line, and the fields of every span — on success,
//! error (a message and a kept error body that echo the prompt and the key), streamed and
//! cancelled calls; per sink; per request; and `capture_header` refusing credentials.

mod support;

use std::convert::Infallible;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use llm_observability::{
    BuildError, CallStatus, JsonlSink, LlmObservabilityLayer, LogSink, MemorySink, Redact,
    Redaction, RequestBody, SinkConfig,
};
use serde_json::json;
use support::spans::Spans;
use support::ChannelBody;
use tower::{ServiceBuilder, ServiceExt};
use tracing_subscriber::layer::SubscriberExt;

const PROMPT: &str = "SECRET_PROMPT_7f3a";
const ANSWER: &str = "SECRET_ANSWER_91c2";
const TOOL_DESCRIPTION: &str = "SECRET_TOOL_DOC_55e1";

/// Credentials sent with every request, and the parts of them an upstream may echo.
const HEADERS: &[(&str, &str)] = &[
    ("authorization", "Bearer sk-live-AbCdEf0123456789XyZ"),
    ("proxy-authorization", "Basic cHJveHk6cHJveHlwYXNzd29yZA=="),
    ("api-key", "azure-key-0123456789abcdef"),
    ("x-api-key", "xapi-key-0123456789abcdef"),
    ("cookie", "theme=dark; session=cookie-secret-0123456789"),
    ("x-user-id", "user-42"),
];
const SECRETS: &[&str] = &[
    "sk-live-AbCdEf0123456789XyZ",
    "cHJveHk6cHJveHlwYXNzd29yZA==",
    "azure-key-0123456789abcdef",
    "xapi-key-0123456789abcdef",
    "cookie-secret-0123456789",
    "query-secret-987654",
];
const QUERY: &str = "?api-version=2024-06-01&api_key=query-secret-987654";

/// Log lines of every level, as a `fmt` subscriber writes them.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl Write for Log {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .expect("not poisoned")
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Log {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("not poisoned")).into_owned()
    }
}

/// Every output of a test run.
struct Outputs {
    spans: Spans,
    log: Log,
}

impl Outputs {
    fn new() -> Self {
        Outputs {
            spans: Spans::default(),
            log: Log::default(),
        }
    }

    /// Runs `test` on a current-thread runtime with a subscriber that records spans and writes
    /// every event (all levels) to the log.
    fn run<F: std::future::Future<Output = ()>>(&self, test: impl FnOnce() -> F) {
        let log = self.log.clone();
        let subscriber = tracing_subscriber::registry()
            .with(self.spans.clone())
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(move || log.clone()),
            );
        tracing::subscriber::with_default(subscriber, || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(test());
        });
    }

    /// The text of every span field and every log line.
    fn text(&self) -> String {
        let mut text = self.log.text();
        for span in self.spans.all() {
            for (name, value) in span.fields {
                text.push_str(&format!("\n{name}={value}"));
            }
        }
        text
    }
}

fn sse(chunks: &[&str]) -> Vec<Bytes> {
    let mut frames: Vec<Bytes> = chunks
        .iter()
        .map(|content| {
            let chunk = json!({"id": "chatcmpl-s", "object": "chat.completion.chunk", "model": "gpt-4o-mini",
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": content}, "finish_reason": null}]});
            Bytes::from(format!("data: {chunk}\n\n"))
        })
        .collect();
    frames.push(Bytes::from_static(b"data: {\"id\":\"chatcmpl-s\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n"));
    frames
}

/// One chat call through `layer` to an in-process upstream whose answer is chosen by the
/// request's model: `ok` (JSON with a tool call), `fail` (400 whose message and body echo the
/// prompt and the credentials), `stream` (SSE), `hang` (SSE that stops after its first chunk;
/// the client reads it and gives up).
async fn call(
    layer: &LlmObservabilityLayer,
    model: &str,
    extension: Option<Redact>,
) -> (http::StatusCode, Bytes) {
    let hung = Arc::new(Mutex::new(Vec::new()));
    let keep = hung.clone();
    let service = ServiceBuilder::new().layer(layer.clone()).service_fn(
        move |request: Request<RequestBody<Full<Bytes>>>| {
            let hung = keep.clone();
            async move {
                let body = request.into_body().collect().await.expect("request body");
                let request: serde_json::Value =
                    serde_json::from_slice(&body.to_bytes()).expect("JSON request");
                let model = request["model"].as_str().unwrap_or_default().to_owned();
                let sse_head = || {
                    Response::builder()
                        .status(200)
                        .header("content-type", "text/event-stream")
                };
                let response = match model.as_str() {
                    "ok" => Response::builder()
                        .status(200)
                        .header("content-type", "application/json")
                        .body(ChannelBody::from_chunks(vec![Bytes::from(
                            json!({"id": "chatcmpl-r", "object": "chat.completion", "model": "gpt-4o-mini",
                                "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant",
                                    "content": ANSWER, "tool_calls": [{"id": "call_1", "type": "function",
                                    "function": {"name": "lookup_order", "arguments": format!("{{\"q\":\"{ANSWER}\"}}")}}]}}],
                                "usage": {"prompt_tokens": 21, "completion_tokens": 9, "total_tokens": 30}})
                            .to_string(),
                        )])),
                    "fail" => {
                        let echo = format!(
                            "Invalid request. You sent: {PROMPT}. Incorrect API key provided: {}",
                            SECRETS.join(", ")
                        );
                        Response::builder()
                            .status(400)
                            .header("content-type", "application/json")
                            .body(ChannelBody::from_chunks(vec![Bytes::from(
                                json!({"error": {"message": echo, "type": "invalid_request_error",
                                    "param": "messages", "code": null}})
                                .to_string(),
                            )]))
                    }
                    "stream" => sse_head().body(ChannelBody::from_chunks(sse(&[
                        "SECRET_ANS",
                        "WER_91c2 and more",
                    ]))),
                    _ => {
                        let (tx, body) = ChannelBody::new();
                        tx.send(Ok(sse(&[ANSWER]).remove(0))).expect("open");
                        hung.lock().expect("not poisoned").push(tx);
                        sse_head().body(body)
                    }
                };
                Ok::<_, Infallible>(response.expect("valid response"))
            }
        },
    );
    let body = json!({"model": model, "stream": model == "stream" || model == "hang",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": format!("please {PROMPT}")}],
        "tools": [{"type": "function", "function": {"name": "lookup_order", "description": TOOL_DESCRIPTION,
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}]});
    let mut request = Request::post(format!("http://localhost/v1/chat/completions{QUERY}"));
    for (name, value) in HEADERS {
        request = request.header(*name, *value);
    }
    let mut request = request
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("valid request");
    if let Some(extension) = extension {
        request.extensions_mut().insert(extension);
    }
    let response = service.oneshot(request).await.expect("infallible");
    let status = response.status();
    let mut body = response.into_body();
    if model == "hang" {
        // The first chunk, then the client gives up.
        let first = body.frame().await.expect("a frame").expect("data");
        drop(body);
        drop(hung);
        return (status, first.into_data().unwrap_or_default());
    }
    (status, body.collect().await.expect("body").to_bytes())
}

fn temp_jsonl() -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "llm-obs-redaction-{}-{}.jsonl",
        std::process::id(),
        uuid::Uuid::new_v4()
    ))
}

/// All four endings through a layer with `redaction`, a JSONL, a memory and a log sink; returns
/// the JSONL text, the memory sink's calls as JSON, and the outputs.
fn run_all(redaction: Redaction) -> (String, Vec<serde_json::Value>, Outputs) {
    let outputs = Outputs::new();
    let path = temp_jsonl();
    let memory = MemorySink::new();
    outputs.run(|| async {
        let layer = LlmObservabilityLayer::builder()
            .redact(redaction)
            .capture_header("x-user-id", "user_id")
            .sink(JsonlSink::create(&path).expect("temp file"))
            .sink(memory.clone())
            .sink(LogSink)
            .build()
            .expect("builds");
        for model in ["ok", "fail", "stream", "hang"] {
            call(&layer, model, None).await;
        }
        // The cancelled call ends when its body is dropped; wait for its record.
        for _ in 0..200 {
            if layer.dispatcher().stats().observed == 4 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        support::assert_accounted(&layer, 4).await;
        layer
            .dispatcher()
            .shutdown(Duration::from_secs(10))
            .await
            .expect("shut down");
    });
    let jsonl = std::fs::read_to_string(&path).expect("written");
    std::fs::remove_file(&path).ok();
    let mut calls: Vec<serde_json::Value> = memory
        .calls()
        .iter()
        .map(|c| serde_json::to_value(&**c).expect("serialisable"))
        .collect();
    calls.sort_by_key(|c| c["request"]["model"].as_str().map(str::to_owned));
    (jsonl, calls, outputs)
}

fn assert_absent(haystack: &str, needles: &[&str], what: &str) {
    for needle in needles {
        assert!(
            !haystack.contains(needle),
            "{needle:?} found in {what}:\n{haystack}"
        );
    }
}

#[test]
fn content_redaction_on_success_error_stream_and_cancel_in_every_output() {
    let (jsonl, calls, outputs) = run_all(Redaction::content());
    let memory = serde_json::to_string(&calls).expect("JSON");
    let spans_and_log = outputs.text();
    let content = [
        PROMPT,
        ANSWER,
        "SECRET_ANS",
        "WER_91c2",
        TOOL_DESCRIPTION,
        "be brief",
    ];
    for (what, text) in [
        ("the JSONL file", &jsonl),
        ("the memory sink", &memory),
        ("spans and log", &spans_and_log),
    ] {
        assert_absent(text, &content, what);
        assert_absent(text, SECRETS, what);
    }
    // The log sink did write a line per call, and spans were recorded.
    assert_eq!(jsonl.lines().count(), 4);
    assert_eq!(outputs.spans.named("gen_ai").len(), 4);

    let by_model = |model: &str| {
        calls
            .iter()
            .find(|c| c["request"]["model"] == model)
            .unwrap_or_else(|| panic!("no {model} call"))
    };
    let statuses: Vec<_> = ["ok", "fail", "stream", "hang"]
        .iter()
        .map(|m| {
            by_model(m)["status"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(statuses, ["success", "error", "success", "cancelled"]);
    // What stays: roles, lengths, tool names, ids, finish reasons, usage, timing, metadata.
    let ok = by_model("ok");
    assert_eq!(ok["request"]["messages"][1]["role"], "user");
    assert_eq!(
        ok["request"]["messages"][1]["content"],
        "[redacted: 25 chars]"
    );
    assert_eq!(
        ok["request"]["tools"][0]["function"]["name"],
        "lookup_order"
    );
    let message = &ok["response"]["choices"][0]["message"];
    assert_eq!(message["content"], "[redacted: 18 chars]");
    assert_eq!(message["tool_calls"][0]["function"]["name"], "lookup_order");
    assert_eq!(message["tool_calls"][0]["id"], "call_1");
    assert_eq!(ok["usage"]["input_tokens"], 21);
    assert_eq!(ok["finish_reasons"], json!(["tool_calls"]));
    assert!(ok["timing"]["duration_ms"].is_number());
    assert_eq!(ok["metadata"]["user_id"], "user-42");
    // The error message and the kept error body that echoed the prompt.
    let fail = by_model("fail");
    assert!(fail["error"]["message"]
        .as_str()
        .is_some_and(|m| m.starts_with("[redacted: ")));
    assert_eq!(fail["error"]["type"], "invalid_request_error");
    assert_eq!(fail["response"]["error"]["type"], "invalid_request_error");
    // The assembled stream and the partial output of the cancelled one.
    assert_eq!(
        by_model("stream")["response"]["choices"][0]["message"]["content"],
        "[redacted: 27 chars]"
    );
    assert_eq!(
        by_model("hang")["response"]["choices"][0]["message"]["content"],
        "[redacted: 18 chars]"
    );
    // The error's span says it failed, without the message.
    let failed = outputs
        .spans
        .named("gen_ai")
        .into_iter()
        .find(|s| s.fields.get("otel.status_code").map(String::as_str) == Some("error"))
        .expect("the failed call's span");
    assert!(failed.fields["otel.status_description"].starts_with("[redacted: "));
}

#[test]
fn secrets_never_reach_any_output_even_when_content_is_kept() {
    let (jsonl, calls, outputs) = run_all(Redaction::keep_all());
    let memory = serde_json::to_string(&calls).expect("JSON");
    let spans_and_log = outputs.text();
    for (what, text) in [
        ("the JSONL file", &jsonl),
        ("the memory sink", &memory),
        ("spans and log", &spans_and_log),
    ] {
        assert_absent(text, SECRETS, what);
    }
    // The search would find content: it is kept under this policy.
    assert!(memory.contains(PROMPT) && jsonl.contains(ANSWER));
    let fail = calls
        .iter()
        .find(|c| c["request"]["model"] == "fail")
        .expect("the failed call");
    let message = fail["error"]["message"].as_str().expect("a message");
    assert!(
        message.contains(PROMPT) && message.contains("[redacted]"),
        "{message}"
    );
}

#[tokio::test]
async fn a_sink_may_redact_more_on_its_own_copy() {
    let open = MemorySink::new();
    let strict = MemorySink::new();
    let path = temp_jsonl();
    let layer = LlmObservabilityLayer::builder()
        .redact(Redaction::keep_all())
        .sink(open.clone())
        .sink_with(
            strict.clone(),
            SinkConfig::new().processor(Redaction::content()),
        )
        .sink_with(
            JsonlSink::create(&path).expect("temp file"),
            SinkConfig::new().processor(Redaction::content()),
        )
        .build()
        .expect("builds");
    for model in ["ok", "fail", "stream"] {
        call(&layer, model, None).await;
    }
    support::assert_accounted(&layer, 3).await;
    let as_json = |sink: &MemorySink| serde_json::to_string(&sink.calls()).expect("JSON");
    let jsonl = std::fs::read_to_string(&path).expect("written");
    std::fs::remove_file(&path).ok();
    assert!(as_json(&open).contains(PROMPT) && as_json(&open).contains(ANSWER));
    for (what, text) in [("strict memory sink", as_json(&strict)), ("JSONL", jsonl)] {
        assert_absent(
            &text,
            &[PROMPT, ANSWER, "SECRET_ANS", TOOL_DESCRIPTION],
            what,
        );
        assert_absent(&text, SECRETS, what);
    }
    assert_eq!(strict.calls().len(), 3);
}

#[tokio::test]
async fn a_request_can_ask_for_its_content_redacted_or_to_skip_sinks() {
    let memory = MemorySink::new();
    let path = temp_jsonl();
    // No redaction configured on the layer at all.
    let layer = LlmObservabilityLayer::builder()
        .sink(memory.clone())
        .sink(JsonlSink::create(&path).expect("temp file"))
        .build()
        .expect("builds");
    call(&layer, "ok", Some(Redact::content())).await;
    call(&layer, "fail", Some(Redact::content())).await;
    call(&layer, "stream", Some(Redact::none().skip_sink("jsonl"))).await;
    let stats = support::assert_accounted(&layer, 3).await;
    let jsonl_stats = stats
        .sinks
        .iter()
        .find(|s| s.name == "jsonl")
        .expect("jsonl");
    assert_eq!((jsonl_stats.delivered, jsonl_stats.filtered), (2, 1));
    let jsonl = std::fs::read_to_string(&path).expect("written");
    std::fs::remove_file(&path).ok();
    assert_eq!(jsonl.lines().count(), 2);
    assert_absent(&jsonl, &[PROMPT, ANSWER, "SECRET_ANS"], "JSONL");
    let calls = memory.calls();
    assert_eq!(calls.len(), 3);
    for call in &calls {
        let text = serde_json::to_string(&**call).expect("JSON");
        match call.status {
            CallStatus::Success if call.request.stream => {
                // Only kept out of the JSONL file: its content is whole here.
                assert!(text.contains("SECRET_ANSWER_91c2 and more"), "{text}");
            }
            _ => assert_absent(&text, &[PROMPT, ANSWER], "a call that asked for redaction"),
        }
    }
}

#[tokio::test]
async fn capture_header_refuses_credentials() {
    for name in [
        "Authorization",
        "proxy-authorization",
        "api-key",
        "X-Api-Key",
        "cookie",
        "x-auth-user",
        "x-refresh-token",
        "x-client-secret",
        "x-db-password",
    ] {
        let error = LlmObservabilityLayer::builder()
            .capture_header(name, "value")
            .build()
            .expect_err(name);
        assert!(
            matches!(error, BuildError::SecretHeader(ref n) if n == name),
            "{error:?}"
        );
        assert!(error.to_string().contains("carries credentials"), "{error}");
    }
    assert!(LlmObservabilityLayer::builder()
        .capture_header("x-user-id", "user_id")
        .build()
        .is_ok());
}

/// A vision request with a 300 KB image as a data URL and an audio clip as raw base64.
async fn vision_call(layer: &LlmObservabilityLayer, image: &str, audio: &str) {
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is in this picture?"},
        {"type": "image_url", "image_url": {"url": image, "detail": "high"}},
        {"type": "input_audio", "input_audio": {"data": audio, "format": "wav"}}]}]});
    let request = Request::post("http://localhost/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("valid");
    support::through_json_upstream(
        layer,
        request,
        r#"{"id":"chatcmpl-v","object":"chat.completion","model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"a cat"},"finish_reason":"stop"}],"usage":{"prompt_tokens":800,"completion_tokens":2,"total_tokens":802}}"#,
    )
    .await;
}

#[tokio::test]
async fn base64_images_and_audio_are_cut_to_a_marker_by_default_and_kept_on_request() {
    let image = format!("data:image/jpeg;base64,{}", "/9j/4AAQSkZJRg".repeat(20_000));
    let audio = "UklGRiQAAABXQVZF".repeat(1_000);
    let cut = MemorySink::new();
    let kept = MemorySink::new();
    let layer = LlmObservabilityLayer::builder()
        .redact(Redaction::keep_all())
        .sink(cut.clone())
        .build()
        .expect("builds");
    let keeping = LlmObservabilityLayer::builder()
        .redact(Redaction::keep_all().keep_data())
        .sink(kept.clone())
        .build()
        .expect("builds");
    vision_call(&layer, &image, &audio).await;
    vision_call(&keeping, &image, &audio).await;
    let cut = support::flushed(&layer, &cut).await;
    let kept = support::flushed(&keeping, &kept).await;
    let content = &cut[0].request.messages.as_ref().expect("messages")[0]["content"];
    assert_eq!(content[0]["text"], "what is in this picture?");
    assert_eq!(
        content[1]["image_url"],
        json!({"url": "data:image/jpeg;base64,[280000 bytes cut]", "detail": "high"})
    );
    assert_eq!(
        content[2]["input_audio"],
        json!({"data": "[16000 bytes of base64 cut]", "format": "wav"})
    );
    let line = serde_json::to_string(&*cut[0]).expect("JSON");
    assert!(line.len() < 3_000, "{} bytes", line.len());
    let whole = &kept[0].request.messages.as_ref().expect("messages")[0]["content"];
    assert_eq!(whole[1]["image_url"]["url"], image.as_str());
    assert_eq!(whole[2]["input_audio"]["data"], audio.as_str());
}
