//! Sink faults: a sink that is slow, stuck, hangs forever, fails or panics never slows the
//! requests or the other sinks, its failures are counted, and shutdown loses nothing queued.
//! Every test ends on the accounting identity `observed == delivered + dropped + failed`.

mod support;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use llm_observability::{
    DispatcherConfig, LlmCall, LlmObservabilityLayer, MemorySink, RequestBody, Sink, SinkError,
};
use tokio::sync::Semaphore;
use tower::{Service, ServiceBuilder, ServiceExt};

/// A sink that blocks in `export` until the test hands out permits.
#[derive(Clone)]
struct GatedSink {
    gate: Arc<Semaphore>,
    entered: Arc<AtomicUsize>,
    received: Arc<AtomicUsize>,
}

impl GatedSink {
    fn new() -> Self {
        GatedSink {
            gate: Arc::new(Semaphore::new(0)),
            entered: Arc::default(),
            received: Arc::default(),
        }
    }
}

#[async_trait]
impl Sink for GatedSink {
    fn name(&self) -> &str {
        "gated"
    }
    async fn export(&self, batch: &[Arc<LlmCall>]) -> Result<(), SinkError> {
        self.entered.fetch_add(1, Ordering::SeqCst);
        let permit = self
            .gate
            .acquire()
            .await
            .map_err(|e| SinkError::permanent(e.to_string()))?;
        permit.forget();
        self.received.fetch_add(batch.len(), Ordering::SeqCst);
        Ok(())
    }
}

async fn call_once<S>(service: &mut S) -> Bytes
where
    S: Service<
        Request<Full<Bytes>>,
        Response = Response<llm_observability::ResponseBody<Full<Bytes>>>,
    >,
    S::Error: std::fmt::Debug,
{
    let body = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
    let request = Request::post("/v1/chat/completions")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap();
    let response = service.ready().await.unwrap().call(request).await.unwrap();
    response.into_body().collect().await.unwrap().to_bytes()
}

fn upstream() -> impl Service<
    Request<RequestBody<Full<Bytes>>>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    tower::service_fn(|request: Request<RequestBody<Full<Bytes>>>| async move {
        let _ = request.into_body().collect().await;
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
            b"{\"id\":\"c\",\"choices\":[]}",
        ))))
    })
}

#[tokio::test]
async fn a_stuck_sink_delays_neither_responses_nor_other_sinks() {
    let stuck = GatedSink::new();
    let memory = MemorySink::new();
    let layer = LlmObservabilityLayer::builder()
        .sink(stuck.clone())
        .sink(memory.clone())
        .dispatcher_config(DispatcherConfig::builder().batch_size(1).build())
        .build()
        .unwrap();
    let mut service = ServiceBuilder::new()
        .layer(layer.clone())
        .service(upstream());
    for _ in 0..20 {
        assert_eq!(
            call_once(&mut service).await,
            "{\"id\":\"c\",\"choices\":[]}"
        );
    }
    // All 20 responses completed while the stuck sink sits inside its first export.
    let delivered = memory.wait_for(20, Duration::from_secs(10)).await;
    assert_eq!(delivered.len(), 20, "the healthy sink got every call");
    assert_eq!(stuck.entered.load(Ordering::SeqCst), 1);
    assert_eq!(stuck.received.load(Ordering::SeqCst), 0);
    // Release it: it catches up, and the accounting identity holds for both sinks.
    stuck.gate.add_permits(1000);
    let stats = support::assert_accounted(&layer, 20).await;
    assert!(
        stats.sinks.iter().all(|sink| sink.delivered == 20),
        "{stats:?}"
    );
    assert_eq!(stuck.received.load(Ordering::SeqCst), 20);
}

