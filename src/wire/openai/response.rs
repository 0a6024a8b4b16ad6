//! Decoding of complete (non-streamed) OpenAI response bodies, and the wire shapes of usage and
//! errors shared with the stream assembler.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::wire::budget::{SMALL_VALUE, TREE_LIMIT};
use crate::wire::endpoint::Endpoint;
use crate::wire::read::{raw_string, Capped, Object, Text};
use crate::wire::summary::{error_from_value, ResponseSummary};

use crate::json::Json;
use crate::payload::{Cost, Usage};
use crate::process::pricing::PROVIDER_SOURCE;

/// The most choices whose finish reason a response's summary reads (`n` is at most 128 at
/// OpenAI); past it the summary says truncated.
const MAX_CHOICES: usize = 4096;

/// Usage as OpenAI sends it: chat/completions/embeddings names, or Responses API names.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct WireUsage {
    #[serde(default)]
    pub prompt_tokens: Option<u64>,
    #[serde(default)]
    pub completion_tokens: Option<u64>,
    #[serde(default)]
    pub input_tokens: Option<u64>,
    #[serde(default)]
    pub output_tokens: Option<u64>,
    #[serde(default)]
    pub total_tokens: Option<u64>,
    #[serde(default)]
    pub prompt_tokens_details: Option<WireTokenDetails>,
    #[serde(default)]
    pub completion_tokens_details: Option<WireTokenDetails>,
    #[serde(default)]
    pub input_tokens_details: Option<WireTokenDetails>,
    #[serde(default)]
    pub output_tokens_details: Option<WireTokenDetails>,
    /// OpenRouter: what the call cost, in USD (credits). Read as any value, so that one of
    /// another type does not lose the token counts.
    #[serde(default)]
    pub cost: Option<Value>,
    /// OpenRouter: `{upstream_inference_cost, upstream_inference_prompt_cost,
    /// upstream_inference_completions_cost}`.
    #[serde(default)]
    pub cost_details: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct WireTokenDetails {
    #[serde(default)]
    pub cached_tokens: Option<u64>,
    #[serde(default)]
    pub reasoning_tokens: Option<u64>,
}

impl WireUsage {
    pub(crate) fn normalise(&self) -> Usage {
        let details = |d: &Option<WireTokenDetails>, pick: fn(&WireTokenDetails) -> Option<u64>| {
            d.as_ref().and_then(pick)
        };
        Usage {
            input_tokens: self.prompt_tokens.or(self.input_tokens),
            output_tokens: self.completion_tokens.or(self.output_tokens),
            total_tokens: self.total_tokens,
            cached_input_tokens: details(&self.prompt_tokens_details, |d| d.cached_tokens)
                .or_else(|| details(&self.input_tokens_details, |d| d.cached_tokens)),
            reasoning_tokens: details(&self.completion_tokens_details, |d| d.reasoning_tokens)
                .or_else(|| details(&self.output_tokens_details, |d| d.reasoning_tokens)),
            cache_creation_input_tokens: None,
        }
    }

    /// The cost the provider reported (OpenRouter's `cost`, a non-negative number of USD), as
    /// a [`Cost`] of source `provider`: the total as reported; its input and output parts from
    /// `cost_details` when its prompt and completion costs add up to the total (they do not
    /// when the provider's key was the caller's own, BYOK: `cost` is then OpenRouter's fee),
    /// else 0.
    pub(crate) fn reported_cost(&self) -> Option<Cost> {
        let usd = |value: Option<&Value>| {
            value
                .and_then(Value::as_f64)
                .filter(|c| c.is_finite() && *c >= 0.0)
        };
        let total = usd(self.cost.as_ref())?;
        let detail = |key: &str| usd(self.cost_details.as_ref().and_then(|d| d.get(key)));
        let parts = match (
            detail("upstream_inference_prompt_cost"),
            detail("upstream_inference_completions_cost"),
        ) {
            (Some(input), Some(output))
                if (input + output - total).abs() <= 1e-12 + total * 1e-6 =>
            {
                (input, output)
            }
            _ => (0.0, 0.0),
        };
        let mut cost = Cost::new(parts.0, 0.0, parts.1, PROVIDER_SOURCE);
        cost.total_usd = total;
        Some(cost)
    }

