//! The in-flight call: everything known about one LLM call between its request and its end,
//! and the single place where it becomes an [`LlmCall`].
//!
//! Both adapters (the tower service and the reqwest middleware) drive the same [`InFlightCall`].
//! It ends exactly once: [`InFlightCall::finish`] takes `self`, and a call dropped without being
//! finished (a future or body dropped early, whoever held it) finishes itself as `cancelled`.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{Extensions, HeaderMap, HeaderName, StatusCode, Uri};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use tokio::sync::oneshot;
use tracing::Span;

use crate::call_id::CallId;
use crate::capture::BytesCapture;
use crate::genai;
use crate::metadata::CallMetadata;
use crate::payload::{
    milliseconds, CallError, CallStatus, LlmCall, RequestRecord, Timing, UsageSource,
    SCHEMA_VERSION,
};
use crate::process::pricing::Pricing;
use crate::process::redact::{self, Redact};
use crate::process::{Pipeline, Processor};
use crate::scrub::Secrets;
use crate::sink::Dispatcher;
use crate::span::{self, CallSpan};
use crate::trace_context;
use crate::wire::decoder::{DecodedResponse, ResponseDecoder};
use crate::wire::endpoint::{Endpoint, EndpointMatcher};
use crate::wire::format_of;

/// The configuration every call of a layer shares.
#[derive(Debug)]
pub(crate) struct Observer {
    pub(crate) matcher: EndpointMatcher,
    /// `gen_ai.provider.name` of every call; `None`: the call's wire format names it.
    pub(crate) provider: Option<String>,
    pub(crate) request_limit: usize,
    pub(crate) response_limit: usize,
    /// Request headers copied into the payload's metadata, under the given key.
    pub(crate) captured_headers: Vec<(HeaderName, String)>,
    /// Whether outgoing requests get the call's `traceparent`.
    pub(crate) propagate_trace_context: bool,
    /// `server.address` of every call, instead of the request's URI or `Host` header.
    pub(crate) server_address: Option<String>,
    /// The layer's redaction, applied as the call ends, before its span and any sink see it.
    pub(crate) redaction: Pipeline,
    /// The layer's prices, applied as the call ends, so its span carries the cost.
    pub(crate) pricing: Option<Pricing>,
    /// Usage is estimated after the call ([`StreamUsage::Estimate`](crate::StreamUsage)): a
    /// call that ends without usage is priced then, not now.
    pub(crate) price_estimated_later: bool,
    /// [`StreamUsage::Ask`](crate::StreamUsage::Ask): streamed chat requests get
    /// `include_usage`, and their responses lose what it added.
    pub(crate) ask_stream_usage: bool,
    pub(crate) dispatcher: Dispatcher,
    /// Metrics recorded as each call ends, before it is queued (a full queue cannot drop them).
    #[cfg(feature = "metrics")]
    pub(crate) metrics: Option<crate::metrics::GenAiMetrics>,
}

impl Observer {
    /// Starts observing a call: opens its span (child of the current span) and reads metadata.
    pub(crate) fn start(
        self: &Arc<Self>,
        endpoint: Endpoint,
        uri: &Uri,
        headers: &HeaderMap,
        extensions: &Extensions,
    ) -> InFlightCall {
        let server_address = match &self.server_address {
            Some(configured) => Some(configured.clone()),
            None => uri.host().map(str::to_owned).or_else(|| {
                let host = headers.get(http::header::HOST)?.to_str().ok()?;
                let authority: http::uri::Authority = host.parse().ok()?;
                Some(authority.host().to_owned())
            }),
        };
        let started = Instant::now();
        let started_wall = OffsetDateTime::now_utc();
        let route = format_of(endpoint).route(endpoint, server_address.as_deref(), uri.path());
        let provider = match &self.provider {
            Some(configured) => Cow::Owned(configured.clone()),
            None => Cow::Borrowed(route.provider),
        };
        let path_model = route.model;
        let span = span::open(endpoint, &provider, server_address.as_deref());
        let (trace, exported) = trace_context::for_call(&span, headers);
        let span = CallSpan::new(span, exported);
        span.record_model(endpoint.operation(), path_model.as_deref());
        let mut metadata = extensions
            .get::<CallMetadata>()
            .map(|m| m.as_map().clone())
            .unwrap_or_default();
        for (header, key) in &self.captured_headers {
            if let Some(value) = headers.get(header).and_then(|v| v.to_str().ok()) {
                metadata.insert(key.clone(), Value::String(value.to_owned()));
            }
        }
        InFlightCall {
            observer: self.clone(),
            id: CallId::new(trace, started_wall),
            endpoint,
            provider,
            path_model,
            span,
            started,
            started_wall,
            server_address,
            metadata,
            secrets: Secrets::from_headers(
                headers,
                uri,
                self.captured_headers.iter().map(|(h, _)| h),
            ),
            redact: extensions.get::<Redact>().cloned(),
            request: RequestState::Unknown,
            http_status: None,
            response_head: None,
            decoder: None,
            first_token: None,
            finished: false,
        }
    }
}

