//! Recorded calls through a layer, with extra request headers (e.g. `traceparent`) and
//! `CallMetadata`: what the backend suites send. And the recorded provider calls every
//! backend suite sends ([`provider_cases`]: Anthropic, Gemini, Bedrock Converse, Ollama), each
//! with what its recording says in provider-neutral terms ([`ProviderExpect`]).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use llm_observability::{CallMetadata, LlmCall, LlmObservabilityLayer, MemorySink, RequestBody};
use serde_json::Value;
use tower::{Service, ServiceBuilder, ServiceExt};

use super::provider_expect::{anthropic, bedrock, gemini, ollama, Reading, ToolCall};
use super::Interaction;

/// A recorded exchange as an in-process upstream answers it.
pub trait Served {
    /// The recorded request (method, URI, body) and status.
    fn interaction(&self) -> &Interaction;
    /// The response headers to answer with.
    fn response_headers(&self) -> Vec<(String, String)>;
    /// The response body's bytes as they went over the wire.
    fn response_body(&self) -> Bytes;
}

impl Served for Interaction {
    fn interaction(&self) -> &Interaction {
        self
    }

    fn response_headers(&self) -> Vec<(String, String)> {
        if self.content_type.is_empty() {
            Vec::new()
        } else {
            vec![("content-type".to_owned(), self.content_type.clone())]
        }
    }

    fn response_body(&self) -> Bytes {
        Bytes::from(self.response_body.clone())
    }
}

/// Sends `recorded`'s request through `layer` (with `headers` and `metadata` added) to an
/// in-process upstream that reads the request and answers the recorded status, headers and
/// body; reads the response to its end. Flushing the sinks is the caller's.
pub async fn send<S: Served + ?Sized>(
    layer: &LlmObservabilityLayer,
    recorded: &S,
    headers: &[(&str, &str)],
    metadata: Option<CallMetadata>,
) {
    let interaction = recorded.interaction();
    let status = interaction.status;
    let answer_headers = recorded.response_headers();
    let body = recorded.response_body();
    let upstream = tower::service_fn(move |request: Request<RequestBody<Full<Bytes>>>| {
        let answer_headers = answer_headers.clone();
        let body = body.clone();
        async move {
            let _ = request.into_body().collect().await;
            let mut response = Response::builder().status(status);
            for (name, value) in &answer_headers {
                response = response.header(name.as_str(), value.as_str());
            }
            Ok::<_, Infallible>(response.body(Full::new(body)).expect("valid response"))
        }
    });
    let mut service = ServiceBuilder::new().layer(layer.clone()).service(upstream);
    let mut request = Request::builder()
        .method(interaction.method.as_str())
        .uri(&interaction.uri)
        .header(http::header::CONTENT_TYPE, "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut request = request
        .body(Full::new(Bytes::from(interaction.request_body.clone())))
        .expect("valid request");
    if let Some(metadata) = metadata {
        request.extensions_mut().insert(metadata);
    }
    let response = service
        .ready()
        .await
        .expect("ready")
        .call(request)
        .await
        .expect("infallible upstream");
    let _ = response.into_body().collect().await.expect("recorded body");
}

/// Sends each case through `layer` in turn, flushing the sinks after each, and pairs it with
/// the call `memory` (one of the layer's sinks) received for it.
pub async fn send_each<'a>(
    layer: &LlmObservabilityLayer,
    memory: &MemorySink,
    cases: &'a [ProviderCase],
) -> Vec<(&'a ProviderCase, Arc<LlmCall>)> {
    let mut out = Vec::with_capacity(cases.len());
    for case in cases {
        let before = memory.calls().len();
        send(layer, case, &[], None).await;
        layer
            .dispatcher()
            .flush(Duration::from_secs(30))
            .await
            .expect("flushed in time");
        let calls = memory.calls();
        assert_eq!(calls.len(), before + 1, "{}: one call recorded", case.name);
        out.push((case, calls[before].clone()));
    }
    out
}

