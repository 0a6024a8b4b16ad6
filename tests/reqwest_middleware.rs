//! The reqwest-middleware adapter (`LlmObservabilityLayer::middleware`), end to end: a
//! `reqwest_middleware` client over real TCP against an axum upstream started in each test on
//! `127.0.0.1:0`, payloads read back from a [`MemorySink`] after `Dispatcher::flush`.
//!
//! Covered: what the caller gets back is the upstream's response (exact bytes, URL, status,
//! headers, version) whichever way the body is read (`json`, `text`, `bytes`, `bytes_stream`),
//! SSE stays incremental, per-request metadata, transport errors, responses dropped unread,
//! streaming request bodies, non-LLM routes, and a real third-party OpenAI client
//! (`async-openai`) driven through the middleware. Span parentage is in `reqwest_spans.rs`.

mod support;

use support::reqwest_fixture::*;

use std::io;

use axum::body::Bytes;
use axum::http::{header, Method};
use futures_util::StreamExt;
use llm_observability::{CallMetadata, CallStatus, Endpoint, LlmCall, Usage};
use reqwest_middleware::ClientWithMiddleware;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// Tests

/// `.json()`: the caller gets the upstream's body, URL, status, headers and version; the
/// payload has the request, response, usage and finish reasons.
#[tokio::test]
async fn non_streaming_chat_read_with_json() -> TestResult {
    let upstream = Upstream::start().await?;
    let (layer, memory) = support::memory_layer();
    let client = observed_client(&layer);
    let url = upstream.chat_url();
    let request = chat_request(false);

    // The same request without the middleware, for the head to compare against.
    let reference = plain_client().post(&url).json(&request).send().await?;
    let response = client.post(&url).json(&request).send().await?;

    assert_eq!(response.url().as_str(), url);
    assert_eq!(response.status(), reference.status());
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), reference.version());
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    assert_eq!(
        headers_without_date(response.headers()),
        headers_without_date(reference.headers())
    );
    assert_eq!(response.headers()["x-request-id"], "req-123");
    assert_eq!(response.content_length(), Some(CHAT_JSON.len() as u64));
    assert_eq!(response.remote_addr(), Some(upstream.addr));
    let body: Value = response.json().await?;
    assert_eq!(body, serde_json::from_str::<Value>(CHAT_JSON)?);

    let call = single_payload(&layer, &memory).await;
    assert_eq!(call.endpoint, Endpoint::ChatCompletions);
    assert_eq!(call.operation, "chat");
    assert_eq!(call.provider, "openai");
    assert_eq!(call.server_address.as_deref(), Some("127.0.0.1"));
    assert_eq!(call.request.model.as_deref(), Some("gpt-4o-mini"));
    assert_eq!(call.request.messages.as_deref(), Some(&request["messages"]));
    assert!(!call.request.stream);
    assert_eq!(call.request.temperature, Some(0.2));
    assert_eq!(call.request.max_tokens, Some(50));
    assert_eq!(call.request.seed, Some(7));
    assert_eq!(call.request.stop.as_deref(), Some(&json!(["\n\n"])));
    assert_eq!(call.response, Some(serde_json::from_str(CHAT_JSON)?));
    assert_eq!(call.usage, Some(Usage::new(12, 5)));
    assert_eq!(call.finish_reasons, ["stop"]);
    assert_eq!(call.status, CallStatus::Success);
    assert_eq!(call.http_status, Some(200));
    assert_eq!(call.error, None);
    assert_eq!(call.error_type, None);
    assert_eq!(
        call.response_model.as_deref(),
        Some("gpt-4o-mini-2024-07-18")
    );
    assert_eq!(call.response_id.as_deref(), Some("chatcmpl-json1"));
    assert_eq!(call.timing.time_to_first_token_ms, None);
    let head = call
        .timing
        .time_to_response_head_ms
        .expect("a response head");
    assert!(
        head > 0.0 && head <= call.timing.duration_ms,
        "{:?}",
        call.timing
    );
    assert!(!call.truncated);
    assert!(call.decode_errors.is_empty(), "{:?}", call.decode_errors);
    assert!(call.metadata.is_empty());
    Ok(())
}

