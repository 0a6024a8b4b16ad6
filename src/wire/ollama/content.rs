//! Ollama requests and responses as the GenAI conventions' parts: chat `messages` (text,
//! base64 `images`, `thinking`, `tool_calls`, role `tool` results), a generate `prompt` with its
//! `system`, the answer with its `done_reason`, `tools` as definitions, and the native views.

use serde_json::{json, Map, Value};

use crate::payload::LlmCall;
use crate::wire::content::{
    arguments, finish_reason, message, record_map, text_part, with_finish_reason,
};
use crate::wire::endpoint::Endpoint;

/// A message's parts: reasoning, text, images (base64 blobs), tool calls.
fn parts(raw: &Value) -> Vec<Value> {
    let mut parts = Vec::new();
    if let Some(thinking) = raw["thinking"].as_str().filter(|t| !t.is_empty()) {
        parts.push(json!({"type": "reasoning", "content": thinking}));
    }
    match raw.get("content") {
        Some(Value::String(text)) if !text.is_empty() => parts.push(text_part(text)),
        Some(Value::String(_)) | Some(Value::Null) | None => {}
        Some(other) => parts.push(other.clone()),
    }
    for image in raw["images"].as_array().into_iter().flatten() {
        parts.push(json!({"type": "blob", "modality": "image", "content": image}));
    }
    for call in raw["tool_calls"].as_array().into_iter().flatten() {
        let function = &call["function"];
        parts.push(json!({"type": "tool_call", "id": call.get("id"),
            "name": function.get("name"), "arguments": arguments(function.get("arguments"))}));
    }
    parts
}

/// A role `tool` message: its content is the tool's answer.
fn tool_response(raw: &Value) -> Value {
    let mut part = Map::new();
    part.insert("type".into(), json!("tool_call_response"));
    if let Some(id) = raw.get("tool_call_id").or_else(|| raw.get("tool_name")) {
        part.insert("id".into(), id.clone());
    }
    part.insert(
        "response".into(),
        raw.get("content").cloned().unwrap_or(Value::Null),
    );
    message("tool", vec![Value::Object(part)])
}

fn role(raw: &Value) -> &str {
    raw["role"].as_str().unwrap_or("user")
}

/// Chat `messages` (system messages apart) or the generate `prompt` (with its `images`) as
/// `{role, parts}`.
pub(crate) fn input_messages(call: &LlmCall) -> Option<Value> {
    if let Some(messages) = call.request.messages.as_deref().and_then(Value::as_array) {
        let messages = messages
            .iter()
            .filter(|m| role(m) != "system")
            .map(|m| match role(m) {
                "tool" => tool_response(m),
                role => message(role, parts(m)),
            });
        return Some(Value::Array(messages.collect()));
    }
    match call.request.prompt.as_deref()? {
        Value::String(prompt) => Some(json!([message("user", vec![text_part(prompt)])])),
        other => Some(json!([message("user", vec![other.clone()])])),
    }
}

/// The generate `system`, or the chat's system messages, as parts.
pub(crate) fn system_instructions(call: &LlmCall) -> Option<Value> {
    let mut parts = Vec::new();
    if let Some(Value::String(system)) = call.request.instructions.as_deref() {
        parts.push(text_part(system));
    }
    for m in call
        .request
        .messages
        .as_deref()
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if role(m) == "system" {
            parts.extend(self::parts(m));
        }
    }
    (!parts.is_empty()).then_some(Value::Array(parts))
}

/// The answer (chat `message`, or generate `response` and `thinking`) as one message with its
/// `done_reason`.
pub(crate) fn output_messages(call: &LlmCall) -> Option<Value> {
    let response = call.response.as_deref()?;
    let (role, parts) = match call.endpoint {
        Endpoint::OllamaChat => {
            let message = response.get("message")?;
            (
                message["role"].as_str().unwrap_or("assistant").to_owned(),
                parts(message),
            )
        }
        Endpoint::OllamaGenerate => {
            let text = response.get("response")?;
            let answer = json!({"content": text, "thinking": response.get("thinking")});
            ("assistant".to_owned(), parts(&answer))
        }
        _ => return None,
    };
    let reason = finish_reason(call, 0, response.get("done_reason"));
    Some(json!([with_finish_reason(message(&role, parts), reason)]))
}

