//! The Langfuse preset: an [`OtlpSink`] that sends to Langfuse's OTLP endpoint
//! (`{host}/api/public/otel/v1/traces`) with Basic authentication (public key : secret key) and
//! the header `x-langfuse-ingestion-version: 4`, and adds the attributes Langfuse reads to
//! make each call a *generation* with model, parameters, usage, cost, time to first token,
//! input and output, user, session, trace name and tags.
//!
//! ```no_run
//! use llm_observability::{LlmObservabilityLayer, OtlpSink};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // LANGFUSE_PUBLIC_KEY, LANGFUSE_SECRET_KEY and LANGFUSE_HOST from the environment:
//! let langfuse = OtlpSink::langfuse().build()?;
//! let layer = LlmObservabilityLayer::builder().sink(langfuse).build()?;
//! # Ok(()) }
//! ```
//!
//! The attributes are a pure function of [`LlmCall`] ([`attributes`]), sent next to the GenAI
//! attributes of the [GenAI mapping](crate::genai) that every OTLP span carries.
//!
//! Names are those of Langfuse's OTLP ingestion (`langfuse.observation.*`, `langfuse.trace.*`,
//! `user.id`, `session.id`). Langfuse counts usage in separate buckets, each priced on its
//! own: `input` excludes the input tokens read from the prompt cache (`input_cached_tokens`)
//! and written to it (`input_cache_creation`), and `output` excludes the reasoning tokens
//! (`output_reasoning_tokens`); `total` is all of them. The same rule for every API family:
//! the payload's [`Usage`](crate::Usage) is already normalised.
//!
//! ```
//! use llm_observability::genai::AttributeValue;
//! use llm_observability::sink::otlp::{find_attribute, langfuse};
//! use llm_observability::{Endpoint, LlmCall, Usage};
//!
//! let mut call = LlmCall::new(Endpoint::ChatCompletions);
//! call.request.model = Some("gpt-4o-mini".into());
//! call.usage = Some(Usage::new(12, 5));
//! let attributes = langfuse::attributes(&call, true);
//! assert_eq!(
//!     find_attribute(&attributes, "langfuse.observation.usage_details"),
//!     Some(&AttributeValue::Str(r#"{"input":12,"output":5,"total":17}"#.into())),
//! );
//! ```

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;

use super::presets::EnvLookup;
use super::presets::{self, PresetAttribute, RESERVED_METADATA};
use super::{OtlpError, OtlpSink, OtlpSinkBuilder};
use crate::genai::{self, AttributeValue};
use crate::payload::{CallStatus, LlmCall};

/// Langfuse Cloud (EU region), the host when neither [`LangfuseBuilder::host`] nor
/// `LANGFUSE_HOST` says otherwise.
pub const DEFAULT_HOST: &str = "https://cloud.langfuse.com";
/// The OTLP path under a Langfuse host.
pub const TRACES_PATH: &str = "/api/public/otel/v1/traces";
/// The header that selects Langfuse's ingestion version, and the version sent.
pub const INGESTION_VERSION_HEADER: (&str, &str) = ("x-langfuse-ingestion-version", "4");

/// Why the Langfuse preset could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LangfuseError {
    /// A key was neither given nor in the environment.
    #[error(
        "the Langfuse {which} key is missing: set {variable} or call LangfuseBuilder::{which}_key"
    )]
    MissingKey {
        /// `public` or `secret`.
        which: &'static str,
        /// The environment variable that would have given it.
        variable: &'static str,
    },
    /// The OTLP sink refused the configuration (e.g. a host that is not an http(s) URL).
    #[error(transparent)]
    Otlp(#[from] OtlpError),
}

/// Configures the Langfuse preset; made by [`OtlpSink::langfuse`].
///
/// Defaults: host `LANGFUSE_HOST` (or `LANGFUSE_BASE_URL`), else [`DEFAULT_HOST`]; keys
/// `LANGFUSE_PUBLIC_KEY` and `LANGFUSE_SECRET_KEY`; message content on. Everything else of
/// the [`OtlpSinkBuilder`] through [`configure`](Self::configure).
pub struct LangfuseBuilder {
    host: Option<String>,
    public_key: Option<String>,
    secret_key: Option<String>,
    message_content: bool,
    otlp: OtlpSinkBuilder,
    env: EnvLookup,
}

