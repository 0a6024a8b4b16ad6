//! The Arize Phoenix preset: an [`OtlpSink`] that sends to Phoenix's OTLP/HTTP endpoint
//! (`{base}/v1/traces`), names the project with the resource attribute
//! `openinference.project.name`, and adds the [OpenInference attributes](super::openinference)
//! Phoenix shows (span kind, model, token counts, messages, tools, input and output).
//!
//! ```no_run
//! use llm_observability::{LlmObservabilityLayer, OtlpSink};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let phoenix = OtlpSink::phoenix("http://localhost:6006").project("checkout").build()?;
//! let layer = LlmObservabilityLayer::builder().sink(phoenix).build()?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::Arc;

use super::openinference::{self, PROJECT_NAME};
use super::presets::EnvLookup;
use super::{OtlpError, OtlpSink, OtlpSinkBuilder};

/// Phoenix's default address (`phoenix serve`).
pub const DEFAULT_BASE_URL: &str = "http://localhost:6006";

/// Configures the Phoenix preset; made by [`OtlpSink::phoenix`].
///
/// Defaults: project `PHOENIX_PROJECT_NAME`, else `default`; API key `PHOENIX_API_KEY` (sent as
/// `authorization: Bearer ...`, for a Phoenix with authentication on), else none; message
/// content on. Everything else of the [`OtlpSinkBuilder`] (timeout, gzip, service name, more
/// resource attributes) through [`configure`](Self::configure).
pub struct PhoenixBuilder {
    base_url: String,
    project: Option<String>,
    api_key: Option<String>,
    message_content: bool,
    otlp: OtlpSinkBuilder,
    env: EnvLookup,
}

impl fmt::Debug for PhoenixBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PhoenixBuilder")
            .field("base_url", &self.base_url)
            .field("project", &self.project)
            .field("api_key", &self.api_key.as_ref().map(|_| "[set]"))
            .field("message_content", &self.message_content)
            .finish_non_exhaustive()
    }
}

impl OtlpSink {
    /// The Arize Phoenix preset, for the Phoenix at `base_url` (e.g. `http://localhost:6006`;
    /// the traces endpoint `{base_url}/v1/traces` is derived from it).
    pub fn phoenix(base_url: impl Into<String>) -> PhoenixBuilder {
        PhoenixBuilder {
            base_url: base_url.into(),
            project: None,
            api_key: None,
            message_content: true,
            otlp: OtlpSink::builder().name("phoenix"),
            env: Arc::new(|name| std::env::var(name).ok()),
        }
    }
}

impl PhoenixBuilder {
    /// The Phoenix project the calls go to (created by Phoenix on the first span).
    pub fn project(mut self, name: impl Into<String>) -> Self {
        self.project = Some(name.into());
        self
    }

    /// An API key, for a Phoenix with authentication on.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// Whether messages, tools, input and output are sent (default: on, as Phoenix is where
    /// they are read). Off, the spans keep model, parameters, counts, timing and status.
    pub fn message_content(mut self, on: bool) -> Self {
        self.message_content = on;
        self
    }

    /// Changes the underlying [`OtlpSinkBuilder`]: timeout, gzip, service name, headers, more
    /// hooks.
    ///
    /// ```
    /// use std::time::Duration;
    /// use llm_observability::OtlpSink;
    /// let sink = OtlpSink::phoenix("http://localhost:6006")
    ///     .configure(|otlp| otlp.timeout(Duration::from_secs(3)).service_name("checkout"))
    ///     .build();
    /// assert!(sink.is_ok());
    /// ```
    pub fn configure(mut self, change: impl FnOnce(OtlpSinkBuilder) -> OtlpSinkBuilder) -> Self {
        self.otlp = change(self.otlp);
        self
    }

    /// Reads `PHOENIX_*` settings through `lookup` instead of the process environment (for
    /// tests).
    #[doc(hidden)]
    pub fn environment(
        mut self,
        lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.env = Arc::new(lookup);
        self
    }

    /// Builds the sink.
    pub fn build(self) -> Result<OtlpSink, OtlpError> {
        let env = |name: &str| (self.env)(name).filter(|v| !v.trim().is_empty());
        let project = self
            .project
            .or_else(|| env("PHOENIX_PROJECT_NAME"))
            .unwrap_or_else(|| "default".to_owned());
        let api_key = self.api_key.or_else(|| env("PHOENIX_API_KEY"));
        let content = self.message_content;
        let mut otlp = self
            .otlp
            .endpoint(traces_endpoint(&self.base_url))
            .resource_attribute(PROJECT_NAME, project)
            .span_attributes(move |call, attributes| {
                attributes.extend(
                    openinference::attributes(call, content)
                        .into_iter()
                        .map(|a| a.into_key_value()),
                );
            });
        if let Some(key) = api_key {
            otlp = otlp.header("authorization", format!("Bearer {key}"));
        }
        otlp.build()
    }
}

/// `{base}/v1/traces`, or `base` itself when it is the traces URL already.
fn traces_endpoint(base: &str) -> String {
    let base = base.trim().trim_end_matches('/');
    if base.ends_with("/v1/traces") {
        base.to_owned()
    } else {
        format!("{base}/v1/traces")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Endpoint, LlmCall, Usage};

    #[test]
    fn endpoint_from_the_base_url() {
        assert_eq!(
            traces_endpoint("http://localhost:6006"),
            "http://localhost:6006/v1/traces"
        );
        assert_eq!(
            traces_endpoint("http://host/phoenix/ "),
            "http://host/phoenix/v1/traces"
        );
        assert_eq!(
            traces_endpoint("http://host:6006/v1/traces"),
            "http://host:6006/v1/traces"
        );
        let sink = OtlpSink::phoenix("http://127.0.0.1:6006/")
            .environment(|_| None)
            .build()
            .unwrap();
        assert_eq!(sink.endpoint(), "http://127.0.0.1:6006/v1/traces");
    }

    #[test]
    fn spans_carry_the_openinference_attributes() {
        let sink = OtlpSink::phoenix(DEFAULT_BASE_URL)
            .environment(|_| None)
            .message_content(false)
            .build()
            .unwrap();
        let mut call = LlmCall::new(Endpoint::ChatCompletions);
        call.request.model = Some("gpt-4o".into());
        call.request.messages =
            Some(serde_json::json!([{"role": "user", "content": "secret"}]).into());
        call.usage = Some(Usage::new(3, 4));
        let span = sink.span_data(&call);
        let find = |key: &str| {
            span.attributes
                .iter()
                .find(|kv| kv.key.as_str() == key)
                .map(|kv| kv.value.to_string())
        };
        assert_eq!(find("openinference.span.kind").as_deref(), Some("LLM"));
        assert_eq!(find("llm.model_name").as_deref(), Some("gpt-4o"));
        assert_eq!(find("llm.token_count.total").as_deref(), Some("7"));
        assert_eq!(find("gen_ai.usage.input_tokens").as_deref(), Some("3"));
        assert_eq!(find("llm.input_messages.0.message.content"), None);
        assert_eq!(find("input.value"), None);
    }
}
