//! The OpenInference attributes of a call: what Arize Phoenix (and other OpenInference
//! readers) show for an LLM span. A pure function of [`LlmCall`], next to the OpenTelemetry
//! GenAI attributes of the [GenAI mapping](crate::genai) that every OTLP span carries; the model comes
//! from the same fields, and nothing here re-decides what the GenAI mapping says.
//!
//! Names follow the OpenInference semantic conventions (`openinference-semantic-conventions`
//! 0.1.x): `openinference.span.kind`, `llm.*`, `embedding.*`, `input.value`, `output.value`,
//! `user.id`, `session.id`, `tag.tags`, `metadata`.
//!
//! ```
//! use llm_observability::genai::AttributeValue;
//! use llm_observability::sink::otlp::{find_attribute, openinference};
//! use llm_observability::{Endpoint, LlmCall, Usage};
//!
//! let mut call = LlmCall::new(Endpoint::ChatCompletions);
//! call.request.model = Some("gpt-4o-mini".into());
//! call.request.messages = Some(serde_json::json!([{"role": "user", "content": "Hi"}]).into());
//! call.usage = Some(Usage::new(12, 5));
//! let attributes = openinference::attributes(&call, true);
//! let get = |key| find_attribute(&attributes, key).cloned();
//! assert_eq!(get("openinference.span.kind"), Some(AttributeValue::Str("LLM".into())));
//! assert_eq!(get("llm.token_count.total"), Some(AttributeValue::Int(17)));
//! assert_eq!(
//!     get("llm.input_messages.0.message.content"),
//!     Some(AttributeValue::Str("Hi".into())),
//! );
//! ```

use serde_json::{json, Map, Value};

use super::presets::{self, PresetAttribute, RESERVED_METADATA};
use crate::genai::{self, AttributeValue};
use crate::payload::LlmCall;
use crate::wire::endpoint::Family;

/// `openinference.span.kind`.
pub const SPAN_KIND: &str = "openinference.span.kind";
/// `llm.model_name`: the model that answered, else the one requested.
pub const LLM_MODEL_NAME: &str = "llm.model_name";
/// `llm.request.model_name`.
pub const LLM_REQUEST_MODEL_NAME: &str = "llm.request.model_name";
/// `llm.response.model_name`.
pub const LLM_RESPONSE_MODEL_NAME: &str = "llm.response.model_name";
/// `llm.provider`: who hosts the model (`openai`, `azure`, `anthropic`, ...).
pub const LLM_PROVIDER: &str = "llm.provider";
/// `llm.system`: the shape of the API, under OpenInference's names (`openai`, `anthropic`,
/// `vertexai`; see [`system`]).
pub const LLM_SYSTEM: &str = "llm.system";
/// `llm.invocation_parameters`: the request's parameters as a JSON object.
pub const LLM_INVOCATION_PARAMETERS: &str = "llm.invocation_parameters";
/// `llm.token_count.prompt`: every input token, cache reads and writes included.
pub const LLM_TOKEN_COUNT_PROMPT: &str = "llm.token_count.prompt";
/// `llm.token_count.completion`.
pub const LLM_TOKEN_COUNT_COMPLETION: &str = "llm.token_count.completion";
/// `llm.token_count.total`.
pub const LLM_TOKEN_COUNT_TOTAL: &str = "llm.token_count.total";
/// `llm.token_count.prompt_details.cache_read`.
pub const LLM_TOKEN_COUNT_CACHE_READ: &str = "llm.token_count.prompt_details.cache_read";
/// `llm.token_count.prompt_details.cache_write`: input tokens written to the prompt cache.
pub const LLM_TOKEN_COUNT_CACHE_WRITE: &str = "llm.token_count.prompt_details.cache_write";
/// `llm.token_count.completion_details.reasoning`.
pub const LLM_TOKEN_COUNT_REASONING: &str = "llm.token_count.completion_details.reasoning";
/// `llm.finish_reason` (of the first choice).
pub const LLM_FINISH_REASON: &str = "llm.finish_reason";
/// `llm.cost.total`, in USD.
pub const LLM_COST_TOTAL: &str = "llm.cost.total";
/// `llm.cost.prompt`, in USD: every input token, cache reads and writes included.
pub const LLM_COST_PROMPT: &str = "llm.cost.prompt";
/// `llm.cost.completion`, in USD.
pub const LLM_COST_COMPLETION: &str = "llm.cost.completion";
/// `llm.cost.prompt_details.cache_read`, in USD.
pub const LLM_COST_CACHE_READ: &str = "llm.cost.prompt_details.cache_read";
/// `llm.cost.prompt_details.cache_write`, in USD.
pub const LLM_COST_CACHE_WRITE: &str = "llm.cost.prompt_details.cache_write";
/// `embedding.model_name`.
pub const EMBEDDING_MODEL_NAME: &str = "embedding.model_name";
/// `embedding.invocation_parameters`.
pub const EMBEDDING_INVOCATION_PARAMETERS: &str = "embedding.invocation_parameters";
/// `input.value`: the request as its provider's JSON ([`genai::native_request`]).
pub const INPUT_VALUE: &str = "input.value";
/// `input.mime_type`.
pub const INPUT_MIME_TYPE: &str = "input.mime_type";
/// `output.value`: the response as JSON.
pub const OUTPUT_VALUE: &str = "output.value";
/// `output.mime_type`.
pub const OUTPUT_MIME_TYPE: &str = "output.mime_type";
/// `user.id`.
pub const USER_ID: &str = "user.id";
/// `session.id`.
pub const SESSION_ID: &str = "session.id";
/// `tag.tags`.
pub const TAG_TAGS: &str = "tag.tags";
/// `metadata`: the call's other metadata, as a JSON object.
pub const METADATA: &str = "metadata";
/// The resource attribute naming the Phoenix project.
pub const PROJECT_NAME: &str = "openinference.project.name";