impl fmt::Debug for LangfuseBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LangfuseBuilder")
            .field("host", &self.host)
            .field("public_key", &self.public_key)
            .field("secret_key", &self.secret_key.as_ref().map(|_| "[set]"))
            .field("message_content", &self.message_content)
            .finish_non_exhaustive()
    }
}

impl OtlpSink {
    /// The Langfuse preset (host and keys from the environment unless set on the builder).
    pub fn langfuse() -> LangfuseBuilder {
        LangfuseBuilder {
            host: None,
            public_key: None,
            secret_key: None,
            message_content: true,
            otlp: OtlpSink::builder().name("langfuse"),
            env: Arc::new(|name| std::env::var(name).ok()),
        }
    }
}

impl LangfuseBuilder {
    /// The Langfuse base URL, e.g. `https://cloud.langfuse.com`, `https://us.cloud.langfuse.com`
    /// or a self-hosted `http://localhost:3000`.
    pub fn host(mut self, url: impl Into<String>) -> Self {
        self.host = Some(url.into());
        self
    }

    /// The project's public key (`pk-lf-...`).
    pub fn public_key(mut self, key: impl Into<String>) -> Self {
        self.public_key = Some(key.into());
        self
    }

    /// The project's secret key (`sk-lf-...`).
    pub fn secret_key(mut self, key: impl Into<String>) -> Self {
        self.secret_key = Some(key.into());
        self
    }

    /// Whether input and output are sent (default: on). Off, the generations keep model,
    /// parameters, usage, cost, timing, level, user, session and tags.
    pub fn message_content(mut self, on: bool) -> Self {
        self.message_content = on;
        self
    }

    /// Changes the underlying [`OtlpSinkBuilder`]: timeout, gzip, service name, more hooks.
    pub fn configure(mut self, change: impl FnOnce(OtlpSinkBuilder) -> OtlpSinkBuilder) -> Self {
        self.otlp = change(self.otlp);
        self
    }

    /// Reads `LANGFUSE_*` settings through `lookup` instead of the process environment (for
    /// tests).
    #[doc(hidden)]
    pub fn environment(
        mut self,
        lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.env = Arc::new(lookup);
        self
    }

    /// Builds the sink: fails when a key is missing or the host is not an http(s) URL.
    pub fn build(self) -> Result<OtlpSink, LangfuseError> {
        let env = |name: &str| (self.env)(name).filter(|v| !v.trim().is_empty());
        let host = self
            .host
            .or_else(|| env("LANGFUSE_HOST"))
            .or_else(|| env("LANGFUSE_BASE_URL"))
            .unwrap_or_else(|| DEFAULT_HOST.to_owned());
        let public_key = self
            .public_key
            .or_else(|| env("LANGFUSE_PUBLIC_KEY"))
            .ok_or(LangfuseError::MissingKey {
                which: "public",
                variable: "LANGFUSE_PUBLIC_KEY",
            })?;
        let secret_key = self
            .secret_key
            .or_else(|| env("LANGFUSE_SECRET_KEY"))
            .ok_or(LangfuseError::MissingKey {
                which: "secret",
                variable: "LANGFUSE_SECRET_KEY",
            })?;
        let credentials = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            public_key.trim(),
            secret_key.trim()
        ));
        let content = self.message_content;
        let sink = self
            .otlp
            .endpoint(traces_endpoint(&host))
            .header("authorization", format!("Basic {credentials}"))
            .header(INGESTION_VERSION_HEADER.0, INGESTION_VERSION_HEADER.1)
            .span_attributes(move |call, attributes| {
                attributes.extend(
                    self::attributes(call, content)
                        .into_iter()
                        .map(|a| a.into_key_value()),
                );
            })
            .build()?;
        Ok(sink)
    }
}

/// `{host}/api/public/otel/v1/traces`, or `host` itself when it is that URL already.
fn traces_endpoint(host: &str) -> String {
    let host = host.trim().trim_end_matches('/');
    if host.ends_with(TRACES_PATH) {
        host.to_owned()
    } else {
        format!("{host}{TRACES_PATH}")
    }
}

