//! The pricing processor on recorded OpenAI and Anthropic traffic
//! (../shared/fixtures/openai-recorded, provider-recorded), against costs computed by hand;
//! LiteLLM's price-file format; model-name resolution; model aliases; a cost the provider
//! reported (OpenRouter's `usage.cost`).
//!
//! Prices used (USD per 1M tokens, the built-in table, OpenAI's pricing page as of 2025-08-07):
//! gpt-4o-mini 0.15 input / 0.075 cached input / 0.60 output; o4-mini 1.10 / 0.275 / 4.40;
//! gpt-4.1-mini 0.40 / 0.10 / 1.60; gpt-3.5-turbo 0.50 / - / 1.50; text-embedding-ada-002 0.10
//! input. Anthropic's list prices (input / cache read / cache write / output):
//! claude-3-5-sonnet 3 / 0.30 / 3.75 / 15; claude-sonnet-4-5 the same.

mod support;

use std::sync::Arc;

use bytes::Bytes;
use llm_observability::genai::{self, AttributeValue};
use llm_observability::{
    Cost, Endpoint, LlmCall, LlmObservabilityLayer, LlmObservabilityLayerBuilder, MemorySink,
    ModelPrice, Pricing, PricingError, Processor, Usage,
};
use support::Interaction;

/// A global subscriber interested in every callsite, installed before any test opens a span:
/// without it, a test with no subscriber running next to one with a scoped subscriber can leave
/// `tracing`'s per-callsite interest cached as "never", and the recorded span goes missing.
fn interest_in_every_span() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry());
    });
}

/// Asserts `got` is `want` to within float rounding.
fn close(got: f64, want: f64, what: &str) {
    assert!(
        (got - want).abs() <= 1e-12 + want.abs() * 1e-9,
        "{what}: got {got}, want {want}"
    );
}

fn interaction(file_suffix: &str, index: usize) -> Interaction {
    let all = support::load_interactions().expect("recorded fixtures at ../shared");
    all.into_iter()
        .find(|i| i.file.ends_with(file_suffix) && i.index == index)
        .unwrap_or_else(|| panic!("no recorded interaction {file_suffix}#{index}"))
}

/// Replays a recorded interaction through a layer with the built-in pricing; its payload.
async fn priced(file_suffix: &str, index: usize) -> Arc<LlmCall> {
    let layer = LlmObservabilityLayer::builder().processor(Pricing::built_in());
    replay_one(layer, interaction(file_suffix, index)).await
}

/// Replays `recorded` whole through a layer built from `builder` with a memory sink; the one
/// payload it recorded.
async fn replay_one(builder: LlmObservabilityLayerBuilder, recorded: Interaction) -> Arc<LlmCall> {
    let memory = MemorySink::new();
    let layer = builder
        .sink(memory.clone())
        .build()
        .expect("inside a runtime");
    let frames = vec![Bytes::from(recorded.response_body.clone())];
    support::replay_tower(&layer, &recorded, frames).await;
    let mut calls = support::flushed(&layer, &memory).await;
    assert_eq!(calls.len(), 1);
    calls.remove(0)
}

#[tokio::test]
async fn cached_input_tokens_are_priced_at_the_cached_rate() {
    interest_in_every_span();
    // gpt-4o-mini-2024-07-18: 1370 input tokens of which 1280 cached, 155 output.
    let call = priced("test_tool_calls/test_cached_tokens.yaml.json", 1).await;
    let usage = call.usage.expect("usage");
    assert_eq!(
        (
            usage.input_tokens,
            usage.cached_input_tokens,
            usage.output_tokens
        ),
        (Some(1370), Some(1280), Some(155))
    );
    assert_eq!(
        call.response_model.as_deref(),
        Some("gpt-4o-mini-2024-07-18")
    );
    let cost = call.cost.as_ref().expect("priced");
    close(cost.input_usd, 90.0 * 0.15e-6, "input"); // 0.0000135
    close(cost.cache_read_usd, 1280.0 * 0.075e-6, "cache read"); // 0.000096
    close(cost.output_usd, 155.0 * 0.60e-6, "output"); // 0.000093
    close(cost.total_usd, 0.0002025, "total");
    assert_eq!(cost.pricing_source, "built-in");
    assert!(
        call.processing_errors.is_empty(),
        "{:?}",
        call.processing_errors
    );

    // The same prompt before the cache held it: 1370 input at the full rate, 22 output.
    let first = priced("test_tool_calls/test_cached_tokens.yaml.json", 0).await;
    close(
        first.cost.as_ref().expect("priced").total_usd,
        1370.0 * 0.15e-6 + 22.0 * 0.60e-6, // 0.0002187
        "uncached total",
    );
}

#[tokio::test]
async fn reasoning_tokens_are_output_tokens_and_are_not_added_twice() {
    interest_in_every_span();
    // A Responses API stream of o4-mini-2025-04-16: 36 input, 518 output of which 448 reasoning.
    let call = priced("agno/fixtures/agent_run_reasoning_stream.yaml.json", 0).await;
    let usage = call.usage.expect("usage");
    assert_eq!(usage.reasoning_tokens, Some(448));
    assert_eq!(usage.output_tokens, Some(518));
    let cost = call.cost.as_ref().expect("priced");
    close(cost.input_usd, 36.0 * 1.10e-6, "input"); // 0.0000396
    close(cost.cache_read_usd, 0.0, "cache read");
    close(cost.output_usd, 518.0 * 4.40e-6, "output"); // 0.0022792, not (518 + 448) * 4.40e-6
    close(cost.total_usd, 0.0023188, "total");
}

