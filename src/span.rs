//! The `tracing` span of an LLM call and its OpenTelemetry GenAI (semantic conventions v1.41)
//! field names, defined once.
//!
//! With `tracing-opentelemetry` installed, these spans export as standard GenAI client spans:
//! `otel.name`, `otel.kind` and `otel.status_code` are the special fields that layer reads.

use tracing::field::Empty;
use tracing::Span;

use crate::genai::{self, Attribute, AttributeValue};
use crate::payload::{CallStatus, LlmCall, RequestRecord};
use crate::wire::endpoint::Endpoint;

/// `gen_ai.operation.name`
pub const GEN_AI_OPERATION_NAME: &str = "gen_ai.operation.name";
/// `gen_ai.provider.name`
pub const GEN_AI_PROVIDER_NAME: &str = "gen_ai.provider.name";
/// `gen_ai.request.model`
pub const GEN_AI_REQUEST_MODEL: &str = "gen_ai.request.model";
/// `gen_ai.request.temperature`
pub const GEN_AI_REQUEST_TEMPERATURE: &str = "gen_ai.request.temperature";
/// `gen_ai.request.top_p`
pub const GEN_AI_REQUEST_TOP_P: &str = "gen_ai.request.top_p";
/// `gen_ai.request.top_k`
pub const GEN_AI_REQUEST_TOP_K: &str = "gen_ai.request.top_k";
/// `gen_ai.request.max_tokens`
pub const GEN_AI_REQUEST_MAX_TOKENS: &str = "gen_ai.request.max_tokens";
/// `gen_ai.request.seed`
pub const GEN_AI_REQUEST_SEED: &str = "gen_ai.request.seed";
/// `gen_ai.request.presence_penalty`
pub const GEN_AI_REQUEST_PRESENCE_PENALTY: &str = "gen_ai.request.presence_penalty";
/// `gen_ai.request.frequency_penalty`
pub const GEN_AI_REQUEST_FREQUENCY_PENALTY: &str = "gen_ai.request.frequency_penalty";
/// `gen_ai.request.stop_sequences` (a string array; on a plain `tracing` span, JSON array text)
pub const GEN_AI_REQUEST_STOP_SEQUENCES: &str = "gen_ai.request.stop_sequences";
/// `gen_ai.request.choice.count`
pub const GEN_AI_REQUEST_CHOICE_COUNT: &str = "gen_ai.request.choice.count";
/// `gen_ai.request.stream`
pub const GEN_AI_REQUEST_STREAM: &str = "gen_ai.request.stream";
/// `gen_ai.response.model`
pub const GEN_AI_RESPONSE_MODEL: &str = "gen_ai.response.model";
/// `gen_ai.response.id`
pub const GEN_AI_RESPONSE_ID: &str = "gen_ai.response.id";
/// `gen_ai.response.finish_reasons` (a string array; on a plain `tracing` span, JSON array text)
pub const GEN_AI_RESPONSE_FINISH_REASONS: &str = "gen_ai.response.finish_reasons";
/// `gen_ai.response.time_to_first_chunk`, in seconds
pub const GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: &str = "gen_ai.response.time_to_first_chunk";
/// `gen_ai.usage.input_tokens`
pub const GEN_AI_USAGE_INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
/// `gen_ai.usage.output_tokens`
pub const GEN_AI_USAGE_OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";
/// `gen_ai.usage.cache_read.input_tokens`
pub const GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: &str = "gen_ai.usage.cache_read.input_tokens";
/// `gen_ai.usage.cache_creation.input_tokens`: input tokens written to the prompt cache
/// (Anthropic `cache_creation_input_tokens`).
pub const GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: &str =
    "gen_ai.usage.cache_creation.input_tokens";