/// `.bytes_stream()`: the bytes are the upstream's, and they arrive as the upstream sends
/// them — the first event is in the caller's hands while the upstream is still holding the
/// rest back. The call finishes when the stream ends, not before.
#[tokio::test]
async fn streaming_chat_read_with_bytes_stream_is_incremental() -> TestResult {
    let upstream = Upstream::start_gated().await?;
    let (layer, memory) = support::memory_layer();
    let client = observed_client(&layer);
    let url = upstream.chat_url();

    let response = client.post(&url).json(&chat_request(true)).send().await?;
    assert_eq!(response.url().as_str(), url);
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut stream = response.bytes_stream();

    // Only the first event exists until we release the rest.
    let mut received = Vec::new();
    while received.len() < STREAM_FIRST.len() {
        let chunk = stream.next().await.expect("first event arrives")?;
        received.extend_from_slice(&chunk);
    }
    assert_eq!(received, STREAM_FIRST.as_bytes());
    assert!(
        support::flushed(&layer, &memory).await.is_empty(),
        "the call must not finish before its body does"
    );

    upstream.release();
    while let Some(chunk) = stream.next().await {
        received.extend_from_slice(&chunk?);
    }
    assert_eq!(received, stream_bytes(STREAM_FIRST, STREAM_REST));

    let call = single_payload(&layer, &memory).await;
    assert_text_stream_payload(&call);
    assert_eq!(
        call.request.messages.as_deref(),
        Some(&chat_request(true)["messages"])
    );
    Ok(())
}

/// `.text()` and `.bytes()` read the same bytes as without the middleware, and each call is
/// recorded in full.
#[tokio::test]
async fn text_and_bytes_read_the_upstream_body() -> TestResult {
    let upstream = Upstream::start().await?;
    let (layer, memory) = support::memory_layer();
    let client = observed_client(&layer);
    let url = upstream.chat_url();

    let text = client
        .post(&url)
        .json(&chat_request(false))
        .send()
        .await?
        .text()
        .await?;
    assert_eq!(text, CHAT_JSON);

    let bytes = client
        .post(&url)
        .json(&chat_request(true))
        .send()
        .await?
        .bytes()
        .await?;
    assert_eq!(bytes, stream_bytes(STREAM_FIRST, STREAM_REST));

    let streamed_text = client
        .post(&url)
        .json(&chat_request(true))
        .send()
        .await?
        .text()
        .await?;
    assert_eq!(
        streamed_text.as_bytes(),
        stream_bytes(STREAM_FIRST, STREAM_REST)
    );

    let calls = support::flushed(&layer, &memory).await;
    assert_eq!(calls.len(), 3, "{calls:#?}");
    assert_eq!(calls[0].status, CallStatus::Success);
    assert_eq!(calls[0].response, Some(serde_json::from_str(CHAT_JSON)?));
    assert_eq!(calls[0].finish_reasons, ["stop"]);
    assert_text_stream_payload(&calls[1]);
    assert_text_stream_payload(&calls[2]);
    Ok(())
}

/// `CallMetadata` given as a request extension ends up in the payload.
#[tokio::test]
async fn per_request_metadata_from_an_extension() -> TestResult {
    let upstream = Upstream::start().await?;
    let (layer, memory) = support::memory_layer();
    let client = observed_client(&layer);

    let response = client
        .post(upstream.chat_url())
        .with_extension(
            CallMetadata::new()
                .with("user_id", "u1")
                .with("session_id", "s1"),
        )
        .json(&chat_request(false))
        .send()
        .await?;
    response.bytes().await?;

    let call = single_payload(&layer, &memory).await;
    let expected = json!({"user_id": "u1", "session_id": "s1"});
    assert_eq!(Value::Object(call.metadata.clone()), expected);
    assert_eq!(call.status, CallStatus::Success);
    Ok(())
}

