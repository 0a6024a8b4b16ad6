//! `--metrics-listen ADDR`: GenAI metrics for Prometheus on `GET /metrics`.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use llm_observability::metrics::{prometheus_builder, GenAiMetrics};
use llm_observability::{LlmObservabilityLayer, LlmObservabilityLayerBuilder};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::forward::BoxError;

#[derive(Debug, clap::Args)]
pub(crate) struct MetricsFlags {
    /// Serve GenAI metrics in the Prometheus text format on GET /metrics at ADDR (IP:PORT).
    ///
    /// Token usage, duration and time to first chunk histograms (OpenTelemetry GenAI
    /// conventions and buckets), requests by status and error type, cached and reasoning
    /// tokens, and the JSONL sink's delivered, dropped and failed counts. Each label keeps at
    /// most 100 distinct values (later ones become `other`).
    #[arg(long, value_name = "ADDR", conflicts_with = "no_observe")]
    metrics_listen: Option<SocketAddr>,
}

/// What `--metrics-listen` serves, once the layer is built.
pub(crate) struct MetricsEndpoint {
    addr: SocketAddr,
    metrics: GenAiMetrics,
    handle: PrometheusHandle,
}

impl MetricsFlags {
    /// Installs the Prometheus recorder and adds metrics to the layer, when asked for.
    pub(crate) fn apply(
        &self,
        builder: LlmObservabilityLayerBuilder,
    ) -> Result<(LlmObservabilityLayerBuilder, Option<MetricsEndpoint>), BoxError> {
        let Some(addr) = self.metrics_listen else {
            return Ok((builder, None));
        };
        let handle = prometheus_builder()?.install_recorder()?;
        let metrics = GenAiMetrics::new();
        let builder = builder.metrics(metrics.clone());
        Ok((
            builder,
            Some(MetricsEndpoint {
                addr,
                metrics,
                handle,
            }),
        ))
    }
}

/// Binds the metrics address and serves `GET /metrics` in the background (404 elsewhere).
pub(crate) async fn serve(
    endpoint: Option<MetricsEndpoint>,
    layer: &LlmObservabilityLayer,
) -> Result<(), BoxError> {
    let Some(endpoint) = endpoint else {
        return Ok(());
    };
    let listener = tokio::net::TcpListener::bind(endpoint.addr)
        .await
        .map_err(|e| format!("cannot listen on {} for metrics: {e}", endpoint.addr))?;
    tracing::info!("metrics on http://{}/metrics", listener.local_addr()?);
    // The exporter keeps histogram samples until its upkeep folds them into the buckets: run it
    // even when nobody scrapes, so memory stays flat.
    let upkeep = endpoint.handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    let layer = layer.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (layer, metrics, handle) = (
                layer.clone(),
                endpoint.metrics.clone(),
                endpoint.handle.clone(),
            );
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let response = if request.uri().path() == "/metrics" {
                    metrics.record_dispatcher(layer.dispatcher());
                    handle.run_upkeep();
                    Response::builder()
                        .header(
                            http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )
                        .body(Full::new(Bytes::from(handle.render())))
                } else {
                    Response::builder()
                        .status(StatusCode::NOT_FOUND)
                        .body(Full::new(Bytes::from_static(b"GET /metrics\n")))
                };
                std::future::ready(Ok::<_, Infallible>(response.unwrap_or_default()))
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(())
}
