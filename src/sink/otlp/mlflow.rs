//! `MlflowSink`: MLflow tracing over OTLP — an [`OtlpSink`] aimed at a tracking server's
//! `/v1/traces`, with the experiment resolved (or created) by name once through MLflow's REST
//! API and the `mlflow.*` attributes its trace UI reads.
//!
//! ```no_run
//! use llm_observability::{LlmObservabilityLayer, MlflowSink};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mlflow = MlflowSink::builder("http://127.0.0.1:5000").experiment("chatbot").build()?;
//! let layer = LlmObservabilityLayer::builder().sink(mlflow).build()?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, StatusCode};
use opentelemetry::KeyValue;
use serde_json::{json, Map, Value};

use super::client::{excerpt, retry_after, Http};
use super::{OtlpError, OtlpSink};
use crate::genai;
use crate::payload::{CallStatus, LlmCall};
use crate::sink::{Sink, SinkError};

/// `mlflow.spanType`: `CHAT_MODEL`, `LLM` or `EMBEDDING`.
pub const MLFLOW_SPAN_TYPE: &str = "mlflow.spanType";
/// `mlflow.spanInputs`: the request, as its provider's JSON ([`genai::native_request`]).
pub const MLFLOW_SPAN_INPUTS: &str = "mlflow.spanInputs";
/// `mlflow.spanOutputs`: the (assembled) response, as its provider's JSON (an OpenAI chat
/// completion, an Anthropic Message, ...).
pub const MLFLOW_SPAN_OUTPUTS: &str = "mlflow.spanOutputs";
/// `mlflow.message.format`: the API family ([`Endpoint::api`](crate::Endpoint::api):
/// `openai`, `anthropic`), so the chat view renders the messages in that format.
pub const MLFLOW_MESSAGE_FORMAT: &str = "mlflow.message.format";
/// `mlflow.chat.tokenUsage`: `{input_tokens, output_tokens, total_tokens}`, and
/// `cache_read_input_tokens` / `cache_creation_input_tokens` when the response reported them
/// (`input_tokens` counts every input token, cached ones included).
pub const MLFLOW_CHAT_TOKEN_USAGE: &str = "mlflow.chat.tokenUsage";
/// `mlflow.chat.tools`: the function tools offered (from the GenAI mapping's tool
/// definitions), in the Chat Completions shape MLflow reads whatever the API family.
pub const MLFLOW_CHAT_TOOLS: &str = "mlflow.chat.tools";
/// `mlflow.llm.model`: the model.
pub const MLFLOW_LLM_MODEL: &str = "mlflow.llm.model";
/// `mlflow.llm.provider`: the provider.
pub const MLFLOW_LLM_PROVIDER: &str = "mlflow.llm.provider";
/// `mlflow.llm.cost`: `{input_cost, output_cost, total_cost}` in USD, when the call's cost is
/// known (see [`LlmCall::cost`]).
pub const MLFLOW_LLM_COST: &str = "mlflow.llm.cost";
/// The experiment header MLflow's `/v1/traces` requires.
pub const EXPERIMENT_HEADER: &str = "x-mlflow-experiment-id";

/// Why an [`MlflowSink`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MlflowError {
    /// The tracking URI is not an `http://` or `https://` URL.
    #[error("invalid MLflow tracking URI {0:?}: expected http:// or https://")]
    InvalidTrackingUri(String),
    /// The OTLP part could not be built.
    #[error(transparent)]
    Otlp(#[from] OtlpError),
}

#[derive(Debug, Clone)]
enum Experiment {
    Name(String),
    Id(String),
}

/// Sends each call to an MLflow tracking server as an MLflow trace span (over OTLP), in the
/// experiment named by [`MlflowSinkBuilder::experiment`] — created if it does not exist.
///
/// The experiment is looked up on the first batch and remembered. A server that cannot be
/// reached is a retryable failure; a URL that is not an MLflow server, refused credentials or
/// a deleted experiment fail the batch permanently, with a message that says which — the
/// dispatcher reports it once per failing streak.
pub struct MlflowSink {
    otlp: OtlpSink,
    rest: Http,
    tracking_uri: String,
    experiment: Experiment,
    headers: Vec<(HeaderName, HeaderValue)>,
    resolved: tokio::sync::Mutex<Option<String>>,
}