#[tokio::test]
async fn embeddings_are_priced_by_input_tokens_with_the_request_model_as_fallback() {
    interest_in_every_span();
    // The response says `text-embedding-ada-002-v2` (no price); the request said
    // `text-embedding-ada-002`: 8 tokens at 0.10 per 1M.
    let call = priced("test_embeddings/test_embeddings.yaml.json", 2).await;
    assert_eq!(
        call.response_model.as_deref(),
        Some("text-embedding-ada-002-v2")
    );
    let cost = call.cost.as_ref().expect("priced");
    close(cost.total_usd, 8.0 * 0.10e-6, "total");
    close(cost.output_usd, 0.0, "output");
}

#[tokio::test]
async fn azure_deployments_are_priced_by_the_response_model() {
    interest_in_every_span();
    // Request model `openllmetry-testing` (a deployment name); response gpt-4.1-mini-2025-04-14,
    // 16 input and 24 output tokens.
    let call = priced("test_azure/test_chat_content_filtering.yaml.json", 1).await;
    assert_eq!(call.request.model.as_deref(), Some("openllmetry-testing"));
    close(
        call.cost.as_ref().expect("priced").total_usd,
        16.0 * 0.40e-6 + 24.0 * 1.60e-6, // 0.0000448
        "total",
    );
}

#[tokio::test]
async fn unknown_models_and_missing_usage_give_no_cost_and_say_why() {
    interest_in_every_span();
    // davinci-002 is not in the built-in table.
    let call = priced("test_completions/test_completion.yaml.json", 0).await;
    assert!(call.usage.is_some());
    assert_eq!(call.cost, None);
    assert_eq!(
        call.processing_errors.len(),
        1,
        "{:?}",
        call.processing_errors
    );
    assert!(
        call.processing_errors[0].contains("no price for model \"davinci-002\""),
        "{:?}",
        call.processing_errors
    );
    // A stream without include_usage: a known model, no usage.
    let call = priced("test_chat/test_chat_tools_streaming.yaml.json", 0).await;
    assert!(call.usage.is_none());
    assert_eq!(call.cost, None);
    assert_eq!(
        call.processing_errors,
        vec!["no cost: the call reported no token usage".to_owned()]
    );
    // The content stays: a missing price is a note, not a processor failure.
    assert!(call.response.is_some());
    assert!(call.request.messages.is_some());
}

#[test]
fn the_layer_prices_calls_before_their_span_closes() {
    interest_in_every_span();
    let memory = MemorySink::new();
    let spans = support::spans::with_spans(|| async {
        let layer = LlmObservabilityLayer::builder()
            .pricing(Pricing::built_in())
            .sink(memory.clone())
            .build()?;
        let recorded = interaction("test_tool_calls/test_cached_tokens.yaml.json", 1);
        let frames = vec![Bytes::from(recorded.response_body.clone())];
        support::replay_tower(&layer, &recorded, frames).await;
        support::flushed(&layer, &memory).await;
        Ok(())
    });
    let span = spans.one("gen_ai");
    let field = |name: &str| -> f64 {
        span.fields
            .get(name)
            .unwrap_or_else(|| panic!("{name} not recorded: {:?}", span.fields))
            .parse()
            .expect("a number")
    };
    close(
        field("llm_observability.cost.total_usd"),
        0.0002025,
        "span total",
    );
    close(
        field("llm_observability.cost.cache_read_usd"),
        0.000096,
        "span cache read",
    );
    close(
        field("llm_observability.cost.input_usd"),
        0.0000135,
        "span input",
    );
    close(
        field("llm_observability.cost.output_usd"),
        0.000093,
        "span output",
    );
    let calls = memory.calls();
    close(
        calls[0].cost.as_ref().expect("priced").total_usd,
        0.0002025,
        "payload",
    );
}

#[test]
fn the_cost_is_in_the_genai_mapping_and_the_json() {
    interest_in_every_span();
    let mut call = LlmCall::new(Endpoint::ChatCompletions);
    call.request.model = Some("gpt-4o".into());
    call.usage = Some(Usage::new(1000, 100));
    let null = serde_json::to_value(&call).expect("serialisable");
    assert_eq!(
        null["cost"],
        serde_json::Value::Null,
        "null when not priced"
    );
    Pricing::built_in().process(&mut call).expect("never fails");
    let attributes = genai::attributes(&call);
    let total = attributes
        .iter()
        .find(|a| a.key == llm_observability::span::LLM_OBSERVABILITY_COST_TOTAL_USD)
        .expect("cost attribute");
    // 1000 * 2.50e-6 + 100 * 10.00e-6
    match total.value {
        AttributeValue::Float(usd) => close(usd, 0.0035, "attribute"),
        ref other => panic!("{other:?}"),
    }
    let json = serde_json::to_value(&call).expect("serialisable");
    close(
        json["cost"]["total_usd"].as_f64().expect("number"),
        0.0035,
        "json",
    );
    assert_eq!(json["cost"]["pricing_source"], "built-in");
    let back: LlmCall = serde_json::from_value(json).expect("reads back");
    assert_eq!(back.cost, call.cost);
}

