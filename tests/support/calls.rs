//! One recorded call through a layer, with extra request headers (e.g. `traceparent`) and
//! `CallMetadata`: what the backend preset suites send.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use llm_observability::{CallMetadata, LlmObservabilityLayer, RequestBody};
use tower::{Service, ServiceBuilder, ServiceExt};

use super::Interaction;

/// Sends `interaction`'s request through `layer` (with `headers` and `metadata` added) to an
/// in-process upstream that reads the request and answers the recorded status, content type
/// and body; reads the response to its end. Flushing the sinks is the caller's.
pub async fn send(
    layer: &LlmObservabilityLayer,
    interaction: &Interaction,
    headers: &[(&str, &str)],
    metadata: Option<CallMetadata>,
) {
    let recorded = interaction.clone();
    let upstream = tower::service_fn(move |request: Request<RequestBody<Full<Bytes>>>| {
        let recorded = recorded.clone();
        async move {
            let _ = request.into_body().collect().await;
            let mut response = Response::builder().status(recorded.status);
            if !recorded.content_type.is_empty() {
                response = response.header(http::header::CONTENT_TYPE, &recorded.content_type);
            }
            Ok::<_, Infallible>(
                response
                    .body(Full::new(Bytes::from(recorded.response_body.clone())))
                    .expect("valid response"),
            )
        }
    });
    let mut service = ServiceBuilder::new().layer(layer.clone()).service(upstream);
    let mut request = Request::builder()
        .method(interaction.method.as_str())
        .uri(&interaction.uri)
        .header(http::header::CONTENT_TYPE, "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut request = request
        .body(Full::new(Bytes::from(interaction.request_body.clone())))
        .expect("valid request");
    if let Some(metadata) = metadata {
        request.extensions_mut().insert(metadata);
    }
    let response = service
        .ready()
        .await
        .expect("ready")
        .call(request)
        .await
        .expect("infallible upstream");
    let _ = response.into_body().collect().await.expect("recorded body");
}
