//! GenAI metrics through the `metrics` facade and a Prometheus recorder: the exposition after
//! recorded calls passes `promtool check metrics`; a real Prometheus scrapes the example app and
//! answers queries with the calls' values; 10,000 distinct models keep the series capped.
//!
//! Each test runs on a current-thread runtime with its own Prometheus recorder set as the
//! thread's default (`metrics::set_default_local_recorder`): calls end on that thread, so the
//! tests do not share a global recorder.

mod support;

#[path = "../examples/prometheus.rs"]
#[allow(dead_code)]
mod example;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use llm_observability::metrics::{prometheus_builder, GenAiMetrics, OVERFLOW};
use llm_observability::{LlmCall, LlmObservabilityLayer, MemorySink};
use metrics_exporter_prometheus::{PrometheusHandle, PrometheusRecorder};
use support::backend::Backend;
use support::Interaction;

fn recorder() -> (PrometheusRecorder, PrometheusHandle) {
    let recorder = prometheus_builder().expect("buckets").build_recorder();
    let handle = recorder.handle();
    (recorder, handle)
}

fn layer_with(metrics: &GenAiMetrics) -> (LlmObservabilityLayer, MemorySink) {
    let memory = MemorySink::new();
    let layer = LlmObservabilityLayer::builder()
        .sink(memory.clone())
        .metrics(metrics.clone())
        .build()
        .expect("in a runtime");
    (layer, memory)
}

fn interaction(file: &str, index: usize) -> Interaction {
    support::load_interactions()
        .expect("the recorded fixtures (../shared/fixtures/openai-recorded)")
        .into_iter()
        .find(|i| i.file.contains(file) && i.index == index)
        .unwrap_or_else(|| panic!("fixture {file}#{index}"))
}

/// One frame per SSE event for streams, the whole body otherwise.
fn frames(interaction: &Interaction) -> Vec<Bytes> {
    if interaction.content_type.starts_with("text/event-stream") {
        interaction
            .response_body
            .split_inclusive("\n\n")
            .map(|e| Bytes::copy_from_slice(e.as_bytes()))
            .collect()
    } else {
        vec![Bytes::from(interaction.response_body.clone())]
    }
}

/// Sample lines of an exposition: `name{labels}` -> value.
fn samples(exposition: &str) -> BTreeMap<String, f64> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("`series value`");
            (series.to_owned(), value.parse().expect("a number"))
        })
        .collect()
}

/// The value of the one sample of `name` whose labels include every `labels` pair.
fn sample(exposition: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<(String, f64)> = samples(exposition)
        .into_iter()
        .filter(|(series, _)| {
            series.split('{').next() == Some(name)
                && labels
                    .iter()
                    .all(|(k, v)| series.contains(&format!("{k}=\"{v}\"")))
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one sample of {name} with {labels:?}, found {found:?} in\n{exposition}"
    );
    found[0].1
}

fn promtool_check(exposition: &str) {
    support::backend::install("prometheus");
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(exposition.as_bytes())
        .expect("write to promtool");
    let output = child.wait_with_output().expect("promtool ran");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && said.trim().is_empty(),
        "promtool check metrics found problems ({}):\n{said}\nin:\n{exposition}",
        output.status
    );
}

