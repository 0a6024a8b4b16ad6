//! Which requests are LLM calls, and of which OpenAI endpoint.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// An OpenAI-shaped endpoint the layer knows how to decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Endpoint {
    /// `POST .../chat/completions`
    #[serde(rename = "chat.completions")]
    ChatCompletions,
    /// `POST .../completions` (legacy text completions)
    #[serde(rename = "completions")]
    Completions,
    /// `POST .../embeddings`
    #[serde(rename = "embeddings")]
    Embeddings,
    /// `POST .../responses` (Responses API)
    #[serde(rename = "responses")]
    Responses,
}

impl Endpoint {
    /// The endpoint as written in the payload (`chat.completions`, `completions`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "chat.completions",
            Endpoint::Completions => "completions",
            Endpoint::Embeddings => "embeddings",
            Endpoint::Responses => "responses",
        }
    }

    /// The OpenTelemetry `gen_ai.operation.name` for this endpoint.
    pub fn operation(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions | Endpoint::Responses => "chat",
            Endpoint::Completions => "text_completion",
            Endpoint::Embeddings => "embeddings",
        }
    }

    /// Classifies a request by method and path, the default rule of the layer.
    ///
    /// POST requests whose path ends in `/chat/completions`, `/completions`, `/embeddings` or
    /// `/responses` match, whatever comes before (`/v1`, a proxy prefix, Azure's
    /// `/openai/deployments/{name}`).
    ///
    /// ```
    /// use llm_observability::Endpoint;
    /// use http::Method;
    /// assert_eq!(Endpoint::classify(&Method::POST, "/v1/chat/completions"), Some(Endpoint::ChatCompletions));
    /// assert_eq!(Endpoint::classify(&Method::POST, "/openai/deployments/gpt4/completions"), Some(Endpoint::Completions));
    /// assert_eq!(Endpoint::classify(&Method::GET, "/v1/models"), None);
    /// ```
    pub fn classify(method: &http::Method, path: &str) -> Option<Endpoint> {
        if method != http::Method::POST {
            return None;
        }
        let path = path.strip_suffix('/').unwrap_or(path);
        // Routers that match paths case-insensitively serve `/v1/CHAT/completions` too.
        let ends_with = |suffix: &str| {
            path.len() >= suffix.len()
                && path.as_bytes()[path.len() - suffix.len()..]
                    .eq_ignore_ascii_case(suffix.as_bytes())
        };
        let named = |name: &str| path.eq_ignore_ascii_case(name);
        if ends_with("/chat/completions") {
            Some(Endpoint::ChatCompletions)
        } else if ends_with("/completions") || named("completions") {
            Some(Endpoint::Completions)
        } else if ends_with("/embeddings") || named("embeddings") {
            Some(Endpoint::Embeddings)
        } else if ends_with("/responses") || named("responses") {
            Some(Endpoint::Responses)
        } else {
            None
        }
    }
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
    fn classifies_openai_and_azure_paths() {
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
