//! Decoding of complete (non-streamed) Gemini responses — a `GenerateContentResponse`, an
//! embeddings response, or an error body — and the usage and error shapes the stream fold
//! shares.

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::json::Json;
use crate::payload::{CallError, Usage};
use crate::wire::budget::{MAX_ENTRIES_PER_EVENT, SMALL_VALUE, TREE_LIMIT};
use crate::wire::endpoint::Endpoint;
use crate::wire::read::{raw_string, Capped};
use crate::wire::summary::ResponseSummary;

/// `usageMetadata` as Gemini reports it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireUsage {
    #[serde(default)]
    prompt_token_count: Option<u64>,
    #[serde(default)]
    tool_use_prompt_token_count: Option<u64>,
    #[serde(default)]
    cached_content_token_count: Option<u64>,
    #[serde(default)]
    candidates_token_count: Option<u64>,
    #[serde(default)]
    thoughts_token_count: Option<u64>,
    #[serde(default)]
    total_token_count: Option<u64>,
}

fn sum(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0).saturating_add(b.unwrap_or(0))),
    }
}

impl WireUsage {
    /// Normalised: input counts the prompt and the tool-use prompt (cached tokens are part of
    /// the prompt count), output counts the candidates and the thoughts (as OpenAI's completion
    /// tokens include reasoning).
    fn normalise(&self) -> Usage {
        let input = sum(self.prompt_token_count, self.tool_use_prompt_token_count);
        let output = sum(self.candidates_token_count, self.thoughts_token_count);
        Usage {
            input_tokens: input,
            output_tokens: output,
            total_tokens: self.total_token_count.or_else(|| {
                input
                    .zip(output)
                    .map(|(input, output)| input.saturating_add(output))
            }),
            cached_input_tokens: self.cached_content_token_count,
            cache_creation_input_tokens: None,
            reasoning_tokens: self.thoughts_token_count,
        }
    }
}

/// Normalised usage from `usageMetadata` (its JSON text); `None` for anything but an object of
/// counts.
pub(crate) fn usage_from_raw(raw: &str) -> Option<Usage> {
    if !raw.starts_with('{') {
        return None;
    }
    serde_json::from_str::<WireUsage>(raw)
        .ok()
        .map(|u| u.normalise())
}

/// A Google API error object (`{"code": 404, "message", "status": "NOT_FOUND"}`): its kind is
/// the `status`, its code the numeric `code` as text.
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
            kind: text(fields.get("status")),
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

/// An error from a raw `error` value, if it is small enough to read.
pub(crate) fn error_from_raw(raw: &RawValue) -> Option<CallError> {
    if raw.get() == "null" || raw.get().len() > SMALL_VALUE {
        return None;
    }
    serde_json::from_str::<Value>(raw.get())
        .ok()
        .and_then(|e| error_from_value(&e))
}

/// A candidate's `finishReason`, the rest unread.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CandidateEnd<'a> {
    #[serde(default, borrow)]
    pub(crate) finish_reason: Option<&'a RawValue>,
}

/// The top-level fields a summary needs, read leniently.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireResponse<'a> {
    #[serde(default, borrow)]
    response_id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    model_version: Option<&'a RawValue>,
    #[serde(default, borrow)]
    usage_metadata: Option<&'a RawValue>,
    #[serde(default, borrow)]
    error: Option<&'a RawValue>,
    #[serde(default, borrow)]
    candidates: Option<&'a RawValue>,
}

type Candidates<'a> = Capped<CandidateEnd<'a>, Vec<CandidateEnd<'a>>, MAX_ENTRIES_PER_EVENT>;

/// Finish reasons of a raw `candidates` array, and whether some candidates were not read.
fn finish_reasons(raw: Option<&RawValue>) -> (Vec<String>, bool) {
    let Some(Ok(candidates)) = raw.map(|r| serde_json::from_str::<Candidates<'_>>(r.get())) else {
        return (Vec::new(), false);
    };
    let reasons = candidates
        .items
        .iter()
        .filter_map(|c| c.finish_reason.and_then(raw_string))
        .collect();
    (reasons, candidates.skipped)
}

/// The body as text without surrounding whitespace, or why it is not JSON.
fn trimmed(body: &[u8]) -> Result<Option<&str>, serde_json::Error> {
    match std::str::from_utf8(body) {
        Ok(text) => Ok(Some(text.trim_matches([' ', '\t', '\n', '\r']))),
        Err(_) => {
            serde_json::from_slice::<IgnoredAny>(body)?;
            Ok(None)
        }
    }
}

/// Decodes a complete response body of `endpoint`.
pub(crate) fn decode_json_response(
    endpoint: Endpoint,
    body: &[u8],
) -> Result<ResponseSummary, serde_json::Error> {
    let Some(text) = trimmed(body)? else {
        return Ok(ResponseSummary::default());
    };
    if text.starts_with('[') && endpoint == Endpoint::GeminiStreamGenerateContent {
        // A streamed JSON array read whole: folded as the stream is.
        return streamed_array(text);
    }
    if !text.starts_with('{') {
        // JSON, but not an object (a streamed array read whole, say): checked, kept as is.
        serde_json::from_str::<IgnoredAny>(text)?;
        return Ok(ResponseSummary {
            response: Some(Json::from_valid_text(text)),
            ..ResponseSummary::default()
        });
    }
    let wire: WireResponse<'_> = serde_json::from_str(text)?;
    if crate::json::nested_too_deep(text.as_bytes()) {
        return Err(crate::json::too_deep_error("the response"));
    }
    let embeddings = matches!(
        endpoint,
        Endpoint::GeminiEmbedContent | Endpoint::GeminiBatchEmbedContents
    );
    let (reasons, skipped) = finish_reasons(wire.candidates);
    let (response, truncated) = if embeddings {
        without_vectors(text)
    } else {
        (Some(Json::from_valid_text(text)), false)
    };
    Ok(ResponseSummary {
        response,
        usage: wire
            .usage_metadata
            .map(RawValue::get)
            .and_then(usage_from_raw),
        reported_cost: None,
        finish_reasons: reasons,
        error: wire.error.and_then(error_from_raw),
        model: wire.model_version.and_then(raw_string),
        id: wire.response_id.and_then(raw_string),
        truncated: truncated || skipped,
        decode_error: None,
    })
}

