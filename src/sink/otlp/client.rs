//! The HTTP client under `opentelemetry-otlp`: reqwest (rustls with ring, webpki roots) that
//! sets the sink's headers and remembers how the last request ended, so the sink can tell the
//! dispatcher a refusal from an outage and pass on `Retry-After`.

use std::fmt;
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response};
use opentelemetry_http::{HttpClient, HttpError};

use super::OtlpError;

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

pub(super) struct ReportingClient {
    client: reqwest::Client,
    headers: RwLock<Vec<(HeaderName, HeaderValue)>>,
    outcome: Mutex<Option<Outcome>>,
}

impl fmt::Debug for ReportingClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReportingClient").finish_non_exhaustive()
    }
}

/// A TLS configuration with ring and the Mozilla roots (webpki-roots): no system provider or
/// certificate store is needed.
fn tls() -> Result<rustls::ClientConfig, rustls::Error> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A reqwest client for the exporters of this module (also MLflow's REST calls).
pub(crate) fn http_client(timeout: Duration) -> Result<reqwest::Client, OtlpError> {
    let mut builder = reqwest::Client::builder().timeout(timeout);
    if let Ok(config) = tls() {
        builder = builder.tls_backend_preconfigured(config);
    }
    builder.build().map_err(OtlpError::HttpClient)
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

/// Reads at most [`BODY_LIMIT`] bytes of a response.
pub(crate) async fn read_limited(mut response: reqwest::Response) -> Result<Bytes, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = BODY_LIMIT.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if room <= chunk.len() {
            break;
        }
    }
    Ok(Bytes::from(body))
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

impl ReportingClient {
    pub(super) fn new(
        headers: Vec<(HeaderName, HeaderValue)>,
        timeout: Duration,
    ) -> Result<Self, OtlpError> {
        Ok(ReportingClient {
            client: http_client(timeout)?,
            headers: RwLock::new(headers),
            outcome: Mutex::new(None),
        })
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

#[async_trait]
impl HttpClient for ReportingClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (mut parts, body) = request.into_parts();
        {
            let headers = self.headers.read().unwrap_or_else(PoisonError::into_inner);
            for (name, value) in headers.iter() {
                parts.headers.insert(name.clone(), value.clone());
            }
        }
        let request = reqwest::Request::try_from(Request::from_parts(parts, body))?;
        let response = match self.client.execute(request).await {
            Ok(response) => response,
            Err(error) => {
                let text = if error.is_timeout() {
                    format!("timed out ({})", chain(&error))
                } else {
                    chain(&error)
                };
                self.record(Outcome::Failed { error: text });
                return Err(error.into());
            }
        };
        let status = response.status();
        let headers = response.headers().clone();
        let body = match read_limited(response).await {
            Ok(body) => body,
            Err(error) => {
                self.record(Outcome::Failed {
                    error: format!("reading the answer failed: {}", chain(&error)),
                });
                return Err(error.into());
            }
        };
        self.record(Outcome::Status {
            status: status.as_u16(),
            retry_after: headers.get(http::header::RETRY_AFTER).and_then(retry_after),
            body: if status.is_success() {
                String::new()
            } else {
                excerpt(&body)
            },
        });
        let mut answer = Response::new(body);
        *answer.status_mut() = status;
        *answer.headers_mut() = headers;
        Ok(answer)
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
    fn excerpts_are_one_line_and_bounded() {
        assert_eq!(excerpt(b"bad\n  request"), "bad request");
        assert!(excerpt(&[b'x'; 2000]).ends_with("..."));
    }
}
