//! Wire formats: which requests are LLM calls, and how each API family's requests and responses
//! are read.
//!
//! The core (the call, the tees, the payload) knows no family. It asks [`format_of`] for the
//! call's [`WireFormat`] and goes through it for everything family-specific: recognising a
//! request, the provider's name, decoding the request and a JSON response, folding a stream, and
//! turning messages and output into the neutral GenAI content that exporters read. Framing —
//! SSE ([`sse`]), NDJSON ([`ndjson`]), streamed JSON arrays ([`json_array`]), chosen by
//! [`framing`] — is protocol-neutral, and so are the budget every stream fold appends through
//! ([`budget`]) and the bookkeeping around the fold ([`assemble`]).
//!
//! A family is one folder ([`openai`], [`anthropic`]) with one zero-sized type implementing
//! [`WireFormat`], listed once in [`FORMATS`].

use serde_json::Value;

use crate::payload::{LlmCall, RequestRecord};

pub(crate) mod anthropic;
pub(crate) mod assemble;
pub(crate) mod bedrock;
pub(crate) mod budget;
pub(crate) mod content;
pub(crate) mod decoder;
pub(crate) mod endpoint;
pub(crate) mod eventstream;
pub(crate) mod framing;
pub(crate) mod gemini;
pub(crate) mod indexed;
pub(crate) mod json_array;
pub(crate) mod ndjson;
pub(crate) mod ollama;
pub(crate) mod openai;
pub(crate) mod read;
pub(crate) mod sse;
pub(crate) mod summary;

use assemble::Fold;
use endpoint::Endpoint;
use framing::Framing;
use summary::ResponseSummary;

/// One event of a response stream, whatever its framing: an SSE event (`name` is its `event:`
/// field), an NDJSON line or a JSON array's element (`name` empty), an AWS event-stream frame
/// (`name` is its `:event-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Event<'a> {
    /// The event's type as the framing names it; empty when it names none.
    pub(crate) name: &'a [u8],
    /// The event's payload (for SSE, the `data:` lines joined with `\n`).
    pub(crate) data: &'a [u8],
}

/// One API family's wire format: everything the core needs to know about it.
pub(crate) trait WireFormat: Sync {
    /// Which of this family's endpoints a request is, from its method and path (no query).
    fn recognise(&self, method: &http::Method, path: &str) -> Option<Endpoint>;

    /// Where a call of `endpoint` addressed to `host` at `path` goes: its OpenTelemetry
    /// `gen_ai.provider.name` (e.g. `azure.ai.openai` for an OpenAI-shaped call to Azure) and
    /// the model the URL names, for families (or deployments) that put it there. Runs as every
    /// call starts: no allocation but the model's.
    fn route(&self, endpoint: Endpoint, host: Option<&str>, path: &str) -> Route;

    /// Decodes a request body. Fails when the body is not a JSON object of the expected field
    /// types; the caller records the error and passes the bytes on untouched.
    fn decode_request(
        &self,
        endpoint: Endpoint,
        body: &[u8],
    ) -> Result<RequestRecord, serde_json::Error>;

    /// Decodes a complete (non-streamed) response body. Errors are for bodies that are not JSON
    /// at all; a JSON body of an unexpected shape yields a summary of what could be read.
    fn decode_response(
        &self,
        endpoint: Endpoint,
        body: &[u8],
    ) -> Result<ResponseSummary, serde_json::Error>;

    /// A fresh fold for a streamed response of `endpoint`.
    fn stream_fold(&self, endpoint: Endpoint) -> Fold;

    /// The framing `endpoint` streams in when its response is not SSE (`None`: it streams SSE
    /// or answers one JSON body). A response whose content type is `text/event-stream`, or whose
    /// body sniffs as one, is read as SSE all the same.
    fn stream_framing(&self, _endpoint: Endpoint) -> Option<Framing> {
        None
    }

    /// A response header holding the response's id, for families whose bodies carry none
    /// (Bedrock's `x-amzn-requestid`); used when the body names no id.
    fn response_id_header(&self, _endpoint: Endpoint) -> Option<&'static str> {
        None
    }

    /// A response header whose value, up to its first `:`, is the error's type (Bedrock's
    /// `x-amzn-errortype`); used when the body reports an error without one.
    fn error_type_header(&self, _endpoint: Endpoint) -> Option<&'static str> {
        None
    }

    /// `gen_ai.input.messages`: the messages sent to the model (system instructions apart), as
    /// `{role, parts}` in the GenAI conventions' parts format.
    fn input_messages(&self, call: &LlmCall) -> Option<Value>;

    /// `gen_ai.system_instructions`: the system instructions, as parts.
    fn system_instructions(&self, call: &LlmCall) -> Option<Value>;

    /// `gen_ai.output.messages`: the model's answer, as `{role, parts, finish_reason}`.
    fn output_messages(&self, call: &LlmCall) -> Option<Value>;

    /// `gen_ai.tool.definitions`: the tools offered, as `{type, name, description, parameters}`.
    fn tool_definitions(&self, call: &LlmCall) -> Option<Value>;

    /// The request as the provider's JSON, rebuilt from the record (parameters under the API's
    /// own names; `stream` only when set): what UIs that replay a request show as inputs.
    fn native_request(&self, call: &LlmCall) -> Value;

    /// What the model was given, in the provider's own shape (for UIs that render it: Langfuse,
    /// Weave, MLflow): chat messages, a prompt, an input.
    fn native_input(&self, call: &LlmCall) -> Option<Value>;

    /// What the model answered, in the provider's own shape: the assistant message(s), the
    /// completion text, the output items; `None` for embeddings.
    fn native_output(&self, call: &LlmCall) -> Option<Value>;
}

/// What a request's address says about its call (see [`WireFormat::route`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Route {
    /// `gen_ai.provider.name`.
    pub(crate) provider: &'static str,
    /// The model the URL names (a path segment, an Azure deployment), if any.
    pub(crate) model: Option<String>,
}

impl Route {
    /// A provider whose URLs name no model.
    pub(crate) fn provider(provider: &'static str) -> Self {
        Route {
            provider,
            model: None,
        }
    }
}

/// Every wire format the layer recognises by default, in the order they are asked.
/// Ollama comes first: its `/api/embeddings` also ends as OpenAI's `/embeddings` does.
pub(crate) const FORMATS: [&dyn WireFormat; 5] = [
    &ollama::Ollama,
    &openai::OpenAi,
    &anthropic::Anthropic,
    &gemini::Gemini,
    &bedrock::Bedrock,
];

/// The wire format of `endpoint`.
pub(crate) fn format_of(endpoint: Endpoint) -> &'static dyn WireFormat {
    match endpoint.family() {
        endpoint::Family::OpenAi => &openai::OpenAi,
        endpoint::Family::Anthropic => &anthropic::Anthropic,
        endpoint::Family::Gemini => &gemini::Gemini,
        endpoint::Family::Bedrock => &bedrock::Bedrock,
        endpoint::Family::Ollama => &ollama::Ollama,
    }
}
