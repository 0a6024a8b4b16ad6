//! Which requests are LLM calls, and of which API family and endpoint.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// An LLM API endpoint the layer knows how to decode: which API family (wire format) and which
/// of its operations. New families add variants, so matches need a wildcard arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Endpoint {
    /// OpenAI `POST .../chat/completions`
    #[serde(rename = "chat.completions")]
    ChatCompletions,
    /// OpenAI `POST .../completions` (legacy text completions)
    #[serde(rename = "completions")]
    Completions,
    /// OpenAI `POST .../embeddings`
    #[serde(rename = "embeddings")]
    Embeddings,
    /// OpenAI `POST .../responses` (Responses API)
    #[serde(rename = "responses")]
    Responses,
    /// Anthropic `POST .../v1/messages` (Messages API)
    #[serde(rename = "anthropic.messages")]
    AnthropicMessages,
    /// Gemini API or Vertex AI `POST .../models/{model}:generateContent`
    #[serde(rename = "gemini.generate_content")]
    GeminiGenerateContent,
    /// Gemini API or Vertex AI `POST .../models/{model}:streamGenerateContent` (SSE with
    /// `?alt=sse`, else one JSON array written piece by piece)
    #[serde(rename = "gemini.stream_generate_content")]
    GeminiStreamGenerateContent,
    /// Gemini API or Vertex AI `POST .../models/{model}:embedContent`
    #[serde(rename = "gemini.embed_content")]
    GeminiEmbedContent,
    /// Gemini API `POST .../models/{model}:batchEmbedContents`
    #[serde(rename = "gemini.batch_embed_contents")]
    GeminiBatchEmbedContents,
    /// AWS Bedrock Runtime `POST .../model/{modelId}/converse`
    #[serde(rename = "bedrock.converse")]
    BedrockConverse,
    /// AWS Bedrock Runtime `POST .../model/{modelId}/converse-stream` (AWS event-stream frames)
    #[serde(rename = "bedrock.converse_stream")]
    BedrockConverseStream,
    /// Ollama `POST .../api/chat` (NDJSON unless `"stream": false`)
    #[serde(rename = "ollama.chat")]
    OllamaChat,
    /// Ollama `POST .../api/generate` (NDJSON unless `"stream": false`)
    #[serde(rename = "ollama.generate")]
    OllamaGenerate,
    /// Ollama `POST .../api/embed`
    #[serde(rename = "ollama.embed")]
    OllamaEmbed,
    /// Ollama `POST .../api/embeddings` (the older embeddings route)
    #[serde(rename = "ollama.embeddings")]
    OllamaEmbeddings,
}

/// The API family an endpoint belongs to: one wire format each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    OpenAi,
    Anthropic,
    Gemini,
    Bedrock,
    Ollama,
}

impl Endpoint {
    /// The endpoint as written in the payload (`chat.completions`, `anthropic.messages`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "chat.completions",
            Endpoint::Completions => "completions",
            Endpoint::Embeddings => "embeddings",
            Endpoint::Responses => "responses",
            Endpoint::AnthropicMessages => "anthropic.messages",
            Endpoint::GeminiGenerateContent => "gemini.generate_content",
            Endpoint::GeminiStreamGenerateContent => "gemini.stream_generate_content",
            Endpoint::GeminiEmbedContent => "gemini.embed_content",
            Endpoint::GeminiBatchEmbedContents => "gemini.batch_embed_contents",
            Endpoint::BedrockConverse => "bedrock.converse",
            Endpoint::BedrockConverseStream => "bedrock.converse_stream",
            Endpoint::OllamaChat => "ollama.chat",
            Endpoint::OllamaGenerate => "ollama.generate",
            Endpoint::OllamaEmbed => "ollama.embed",
            Endpoint::OllamaEmbeddings => "ollama.embeddings",
        }
    }

    /// The OpenTelemetry `gen_ai.operation.name` for this endpoint.
    pub fn operation(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions
            | Endpoint::Responses
            | Endpoint::AnthropicMessages
            | Endpoint::BedrockConverse
            | Endpoint::BedrockConverseStream
            | Endpoint::OllamaChat => "chat",
            Endpoint::GeminiGenerateContent | Endpoint::GeminiStreamGenerateContent => {
                "generate_content"
            }
            Endpoint::Completions | Endpoint::OllamaGenerate => "text_completion",
            Endpoint::Embeddings
            | Endpoint::GeminiEmbedContent
            | Endpoint::GeminiBatchEmbedContents
            | Endpoint::OllamaEmbed
            | Endpoint::OllamaEmbeddings => "embeddings",
        }
    }

    /// The API family (wire format) of this endpoint: `openai` (also every OpenAI-compatible
    /// server) or `anthropic`.
    ///
    /// ```
    /// use llm_observability::Endpoint;
    /// assert_eq!(Endpoint::Responses.api(), "openai");
    /// assert_eq!(Endpoint::AnthropicMessages.api(), "anthropic");
    /// ```
    pub fn api(self) -> &'static str {
        match self.family() {
            Family::OpenAi => "openai",
            Family::Anthropic => "anthropic",
            Family::Gemini => "gemini",
            Family::Bedrock => "bedrock",
            Family::Ollama => "ollama",
        }
    }

    pub(crate) fn family(self) -> Family {
        match self {
            Endpoint::ChatCompletions
            | Endpoint::Completions
            | Endpoint::Embeddings
            | Endpoint::Responses => Family::OpenAi,
            Endpoint::AnthropicMessages => Family::Anthropic,
            Endpoint::GeminiGenerateContent
            | Endpoint::GeminiStreamGenerateContent
            | Endpoint::GeminiEmbedContent
            | Endpoint::GeminiBatchEmbedContents => Family::Gemini,
            Endpoint::BedrockConverse | Endpoint::BedrockConverseStream => Family::Bedrock,
            Endpoint::OllamaChat
            | Endpoint::OllamaGenerate
            | Endpoint::OllamaEmbed
            | Endpoint::OllamaEmbeddings => Family::Ollama,
        }
    }

    /// Classifies a request by method and path, the default rule of the layer: each wire
    /// format is asked in turn.
    ///
    /// OpenAI: POST requests whose path ends in `/chat/completions`, `/completions`,
    /// `/embeddings` or `/responses`, whatever comes before (`/v1`, a proxy prefix, Azure's
    /// `/openai/deployments/{name}`). Anthropic: POST `.../v1/messages` (not
    /// `.../v1/messages/count_tokens`, which is not a model call).
    ///
    /// ```
    /// use llm_observability::Endpoint;
    /// use http::Method;
    /// assert_eq!(Endpoint::classify(&Method::POST, "/v1/chat/completions"), Some(Endpoint::ChatCompletions));
    /// assert_eq!(Endpoint::classify(&Method::POST, "/openai/deployments/gpt4/completions"), Some(Endpoint::Completions));
    /// assert_eq!(Endpoint::classify(&Method::POST, "/v1/messages"), Some(Endpoint::AnthropicMessages));
    /// assert_eq!(Endpoint::classify(&Method::POST, "/v1/messages/count_tokens"), None);
    /// assert_eq!(Endpoint::classify(&Method::GET, "/v1/models"), None);
    /// ```
    pub fn classify(method: &http::Method, path: &str) -> Option<Endpoint> {
        if method != http::Method::POST {
            return None;
        }
        let path = path.strip_suffix('/').unwrap_or(path);
        crate::wire::FORMATS
            .iter()
            .find_map(|format| format.recognise(method, path))
    }
}

