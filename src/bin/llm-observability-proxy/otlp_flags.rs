//! OpenTelemetry and MLflow flags: `--otlp-endpoint URL` (with repeatable `--otlp-header
//! NAME=VALUE`) sends each call as a GenAI span to an OTLP/HTTP collector; `--mlflow URL
//! --mlflow-experiment NAME` sends it to an MLflow tracking server as a trace.

use llm_observability::{LlmObservabilityLayerBuilder, MlflowSink, OtlpSink};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The service name the proxy's spans carry.
const SERVICE_NAME: &str = "llm-observability-proxy";

fn name_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_owned(), value.trim().to_owned()))
        }
        _ => Err(format!("expected NAME=VALUE, got {text:?}")),
    }
}

/// OpenTelemetry (OTLP) and MLflow export flags.
#[derive(Debug, clap::Args)]
pub(crate) struct OtlpFlags {
    /// Also send each call as an OpenTelemetry GenAI span to this OTLP/HTTP (protobuf) traces
    /// endpoint: the full URL, e.g. http://localhost:4318/v1/traces.
    ///
    /// The standard OTEL_EXPORTER_OTLP_HEADERS, OTEL_EXPORTER_OTLP_COMPRESSION,
    /// OTEL_EXPORTER_OTLP_TIMEOUT, OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES variables
    /// apply. Message content is left out unless --otlp-message-content is given.
    #[arg(long, value_name = "URL")]
    otlp_endpoint: Option<String>,
    /// A header sent with each OTLP export, e.g. "Authorization=Bearer abc"; repeatable.
    #[arg(long = "otlp-header", value_name = "NAME=VALUE", value_parser = name_value, requires = "otlp_endpoint")]
    otlp_headers: Vec<(String, String)>,
    /// Also send the messages, instructions, tool definitions and output with each OTLP span
    /// (gen_ai.input.messages and friends).
    #[arg(long, requires = "otlp_endpoint")]
    otlp_message_content: bool,
    /// Also send each call to the MLflow tracking server at this URL (e.g.
    /// http://127.0.0.1:5000) as a trace, in --mlflow-experiment.
    #[arg(long, value_name = "URL")]
    mlflow: Option<String>,
    /// The MLflow experiment the traces go to; created if it does not exist.
    #[arg(long, value_name = "NAME", default_value = "Default")]
    mlflow_experiment: String,
}

impl OtlpFlags {
    /// Adds the OTLP and MLflow sinks the flags ask for.
    pub(crate) fn apply(
        &self,
        mut builder: LlmObservabilityLayerBuilder,
    ) -> Result<LlmObservabilityLayerBuilder, BoxError> {
        if let Some(endpoint) = &self.otlp_endpoint {
            let mut otlp = OtlpSink::builder()
                .endpoint(endpoint)
                .message_content(self.otlp_message_content);
            if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
                otlp = otlp.service_name(SERVICE_NAME);
            }
            for (name, value) in &self.otlp_headers {
                otlp = otlp.header(name, value);
            }
            builder = builder.sink(otlp.build().map_err(|e| format!("--otlp-endpoint: {e}"))?);
        }
        if let Some(url) = &self.mlflow {
            let mlflow = MlflowSink::builder(url)
                .experiment(&self.mlflow_experiment)
                .service_name(SERVICE_NAME)
                .build()
                .map_err(|e| format!("--mlflow: {e}"))?;
            builder = builder.sink(mlflow);
        }
        Ok(builder)
    }
}
