//! The Anthropic Messages API (`POST .../v1/messages`): JSON and SSE responses, usage with the
//! prompt cache's reads and writes, content blocks (text, tool use, thinking, server tools).

pub(crate) mod assemble;
pub(crate) mod content;
pub(crate) mod request;
pub(crate) mod response;

use http::Method;
use serde_json::Value;

use super::assemble::Fold;
use super::endpoint::{ends_with_ignore_case, Endpoint};
use super::summary::ResponseSummary;
use super::{Route, WireFormat};
use crate::payload::{LlmCall, RequestRecord};

/// The Anthropic wire format.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Anthropic;

impl WireFormat for Anthropic {
    fn recognise(&self, _method: &Method, path: &str) -> Option<Endpoint> {
        // Not `.../v1/messages/count_tokens` or `.../batches`, nor OpenAI's
        // `/v1/threads/{id}/messages`.
        ends_with_ignore_case(path, "/v1/messages").then_some(Endpoint::AnthropicMessages)
    }

    fn route(&self, _endpoint: Endpoint, _host: Option<&str>, _path: &str) -> Route {
        Route::provider("anthropic")
    }

    fn decode_request(
        &self,
        _endpoint: Endpoint,
        body: &[u8],
    ) -> Result<RequestRecord, serde_json::Error> {
        request::decode_request(body)
    }

    fn decode_response(
        &self,
        _endpoint: Endpoint,
        body: &[u8],
    ) -> Result<ResponseSummary, serde_json::Error> {
        response::decode_json_response(body)
    }

    fn stream_fold(&self, _endpoint: Endpoint) -> Fold {
        Fold::Anthropic(Box::default())
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
