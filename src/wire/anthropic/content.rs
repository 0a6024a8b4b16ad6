//! Anthropic requests and responses as the GenAI conventions' parts: `system` as instructions,
//! `messages` with their content blocks (text, images, documents, `tool_use`, `tool_result`,
//! `thinking`), the Message's content blocks as the output, `tools` as definitions.

use serde_json::{json, Map, Value};

use crate::payload::LlmCall;
use crate::wire::content::{finish_reason, message, record_map, text_part, with_finish_reason};

/// An image or document `source` as a part: base64 data as a blob, a URL as a uri, a file id
/// as a file.
fn source_part(modality: &str, block: &Value) -> Value {
    let source = &block["source"];
    match source["type"].as_str() {
        Some("base64") => json!({"type": "blob", "modality": modality,
            "mime_type": source.get("media_type"), "content": source.get("data")}),
        Some("url") => json!({"type": "uri", "modality": modality, "uri": source.get("url")}),
        Some("file") => {
            json!({"type": "file", "modality": modality, "file_id": source.get("file_id")})
        }
        Some("text") => text_part(source["data"].as_str().unwrap_or("")),
        _ => block.clone(),
    }
}

/// A `tool_result`'s content: its text (blocks joined), or the value as sent.
fn tool_result_response(content: Option<&Value>) -> Value {
    match content {
        Some(Value::Array(blocks)) => {
            let texts: Vec<&str> = blocks.iter().filter_map(|b| b["text"].as_str()).collect();
            if texts.len() == blocks.len() {
                json!(texts.concat())
            } else {
                Value::Array(blocks.clone())
            }
        }
        Some(other) => other.clone(),
        None => Value::Null,
    }
}

/// One content block as a part.
fn block_part(block: &Value) -> Value {
    match block["type"].as_str().unwrap_or("") {
        "text" => text_part(block["text"].as_str().unwrap_or("")),
        "thinking" => json!({"type": "reasoning", "content": block.get("thinking")}),
        "image" => source_part("image", block),
        "document" => source_part("document", block),
        "tool_use" => json!({"type": "tool_call", "id": block.get("id"),
            "name": block.get("name"), "arguments": block.get("input")}),
        "server_tool_use" | "mcp_tool_use" => json!({"type": "server_tool_call",
            "id": block.get("id"), "name": block.get("name"), "arguments": block.get("input")}),
        "tool_result" => json!({"type": "tool_call_response", "id": block.get("tool_use_id"),
            "response": tool_result_response(block.get("content"))}),
        kind if kind.ends_with("_tool_result") => json!({"type": "server_tool_call_response",
            "id": block.get("tool_use_id"), "response": block.get("content")}),
        // `redacted_thinking` and blocks added later: as sent.
        _ => block.clone(),
    }
}

/// A `content` value (a string or blocks) as parts.
fn parts(content: Option<&Value>) -> Vec<Value> {
    match content {
        Some(Value::String(text)) => vec![text_part(text)],
        Some(Value::Array(blocks)) => blocks.iter().map(block_part).collect(),
        _ => Vec::new(),
    }
}

/// `messages` as `{role, parts}` (`system` is apart: see [`system_instructions`]).
pub(crate) fn input_messages(call: &LlmCall) -> Option<Value> {
    let messages = call.request.messages.as_deref()?.as_array()?;
    let messages = messages.iter().map(|raw| {
        let role = raw["role"].as_str().unwrap_or("user");
        message(role, parts(raw.get("content")))
    });
    Some(Value::Array(messages.collect()))
}

/// `system` (a string or text blocks) as parts.
pub(crate) fn system_instructions(call: &LlmCall) -> Option<Value> {
    let parts = parts(call.request.instructions.as_deref());
    (!parts.is_empty()).then_some(Value::Array(parts))
}

/// The Message's content blocks as one assistant message, with its `stop_reason`.
pub(crate) fn output_messages(call: &LlmCall) -> Option<Value> {
    let response = call.response.as_deref()?;
    let content = response.get("content")?;
    let reason = finish_reason(call, 0, response.get("stop_reason"));
    let answer = message("assistant", parts(Some(content)));
    Some(Value::Array(vec![with_finish_reason(answer, reason)]))
}

