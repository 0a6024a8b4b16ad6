//! The `LlmCall` payload: one immutable record per observed LLM call.
//!
//! This is a versioned JSON schema (see [`SCHEMA_VERSION`]); every sink receives it as
//! `Arc<LlmCall>`, and the JSONL sink writes it as one line per call. Fields are only ever added
//! within a schema version; a rename or removal bumps the version.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::call_id::CallId;
use crate::json::Json;
use crate::trace_context::TraceContext;
use crate::wire::endpoint::Endpoint;

/// Version of the [`LlmCall`] JSON schema written by this crate.
///
/// 2 (this version): calls of other API families than OpenAI (`endpoint`
/// `anthropic.messages`); `provider` comes from the call's wire format and address (`openai`,
/// `azure.ai.openai`, `anthropic`) unless the layer sets one; new `request_model`,
/// `usage.cache_creation_input_tokens`, `cost.cache_write_usd` and `request.top_k`;
/// `usage.input_tokens` counts every input token, cache reads and writes included, for every
/// family (as OpenAI's `prompt_tokens` always did). 1: OpenAI only.
pub const SCHEMA_VERSION: u32 = 2;

/// One observed LLM call: what was asked, what came back, what it cost and how long it took.
///
/// Read back from a JSON line:
///
/// ```
/// use llm_observability::LlmCall;
/// let line = r#"{"schema_version":2,"id":"c1","endpoint":"chat.completions","operation":"chat",
///   "provider":"openai","server_address":null,"request":{"model":"gpt-4o","stream":false},
///   "response":null,"usage":null,"finish_reasons":[],"status":"cancelled","http_status":null,
///   "error":null,"timing":{"start_time":"2026-01-01T00:00:00Z","end_time":"2026-01-01T00:00:01Z",
///   "duration_ms":1000.0,"time_to_first_token_ms":null},"truncated":false,"metadata":{}}"#;
/// let call: LlmCall = serde_json::from_str(line).unwrap();
/// assert_eq!(call.request.model.as_deref(), Some("gpt-4o"));
/// ```
///
/// Or made by hand, e.g. to test a sink or a processor:
///
/// ```
/// use llm_observability::{CallStatus, Endpoint, LlmCall, Usage};
/// let mut call = LlmCall::new(Endpoint::ChatCompletions);
/// call.request.model = Some("gpt-4o-mini".into());
/// call.usage = Some(Usage::new(12, 5));
/// assert_eq!(call.status, CallStatus::Success);
/// assert_eq!(call.operation, "chat");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LlmCall {
    /// Always [`SCHEMA_VERSION`] for payloads written by this version of the crate.
    pub schema_version: u32,
    /// Unique id of this call (a UUID v7, so ids sort by start time). It exists from the
    /// moment the call starts: the request and the response carry it as a
    /// [`CallId`](crate::CallId) extension.
    pub id: String,
    /// Where the call sits in a distributed trace: its trace id, its own span id and its
    /// parent's (see [`TraceContext`]).
    #[serde(default = "TraceContext::root")]
    pub trace: TraceContext,
    /// Which API family and endpoint was called (`chat.completions`, `anthropic.messages`, ...).
    pub endpoint: Endpoint,
    /// OpenTelemetry `gen_ai.operation.name`: `chat`, `text_completion` or `embeddings`.
    pub operation: String,
    /// OpenTelemetry `gen_ai.provider.name`: from the call's wire format and address
    /// (`openai`, `azure.ai.openai`, `anthropic`), unless the layer
    /// [sets one](crate::LlmObservabilityLayerBuilder::provider).
    pub provider: String,
    /// Host the call was addressed to (`Host` header or URI authority), when known.
    pub server_address: Option<String>,
    /// The model the call asked for: the URL path's model where the API (or an Azure
    /// deployment) puts it there, else the request body's `model`. What spans, metrics and
    /// pricing name as the requested model.
    #[serde(default)]
    pub request_model: Option<String>,
    /// The decoded request.
    pub request: RequestRecord,
    /// The response in the endpoint's non-streaming shape (streams are assembled into it);
    /// `null` when nothing decodable came back. Embedding vectors are left out (each item keeps
    /// its `index`), as they are large and rarely useful in a log.
    pub response: Option<Json>,
    /// The model the response says answered (`model` of the response, or of a stream's
    /// chunks), which may differ from the requested one (e.g. a dated snapshot).
    #[serde(default)]
    pub response_model: Option<String>,
    /// The response's id (`id` of the response or of a stream's chunks).
    #[serde(default)]
    pub response_id: Option<String>,
    /// Token usage, or `null` when the response did not report it.
    pub usage: Option<Usage>,
    /// What the call cost in US dollars, set by a pricing
    /// [processor](crate::process); `null` when no pricing processor ran,
    /// or when the model's price or the usage was unknown (then a note in
    /// [`processing_errors`](LlmCall::processing_errors) says which).
    #[serde(default)]
    pub cost: Option<Cost>,
    /// Where [`usage`](Self::usage) came from: the provider's response, an estimate (see
    /// [`StreamUsage::Estimate`](crate::StreamUsage::Estimate)), or nowhere (`usage` is null).
    #[serde(default)]
    pub usage_source: UsageSource,
    /// Finish reason per choice, in choice order (Responses API: the response status).
    pub finish_reasons: Vec<String>,
    /// How the call ended.
    pub status: CallStatus,
    /// HTTP status of the response, `null` when no response head arrived.
    pub http_status: Option<u16>,
    /// What went wrong, when `status` is `error` (or the call was cancelled for a known reason).
    pub error: Option<CallError>,
    /// The OpenTelemetry `error.type` of a failed call: the error's type, else its code, else
    /// the HTTP status, else `_OTHER`; `null` unless `status` is `error`.
    #[serde(default)]
    pub error_type: Option<String>,
    /// When the call started and ended.
    pub timing: Timing,
    /// `true` when a capture cap cut the recorded request or response short (the bytes on the
    /// wire were not affected).
    pub truncated: bool,
    /// Problems met while decoding the request or response for this record (malformed JSON or
    /// SSE, compressed bodies, ...). The traffic itself was passed through untouched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decode_errors: Vec<String>,
    /// Problems met by [processors](crate::process): a processor that failed or panicked, and
    /// that the call's content was removed because of it; or a note a processor left (e.g. why
    /// [`cost`](LlmCall::cost) is null).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub processing_errors: Vec<String>,
    /// User-supplied metadata (request extensions, captured headers).
    pub metadata: Map<String, Value>,
    /// Sinks this call must not reach (names), from the request's
    /// [`Redact`](crate::process::redact::Redact) extension. Not part of the JSON.
    #[serde(skip)]
    pub(crate) skip_sinks: Vec<String>,
}