impl fmt::Debug for MlflowSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MlflowSink")
            .field("tracking_uri", &self.tracking_uri)
            .field("experiment", &self.experiment)
            .finish_non_exhaustive()
    }
}

/// Configures an [`MlflowSink`]; made by [`MlflowSink::builder`].
#[derive(Debug)]
pub struct MlflowSinkBuilder {
    tracking_uri: String,
    experiment: Experiment,
    headers: Vec<(String, String)>,
    service_name: String,
    timeout: Duration,
    content: bool,
    root_spans: bool,
}

impl MlflowSink {
    /// A sink for the tracking server at `tracking_uri` (e.g. `http://127.0.0.1:5000`), into
    /// the experiment `Default` unless [`experiment`](MlflowSinkBuilder::experiment) says
    /// otherwise.
    pub fn builder(tracking_uri: impl Into<String>) -> MlflowSinkBuilder {
        MlflowSinkBuilder {
            tracking_uri: tracking_uri.into().trim().trim_end_matches('/').to_owned(),
            experiment: Experiment::Name("Default".to_owned()),
            headers: Vec::new(),
            service_name: "llm-observability".to_owned(),
            timeout: Duration::from_secs(10),
            content: true,
            root_spans: false,
        }
    }

    /// The experiment id, once it has been resolved (after the first batch).
    pub async fn experiment_id(&self) -> Option<String> {
        self.resolved.lock().await.clone()
    }

    /// Resolves the experiment (once) and sets the OTLP header.
    async fn ensure_experiment(&self) -> Result<(), SinkError> {
        let mut resolved = self.resolved.lock().await;
        if resolved.is_some() {
            return Ok(());
        }
        let id = match &self.experiment {
            Experiment::Id(id) => id.clone(),
            Experiment::Name(name) => self.experiment_by_name(name).await?,
        };
        let value = HeaderValue::from_str(&id).map_err(|_| {
            SinkError::permanent(format!("MLflow returned an unusable experiment id {id:?}"))
        })?;
        self.otlp
            .set_header(HeaderName::from_static(EXPERIMENT_HEADER), value);
        tracing::debug!(target: "llm_observability", sink = "mlflow", experiment_id = %id, "MLflow experiment resolved");
        *resolved = Some(id);
        Ok(())
    }

    async fn experiment_by_name(&self, name: &str) -> Result<String, SinkError> {
        let (status, body) = self.get_by_name(name).await?;
        if status.is_success() {
            let experiment = body.get("experiment").unwrap_or(&Value::Null);
            if experiment.get("lifecycle_stage").and_then(Value::as_str) == Some("deleted") {
                return Err(SinkError::permanent(format!(
                    "MLflow experiment {name:?} at {} is deleted: restore it or choose another name",
                    self.tracking_uri
                )));
            }
            return experiment_id(experiment, &self.by_name_url(name));
        }
        if status != StatusCode::NOT_FOUND || error_code(&body) != Some("RESOURCE_DOES_NOT_EXIST") {
            return Err(self.rest_error(status, &body, &self.by_name_url(name)));
        }
        let url = format!("{}/api/2.0/mlflow/experiments/create", self.tracking_uri);
        let (status, body) = self
            .send("POST", &url, Some(json!({ "name": name })))
            .await?;
        if status.is_success() {
            tracing::info!(target: "llm_observability", sink = "mlflow", experiment = name, "created the MLflow experiment");
            return experiment_id(&body, &url);
        }
        if error_code(&body) == Some("RESOURCE_ALREADY_EXISTS") {
            // Created by someone else meanwhile: look it up again (once).
            let (status, body) = self.get_by_name(name).await?;
            let url = self.by_name_url(name);
            if status.is_success() {
                return experiment_id(body.get("experiment").unwrap_or(&Value::Null), &url);
            }
            return Err(self.rest_error(status, &body, &url));
        }
        Err(self.rest_error(status, &body, &url))
    }

    fn by_name_url(&self, name: &str) -> String {
        format!(
            "{}/api/2.0/mlflow/experiments/get-by-name?experiment_name={}",
            self.tracking_uri,
            percent_encode(name)
        )
    }

