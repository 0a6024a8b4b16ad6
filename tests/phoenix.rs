//! The Phoenix preset against a real `phoenix serve` (PyPI `arize-phoenix`, installed by
//! `scripts/backends/phoenix.sh`), read back through Phoenix's REST API.
//!
//! Phoenix binds its OTLP gRPC port on every interface whatever its host setting, so its
//! tests run in a private network namespace with loopback only: `phoenix_in_a_private_network`
//! re-runs this test binary under `unshare --net` with the ignored tests selected, and those
//! (`inside_*`) start Phoenix there and talk to it. Run alone outside the namespace, they fail
//! (the backend script refuses to start Phoenix).
//!
//! The mapping tests (`openinference_*`) run the recorded traffic through the layer and check
//! the OpenInference attributes against the recordings, with no server.

mod support;

use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use llm_observability::genai::AttributeValue;
use llm_observability::sink::otlp::{find_attribute, openinference, PresetAttribute};
use llm_observability::{
    CallMetadata, LlmCall, LlmObservabilityLayer, MemorySink, ModelPrice, OtlpSink, Pricing,
};
use serde_json::{json, Value};
use support::backend::Backend;
use support::calls::Served;
use support::Interaction;

/// Set (to `1`) in the re-run inside the namespace.
const INSIDE: &str = "LLM_OBS_PHOENIX_NETNS";

/// How many `inside_*` tests the re-run must pass.
const INSIDE_TESTS: usize = if cfg!(feature = "proxy") { 7 } else { 6 };

#[test]
fn phoenix_in_a_private_network() {
    if std::env::var_os(INSIDE).is_some() {
        return; // already inside: the ignored tests are the ones that run here
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let output = Command::new("unshare")
        .args([
            "--net",
            "--",
            "sh",
            "-c",
            "ip link set lo up && exec \"$0\" \"$@\"",
        ])
        .arg(&exe)
        .args(["--ignored", "--test-threads", "3", "--nocapture"])
        .env(INSIDE, "1")
        .output()
        .expect("unshare (util-linux) runs: the Phoenix tests need a private network namespace");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("--- inside the namespace ---\n{stdout}\n{stderr}");
    assert!(
        output.status.success(),
        "the Phoenix tests failed inside the namespace ({})",
        output.status
    );
    let expected = format!("test result: ok. {INSIDE_TESTS} passed; 0 failed");
    assert!(
        stdout.contains(&expected),
        "expected `{expected}` from the run inside the namespace"
    );
}

// ---------------------------------------------------------------- Phoenix and its REST API

fn assert_inside() {
    assert!(
        std::env::var_os(INSIDE).is_some(),
        "run through phoenix_in_a_private_network: Phoenix must not listen outside a private \
         network namespace"
    );
}

/// One Phoenix for the whole run inside the namespace.
fn phoenix() -> &'static Backend {
    static PHOENIX: OnceLock<Backend> = OnceLock::new();
    PHOENIX.get_or_init(|| Backend::start("phoenix", Duration::from_secs(240)))
}

fn project(test: &str) -> String {
    format!("llm-obs-{test}-{}", uuid::Uuid::new_v4().simple())
}

/// The layer a test sends its calls through: the Phoenix preset for `project`, and a memory
/// sink to learn each call's ids.
fn layer(project: &str) -> (LlmObservabilityLayer, MemorySink) {
    let sink = OtlpSink::phoenix(phoenix().base_url())
        .project(project)
        .build()
        .expect("the Phoenix preset builds");
    let memory = MemorySink::new();
    // Prices for deepseek-chat (USD per million tokens), the model of the streamed recording.
    let pricing = Pricing::empty().with_price(
        "deepseek-chat",
        ModelPrice::per_million(0.27, Some(0.07), 1.10),
    );
    let layer = LlmObservabilityLayer::builder()
        .pricing(pricing)
        .sink(sink)
        .sink(memory.clone())
        .build()
        .expect("inside a runtime");
    (layer, memory)
}

