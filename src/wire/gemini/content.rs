//! Gemini requests and responses as the GenAI conventions' parts: `contents` (role `model` as
//! `assistant`) with their parts (text, thoughts, `functionCall`, `functionResponse`,
//! `inlineData`, `fileData`), `systemInstruction`, each candidate as an output message, and
//! `functionDeclarations` as tool definitions.

use serde_json::{json, Map, Value};

use crate::payload::LlmCall;
use crate::wire::content::{message, record_map, text_part, with_finish_reason};
use crate::Endpoint;

/// A media type's modality (`image/png` → `image`).
fn modality(mime: Option<&Value>) -> Value {
    let mime = mime.and_then(Value::as_str).unwrap_or("");
    json!(mime.split('/').next().unwrap_or(""))
}

/// One Gemini part as a GenAI part.
fn part(part: &Value) -> Value {
    if let Some(text) = part.get("text").and_then(Value::as_str) {
        if part["thought"].as_bool() == Some(true) {
            return json!({"type": "reasoning", "content": text});
        }
        return text_part(text);
    }
    if let Some(call) = part.get("functionCall") {
        return json!({"type": "tool_call", "id": call.get("id"), "name": call.get("name"),
            "arguments": call.get("args")});
    }
    if let Some(response) = part.get("functionResponse") {
        return json!({"type": "tool_call_response", "id": response.get("id"),
            "name": response.get("name"), "response": response.get("response")});
    }
    if let Some(data) = part.get("inlineData") {
        return json!({"type": "blob", "modality": modality(data.get("mimeType")),
            "mime_type": data.get("mimeType"), "content": data.get("data")});
    }
    if let Some(file) = part.get("fileData") {
        return json!({"type": "uri", "modality": modality(file.get("mimeType")),
            "mime_type": file.get("mimeType"), "uri": file.get("fileUri")});
    }
    // `executableCode`, `codeExecutionResult` and parts added later: as sent.
    part.clone()
}

