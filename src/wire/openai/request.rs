//! Decoding of OpenAI request bodies into a [`RequestRecord`].

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::json::Json;
use crate::payload::RequestRecord;
use crate::wire::read::read_json;

/// The request fields we record, as they appear on the wire (all endpoints in one shape).
/// JSON-valued fields are borrowed as text, not parsed into trees.
#[derive(Deserialize)]
struct WireRequest<'a> {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default, borrow)]
    stream_options: Option<&'a RawValue>,
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
    #[serde(default, borrow)]
    stop: Option<&'a RawValue>,
    #[serde(default)]
    presence_penalty: Option<f64>,
    #[serde(default)]
    frequency_penalty: Option<f64>,
    #[serde(default, borrow)]
    tools: Option<&'a RawValue>,
    #[serde(default, borrow)]
    tool_choice: Option<&'a RawValue>,
    #[serde(default, borrow)]
    response_format: Option<&'a RawValue>,
    #[serde(default, borrow)]
    text: Option<&'a RawValue>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default, borrow)]
    messages: Option<&'a RawValue>,
    #[serde(default, borrow)]
    prompt: Option<&'a RawValue>,
    #[serde(default, borrow)]
    input: Option<&'a RawValue>,
    #[serde(default, borrow)]
    instructions: Option<&'a RawValue>,
}

/// The Responses API's `text` parameter, for its `format`.
#[derive(Deserialize)]
struct WireTextOptions<'a> {
    #[serde(default, borrow)]
    format: Option<&'a RawValue>,
}

/// Decodes a request body. Fails when the body is not a JSON object with the expected field
/// types; the caller records the error and passes the bytes on untouched.
pub(crate) fn decode_request(body: &[u8]) -> Result<RequestRecord, serde_json::Error> {
    let wire: WireRequest<'_> = read_json(body)?;
    if crate::json::nested_too_deep(body) {
        return Err(crate::json::too_deep_error("the request"));
    }
    // `null` arrives as `None`: the parameter was not set.
    let kept = |raw: Option<&RawValue>| raw.map(Json::from_raw);
    let text_format = || {
        let text = wire.text?;
        let options: WireTextOptions<'_> = serde_json::from_str(text.get()).ok()?;
        kept(options.format)
    };
    Ok(RequestRecord {
        stream: wire.stream.unwrap_or(false),
        stream_options: kept(wire.stream_options),
        temperature: wire.temperature,
        top_p: wire.top_p,
        top_k: None,
        max_tokens: wire.max_tokens.or(wire.max_output_tokens),
        max_completion_tokens: wire.max_completion_tokens,
        n: wire.n,
        seed: wire.seed,
        stop: kept(wire.stop),
        presence_penalty: wire.presence_penalty,
        frequency_penalty: wire.frequency_penalty,
        tools: kept(wire.tools),
        tool_choice: kept(wire.tool_choice),
        response_format: kept(wire.response_format).or_else(text_format),
        messages: kept(wire.messages),
        prompt: kept(wire.prompt),
        input: kept(wire.input),
        instructions: kept(wire.instructions),
        model: wire.model,
        user: wire.user,
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
        assert_eq!(
            record.stream_options.unwrap(),
            json!({"include_usage": true})
        );
        assert_eq!(record.temperature, Some(0.2));
        assert_eq!(record.top_p, Some(0.9));
        assert_eq!(record.max_tokens, Some(100));
        assert_eq!(record.max_completion_tokens, Some(120));
        assert_eq!(record.n, Some(2));
        assert_eq!(record.seed, Some(7));
        assert_eq!(record.stop.unwrap(), json!(["\n"]));
        assert_eq!(record.presence_penalty, Some(0.1));
        assert_eq!(record.frequency_penalty, Some(-0.1));
        assert_eq!(record.tool_choice.unwrap(), json!("auto"));
        assert_eq!(
            record.response_format.unwrap(),
            json!({"type": "json_object"})
        );
        assert_eq!(record.user.as_deref(), Some("u-1"));
        assert_eq!(record.messages.unwrap()[0]["content"], "hi");
    }

    #[test]
    fn responses_request_maps_output_limit_and_text_format() {
        let body = json!({"model": "gpt-4.1", "input": "hi", "instructions": "be brief",
            "max_output_tokens": 50, "text": {"format": {"type": "text"}}});
        let record = decode_request(body.to_string().as_bytes()).unwrap();
        assert_eq!(record.max_tokens, Some(50));
        assert_eq!(record.response_format.unwrap(), json!({"type": "text"}));
        assert_eq!(record.input.unwrap(), json!("hi"));
        assert!(!record.stream);
    }

    #[test]
    fn wrong_types_and_non_json_are_errors() {
        assert!(decode_request(b"{\"model\": 5}").is_err());
        assert!(decode_request(b"model=gpt").is_err());
        assert!(decode_request(b"").is_err());
    }
}
