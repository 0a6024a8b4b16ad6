//! `WebhookSink`: each batch POSTed to a URL, as a JSON array or as NDJSON.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use flate2::write::GzEncoder;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE};
use reqwest::{StatusCode, Url};

use super::{Sink, SinkError};
use crate::payload::LlmCall;

/// How a batch is laid out in the request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WebhookFormat {
    /// One JSON array of [`LlmCall`]s (`Content-Type: application/json`).
    #[default]
    JsonArray,
    /// One [`LlmCall`] JSON per line, each ending in `\n` (`Content-Type: application/x-ndjson`),
    /// the encoding of [`ndjson::encode`](super::ndjson::encode).
    Ndjson,
}

/// Why a [`WebhookSink`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// The URL is not an absolute `http://` or `https://` URL.
    #[error("webhook URL {0:?} is not an http(s) URL")]
    Url(String),
    /// A header name or value is not valid in HTTP.
    #[error("invalid webhook header {0:?}")]
    Header(String),
    /// The HTTP client could not be built (TLS set-up).
    #[error("cannot build the webhook's HTTP client")]
    Client(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// POSTs each batch of calls to a URL: a JSON array (default) or NDJSON, optionally
/// gzip-compressed (`Content-Encoding: gzip`), with extra headers (an `Authorization` token).
///
/// The receiver's answer decides the outcome: any 2xx delivers the batch; 408, 429 and 5xx,
/// a timeout or a connection error are retried by the dispatcher with backoff, after the
/// `Retry-After` the receiver asked for (seconds or an HTTP date); any other status is
/// permanent and the batch counts failed. A receiver should therefore treat a batch it has
/// seen before as harmless: after a timeout the same batch may arrive twice (each call has a
/// unique [`id`](LlmCall::id)).
///
/// `https://` URLs use rustls with the system's root certificates.
///
/// ```no_run
/// use std::time::Duration;
/// use llm_observability::{WebhookFormat, WebhookSink};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let sink = WebhookSink::builder("https://hooks.example.com/llm-calls")
///     .header("authorization", "Bearer s3cret")
///     .format(WebhookFormat::Ndjson)
///     .gzip(true)
///     .timeout(Duration::from_secs(5))
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct WebhookSink {
    client: reqwest::Client,
    url: Url,
    format: WebhookFormat,
    gzip: bool,
    headers: HeaderMap,
}

/// Builder of [`WebhookSink`] (see [`WebhookSink::builder`]).
#[derive(Debug)]
pub struct WebhookSinkBuilder {
    url: String,
    format: WebhookFormat,
    gzip: bool,
    timeout: Duration,
    headers: Vec<(String, String)>,
}

impl WebhookSink {
    /// The default time one POST may take, answer included.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    /// A sink posting JSON arrays to `url`, uncompressed, with a 10 s timeout.
    pub fn builder(url: impl Into<String>) -> WebhookSinkBuilder {
        WebhookSinkBuilder {
            url: url.into(),
            format: WebhookFormat::default(),
            gzip: false,
            timeout: Self::DEFAULT_TIMEOUT,
            headers: Vec::new(),
        }
    }

    /// `WebhookSink::builder(url).build()`.
    pub fn new(url: impl Into<String>) -> Result<Self, WebhookError> {
        Self::builder(url).build()
    }

    /// The URL batches are posted to.
    pub fn url(&self) -> &Url {
        &self.url
    }

    fn body(&self, batch: &[Arc<LlmCall>]) -> Result<Vec<u8>, SinkError> {
        let mut body = Vec::with_capacity(batch.len() * 1024);
        match self.format {
            WebhookFormat::JsonArray => {
                let calls: Vec<&LlmCall> = batch.iter().map(Arc::as_ref).collect();
                serde_json::to_writer(&mut body, &calls)?;
            }
            WebhookFormat::Ndjson => super::ndjson::encode(batch, &mut body)?,
        }
        if !self.gzip {
            return Ok(body);
        }
        let mut encoder = GzEncoder::new(
            Vec::with_capacity(body.len() / 4),
            flate2::Compression::fast(),
        );
        encoder.write_all(&body)?;
        Ok(encoder.finish()?)
    }
}

impl WebhookSinkBuilder {
    /// JSON array (default) or NDJSON.
    pub fn format(mut self, format: WebhookFormat) -> Self {
        self.format = format;
        self
    }

    /// Compresses each body with gzip and says so in `Content-Encoding` (default: off).
    pub fn gzip(mut self, gzip: bool) -> Self {
        self.gzip = gzip;
        self
    }

    /// How long one POST may take, from connecting to the end of the answer (default 10 s);
    /// past it the attempt fails and is retried.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Adds a header to every request (`Authorization`, a tenant id, ...). Checked by
    /// [`build`](Self::build).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Checks the URL and headers and builds the HTTP client.
    pub fn build(self) -> Result<WebhookSink, WebhookError> {
        let url = Url::parse(&self.url).map_err(|_| WebhookError::Url(self.url.clone()))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(WebhookError::Url(self.url));
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &self.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| WebhookError::Header(name.clone()))?;
            let mut value =
                HeaderValue::from_str(value).map_err(|_| WebhookError::Header(name.to_string()))?;
            value.set_sensitive(true);
            headers.append(name, value);
        }
        let client = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.timeout)
            .build()
            .map_err(|e| WebhookError::Client(Box::new(e)))?;
        Ok(WebhookSink {
            client,
            url,
            format: self.format,
            gzip: self.gzip,
            headers,
        })
    }
}