/// The request as far as the call knows it.
#[derive(Debug, Default)]
pub(crate) struct CapturedRequest {
    record: RequestRecord,
    truncated: bool,
    error: Option<String>,
}

#[derive(Debug)]
enum RequestState {
    Unknown,
    /// The request body is still flowing through a [`RequestCapture`].
    Pending(oneshot::Receiver<CapturedRequest>),
    /// Only the reqwest adapter has a request body whole.
    #[cfg_attr(not(feature = "reqwest"), allow(dead_code))]
    Ready(Box<CapturedRequest>),
}

/// How a call ended.
#[derive(Debug)]
pub(crate) enum Ending {
    /// The response body ended normally.
    Completed,
    /// The response body failed mid-way.
    BodyError(String),
    /// The inner service (or the client below the middleware) failed before a response head.
    TransportError(String),
    /// The response future or body was dropped before its end.
    Cancelled,
}

/// One call being observed.
#[derive(Debug)]
pub(crate) struct InFlightCall {
    observer: Arc<Observer>,
    id: CallId,
    endpoint: Endpoint,
    /// `gen_ai.provider.name`, known from the start (a `String` only when the call ends).
    provider: Cow<'static, str>,
    /// The model the request's URL named (e.g. an Azure deployment), if any.
    path_model: Option<String>,
    span: CallSpan,
    started: Instant,
    started_wall: OffsetDateTime,
    server_address: Option<String>,
    metadata: Map<String, Value>,
    /// Header values an error message must not repeat.
    secrets: Secrets,
    /// The request's [`Redact`] extension.
    redact: Option<Redact>,
    request: RequestState,
    http_status: Option<u16>,
    response_head: Option<Instant>,
    decoder: Option<ResponseDecoder>,
    first_token: Option<Instant>,
    finished: bool,
}

impl InFlightCall {
    /// The call's span.
    pub(crate) fn span(&self) -> &Span {
        self.span.span()
    }

    /// The call's id, for the request's and the response's extensions.
    pub(crate) fn call_id(&self) -> CallId {
        self.id
    }

    /// Prepares an outgoing request: the call's id as an extension and, when the layer
    /// propagates trace context, the call's span as its `traceparent`.
    pub(crate) fn prepare_request(&self, headers: &mut HeaderMap, extensions: &mut Extensions) {
        extensions.insert(self.id);
        if self.observer.propagate_trace_context {
            self.id.trace().inject(headers);
        }
    }

    /// A capture for a request body that will stream through a tee; the call collects its
    /// result when it finishes.
    pub(crate) fn capture_request(&mut self) -> RequestCapture {
        let (tx, rx) = oneshot::channel();
        self.request = RequestState::Pending(rx);
        RequestCapture {
            capture: BytesCapture::new(self.observer.request_limit),
            endpoint: self.endpoint,
            model_in_path: self.path_model.is_some(),
            span: self.span.clone(),
            tx: Some(tx),
        }
    }

    /// Records a request body that is available whole (`None`: it exists but cannot be read
    /// without consuming it, e.g. a streaming body).
    #[cfg_attr(not(feature = "reqwest"), allow(dead_code))]
    pub(crate) fn request_body(&mut self, body: Option<&[u8]>) {
        let captured = match body {
            Some(body) if body.len() > self.observer.request_limit => CapturedRequest {
                truncated: true,
                error: Some(format!(
                    "request body of {} bytes exceeds the capture limit of {} bytes; not decoded",
                    body.len(),
                    self.observer.request_limit
                )),
                ..CapturedRequest::default()
            },
            Some(body) => {
                let model_in_path = self.path_model.is_some();
                decode_captured_request(self.endpoint, model_in_path, &self.span, body, true, false)
            }
            None => CapturedRequest {
                error: Some("request body is a stream; it was passed on but not recorded".into()),
                ..CapturedRequest::default()
            },
        };
        self.request = RequestState::Ready(Box::new(captured));
    }

    /// The response head arrived: remember the status and pick the body decoder.
    pub(crate) fn response_head(&mut self, status: StatusCode, headers: &HeaderMap) {
        self.http_status = Some(status.as_u16());
        self.response_head = Some(Instant::now());
        self.decoder = Some(ResponseDecoder::new(
            self.endpoint,
            headers,
            self.observer.response_limit,
        ));
    }