/// A price file in LiteLLM's `model_prices_and_context_window.json` format, as LiteLLM ships it
/// (`sample_spec` first; models of other providers; embeddings with `mode`).
const LITELLM_SAMPLE: &str = r#"{
  "sample_spec": {
    "max_tokens": "LEGACY parameter. set to max_output_tokens if provider specifies it.",
    "input_cost_per_token": 0.0000,
    "output_cost_per_token": 0.000,
    "litellm_provider": "one of https://docs.litellm.ai/docs/providers",
    "mode": "one of: chat, embedding, completion, image_generation, audio_transcription, audio_speech"
  },
  "gpt-4o-mini": {
    "max_tokens": 16384, "max_input_tokens": 128000, "max_output_tokens": 16384,
    "input_cost_per_token": 2e-07, "output_cost_per_token": 8e-07,
    "cache_read_input_token_cost": 1e-07,
    "litellm_provider": "openai", "mode": "chat", "supports_function_calling": true
  },
  "davinci-002": {
    "max_tokens": 16384, "input_cost_per_token": 2e-06, "output_cost_per_token": 2e-06,
    "litellm_provider": "text-completion-openai", "mode": "completion"
  },
  "azure/gpt-4.1-mini": {
    "input_cost_per_token": 4.4e-07, "output_cost_per_token": 1.76e-06,
    "cache_read_input_token_cost": 1.1e-07, "litellm_provider": "azure", "mode": "chat"
  },
  "text-embedding-3-small": {
    "max_tokens": 8191, "input_cost_per_token": 2e-08, "output_cost_per_token": 0.0,
    "litellm_provider": "openai", "mode": "embedding"
  },
  "dall-e-3": {"input_cost_per_pixel": 1e-07, "litellm_provider": "openai", "mode": "image_generation"},
  "claude-3-5-haiku-20241022": {
    "input_cost_per_token": 8e-07, "output_cost_per_token": 4e-06,
    "cache_read_input_token_cost": 8e-08, "litellm_provider": "anthropic", "mode": "chat"
  }
}"#;

fn sample_file() -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!(
        "llm-obs-prices-{}-{}.json",
        std::process::id(),
        uuid::Uuid::new_v4()
    ));
    std::fs::write(&path, LITELLM_SAMPLE).expect("temp file");
    path
}

fn cached(mut usage: Usage, tokens: u64) -> Usage {
    usage.cached_input_tokens = Some(tokens);
    usage
}

fn chat(model: &str, usage: Usage) -> LlmCall {
    let mut call = LlmCall::new(Endpoint::ChatCompletions);
    call.request.model = Some(model.into());
    call.usage = Some(usage);
    call
}

#[test]
fn a_litellm_price_file_takes_precedence_over_the_built_in_table() {
    interest_in_every_span();
    let path = sample_file();
    let pricing = Pricing::built_in()
        .load_litellm(&path)
        .expect("the sample loads");
    let source = format!("file:{}", path.display());
    std::fs::remove_file(&path).ok();

    // gpt-4o-mini: the file's 0.20 / 0.10 / 0.80 per 1M, not the built-in 0.15 / 0.075 / 0.60.
    let mut call = chat("gpt-4o-mini", cached(Usage::new(1000, 100), 400));
    call.response_model = Some("gpt-4o-mini-2024-07-18".into());
    pricing.process(&mut call).expect("never fails");
    let cost = call.cost.expect("priced");
    close(cost.input_usd, 600.0 * 2e-7, "input");
    close(cost.cache_read_usd, 400.0 * 1e-7, "cache read");
    close(cost.output_usd, 100.0 * 8e-7, "output");
    close(cost.total_usd, 0.00024, "total");
    assert_eq!(cost.pricing_source, source);

    // A model only the file knows, and a provider-prefixed entry.
    let mut davinci = chat("davinci-002", Usage::new(8, 16));
    davinci.endpoint = Endpoint::Completions;
    pricing.process(&mut davinci).expect("never fails");
    close(
        davinci.cost.expect("priced").total_usd,
        24.0 * 2e-6,
        "davinci",
    );
    let mut azure = chat("azure/gpt-4.1-mini-2025-04-14", Usage::new(16, 24));
    pricing.process(&mut azure).expect("never fails");
    close(
        azure.cost.expect("priced").total_usd,
        16.0 * 4.4e-7 + 24.0 * 1.76e-6,
        "azure",
    );
    // `openai/...` finds the plain entry; `anthropic/...` the one registered under its provider.
    assert!(pricing.resolve("openai/text-embedding-3-small").is_some());
    assert_eq!(
        pricing
            .resolve("anthropic/claude-3-5-haiku-20241022")
            .map(|r| r.0)
            .as_deref(),
        Some("anthropic/claude-3-5-haiku-20241022")
    );
    // Embeddings by input tokens only.
    let mut embedding = chat("text-embedding-3-small", Usage::new(1000, 0));
    embedding.endpoint = Endpoint::Embeddings;
    let mut input_only = Usage::new(1000, 0);
    input_only.output_tokens = None;
    embedding.usage = Some(input_only);
    pricing.process(&mut embedding).expect("never fails");
    close(
        embedding.cost.expect("priced").total_usd,
        1000.0 * 2e-8,
        "embedding",
    );
    // Entries without token prices are not prices.
    assert!(pricing.resolve("dall-e-3").is_none());
    // The built-in table still answers for what the file does not hold.
    assert_eq!(
        pricing.resolve("o4-mini").map(|r| r.1),
        Some(ModelPrice::per_million(1.10, Some(0.275), 4.40))
    );
}