const JSON_MIME: &str = "application/json";

/// The request fields that are content, not parameters, under every API family's names.
const CONTENT_FIELDS: [&str; 6] = [
    "messages",
    "prompt",
    "input",
    "instructions",
    "system",
    "tools",
];

/// The request fields that describe the output format (left out with the content).
const FORMAT_FIELDS: [&str; 3] = ["response_format", "text", "output_format"];

/// Every OpenInference attribute of `call`. With `content` false, nothing the call said or
/// was told is included (messages, prompts, tools, input and output values), as with the
/// GenAI attributes; counts, model, parameters and metadata are.
pub fn attributes(call: &LlmCall, content: bool) -> Vec<PresetAttribute<'_>> {
    let mut out = Vec::with_capacity(24);
    let embeddings = call.operation == "embeddings";
    out.push(PresetAttribute::str(
        SPAN_KIND,
        if embeddings { "EMBEDDING" } else { "LLM" },
    ));
    if let Some(model) = presets::model(call) {
        out.push(PresetAttribute::str(
            if embeddings {
                EMBEDDING_MODEL_NAME
            } else {
                LLM_MODEL_NAME
            },
            model,
        ));
    }
    if !embeddings {
        if let Some(model) = call.requested_model() {
            out.push(PresetAttribute::str(LLM_REQUEST_MODEL_NAME, model));
        }
        if let Some(model) = &call.response_model {
            out.push(PresetAttribute::str(
                LLM_RESPONSE_MODEL_NAME,
                model.as_str(),
            ));
        }
    }
    out.push(PresetAttribute::str(LLM_PROVIDER, provider(&call.provider)));
    if let Some(system) = system(call) {
        out.push(PresetAttribute::str(LLM_SYSTEM, system));
    }
    if let Some(parameters) = invocation_parameters(call, content) {
        out.push(PresetAttribute::json(
            if embeddings {
                EMBEDDING_INVOCATION_PARAMETERS
            } else {
                LLM_INVOCATION_PARAMETERS
            },
            &parameters,
        ));
    }
    token_counts(call, &mut out);
    if let Some(cost) = &call.cost {
        out.push(PresetAttribute::float(LLM_COST_TOTAL, cost.total_usd));
        out.push(PresetAttribute::float(
            LLM_COST_PROMPT,
            cost.input_usd + cost.cache_read_usd + cost.cache_write_usd,
        ));
        out.push(PresetAttribute::float(LLM_COST_COMPLETION, cost.output_usd));
        out.push(PresetAttribute::float(
            LLM_COST_CACHE_READ,
            cost.cache_read_usd,
        ));
        out.push(PresetAttribute::float(
            LLM_COST_CACHE_WRITE,
            cost.cache_write_usd,
        ));
    }
    if let Some(reason) = call.finish_reasons.first() {
        out.push(PresetAttribute::str(LLM_FINISH_REASON, reason.as_str()));
    }
    if content {
        content_attributes(call, &mut out);
    }
    if let Some(user) = presets::user_id(call) {
        out.push(PresetAttribute::str(USER_ID, user));
    }
    if let Some(session) = presets::session_id(call) {
        out.push(PresetAttribute::str(SESSION_ID, session));
    }
    let tags = presets::tags(call);
    if !tags.is_empty() {
        out.push(PresetAttribute::new(
            TAG_TAGS,
            AttributeValue::StrArray(tags),
        ));
    }
    let other: Map<String, Value> = call
        .metadata
        .iter()
        .filter(|(key, _)| !RESERVED_METADATA.contains(&key.as_str()))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    if !other.is_empty() {
        out.push(PresetAttribute::json(METADATA, &Value::Object(other)));
    }
    out
}

