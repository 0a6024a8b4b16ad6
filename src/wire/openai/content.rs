//! OpenAI requests and responses as the GenAI conventions' parts (chat messages, legacy
//! prompts, Responses API items), and in the shape OpenAI-rendering UIs show.

use serde_json::{json, Map, Value};

use crate::payload::LlmCall;
use crate::wire::content::{arguments, finish_reason, image_part, message, record_map, text_part};
use crate::wire::endpoint::Endpoint;

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
    // Reasoning under either name OpenAI-compatible servers give it (`reasoning_content`:
    // DeepSeek, older vLLM; `reasoning`: vLLM, OpenRouter, Ollama), first; a server that sends
    // both with the same text gets one part.
    let text = |key: &str| {
        raw.get(key)
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
    };
    let reasoning_content = text("reasoning_content");
    let reasoning = text("reasoning").filter(|r| Some(*r) != reasoning_content);
    for reasoning in [reasoning, reasoning_content].into_iter().flatten() {
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
pub(crate) fn input_messages(call: &LlmCall) -> Option<Value> {
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
pub(crate) fn system_instructions(call: &LlmCall) -> Option<Value> {
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
pub(crate) fn output_messages(call: &LlmCall) -> Option<Value> {
    let response = call.response.as_deref()?;
    let finish = |index: usize, reason: Option<&Value>| finish_reason(call, index, reason);
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
pub(crate) fn tool_definitions(call: &LlmCall) -> Option<Value> {
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

/// What the model was given, in the OpenAI shape UIs render: chat messages, the completion
/// prompt, the Responses API input (with its instructions as a system message) or the
/// embeddings input.
pub(crate) fn native_input(call: &LlmCall) -> Option<Value> {
    let request = &call.request;
    match call.endpoint {
        Endpoint::Completions => request.prompt.as_deref().cloned(),
        Endpoint::Embeddings => request.input.as_deref().cloned(),
        Endpoint::Responses => {
            let input = request.input.as_deref()?;
            match request.instructions.as_deref() {
                Some(Value::String(instructions)) => {
                    let mut messages = vec![json!({"role": "system", "content": instructions})];
                    match input {
                        Value::Array(items) => messages.extend(items.iter().cloned()),
                        other => messages.push(json!({"role": "user", "content": other})),
                    }
                    Some(Value::Array(messages))
                }
                _ => Some(input.clone()),
            }
        }
        _ => request.messages.as_deref().cloned(),
    }
}

/// What the model answered, in the OpenAI shape: the assistant message (one per choice, an
/// array when there are several), the completion text, the Responses API output items;
/// nothing for embeddings (the vectors are not recorded).
pub(crate) fn native_output(call: &LlmCall) -> Option<Value> {
    let response = call.response.as_deref()?;
    let per_choice = |field: &str| {
        let choices = response["choices"].as_array()?;
        match choices.as_slice() {
            [] => None,
            [one] => Some(one[field].clone()),
            many => Some(Value::Array(
                many.iter().map(|c| c[field].clone()).collect(),
            )),
        }
    };
    match call.endpoint {
        Endpoint::Completions => per_choice("text"),
        Endpoint::Responses => Some(response["output"].clone()),
        Endpoint::Embeddings => None,
        _ => per_choice("message"),
    }
    .filter(|v| !v.is_null())
}

/// The request as OpenAI JSON (what the client sent, as recorded): the record's fields, with
/// the Responses API's own names for the output limit and format.
pub(crate) fn native_request(call: &LlmCall) -> Value {
    let mut request = record_map(call);
    if call.endpoint == Endpoint::Responses {
        if let Some(max) = request.remove("max_tokens") {
            request.insert("max_output_tokens".into(), max);
        }
        if let Some(format) = request.remove("response_format") {
            request.insert("text".into(), json!({ "format": format }));
        }
    }
    Value::Object(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasoning_under_either_name_is_a_reasoning_part() {
        for key in ["reasoning", "reasoning_content"] {
            let raw = json!({"role": "assistant", "content": "4", key: "2 + 2"});
            assert_eq!(
                chat_message(&raw)["parts"],
                json!([{"type": "reasoning", "content": "2 + 2"}, {"type": "text", "content": "4"}]),
                "{key}"
            );
        }
        // Both with the same text: one part; different texts: both.
        let same = json!({"role": "assistant", "content": "4",
                          "reasoning": "r", "reasoning_content": "r"});
        assert_eq!(chat_message(&same)["parts"].as_array().unwrap().len(), 2);
        let both = json!({"role": "assistant", "content": null,
                          "reasoning": "b", "reasoning_content": "a"});
        assert_eq!(
            chat_message(&both)["parts"],
            json!([{"type": "reasoning", "content": "a"}, {"type": "reasoning", "content": "b"}])
        );
        // OpenRouter's `"reasoning": null` beside an answer: no part.
        let none = json!({"role": "assistant", "content": "4", "reasoning": null});
        assert_eq!(chat_message(&none)["parts"].as_array().unwrap().len(), 1);
    }
}
