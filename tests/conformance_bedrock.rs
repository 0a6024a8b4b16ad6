//! Conformance over real recorded AWS Bedrock Converse traffic
//! (`shared/fixtures/provider-recorded`): every `bedrock-converse` interaction of `INDEX.tsv`
//! (`.../model/{id}/converse` JSON and `.../converse-stream` AWS event streams, kept there as
//! base64) is replayed through the tower layer under several frame splits — frames split
//! mid-prelude included — and through the reqwest middleware; each payload must say what the
//! recording implies. InvokeModel, agents, guardrails and the rest pass through unrecorded.
//! Expected values are computed from the recorded bytes with a frame reader and plain
//! `serde_json::Value` walking (`support::provider_expect::bedrock`) — independently of the
//! crate's framer and fold.

mod support;

use std::sync::Arc;

use bytes::Bytes;
use llm_observability::{CallStatus, Endpoint, LlmCall};
use serde_json::{json, Value};
use support::eventstream::{event, frame};
use support::provider_expect::{bedrock, Tokens};
use support::{Exchange, Failures, ProviderInteraction};

/// Frame splits every stream is replayed under (1-byte and 7-byte frames split every prelude).
const STREAM_SPLITS: &[&[usize]] = &[&[1], &[7], &[97], &[4096], &[3, 50, 1, 200]];
/// Frame splits for JSON bodies (`usize::MAX`: the whole body in one frame).
const JSON_SPLITS: &[&[usize]] = &[&[usize::MAX], &[7], &[3, 50, 1, 200]];

/// What a recording implies about its record.
#[derive(Debug)]
struct Expected {
    endpoint: Endpoint,
    model: String,
    response_id: Option<String>,
    stream: bool,
    /// The Converse response (for a stream: what the frames fold into).
    response: Value,
    finish_reasons: Vec<String>,
    /// `usage` as reported.
    usage: Option<Value>,
    /// Input (cache included), output, their total, cache reads and writes.
    tokens: Option<Tokens>,
    /// A stream with text or tool input: a first-token time is expected.
    content: bool,
}

fn expected(provider: &ProviderInteraction) -> Expected {
    let interaction = &provider.interaction;
    let row = provider.index_row.as_ref().expect("indexed");
    let stream = row["streamed"] == "yes";
    let response_id = provider
        .response_headers()
        .into_iter()
        .find(|(name, _)| name == "x-amzn-requestid")
        .map(|(_, value)| value);
    let body = provider.response_bytes();
    let (response, content) = if stream {
        bedrock::fold(&body)
    } else {
        (serde_json::from_slice(&body).expect("JSON body"), false)
    };
    let finish_reasons = response["stopReason"]
        .as_str()
        .map(|r| vec![r.to_owned()])
        .unwrap_or_default();
    let usage = response.get("usage").cloned();
    let tokens = usage.as_ref().and_then(bedrock::tokens);
    Expected {
        endpoint: if stream {
            Endpoint::BedrockConverseStream
        } else {
            Endpoint::BedrockConverse
        },
        // INDEX.tsv's model: from the URL path, URL-decoded by whoever indexed the recordings.
        model: row["model"].clone(),
        response_id,
        stream,
        response,
        finish_reasons,
        usage,
        tokens,
        content,
    }
    .checked(interaction)
}

impl Expected {
    fn checked(self, interaction: &support::Interaction) -> Self {
        assert_eq!(interaction.status, 200, "{}", interaction.name());
        self
    }
}

/// The test's reading against INDEX.tsv (stop reasons, usage as reported).
fn self_check(fails: &mut Failures, provider: &ProviderInteraction, want: &Expected) {
    let name = provider.interaction.name();
    let row = provider.index_row.as_ref().expect("indexed");
    fails.eq(
        want.finish_reasons.join(","),
        row["stop_reasons"].clone(),
        format!("SELF-CHECK {name}: stop reasons"),
    );
    let reported: Value = serde_json::from_str(&row["usage_as_reported"]).unwrap_or(Value::Null);
    let usage = reported
        .get("usage")
        .or_else(|| reported.get("metadata.usage"))
        .cloned();
    fails.eq(
        &want.usage,
        &usage,
        format!("SELF-CHECK {name}: usage vs INDEX.tsv"),
    );
}