#[test]
fn a_price_set_in_code_wins_over_the_file() {
    interest_in_every_span();
    let pricing = Pricing::built_in()
        .litellm_json(LITELLM_SAMPLE, "file:sample")
        .expect("loads")
        .with_price("gpt-4o-mini", ModelPrice::per_million(1.0, None, 2.0));
    let mut call = chat("gpt-4o-mini", cached(Usage::new(1_000_000, 1_000_000), 500));
    pricing.process(&mut call).expect("never fails");
    let cost = call.cost.expect("priced");
    // No cached price: the cached tokens at the input rate.
    close(cost.input_usd, 0.9995, "input");
    close(cost.cache_read_usd, 0.0005, "cache read");
    close(cost.total_usd, 3.0, "total");
    assert_eq!(cost.pricing_source, "override");
}

#[test]
fn bad_price_files_are_refused_clearly() {
    interest_in_every_span();
    let missing = Pricing::built_in().load_litellm("/nonexistent/prices.json");
    assert!(
        matches!(missing, Err(PricingError::Read { ref path, .. }) if path == "/nonexistent/prices.json"),
        "{missing:?}"
    );
    let not_json = Pricing::built_in().litellm_json("[1, 2]", "file:x.json");
    assert!(
        matches!(not_json, Err(PricingError::Format { .. })),
        "{not_json:?}"
    );
    let negative = Pricing::built_in().litellm_json(
        r#"{"m": {"input_cost_per_token": -1e-6, "output_cost_per_token": 1e-6}}"#,
        "file:x.json",
    );
    let error = negative.expect_err("a negative price");
    assert_eq!(
        error.to_string(),
        "price file file:x.json: model \"m\" has an invalid price"
    );
    let empty = Pricing::built_in().litellm_json(r#"{"sample_spec": {}}"#, "file:x.json");
    assert!(matches!(empty, Err(PricingError::Empty(_))), "{empty:?}");
}

#[test]
fn snapshot_names_and_provider_prefixes_resolve() {
    interest_in_every_span();
    let pricing = Pricing::built_in();
    for (name, entry) in [
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("openai/gpt-4o", "gpt-4o"),
        ("azure/gpt-4.1-nano-2025-04-14", "gpt-4.1-nano"),
        ("gpt-3.5-turbo-0125", "gpt-3.5-turbo"),
        ("o3-mini-2025-01-31", "o3-mini"),
        ("gpt-5-mini-2025-08-07", "gpt-5-mini"),
        // A snapshot with its own price is its own entry.
        ("gpt-4o-2024-05-13", "gpt-4o-2024-05-13"),
    ] {
        assert_eq!(
            pricing.resolve(name).map(|r| r.0).as_deref(),
            Some(entry),
            "{name}"
        );
    }
    // A fine-tune costs more than its base model: no guess.
    assert!(pricing
        .resolve("ft:gpt-4o-mini-2024-07-18:acme::abc123")
        .is_none());
    assert_eq!(
        llm_observability::process::pricing::BUILT_IN_AS_OF,
        "2025-08-07"
    );
}

// ---------------------------------------------------------------------------------------------
// Anthropic: cache reads and writes

/// A recorded Anthropic prompt-caching interaction (provider-recorded).
fn anthropic_interaction(file: &str, index: usize) -> Interaction {
    support::load_provider_interactions()
        .expect("recorded provider fixtures at ../shared")
        .into_iter()
        .map(|p| p.interaction)
        .find(|i| {
            i.file.contains("test_prompt_caching") && i.file.ends_with(file) && i.index == index
        })
        .unwrap_or_else(|| panic!("no recorded interaction {file}#{index}"))
}

/// Replays a recorded Anthropic call through a layer that prices as calls end; its payload.
async fn priced_anthropic(file: &str, index: usize) -> Arc<LlmCall> {
    let layer = LlmObservabilityLayer::builder().pricing(Pricing::built_in());
    replay_one(layer, anthropic_interaction(file, index)).await
}

#[tokio::test]
async fn anthropic_cache_writes_and_reads_are_priced_at_their_rates() {
    interest_in_every_span();
    // claude-3-5-sonnet-20240620: 4 uncached input tokens, 1163 written to the cache, 187 out.
    let call = priced_anthropic("test_anthropic_prompt_caching_legacy.yaml.json", 0).await;
    let usage = call.usage.expect("usage");
    assert_eq!(
        (
            usage.input_tokens,
            usage.cache_creation_input_tokens,
            usage.output_tokens
        ),
        (Some(4 + 1163), Some(1163), Some(187))
    );
    let cost = call.cost.as_ref().expect("priced");
    close(cost.input_usd, 4.0 * 3e-6, "input"); // 0.000012
    close(cost.cache_write_usd, 1163.0 * 3.75e-6, "cache write"); // 0.00436125
    close(cost.cache_read_usd, 0.0, "cache read");
    close(cost.output_usd, 187.0 * 15e-6, "output"); // 0.002805
    close(cost.total_usd, 0.00717825, "total");
    assert_eq!(cost.pricing_source, "built-in");

    // The same prompt read back from the cache: 1163 at 0.30, 202 out.
    let call = priced_anthropic("test_anthropic_prompt_caching_legacy.yaml.json", 1).await;
    let cost = call.cost.as_ref().expect("priced");
    close(cost.cache_read_usd, 1163.0 * 0.30e-6, "cache read"); // 0.0003489
    close(cost.cache_write_usd, 0.0, "cache write");
    close(
        cost.total_usd,
        4.0 * 3e-6 + 0.0003489 + 202.0 * 15e-6,
        "total",
    ); // 0.0033909

    // Streamed: usage from message_start and message_delta; 1165 written, 201 out.
    let call = priced_anthropic("test_anthropic_prompt_caching_stream_legacy.yaml.json", 0).await;
    close(
        call.cost.as_ref().expect("priced").total_usd,
        4.0 * 3e-6 + 1165.0 * 3.75e-6 + 201.0 * 15e-6, // 0.00739575
        "stream total",
    );
}

fn claude_call(model: &str) -> LlmCall {
    // 20_000 input tokens: 12_000 read from the cache, 5_000 written to it, 3_000 uncached.
    let mut usage = Usage::new(20_000, 800);
    usage.cached_input_tokens = Some(12_000);
    usage.cache_creation_input_tokens = Some(5_000);
    let mut call = LlmCall::new(Endpoint::ChatCompletions);
    call.request_model = Some(model.into());
    call.usage = Some(usage);
    call
}

/// Claude models as LiteLLM's price file lists them, under its real key names.
const LITELLM_CLAUDE: &str = r#"{
  "claude-sonnet-4-5-20250929": {
    "max_tokens": 64000, "max_input_tokens": 200000, "max_output_tokens": 64000,
    "input_cost_per_token": 3e-06, "output_cost_per_token": 1.5e-05,
    "cache_creation_input_token_cost": 3.75e-06, "cache_read_input_token_cost": 3e-07,
    "litellm_provider": "anthropic", "mode": "chat", "supports_prompt_caching": true
  },
  "claude-3-5-haiku-20241022": {
    "input_cost_per_token": 8e-07, "output_cost_per_token": 4e-06,
    "cache_creation_input_token_cost": 1e-06, "cache_read_input_token_cost": 8e-08,
    "litellm_provider": "anthropic", "mode": "chat"
  }
}"#;

