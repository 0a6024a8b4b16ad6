//! Building a layer: outside a Tokio runtime (the workers start with the first call), and the
//! errors `build` reports instead of panicking.

mod support;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use llm_observability::{BuildError, LlmObservabilityLayer, MemorySink};

#[test]
fn a_layer_built_outside_a_runtime_starts_its_workers_on_first_use() {
    let memory = MemorySink::new();
    let layer = LlmObservabilityLayer::builder()
        .sink(memory.clone())
        .build()
        .expect("no runtime needed");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let request = Request::post("http://localhost/v1/chat/completions")
            .body(Full::new(Bytes::from_static(
                br#"{"model":"m","messages":[]}"#,
            )))
            .expect("valid");
        let reply = r#"{"id":"x","object":"chat.completion","model":"m","choices":[]}"#;
        support::through_json_upstream(&layer, request, reply).await;
        let calls = support::flushed(&layer, &memory).await;
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].request.model.as_deref(), Some("m"));
        support::assert_accounted(&layer, 1).await;
    });
}

#[test]
fn an_invalid_captured_header_is_a_build_error() {
    let error = LlmObservabilityLayer::builder()
        .capture_header("x user id", "user_id")
        .build()
        .expect_err("not a header name");
    assert!(matches!(error, BuildError::InvalidHeaderName(ref name) if name == "x user id"));
    assert_eq!(
        error.to_string(),
        "\"x user id\" is not a valid header name"
    );
}

#[tokio::test]
async fn a_configured_server_address_wins_over_the_clients_host_header() {
    let memory = MemorySink::new();
    let layer = LlmObservabilityLayer::builder()
        .sink(memory.clone())
        .server_address("api.openai.com")
        .build()
        .expect("valid");
    let request = Request::post("/v1/chat/completions")
        .header("host", "attacker.example")
        .body(Full::new(Bytes::from_static(br#"{"model":"m"}"#)))
        .expect("valid");
    support::through_json_upstream(&layer, request, "{}").await;
    let calls = support::flushed(&layer, &memory).await;
    assert_eq!(calls[0].server_address.as_deref(), Some("api.openai.com"));
}