/// OpenInference's `llm.system` for a call — the shape of its API, from OpenInference's list
/// (`openai`, `anthropic`, `cohere`, `mistralai`, `vertexai`): `openai` and `anthropic` for
/// those APIs, `vertexai` for Gemini on Vertex AI (as OpenInference's Vertex AI
/// instrumentation writes). `None` for the Gemini API, Bedrock Converse and Ollama, which the
/// list has no name for: OpenInference's own instrumentations of them set `llm.provider`
/// (`google`, `aws`, `ollama`) and no `llm.system`.
pub fn system(call: &LlmCall) -> Option<&'static str> {
    match call.endpoint.family() {
        Family::OpenAi => Some("openai"),
        Family::Anthropic => Some("anthropic"),
        Family::Gemini if call.provider == "gcp.vertex_ai" => Some("vertexai"),
        Family::Gemini | Family::Bedrock | Family::Ollama => None,
    }
}

/// OpenInference's `llm.provider` for a GenAI `gen_ai.provider.name`.
pub fn provider(genai_provider: &str) -> &str {
    match genai_provider {
        "azure.ai.openai" | "azure.ai.inference" => "azure",
        "aws.bedrock" => "aws",
        "gcp.gemini" | "gcp.vertex_ai" | "gcp.gen_ai" => "google",
        "x_ai" => "xai",
        "mistral_ai" => "mistralai",
        other => other,
    }
}

/// The request's parameters under its API's own names (model and `stream` included, content
/// left out) as a JSON object; `None` when the request was not decoded.
fn invocation_parameters(call: &LlmCall, content: bool) -> Option<Value> {
    let Value::Object(mut request) = genai::native_request(call) else {
        return None;
    };
    request.insert("stream".into(), Value::Bool(call.request.stream));
    for field in CONTENT_FIELDS {
        request.remove(field);
    }
    if !content {
        for field in FORMAT_FIELDS {
            request.remove(field);
        }
    }
    request.retain(|_, value| !value.is_null());
    Some(Value::Object(request))
}

fn token_counts<'a>(call: &'a LlmCall, out: &mut Vec<PresetAttribute<'a>>) {
    let Some(usage) = &call.usage else { return };
    let total = usage.total_tokens.or_else(|| {
        usage
            .input_tokens
            .zip(usage.output_tokens)
            .map(|(input, output)| input.saturating_add(output))
    });
    let counts = [
        (LLM_TOKEN_COUNT_PROMPT, usage.input_tokens),
        (LLM_TOKEN_COUNT_COMPLETION, usage.output_tokens),
        (LLM_TOKEN_COUNT_TOTAL, total),
        (LLM_TOKEN_COUNT_CACHE_READ, usage.cached_input_tokens),
        (
            LLM_TOKEN_COUNT_CACHE_WRITE,
            usage.cache_creation_input_tokens,
        ),
        (LLM_TOKEN_COUNT_REASONING, usage.reasoning_tokens),
    ];
    for (key, count) in counts {
        if let Some(count) = count {
            out.push(PresetAttribute::int(key, count));
        }
    }
}