/// Connection refused: the error comes back from `next.run` unchanged, and the payload says
/// `transport` with no HTTP status.
#[tokio::test]
async fn connection_refused_is_a_transport_error() -> TestResult {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.local_addr()?
    };
    let (layer, memory) = support::memory_layer();
    let client = observed_client(&layer);
    let request = chat_request(false);

    let error = client
        .post(format!("http://{closed}/v1/chat/completions"))
        .json(&request)
        .send()
        .await
        .expect_err("nothing listens there");
    match &error {
        reqwest_middleware::Error::Reqwest(error) => {
            assert!(error.is_connect(), "{error:?}")
        }
        other => panic!("expected the reqwest error itself, got {other:?}"),
    }

    let call = single_payload(&layer, &memory).await;
    assert_eq!(call.status, CallStatus::Error);
    assert_eq!(call.http_status, None);
    let recorded = call.error.as_ref().expect("an error");
    assert_eq!(recorded.kind.as_deref(), Some("transport"));
    assert_eq!(call.error_type.as_deref(), Some("transport"));
    assert_eq!(call.timing.time_to_response_head_ms, None);
    assert_eq!(
        recorded.message.as_deref(),
        Some(error.to_string().as_str())
    );
    assert_eq!(call.request.model.as_deref(), Some("gpt-4o-mini"));
    assert_eq!(call.response, None);
    assert_eq!(call.usage, None);
    assert_eq!(call.timing.time_to_first_token_ms, None);
    Ok(())
}

/// A streaming response dropped right after its head: one `cancelled` payload.
#[tokio::test]
async fn streaming_response_dropped_unread_is_cancelled() -> TestResult {
    let upstream = Upstream::start_gated().await?;
    let (layer, memory) = support::memory_layer();
    let client = observed_client(&layer);

    let response = client
        .post(upstream.chat_url())
        .json(&chat_request(true))
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    drop(response);

    let call = single_payload(&layer, &memory).await;
    assert_eq!(call.status, CallStatus::Cancelled);
    assert_eq!(call.http_status, Some(200));
    assert_eq!(
        call.error.as_ref().and_then(|e| e.kind.as_deref()),
        Some("cancelled")
    );
    assert_eq!(call.request.model.as_deref(), Some("gpt-4o-mini"));
    assert_eq!(call.usage, None);
    assert!(call.finish_reasons.is_empty());
    assert_eq!(layer.dispatcher().stats().observed, 1);
    Ok(())
}

/// A stream dropped after its first event: `cancelled`, with the partial output kept.
#[tokio::test]
async fn streaming_response_dropped_mid_way_keeps_partial_output() -> TestResult {
    let upstream = Upstream::start_gated().await?;
    let (layer, memory) = support::memory_layer();
    let client = observed_client(&layer);

    let response = client
        .post(upstream.chat_url())
        .json(&chat_request(true))
        .send()
        .await?;
    let mut stream = response.bytes_stream();
    let mut received = Vec::new();
    while received.len() < STREAM_FIRST.len() {
        received.extend_from_slice(&stream.next().await.expect("first event")?);
    }
    drop(stream);

    let call = single_payload(&layer, &memory).await;
    assert_eq!(call.status, CallStatus::Cancelled);
    assert_eq!(call.http_status, Some(200));
    let response = call.response.as_ref().expect("partial response");
    assert_eq!(response["choices"][0]["message"]["content"], "Hel");
    assert!(call.timing.time_to_first_token_ms.is_some());
    assert_eq!(call.usage, None);
    Ok(())
}

/// A request body that is a stream is passed on intact; the payload says it was not recorded
/// (reqwest cannot show a streaming body without consuming it), and the response still is.
#[tokio::test]
async fn streaming_request_body_is_passed_on_not_recorded() -> TestResult {
    let upstream = Upstream::start().await?;
    let (layer, memory) = support::memory_layer();
    let client = observed_client(&layer);
    let json = serde_json::to_vec(&chat_request(false))?;
    let (head, tail) = json.split_at(json.len() / 2);
    let parts = vec![
        Ok::<_, io::Error>(Bytes::copy_from_slice(head)),
        Ok(Bytes::copy_from_slice(tail)),
    ];

    let response = client
        .post(upstream.chat_url())
        .header(header::CONTENT_TYPE, "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            parts,
        )))
        .send()
        .await?;
    assert_eq!(response.text().await?, CHAT_JSON);

    let received = upstream.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].method, Method::POST);
    assert_eq!(received[0].path, "/v1/chat/completions");
    assert_eq!(received[0].body, json);

    let call = single_payload(&layer, &memory).await;
    assert_eq!(
        call.decode_errors,
        ["request body is a stream; it was passed on but not recorded"]
    );
    assert_eq!(call.request.model, None);
    assert_eq!(call.request.messages, None);
    assert_eq!(call.status, CallStatus::Success);
    assert_eq!(call.response, Some(serde_json::from_str(CHAT_JSON)?));
    assert_eq!(call.finish_reasons, ["stop"]);
    Ok(())
}