/// Every span of `project`, waiting (up to 60 s) until the span `span_id` is among them.
async fn spans_until(project: &str, span_id: &str) -> Vec<Value> {
    let url = format!("{}/v1/projects/{project}/spans", phoenix().base_url());
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    loop {
        if let Ok(response) = client.get(&url).send().await {
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            if status.is_success() {
                let body: Value = serde_json::from_str(&text).expect("Phoenix answers JSON");
                let spans = body["data"].as_array().cloned().unwrap_or_default();
                if spans.iter().any(|s| s["context"]["span_id"] == span_id) {
                    return spans;
                }
            }
            last = format!("{status}: {text}");
        }
        assert!(
            Instant::now() < deadline,
            "span {span_id} did not appear in Phoenix project {project} within 60 s (last answer \
             {last})\n{}",
            phoenix().log_tail()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn span_with<'a>(spans: &'a [Value], span_id: &str) -> &'a Value {
    spans
        .iter()
        .find(|s| s["context"]["span_id"] == span_id)
        .expect("the span is there")
}

// ---------------------------------------------------------------- calls through the layer

fn fixture(path_part: &str, index: usize) -> Interaction {
    support::load_interactions()
        .expect("the recorded fixtures (shared/fixtures/openai-recorded) are needed")
        .into_iter()
        .find(|i| i.file.contains(path_part) && i.index == index)
        .unwrap_or_else(|| panic!("no recorded interaction {path_part}#{index}"))
}

/// Sends `recorded`'s request through `layer` (with `headers` added) to an upstream that
/// answers the recorded response, reads the response to its end, flushes the sinks and returns
/// the recorded call.
async fn call<S: Served + ?Sized>(
    layer: &LlmObservabilityLayer,
    memory: &MemorySink,
    recorded: &S,
    headers: &[(&str, &str)],
    metadata: Option<CallMetadata>,
) -> Arc<LlmCall> {
    let before = memory.calls().len();
    support::calls::send(layer, recorded, headers, metadata).await;
    layer
        .dispatcher()
        .flush(Duration::from_secs(30))
        .await
        .expect("flushed in time");
    let stats = layer.dispatcher().stats();
    for sink in &stats.sinks {
        assert_eq!(sink.failed, 0, "a sink failed: {stats:?}");
        assert_eq!(sink.dropped, 0, "a sink dropped: {stats:?}");
    }
    let calls = memory.calls();
    assert_eq!(calls.len(), before + 1, "one call recorded");
    calls[before].clone()
}

fn attribute<'a>(span: &'a Value, key: &str) -> &'a Value {
    &span["attributes"][key]
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