    fn read(self) -> (Option<Usage>, Option<Cost>) {
        (Some(self.normalise()), self.reported_cost())
    }
}

/// Normalised usage, and the cost the provider reported with it, from a `usage` JSON value;
/// `None`s for `null` or a non-object.
pub(crate) fn usage_from_value(value: &Value) -> (Option<Usage>, Option<Cost>) {
    if !value.is_object() {
        return (None, None);
    }
    WireUsage::deserialize(value)
        .map(WireUsage::read)
        .unwrap_or_default()
}

/// Decodes a complete response body. Errors are for bodies that are not JSON at all; a JSON body
/// of an unexpected shape yields a summary with what could be read.
///
/// A well-formed response object is read into borrowed structs and kept as text; anything else
/// (and embeddings, whose vectors are removed) goes through a `Value` tree.
pub(crate) fn decode_json_response(
    endpoint: Endpoint,
    body: &[u8],
) -> Result<ResponseSummary, serde_json::Error> {
    if endpoint != Endpoint::Embeddings {
        let text = std::str::from_utf8(body)
            .ok()
            .map(|t| t.trim_matches([' ', '\t', '\n', '\r']));
        if let Some(text) = text.filter(|t| t.starts_with('{')) {
            // Parsing into the borrowed structs also checks that the whole text is JSON.
            if let Ok(wire) = serde_json::from_str::<WireResponse<'_>>(text) {
                if crate::json::nested_too_deep(text.as_bytes()) {
                    return Err(crate::json::too_deep_error("the response"));
                }
                let mut summary = wire.summary(endpoint);
                summary.response = Some(Json::from_valid_text(text));
                return Ok(summary);
            }
        }
    }
    if body.len() > TREE_LIMIT {
        return decode_without_tree(endpoint, body);
    }
    let mut value: Value = serde_json::from_slice(body)?;
    let mut summary = summarise_response_value(endpoint, &mut value);
    summary.response = Some(Json::from(value));
    Ok(summary)
}

/// Decodes a large body without a `Value` tree: embeddings keep their items without vectors;
/// anything else is kept as (compact) text, summarised from its top-level fields.
fn decode_without_tree(
    endpoint: Endpoint,
    body: &[u8],
) -> Result<ResponseSummary, serde_json::Error> {
    let text = match std::str::from_utf8(body) {
        Ok(text) => text.trim_matches([' ', '\t', '\n', '\r']),
        // Invalid UTF-8: say why as serde_json does.
        Err(_) => {
            serde_json::from_slice::<serde::de::IgnoredAny>(body)?;
            return Ok(ResponseSummary::default());
        }
    };
    if endpoint == Endpoint::Embeddings {
        if let Ok(wire) = serde_json::from_str::<WireEmbeddings<'_>>(text) {
            return Ok(wire.summary());
        }
    }
    let top: TopLevel<'_> = match text.starts_with('{') {
        true => serde_json::from_str(text).unwrap_or_default(),
        false => {
            // Checks that the body is JSON at all, without building it.
            serde_json::from_str::<serde::de::IgnoredAny>(text)?;
            TopLevel::default()
        }
    };
    let (usage, reported_cost) = top.usage.map(usage_from_raw).unwrap_or_default();
    let mut summary = ResponseSummary {
        usage,
        reported_cost,
        error: top
            .error
            .filter(|e| e.get() != "null" && e.get().len() <= SMALL_VALUE)
            .and_then(|e| serde_json::from_str::<Value>(e.get()).ok())
            .and_then(|e| error_from_value(&e)),
        model: top.model.and_then(raw_string),
        id: top.id.and_then(raw_string),
        ..ResponseSummary::default()
    };
    if crate::json::nested_too_deep(text.as_bytes()) {
        return Err(crate::json::too_deep_error("the response"));
    }
    summary.response = Some(Json::from_valid_text(text));
    Ok(summary)
}