/// Whether `text` ends with `suffix`, ASCII case-insensitively: paths (routers that match
/// paths case-insensitively serve `/v1/CHAT/completions` too) and host names.
pub(crate) fn ends_with_ignore_case(text: &str, suffix: &str) -> bool {
    text.len() >= suffix.len()
        && text.as_bytes()[text.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Decides which requests are LLM calls. The default is [`Endpoint::classify`]; install your
/// own with [`LlmObservabilityLayerBuilder::endpoint_matcher`](crate::LlmObservabilityLayerBuilder::endpoint_matcher).
///
/// Any `Fn(&http::request::Parts-like view) -> Option<Endpoint>` closure works:
///
/// ```
/// use llm_observability::{Endpoint, EndpointMatcher};
/// let matcher = EndpointMatcher::new(|method, uri| match uri.path() {
///     "/llm/chat" => Some(Endpoint::ChatCompletions),
///     path => Endpoint::classify(method, path),
/// });
/// let uri: http::Uri = "/llm/chat".parse().unwrap();
/// assert_eq!(matcher.classify(&http::Method::POST, &uri), Some(Endpoint::ChatCompletions));
/// ```
#[derive(Clone)]
pub struct EndpointMatcher(Arc<MatchFn>);

type MatchFn = dyn Fn(&http::Method, &http::Uri) -> Option<Endpoint> + Send + Sync;

impl EndpointMatcher {
    /// A matcher from a closure over the request method and URI.
    pub fn new<F>(f: F) -> Self
    where
        F: Fn(&http::Method, &http::Uri) -> Option<Endpoint> + Send + Sync + 'static,
    {
        EndpointMatcher(Arc::new(f))
    }

    /// Applies the matcher.
    pub fn classify(&self, method: &http::Method, uri: &http::Uri) -> Option<Endpoint> {
        (self.0)(method, uri)
    }
}

impl Default for EndpointMatcher {
    fn default() -> Self {
        EndpointMatcher::new(|method, uri| Endpoint::classify(method, uri.path()))
    }
}

impl fmt::Debug for EndpointMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EndpointMatcher(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    #[test]
    fn classifies_openai_azure_and_anthropic_paths() {
        let cases = [
            ("/v1/chat/completions", Some(Endpoint::ChatCompletions)),
            ("/v1/CHAT/Completions", Some(Endpoint::ChatCompletions)),
            ("/chat/completions", Some(Endpoint::ChatCompletions)),
            ("/v1/completions", Some(Endpoint::Completions)),
            ("/completions/", Some(Endpoint::Completions)),
            ("/v1/embeddings", Some(Endpoint::Embeddings)),
            ("/v1/responses", Some(Endpoint::Responses)),
            ("/beta/chat/completions", Some(Endpoint::ChatCompletions)),
            (
                "/openai/deployments/my-gpt/chat/completions",
                Some(Endpoint::ChatCompletions),
            ),
            (
                "/openai/deployments/ada/embeddings",
                Some(Endpoint::Embeddings),
            ),
            ("/v1/models", None),
            ("/telemetry/runs", None),
            ("/v1/responses/resp_123", None),
            ("/v1/chat/completionsx", None),
            ("/v1/messages", Some(Endpoint::AnthropicMessages)),
            ("/anthropic/v1/messages/", Some(Endpoint::AnthropicMessages)),
            ("/v1/messages/count_tokens", None),
            ("/v1/messages/batches", None),
            ("/v1/threads/thread_1/messages", None),
            ("/v1/complete", None),
        ];
        for (path, want) in cases {
            assert_eq!(Endpoint::classify(&Method::POST, path), want, "{path}");
        }
        assert_eq!(
            Endpoint::classify(&Method::GET, "/v1/chat/completions"),
            None
        );
    }
}
