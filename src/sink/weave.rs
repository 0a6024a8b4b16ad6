//! `WeaveSink`: each call as a call in [W&B Weave](https://weave-docs.wandb.ai), sent to a Weave
//! trace server (`POST /call/upsert_batch`).
//!
//! # How a call maps onto a Weave call
//!
//! Each [`LlmCall`] becomes one Weave call, written as a start and an end record in the one
//! request its batch makes:
//!
//! | Weave field | from the call |
//! |---|---|
//! | `project_id` | the configured `entity/project` |
//! | `id` | [`LlmCall::id`] (a UUID v7, the shape of Weave's own call ids) |
//! | `trace_id` | the trace id, 32 lowercase hex digits |
//! | `parent_id` | the parent span's id, 16 lowercase hex digits (none for a root span) |
//! | `op_name` | `openai.chat.completions.create`, `openai.completions.create`, `openai.embeddings.create`, `openai.responses.create`, `anthropic.Messages.create`, `google.genai.models.Models.generate_content[_stream]`, `google.genai.models.Models.embed_content`, `BedrockRuntime.converse[_stream]`: the names Weave's own OpenAI, Anthropic, Google GenAI and Bedrock integrations give these operations; `ollama.chat`, `ollama.generate`, `ollama.embed` (Weave has no Ollama integration) |
//! | `display_name` | the GenAI span name, operation and model: `chat gpt-4o-mini` |
//! | `started_at`, `ended_at` | the call's wall-clock start and end (UTC, microseconds) |
//! | `inputs` | the request as its provider's JSON ([`genai::native_request`]: model, parameters, messages, ...), after the layer's processors (redaction) ran |
//! | `output` | the response (an OpenAI response, an Anthropic Message); a stream assembled into the non-streaming shape |
//! | `summary.usage` | keyed by the model that answered, as Weave's own integration of the API writes it: OpenAI (and every family but Anthropic: Weave's Google GenAI and Bedrock integrations use OpenAI's names) `{requests, prompt_tokens, completion_tokens, total_tokens, prompt_tokens_details: {cached_tokens}, completion_tokens_details: {reasoning_tokens}}`; Anthropic `{requests, input_tokens, output_tokens, total_tokens, cache_read_input_tokens, cache_creation_input_tokens}`, where `input_tokens` (Anthropic's meaning) leaves out the cache reads and writes and `total_tokens` counts them |
//! | `summary.status_counts` | `{"success": n, "error": n}`, as Weave's client writes it |
//! | `summary.weave.costs` | when the call has a [`cost`](LlmCall::cost) (a pricing processor ran): `{model: {prompt_tokens_total_cost, completion_tokens_total_cost, ..._unit: "USD", provider_id, pricing_level_id: <pricing source>, requests, prompt_tokens, ...}}`, every key of Weave's `LLMCostSchema` |
//! | `exception` | for failed and cancelled calls: a JSON string `{"type", "message", ...}` |
//! | `attributes` | the OpenTelemetry GenAI attributes ([`genai`]) and `llm_observability` (status, HTTP status, span id, metadata, ...) |
//!
//! **Ids.** Weave's ids are strings. Trace and parent ids are written as Weave's own
//! OpenTelemetry ingestion (`/otel/v1/traces`) writes them: the trace id and the span id in
//! lowercase hex. So when the application exports its own spans to Weave over OTLP, the span a
//! call was made in *is* the call's parent in Weave, and the calls hang under it in one tree.
//!
//! **A parent that is not in Weave.** Weave's trace list shows root calls only (its
//! `trace_roots_only` filter: no `parent_id`). A call whose parent span was never exported to
//! Weave keeps its trace id and parent id, and shows under "all calls", in its trace and under
//! its op, but not among the roots (measured on Weave's reference trace server, 0.51.59). An
//! application that does not export its spans to Weave can send every call as a root of its
//! trace instead: [`WeaveSinkBuilder::link_parents`]`(false)`.
//!
//! **Delivery.** One request per batch, HTTP Basic auth `api:KEY`. A 2xx answer means delivered;
//! 408, 429 and 5xx, connection errors and timeouts are retried with backoff (a `Retry-After`
//! is honoured); 401 and 403 fail the batch with a message that names the key and where it
//! came from; any other answer fails the batch with the server's message.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde_json::{json, Map, Value};

use super::{Sink, SinkError};
use crate::genai::{self, AttributeValue};
use crate::payload::{CallStatus, LlmCall};

