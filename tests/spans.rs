//! The call's `tracing` span: a child of the caller's span, open for the life of the call,
//! carrying OpenTelemetry GenAI fields.

mod support;

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use llm_observability::RequestBody;
use serde_json::json;
use support::spans::Spans;
use support::ChannelBody;
use tower::{Service, ServiceBuilder, ServiceExt};
use tracing::Instrument;

const STREAM: &str = concat!(
    "data: {\"id\":\"chatcmpl-9\",\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"chatcmpl-9\",\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
    "data: {\"id\":\"chatcmpl-9\",\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":1,\"total_tokens\":10,\"prompt_tokens_details\":{\"cached_tokens\":4}}}\n\n",
    "data: [DONE]\n\n",
);

fn request(path: &str, model: &str) -> Request<Full<Bytes>> {
    let body = json!({"model": model, "stream": true, "temperature": 0.5, "max_tokens": 64,
        "stop": "END", "messages": [{"role": "user", "content": "hi"}]});
    Request::post(format!("http://api.example.test{path}"))
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

#[tokio::test]
async fn llm_span_is_a_child_of_the_caller_span_with_genai_fields() {
    let recorder = Spans::default();
    let _subscriber = tracing::subscriber::set_default(recorder.subscriber());
    let (layer, memory) = support::memory_layer();
    let upstream = tower::service_fn(|request: Request<RequestBody<Full<Bytes>>>| async move {
        let _ = request.into_body().collect().await;
        tracing::info_span!("upstream.handler").in_scope(|| {});
        Ok::<_, Infallible>(
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(ChannelBody::from_chunks(support::split(
                    STREAM.as_bytes(),
                    &[40],
                )))
                .unwrap(),
        )
    });
    let mut service = ServiceBuilder::new().layer(layer.clone()).service(upstream);

    let caller = tracing::info_span!("handle_user_request");
    let response = async {
        let ready = service.ready().await.unwrap();
        ready
            .call(request("/v1/chat/completions", "gpt-4o-mini"))
            .await
    }
    .instrument(caller.clone())
    .await
    .unwrap();
    let llm = recorder.one("gen_ai");
    let caller_key = recorder.one("handle_user_request").key;
    assert_eq!(llm.parent, Some(caller_key), "parent is the caller span");
    assert!(!llm.closed, "the span stays open while the body streams");
    let handler = recorder.one("upstream.handler");
    assert_eq!(
        handler.parent,
        Some(llm.key),
        "the inner service runs inside the LLM span"
    );

    response.into_body().collect().await.unwrap();
    let llm = recorder.one("gen_ai");
    assert!(llm.closed, "the span closes when the body ends");
    let fields = &llm.fields;
    let field = |name: &str| fields.get(name).map(String::as_str);
    assert_eq!(field("gen_ai.operation.name"), Some("chat"));
    assert_eq!(field("gen_ai.provider.name"), Some("openai"));
    assert_eq!(field("otel.name"), Some("chat gpt-4o-mini"));
    assert_eq!(field("otel.kind"), Some("client"));
    assert_eq!(field("server.address"), Some("api.example.test"));
    assert_eq!(field("gen_ai.request.model"), Some("gpt-4o-mini"));
    assert_eq!(field("gen_ai.request.temperature"), Some("0.5"));
    assert_eq!(field("gen_ai.request.max_tokens"), Some("64"));
    assert_eq!(field("gen_ai.request.stop_sequences"), Some("[\"END\"]"));
    assert_eq!(field("gen_ai.request.stream"), Some("true"));
    assert_eq!(
        field("gen_ai.response.model"),
        Some("gpt-4o-mini-2024-07-18")
    );
    assert_eq!(field("gen_ai.response.id"), Some("chatcmpl-9"));
    assert_eq!(field("gen_ai.response.finish_reasons"), Some("[\"stop\"]"));
    assert_eq!(field("gen_ai.usage.input_tokens"), Some("9"));
    assert_eq!(field("gen_ai.usage.output_tokens"), Some("1"));
    assert_eq!(field("gen_ai.usage.cache_read.input_tokens"), Some("4"));
    assert!(field("gen_ai.response.time_to_first_chunk").is_some());
    assert_eq!(field("otel.status_code"), None);
    assert_eq!(field("error.type"), None);
    assert_eq!(support::flushed(&layer, &memory).await.len(), 1);
}

#[tokio::test]
async fn failed_call_marks_the_span_as_error() {
    let recorder = Spans::default();
    let _subscriber = tracing::subscriber::set_default(recorder.subscriber());
    let (layer, _memory) = support::memory_layer();
    let upstream = tower::service_fn(|_request: Request<RequestBody<Full<Bytes>>>| async {
        let body = r#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#;
        Ok::<_, Infallible>(
            Response::builder()
                .status(401)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from_static(body.as_bytes())))
                .unwrap(),
        )
    });
    let mut service = ServiceBuilder::new().layer(layer).service(upstream);
    let response = service
        .ready()
        .await
        .unwrap()
        .call(request("/v1/chat/completions", "gpt-4o"))
        .await
        .unwrap();
    response.into_body().collect().await.unwrap();
    let llm = recorder.one("gen_ai");
    assert!(llm.closed);
    assert_eq!(
        llm.fields.get("otel.status_code").map(String::as_str),
        Some("error")
    );
    assert_eq!(
        llm.fields.get("error.type").map(String::as_str),
        Some("invalid_request_error")
    );
    assert_eq!(
        llm.fields
            .get("otel.status_description")
            .map(String::as_str),
        Some("Incorrect API key provided")
    );
}