/// What a recorded call says, read straight from its recording apart from the code under
/// test, in provider-neutral terms: the oracle the backend suites compare each backend's
/// read-back with.
#[derive(Debug, Clone)]
pub struct ProviderExpect {
    /// The response id: the body's (Anthropic `id`, Gemini `responseId`) or Bedrock's
    /// `x-amzn-requestid` header; Ollama has none.
    pub id: Option<String>,
    /// The model that answered, as the response names it (a Converse response names none).
    pub response_model: Option<String>,
    /// The model asked for: the request's `model`, or the model id in the URL path (Gemini,
    /// Bedrock), as `INDEX.tsv` lists it.
    pub request_model: String,
    /// Every input token, cache reads and writes included.
    pub input_tokens: u64,
    /// Every output token, reasoning included.
    pub output_tokens: u64,
    pub total_tokens: u64,
    pub cache_read: Option<u64>,
    pub cache_creation: Option<u64>,
    pub reasoning_tokens: Option<u64>,
    /// The answer's text.
    pub text: String,
    /// The reasoning (thinking) text.
    pub reasoning: String,
    /// `(id, name, arguments)` of each tool call, in order.
    pub tool_calls: Vec<ToolCall>,
    /// The finish reason as the API says it (`tool_use`, `STOP`, `stop`, ...).
    pub finish_reason: String,
    /// The tools the request offered: `(name, parameters schema)`.
    pub tools: Vec<(String, Value)>,
    /// The response the same call returns unstreamed (a stream folded).
    pub response: Value,
    /// [`response`](Self::response) read.
    pub reading: Reading,
}

impl ProviderExpect {
    /// The input tokens neither read from nor written to the cache.
    pub fn uncached_input(&self) -> u64 {
        self.input_tokens - self.cache_read.unwrap_or(0) - self.cache_creation.unwrap_or(0)
    }

    /// The model a backend names the call by: the one that answered, else the one asked for.
    pub fn model(&self) -> &str {
        self.response_model
            .as_deref()
            .unwrap_or(&self.request_model)
    }
}

/// One recorded call to send through a layer, with its request and expectations.
#[derive(Debug, Clone)]
pub struct ProviderCase {
    /// A short name (`tools`, `gemini`, ...).
    pub name: &'static str,
    /// `gen_ai.provider.name`: `anthropic`, `gcp.gemini`, `aws.bedrock` or `ollama`.
    pub provider: &'static str,
    /// `gen_ai.operation.name`: `chat`, or `generate_content` for Gemini.
    pub operation: &'static str,
    /// The payload's endpoint (`anthropic.messages`, `gemini.stream_generate_content`, ...).
    pub endpoint: &'static str,
    /// The response is streamed (INDEX.tsv's `streamed`).
    pub streamed: bool,
    pub interaction: Interaction,
    pub response_headers: Vec<(String, String)>,
    pub response_body: Bytes,
    pub request: Value,
    pub expect: ProviderExpect,
}

impl Served for ProviderCase {
    fn interaction(&self) -> &Interaction {
        &self.interaction
    }

    fn response_headers(&self) -> Vec<(String, String)> {
        self.response_headers.clone()
    }

    fn response_body(&self) -> Bytes {
        self.response_body.clone()
    }
}

impl ProviderCase {
    /// Where the request keeps its messages (and a backend's copy of the request too):
    /// `/contents` for Gemini, `/messages` otherwise.
    pub fn messages_pointer(&self) -> &'static str {
        match self.provider {
            "gcp.gemini" => "/contents",
            _ => "/messages",
        }
    }

    /// Where a backend's copy of the request (the crate's native request) names the model:
    /// `/modelId` for Bedrock (boto3's name), `/model` otherwise — for Gemini and Bedrock the
    /// model the URL path names, which the body does not carry.
    pub fn model_pointer(&self) -> &'static str {
        match self.provider {
            "aws.bedrock" => "/modelId",
            _ => "/model",
        }
    }

    /// Where the request keeps its tools: `/toolConfig/tools` for Bedrock, `/tools`
    /// otherwise.
    pub fn tools_pointer(&self) -> &'static str {
        match self.provider {
            "aws.bedrock" => "/toolConfig/tools",
            _ => "/tools",
        }
    }

    /// `stored` — a backend's copy of the call's response, in the family's own shape — read
    /// as [`ProviderExpect::response`] is: same id and model (where the shape has them),
    /// counts, text, reasoning, tool calls and finish reason.
    pub fn assert_response(&self, stored: &Value, label: &str) {
        assert_eq!(
            reading(self.provider, stored),
            self.expect.reading,
            "{label}: the stored response, read"
        );
    }
}