/// A `streamGenerateContent` JSON array read whole, folded element by element.
fn streamed_array(text: &str) -> Result<ResponseSummary, serde_json::Error> {
    use crate::wire::assemble::StreamFold;
    type Elements<'a> = Capped<&'a RawValue, Vec<&'a RawValue>, MAX_ENTRIES_PER_EVENT>;
    let elements: Elements<'_> = serde_json::from_str(text)?;
    if crate::json::nested_too_deep(text.as_bytes()) {
        return Err(crate::json::too_deep_error("the response"));
    }
    let mut fold = super::assemble::GenerateContentFold::default();
    let mut budget = crate::wire::budget::ContentBudget::new(text.len());
    let mut undecodable = 0;
    for element in elements.items {
        let event = crate::wire::Event {
            name: b"",
            data: element.get().as_bytes(),
        };
        if fold.push(event, &mut budget).is_err() {
            undecodable += 1;
        }
    }
    let mut summary = fold.into_summary();
    summary.truncated |= elements.skipped || budget.exceeded;
    if undecodable > 0 {
        summary.decode_error = Some(format!(
            "{undecodable} elements of the streamed JSON array could not be decoded"
        ));
    }
    Ok(summary)
}

/// An embeddings response with each embedding's `values` removed (the count of embeddings
/// and their other fields kept); too large a body is not kept at all.
fn without_vectors(text: &str) -> (Option<Json>, bool) {
    if text.len() > TREE_LIMIT * 8 {
        return (None, true);
    }
    let Ok(mut value) = serde_json::from_str::<Value>(text) else {
        return (None, true);
    };
    let strip = |item: &mut Value| {
        if let Some(item) = item.as_object_mut() {
            item.remove("values");
        }
    };
    if let Some(one) = value.get_mut("embedding") {
        strip(one);
    }
    if let Some(Value::Array(many)) = value.get_mut("embeddings") {
        many.iter_mut().for_each(strip);
    }
    (Some(Json::from(value)), false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn generate_content_summary() {
        let body = "{\n  \"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Hi\"}], \"role\": \"model\"},\n \"finishReason\": \"STOP\"}],\n  \"usageMetadata\": {\"promptTokenCount\": 10, \"candidatesTokenCount\": 5, \"thoughtsTokenCount\": 7, \"toolUsePromptTokenCount\": 3, \"cachedContentTokenCount\": 4, \"totalTokenCount\": 25},\n  \"modelVersion\": \"gemini-2.5-flash\",\n  \"responseId\": \"r-1\"\n}\n";
        let summary =
            decode_json_response(Endpoint::GeminiGenerateContent, body.as_bytes()).unwrap();
        assert_eq!(summary.id.as_deref(), Some("r-1"));
        assert_eq!(summary.model.as_deref(), Some("gemini-2.5-flash"));
        assert_eq!(summary.finish_reasons, vec!["STOP"]);
        assert_eq!(
            summary.usage,
            Some(Usage {
                input_tokens: Some(13),
                output_tokens: Some(12),
                total_tokens: Some(25),
                cached_input_tokens: Some(4),
                cache_creation_input_tokens: None,
                reasoning_tokens: Some(7),
            })
        );
        let want: Value = serde_json::from_str(body).unwrap();
        assert_eq!(summary.response.unwrap().value(), &want);
    }

    #[test]
    fn error_body_and_embeddings() {
        let body = br#"{"error": {"code": 404, "message": "models/x is not found", "status": "NOT_FOUND"}}"#;
        let error = decode_json_response(Endpoint::GeminiGenerateContent, body)
            .unwrap()
            .error
            .unwrap();
        assert_eq!(error.kind.as_deref(), Some("NOT_FOUND"));
        assert_eq!(error.code.as_deref(), Some("404"));
        assert_eq!(error.message.as_deref(), Some("models/x is not found"));
        let body = br#"{"embeddings": [{"values": [0.1, 0.2]}, {"values": [0.3]}]}"#;
        let summary = decode_json_response(Endpoint::GeminiBatchEmbedContents, body).unwrap();
        assert_eq!(
            summary.response.unwrap().value(),
            &json!({"embeddings": [{}, {}]})
        );
        assert!(decode_json_response(Endpoint::GeminiGenerateContent, b"<html>").is_err());
        let array = br#"[{"candidates": [{"content": {"parts": [{"text": "He"}], "role": "model"}}]},
            {"candidates": [{"content": {"parts": [{"text": "llo"}], "role": "model"}, "finishReason": "STOP"}],
             "responseId": "r"}]"#;
        let summary = decode_json_response(Endpoint::GeminiStreamGenerateContent, array).unwrap();
        assert_eq!(summary.finish_reasons, vec!["STOP"]);
        assert_eq!(summary.id.as_deref(), Some("r"));
        assert_eq!(
            summary.response.unwrap().value()["candidates"][0]["content"]["parts"],
            json!([{"text": "Hello"}])
        );
    }
}
