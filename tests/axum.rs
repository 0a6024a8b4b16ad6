//! Both sides of the wire over real TCP on 127.0.0.1: the layer on an axum server
//! (`Router::layer`), and the layer around hyper-util's client in a `tower::ServiceBuilder`.

mod support;

use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use llm_observability::{CallStatus, Endpoint};
use serde_json::{json, Value};
use tower::{Service, ServiceBuilder, ServiceExt};

async fn chat(Json(request): Json<Value>) -> Json<Value> {
    Json(json!({
        "id": "chatcmpl-axum", "object": "chat.completion", "created": 1, "model": request["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "pong"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}
    }))
}

async fn serve(app: Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn chat_request(uri: String) -> Request<Full<Bytes>> {
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "ping"}]});
    Request::post(uri)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

#[tokio::test]
async fn server_side_router_layer() {
    let (layer, memory) = support::memory_layer();
    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .layer(layer.clone());
    let addr = serve(app).await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();

    let response = client
        .request(chat_request(format!("http://{addr}/v1/chat/completions")))
        .await
        .unwrap();
    let body: Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "pong");
    let health = client
        .get(format!("http://{addr}/healthz").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(health.into_body().collect().await.unwrap().to_bytes(), "ok");

    let calls = support::flushed(&layer, &memory).await;
    assert_eq!(calls.len(), 1, "only the LLM route is recorded");
    let call = &calls[0];
    assert_eq!(call.endpoint, Endpoint::ChatCompletions);
    assert_eq!(call.status, CallStatus::Success);
    assert_eq!(
        call.request.messages.as_deref(),
        Some(&json!([{"role": "user", "content": "ping"}]))
    );
    assert_eq!(call.response.as_ref().unwrap()["id"], "chatcmpl-axum");
    assert_eq!(call.usage.unwrap().total_tokens, Some(6));
    assert_eq!(call.server_address.as_deref(), Some("127.0.0.1"));
}

#[tokio::test]
async fn client_side_around_hyper_util_client() {
    let addr = serve(Router::new().route("/v1/chat/completions", post(chat))).await;
    let (layer, memory) = support::memory_layer();
    let mut client = ServiceBuilder::new()
        .layer(layer.clone())
        .service(Client::builder(TokioExecutor::new()).build_http());

    let response = client
        .ready()
        .await
        .unwrap()
        .call(chat_request(format!("http://{addr}/v1/chat/completions")))
        .await
        .unwrap();
    let body: Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["model"], "gpt-4o-mini");

    // An unreachable upstream: hyper's connect error reaches the caller and the payload.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let error = client
        .ready()
        .await
        .unwrap()
        .call(chat_request(format!("http://{closed}/v1/chat/completions")))
        .await
        .unwrap_err();
    assert!(error.is_connect());

    let calls = support::flushed(&layer, &memory).await;
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].status, CallStatus::Success);
    assert_eq!(
        calls[0].response.as_ref().unwrap()["choices"][0]["message"]["content"],
        "pong"
    );
    assert_eq!(calls[1].status, CallStatus::Error);
    assert_eq!(
        calls[1].error.as_ref().unwrap().kind.as_deref(),
        Some("transport")
    );
}
