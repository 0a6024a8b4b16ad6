//! Opt-in message content in the GenAI conventions' (v1.41) parts format: the request's
//! messages, the system instructions, the tool definitions and the output, each as one JSON
//! string, for exporters that send content (`OtlpSink` with `message_content(true)`, and its
//! presets).
//!
//! ```
//! use llm_observability::genai;
//! use llm_observability::{Endpoint, LlmCall};
//!
//! let mut call = LlmCall::new(Endpoint::ChatCompletions);
//! call.request.messages = Some(serde_json::json!([
//!     {"role": "system", "content": "Be brief."},
//!     {"role": "user", "content": "Hi"},
//! ]).into());
//! assert_eq!(
//!     genai::input_messages(&call).unwrap(),
//!     serde_json::json!([{"role": "user", "parts": [{"type": "text", "content": "Hi"}]}]),
//! );
//! assert_eq!(
//!     genai::system_instructions(&call).unwrap(),
//!     serde_json::json!([{"type": "text", "content": "Be brief."}]),
//! );
//! ```

use std::borrow::Cow;

use serde_json::{json, Map, Value};

use super::{Attribute, AttributeValue};
use crate::openai::endpoint::Endpoint;
use crate::payload::LlmCall;

/// `gen_ai.input.messages`: the messages sent to the model (system instructions apart), as a
/// JSON array of `{role, parts}`.
pub const GEN_AI_INPUT_MESSAGES: &str = "gen_ai.input.messages";
/// `gen_ai.output.messages`: the model's answer, as a JSON array of
/// `{role, parts, finish_reason}`, one per choice.
pub const GEN_AI_OUTPUT_MESSAGES: &str = "gen_ai.output.messages";
/// `gen_ai.system_instructions`: system (and developer) instructions, as a JSON array of parts.
pub const GEN_AI_SYSTEM_INSTRUCTIONS: &str = "gen_ai.system_instructions";
/// `gen_ai.tool.definitions`: the tools offered to the model, as a JSON array of
/// `{type, name, description, parameters}`.
pub const GEN_AI_TOOL_DEFINITIONS: &str = "gen_ai.tool.definitions";

/// The four content attributes of a call (those it has), each a JSON string.
pub fn content_attributes(call: &LlmCall) -> Vec<Attribute<'static>> {
    let values = [
        (GEN_AI_SYSTEM_INSTRUCTIONS, system_instructions(call)),
        (GEN_AI_INPUT_MESSAGES, input_messages(call)),
        (GEN_AI_OUTPUT_MESSAGES, output_messages(call)),
        (GEN_AI_TOOL_DEFINITIONS, tool_definitions(call)),
    ];
    values
        .into_iter()
        .filter_map(|(key, value)| {
            Some(Attribute {
                key,
                value: AttributeValue::Str(Cow::Owned(value?.to_string())),
            })
        })
        .collect()
}

fn text_part(text: &str) -> Value {
    json!({"type": "text", "content": text})
}

/// A tool call's `arguments`: the JSON they hold, or the text when it is not JSON.
fn arguments(raw: Option<&Value>) -> Value {
    match raw {
        Some(Value::String(text)) => serde_json::from_str(text).unwrap_or_else(|_| json!(text)),
        Some(other) => other.clone(),
        None => Value::Null,
    }
}

/// A `data:` URL's media type and base64 content.
fn data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (head, data) = rest.split_once(',')?;
    let mime = head.strip_suffix(";base64")?;
    Some((mime, data))
}

fn image_part(url: &str) -> Value {
    match data_url(url) {
        Some((mime, data)) => {
            json!({"type": "blob", "modality": "image", "mime_type": mime, "content": data})
        }
        None => json!({"type": "uri", "modality": "image", "uri": url}),
    }
}

/// One OpenAI content part (chat or Responses API) as a conventions part.
fn content_part(part: &Value) -> Value {
    let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
    let text = |key: &str| part.get(key).and_then(Value::as_str).map(text_part);
    match kind {
        "text" | "input_text" | "output_text" => text("text"),
        "refusal" => text("refusal"),
        "image_url" => {
            let url = part
                .pointer("/image_url/url")
                .or_else(|| part.get("image_url"))
                .and_then(Value::as_str);
            url.map(image_part)
        }
        "input_image" => part
            .get("image_url")
            .and_then(Value::as_str)
            .map(image_part),
        "input_audio" => {
            let audio = part.get("input_audio");
            let format = audio
                .and_then(|a| a.get("format"))
                .and_then(Value::as_str)
                .unwrap_or("wav");
            audio.and_then(|a| a.get("data")).map(|data| {
                json!({"type": "blob", "modality": "audio",
                       "mime_type": format!("audio/{format}"), "content": data})
            })
        }
        "file" | "input_file" => {
            let file = part.get("file").unwrap_or(part);
            let id = file.get("file_id").and_then(Value::as_str);
            Some(match id {
                Some(id) => json!({"type": "file", "file_id": id}),
                None => json!({"type": "file", "filename": file.get("filename")}),
            })
        }
        _ => None,
    }
    .unwrap_or_else(|| part.clone())
}