fn check(
    fails: &mut Failures,
    provider: &ProviderInteraction,
    want: &Expected,
    call: &LlmCall,
    at: &str,
) {
    let at = format!("{} via {at}", provider.interaction.name());
    fails.eq(call.endpoint, want.endpoint, format!("{at}: endpoint"));
    fails.eq(
        call.provider.as_str(),
        "aws.bedrock",
        format!("{at}: provider"),
    );
    fails.eq(call.operation.as_str(), "chat", format!("{at}: operation"));
    fails.eq(
        call.request_model.as_deref(),
        Some(want.model.as_str()),
        format!("{at}: request_model"),
    );
    fails.eq(
        call.request.stream,
        want.stream,
        format!("{at}: request.stream"),
    );
    fails.eq(
        &call.response_id,
        &want.response_id,
        format!("{at}: response_id"),
    );
    fails.eq(call.status, CallStatus::Success, format!("{at}: status"));
    fails.eq(&call.error, &None, format!("{at}: error"));
    fails.ok(
        call.decode_errors.is_empty(),
        format!("{at}: decode errors {:?}", call.decode_errors),
    );
    fails.eq(call.truncated, false, format!("{at}: truncated"));
    fails.eq(
        &call.finish_reasons,
        &want.finish_reasons,
        format!("{at}: finish_reasons"),
    );
    let response = call.response.as_deref().cloned().unwrap_or(Value::Null);
    fails.eq(&response, &want.response, format!("{at}: response"));
    fails.eq(
        call.usage.as_ref().map(Tokens::of),
        want.tokens,
        format!("{at}: usage"),
    );
    // The request, from its body.
    let request: Value = serde_json::from_str(&provider.interaction.request_body).expect("JSON");
    let inference = &request["inferenceConfig"];
    fails.eq(
        call.request.max_tokens,
        inference["maxTokens"].as_u64(),
        format!("{at}: max_tokens"),
    );
    fails.eq(
        call.request.temperature,
        inference["temperature"].as_f64(),
        format!("{at}: temperature"),
    );
    fails.eq(
        call.request.messages.as_deref(),
        request.get("messages"),
        format!("{at}: messages"),
    );
    fails.eq(
        call.request.tools.as_deref(),
        request.pointer("/toolConfig/tools"),
        format!("{at}: tools"),
    );
    fails.eq(
        call.timing.time_to_first_token_ms.is_some(),
        want.content,
        format!("{at}: time to first token"),
    );
}

fn check_exchange(
    fails: &mut Failures,
    provider: &ProviderInteraction,
    exchange: &Exchange,
    at: &str,
) {
    let at = format!("{} via {at}", provider.interaction.name());
    fails.eq(
        exchange.status.as_u16(),
        provider.interaction.status,
        format!("{at}: status"),
    );
    fails.ok(
        exchange.response_body == provider.response_bytes(),
        format!("{at}: response bytes changed"),
    );
    fails.ok(
        exchange.upstream_request_body == provider.interaction.request_body.as_bytes(),
        format!("{at}: request bytes changed"),
    );
}

async fn via_tower(
    provider: &ProviderInteraction,
    sizes: &[usize],
) -> (Exchange, Vec<Arc<LlmCall>>) {
    let (layer, memory) = support::memory_layer();
    support::provider_records_via_tower(&layer, &memory, provider, sizes).await
}

async fn via_reqwest(provider: &ProviderInteraction) -> (Exchange, Vec<Arc<LlmCall>>) {
    let (layer, memory) = support::memory_layer();
    let exchange = support::replay_reqwest_bytes(
        &layer,
        &provider.interaction,
        &provider.response_headers(),
        Bytes::from(provider.response_bytes()),
    )
    .await;
    let calls = support::flushed(&layer, &memory).await;
    support::shut_down(&layer).await;
    (exchange, calls)
}

fn bedrock(all: &[ProviderInteraction]) -> Vec<ProviderInteraction> {
    all.iter()
        .filter(|p| p.family() == Some("bedrock-converse"))
        .cloned()
        .collect()
}

