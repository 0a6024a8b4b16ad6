//! Ollama's native API: `POST .../api/chat`, `.../api/generate` (NDJSON unless
//! `"stream": false`), `.../api/embed`, `.../api/embeddings`.
//!
//! Chat and generate responses go through one fold ([`assemble`]): text and thinking appended,
//! tool calls kept whole, counts (`prompt_eval_count` input, `eval_count` output), `done_reason`
//! and durations from the final `done: true` line. A stream is NDJSON lines; an unstreamed
//! answer (`"stream": false`) is one JSON object, read as the one line of its stream whatever its
//! layout: Ollama writes it on one line as `application/json`, some servers and proxies
//! pretty-print it. The decoder tells them apart by the content type, or without one by the
//! first line (a lone `{` is no NDJSON line). Errors are `{"error": "..."}`.

pub(crate) mod assemble;
pub(crate) mod content;
pub(crate) mod request;
pub(crate) mod response;

use http::Method;
use serde_json::Value;

use super::assemble::Fold;
use super::endpoint::{ends_with_ignore_case, Endpoint};
use super::framing::Framing;
use super::summary::ResponseSummary;
use super::{Route, WireFormat};
use crate::payload::{LlmCall, RequestRecord};

/// The Ollama wire format.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ollama;

impl WireFormat for Ollama {
    fn recognise(&self, _method: &Method, path: &str) -> Option<Endpoint> {
        [
            ("/api/chat", Endpoint::OllamaChat),
            ("/api/generate", Endpoint::OllamaGenerate),
            ("/api/embed", Endpoint::OllamaEmbed),
            ("/api/embeddings", Endpoint::OllamaEmbeddings),
        ]
        .into_iter()
        .find_map(|(suffix, endpoint)| ends_with_ignore_case(path, suffix).then_some(endpoint))
    }

    fn route(&self, _endpoint: Endpoint, _host: Option<&str>, _path: &str) -> Route {
        Route::provider("ollama")
    }

    fn stream_framing(&self, endpoint: Endpoint) -> Option<Framing> {
        matches!(endpoint, Endpoint::OllamaChat | Endpoint::OllamaGenerate)
            .then_some(Framing::Ndjson)
    }

    fn decode_request(
        &self,
        endpoint: Endpoint,
        body: &[u8],
    ) -> Result<RequestRecord, serde_json::Error> {
        request::decode_request(endpoint, body)
    }

    fn decode_response(
        &self,
        endpoint: Endpoint,
        body: &[u8],
    ) -> Result<ResponseSummary, serde_json::Error> {
        response::decode_json_response(endpoint, body)
    }

    fn stream_fold(&self, endpoint: Endpoint) -> Fold {
        let shape = match endpoint {
            Endpoint::OllamaGenerate => assemble::Shape::Generate,
            _ => assemble::Shape::Chat,
        };
        Fold::Ollama(Box::new(assemble::OllamaFold::new(shape)))
    }

    fn input_messages(&self, call: &LlmCall) -> Option<Value> {
        content::input_messages(call)
    }

    fn system_instructions(&self, call: &LlmCall) -> Option<Value> {
        content::system_instructions(call)
    }

    fn output_messages(&self, call: &LlmCall) -> Option<Value> {
        content::output_messages(call)
    }

    fn tool_definitions(&self, call: &LlmCall) -> Option<Value> {
        content::tool_definitions(call)
    }

    fn native_request(&self, call: &LlmCall) -> Value {
        content::native_request(call)
    }

    fn native_input(&self, call: &LlmCall) -> Option<Value> {
        content::native_input(call)
    }

    fn native_output(&self, call: &LlmCall) -> Option<Value> {
        content::native_output(call)
    }
}
