//! The Langfuse preset against an in-process OTLP receiver (Langfuse's server needs ClickHouse,
//! which cannot run here): the receiver decodes the protobuf with `opentelemetry-proto` and the
//! tests check the endpoint path, both headers and every attribute Langfuse reads. The mapping
//! tests (`langfuse_attributes_*`) check the attributes of every recorded call, with no server.

mod support;

use std::sync::Arc;
use std::time::Duration;

use llm_observability::genai::AttributeValue;
use llm_observability::sink::otlp::{find_attribute, langfuse, PresetAttribute};
use llm_observability::{
    CallMetadata, LlmCall, LlmObservabilityLayer, MemorySink, ModelPrice, OtlpSink, Pricing,
};
use opentelemetry_proto::tonic::common::v1::any_value;
use serde_json::{json, Value};
use support::calls::Served;
use support::otlp_receiver::{OtlpReceiver, ReceivedSpan};
use support::Interaction;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// `base64("pk-lf-test:sk-lf-test")`, worked out apart from the code under test.
const BASIC: &str = "Basic cGstbGYtdGVzdDpzay1sZi10ZXN0";

fn fixture(path_part: &str, index: usize) -> Interaction {
    support::load_interactions()
        .expect("the recorded fixtures (shared/fixtures/openai-recorded) are needed")
        .into_iter()
        .find(|i| i.file.contains(path_part) && i.index == index)
        .unwrap_or_else(|| panic!("no recorded interaction {path_part}#{index}"))
}

fn layer(receiver: &OtlpReceiver) -> (LlmObservabilityLayer, MemorySink) {
    let sink = OtlpSink::langfuse()
        .environment(|_| None)
        .host(receiver.base_url())
        .public_key("pk-lf-test")
        .secret_key("sk-lf-test")
        .build()
        .expect("the Langfuse preset builds");
    let memory = MemorySink::new();
    let layer = LlmObservabilityLayer::builder()
        .pricing(deepseek_pricing())
        .sink(sink)
        .sink(memory.clone())
        .build()
        .expect("inside a runtime");
    (layer, memory)
}

/// Prices for `deepseek-chat` only (USD per million tokens): calls of other models have no cost.
fn deepseek_pricing() -> Pricing {
    Pricing::empty().with_price(
        "deepseek-chat",
        ModelPrice::per_million(0.27, Some(0.07), 1.10),
    )
}

/// Replays `recorded` (with `metadata`) through `layer`, flushes, and returns the call and
/// the one span the receiver got.
async fn replay<S: Served + ?Sized>(
    receiver: &OtlpReceiver,
    layer: &LlmObservabilityLayer,
    memory: &MemorySink,
    recorded: &S,
    metadata: CallMetadata,
) -> (Arc<LlmCall>, ReceivedSpan) {
    support::calls::send(layer, recorded, &[], Some(metadata)).await;
    layer
        .dispatcher()
        .flush(Duration::from_secs(10))
        .await
        .expect("flushed in time");
    let stats = layer.dispatcher().stats();
    for sink in &stats.sinks {
        assert_eq!(sink.failed + sink.dropped, 0, "{stats:?}");
    }
    let calls = memory.calls();
    assert_eq!(calls.len(), 1);
    let spans = receiver.wait_for_spans(1, Duration::from_secs(10)).await;
    assert_eq!(spans.len(), 1);
    (calls[0].clone(), spans[0].clone())
}

fn json_attribute(span: &ReceivedSpan, key: &str) -> Value {
    serde_json::from_str(span.string(key).unwrap_or_else(|| panic!("no {key}")))
        .unwrap_or_else(|e| panic!("{key} is not JSON: {e}"))
}

