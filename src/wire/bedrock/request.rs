//! Decoding of Bedrock Converse request bodies into a [`RequestRecord`]. The model is in the
//! path (see [`Bedrock::route`](super::Bedrock)), the stream flag in the endpoint.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::json::Json;
use crate::payload::RequestRecord;
use crate::wire::endpoint::Endpoint;
use crate::wire::read::read_json;

/// The request fields we record, as the Converse API names them. JSON-valued fields are
/// borrowed as text, not parsed into trees.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireRequest<'a> {
    #[serde(default, borrow)]
    messages: Option<&'a RawValue>,
    #[serde(default, borrow)]
    system: Option<&'a RawValue>,
    #[serde(default)]
    inference_config: Option<InferenceConfig<'a>>,
    #[serde(default)]
    tool_config: Option<ToolConfig<'a>>,
    #[serde(default)]
    additional_model_request_fields: Option<AdditionalFields>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InferenceConfig<'a> {
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default, borrow)]
    stop_sequences: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolConfig<'a> {
    #[serde(default, borrow)]
    tools: Option<&'a RawValue>,
    #[serde(default, borrow)]
    tool_choice: Option<&'a RawValue>,
}

/// `additionalModelRequestFields`: model-specific parameters; `top_k` (Anthropic, Mistral) or
/// `topK` (Nova) is the one the record has a place for. Read leniently: the shape is the
/// model's, not the API's.
#[derive(Deserialize)]
struct AdditionalFields {
    #[serde(default, deserialize_with = "lenient_u64")]
    top_k: Option<u64>,
    #[serde(default, rename = "topK", deserialize_with = "lenient_u64")]
    top_k_camel: Option<u64>,
    #[serde(default, rename = "inferenceConfig")]
    inference_config: Option<NestedInference>,
}

/// Nova's `additionalModelRequestFields.inferenceConfig.topK`.
#[derive(Deserialize)]
struct NestedInference {
    #[serde(default, rename = "topK", deserialize_with = "lenient_u64")]
    top_k: Option<u64>,
}

/// A whole number, or `None` for anything else (a float, a string).
fn lenient_u64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    Ok(value.as_u64())
}

/// Decodes a Converse request body. Fails when the body is not a JSON object with the expected
/// field types.
pub(crate) fn decode_request(
    endpoint: Endpoint,
    body: &[u8],
) -> Result<RequestRecord, serde_json::Error> {
    let wire: WireRequest<'_> = read_json(body)?;
    if crate::json::nested_too_deep(body) {
        return Err(crate::json::too_deep_error("the request"));
    }
    let kept = |raw: Option<&RawValue>| raw.filter(|r| r.get() != "null").map(Json::from_raw);
    let inference = wire.inference_config;
    let tools = wire.tool_config;
    let top_k = wire.additional_model_request_fields.and_then(|extra| {
        extra
            .top_k
            .or(extra.top_k_camel)
            .or(extra.inference_config.and_then(|c| c.top_k))
    });
    Ok(RequestRecord {
        stream: endpoint == Endpoint::BedrockConverseStream,
        max_tokens: inference.as_ref().and_then(|c| c.max_tokens),
        temperature: inference.as_ref().and_then(|c| c.temperature),
        top_p: inference.as_ref().and_then(|c| c.top_p),
        stop: kept(inference.as_ref().and_then(|c| c.stop_sequences)),
        top_k,
        tools: kept(tools.as_ref().and_then(|t| t.tools)),
        tool_choice: kept(tools.as_ref().and_then(|t| t.tool_choice)),
        instructions: kept(wire.system),
        messages: kept(wire.messages),
        ..RequestRecord::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn converse_request_parameters() {
        let body = json!({
            "messages": [{"role": "user", "content": [{"text": "Hi"}]}],
            "system": [{"text": "Be brief."}],
            "inferenceConfig": {"maxTokens": 300, "temperature": 0.5, "topP": 0.9,
                                "stopSequences": ["END"]},
            "toolConfig": {"tools": [{"toolSpec": {"name": "f", "inputSchema": {"json": {}}}}],
                           "toolChoice": {"auto": {}}},
            "additionalModelRequestFields": {"top_k": 40}
        });
        let record =
            decode_request(Endpoint::BedrockConverseStream, body.to_string().as_bytes()).unwrap();
        assert!(record.stream);
        assert_eq!(record.model, None);
        assert_eq!(record.max_tokens, Some(300));
        assert_eq!(record.temperature, Some(0.5));
        assert_eq!(record.top_p, Some(0.9));
        assert_eq!(record.top_k, Some(40));
        assert_eq!(record.stop.unwrap(), json!(["END"]));
        assert_eq!(record.instructions.unwrap()[0]["text"], "Be brief.");
        assert_eq!(record.messages.unwrap()[0]["content"][0]["text"], "Hi");
        assert_eq!(record.tools.unwrap()[0]["toolSpec"]["name"], "f");
        assert_eq!(record.tool_choice.unwrap(), json!({"auto": {}}));
        let plain = decode_request(Endpoint::BedrockConverse, b"{\"messages\": []}").unwrap();
        assert!(!plain.stream);
    }

    #[test]
    fn wrong_types_and_non_json_are_errors() {
        assert!(decode_request(Endpoint::BedrockConverse, b"{\"inferenceConfig\": 5}").is_err());
        assert!(decode_request(
            Endpoint::BedrockConverse,
            b"{\"inferenceConfig\": {\"maxTokens\": \"many\"}}"
        )
        .is_err());
        assert!(decode_request(Endpoint::BedrockConverse, b"messages=hi").is_err());
    }
}