/// `tools` as `{type, name, description, parameters}`; server tools (`web_search_20250305`, ...)
/// as sent.
pub(crate) fn tool_definitions(call: &LlmCall) -> Option<Value> {
    let tools = call.request.tools.as_deref()?.as_array()?;
    let definitions: Vec<Value> = tools
        .iter()
        .map(|tool| match tool.get("input_schema") {
            Some(schema) => {
                let mut flat = Map::new();
                flat.insert("type".into(), json!("function"));
                flat.insert("name".into(), tool.get("name").cloned().into());
                if let Some(description) = tool.get("description") {
                    flat.insert("description".into(), description.clone());
                }
                flat.insert("parameters".into(), schema.clone());
                Value::Object(flat)
            }
            None => tool.clone(),
        })
        .collect();
    (!definitions.is_empty()).then_some(Value::Array(definitions))
}

/// The request as Messages API JSON: the record's fields under Anthropic's names.
pub(crate) fn native_request(call: &LlmCall) -> Value {
    let mut request = record_map(call);
    for (ours, theirs) in [
        ("instructions", "system"),
        ("stop", "stop_sequences"),
        ("response_format", "output_format"),
    ] {
        if let Some(value) = request.remove(ours) {
            request.insert(theirs.into(), value);
        }
    }
    if let Some(user) = request.remove("user") {
        request.insert("metadata".into(), json!({ "user_id": user }));
    }
    Value::Object(request)
}

/// `{system, messages}` as the request sent them.
pub(crate) fn native_input(call: &LlmCall) -> Option<Value> {
    let messages = call.request.messages.as_deref()?;
    let mut input = Map::new();
    if let Some(system) = call.request.instructions.as_deref() {
        input.insert("system".into(), system.clone());
    }
    input.insert("messages".into(), messages.clone());
    Some(Value::Object(input))
}

/// The Message as the same call returns it unstreamed.
pub(crate) fn native_output(call: &LlmCall) -> Option<Value> {
    call.response.as_deref().filter(|r| !r.is_null()).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Endpoint;

    fn call() -> LlmCall {
        let mut call = LlmCall::new(Endpoint::AnthropicMessages);
        call.request.instructions = Some(json!([{"type": "text", "text": "Be brief."}]).into());
        call.request.messages = Some(
            json!([
                {"role": "user", "content": [
                    {"type": "text", "text": "Weather in Paris?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}}
                ]},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "Use the tool.", "signature": "s"},
                    {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "18C"}]}
                ]}
            ])
            .into(),
        );
        call.request.tools = Some(
            json!([{"name": "weather", "description": "Weather", "input_schema": {"type": "object"}},
                   {"type": "web_search_20250305", "name": "web_search"}])
            .into(),
        );
        call.response = Some(
            json!({"type": "message", "content": [{"type": "text", "text": "18C and sunny."}],
                   "stop_reason": "end_turn"})
            .into(),
        );
        call
    }

    #[test]
    fn messages_blocks_and_tools_as_parts() {
        let call = call();
        assert_eq!(
            system_instructions(&call).unwrap(),
            json!([{"type": "text", "content": "Be brief."}])
        );
        assert_eq!(
            input_messages(&call).unwrap(),
            json!([
                {"role": "user", "parts": [
                    {"type": "text", "content": "Weather in Paris?"},
                    {"type": "blob", "modality": "image", "mime_type": "image/png", "content": "iVBO"}
                ]},
                {"role": "assistant", "parts": [
                    {"type": "reasoning", "content": "Use the tool."},
                    {"type": "tool_call", "id": "toolu_1", "name": "weather", "arguments": {"city": "Paris"}}
                ]},
                {"role": "user", "parts": [
                    {"type": "tool_call_response", "id": "toolu_1", "response": "18C"}
                ]}
            ])
        );
        assert_eq!(
            output_messages(&call).unwrap(),
            json!([{"role": "assistant", "parts": [{"type": "text", "content": "18C and sunny."}],
                    "finish_reason": "end_turn"}])
        );
        assert_eq!(
            tool_definitions(&call).unwrap(),
            json!([{"type": "function", "name": "weather", "description": "Weather",
                    "parameters": {"type": "object"}},
                   {"type": "web_search_20250305", "name": "web_search"}])
        );
        assert_eq!(
            native_input(&call).unwrap()["system"][0]["text"],
            "Be brief."
        );
        assert_eq!(native_output(&call).unwrap()["stop_reason"], "end_turn");
    }
}