    async fn get_by_name(&self, name: &str) -> Result<(StatusCode, Value), SinkError> {
        self.send("GET", &self.by_name_url(name), None).await
    }

    /// One REST request; connection problems, 429 and 5xx are transient errors, other
    /// answers are returned with their JSON (or `{"text": ...}`).
    async fn send(
        &self,
        method: &str,
        url: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value), SinkError> {
        let mut request = Request::builder().method(method).uri(url);
        for (name, value) in &self.headers {
            request = request.header(name.clone(), value.clone());
        }
        let body = match body {
            Some(json) => {
                request = request.header(http::header::CONTENT_TYPE, "application/json");
                Bytes::from(json.to_string())
            }
            None => Bytes::new(),
        };
        let request = request.body(body).map_err(|error| {
            SinkError::permanent(format!("invalid MLflow request {url}")).with_source(error)
        })?;
        let response = self.rest.send(request).await.map_err(|error| {
            SinkError::transient(format!(
                "cannot reach the MLflow tracking server at {}",
                self.tracking_uri
            ))
            .with_source(error)
        })?;
        let status = response.status();
        let retry = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(retry_after);
        let body = response.into_body();
        let json =
            serde_json::from_slice(&body).unwrap_or_else(|_| json!({ "text": excerpt(&body) }));
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            let error = SinkError::transient(format!(
                "MLflow answered HTTP {} to {url}: {}",
                status.as_u16(),
                message(&json)
            ));
            return Err(match retry {
                Some(delay) => error.with_retry_after(delay),
                None => error,
            });
        }
        Ok((status, json))
    }

    fn rest_error(&self, status: StatusCode, body: &Value, url: &str) -> SinkError {
        let uri = &self.tracking_uri;
        let hint = match status.as_u16() {
            401 | 403 => "check the credentials (headers) for this server".to_owned(),
            404 if error_code(body).is_none() => {
                format!("{uri} does not look like an MLflow tracking server (is the URL right?)")
            }
            _ => "MLflow refused the experiment request".to_owned(),
        };
        SinkError::permanent(format!(
            "MLflow answered HTTP {} to {url}: {hint}: {}",
            status.as_u16(),
            message(body)
        ))
    }
}

/// `text` for a URL query value.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn error_code(body: &Value) -> Option<&str> {
    body.get("error_code").and_then(Value::as_str)
}

fn message(body: &Value) -> String {
    body.get("message")
        .or_else(|| body.get("text"))
        .and_then(Value::as_str)
        .map(|m| excerpt(m.as_bytes()))
        .unwrap_or_else(|| excerpt(body.to_string().as_bytes()))
}

fn experiment_id(value: &Value, url: &str) -> Result<String, SinkError> {
    match value.get("experiment_id") {
        Some(Value::String(id)) if !id.is_empty() => Ok(id.clone()),
        Some(Value::Number(id)) => Ok(id.to_string()),
        _ => Err(SinkError::permanent(format!(
            "{url} answered without an experiment id: is this an MLflow tracking server?"
        ))),
    }
}

impl MlflowSinkBuilder {
    /// The experiment, by name; created on the first batch if it does not exist (default
    /// `Default`).
    pub fn experiment(mut self, name: impl Into<String>) -> Self {
        self.experiment = Experiment::Name(name.into());
        self
    }

    /// The experiment, by id: no lookup is made.
    pub fn experiment_id(mut self, id: impl Into<String>) -> Self {
        self.experiment = Experiment::Id(id.into());
        self
    }

