//! Every recorded Anthropic, Gemini, Bedrock Converse and Ollama call of
//! `../shared/fixtures/provider-recorded` through the proxy binary: the client gets the
//! recorded bytes and status, the upstream gets the path and query as the client sent them
//! (Bedrock's percent-encoded model ids, Gemini's `?alt=sse`), credentials stay out of the
//! JSONL, and each call's line says what the same call recorded through the tower layer says
//! (which the per-family conformance suites check against an independent reading of each
//! recording). The fixtures hold no Vertex AI traffic, so each Gemini call is also sent under
//! Vertex's path (`/v1/projects/*/locations/*/publishers/google/models/...`): provider
//! `gcp.vertex_ai`, the same record otherwise.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use llm_observability::process::redact::Redaction;
use llm_observability::{Endpoint, LlmCall, LlmObservabilityLayer, MemorySink};
use support::{Failures, ProviderInteraction};

/// The request header naming the recording the stand-in upstream replays.
const REPLAY: &str = "x-replay";

/// Credentials the client sends with every call: none may reach a record.
const CREDENTIALS: [(&str, &str); 4] = [
    ("x-api-key", "sk-ant-proxy-test-never-recorded"),
    ("x-goog-api-key", "AIza-proxy-test-never-recorded"),
    ("authorization", "Bearer bedrock-key-never-recorded"),
    ("x-amz-security-token", "session-token-never-recorded"),
];

fn recorded_calls(all: Vec<ProviderInteraction>) -> Vec<ProviderInteraction> {
    all.into_iter()
        .map(|mut p| {
            p.interaction.method = p.interaction.method.to_ascii_uppercase();
            p
        })
        .filter(|p| {
            let path = path_and_query(&p.interaction.uri);
            let path = path.split('?').next().unwrap_or("");
            p.interaction.method == "POST"
                && Endpoint::classify(&http::Method::POST, path).is_some_and(|e| {
                    matches!(e.api(), "anthropic" | "gemini" | "bedrock" | "ollama")
                })
        })
        .collect()
}

/// `provider`'s Gemini API call as the same call to Vertex AI (same body, same answer).
fn vertex_twin(provider: &ProviderInteraction) -> Option<ProviderInteraction> {
    let target = path_and_query(&provider.interaction.uri);
    let (_, model_method) = target.rsplit_once("/models/")?;
    let mut twin = provider.clone();
    twin.interaction.uri = format!(
        "https://us-central1-aiplatform.googleapis.com/v1/projects/demo-project/locations/\
         us-central1/publishers/google/models/{model_method}"
    );
    twin.host = "us-central1-aiplatform.googleapis.com".to_owned();
    Some(twin)
}

/// The provider each family's calls are recorded as.
fn provider_of(uri: &str, family: Option<&str>) -> &'static str {
    match family {
        Some("anthropic") => "anthropic",
        Some("gemini") if uri.contains("/publishers/google/models/") => "gcp.vertex_ai",
        Some("gemini") => "gcp.gemini",
        Some("bedrock-converse") => "aws.bedrock",
        Some("ollama") => "ollama",
        _ => "?",
    }
}

/// The recorded URI's path and query.
fn path_and_query(uri: &str) -> String {
    uri.parse::<http::Uri>()
        .ok()
        .and_then(|u| u.path_and_query().map(|pq| pq.as_str().to_owned()))
        .unwrap_or_else(|| uri.to_owned())
}