/// W&B cloud's Weave trace server, the default base URL.
pub const WEAVE_CLOUD_URL: &str = "https://trace.wandb.ai";

/// The environment variable the API key is read from when none is configured.
pub const WANDB_API_KEY: &str = "WANDB_API_KEY";

/// The longest piece of a server's error answer quoted in an error message.
const MAX_QUOTED: usize = 512;

/// The most of an error answer read, to quote from it.
const MAX_ERROR_BODY: usize = 64 << 10;

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Why a [`WeaveSink`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WeaveError {
    /// The project is not `entity/project`.
    #[error("Weave project {0:?} is not of the form \"entity/project\"")]
    Project(String),
    /// The base URL is not an http(s) URL with a host.
    #[error("Weave base URL {0:?} is not an http:// or https:// URL")]
    Url(String),
    /// TLS could not be set up.
    #[error("cannot set up TLS for Weave")]
    Tls(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The API key cannot be sent in an HTTP header.
    #[error("the Weave API key holds characters that cannot be sent in an HTTP header")]
    Key,
}

/// Where the API key came from, for error messages (never the key itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeySource {
    Config,
    Environment,
    None,
}

/// Sends each call to a W&B Weave trace server as a Weave call: inputs, output, latency, token
/// usage per model and the exception of a failed call, in the trace of the code that made it.
/// See the [module docs](self) for the mapping.
///
/// ```no_run
/// use llm_observability::{LlmObservabilityLayer, WeaveSink};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let _runtime = tokio::runtime::Runtime::new()?; let _guard = _runtime.enter();
/// // W&B cloud, key from WANDB_API_KEY:
/// let sink = WeaveSink::new("my-team/my-project")?;
/// // or a self-hosted or local trace server:
/// let local = WeaveSink::builder("my-team/my-project")
///     .base_url("http://127.0.0.1:6345")
///     .build()?;
/// let layer = LlmObservabilityLayer::builder().sink(sink).build()?;
/// # Ok(()) }
/// ```
pub struct WeaveSink {
    client: HttpsClient,
    endpoint: Uri,
    project: String,
    /// The `Authorization` header (Basic `api:KEY`), marked sensitive.
    authorization: Option<HeaderValue>,
    timeout: Duration,
    key_source: KeySource,
    link_parents: bool,
}

impl fmt::Debug for WeaveSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeaveSink")
            .field("endpoint", &self.endpoint.to_string())
            .field("project", &self.project)
            .field("key", &self.authorization.as_ref().map(|_| "<redacted>"))
            .field("link_parents", &self.link_parents)
            .finish()
    }
}

/// Builder of [`WeaveSink`], from [`WeaveSink::builder`].
#[derive(Clone)]
pub struct WeaveSinkBuilder {
    project: String,
    base_url: String,
    key: Option<String>,
    timeout: Duration,
    link_parents: bool,
}

impl fmt::Debug for WeaveSinkBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeaveSinkBuilder")
            .field("project", &self.project)
            .field("base_url", &self.base_url)
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .field("link_parents", &self.link_parents)
            .finish()
    }
}

impl WeaveSink {
    /// A sink for project `entity/project` on W&B cloud ([`WEAVE_CLOUD_URL`]), with the API key
    /// from `WANDB_API_KEY`.
    pub fn new(project: impl Into<String>) -> Result<WeaveSink, WeaveError> {
        Self::builder(project).build()
    }

    /// Starts a sink for project `entity/project`: W&B cloud, key from `WANDB_API_KEY`, a 20 s
    /// request timeout and parent ids linked, until told otherwise.
    pub fn builder(project: impl Into<String>) -> WeaveSinkBuilder {
        WeaveSinkBuilder {
            project: project.into(),
            base_url: WEAVE_CLOUD_URL.to_owned(),
            key: None,
            timeout: Duration::from_secs(20),
            link_parents: true,
        }
    }

    /// The project calls are written to, `entity/project`.
    pub fn project(&self) -> &str {
        &self.project
    }

    /// The URL batches are posted to (`{base}/call/upsert_batch`).
    pub fn endpoint(&self) -> String {
        self.endpoint.to_string()
    }

    /// The body of one batch: a start and an end record per call.
    fn encode(&self, batch: &[Arc<LlmCall>]) -> Result<Vec<u8>, SinkError> {
        let mut items = Vec::with_capacity(batch.len() * 2);
        for call in batch {
            let (start, end) = records(call, &self.project, self.link_parents);
            items.push(Item::Start {
                req: StartReq { start },
            });
            items.push(Item::End {
                req: EndReq { end },
            });
        }
        Ok(serde_json::to_vec(&UpsertBatch { batch: items })?)
    }