    /// A header sent with every request, REST and OTLP (e.g. `Authorization` for a server
    /// behind a proxy); repeatable.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The resource's `service.name` (default `llm-observability`).
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = name.into();
        self
    }

    /// How long one request to the server may take (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Whether spans carry the request and the response (`mlflow.spanInputs`,
    /// `mlflow.spanOutputs`, `mlflow.chat.tools`); on by default, as MLflow's trace view is
    /// made for them.
    pub fn content(mut self, on: bool) -> Self {
        self.content = on;
        self
    }

    /// Sends every call as the root span of its own trace, leaving out its parent. MLflow
    /// marks a trace finished when its root span arrives: when the app spans a call is nested
    /// under are not exported to the same experiment (or the parent came from another
    /// service's `traceparent`), those traces would otherwise stay `IN_PROGRESS`. Off by
    /// default: calls nest under their app span.
    pub fn root_spans(mut self, on: bool) -> Self {
        self.root_spans = on;
        self
    }

    /// Builds the sink; nothing is sent until the first batch.
    pub fn build(self) -> Result<MlflowSink, MlflowError> {
        let uri = &self.tracking_uri;
        let valid = uri
            .parse::<http::Uri>()
            .ok()
            .filter(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some());
        if valid.is_none() {
            return Err(MlflowError::InvalidTrackingUri(uri.clone()));
        }
        let mut headers = Vec::new();
        for (name, value) in &self.headers {
            let invalid = || OtlpError::InvalidHeader { name: name.clone() };
            let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| invalid())?;
            let mut value = HeaderValue::from_str(value.trim()).map_err(|_| invalid())?;
            value.set_sensitive(true);
            headers.push((name, value));
        }
        let content = self.content;
        let mut otlp = OtlpSink::builder()
            // MLflow is configured here, not by the OTEL_* variables meant for a collector.
            .environment(|_| None)
            .name("mlflow")
            .endpoint(format!("{uri}/v1/traces"))
            .service_name(self.service_name)
            .timeout(self.timeout)
            .span_attributes(move |call, attributes| mlflow_attributes(call, content, attributes));
        for (name, value) in &self.headers {
            otlp = otlp.header(name.clone(), value.clone());
        }
        if let Experiment::Id(id) = &self.experiment {
            otlp = otlp.header(EXPERIMENT_HEADER, id.clone());
        }
        let mut otlp = otlp.build()?;
        otlp.root_spans = self.root_spans;
        Ok(MlflowSink {
            otlp,
            rest: Http::new(self.timeout),
            tracking_uri: self.tracking_uri,
            experiment: self.experiment,
            headers,
            resolved: tokio::sync::Mutex::new(None),
        })
    }
}

/// The span type MLflow shows for a call of `operation` (`gen_ai.operation.name`).
pub fn span_type(operation: &str) -> &'static str {
    match operation {
        "text_completion" => "LLM",
        "embeddings" => "EMBEDDING",
        _ => "CHAT_MODEL",
    }
}

/// The function tools of the GenAI mapping's definitions (`{type, name, description,
/// parameters}`, whatever the API family) in the Chat Completions shape MLflow's
/// `mlflow.chat.tools` expects; provider-run tools (web search, ...) are left out.
fn chat_tools(call: &LlmCall) -> Option<Value> {
    let definitions = genai::tool_definitions(call)?;
    let tools: Vec<Value> = definitions
        .as_array()?
        .iter()
        .filter_map(|definition| {
            let definition = definition.as_object()?;
            if definition.get("type").and_then(Value::as_str) != Some("function") {
                return None;
            }
            definition.get("name")?;
            let mut function = definition.clone();
            function.remove("type");
            Some(json!({ "type": "function", "function": function }))
        })
        .collect();
    (!tools.is_empty()).then_some(Value::Array(tools))
}

fn metadata_string<'a>(call: &'a LlmCall, keys: &[&str]) -> Option<&'a str> {
    keys.iter()
        .find_map(|key| call.metadata.get(*key).and_then(Value::as_str))
        .filter(|value| !value.is_empty())
}

/// MLflow stores attribute values as JSON text; `json` is sent as such.
fn json_attribute(key: &'static str, json: &Value) -> KeyValue {
    KeyValue::new(key, json.to_string())
}

