//! Decoding of Anthropic Messages request bodies into a [`RequestRecord`].

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::json::Json;
use crate::payload::RequestRecord;
use crate::wire::read::read_json;

/// The request fields we record, as the Messages API names them. JSON-valued fields are
/// borrowed as text, not parsed into trees.
#[derive(Deserialize)]
struct WireRequest<'a> {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    top_k: Option<u64>,
    #[serde(default, borrow)]
    stop_sequences: Option<&'a RawValue>,
    #[serde(default, borrow)]
    tools: Option<&'a RawValue>,
    #[serde(default, borrow)]
    tool_choice: Option<&'a RawValue>,
    /// Structured outputs (`output_format`, beta), the Messages API's response format.
    #[serde(default, borrow)]
    output_format: Option<&'a RawValue>,
    #[serde(default, borrow)]
    system: Option<&'a RawValue>,
    #[serde(default, borrow)]
    messages: Option<&'a RawValue>,
    #[serde(default)]
    metadata: Option<WireMetadata>,
}

#[derive(Deserialize)]
struct WireMetadata {
    #[serde(default)]
    user_id: Option<String>,
}

/// Decodes a Messages request body. Fails when the body is not a JSON object with the expected
/// field types.
pub(crate) fn decode_request(body: &[u8]) -> Result<RequestRecord, serde_json::Error> {
    let wire: WireRequest<'_> = read_json(body)?;
    if crate::json::nested_too_deep(body) {
        return Err(crate::json::too_deep_error("the request"));
    }
    let kept = |raw: Option<&RawValue>| raw.map(Json::from_raw);
    Ok(RequestRecord {
        stream: wire.stream.unwrap_or(false),
        temperature: wire.temperature,
        top_p: wire.top_p,
        top_k: wire.top_k,
        max_tokens: wire.max_tokens,
        stop: kept(wire.stop_sequences),
        tools: kept(wire.tools),
        tool_choice: kept(wire.tool_choice),
        response_format: kept(wire.output_format),
        instructions: kept(wire.system),
        messages: kept(wire.messages),
        user: wire.metadata.and_then(|m| m.user_id),
        model: wire.model,
        ..RequestRecord::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn messages_request_parameters() {
        let body = json!({
            "model": "claude-sonnet-4-5", "max_tokens": 1024, "stream": true,
            "temperature": 0.5, "top_p": 0.9, "top_k": 40, "stop_sequences": ["\n\nHuman:"],
            "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": "Hi"}],
            "tools": [{"name": "f", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "auto"}, "metadata": {"user_id": "u-1"},
            "thinking": {"type": "enabled", "budget_tokens": 2000}
        });
        let record = decode_request(body.to_string().as_bytes()).unwrap();
        assert_eq!(record.model.as_deref(), Some("claude-sonnet-4-5"));
        assert!(record.stream);
        assert_eq!(record.max_tokens, Some(1024));
        assert_eq!(record.temperature, Some(0.5));
        assert_eq!(record.top_p, Some(0.9));
        assert_eq!(record.top_k, Some(40));
        assert_eq!(record.stop.unwrap(), json!(["\n\nHuman:"]));
        assert_eq!(record.instructions.unwrap()[0]["text"], "Be brief.");
        assert_eq!(record.messages.unwrap()[0]["content"], "Hi");
        assert_eq!(record.tool_choice.unwrap(), json!({"type": "auto"}));
        assert_eq!(record.user.as_deref(), Some("u-1"));
        assert!(record.prompt.is_none() && record.input.is_none());
    }

    #[test]
    fn wrong_types_and_non_json_are_errors() {
        assert!(decode_request(b"{\"model\": 5}").is_err());
        assert!(decode_request(b"{\"max_tokens\": \"many\"}").is_err());
        assert!(decode_request(b"model=claude").is_err());
    }
}