impl LlmCall {
    /// A successful call of `endpoint` that starts and ends now, with a fresh id and trace, an
    /// empty request and no response: a starting point for tests of sinks and processors.
    pub fn new(endpoint: Endpoint) -> Self {
        let now = time::OffsetDateTime::now_utc();
        let id = CallId::new(TraceContext::root(), now);
        LlmCall {
            schema_version: SCHEMA_VERSION,
            id: id.as_str().to_owned(),
            trace: *id.trace(),
            endpoint,
            operation: endpoint.operation().to_owned(),
            provider: crate::wire::format_of(endpoint)
                .route(endpoint, None, "")
                .provider
                .to_owned(),
            server_address: None,
            request_model: None,
            request: RequestRecord::default(),
            response: None,
            response_model: None,
            response_id: None,
            usage: None,
            cost: None,
            usage_source: UsageSource::Missing,
            finish_reasons: Vec::new(),
            status: CallStatus::Success,
            http_status: Some(200),
            error: None,
            error_type: None,
            timing: Timing::new(now, now),
            truncated: false,
            decode_errors: Vec::new(),
            processing_errors: Vec::new(),
            metadata: Map::new(),
            skip_sinks: Vec::new(),
        }
    }

    /// The model the call asked for: [`request_model`](Self::request_model), else the request
    /// body's `model` (for a record made by hand or read from an older schema).
    ///
    /// ```
    /// use llm_observability::{Endpoint, LlmCall};
    /// let mut call = LlmCall::new(Endpoint::ChatCompletions);
    /// call.request.model = Some("gpt-4o".into());
    /// assert_eq!(call.requested_model(), Some("gpt-4o"));
    /// call.request_model = Some("my-gpt4o-deployment".into());
    /// assert_eq!(call.requested_model(), Some("my-gpt4o-deployment"));
    /// ```
    pub fn requested_model(&self) -> Option<&str> {
        self.request_model
            .as_deref()
            .or(self.request.model.as_deref())
    }

