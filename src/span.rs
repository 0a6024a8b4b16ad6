//! The `tracing` span of an LLM call and its OpenTelemetry GenAI (semantic conventions v1.41)
//! field names, defined once.
//!
//! With `tracing-opentelemetry` installed, these spans export as standard GenAI client spans:
//! `otel.name`, `otel.kind` and `otel.status_code` are the special fields that layer reads.

use tracing::field::Empty;
use tracing::Span;

use crate::openai::endpoint::Endpoint;
use crate::payload::{LlmCall, RequestRecord};

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
/// `gen_ai.request.max_tokens`
pub const GEN_AI_REQUEST_MAX_TOKENS: &str = "gen_ai.request.max_tokens";
/// `gen_ai.request.seed`
pub const GEN_AI_REQUEST_SEED: &str = "gen_ai.request.seed";
/// `gen_ai.request.presence_penalty`
pub const GEN_AI_REQUEST_PRESENCE_PENALTY: &str = "gen_ai.request.presence_penalty";
/// `gen_ai.request.frequency_penalty`
pub const GEN_AI_REQUEST_FREQUENCY_PENALTY: &str = "gen_ai.request.frequency_penalty";
/// `gen_ai.request.stop_sequences` (recorded as a JSON array string)
pub const GEN_AI_REQUEST_STOP_SEQUENCES: &str = "gen_ai.request.stop_sequences";
/// `gen_ai.request.choice.count`
pub const GEN_AI_REQUEST_CHOICE_COUNT: &str = "gen_ai.request.choice.count";
/// `gen_ai.request.stream`
pub const GEN_AI_REQUEST_STREAM: &str = "gen_ai.request.stream";
/// `gen_ai.response.model`
pub const GEN_AI_RESPONSE_MODEL: &str = "gen_ai.response.model";
/// `gen_ai.response.id`
pub const GEN_AI_RESPONSE_ID: &str = "gen_ai.response.id";
/// `gen_ai.response.finish_reasons` (recorded as a JSON array string)
pub const GEN_AI_RESPONSE_FINISH_REASONS: &str = "gen_ai.response.finish_reasons";
/// `gen_ai.response.time_to_first_chunk`, in seconds
pub const GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: &str = "gen_ai.response.time_to_first_chunk";
/// `gen_ai.usage.input_tokens`
pub const GEN_AI_USAGE_INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
/// `gen_ai.usage.output_tokens`
pub const GEN_AI_USAGE_OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";
/// `gen_ai.usage.cache_read.input_tokens`
pub const GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: &str = "gen_ai.usage.cache_read.input_tokens";
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
        server.address = Empty,
        error.type = Empty,
        otel.name = endpoint.operation(),
        otel.kind = "client",
        otel.status_code = Empty,
    );
    if let Some(address) = server_address {
        span.record(SERVER_ADDRESS, address);
    }
    span
}

/// Records what the request said, as soon as it is decoded.
pub(crate) fn record_request(span: &Span, endpoint: Endpoint, request: &RequestRecord) {
    if span.is_disabled() {
        return;
    }
    if let Some(model) = &request.model {
        span.record(GEN_AI_REQUEST_MODEL, model.as_str());
        span.record(OTEL_NAME, format!("{} {model}", endpoint.operation()));
    }
    span.record(GEN_AI_REQUEST_STREAM, request.stream);
    let floats = [
        (GEN_AI_REQUEST_TEMPERATURE, request.temperature),
        (GEN_AI_REQUEST_TOP_P, request.top_p),
        (GEN_AI_REQUEST_PRESENCE_PENALTY, request.presence_penalty),
        (GEN_AI_REQUEST_FREQUENCY_PENALTY, request.frequency_penalty),
    ];
    for (field, value) in floats {
        if let Some(value) = value {
            span.record(field, value);
        }
    }
    if let Some(max) = request.max_completion_tokens.or(request.max_tokens) {
        span.record(GEN_AI_REQUEST_MAX_TOKENS, max);
    }
    if let Some(seed) = request.seed {
        span.record(GEN_AI_REQUEST_SEED, seed);
    }
    if let Some(n) = request.n {
        span.record(GEN_AI_REQUEST_CHOICE_COUNT, n);
    }
    if let Some(stop) = &request.stop {
        let stop = match stop.value() {
            serde_json::Value::String(one) => serde_json::json!([one]).to_string(),
            many => many.to_string(),
        };
        span.record(GEN_AI_REQUEST_STOP_SEQUENCES, stop);
    }
}

/// Records the outcome of the call, with the model and id the response reported; the span
/// closes when the caller drops it.
pub(crate) fn record_outcome(
    span: &Span,
    call: &LlmCall,
    response_model: Option<&str>,
    response_id: Option<&str>,
) {
    if span.is_disabled() {
        return;
    }
    if let Some(model) = response_model {
        span.record(GEN_AI_RESPONSE_MODEL, model);
    }
    if let Some(id) = response_id {
        span.record(GEN_AI_RESPONSE_ID, id);
    }
    if !call.finish_reasons.is_empty() {
        span.record(
            GEN_AI_RESPONSE_FINISH_REASONS,
            serde_json::json!(call.finish_reasons).to_string(),
        );
    }
    if let Some(usage) = &call.usage {
        let counts = [
            (GEN_AI_USAGE_INPUT_TOKENS, usage.input_tokens),
            (GEN_AI_USAGE_OUTPUT_TOKENS, usage.output_tokens),
            (
                GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
                usage.cached_input_tokens,
            ),
        ];
        for (field, value) in counts {
            if let Some(value) = value {
                span.record(field, value);
            }
        }
    }
    if let Some(ttft) = call.timing.time_to_first_token_ms {
        span.record(GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, ttft / 1000.0);
    }
    if call.status == crate::CallStatus::Error {
        span.record(OTEL_STATUS_CODE, "error");
        let kind = call
            .error
            .as_ref()
            .and_then(|e| e.kind.clone().or_else(|| e.code.clone()))
            .or_else(|| call.http_status.map(|s| s.to_string()))
            .unwrap_or_else(|| "_OTHER".to_owned());
        span.record(ERROR_TYPE, kind);
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
                SERVER_ADDRESS,
                ERROR_TYPE,
                OTEL_NAME,
                OTEL_KIND,
                OTEL_STATUS_CODE,
            ] {
                assert!(fields.field(name).is_some(), "{name} is not declared");
            }
            assert_eq!(fields.len(), 24, "a declared field has no constant");
            assert_eq!(metadata.name(), SPAN_NAME);
        });
    }
}
