//! `WeaveSink` against W&B's own trace server: Weave 0.51.59's SQLite trace server behind
//! Weave's generated FastAPI routes (`scripts/backends/weave.sh`), read back through its
//! `POST /calls/query`. Recorded OpenAI traffic goes through the layer; what Weave holds is
//! compared with the recording itself. Answers the real server cannot be made to give (429, 5xx,
//! 403) come from an in-process stub.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use llm_observability::{
    Endpoint, LlmCall, LlmObservabilityLayer, MemorySink, Pricing, RequestBody, Sink, WeaveSink,
};
use serde_json::{json, Value};
use support::backend::Backend;
use support::{load_interactions, ChannelBody, Interaction};
use tower::{ServiceBuilder, ServiceExt};

/// The key the authenticating server asks for.
const KEY: &str = "test-key-0123456789";

/// One trace server for the tests of this binary, and one that asks for `KEY`.
fn weave() -> &'static Backend {
    static SERVER: OnceLock<Backend> = OnceLock::new();
    SERVER.get_or_init(|| Backend::start("weave", Duration::from_secs(180)))
}

fn weave_with_auth() -> &'static Backend {
    static SERVER: OnceLock<Backend> = OnceLock::new();
    SERVER.get_or_init(|| {
        Backend::start_with(
            "weave",
            Duration::from_secs(180),
            &[("WEAVE_SERVER_API_KEY", KEY)],
        )
    })
}

/// A project of its own for each test.
fn project(test: &str) -> String {
    format!("llm-obs/{test}-{}", uuid::Uuid::new_v4().simple())
}

fn interaction(file_part: &str, index: usize) -> Interaction {
    load_interactions()
        .expect("the recorded fixtures (../shared/fixtures/openai-recorded)")
        .into_iter()
        .find(|i| i.file.contains(file_part) && i.index == index)
        .unwrap_or_else(|| panic!("fixture {file_part}#{index}"))
}

/// Replays `interaction` through `layer` (an in-process upstream answers the recorded
/// response in 64-byte frames), with `traceparent` on the request when given.
async fn replay(
    layer: &LlmObservabilityLayer,
    interaction: &Interaction,
    traceparent: Option<&str>,
) {
    let recorded = interaction.clone();
    let upstream = tower::service_fn(move |request: Request<RequestBody<Full<Bytes>>>| {
        let recorded = recorded.clone();
        async move {
            request.into_body().collect().await.expect("request body");
            let frames = recorded
                .response_body
                .as_bytes()
                .chunks(64)
                .map(Bytes::copy_from_slice)
                .collect();
            let mut response = Response::builder().status(recorded.status);
            if !recorded.content_type.is_empty() {
                response = response.header(http::header::CONTENT_TYPE, &recorded.content_type);
            }
            Ok::<_, std::convert::Infallible>(
                response
                    .body(ChannelBody::from_chunks(frames))
                    .expect("response"),
            )
        }
    });
    let service = ServiceBuilder::new().layer(layer.clone()).service(upstream);
    let mut request = Request::builder()
        .method(interaction.method.as_str())
        .uri(&interaction.uri)
        .header(http::header::CONTENT_TYPE, "application/json");
    if let Some(traceparent) = traceparent {
        request = request.header("traceparent", traceparent);
    }
    let request = request
        .body(Full::new(Bytes::from(interaction.request_body.clone())))
        .expect("request");
    let response = service.oneshot(request).await.expect("served");
    response.into_body().collect().await.expect("body");
}

/// A layer sending to `sink` and to a memory sink (for the ids and the accounting), pricing
/// calls with the built-in OpenAI prices.
fn layer_with(sink: WeaveSink) -> (LlmObservabilityLayer, MemorySink) {
    let memory = MemorySink::new();
    let layer = LlmObservabilityLayer::builder()
        .pricing(Pricing::built_in())
        .sink(sink)
        .sink(memory.clone())
        .build()
        .expect("layer");
    (layer, memory)
}

