//! The stage between a finished call and its sinks: layer-wide processors, per-sink filters,
//! settings and processors, a sink's retry-after and shutdown — and the accounting identity
//! `observed == delivered + dropped + failed + filtered` through all of it.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use llm_observability::{
    CallFilter, CallStatus, DispatcherConfig, Endpoint, LlmCall, LlmObservabilityLayer, MemorySink,
    ProcessError, Sink, SinkConfig, SinkError,
};
use serde_json::json;

const REPLY: &str = r#"{"id":"chatcmpl-p","object":"chat.completion","model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"the secret is 42"},"finish_reason":"stop"}],"usage":{"prompt_tokens":7,"completion_tokens":5,"total_tokens":12}}"#;

/// One chat call through the layer, against an in-process upstream.
async fn call_through(layer: &LlmObservabilityLayer, secret: &str) {
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": secret}]});
    let request = Request::post("http://localhost/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("valid");
    support::through_json_upstream(layer, request, REPLY).await;
}

fn redact_messages(call: &mut LlmCall) -> Result<(), ProcessError> {
    if let Some(messages) = &mut call.request.messages {
        messages.map(|value| {
            for message in value.as_array_mut().into_iter().flatten() {
                message["content"] = "[redacted]".into();
            }
        });
    }
    Ok(())
}

fn json_of(call: &LlmCall) -> String {
    serde_json::to_string(call).expect("serialisable")
}

#[tokio::test]
async fn layer_processors_run_once_before_every_sink_and_sink_processors_on_their_copy_only() {
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    let everyone = MemorySink::new();
    let strict = MemorySink::new();
    let layer = LlmObservabilityLayer::builder()
        .processor(redact_messages)
        .processor(move |call: &mut LlmCall| {
            counted.fetch_add(1, Ordering::SeqCst);
            call.metadata.insert("team".into(), "search".into());
            Ok::<(), ProcessError>(())
        })
        .sink(everyone.clone())
        .sink_with(
            strict.clone(),
            SinkConfig::new().processor(|call: &mut LlmCall| {
                call.remove_content();
                Ok::<(), ProcessError>(())
            }),
        )
        .build()
        .expect("inside a runtime");
    call_through(&layer, "my password is hunter2").await;
    call_through(&layer, "my password is hunter3").await;
    let stats = support::assert_accounted(&layer, 2).await;
    assert_eq!(
        runs.load(Ordering::SeqCst),
        2,
        "once per call, not per sink"
    );
    assert!(stats.sinks.iter().all(|s| s.delivered == 2), "{stats:?}");

    for call in everyone.calls() {
        let line = json_of(&call);
        assert!(!line.contains("hunter"), "{line}");
        assert_eq!(
            call.request.messages.as_deref(),
            Some(&json!([{"role": "user", "content": "[redacted]"}]))
        );
        assert!(
            line.contains("the secret is 42"),
            "the response stays for this sink"
        );
        assert_eq!(call.metadata["team"], "search");
        assert!(call.processing_errors.is_empty());
    }
    for call in strict.calls() {
        let line = json_of(&call);
        assert!(
            !line.contains("hunter") && !line.contains("secret"),
            "{line}"
        );
        assert!(call.request.messages.is_none() && call.response.is_none());
        assert_eq!(
            call.usage.and_then(|u| u.total_tokens),
            Some(12),
            "counts stay"
        );
        assert_eq!(
            call.metadata["team"], "search",
            "layer processors ran first"
        );
    }
}

#[tokio::test]
async fn a_failing_or_panicking_processor_never_lets_content_through() {
    let memory = MemorySink::new();
    let strict = MemorySink::new();
    let layer = LlmObservabilityLayer::builder()
        .processor(|call: &mut LlmCall| {
            if call
                .request
                .messages
                .as_ref()
                .is_some_and(|m| m.text().contains("boom"))
            {
                panic!("redactor bug");
            }
            redact_messages(call)
        })
        .sink(memory.clone())
        .sink_with(
            strict.clone(),
            SinkConfig::new().processor(|_: &mut LlmCall| {
                Err::<(), _>(ProcessError::new("policy service unreachable"))
            }),
        )
        .build()
        .expect("inside a runtime");
    call_through(&layer, "boom: card 4111-1111 Zebulon").await;
    call_through(&layer, "fine: card 4222-2222 Quixotic").await;
    support::assert_accounted(&layer, 2).await;

    for call in memory.calls().iter().chain(strict.calls().iter()) {
        let line = json_of(call);
        assert!(
            !line.contains("4111-1111")
                && !line.contains("4222-2222")
                && !line.contains("Zebulon")
                && !line.contains("Quixotic"),
            "{line}"
        );
    }
    let calls = memory.calls();
    let panicked = calls
        .iter()
        .find(|c| !c.processing_errors.is_empty())
        .expect("the panicking call");
    assert!(panicked.request.messages.is_none() && panicked.response.is_none());
    assert!(
        panicked.processing_errors[0].contains("panicked: redactor bug"),
        "{:?}",
        panicked.processing_errors
    );
    assert_eq!(panicked.request.model.as_deref(), Some("gpt-4o-mini"));
    let redacted = calls
        .iter()
        .find(|c| c.processing_errors.is_empty())
        .expect("the other");
    assert!(redacted.response.is_some());
    for call in strict.calls() {
        assert!(call.request.messages.is_none() && call.response.is_none());
        assert!(call
            .processing_errors
            .iter()
            .any(|e| e.contains("policy service unreachable")));
    }
}

#[tokio::test]
async fn filters_choose_what_each_sink_gets_and_are_counted() {
    let all = MemorySink::new();
    let failures = MemorySink::new();
    let successes = MemorySink::new();
    let none = MemorySink::new();
    let big = MemorySink::new();
    let layer = LlmObservabilityLayer::builder()
        .sink(all.clone())
        .sink_with(
            failures.clone(),
            SinkConfig::new().filter(CallFilter::only_failures()),
        )
        .sink_with(
            successes.clone(),
            SinkConfig::new().filter(CallFilter::only_successes()),
        )
        .sink_with(
            none.clone(),
            SinkConfig::new().filter(CallFilter::sample(0.0)),
        )
        .sink_with(
            big.clone(),
            SinkConfig::new().filter(CallFilter::predicate(|c| {
                c.usage.and_then(|u| u.total_tokens).unwrap_or(0) > 100
            })),
        )
        .build()
        .expect("inside a runtime");
    for status in [
        CallStatus::Success,
        CallStatus::Error,
        CallStatus::Cancelled,
        CallStatus::Success,
    ] {
        let mut call = LlmCall::new(Endpoint::ChatCompletions);
        call.status = status;
        call.usage = Some(llm_observability::Usage::new(100, 1));
        layer.dispatcher().dispatch(Arc::new(call));
    }
    let stats = support::assert_accounted(&layer, 4).await;
    let counts: Vec<(u64, u64)> = stats
        .sinks
        .iter()
        .map(|s| (s.delivered, s.filtered))
        .collect();
    assert_eq!(counts, vec![(4, 0), (2, 2), (2, 2), (0, 4), (4, 0)]);
    assert!(failures
        .calls()
        .iter()
        .all(|c| c.status != CallStatus::Success));
    assert!(successes
        .calls()
        .iter()
        .all(|c| c.status == CallStatus::Success));
}

/// Records when each export was attempted (tokio's clock: paused in these tests, so the
/// readings are exact and nothing depends on the machine's speed).
struct RecordsAttempts {
    name: &'static str,
    attempts: Mutex<Vec<(tokio::time::Instant, usize)>>,
    refusals: AtomicUsize,
    shutdowns: AtomicUsize,
    flushes: AtomicUsize,
}

impl RecordsAttempts {
    fn new(name: &'static str, refusals: usize) -> Arc<Self> {
        Arc::new(RecordsAttempts {
            name,
            attempts: Mutex::new(Vec::new()),
            refusals: AtomicUsize::new(refusals),
            shutdowns: AtomicUsize::new(0),
            flushes: AtomicUsize::new(0),
        })
    }

    fn attempts(&self) -> Vec<(tokio::time::Instant, usize)> {
        self.attempts.lock().expect("not poisoned").clone()
    }
}

#[llm_observability::async_trait]
impl Sink for RecordsAttempts {
    fn name(&self) -> &str {
        self.name
    }

    async fn export(&self, batch: &[Arc<LlmCall>]) -> Result<(), SinkError> {
        self.attempts
            .lock()
            .expect("not poisoned")
            .push((tokio::time::Instant::now(), batch.len()));
        if self.refusals.load(Ordering::SeqCst) > 0 {
            self.refusals.fetch_sub(1, Ordering::SeqCst);
            return Err(SinkError::transient("429 Too Many Requests")
                .with_retry_after(Duration::from_secs(7)));
        }
        Ok(())
    }

    async fn flush(&self) -> Result<(), SinkError> {
        self.flushes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn shutdown(&self) -> Result<(), SinkError> {
        self.shutdowns.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured_within_max_backoff() {
    let patient = RecordsAttempts::new("patient", 2);
    let capped = RecordsAttempts::new("capped", 1);
    let config = |max_backoff| {
        DispatcherConfig::builder()
            .batch_size(1)
            .initial_backoff(Duration::from_millis(1))
            .max_backoff(max_backoff)
            .build()
    };
    let layer = LlmObservabilityLayer::builder()
        .shared_sink_with(
            patient.clone(),
            SinkConfig::new().dispatch(config(Duration::from_secs(60))),
        )
        .shared_sink_with(
            capped.clone(),
            SinkConfig::new().dispatch(config(Duration::from_secs(2))),
        )
        .build()
        .expect("inside a runtime");
    layer
        .dispatcher()
        .dispatch(Arc::new(LlmCall::new(Endpoint::ChatCompletions)));
    // 14 s of (virtual) waiting: longer than assert_accounted's flush deadline.
    layer
        .dispatcher()
        .flush(Duration::from_secs(60))
        .await
        .expect("flushed");
    let stats = support::assert_accounted(&layer, 1).await;
    assert!(stats.sinks.iter().all(|s| s.delivered == 1), "{stats:?}");

    let gaps = |sink: &RecordsAttempts| {
        let attempts = sink.attempts();
        attempts
            .windows(2)
            .map(|pair| pair[1].0 - pair[0].0)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        gaps(&patient),
        vec![Duration::from_secs(7); 2],
        "waited as asked, not 1 ms"
    );
    assert_eq!(
        gaps(&capped),
        vec![Duration::from_secs(2)],
        "capped by max_backoff"
    );
}

#[tokio::test(start_paused = true)]
async fn each_sink_batches_by_its_own_settings_and_is_shut_down_once() {
    let single = RecordsAttempts::new("single", 0);
    let bulk = RecordsAttempts::new("bulk", 0);
    let layer = LlmObservabilityLayer::builder()
        .shared_sink_with(
            single.clone(),
            SinkConfig::new().dispatch(DispatcherConfig::builder().batch_size(1).build()),
        )
        .shared_sink_with(
            bulk.clone(),
            SinkConfig::new().dispatch(
                DispatcherConfig::builder()
                    .batch_size(100)
                    .batch_interval(Duration::from_secs(3600))
                    .build(),
            ),
        )
        .build()
        .expect("inside a runtime");
    for _ in 0..5 {
        layer
            .dispatcher()
            .dispatch(Arc::new(LlmCall::new(Endpoint::Embeddings)));
    }
    layer
        .dispatcher()
        .flush(Duration::from_secs(10))
        .await
        .expect("flushed");
    let sizes = |sink: &RecordsAttempts| sink.attempts().iter().map(|a| a.1).collect::<Vec<_>>();
    assert_eq!(sizes(&single), vec![1; 5]);
    assert_eq!(
        sizes(&bulk),
        vec![5],
        "held until the flush, then one batch"
    );

    layer
        .dispatcher()
        .shutdown(Duration::from_secs(10))
        .await
        .expect("shut down");
    layer
        .dispatcher()
        .shutdown(Duration::from_secs(10))
        .await
        .expect("again: nothing to do");
    drop(layer);
    tokio::task::yield_now().await;
    for sink in [&single, &bulk] {
        assert_eq!(sink.shutdowns.load(Ordering::SeqCst), 1, "{}", sink.name);
        assert_eq!(
            sink.flushes.load(Ordering::SeqCst),
            1,
            "{}: the explicit flush only",
            sink.name
        );
    }
}

/// Waits for a permit before each export.
struct Gated(tokio::sync::Semaphore);

#[llm_observability::async_trait]
impl Sink for Gated {
    fn name(&self) -> &str {
        "gated"
    }
    async fn export(&self, _batch: &[Arc<LlmCall>]) -> Result<(), SinkError> {
        self.0
            .acquire()
            .await
            .map_err(|e| SinkError::permanent("gate closed").with_source(e))?
            .forget();
        Ok(())
    }
}

#[tokio::test]
async fn a_sink_queue_is_bounded_in_bytes_too() {
    let gated = Arc::new(Gated(tokio::sync::Semaphore::new(0)));
    let config = DispatcherConfig::builder()
        .batch_size(1)
        .queue_capacity(1000)
        .queue_bytes(4 << 20)
        .build();
    let layer = LlmObservabilityLayer::builder()
        .shared_sink_with(gated.clone(), SinkConfig::new().dispatch(config))
        .build()
        .expect("inside a runtime");
    let prompt = "x".repeat(1 << 20);
    for _ in 0..20 {
        let mut call = LlmCall::new(Endpoint::ChatCompletions);
        call.request.messages = Some(json!([{"role": "user", "content": prompt}]).into());
        layer.dispatcher().dispatch(Arc::new(call));
        tokio::task::yield_now().await;
    }
    let stats = layer.dispatcher().stats();
    let dropped = stats.sinks[0].dropped;
    // One call in the stuck export, at most four of about 1 MiB waiting: the rest dropped.
    assert!((14..=16).contains(&dropped), "{stats:?}");
    gated.0.add_permits(100);
    support::assert_accounted(&layer, 20).await;
}

/// A batch that fills up while the worker holds part of it goes out at once, not after the
/// batch interval.
#[tokio::test(start_paused = true)]
async fn a_batch_completed_behind_the_workers_back_goes_out_at_once() {
    let sink = RecordsAttempts::new("hour-long-interval", 0);
    let config = DispatcherConfig::builder()
        .batch_size(4)
        .batch_interval(Duration::from_secs(3600))
        .build();
    let layer = LlmObservabilityLayer::builder()
        .shared_sink_with(sink.clone(), SinkConfig::new().dispatch(config))
        .build()
        .expect("inside a runtime");
    let dispatch = || {
        layer
            .dispatcher()
            .dispatch(Arc::new(LlmCall::new(Endpoint::ChatCompletions)))
    };
    dispatch();
    // The worker takes the first call and waits for more.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    dispatch();
    dispatch();
    dispatch();
    let exported = async {
        while sink.attempts().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    // On the paused clock this deadline comes long before the batch interval would.
    tokio::time::timeout(Duration::from_secs(60), exported)
        .await
        .expect("the full batch was exported without waiting for the interval");
    assert_eq!(sink.attempts()[0].1, 4);
}