#[tokio::test]
async fn recorded_converse_through_tower_at_every_chunking_and_reqwest() {
    let Some(all) = support::load_provider_interactions() else {
        return;
    };
    let converse = bedrock(&all);
    assert_eq!(
        converse.len(),
        31,
        "INDEX.tsv lists 31 Converse interactions"
    );
    let mut fails = Failures::default();
    let (mut streams, mut arn, mut tools, mut ids) = (0, 0, 0, 0);
    for provider in &converse {
        let want = expected(provider);
        self_check(&mut fails, provider, &want);
        streams += want.stream as usize;
        arn += want.model.starts_with("arn:") as usize;
        ids += want.response_id.is_some() as usize;
        tools += want.finish_reasons.iter().any(|r| r == "tool_use") as usize;
        let splits = if want.stream {
            STREAM_SPLITS
        } else {
            JSON_SPLITS
        };
        for sizes in splits {
            let at = format!("tower {sizes:?}");
            let (exchange, calls) = via_tower(provider, sizes).await;
            check_exchange(&mut fails, provider, &exchange, &at);
            fails.eq(
                calls.len(),
                1,
                format!("{}: records via {at}", provider.interaction.name()),
            );
            if let Some(call) = calls.first() {
                check(&mut fails, provider, &want, call, &at);
            }
        }
        let (exchange, calls) = via_reqwest(provider).await;
        check_exchange(&mut fails, provider, &exchange, "reqwest");
        fails.eq(
            calls.len(),
            1,
            format!("{}: records via reqwest", provider.interaction.name()),
        );
        if let Some(call) = calls.first() {
            check(&mut fails, provider, &want, call, "reqwest");
        }
    }
    fails.finish("recorded_converse");
    // The recordings hold what the README says: the test covered each shape.
    assert_eq!(streams, 15);
    assert!(arn >= 3, "ARN model ids: {arn}");
    assert!(tools >= 3, "tool_use answers: {tools}");
    assert!(ids >= 10, "x-amzn-requestid headers: {ids}");
}

#[tokio::test]
async fn other_bedrock_operations_pass_through_unrecorded() {
    let Some(all) = support::load_provider_interactions() else {
        return;
    };
    let others: Vec<&ProviderInteraction> = all
        .iter()
        .filter(|p| {
            p.host.contains("bedrock")
                || p.interaction.uri.contains("amazonaws")
                || matches!(p.family(), Some("bedrock-invoke"))
        })
        .filter(|p| p.family() != Some("bedrock-converse"))
        .collect();
    assert!(
        others.len() >= 61,
        "InvokeModel, agents, guardrails: {}",
        others.len()
    );
    let mut fails = Failures::default();
    for provider in others {
        let (exchange, calls) = via_tower(provider, &[97]).await;
        check_exchange(&mut fails, provider, &exchange, "tower");
        fails.eq(
            calls.len(),
            0,
            format!(
                "{}: not a Converse call, not recorded",
                provider.interaction.name()
            ),
        );
    }
    fails.finish("other_bedrock_operations");
}

fn synthetic(uri: &str, status: u16, body: Vec<u8>) -> ProviderInteraction {
    ProviderInteraction {
        interaction: support::Interaction {
            file: "synthetic".into(),
            index: 0,
            method: "POST".into(),
            uri: uri.into(),
            request_body: r#"{"messages":[{"role":"user","content":[{"text":"Hi"}]}]}"#.into(),
            status,
            content_type: String::new(),
            response_body: String::new(),
            serve_encoding: None,
        },
        host: String::new(),
        request_body_form: "plain-text".into(),
        response_body_form: "synthetic".into(),
        index_row: None,
    }
    .with_body(body)
}

trait WithBody {
    fn with_body(self, body: Vec<u8>) -> Self;
}

