//! Span parentage of the reqwest middleware, alone and next to `reqwest-tracing`.
//!
//! In their own test binary: every test here records spans with a scoped subscriber, and a
//! test without one running in parallel can leave `tracing`'s per-callsite interest cached as
//! "never" (the recorded span then goes missing).

mod support;

use reqwest_middleware::ClientBuilder;
use support::reqwest_fixture::*;
use support::spans::with_spans;
use tracing::Instrument;

/// The `gen_ai` span is a child of the span current at the call (here entered with
/// `.instrument`), carries the GenAI fields, and closes when the body has been read.
#[test]
fn gen_ai_span_is_a_child_of_the_callers_span() {
    let spans = with_spans(|| async {
        let upstream = Upstream::start().await?;
        let (layer, memory) = support::memory_layer();
        let client = observed_client(&layer);
        let caller = tracing::info_span!("caller");
        async {
            let response = client
                .post(upstream.chat_url())
                .json(&chat_request(true))
                .send()
                .await?;
            response.bytes().await?;
            Ok::<_, reqwest_middleware::Error>(())
        }
        .instrument(caller)
        .await?;
        assert_eq!(support::flushed(&layer, &memory).await.len(), 1);
        Ok(())
    });

    let caller = spans.one("caller");
    let gen_ai = spans.one(llm_observability::span::SPAN_NAME);
    assert_eq!(gen_ai.parent, Some(caller.key));
    assert!(gen_ai.closed, "the span closes when the call ends");
    let field = |name: &str| gen_ai.fields.get(name).map(String::as_str);
    assert_eq!(field("gen_ai.operation.name"), Some("chat"));
    assert_eq!(field("gen_ai.provider.name"), Some("openai"));
    assert_eq!(field("gen_ai.request.model"), Some("gpt-4o-mini"));
    assert_eq!(field("gen_ai.request.stream"), Some("true"));
    assert_eq!(field("gen_ai.request.seed"), Some("7"));
    assert_eq!(field("gen_ai.request.max_tokens"), Some("50"));
    assert_eq!(
        field("gen_ai.response.model"),
        Some("gpt-4o-mini-2024-07-18")
    );
    assert_eq!(field("gen_ai.response.id"), Some("chatcmpl-s1"));
    assert_eq!(field("gen_ai.response.finish_reasons"), Some(r#"["stop"]"#));
    assert_eq!(field("gen_ai.usage.input_tokens"), Some("9"));
    assert_eq!(field("gen_ai.usage.output_tokens"), Some("3"));
    assert!(field("gen_ai.response.time_to_first_chunk").is_some());
    assert_eq!(field("server.address"), Some("127.0.0.1"));
    assert_eq!(field("otel.name"), Some("chat gpt-4o-mini"));
    assert_eq!(field("otel.kind"), Some("client"));
    assert_eq!(field("otel.status_code"), None);
}

/// Composition with `reqwest-tracing`: reqwest-middleware runs middlewares in the order they
/// were added (the first `.with` is outermost), and each of the two middlewares makes its own
/// span current while it runs the rest of the chain. So the spans nest — they are never
/// siblings — and the order of `.with` decides which is the parent:
///
/// - `.with(TracingMiddleware::default()).with(layer.middleware())`: the `gen_ai` span sits
///   **inside** reqwest-tracing's `HTTP request` span (caller → HTTP request → gen_ai). The
///   HTTP span closes when the response head arrives; our child span stays open until the body
///   is read (its end is the end of the LLM call).
/// - `.with(layer.middleware()).with(TracingMiddleware::default())`: the `HTTP request` span
///   sits **inside** the `gen_ai` span (caller → gen_ai → HTTP request), which is the usual
///   OpenTelemetry GenAI shape (an LLM call span with the HTTP client span below it).
#[test]
fn composition_with_reqwest_tracing_nests_by_middleware_order() {
    use reqwest_tracing::TracingMiddleware;

    const HTTP_SPAN: &str = "HTTP request";
    for tracing_first in [true, false] {
        let spans = with_spans(|| async move {
            let upstream = Upstream::start().await?;
            let (layer, memory) = support::memory_layer();
            let builder = ClientBuilder::new(plain_client());
            let client = if tracing_first {
                builder
                    .with(TracingMiddleware::default())
                    .with(layer.middleware())
                    .build()
            } else {
                builder
                    .with(layer.middleware())
                    .with(TracingMiddleware::default())
                    .build()
            };
            async {
                let response = client
                    .post(upstream.chat_url())
                    .json(&chat_request(false))
                    .send()
                    .await?;
                response.bytes().await?;
                Ok::<_, reqwest_middleware::Error>(())
            }
            .instrument(tracing::info_span!("caller"))
            .await?;
            assert_eq!(support::flushed(&layer, &memory).await.len(), 1);
            Ok(())
        });

        let caller = spans.one("caller");
        let http = spans.one(HTTP_SPAN);
        let gen_ai = spans.one(llm_observability::span::SPAN_NAME);
        assert_eq!(
            http.fields
                .get("http.response.status_code")
                .map(String::as_str),
            Some("200")
        );
        if tracing_first {
            assert_eq!(http.parent, Some(caller.key), "HTTP span under the caller");
            assert_eq!(gen_ai.parent, Some(http.key), "gen_ai inside the HTTP span");
        } else {
            assert_eq!(gen_ai.parent, Some(caller.key), "gen_ai under the caller");
            assert_eq!(http.parent, Some(gen_ai.key), "HTTP span inside gen_ai");
        }
        assert!(http.closed && gen_ai.closed);
    }
}