#[tokio::test]
async fn shutdown_delivers_everything_queued() {
    let slow = GatedSink::new();
    let layer = LlmObservabilityLayer::builder()
        .sink(slow.clone())
        .dispatcher_config(
            DispatcherConfig::builder()
                .batch_size(7)
                .batch_interval(Duration::from_secs(3600))
                .build(),
        )
        .build()
        .unwrap();
    let mut service = ServiceBuilder::new()
        .layer(layer.clone())
        .service(upstream());
    for _ in 0..100 {
        call_once(&mut service).await;
    }
    // Most calls are still queued behind the gate (and a partial batch waits for its interval).
    assert!(slow.received.load(Ordering::SeqCst) < 100);
    slow.gate.add_permits(1000);
    layer
        .dispatcher()
        .shutdown(Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(slow.received.load(Ordering::SeqCst), 100);
    let stats = layer.dispatcher().stats();
    assert_eq!(
        (
            stats.observed,
            stats.sinks[0].delivered,
            stats.sinks[0].dropped
        ),
        (100, 100, 0)
    );
    // After shutdown, calls still pass through; their payloads are counted as dropped.
    call_once(&mut service).await;
    let stats = layer.dispatcher().stats();
    assert_eq!((stats.observed, stats.sinks[0].dropped), (101, 1));
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_without_blocking() {
    let stuck = GatedSink::new();
    let layer = LlmObservabilityLayer::builder()
        .sink(stuck.clone())
        .dispatcher_config(
            DispatcherConfig::builder()
                .queue_capacity(4)
                .batch_size(1)
                .build(),
        )
        .build()
        .unwrap();
    let mut service = ServiceBuilder::new()
        .layer(layer.clone())
        .service(upstream());
    for _ in 0..50 {
        call_once(&mut service).await;
    }
    let stats = layer.dispatcher().stats();
    assert_eq!(stats.observed, 50);
    // One batch is inside export, at most 4 wait in the queue; the rest were dropped.
    assert!(stats.sinks[0].dropped >= 45, "{stats:?}");
    stuck.gate.add_permits(1000);
    support::assert_accounted(&layer, 50).await;
}

/// Fails a given number of times, then succeeds; panics when asked to.
struct Flaky {
    failures_left: AtomicUsize,
    panic: bool,
}

#[async_trait]
impl Sink for Flaky {
    fn name(&self) -> &str {
        "flaky"
    }
    async fn export(&self, _batch: &[Arc<LlmCall>]) -> Result<(), SinkError> {
        if self.panic {
            panic!("sink bug");
        }
        if self.failures_left.load(Ordering::SeqCst) > 0 {
            self.failures_left.fetch_sub(1, Ordering::SeqCst);
            return Err(SinkError::transient("backend busy"));
        }
        Ok(())
    }
}

#[tokio::test]
async fn transient_failures_are_retried_and_panics_are_counted_as_failures() {
    let config = DispatcherConfig::builder()
        .initial_backoff(Duration::from_millis(1))
        .build();
    let layer = LlmObservabilityLayer::builder()
        .sink(Flaky {
            failures_left: AtomicUsize::new(2),
            panic: false,
        })
        .sink(Flaky {
            failures_left: AtomicUsize::new(0),
            panic: true,
        })
        .dispatcher_config(config)
        .build()
        .unwrap();
    let mut service = ServiceBuilder::new()
        .layer(layer.clone())
        .service(upstream());
    for _ in 0..3 {
        call_once(&mut service).await;
    }
    let stats = support::assert_accounted(&layer, 3).await;
    assert_eq!(
        (stats.sinks[0].delivered, stats.sinks[0].failed),
        (3, 0),
        "retried until success"
    );
    assert_eq!(
        (stats.sinks[1].delivered, stats.sinks[1].failed),
        (0, 3),
        "panic contained and counted"
    );
}

/// Always rejects.
struct Rejects;

#[async_trait]
impl Sink for Rejects {
    fn name(&self) -> &str {
        "rejects"
    }
    async fn export(&self, _batch: &[Arc<LlmCall>]) -> Result<(), SinkError> {
        Err(SinkError::permanent("401 from the backend"))
    }
}

#[tokio::test]
async fn hanging_and_rejecting_sinks_are_timed_out_and_counted_while_others_get_everything() {
    let memory = MemorySink::new();
    let config = DispatcherConfig::builder()
        .batch_size(4)
        .export_timeout(Duration::from_millis(50))
        .max_retries(1)
        .initial_backoff(Duration::from_millis(1))
        .build();
    let layer = LlmObservabilityLayer::builder()
        .sink(support::sinks::Hangs)
        .sink(Rejects)
        .sink(memory.clone())
        .dispatcher_config(config)
        .build()
        .unwrap();
    let mut service = ServiceBuilder::new()
        .layer(layer.clone())
        .service(upstream());
    for _ in 0..12 {
        assert_eq!(
            call_once(&mut service).await,
            "{\"id\":\"c\",\"choices\":[]}"
        );
    }
    assert_eq!(memory.wait_for(12, Duration::from_secs(10)).await.len(), 12);
    let stats = support::assert_accounted(&layer, 12).await;
    let by_name = |name: &str| stats.sinks.iter().find(|s| s.name == name).unwrap().clone();
    assert_eq!(
        (by_name("hangs").delivered, by_name("hangs").failed),
        (0, 12)
    );
    assert_eq!(
        (by_name("rejects").delivered, by_name("rejects").failed),
        (0, 12)
    );
    assert_eq!(
        (by_name("memory").delivered, by_name("memory").failed),
        (12, 0)
    );
}