    /// The error for an answer that is not 2xx.
    fn refused(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> SinkError {
        let said = server_message(body);
        let with_said = |text: String| match &said {
            Some(said) => format!("{text} (server said: {said})"),
            None => text,
        };
        match status {
            StatusCode::UNAUTHORIZED => SinkError::permanent(with_said(match self.key_source {
                KeySource::None => format!(
                    "Weave answered 401 Unauthorized: no API key is set; set {WANDB_API_KEY} \
                     or WeaveSinkBuilder::api_key (keys: https://wandb.ai/authorize)"
                ),
                source => format!(
                    "Weave answered 401 Unauthorized: the API key {} was refused; check it \
                     (keys: https://wandb.ai/authorize)",
                    source.describe()
                ),
            })),
            StatusCode::FORBIDDEN => SinkError::permanent(with_said(format!(
                "Weave answered 403 Forbidden: the API key {} may not write to project {:?}; \
                 check the key and the entity/project",
                self.key_source.describe(),
                self.project
            ))),
            status
                if status == StatusCode::REQUEST_TIMEOUT
                    || status == StatusCode::TOO_MANY_REQUESTS
                    || status.is_server_error() =>
            {
                let error = SinkError::transient(with_said(format!("Weave answered {status}")));
                match headers
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after)
                {
                    Some(delay) => error.with_retry_after(delay),
                    None => error,
                }
            }
            status => {
                SinkError::permanent(with_said(format!("Weave refused the batch with {status}")))
            }
        }
    }
}

impl KeySource {
    fn describe(self) -> &'static str {
        match self {
            KeySource::Config => "set with WeaveSinkBuilder::api_key",
            KeySource::Environment => "from WANDB_API_KEY",
            KeySource::None => "(none set)",
        }
    }
}