/// `langfuse.observation.type`: `generation` (`embedding` for embeddings calls).
pub const OBSERVATION_TYPE: &str = "langfuse.observation.type";
/// `langfuse.observation.model.name`.
pub const OBSERVATION_MODEL: &str = "langfuse.observation.model.name";
/// `langfuse.observation.model.parameters`: a JSON object.
pub const OBSERVATION_MODEL_PARAMETERS: &str = "langfuse.observation.model.parameters";
/// `langfuse.observation.usage_details`: a JSON object of token counts.
pub const OBSERVATION_USAGE_DETAILS: &str = "langfuse.observation.usage_details";
/// `langfuse.observation.cost_details`: a JSON object of USD amounts.
pub const OBSERVATION_COST_DETAILS: &str = "langfuse.observation.cost_details";
/// `langfuse.observation.completion_start_time`: when the first token arrived (RFC 3339).
pub const OBSERVATION_COMPLETION_START_TIME: &str = "langfuse.observation.completion_start_time";
/// `langfuse.observation.input`: JSON.
pub const OBSERVATION_INPUT: &str = "langfuse.observation.input";
/// `langfuse.observation.output`: JSON.
pub const OBSERVATION_OUTPUT: &str = "langfuse.observation.output";
/// `langfuse.observation.level`: `ERROR` for a failed call, `WARNING` for a cancelled one.
pub const OBSERVATION_LEVEL: &str = "langfuse.observation.level";
/// `langfuse.observation.status_message`.
pub const OBSERVATION_STATUS_MESSAGE: &str = "langfuse.observation.status_message";
/// Prefix of `langfuse.observation.metadata.<key>`: the call's other metadata.
pub const OBSERVATION_METADATA_PREFIX: &str = "langfuse.observation.metadata.";
/// `user.id`.
pub const USER_ID: &str = "user.id";
/// `session.id`.
pub const SESSION_ID: &str = "session.id";
/// `langfuse.trace.name`.
pub const TRACE_NAME: &str = "langfuse.trace.name";
/// `langfuse.trace.tags`: an array of strings.
pub const TRACE_TAGS: &str = "langfuse.trace.tags";

/// Every Langfuse attribute of `call`. With `content` false, input and output are left out.
///
/// `langfuse.trace.name` comes from the metadata `trace_name`, else, for a call that is the
/// root of its trace, from the span name (`chat gpt-4o`); a call under an application span
/// leaves the trace its root span's name.
pub fn attributes(call: &LlmCall, content: bool) -> Vec<PresetAttribute<'_>> {
    let mut out = Vec::with_capacity(16);
    out.push(PresetAttribute::str(
        OBSERVATION_TYPE,
        if call.operation == "embeddings" {
            "embedding"
        } else {
            "generation"
        },
    ));
    if let Some(model) = presets::model(call) {
        out.push(PresetAttribute::str(OBSERVATION_MODEL, model));
    }
    let parameters = model_parameters(call);
    if !parameters.is_empty() {
        out.push(PresetAttribute::json(
            OBSERVATION_MODEL_PARAMETERS,
            &Value::Object(parameters),
        ));
    }
    if let Some(usage) = usage_details(call) {
        out.push(PresetAttribute::json(OBSERVATION_USAGE_DETAILS, &usage));
    }
    if let Some(cost) = cost_details(call) {
        out.push(PresetAttribute::json(OBSERVATION_COST_DETAILS, &cost));
    }
    if let Some(start) = completion_start_time(call) {
        out.push(PresetAttribute::str(
            OBSERVATION_COMPLETION_START_TIME,
            start,
        ));
    }
    if content {
        if let Some(input) = genai::native_input(call) {
            out.push(PresetAttribute::json(OBSERVATION_INPUT, &input));
        }
        if let Some(output) = output(call) {
            out.push(PresetAttribute::json(OBSERVATION_OUTPUT, &output));
        }
    }
    match call.status {
        CallStatus::Error => {
            out.push(PresetAttribute::str(OBSERVATION_LEVEL, "ERROR"));
            let message = call
                .error
                .as_ref()
                .and_then(|e| e.message.as_deref())
                .or(call.error_type.as_deref())
                .unwrap_or("the call failed");
            out.push(PresetAttribute::str(OBSERVATION_STATUS_MESSAGE, message));
        }
        CallStatus::Cancelled => {
            out.push(PresetAttribute::str(OBSERVATION_LEVEL, "WARNING"));
            out.push(PresetAttribute::str(
                OBSERVATION_STATUS_MESSAGE,
                "cancelled: the client stopped reading the response",
            ));
        }
        CallStatus::Success => {}
    }
    if let Some(user) = presets::user_id(call) {
        out.push(PresetAttribute::str(USER_ID, user));
    }
    if let Some(session) = presets::session_id(call) {
        out.push(PresetAttribute::str(SESSION_ID, session));
    }
    let name = presets::metadata_text(call, presets::metadata_keys::TRACE_NAME).or_else(|| {
        call.trace
            .parent_span_id
            .is_none()
            .then(|| Cow::Owned(genai::span_name(call)))
    });
    if let Some(name) = name {
        out.push(PresetAttribute::str(TRACE_NAME, name));
    }
    let tags = presets::tags(call);
    if !tags.is_empty() {
        out.push(PresetAttribute::new(
            TRACE_TAGS,
            AttributeValue::StrArray(tags),
        ));
    }
    for (key, value) in &call.metadata {
        if RESERVED_METADATA.contains(&key.as_str()) {
            continue;
        }
        let key = format!("{OBSERVATION_METADATA_PREFIX}{key}");
        out.push(match value {
            Value::String(text) => PresetAttribute::str(key, text.as_str()),
            other => PresetAttribute::json(key, other),
        });
    }
    out
}