/// A message's `content` (a string or an array of parts) as conventions parts.
fn content_parts(content: Option<&Value>) -> Vec<Value> {
    match content {
        Some(Value::String(text)) => vec![text_part(text)],
        Some(Value::Array(parts)) => parts.iter().map(content_part).collect(),
        _ => Vec::new(),
    }
}

/// The text of a content value, parts joined, for a tool response.
fn content_value(content: Option<&Value>) -> Value {
    match content {
        Some(Value::Array(parts)) => {
            let texts: Vec<&str> = parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect();
            json!(texts.concat())
        }
        Some(other) => other.clone(),
        None => Value::Null,
    }
}

fn chat_tool_calls(message: &Value, parts: &mut Vec<Value>) {
    if let Some(calls) = message.get("tool_calls").and_then(Value::as_array) {
        for call in calls {
            parts.push(json!({
                "type": "tool_call",
                "id": call.get("id"),
                "name": call.pointer("/function/name"),
                "arguments": arguments(call.pointer("/function/arguments")),
            }));
        }
    }
    if let Some(function) = message.get("function_call") {
        parts.push(json!({
            "type": "tool_call",
            "name": function.get("name"),
            "arguments": arguments(function.get("arguments")),
        }));
    }
}

fn message(role: &str, parts: Vec<Value>) -> Value {
    json!({"role": role, "parts": parts})
}

fn is_system(role: &str) -> bool {
    role == "system" || role == "developer"
}

/// One chat message as `{role, parts}`.
fn chat_message(raw: &Value) -> Value {
    let role = raw.get("role").and_then(Value::as_str).unwrap_or("user");
    if role == "tool" || role == "function" {
        let part = json!({
            "type": "tool_call_response",
            "id": raw.get("tool_call_id").or_else(|| raw.get("name")),
            "response": content_value(raw.get("content")),
        });
        return message("tool", vec![part]);
    }
    let mut parts = content_parts(raw.get("content"));
    if let Some(reasoning) = raw.get("reasoning_content").and_then(Value::as_str) {
        parts.insert(0, json!({"type": "reasoning", "content": reasoning}));
    }
    chat_tool_calls(raw, &mut parts);
    let mut out = message(role, parts);
    if let (Some(name), Some(map)) = (raw.get("name"), out.as_object_mut()) {
        map.insert("name".into(), name.clone());
    }
    out
}

/// One Responses API input item as `{role, parts}`.
fn responses_item(item: &Value) -> Value {
    match item.get("type").and_then(Value::as_str) {
        Some("function_call") => message(
            "assistant",
            vec![json!({
                "type": "tool_call",
                "id": item.get("call_id"),
                "name": item.get("name"),
                "arguments": arguments(item.get("arguments")),
            })],
        ),
        Some("function_call_output") => message(
            "tool",
            vec![json!({
                "type": "tool_call_response",
                "id": item.get("call_id"),
                "response": content_value(item.get("output")),
            })],
        ),
        _ => {
            let role = item.get("role").and_then(Value::as_str).unwrap_or("user");
            message(role, content_parts(item.get("content")))
        }
    }
}

/// The messages sent to the model, system instructions apart; `None` when the request had
/// none (or the content was removed).
pub fn input_messages(call: &LlmCall) -> Option<Value> {
    let request = &call.request;
    let messages: Vec<Value> = match call.endpoint {
        Endpoint::ChatCompletions => request
            .messages
            .as_deref()?
            .as_array()?
            .iter()
            .filter(|m| !m.get("role").and_then(Value::as_str).is_some_and(is_system))
            .map(chat_message)
            .collect(),
        Endpoint::Completions => match request.prompt.as_deref()? {
            Value::String(prompt) => vec![message("user", vec![text_part(prompt)])],
            Value::Array(prompts) => prompts
                .iter()
                .filter_map(Value::as_str)
                .map(|p| message("user", vec![text_part(p)]))
                .collect(),
            _ => return None,
        },
        Endpoint::Responses => match request.input.as_deref()? {
            Value::String(text) => vec![message("user", vec![text_part(text)])],
            Value::Array(items) => items
                .iter()
                .filter(|m| !m.get("role").and_then(Value::as_str).is_some_and(is_system))
                .map(responses_item)
                .collect(),
            _ => return None,
        },
        _ => return None,
    };
    Some(Value::Array(messages))
}

