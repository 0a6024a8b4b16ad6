//! The one OpenTelemetry GenAI (semantic conventions v1.41) mapping of a call: a pure function
//! from [`LlmCall`] to typed attributes.
//!
//! The `gen_ai` `tracing` span records these attributes, and every exporter and metric reads
//! them from here: the rule for each attribute lives in this file only. Attribute names are the
//! constants of [`span`](crate::span).
//!
//! ```
//! use llm_observability::genai::{self, AttributeValue};
//! use llm_observability::{Endpoint, LlmCall, Usage};
//!
//! let mut call = LlmCall::new(Endpoint::ChatCompletions);
//! call.request.model = Some("gpt-4o-mini".into());
//! call.usage = Some(Usage::new(12, 5));
//! assert_eq!(genai::span_name(&call), "chat gpt-4o-mini");
//! let attributes = genai::attributes(&call);
//! let input = attributes.iter().find(|a| a.key == "gen_ai.usage.input_tokens").unwrap();
//! assert_eq!(input.value, AttributeValue::Int(12));
//! ```

use std::borrow::Cow;

use http::StatusCode;

use crate::payload::{CallError, CallStatus, LlmCall, RequestRecord};
use crate::span::*;

mod content;
pub use content::{
    content_attributes, input_messages, native_input, native_output, native_request,
    output_messages, system_instructions, tool_definitions, GEN_AI_INPUT_MESSAGES,
    GEN_AI_OUTPUT_MESSAGES, GEN_AI_SYSTEM_INSTRUCTIONS, GEN_AI_TOOL_DEFINITIONS,
};

/// A typed attribute value, as OpenTelemetry has them.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum AttributeValue<'a> {
    /// A string.
    Str(Cow<'a, str>),
    /// A signed 64-bit integer (counts above `i64::MAX` saturate).
    Int(i64),
    /// A double.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// An array of strings.
    StrArray(Vec<Cow<'a, str>>),
}

/// One attribute: a semantic-conventions name and its value.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Attribute<'a> {
    /// The attribute name, one of the constants of [`span`](crate::span).
    pub key: &'static str,
    /// The value.
    pub value: AttributeValue<'a>,
}

fn string<'a>(key: &'static str, value: &'a str) -> Attribute<'a> {
    Attribute {
        key,
        value: AttributeValue::Str(Cow::Borrowed(value)),
    }
}

fn int(key: &'static str, value: u64) -> Attribute<'static> {
    Attribute {
        key,
        value: AttributeValue::Int(i64::try_from(value).unwrap_or(i64::MAX)),
    }
}

fn float(key: &'static str, value: f64) -> Attribute<'static> {
    Attribute {
        key,
        value: AttributeValue::Float(value),
    }
}

/// The span name the conventions give: `"{operation} {model}"`, or the operation alone while
/// the model is unknown.
pub fn span_name(call: &LlmCall) -> String {
    name_of(&call.operation, call.requested_model())
}

pub(crate) fn name_of(operation: &str, model: Option<&str>) -> String {
    match model {
        Some(model) => format!("{operation} {model}"),
        None => operation.to_owned(),
    }
}

/// Every attribute of a finished call: what is known at its start, what its request said
/// ([`request_attributes`]) and how it ended ([`outcome_attributes`]). Message content is not
/// among them.
pub fn attributes(call: &LlmCall) -> Vec<Attribute<'_>> {
    let mut attributes = vec![
        string(GEN_AI_OPERATION_NAME, &call.operation),
        string(GEN_AI_PROVIDER_NAME, &call.provider),
    ];
    if let Some(address) = &call.server_address {
        attributes.push(string(SERVER_ADDRESS, address));
    }
    // The call's requested model may come from its URL (an Azure deployment), not the body.
    if let Some(model) = call.requested_model() {
        attributes.push(string(GEN_AI_REQUEST_MODEL, model));
    }
    let parameters = request_attributes(&call.request).into_iter();
    attributes.extend(parameters.filter(|a| a.key != GEN_AI_REQUEST_MODEL));
    attributes.extend(outcome_attributes(call));
    attributes
}

/// The `gen_ai.request.*` attributes: model and parameters, as the client sent them.
pub fn request_attributes(request: &RequestRecord) -> Vec<Attribute<'_>> {
    let mut attributes = Vec::with_capacity(4);
    if let Some(model) = &request.model {
        attributes.push(string(GEN_AI_REQUEST_MODEL, model));
    }
    attributes.push(Attribute {
        key: GEN_AI_REQUEST_STREAM,
        value: AttributeValue::Bool(request.stream),
    });
    let floats = [
        (GEN_AI_REQUEST_TEMPERATURE, request.temperature),
        (GEN_AI_REQUEST_TOP_P, request.top_p),
        (GEN_AI_REQUEST_PRESENCE_PENALTY, request.presence_penalty),
        (GEN_AI_REQUEST_FREQUENCY_PENALTY, request.frequency_penalty),
    ];
    for (key, value) in floats {
        if let Some(value) = value {
            attributes.push(float(key, value));
        }
    }
    if let Some(top_k) = request.top_k {
        attributes.push(int(GEN_AI_REQUEST_TOP_K, top_k));
    }
    if let Some(max) = request.max_completion_tokens.or(request.max_tokens) {
        attributes.push(int(GEN_AI_REQUEST_MAX_TOKENS, max));
    }
    if let Some(seed) = request.seed {
        attributes.push(Attribute {
            key: GEN_AI_REQUEST_SEED,
            value: AttributeValue::Int(seed),
        });
    }
    if let Some(n) = request.n {
        attributes.push(int(GEN_AI_REQUEST_CHOICE_COUNT, n));
    }
    if let Some(stop) = &request.stop {
        let sequences = match stop.value() {
            serde_json::Value::String(one) => vec![Cow::Borrowed(one.as_str())],
            serde_json::Value::Array(many) => many
                .iter()
                .filter_map(|s| s.as_str().map(Cow::Borrowed))
                .collect(),
            _ => Vec::new(),
        };
        if !sequences.is_empty() {
            attributes.push(Attribute {
                key: GEN_AI_REQUEST_STOP_SEQUENCES,
                value: AttributeValue::StrArray(sequences),
            });
        }
    }
    attributes
}