/// The assistant text of a recorded chat stream, assembled here from its `data:` lines.
fn streamed_text(body: &str) -> String {
    body.lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(str::trim)
        .filter(|data| *data != "[DONE]")
        .filter_map(|data| serde_json::from_str::<Value>(data).ok())
        .filter_map(|chunk| {
            chunk["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

#[tokio::test]
async fn a_streamed_generation_with_every_langfuse_attribute_and_both_headers() {
    let receiver = OtlpReceiver::start().await;
    let (layer, memory) = layer(&receiver);
    let interaction = fixture("test_streaming_with_api_usage_capture.yaml", 0);
    let metadata = CallMetadata::new()
        .with("user_id", "u-42")
        .with("session_id", "s-9")
        .with("tags", json!(["beta", "eu"]))
        .with("trace_name", "joke-bot")
        .with("tenant", "acme");
    let (call, span) = replay(&receiver, &layer, &memory, &interaction, metadata).await;

    // Where and how it was sent.
    let requests = receiver.requests();
    assert_eq!(requests.len(), 1);
    let sent = &requests[0];
    assert_eq!(sent.path, "/api/public/otel/v1/traces");
    assert_eq!(sent.headers["authorization"], BASIC);
    assert_eq!(sent.headers["x-langfuse-ingestion-version"], "4");
    assert_eq!(sent.headers["content-type"], "application/x-protobuf");

    // The span is the call.
    assert_eq!(span.trace_id_hex(), call.trace.trace_id.to_string());
    assert_eq!(span.span_id_hex(), call.trace.span_id.to_string());
    let request: Value = serde_json::from_str(&interaction.request_body).expect("JSON");
    assert_eq!(
        span.span.name,
        format!("chat {}", request["model"].as_str().unwrap())
    );

    // What Langfuse reads.
    assert_eq!(span.string("langfuse.observation.type"), Some("generation"));
    assert_eq!(
        span.string("langfuse.observation.model.name"),
        Some("deepseek-chat")
    );
    assert_eq!(
        json_attribute(&span, "langfuse.observation.model.parameters"),
        json!({"stream": true})
    );
    // Usage as the recorded stream reported it: 12 in (0 from the cache), 89 out, 101 in all.
    assert_eq!(
        json_attribute(&span, "langfuse.observation.usage_details"),
        json!({"input": 12, "input_cached_tokens": 0, "output": 89, "total": 101})
    );
    // Cost, priced by the layer: 12 input tokens at 0.27 and 89 output tokens at 1.10 per million.
    let cost = call.cost.as_ref().expect("priced");
    let details = json_attribute(&span, "langfuse.observation.cost_details");
    let expected_input = 12.0 * 0.27 / 1e6;
    let expected_output = 89.0 * 1.10 / 1e6;
    let close = |value: &Value, expected: f64| {
        let value = value.as_f64().expect("a number");
        assert!((value - expected).abs() < 1e-12, "{value} vs {expected}");
    };
    close(&details["input"], expected_input);
    close(&details["output"], expected_output);
    close(&details["input_cached_tokens"], 0.0);
    close(&details["total"], expected_input + expected_output);
    close(&details["total"], cost.total_usd);
    // Time to first token, as the time the first token came.
    let start = span
        .string("langfuse.observation.completion_start_time")
        .expect("set");
    let start = OffsetDateTime::parse(start, &Rfc3339).expect("RFC 3339");
    let ttft = call
        .timing
        .time_to_first_token_ms
        .expect("a streamed call has a TTFT");
    let expected = call.timing.start_time + time::Duration::seconds_f64(ttft / 1000.0);
    assert!(
        (start - expected).abs() < time::Duration::microseconds(1),
        "{start} vs {expected}"
    );
    assert!(start >= call.timing.start_time && start <= call.timing.end_time);
    // Input as sent, output as assembled from the stream.
    assert_eq!(
        json_attribute(&span, "langfuse.observation.input"),
        request["messages"]
    );
    let output = json_attribute(&span, "langfuse.observation.output");
    assert_eq!(output["role"], "assistant");
    assert_eq!(
        output["content"],
        json!(streamed_text(&interaction.response_body))
    );
    assert!(output["content"].as_str().unwrap().len() > 20);
    // Trace-level attributes.
    assert_eq!(span.string("user.id"), Some("u-42"));
    assert_eq!(span.string("session.id"), Some("s-9"));
    assert_eq!(span.string("langfuse.trace.name"), Some("joke-bot"));
    match span.attribute("langfuse.trace.tags") {
        Some(any_value::Value::ArrayValue(array)) => {
            let tags: Vec<_> = array
                .values
                .iter()
                .map(|v| match &v.value {
                    Some(any_value::Value::StringValue(s)) => s.as_str(),
                    other => panic!("a tag that is not a string: {other:?}"),
                })
                .collect();
            assert_eq!(tags, ["beta", "eu"]);
        }
        other => panic!("langfuse.trace.tags is not an array: {other:?}"),
    }
    assert_eq!(
        span.string("langfuse.observation.metadata.tenant"),
        Some("acme")
    );
    assert_eq!(span.attribute("langfuse.observation.level"), None);
    // The GenAI attributes are there as well.
    assert_eq!(span.string("gen_ai.request.model"), Some("deepseek-chat"));
    assert_eq!(
        span.attribute("gen_ai.usage.input_tokens"),
        Some(&any_value::Value::IntValue(12))
    );
    layer
        .dispatcher()
        .shutdown(Duration::from_secs(5))
        .await
        .ok();
}

#[tokio::test]
async fn cached_tokens_tools_and_a_root_trace_name() {
    let receiver = OtlpReceiver::start().await;
    let (layer, memory) = layer(&receiver);
    let interaction = fixture("test_tool_calls/test_cached_tokens.yaml", 1);
    let (call, span) = replay(
        &receiver,
        &layer,
        &memory,
        &interaction,
        CallMetadata::new(),
    )
    .await;
    let response: Value = serde_json::from_str(&interaction.response_body).expect("JSON");
    let usage = &response["usage"];
    let cached = usage["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .expect("the recording has cached tokens");
    assert!(cached > 0);
    let prompt = usage["prompt_tokens"].as_u64().unwrap();
    let completion = usage["completion_tokens"].as_u64().unwrap();
    let reasoning = usage["completion_tokens_details"]["reasoning_tokens"]
        .as_u64()
        .unwrap_or(0);
    let details = json_attribute(&span, "langfuse.observation.usage_details");
    assert_eq!(details["input"], json!(prompt - cached));
    assert_eq!(details["input_cached_tokens"], json!(cached));
    assert_eq!(details["output"], json!(completion - reasoning));
    assert_eq!(details["total"], usage["total_tokens"]);
    assert_eq!(
        span.string("langfuse.observation.model.name"),
        response["model"].as_str()
    );
    // A model the layer has no price for: no cost details.
    assert_eq!(call.cost, None);
    assert_eq!(span.attribute("langfuse.observation.cost_details"), None);
    // Not streamed: no first-token time.
    assert_eq!(
        span.attribute("langfuse.observation.completion_start_time"),
        None
    );
    // A root call names its trace after itself.
    assert_eq!(
        span.string("langfuse.trace.name"),
        Some(format!("chat {}", call.request.model.as_deref().unwrap()).as_str())
    );
    let output = json_attribute(&span, "langfuse.observation.output");
    assert_eq!(output, response["choices"][0]["message"]);
    layer
        .dispatcher()
        .shutdown(Duration::from_secs(5))
        .await
        .ok();
}

#[tokio::test]
async fn a_failed_call_is_an_error_level_generation() {
    let receiver = OtlpReceiver::start().await;
    let (layer, memory) = layer(&receiver);
    let interaction = fixture("test_exception_event_recorded_on_lm_error.yaml", 0);
    let (call, span) = replay(
        &receiver,
        &layer,
        &memory,
        &interaction,
        CallMetadata::new(),
    )
    .await;
    let recorded: Value = serde_json::from_str(&interaction.response_body).expect("JSON");
    assert_eq!(span.string("langfuse.observation.level"), Some("ERROR"));
    // The error message as recorded, with the API key it echoed scrubbed.
    let message = span
        .string("langfuse.observation.status_message")
        .expect("set");
    assert_eq!(
        Some(message),
        call.error.as_ref().and_then(|e| e.message.as_deref())
    );
    assert!(
        message.starts_with("Incorrect API key provided"),
        "{message}"
    );
    assert!(recorded["error"]["message"]
        .as_str()
        .unwrap()
        .contains("sk-fake-key"));
    assert!(!message.contains("sk-fake-key"), "{message}");
    assert_eq!(span.string("langfuse.observation.type"), Some("generation"));
    let output = json_attribute(&span, "langfuse.observation.output");
    assert_eq!(output["error"]["type"], recorded["error"]["type"]);
    assert_eq!(output["error"]["code"], recorded["error"]["code"]);
    layer
        .dispatcher()
        .shutdown(Duration::from_secs(5))
        .await
        .ok();
}

#[tokio::test]
async fn without_message_content_no_input_or_output_is_sent() {
    let receiver = OtlpReceiver::start().await;
    let sink = OtlpSink::langfuse()
        .environment(|_| None)
        .host(receiver.base_url())
        .public_key("pk-lf-test")
        .secret_key("sk-lf-test")
        .message_content(false)
        .build()
        .expect("builds");
    let memory = MemorySink::new();
    let layer = LlmObservabilityLayer::builder()
        .sink(sink)
        .sink(memory.clone())
        .build()
        .expect("inside a runtime");
    let interaction = fixture("test_chat/test_chat_tools.yaml", 0);
    let (_call, span) = replay(
        &receiver,
        &layer,
        &memory,
        &interaction,
        CallMetadata::new(),
    )
    .await;
    assert_eq!(span.attribute("langfuse.observation.input"), None);
    assert_eq!(span.attribute("langfuse.observation.output"), None);
    let keys: Vec<&str> = span
        .span
        .attributes
        .iter()
        .map(|kv| kv.key.as_str())
        .collect();
    assert!(
        !keys
            .iter()
            .any(|k| k.starts_with("gen_ai.input") || k.starts_with("gen_ai.output")),
        "{keys:?}"
    );
    assert_eq!(span.string("langfuse.observation.type"), Some("generation"));
    layer
        .dispatcher()
        .shutdown(Duration::from_secs(5))
        .await
        .ok();
}

// ---------------------------------------------------------------- the mapping, no server

fn text<'a>(attributes: &'a [PresetAttribute<'a>], key: &str) -> Option<&'a str> {
    match find_attribute(attributes, key)? {
        AttributeValue::Str(text) => Some(text),
        other => panic!("{key} is not a string: {other:?}"),
    }
}

/// Every recorded call through the layer: Langfuse's usage buckets add up to the reported
/// counts, the input is what the request sent, the level follows the status.
#[tokio::test]
async fn langfuse_attributes_of_every_recorded_call() {
    let Some(recorded) = support::recorded_calls().await else {
        return;
    };
    let mut checked = 0;
    for (interaction, request, call) in &recorded {
        let name = interaction.name();
        let attributes = langfuse::attributes(call, true);
        let kind = if interaction.uri.contains("/embeddings") {
            "embedding"
        } else {
            "generation"
        };
        assert_eq!(
            text(&attributes, "langfuse.observation.type"),
            Some(kind),
            "{name}"
        );
        if let Some(usage) = call.usage {
            let details: Value = serde_json::from_str(
                text(&attributes, "langfuse.observation.usage_details").unwrap(),
            )
            .unwrap();
            let bucket = |key: &str| details[key].as_u64().unwrap_or(0);
            if let Some(input) = usage.input_tokens {
                assert_eq!(
                    bucket("input") + bucket("input_cached_tokens"),
                    input,
                    "{name}"
                );
            }
            if let Some(output) = usage.output_tokens {
                assert_eq!(
                    bucket("output") + bucket("output_reasoning_tokens"),
                    output,
                    "{name}"
                );
            }
            if let Some(total) = usage.total_tokens {
                assert_eq!(bucket("total"), total, "{name}");
            }
        } else {
            assert_eq!(
                find_attribute(&attributes, "langfuse.observation.usage_details"),
                None,
                "{name}"
            );
        }
        let input = text(&attributes, "langfuse.observation.input")
            .map(|t| serde_json::from_str::<Value>(t).unwrap());
        if let Some(messages) = request.get("messages") {
            assert_eq!(input.as_ref(), Some(messages), "{name}");
        }
        let level = text(&attributes, "langfuse.observation.level");
        match call.status {
            llm_observability::CallStatus::Error => assert_eq!(level, Some("ERROR"), "{name}"),
            llm_observability::CallStatus::Cancelled => {
                assert_eq!(level, Some("WARNING"), "{name}")
            }
            llm_observability::CallStatus::Success => assert_eq!(level, None, "{name}"),
        }
        assert_eq!(
            text(&attributes, "langfuse.observation.completion_start_time").is_some(),
            call.timing.time_to_first_token_ms.is_some(),
            "{name}"
        );
        checked += 1;
    }
    assert!(checked >= 40, "only {checked} recorded calls checked");
}

// ---------------------------------------------------------------- the proxy's --langfuse flag

#[cfg(feature = "proxy")]
#[tokio::test]
async fn proxy_with_langfuse_flag_sends_each_call_with_the_keys_from_the_environment() {
    use support::proxy::{temp_jsonl, Proxy, PROXY};
    let receiver = OtlpReceiver::start().await;
    let interaction = fixture("test_chat/test_chat_tools.yaml", 0);
    let recorded = interaction.clone();
    let upstream = support::serve(axum::Router::new().fallback(move || {
        let recorded = recorded.clone();
        async move {
            http::Response::builder()
                .status(recorded.status)
                .header("content-type", "application/json")
                .body(axum::body::Body::from(recorded.response_body.clone()))
                .expect("valid response")
        }
    }))
    .await;
    let mut command = std::process::Command::new(PROXY);
    command
        .env("LANGFUSE_PUBLIC_KEY", "pk-lf-test")
        .env("LANGFUSE_SECRET_KEY", "sk-lf-test")
        .env_remove("LANGFUSE_HOST");
    let mut proxy = Proxy::start_command(
        command,
        &format!("http://{upstream}"),
        temp_jsonl(),
        &["--langfuse", &receiver.base_url()],
    )
    .await;
    let answer = reqwest::Client::new()
        .post(proxy.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(interaction.request_body.clone())
        .send()
        .await
        .expect("the proxy answers");
    assert_eq!(answer.status(), 200);
    let _ = answer.bytes().await;
    // Sent by the proxy on its own, within its batch interval.
    let spans = receiver.wait_for_spans(1, Duration::from_secs(10)).await;
    assert_eq!(spans.len(), 1);
    let sent = &receiver.requests()[0];
    assert_eq!(sent.path, "/api/public/otel/v1/traces");
    assert_eq!(sent.headers["authorization"], BASIC);
    assert_eq!(sent.headers["x-langfuse-ingestion-version"], "4");
    assert_eq!(
        spans[0].string("langfuse.observation.type"),
        Some("generation")
    );
    let request: Value = serde_json::from_str(&interaction.request_body).expect("JSON");
    assert_eq!(
        json_attribute(&spans[0], "langfuse.observation.input"),
        request["messages"]
    );
    proxy.terminate();
    assert!(
        proxy.wait().await,
        "the proxy exits cleanly:\n{}",
        proxy.log()
    );
}

#[cfg(feature = "proxy")]
#[test]
fn proxy_with_langfuse_flag_and_no_keys_does_not_start() {
    let output = std::process::Command::new(support::proxy::PROXY)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "http://127.0.0.1:9",
        ])
        .args(["--jsonl"])
        .arg(support::proxy::temp_jsonl())
        .args(["--langfuse", "http://127.0.0.1:9"])
        .env_remove("LANGFUSE_PUBLIC_KEY")
        .env_remove("LANGFUSE_SECRET_KEY")
        .output()
        .expect("the proxy runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--langfuse") && stderr.contains("LANGFUSE_PUBLIC_KEY"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty(), "it never listened");
}

/// Recorded calls of every API family (Anthropic: streamed tool calls, streamed thinking, a
/// cache write, a cache read; a streamed Gemini call with function calls and reasoning tokens;
/// a Bedrock converse-stream with a tool use; a streamed Ollama chat with thinking) become
/// generations with their provider and model, input (the messages as sent) and output (the
/// response as the recording reads: id, counts, text, reasoning, tool calls, finish reason;
/// for Gemini its candidate's content), and usage in Langfuse's priced buckets: `input`
/// without the cache, `input_cached_tokens` (reads) and `input_cache_creation` (writes) apart,
/// `output` without the reasoning and `output_reasoning_tokens` apart, with the cost of each
/// bucket of the priced model.
#[tokio::test]
async fn recorded_calls_of_every_family_with_usage_buckets_tool_calls_and_reasoning() {
    let Some(cases) = support::calls::provider_cases() else {
        return;
    };
    // Anthropic's list prices for claude-3-5-sonnet (USD per million): input 3, cache hits
    // 0.30, cache writes 3.75, output 15.
    let pricing = Pricing::empty().with_price(
        "claude-3-5-sonnet-20240620",
        ModelPrice::per_million_with_cache_write(3.0, Some(0.30), Some(3.75), 15.0),
    );
    for case in &cases {
        let receiver = OtlpReceiver::start().await;
        let sink = OtlpSink::langfuse()
            .environment(|_| None)
            .host(receiver.base_url())
            .public_key("pk-lf-test")
            .secret_key("sk-lf-test")
            .build()
            .expect("the Langfuse preset builds");
        let memory = MemorySink::new();
        let layer = LlmObservabilityLayer::builder()
            .pricing(pricing.clone())
            .sink(sink)
            .sink(memory.clone())
            .build()
            .expect("inside a runtime");
        let (_, span) = replay(&receiver, &layer, &memory, case, CallMetadata::new()).await;
        let (name, expect) = (case.name, &case.expect);
        assert_eq!(span.string("langfuse.observation.type"), Some("generation"));
        assert_eq!(
            span.string("langfuse.observation.model.name"),
            Some(expect.model()),
            "{name}"
        );
        assert_eq!(span.string("gen_ai.provider.name"), Some(case.provider));
        let mut usage = json!({
            "input": expect.uncached_input(),
            "output": expect.output_tokens - expect.reasoning_tokens.unwrap_or(0),
            "total": expect.total_tokens,
        });
        if let Some(read) = expect.cache_read {
            usage["input_cached_tokens"] = json!(read);
        }
        if let Some(written) = expect.cache_creation {
            usage["input_cache_creation"] = json!(written);
        }
        if let Some(reasoning) = expect.reasoning_tokens {
            usage["output_reasoning_tokens"] = json!(reasoning);
        }
        assert_eq!(
            json_attribute(&span, "langfuse.observation.usage_details"),
            usage,
            "{name}"
        );
        if expect.model() == "claude-3-5-sonnet-20240620" {
            let cost = json_attribute(&span, "langfuse.observation.cost_details");
            let close = |key: &str, want: f64| {
                let got = cost[key].as_f64().unwrap_or(f64::NAN);
                assert!((got - want).abs() < 1e-12, "{name} {key}: {got} vs {want}");
            };
            close("input", expect.uncached_input() as f64 * 3.0e-6);
            close(
                "input_cached_tokens",
                expect.cache_read.unwrap_or(0) as f64 * 0.30e-6,
            );
            close(
                "input_cache_creation",
                expect.cache_creation.unwrap_or(0) as f64 * 3.75e-6,
            );
            close("output", expect.output_tokens as f64 * 15.0e-6);
        } else {
            let cost = span.string("langfuse.observation.cost_details");
            assert_eq!(cost, None, "{name}: no price for {}", expect.model());
        }
        let input = json_attribute(&span, "langfuse.observation.input");
        let messages = case.messages_pointer();
        assert_eq!(
            input.pointer(messages),
            case.request.pointer(messages),
            "{name}"
        );
        let output = json_attribute(&span, "langfuse.observation.output");
        if case.provider == "gcp.gemini" {
            // What Google's SDK hands back as the answer: the candidate's content.
            assert_eq!(
                output, expect.response["candidates"][0]["content"],
                "{name}"
            );
        } else {
            case.assert_response(&output, name);
        }
        layer
            .dispatcher()
            .shutdown(Duration::from_secs(5))
            .await
            .ok();
    }
}
