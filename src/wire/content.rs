//! Helpers every wire format uses to write the GenAI conventions' (v1.41) parts format:
//! `{role, parts}` messages of `text`, `reasoning`, `tool_call`, `tool_call_response`, `blob` and
//! `uri` parts.

use serde_json::{json, Map, Value};

use crate::payload::LlmCall;

pub(crate) fn text_part(text: &str) -> Value {
    json!({"type": "text", "content": text})
}

/// A tool call's `arguments`: the JSON they hold, or the text when it is not JSON.
pub(crate) fn arguments(raw: Option<&Value>) -> Value {
    match raw {
        Some(Value::String(text)) => serde_json::from_str(text).unwrap_or_else(|_| json!(text)),
        Some(other) => other.clone(),
        None => Value::Null,
    }
}

/// A `data:` URL's media type and base64 content.
pub(crate) fn data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (head, data) = rest.split_once(',')?;
    let mime = head.strip_suffix(";base64")?;
    Some((mime, data))
}

pub(crate) fn image_part(url: &str) -> Value {
    match data_url(url) {
        Some((mime, data)) => {
            json!({"type": "blob", "modality": "image", "mime_type": mime, "content": data})
        }
        None => json!({"type": "uri", "modality": "image", "uri": url}),
    }
}

pub(crate) fn message(role: &str, parts: Vec<Value>) -> Value {
    json!({"role": role, "parts": parts})
}

/// The `finish_reason` of output message `index`: what the response says (`reported`), else
/// the call's finish reason at `index`, else `""`.
pub(crate) fn finish_reason(call: &LlmCall, index: usize, reported: Option<&Value>) -> Value {
    reported
        .filter(|r| !r.is_null())
        .cloned()
        .or_else(|| call.finish_reasons.get(index).map(|r| json!(r)))
        .unwrap_or_else(|| json!(""))
}

/// Sets a `{role, parts}` message's `finish_reason`.
pub(crate) fn with_finish_reason(mut message: Value, reason: Value) -> Value {
    if let Some(map) = message.as_object_mut() {
        map.insert("finish_reason".into(), reason);
    }
    message
}

/// The request record as a JSON object, `stream` left out unless set.
pub(crate) fn record_map(call: &LlmCall) -> Map<String, Value> {
    let mut request = match serde_json::to_value(&call.request) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    if !call.request.stream {
        request.remove("stream");
    }
    request
}