/// `llm_observability.cost.total_usd`: what the call cost in US dollars ([`Cost::total_usd`]).
///
/// Not an OpenTelemetry convention (semantic conventions v1.41 have no cost attribute), so the
/// name is this crate's. For comparison: OpenInference says `llm.cost.total` (and
/// `llm.cost.prompt`, `llm.cost.completion`), Langfuse reads `gen_ai.usage.cost`, MLflow
/// `mlflow.llm.cost` (a JSON object); exporter presets map to those from here.
///
/// [`Cost::total_usd`]: crate::Cost::total_usd
pub const LLM_OBSERVABILITY_COST_TOTAL_USD: &str = "llm_observability.cost.total_usd";
/// `llm_observability.cost.input_usd`: the input tokens neither read from nor written to the cache
/// ([`Cost::input_usd`](crate::Cost::input_usd)).
pub const LLM_OBSERVABILITY_COST_INPUT_USD: &str = "llm_observability.cost.input_usd";
/// `llm_observability.cost.output_usd`: the output tokens, reasoning included
/// ([`Cost::output_usd`](crate::Cost::output_usd)).
pub const LLM_OBSERVABILITY_COST_OUTPUT_USD: &str = "llm_observability.cost.output_usd";
/// `llm_observability.cost.cache_read_usd`: the input tokens read from the prompt cache
/// ([`Cost::cache_read_usd`](crate::Cost::cache_read_usd)).
pub const LLM_OBSERVABILITY_COST_CACHE_READ_USD: &str = "llm_observability.cost.cache_read_usd";
/// `llm_observability.cost.cache_write_usd`: the input tokens written to the prompt cache
/// ([`Cost::cache_write_usd`](crate::Cost::cache_write_usd)).
pub const LLM_OBSERVABILITY_COST_CACHE_WRITE_USD: &str = "llm_observability.cost.cache_write_usd";
/// `server.address`
pub const SERVER_ADDRESS: &str = "server.address";
/// `error.type`
pub const ERROR_TYPE: &str = "error.type";
/// `otel.name`: `"{operation} {model}"`
pub const OTEL_NAME: &str = "otel.name";
/// `otel.kind`: always `client`
pub const OTEL_KIND: &str = "otel.kind";
/// `otel.status_code`: `error` on failure
pub const OTEL_STATUS_CODE: &str = "otel.status_code";
/// `otel.status_description`: on failure, the error message (else the `error.type`)
pub const OTEL_STATUS_DESCRIPTION: &str = "otel.status_description";

/// Name of the span (`tracing` metadata name; exporters use `otel.name`).
pub const SPAN_NAME: &str = "gen_ai";

/// Opens the span of a call as a child of the current span, with every field declared.
pub(crate) fn open(endpoint: Endpoint, provider: &str, server_address: Option<&str>) -> Span {
    // The dotted field names below must match the constants above; a unit test checks it.
    let span = tracing::info_span!(
        target: "llm_observability",
        "gen_ai",
        gen_ai.operation.name = endpoint.operation(),
        gen_ai.provider.name = provider,
        gen_ai.request.model = Empty,
        gen_ai.request.temperature = Empty,
        gen_ai.request.top_p = Empty,
        gen_ai.request.top_k = Empty,
        gen_ai.request.max_tokens = Empty,
        gen_ai.request.seed = Empty,
        gen_ai.request.presence_penalty = Empty,
        gen_ai.request.frequency_penalty = Empty,
        gen_ai.request.stop_sequences = Empty,
        gen_ai.request.choice.count = Empty,
        gen_ai.request.stream = Empty,
        gen_ai.response.model = Empty,
        gen_ai.response.id = Empty,
        gen_ai.response.finish_reasons = Empty,
        gen_ai.response.time_to_first_chunk = Empty,
        gen_ai.usage.input_tokens = Empty,
        gen_ai.usage.output_tokens = Empty,
        gen_ai.usage.cache_read.input_tokens = Empty,
        gen_ai.usage.cache_creation.input_tokens = Empty,
        llm_observability.cost.total_usd = Empty,
        llm_observability.cost.input_usd = Empty,
        llm_observability.cost.output_usd = Empty,
        llm_observability.cost.cache_read_usd = Empty,
        llm_observability.cost.cache_write_usd = Empty,
        server.address = Empty,
        error.type = Empty,
        otel.name = endpoint.operation(),
        otel.kind = "client",
        otel.status_code = Empty,
        otel.status_description = Empty,
    );
    if let Some(address) = server_address {
        span.record(SERVER_ADDRESS, address);
    }
    span
}

/// The span of one call, and whether an OpenTelemetry layer exports it (feature
/// `opentelemetry`): then the span's name and its array attributes are set on the OpenTelemetry
/// span itself, as `tracing` fields cannot rename a started span or carry arrays.
#[derive(Debug, Clone)]
pub(crate) struct CallSpan {
    span: Span,
    #[cfg(feature = "opentelemetry")]
    exported: bool,
}

impl CallSpan {
    pub(crate) fn new(span: Span, exported: bool) -> Self {
        #[cfg(not(feature = "opentelemetry"))]
        let _ = exported;
        CallSpan {
            span,
            #[cfg(feature = "opentelemetry")]
            exported,
        }
    }

    pub(crate) fn none() -> Self {
        CallSpan::new(Span::none(), false)
    }

    pub(crate) fn span(&self) -> &Span {
        &self.span
    }

    /// Records what the request said, as soon as it is decoded. With `model_in_path`, the
    /// request's URL named the model (recorded when the call started): that one names the
    /// call, not the body's.
    pub(crate) fn record_request(
        &self,
        operation: &str,
        model_in_path: bool,
        request: &RequestRecord,
    ) {
        if self.span.is_disabled() {
            return;
        }
        let attributes = genai::request_attributes(request).into_iter();
        self.record(
            attributes
                .filter(|a| !model_in_path || a.key != GEN_AI_REQUEST_MODEL)
                .collect(),
        );
        if !model_in_path {
            self.record_model(operation, request.model.as_deref());
        }
    }

