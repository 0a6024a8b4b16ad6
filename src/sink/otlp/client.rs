//! The HTTP client of this module's exporters: hyper with rustls (ring, the Mozilla roots from
//! webpki-roots — no system provider or certificate store needed, nothing installed
//! process-wide). Under `opentelemetry-otlp` it sets the sink's headers and remembers how the
//! last request ended, so the sink can tell the dispatcher a refusal from an outage and pass
//! on `Retry-After`.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry_http::{HttpClient, HttpError};

/// How much of an error answer is kept for the message.
const BODY_EXCERPT: usize = 512;
/// How much of any answer is read.
const BODY_LIMIT: usize = 1 << 20;

/// How the last request ended.
#[derive(Debug, Clone)]
pub(super) enum Outcome {
    /// The endpoint answered.
    Status {
        status: u16,
        retry_after: Option<Duration>,
        body: String,
    },
    /// No answer: connection refused, DNS, TLS, timeout.
    Failed { error: String },
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpFailure {
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Request(String),
}

/// A hyper client with rustls and a per-request timeout (the whole exchange, body included).
#[derive(Clone)]
pub(crate) struct Http {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

impl fmt::Debug for Http {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Http")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

fn tls() -> Result<rustls::ClientConfig, rustls::Error> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

/// The text of an error and its causes.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let more = inner.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = inner.source();
    }
    text
}

impl Http {
    pub(crate) fn new(timeout: Duration) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let connector = match tls() {
            Ok(config) => builder.with_tls_config(config),
            // Only a provider without safe protocol versions fails: not ring.
            Err(_) => builder.with_webpki_roots(),
        }
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
        Http {
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(60))
                .build(connector),
            timeout,
        }
    }

    /// Sends `request`; reads at most 1 MiB of the answer.
    pub(crate) async fn send(
        &self,
        request: Request<Bytes>,
    ) -> Result<Response<Bytes>, HttpFailure> {
        let exchange = async {
            let response = self
                .client
                .request(request.map(Full::new))
                .await
                .map_err(|e| HttpFailure::Request(chain(&e)))?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, BODY_LIMIT)
                .collect()
                .await
                .map_err(|e| {
                    HttpFailure::Request(format!("reading the answer failed: {}", chain(&*e)))
                })?
                .to_bytes();
            Ok(Response::from_parts(parts, body))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .unwrap_or(Err(HttpFailure::Timeout(self.timeout)))
    }
}

/// `Retry-After` as seconds or an HTTP date.
pub(crate) fn retry_after(value: &HeaderValue) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(text).ok()?;
    Some(when.duration_since(SystemTime::now()).unwrap_or_default())
}

/// The first [`BODY_EXCERPT`] bytes of an answer, as text on one line.
pub(crate) fn excerpt(body: &[u8]) -> String {
    let end = body.len().min(BODY_EXCERPT);
    let text = String::from_utf8_lossy(&body[..end]);
    let mut text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if body.len() > BODY_EXCERPT {
        text.push_str("...");
    }
    text
}

/// The client given to `opentelemetry-otlp`.
pub(super) struct ReportingClient {
    http: Http,
    headers: RwLock<Vec<(HeaderName, HeaderValue)>>,
    outcome: Mutex<Option<Outcome>>,
}

impl fmt::Debug for ReportingClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReportingClient").finish_non_exhaustive()
    }
}

impl ReportingClient {
    pub(super) fn new(headers: Vec<(HeaderName, HeaderValue)>, timeout: Duration) -> Self {
        ReportingClient {
            http: Http::new(timeout),
            headers: RwLock::new(headers),
            outcome: Mutex::new(None),
        }
    }

    pub(super) fn set_header(&self, name: HeaderName, value: HeaderValue) {
        let mut headers = self.headers.write().unwrap_or_else(PoisonError::into_inner);
        headers.retain(|(existing, _)| *existing != name);
        headers.push((name, value));
    }

    pub(super) fn take_outcome(&self) -> Option<Outcome> {
        self.outcome
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    fn record(&self, outcome: Outcome) {
        *self.outcome.lock().unwrap_or_else(PoisonError::into_inner) = Some(outcome);
    }
}

/// The headers of an export: what describes the body (`content-type`, `content-encoding`) as
/// `opentelemetry-otlp` set it, then the sink's own. Others are dropped: the exporter also adds
/// `OTEL_EXPORTER_OTLP_HEADERS` by itself, which the sink has already resolved (and which a
/// preset such as MLflow's must not send to its server).
fn set_headers(request: &mut http::HeaderMap, ours: &[(HeaderName, HeaderValue)]) {
    let kept: Vec<(HeaderName, HeaderValue)> =
        [http::header::CONTENT_TYPE, http::header::CONTENT_ENCODING]
            .into_iter()
            .filter_map(|name| Some((name.clone(), request.get(&name)?.clone())))
            .collect();
    request.clear();
    for (name, value) in kept.iter().chain(ours) {
        request.insert(name.clone(), value.clone());
    }
}

#[async_trait]
impl HttpClient for ReportingClient {
    async fn send_bytes(&self, mut request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        {
            let headers = self.headers.read().unwrap_or_else(PoisonError::into_inner);
            set_headers(request.headers_mut(), &headers);
        }
        match self.http.send(request).await {
            Ok(response) => {
                let status = response.status();
                self.record(Outcome::Status {
                    status: status.as_u16(),
                    retry_after: response
                        .headers()
                        .get(http::header::RETRY_AFTER)
                        .and_then(retry_after),
                    body: if status.is_success() {
                        String::new()
                    } else {
                        excerpt(response.body())
                    },
                });
                Ok(response)
            }
            Err(failure) => {
                self.record(Outcome::Failed {
                    error: failure.to_string(),
                });
                Err(failure.into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(
            retry_after(&HeaderValue::from_static("7")),
            Some(Duration::from_secs(7))
        );
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        let wait = retry_after(&HeaderValue::from_str(&later).unwrap()).unwrap();
        assert!(wait <= Duration::from_secs(30) && wait >= Duration::from_secs(25));
        assert_eq!(retry_after(&HeaderValue::from_static("soon")), None);
    }

    #[test]
    fn only_the_sinks_headers_are_sent() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "content-type",
            HeaderValue::from_static("application/x-protobuf"),
        );
        headers.insert("content-encoding", HeaderValue::from_static("gzip"));
        headers.insert("x-from-env", HeaderValue::from_static("1"));
        headers.insert("authorization", HeaderValue::from_static("env"));
        let ours = [(
            HeaderName::from_static("authorization"),
            HeaderValue::from_static("ours"),
        )];
        set_headers(&mut headers, &ours);
        assert_eq!(headers.len(), 3);
        assert_eq!(headers["authorization"], "ours");
        assert_eq!(headers["content-encoding"], "gzip");
        assert!(headers.get("x-from-env").is_none());
    }

    #[test]
    fn excerpts_are_one_line_and_bounded() {
        assert_eq!(excerpt(b"bad\n  request"), "bad request");
        assert!(excerpt(&[b'x'; 2000]).ends_with("..."));
    }
}