/// The system and developer instructions, as parts; `None` when there are none.
pub fn system_instructions(call: &LlmCall) -> Option<Value> {
    let request = &call.request;
    let mut parts = Vec::new();
    if let Some(Value::String(instructions)) = request.instructions.as_deref() {
        parts.push(text_part(instructions));
    }
    let messages = match call.endpoint {
        Endpoint::ChatCompletions => request.messages.as_deref(),
        Endpoint::Responses => request.input.as_deref(),
        _ => None,
    };
    for raw in messages.and_then(Value::as_array).into_iter().flatten() {
        if raw
            .get("role")
            .and_then(Value::as_str)
            .is_some_and(is_system)
        {
            parts.extend(content_parts(raw.get("content")));
        }
    }
    (!parts.is_empty()).then_some(Value::Array(parts))
}

/// The model's answer: one assistant message per choice (a Responses API response is one
/// message with all its output items); `None` when nothing was decoded.
pub fn output_messages(call: &LlmCall) -> Option<Value> {
    let response = call.response.as_deref()?;
    let finish = |index: usize, reason: Option<&Value>| -> Value {
        reason
            .filter(|r| !r.is_null())
            .cloned()
            .or_else(|| call.finish_reasons.get(index).map(|r| json!(r)))
            .unwrap_or_else(|| json!(""))
    };
    let messages: Vec<Value> = match call.endpoint {
        Endpoint::ChatCompletions => response
            .get("choices")?
            .as_array()?
            .iter()
            .enumerate()
            .map(|(i, choice)| {
                let raw = choice.get("message").cloned().unwrap_or(Value::Null);
                let mut out = chat_message(&raw);
                if let Some(map) = out.as_object_mut() {
                    map.insert("role".into(), json!("assistant"));
                    map.insert(
                        "finish_reason".into(),
                        finish(i, choice.get("finish_reason")),
                    );
                }
                out
            })
            .collect(),
        Endpoint::Completions => response
            .get("choices")?
            .as_array()?
            .iter()
            .enumerate()
            .map(|(i, choice)| {
                let parts = choice
                    .get("text")
                    .and_then(Value::as_str)
                    .map(text_part)
                    .into_iter()
                    .collect();
                let mut out = message("assistant", parts);
                if let Some(map) = out.as_object_mut() {
                    map.insert(
                        "finish_reason".into(),
                        finish(i, choice.get("finish_reason")),
                    );
                }
                out
            })
            .collect(),
        Endpoint::Responses => {
            let mut parts = Vec::new();
            for item in response.get("output")?.as_array()? {
                match item.get("type").and_then(Value::as_str) {
                    Some("message") => parts.extend(content_parts(item.get("content"))),
                    Some("function_call") => parts.push(json!({
                        "type": "tool_call",
                        "id": item.get("call_id"),
                        "name": item.get("name"),
                        "arguments": arguments(item.get("arguments")),
                    })),
                    Some("reasoning") => {
                        let summary: Vec<&str> = item
                            .get("summary")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                            .filter_map(|s| s.get("text").and_then(Value::as_str))
                            .collect();
                        if !summary.is_empty() {
                            parts.push(json!({"type": "reasoning", "content": summary.join("\n")}));
                        }
                    }
                    _ => parts.push(item.clone()),
                }
            }
            let mut out = message("assistant", parts);
            if let Some(map) = out.as_object_mut() {
                map.insert("finish_reason".into(), finish(0, None));
            }
            vec![out]
        }
        _ => return None,
    };
    Some(Value::Array(messages))
}