    /// About how many bytes the call holds (its JSON values, strings and a fixed part): what
    /// the dispatcher's byte bounds count.
    pub(crate) fn approx_size(&self) -> usize {
        let request = &self.request;
        let json = [
            &request.stream_options,
            &request.stop,
            &request.tools,
            &request.tool_choice,
            &request.response_format,
            &request.messages,
            &request.prompt,
            &request.input,
            &request.instructions,
            &self.response,
        ];
        let strings = self.decode_errors.iter().chain(&self.processing_errors);
        let error = self.error.as_ref().map_or(0, |e| {
            [&e.kind, &e.code, &e.message]
                .iter()
                .map(|s| s.as_ref().map_or(0, String::len))
                .sum()
        });
        1024 + json
            .iter()
            .map(|j| j.as_ref().map_or(0, Json::approx_len))
            .sum::<usize>()
            + strings.map(String::len).sum::<usize>()
            + error
    }

    /// Removes everything the call said or was told — messages, prompt, input, instructions,
    /// tool definitions, response format, the response and the error message — and keeps the
    /// rest (model, parameters, usage, timing, status, ids, metadata).
    ///
    /// ```
    /// use llm_observability::{Endpoint, LlmCall};
    /// let mut call = LlmCall::new(Endpoint::ChatCompletions);
    /// call.request.messages = Some(serde_json::json!([{"role": "user", "content": "secret"}]).into());
    /// call.remove_content();
    /// assert!(call.request.messages.is_none());
    /// ```
    pub fn remove_content(&mut self) {
        let request = &mut self.request;
        request.messages = None;
        request.prompt = None;
        request.input = None;
        request.instructions = None;
        request.tools = None;
        request.response_format = None;
        self.response = None;
        if let Some(error) = &mut self.error {
            error.message = None;
        }
    }
}

/// The request as the client sent it: model, parameters and input.
///
/// Parameters the client did not send are `null` (and left out of the JSON).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RequestRecord {
    /// Requested model (`model`).
    pub model: Option<String>,
    /// Whether a streamed (SSE) response was requested.
    #[serde(default)]
    pub stream: bool,
    /// `stream_options`, e.g. `{"include_usage": true}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<Json>,
    /// `temperature`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// `top_p`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// `top_k` (Anthropic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u64>,
    /// `max_tokens` (Responses API: `max_output_tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// `max_completion_tokens`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u64>,
    /// `n`, the number of choices requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u64>,
    /// `seed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// `stop`: a string or an array of strings (Anthropic: `stop_sequences`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Json>,
    /// `presence_penalty`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    /// `frequency_penalty`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    /// `tools`, as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Json>,
    /// `tool_choice`, as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Json>,
    /// `response_format` (Responses API: `text.format`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<Json>,
    /// `user` (Anthropic: `metadata.user_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Chat messages (`messages`), in the API's own shape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Json>,
    /// Legacy completion prompt (`prompt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<Json>,
    /// Embeddings or Responses API input (`input`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Json>,
    /// System instructions given apart from the messages: Responses API `instructions`,
    /// Anthropic `system`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<Json>,
}