/// The family reader of `provider`'s responses.
fn reading(provider: &str, response: &Value) -> Reading {
    match provider {
        "anthropic" => anthropic::reading(response),
        "gcp.gemini" => gemini::reading(response),
        "aws.bedrock" => bedrock::reading(response),
        "ollama" => ollama::reading(response),
        other => panic!("no reader for provider {other}"),
    }
}

/// The recordings [`provider_cases`] picks: name, provider, file part and interaction index.
const CASES: [(&str, &str, &str, usize); 7] = [
    // traceloop/openllmetry cassettes of real api.anthropic.com traffic: streamed with two
    // tool_use blocks, streamed with thinking, streamed writing the prompt cache, JSON reading
    // it.
    (
        "tools",
        "anthropic",
        "test_messages/test_anthropic_tools_streaming_legacy.yaml",
        0,
    ),
    (
        "thinking",
        "anthropic",
        "test_thinking/test_anthropic_thinking_streaming_legacy.yaml",
        0,
    ),
    (
        "cache-write",
        "anthropic",
        "test_prompt_caching/test_anthropic_prompt_caching_stream_legacy.yaml",
        0,
    ),
    (
        "cache-read",
        "anthropic",
        "test_prompt_caching/test_anthropic_prompt_caching_legacy.yaml",
        1,
    ),
    // Arize-ai/openinference: gemini-3.5-flash streamed over SSE, two functionCall parts with
    // ids (the first with a thoughtSignature) and thoughtsTokenCount 93.
    (
        "gemini",
        "gcp.gemini",
        "test_instrumentation/test_streaming_reasoning_with_multiple_tool_calls.yaml",
        0,
    ),
    // traceloop/openllmetry: converse-stream event frames from Claude 3 Sonnet, a text block
    // then a toolUse block, stopReason tool_use, usage in the metadata event, and an
    // x-amzn-requestid header.
    (
        "bedrock",
        "aws.bedrock",
        "test_anthropic/test_anthropic_converse_stream_with_tool_use.yaml",
        0,
    ),
    // Arize-ai/openinference: /api/chat NDJSON from qwen3.6 thinking before it answers.
    (
        "ollama",
        "ollama",
        "test_instrumentor/test_chat_stream.yaml",
        0,
    ),
];

/// Seven recorded calls — four Anthropic (streamed tool calls, streamed thinking, a streamed
/// cache write, a JSON cache read), a streamed Gemini call with two function calls and
/// reasoning tokens, a Bedrock converse-stream with text and a tool use, and a streamed Ollama
/// chat with thinking — each with what its recording says; `None` (after the loader's banner)
/// without the provider fixtures.
pub fn provider_cases() -> Option<Vec<ProviderCase>> {
    let all = super::load_provider_interactions()?;
    let cases = CASES
        .iter()
        .map(|&(name, provider, file, index)| {
            let found: Vec<_> = all
                .iter()
                .filter(|p| p.interaction.file.contains(file) && p.interaction.index == index)
                .collect();
            assert_eq!(found.len(), 1, "one recorded interaction {file}#{index}");
            case(name, provider, found[0])
        })
        .collect();
    Some(cases)
}

/// The four Anthropic cases of [`provider_cases`].
pub fn anthropic_cases() -> Option<Vec<ProviderCase>> {
    Some(
        provider_cases()?
            .into_iter()
            .filter(|c| c.provider == "anthropic")
            .collect(),
    )
}