fn sink_for(server: &Backend, project: &str) -> WeaveSink {
    WeaveSink::builder(project)
        .base_url(server.base_url())
        .build()
        .expect("sink")
}

/// `POST /calls/query` on `server`: the project's calls matching `filter`, oldest first.
async fn query(server: &Backend, project: &str, filter: Value, key: Option<&str>) -> Vec<Value> {
    let mut request = reqwest::Client::new()
        .post(format!("{}/calls/query", server.base_url()))
        .json(&json!({
            "project_id": project,
            "filter": filter,
            "sort_by": [{"field": "started_at", "direction": "asc"}],
        }));
    if let Some(key) = key {
        request = request.basic_auth("api", Some(key));
    }
    let response = request.send().await.expect("query the trace server");
    assert_eq!(response.status(), StatusCode::OK, "calls/query");
    let body: Value = response.json().await.expect("query answer");
    body["calls"].as_array().expect("calls").clone()
}

/// Flushes and checks `observed == delivered + dropped + failed + filtered` for both sinks;
/// returns the Weave sink's (delivered, failed).
async fn accounted(layer: &LlmObservabilityLayer, observed: u64) -> (u64, u64) {
    let stats = support::assert_accounted(layer, observed).await;
    let weave = stats
        .sinks
        .iter()
        .find(|s| s.name == "weave")
        .expect("weave sink stats");
    (weave.delivered, weave.failed)
}