/// Token usage, normalised across API families. Each count is `null` when the response did not
/// report it.
///
/// `input_tokens` is every input token, as the OpenTelemetry GenAI conventions count them: for
/// Anthropic, its `input_tokens + cache_read_input_tokens + cache_creation_input_tokens` (its
/// own `input_tokens` leaves the cache out); for OpenAI, `prompt_tokens` (which always included
/// cached tokens).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Usage {
    /// Every input token, cache reads and writes included (`prompt_tokens`, or
    /// `input_tokens` plus the cache counts).
    pub input_tokens: Option<u64>,
    /// Completion / output tokens (`completion_tokens` or `output_tokens`).
    pub output_tokens: Option<u64>,
    /// `total_tokens` as reported, or input plus output where the API reports no total.
    pub total_tokens: Option<u64>,
    /// Input tokens served from the prompt cache (`*_tokens_details.cached_tokens`, Anthropic
    /// `cache_read_input_tokens`); part of `input_tokens`.
    pub cached_input_tokens: Option<u64>,
    /// Input tokens written to the prompt cache (Anthropic `cache_creation_input_tokens`),
    /// priced at the cache-write rate; part of `input_tokens`. Left out of the JSON when
    /// unknown (only Anthropic reports it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation_input_tokens: Option<u64>,
    /// Output tokens spent on reasoning (`*_tokens_details.reasoning_tokens`).
    pub reasoning_tokens: Option<u64>,
}

impl Usage {
    /// Input and output counts, with their total; the other counts unknown.
    pub fn new(input_tokens: u64, output_tokens: u64) -> Self {
        Usage {
            input_tokens: Some(input_tokens),
            output_tokens: Some(output_tokens),
            total_tokens: Some(input_tokens.saturating_add(output_tokens)),
            ..Usage::default()
        }
    }
}

/// What a call cost, in US dollars, from its [`Usage`] and a model's prices.
///
/// `input_usd` prices the input tokens that were neither read from nor written to the prompt
/// cache, at the model's input rate; `cache_read_usd` the cached input tokens, at its
/// cached-input rate; `cache_write_usd` the tokens written to the cache, at its cache-write
/// rate; `output_usd` the output tokens (reasoning tokens included: providers count them in the
/// output already); `total_usd` is their sum. A cost the provider reported itself
/// (`pricing_source` `provider`, e.g. OpenRouter's `usage.cost`) keeps the provider's total, and
/// its parts only where the provider split it (else they are 0).
///
/// ```
/// use llm_observability::Cost;
/// let cost: Cost = serde_json::from_str(
///     r#"{"input_usd":0.0003,"output_usd":0.0006,"cache_read_usd":0.0,"total_usd":0.0009,
///         "pricing_source":"built-in"}"#,
/// ).unwrap();
/// assert_eq!(cost.total_usd, 0.0009);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Cost {
    /// Input tokens neither read from nor written to the cache, at the input rate.
    pub input_usd: f64,
    /// Output tokens (reasoning tokens included), at the output rate.
    pub output_usd: f64,
    /// Input tokens read from the prompt cache, at the cached-input rate.
    pub cache_read_usd: f64,
    /// Input tokens written to the prompt cache, at the cache-write rate.
    #[serde(default)]
    pub cache_write_usd: f64,
    /// `input_usd + cache_read_usd + cache_write_usd + output_usd`, or the provider's own figure
    /// (`pricing_source` `provider`).
    pub total_usd: f64,
    /// Where the prices came from: `built-in` (the crate's tables), `file:<path>` (a LiteLLM
    /// `model_prices_and_context_window.json`), `override` (a price set in code), `provider`
    /// (the response said what the call cost), or what a custom price source says.
    pub pricing_source: String,
}

impl Cost {
    /// A cost from its three parts (no cache writes; the total is their sum).
    pub fn new(
        input_usd: f64,
        cache_read_usd: f64,
        output_usd: f64,
        pricing_source: impl Into<String>,
    ) -> Self {
        Cost::with_cache_write(input_usd, cache_read_usd, 0.0, output_usd, pricing_source)
    }