#[test]
fn a_claude_call_with_cache_reads_and_writes_by_hand_and_from_a_litellm_file() {
    interest_in_every_span();
    // claude-sonnet-4-5: 3_000 * 3 + 12_000 * 0.30 + 5_000 * 3.75 + 800 * 15, per 1M.
    let want = [
        (3_000.0 * 3e-6, "input"),    // 0.009
        (12_000.0 * 0.30e-6, "read"), // 0.0036
        (5_000.0 * 3.75e-6, "write"), // 0.01875
        (800.0 * 15e-6, "output"),    // 0.012
        (0.04335, "total"),
    ];
    let check = |cost: &Cost| {
        let got = [
            cost.input_usd,
            cost.cache_read_usd,
            cost.cache_write_usd,
            cost.output_usd,
            cost.total_usd,
        ];
        for (got, (want, what)) in got.into_iter().zip(want) {
            close(got, want, what);
        }
    };
    let mut call = claude_call("claude-sonnet-4-5-20250929");
    Pricing::built_in().process(&mut call).expect("never fails");
    let built_in = call.cost.expect("priced");
    check(&built_in);
    assert_eq!(built_in.pricing_source, "built-in");

    let from_file = Pricing::empty()
        .litellm_json(LITELLM_CLAUDE, "file:claude.json")
        .expect("loads");
    let mut call = claude_call("claude-sonnet-4-5-20250929");
    from_file.process(&mut call).expect("never fails");
    let cost = call.cost.expect("priced");
    check(&cost);
    assert_eq!(cost.pricing_source, "file:claude.json");
    // `anthropic/...` finds the entry LiteLLM lists under its provider.
    assert_eq!(
        from_file
            .resolve("anthropic/claude-3-5-haiku-20241022")
            .map(|r| r.1),
        Some(ModelPrice::per_token_with_cache_write(
            8e-07,
            Some(8e-08),
            Some(1e-06),
            4e-06
        ))
    );
    // A cache-write price of the wrong sign refuses the file.
    let bad = LITELLM_CLAUDE.replace("3.75e-06", "-3.75e-06");
    assert!(matches!(
        Pricing::empty().litellm_json(&bad, "file:bad.json"),
        Err(PricingError::InvalidPrice { .. })
    ));
}

#[test]
fn every_built_in_claude_price_is_anthropics_list_price() {
    interest_in_every_span();
    let pricing = Pricing::built_in();
    // (name as calls give it, table entry, input, cache read, cache write, output) per 1M.
    for (name, entry, input, read, write, output) in [
        (
            "claude-opus-4-1-20250805",
            "claude-opus-4-1",
            15.0,
            1.5,
            18.75,
            75.0,
        ),
        (
            "claude-opus-4-20250514",
            "claude-opus-4",
            15.0,
            1.5,
            18.75,
            75.0,
        ),
        (
            "claude-3-opus-20240229",
            "claude-3-opus",
            15.0,
            1.5,
            18.75,
            75.0,
        ),
        (
            "claude-sonnet-4-5-20250929",
            "claude-sonnet-4-5",
            3.0,
            0.30,
            3.75,
            15.0,
        ),
        (
            "claude-sonnet-4-20250514",
            "claude-sonnet-4",
            3.0,
            0.30,
            3.75,
            15.0,
        ),
        (
            "claude-3-7-sonnet-20250219",
            "claude-3-7-sonnet",
            3.0,
            0.30,
            3.75,
            15.0,
        ),
        (
            "claude-3-5-sonnet-20241022",
            "claude-3-5-sonnet",
            3.0,
            0.30,
            3.75,
            15.0,
        ),
        (
            "claude-3-5-sonnet-latest",
            "claude-3-5-sonnet",
            3.0,
            0.30,
            3.75,
            15.0,
        ),
        (
            "claude-haiku-4-5-20251001",
            "claude-haiku-4-5",
            1.0,
            0.10,
            1.25,
            5.0,
        ),
        (
            "claude-3-5-haiku-20241022",
            "claude-3-5-haiku",
            0.80,
            0.08,
            1.0,
            4.0,
        ),
        (
            "claude-3-5-haiku-latest",
            "claude-3-5-haiku",
            0.80,
            0.08,
            1.0,
            4.0,
        ),
        (
            "claude-3-haiku-20240307",
            "claude-3-haiku",
            0.25,
            0.03,
            0.30,
            1.25,
        ),
    ] {
        let (resolved, price) = pricing
            .resolve(name)
            .unwrap_or_else(|| panic!("{name} has no price"));
        assert_eq!(resolved, entry, "{name}");
        let per_million = |p: f64| p * 1e6;
        close(per_million(price.input_per_token), input, name);
        close(
            per_million(price.cache_read_per_token.expect("read")),
            read,
            name,
        );
        close(
            per_million(price.cache_write_per_token.expect("write")),
            write,
            name,
        );
        close(per_million(price.output_per_token), output, name);
    }
    assert_eq!(
        llm_observability::process::pricing::BUILT_IN_ANTHROPIC_AS_OF,
        "2025-10-15"
    );
}