impl WithBody for ProviderInteraction {
    fn with_body(mut self, body: Vec<u8>) -> Self {
        // Kept as base64 as the recordings keep binary bodies.
        const DIGITS: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut text = String::new();
        for group in body.chunks(3) {
            let mut n = 0u32;
            for (i, b) in group.iter().enumerate() {
                n |= (*b as u32) << (16 - 8 * i);
            }
            for i in 0..4 {
                if i <= group.len() {
                    text.push(DIGITS[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    text.push('=');
                }
            }
        }
        self.interaction.response_body = text;
        self.response_body_form = "base64".into();
        self
    }
}

#[tokio::test]
async fn a_mid_stream_exception_is_an_error_with_the_partial_text() {
    let mut body = event("messageStart", json!({"p": "ab", "role": "assistant"}));
    body.extend(event(
        "contentBlockDelta",
        json!({"contentBlockIndex": 0, "delta": {"text": "Hal"}, "p": "x"}),
    ));
    body.extend(frame(
        &[
            (":exception-type", "throttlingException"),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ],
        br#"{"message":"Too many requests, please wait before trying again."}"#,
    ));
    let provider = synthetic(
        "https://bedrock-runtime.us-east-1.amazonaws.com/model/m/converse-stream",
        200,
        body,
    );
    for sizes in STREAM_SPLITS {
        let (exchange, calls) = via_tower(&provider, sizes).await;
        assert_eq!(exchange.response_body, provider.response_bytes());
        let call = &calls[0];
        assert_eq!(call.status, CallStatus::Error, "{sizes:?}");
        let error = call.error.as_ref().expect("error");
        assert_eq!(error.kind.as_deref(), Some("throttlingException"));
        assert!(error
            .message
            .as_deref()
            .unwrap()
            .starts_with("Too many requests"));
        assert_eq!(
            call.response.as_deref().unwrap()["output"]["message"]["content"][0]["text"],
            "Hal"
        );
    }
}

#[tokio::test]
async fn a_bad_crc_stops_decoding_and_is_said() {
    let mut body = event("messageStart", json!({"p": "ab", "role": "assistant"}));
    let first = body.len();
    body.extend(event(
        "contentBlockDelta",
        json!({"contentBlockIndex": 0, "delta": {"text": "real"}, "p": "x"}),
    ));
    let mut forged = event(
        "contentBlockDelta",
        json!({"contentBlockIndex": 0, "delta": {"text": "FORGED"}, "p": "x"}),
    );
    let last = forged.len() - 1;
    forged[last] ^= 0xFF;
    body.extend(forged);
    body.extend(event(
        "contentBlockDelta",
        json!({"contentBlockIndex": 0, "delta": {"text": "AFTER"}, "p": "x"}),
    ));
    let provider = synthetic(
        "https://bedrock-runtime.us-east-1.amazonaws.com/model/m/converse-stream",
        200,
        body,
    );
    for sizes in [&[1][..], &[first + 3], &[4096]] {
        let (exchange, calls) = via_tower(&provider, sizes).await;
        assert_eq!(exchange.response_body, provider.response_bytes());
        let call = &calls[0];
        let text =
            call.response.as_deref().unwrap()["output"]["message"]["content"][0]["text"].clone();
        assert_eq!(text, "real", "{sizes:?}");
        assert!(
            call.decode_errors
                .iter()
                .any(|e| e.contains("bad message CRC")),
            "{:?}",
            call.decode_errors
        );
    }
}

#[tokio::test]
async fn an_http_error_takes_its_type_from_the_header() {
    let provider = synthetic(
        "https://bedrock-runtime.us-east-1.amazonaws.com/model/nope/converse",
        400,
        br#"{"message":"The provided model identifier is invalid."}"#.to_vec(),
    );
    let headers = vec![
        ("content-type".to_owned(), "application/json".to_owned()),
        ("x-amzn-requestid".to_owned(), "req-1".to_owned()),
        (
            "x-amzn-errortype".to_owned(),
            "ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/".to_owned(),
        ),
    ];
    // With and without a content type: the recordings often lack one; an event-stream
    // call's JSON error is still read as JSON.
    let without_type: Vec<(String, String)> = headers[1..].to_vec();
    for (endpoint, headers) in [
        ("converse", &headers),
        ("converse-stream", &headers),
        ("converse", &without_type),
        ("converse-stream", &without_type),
    ] {
        let mut provider = provider.clone();
        provider.interaction.uri = provider.interaction.uri.replace("converse", endpoint);
        let (layer, memory) = support::memory_layer();
        let frames = vec![Bytes::from(provider.response_bytes())];
        support::replay_tower_bytes(&layer, &provider.interaction, headers, frames).await;
        let calls = support::flushed(&layer, &memory).await;
        let call = &calls[0];
        assert_eq!(call.status, CallStatus::Error);
        assert_eq!(call.response_id.as_deref(), Some("req-1"));
        let error = call.error.as_ref().expect("error");
        assert_eq!(
            error.kind.as_deref(),
            Some("ValidationException"),
            "{endpoint}"
        );
        assert_eq!(
            error.message.as_deref(),
            Some("The provided model identifier is invalid.")
        );
        support::shut_down(&layer).await;
    }
}

#[cfg(feature = "proxy")]
#[tokio::test]
async fn the_proxy_forwards_and_records_an_inference_profile_arn() {
    let Some(all) = support::load_provider_interactions() else {
        return;
    };
    let provider = bedrock(&all)
        .into_iter()
        .find(|p| p.index_row.as_ref().unwrap()["streamed"] == "yes")
        .expect("a recorded stream");
    let body = Bytes::from(provider.response_bytes());
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen_in = seen.clone();
    let served = body.clone();
    let app = axum::Router::new().fallback(move |uri: http::Uri| {
        let body = served.clone();
        seen_in.lock().unwrap().push(uri.path().to_owned());
        async move {
            http::Response::builder()
                .header("content-type", "application/vnd.amazon.eventstream")
                .header("x-amzn-requestid", "req-arn")
                .body(axum::body::Body::from(body))
                .unwrap()
        }
    });
    let upstream = support::serve(app).await;
    let proxy = support::proxy::Proxy::start(&format!("http://{upstream}"), &[]).await;
    let path = "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aapplication-inference-profile%2Fabc/converse-stream";
    let response = reqwest::Client::new()
        .post(proxy.url(path))
        .header("content-type", "application/json")
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/x, Signature=secret",
        )
        .header("x-amz-security-token", "session-secret")
        .body(provider.interaction.request_body.clone())
        .send()
        .await
        .expect("proxied");
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap(), body);
    assert_eq!(seen.lock().unwrap().as_slice(), [path], "forwarded as sent");
    let lines = proxy.wait_for_lines(1).await;
    assert_eq!(lines.len(), 1);
    let record = &lines[0];
    assert_eq!(record["provider"], "aws.bedrock");
    assert_eq!(
        record["request_model"],
        "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc"
    );
    assert_eq!(record["response_id"], "req-arn");
    let text = record.to_string();
    assert!(!text.contains("Signature=secret") && !text.contains("session-secret"));
}