/// The top-level fields of any JSON object, read leniently (anything else is skipped).
#[derive(Default, Deserialize)]
struct TopLevel<'a> {
    #[serde(default, borrow)]
    error: Option<&'a RawValue>,
    #[serde(default, borrow)]
    model: Option<&'a RawValue>,
    #[serde(default, borrow)]
    id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    usage: Option<&'a RawValue>,
}

/// An embeddings response, its vectors skipped without being built.
#[derive(Deserialize)]
struct WireEmbeddings<'a> {
    #[serde(default, borrow)]
    object: Option<Text<'a>>,
    data: Vec<Object<WireEmbedding<'a>>>,
    #[serde(default, borrow)]
    model: Option<Text<'a>>,
    #[serde(default, borrow)]
    usage: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct WireEmbedding<'a> {
    #[serde(default, borrow)]
    object: Option<Text<'a>>,
    #[serde(default)]
    index: Option<u64>,
    #[serde(default)]
    #[allow(dead_code)]
    embedding: serde::de::IgnoredAny,
}

impl WireEmbeddings<'_> {
    fn summary(&self) -> ResponseSummary {
        let data = self
            .data
            .iter()
            .map(|item| {
                serde_json::json!({"object": item.0.object.as_deref(), "index": item.0.index})
            })
            .collect();
        let usage = self
            .usage
            .filter(|u| u.get().len() <= SMALL_VALUE)
            .and_then(|u| serde_json::from_str::<Value>(u.get()).ok());
        let model = self
            .model
            .as_deref()
            .filter(|m| !m.is_empty())
            .map(str::to_owned);
        let response = serde_json::json!({
            "object": self.object.as_deref(), "data": Value::Array(data), "model": model, "usage": usage
        });
        let (usage, reported_cost) = self.usage.map(usage_from_raw).unwrap_or_default();
        ResponseSummary {
            usage,
            reported_cost,
            model,
            response: Some(Json::from(response)),
            ..ResponseSummary::default()
        }
    }
}

/// What a summary needs from a response object, borrowed. Reading fails on any field of an
/// unexpected type; [`summarise_response_value`] then reads the body leniently, so both
/// give the same summary wherever this one succeeds.
#[derive(Deserialize)]
struct WireResponse<'a> {
    #[serde(default, borrow)]
    error: Option<&'a RawValue>,
    #[serde(default, borrow)]
    model: Option<Text<'a>>,
    #[serde(default, borrow)]
    id: Option<Text<'a>>,
    #[serde(default, borrow)]
    usage: Option<&'a RawValue>,
    #[serde(default, borrow)]
    choices: Option<Capped<Object<WireChoice<'a>>, Vec<Object<WireChoice<'a>>>, MAX_CHOICES>>,
    #[serde(default, borrow)]
    status: Option<Text<'a>>,
    #[serde(default, borrow)]
    incomplete_details: Option<Object<WireIncompleteDetails<'a>>>,
}

#[derive(Deserialize)]
struct WireChoice<'a> {
    #[serde(default, borrow)]
    finish_reason: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct WireIncompleteDetails<'a> {
    #[serde(default, borrow)]
    reason: Option<Text<'a>>,
}

impl WireResponse<'_> {
    fn summary(&self, endpoint: Endpoint) -> ResponseSummary {
        let non_empty =
            |text: &Option<Text<'_>>| text.as_deref().filter(|t| !t.is_empty()).map(str::to_owned);
        let finish_reasons = match endpoint {
            Endpoint::Responses => self
                .status
                .as_deref()
                .map(|status| {
                    let reason = self.incomplete_details.as_ref();
                    responses_finish(status, reason.and_then(|d| d.0.reason.as_deref()))
                })
                .into_iter()
                .collect(),
            _ => self
                .choices
                .iter()
                .flat_map(|c| &c.items)
                .filter_map(|c| c.0.finish_reason.as_deref())
                .map(str::to_owned)
                .collect(),
        };
        let (usage, reported_cost) = self.usage.map(usage_from_raw).unwrap_or_default();
        ResponseSummary {
            response: None,
            usage,
            reported_cost,
            finish_reasons,
            error: self
                .error
                .and_then(|e| serde_json::from_str::<Value>(e.get()).ok())
                .and_then(|e| error_from_value(&e)),
            model: non_empty(&self.model),
            id: non_empty(&self.id),
            truncated: self.choices.as_ref().is_some_and(|c| c.skipped),
            decode_error: None,
        }
    }
}