/// How the call ended: `gen_ai.response.*`, `gen_ai.usage.*`, the cost
/// ([`cost_attributes`]) and, on failure, `error.type`.
pub fn outcome_attributes(call: &LlmCall) -> Vec<Attribute<'_>> {
    let mut attributes = Vec::with_capacity(8);
    if let Some(model) = &call.response_model {
        attributes.push(string(GEN_AI_RESPONSE_MODEL, model));
    }
    if let Some(id) = &call.response_id {
        attributes.push(string(GEN_AI_RESPONSE_ID, id));
    }
    if !call.finish_reasons.is_empty() {
        attributes.push(Attribute {
            key: GEN_AI_RESPONSE_FINISH_REASONS,
            value: AttributeValue::StrArray(
                call.finish_reasons
                    .iter()
                    .map(|r| Cow::Borrowed(r.as_str()))
                    .collect(),
            ),
        });
    }
    if let Some(usage) = &call.usage {
        let counts = [
            (GEN_AI_USAGE_INPUT_TOKENS, usage.input_tokens),
            (GEN_AI_USAGE_OUTPUT_TOKENS, usage.output_tokens),
            (
                GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
                usage.cached_input_tokens,
            ),
            (
                GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
                usage.cache_creation_input_tokens,
            ),
        ];
        for (key, value) in counts {
            if let Some(value) = value {
                attributes.push(int(key, value));
            }
        }
    }
    attributes.extend(cost_attributes(call));
    if let Some(ttft) = call.timing.time_to_first_token_ms {
        attributes.push(float(GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, ttft / 1000.0));
    }
    if let Some(error_type) = &call.error_type {
        attributes.push(string(ERROR_TYPE, error_type));
    }
    attributes
}

/// The call's [cost](crate::Cost) in US dollars, when a pricing processor set it:
/// `llm_observability.cost.{total_usd, input_usd, output_usd, cache_read_usd, cache_write_usd}`
/// as doubles
/// (crate-specific names: the conventions have no cost attribute). Empty when `cost` is null.
///
/// ```
/// use llm_observability::genai::{self, AttributeValue};
/// use llm_observability::{Cost, Endpoint, LlmCall};
///
/// let mut call = LlmCall::new(Endpoint::ChatCompletions);
/// assert!(genai::cost_attributes(&call).is_empty());
/// call.cost = Some(Cost::new(0.25, 0.125, 0.5, "built-in"));
/// let attributes = genai::cost_attributes(&call);
/// assert_eq!(attributes[0].key, "llm_observability.cost.total_usd");
/// assert_eq!(attributes[0].value, AttributeValue::Float(0.875));
/// ```
pub fn cost_attributes(call: &LlmCall) -> Vec<Attribute<'static>> {
    let Some(cost) = &call.cost else {
        return Vec::new();
    };
    vec![
        float(LLM_OBSERVABILITY_COST_TOTAL_USD, cost.total_usd),
        float(LLM_OBSERVABILITY_COST_INPUT_USD, cost.input_usd),
        float(LLM_OBSERVABILITY_COST_OUTPUT_USD, cost.output_usd),
        float(LLM_OBSERVABILITY_COST_CACHE_READ_USD, cost.cache_read_usd),
        float(LLM_OBSERVABILITY_COST_CACHE_WRITE_USD, cost.cache_write_usd),
    ]
}

/// The `error.type` of a call that ended with `status`: the error's type, else its code, else
/// the HTTP status, else `_OTHER`; `None` unless the call failed.
pub(crate) fn error_type(
    status: CallStatus,
    error: Option<&CallError>,
    http_status: Option<u16>,
) -> Option<String> {
    if status != CallStatus::Error {
        return None;
    }
    Some(
        error
            .and_then(|e| e.kind.clone().or_else(|| e.code.clone()))
            .or_else(|| {
                http_status
                    .and_then(|s| StatusCode::from_u16(s).ok())
                    .map(|s| s.as_u16().to_string())
            })
            .unwrap_or_else(|| "_OTHER".to_owned()),
    )
}

