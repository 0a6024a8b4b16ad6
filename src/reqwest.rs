//! reqwest-middleware adapter: the same observer, tee and payload as the tower layer.

use std::sync::Arc;

use http::Extensions;
use reqwest::ResponseBuilderExt;
use reqwest::{Request, Response};
use reqwest_middleware::{Middleware, Next, Result};
use tracing::Instrument;

use crate::body::ResponseBody;
use crate::call::{Ending, Observer};
use crate::layer::LlmObservabilityLayer;

/// reqwest-middleware middleware that records every OpenAI-shaped call made with the client.
///
/// Built from a layer, so both share sinks, configuration and counters. The response body is
/// teed, not buffered: `.json()`, `.text()`, `.bytes()` and `.bytes_stream()` work as usual and
/// SSE stays incremental. Per-request metadata goes in as an extension
/// ([`CallMetadata`](crate::CallMetadata) via `RequestBuilder::with_extension`).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use llm_observability::{LlmObservabilityLayer, LogSink};
/// let layer = LlmObservabilityLayer::builder().sink(LogSink).build()?;
/// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
///     .with(layer.middleware())
///     .build();
/// # let _ = client;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct LlmObservabilityMiddleware {
    observer: Arc<Observer>,
}

impl LlmObservabilityLayer {
    /// The reqwest-middleware adapter of this layer.
    pub fn middleware(&self) -> LlmObservabilityMiddleware {
        LlmObservabilityMiddleware {
            observer: self.observer().clone(),
        }
    }
}

#[async_trait::async_trait]
impl Middleware for LlmObservabilityMiddleware {
    async fn handle(
        &self,
        mut request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> Result<Response> {
        let uri: Option<http::Uri> = request.url().as_str().parse().ok();
        let endpoint = uri
            .as_ref()
            .and_then(|uri| self.observer.matcher.classify(request.method(), uri));
        let (Some(endpoint), Some(uri)) = (endpoint, uri) else {
            return next.run(request, extensions).await;
        };
        let mut call = self
            .observer
            .start(endpoint, &uri, request.headers(), extensions);
        call.prepare_request(request.headers_mut(), extensions);
        call.request_body(match request.body() {
            Some(body) => body.as_bytes(),
            None => Some(&[]),
        });
        // If this future is dropped while waiting, `call` is dropped and ends as cancelled.
        let span = call.span().clone();
        let result = next.run(request, extensions).instrument(span).await;
        match result {
            Err(error) => {
                call.finish(Ending::TransportError(error.to_string()));
                Err(error)
            }
            Ok(response) => {
                call.response_head(response.status(), response.headers());
                let url = response.url().clone();
                let (mut parts, body) =
                    http::Response::<reqwest::Body>::from(response).into_parts();
                // `reqwest::Response::from` reads the URL from an extension only its builder sets.
                let (url_carrier, ()) = http::Response::builder()
                    .url(url)
                    .body(())
                    .map_err(reqwest_middleware::Error::middleware)?
                    .into_parts();
                parts.extensions.extend(url_carrier.extensions);
                parts.extensions.insert(call.call_id());
                let body = reqwest::Body::wrap(ResponseBody::observed(body, Box::new(call)));
                Ok(Response::from(http::Response::from_parts(parts, body)))
            }
        }
    }
}