impl WeaveSinkBuilder {
    /// The trace server's base URL (default [`WEAVE_CLOUD_URL`]); a self-hosted W&B serves it
    /// under its own host, and a local trace server needs no key.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self
    }

    /// The W&B API key (default: `WANDB_API_KEY`, read by [`build`](Self::build); none when
    /// that is unset or empty).
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// How long one request may take before it counts as a (retryable) failure; default 20 s.
    /// Keep it under the dispatcher's
    /// [`export_timeout`](crate::DispatcherConfig::export_timeout).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Whether a call's `parent_id` is its parent span (default `true`). With `false` every call
    /// is sent as a root of its trace (same trace id, no parent): for applications that do not
    /// export their own spans to Weave, so the calls show in Weave's list of root calls.
    pub fn link_parents(mut self, link: bool) -> Self {
        self.link_parents = link;
        self
    }

    /// The sink. Checks the project and the URL; reads `WANDB_API_KEY` when no key was set.
    /// Needs no runtime and makes no request.
    pub fn build(self) -> Result<WeaveSink, WeaveError> {
        let mut parts = self.project.split('/');
        let valid = matches!(
            (parts.next(), parts.next(), parts.next()),
            (Some(entity), Some(project), None) if !entity.trim().is_empty() && !project.trim().is_empty()
        );
        if !valid {
            return Err(WeaveError::Project(self.project));
        }
        let endpoint =
            endpoint_of(&self.base_url).ok_or_else(|| WeaveError::Url(self.base_url.clone()))?;
        let (key, key_source) = match self.key {
            Some(key) => (Some(key), KeySource::Config),
            None => match std::env::var(WANDB_API_KEY) {
                Ok(key) if !key.trim().is_empty() => (Some(key), KeySource::Environment),
                _ => (None, KeySource::None),
            },
        };
        let authorization = match key {
            Some(key) => {
                let credentials =
                    base64::engine::general_purpose::STANDARD.encode(format!("api:{key}"));
                let mut value = HeaderValue::from_str(&format!("Basic {credentials}"))
                    .map_err(|_| WeaveError::Key)?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        let mut http = HttpConnector::new();
        // The TLS wrapper handles https.
        http.enforce_http(false);
        http.set_connect_timeout(Some(self.timeout));
        // ring, named here: whatever other rustls providers the build enables, no process-wide
        // default needs installing.
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(Arc::new(rustls::crypto::ring::default_provider()))
            .map_err(|e| WeaveError::Tls(Box::new(e)))?
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Ok(WeaveSink {
            client,
            endpoint,
            project: self.project,
            authorization,
            timeout: self.timeout,
            key_source,
            link_parents: self.link_parents,
        })
    }
}

/// `{base}/call/upsert_batch`, for an http(s) base URL with a host (and maybe a path prefix).
fn endpoint_of(base: &str) -> Option<Uri> {
    let base: Uri = base.trim().parse().ok()?;
    let scheme = base.scheme_str()?;
    if !matches!(scheme, "http" | "https") || base.host().is_none_or(str::is_empty) {
        return None;
    }
    if base.query().is_some() {
        return None;
    }
    let authority = base.authority()?;
    let prefix = base.path().trim_end_matches('/');
    format!("{scheme}://{authority}{prefix}/call/upsert_batch")
        .parse()
        .ok()
}

#[async_trait]
impl Sink for WeaveSink {
    fn name(&self) -> &str {
        "weave"
    }

    async fn export(&self, batch: &[Arc<LlmCall>]) -> Result<(), SinkError> {
        if batch.is_empty() {
            return Ok(());
        }
        let body = self.encode(batch)?;
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(self.endpoint.clone())
            .header(CONTENT_TYPE, "application/json");
        if let Some(authorization) = &self.authorization {
            request = request.header(AUTHORIZATION, authorization.clone());
        }
        let request = request.body(Full::new(Bytes::from(body))).map_err(|e| {
            SinkError::permanent("could not build the request to Weave").with_source(e)
        })?;
        let sent = tokio::time::timeout(self.timeout, self.client.request(request)).await;
        let response = match sent {
            Err(_elapsed) => {
                return Err(SinkError::transient(format!(
                    "request to Weave at {} timed out after {:?}",
                    self.endpoint, self.timeout
                )))
            }
            Ok(Err(error)) => {
                let what = if error.is_connect() {
                    "could not connect"
                } else {
                    "failed"
                };
                return Err(SinkError::transient(format!(
                    "request to Weave at {} {what}",
                    self.endpoint
                ))
                .with_source(error));
            }
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        if status.is_success() {
            // Read the answer to its end, so the connection goes back to the pool.
            let _ = tokio::time::timeout(self.timeout, response.into_body().collect()).await;
            return Ok(());
        }
        let (parts, body) = response.into_parts();
        // The answer is only quoted: as much as arrives in time and within the limit.
        let body = tokio::time::timeout(self.timeout, Limited::new(body, MAX_ERROR_BODY).collect())
            .await
            .ok()
            .and_then(Result::ok)
            .map(|collected| collected.to_bytes())
            .unwrap_or_default();
        Err(self.refused(status, &parts.headers, &body))
    }
}

/// The server's message in an error answer: FastAPI's `detail`, or `message`/`error`/`reason`
/// of a JSON body, else the text itself; cut to [`MAX_QUOTED`] bytes.
fn server_message(body: &[u8]) -> Option<String> {
    let text = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => ["detail", "message", "error", "reason"]
            .iter()
            .find_map(|key| map.get(*key))
            .map(|value| match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            })
            .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned()),
        _ => String::from_utf8_lossy(body).into_owned(),
    };
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let mut end = text.len().min(MAX_QUOTED);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Some(if end < text.len() {
        format!("{}...", &text[..end])
    } else {
        text.to_owned()
    })
}

/// `Retry-After`: delay-seconds or an HTTP date (a date in the past means "now").
fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[derive(Serialize)]
struct UpsertBatch<'a> {
    batch: Vec<Item<'a>>,
}

#[derive(Serialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
enum Item<'a> {
    Start { req: StartReq<'a> },
    End { req: EndReq<'a> },
}

#[derive(Serialize)]
struct StartReq<'a> {
    start: Start<'a>,
}

#[derive(Serialize)]
struct EndReq<'a> {
    end: End<'a>,
}

/// Weave's `StartedCallSchemaForInsert`.
#[derive(Debug, Serialize)]
struct Start<'a> {
    project_id: &'a str,
    id: &'a str,
    op_name: &'static str,
    display_name: String,
    trace_id: String,
    parent_id: Option<String>,
    started_at: String,
    attributes: Value,
    inputs: Value,
}

/// Weave's `EndedCallSchemaForInsert`.
#[derive(Debug, Serialize)]
struct End<'a> {
    project_id: &'a str,
    id: &'a str,
    ended_at: String,
    exception: Option<String>,
    output: Option<&'a crate::Json>,
    summary: Value,
}