/// Not an LLM endpoint: passed through, no payload, nothing counted.
#[tokio::test]
async fn non_llm_route_is_not_observed() -> TestResult {
    let upstream = Upstream::start().await?;
    let (layer, memory) = support::memory_layer();
    let client = observed_client(&layer);
    let url = upstream.url("/v1/models");

    let response = client.get(&url).send().await?;
    assert_eq!(response.url().as_str(), url);
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await?, MODELS_JSON);

    assert!(support::flushed(&layer, &memory).await.is_empty());
    assert_eq!(layer.dispatcher().stats().observed, 0);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// A real third-party OpenAI client: async-openai

/// async-openai (0.43, on reqwest 0.13 like us) driven through the middleware.
///
/// Its `Client::with_http_client` only takes a plain `reqwest::Client`, which cannot carry
/// reqwest-middleware middlewares. Its `middleware` feature, though, lets it run every request
/// through any `tower::Service<HttpRequestFactory, Response = reqwest::Response>`
/// (`Client::with_http_service`), and a `service_fn` that builds the request and hands it to
/// `ClientWithMiddleware::execute` is all it takes. (It bypasses async-openai's default retry
/// layer, which lives in the default service; add `OpenAIRetryLayer` around it to keep it.)
mod async_openai_client {
    use super::*;
    use async_openai::config::OpenAIConfig;
    use async_openai::error::OpenAIError;
    use async_openai::middleware::HttpRequestFactory;
    use async_openai::types::chat::{
        ChatCompletionMessageToolCalls, ChatCompletionRequestUserMessageArgs,
        ChatCompletionStreamOptions, ChatCompletionTool, ChatCompletionTools,
        CreateChatCompletionRequestArgs, FinishReason, FunctionObjectArgs,
    };

    /// An async-openai client whose HTTP goes through `client` (and so through our middleware).
    fn openai_over(
        client: ClientWithMiddleware,
        api_base: String,
    ) -> async_openai::Client<OpenAIConfig> {
        let service = tower::service_fn(move |factory: HttpRequestFactory| {
            let client = client.clone();
            async move {
                let request = factory.build().await?;
                client.execute(request).await.map_err(|error| match error {
                    reqwest_middleware::Error::Reqwest(error) => OpenAIError::Reqwest(error),
                    other => OpenAIError::Boxed(other.into()),
                })
            }
        });
        async_openai::Client::with_config(
            OpenAIConfig::new()
                .with_api_base(api_base)
                .with_api_key("sk-test"),
        )
        .with_http_service(service)
    }

    /// async-openai stops reading a stream at `data: [DONE]` (its SSE task `break`s and drops
    /// the response) without polling the body to its end. Over chunked HTTP/1.1 the body has
    /// not reported its end yet at that point; the stream has, so the call is a success.
    fn assert_completed_at_done(call: &LlmCall) {
        assert_eq!(call.status, CallStatus::Success, "{call:#?}");
        assert_eq!(call.http_status, Some(200));
        assert!(call.error.is_none(), "{:?}", call.error);
    }

    fn weather_tool() -> Result<ChatCompletionTools, OpenAIError> {
        Ok(ChatCompletionTools::Function(ChatCompletionTool {
            function: FunctionObjectArgs::default()
                .name("get_weather")
                .description("Current weather in a city")
                .parameters(json!({
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"]
                }))
                .build()?,
        }))
    }

    #[tokio::test]
    async fn streaming_chat_through_async_openai() -> TestResult {
        let upstream = Upstream::start().await?;
        let (layer, memory) = support::memory_layer();
        let openai = openai_over(observed_client(&layer), upstream.url("/v1"));

        let request = CreateChatCompletionRequestArgs::default()
            .model("gpt-4o-mini")
            .messages([ChatCompletionRequestUserMessageArgs::default()
                .content("Say hello")
                .build()?
                .into()])
            .stream_options(ChatCompletionStreamOptions {
                include_usage: Some(true),
                ..Default::default()
            })
            .max_completion_tokens(64u32)
            .build()?;
        let mut stream = openai.chat().create_stream(request).await?;
        let mut text = String::new();
        let mut finish = None;
        let mut usage = None;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            for choice in &chunk.choices {
                text.push_str(choice.delta.content.as_deref().unwrap_or_default());
                finish = finish.or(choice.finish_reason);
            }
            usage = usage.or(chunk.usage);
        }
        assert_eq!(text, STREAM_TEXT);
        assert_eq!(finish, Some(FinishReason::Stop));
        assert_eq!(usage.map(|u| u.total_tokens), Some(12));

