//! Decoding of complete (non-streamed) Ollama responses: embeddings (`/api/embed`,
//! `/api/embeddings`), whose vectors are dropped and counted, and a chat or generate body read
//! as the one line of its stream.

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::assemble::{OllamaFold, Shape};
use crate::json::Json;
use crate::payload::Usage;
use crate::wire::assemble::StreamFold;
use crate::wire::budget::{small_tree, ContentBudget, SMALL_VALUE};
use crate::wire::endpoint::Endpoint;
use crate::wire::read::{raw_string, read_json};
use crate::wire::summary::{error_from_value, ResponseSummary};
use crate::wire::Event;

/// An embeddings response, its vectors counted without being built.
#[derive(Deserialize)]
struct WireEmbeddings<'a> {
    #[serde(default, borrow)]
    model: Option<&'a RawValue>,
    /// `/api/embed`: one vector per input.
    #[serde(default)]
    embeddings: Option<Vec<Vector>>,
    /// `/api/embeddings`: the one vector.
    #[serde(default)]
    embedding: Option<Vector>,
    #[serde(default)]
    total_duration: Option<u64>,
    #[serde(default)]
    load_duration: Option<u64>,
    #[serde(default)]
    prompt_eval_count: Option<u64>,
    #[serde(default, borrow)]
    error: Option<&'a RawValue>,
}

/// A vector, as its length only.
struct Vector(usize);

impl<'de> Deserialize<'de> for Vector {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Counter;
        impl<'de> serde::de::Visitor<'de> for Counter {
            type Value = Vector;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an array of numbers")
            }
            fn visit_seq<S: serde::de::SeqAccess<'de>>(
                self,
                mut seq: S,
            ) -> Result<Vector, S::Error> {
                let mut n = 0;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    n += 1;
                }
                Ok(Vector(n))
            }
        }
        deserializer.deserialize_seq(Counter)
    }
}

/// Decodes a complete response body of `endpoint`.
pub(crate) fn decode_json_response(
    endpoint: Endpoint,
    body: &[u8],
) -> Result<ResponseSummary, serde_json::Error> {
    match endpoint {
        Endpoint::OllamaEmbed | Endpoint::OllamaEmbeddings => decode_embeddings(body),
        Endpoint::OllamaGenerate => decode_as_line(Shape::Generate, body),
        _ => decode_as_line(Shape::Chat, body),
    }
}

/// A chat or generate body: the last (and only) line of its stream.
fn decode_as_line(shape: Shape, body: &[u8]) -> Result<ResponseSummary, serde_json::Error> {
    let mut fold = OllamaFold::new(shape);
    let mut budget = ContentBudget::new(body.len().saturating_add(1 << 10));
    let data = body.trim_ascii();
    if crate::json::nested_too_deep(data) {
        return Err(crate::json::too_deep_error("the response"));
    }
    fold.push(Event { name: b"", data }, &mut budget)?;
    Ok(fold.into_summary())
}

fn decode_embeddings(body: &[u8]) -> Result<ResponseSummary, serde_json::Error> {
    let wire: WireEmbeddings<'_> = read_json(body)?;
    if crate::json::nested_too_deep(body) {
        return Err(crate::json::too_deep_error("the response"));
    }
    let error = wire
        .error
        .filter(|e| e.get() != "null" && e.get().len() <= SMALL_VALUE)
        .and_then(small_tree);
    let model = wire.model.and_then(raw_string);
    let mut response = Map::new();
    if let Some(model) = &model {
        response.insert("model".into(), model.clone().into());
    }
    let vectors: Vec<&Vector> = match (&wire.embeddings, &wire.embedding) {
        (Some(many), _) => many.iter().collect(),
        (None, Some(one)) => vec![one],
        (None, None) => Vec::new(),
    };
    if !vectors.is_empty() {
        // The vectors are dropped: how many, and their size, are kept.
        response.insert("embedding_count".into(), vectors.len().into());
        response.insert("dimensions".into(), vectors[0].0.into());
    }
    for (name, value) in [
        ("total_duration", wire.total_duration),
        ("load_duration", wire.load_duration),
        ("prompt_eval_count", wire.prompt_eval_count),
    ] {
        if let Some(value) = value {
            response.insert(name.into(), value.into());
        }
    }
    if let Some(error) = &error {
        response.insert("error".into(), error.clone());
    }
    Ok(ResponseSummary {
        response: Some(Json::from(Value::Object(response))),
        usage: wire.prompt_eval_count.map(|input| Usage {
            input_tokens: Some(input),
            total_tokens: Some(input),
            ..Usage::default()
        }),
        error: error.as_ref().and_then(error_from_value),
        model,
        ..ResponseSummary::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn embed_vectors_are_counted_and_dropped() {
        let body = json!({"model": "all-minilm", "embeddings": [[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]],
            "total_duration": 14143917, "load_duration": 1019500, "prompt_eval_count": 8});
        let summary =
            decode_json_response(Endpoint::OllamaEmbed, body.to_string().as_bytes()).unwrap();
        assert_eq!(summary.model.as_deref(), Some("all-minilm"));
        assert_eq!(summary.usage.unwrap().input_tokens, Some(8));
        assert_eq!(
            summary.response.unwrap().value(),
            &json!({"model": "all-minilm", "embedding_count": 2, "dimensions": 3,
                "total_duration": 14143917, "load_duration": 1019500, "prompt_eval_count": 8})
        );
    }

    #[test]
    fn legacy_embedding_and_errors() {
        let summary =
            decode_json_response(Endpoint::OllamaEmbeddings, br#"{"embedding":[1.0,2.0]}"#)
                .unwrap();
        assert_eq!(
            summary.response.unwrap().value(),
            &json!({"embedding_count": 1, "dimensions": 2})
        );
        assert!(summary.usage.is_none() && summary.model.is_none());
        let summary =
            decode_json_response(Endpoint::OllamaEmbed, br#"{"error":"model 'x' not found"}"#)
                .unwrap();
        assert_eq!(
            summary.error.unwrap().message.as_deref(),
            Some("model 'x' not found")
        );
        assert!(decode_json_response(Endpoint::OllamaEmbed, b"<html>").is_err());
    }

    #[test]
    fn a_chat_body_is_read_as_its_one_line() {
        let body = br#" {"model":"m","created_at":"x","message":{"role":"assistant","content":"Hi"},"done_reason":"stop","done":true,"prompt_eval_count":1,"eval_count":2}
"#;
        let summary = decode_json_response(Endpoint::OllamaChat, body).unwrap();
        assert_eq!(summary.finish_reasons, vec!["stop"]);
        assert_eq!(summary.usage.unwrap().total_tokens, Some(3));
        assert_eq!(summary.response.unwrap()["message"]["content"], "Hi");
        assert!(decode_json_response(Endpoint::OllamaGenerate, b"[").is_err());
    }
}