/// The op name Weave's own OpenAI integration gives the call's operation.
fn op_name(call: &LlmCall) -> &'static str {
    match call.endpoint {
        crate::Endpoint::ChatCompletions => "openai.chat.completions.create",
        crate::Endpoint::Completions => "openai.completions.create",
        crate::Endpoint::Embeddings => "openai.embeddings.create",
        crate::Endpoint::Responses => "openai.responses.create",
        crate::Endpoint::AnthropicMessages => "anthropic.Messages.create",
        crate::Endpoint::GeminiGenerateContent => "google.genai.models.Models.generate_content",
        crate::Endpoint::GeminiStreamGenerateContent => {
            "google.genai.models.Models.generate_content_stream"
        }
        crate::Endpoint::GeminiEmbedContent | crate::Endpoint::GeminiBatchEmbedContents => {
            "google.genai.models.Models.embed_content"
        }
        crate::Endpoint::BedrockConverse => "BedrockRuntime.converse",
        crate::Endpoint::BedrockConverseStream => "BedrockRuntime.converse_stream",
        crate::Endpoint::OllamaChat => "ollama.chat",
        crate::Endpoint::OllamaGenerate => "ollama.generate",
        crate::Endpoint::OllamaEmbed | crate::Endpoint::OllamaEmbeddings => "ollama.embed",
    }
}

/// A timestamp as Weave reads it: RFC 3339 in UTC, to the microsecond.
fn timestamp(at: time::OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.microsecond()
    )
}

/// The start and end record of `call`.
fn records<'a>(call: &'a LlmCall, project: &'a str, link_parents: bool) -> (Start<'a>, End<'a>) {
    let start = Start {
        project_id: project,
        id: &call.id,
        op_name: op_name(call),
        display_name: genai::span_name(call),
        trace_id: call.trace.trace_id.to_string(),
        parent_id: call
            .trace
            .parent_span_id
            .filter(|_| link_parents)
            .map(|span| span.to_string()),
        started_at: timestamp(call.timing.start_time),
        attributes: attributes(call),
        inputs: genai::native_request(call),
    };
    let end = End {
        project_id: project,
        id: &call.id,
        ended_at: timestamp(call.timing.end_time),
        exception: exception(call),
        output: call.response.as_ref(),
        summary: summary(call),
    };
    (start, end)
}

/// The GenAI attributes, flat by their semantic-conventions names, and this crate's own.
fn attributes(call: &LlmCall) -> Value {
    let mut map = Map::new();
    for attribute in genai::attributes(call) {
        let value = match attribute.value {
            AttributeValue::Str(text) => Value::from(text.into_owned()),
            AttributeValue::Int(n) => Value::from(n),
            AttributeValue::Float(x) => Value::from(x),
            AttributeValue::Bool(b) => Value::from(b),
            AttributeValue::StrArray(items) => Value::from(
                items
                    .into_iter()
                    .map(|item| Value::from(item.into_owned()))
                    .collect::<Vec<_>>(),
            ),
        };
        map.insert(attribute.key.to_owned(), value);
    }
    let mut own = Map::new();
    own.insert("schema_version".into(), call.schema_version.into());
    own.insert("endpoint".into(), call.endpoint.as_str().into());
    own.insert("status".into(), call.status.as_str().into());
    own.insert("span_id".into(), call.trace.span_id.to_string().into());
    if let Some(status) = call.http_status {
        own.insert("http_status".into(), status.into());
    }
    let timing = &call.timing;
    own.insert("duration_ms".into(), timing.duration_ms.into());
    if let Some(ttft) = timing.time_to_first_token_ms {
        own.insert("time_to_first_token_ms".into(), ttft.into());
    }
    if call.truncated {
        own.insert("truncated".into(), true.into());
    }
    for (key, list) in [
        ("decode_errors", &call.decode_errors),
        ("processing_errors", &call.processing_errors),
    ] {
        if !list.is_empty() {
            own.insert(key.into(), json!(list));
        }
    }
    if !call.metadata.is_empty() {
        own.insert("metadata".into(), Value::Object(call.metadata.clone()));
    }
    map.insert("llm_observability".into(), Value::Object(own));
    Value::Object(map)
}

