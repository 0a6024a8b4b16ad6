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
use super::endpoint::{path_ends_with, Endpoint};
use super::summary::ResponseSummary;
use super::WireFormat;
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

/// `/openai/deployments/{name}/...`: Azure's deployment-scoped routes.
fn azure_deployment(path: &str) -> Option<&str> {
    let at = path.find("/openai/deployments/")?;
    let rest = &path[at + "/openai/deployments/".len()..];
    let name = rest.split('/').next()?;
    (!name.is_empty()).then_some(name)
}

impl WireFormat for OpenAi {
    fn recognise(&self, _method: &Method, path: &str) -> Option<Endpoint> {
        let named = |name: &str| path.eq_ignore_ascii_case(name);
        if path_ends_with(path, "/chat/completions") {
            Some(Endpoint::ChatCompletions)
        } else if path_ends_with(path, "/completions") || named("completions") {
            Some(Endpoint::Completions)
        } else if path_ends_with(path, "/embeddings") || named("embeddings") {
            Some(Endpoint::Embeddings)
        } else if path_ends_with(path, "/responses") || named("responses") {
            Some(Endpoint::Responses)
        } else {
            None
        }
    }

    fn provider(&self, _endpoint: Endpoint, host: Option<&str>, path: &str) -> &'static str {
        let host = host.unwrap_or("").to_ascii_lowercase();
        let azure_host = host.ends_with(AZURE_OPENAI_HOST)
            || (path.starts_with("/openai/")
                && AZURE_SERVICES_HOSTS.iter().any(|s| host.ends_with(s)));
        if azure_host || azure_deployment(path).is_some() {
            "azure.ai.openai"
        } else {
            "openai"
        }
    }

    fn path_model(&self, _endpoint: Endpoint, path: &str) -> Option<String> {
        azure_deployment(path).map(str::to_owned)
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
        let azure = "/openai/deployments/my-gpt4o/chat/completions";
        assert_eq!(
            OpenAi.provider(Endpoint::ChatCompletions, Some("x.openai.azure.com"), azure),
            "azure.ai.openai"
        );
        assert_eq!(
            OpenAi.provider(
                Endpoint::ChatCompletions,
                Some("res.cognitiveservices.azure.com"),
                "/openai/v1/chat/completions"
            ),
            "azure.ai.openai"
        );
        assert_eq!(
            OpenAi.provider(Endpoint::ChatCompletions, Some("localhost"), azure),
            "azure.ai.openai"
        );
        assert_eq!(
            OpenAi.provider(
                Endpoint::ChatCompletions,
                Some("api.openai.com"),
                "/v1/chat/completions"
            ),
            "openai"
        );
        assert_eq!(
            OpenAi
                .path_model(Endpoint::ChatCompletions, azure)
                .as_deref(),
            Some("my-gpt4o")
        );
        assert_eq!(
            OpenAi.path_model(Endpoint::ChatCompletions, "/v1/chat/completions"),
            None
        );
    }
}