// ---------------------------------------------------------------- inside the namespace

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs inside the private network namespace of phoenix_in_a_private_network"]
async fn inside_chat_call_with_tools_shows_kind_model_tokens_and_messages() {
    assert_inside();
    let project = project("chat");
    let (layer, memory) = layer(&project);
    let interaction = fixture("test_chat/test_chat_tools.yaml", 0);
    let metadata = CallMetadata::new()
        .with("user_id", "u-7")
        .with("session_id", "s-7")
        .with("tags", json!(["beta"]));
    let call = call(&layer, &memory, &interaction, &[], Some(metadata)).await;
    let span_id = call.trace.span_id.to_string();
    let spans = spans_until(&project, &span_id).await;
    let span = span_with(&spans, &span_id);
    let request: Value = serde_json::from_str(&interaction.request_body).expect("JSON request");
    let response: Value = serde_json::from_str(&interaction.response_body).expect("JSON response");

    assert_eq!(span["span_kind"], "LLM");
    assert_eq!(
        span["name"],
        format!("chat {}", request["model"].as_str().unwrap())
    );
    assert_eq!(span["context"]["trace_id"], call.trace.trace_id.to_string());
    assert_eq!(span["parent_id"], Value::Null);
    assert_eq!(span["status_code"], "UNSET");
    assert_eq!(attribute(span, "llm.model_name"), &response["model"]);
    assert_eq!(attribute(span, "llm.provider"), "openai");
    assert_eq!(attribute(span, "llm.system"), "openai");
    assert_eq!(
        attribute(span, "llm.token_count.prompt"),
        &response["usage"]["prompt_tokens"]
    );
    assert_eq!(
        attribute(span, "llm.token_count.completion"),
        &response["usage"]["completion_tokens"]
    );
    assert_eq!(
        attribute(span, "llm.token_count.total"),
        &response["usage"]["total_tokens"]
    );
    // The messages as sent, in order.
    let messages = request["messages"].as_array().expect("messages");
    for (i, message) in messages.iter().enumerate() {
        let at = |field: &str| attribute(span, &format!("llm.input_messages.{i}.message.{field}"));
        assert_eq!(at("role"), &message["role"], "input message {i}");
        assert_eq!(at("content"), &message["content"], "input message {i}");
    }
    // The answer: a tool call, its name and arguments as the model sent them.
    let answer = &response["choices"][0]["message"];
    let tool_call = &answer["tool_calls"][0];
    assert_eq!(
        attribute(span, "llm.output_messages.0.message.role"),
        "assistant"
    );
    assert_eq!(
        attribute(
            span,
            "llm.output_messages.0.message.tool_calls.0.tool_call.function.name"
        ),
        &tool_call["function"]["name"]
    );
    assert_eq!(
        attribute(
            span,
            "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments"
        ),
        &tool_call["function"]["arguments"]
    );
    assert_eq!(
        attribute(
            span,
            "llm.output_messages.0.message.tool_calls.0.tool_call.id"
        ),
        &tool_call["id"]
    );
    // The tool offered, as its JSON schema.
    let schema: Value = serde_json::from_str(
        attribute(span, "llm.tools.0.tool.json_schema")
            .as_str()
            .expect("a JSON string"),
    )
    .expect("JSON");
    assert_eq!(schema, request["tools"][0]);
    // Parameters, input and output values.
    let parameters: Value = serde_json::from_str(
        attribute(span, "llm.invocation_parameters")
            .as_str()
            .expect("a JSON string"),
    )
    .expect("JSON");
    assert_eq!(parameters["model"], request["model"]);
    assert!(parameters.get("messages").is_none(), "{parameters}");
    assert_eq!(attribute(span, "input.mime_type"), "application/json");
    assert_eq!(attribute(span, "output.mime_type"), "application/json");
    let output: Value =
        serde_json::from_str(attribute(span, "output.value").as_str().expect("text"))
            .expect("JSON");
    assert_eq!(
        output["choices"][0]["message"]["tool_calls"],
        answer["tool_calls"]
    );
    // Who and what for.
    assert_eq!(attribute(span, "user.id"), "u-7");
    assert_eq!(attribute(span, "session.id"), "s-7");
    assert_eq!(attribute(span, "tag.tags"), &json!(["beta"]));
    layer
        .dispatcher()
        .shutdown(Duration::from_secs(10))
        .await
        .ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs inside the private network namespace of phoenix_in_a_private_network"]
async fn inside_streamed_call_shows_its_assembled_output() {
    assert_inside();
    let project = project("stream");
    let (layer, memory) = layer(&project);
    let interaction = fixture("test_streaming_with_api_usage_capture.yaml", 0);
    let call = call(&layer, &memory, &interaction, &[], None).await;
    let span_id = call.trace.span_id.to_string();
    let spans = spans_until(&project, &span_id).await;
    let span = span_with(&spans, &span_id);
    let expected = streamed_text(&interaction.response_body);
    assert!(
        expected.len() > 20,
        "the recorded stream has text: {expected:?}"
    );
    assert_eq!(span["span_kind"], "LLM");
    assert_eq!(
        attribute(span, "llm.output_messages.0.message.content"),
        &json!(expected)
    );
    assert_eq!(
        attribute(span, "llm.output_messages.0.message.role"),
        "assistant"
    );
    let usage = call.usage.expect("the stream reported usage");
    assert_eq!(
        attribute(span, "llm.token_count.prompt"),
        &json!(usage.input_tokens.unwrap())
    );
    assert_eq!(
        attribute(span, "llm.token_count.completion"),
        &json!(usage.output_tokens.unwrap())
    );
    assert_eq!(
        (usage.input_tokens, usage.output_tokens),
        (Some(12), Some(89))
    );
    // Priced by the layer: 12 tokens in at 0.27, 89 out at 1.10 per million.
    let total = attribute(span, "llm.cost.total").as_f64().expect("a cost");
    assert!(
        (total - (12.0 * 0.27 + 89.0 * 1.10) / 1e6).abs() < 1e-12,
        "{total}"
    );
    let parameters: Value = serde_json::from_str(
        attribute(span, "llm.invocation_parameters")
            .as_str()
            .expect("a JSON string"),
    )
    .expect("JSON");
    assert_eq!(parameters["stream"], true);
    layer
        .dispatcher()
        .shutdown(Duration::from_secs(10))
        .await
        .ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs inside the private network namespace of phoenix_in_a_private_network"]
async fn inside_failed_call_has_error_status() {
    assert_inside();
    let project = project("error");
    let (layer, memory) = layer(&project);
    let interaction = fixture("test_exception_event_recorded_on_lm_error.yaml", 0);
    let call = call(&layer, &memory, &interaction, &[], None).await;
    let span_id = call.trace.span_id.to_string();
    let spans = spans_until(&project, &span_id).await;
    let span = span_with(&spans, &span_id);
    let recorded: Value = serde_json::from_str(&interaction.response_body).expect("JSON error");
    assert_eq!(interaction.status, 401);
    assert_eq!(span["status_code"], "ERROR");
    // The recorded message, with the API key it echoed scrubbed.
    let message = span["status_message"].as_str().expect("a status message");
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
    assert_eq!(span["span_kind"], "LLM");
    assert_eq!(attribute(span, "error.type"), &recorded["error"]["type"]);
    layer
        .dispatcher()
        .shutdown(Duration::from_secs(10))
        .await
        .ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs inside the private network namespace of phoenix_in_a_private_network"]
async fn inside_call_nests_under_the_app_span() {
    assert_inside();
    let project = project("nested");
    let (layer, memory) = layer(&project);
    // The application's own span, exported to Phoenix by the application (here: by hand).
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let app_span_id = "00f067aa0ba902b7";
    send_app_span(&project, trace_id, app_span_id).await;
    let interaction = fixture("test_chat/test_chat_tools.yaml", 0);
    let traceparent = format!("00-{trace_id}-{app_span_id}-01");
    let call = call(
        &layer,
        &memory,
        &interaction,
        &[("traceparent", &traceparent)],
        None,
    )
    .await;
    let span_id = call.trace.span_id.to_string();
    let spans = spans_until(&project, &span_id).await;
    let span = span_with(&spans, &span_id);
    assert_eq!(span["context"]["trace_id"], trace_id);
    assert_eq!(span["parent_id"], app_span_id);
    let app = span_with(&spans, app_span_id);
    assert_eq!(app["name"], "handle checkout");
    assert_eq!(app["parent_id"], Value::Null);
    assert_eq!(app["context"]["trace_id"], trace_id);
    layer
        .dispatcher()
        .shutdown(Duration::from_secs(10))
        .await
        .ok();
}

/// Exports one root span named `handle checkout` to Phoenix's OTLP endpoint, as an
/// application instrumented with OpenTelemetry would.
async fn send_app_span(project: &str, trace_id: &str, span_id: &str) {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span};
    use prost::Message;

    let hex = |text: &str| -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
            .collect()
    };
    let string = |key: &str, value: &str| KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos() as u64;
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    string("service.name", "checkout"),
                    string("openinference.project.name", project),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: hex(trace_id),
                    span_id: hex(span_id),
                    name: "handle checkout".into(),
                    kind: span::SpanKind::Server as i32,
                    start_time_unix_nano: now - 2_000_000_000,
                    end_time_unix_nano: now,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let response = reqwest::Client::new()
        .post(format!("{}/v1/traces", phoenix().base_url()))
        .header("content-type", "application/x-protobuf")
        .body(request.encode_to_vec())
        .send()
        .await
        .expect("Phoenix takes the app span");
    assert!(response.status().is_success(), "{}", response.status());
}

/// The `llm.system` and `llm.provider` Phoenix keeps for a call of `provider`: OpenInference's
/// values, where `llm.system` (the API's shape) names Anthropic only among these families —
/// OpenInference's own instrumentations of the Gemini API, Bedrock and Ollama write none, and
/// Phoenix's GenAI conversion maps `gcp.gemini` and `aws.bedrock` to no system either. For a
/// provider its conversion does not know (`ollama`), Phoenix fills the missing `llm.system`
/// with `gen_ai.provider.name` itself.
fn system_and_provider(provider: &str) -> (Option<&'static str>, &'static str) {
    match provider {
        "anthropic" => (Some("anthropic"), "anthropic"),
        "gcp.gemini" => (None, "google"),
        "aws.bedrock" => (None, "aws"),
        "ollama" => (Some("ollama"), "ollama"),
        other => panic!("no OpenInference names for {other}"),
    }
}

/// Recorded calls of every API family (Anthropic: streamed tool calls, streamed thinking, a
/// cache write, a cache read; a streamed Gemini call with function calls and reasoning tokens;
/// a Bedrock converse-stream with a tool use; a streamed Ollama chat with thinking) read back
/// from Phoenix as OpenInference LLM spans: system and provider under OpenInference's names,
/// the model that answered (else the one asked for), prompt tokens with the cache included,
/// the cache reads and writes and the reasoning tokens apart where reported, the input
/// messages as sent, the reasoning text as a `reasoning` content item, and the tool calls with
/// their ids and arguments as the recordings have them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs inside the private network namespace of phoenix_in_a_private_network"]
async fn inside_recorded_calls_of_every_family_show_counts_reasoning_and_tool_calls() {
    assert_inside();
    let Some(cases) = support::calls::provider_cases() else {
        return;
    };
    let project = project("providers");
    let (layer, memory) = layer(&project);
    for case in &cases {
        let call = call(&layer, &memory, case, &[], None).await;
        let (label, expect) = (case.name, &case.expect);
        let span_id = call.trace.span_id.to_string();
        let spans = spans_until(&project, &span_id).await;
        let span = span_with(&spans, &span_id);
        let at = |key: &str| attribute(span, key);
        let count = |key: &str| at(key).as_u64();
        let (system, provider) = system_and_provider(case.provider);
        assert_eq!(span["span_kind"], "LLM", "{label}");
        assert_eq!(at("llm.system").as_str(), system, "{label}");
        assert_eq!(at("llm.provider"), provider, "{label}");
        assert_eq!(at("llm.model_name"), expect.model(), "{label}");
        assert_eq!(
            count("llm.token_count.prompt"),
            Some(expect.input_tokens),
            "{label}"
        );
        assert_eq!(
            count("llm.token_count.completion"),
            Some(expect.output_tokens),
            "{label}"
        );
        assert_eq!(
            count("llm.token_count.total"),
            Some(expect.total_tokens),
            "{label}"
        );
        assert_eq!(
            count("llm.token_count.prompt_details.cache_read"),
            expect.cache_read,
            "{label}"
        );
        assert_eq!(
            count("llm.token_count.prompt_details.cache_write"),
            expect.cache_creation,
            "{label}"
        );
        assert_eq!(
            count("llm.token_count.completion_details.reasoning"),
            expect.reasoning_tokens,
            "{label}"
        );
        let messages = case
            .request
            .pointer(case.messages_pointer())
            .and_then(Value::as_array)
            .expect("the request's messages");
        // System instructions first, then the messages as sent.
        let system_sent = ["system", "systemInstruction"]
            .iter()
            .any(|key| case.request.get(*key).is_some());
        let first = usize::from(system_sent);
        if system_sent {
            assert_eq!(at("llm.input_messages.0.message.role"), "system");
        }
        assert_eq!(
            at(&format!("llm.input_messages.{first}.message.role")),
            &messages[0]["role"],
            "{label}"
        );
        let past = first + messages.len();
        assert_eq!(
            at(&format!("llm.input_messages.{past}.message.role")),
            &Value::Null,
            "{label}: one input message per message sent"
        );
        let out = "llm.output_messages.0.message.";
        assert_eq!(at(&format!("{out}role")), "assistant");
        // Text and reasoning: in `contents` when the answer has reasoning, else `content`.
        let (mut text, mut reasoning) = (String::new(), String::new());
        for k in 0.. {
            let item = format!("{out}contents.{k}.message_content.");
            match at(&format!("{item}type")).as_str() {
                Some("text") => text.push_str(at(&format!("{item}text")).as_str().unwrap()),
                Some("reasoning") => {
                    reasoning.push_str(at(&format!("{item}text")).as_str().unwrap())
                }
                Some(other) => panic!("{label}: unexpected content item {other}"),
                None => break,
            }
        }
        if let Some(content) = at(&format!("{out}content")).as_str() {
            text.push_str(content);
        }
        assert_eq!(text, expect.text, "{label}");
        assert_eq!(reasoning, expect.reasoning, "{label}");
        for (j, (id, name, input)) in expect.tool_calls.iter().enumerate() {
            let tool = format!("{out}tool_calls.{j}.tool_call.");
            assert_eq!(at(&format!("{tool}id")), id.as_str(), "{label}");
            assert_eq!(at(&format!("{tool}function.name")), name.as_str());
            let arguments: Value = serde_json::from_str(
                at(&format!("{tool}function.arguments"))
                    .as_str()
                    .expect("arguments as a JSON string"),
            )
            .expect("JSON arguments");
            assert_eq!(&arguments, input, "{label}");
        }
        let n = expect.tool_calls.len();
        assert_eq!(
            at(&format!("{out}tool_calls.{n}.tool_call.function.name")),
            &Value::Null,
            "{label}"
        );
        assert_eq!(
            at("llm.finish_reason"),
            expect.finish_reason.as_str(),
            "{label}"
        );
    }
    layer
        .dispatcher()
        .shutdown(Duration::from_secs(10))
        .await
        .ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs inside the private network namespace of phoenix_in_a_private_network"]
async fn inside_embeddings_call_is_an_embedding_span() {
    assert_inside();
    let project = project("embeddings");
    let (layer, memory) = layer(&project);
    let interaction = fixture("test_embeddings/test_embeddings.yaml", 0);
    let call = call(&layer, &memory, &interaction, &[], None).await;
    let span_id = call.trace.span_id.to_string();
    let spans = spans_until(&project, &span_id).await;
    let span = span_with(&spans, &span_id);
    let request: Value = serde_json::from_str(&interaction.request_body).expect("JSON request");
    let response: Value = serde_json::from_str(&interaction.response_body).expect("JSON response");
    assert_eq!(span["span_kind"], "EMBEDDING");
    assert_eq!(attribute(span, "embedding.model_name"), &response["model"]);
    let first_input = match &request["input"] {
        Value::Array(items) => items[0].clone(),
        one => one.clone(),
    };
    if first_input.is_string() {
        assert_eq!(
            attribute(span, "embedding.embeddings.0.embedding.text"),
            &first_input
        );
    }
    assert_eq!(
        attribute(span, "llm.token_count.prompt"),
        &response["usage"]["prompt_tokens"]
    );
    layer
        .dispatcher()
        .shutdown(Duration::from_secs(10))
        .await
        .ok();
}

#[cfg(feature = "proxy")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs inside the private network namespace of phoenix_in_a_private_network"]
async fn inside_proxy_with_phoenix_flag_sends_each_call() {
    use http::Response;
    use std::collections::HashSet;
    use support::proxy::Proxy;
    assert_inside();
    let project = project("proxy");
    let interaction = fixture("test_chat/test_chat_tools.yaml", 0);
    let recorded = interaction.clone();
    let upstream = support::serve(axum::Router::new().fallback(move || {
        let recorded = recorded.clone();
        async move {
            Response::builder()
                .status(recorded.status)
                .header("content-type", "application/json")
                .body(axum::body::Body::from(recorded.response_body.clone()))
                .expect("valid response")
        }
    }))
    .await;
    let base = phoenix().base_url();
    let proxy = Proxy::start(
        &format!("http://{upstream}"),
        &["--phoenix", &base, "--phoenix-project", &project],
    )
    .await;
    let client = reqwest::Client::new();
    for _ in 0..2 {
        let answer = client
            .post(proxy.url("/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(interaction.request_body.clone())
            .send()
            .await
            .expect("the proxy answers");
        assert_eq!(answer.status(), 200);
        let _ = answer.bytes().await;
    }
    // Both calls appear in the project (no flush asked: the proxy sends on its own).
    let url = format!("{base}/v1/projects/{project}/spans");
    let deadline = Instant::now() + Duration::from_secs(30);
    let traces: HashSet<String> = loop {
        let body: Value = match client.get(&url).send().await {
            Ok(r) if r.status().is_success() => r.json().await.unwrap_or(Value::Null),
            _ => Value::Null,
        };
        let traces: HashSet<String> = body["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["span_kind"] == "LLM")
            .filter_map(|s| s["context"]["trace_id"].as_str().map(str::to_owned))
            .collect();
        if traces.len() == 2 {
            break traces;
        }
        assert!(
            Instant::now() < deadline,
            "the proxy's calls did not appear in Phoenix: {body}\n{}",
            proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(traces.len(), 2);
}

// ---------------------------------------------------------------- the mapping, no server

fn text<'a>(attributes: &'a [PresetAttribute<'a>], key: &str) -> Option<&'a str> {
    match find_attribute(attributes, key)? {
        AttributeValue::Str(text) => Some(text),
        other => panic!("{key} is not a string: {other:?}"),
    }
}

fn int(attributes: &[PresetAttribute<'_>], key: &str) -> Option<i64> {
    match find_attribute(attributes, key)? {
        AttributeValue::Int(n) => Some(*n),
        other => panic!("{key} is not an integer: {other:?}"),
    }
}

/// Every recorded call through the layer: the OpenInference attributes say what the recording
/// says (kind, tokens, the request's messages, a non-streamed answer).
#[tokio::test]
async fn openinference_attributes_of_every_recorded_call() {
    let Some(recorded) = support::recorded_calls().await else {
        return;
    };
    let mut checked = 0;
    for (interaction, request, call) in &recorded {
        let name = interaction.name();
        let attributes = openinference::attributes(call, true);
        let kind = if interaction.uri.contains("/embeddings") {
            "EMBEDDING"
        } else {
            "LLM"
        };
        assert_eq!(
            text(&attributes, "openinference.span.kind"),
            Some(kind),
            "{name}"
        );
        let usage = call.usage.unwrap_or_default();
        let as_i64 = |n: Option<u64>| n.map(|n| n as i64);
        assert_eq!(
            int(&attributes, "llm.token_count.prompt"),
            as_i64(usage.input_tokens),
            "{name}"
        );
        assert_eq!(
            int(&attributes, "llm.token_count.completion"),
            as_i64(usage.output_tokens),
            "{name}"
        );
        assert_eq!(
            int(&attributes, "llm.token_count.prompt_details.cache_read"),
            as_i64(usage.cached_input_tokens),
            "{name}"
        );
        assert_eq!(
            int(&attributes, "llm.token_count.completion_details.reasoning"),
            as_i64(usage.reasoning_tokens),
            "{name}"
        );
        // Chat messages: system ones first, then the others in order, roles as sent.
        if let Some(messages) = request["messages"].as_array() {
            let is_system = |m: &&Value| matches!(m["role"].as_str(), Some("system" | "developer"));
            let has_system = messages.iter().any(|m| is_system(&m));
            let others: Vec<&Value> = messages.iter().filter(|m| !is_system(m)).collect();
            let offset = usize::from(has_system);
            if has_system {
                assert_eq!(
                    text(&attributes, "llm.input_messages.0.message.role"),
                    Some("system"),
                    "{name}"
                );
            }
            for (i, message) in others.iter().enumerate() {
                let key = format!("llm.input_messages.{}.message.role", i + offset);
                assert_eq!(text(&attributes, &key), message["role"].as_str(), "{name}");
                if let Some(content) = message["content"].as_str() {
                    let key = format!("llm.input_messages.{}.message.content", i + offset);
                    assert_eq!(text(&attributes, &key), Some(content), "{name}");
                }
            }
            let past = format!("llm.input_messages.{}.message.role", others.len() + offset);
            assert_eq!(find_attribute(&attributes, &past), None, "{name}");
        }
        // A non-streamed chat answer, as recorded.
        if interaction.uri.contains("/chat/completions") && interaction.status == 200 {
            if let Ok(response) = serde_json::from_str::<Value>(&interaction.response_body) {
                if let Some(content) = response["choices"][0]["message"]["content"].as_str() {
                    assert_eq!(
                        text(&attributes, "llm.output_messages.0.message.content"),
                        Some(content),
                        "{name}"
                    );
                }
            }
        }
        // Without content: no message, input or output.
        let bare = openinference::attributes(call, false);
        assert!(
            bare.iter().all(|a| !a.key.starts_with("llm.input_messages")
                && !a.key.starts_with("llm.output_messages")
                && a.key != "input.value"
                && a.key != "output.value"),
            "{name}: content without message_content"
        );
        checked += 1;
    }
    assert!(checked >= 40, "only {checked} recorded calls checked");
}