/// How Weave's own integration of an API family names a request's usage (what its client
/// copies from the response's `usage` into `summary.usage`).
struct UsageNames {
    input: &'static str,
    output: &'static str,
    /// Whether `input` counts the cache reads and writes (OpenAI's `prompt_tokens` does,
    /// Anthropic's `input_tokens` does not; the payload's count always does).
    input_counts_cache: bool,
    /// The cached-input count, and the object it sits in (`None`: at the top level).
    cache_read: (Option<&'static str>, &'static str),
    cache_write: &'static str,
    /// The reasoning count, in its object.
    reasoning: (&'static str, &'static str),
}

const OPENAI_USAGE: UsageNames = UsageNames {
    input: "prompt_tokens",
    output: "completion_tokens",
    input_counts_cache: true,
    cache_read: (Some("prompt_tokens_details"), "cached_tokens"),
    cache_write: "cache_creation_input_tokens",
    reasoning: ("completion_tokens_details", "reasoning_tokens"),
};

const ANTHROPIC_USAGE: UsageNames = UsageNames {
    input: "input_tokens",
    output: "output_tokens",
    input_counts_cache: false,
    cache_read: (None, "cache_read_input_tokens"),
    cache_write: "cache_creation_input_tokens",
    reasoning: ("output_tokens_details", "reasoning_tokens"),
};

fn usage_names(call: &LlmCall) -> &'static UsageNames {
    match call.endpoint.api() {
        "anthropic" => &ANTHROPIC_USAGE,
        _ => &OPENAI_USAGE,
    }
}

/// The usage of one request, in the shape Weave's `LLMUsageSchema` and its cost rollup read,
/// under the names of Weave's own integration of the call's API family.
fn usage_entry(call: &LlmCall) -> Value {
    let names = usage_names(call);
    let mut entry = Map::new();
    entry.insert("requests".into(), 1.into());
    if let Some(usage) = &call.usage {
        let cache = usage
            .cached_input_tokens
            .unwrap_or(0)
            .saturating_add(usage.cache_creation_input_tokens.unwrap_or(0));
        let input = if names.input_counts_cache {
            usage.input_tokens
        } else {
            usage.input_tokens.map(|n| n.saturating_sub(cache))
        };
        let counts = [
            (names.input, input),
            (names.output, usage.output_tokens),
            ("total_tokens", usage.total_tokens),
        ];
        for (key, count) in counts {
            if let Some(count) = count {
                entry.insert(key.into(), count.into());
            }
        }
        if let Some(cached) = usage.cached_input_tokens {
            match names.cache_read {
                (Some(object), key) => entry.insert(object.into(), json!({ key: cached })),
                (None, key) => entry.insert(key.into(), cached.into()),
            };
        }
        if let Some(written) = usage.cache_creation_input_tokens {
            entry.insert(names.cache_write.into(), written.into());
        }
        if let Some(reasoning) = usage.reasoning_tokens {
            let (object, key) = names.reasoning;
            entry.insert(object.into(), json!({ key: reasoning }));
        }
    }
    Value::Object(entry)
}

/// `usage` keyed by the model that answered (else the one asked for), when the call reported
/// usage or succeeded; `status_counts` as Weave's client writes them.
fn summary(call: &LlmCall) -> Value {
    let mut summary = Map::new();
    let model = call.response_model.as_deref().or(call.requested_model());
    if let Some(model) = model {
        if call.usage.is_some() || call.status == CallStatus::Success {
            summary.insert("usage".into(), json!({ model: usage_entry(call) }));
        }
    }
    let failed = u8::from(call.status != CallStatus::Success);
    summary.insert(
        "status_counts".into(),
        json!({ "success": 1 - failed, "error": failed }),
    );
    if let (Some(cost), Some(model)) = (&call.cost, model) {
        summary.insert(
            "weave".into(),
            json!({ "costs": { model: cost_entry(call, cost) } }),
        );
    }
    Value::Object(summary)
}