#[async_trait]
impl Sink for WebhookSink {
    fn name(&self) -> &str {
        "webhook"
    }

    async fn export(&self, batch: &[Arc<LlmCall>]) -> Result<(), SinkError> {
        if batch.is_empty() {
            return Ok(());
        }
        let body = self.body(batch)?;
        let content_type = match self.format {
            WebhookFormat::JsonArray => "application/json",
            WebhookFormat::Ndjson => "application/x-ndjson",
        };
        let mut request = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, content_type);
        if self.gzip {
            request = request.header(CONTENT_ENCODING, "gzip");
        }
        let response = request.body(body).send().await.map_err(|error| {
            let what = if error.is_timeout() {
                "the webhook did not answer in time"
            } else if error.is_connect() {
                "cannot connect to the webhook"
            } else {
                "the webhook request failed"
            };
            SinkError::transient(what).with_source(error)
        })?;
        let status = response.status();
        if status.is_success() {
            // Read the answer to the end so that the connection goes back to the pool; the
            // batch is delivered whatever the body says.
            let _ = response.bytes().await;
            return Ok(());
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(parse_retry_after);
        let text = response.text().await.unwrap_or_default();
        let snippet: String = text.chars().take(200).collect();
        let message = format!("the webhook answered {status}: {snippet}");
        let retryable = status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT
            || status.is_server_error();
        Err(match (retryable, retry_after) {
            (true, Some(delay)) => SinkError::transient(message).with_retry_after(delay),
            (true, None) => SinkError::transient(message),
            (false, _) => SinkError::permanent(message),
        })
    }
}

/// `Retry-After`: delay-seconds or an HTTP date (a date in the past means "now").
fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        let delay = parse_retry_after(&later).expect("a date");
        assert!(delay > Duration::from_secs(100) && delay <= Duration::from_secs(120));
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn bad_urls_and_headers_are_refused() {
        assert!(matches!(
            WebhookSink::new("ftp://example.com/x"),
            Err(WebhookError::Url(_))
        ));
        assert!(matches!(
            WebhookSink::new("not a url"),
            Err(WebhookError::Url(_))
        ));
        assert!(matches!(
            WebhookSink::builder("http://127.0.0.1:1/")
                .header("bad header", "x")
                .build(),
            Err(WebhookError::Header(_))
        ));
        assert!(WebhookSink::new("https://example.com/hook").is_ok());
    }
}