/// The record the tower layer makes of `provider`, with the proxy's default redaction (base64
/// data cut to a marker).
async fn via_tower(provider: &ProviderInteraction) -> Vec<Arc<LlmCall>> {
    let memory = MemorySink::new();
    let layer = LlmObservabilityLayer::builder()
        .sink(memory.clone())
        .redact(Redaction::keep_all())
        .build()
        .expect("inside a runtime");
    let length = provider.response_bytes().len().max(1);
    support::provider_records_via_tower(&layer, &memory, provider, &[length])
        .await
        .1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_recorded_provider_call_through_the_proxy_binary() {
    let Some(all) = support::load_provider_interactions() else {
        return;
    };
    let mut calls = recorded_calls(all);
    let mut families: Vec<&str> = calls.iter().filter_map(|p| p.family()).collect();
    families.sort();
    families.dedup();
    assert_eq!(
        families,
        ["anthropic", "bedrock-converse", "gemini", "ollama"],
        "every family is replayed"
    );
    // The fixtures hold no Vertex AI traffic: each Gemini call again, under Vertex's path.
    let vertex: Vec<ProviderInteraction> = (calls.iter())
        .filter(|p| p.family() == Some("gemini"))
        .filter_map(vertex_twin)
        .collect();
    assert!(!vertex.is_empty());
    calls.extend(vertex);

    // A stand-in upstream that answers each call as it was recorded, and notes what it got.
    let replies: Arc<HashMap<usize, &'static ProviderInteraction>> = Arc::new(
        (calls.iter().enumerate())
            .map(|(n, p)| (n, &*Box::leak(Box::new(p.clone()))))
            .collect(),
    );
    let seen = Arc::new(Mutex::new(Vec::<(usize, String)>::new()));
    let (replies_in, seen_in) = (replies.clone(), seen.clone());
    let app = axum::Router::new().fallback(move |request: http::Request<axum::body::Body>| {
        let replies = replies_in.clone();
        let seen = seen_in.clone();
        async move {
            use http_body_util::BodyExt;
            let (head, body) = request.into_parts();
            // Read the whole request first, as a real API does.
            body.collect().await.expect("the request body");
            let request = http::Request::from_parts(head, ());
            let n: usize = (request.headers().get(REPLAY))
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .expect("every call names its recording");
            let target = request.uri().path_and_query().map(|pq| pq.to_string());
            seen.lock().unwrap().push((n, target.unwrap_or_default()));
            let provider = replies[&n];
            let mut response = http::Response::builder().status(provider.interaction.status);
            for (name, value) in provider.response_headers() {
                if name != "content-length" && name != "transfer-encoding" {
                    response = response.header(name, value);
                }
            }
            response
                .body(axum::body::Body::from(provider.response_bytes()))
                .expect("a response")
        }
    });
    let upstream = support::serve(app).await;
    let proxy = support::proxy::Proxy::start(&format!("http://{upstream}"), &[]).await;

    // One call at a time: each line is written in the order the calls ended.
    let client = reqwest::Client::new();
    let mut fails = Failures::default();
    for (n, provider) in calls.iter().enumerate() {
        let target = path_and_query(&provider.interaction.uri);
        let mut request = client
            .post(proxy.url(&target))
            .header(REPLAY, n.to_string())
            .header("content-type", "application/json")
            .body(provider.interaction.request_body.clone());
        for (name, value) in CREDENTIALS {
            request = request.header(name, value);
        }
        let response = request.send().await.expect("proxied");
        let name = format!(
            "{}#{}",
            provider.interaction.file, provider.interaction.index
        );
        fails.eq(
            &response.status().as_u16(),
            &provider.interaction.status,
            format!("{name}: status"),
        );
        let body = response.bytes().await.expect("the whole body");
        fails.ok(
            body.as_ref() == provider.response_bytes().as_slice(),
            format!("{name}: the body is not the recorded bytes"),
        );
        let forwarded = seen.lock().unwrap().last().cloned();
        fails.eq(
            &forwarded,
            &Some((n, target.clone())),
            format!("{name}: forwarded path and query"),
        );
    }

    let lines = proxy.wait_for_lines(calls.len()).await;
    assert_eq!(lines.len(), calls.len(), "one line per call");
    let text = lines
        .iter()
        .map(|l| l.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        !text.contains("never-recorded"),
        "a credential was recorded"
    );
    for (provider, line) in calls.iter().zip(&lines) {
        let name = format!(
            "{}#{}",
            provider.interaction.file, provider.interaction.index
        );
        let from_proxy: LlmCall = serde_json::from_value(line.clone()).expect("an LlmCall");
        let tower = via_tower(provider).await;
        let [from_tower] = &tower[..] else {
            fails.ok(false, format!("{name}: {} tower records", tower.len()));
            continue;
        };
        support::same_record(&mut fails, &name, from_tower, &from_proxy, "proxy vs tower");
        fails.eq(
            from_proxy.provider.as_str(),
            provider_of(&provider.interaction.uri, provider.family()),
            format!("{name}: provider"),
        );
        fails.eq(
            &from_proxy.provider,
            &from_tower.provider,
            format!("{name}: provider"),
        );
        fails.eq(
            &from_proxy.request_model,
            &from_tower.request_model,
            format!("{name}: request_model"),
        );
        fails.eq(
            &from_proxy.response_model,
            &from_tower.response_model,
            format!("{name}: response_model"),
        );
        fails.eq(
            &from_proxy.decode_errors,
            &from_tower.decode_errors,
            format!("{name}: decode_errors"),
        );
    }
    fails.finish("every_recorded_provider_call_through_the_proxy_binary");
}
