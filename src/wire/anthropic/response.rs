//! Decoding of complete (non-streamed) Anthropic Messages responses, and the usage and error
//! shapes the stream fold shares.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::json::Json;
use crate::payload::Usage;
use crate::wire::read::raw_string;
use crate::wire::summary::{error_from_value, usage_with_cache, ResponseSummary};

/// Usage as Anthropic reports it: `input_tokens` leaves out the tokens read from and written
/// to the prompt cache, which come apart.
#[derive(Debug, Default, Deserialize)]
struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
}

impl WireUsage {
    /// Normalised: `input_tokens` counts every input token, cache reads and writes included (the
    /// OpenTelemetry GenAI rule); the total is input plus output (Anthropic reports none).
    fn normalise(&self) -> Usage {
        usage_with_cache(
            self.input_tokens,
            self.output_tokens,
            self.cache_read_input_tokens,
            self.cache_creation_input_tokens,
        )
    }
}

/// Normalised usage from a `usage` object; `None` for anything else, or counts that are not
/// whole numbers.
pub(crate) fn usage_from_value(value: &Value) -> Option<Usage> {
    if !value.is_object() {
        return None;
    }
    WireUsage::deserialize(value).ok().map(|u| u.normalise())
}

/// Normalised usage from a raw `usage` value (as [`usage_from_value`]).
fn usage_from_raw(raw: &RawValue) -> Option<Usage> {
    if !raw.get().starts_with('{') {
        return None;
    }
    serde_json::from_str::<WireUsage>(raw.get())
        .ok()
        .map(|u| u.normalise())
}

/// The top-level fields a summary needs from a Message or an error body, each read leniently
/// (a field of an unexpected type is ignored, not an error).
#[derive(Deserialize)]
struct WireMessage<'a> {
    #[serde(default, borrow)]
    id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    model: Option<&'a RawValue>,
    #[serde(default, borrow)]
    stop_reason: Option<&'a RawValue>,
    #[serde(default, borrow)]
    usage: Option<&'a RawValue>,
    #[serde(default, borrow)]
    error: Option<&'a RawValue>,
}

/// The largest `error` value read into a tree.
const SMALL_ERROR: usize = 64 << 10;

/// Decodes a complete Messages response (or error) body; the body is kept as its text.
pub(crate) fn decode_json_response(body: &[u8]) -> Result<ResponseSummary, serde_json::Error> {
    let text = match std::str::from_utf8(body) {
        Ok(text) => text.trim_matches([' ', '\t', '\n', '\r']),
        // Not UTF-8: say why as serde_json does.
        Err(_) => {
            serde_json::from_slice::<serde::de::IgnoredAny>(body)?;
            return Ok(ResponseSummary::default());
        }
    };
    if !text.starts_with('{') {
        // JSON, but not an object: checked without being built, kept as it is.
        serde_json::from_str::<serde::de::IgnoredAny>(text)?;
        return Ok(ResponseSummary {
            response: Some(Json::from_valid_text(text)),
            ..ResponseSummary::default()
        });
    }
    let wire: WireMessage<'_> = serde_json::from_str(text)?;
    if crate::json::nested_too_deep(text.as_bytes()) {
        return Err(crate::json::too_deep_error("the response"));
    }
    Ok(ResponseSummary {
        usage: wire.usage.and_then(usage_from_raw),
        reported_cost: None,
        finish_reasons: wire.stop_reason.and_then(raw_string).into_iter().collect(),
        error: wire
            .error
            .filter(|e| e.get() != "null" && e.get().len() <= SMALL_ERROR)
            .and_then(|e| serde_json::from_str::<Value>(e.get()).ok())
            .and_then(|e| error_from_value(&e)),
        model: wire.model.and_then(raw_string),
        id: wire.id.and_then(raw_string),
        response: Some(Json::from_valid_text(text)),
        truncated: false,
        decode_error: None,
    })
}

/// `base` with each field of `update` put over it: how a stream's `message_delta.usage`
/// (cumulative) overrides its `message_start.usage`.
pub(crate) fn merge_usage(base: &mut Map<String, Value>, update: Map<String, Value>) {
    for (key, value) in update {
        base.insert(key, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn message_summary_counts_every_input_token() {
        let body = json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-3-5-haiku-20241022",
            "content": [{"type": "text", "text": "Hi"}], "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 10, "cache_creation_input_tokens": 1000,
                      "cache_read_input_tokens": 200, "output_tokens": 5}
        });
        let summary = decode_json_response(body.to_string().as_bytes()).unwrap();
        assert_eq!(summary.id.as_deref(), Some("msg_1"));
        assert_eq!(summary.model.as_deref(), Some("claude-3-5-haiku-20241022"));
        assert_eq!(summary.finish_reasons, vec!["end_turn"]);
        assert_eq!(
            summary.usage,
            Some(Usage {
                input_tokens: Some(1210),
                output_tokens: Some(5),
                total_tokens: Some(1215),
                cached_input_tokens: Some(200),
                cache_creation_input_tokens: Some(1000),
                reasoning_tokens: None,
            })
        );
        assert_eq!(summary.response.unwrap().value(), &body);
    }

    #[test]
    fn error_body() {
        let body = br#"{"type":"error","error":{"type":"not_found_error","message":"model: claude-x"},"request_id":"req_1"}"#;
        let summary = decode_json_response(body).unwrap();
        let error = summary.error.unwrap();
        assert_eq!(error.kind.as_deref(), Some("not_found_error"));
        assert_eq!(error.message.as_deref(), Some("model: claude-x"));
        assert_eq!(error.code, None);
    }

    #[test]
    fn odd_field_types_are_ignored_and_non_json_is_an_error() {
        let summary =
            decode_json_response(br#"{"id": 7, "stop_reason": null, "usage": "x"}"#).unwrap();
        assert_eq!((summary.id, summary.usage), (None, None));
        assert!(summary.finish_reasons.is_empty());
        assert!(decode_json_response(b"<html>").is_err());
        assert!(decode_json_response(b"{\"id\": ").is_err());
    }
}
