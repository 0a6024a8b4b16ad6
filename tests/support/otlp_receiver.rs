//! An in-process OTLP/HTTP receiver for the exporter tests: it listens on 127.0.0.1, decodes
//! every `ExportTraceServiceRequest` (protobuf, gzip or not) with the `opentelemetry-proto`
//! crate, records each request's path, headers and spans, and answers with the statuses it is
//! told to (e.g. 503 then 200), then 200.

use std::collections::VecDeque;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use tokio::sync::Notify;

/// One answer the receiver gives instead of 200.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: String,
}

impl Answer {
    pub fn status(status: u16) -> Answer {
        Answer {
            status,
            retry_after: None,
            body: String::new(),
        }
    }

    pub fn retry_after(mut self, value: &str) -> Answer {
        self.retry_after = Some(value.to_owned());
        self
    }

    pub fn body(mut self, body: &str) -> Answer {
        self.body = body.to_owned();
        self
    }
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    /// Whether the body came gzipped.
    pub gzip: bool,
    /// The status the receiver answered with.
    pub answered: u16,
    pub request: ExportTraceServiceRequest,
}

/// A span with its resource's and scope's attributes.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    pub resource: Vec<KeyValue>,
    pub scope_name: String,
    pub scope_version: String,
    pub span: Span,
}

impl ReceivedSpan {
    /// The span attribute `key`.
    pub fn attribute(&self, key: &str) -> Option<&any_value::Value> {
        find(&self.span.attributes, key)
    }

    /// The span attribute `key` as text (panics when it is not a string).
    pub fn string(&self, key: &str) -> Option<&str> {
        self.attribute(key).map(|value| match value {
            any_value::Value::StringValue(text) => text.as_str(),
            other => panic!("{key} is not a string: {other:?}"),
        })
    }

    /// The resource attribute `key` as text.
    pub fn resource_string(&self, key: &str) -> Option<&str> {
        match find(&self.resource, key)? {
            any_value::Value::StringValue(text) => Some(text.as_str()),
            _ => None,
        }
    }

    pub fn trace_id_hex(&self) -> String {
        hex(&self.span.trace_id)
    }

    pub fn span_id_hex(&self) -> String {
        hex(&self.span.span_id)
    }

    pub fn parent_span_id_hex(&self) -> String {
        hex(&self.span.parent_span_id)
    }
}

pub fn find<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v: &AnyValue| v.value.as_ref())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Default)]
struct Inner {
    answers: Mutex<VecDeque<Answer>>,
    received: Mutex<Vec<Received>>,
    /// Bodies that could not be decoded, with why.
    undecodable: Mutex<Vec<String>>,
    arrived: Notify,
}

/// The running receiver; stops when dropped.
pub struct OtlpReceiver {
    address: SocketAddr,
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(
    State(inner): State<Arc<Inner>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let gzip = headers
        .get("content-encoding")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let raw = if gzip {
        let mut out = Vec::new();
        if let Err(error) = flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut out) {
            inner
                .undecodable
                .lock()
                .unwrap()
                .push(format!("gzip: {error}"));
            return StatusCode::BAD_REQUEST.into_response();
        }
        out
    } else {
        body.to_vec()
    };
    let request = match ExportTraceServiceRequest::decode(&raw[..]) {
        Ok(request) => request,
        Err(error) => {
            inner
                .undecodable
                .lock()
                .unwrap()
                .push(format!("protobuf: {error}"));
            return StatusCode::BAD_REQUEST.into_response();
        }
    };
    let answer = inner.answers.lock().unwrap().pop_front();
    let status = answer.as_ref().map_or(200, |a| a.status);
    inner.received.lock().unwrap().push(Received {
        path: uri.path().to_owned(),
        headers,
        gzip,
        answered: status,
        request,
    });
    inner.arrived.notify_waiters();
    match answer {
        Some(answer) if answer.status != 200 => {
            let mut response = (
                StatusCode::from_u16(answer.status).unwrap(),
                answer.body.clone(),
            )
                .into_response();
            if let Some(value) = &answer.retry_after {
                response
                    .headers_mut()
                    .insert("retry-after", value.parse().unwrap());
            }
            response
        }
        _ => (
            [("content-type", "application/x-protobuf")],
            ExportTraceServiceResponse::default().encode_to_vec(),
        )
            .into_response(),
    }
}

impl OtlpReceiver {
    pub async fn start() -> OtlpReceiver {
        let inner = Arc::new(Inner::default());
        let app = Router::new().fallback(receive).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        OtlpReceiver {
            address,
            inner,
            task,
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// `http://127.0.0.1:PORT/v1/traces`
    pub fn traces_url(&self) -> String {
        format!("{}/v1/traces", self.base_url())
    }

    /// Answers the next requests with these, in order; then 200.
    pub fn answer(&self, answers: impl IntoIterator<Item = Answer>) {
        self.inner.answers.lock().unwrap().extend(answers);
    }

    pub fn requests(&self) -> Vec<Received> {
        self.assert_decodable();
        self.inner.received.lock().unwrap().clone()
    }

    /// Every span of every request answered with 200, in arrival order.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        let mut spans = Vec::new();
        for received in self.requests().iter().filter(|r| r.answered == 200) {
            for resource_spans in &received.request.resource_spans {
                let resource = resource_spans
                    .resource
                    .as_ref()
                    .map(|r| r.attributes.clone())
                    .unwrap_or_default();
                for scope_spans in &resource_spans.scope_spans {
                    let (scope_name, scope_version) = scope_spans
                        .scope
                        .as_ref()
                        .map(|s| (s.name.clone(), s.version.clone()))
                        .unwrap_or_default();
                    for span in &scope_spans.spans {
                        spans.push(ReceivedSpan {
                            resource: resource.clone(),
                            scope_name: scope_name.clone(),
                            scope_version: scope_version.clone(),
                            span: span.clone(),
                        });
                    }
                }
            }
        }
        spans
    }

    /// Waits (up to `within`) until `count` spans were accepted; panics with what arrived
    /// otherwise.
    pub async fn wait_for_spans(&self, count: usize, within: Duration) -> Vec<ReceivedSpan> {
        let deadline = Instant::now() + within;
        loop {
            let arrived = self.inner.arrived.notified();
            let spans = self.spans();
            if spans.len() >= count {
                return spans;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "expected {count} spans within {within:?}, got {}: {:#?}",
                spans.len(),
                self.requests()
            );
            let _ = tokio::time::timeout(left.min(Duration::from_millis(100)), arrived).await;
        }
    }

    fn assert_decodable(&self) {
        let undecodable = self.inner.undecodable.lock().unwrap();
        assert!(
            undecodable.is_empty(),
            "undecodable OTLP bodies: {undecodable:?}"
        );
    }
}
