//! Google's Gemini API (`generativelanguage.googleapis.com`) and Vertex AI's Gemini models
//! (`.../projects/*/locations/*/publishers/google/models/{m}`): `generateContent`,
//! `streamGenerateContent` (SSE with `?alt=sse`, else one JSON array written piece by piece),
//! `embedContent`, `batchEmbedContents`.

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

/// The Gemini (and Vertex AI Gemini) wire format.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Gemini;

/// `.../models/{model}:{method}`: the model and the method, from the path's last two segments.
fn model_and_method(path: &str) -> Option<(&str, &str)> {
    let (rest, last) = path.rsplit_once('/')?;
    let (model, method) = last.split_once(':')?;
    let collection = rest.rsplit('/').next()?;
    (collection.eq_ignore_ascii_case("models") && !model.is_empty()).then_some((model, method))
}

/// The methods recorded, by name. Names are matched in any case, as the other families'
/// paths are: a server that routes `:GenerateContent` is recorded, and the proxy's lenient
/// view of a path (lowercased) finds the call it would be.
const METHODS: [(&str, Endpoint); 4] = [
    ("generateContent", Endpoint::GeminiGenerateContent),
    (
        "streamGenerateContent",
        Endpoint::GeminiStreamGenerateContent,
    ),
    ("embedContent", Endpoint::GeminiEmbedContent),
    ("batchEmbedContents", Endpoint::GeminiBatchEmbedContents),
];

impl WireFormat for Gemini {
    fn recognise(&self, _method: &Method, path: &str) -> Option<Endpoint> {
        let (_, method) = model_and_method(path)?;
        (METHODS.iter())
            .find(|(name, _)| name.eq_ignore_ascii_case(method))
            .map(|&(_, endpoint)| endpoint)
    }

    fn route(&self, _endpoint: Endpoint, host: Option<&str>, path: &str) -> Route {
        let vertex = path.contains("/publishers/google/models/")
            || ends_with_ignore_case(host.unwrap_or(""), "aiplatform.googleapis.com");
        Route {
            provider: if vertex {
                "gcp.vertex_ai"
            } else {
                "gcp.gemini"
            },
            model: model_and_method(path).map(|(model, _)| model.to_owned()),
        }
    }

    fn stream_framing(&self, endpoint: Endpoint) -> Option<Framing> {
        // Without `?alt=sse` a stream is one JSON array; with it the response is SSE, which
        // its content type (or its first bytes) says.
        (endpoint == Endpoint::GeminiStreamGenerateContent).then_some(Framing::JsonArray)
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

    fn stream_fold(&self, _endpoint: Endpoint) -> Fold {
        Fold::Gemini(Box::default())
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
    fn gemini_and_vertex_paths() {
        let post = Method::POST;
        let path = "/v1beta/models/gemini-2.0-flash:streamGenerateContent";
        assert_eq!(
            Gemini.recognise(&post, path),
            Some(Endpoint::GeminiStreamGenerateContent)
        );
        assert_eq!(
            Gemini.route(
                Endpoint::GeminiStreamGenerateContent,
                Some("generativelanguage.googleapis.com"),
                path
            ),
            Route {
                provider: "gcp.gemini",
                model: Some("gemini-2.0-flash".into())
            }
        );
        let vertex = "/v1/projects/p/locations/us-central1/publishers/google/models/gemini-2.5-pro:generateContent";
        assert_eq!(
            Gemini.recognise(&post, vertex),
            Some(Endpoint::GeminiGenerateContent)
        );
        assert_eq!(
            Gemini.route(
                Endpoint::GeminiGenerateContent,
                Some("us-central1-aiplatform.googleapis.com"),
                vertex
            ),
            Route {
                provider: "gcp.vertex_ai",
                model: Some("gemini-2.5-pro".into())
            }
        );
        assert_eq!(
            Gemini.recognise(
                &post,
                "/v1beta/models/text-embedding-004:batchEmbedContents"
            ),
            Some(Endpoint::GeminiBatchEmbedContents)
        );
        assert_eq!(
            Gemini.recognise(&post, "/v1beta/models/gemini-2.0-flash:countTokens"),
            None
        );
        assert_eq!(
            Gemini.recognise(&post, "/V1BETA/MODELS/gemini-2.0-flash:GENERATECONTENT"),
            Some(Endpoint::GeminiGenerateContent)
        );
        // Not recorded yet (the README lists them): Claude on Vertex, tuned-model endpoints.
        for path in [
            "/v1/projects/p/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-5:streamRawPredict",
            "/v1/projects/p/locations/us-central1/endpoints/123:generateContent",
        ] {
            assert_eq!(Gemini.recognise(&post, path), None, "{path}");
        }
        assert_eq!(Gemini.recognise(&post, "/v1beta/cachedContents"), None);
        assert_eq!(Gemini.recognise(&post, "/v1beta/interactions"), None);
        assert_eq!(
            Gemini.recognise(&post, "/v1beta/tunedModels/x:generateContent"),
            None
        );
    }
}