// ---------------------------------------------------------------------------------------------
// Model aliases

#[tokio::test]
async fn an_azure_deployment_is_priced_as_the_model_its_alias_names() {
    interest_in_every_span();
    // Deployment `openllmetry-testing`; Azure answered `gpt-35-turbo` (Azure's spelling, not
    // in the table): 15 input and 19 output tokens, unpriced without an alias.
    let replay = |alias: bool| async move {
        let memory = MemorySink::new();
        let mut builder = LlmObservabilityLayer::builder();
        if alias {
            // Set before the pricing: the order does not matter.
            builder = builder.model_alias("OpenLLMetry-Testing", "gpt-3.5-turbo-0125");
        }
        let layer = builder
            .pricing(Pricing::built_in())
            .sink(memory.clone())
            .build()
            .expect("inside a runtime");
        let recorded = interaction("test_azure/test_chat_content_filtering.yaml.json", 0);
        let frames = vec![Bytes::from(recorded.response_body.clone())];
        support::replay_tower(&layer, &recorded, frames).await;
        support::flushed(&layer, &memory).await.remove(0)
    };
    let unpriced = replay(false).await;
    assert_eq!(unpriced.requested_model(), Some("openllmetry-testing"));
    assert_eq!(unpriced.response_model.as_deref(), Some("gpt-35-turbo"));
    assert_eq!(unpriced.cost, None);
    assert!(
        unpriced.processing_errors[0].contains("no price for model \"gpt-35-turbo\""),
        "{:?}",
        unpriced.processing_errors
    );
    let priced = replay(true).await;
    let cost = priced.cost.as_ref().expect("priced by the alias");
    close(cost.total_usd, 15.0 * 0.50e-6 + 19.0 * 1.50e-6, "total"); // 0.000036
    assert_eq!(cost.pricing_source, "built-in");
    assert!(priced.processing_errors.is_empty());

    // On a Pricing used as a processor: the same.
    let pricing = Pricing::built_in().with_alias("openllmetry-testing", "gpt-3.5-turbo");
    let mut call = (*unpriced).clone();
    call.processing_errors.clear();
    pricing.process(&mut call).expect("never fails");
    close(call.cost.expect("priced").total_usd, 0.000036, "processor");
}

// ---------------------------------------------------------------------------------------------
// A cost the provider reported (OpenRouter)

const OPENROUTER_USAGE: &str = r#"{"prompt_tokens":1000,"completion_tokens":100,"total_tokens":1100,"cost":0.000123,"is_byok":false,"prompt_tokens_details":{"cached_tokens":0},"cost_details":{"upstream_inference_cost":null,"upstream_inference_prompt_cost":0.000083,"upstream_inference_completions_cost":0.00004}}"#;

/// An OpenRouter exchange: `stream` or not, answered with `body`.
fn openrouter(stream: bool, content_type: &str, body: String) -> Interaction {
    Interaction {
        file: "openrouter".into(),
        index: usize::from(stream),
        method: "POST".into(),
        uri: "https://openrouter.ai/api/v1/chat/completions".into(),
        request_body: serde_json::json!({"model": "openai/gpt-4o-mini", "stream": stream,
            "messages": [{"role": "user", "content": "hi"}], "usage": {"include": true}})
        .to_string(),
        status: 200,
        content_type: content_type.into(),
        response_body: body,
        serve_encoding: None,
    }
}

fn openrouter_json() -> Interaction {
    let body = format!(
        r#"{{"id":"gen-1","object":"chat.completion","created":1,"provider":"OpenAI","model":"openai/gpt-4o-mini","choices":[{{"index":0,"finish_reason":"stop","message":{{"role":"assistant","content":"hi","reasoning":null}}}}],"usage":{OPENROUTER_USAGE}}}"#
    );
    openrouter(false, "application/json", body)
}