fn case(
    name: &'static str,
    provider: &'static str,
    recorded: &super::ProviderInteraction,
) -> ProviderCase {
    let mut interaction = recorded.interaction.clone();
    // Async clients' cassettes spell the method `post`; on the wire it is `POST`.
    interaction.method = interaction.method.to_ascii_uppercase();
    let row = recorded.index_row.as_ref().expect("an INDEX.tsv row");
    let streamed = row["streamed"] == "yes";
    let request = interaction.request_json().expect("a JSON request");
    let headers = recorded.response_headers();
    let body = recorded.response_bytes();
    let text = || std::str::from_utf8(&body).expect("a text body");
    let (operation, endpoint, response, tools) = match provider {
        "anthropic" => (
            "chat",
            "anthropic.messages",
            anthropic::message(text()),
            anthropic::tools(&request),
        ),
        "gcp.gemini" => (
            "generate_content",
            if streamed {
                "gemini.stream_generate_content"
            } else {
                "gemini.generate_content"
            },
            gemini::response(text()),
            gemini::tools(&request),
        ),
        "aws.bedrock" => (
            "chat",
            if streamed {
                "bedrock.converse_stream"
            } else {
                "bedrock.converse"
            },
            bedrock::response(&body, streamed),
            bedrock::tools(&request),
        ),
        "ollama" => (
            "chat",
            "ollama.chat",
            ollama::response(text()),
            ollama::tools(&request),
        ),
        other => panic!("no reader for provider {other}"),
    };
    let reading = reading(provider, &response);
    let id = match provider {
        "aws.bedrock" => headers
            .iter()
            .find(|(name, _)| name == "x-amzn-requestid")
            .map(|(_, value)| value.clone()),
        _ => reading.id.clone(),
    };
    let tokens = reading.tokens.expect("the recording reports usage");
    let expect = ProviderExpect {
        id,
        response_model: reading.model.clone(),
        request_model: row["model"].clone(),
        input_tokens: tokens.input.expect("input tokens"),
        output_tokens: tokens.output.expect("output tokens"),
        total_tokens: tokens.total.expect("total tokens"),
        cache_read: tokens.cache_read,
        cache_creation: tokens.cache_creation,
        reasoning_tokens: tokens.reasoning,
        text: reading.text.clone(),
        reasoning: reading.reasoning.clone(),
        tool_calls: reading.tool_calls.clone(),
        finish_reason: reading.finish_reason.clone().expect("a finish reason"),
        tools,
        response,
        reading,
    };
    self_check(name, row, &expect);
    ProviderCase {
        name,
        provider,
        operation,
        endpoint,
        streamed,
        interaction,
        response_headers: headers,
        response_body: Bytes::from(body),
        request,
        expect,
    }
}

/// The reading against what `INDEX.tsv` (written by whoever indexed the recordings) says.
fn self_check(
    name: &str,
    row: &std::collections::BTreeMap<String, String>,
    expect: &ProviderExpect,
) {
    assert_eq!(
        expect.response_model.as_deref().unwrap_or(""),
        row["response_model"],
        "SELF-CHECK {name}: response model"
    );
    assert_eq!(
        expect.finish_reason, row["stop_reasons"],
        "SELF-CHECK {name}: stop reasons"
    );
    assert_eq!(
        !expect.tool_calls.is_empty(),
        row["has_tool_use"] == "yes",
        "SELF-CHECK {name}: has_tool_use"
    );
    assert_eq!(
        !expect.reasoning.is_empty() || expect.reasoning_tokens.is_some_and(|n| n > 0),
        row["has_thinking"] == "yes",
        "SELF-CHECK {name}: has_thinking"
    );
    assert_eq!(
        expect.cache_read.unwrap_or(0) + expect.cache_creation.unwrap_or(0) > 0,
        row["has_cache_tokens"] == "yes",
        "SELF-CHECK {name}: has_cache_tokens"
    );
}