/// The call's cost in the shape of Weave's `LLMCostSchema` (what its server puts in
/// `summary.weave.costs` when it prices a call; its reader wants every key, `null` allowed):
/// the usage, the prompt and completion totals in USD, the provider, and where the prices came
/// from (`pricing_level` `llm-observability`, `pricing_level_id` the
/// [`pricing_source`](crate::Cost::pricing_source), `effective_date` the built-in table's date).
/// Per-token rates are left `null`: a call's cost may mix cached and uncached rates.
fn cost_entry(call: &LlmCall, cost: &crate::Cost) -> Value {
    let mut entry = match usage_entry(call) {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    // Counts only: the cost schema has no nested details.
    entry.retain(|_, value| !value.is_object());
    let effective_date =
        (cost.pricing_source == "built-in").then_some(crate::process::pricing::BUILT_IN_AS_OF);
    let fields = json!({
        "prompt_tokens_total_cost": cost.input_usd + cost.cache_read_usd + cost.cache_write_usd,
        "completion_tokens_total_cost": cost.output_usd,
        "prompt_token_cost": null,
        "completion_token_cost": null,
        "prompt_token_cost_unit": "USD",
        "completion_token_cost_unit": "USD",
        "effective_date": effective_date,
        "provider_id": call.provider,
        "pricing_level": "llm-observability",
        "pricing_level_id": cost.pricing_source,
        "created_at": null,
        "created_by": null,
    });
    if let Value::Object(fields) = fields {
        entry.extend(fields);
    }
    Value::Object(entry)
}

/// Weave's exception string (`{"type", "message"}` as JSON, like its Python client writes)
/// for a failed or cancelled call, with the error's code and the HTTP status when known.
fn exception(call: &LlmCall) -> Option<String> {
    if call.status == CallStatus::Success {
        return None;
    }
    let error = call.error.as_ref();
    let kind = error
        .and_then(|e| e.kind.clone())
        .or_else(|| call.error_type.clone())
        .unwrap_or_else(|| call.status.as_str().to_owned());
    let message = error.and_then(|e| e.message.clone()).unwrap_or_else(|| {
        match (call.status, call.http_status) {
            (CallStatus::Cancelled, _) => "the call was cancelled before its end".to_owned(),
            (_, Some(status)) => format!("HTTP {status}"),
            _ => "the call failed".to_owned(),
        }
    });
    let mut exception = Map::new();
    exception.insert("type".into(), kind.into());
    exception.insert("message".into(), message.into());
    if let Some(code) = error.and_then(|e| e.code.as_ref()) {
        exception.insert("code".into(), code.clone().into());
    }
    if let Some(status) = call.http_status {
        exception.insert("http_status".into(), status.into());
    }
    Some(Value::Object(exception).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Usage;
    use crate::{CallError, Endpoint, SpanId, TraceContext, TraceId};

    fn sample() -> LlmCall {
        let mut call = LlmCall::new(Endpoint::ChatCompletions);
        call.request.model = Some("gpt-4o-mini".into());
        call.response_model = Some("gpt-4o-mini-2024-07-18".into());
        call.usage = Some(Usage::new(12, 5));
        call.trace = TraceContext::new(
            "0af7651916cd43dd8448eb211c80319c"
                .parse::<TraceId>()
                .unwrap(),
            "00f067aa0ba902b7".parse::<SpanId>().unwrap(),
            Some("b7ad6b7169203331".parse::<SpanId>().unwrap()),
        );
        call
    }

    #[test]
    fn records_map_ids_names_and_usage() {
        let call = sample();
        let (start, end) = records(&call, "me/proj", true);
        assert_eq!(start.id, call.id);
        assert_eq!(start.trace_id, "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(start.parent_id.as_deref(), Some("b7ad6b7169203331"));
        assert_eq!(start.op_name, "openai.chat.completions.create");
        assert_eq!(start.display_name, "chat gpt-4o-mini");
        assert_eq!(
            end.summary,
            json!({
                "usage": {"gpt-4o-mini-2024-07-18": {
                    "requests": 1, "prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17
                }},
                "status_counts": {"success": 1, "error": 0},
            })
        );
        assert_eq!(end.exception, None);
        let (start, _) = records(&call, "me/proj", false);
        assert_eq!(start.parent_id, None);
    }

    #[test]
    fn cost_goes_where_weave_puts_costs() {
        let mut call = sample();
        call.cost = Some(crate::Cost::new(0.25, 0.5, 1.0, "built-in"));
        let (_, end) = records(&call, "me/proj", true);
        let costs = &end.summary["weave"]["costs"]["gpt-4o-mini-2024-07-18"];
        assert_eq!(costs["prompt_tokens_total_cost"], json!(0.75));
        assert_eq!(costs["completion_tokens_total_cost"], json!(1.0));
        assert_eq!(costs["prompt_tokens"], 12);
        assert_eq!(costs["requests"], 1);
        assert_eq!(costs["prompt_token_cost_unit"], "USD");
        assert_eq!(costs["provider_id"], "openai");
        assert_eq!(costs["pricing_level_id"], "built-in");
        assert_eq!(
            costs["effective_date"],
            crate::process::pricing::BUILT_IN_AS_OF
        );
        assert_eq!(costs.as_object().unwrap().len(), 16, "{costs:#}");
    }

    #[test]
    fn an_anthropic_call_is_named_and_counted_as_weaves_anthropic_integration_does() {
        let mut call = LlmCall::new(Endpoint::AnthropicMessages);
        call.request.model = Some("claude-3-5-sonnet-20240620".into());
        call.request.max_tokens = Some(1024);
        call.request.instructions = Some(json!("Be brief.").into());
        call.request.messages = Some(json!([{"role": "user", "content": "Hi"}]).into());
        call.response_model = Some("claude-3-5-sonnet-20240620".into());
        // Anthropic's 4 uncached + 1163 read, as the payload counts them.
        call.usage = Some(Usage {
            cached_input_tokens: Some(1163),
            cache_creation_input_tokens: Some(0),
            ..Usage::new(1167, 202)
        });
        call.cost = Some(crate::Cost::with_cache_write(
            0.25, 0.5, 0.125, 1.0, "built-in",
        ));
        let (start, end) = records(&call, "me/proj", true);
        assert_eq!(start.op_name, "anthropic.Messages.create");
        assert_eq!(start.inputs["system"], "Be brief.");
        assert_eq!(start.inputs["max_tokens"], 1024);
        assert_eq!(start.inputs["messages"][0]["content"], "Hi");
        assert_eq!(
            end.summary["usage"],
            json!({"claude-3-5-sonnet-20240620": {
                "requests": 1, "input_tokens": 4, "output_tokens": 202, "total_tokens": 1369,
                "cache_read_input_tokens": 1163, "cache_creation_input_tokens": 0
            }})
        );
        let costs = &end.summary["weave"]["costs"]["claude-3-5-sonnet-20240620"];
        assert_eq!(costs["prompt_tokens_total_cost"], json!(0.875));
        assert_eq!(costs["provider_id"], "anthropic");
        assert_eq!(costs["input_tokens"], 4);
    }

    #[test]
    fn failed_call_has_an_exception() {
        let mut call = sample();
        call.status = CallStatus::Error;
        call.usage = None;
        call.http_status = Some(400);
        call.error = Some(CallError {
            kind: Some("invalid_request_error".into()),
            code: Some("invalid_image_url".into()),
            message: Some("bad image".into()),
        });
        let (_, end) = records(&call, "me/proj", true);
        let exception: Value = serde_json::from_str(end.exception.as_deref().unwrap()).unwrap();
        assert_eq!(
            exception,
            json!({"type": "invalid_request_error", "message": "bad image",
                   "code": "invalid_image_url", "http_status": 400})
        );
        assert_eq!(
            end.summary,
            json!({"status_counts": {"success": 0, "error": 1}})
        );
    }

    #[test]
    fn timestamps_are_utc_microseconds() {
        let at = time::OffsetDateTime::parse(
            "2026-01-02T03:04:05.123456789+02:00",
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        assert_eq!(timestamp(at), "2026-01-02T01:04:05.123456Z");
    }

    #[test]
    fn projects_and_urls_are_checked() {
        assert!(matches!(
            WeaveSink::builder("no-entity").build(),
            Err(WeaveError::Project(_))
        ));
        assert!(matches!(
            WeaveSink::builder("a/b/c").build(),
            Err(WeaveError::Project(_))
        ));
        assert!(matches!(
            WeaveSink::builder("a/b").base_url("ftp://x").build(),
            Err(WeaveError::Url(_))
        ));
        let sink = WeaveSink::builder("a/b")
            .base_url("http://127.0.0.1:9/prefix/")
            .api_key("k")
            .build()
            .unwrap();
        assert_eq!(
            sink.endpoint(),
            "http://127.0.0.1:9/prefix/call/upsert_batch"
        );
        assert!(!format!("{sink:?}").contains("\"k\""));
    }

    #[test]
    fn server_messages_are_quoted_short() {
        assert_eq!(
            server_message(br#"{"detail":"project not found"}"#).as_deref(),
            Some("project not found")
        );
        assert_eq!(server_message(b"  ").as_deref(), None);
        let long = "x".repeat(2000);
        assert_eq!(
            server_message(long.as_bytes()).unwrap().len(),
            MAX_QUOTED + 3
        );
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
    }
}