    /// A data frame of the response body went by.
    pub(crate) fn response_frame(&mut self, data: &Bytes) {
        if let Some(decoder) = &mut self.decoder {
            if decoder.feed(data) && self.first_token.is_none() {
                self.first_token = Some(Instant::now());
            }
        }
    }

    /// Ends the call: builds the payload, records it on the span, closes the span and hands the
    /// payload to the dispatcher (which never blocks).
    pub(crate) fn finish(mut self, ending: Ending) {
        self.complete(ending);
    }

    fn complete(&mut self, ending: Ending) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        let ended = Instant::now();
        // Clients such as async-openai stop reading at `[DONE]` and drop the body: the stream
        // had said everything, so the call completed.
        let ending = match ending {
            Ending::Cancelled if self.decoder.as_ref().is_some_and(|d| d.stream_ended()) => {
                Ending::Completed
            }
            other => other,
        };
        let decoded = match (self.decoder.take(), &ending) {
            (Some(decoder), Ending::Completed) => decoder.finish(),
            (Some(decoder), _) => decoder.finish_partial(),
            (None, _) => DecodedResponse::default(),
        };
        let request = self.take_request();
        let request_model = self
            .path_model
            .take()
            .or_else(|| request.record.model.clone());
        let (status, error) = outcome(&ending, self.http_status, &decoded);
        let duration = ended.duration_since(self.started);
        let since_start = |at: Instant| milliseconds(at.duration_since(self.started));
        let mut call = LlmCall {
            schema_version: SCHEMA_VERSION,
            id: self.id.as_str().to_owned(),
            trace: *self.id.trace(),
            endpoint: self.endpoint,
            operation: self.endpoint.operation().to_owned(),
            provider: std::mem::take(&mut self.provider).into_owned(),
            server_address: self.server_address.take(),
            request_model,
            truncated: request.truncated || decoded.truncated,
            decode_errors: request.error.into_iter().chain(decoded.error).collect(),
            request: request.record,
            response: decoded.summary.response,
            response_model: decoded.summary.model,
            response_id: decoded.summary.id,
            usage_source: if decoded.summary.usage.is_some() {
                UsageSource::Provider
            } else {
                UsageSource::Missing
            },
            usage: decoded.summary.usage,
            // A cost the provider reported (OpenRouter); else the pricing below sets one.
            cost: decoded.summary.reported_cost,
            finish_reasons: decoded.summary.finish_reasons,
            status,
            http_status: self.http_status,
            error_type: genai::error_type(status, error.as_ref(), self.http_status),
            error,
            timing: Timing {
                start_time: self.started_wall,
                end_time: self.started_wall + duration,
                duration_ms: milliseconds(duration),
                time_to_first_token_ms: self.first_token.map(since_start),
                time_to_response_head_ms: self.response_head.map(since_start),
            },
            processing_errors: Vec::new(),
            metadata: std::mem::take(&mut self.metadata),
            skip_sinks: Vec::new(),
        };
        if let Some(redact) = self.redact.take() {
            // What the application asked for this call, before anything else sees it.
            if redact.content {
                redact::redact_content(&mut call);
            }
            call.skip_sinks = redact.skip_sinks;
        }
        // Panic-contained: a failing redactor removes the content and leaves a note.
        self.observer.redaction.run(&mut call);
        if call.status == CallStatus::Error {
            self.secrets.scrub_call(&mut call);
        }
        let usage_comes_later = self.observer.price_estimated_later && call.usage.is_none();
        if let (Some(pricing), false) = (&self.observer.pricing, usage_comes_later) {
            // A few table lookups; never fails (a missing price is a note).
            let _ = pricing.process(&mut call);
        }
        self.span.record_outcome(&call);
        // The span closes here (the request capture dropped its clone when the request ended).
        drop(std::mem::replace(&mut self.span, CallSpan::none()));
        #[cfg(feature = "metrics")]
        if let Some(metrics) = &self.observer.metrics {
            metrics.record(&call);
        }
        self.observer.dispatcher.dispatch(Arc::new(call));
    }

    fn take_request(&mut self) -> CapturedRequest {
        match std::mem::replace(&mut self.request, RequestState::Unknown) {
            RequestState::Ready(request) => *request,
            RequestState::Pending(mut rx) => rx.try_recv().unwrap_or_else(|_| CapturedRequest {
                error: Some(
                    "request body was still being read when the call ended; not recorded".into(),
                ),
                ..CapturedRequest::default()
            }),
            RequestState::Unknown => CapturedRequest {
                error: Some("request body was not available".into()),
                ..CapturedRequest::default()
            },
        }
    }
}