fn openrouter_stream() -> Interaction {
    let chunk = |body: &str| format!("data: {body}\n\n");
    let body = [
        chunk(r#"{"id":"gen-2","model":"openai/gpt-4o-mini","choices":[{"index":0,"delta":{"role":"assistant","content":"","reasoning":"Think"}}]}"#),
        ": OPENROUTER PROCESSING\n\n".to_owned(),
        chunk(r#"{"id":"gen-2","model":"openai/gpt-4o-mini","choices":[{"index":0,"delta":{"content":"hi","reasoning":null},"finish_reason":"stop"}]}"#),
        chunk(&format!(r#"{{"id":"gen-2","model":"openai/gpt-4o-mini","choices":[],"usage":{OPENROUTER_USAGE}}}"#)),
        "data: [DONE]\n\n".to_owned(),
    ]
    .concat();
    openrouter(true, "text/event-stream", body)
}

#[tokio::test]
async fn a_cost_the_provider_reported_is_the_calls_cost_and_pricing_keeps_it() {
    interest_in_every_span();
    let memory = MemorySink::new();
    // The built-in table knows gpt-4o-mini (0.15 / 0.60: 0.00021 for these counts): the
    // provider's figure is kept, by the layer's pricing and by a pricing processor.
    let layer = LlmObservabilityLayer::builder()
        .pricing(Pricing::built_in())
        .processor(Pricing::built_in())
        .sink(memory.clone())
        .build()
        .expect("inside a runtime");
    for recorded in [openrouter_json(), openrouter_stream()] {
        let body = recorded.response_body.clone();
        // The stream in small pieces: the usage chunk split across frames.
        let frames = support::split(body.as_bytes(), &[7, 50, 3, 200, 11]);
        let exchange = support::replay_tower(&layer, &recorded, frames).await;
        assert_eq!(exchange.response_body, body.as_bytes(), "bytes unchanged");
    }
    let calls = support::flushed(&layer, &memory).await;
    assert_eq!(calls.len(), 2);
    for call in &calls {
        let cost = call.cost.as_ref().expect("the provider's cost");
        assert_eq!(cost.pricing_source, "provider");
        assert_eq!(cost.total_usd, 0.000123);
        // Its parts add up to the total: split as cost_details says.
        assert_eq!((cost.input_usd, cost.output_usd), (0.000083, 0.00004));
        assert!(
            call.processing_errors.is_empty(),
            "{:?}",
            call.processing_errors
        );
        // The usage object is recorded as sent.
        let usage = &call.response.as_ref().expect("response")["usage"];
        assert_eq!(usage["cost"], 0.000123);
        assert_eq!(
            usage["cost_details"]["upstream_inference_completions_cost"],
            0.00004
        );
        assert_eq!(call.usage.expect("usage").input_tokens, Some(1000));
    }
    let streamed = calls
        .iter()
        .find(|c| c.request.stream)
        .expect("the streamed call");
    let message = &streamed.response.as_ref().expect("response")["choices"][0]["message"];
    assert_eq!(message["reasoning"], "Think");
    assert_eq!(message["content"], "hi");
}

/// Gemini, Vertex AI, Bedrock and Ollama models as LiteLLM's price file lists them (real key
/// names and prices of the file at the time of writing), plus a Vertex AI entry for
/// `gemini-2.5-flash` made dearer than the Gemini API's, so that the test sees which one a
/// call is priced from.
const LITELLM_PROVIDERS: &str = r#"{
  "gemini/gemini-2.5-pro": {
    "input_cost_per_token": 1.25e-06, "output_cost_per_token": 1e-05,
    "cache_read_input_token_cost": 1.25e-07,
    "input_cost_per_token_above_200k_tokens": 2.5e-06,
    "output_cost_per_token_above_200k_tokens": 1.5e-05,
    "cache_read_input_token_cost_above_200k_tokens": 2.5e-07,
    "input_cost_per_token_priority": 2.25e-06,
    "input_cost_per_token_above_200k_tokens_priority": 4.5e-06,
    "litellm_provider": "gemini", "mode": "chat"
  },
  "gemini/gemini-2.5-flash": {
    "input_cost_per_token": 3e-07, "output_cost_per_token": 2.5e-06,
    "cache_read_input_token_cost": 3e-08, "litellm_provider": "gemini", "mode": "chat"
  },
  "gemini-2.5-flash": {
    "input_cost_per_token": 6e-07, "output_cost_per_token": 5e-06,
    "cache_read_input_token_cost": 6e-08,
    "litellm_provider": "vertex_ai-language-models", "mode": "chat"
  },
  "gemini/gemini-embedding-001": {
    "input_cost_per_token": 1.5e-07, "output_cost_per_token": 0,
    "litellm_provider": "gemini", "mode": "embedding"
  },
  "amazon.nova-lite-v1:0": {
    "input_cost_per_token": 6e-08, "output_cost_per_token": 2.4e-07,
    "cache_read_input_token_cost": 1.5e-08, "litellm_provider": "bedrock_converse", "mode": "chat"
  },
  "us.anthropic.claude-3-7-sonnet-20250219-v1:0": {
    "input_cost_per_token": 3e-06, "output_cost_per_token": 1.5e-05,
    "cache_read_input_token_cost": 3e-07, "cache_creation_input_token_cost": 3.75e-06,
    "litellm_provider": "bedrock_converse", "mode": "chat"
  },
  "ollama/llama3": {
    "input_cost_per_token": 0.0, "output_cost_per_token": 0.0,
    "litellm_provider": "ollama", "mode": "chat"
  }
}"#;

fn provider_call(provider: &str, endpoint: Endpoint, model: &str, usage: Usage) -> LlmCall {
    let mut call = LlmCall::new(endpoint);
    call.provider = provider.into();
    call.request_model = Some(model.into());
    call.usage = Some(usage);
    call
}

#[test]
fn gemini_vertex_bedrock_and_ollama_calls_are_priced_from_their_providers_litellm_entries() {
    interest_in_every_span();
    let pricing = Pricing::built_in()
        .litellm_json(LITELLM_PROVIDERS, "file:providers.json")
        .expect("loads");
    let cost_of = |call: &LlmCall| pricing.cost_of(call).expect("priced");
    let mut usage = Usage::new(10_000, 2_000);
    usage.cached_input_tokens = Some(4_000);

    // The same model at the Gemini API and at Vertex AI: each from its own entry.
    let gemini = provider_call(
        "gcp.gemini",
        Endpoint::GeminiGenerateContent,
        "gemini-2.5-flash",
        usage,
    );
    close(
        cost_of(&gemini).total_usd,
        6_000.0 * 3e-7 + 4_000.0 * 3e-8 + 2_000.0 * 2.5e-6,
        "gemini api",
    );
    let vertex = provider_call(
        "gcp.vertex_ai",
        Endpoint::GeminiGenerateContent,
        "gemini-2.5-flash",
        usage,
    );
    close(
        cost_of(&vertex).total_usd,
        6_000.0 * 6e-7 + 4_000.0 * 6e-8 + 2_000.0 * 5e-6,
        "vertex",
    );
    assert_eq!(cost_of(&vertex).pricing_source, "file:providers.json");

    // Gemini 2.5 Pro over 200k input tokens: the whole call at the long-context rates (not
    // the priority tier's); at exactly 200k, the base rates.
    let mut long = Usage::new(250_000, 1_000);
    long.cached_input_tokens = Some(50_000);
    let pro = provider_call(
        "gcp.gemini",
        Endpoint::GeminiGenerateContent,
        "gemini-2.5-pro",
        long,
    );
    let cost = cost_of(&pro);
    close(cost.input_usd, 200_000.0 * 2.5e-6, "long input");
    close(cost.cache_read_usd, 50_000.0 * 2.5e-7, "long cache read");
    close(cost.output_usd, 1_000.0 * 1.5e-5, "long output");
    let at_threshold = provider_call(
        "gcp.gemini",
        Endpoint::GeminiGenerateContent,
        "gemini-2.5-pro",
        Usage::new(200_000, 1_000),
    );
    close(
        cost_of(&at_threshold).total_usd,
        200_000.0 * 1.25e-6 + 1_000.0 * 1e-5,
        "at the threshold",
    );

    // Embeddings by their input.
    let embed = provider_call(
        "gcp.gemini",
        Endpoint::GeminiEmbedContent,
        "gemini-embedding-001",
        Usage::new(1_000, 0),
    );
    close(cost_of(&embed).total_usd, 1_000.0 * 1.5e-7, "embedding");

    // Bedrock: a model id as it is, and a system inference profile ARN as the model it names
    // (with Anthropic's cache writes).
    let nova = provider_call(
        "aws.bedrock",
        Endpoint::BedrockConverse,
        "amazon.nova-lite-v1:0",
        usage,
    );
    close(
        cost_of(&nova).total_usd,
        6_000.0 * 6e-8 + 4_000.0 * 1.5e-8 + 2_000.0 * 2.4e-7,
        "nova",
    );
    let mut claude_usage = usage;
    claude_usage.cache_creation_input_tokens = Some(1_000);
    let profile = provider_call(
        "aws.bedrock",
        Endpoint::BedrockConverseStream,
        "arn:aws:bedrock:us-east-1:012345678901:inference-profile/us.anthropic.claude-3-7-sonnet-20250219-v1:0",
        claude_usage,
    );
    let cost = cost_of(&profile);
    close(
        cost.cache_write_usd,
        1_000.0 * 3.75e-6,
        "profile cache write",
    );
    close(
        cost.total_usd,
        5_000.0 * 3e-6 + 4_000.0 * 3e-7 + 1_000.0 * 3.75e-6 + 2_000.0 * 1.5e-5,
        "profile",
    );

    // Ollama: a local model costs nothing, whatever its tag says.
    let ollama = provider_call(
        "ollama",
        Endpoint::OllamaChat,
        "llama3:latest",
        Usage::new(500, 20),
    );
    let cost = cost_of(&ollama);
    assert_eq!(cost.total_usd, 0.0);
    assert_eq!(cost.pricing_source, "file:providers.json");

    // A price set in code wins over the provider's entry.
    let overridden = pricing
        .clone()
        .with_price("gemini-2.5-flash", ModelPrice::per_million(1.0, None, 1.0));
    let cost = overridden.cost_of(&vertex).expect("priced");
    assert_eq!(cost.pricing_source, "override");
    close(cost.total_usd, 12_000.0 * 1e-6, "override");

    // A model the file does not hold: no cost, and the reason.
    let unknown = provider_call(
        "ollama",
        Endpoint::OllamaChat,
        "qwen3.6:latest",
        Usage::new(500, 20),
    );
    assert_eq!(
        pricing.cost_of(&unknown).unwrap_err(),
        "no cost: no price for model \"qwen3.6:latest\""
    );
}

#[test]
fn a_long_context_tier_with_a_bad_price_refuses_the_file() {
    interest_in_every_span();
    let bad = LITELLM_PROVIDERS.replace(
        "\"output_cost_per_token_above_200k_tokens\": 1.5e-05",
        "\"output_cost_per_token_above_200k_tokens\": -1.5e-05",
    );
    assert!(matches!(
        Pricing::empty().litellm_json(&bad, "file:bad.json"),
        Err(PricingError::InvalidPrice { model, .. }) if model == "gemini/gemini-2.5-pro"
    ));
}
