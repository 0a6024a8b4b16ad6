//! Converse requests and responses as the GenAI conventions' parts: `system` as instructions,
//! `messages` with their content blocks (`text`, `image`, `document`, `toolUse`, `toolResult`,
//! `reasoningContent`), `output.message` as the output, `toolConfig.tools` as definitions.

use serde_json::{json, Map, Value};

use crate::payload::LlmCall;
use crate::wire::content::{finish_reason, message, record_map, text_part, with_finish_reason};

/// An `image` or `document` block as a part: inline bytes as a blob, an S3 location as a uri.
fn media_part(modality: &str, media: &Value) -> Value {
    let source = &media["source"];
    let format = media.get("format").and_then(Value::as_str);
    let mime = format.map(|f| match modality {
        "image" => format!("image/{f}"),
        _ => format!("application/{f}"),
    });
    if let Some(bytes) = source.get("bytes") {
        json!({"type": "blob", "modality": modality, "mime_type": mime, "content": bytes})
    } else if let Some(uri) = source.pointer("/s3Location/uri") {
        json!({"type": "uri", "modality": modality, "uri": uri})
    } else {
        media.clone()
    }
}

/// A `toolResult`'s content: its text (blocks joined), else the `json` of a single block, else
/// the blocks as sent.
fn tool_result_response(content: Option<&Value>) -> Value {
    match content {
        Some(Value::Array(blocks)) => {
            let texts: Vec<&str> = blocks.iter().filter_map(|b| b["text"].as_str()).collect();
            if !blocks.is_empty() && texts.len() == blocks.len() {
                json!(texts.concat())
            } else if let [only] = blocks.as_slice() {
                only.get("json").cloned().unwrap_or_else(|| only.clone())
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
    if let Some(text) = block.get("text").and_then(Value::as_str) {
        return text_part(text);
    }
    if let Some(tool) = block.get("toolUse") {
        return json!({"type": "tool_call", "id": tool.get("toolUseId"),
            "name": tool.get("name"), "arguments": tool.get("input")});
    }
    if let Some(result) = block.get("toolResult") {
        return json!({"type": "tool_call_response", "id": result.get("toolUseId"),
            "response": tool_result_response(result.get("content"))});
    }
    if let Some(reasoning) = block.get("reasoningContent") {
        let text = reasoning.pointer("/reasoningText/text");
        return json!({"type": "reasoning", "content": text});
    }
    if let Some(image) = block.get("image") {
        return media_part("image", image);
    }
    if let Some(document) = block.get("document") {
        return media_part("document", document);
    }
    if let Some(video) = block.get("video") {
        return media_part("video", video);
    }
    // `cachePoint`, `guardContent` and blocks added later: as sent.
    block.clone()
}

/// A `content` array as parts.
fn parts(content: Option<&Value>) -> Vec<Value> {
    match content {
        Some(Value::Array(blocks)) => blocks
            .iter()
            .filter(|b| b.get("cachePoint").is_none())
            .map(block_part)
            .collect(),
        Some(Value::String(text)) => vec![text_part(text)],
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

/// `system` (text blocks) as parts.
pub(crate) fn system_instructions(call: &LlmCall) -> Option<Value> {
    let parts = parts(call.request.instructions.as_deref());
    (!parts.is_empty()).then_some(Value::Array(parts))
}

/// `output.message` as one assistant message, with the `stopReason`.
pub(crate) fn output_messages(call: &LlmCall) -> Option<Value> {
    let response = call.response.as_deref()?;
    let answer = response.pointer("/output/message")?;
    let reason = finish_reason(call, 0, response.get("stopReason"));
    let role = answer["role"].as_str().unwrap_or("assistant");
    let answer = message(role, parts(answer.get("content")));
    Some(Value::Array(vec![with_finish_reason(answer, reason)]))
}

/// `toolConfig.tools` as `{type, name, description, parameters}`; other entries as sent.
pub(crate) fn tool_definitions(call: &LlmCall) -> Option<Value> {
    let tools = call.request.tools.as_deref()?.as_array()?;
    let definitions: Vec<Value> = tools
        .iter()
        .map(|tool| match tool.get("toolSpec") {
            Some(spec) => {
                let mut flat = Map::new();
                flat.insert("type".into(), json!("function"));
                flat.insert("name".into(), spec.get("name").cloned().into());
                if let Some(description) = spec.get("description") {
                    flat.insert("description".into(), description.clone());
                }
                let schema = spec.pointer("/inputSchema/json").cloned();
                flat.insert("parameters".into(), schema.into());
                Value::Object(flat)
            }
            None => tool.clone(),
        })
        .collect();
    (!definitions.is_empty()).then_some(Value::Array(definitions))
}

/// The request as Converse JSON: the record's fields under Converse's names
/// (`inferenceConfig`, `toolConfig`; the model is in the path, `modelId` here).
pub(crate) fn native_request(call: &LlmCall) -> Value {
    let mut record = record_map(call);
    let mut request = Map::new();
    // The body names no model: the URL path does (the call's requested model).
    record.remove("model");
    if let Some(model) = call.requested_model() {
        request.insert("modelId".into(), json!(model));
    }
    for (ours, theirs) in [("messages", "messages"), ("instructions", "system")] {
        if let Some(value) = record.remove(ours) {
            request.insert(theirs.into(), value);
        }
    }
    let mut inference = Map::new();
    for (ours, theirs) in [
        ("max_tokens", "maxTokens"),
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("stop", "stopSequences"),
    ] {
        if let Some(value) = record.remove(ours) {
            inference.insert(theirs.into(), value);
        }
    }
    if !inference.is_empty() {
        request.insert("inferenceConfig".into(), Value::Object(inference));
    }
    let mut tools = Map::new();
    for (ours, theirs) in [("tools", "tools"), ("tool_choice", "toolChoice")] {
        if let Some(value) = record.remove(ours) {
            tools.insert(theirs.into(), value);
        }
    }
    if !tools.is_empty() {
        request.insert("toolConfig".into(), Value::Object(tools));
    }
    if let Some(top_k) = record.remove("top_k") {
        request.insert(
            "additionalModelRequestFields".into(),
            json!({ "top_k": top_k }),
        );
    }
    if let Some(stream) = record.remove("stream") {
        request.insert("stream".into(), stream);
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

/// The Converse response as the same call returns it unstreamed.
pub(crate) fn native_output(call: &LlmCall) -> Option<Value> {
    call.response.as_deref().filter(|r| !r.is_null()).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Endpoint;

    fn call() -> LlmCall {
        let mut call = LlmCall::new(Endpoint::BedrockConverse);
        // As the layer records it: the model from the URL path, none in the body.
        call.request_model = Some("us.amazon.nova-2-lite-v1:0".into());
        call.request.max_tokens = Some(300);
        call.request.instructions = Some(json!([{"text": "Be brief."}]).into());
        call.request.messages = Some(
            json!([
                {"role": "user", "content": [
                    {"text": "Weather in Paris?"},
                    {"image": {"format": "png", "source": {"bytes": "iVBO"}}}
                ]},
                {"role": "assistant", "content": [
                    {"reasoningContent": {"reasoningText": {"text": "Use the tool.", "signature": "s"}}},
                    {"toolUse": {"toolUseId": "t1", "name": "weather", "input": {"city": "Paris"}}}
                ]},
                {"role": "user", "content": [
                    {"toolResult": {"toolUseId": "t1", "content": [{"json": {"c": 18}}]}}
                ]}
            ])
            .into(),
        );
        call.request.tools = Some(
            json!([{"toolSpec": {"name": "weather", "description": "Weather",
                                 "inputSchema": {"json": {"type": "object"}}}}])
            .into(),
        );
        call.response = Some(
            json!({"output": {"message": {"role": "assistant", "content": [{"text": "18C."}]}},
                   "stopReason": "end_turn"})
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
                    {"type": "tool_call", "id": "t1", "name": "weather", "arguments": {"city": "Paris"}}
                ]},
                {"role": "user", "parts": [
                    {"type": "tool_call_response", "id": "t1", "response": {"c": 18}}
                ]}
            ])
        );
        assert_eq!(
            output_messages(&call).unwrap(),
            json!([{"role": "assistant", "parts": [{"type": "text", "content": "18C."}],
                    "finish_reason": "end_turn"}])
        );
        assert_eq!(
            tool_definitions(&call).unwrap(),
            json!([{"type": "function", "name": "weather", "description": "Weather",
                    "parameters": {"type": "object"}}])
        );
        let request = native_request(&call);
        assert_eq!(request["modelId"], "us.amazon.nova-2-lite-v1:0");
        assert_eq!(request["inferenceConfig"]["maxTokens"], 300);
        assert_eq!(
            request["toolConfig"]["tools"][0]["toolSpec"]["name"],
            "weather"
        );
        assert_eq!(
            native_input(&call).unwrap()["system"][0]["text"],
            "Be brief."
        );
        assert_eq!(native_output(&call).unwrap()["stopReason"], "end_turn");
    }
}