/// The status description of a failed call's span: its error message, else its type.
pub(crate) fn status_description(call: &LlmCall) -> Option<&str> {
    if call.status != CallStatus::Error {
        return None;
    }
    call.error
        .as_ref()
        .and_then(|e| e.message.as_deref())
        .or(call.error_type.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::Usage;
    use crate::Endpoint;
    use serde_json::json;

    fn value<'a>(attributes: &'a [Attribute<'a>], key: &str) -> Option<&'a AttributeValue<'a>> {
        attributes.iter().find(|a| a.key == key).map(|a| &a.value)
    }

    #[test]
    fn types_follow_the_conventions() {
        let mut call = LlmCall::new(Endpoint::ChatCompletions);
        call.request.model = Some("gpt-4o".into());
        call.request.max_tokens = Some(100);
        call.request.seed = Some(-7);
        call.request.n = Some(2);
        call.request.temperature = Some(0.5);
        call.request.stop = Some(json!("END").into());
        call.response_model = Some("gpt-4o-2024-08-06".into());
        call.response_id = Some("chatcmpl-1".into());
        call.finish_reasons = vec!["stop".into(), "length".into()];
        call.usage = Some(Usage {
            cached_input_tokens: Some(3),
            ..Usage::new(10, u64::MAX)
        });
        call.timing.time_to_first_token_ms = Some(250.0);
        let attributes = attributes(&call);
        let at = |key| value(&attributes, key).cloned();
        assert_eq!(
            at(GEN_AI_REQUEST_MAX_TOKENS),
            Some(AttributeValue::Int(100))
        );
        assert_eq!(at(GEN_AI_REQUEST_SEED), Some(AttributeValue::Int(-7)));
        assert_eq!(
            at(GEN_AI_REQUEST_CHOICE_COUNT),
            Some(AttributeValue::Int(2))
        );
        assert_eq!(
            at(GEN_AI_REQUEST_TEMPERATURE),
            Some(AttributeValue::Float(0.5))
        );
        assert_eq!(
            at(GEN_AI_REQUEST_STOP_SEQUENCES),
            Some(AttributeValue::StrArray(vec!["END".into()]))
        );
        assert_eq!(
            at(GEN_AI_RESPONSE_FINISH_REASONS),
            Some(AttributeValue::StrArray(vec![
                "stop".into(),
                "length".into()
            ]))
        );
        assert_eq!(at(GEN_AI_USAGE_INPUT_TOKENS), Some(AttributeValue::Int(10)));
        assert_eq!(
            at(GEN_AI_USAGE_OUTPUT_TOKENS),
            Some(AttributeValue::Int(i64::MAX))
        );
        assert_eq!(
            at(GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS),
            Some(AttributeValue::Int(3))
        );
        assert_eq!(
            at(GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK),
            Some(AttributeValue::Float(0.25))
        );
        assert_eq!(
            at(GEN_AI_RESPONSE_MODEL),
            Some(AttributeValue::Str("gpt-4o-2024-08-06".into()))
        );
        assert_eq!(at(ERROR_TYPE), None);
        assert_eq!(
            at(LLM_OBSERVABILITY_COST_TOTAL_USD),
            None,
            "no cost, no attribute"
        );
        call.cost = Some(crate::Cost::new(0.5, 0.25, 2.0, "built-in"));
        let attributes = super::attributes(&call);
        let at = |key| value(&attributes, key).cloned();
        assert_eq!(
            at(LLM_OBSERVABILITY_COST_TOTAL_USD),
            Some(AttributeValue::Float(2.75))
        );
        assert_eq!(
            at(LLM_OBSERVABILITY_COST_INPUT_USD),
            Some(AttributeValue::Float(0.5))
        );
        assert_eq!(
            at(LLM_OBSERVABILITY_COST_CACHE_READ_USD),
            Some(AttributeValue::Float(0.25))
        );
        assert_eq!(
            at(LLM_OBSERVABILITY_COST_OUTPUT_USD),
            Some(AttributeValue::Float(2.0))
        );
        assert_eq!(span_name(&call), "chat gpt-4o");
    }

    #[test]
    fn error_type_rule() {
        let typed = CallError::new("rate_limit_error", "slow down");
        assert_eq!(
            error_type(CallStatus::Error, Some(&typed), Some(429)).as_deref(),
            Some("rate_limit_error")
        );
        let coded = CallError {
            kind: None,
            code: Some("content_filter".into()),
            message: None,
        };
        assert_eq!(
            error_type(CallStatus::Error, Some(&coded), Some(200)).as_deref(),
            Some("content_filter")
        );
        assert_eq!(
            error_type(CallStatus::Error, None, Some(503)).as_deref(),
            Some("503")
        );
        assert_eq!(
            error_type(CallStatus::Error, None, None).as_deref(),
            Some("_OTHER")
        );
        assert_eq!(error_type(CallStatus::Cancelled, Some(&typed), None), None);
    }
}