fn content_attributes<'a>(call: &'a LlmCall, out: &mut Vec<PresetAttribute<'a>>) {
    let request = &call.request;
    out.push(PresetAttribute::str(
        INPUT_VALUE,
        genai::native_request(call).to_string(),
    ));
    out.push(PresetAttribute::str(INPUT_MIME_TYPE, JSON_MIME));
    if let Some(response) = &call.response {
        out.push(PresetAttribute::str(OUTPUT_VALUE, response.text()));
        out.push(PresetAttribute::str(OUTPUT_MIME_TYPE, JSON_MIME));
    }
    // The messages as the GenAI mapping reads them (system instructions first), flattened
    // into OpenInference's indexed attributes.
    let mut input = Vec::new();
    if let Some(Value::Array(parts)) = genai::system_instructions(call) {
        input.push(json!({"role": "system", "parts": parts}));
    }
    if let Some(Value::Array(messages)) = genai::input_messages(call) {
        input.extend(messages);
    }
    for (i, message) in input.iter().enumerate() {
        message_attributes(&format!("llm.input_messages.{i}.message."), message, out);
    }
    if let Some(Value::Array(messages)) = genai::output_messages(call) {
        for (i, message) in messages.iter().enumerate() {
            message_attributes(&format!("llm.output_messages.{i}.message."), message, out);
        }
    }
    if call.operation == "embeddings" {
        let texts: Vec<&str> = match request.input.as_deref() {
            Some(Value::String(text)) => vec![text.as_str()],
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        for (i, text) in texts.into_iter().enumerate() {
            out.push(PresetAttribute::str(
                format!("embedding.embeddings.{i}.embedding.text"),
                text,
            ));
        }
    }
    // Tools as the request sent them: OpenInference recommends OpenAI's tool format.
    if let Some(Value::Array(tools)) = request.tools.as_deref() {
        for (i, tool) in tools.iter().enumerate() {
            out.push(PresetAttribute::json(
                format!("llm.tools.{i}.tool.json_schema"),
                tool,
            ));
            let function = if tool["function"].is_object() {
                &tool["function"]
            } else {
                tool
            };
            if let Some(name) = function["name"].as_str() {
                out.push(PresetAttribute::str(
                    format!("llm.tools.{i}.tool.name"),
                    name,
                ));
            }
            if let Some(description) = function["description"].as_str() {
                out.push(PresetAttribute::str(
                    format!("llm.tools.{i}.tool.description"),
                    description,
                ));
            }
        }
    }
}

