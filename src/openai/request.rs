//! Decoding of OpenAI request bodies into a [`RequestRecord`].

use serde::Deserialize;
use serde_json::Value;

use crate::payload::RequestRecord;

/// The request fields we record, as they appear on the wire (all endpoints in one shape).
#[derive(Deserialize)]
struct WireRequest {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<Value>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    max_output_tokens: Option<u64>,
    #[serde(default)]
    max_completion_tokens: Option<u64>,
    #[serde(default)]
    n: Option<u64>,
    #[serde(default)]
    seed: Option<i64>,
    #[serde(default)]
    stop: Option<Value>,
    #[serde(default)]
    presence_penalty: Option<f64>,
    #[serde(default)]
    frequency_penalty: Option<f64>,
    #[serde(default)]
    tools: Option<Value>,
    #[serde(default)]
    tool_choice: Option<Value>,
    #[serde(default)]
    response_format: Option<Value>,
    #[serde(default)]
    text: Option<Value>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    messages: Option<Value>,
    #[serde(default)]
    prompt: Option<Value>,
    #[serde(default)]
    input: Option<Value>,
    #[serde(default)]
    instructions: Option<Value>,
}

/// Decodes a request body. Fails when the body is not a JSON object with the expected field
/// types; the caller records the error and passes the bytes on untouched.
pub fn decode_request(body: &[u8]) -> Result<RequestRecord, serde_json::Error> {
    let wire: WireRequest = serde_json::from_slice(body)?;
    let non_null = |v: Option<Value>| v.filter(|v| !v.is_null());
    Ok(RequestRecord {
        model: wire.model,
        stream: wire.stream.unwrap_or(false),
        stream_options: non_null(wire.stream_options),
        temperature: wire.temperature,
        top_p: wire.top_p,
        max_tokens: wire.max_tokens.or(wire.max_output_tokens),
        max_completion_tokens: wire.max_completion_tokens,
        n: wire.n,
        seed: wire.seed,
        stop: non_null(wire.stop),
        presence_penalty: wire.presence_penalty,
        frequency_penalty: wire.frequency_penalty,
        tools: non_null(wire.tools),
        tool_choice: non_null(wire.tool_choice),
        response_format: non_null(wire.response_format)
            .or_else(|| wire.text.and_then(|t| non_null(t.get("format").cloned()))),
        user: wire.user,
        messages: non_null(wire.messages),
        prompt: non_null(wire.prompt),
        input: non_null(wire.input),
        instructions: non_null(wire.instructions),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn chat_request_parameters() {
        let body = json!({
            "model": "gpt-4o", "stream": true, "stream_options": {"include_usage": true},
            "temperature": 0.2, "top_p": 0.9, "max_tokens": 100, "max_completion_tokens": 120,
            "n": 2, "seed": 7, "stop": ["\n"], "presence_penalty": 0.1, "frequency_penalty": -0.1,
            "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "auto",
            "response_format": {"type": "json_object"}, "user": "u-1",
            "messages": [{"role": "user", "content": "hi"}]
        });
        let record = decode_request(body.to_string().as_bytes()).unwrap();
        assert_eq!(record.model.as_deref(), Some("gpt-4o"));
        assert!(record.stream);
        assert_eq!(record.stream_options, Some(json!({"include_usage": true})));
        assert_eq!(record.temperature, Some(0.2));
        assert_eq!(record.top_p, Some(0.9));
        assert_eq!(record.max_tokens, Some(100));
        assert_eq!(record.max_completion_tokens, Some(120));
        assert_eq!(record.n, Some(2));
        assert_eq!(record.seed, Some(7));
        assert_eq!(record.stop, Some(json!(["\n"])));
        assert_eq!(record.presence_penalty, Some(0.1));
        assert_eq!(record.frequency_penalty, Some(-0.1));
        assert_eq!(record.tool_choice, Some(json!("auto")));
        assert_eq!(record.response_format, Some(json!({"type": "json_object"})));
        assert_eq!(record.user.as_deref(), Some("u-1"));
        assert_eq!(record.messages.unwrap()[0]["content"], "hi");
    }

    #[test]
    fn responses_request_maps_output_limit_and_text_format() {
        let body = json!({"model": "gpt-4.1", "input": "hi", "instructions": "be brief",
            "max_output_tokens": 50, "text": {"format": {"type": "text"}}});
        let record = decode_request(body.to_string().as_bytes()).unwrap();
        assert_eq!(record.max_tokens, Some(50));
        assert_eq!(record.response_format, Some(json!({"type": "text"})));
        assert_eq!(record.input, Some(json!("hi")));
        assert!(!record.stream);
    }

    #[test]
    fn wrong_types_and_non_json_are_errors() {
        assert!(decode_request(b"{\"model\": 5}").is_err());
        assert!(decode_request(b"model=gpt").is_err());
        assert!(decode_request(b"").is_err());
    }
}
