//! Decoding of Ollama request bodies (`/api/chat`, `/api/generate`, `/api/embed`,
//! `/api/embeddings`) into a [`RequestRecord`].

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::json::Json;
use crate::payload::RequestRecord;
use crate::wire::endpoint::Endpoint;
use crate::wire::read::read_json;

/// The request fields we record, as Ollama names them. JSON-valued fields are borrowed as text.
#[derive(Deserialize)]
struct WireRequest<'a> {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default, borrow)]
    messages: Option<&'a RawValue>,
    #[serde(default, borrow)]
    prompt: Option<&'a RawValue>,
    #[serde(default, borrow)]
    system: Option<&'a RawValue>,
    #[serde(default, borrow)]
    input: Option<&'a RawValue>,
    #[serde(default, borrow)]
    tools: Option<&'a RawValue>,
    #[serde(default, borrow)]
    format: Option<&'a RawValue>,
    #[serde(default)]
    options: Option<WireOptions<'a>>,
}

/// `options`: the model parameters.
#[derive(Deserialize)]
struct WireOptions<'a> {
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    top_k: Option<u64>,
    /// `-1` (no limit) and `-2` (fill the context) are not a maximum.
    #[serde(default)]
    num_predict: Option<i64>,
    #[serde(default, borrow)]
    stop: Option<&'a RawValue>,
    #[serde(default)]
    seed: Option<i64>,
    #[serde(default)]
    presence_penalty: Option<f64>,
    #[serde(default)]
    frequency_penalty: Option<f64>,
}

/// A field worth keeping: present, not `null`, not `""` (clients send `"format": ""` and
/// `"system": ""` for "none").
fn kept(raw: Option<&RawValue>) -> Option<Json> {
    raw.filter(|r| !matches!(r.get(), "null" | "\"\""))
        .map(Json::from_raw)
}

/// Decodes a request body of `endpoint`. Fails when the body is not a JSON object with the
/// expected field types.
pub(crate) fn decode_request(
    endpoint: Endpoint,
    body: &[u8],
) -> Result<RequestRecord, serde_json::Error> {
    let wire: WireRequest<'_> = read_json(body)?;
    if crate::json::nested_too_deep(body) {
        return Err(crate::json::too_deep_error("the request"));
    }
    let options = wire.options.as_ref();
    let embeddings = matches!(endpoint, Endpoint::OllamaEmbed | Endpoint::OllamaEmbeddings);
    let mut record = RequestRecord {
        // Ollama streams unless told not to (embeddings never stream).
        stream: !embeddings && wire.stream.unwrap_or(true),
        temperature: options.and_then(|o| o.temperature),
        top_p: options.and_then(|o| o.top_p),
        presence_penalty: options.and_then(|o| o.presence_penalty),
        frequency_penalty: options.and_then(|o| o.frequency_penalty),
        top_k: options.and_then(|o| o.top_k),
        max_tokens: options
            .and_then(|o| o.num_predict)
            .and_then(|n| u64::try_from(n).ok()),
        seed: options.and_then(|o| o.seed),
        stop: kept(options.and_then(|o| o.stop)),
        tools: kept(wire.tools),
        response_format: kept(wire.format),
        messages: kept(wire.messages),
        instructions: kept(wire.system),
        model: wire.model,
        ..RequestRecord::default()
    };
    if embeddings {
        // `/api/embed` takes `input`; the older `/api/embeddings` takes `prompt`.
        record.input = kept(wire.input).or_else(|| kept(wire.prompt));
    } else {
        record.prompt = kept(wire.prompt);
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn chat_request_parameters() {
        let body = json!({
            "model": "qwen3", "messages": [{"role": "user", "content": "Hi"}],
            "options": {"temperature": 0, "top_p": 0.9, "top_k": 40, "num_predict": 128,
                        "stop": ["\n"], "seed": 42, "presence_penalty": 0.5, "frequency_penalty": 0.25},
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "format": "json", "think": true
        });
        let record = decode_request(Endpoint::OllamaChat, body.to_string().as_bytes()).unwrap();
        assert_eq!(record.model.as_deref(), Some("qwen3"));
        assert!(record.stream, "Ollama streams when `stream` is absent");
        assert_eq!(record.temperature, Some(0.0));
        assert_eq!(record.top_p, Some(0.9));
        assert_eq!(record.top_k, Some(40));
        assert_eq!(record.max_tokens, Some(128));
        assert_eq!(record.seed, Some(42));
        assert_eq!(record.presence_penalty, Some(0.5));
        assert_eq!(record.frequency_penalty, Some(0.25));
        assert_eq!(record.stop.unwrap(), json!(["\n"]));
        assert_eq!(record.response_format.unwrap(), json!("json"));
        assert_eq!(record.tools.unwrap()[0]["function"]["name"], "f");
        assert_eq!(record.messages.unwrap()[0]["content"], "Hi");
    }

    #[test]
    fn generate_and_embeddings_requests() {
        let body = br#"{"model": "llama3", "prompt": "Tell me", "system": "", "stream": false, "format": "", "options": {"num_predict": -1}, "tools": []}"#;
        let record = decode_request(Endpoint::OllamaGenerate, body).unwrap();
        assert!(!record.stream);
        assert_eq!(record.prompt.unwrap(), json!("Tell me"));
        assert!(record.instructions.is_none() && record.response_format.is_none());
        assert!(record.max_tokens.is_none());
        assert_eq!(record.tools.unwrap(), json!([]));

        let record = decode_request(
            Endpoint::OllamaEmbeddings,
            br#"{"model": "m", "prompt": "x"}"#,
        )
        .unwrap();
        assert!(!record.stream);
        assert_eq!(record.input.unwrap(), json!("x"));
        let record = decode_request(
            Endpoint::OllamaEmbed,
            br#"{"model": "m", "input": ["a", "b"]}"#,
        )
        .unwrap();
        assert_eq!(record.input.unwrap(), json!(["a", "b"]));
    }

    #[test]
    fn wrong_types_and_non_json_are_errors() {
        assert!(decode_request(Endpoint::OllamaChat, b"{\"model\": 5}").is_err());
        assert!(decode_request(Endpoint::OllamaChat, b"{\"options\": {\"seed\": \"x\"}}").is_err());
        assert!(decode_request(Endpoint::OllamaChat, b"model=x").is_err());
    }
}