/// Normalised usage and the reported cost from a raw `usage` value; `None`s for `null`, a
/// non-object, or an object whose counts are not numbers (as [`usage_from_value`]).
fn usage_from_raw(raw: &RawValue) -> (Option<Usage>, Option<Cost>) {
    if !raw.get().starts_with('{') {
        return (None, None);
    }
    serde_json::from_str::<WireUsage>(raw.get())
        .map(WireUsage::read)
        .unwrap_or_default()
}

/// Reads usage, finish reasons, error, model and id out of a response object in its
/// non-streaming shape. Embedding vectors are removed from the value (they
/// are large and rarely useful in a log).
pub(crate) fn summarise_response_value(endpoint: Endpoint, value: &mut Value) -> ResponseSummary {
    let mut summary = ResponseSummary::default();
    let Some(object) = value.as_object_mut() else {
        return summary;
    };
    if let Some(error) = object.get("error").filter(|e| !e.is_null()) {
        summary.error = error_from_value(error);
    }
    summary.model = object
        .get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .map(str::to_owned);
    summary.id = object
        .get("id")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .map(str::to_owned);
    (summary.usage, summary.reported_cost) = object
        .get("usage")
        .map(usage_from_value)
        .unwrap_or_default();
    match endpoint {
        Endpoint::Responses => {
            summary.finish_reasons = responses_finish_reason(object).into_iter().collect();
        }
        _ => {
            if let Some(Value::Array(choices)) = object.get("choices") {
                summary.finish_reasons = choices
                    .iter()
                    .filter_map(|c| c.get("finish_reason").and_then(Value::as_str))
                    .map(str::to_owned)
                    .collect();
            }
        }
    }
    if endpoint == Endpoint::Embeddings {
        if let Some(Value::Array(items)) = object.get_mut("data") {
            for item in items {
                if let Some(item) = item.as_object_mut() {
                    item.remove("embedding");
                }
            }
        }
    }
    summary
}

/// The Responses API's finish: its `status`, or for an incomplete response the reason given.
pub(crate) fn responses_finish_reason(response: &serde_json::Map<String, Value>) -> Option<String> {
    let status = response.get("status").and_then(Value::as_str)?;
    let reason = response
        .get("incomplete_details")
        .and_then(|d| d.get("reason"))
        .and_then(Value::as_str);
    Some(responses_finish(status, reason))
}