/// One message of the GenAI mapping (`{role, parts, name?}`) as OpenInference message
/// attributes under `prefix` (`llm.input_messages.N.message.`): text parts joined as
/// `content` (or, with images or reasoning, each part in order under
/// `contents.K.message_content.`: `text`, `image`, `reasoning` with its text), tool calls as
/// `tool_calls.M.tool_call.*` (arguments as JSON text), a tool response as `content` with its
/// `tool_call_id`.
fn message_attributes<'a>(prefix: &str, message: &Value, out: &mut Vec<PresetAttribute<'a>>) {
    if let Some(role) = message["role"].as_str() {
        out.push(PresetAttribute::str(
            format!("{prefix}role"),
            role.to_owned(),
        ));
    }
    if let Some(name) = message["name"].as_str() {
        out.push(PresetAttribute::str(
            format!("{prefix}name"),
            name.to_owned(),
        ));
    }
    let parts = message["parts"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let is_text = |part: &Value| part["type"] == "text";
    let is_media = |part: &Value| matches!(part["type"].as_str(), Some("uri" | "blob"));
    let is_reasoning = |part: &Value| part["type"] == "reasoning";
    if parts.iter().any(|p| is_media(p) || is_reasoning(p)) {
        let mut k = 0;
        for part in parts
            .iter()
            .filter(|p| is_text(p) || is_media(p) || is_reasoning(p))
        {
            let at = format!("{prefix}contents.{k}.message_content.");
            if is_text(part) || is_reasoning(part) {
                let kind = if is_text(part) { "text" } else { "reasoning" };
                out.push(PresetAttribute::str(format!("{at}type"), kind));
                out.push(PresetAttribute::str(
                    format!("{at}text"),
                    text_of(&part["content"]),
                ));
            } else if part["modality"] == "image" {
                out.push(PresetAttribute::str(format!("{at}type"), "image"));
                let url = match (part["uri"].as_str(), part["mime_type"].as_str()) {
                    (Some(uri), _) => uri.to_owned(),
                    (None, Some(mime)) => {
                        format!("data:{mime};base64,{}", text_of(&part["content"]))
                    }
                    (None, None) => continue,
                };
                out.push(PresetAttribute::str(format!("{at}image.image.url"), url));
            } else {
                continue;
            }
            k += 1;
        }
    } else {
        let text: String = parts
            .iter()
            .filter(|p| is_text(p))
            .map(|p| text_of(&p["content"]))
            .collect();
        if parts.iter().any(is_text) {
            out.push(PresetAttribute::str(format!("{prefix}content"), text));
        }
    }
    let mut m = 0;
    for part in parts {
        match part["type"].as_str() {
            Some("tool_call") => {
                let at = format!("{prefix}tool_calls.{m}.tool_call.");
                if let Some(id) = part["id"].as_str() {
                    out.push(PresetAttribute::str(format!("{at}id"), id.to_owned()));
                }
                if let Some(name) = part["name"].as_str() {
                    out.push(PresetAttribute::str(
                        format!("{at}function.name"),
                        name.to_owned(),
                    ));
                }
                if !part["arguments"].is_null() {
                    out.push(PresetAttribute::str(
                        format!("{at}function.arguments"),
                        text_of(&part["arguments"]),
                    ));
                }
                m += 1;
            }
            Some("tool_call_response") => {
                if let Some(id) = part["id"].as_str() {
                    out.push(PresetAttribute::str(
                        format!("{prefix}tool_call_id"),
                        id.to_owned(),
                    ));
                }
                out.push(PresetAttribute::str(
                    format!("{prefix}content"),
                    text_of(&part["response"]),
                ));
            }
            _ => {}
        }
    }
}

/// A string as it is, anything else as its JSON text.
fn text_of(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::Usage;
    use crate::sink::otlp::presets::find_attribute;
    use crate::Endpoint;

    fn text<'a>(attributes: &'a [PresetAttribute<'a>], key: &str) -> Option<&'a str> {
        match find_attribute(attributes, key)? {
            AttributeValue::Str(text) => Some(text),
            other => panic!("{key} is not a string: {other:?}"),
        }
    }

    #[test]
    fn chat_messages_tool_calls_and_tool_responses() {
        let mut call = LlmCall::new(Endpoint::ChatCompletions);
        call.request.model = Some("gpt-4o".into());
        call.finish_reasons = vec!["stop".into()];
        call.request.messages = Some(
            json!([
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": "https://x.test/cat.png"}}
                ]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function",
                     "function": {"name": "lookup", "arguments": "{\"q\":\"cat\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "a cat"}
            ])
            .into(),
        );
        call.request.tools = Some(
            json!([{"type": "function", "function": {"name": "lookup",
                     "description": "Looks up", "parameters": {"type": "object"}}}])
            .into(),
        );
        call.response = Some(
            json!({"choices": [{"index": 0, "finish_reason": "stop",
                   "message": {"role": "assistant", "content": "A cat."}}]})
            .into(),
        );
        let attributes = attributes(&call, true);
        let at = |key: &str| text(&attributes, key);
        assert_eq!(at("llm.input_messages.0.message.role"), Some("system"));
        assert_eq!(
            at("llm.input_messages.0.message.content"),
            Some("Be brief.")
        );
        assert_eq!(at("llm.input_messages.1.message.role"), Some("user"));
        assert_eq!(
            at("llm.input_messages.1.message.contents.0.message_content.type"),
            Some("text")
        );
        assert_eq!(
            at("llm.input_messages.1.message.contents.0.message_content.text"),
            Some("What is this?")
        );
        assert_eq!(
            at("llm.input_messages.1.message.contents.1.message_content.type"),
            Some("image")
        );
        assert_eq!(
            at("llm.input_messages.1.message.contents.1.message_content.image.image.url"),
            Some("https://x.test/cat.png")
        );
        assert_eq!(at("llm.input_messages.1.message.content"), None);
        assert_eq!(at("llm.input_messages.2.message.role"), Some("assistant"));
        assert_eq!(
            at("llm.input_messages.2.message.tool_calls.0.tool_call.id"),
            Some("call_1")
        );
        assert_eq!(
            at("llm.input_messages.2.message.tool_calls.0.tool_call.function.name"),
            Some("lookup")
        );
        // The arguments as the model sent them (the GenAI mapping parsed them; they print back).
        assert_eq!(
            at("llm.input_messages.2.message.tool_calls.0.tool_call.function.arguments"),
            Some(r#"{"q":"cat"}"#)
        );
        assert_eq!(at("llm.input_messages.3.message.role"), Some("tool"));
        assert_eq!(
            at("llm.input_messages.3.message.tool_call_id"),
            Some("call_1")
        );
        assert_eq!(at("llm.input_messages.3.message.content"), Some("a cat"));
        assert_eq!(at("llm.input_messages.4.message.role"), None);
        assert_eq!(at("llm.output_messages.0.message.role"), Some("assistant"));
        assert_eq!(at("llm.output_messages.0.message.content"), Some("A cat."));
        assert_eq!(at("llm.finish_reason"), Some("stop"));
        assert_eq!(at("llm.tools.0.tool.name"), Some("lookup"));
        assert_eq!(at("llm.tools.0.tool.description"), Some("Looks up"));
        let schema: Value =
            serde_json::from_str(at("llm.tools.0.tool.json_schema").unwrap()).unwrap();
        assert_eq!(schema["function"]["name"], "lookup");
        let parameters: Value =
            serde_json::from_str(at(LLM_INVOCATION_PARAMETERS).unwrap()).unwrap();
        assert_eq!(parameters, json!({"model": "gpt-4o", "stream": false}));
        assert_eq!(at(INPUT_MIME_TYPE), Some("application/json"));
        let input: Value = serde_json::from_str(at(INPUT_VALUE).unwrap()).unwrap();
        assert_eq!(input["messages"][0]["content"], "Be brief.");
        let output: Value = serde_json::from_str(at(OUTPUT_VALUE).unwrap()).unwrap();
        assert_eq!(output["choices"][0]["message"]["content"], "A cat.");

        // No content: none of it.
        let bare = super::attributes(&call, false);
        assert!(
            bare.iter().all(|a| !a.key.starts_with("llm.input_messages")
                && !a.key.starts_with("llm.output_messages")
                && !a.key.starts_with("llm.tools")
                && a.key != INPUT_VALUE
                && a.key != OUTPUT_VALUE),
            "{bare:?}"
        );
        assert_eq!(text(&bare, SPAN_KIND), Some("LLM"));
    }

    #[test]
    fn responses_api_instructions_and_function_calls() {
        let mut call = LlmCall::new(Endpoint::Responses);
        call.request.instructions = Some(json!("Be brief.").into());
        call.request.input = Some(json!("Weather in Paris?").into());
        call.response = Some(
            json!({"output": [
                {"type": "function_call", "call_id": "fc_1", "name": "weather",
                 "arguments": "{\"city\":\"Paris\"}"},
                {"type": "message", "role": "assistant",
                 "content": [{"type": "output_text", "text": "Checking."}]}
            ]})
            .into(),
        );
        let attributes = attributes(&call, true);
        let at = |key: &str| text(&attributes, key);
        assert_eq!(at("llm.input_messages.0.message.role"), Some("system"));
        assert_eq!(
            at("llm.input_messages.0.message.content"),
            Some("Be brief.")
        );
        assert_eq!(at("llm.input_messages.1.message.role"), Some("user"));
        assert_eq!(
            at("llm.input_messages.1.message.content"),
            Some("Weather in Paris?")
        );
        assert_eq!(at("llm.output_messages.0.message.role"), Some("assistant"));
        assert_eq!(
            at("llm.output_messages.0.message.content"),
            Some("Checking.")
        );
        assert_eq!(
            at("llm.output_messages.0.message.tool_calls.0.tool_call.function.name"),
            Some("weather")
        );
        assert_eq!(
            at("llm.output_messages.0.message.tool_calls.0.tool_call.id"),
            Some("fc_1")
        );
    }

    #[test]
    fn embeddings_counts_cost_and_metadata() {
        let mut call = LlmCall::new(Endpoint::Embeddings);
        call.provider = "azure.ai.openai".into();
        call.request.model = Some("text-embedding-3-small".into());
        call.request.input = Some(json!(["a", "b"]).into());
        call.usage = Some(Usage {
            input_tokens: Some(8),
            total_tokens: Some(8),
            ..Usage::default()
        });
        call.cost = Some(crate::Cost::new(0.25, 0.125, 0.5, "built-in"));
        call.metadata.insert("user_id".into(), json!("u-1"));
        call.metadata.insert("tags".into(), json!("x,y"));
        call.metadata.insert("tenant".into(), json!("acme"));
        let attributes = attributes(&call, true);
        assert_eq!(text(&attributes, SPAN_KIND), Some("EMBEDDING"));
        assert_eq!(
            text(&attributes, EMBEDDING_MODEL_NAME),
            Some("text-embedding-3-small")
        );
        assert_eq!(text(&attributes, LLM_MODEL_NAME), None);
        assert_eq!(text(&attributes, LLM_PROVIDER), Some("azure"));
        assert_eq!(text(&attributes, LLM_SYSTEM), Some("openai"));
        assert!(text(&attributes, EMBEDDING_INVOCATION_PARAMETERS).is_some());
        assert_eq!(
            text(&attributes, "embedding.embeddings.1.embedding.text"),
            Some("b")
        );
        assert_eq!(
            find_attribute(&attributes, LLM_TOKEN_COUNT_PROMPT),
            Some(&AttributeValue::Int(8))
        );
        assert_eq!(
            find_attribute(&attributes, LLM_TOKEN_COUNT_COMPLETION),
            None
        );
        assert_eq!(
            find_attribute(&attributes, LLM_COST_TOTAL),
            Some(&AttributeValue::Float(0.875))
        );
        assert_eq!(
            find_attribute(&attributes, LLM_COST_PROMPT),
            Some(&AttributeValue::Float(0.375))
        );
        assert_eq!(
            find_attribute(&attributes, LLM_COST_COMPLETION),
            Some(&AttributeValue::Float(0.5))
        );
        assert_eq!(text(&attributes, USER_ID), Some("u-1"));
        assert_eq!(
            find_attribute(&attributes, TAG_TAGS),
            Some(&AttributeValue::StrArray(vec!["x".into(), "y".into()]))
        );
        assert_eq!(text(&attributes, METADATA), Some(r#"{"tenant":"acme"}"#));
    }

    #[test]
    fn system_and_provider_under_openinference_names() {
        let cases = [
            (
                Endpoint::ChatCompletions,
                "openai",
                Some("openai"),
                "openai",
            ),
            (
                Endpoint::ChatCompletions,
                "azure.ai.openai",
                Some("openai"),
                "azure",
            ),
            (
                Endpoint::AnthropicMessages,
                "anthropic",
                Some("anthropic"),
                "anthropic",
            ),
            (
                Endpoint::GeminiStreamGenerateContent,
                "gcp.gemini",
                None,
                "google",
            ),
            (
                Endpoint::GeminiGenerateContent,
                "gcp.vertex_ai",
                Some("vertexai"),
                "google",
            ),
            (Endpoint::BedrockConverse, "aws.bedrock", None, "aws"),
            (Endpoint::OllamaChat, "ollama", None, "ollama"),
        ];
        for (endpoint, genai_provider, system, provider) in cases {
            let mut call = LlmCall::new(endpoint);
            call.provider = genai_provider.into();
            let attributes = attributes(&call, false);
            assert_eq!(text(&attributes, LLM_SYSTEM), system, "{genai_provider}");
            assert_eq!(
                text(&attributes, LLM_PROVIDER),
                Some(provider),
                "{genai_provider}"
            );
        }
    }

    #[test]
    fn anthropic_reasoning_tool_calls_and_cache_counts() {
        let mut call = LlmCall::new(Endpoint::AnthropicMessages);
        call.request.model = Some("claude-sonnet-4-5".into());
        call.request.max_tokens = Some(2048);
        call.request.stop = Some(json!(["END"]).into());
        call.request.instructions = Some(json!("Be brief.").into());
        call.request.messages = Some(json!([{"role": "user", "content": "Weather?"}]).into());
        call.request.tools = Some(
            json!([{"name": "weather", "description": "Weather", "input_schema": {"type": "object"}}])
                .into(),
        );
        call.response = Some(
            json!({"type": "message", "role": "assistant", "content": [
                {"type": "thinking", "thinking": "Use the tool.", "signature": "sig"},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}}
            ], "stop_reason": "tool_use"})
            .into(),
        );
        call.usage = Some(Usage {
            cached_input_tokens: Some(1000),
            cache_creation_input_tokens: Some(150),
            ..Usage::new(1200, 30)
        });
        call.cost = Some(crate::Cost::with_cache_write(
            0.5, 0.25, 0.125, 1.0, "built-in",
        ));
        let attributes = attributes(&call, true);
        let at = |key: &str| text(&attributes, key);
        let int = |key| find_attribute(&attributes, key).cloned();
        assert_eq!(at(LLM_SYSTEM), Some("anthropic"));
        assert_eq!(at(LLM_PROVIDER), Some("anthropic"));
        assert_eq!(int(LLM_TOKEN_COUNT_PROMPT), Some(AttributeValue::Int(1200)));
        assert_eq!(
            int(LLM_TOKEN_COUNT_CACHE_READ),
            Some(AttributeValue::Int(1000))
        );
        assert_eq!(
            int(LLM_TOKEN_COUNT_CACHE_WRITE),
            Some(AttributeValue::Int(150))
        );
        assert_eq!(int(LLM_COST_PROMPT), Some(AttributeValue::Float(0.875)));
        assert_eq!(
            int(LLM_COST_CACHE_WRITE),
            Some(AttributeValue::Float(0.125))
        );
        assert_eq!(at("llm.input_messages.0.message.role"), Some("system"));
        assert_eq!(
            at("llm.input_messages.0.message.content"),
            Some("Be brief.")
        );
        assert_eq!(at("llm.input_messages.1.message.content"), Some("Weather?"));
        let out = "llm.output_messages.0.message.";
        assert_eq!(
            at(&format!("{out}contents.0.message_content.type")),
            Some("reasoning")
        );
        assert_eq!(
            at(&format!("{out}contents.0.message_content.text")),
            Some("Use the tool.")
        );
        assert_eq!(
            at(&format!("{out}contents.1.message_content.type")),
            Some("text")
        );
        assert_eq!(
            at(&format!("{out}contents.1.message_content.text")),
            Some("Checking.")
        );
        assert_eq!(
            at(&format!("{out}tool_calls.0.tool_call.id")),
            Some("toolu_1")
        );
        assert_eq!(
            at(&format!("{out}tool_calls.0.tool_call.function.name")),
            Some("weather")
        );
        assert_eq!(
            at(&format!("{out}tool_calls.0.tool_call.function.arguments")),
            Some(r#"{"city":"Paris"}"#)
        );
        assert_eq!(at("llm.tools.0.tool.name"), Some("weather"));
        let parameters: Value =
            serde_json::from_str(at(LLM_INVOCATION_PARAMETERS).unwrap()).unwrap();
        assert_eq!(
            parameters,
            json!({"model": "claude-sonnet-4-5", "max_tokens": 2048, "stop_sequences": ["END"],
                   "stream": false})
        );
        let input: Value = serde_json::from_str(at(INPUT_VALUE).unwrap()).unwrap();
        assert_eq!(input["system"], "Be brief.");
        let output: Value = serde_json::from_str(at(OUTPUT_VALUE).unwrap()).unwrap();
        assert_eq!(output["type"], "message");
    }

    #[test]
    fn total_tokens_and_details() {
        let mut call = LlmCall::new(Endpoint::ChatCompletions);
        call.usage = Some(Usage {
            total_tokens: None,
            cached_input_tokens: Some(4),
            reasoning_tokens: Some(2),
            ..Usage::new(10, 5)
        });
        let attributes = attributes(&call, false);
        let int = |key| find_attribute(&attributes, key).cloned();
        assert_eq!(int(LLM_TOKEN_COUNT_TOTAL), Some(AttributeValue::Int(15)));
        assert_eq!(
            int(LLM_TOKEN_COUNT_CACHE_READ),
            Some(AttributeValue::Int(4))
        );
        assert_eq!(int(LLM_TOKEN_COUNT_REASONING), Some(AttributeValue::Int(2)));
    }
}
