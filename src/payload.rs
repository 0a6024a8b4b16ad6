//! The `LlmCall` payload: one immutable record per observed LLM call.
//!
//! This is a versioned JSON schema (see [`SCHEMA_VERSION`]); every sink receives it as
//! `Arc<LlmCall>`, and the JSONL sink writes it as one line per call. Fields are only ever added
//! within a schema version; a rename or removal bumps the version.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::json::Json;
use crate::openai::endpoint::Endpoint;

/// Version of the [`LlmCall`] JSON schema written by this crate.
pub const SCHEMA_VERSION: u32 = 1;

/// One observed LLM call: what was asked, what came back, what it cost and how long it took.
///
/// ```
/// use llm_observability::LlmCall;
/// let line = r#"{"schema_version":1,"id":"c1","endpoint":"chat.completions","operation":"chat",
///   "provider":"openai","server_address":null,"request":{"model":"gpt-4o","stream":false},
///   "response":null,"usage":null,"finish_reasons":[],"status":"cancelled","http_status":null,
///   "error":null,"timing":{"start_time":"2026-01-01T00:00:00Z","end_time":"2026-01-01T00:00:01Z",
///   "duration_ms":1000.0,"time_to_first_token_ms":null},"truncated":false,"metadata":{}}"#;
/// let call: LlmCall = serde_json::from_str(line).unwrap();
/// assert_eq!(call.request.model.as_deref(), Some("gpt-4o"));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlmCall {
    /// Always [`SCHEMA_VERSION`] for payloads written by this version of the crate.
    pub schema_version: u32,
    /// Unique id of this record (UUID v4).
    pub id: String,
    /// Which OpenAI endpoint was called.
    pub endpoint: Endpoint,
    /// OpenTelemetry `gen_ai.operation.name`: `chat`, `text_completion` or `embeddings`.
    pub operation: String,
    /// OpenTelemetry `gen_ai.provider.name` (configured on the layer; default `openai`).
    pub provider: String,
    /// Host the call was addressed to (`Host` header or URI authority), when known.
    pub server_address: Option<String>,
    /// The decoded request.
    pub request: RequestRecord,
    /// The response in the endpoint's non-streaming shape (streams are assembled into it);
    /// `null` when nothing decodable came back. Embedding vectors are left out (each item keeps
    /// its `index`), as they are large and rarely useful in a log.
    pub response: Option<Json>,
    /// Token usage, or `null` when the response did not report it.
    pub usage: Option<Usage>,
    /// Finish reason per choice, in choice order (Responses API: the response status).
    pub finish_reasons: Vec<String>,
    /// How the call ended.
    pub status: CallStatus,
    /// HTTP status of the response, `null` when no response head arrived.
    pub http_status: Option<u16>,
    /// What went wrong, when `status` is `error` (or the call was cancelled for a known reason).
    pub error: Option<CallError>,
    /// When the call started and ended.
    pub timing: Timing,
    /// `true` when a capture cap cut the recorded request or response short (the bytes on the
    /// wire were not affected).
    pub truncated: bool,
    /// Problems met while decoding the request or response for this record (malformed JSON or
    /// SSE, compressed bodies, ...). The traffic itself was passed through untouched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decode_errors: Vec<String>,
    /// User-supplied metadata (request extensions, captured headers).
    pub metadata: Map<String, Value>,
}

/// The request as the client sent it: model, parameters and input.
///
/// Parameters the client did not send are `null` (and left out of the JSON).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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
    /// `stop`: a string or an array of strings.
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
    /// `user`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Chat messages (`messages`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Json>,
    /// Legacy completion prompt (`prompt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<Json>,
    /// Embeddings or Responses API input (`input`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Json>,
    /// Responses API `instructions`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<Json>,
}

/// Token usage, normalised across endpoints. Each count is `null` when the response did not
/// report it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt / input tokens (`prompt_tokens` or `input_tokens`).
    pub input_tokens: Option<u64>,
    /// Completion / output tokens (`completion_tokens` or `output_tokens`).
    pub output_tokens: Option<u64>,
    /// `total_tokens`.
    pub total_tokens: Option<u64>,
    /// Input tokens served from the prompt cache (`*_tokens_details.cached_tokens`).
    pub cached_input_tokens: Option<u64>,
    /// Output tokens spent on reasoning (`*_tokens_details.reasoning_tokens`).
    pub reasoning_tokens: Option<u64>,
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

/// What went wrong in a failed call, in OpenAI's error vocabulary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallError {
    /// OpenAI `error.type` (e.g. `invalid_request_error`), or `transport` / `body` for failures
    /// below HTTP, or `http` when an error status came without an OpenAI error body.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// OpenAI `error.code`, always as a string (providers send strings or integers).
    pub code: Option<String>,
    /// Human-readable message.
    pub message: Option<String>,
}

/// Wall-clock and monotonic timings of a call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    /// When the request reached the layer (RFC 3339, UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub start_time: time::OffsetDateTime,
    /// When the call ended (RFC 3339, UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub end_time: time::OffsetDateTime,
    /// End minus start, in milliseconds (monotonic clock).
    pub duration_ms: f64,
    /// Time from start to the first streamed chunk that carried content, a tool-call delta or
    /// text; `null` when the response was not streamed or carried none.
    pub time_to_first_token_ms: Option<f64>,
}