/// `tools` (`{type: function, function: {name, description, parameters}}`) as
/// `{type, name, description, parameters}`.
pub(crate) fn tool_definitions(call: &LlmCall) -> Option<Value> {
    let tools = call.request.tools.as_deref()?.as_array()?;
    let definitions: Vec<Value> = tools
        .iter()
        .map(|tool| match tool.get("function") {
            Some(function) => {
                let mut flat = Map::new();
                flat.insert(
                    "type".into(),
                    tool.get("type").cloned().unwrap_or(json!("function")),
                );
                flat.insert("name".into(), function.get("name").cloned().into());
                if let Some(description) = function.get("description") {
                    flat.insert("description".into(), description.clone());
                }
                if let Some(parameters) = function.get("parameters") {
                    flat.insert("parameters".into(), parameters.clone());
                }
                Value::Object(flat)
            }
            None => tool.clone(),
        })
        .collect();
    (!definitions.is_empty()).then_some(Value::Array(definitions))
}

/// The request as Ollama JSON: parameters back under `options` with Ollama's names.
pub(crate) fn native_request(call: &LlmCall) -> Value {
    let mut request = record_map(call);
    let mut options = Map::new();
    for (ours, theirs) in [
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("top_k", "top_k"),
        ("max_tokens", "num_predict"),
        ("stop", "stop"),
        ("seed", "seed"),
        ("presence_penalty", "presence_penalty"),
        ("frequency_penalty", "frequency_penalty"),
    ] {
        if let Some(value) = request.remove(ours) {
            options.insert(theirs.into(), value);
        }
    }
    if !options.is_empty() {
        request.insert("options".into(), Value::Object(options));
    }
    let renames: &[(&str, &str)] = match call.endpoint {
        Endpoint::OllamaEmbeddings => &[("input", "prompt")],
        _ => &[("instructions", "system"), ("response_format", "format")],
    };
    for (ours, theirs) in renames {
        if let Some(value) = request.remove(*ours) {
            request.insert((*theirs).into(), value);
        }
    }
    if !call.request.stream
        && matches!(
            call.endpoint,
            Endpoint::OllamaChat | Endpoint::OllamaGenerate
        )
    {
        // Ollama streams unless told not to.
        request.insert("stream".into(), json!(false));
    }
    Value::Object(request)
}

/// What the model was given, as the request had it: `messages`, `{system, prompt}` or `input`.
pub(crate) fn native_input(call: &LlmCall) -> Option<Value> {
    let request = &call.request;
    if let Some(messages) = request.messages.as_deref() {
        return Some(json!({ "messages": messages }));
    }
    if let Some(prompt) = request.prompt.as_deref() {
        let mut input = Map::new();
        if let Some(system) = request.instructions.as_deref() {
            input.insert("system".into(), system.clone());
        }
        input.insert("prompt".into(), prompt.clone());
        return Some(Value::Object(input));
    }
    request
        .input
        .as_deref()
        .map(|input| json!({ "input": input }))
}