/// `status`, or `incomplete_reason` when the status is `incomplete` and a reason was given.
fn responses_finish(status: &str, incomplete_reason: Option<&str>) -> String {
    match incomplete_reason {
        Some(reason) if status == "incomplete" => reason.to_owned(),
        _ => status.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn chat_completion_summary() {
        let body = json!({
            "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7,
                      "prompt_tokens_details": {"cached_tokens": 3},
                      "completion_tokens_details": {"reasoning_tokens": 1}}
        });
        let summary =
            decode_json_response(Endpoint::ChatCompletions, body.to_string().as_bytes()).unwrap();
        assert_eq!(summary.finish_reasons, vec!["stop"]);
        assert_eq!(summary.model.as_deref(), Some("gpt-4o-mini"));
        assert_eq!(summary.id.as_deref(), Some("chatcmpl-1"));
        assert_eq!(
            summary.usage,
            Some(Usage {
                input_tokens: Some(5),
                output_tokens: Some(2),
                total_tokens: Some(7),
                cached_input_tokens: Some(3),
                reasoning_tokens: Some(1),
                cache_creation_input_tokens: None,
            })
        );
        assert!(summary.error.is_none());
    }

    #[test]
    fn a_reported_cost_is_read_and_split_only_when_its_parts_add_up() {
        let usage = |extra: Value| {
            let mut usage =
                json!({"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110});
            usage
                .as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            usage
        };
        let body = |usage: Value| {
            json!({"id": "gen-1", "object": "chat.completion", "model": "anthropic/claude-3.5-haiku",
                   "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                                "finish_reason": "stop"}],
                   "usage": usage})
            .to_string()
        };
        let read = |usage: Value| {
            let text = body(usage);
            let summary = decode_json_response(Endpoint::ChatCompletions, text.as_bytes()).unwrap();
            // The lenient reading of a body agrees with the borrowed one.
            let mut value: Value = serde_json::from_str(&text).unwrap();
            let lenient = summarise_response_value(Endpoint::ChatCompletions, &mut value);
            assert_eq!(lenient.reported_cost, summary.reported_cost);
            assert_eq!(lenient.usage, summary.usage);
            summary
        };
        // Parts that add up: split.
        let summary = read(usage(json!({"cost": 0.00012, "cost_details": {
            "upstream_inference_cost": null, "upstream_inference_prompt_cost": 0.00008,
            "upstream_inference_completions_cost": 0.00004}})));
        let cost = summary.reported_cost.unwrap();
        assert_eq!(
            (cost.input_usd, cost.output_usd, cost.total_usd),
            (0.00008, 0.00004, 0.00012)
        );
        assert_eq!(cost.pricing_source, "provider");
        // The kept response keeps the usage object as sent.
        assert_eq!(summary.response.unwrap()["usage"]["cost"], 0.00012);
        // BYOK: `cost` is OpenRouter's fee; the upstream's parts do not add up to it.
        let cost = read(usage(
            json!({"cost": 0.000006, "is_byok": true, "cost_details": {
            "upstream_inference_cost": 0.00012, "upstream_inference_prompt_cost": 0.00008,
            "upstream_inference_completions_cost": 0.00004}}),
        ))
        .reported_cost
        .unwrap();
        assert_eq!(
            (cost.input_usd, cost.output_usd, cost.total_usd),
            (0.0, 0.0, 0.000006)
        );
        // No details: the total only.
        let cost = read(usage(json!({"cost": 0}))).reported_cost.unwrap();
        assert_eq!(cost.total_usd, 0.0);
        // Not a cost: none, and the token counts survive.
        for odd in [
            json!({"cost": "0.1"}),
            json!({"cost": -1.0}),
            json!({"cost": null}),
            json!({"cost_details": "x"}),
            json!({}),
        ] {
            let summary = read(usage(odd.clone()));
            assert_eq!(summary.reported_cost, None, "{odd}");
            assert_eq!(summary.usage.unwrap().input_tokens, Some(100), "{odd}");
        }
    }

    #[test]
    fn error_codes_may_be_strings_null_or_integers() {
        for (code, want) in [
            (json!("invalid_api_key"), Some("invalid_api_key")),
            (json!(null), None),
            (json!(429), Some("429")),
        ] {
            let body = json!({"error": {"message": "m", "type": "t", "param": null, "code": code}});
            let summary =
                decode_json_response(Endpoint::ChatCompletions, body.to_string().as_bytes())
                    .unwrap();
            let error = summary.error.unwrap();
            assert_eq!(error.code.as_deref(), want);
            assert_eq!(error.kind.as_deref(), Some("t"));
            assert_eq!(error.message.as_deref(), Some("m"));
        }
    }

    #[test]
    fn embeddings_vectors_are_dropped_and_usage_kept() {
        let body = json!({"object": "list", "model": "text-embedding-3-small",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
            "usage": {"prompt_tokens": 8, "total_tokens": 8}});
        let summary =
            decode_json_response(Endpoint::Embeddings, body.to_string().as_bytes()).unwrap();
        assert_eq!(
            summary.response.unwrap()["data"][0],
            json!({"object": "embedding", "index": 0})
        );
        let usage = summary.usage.unwrap();
        assert_eq!((usage.input_tokens, usage.output_tokens), (Some(8), None));
    }

    #[test]
    fn not_json_is_an_error() {
        assert!(decode_json_response(Endpoint::ChatCompletions, b"<html>").is_err());
    }
}