    /// Names the call's requested model: `gen_ai.request.model` and the span's name.
    pub(crate) fn record_model(&self, operation: &str, model: Option<&str>) {
        if self.span.is_disabled() {
            return;
        }
        if let Some(model) = model {
            self.span.record(GEN_AI_REQUEST_MODEL, model);
            let name = genai::name_of(operation, Some(model));
            #[cfg(feature = "opentelemetry")]
            if self.exported {
                otel::rename(&self.span, name.clone());
            }
            self.span.record(OTEL_NAME, name);
        }
    }

    /// Records how the call ended; the span closes when its last clone is dropped.
    pub(crate) fn record_outcome(&self, call: &LlmCall) {
        if self.span.is_disabled() {
            return;
        }
        self.record(genai::outcome_attributes(call));
        if call.status == CallStatus::Error {
            self.span.record(OTEL_STATUS_CODE, "error");
            if let Some(description) = genai::status_description(call) {
                self.span.record(OTEL_STATUS_DESCRIPTION, description);
            }
        }
    }

    /// Records attributes as `tracing` fields. A `tracing` field has no array type: string
    /// arrays go to an exported span as arrays, and are JSON array text otherwise.
    fn record(&self, attributes: Vec<Attribute<'_>>) {
        let span = &self.span;
        for attribute in attributes {
            let key = attribute.key;
            match attribute.value {
                AttributeValue::Str(value) => span.record(key, value.as_ref()),
                AttributeValue::Int(value) => span.record(key, value),
                AttributeValue::Float(value) => span.record(key, value),
                AttributeValue::Bool(value) => span.record(key, value),
                #[cfg(feature = "opentelemetry")]
                AttributeValue::StrArray(values) if self.exported => {
                    otel::set_string_array(span, key, &values);
                    span
                }
                AttributeValue::StrArray(values) => {
                    span.record(key, serde_json::to_string(&values).unwrap_or_default())
                }
            };
        }
    }
}

#[cfg(feature = "opentelemetry")]
mod otel {
    use std::borrow::Cow;

    use opentelemetry::trace::TraceContextExt;
    use tracing::Span;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    /// Renames the OpenTelemetry span (started when the call began).
    pub(super) fn rename(span: &Span, name: String) {
        span.context().span().update_name(name);
    }

    pub(super) fn set_string_array(span: &Span, key: &'static str, values: &[Cow<'_, str>]) {
        let values = values.iter().map(|v| v.to_string().into()).collect();
        span.set_attribute(
            key,
            opentelemetry::Value::Array(opentelemetry::Array::String(values)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_constant_is_a_declared_field() {
        use tracing_subscriber::layer::SubscriberExt;
        let subscriber = tracing_subscriber::registry().with(tracing_subscriber::fmt::layer());
        tracing::subscriber::with_default(subscriber, || {
            let span = open(Endpoint::ChatCompletions, "openai", None);
            let metadata = span.metadata().expect("span enabled");
            let fields = metadata.fields();
            for name in [
                GEN_AI_OPERATION_NAME,
                GEN_AI_PROVIDER_NAME,
                GEN_AI_REQUEST_MODEL,
                GEN_AI_REQUEST_TEMPERATURE,
                GEN_AI_REQUEST_TOP_P,
                GEN_AI_REQUEST_TOP_K,
                GEN_AI_REQUEST_MAX_TOKENS,
                GEN_AI_REQUEST_SEED,
                GEN_AI_REQUEST_PRESENCE_PENALTY,
                GEN_AI_REQUEST_FREQUENCY_PENALTY,
                GEN_AI_REQUEST_STOP_SEQUENCES,
                GEN_AI_REQUEST_CHOICE_COUNT,
                GEN_AI_REQUEST_STREAM,
                GEN_AI_RESPONSE_MODEL,
                GEN_AI_RESPONSE_ID,
                GEN_AI_RESPONSE_FINISH_REASONS,
                GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK,
                GEN_AI_USAGE_INPUT_TOKENS,
                GEN_AI_USAGE_OUTPUT_TOKENS,
                GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
                GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
                LLM_OBSERVABILITY_COST_TOTAL_USD,
                LLM_OBSERVABILITY_COST_INPUT_USD,
                LLM_OBSERVABILITY_COST_OUTPUT_USD,
                LLM_OBSERVABILITY_COST_CACHE_READ_USD,
                LLM_OBSERVABILITY_COST_CACHE_WRITE_USD,
                SERVER_ADDRESS,
                ERROR_TYPE,
                OTEL_NAME,
                OTEL_KIND,
                OTEL_STATUS_CODE,
                OTEL_STATUS_DESCRIPTION,
            ] {
                assert!(fields.field(name).is_some(), "{name} is not declared");
            }
            assert_eq!(fields.len(), 32, "a declared field has no constant");
            assert_eq!(metadata.name(), SPAN_NAME);
        });
    }
}
