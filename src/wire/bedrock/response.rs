//! Decoding of complete (non-streamed) Converse responses, and the usage and error shapes the
//! stream fold shares. A Converse body carries no id and no model: the id is the
//! `x-amzn-requestid` header, the model the path's.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::json::Json;
use crate::payload::{CallError, Usage};
use crate::wire::read::raw_string;
use crate::wire::summary::{usage_with_cache, ResponseSummary};

/// Usage as Converse reports it: `inputTokens` leaves out the tokens read from and written to
/// the prompt cache, which come apart.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    cache_write_input_tokens: Option<u64>,
}

impl WireUsage {
    /// Normalised: `input_tokens` counts every input token, cache reads and writes included;
    /// the total is input plus output.
    fn normalise(&self) -> Usage {
        usage_with_cache(
            self.input_tokens,
            self.output_tokens,
            self.cache_read_input_tokens,
            self.cache_write_input_tokens,
        )
    }
}

/// Normalised usage from a raw `usage` object; `None` for anything else, or counts that are
/// not whole numbers.
pub(crate) fn usage_from_raw(raw: &RawValue) -> Option<Usage> {
    if !raw.get().starts_with('{') {
        return None;
    }
    serde_json::from_str::<WireUsage>(raw.get())
        .ok()
        .map(|u| u.normalise())
}

/// An AWS error body's message (`message`, or `Message` as some services write it).
#[derive(Deserialize)]
struct WireError<'a> {
    #[serde(default, borrow)]
    message: Option<&'a RawValue>,
    #[serde(default, borrow, rename = "Message")]
    message_upper: Option<&'a RawValue>,
}

/// An error from an AWS error body or exception payload (`{"message": ...}`); its type comes
/// from the exception frame or the `x-amzn-errortype` header.
pub(crate) fn error_from_payload(kind: Option<String>, payload: &str) -> CallError {
    let message = serde_json::from_str::<WireError<'_>>(payload)
        .ok()
        .and_then(|e| e.message.or(e.message_upper))
        .and_then(raw_string);
    CallError {
        kind,
        code: None,
        message,
    }
}

/// The top-level fields a summary needs from a Converse response or an error body, each read
/// leniently (a field of an unexpected type is ignored, not an error).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireResponse<'a> {
    #[serde(default, borrow)]
    output: Option<&'a RawValue>,
    #[serde(default, borrow)]
    stop_reason: Option<&'a RawValue>,
    #[serde(default, borrow)]
    usage: Option<&'a RawValue>,
    #[serde(default, borrow)]
    message: Option<&'a RawValue>,
    #[serde(default, borrow, rename = "Message")]
    message_upper: Option<&'a RawValue>,
}

/// Decodes a complete Converse response (or error) body; the body is kept as its text.
pub(crate) fn decode_json_response(body: &[u8]) -> Result<ResponseSummary, serde_json::Error> {
    let text = match std::str::from_utf8(body) {
        Ok(text) => text.trim_matches([' ', '\t', '\n', '\r']),
        Err(_) => {
            serde_json::from_slice::<serde::de::IgnoredAny>(body)?;
            return Ok(ResponseSummary::default());
        }
    };
    if !text.starts_with('{') {
        serde_json::from_str::<serde::de::IgnoredAny>(text)?;
        return Ok(ResponseSummary {
            response: Some(Json::from_valid_text(text)),
            ..ResponseSummary::default()
        });
    }
    let wire: WireResponse<'_> = serde_json::from_str(text)?;
    if crate::json::nested_too_deep(text.as_bytes()) {
        return Err(crate::json::too_deep_error("the response"));
    }
    // An error body is `{"message": ...}` with no output.
    let error = match (wire.output, wire.message.or(wire.message_upper)) {
        (None, Some(message)) => Some(CallError {
            kind: None,
            code: None,
            message: raw_string(message),
        }),
        _ => None,
    };
    Ok(ResponseSummary {
        usage: wire.usage.and_then(usage_from_raw),
        reported_cost: None,
        finish_reasons: wire.stop_reason.and_then(raw_string).into_iter().collect(),
        error,
        model: None,
        id: None,
        response: Some(Json::from_valid_text(text)),
        truncated: false,
        decode_error: None,
    })
}

/// Normalised usage from a `usage` value (as [`usage_from_raw`]).
pub(crate) fn usage_from_value(value: &Value) -> Option<Usage> {
    if !value.is_object() {
        return None;
    }
    WireUsage::deserialize(value).ok().map(|u| u.normalise())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn converse_summary_counts_every_input_token() {
        let body = json!({
            "output": {"message": {"role": "assistant", "content": [{"text": "Hi"}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": 10, "outputTokens": 5, "totalTokens": 1215,
                      "cacheReadInputTokens": 200, "cacheWriteInputTokens": 1000},
            "metrics": {"latencyMs": 300}
        });
        let summary = decode_json_response(body.to_string().as_bytes()).unwrap();
        assert_eq!(summary.finish_reasons, vec!["end_turn"]);
        assert_eq!(
            (summary.id, summary.model, summary.error),
            (None, None, None)
        );
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
    fn error_body_and_exception_payload() {
        let summary =
            decode_json_response(br#"{"message":"The provided model identifier is invalid."}"#)
                .unwrap();
        let error = summary.error.unwrap();
        assert_eq!(error.kind, None);
        assert_eq!(
            error.message.as_deref(),
            Some("The provided model identifier is invalid.")
        );
        let error = error_from_payload(
            Some("throttlingException".into()),
            r#"{"message":"Too many requests"}"#,
        );
        assert_eq!(error.kind.as_deref(), Some("throttlingException"));
        assert_eq!(error.message.as_deref(), Some("Too many requests"));
    }

    #[test]
    fn odd_field_types_are_ignored_and_non_json_is_an_error() {
        let summary = decode_json_response(br#"{"stopReason": 7, "usage": "x"}"#).unwrap();
        assert_eq!(summary.usage, None);
        assert!(summary.finish_reasons.is_empty());
        assert!(decode_json_response(b"<html>").is_err());
        assert!(decode_json_response(b"{\"output\": ").is_err());
    }
}