#[tokio::test]
async fn non_llm_requests_open_no_span() {
    let recorder = Spans::default();
    let _subscriber = tracing::subscriber::set_default(recorder.subscriber());
    let (layer, _memory) = support::memory_layer();
    let upstream = tower::service_fn(|_request: Request<RequestBody<Full<Bytes>>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"[]"))))
    });
    let mut service = ServiceBuilder::new().layer(layer).service(upstream);
    let models = Request::get("http://api.example.test/v1/models")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = service.ready().await.unwrap().call(models).await.unwrap();
    response.into_body().collect().await.unwrap();
    assert!(recorder.all().is_empty(), "{:?}", recorder.all());
}

/// Serves `body` with `content_type` to one call of `request` through a fresh memory layer,
/// reads the response to its end, and returns the recorded `gen_ai` span's fields and the
/// call.
async fn one_call(
    request: Request<Full<Bytes>>,
    content_type: &'static str,
    body: &'static str,
) -> (
    std::collections::BTreeMap<String, String>,
    std::sync::Arc<llm_observability::LlmCall>,
) {
    let recorder = Spans::default();
    let _subscriber = tracing::subscriber::set_default(recorder.subscriber());
    let (layer, memory) = support::memory_layer();
    let upstream = tower::service_fn(
        move |request: Request<RequestBody<Full<Bytes>>>| async move {
            let _ = request.into_body().collect().await;
            Ok::<_, Infallible>(
                Response::builder()
                    .header("content-type", content_type)
                    .body(ChannelBody::from_chunks(support::split(
                        body.as_bytes(),
                        &[33],
                    )))
                    .unwrap(),
            )
        },
    );
    let mut service = ServiceBuilder::new().layer(layer.clone()).service(upstream);
    let response = service.ready().await.unwrap().call(request).await.unwrap();
    response.into_body().collect().await.unwrap();
    let calls = support::flushed(&layer, &memory).await;
    assert_eq!(calls.len(), 1);
    (recorder.one("gen_ai").fields, calls[0].clone())
}

