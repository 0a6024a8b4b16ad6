//! The OpenAI wire format (and every server that speaks it: Azure OpenAI, vLLM, Ollama's `/v1`,
//! OpenRouter, DeepSeek, ...): chat completions, legacy completions, embeddings and the
//! Responses API.

pub(crate) mod assemble;
pub(crate) mod content;
pub(crate) mod include_usage;
pub(crate) mod request;
pub(crate) mod response;

use http::Method;
use serde_json::Value;

use super::assemble::Fold;
use super::endpoint::{ends_with_ignore_case, Endpoint};
use super::summary::ResponseSummary;
use super::{Route, WireFormat};
use crate::payload::{LlmCall, RequestRecord};
use assemble::OpenAiFold;

/// The OpenAI wire format.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OpenAi;

/// Hosts of Azure OpenAI resources.
const AZURE_OPENAI_HOST: &str = ".openai.azure.com";
/// Azure AI Services and AI Foundry hosts, which serve Azure OpenAI under `/openai/` (and other
/// APIs elsewhere).
const AZURE_SERVICES_HOSTS: [&str; 2] = [".cognitiveservices.azure.com", ".services.ai.azure.com"];

/// The deployment of Azure's deployment-scoped routes, `/openai/deployments/{name}/...` (under
/// any prefix). Walks the path's segments: no substring search to set up for each call.
fn azure_deployment(path: &str) -> Option<&str> {
    let mut segments = path.split('/');
    while let Some(segment) = segments.next() {
        if segment == "openai" {
            let mut rest = segments.clone();
            if rest.next() == Some("deployments") {
                return rest.next().filter(|name| !name.is_empty());
            }
        }
    }
    None
}

impl WireFormat for OpenAi {
    fn recognise(&self, _method: &Method, path: &str) -> Option<Endpoint> {
        let named = |name: &str| path.eq_ignore_ascii_case(name);
        if ends_with_ignore_case(path, "/chat/completions") {
            Some(Endpoint::ChatCompletions)
        } else if ends_with_ignore_case(path, "/completions") || named("completions") {
            Some(Endpoint::Completions)
        } else if ends_with_ignore_case(path, "/embeddings") || named("embeddings") {
            Some(Endpoint::Embeddings)
        } else if ends_with_ignore_case(path, "/responses") || named("responses") {
            Some(Endpoint::Responses)
        } else {
            None
        }
    }

    fn route(&self, _endpoint: Endpoint, host: Option<&str>, path: &str) -> Route {
        let host = host.unwrap_or("");
        let deployment = azure_deployment(path);
        let azure = deployment.is_some()
            || ends_with_ignore_case(host, AZURE_OPENAI_HOST)
            || (path.starts_with("/openai/")
                && AZURE_SERVICES_HOSTS
                    .iter()
                    .any(|suffix| ends_with_ignore_case(host, suffix)));
        Route {
            provider: if azure { "azure.ai.openai" } else { "openai" },
            model: deployment.map(str::to_owned),
        }
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
        endpoint: Endpoint,
        body: &[u8],
    ) -> Result<ResponseSummary, serde_json::Error> {
        response::decode_json_response(endpoint, body)
    }

    fn stream_fold(&self, endpoint: Endpoint) -> Fold {
        Fold::OpenAi(OpenAiFold::new(endpoint))
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
    fn azure_hosts_and_deployment_paths() {
        let route = |host, path| OpenAi.route(Endpoint::ChatCompletions, Some(host), path);
        let azure = "/openai/deployments/my-gpt4o/chat/completions";
        assert_eq!(
            route("x.openai.azure.com", azure),
            Route {
                provider: "azure.ai.openai",
                model: Some("my-gpt4o".into())
            }
        );
        assert_eq!(
            route("RES.OpenAI.Azure.com", "/openai/v1/chat/completions"),
            Route::provider("azure.ai.openai")
        );
        assert_eq!(
            route(
                "res.cognitiveservices.azure.com",
                "/openai/v1/chat/completions"
            )
            .provider,
            "azure.ai.openai"
        );
        // Not under `/openai/`: another API of the AI Services host.
        assert_eq!(
            route("res.services.ai.azure.com", "/models/chat/completions").provider,
            "openai"
        );
        // A deployment path behind a gateway on any host, under a prefix.
        assert_eq!(
            route("localhost", "/azure/openai/deployments/d1/embeddings"),
            Route {
                provider: "azure.ai.openai",
                model: Some("d1".into())
            }
        );
        assert_eq!(
            route("api.openai.com", "/v1/chat/completions"),
            Route::provider("openai")
        );
        assert_eq!(
            route("h", "/openai/deployments//chat/completions").model,
            None
        );
        assert_eq!(
            OpenAi.route(Endpoint::Embeddings, None, "/v1/embeddings"),
            Route::provider("openai")
        );
    }
}