#[tokio::test(flavor = "current_thread")]
async fn exposition_after_recorded_calls_passes_promtool() {
    let (recorder, handle) = recorder();
    let _local = metrics::set_default_local_recorder(&recorder);
    let metrics = GenAiMetrics::new();
    let (layer, memory) = layer_with(&metrics);

    let streamed = interaction("test_streaming_with_api_usage_capture", 0);
    let cached = interaction("test_cached_tokens", 1);
    let failed = interaction("TestLM.test_exception_event_recorded_on_lm_error", 0);
    for recorded in [&streamed, &cached, &failed] {
        support::replay_tower(&layer, recorded, frames(recorded)).await;
    }
    let calls = support::flushed(&layer, &memory).await;
    assert_eq!(calls.len(), 3);
    metrics.record_dispatcher(layer.dispatcher());
    let exposition = handle.render();
    promtool_check(&exposition);

    // The values are those of the payloads.
    let find = |model: &str| -> Arc<LlmCall> {
        calls
            .iter()
            .find(|c| c.request.model.as_deref() == Some(model))
            .cloned()
            .unwrap_or_else(|| panic!("a call of {model}"))
    };
    let (stream, cache, error) = (find("deepseek-chat"), find("gpt-4o-mini"), find("gpt-4"));
    let usage = stream.usage.expect("the stream reported usage");
    assert_eq!(
        (usage.input_tokens, usage.output_tokens),
        (Some(12), Some(89))
    );
    let model = [("gen_ai_request_model", "deepseek-chat")];
    let input = [model[0], ("gen_ai_token_type", "input")];
    let output = [model[0], ("gen_ai_token_type", "output")];
    assert_eq!(
        sample(&exposition, "gen_ai_client_token_usage_sum", &input),
        12.0
    );
    assert_eq!(
        sample(&exposition, "gen_ai_client_token_usage_sum", &output),
        89.0
    );
    assert_eq!(
        sample(&exposition, "gen_ai_client_token_usage_count", &output),
        1.0
    );
    // 89 output tokens fall in the (64, 256] bucket of the conventions' boundaries.
    let le = |bound: &'static str| [model[0], ("gen_ai_token_type", "output"), ("le", bound)];
    assert_eq!(
        sample(&exposition, "gen_ai_client_token_usage_bucket", &le("64")),
        0.0
    );
    assert_eq!(
        sample(&exposition, "gen_ai_client_token_usage_bucket", &le("256")),
        1.0
    );
    let seconds = sample(
        &exposition,
        "gen_ai_client_operation_duration_seconds_sum",
        &model,
    );
    assert!((seconds - stream.timing.duration_ms / 1000.0).abs() < 1e-9);
    let ttft = stream.timing.time_to_first_token_ms.expect("a first chunk");
    let first = sample(
        &exposition,
        "gen_ai_client_operation_time_to_first_chunk_seconds_sum",
        &model,
    );
    assert!((first - ttft / 1000.0).abs() < 1e-9);
    // Not streamed: no time to first chunk.
    assert!(!exposition.contains(
        "gen_ai_client_operation_time_to_first_chunk_seconds_count{gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"openai\",gen_ai_request_model=\"gpt-4o-mini\""
    ));
    // Cached input tokens, from the payload.
    let cached_tokens = cache
        .usage
        .and_then(|u| u.cached_input_tokens)
        .expect("cached tokens in the fixture");
    assert_eq!(cached_tokens, 1280);
    assert_eq!(
        sample(
            &exposition,
            "llm_observability_usage_cached_input_tokens_total",
            &[("gen_ai_request_model", "gpt-4o-mini")]
        ),
        cached_tokens as f64
    );
    // The failed call: counted by status and error type, on the duration histogram too.
    let error_type = error.error_type.as_deref().expect("an error type");
    let failure = [
        ("gen_ai_request_model", "gpt-4"),
        ("llm_observability_status", "error"),
        ("error_type", error_type),
    ];
    assert_eq!(
        sample(&exposition, "llm_observability_requests_total", &failure),
        1.0
    );
    assert_eq!(
        sample(
            &exposition,
            "gen_ai_client_operation_duration_seconds_count",
            &[
                ("gen_ai_request_model", "gpt-4"),
                ("error_type", error_type)
            ]
        ),
        1.0
    );
    let success = [
        ("gen_ai_request_model", "deepseek-chat"),
        ("llm_observability_status", "success"),
    ];
    assert_eq!(
        sample(&exposition, "llm_observability_requests_total", &success),
        1.0
    );
    // The dispatcher's health.
    assert_eq!(
        sample(
            &exposition,
            "llm_observability_dispatcher_observed_calls_total",
            &[]
        ),
        3.0
    );
    let delivered = [("sink", "memory"), ("outcome", "delivered")];
    assert_eq!(
        sample(
            &exposition,
            "llm_observability_sink_calls_total",
            &delivered
        ),
        3.0
    );
    assert_eq!(
        sample(
            &exposition,
            "llm_observability_sink_pending_calls",
            &[("sink", "memory")]
        ),
        0.0
    );
}

/// Asks Prometheus' HTTP API for `query`; the value of its single series, when there is one.
async fn query_one(client: &reqwest::Client, prometheus: &str, query: &str) -> Option<f64> {
    let answer: serde_json::Value = client
        .get(format!("{prometheus}/api/v1/query"))
        .query(&[("query", query)])
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    assert_eq!(answer["status"], "success", "{query}: {answer}");
    let result = answer["data"]["result"].as_array()?;
    match result.as_slice() {
        [] => None,
        [one] => one["value"][1].as_str()?.parse().ok(),
        many => panic!("{query} matched {} series: {answer}", many.len()),
    }
}