/// The answer as the unstreamed call returns it; `None` for embeddings.
pub(crate) fn native_output(call: &LlmCall) -> Option<Value> {
    match call.endpoint {
        Endpoint::OllamaChat | Endpoint::OllamaGenerate => {
            call.response.as_deref().filter(|r| !r.is_null()).cloned()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat() -> LlmCall {
        let mut call = LlmCall::new(Endpoint::OllamaChat);
        call.request.messages = Some(
            json!([
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Weather in Paris?", "images": ["iVBO"]},
                {"role": "assistant", "content": "", "thinking": "Use the tool.",
                 "tool_calls": [{"function": {"name": "weather", "arguments": {"city": "Paris"}}}]},
                {"role": "tool", "content": "18C", "tool_name": "weather"}
            ])
            .into(),
        );
        call.request.tools = Some(
            json!([{"type": "function", "function": {"name": "weather", "description": "Weather",
                "parameters": {"type": "object"}}}])
            .into(),
        );
        call.request.temperature = Some(0.0);
        call.request.max_tokens = Some(64);
        call.request.stream = true;
        call.response = Some(
            json!({"model": "qwen3", "message": {"role": "assistant", "content": "18C.",
                "thinking": "Easy."}, "done": true, "done_reason": "stop"})
            .into(),
        );
        call
    }

    #[test]
    fn chat_messages_as_parts() {
        let call = chat();
        assert_eq!(
            system_instructions(&call).unwrap(),
            json!([{"type": "text", "content": "Be brief."}])
        );
        assert_eq!(
            input_messages(&call).unwrap(),
            json!([
                {"role": "user", "parts": [
                    {"type": "text", "content": "Weather in Paris?"},
                    {"type": "blob", "modality": "image", "content": "iVBO"}
                ]},
                {"role": "assistant", "parts": [
                    {"type": "reasoning", "content": "Use the tool."},
                    {"type": "tool_call", "id": null, "name": "weather", "arguments": {"city": "Paris"}}
                ]},
                {"role": "tool", "parts": [
                    {"type": "tool_call_response", "id": "weather", "response": "18C"}
                ]}
            ])
        );
        assert_eq!(
            output_messages(&call).unwrap(),
            json!([{"role": "assistant", "parts": [
                {"type": "reasoning", "content": "Easy."},
                {"type": "text", "content": "18C."}], "finish_reason": "stop"}])
        );
        assert_eq!(
            tool_definitions(&call).unwrap(),
            json!([{"type": "function", "name": "weather", "description": "Weather",
                    "parameters": {"type": "object"}}])
        );
        let request = native_request(&call);
        assert_eq!(
            request["options"],
            json!({"temperature": 0.0, "num_predict": 64})
        );
        assert_eq!(request["stream"], true);
        assert_eq!(
            native_input(&call).unwrap()["messages"][0]["role"],
            "system"
        );
        assert_eq!(native_output(&call).unwrap()["done_reason"], "stop");
    }

    #[test]
    fn generate_prompt_and_answer() {
        let mut call = LlmCall::new(Endpoint::OllamaGenerate);
        call.request.prompt = Some(json!("Tell me a joke").into());
        call.request.instructions = Some(json!("Be funny.").into());
        call.response =
            Some(json!({"response": "Ha.", "done": true, "done_reason": "stop"}).into());
        assert_eq!(
            input_messages(&call).unwrap(),
            json!([{"role": "user", "parts": [{"type": "text", "content": "Tell me a joke"}]}])
        );
        assert_eq!(
            system_instructions(&call).unwrap(),
            json!([{"type": "text", "content": "Be funny."}])
        );
        assert_eq!(
            output_messages(&call).unwrap(),
            json!([{"role": "assistant", "parts": [{"type": "text", "content": "Ha."}],
                    "finish_reason": "stop"}])
        );
        let request = native_request(&call);
        assert_eq!(request["system"], "Be funny.");
        assert_eq!(request["stream"], false);
        assert_eq!(native_input(&call).unwrap()["prompt"], "Tell me a joke");
    }

    #[test]
    fn embeddings_have_no_output() {
        let mut call = LlmCall::new(Endpoint::OllamaEmbeddings);
        call.request.input = Some(json!("x").into());
        call.response = Some(json!({"embedding_count": 1}).into());
        assert!(native_output(&call).is_none() && output_messages(&call).is_none());
        assert_eq!(native_request(&call)["prompt"], "x");
        assert_eq!(native_input(&call).unwrap(), json!({"input": "x"}));
    }
}