/// A `Content` (`{role, parts}`), a bare string or a list of parts, as parts.
fn parts(content: Option<&Value>) -> Vec<Value> {
    match content {
        Some(Value::String(text)) => vec![text_part(text)],
        Some(Value::Array(parts)) => parts.iter().map(part).collect(),
        Some(Value::Object(content)) => match content.get("parts") {
            Some(Value::Array(parts)) => parts.iter().map(part).collect(),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

fn role(content: &Value) -> &str {
    match content["role"].as_str() {
        Some("model") => "assistant",
        Some(role) => role,
        None => "user",
    }
}

fn is_embeddings(call: &LlmCall) -> bool {
    matches!(
        call.endpoint,
        Endpoint::GeminiEmbedContent | Endpoint::GeminiBatchEmbedContents
    )
}

/// `contents` as `{role, parts}` (`systemInstruction` apart).
pub(crate) fn input_messages(call: &LlmCall) -> Option<Value> {
    let contents = call.request.messages.as_deref()?;
    let messages: Vec<Value> = match contents {
        Value::Array(contents) => contents
            .iter()
            .map(|content| message(role(content), parts(Some(content))))
            .collect(),
        other => vec![message("user", parts(Some(other)))],
    };
    Some(Value::Array(messages))
}

/// `systemInstruction` as parts.
pub(crate) fn system_instructions(call: &LlmCall) -> Option<Value> {
    let parts = parts(call.request.instructions.as_deref());
    (!parts.is_empty()).then_some(Value::Array(parts))
}

/// Each candidate as one assistant message, with its `finishReason`.
pub(crate) fn output_messages(call: &LlmCall) -> Option<Value> {
    let candidates = call.response.as_deref()?.get("candidates")?.as_array()?;
    let messages = candidates.iter().map(|candidate| {
        let answer = message("assistant", parts(candidate.get("content")));
        let reason = candidate
            .get("finishReason")
            .cloned()
            .unwrap_or_else(|| json!(""));
        with_finish_reason(answer, reason)
    });
    Some(Value::Array(messages.collect()))
}

/// `functionDeclarations` as `{type: function, name, description, parameters}`; other tools
/// (`googleSearch`, `codeExecution`, ...) as sent.
pub(crate) fn tool_definitions(call: &LlmCall) -> Option<Value> {
    let tools = call.request.tools.as_deref()?.as_array()?;
    let mut definitions = Vec::new();
    for tool in tools {
        let declarations = tool
            .get("functionDeclarations")
            .or_else(|| tool.get("function_declarations"));
        let Some(Value::Array(declarations)) = declarations else {
            definitions.push(tool.clone());
            continue;
        };
        for declaration in declarations {
            let mut flat = Map::new();
            flat.insert("type".into(), json!("function"));
            flat.insert("name".into(), declaration.get("name").cloned().into());
            if let Some(description) = declaration.get("description") {
                flat.insert("description".into(), description.clone());
            }
            let parameters = declaration
                .get("parameters")
                .or_else(|| declaration.get("parametersJsonSchema"));
            if let Some(parameters) = parameters {
                flat.insert("parameters".into(), parameters.clone());
            }
            definitions.push(Value::Object(flat));
        }
    }
    (!definitions.is_empty()).then_some(Value::Array(definitions))
}

/// The request as Gemini JSON: the record's fields under Gemini's names, sampling parameters
/// in `generationConfig`, and the model the URL path names as `model` (as Google's SDKs take
/// it).
pub(crate) fn native_request(call: &LlmCall) -> Value {
    let mut request = record_map(call);
    if let Some(model) = call.requested_model() {
        request.insert("model".into(), json!(model));
    }
    for (ours, theirs) in [
        ("messages", "contents"),
        ("instructions", "systemInstruction"),
        ("tool_choice", "toolConfig"),
    ] {
        if let Some(value) = request.remove(ours) {
            request.insert(theirs.into(), value);
        }
    }
    let mut config = Map::new();
    for (ours, theirs) in [
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("top_k", "topK"),
        ("max_tokens", "maxOutputTokens"),
        ("stop", "stopSequences"),
        ("n", "candidateCount"),
        ("seed", "seed"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ] {
        if let Some(value) = request.remove(ours) {
            config.insert(theirs.into(), value);
        }
    }
    if let Some(Value::Object(format)) = request.remove("response_format") {
        config.extend(format);
    }
    if !config.is_empty() {
        request.insert("generationConfig".into(), Value::Object(config));
    }
    Value::Object(request)
}

/// `{systemInstruction, contents}` as the request sent them; for embeddings, what was
/// embedded.
pub(crate) fn native_input(call: &LlmCall) -> Option<Value> {
    if is_embeddings(call) {
        return call.request.input.as_deref().cloned();
    }
    let contents = call.request.messages.as_deref()?;
    let mut input = Map::new();
    if let Some(system) = call.request.instructions.as_deref() {
        input.insert("systemInstruction".into(), system.clone());
    }
    input.insert("contents".into(), contents.clone());
    Some(Value::Object(input))
}

/// The candidates' contents (one candidate: its content); `None` for embeddings.
pub(crate) fn native_output(call: &LlmCall) -> Option<Value> {
    if is_embeddings(call) {
        return None;
    }
    let candidates = call.response.as_deref()?.get("candidates")?.as_array()?;
    let mut contents: Vec<Value> = candidates
        .iter()
        .filter_map(|c| c.get("content").cloned())
        .collect();
    match contents.len() {
        0 => None,
        1 => contents.pop(),
        _ => Some(Value::Array(contents)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call() -> LlmCall {
        let mut call = LlmCall::new(Endpoint::GeminiGenerateContent);
        // As the layer records it: the model from the URL path, none in the body.
        call.request_model = Some("gemini-2.5-flash".into());
        call.request.instructions = Some(json!({"parts": [{"text": "Be brief."}]}).into());
        call.request.messages = Some(
            json!([
                {"role": "user", "parts": [
                    {"text": "Weather in Paris?"},
                    {"inlineData": {"mimeType": "image/png", "data": "iVBO"}},
                    {"fileData": {"mimeType": "image/jpeg", "fileUri": "gs://b/x.jpg"}}
                ]},
                {"role": "model", "parts": [
                    {"text": "Use the tool.", "thought": true},
                    {"functionCall": {"id": "c1", "name": "weather", "args": {"city": "Paris"}}}
                ]},
                {"role": "user", "parts": [
                    {"functionResponse": {"id": "c1", "name": "weather", "response": {"t": "18C"}}}
                ]}
            ])
            .into(),
        );
        call.request.tools = Some(
            json!([{"functionDeclarations": [{"name": "weather", "description": "Weather",
                    "parameters": {"type": "OBJECT"}}]}, {"googleSearch": {}}])
            .into(),
        );
        call.request.temperature = Some(0.5);
        call.request.max_tokens = Some(10);
        call.response = Some(
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "18C."}]},
                   "finishReason": "STOP"}]})
            .into(),
        );
        call
    }

    #[test]
    fn contents_parts_and_tools() {
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
                    {"type": "blob", "modality": "image", "mime_type": "image/png", "content": "iVBO"},
                    {"type": "uri", "modality": "image", "mime_type": "image/jpeg", "uri": "gs://b/x.jpg"}
                ]},
                {"role": "assistant", "parts": [
                    {"type": "reasoning", "content": "Use the tool."},
                    {"type": "tool_call", "id": "c1", "name": "weather", "arguments": {"city": "Paris"}}
                ]},
                {"role": "user", "parts": [
                    {"type": "tool_call_response", "id": "c1", "name": "weather", "response": {"t": "18C"}}
                ]}
            ])
        );
        assert_eq!(
            output_messages(&call).unwrap(),
            json!([{"role": "assistant", "parts": [{"type": "text", "content": "18C."}],
                    "finish_reason": "STOP"}])
        );
        assert_eq!(
            tool_definitions(&call).unwrap(),
            json!([{"type": "function", "name": "weather", "description": "Weather",
                    "parameters": {"type": "OBJECT"}}, {"googleSearch": {}}])
        );
        let request = native_request(&call);
        assert_eq!(request["model"], "gemini-2.5-flash");
        assert_eq!(
            request["generationConfig"],
            json!({"temperature": 0.5, "maxOutputTokens": 10})
        );
        assert_eq!(
            request["systemInstruction"]["parts"][0]["text"],
            "Be brief."
        );
        assert_eq!(native_input(&call).unwrap()["contents"][1]["role"], "model");
        assert_eq!(native_output(&call).unwrap()["parts"][0]["text"], "18C.");
    }
}
