//! AWS Bedrock Runtime's Converse API: `POST .../model/{modelId}/converse` (JSON) and
//! `.../converse-stream` (AWS event-stream binary frames). The model id is percent-encoded in the
//! path (an inference-profile ARN holds an encoded `/`).

pub(crate) mod assemble;
pub(crate) mod content;
pub(crate) mod request;
pub(crate) mod response;

use http::Method;
use serde_json::Value;

use super::assemble::Fold;
use super::endpoint::Endpoint;
use super::framing::Framing;
use super::summary::ResponseSummary;
use super::{Route, WireFormat};
use crate::payload::{LlmCall, RequestRecord};

/// The Bedrock Converse wire format.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bedrock;

/// The model id segment of `.../model/{modelId}/converse[-stream]`, as sent (percent-encoded).
fn encoded_model_id(path: &str) -> Option<&str> {
    let rest = path
        .strip_suffix("/converse")
        .or_else(|| path.strip_suffix("/converse-stream"))?;
    let (before, id) = rest.rsplit_once('/')?;
    (before.ends_with("/model") || before == "model")
        .then_some(id)
        .filter(|id| !id.is_empty())
}

impl WireFormat for Bedrock {
    fn recognise(&self, _method: &Method, path: &str) -> Option<Endpoint> {
        encoded_model_id(path)?;
        if path.ends_with("/converse-stream") {
            Some(Endpoint::BedrockConverseStream)
        } else {
            Some(Endpoint::BedrockConverse)
        }
    }

    fn route(&self, _endpoint: Endpoint, _host: Option<&str>, path: &str) -> Route {
        let model = encoded_model_id(path).map(|id| {
            percent_encoding::percent_decode_str(id)
                .decode_utf8_lossy()
                .into_owned()
        });
        Route {
            provider: "aws.bedrock",
            model,
        }
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
        _endpoint: Endpoint,
        body: &[u8],
    ) -> Result<ResponseSummary, serde_json::Error> {
        response::decode_json_response(body)
    }

    fn stream_fold(&self, _endpoint: Endpoint) -> Fold {
        Fold::Bedrock(Box::default())
    }

    fn stream_framing(&self, endpoint: Endpoint) -> Option<Framing> {
        (endpoint == Endpoint::BedrockConverseStream).then_some(Framing::EventStream)
    }

    fn response_id_header(&self, _endpoint: Endpoint) -> Option<&'static str> {
        Some("x-amzn-requestid")
    }

    fn error_type_header(&self, _endpoint: Endpoint) -> Option<&'static str> {
        Some("x-amzn-errortype")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converse_paths_with_encoded_model_ids() {
        let post = Method::POST;
        let plain = "/model/us.amazon.nova-2-lite-v1%3A0/converse";
        assert_eq!(
            Bedrock.recognise(&post, plain),
            Some(Endpoint::BedrockConverse)
        );
        assert_eq!(
            Bedrock
                .route(Endpoint::BedrockConverse, None, plain)
                .model
                .as_deref(),
            Some("us.amazon.nova-2-lite-v1:0")
        );
        let arn = "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aapplication-inference-profile%2Fabc/converse-stream";
        assert_eq!(
            Bedrock.recognise(&post, arn),
            Some(Endpoint::BedrockConverseStream)
        );
        assert_eq!(
            Bedrock
                .route(Endpoint::BedrockConverseStream, None, arn)
                .model
                .as_deref(),
            Some("arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc")
        );
        assert_eq!(
            Bedrock.recognise(&post, "/model/anthropic.claude-v2/invoke"),
            None
        );
        assert_eq!(
            Bedrock.recognise(&post, "/agents/A/agentAliases/B/sessions/S/text"),
            None
        );
        assert_eq!(Bedrock.recognise(&post, "/converse"), None);
    }
}