/// The request parameters, named as the GenAI mapping names them without its
/// `gen_ai.request.` prefix (`temperature`, `max_tokens`, `stop_sequences`, ...); the model
/// is apart.
fn model_parameters(call: &LlmCall) -> Map<String, Value> {
    genai::request_attributes(&call.request)
        .into_iter()
        .filter(|a| a.key != crate::span::GEN_AI_REQUEST_MODEL)
        .map(|a| {
            let key = a.key.strip_prefix("gen_ai.request.").unwrap_or(a.key);
            let value = match a.value {
                AttributeValue::Str(text) => json!(text),
                AttributeValue::Int(n) => json!(n),
                AttributeValue::Float(x) => json!(x),
                AttributeValue::Bool(b) => json!(b),
                AttributeValue::StrArray(items) => json!(items),
                #[allow(unreachable_patterns)]
                _ => Value::Null,
            };
            (key.to_owned(), value)
        })
        .filter(|(_, value)| !value.is_null())
        .collect()
}

/// Usage in Langfuse's separate buckets (`input`, `input_cached_tokens`,
/// `input_cache_creation`, `output`, `output_reasoning_tokens`, `total`); `None` when the
/// response reported none.
pub fn usage_details(call: &LlmCall) -> Option<Value> {
    let usage = call.usage?;
    let mut details = Map::new();
    let cached = usage.cached_input_tokens.unwrap_or(0);
    let written = usage.cache_creation_input_tokens.unwrap_or(0);
    let reasoning = usage.reasoning_tokens.unwrap_or(0);
    if let Some(input) = usage.input_tokens {
        let uncached = input.saturating_sub(cached).saturating_sub(written);
        details.insert("input".into(), json!(uncached));
    }
    if let Some(cached) = usage.cached_input_tokens {
        details.insert("input_cached_tokens".into(), json!(cached));
    }
    if let Some(written) = usage.cache_creation_input_tokens {
        details.insert("input_cache_creation".into(), json!(written));
    }
    if let Some(output) = usage.output_tokens {
        details.insert("output".into(), json!(output.saturating_sub(reasoning)));
    }
    if let Some(reasoning) = usage.reasoning_tokens {
        details.insert("output_reasoning_tokens".into(), json!(reasoning));
    }
    let total = usage.total_tokens.or_else(|| {
        usage
            .input_tokens
            .zip(usage.output_tokens)
            .map(|(i, o)| i.saturating_add(o))
    });
    if let Some(total) = total {
        details.insert("total".into(), json!(total));
    }
    (!details.is_empty()).then_some(Value::Object(details))
}

/// The call's [cost](crate::Cost) in USD under the names of the usage buckets it prices
/// (`input`, `input_cached_tokens`, `input_cache_creation` when tokens were written to the
/// cache, `output`, `total`); `None` unless a pricing processor set it.
pub fn cost_details(call: &LlmCall) -> Option<Value> {
    let cost = call.cost.as_ref()?;
    let mut details = json!({
        "input": cost.input_usd,
        "input_cached_tokens": cost.cache_read_usd,
        "output": cost.output_usd,
        "total": cost.total_usd,
    });
    let wrote = call
        .usage
        .is_some_and(|u| u.cache_creation_input_tokens.is_some());
    if wrote || cost.cache_write_usd != 0.0 {
        details["input_cache_creation"] = json!(cost.cache_write_usd);
    }
    Some(details)
}