/// A client that drops the stream half-way, the last frame cut mid-prelude: one record,
/// `cancelled`, with the text read so far; the cut frame is not a decode error (the status says
/// the body was cut short).
#[tokio::test]
async fn a_cancelled_stream_keeps_the_partial_output() {
    let (layer, memory) = support::memory_layer();
    let request = http::Request::builder()
        .method("POST")
        .uri("https://bedrock-runtime.us-east-1.amazonaws.com/model/us.amazon.nova-2-lite-v1%3A0/converse-stream")
        .body(http_body_util::Full::new(Bytes::from_static(
            br#"{"messages":[{"role":"user","content":[{"text":"Hi"}]}]}"#,
        )))
        .unwrap();
    let (mut body, frames) =
        support::open_stream(&layer, request, &[("x-amzn-requestid", "req-cancel")]).await;
    let mut stream = event("messageStart", json!({"p": "ab", "role": "assistant"}));
    stream.extend(event(
        "contentBlockDelta",
        json!({"contentBlockIndex": 0, "delta": {"text": "Hello"}, "p": "x"}),
    ));
    stream.extend(event(
        "contentBlockDelta",
        json!({"contentBlockIndex": 0, "delta": {"text": " wor"}, "p": "x"}),
    ));
    // The last frame is cut mid-prelude when the client goes away.
    let pieces = support::split(&stream[..stream.len() - 5], &[61]);
    support::relay(&mut body, &frames, &pieces).await;
    drop(body);
    let calls = support::flushed(&layer, &memory).await;
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.status, CallStatus::Cancelled);
    assert_eq!(
        call.error.as_ref().and_then(|e| e.kind.as_deref()),
        Some("cancelled")
    );
    assert_eq!(call.decode_errors, Vec::<String>::new());
    assert_eq!(
        call.request_model.as_deref(),
        Some("us.amazon.nova-2-lite-v1:0")
    );
    assert_eq!(call.response_id.as_deref(), Some("req-cancel"));
    assert_eq!(
        call.response.as_deref().unwrap()["output"]["message"]["content"][0]["text"],
        "Hello"
    );
    assert!(call.timing.time_to_first_token_ms.is_some());
    support::shut_down(&layer).await;
}
