//! `--langfuse URL` and `--phoenix URL --phoenix-project NAME`: the proxy's calls also go to
//! Langfuse or Arize Phoenix, through the OTLP presets of the library.

use llm_observability::{LlmObservabilityLayerBuilder, OtlpSink};

/// Flags that send the recorded calls to Langfuse or Phoenix (next to the JSONL file).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct PresetFlags {
    /// Also send each call to Langfuse at URL (e.g. `https://cloud.langfuse.com`).
    ///
    /// Each call becomes a generation (model, parameters, usage, time to first token, input,
    /// output, user and session from captured metadata) through Langfuse's OpenTelemetry
    /// endpoint URL/api/public/otel/v1/traces. The project's keys come from
    /// LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY; the proxy does not start without them.
    #[arg(long, value_name = "URL")]
    langfuse: Option<String>,
    /// Also send each call to Arize Phoenix at URL (e.g. `http://localhost:6006`).
    ///
    /// Each call becomes an LLM span with OpenInference attributes (model, token counts,
    /// messages, tools, input and output) through URL/v1/traces, within a few seconds of its
    /// end. PHOENIX_API_KEY, when set, is sent as a bearer token.
    #[arg(long, value_name = "URL")]
    phoenix: Option<String>,
    /// The Phoenix project the calls go to (default: PHOENIX_PROJECT_NAME, else `default`).
    #[arg(long, value_name = "NAME", requires = "phoenix")]
    phoenix_project: Option<String>,
}

impl PresetFlags {
    /// Adds the sinks the flags ask for to `builder`.
    pub(crate) fn add_sinks(
        &self,
        mut builder: LlmObservabilityLayerBuilder,
    ) -> Result<LlmObservabilityLayerBuilder, Box<dyn std::error::Error + Send + Sync>> {
        if let Some(host) = &self.langfuse {
            let sink = OtlpSink::langfuse()
                .host(host)
                .build()
                .map_err(|e| format!("--langfuse: {e}"))?;
            builder = builder.sink(sink);
        }
        if let Some(base) = &self.phoenix {
            let mut phoenix = OtlpSink::phoenix(base);
            if let Some(project) = &self.phoenix_project {
                phoenix = phoenix.project(project);
            }
            let sink = phoenix.build().map_err(|e| format!("--phoenix: {e}"))?;
            builder = builder.sink(sink);
        }
        Ok(builder)
    }
}
