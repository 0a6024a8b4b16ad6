//! The reqwest tests' fixture: an OpenAI-shaped axum upstream on 127.0.0.1:0 that records what
//! it received (and can hold a stream back until released), canned responses, and clients.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures_util::StreamExt;
use llm_observability::{CallStatus, Endpoint, LlmCall, LlmObservabilityLayer, MemorySink, Usage};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use serde_json::{json, Value};
use tokio::sync::Semaphore;

pub type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

// ---------------------------------------------------------------------------------------------
// The upstream: an OpenAI-shaped axum app on 127.0.0.1:0

/// Non-streaming chat completion, sent byte for byte.
pub const CHAT_JSON: &str = r#"{"id":"chatcmpl-json1","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there!","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17},"system_fingerprint":"fp_test"}"#;

/// First event of the text stream; the rest waits for the test's signal.
pub const STREAM_FIRST: &str = "data: {\"id\":\"chatcmpl-s1\",\"object\":\"chat.completion.chunk\",\"created\":1700000001,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"},\"finish_reason\":null}]}\n\n";
pub const STREAM_REST: &[&str] = &[
    "data: {\"id\":\"chatcmpl-s1\",\"object\":\"chat.completion.chunk\",\"created\":1700000001,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo, \"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"chatcmpl-s1\",\"object\":\"chat.completion.chunk\",\"created\":1700000001,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"world\"},\"finish_reason\":null}]}\n\ndata: {\"id\":\"chatcmpl-s1\",\"object\":\"chat.completion.chunk\",\"created\":1700000001,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
    "data: {\"id\":\"chatcmpl-s1\",\"object\":\"chat.completion.chunk\",\"created\":1700000001,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":3,\"total_tokens\":12}}\n\n",
    "data: [DONE]\n\n",
];
pub const STREAM_TEXT: &str = "Hello, world";

/// Non-streaming tool call.
pub const TOOL_JSON: &str = r#"{"id":"chatcmpl-tool1","object":"chat.completion","created":1700000002,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":null,"refusal":null,"tool_calls":[{"id":"call_abc","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},"logprobs":null,"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":40,"completion_tokens":15,"total_tokens":55}}"#;

/// Streamed tool call, arguments split across chunks.
pub const TOOL_STREAM_FIRST: &str = "data: {\"id\":\"chatcmpl-ts1\",\"object\":\"chat.completion.chunk\",\"created\":1700000003,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"index\":0,\"id\":\"call_xyz\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}]},\"finish_reason\":null}]}\n\n";
pub const TOOL_STREAM_REST: &[&str] = &[
    "data: {\"id\":\"chatcmpl-ts1\",\"object\":\"chat.completion.chunk\",\"created\":1700000003,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"city\\\":\"}}]},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"chatcmpl-ts1\",\"object\":\"chat.completion.chunk\",\"created\":1700000003,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"Oslo\\\"}\"}}]},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"chatcmpl-ts1\",\"object\":\"chat.completion.chunk\",\"created\":1700000003,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
    "data: {\"id\":\"chatcmpl-ts1\",\"object\":\"chat.completion.chunk\",\"created\":1700000003,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[],\"usage\":{\"prompt_tokens\":41,\"completion_tokens\":11,\"total_tokens\":52}}\n\n",
    "data: [DONE]\n\n",
];

pub const MODELS_JSON: &str = r#"{"object":"list","data":[{"id":"gpt-4o-mini","object":"model","created":1700000000,"owned_by":"system"}]}"#;

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: Method,
    pub path: String,
    pub body: Bytes,
}

pub struct UpstreamState {
    /// A stream sends its first event, then takes one permit before sending the rest.
    release: Semaphore,
    received: Mutex<Vec<Received>>,
}

pub struct Upstream {
    pub addr: SocketAddr,
    state: Arc<UpstreamState>,
}

impl Upstream {
    /// An upstream whose streams run straight through.
    pub async fn start() -> io::Result<Upstream> {
        Self::with_permits(Semaphore::MAX_PERMITS).await
    }

    /// An upstream whose streams stop after their first event until [`release`](Self::release).
    pub async fn start_gated() -> io::Result<Upstream> {
        Self::with_permits(0).await
    }