/// The SSE `data:` payloads of a recorded stream, decoded here on their own (not by the crate).
fn sse_events(body: &str) -> Vec<Value> {
    body.lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(str::trim)
        .filter(|data| *data != "[DONE]")
        .map(|data| serde_json::from_str(data).expect("recorded SSE data is JSON"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_call_lands_with_inputs_assembled_output_and_usage_per_model() {
    let server = weave();
    let project = project("stream");
    let recorded = interaction("test_records_token_counts_for_streaming_openai_llm", 0);
    let (layer, memory) = layer_with(sink_for(server, &project));
    replay(&layer, &recorded, None).await;
    assert_eq!(accounted(&layer, 1).await, (1, 0));
    let observed = memory.calls();

    let calls = query(server, &project, json!({}), None).await;
    assert_eq!(calls.len(), 1, "{calls:#?}");
    let call = &calls[0];
    assert_eq!(call["id"], observed[0].id.as_str());
    assert_eq!(call["op_name"], "openai.chat.completions.create");
    assert_eq!(call["display_name"], "chat gpt-3.5-turbo");
    assert_eq!(call["trace_id"], observed[0].trace.trace_id.to_string());
    assert_eq!(call["parent_id"], Value::Null);
    assert_eq!(call["exception"], Value::Null);

    // Inputs: the request as sent.
    let request = recorded.request_json().expect("recorded request is JSON");
    for key in [
        "model",
        "messages",
        "stream",
        "stream_options",
        "temperature",
        "n",
    ] {
        assert_eq!(call["inputs"][key], request[key], "inputs.{key}");
    }

    // Output: the stream assembled; its text is the recorded deltas joined.
    let events = sse_events(&recorded.response_body);
    let text: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(!text.is_empty());
    let output = &call["output"];
    assert_eq!(output["object"], "chat.completion");
    assert_eq!(output["choices"][0]["message"]["role"], "assistant");
    assert_eq!(output["choices"][0]["message"]["content"], text.as_str());
    assert_eq!(output["choices"][0]["finish_reason"], "stop");

    // Usage, keyed by the model that answered, from the recorded usage chunk.
    let usage = events
        .iter()
        .find_map(|e| e.get("usage").filter(|u| u.is_object()))
        .expect("the recording carries usage");
    let model = events[0]["model"].as_str().expect("model");
    assert_eq!(model, "gpt-3.5-turbo-0125");
    assert_eq!(
        call["summary"]["usage"],
        json!({ model: {
            "requests": 1,
            "prompt_tokens": usage["prompt_tokens"],
            "completion_tokens": usage["completion_tokens"],
            "total_tokens": usage["total_tokens"],
        }})
    );
    assert_eq!(call["summary"]["weave"]["status"], "success");

    // Cost where Weave keeps costs (summary.weave.costs), from OpenAI's list price of
    // gpt-3.5-turbo: $0.50 / $1.50 per million input / output tokens.
    let costs = &call["summary"]["weave"]["costs"][model];
    let input = usage["prompt_tokens"].as_f64().expect("count") * 0.50e-6;
    let output = usage["completion_tokens"].as_f64().expect("count") * 1.50e-6;
    let close = |value: &Value, expected: f64| {
        let value = value.as_f64().unwrap_or(f64::NAN);
        assert!((value - expected).abs() < 1e-12, "{value} vs {expected}");
    };
    close(&costs["prompt_tokens_total_cost"], input);
    close(&costs["completion_tokens_total_cost"], output);
    assert_eq!(costs["prompt_token_cost_unit"], "USD");
    assert_eq!(costs["completion_token_cost_unit"], "USD");
    assert_eq!(costs["pricing_level"], "llm-observability");
    assert_eq!(costs["pricing_level_id"], "built-in");
    assert_eq!(
        costs["effective_date"],
        llm_observability::process::pricing::BUILT_IN_AS_OF
    );
    assert_eq!(costs["provider_id"], "openai");
    assert_eq!(costs["requests"], 1);
    assert_eq!(costs["prompt_tokens"], usage["prompt_tokens"]);

    // Timing, attributes.
    let started = time::OffsetDateTime::parse(
        call["started_at"].as_str().expect("started_at"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("RFC 3339");
    let delta = (started - observed[0].timing.start_time).abs();
    assert!(delta < time::Duration::milliseconds(1), "{delta}");
    assert!(call["ended_at"].is_string());
    let attributes = &call["attributes"];
    assert_eq!(attributes["gen_ai.request.model"], "gpt-3.5-turbo");
    assert_eq!(attributes["gen_ai.response.model"], model);
    assert_eq!(
        attributes["gen_ai.usage.input_tokens"],
        usage["prompt_tokens"]
    );
    assert_eq!(attributes["llm_observability"]["status"], "success");
    assert_eq!(
        attributes["llm_observability"]["span_id"],
        observed[0].trace.span_id.to_string()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_4xx_call_lands_with_its_exception() {
    let server = weave();
    let project = project("error");
    let recorded = interaction("test_vision/test_vision.yaml", 2);
    assert_eq!(recorded.status, 400);
    let (layer, _memory) = layer_with(sink_for(server, &project));
    replay(&layer, &recorded, None).await;
    assert_eq!(accounted(&layer, 1).await, (1, 0));

    let calls = query(server, &project, json!({}), None).await;
    assert_eq!(calls.len(), 1, "{calls:#?}");
    let call = &calls[0];
    assert_eq!(call["op_name"], "openai.chat.completions.create");
    assert_eq!(call["display_name"], "chat gpt-4o-mini");
    let error: Value = serde_json::from_str(&recorded.response_body).expect("error body");
    let exception: Value =
        serde_json::from_str(call["exception"].as_str().expect("exception is a string"))
            .expect("exception is JSON");
    assert_eq!(
        exception,
        json!({
            "type": error["error"]["type"],
            "message": error["error"]["message"],
            "code": error["error"]["code"],
            "http_status": 400,
        })
    );
    assert_eq!(call["summary"]["weave"]["status"], "error");
    assert_eq!(
        call["summary"]["status_counts"],
        json!({"success": 0, "error": 1})
    );
    assert_eq!(call["summary"].get("usage"), None);
    assert_eq!(
        call["summary"]["weave"].get("costs"),
        None,
        "no usage, no cost"
    );
    assert_eq!(call["attributes"]["error.type"], error["error"]["type"]);
    assert_eq!(call["inputs"]["model"], "gpt-4o-mini");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_in_one_app_span_share_its_trace_and_have_it_as_parent() {
    let server = weave();
    let project = project("tree");
    let recorded = interaction("test_chat/test_chat_tools.yaml", 0);
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let app_span = "00f067aa0ba902b7";
    let traceparent = format!("00-{trace_id}-{app_span}-01");
    let (layer, memory) = layer_with(sink_for(server, &project));
    replay(&layer, &recorded, Some(&traceparent)).await;
    replay(&layer, &recorded, Some(&traceparent)).await;
    assert_eq!(accounted(&layer, 2).await, (2, 0));
    let observed = memory.calls();

    let calls = query(server, &project, json!({}), None).await;
    assert_eq!(calls.len(), 2, "{calls:#?}");
    let ids: Vec<&str> = observed.iter().map(|c| c.id.as_str()).collect();
    for call in &calls {
        assert!(ids.contains(&call["id"].as_str().expect("id")), "{call:#}");
        assert_eq!(call["trace_id"], trace_id);
        assert_eq!(call["parent_id"], app_span);
        assert_eq!(
            call["summary"]["usage"]["gpt-3.5-turbo-0125"]["total_tokens"],
            84
        );
    }
    assert_ne!(calls[0]["id"], calls[1]["id"]);

    // Weave lists root calls only; a parent that is not in Weave leaves the calls out of it.
    let roots = query(server, &project, json!({"trace_roots_only": true}), None).await;
    assert!(roots.is_empty(), "{roots:#?}");
    // The app span as Weave's OpenTelemetry ingestion writes it (id = span id in hex): the
    // tree is whole, the calls under it.
    let app = json!({"batch": [
        {"mode": "start", "req": {"start": {
            "project_id": project, "id": app_span, "trace_id": trace_id,
            "op_name": "handle_request", "started_at": "2026-01-01T00:00:00Z",
            "attributes": {}, "inputs": {}}}},
        {"mode": "end", "req": {"end": {
            "project_id": project, "id": app_span, "ended_at": "2026-01-01T00:00:01Z",
            "summary": {}}}},
    ]});
    let answer = reqwest::Client::new()
        .post(format!("{}/call/upsert_batch", server.base_url()))
        .json(&app)
        .send()
        .await
        .expect("app span");
    assert_eq!(answer.status(), StatusCode::OK);
    let roots = query(server, &project, json!({"trace_roots_only": true}), None).await;
    assert_eq!(roots.len(), 1);
    assert_eq!(roots[0]["id"], app_span);
    let children = query(server, &project, json!({"parent_ids": [app_span]}), None).await;
    assert_eq!(children.len(), 2);

    // link_parents(false): the same trace, every call a root.
    let flat_project = project.clone() + "-flat";
    let sink = WeaveSink::builder(flat_project.as_str())
        .base_url(server.base_url())
        .link_parents(false)
        .build()
        .expect("sink");
    let (layer, _memory) = layer_with(sink);
    replay(&layer, &recorded, Some(&traceparent)).await;
    assert_eq!(accounted(&layer, 1).await, (1, 0));
    let roots = query(
        server,
        &flat_project,
        json!({"trace_roots_only": true}),
        None,
    )
    .await;
    assert_eq!(roots.len(), 1);
    assert_eq!(roots[0]["trace_id"], trace_id);
    assert_eq!(roots[0]["parent_id"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_is_sent_and_a_refused_key_is_counted_and_named() {
    let server = weave_with_auth();
    let project = project("auth");
    let recorded = interaction("test_chat/test_chat_tools.yaml", 0);

    // The right key: delivered, and readable with it.
    let sink = WeaveSink::builder(project.as_str())
        .base_url(server.base_url())
        .api_key(KEY)
        .build()
        .expect("sink");
    let (layer, memory) = layer_with(sink);
    replay(&layer, &recorded, None).await;
    assert_eq!(accounted(&layer, 1).await, (1, 0));
    let calls = query(server, &project, json!({}), Some(KEY)).await;
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["id"], memory.calls()[0].id.as_str());

    // A wrong key: every batch fails (not retried), and is counted.
    let sink = WeaveSink::builder(project.as_str())
        .base_url(server.base_url())
        .api_key("wrong-key")
        .build()
        .expect("sink");
    let (layer, _memory) = layer_with(sink);
    for _ in 0..3 {
        replay(&layer, &recorded, None).await;
    }
    let (delivered, failed) = accounted(&layer, 3).await;
    assert_eq!((delivered, failed), (0, 3));
    assert_eq!(query(server, &project, json!({}), Some(KEY)).await.len(), 1);

    // What the dispatcher logs (once): the status and which key.
    let sink = WeaveSink::builder(project.as_str())
        .base_url(server.base_url())
        .api_key("wrong-key")
        .build()
        .expect("sink");
    let call = Arc::new(LlmCall::new(Endpoint::ChatCompletions));
    let error = sink
        .export(std::slice::from_ref(&call))
        .await
        .expect_err("refused");
    assert!(!error.is_retryable());
    assert!(error.message().contains("401"), "{error}");
    assert!(
        error
            .message()
            .contains("the API key set with WeaveSinkBuilder::api_key was refused"),
        "{error}"
    );
    assert!(
        !error.chain().contains("wrong-key"),
        "the key is never shown"
    );

    // No key at all (none configured; WANDB_API_KEY as the environment has it).
    let sink = sink_for(server, &project);
    let error = sink.export(&[call]).await.expect_err("refused");
    assert!(!error.is_retryable());
    let expected = match std::env::var("WANDB_API_KEY") {
        Ok(key) if !key.trim().is_empty() => "the API key from WANDB_API_KEY was refused",
        _ => "no API key is set; set WANDB_API_KEY or WeaveSinkBuilder::api_key",
    };
    assert!(error.message().contains(expected), "{error}");
}

/// A stub trace server answering the statuses in `answers` in turn (then 200), counting
/// requests and keeping the last body.
async fn stub(
    answers: Vec<(u16, Option<&'static str>, &'static str)>,
) -> (String, Arc<AtomicUsize>) {
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    let answers = Arc::new(answers);
    let app = axum::Router::new().route(
        "/call/upsert_batch",
        axum::routing::post(move |body: Bytes| {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let answers = answers.clone();
            async move {
                let batch: Value = serde_json::from_slice(&body).expect("a JSON batch");
                assert!(batch["batch"].is_array());
                let (status, retry_after, text) =
                    answers.get(n).copied().unwrap_or((200, None, "{}"));
                let mut response = Response::builder().status(status);
                if let Some(retry_after) = retry_after {
                    response = response.header("retry-after", retry_after);
                }
                response
                    .body(axum::body::Body::from(text))
                    .expect("response")
            }
        }),
    );
    let addr = support::serve(app).await;
    (format!("http://{addr}"), seen)
}

#[tokio::test]
async fn answers_map_to_transient_and_permanent_errors() {
    let call = Arc::new(LlmCall::new(Endpoint::ChatCompletions));
    let sink_at = |url: &str| {
        WeaveSink::builder("team/proj")
            .base_url(url)
            .api_key("k")
            .build()
            .expect("sink")
    };

    let (url, _) = stub(vec![(429, Some("7"), r#"{"detail":"slow down"}"#)]).await;
    let error = sink_at(&url)
        .export(std::slice::from_ref(&call))
        .await
        .expect_err("429");
    assert!(error.is_retryable());
    assert_eq!(error.retry_after(), Some(Duration::from_secs(7)));
    assert!(
        error.message().contains("429") && error.message().contains("slow down"),
        "{error}"
    );

    let (url, _) = stub(vec![(503, None, "")]).await;
    let error = sink_at(&url)
        .export(std::slice::from_ref(&call))
        .await
        .expect_err("503");
    assert!(error.is_retryable());
    assert_eq!(error.retry_after(), None);

    let (url, _) = stub(vec![(403, None, r#"{"detail":"forbidden"}"#)]).await;
    let error = sink_at(&url)
        .export(std::slice::from_ref(&call))
        .await
        .expect_err("403");
    assert!(!error.is_retryable());
    assert!(
        error.message().contains("403") && error.message().contains("\"team/proj\""),
        "{error}"
    );

    let (url, _) = stub(vec![(400, None, r#"{"detail":"op_name too long"}"#)]).await;
    let error = sink_at(&url)
        .export(std::slice::from_ref(&call))
        .await
        .expect_err("400");
    assert!(!error.is_retryable());
    assert!(
        error.message().contains("400") && error.message().contains("op_name too long"),
        "{error}"
    );

    // Nobody listening: retryable.
    let closed = format!("http://127.0.0.1:{}", support::backend::free_port());
    let error = sink_at(&closed).export(&[call]).await.expect_err("refused");
    assert!(error.is_retryable(), "{}", error.chain());
}

#[tokio::test]
async fn the_dispatcher_retries_busy_answers_until_delivered() {
    let (url, seen) = stub(vec![(429, Some("0"), ""), (502, None, "bad gateway")]).await;
    let sink = WeaveSink::builder("team/proj")
        .base_url(url)
        .build()
        .expect("sink");
    let (layer, _memory) = layer_with(sink);
    let recorded = interaction("test_chat/test_chat_tools.yaml", 0);
    replay(&layer, &recorded, None).await;
    assert_eq!(accounted(&layer, 1).await, (1, 0));
    assert_eq!(
        seen.load(Ordering::SeqCst),
        3,
        "two refusals, then delivered"
    );
}

/// The op name Weave's own integration of each API gives a call of `case` (weave/integrations
/// `anthropic`, `google_genai`, `bedrock`); Weave has no Ollama integration, and the crate
/// names the Ollama client's function.
fn op_name(case: &support::calls::ProviderCase) -> &'static str {
    match (case.provider, case.streamed) {
        ("anthropic", _) => "anthropic.Messages.create",
        ("gcp.gemini", true) => "google.genai.models.Models.generate_content_stream",
        ("gcp.gemini", false) => "google.genai.models.Models.generate_content",
        ("aws.bedrock", true) => "BedrockRuntime.converse_stream",
        ("aws.bedrock", false) => "BedrockRuntime.converse",
        ("ollama", _) => "ollama.chat",
        (other, _) => panic!("no op name for {other}"),
    }
}

/// `summary.usage` of one call as Weave's integration of its API writes it: Anthropic's names
/// (its `input_tokens` without the cache reads and writes, which come apart); the others
/// (Google GenAI, Bedrock) use OpenAI's names, `prompt_tokens` counting every input token,
/// with the cache reads and the reasoning tokens in their details objects.
fn weave_usage(case: &support::calls::ProviderCase) -> Value {
    let expect = &case.expect;
    let mut usage = json!({"requests": 1, "total_tokens": expect.total_tokens});
    if case.provider == "anthropic" {
        usage["input_tokens"] = json!(expect.uncached_input());
        usage["output_tokens"] = json!(expect.output_tokens);
        if let Some(read) = expect.cache_read {
            usage["cache_read_input_tokens"] = json!(read);
        }
        if let Some(reasoning) = expect.reasoning_tokens {
            usage["output_tokens_details"] = json!({"reasoning_tokens": reasoning});
        }
    } else {
        usage["prompt_tokens"] = json!(expect.input_tokens);
        usage["completion_tokens"] = json!(expect.output_tokens);
        if let Some(read) = expect.cache_read {
            usage["prompt_tokens_details"] = json!({"cached_tokens": read});
        }
        if let Some(reasoning) = expect.reasoning_tokens {
            usage["completion_tokens_details"] = json!({"reasoning_tokens": reasoning});
        }
    }
    if let Some(written) = expect.cache_creation {
        usage["cache_creation_input_tokens"] = json!(written);
    }
    json!({ expect.model(): usage })
}

/// Recorded calls of every API family (Anthropic: streamed tool calls, streamed thinking, a
/// cache write, a cache read; a streamed Gemini call with function calls and reasoning tokens;
/// a Bedrock converse-stream with a tool use; a streamed Ollama chat with thinking) land under
/// the op names of Weave's integrations of their APIs: the request as sent in `inputs` (model,
/// messages, tools), the response in `output` (read as the recording reads: id, counts, text,
/// reasoning, tool calls, finish reason), usage per model under the names each integration
/// writes, and the cost of the priced model with its cache writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_calls_of_every_family_land_under_their_ops_with_usage_per_model() {
    let Some(cases) = support::calls::provider_cases() else {
        return;
    };
    let server = weave();
    let project = project("providers");
    let memory = MemorySink::new();
    let layer = LlmObservabilityLayer::builder()
        .pricing(Pricing::empty().with_price(
            "claude-3-5-sonnet-20240620",
            llm_observability::ModelPrice::per_million_with_cache_write(
                3.0,
                Some(0.30),
                Some(3.75),
                15.0,
            ),
        ))
        .sink(sink_for(server, &project))
        .sink(memory.clone())
        .build()
        .expect("layer");
    let sent = support::calls::send_each(&layer, &memory, &cases).await;
    assert_eq!(
        accounted(&layer, cases.len() as u64).await,
        (cases.len() as u64, 0)
    );
    let calls = query(server, &project, json!({}), None).await;
    assert_eq!(calls.len(), cases.len(), "{calls:#?}");
    for (case, ours) in sent {
        let (label, expect) = (case.name, &case.expect);
        let call = calls
            .iter()
            .find(|c| c["id"] == ours.id.as_str())
            .unwrap_or_else(|| panic!("{label}: not in Weave"));
        let model = expect.request_model.as_str();
        assert_eq!(call["op_name"], op_name(case), "{label}");
        assert_eq!(call["display_name"], format!("{} {model}", case.operation));
        assert_eq!(call["exception"], Value::Null);
        let inputs = &call["inputs"];
        assert_eq!(
            inputs.pointer(case.model_pointer()),
            Some(&json!(model)),
            "{label}: inputs{}",
            case.model_pointer()
        );
        for pointer in [case.messages_pointer(), case.tools_pointer()] {
            assert_eq!(
                inputs.pointer(pointer),
                case.request.pointer(pointer),
                "{label}: inputs{pointer}"
            );
        }
        assert_eq!(
            inputs["stream"].as_bool().unwrap_or(false),
            case.streamed,
            "{label}: inputs.stream (left out when false)"
        );
        if case.provider == "anthropic" {
            assert_eq!(inputs["max_tokens"], case.request["max_tokens"], "{label}");
        }
        case.assert_response(&call["output"], label);
        assert_eq!(call["summary"]["usage"], weave_usage(case), "{label}");
        let attributes = &call["attributes"];
        assert_eq!(attributes["gen_ai.provider.name"], case.provider);
        assert_eq!(attributes["gen_ai.usage.input_tokens"], expect.input_tokens);
        assert_eq!(
            attributes["gen_ai.usage.output_tokens"],
            expect.output_tokens
        );
        let costs = &call["summary"]["weave"]["costs"][expect.model()];
        if expect.model() == "claude-3-5-sonnet-20240620" {
            let want = (expect.uncached_input() as f64 * 3.0
                + expect.cache_read.unwrap_or(0) as f64 * 0.30
                + expect.cache_creation.unwrap_or(0) as f64 * 3.75)
                / 1e6;
            let got = costs["prompt_tokens_total_cost"].as_f64().expect("a cost");
            assert!((got - want).abs() < 1e-12, "{label}: {got} vs {want}");
            assert_eq!(costs["provider_id"], "anthropic");
        } else {
            assert_eq!(costs, &Value::Null, "{label}");
        }
    }
}
