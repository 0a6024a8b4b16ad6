//! Decoding of Gemini `generateContent` / `streamGenerateContent` / `embedContent` /
//! `batchEmbedContents` request bodies into a [`RequestRecord`].

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::json::Json;
use crate::payload::RequestRecord;
use crate::wire::endpoint::Endpoint;
use crate::wire::read::read_json;

/// The request fields we record, as the Gemini API names them (JSON-valued fields borrowed as
/// text). `model` appears in batch-embed requests; the URL names it otherwise.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireRequest<'a> {
    #[serde(default)]
    model: Option<String>,
    #[serde(default, borrow)]
    contents: Option<&'a RawValue>,
    #[serde(default, borrow)]
    system_instruction: Option<&'a RawValue>,
    #[serde(default)]
    generation_config: Option<GenerationConfig<'a>>,
    #[serde(default, borrow)]
    tools: Option<&'a RawValue>,
    #[serde(default, borrow)]
    tool_config: Option<&'a RawValue>,
    /// `embedContent`: the one content embedded.
    #[serde(default, borrow)]
    content: Option<&'a RawValue>,
    /// `batchEmbedContents`: the embed requests.
    #[serde(default, borrow)]
    requests: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenerationConfig<'a> {
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    top_k: Option<f64>,
    #[serde(default)]
    max_output_tokens: Option<u64>,
    #[serde(default, borrow)]
    stop_sequences: Option<&'a RawValue>,
    #[serde(default)]
    candidate_count: Option<u64>,
    #[serde(default)]
    seed: Option<i64>,
    #[serde(default)]
    presence_penalty: Option<f64>,
    #[serde(default)]
    frequency_penalty: Option<f64>,
    #[serde(default, borrow)]
    response_mime_type: Option<&'a RawValue>,
    #[serde(default, borrow)]
    response_schema: Option<&'a RawValue>,
    #[serde(default, borrow)]
    response_json_schema: Option<&'a RawValue>,
}

/// `responseMimeType` and `responseSchema` (or `responseJsonSchema`) as one
/// `{responseMimeType, responseSchema}` object, when either is set.
fn response_format(config: &GenerationConfig<'_>) -> Option<Json> {
    if config.response_mime_type.is_none()
        && config.response_schema.is_none()
        && config.response_json_schema.is_none()
    {
        return None;
    }
    let mut text = String::from("{");
    let mut first = true;
    for (name, raw) in [
        ("responseMimeType", config.response_mime_type),
        ("responseSchema", config.response_schema),
        ("responseJsonSchema", config.response_json_schema),
    ] {
        if let Some(raw) = raw {
            if !first {
                text.push(',');
            }
            first = false;
            text.push('"');
            text.push_str(name);
            text.push_str("\":");
            text.push_str(raw.get());
        }
    }
    text.push('}');
    Some(Json::from_valid_text(&text))
}

/// Decodes a Gemini request body. Fails when the body is not a JSON object with the expected
/// field types.
pub(crate) fn decode_request(
    endpoint: Endpoint,
    body: &[u8],
) -> Result<RequestRecord, serde_json::Error> {
    let wire: WireRequest<'_> = read_json(body)?;
    if crate::json::nested_too_deep(body) {
        return Err(crate::json::too_deep_error("the request"));
    }
    let kept = |raw: Option<&RawValue>| raw.map(Json::from_raw);
    let embeddings = matches!(
        endpoint,
        Endpoint::GeminiEmbedContent | Endpoint::GeminiBatchEmbedContents
    );
    let mut record = RequestRecord {
        stream: endpoint == Endpoint::GeminiStreamGenerateContent,
        tools: kept(wire.tools),
        tool_choice: kept(wire.tool_config),
        instructions: kept(wire.system_instruction),
        model: wire
            .model
            .map(|m| m.strip_prefix("models/").map(str::to_owned).unwrap_or(m)),
        ..RequestRecord::default()
    };
    if embeddings {
        record.input = kept(wire.content.or(wire.requests));
    } else {
        record.messages = kept(wire.contents);
    }
    if let Some(config) = wire.generation_config {
        record.response_format = response_format(&config);
        record.temperature = config.temperature;
        record.top_p = config.top_p;
        record.top_k = config
            .top_k
            .filter(|k| *k >= 0.0 && k.fract() == 0.0)
            .map(|k| k as u64);
        record.max_tokens = config.max_output_tokens;
        record.stop = kept(config.stop_sequences);
        record.n = config.candidate_count;
        record.seed = config.seed;
        record.presence_penalty = config.presence_penalty;
        record.frequency_penalty = config.frequency_penalty;
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn generate_content_parameters() {
        let body = json!({
            "contents": [{"role": "user", "parts": [{"text": "Hi"}]}],
            "systemInstruction": {"parts": [{"text": "Be brief."}]},
            "generationConfig": {"temperature": 0.5, "topP": 0.9, "topK": 40,
                "maxOutputTokens": 100, "stopSequences": ["END"], "candidateCount": 2,
                "seed": 7, "presencePenalty": 0.1, "frequencyPenalty": 0.2,
                "responseMimeType": "application/json", "responseSchema": {"type": "OBJECT"}},
            "tools": [{"functionDeclarations": [{"name": "f"}]}],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY"}}
        });
        let bytes = body.to_string();
        let record = decode_request(Endpoint::GeminiGenerateContent, bytes.as_bytes()).unwrap();
        assert!(!record.stream);
        assert_eq!(record.temperature, Some(0.5));
        assert_eq!(record.top_p, Some(0.9));
        assert_eq!(record.top_k, Some(40));
        assert_eq!(record.max_tokens, Some(100));
        assert_eq!(record.n, Some(2));
        assert_eq!(record.seed, Some(7));
        assert_eq!(record.presence_penalty, Some(0.1));
        assert_eq!(record.frequency_penalty, Some(0.2));
        assert_eq!(record.stop.unwrap(), json!(["END"]));
        assert_eq!(
            record.response_format.unwrap(),
            json!({"responseMimeType": "application/json", "responseSchema": {"type": "OBJECT"}})
        );
        assert_eq!(
            record.instructions.unwrap()["parts"][0]["text"],
            "Be brief."
        );
        assert_eq!(record.messages.unwrap()[0]["parts"][0]["text"], "Hi");
        assert_eq!(
            record.tool_choice.unwrap(),
            json!({"functionCallingConfig": {"mode": "ANY"}})
        );
        let streamed =
            decode_request(Endpoint::GeminiStreamGenerateContent, bytes.as_bytes()).unwrap();
        assert!(streamed.stream);
    }

    #[test]
    fn embeddings_input_and_errors() {
        let body =
            br#"{"requests": [{"model": "models/e", "content": {"parts": [{"text": "a"}]}}]}"#;
        let record = decode_request(Endpoint::GeminiBatchEmbedContents, body).unwrap();
        assert_eq!(record.input.unwrap()[0]["content"]["parts"][0]["text"], "a");
        assert!(record.messages.is_none());
        assert!(decode_request(
            Endpoint::GeminiGenerateContent,
            b"{\"contents\": 5, \"generationConfig\": 1}"
        )
        .is_err());
        assert!(decode_request(Endpoint::GeminiGenerateContent, b"x=1").is_err());
    }
}
