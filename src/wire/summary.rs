//! What a response said, in the terms every wire format reports: the one shape the core reads.

use serde_json::Value;

use crate::json::Json;
use crate::payload::{CallError, Cost, Usage};

/// Usage from counts that keep the prompt cache apart (Anthropic, Bedrock Converse), as the
/// OpenTelemetry GenAI conventions count it: `input_tokens` is every input token — `uncached`
/// plus the cache reads and writes — and the total is input plus output.
pub(crate) fn usage_with_cache(
    uncached: Option<u64>,
    output: Option<u64>,
    cache_read: Option<u64>,
    cache_write: Option<u64>,
) -> Usage {
    let input = uncached.map(|uncached| {
        uncached
            .saturating_add(cache_read.unwrap_or(0))
            .saturating_add(cache_write.unwrap_or(0))
    });
    Usage {
        input_tokens: input,
        output_tokens: output,
        total_tokens: input.zip(output).map(|(i, o)| i.saturating_add(o)),
        cached_input_tokens: cache_read,
        cache_creation_input_tokens: cache_write,
        reasoning_tokens: None,
    }
}

/// What a response said, whichever way it arrived (one JSON body or an assembled stream).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ResponseSummary {
    /// The response in the endpoint's non-streaming shape, in the provider's own words.
    pub response: Option<Json>,
    /// Normalised usage, when reported.
    pub usage: Option<Usage>,
    /// What the call cost by the provider's own account (OpenRouter's `usage.cost`), with
    /// `pricing_source` `provider`; a pricing processor keeps it.
    pub reported_cost: Option<Cost>,
    /// Finish reasons in the provider's words (one per choice where a response has several).
    pub finish_reasons: Vec<String>,
    /// An error the body itself reported (`{"error": {...}}`, `response.failed`, ...).
    pub error: Option<CallError>,
    /// `model` as reported by the response.
    pub model: Option<String>,
    /// `id` as reported by the response.
    pub id: Option<String>,
    /// Part of the response was not read into the summary (too many choices).
    pub truncated: bool,
    /// Part of the response could not be decoded (e.g. a streamed tool input that is not
    /// JSON); the record keeps what it could, and says this.
    pub decode_error: Option<String>,
}

/// An error object as OpenAI and Anthropic write it (`{"type", "code", "message"}`: the
/// `error` of a body or of a stream event), read leniently: `code` and `type` may be strings, integers or null; `error` may be a bare string.
pub(crate) fn error_from_value(error: &Value) -> Option<CallError> {
    fn text(value: Option<&Value>) -> Option<String> {
        match value? {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }
    match error {
        Value::Object(fields) => Some(CallError {
            kind: text(fields.get("type")),
            code: text(fields.get("code")),
            message: text(fields.get("message")),
        }),
        Value::String(message) => Some(CallError {
            kind: None,
            code: None,
            message: Some(message.clone()),
        }),
        _ => None,
    }
}