        let received = upstream.received();
        assert_eq!(received.len(), 1);
        let sent: Value = serde_json::from_slice(&received[0].body)?;
        assert_eq!(sent["stream"], true);

        let call = single_payload(&layer, &memory).await;
        assert_eq!(call.request.model.as_deref(), Some("gpt-4o-mini"));
        assert_eq!(
            call.request.messages.as_deref(),
            Some(&json!([{"role": "user", "content": "Say hello"}]))
        );
        assert_eq!(call.request.max_completion_tokens, Some(64));
        assert_completed_at_done(&call);
        assert_text_stream_content(&call);
        Ok(())
    }

    #[tokio::test]
    async fn tool_calls_through_async_openai() -> TestResult {
        let upstream = Upstream::start().await?;
        let (layer, memory) = support::memory_layer();
        let openai = openai_over(observed_client(&layer), upstream.url("/v1"));
        let messages = [ChatCompletionRequestUserMessageArgs::default()
            .content("Weather in Paris?")
            .build()?
            .into()];

        // Non-streaming.
        let request = CreateChatCompletionRequestArgs::default()
            .model("gpt-4o-mini")
            .messages(messages.clone())
            .tools(vec![weather_tool()?])
            .build()?;
        let response = openai.chat().create(request).await?;
        let calls = response.choices[0]
            .message
            .tool_calls
            .as_deref()
            .expect("a tool call");
        let ChatCompletionMessageToolCalls::Function(tool_call) = &calls[0] else {
            panic!("expected a function call: {calls:?}");
        };
        assert_eq!(tool_call.function.name, "get_weather");
        assert_eq!(tool_call.function.arguments, r#"{"city":"Paris"}"#);

        // Streaming, arguments split across chunks.
        let request = CreateChatCompletionRequestArgs::default()
            .model("gpt-4o-mini")
            .messages(messages)
            .tools(vec![weather_tool()?])
            .stream_options(ChatCompletionStreamOptions {
                include_usage: Some(true),
                ..Default::default()
            })
            .build()?;
        let mut stream = openai.chat().create_stream(request).await?;
        let mut arguments = String::new();
        while let Some(chunk) = stream.next().await {
            for choice in chunk?.choices {
                for call in choice.delta.tool_calls.into_iter().flatten() {
                    arguments.push_str(
                        call.function
                            .and_then(|f| f.arguments)
                            .as_deref()
                            .unwrap_or_default(),
                    );
                }
            }
        }
        assert_eq!(arguments, r#"{"city":"Oslo"}"#);

        let calls = support::flushed(&layer, &memory).await;
        assert_eq!(calls.len(), 2, "{calls:#?}");
        let tools = json!([{
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather in a city",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"]
                }
            }
        }]);

        let plain = &calls[0];
        assert_eq!(plain.status, CallStatus::Success);
        assert!(!plain.request.stream);
        assert_eq!(plain.request.tools.as_deref(), Some(&tools));
        assert_eq!(plain.response, Some(serde_json::from_str(TOOL_JSON)?));
        assert_eq!(plain.finish_reasons, ["tool_calls"]);
        assert_eq!(plain.usage.and_then(|u| u.total_tokens), Some(55));

        let streamed = &calls[1];
        assert_completed_at_done(streamed);
        assert!(streamed.request.stream);
        assert_eq!(streamed.request.tools.as_deref(), Some(&tools));
        let message = &streamed.response.as_ref().expect("assembled")["choices"][0]["message"];
        assert_eq!(
            message["tool_calls"],
            json!([{
                "id": "call_xyz",
                "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}
            }])
        );
        assert_eq!(streamed.finish_reasons, ["tool_calls"]);
        assert_eq!(streamed.usage.and_then(|u| u.total_tokens), Some(52));
        assert!(streamed.timing.time_to_first_token_ms.is_some());
        Ok(())
    }
}