#[tokio::test]
async fn an_azure_deployment_names_the_call_and_the_provider() {
    // Azure's deployment-scoped route: the body names no model, the path names the deployment.
    let body = json!({"messages": [{"role": "user", "content": "hi"}], "stream": true});
    let request = Request::post(
        "https://my-resource.openai.azure.com/openai/deployments/my-gpt4o/chat/completions?api-version=2024-10-21",
    )
    .body(Full::new(Bytes::from(body.to_string())))
    .unwrap();
    let (fields, call) = one_call(request, "text/event-stream", STREAM).await;
    let field = |name: &str| fields.get(name).map(String::as_str);
    assert_eq!(field("gen_ai.provider.name"), Some("azure.ai.openai"));
    assert_eq!(field("gen_ai.request.model"), Some("my-gpt4o"));
    assert_eq!(field("otel.name"), Some("chat my-gpt4o"));
    assert_eq!(call.provider, "azure.ai.openai");
    assert_eq!(call.request_model.as_deref(), Some("my-gpt4o"));
    assert_eq!(call.request.model, None);
    assert_eq!(
        call.response_model.as_deref(),
        Some("gpt-4o-mini-2024-07-18")
    );
}

const ANTHROPIC_STREAM: &str = concat!(
    "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_7\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5-20250929\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":3,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":2048,\"output_tokens\":1}}}\n\n",
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    "event: ping\ndata: {\"type\": \"ping\"}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n",
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":12}}\n\n",
    "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
);

#[tokio::test]
async fn an_anthropic_stream_gets_genai_fields_with_every_input_token() {
    let body = json!({"model": "claude-sonnet-4-5", "max_tokens": 64, "top_k": 5, "stream": true,
        "stop_sequences": ["END"], "messages": [{"role": "user", "content": "hi"}]});
    let request = Request::post("https://api.anthropic.com/v1/messages")
        .header("x-api-key", "sk-ant-api03-secret-key-value")
        .header("anthropic-version", "2023-06-01")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let (fields, call) = one_call(
        request,
        "text/event-stream; charset=utf-8",
        ANTHROPIC_STREAM,
    )
    .await;
    let field = |name: &str| fields.get(name).map(String::as_str);
    assert_eq!(field("gen_ai.provider.name"), Some("anthropic"));
    assert_eq!(field("gen_ai.operation.name"), Some("chat"));
    assert_eq!(field("otel.name"), Some("chat claude-sonnet-4-5"));
    assert_eq!(field("gen_ai.request.model"), Some("claude-sonnet-4-5"));
    assert_eq!(field("gen_ai.request.top_k"), Some("5"));
    assert_eq!(field("gen_ai.request.max_tokens"), Some("64"));
    assert_eq!(field("gen_ai.request.stop_sequences"), Some("[\"END\"]"));
    assert_eq!(
        field("gen_ai.response.model"),
        Some("claude-sonnet-4-5-20250929")
    );
    assert_eq!(field("gen_ai.response.id"), Some("msg_7"));
    assert_eq!(
        field("gen_ai.response.finish_reasons"),
        Some("[\"end_turn\"]")
    );
    // Every input token: 3 uncached + 2,048 read from the cache + 0 written.
    assert_eq!(field("gen_ai.usage.input_tokens"), Some("2051"));
    assert_eq!(field("gen_ai.usage.cache_read.input_tokens"), Some("2048"));
    assert_eq!(field("gen_ai.usage.cache_creation.input_tokens"), Some("0"));
    assert_eq!(field("gen_ai.usage.output_tokens"), Some("12"));
    assert!(field("gen_ai.response.time_to_first_chunk").is_some());
    assert_eq!(
        call.endpoint,
        llm_observability::Endpoint::AnthropicMessages
    );
    assert_eq!(call.response.as_ref().unwrap()["content"][0]["text"], "Hi");
    let record = serde_json::to_string(&*call).unwrap();
    assert!(
        !record.contains("secret-key-value"),
        "the API key is in the record"
    );
}