    pub async fn with_permits(permits: usize) -> io::Result<Upstream> {
        let state = Arc::new(UpstreamState {
            release: Semaphore::new(permits),
            received: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/v1/models", get(models))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Upstream { addr, state })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn chat_url(&self) -> String {
        self.url("/v1/chat/completions")
    }

    /// Lets one stopped stream send the rest of its events.
    pub fn release(&self) {
        self.state.release.add_permits(1);
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().expect("not poisoned").clone()
    }
}

pub async fn chat(
    State(state): State<Arc<UpstreamState>>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    state.received.lock().expect("not poisoned").push(Received {
        method,
        path: uri.path().to_owned(),
        body: body.clone(),
    });
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let stream = request["stream"].as_bool().unwrap_or(false);
    let tools = request.get("tools").is_some();
    if !stream {
        let json = if tools { TOOL_JSON } else { CHAT_JSON };
        return (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::HeaderName::from_static("x-request-id"), "req-123"),
            ],
            json,
        )
            .into_response();
    }
    let (first, rest) = if tools {
        (TOOL_STREAM_FIRST, TOOL_STREAM_REST)
    } else {
        (STREAM_FIRST, STREAM_REST)
    };
    let events = futures_util::stream::once(async move { Ok::<_, io::Error>(Bytes::from(first)) })
        .chain(
            futures_util::stream::once(async move {
                if let Ok(permit) = state.release.acquire().await {
                    permit.forget();
                }
                futures_util::stream::iter(rest.iter().map(|event| Ok(Bytes::from(*event))))
            })
            .flatten(),
        );
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(events),
    )
        .into_response()
}

pub async fn models() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], MODELS_JSON)
}

pub fn stream_bytes(first: &str, rest: &[&str]) -> Vec<u8> {
    let mut all = first.as_bytes().to_vec();
    for event in rest {
        all.extend_from_slice(event.as_bytes());
    }
    all
}

// ---------------------------------------------------------------------------------------------
// The client side

pub fn plain_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client builds")
}

pub fn observed_client(layer: &LlmObservabilityLayer) -> ClientWithMiddleware {
    ClientBuilder::new(plain_client())
        .with(layer.middleware())
        .build()
}

pub async fn single_payload(layer: &LlmObservabilityLayer, memory: &MemorySink) -> Arc<LlmCall> {
    let mut calls = super::flushed(layer, memory).await;
    assert_eq!(calls.len(), 1, "expected exactly one payload: {calls:#?}");
    calls.remove(0)
}

pub fn chat_request(stream: bool) -> Value {
    let mut request = json!({
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hello"}
        ],
        "temperature": 0.2,
        "max_tokens": 50,
        "seed": 7,
        "stop": ["\n\n"]
    });
    if stream {
        request["stream"] = json!(true);
        request["stream_options"] = json!({"include_usage": true});
    }
    request
}

pub fn headers_without_date(headers: &HeaderMap) -> Vec<(String, Vec<u8>)> {
    let mut all: Vec<_> = headers
        .iter()
        .filter(|(name, _)| *name != header::DATE)
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect();
    all.sort();
    all
}

/// A text stream read to its end: success, and everything the stream said.
pub fn assert_text_stream_payload(call: &LlmCall) {
    assert_eq!(call.status, CallStatus::Success, "{call:#?}");
    assert_eq!(call.error, None);
    assert_text_stream_content(call);
}

/// What the text stream said, whatever the call's status.
pub fn assert_text_stream_content(call: &LlmCall) {
    assert_eq!(call.endpoint, Endpoint::ChatCompletions);
    assert_eq!(call.http_status, Some(200));
    assert!(call.request.stream);
    assert_eq!(
        call.request.stream_options.as_deref(),
        Some(&json!({"include_usage": true}))
    );
    let response = call.response.as_ref().expect("assembled response");
    assert_eq!(response["id"], "chatcmpl-s1");
    assert_eq!(response["object"], "chat.completion");
    assert_eq!(response["model"], "gpt-4o-mini-2024-07-18");
    assert_eq!(response["choices"][0]["message"]["role"], "assistant");
    assert_eq!(response["choices"][0]["message"]["content"], STREAM_TEXT);
    assert_eq!(response["choices"][0]["finish_reason"], "stop");
    assert_eq!(call.finish_reasons, ["stop"]);
    assert_eq!(call.usage, Some(Usage::new(9, 3)));
    let ttft = call
        .timing
        .time_to_first_token_ms
        .expect("time to first token");
    assert!(ttft >= 0.0 && ttft <= call.timing.duration_ms, "{ttft}");
    assert!(!call.truncated);
    assert!(call.decode_errors.is_empty(), "{:?}", call.decode_errors);
}