/// The tools offered to the model, as `{type, name, description, parameters}`; `None` when
/// the request offered none.
pub fn tool_definitions(call: &LlmCall) -> Option<Value> {
    let tools = call.request.tools.as_deref()?.as_array()?;
    let definitions: Vec<Value> = tools
        .iter()
        .map(
            |tool| match tool.get("function").and_then(Value::as_object) {
                // Chat Completions: {"type": "function", "function": {name, description, parameters}}
                Some(function) => {
                    let mut flat = Map::new();
                    flat.insert(
                        "type".into(),
                        tool.get("type").cloned().unwrap_or(json!("function")),
                    );
                    for (key, value) in function {
                        flat.insert(key.clone(), value.clone());
                    }
                    Value::Object(flat)
                }
                // Responses API tools are flat already.
                None => tool.clone(),
            },
        )
        .collect();
    (!definitions.is_empty()).then_some(Value::Array(definitions))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Endpoint;

    #[test]
    fn chat_roundtrip_of_every_part_kind() {
        let mut call = LlmCall::new(Endpoint::ChatCompletions);
        call.request.messages = Some(
            json!([
                {"role": "developer", "content": [{"type": "text", "text": "Use tools."}]},
                {"role": "user", "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}},
                    {"type": "image_url", "image_url": {"url": "https://x/cat.png"}}
                ]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function",
                     "function": {"name": "look", "arguments": "{\"q\":\"cat\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "a cat"}
            ])
            .into(),
        );
        call.request.tools = Some(
            json!([{"type": "function", "function": {"name": "look", "description": "Looks",
                     "parameters": {"type": "object"}}}])
            .into(),
        );
        call.response = Some(
            json!({"choices": [{"index": 0, "finish_reason": "stop",
                    "message": {"role": "assistant", "content": "A cat."}}]})
            .into(),
        );
        assert_eq!(
            system_instructions(&call).unwrap(),
            json!([{"type": "text", "content": "Use tools."}])
        );
        assert_eq!(
            input_messages(&call).unwrap(),
            json!([
                {"role": "user", "parts": [
                    {"type": "text", "content": "What is this?"},
                    {"type": "blob", "modality": "image", "mime_type": "image/png", "content": "iVBO"},
                    {"type": "uri", "modality": "image", "uri": "https://x/cat.png"}
                ]},
                {"role": "assistant", "parts": [
                    {"type": "tool_call", "id": "call_1", "name": "look", "arguments": {"q": "cat"}}
                ]},
                {"role": "tool", "parts": [
                    {"type": "tool_call_response", "id": "call_1", "response": "a cat"}
                ]}
            ])
        );
        assert_eq!(
            output_messages(&call).unwrap(),
            json!([{"role": "assistant", "parts": [{"type": "text", "content": "A cat."}],
                    "finish_reason": "stop"}])
        );
        assert_eq!(
            tool_definitions(&call).unwrap(),
            json!([{"type": "function", "name": "look", "description": "Looks",
                    "parameters": {"type": "object"}}])
        );
        let keys: Vec<_> = content_attributes(&call).iter().map(|a| a.key).collect();
        assert_eq!(
            keys,
            [
                GEN_AI_SYSTEM_INSTRUCTIONS,
                GEN_AI_INPUT_MESSAGES,
                GEN_AI_OUTPUT_MESSAGES,
                GEN_AI_TOOL_DEFINITIONS
            ]
        );
    }

    #[test]
    fn responses_and_completions() {
        let mut call = LlmCall::new(Endpoint::Responses);
        call.request.instructions = Some(json!("Be terse.").into());
        call.request.input = Some(
            json!([
                {"role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
                {"type": "function_call", "call_id": "fc_1", "name": "weather", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "fc_1", "output": "sunny"}
            ])
            .into(),
        );
        call.finish_reasons = vec!["completed".into()];
        call.response = Some(
            json!({"output": [{"type": "message", "role": "assistant",
                    "content": [{"type": "output_text", "text": "Sunny."}]}]})
            .into(),
        );
        assert_eq!(
            system_instructions(&call).unwrap(),
            json!([{"type": "text", "content": "Be terse."}])
        );
        assert_eq!(
            input_messages(&call).unwrap(),
            json!([
                {"role": "user", "parts": [{"type": "text", "content": "Weather?"}]},
                {"role": "assistant", "parts": [{"type": "tool_call", "id": "fc_1", "name": "weather", "arguments": {}}]},
                {"role": "tool", "parts": [{"type": "tool_call_response", "id": "fc_1", "response": "sunny"}]}
            ])
        );
        assert_eq!(
            output_messages(&call).unwrap(),
            json!([{"role": "assistant", "parts": [{"type": "text", "content": "Sunny."}],
                    "finish_reason": "completed"}])
        );

        let mut call = LlmCall::new(Endpoint::Completions);
        call.request.prompt = Some(json!("Say hi").into());
        call.response =
            Some(json!({"choices": [{"text": "hi", "finish_reason": "length"}]}).into());
        assert_eq!(
            input_messages(&call).unwrap(),
            json!([{"role": "user", "parts": [{"type": "text", "content": "Say hi"}]}])
        );
        assert_eq!(
            output_messages(&call).unwrap(),
            json!([{"role": "assistant", "parts": [{"type": "text", "content": "hi"}], "finish_reason": "length"}])
        );
        assert!(system_instructions(&call).is_none());
        assert!(tool_definitions(&call).is_none());
    }

    #[test]
    fn removed_content_gives_nothing() {
        let mut call = LlmCall::new(Endpoint::ChatCompletions);
        call.request.messages = Some(json!([{"role": "user", "content": "x"}]).into());
        call.remove_content();
        assert!(content_attributes(&call).is_empty());
    }
}