/// Polls until Prometheus has scraped `query` to `expected` (within `tolerance`).
async fn until_scraped(prometheus: &str, query: &str, expected: f64, tolerance: f64) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = None;
    while Instant::now() < deadline {
        last = query_one(&client, prometheus, query).await;
        if last.is_some_and(|v| (v - expected).abs() <= tolerance) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("Prometheus answered {last:?} for {query}, expected {expected}");
}

#[tokio::test(flavor = "current_thread")]
async fn prometheus_scrapes_the_example_app() {
    let (recorder, handle) = recorder();
    let _local = metrics::set_default_local_recorder(&recorder);
    let metrics = GenAiMetrics::new();
    let (layer, memory) = layer_with(&metrics);
    let app = example::app(&layer, metrics.clone(), handle);
    let addr = support::serve(app).await;

    let target = addr.to_string();
    let prometheus = tokio::task::spawn_blocking(move || {
        Backend::start_with(
            "prometheus",
            Duration::from_secs(120),
            &[("SCRAPE_TARGET", target.as_str())],
        )
    })
    .await
    .expect("start prometheus");
    let api = format!("http://127.0.0.1:{}", prometheus.port);

    example::known_calls(&format!("http://{addr}"))
        .await
        .expect("the example's calls");
    let calls = support::flushed(&layer, &memory).await;
    assert_eq!(calls.len(), 3);
    let find = |model: &str| {
        calls
            .iter()
            .find(|c| c.request.model.as_deref() == Some(model))
            .cloned()
            .unwrap_or_else(|| panic!("a call of {model}"))
    };
    let streamed = find("gpt-4o-mini");
    let plain = find("gpt-4o");
    let failed = find("does-not-exist");

    for (call, kind, count) in [
        (
            &streamed,
            "input",
            streamed.usage.and_then(|u| u.input_tokens),
        ),
        (
            &streamed,
            "output",
            streamed.usage.and_then(|u| u.output_tokens),
        ),
        (&plain, "input", plain.usage.and_then(|u| u.input_tokens)),
        (&plain, "output", plain.usage.and_then(|u| u.output_tokens)),
    ] {
        let count = count.expect("the mock reports usage") as f64;
        assert!(count > 0.0);
        let model = call.request.model.as_deref().expect("model");
        let selector = format!("{{gen_ai_request_model=\"{model}\",gen_ai_token_type=\"{kind}\"}}");
        until_scraped(
            &api,
            &format!("gen_ai_client_token_usage_sum{selector}"),
            count,
            0.0,
        )
        .await;
        until_scraped(
            &api,
            &format!("gen_ai_client_token_usage_count{selector}"),
            1.0,
            0.0,
        )
        .await;
    }
    for call in [&streamed, &plain, &failed] {
        let model = call.request.model.as_deref().expect("model");
        let selector = format!("{{gen_ai_request_model=\"{model}\"}}");
        until_scraped(
            &api,
            &format!("gen_ai_client_operation_duration_seconds_sum{selector}"),
            call.timing.duration_ms / 1000.0,
            1e-9,
        )
        .await;
    }
    until_scraped(
        &api,
        "sum(gen_ai_client_operation_duration_seconds_count)",
        3.0,
        0.0,
    )
    .await;
    let error_type = failed.error_type.as_deref().expect("an error type");
    until_scraped(
        &api,
        &format!(
            "llm_observability_requests_total{{llm_observability_status=\"error\",error_type=\"{error_type}\"}}"
        ),
        1.0,
        0.0,
    )
    .await;
    let ttft = streamed.timing.time_to_first_token_ms.expect("streamed") / 1000.0;
    until_scraped(
        &api,
        "gen_ai_client_operation_time_to_first_chunk_seconds_sum{gen_ai_request_model=\"gpt-4o-mini\"}",
        ttft,
        1e-9,
    )
    .await;
    until_scraped(
        &api,
        "llm_observability_sink_calls_total{sink=\"memory\",outcome=\"delivered\"}",
        3.0,
        0.0,
    )
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn ten_thousand_models_keep_the_series_capped() {
    let (recorder, handle) = recorder();
    let _local = metrics::set_default_local_recorder(&recorder);
    let metrics = GenAiMetrics::new();
    let (layer, _memory) = layer_with(&metrics);
    const REPLY: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#;
    for i in 0..10_000 {
        let body =
            format!(r#"{{"model":"model-{i}","messages":[{{"role":"user","content":"hi"}}]}}"#);
        let request = Request::post("http://api.example.test/v1/chat/completions")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("request");
        support::through_json_upstream(&layer, request, REPLY).await;
    }
    let exposition = handle.render();
    let series = samples(&exposition);
    let requests: Vec<_> = series
        .iter()
        .filter(|(s, _)| s.starts_with("llm_observability_requests_total{"))
        .collect();
    // 100 admitted models, and `other` for the 9,900 others.
    assert_eq!(requests.len(), 101, "{requests:?}");
    assert_eq!(
        sample(
            &exposition,
            "llm_observability_requests_total",
            &[("gen_ai_request_model", OVERFLOW)]
        ),
        9_900.0
    );
    assert_eq!(
        sample(
            &exposition,
            "llm_observability_requests_total",
            &[("gen_ai_request_model", "model-0")]
        ),
        1.0
    );
    assert!(!exposition.contains("model-100\""));
    // Every metric is bounded the same way: per token type, 101 histograms of 14 buckets,
    // +Inf, sum and count.
    let token_series = series
        .keys()
        .filter(|s| s.starts_with("gen_ai_client_token_usage"))
        .count();
    assert_eq!(token_series, 2 * 101 * (14 + 3));
    // In all: per model value, one request counter, two token histograms and one duration
    // histogram (no stream, no cached tokens): 101 x 52 series, whatever the number of models.
    assert_eq!(series.len(), 101 * (1 + 2 * 17 + 17), "{exposition}");
}

#[tokio::test(flavor = "current_thread")]
async fn user_labels_only_by_opt_in() {
    let (recorder, handle) = recorder();
    let _local = metrics::set_default_local_recorder(&recorder);
    let plain = GenAiMetrics::new();
    let with_user = GenAiMetrics::builder()
        .label_cap(2)
        .metadata_label("user_id", "user")
        .build();
    let mut call = LlmCall::new(llm_observability::Endpoint::ChatCompletions);
    call.request.model = Some("gpt-4o".into());
    call.metadata.insert("user_id".into(), "alice".into());
    plain.record(&call);
    assert!(!handle.render().contains("alice"));
    for user in ["alice", "bob", "carol", "dave"] {
        call.metadata.insert("user_id".into(), user.into());
        with_user.record(&call);
    }
    let exposition = handle.render();
    for (user, count) in [("alice", 1.0), ("bob", 1.0), (OVERFLOW, 2.0)] {
        assert_eq!(
            sample(
                &exposition,
                "llm_observability_requests_total",
                &[("user", user)]
            ),
            count
        );
    }
    assert!(!exposition.contains("carol"));
}

#[tokio::test(flavor = "current_thread")]
async fn cost_of_priced_calls_is_counted() {
    let (recorder, handle) = recorder();
    let _local = metrics::set_default_local_recorder(&recorder);
    let metrics = GenAiMetrics::new();
    let memory = MemorySink::new();
    // $1 per million input tokens, $2 per million output tokens.
    let pricing = llm_observability::Pricing::empty().with_price(
        "deepseek-chat",
        llm_observability::ModelPrice::per_million(1.0, None, 2.0),
    );
    let layer = LlmObservabilityLayer::builder()
        .pricing(pricing)
        .sink(memory.clone())
        .metrics(metrics.clone())
        .build()
        .expect("in a runtime");
    let streamed = interaction("test_streaming_with_api_usage_capture", 0);
    for _ in 0..3 {
        support::replay_tower(&layer, &streamed, frames(&streamed)).await;
    }
    let calls = support::flushed(&layer, &memory).await;
    assert_eq!(calls.len(), 3);
    let cost = calls[0].cost.as_ref().expect("priced").total_usd;
    // 12 input and 89 output tokens: 12 x $1e-6 + 89 x $2e-6 = $0.00019 per call.
    assert!((cost - 0.000_19).abs() < 1e-12, "{cost}");
    let exposition = handle.render();
    promtool_check(&exposition);
    assert_eq!(
        sample(
            &exposition,
            "llm_observability_cost_nano_usd_total",
            &[("gen_ai_request_model", "deepseek-chat")]
        ),
        3.0 * 190_000.0
    );
}

/// The value of the sample of `name` whose labels include every `labels` pair, if there is
/// one (at most one may match).
fn optional_sample(exposition: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<f64> = samples(exposition)
        .into_iter()
        .filter(|(series, _)| {
            series.split('{').next() == Some(name)
                && labels
                    .iter()
                    .all(|(k, v)| series.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|(_, value)| value)
        .collect();
    assert!(found.len() <= 1, "{name} with {labels:?}: {found:?}");
    found.first().copied()
}

/// Recorded calls of every API family (Anthropic: streamed tool calls, streamed thinking, a
/// cache write, a cache read; a streamed Gemini call with function calls and reasoning tokens;
/// a Bedrock converse-stream with a tool use; a streamed Ollama chat with thinking) give token
/// usage by provider (`anthropic`, `gcp.gemini`, `aws.bedrock`, `ollama`), operation and
/// models, with input counting the cache (the conventions' rule) and output the reasoning, and
/// the cache reads and writes and the reasoning tokens in their own counters where the
/// recording reports them; the exposition passes `promtool check metrics`.
#[tokio::test(flavor = "current_thread")]
async fn recorded_calls_of_every_family_count_tokens_by_provider_with_cache_and_reasoning_apart() {
    let Some(cases) = support::calls::provider_cases() else {
        return;
    };
    let (recorder, handle) = recorder();
    let _local = metrics::set_default_local_recorder(&recorder);
    let metrics = GenAiMetrics::new();
    let (layer, memory) = layer_with(&metrics);
    let sent = support::calls::send_each(&layer, &memory, &cases).await;
    assert_eq!(sent.len(), cases.len());
    let exposition = handle.render();
    promtool_check(&exposition);
    type Series<'a> = (&'a str, &'a str, &'a str, Option<&'a str>);
    let series: std::collections::BTreeSet<Series<'_>> = cases
        .iter()
        .map(|c| {
            (
                c.provider,
                c.operation,
                c.expect.request_model.as_str(),
                c.expect.response_model.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        series
            .iter()
            .map(|s| s.0)
            .collect::<std::collections::BTreeSet<_>>(),
        ["anthropic", "aws.bedrock", "gcp.gemini", "ollama"].into()
    );
    for (provider, operation, request_model, response_model) in series {
        let of: Vec<_> = cases
            .iter()
            .filter(|c| {
                c.provider == provider
                    && c.expect.request_model == request_model
                    && c.expect.response_model.as_deref() == response_model
            })
            .collect();
        let total = |f: fn(&support::calls::ProviderExpect) -> u64| -> f64 {
            of.iter().map(|c| f(&c.expect) as f64).sum()
        };
        let total_of = |f: fn(&support::calls::ProviderExpect) -> Option<u64>| -> Option<f64> {
            of.iter()
                .filter_map(|c| f(&c.expect))
                .map(|n| n as f64)
                .reduce(|a, b| a + b)
        };
        let mut labels = vec![
            ("gen_ai_provider_name", provider),
            ("gen_ai_operation_name", operation),
            ("gen_ai_request_model", request_model),
        ];
        if let Some(model) = response_model {
            labels.push(("gen_ai_response_model", model));
        }
        let with = |extra: (&'static str, &'static str)| {
            let mut labels = labels.clone();
            labels.push(extra);
            labels
        };
        let at = format!("{provider} {request_model}");
        assert_eq!(
            sample(
                &exposition,
                "gen_ai_client_token_usage_sum",
                &with(("gen_ai_token_type", "input"))
            ),
            total(|e| e.input_tokens),
            "{at}"
        );
        assert_eq!(
            sample(
                &exposition,
                "gen_ai_client_token_usage_count",
                &with(("gen_ai_token_type", "output"))
            ),
            of.len() as f64,
            "{at}"
        );
        assert_eq!(
            sample(
                &exposition,
                "gen_ai_client_token_usage_sum",
                &with(("gen_ai_token_type", "output"))
            ),
            total(|e| e.output_tokens),
            "{at}"
        );
        assert_eq!(
            optional_sample(
                &exposition,
                "llm_observability_usage_cached_input_tokens_total",
                &labels
            ),
            total_of(|e| e.cache_read),
            "{at}"
        );
        assert_eq!(
            optional_sample(
                &exposition,
                "llm_observability_usage_cache_creation_input_tokens_total",
                &labels
            ),
            total_of(|e| e.cache_creation),
            "{at}"
        );
        assert_eq!(
            optional_sample(
                &exposition,
                "llm_observability_usage_reasoning_tokens_total",
                &labels
            ),
            total_of(|e| e.reasoning_tokens),
            "{at}"
        );
        assert_eq!(
            sample(
                &exposition,
                "llm_observability_requests_total",
                &with(("llm_observability_status", "success"))
            ),
            of.len() as f64,
            "{at}"
        );
    }
}
