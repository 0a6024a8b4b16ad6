//! Ollama's native API: `POST .../api/chat`, `.../api/generate` (NDJSON unless
//! `"stream": false`), `.../api/embed`, `.../api/embeddings`.

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
        _endpoint: Endpoint,
        _body: &[u8],
    ) -> Result<RequestRecord, serde_json::Error> {
        Err(serde::de::Error::custom("not decoded yet"))
    }

    fn decode_response(
        &self,
        _endpoint: Endpoint,
        _body: &[u8],
    ) -> Result<ResponseSummary, serde_json::Error> {
        Err(serde::de::Error::custom("not decoded yet"))
    }

    fn stream_fold(&self, _endpoint: Endpoint) -> Fold {
        Fold::Pending
    }

    fn input_messages(&self, _call: &LlmCall) -> Option<Value> {
        None
    }

    fn system_instructions(&self, _call: &LlmCall) -> Option<Value> {
        None
    }

    fn output_messages(&self, _call: &LlmCall) -> Option<Value> {
        None
    }

    fn tool_definitions(&self, _call: &LlmCall) -> Option<Value> {
        None
    }

    fn native_request(&self, call: &LlmCall) -> Value {
        Value::Object(crate::wire::content::record_map(call))
    }

    fn native_input(&self, _call: &LlmCall) -> Option<Value> {
        None
    }

    fn native_output(&self, call: &LlmCall) -> Option<Value> {
        call.response.as_deref().cloned()
    }
}