/// The `mlflow.*` attributes (and `user.id` / `session.id`) of a call.
fn mlflow_attributes(call: &LlmCall, content: bool, attributes: &mut Vec<KeyValue>) {
    attributes.push(json_attribute(
        MLFLOW_SPAN_TYPE,
        &json!(span_type(&call.operation)),
    ));
    attributes.push(json_attribute(
        MLFLOW_MESSAGE_FORMAT,
        &json!(call.endpoint.api()),
    ));
    if let Some(model) = call.requested_model().or(call.response_model.as_deref()) {
        attributes.push(json_attribute(MLFLOW_LLM_MODEL, &json!(model)));
    }
    attributes.push(json_attribute(MLFLOW_LLM_PROVIDER, &json!(call.provider)));
    if let Some(usage) = &call.usage {
        let mut tokens = Map::new();
        let counts = [
            ("input_tokens", usage.input_tokens),
            ("output_tokens", usage.output_tokens),
            (
                "total_tokens",
                usage
                    .total_tokens
                    .or_else(|| Some(usage.input_tokens?.saturating_add(usage.output_tokens?))),
            ),
            ("cache_read_input_tokens", usage.cached_input_tokens),
            (
                "cache_creation_input_tokens",
                usage.cache_creation_input_tokens,
            ),
        ];
        for (key, count) in counts {
            if let Some(count) = count {
                tokens.insert(key.into(), json!(count));
            }
        }
        if !tokens.is_empty() {
            attributes.push(json_attribute(
                MLFLOW_CHAT_TOKEN_USAGE,
                &Value::Object(tokens),
            ));
        }
    }
    if let Some(cost) = &call.cost {
        attributes.push(json_attribute(
            MLFLOW_LLM_COST,
            &json!({
                "input_cost": cost.input_usd + cost.cache_read_usd + cost.cache_write_usd,
                "output_cost": cost.output_usd,
                "total_cost": cost.total_usd,
            }),
        ));
    }
    if content {
        attributes.push(json_attribute(
            MLFLOW_SPAN_INPUTS,
            &genai::native_request(call),
        ));
        match (&call.response, call.status) {
            (Some(response), _) => attributes.push(json_attribute(MLFLOW_SPAN_OUTPUTS, response)),
            (None, CallStatus::Error) => {
                if let Some(error) = &call.error {
                    let error = json!({ "error": { "type": error.kind, "code": error.code, "message": error.message } });
                    attributes.push(json_attribute(MLFLOW_SPAN_OUTPUTS, &error));
                }
            }
            _ => {}
        }
        if let Some(tools) = chat_tools(call) {
            attributes.push(json_attribute(MLFLOW_CHAT_TOOLS, &tools));
        }
    }
    let user =
        metadata_string(call, &["user_id", "user.id", "user"]).or(call.request.user.as_deref());
    if let Some(user) = user {
        attributes.push(KeyValue::new("user.id", user.to_owned()));
    }
    if let Some(session) = metadata_string(call, &["session_id", "session.id", "session"]) {
        attributes.push(KeyValue::new("session.id", session.to_owned()));
    }
}

#[async_trait]
impl Sink for MlflowSink {
    fn name(&self) -> &str {
        "mlflow"
    }

    async fn export(&self, batch: &[Arc<LlmCall>]) -> Result<(), SinkError> {
        self.ensure_experiment().await?;
        self.otlp.export(batch).await
    }

    async fn shutdown(&self) -> Result<(), SinkError> {
        self.otlp.shutdown().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Endpoint;
    use crate::{Cost, Usage};

    fn find(attributes: &[KeyValue], key: &str) -> Option<String> {
        attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.as_str().into_owned())
    }