impl Drop for InFlightCall {
    fn drop(&mut self) {
        self.complete(Ending::Cancelled);
    }
}

fn outcome(
    ending: &Ending,
    http_status: Option<u16>,
    decoded: &DecodedResponse,
) -> (CallStatus, Option<CallError>) {
    let plain = |kind: &str, message: String| CallError {
        kind: Some(kind.to_owned()),
        code: None,
        message: Some(message),
    };
    match ending {
        Ending::TransportError(message) => {
            (CallStatus::Error, Some(plain("transport", message.clone())))
        }
        Ending::BodyError(message) => (
            CallStatus::Error,
            Some(plain(
                "body",
                format!("response body failed mid-way: {message}"),
            )),
        ),
        Ending::Cancelled => {
            let message = if http_status.is_some() {
                "the response body was dropped before its end"
            } else {
                "the call was dropped before a response arrived"
            };
            (
                CallStatus::Cancelled,
                Some(plain("cancelled", message.to_owned())),
            )
        }
        Ending::Completed => {
            if let Some(error) = &decoded.summary.error {
                (CallStatus::Error, Some(error.clone()))
            } else if let Some(status) = http_status.filter(|s| *s >= 400) {
                let reason = StatusCode::from_u16(status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("HTTP error");
                (
                    CallStatus::Error,
                    Some(CallError {
                        kind: Some("http".to_owned()),
                        code: Some(status.to_string()),
                        message: Some(reason.to_owned()),
                    }),
                )
            } else {
                (CallStatus::Success, None)
            }
        }
    }
}

fn decode_captured_request(
    endpoint: Endpoint,
    model_in_path: bool,
    span: &CallSpan,
    body: &[u8],
    complete: bool,
    truncated: bool,
) -> CapturedRequest {
    if truncated {
        return CapturedRequest {
            truncated: true,
            error: Some("request body exceeded the capture limit; not decoded".into()),
            ..CapturedRequest::default()
        };
    }
    match format_of(endpoint).decode_request(endpoint, body) {
        Ok(record) => {
            // A model the URL named was recorded as the call started; the body's does not
            // replace it.
            span.record_request(endpoint.operation(), model_in_path, &record);
            CapturedRequest {
                record,
                truncated: false,
                error: None,
            }
        }
        Err(error) => CapturedRequest {
            error: Some(if complete {
                format!(
                    "request body is not {} request: {error}",
                    an(endpoint.api())
                )
            } else {
                format!(
                    "request body was not read to its end ({} bytes seen); not decoded",
                    body.len()
                )
            }),
            ..CapturedRequest::default()
        },
    }
}

/// `an OpenAI`, `an Anthropic`: the API's name with its article, for messages.
fn an(api: &str) -> &'static str {
    match api {
        "openai" => "an OpenAI",
        "anthropic" => "an Anthropic",
        "gemini" => "a Gemini",
        "bedrock" => "a Bedrock Converse",
        "ollama" => "an Ollama",
        _ => "an LLM API",
    }
}

/// Bounded copy of a request body as it streams by; decoded (and sent to its call) when the
/// body ends or is dropped.
#[derive(Debug)]
pub(crate) struct RequestCapture {
    capture: BytesCapture,
    endpoint: Endpoint,
    /// The call's model came from the URL (the body's does not name the span).
    model_in_path: bool,
    span: CallSpan,
    tx: Option<oneshot::Sender<CapturedRequest>>,
}

impl RequestCapture {
    /// A data frame of the request went by.
    pub(crate) fn frame(&mut self, data: &Bytes) {
        self.capture.push(data);
    }

    /// Whether the request is still being captured: not ended, and within its limit.
    pub(crate) fn wants_more(&self) -> bool {
        self.tx.is_some() && !self.capture.truncated()
    }

    /// The request body ended (`complete`) or stopped early; decode and hand over, once.
    pub(crate) fn end(&mut self, complete: bool) {
        let Some(tx) = self.tx.take() else {
            return;
        };
        let body = self.capture.contiguous();
        let captured = decode_captured_request(
            self.endpoint,
            self.model_in_path,
            &self.span,
            &body,
            complete,
            self.capture.truncated(),
        );
        drop(body);
        let _ = tx.send(captured);
        self.span = CallSpan::none();
        self.capture = BytesCapture::new(0);
    }
}

impl Drop for RequestCapture {
    fn drop(&mut self) {
        self.end(false);
    }
}