/// When the first token arrived: the start plus the time to first token, in RFC 3339.
pub fn completion_start_time(call: &LlmCall) -> Option<String> {
    let ttft = call.timing.time_to_first_token_ms?;
    if !ttft.is_finite() || ttft < 0.0 {
        return None;
    }
    let first = call.timing.start_time + time::Duration::seconds_f64(ttft / 1000.0);
    first.format(&Rfc3339).ok()
}

/// What the model answered, in its provider's shape ([`genai::native_output`]); for a failed
/// call without an answer, its error.
fn output(call: &LlmCall) -> Option<Value> {
    genai::native_output(call).or_else(|| {
        let error = call.error.as_ref()?;
        serde_json::to_value(error)
            .ok()
            .map(|e| json!({ "error": e }))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::{CallError, Usage};
    use crate::sink::otlp::presets::find_attribute;
    use crate::trace_context::TraceContext;
    use crate::Endpoint;

    fn text<'a>(attributes: &'a [PresetAttribute<'a>], key: &str) -> Option<&'a str> {
        match find_attribute(attributes, key)? {
            AttributeValue::Str(text) => Some(text),
            other => panic!("{key} is not a string: {other:?}"),
        }
    }

    fn parsed(attributes: &[PresetAttribute<'_>], key: &str) -> Option<Value> {
        text(attributes, key).map(|t| serde_json::from_str(t).expect("JSON attribute"))
    }

    #[test]
    fn endpoint_and_keys() {
        assert_eq!(
            traces_endpoint("https://cloud.langfuse.com/"),
            "https://cloud.langfuse.com/api/public/otel/v1/traces"
        );
        assert_eq!(
            traces_endpoint("http://lf:3000/api/public/otel/v1/traces"),
            "http://lf:3000/api/public/otel/v1/traces"
        );
        let none = OtlpSink::langfuse().environment(|_| None).build();
        assert!(matches!(
            none,
            Err(LangfuseError::MissingKey {
                which: "public",
                ..
            })
        ));
        let half = OtlpSink::langfuse()
            .environment(|name| (name == "LANGFUSE_PUBLIC_KEY").then(|| "pk-lf-1".to_owned()))
            .build();
        let error = half.expect_err("no secret key");
        assert!(error.to_string().contains("LANGFUSE_SECRET_KEY"), "{error}");
        let sink = OtlpSink::langfuse()
            .environment(|name| match name {
                "LANGFUSE_PUBLIC_KEY" => Some("pk-lf-1".into()),
                "LANGFUSE_SECRET_KEY" => Some("sk-lf-1".into()),
                "LANGFUSE_HOST" => Some("http://127.0.0.1:3000".into()),
                _ => None,
            })
            .build()
            .expect("configured from the environment");
        assert_eq!(
            sink.endpoint(),
            "http://127.0.0.1:3000/api/public/otel/v1/traces"
        );
        let sink = OtlpSink::langfuse()
            .environment(|_| None)
            .public_key("pk")
            .secret_key("sk")
            .build()
            .expect("configured in code");
        assert_eq!(
            sink.endpoint(),
            "https://cloud.langfuse.com/api/public/otel/v1/traces"
        );
    }

    #[test]
    fn usage_buckets_are_disjoint() {
        let mut call = LlmCall::new(Endpoint::ChatCompletions);
        call.usage = Some(Usage {
            cached_input_tokens: Some(30),
            reasoning_tokens: Some(7),
            ..Usage::new(100, 20)
        });
        assert_eq!(
            usage_details(&call),
            Some(json!({"input": 70, "input_cached_tokens": 30, "output": 13,
                        "output_reasoning_tokens": 7, "total": 120}))
        );
        call.usage = Some(Usage {
            input_tokens: Some(5),
            ..Usage::default()
        });
        assert_eq!(usage_details(&call), Some(json!({"input": 5})));
        call.usage = None;
        assert_eq!(usage_details(&call), None);
    }

    #[test]
    fn anthropic_cache_reads_and_writes_are_their_own_buckets() {
        let mut call = LlmCall::new(Endpoint::AnthropicMessages);
        call.request.model = Some("claude-3-5-sonnet-20240620".into());
        call.request.instructions = Some(json!("Be brief.").into());
        call.request.messages = Some(json!([{"role": "user", "content": "Hi"}]).into());
        call.response = Some(
            json!({"type": "message", "role": "assistant",
                   "content": [{"type": "text", "text": "Hello"}], "stop_reason": "end_turn"})
            .into(),
        );
        // Anthropic's 4 uncached + 1165 written + 0 read, as the payload counts them.
        call.usage = Some(Usage {
            cached_input_tokens: Some(0),
            cache_creation_input_tokens: Some(1165),
            ..Usage::new(1169, 187)
        });
        call.cost = Some(crate::Cost::with_cache_write(
            0.25, 0.0, 0.5, 1.0, "built-in",
        ));
        let attributes = attributes(&call, true);
        assert_eq!(
            parsed(&attributes, OBSERVATION_USAGE_DETAILS),
            Some(
                json!({"input": 4, "input_cached_tokens": 0, "input_cache_creation": 1165,
                        "output": 187, "total": 1356})
            )
        );
        assert_eq!(
            parsed(&attributes, OBSERVATION_COST_DETAILS),
            Some(
                json!({"input": 0.25, "input_cached_tokens": 0.0, "input_cache_creation": 0.5,
                        "output": 1.0, "total": 1.75})
            )
        );
        assert_eq!(
            parsed(&attributes, OBSERVATION_INPUT),
            Some(json!({"system": "Be brief.", "messages": [{"role": "user", "content": "Hi"}]}))
        );
        assert_eq!(
            parsed(&attributes, OBSERVATION_OUTPUT).unwrap()["content"][0]["text"],
            "Hello"
        );
        assert_eq!(
            text(&attributes, OBSERVATION_MODEL),
            Some("claude-3-5-sonnet-20240620")
        );
    }

    #[test]
    fn cost_details_when_the_cost_is_known() {
        let mut call = LlmCall::new(Endpoint::ChatCompletions);
        assert_eq!(cost_details(&call), None);
        assert_eq!(
            find_attribute(&attributes(&call, true), OBSERVATION_COST_DETAILS),
            None
        );
        call.cost = Some(crate::Cost::new(0.25, 0.125, 0.5, "built-in"));
        assert_eq!(
            parsed(&attributes(&call, true), OBSERVATION_COST_DETAILS),
            Some(
                json!({"input": 0.25, "input_cached_tokens": 0.125, "output": 0.5,
                        "total": 0.875})
            )
        );
    }

    #[test]
    fn completion_start_time_is_start_plus_ttft() {
        let mut call = LlmCall::new(Endpoint::ChatCompletions);
        call.timing.start_time =
            time::OffsetDateTime::parse("2026-01-02T03:04:05.1Z", &Rfc3339).expect("a time");
        assert_eq!(completion_start_time(&call), None);
        call.timing.time_to_first_token_ms = Some(250.5);
        assert_eq!(
            completion_start_time(&call).as_deref(),
            Some("2026-01-02T03:04:05.3505Z")
        );
        call.timing.time_to_first_token_ms = Some(f64::NAN);
        assert_eq!(completion_start_time(&call), None);
    }

    #[test]
    fn a_generation_with_everything() {
        let mut call = LlmCall::new(Endpoint::ChatCompletions);
        call.request.model = Some("gpt-4o".into());
        call.request.temperature = Some(0.2);
        call.request.max_completion_tokens = Some(64);
        call.request.stream = true;
        call.request.messages = Some(json!([{"role": "user", "content": "Hi"}]).into());
        call.response_model = Some("gpt-4o-2024-08-06".into());
        call.response = Some(
            json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"},
                                "finish_reason": "stop"}]})
            .into(),
        );
        call.metadata.insert("user_id".into(), json!("u-1"));
        call.metadata.insert("session_id".into(), json!("s-1"));
        call.metadata.insert("tags".into(), json!(["beta", "eu"]));
        call.metadata.insert("tenant".into(), json!("acme"));
        call.metadata.insert("shard".into(), json!(3));
        let attributes = attributes(&call, true);
        assert_eq!(text(&attributes, OBSERVATION_TYPE), Some("generation"));
        assert_eq!(
            text(&attributes, OBSERVATION_MODEL),
            Some("gpt-4o-2024-08-06")
        );
        assert_eq!(
            parsed(&attributes, OBSERVATION_MODEL_PARAMETERS),
            Some(json!({"temperature": 0.2, "max_tokens": 64, "stream": true}))
        );
        assert_eq!(
            parsed(&attributes, OBSERVATION_INPUT),
            Some(json!([{"role": "user", "content": "Hi"}]))
        );
        assert_eq!(
            parsed(&attributes, OBSERVATION_OUTPUT),
            Some(json!({"role": "assistant", "content": "Hello"}))
        );
        assert_eq!(text(&attributes, USER_ID), Some("u-1"));
        assert_eq!(text(&attributes, SESSION_ID), Some("s-1"));
        assert_eq!(
            find_attribute(&attributes, TRACE_TAGS),
            Some(&AttributeValue::StrArray(vec!["beta".into(), "eu".into()]))
        );
        // A root call names its trace after itself.
        assert_eq!(text(&attributes, TRACE_NAME), Some("chat gpt-4o"));
        assert_eq!(
            text(&attributes, "langfuse.observation.metadata.tenant"),
            Some("acme")
        );
        assert_eq!(
            text(&attributes, "langfuse.observation.metadata.shard"),
            Some("3")
        );
        assert_eq!(
            find_attribute(&attributes, "langfuse.observation.metadata.user_id"),
            None
        );
        assert_eq!(find_attribute(&attributes, OBSERVATION_LEVEL), None);
        // Without content: no input or output.
        let bare = super::attributes(&call, false);
        assert_eq!(find_attribute(&bare, OBSERVATION_INPUT), None);
        assert_eq!(find_attribute(&bare, OBSERVATION_OUTPUT), None);
        assert_eq!(text(&bare, USER_ID), Some("u-1"));
    }

    #[test]
    fn trace_name_of_a_nested_call_comes_from_metadata_only() {
        let mut call = LlmCall::new(Endpoint::ChatCompletions);
        call.trace = TraceContext::root().child();
        assert_eq!(find_attribute(&attributes(&call, true), TRACE_NAME), None);
        call.metadata
            .insert("trace_name".into(), json!("checkout-assistant"));
        assert_eq!(
            text(&attributes(&call, true), TRACE_NAME),
            Some("checkout-assistant")
        );
    }

    #[test]
    fn failed_and_cancelled_calls_have_a_level() {
        let mut call = LlmCall::new(Endpoint::ChatCompletions);
        call.status = CallStatus::Error;
        call.error = Some(CallError::new("invalid_request_error", "bad model"));
        call.error_type = Some("invalid_request_error".into());
        let attributes = attributes(&call, true);
        assert_eq!(text(&attributes, OBSERVATION_LEVEL), Some("ERROR"));
        assert_eq!(
            text(&attributes, OBSERVATION_STATUS_MESSAGE),
            Some("bad model")
        );
        assert_eq!(
            parsed(&attributes, OBSERVATION_OUTPUT),
            Some(
                json!({"error": {"type": "invalid_request_error", "code": null,
                                  "message": "bad model"}})
            )
        );
        call.status = CallStatus::Cancelled;
        call.error = None;
        assert_eq!(
            text(&super::attributes(&call, true), OBSERVATION_LEVEL),
            Some("WARNING")
        );
    }

    #[test]
    fn responses_and_embeddings() {
        let mut call = LlmCall::new(Endpoint::Responses);
        call.request.instructions = Some(json!("Be brief.").into());
        call.request.input = Some(json!("Hi").into());
        call.response = Some(
            json!({"output": [{"type": "message", "role": "assistant",
                               "content": [{"type": "output_text", "text": "Hello"}]}]})
            .into(),
        );
        let attributes = attributes(&call, true);
        assert_eq!(
            parsed(&attributes, OBSERVATION_INPUT),
            Some(json!([{"role": "system", "content": "Be brief."},
                        {"role": "user", "content": "Hi"}]))
        );
        assert_eq!(
            parsed(&attributes, OBSERVATION_OUTPUT),
            Some(json!([{"type": "message", "role": "assistant",
                         "content": [{"type": "output_text", "text": "Hello"}]}]))
        );
        let mut call = LlmCall::new(Endpoint::Embeddings);
        call.request.input = Some(json!(["a", "b"]).into());
        let attributes = super::attributes(&call, true);
        assert_eq!(text(&attributes, OBSERVATION_TYPE), Some("embedding"));
        assert_eq!(
            parsed(&attributes, OBSERVATION_INPUT),
            Some(json!(["a", "b"]))
        );
        assert_eq!(find_attribute(&attributes, OBSERVATION_OUTPUT), None);
    }
}