    #[test]
    fn attributes_of_a_responses_call() {
        let mut call = LlmCall::new(Endpoint::Responses);
        call.request.model = Some("gpt-4.1".into());
        call.request.max_tokens = Some(10);
        call.request.input = Some(json!("hi").into());
        call.request.tools =
            Some(json!([{"type": "function", "name": "f", "parameters": {}}]).into());
        call.usage = Some(Usage::new(3, 4));
        call.cost = Some(Cost::new(0.5, 0.25, 1.0, "built-in"));
        call.metadata.insert("user_id".into(), json!("u-1"));
        call.metadata.insert("session_id".into(), json!("s-1"));
        let mut attributes = Vec::new();
        mlflow_attributes(&call, true, &mut attributes);
        assert_eq!(
            find(&attributes, MLFLOW_SPAN_TYPE).unwrap(),
            "\"CHAT_MODEL\""
        );
        assert_eq!(find(&attributes, MLFLOW_LLM_MODEL).unwrap(), "\"gpt-4.1\"");
        let inputs: Value =
            serde_json::from_str(&find(&attributes, MLFLOW_SPAN_INPUTS).unwrap()).unwrap();
        assert_eq!(
            inputs,
            json!({"model": "gpt-4.1", "max_output_tokens": 10, "input": "hi",
            "tools": [{"type": "function", "name": "f", "parameters": {}}]})
        );
        let tools: Value =
            serde_json::from_str(&find(&attributes, MLFLOW_CHAT_TOOLS).unwrap()).unwrap();
        assert_eq!(
            tools,
            json!([{"type": "function", "function": {"name": "f", "parameters": {}}}])
        );
        let usage: Value =
            serde_json::from_str(&find(&attributes, MLFLOW_CHAT_TOKEN_USAGE).unwrap()).unwrap();
        assert_eq!(
            usage,
            json!({"input_tokens": 3, "output_tokens": 4, "total_tokens": 7})
        );
        let cost: Value =
            serde_json::from_str(&find(&attributes, MLFLOW_LLM_COST).unwrap()).unwrap();
        assert_eq!(
            cost,
            json!({"input_cost": 0.75, "output_cost": 1.0, "total_cost": 1.75})
        );
        assert_eq!(find(&attributes, "user.id").unwrap(), "u-1");
        assert_eq!(find(&attributes, "session.id").unwrap(), "s-1");

        let mut without = Vec::new();
        mlflow_attributes(&call, false, &mut without);
        assert_eq!(find(&without, MLFLOW_SPAN_INPUTS), None);
        assert_eq!(span_type("text_completion"), "LLM");
        assert_eq!(span_type("embeddings"), "EMBEDDING");
        assert_eq!(span_type("chat"), "CHAT_MODEL");
    }

    #[test]
    fn attributes_of_an_anthropic_call() {
        let mut call = LlmCall::new(Endpoint::AnthropicMessages);
        call.request.model = Some("claude-sonnet-4-5".into());
        call.request.max_tokens = Some(1024);
        call.request.instructions = Some(json!("Be brief.").into());
        call.request.messages = Some(json!([{"role": "user", "content": "Weather?"}]).into());
        call.request.tools = Some(
            json!([{"name": "weather", "description": "Weather", "input_schema": {"type": "object"}},
                   {"type": "web_search_20250305", "name": "web_search"}])
            .into(),
        );
        call.response = Some(
            json!({"type": "message", "role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}}
            ], "stop_reason": "tool_use"})
            .into(),
        );
        call.usage = Some(Usage {
            input_tokens: Some(1200),
            output_tokens: Some(30),
            total_tokens: Some(1230),
            cached_input_tokens: Some(1000),
            cache_creation_input_tokens: Some(150),
            ..Usage::default()
        });
        call.cost = Some(Cost::with_cache_write(0.5, 0.25, 0.125, 1.0, "built-in"));
        let mut attributes = Vec::new();
        mlflow_attributes(&call, true, &mut attributes);
        let parsed =
            |key| -> Value { serde_json::from_str(&find(&attributes, key).unwrap()).unwrap() };
        assert_eq!(parsed(MLFLOW_MESSAGE_FORMAT), json!("anthropic"));
        assert_eq!(parsed(MLFLOW_LLM_PROVIDER), json!("anthropic"));
        assert_eq!(parsed(MLFLOW_SPAN_TYPE), json!("CHAT_MODEL"));
        assert_eq!(
            parsed(MLFLOW_CHAT_TOKEN_USAGE),
            json!({"input_tokens": 1200, "output_tokens": 30, "total_tokens": 1230,
                   "cache_read_input_tokens": 1000, "cache_creation_input_tokens": 150})
        );
        assert_eq!(
            parsed(MLFLOW_LLM_COST),
            json!({"input_cost": 0.875, "output_cost": 1.0, "total_cost": 1.875})
        );
        let inputs = parsed(MLFLOW_SPAN_INPUTS);
        assert_eq!(inputs["system"], "Be brief.");
        assert_eq!(inputs["max_tokens"], 1024);
        assert_eq!(parsed(MLFLOW_SPAN_OUTPUTS)["type"], "message");
        assert_eq!(
            parsed(MLFLOW_CHAT_TOOLS),
            json!([{"type": "function", "function": {"name": "weather", "description": "Weather",
                    "parameters": {"type": "object"}}}])
        );
    }

    #[test]
    fn bad_uri_is_refused() {
        assert!(matches!(
            MlflowSink::builder("127.0.0.1:5000").build(),
            Err(MlflowError::InvalidTrackingUri(_))
        ));
    }
}