    /// A cost from its four parts, cache writes included (the total is their sum).
    ///
    /// ```
    /// use llm_observability::Cost;
    /// let cost = Cost::with_cache_write(0.25, 0.125, 0.5, 1.0, "built-in");
    /// assert_eq!(cost.total_usd, 1.875);
    /// ```
    pub fn with_cache_write(
        input_usd: f64,
        cache_read_usd: f64,
        cache_write_usd: f64,
        output_usd: f64,
        pricing_source: impl Into<String>,
    ) -> Self {
        Cost {
            input_usd,
            output_usd,
            cache_read_usd,
            cache_write_usd,
            total_usd: input_usd + cache_read_usd + cache_write_usd + output_usd,
            pricing_source: pricing_source.into(),
        }
    }
}

/// Where a call's [`usage`](LlmCall::usage) came from (`usage_source` in the JSON).
///
/// ```
/// use llm_observability::UsageSource;
/// assert_eq!(serde_json::to_string(&UsageSource::Estimated).unwrap(), r#""estimated""#);
/// assert_eq!(UsageSource::default(), UsageSource::Missing);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageSource {
    /// The provider reported it (the response's `usage`, or a stream's usage chunk).
    Provider,
    /// Counted by this crate with the model's tokenizer, as the response reported none
    /// ([`StreamUsage::Estimate`](crate::StreamUsage::Estimate)).
    Estimated,
    /// Nobody: `usage` is null.
    #[default]
    Missing,
}

impl UsageSource {
    /// The source as written in the JSON payload.
    pub fn as_str(self) -> &'static str {
        match self {
            UsageSource::Provider => "provider",
            UsageSource::Estimated => "estimated",
            UsageSource::Missing => "missing",
        }
    }
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallStatus {
    /// The response was delivered in full and was not an error.
    Success,
    /// HTTP status >= 400, an error body, a transport error or a body error mid-stream.
    Error,
    /// The response (or its body) was dropped before its end: the client hung up.
    Cancelled,
}

impl CallStatus {
    /// The status as written in the JSON payload.
    pub fn as_str(self) -> &'static str {
        match self {
            CallStatus::Success => "success",
            CallStatus::Error => "error",
            CallStatus::Cancelled => "cancelled",
        }
    }
}

/// What went wrong in a failed call, in the provider's error vocabulary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CallError {
    /// The provider's error type (OpenAI and Anthropic `error.type`, e.g.
    /// `invalid_request_error`, `overloaded_error`), or `transport` / `body` for failures below
    /// HTTP, or `http` when an error status came without an error body.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// The provider's error code (OpenAI `error.code`), always as a string (providers send
    /// strings or integers); `null` where the API has none (Anthropic).
    pub code: Option<String>,
    /// Human-readable message.
    pub message: Option<String>,
}

impl CallError {
    /// An error of type `kind` with `message` and no code.
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        CallError {
            kind: Some(kind.into()),
            code: None,
            message: Some(message.into()),
        }
    }
}

/// Wall-clock and monotonic timings of a call. Durations are in milliseconds, rounded to the
/// microsecond.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Timing {
    /// When the request reached the layer (RFC 3339, UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub start_time: time::OffsetDateTime,
    /// When the call ended (RFC 3339, UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub end_time: time::OffsetDateTime,
    /// End minus start, in milliseconds (monotonic clock).
    pub duration_ms: f64,
    /// Time from start to the first streamed event that carried content: text, reasoning or a
    /// tool-call fragment; `null` when the response was not streamed or carried none.
    pub time_to_first_token_ms: Option<f64>,
    /// Time from start to the response head (status and headers): how long the upstream took
    /// to answer, apart from streaming; `null` when no response head arrived.
    #[serde(default)]
    pub time_to_response_head_ms: Option<f64>,
}

impl Timing {
    /// A call that ran from `start_time` to `end_time`, with no first token or response head.
    pub fn new(start_time: time::OffsetDateTime, end_time: time::OffsetDateTime) -> Self {
        Timing {
            start_time,
            end_time,
            duration_ms: milliseconds((end_time - start_time).unsigned_abs()),
            time_to_first_token_ms: None,
            time_to_response_head_ms: None,
        }
    }
}

/// A duration in milliseconds, rounded to the microsecond.
pub(crate) fn milliseconds(duration: std::time::Duration) -> f64 {
    duration.as_micros() as f64 / 1e3
}
