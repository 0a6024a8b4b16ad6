//! Conformance over real recorded Anthropic Messages traffic
//! (`shared/fixtures/provider-recorded`): every `POST .../v1/messages` interaction is replayed
//! through the tower layer (under several frame splits) and through the reqwest middleware, and
//! each payload must say what the recording implies; everything else (legacy `/v1/complete`,
//! `count_tokens`, GETs, other providers) must pass through without an Anthropic record.
//! Expected values are computed from the recorded bodies with plain `serde_json::Value` walking
//! (the stream fold is `support::provider_expect::anthropic`'s) — independently of the crate's
//! decoders and SSE parser.
//!
//! Failures are collected and reported together (each names the interaction, the transport and
//! the chunking), so one run shows every disagreement.

mod support;

use std::sync::Arc;

use llm_observability::{CallStatus, Endpoint, LlmCall};
use serde_json::{json, Value};
use support::provider_expect::{anthropic, Tokens};
use support::{Failures, Interaction, ProviderInteraction};

/// Frame splits every streamed interaction is replayed under (`support::split` cycles them).
const STREAM_SPLITS: &[&[usize]] = &[&[1], &[7], &[97], &[4096], &[3, 50, 1, 200]];
/// Frame splits for non-streamed bodies (`usize::MAX`: the whole body in one frame).
const JSON_SPLITS: &[&[usize]] = &[&[usize::MAX], &[7], &[3, 50, 1, 200]];

/// The contract: a `POST` whose path (query aside) ends with `/v1/messages`.
fn recognised(method: &str, uri: &str) -> bool {
    let path = uri.split('?').next().unwrap_or(uri);
    method == "POST" && path.ends_with("/v1/messages")
}

/// What a recorded Anthropic Messages interaction implies about its payload.
#[derive(Debug)]
struct Expected {
    model: Option<String>,
    stream: bool,
    /// The response body is SSE.
    streamed: bool,
    status: CallStatus,
    error_kind: Option<String>,
    error_message: Option<String>,
    response_id: Option<String>,
    response_model: Option<String>,
    /// The usage object (JSON: the body's; stream: message_start's, with the last
    /// message_delta's fields laid over it).
    usage_object: Option<Value>,
    usage: Option<Tokens>,
    finish_reasons: Vec<String>,
    /// Content blocks in order (JSON: as in the body; stream: assembled).
    content: Vec<Value>,
    stop_reason: Value,
    stop_sequence: Value,
    /// Non-streamed success: the whole body, which `call.response` must equal.
    body: Option<Value>,
    /// A stream with at least one content-bearing `content_block_delta`.
    has_content_delta: bool,
}

fn string(v: &Value) -> Option<String> {
    v.as_str().map(str::to_owned)
}

fn expected(interaction: &Interaction) -> Expected {
    let request = interaction.request_json().unwrap_or(Value::Null);
    let body = interaction.response_body.trim_start();
    let streamed = anthropic::is_stream(body);
    let mut want = Expected {
        model: string(&request["model"]),
        stream: request["stream"].as_bool().unwrap_or(false),
        streamed,
        status: CallStatus::Success,
        error_kind: None,
        error_message: None,
        response_id: None,
        response_model: None,
        usage_object: None,
        usage: None,
        finish_reasons: Vec::new(),
        content: Vec::new(),
        stop_reason: Value::Null,
        stop_sequence: Value::Null,
        body: None,
        has_content_delta: false,
    };
    let mut error: Option<Value> = None;
    if streamed {
        let stream = anthropic::fold(body, &interaction.name());
        let message = &stream.message;
        want.response_id = string(&message["id"]);
        want.response_model = string(&message["model"]);
        want.stop_reason = message["stop_reason"].clone();
        want.stop_sequence = message["stop_sequence"].clone();
        want.content = message["content"].as_array().cloned().unwrap_or_default();
        want.has_content_delta = stream.has_content_delta;
        want.usage = stream.usage.as_ref().and_then(anthropic::tokens);
        want.usage_object = stream.usage;
        error = stream.error;
    } else if let Ok(response) = serde_json::from_str::<Value>(body) {
        if response["type"] == "error" {
            error = Some(response["error"].clone());
        } else {
            want.response_id = string(&response["id"]);
            want.response_model = string(&response["model"]);
            want.usage = anthropic::tokens(&response["usage"]);
            want.usage_object = response.get("usage").cloned();
            want.content = response["content"].as_array().cloned().unwrap_or_default();
            want.stop_reason = response["stop_reason"].clone();
            want.stop_sequence = response["stop_sequence"].clone();
            want.body = Some(response);
        }
    }
    if let Some(reason) = want.stop_reason.as_str() {
        want.finish_reasons = vec![reason.to_owned()];
    }
    if interaction.status >= 400 || error.is_some() {
        want.status = CallStatus::Error;
        if let Some(error) = error {
            want.error_kind = string(&error["type"]);
            want.error_message = string(&error["message"]);
        }
    }
    want
}

/// The fields the contract names for each kind of content block.
fn block_fields(block: &Value) -> &'static [&'static str] {
    match block["type"].as_str().unwrap_or("") {
        "text" => &["type", "text"],
        "tool_use" => &["type", "id", "name", "input"],
        "thinking" => &["type", "thinking", "signature"],
        "redacted_thinking" => &["type", "data"],
        _ => &["type"],
    }
}

fn check(
    fails: &mut Failures,
    interaction: &Interaction,
    want: &Expected,
    call: &LlmCall,
    at: &str,
) {
    let at = format!("{} via {at}", interaction.name());
    fails.eq(
        call.endpoint,
        Endpoint::AnthropicMessages,
        format!("{at}: endpoint"),
    );
    fails.eq(
        serde_json::to_value(call.endpoint).ok(),
        Some(json!("anthropic.messages")),
        format!("{at}: endpoint as serialised"),
    );
    fails.eq(call.operation.as_str(), "chat", format!("{at}: operation"));
    fails.eq(
        call.provider.as_str(),
        "anthropic",
        format!("{at}: provider"),
    );
    fails.eq(
        &call.request_model,
        &want.model,
        format!("{at}: request_model"),
    );
    fails.eq(
        &call.request.model,
        &want.model,
        format!("{at}: request.model"),
    );
    fails.eq(
        call.request.stream,
        want.stream,
        format!("{at}: request.stream"),
    );
    fails.eq(
        call.http_status,
        Some(interaction.status),
        format!("{at}: http_status"),
    );
    fails.ok(
        call.decode_errors.is_empty(),
        format!("{at}: decode errors {:?}", call.decode_errors),
    );
    fails.eq(call.truncated, false, format!("{at}: truncated"));
    fails.eq(call.status, want.status, format!("{at}: status"));
    if want.status == CallStatus::Error {
        match &call.error {
            None => fails.ok(false, format!("{at}: error missing")),
            Some(error) if want.error_message.is_some() => {
                fails.eq(&error.kind, &want.error_kind, format!("{at}: error kind"));
                fails.eq(
                    &error.message,
                    &want.error_message,
                    format!("{at}: error message"),
                );
            }
            Some(_) => {}
        }
    } else {
        fails.ok(
            call.error.is_none(),
            format!("{at}: unexpected error {:?}", call.error),
        );
    }
    fails.eq(
        &call.response_id,
        &want.response_id,
        format!("{at}: response_id"),
    );
    fails.eq(
        &call.response_model,
        &want.response_model,
        format!("{at}: response_model"),
    );
    let usage = call.usage.as_ref().map(Tokens::of);
    fails.eq(
        usage,
        want.usage,
        format!("{at}: usage (input, output, total, cache read, cache creation, reasoning)"),
    );
    fails.eq(
        &call.finish_reasons,
        &want.finish_reasons,
        format!("{at}: finish_reasons"),
    );
    if want.streamed && want.has_content_delta {
        fails.ok(
            call.timing.time_to_first_token_ms.is_some(),
            format!("{at}: time_to_first_token_ms missing on a stream with content"),
        );
    }
    if !want.streamed {
        fails.eq(
            call.timing.time_to_first_token_ms,
            None,
            format!("{at}: time_to_first_token_ms on a JSON response"),
        );
    }
    let Some(response) = call.response.as_ref().map(|r| r.value()) else {
        if want.status == CallStatus::Success || !want.content.is_empty() {
            fails.ok(false, format!("{at}: no response"));
        }
        return;
    };
    if let Some(body) = &want.body {
        fails.eq(
            response,
            body,
            format!("{at}: response (the recorded body)"),
        );
        return;
    }
    if want.status == CallStatus::Success {
        fails.eq(
            &response["type"],
            &json!("message"),
            format!("{at}: response type"),
        );
        fails.eq(
            &response["role"],
            &json!("assistant"),
            format!("{at}: response role"),
        );
        fails.eq(
            response.get("usage"),
            want.usage_object.as_ref(),
            format!("{at}: response usage (merged)"),
        );
    }
    fails.eq(
        string(&response["id"]),
        want.response_id.clone(),
        format!("{at}: response id"),
    );
    fails.eq(
        string(&response["model"]),
        want.response_model.clone(),
        format!("{at}: response model"),
    );
    fails.eq(
        &response["stop_reason"],
        &want.stop_reason,
        format!("{at}: response stop_reason"),
    );
    fails.eq(
        &response["stop_sequence"],
        &want.stop_sequence,
        format!("{at}: response stop_sequence"),
    );
    let got_blocks = response["content"].as_array().cloned().unwrap_or_default();
    fails.eq(
        got_blocks.len(),
        want.content.len(),
        format!("{at}: number of content blocks"),
    );
    for (i, (got, want)) in got_blocks.iter().zip(&want.content).enumerate() {
        for field in block_fields(want) {
            fails.eq(
                got.get(*field),
                want.get(*field),
                format!("{at}: content[{i}].{field}"),
            );
        }
    }
}

/// The test's own reading against what `INDEX.tsv` says (written by whoever indexed the
/// recordings, not by this crate): response model, stop reasons and the usage as reported.
fn self_check(fails: &mut Failures, provider: &ProviderInteraction, want: &Expected) {
    let name = provider.interaction.name();
    let Some(row) = &provider.index_row else {
        fails.ok(false, format!("SELF-CHECK {name}: no INDEX.tsv row"));
        return;
    };
    let column = |key: &str| row.get(key).map(String::as_str).unwrap_or("");
    fails.eq(
        want.response_model.as_deref().unwrap_or(""),
        column("response_model"),
        format!("SELF-CHECK {name}: response model vs INDEX.tsv"),
    );
    fails.eq(
        want.finish_reasons.join(","),
        column("stop_reasons").to_owned(),
        format!("SELF-CHECK {name}: stop reasons vs INDEX.tsv"),
    );
    let reported: Value = serde_json::from_str(column("usage_as_reported")).unwrap_or(Value::Null);
    let mut usage = reported
        .get("usage")
        .or_else(|| reported.get("message_start.message.usage"))
        .cloned();
    if let (Some(Value::Object(merged)), Some(Value::Object(delta))) =
        (usage.as_mut(), reported.get("message_delta.usage"))
    {
        for (k, v) in delta {
            merged.insert(k.clone(), v.clone());
        }
    }
    fails.eq(
        &want.usage_object,
        &usage,
        format!("SELF-CHECK {name}: usage vs INDEX.tsv usage_as_reported"),
    );
}

fn anthropic(all: Vec<ProviderInteraction>) -> Vec<ProviderInteraction> {
    all.into_iter().filter(|p| p.is_anthropic()).collect()
}

#[tokio::test]
async fn recorded_anthropic_messages_through_tower_and_reqwest() {
    let (Some(all), Some(index)) = (
        support::load_provider_interactions(),
        support::load_provider_index(),
    ) else {
        return;
    };
    let indexed_messages = index
        .iter()
        .filter(|row| {
            row.get("family").map(String::as_str) == Some("anthropic")
                && row.get("operation").map(String::as_str) == Some("messages")
        })
        .count();
    let mut fails = Failures::default();
    let mut recognised_count = 0;
    let mut recorded = 0;
    let mut streams = 0;
    for provider in anthropic(all) {
        let interaction = &provider.interaction;
        if !recognised(&interaction.method, &interaction.uri) {
            continue;
        }
        fails.ok(
            provider.family() == Some("anthropic") && provider.operation() == Some("messages"),
            format!(
                "{}: INDEX.tsv says family {:?} operation {:?} for a /v1/messages call",
                interaction.name(),
                provider.family(),
                provider.operation()
            ),
        );
        let want = expected(interaction);
        self_check(&mut fails, &provider, &want);
        recognised_count += 1;
        streams += usize::from(want.streamed);

        let (exchange, tower) = support::records_via_tower(interaction, &[97]).await;
        support::check_exchange(&mut fails, interaction, &exchange, "tower [97]");
        let (exchange, reqwest) = support::records_via_reqwest(interaction).await;
        support::check_exchange(&mut fails, interaction, &exchange, "reqwest");
        fails.eq(
            tower.len(),
            1,
            format!("{}: records via tower", interaction.name()),
        );
        fails.eq(
            reqwest.len(),
            1,
            format!("{}: records via reqwest", interaction.name()),
        );
        recorded += usize::from(tower.len() == 1);
        if let Some(call) = tower.first() {
            check(&mut fails, interaction, &want, call, "tower [97]");
        }
        if let Some(call) = reqwest.first() {
            check(&mut fails, interaction, &want, call, "reqwest");
        }
        if let (Some(a), Some(b)) = (tower.first(), reqwest.first()) {
            support::same_record(&mut fails, &interaction.name(), a, b, "tower vs reqwest");
        }
    }
    eprintln!(
        "conformance_anthropic: {recognised_count} Anthropic Messages interactions ({streams} \
         streamed), {recorded} recorded via tower; INDEX.tsv lists {indexed_messages}"
    );
    fails.eq(
        recognised_count,
        indexed_messages,
        "POST .../v1/messages interactions vs INDEX.tsv (family anthropic, operation messages)",
    );
    fails.eq(
        recorded,
        indexed_messages,
        "recorded Anthropic Messages calls vs INDEX.tsv (family anthropic, operation messages)",
    );
    fails.ok(
        recorded >= 100,
        format!("expected at least 100 recorded Anthropic Messages calls, saw {recorded}"),
    );
    fails.finish("recorded_anthropic_messages_through_tower_and_reqwest");
}

#[tokio::test]
async fn recorded_anthropic_messages_under_every_chunking() {
    let Some(all) = support::load_provider_interactions() else {
        return;
    };
    let mut fails = Failures::default();
    let mut replays = 0;
    for provider in anthropic(all) {
        let interaction = &provider.interaction;
        if !recognised(&interaction.method, &interaction.uri) {
            continue;
        }
        let want = expected(interaction);
        let splits = if want.streamed {
            STREAM_SPLITS
        } else {
            JSON_SPLITS
        };
        let mut first: Option<(String, Arc<LlmCall>)> = None;
        for sizes in splits {
            let label = if sizes == &[usize::MAX] {
                "tower [whole body]".to_owned()
            } else {
                format!("tower {sizes:?}")
            };
            let (exchange, calls) = support::records_via_tower(interaction, sizes).await;
            replays += 1;
            support::check_exchange(&mut fails, interaction, &exchange, &label);
            fails.eq(
                calls.len(),
                1,
                format!("{} via {label}: records", interaction.name()),
            );
            let Some(call) = calls.first() else { continue };
            check(&mut fails, interaction, &want, call, &label);
            match &first {
                None => first = Some((label, call.clone())),
                Some((first_label, first_call)) => support::same_record(
                    &mut fails,
                    &interaction.name(),
                    first_call,
                    call,
                    &format!("{first_label} vs {label}"),
                ),
            }
        }
    }
    eprintln!("conformance_anthropic: {replays} chunked replays");
    fails.finish("recorded_anthropic_messages_under_every_chunking");
}

/// A synthetic interaction (not from the recordings).
fn synthetic(
    method: &str,
    uri: &str,
    request: Value,
    status: u16,
    content_type: &str,
    body: &str,
) -> Interaction {
    Interaction {
        file: format!("synthetic {method} {uri}"),
        index: 0,
        method: method.to_owned(),
        uri: uri.to_owned(),
        request_body: if request.is_null() {
            String::new()
        } else {
            request.to_string()
        },
        status,
        content_type: content_type.to_owned(),
        response_body: body.to_owned(),
        serve_encoding: None,
    }
}

#[tokio::test]
async fn not_anthropic_messages_is_not_recorded() {
    let Some(all) = support::load_provider_interactions() else {
        return;
    };
    let mut fails = Failures::default();
    let mut never = 0;
    let mut others = 0;
    for provider in &all {
        let interaction = &provider.interaction;
        let image_get = interaction.method == "GET"
            && (provider.operation() == Some("non-llm GET")
                || provider.host.ends_with("rackcdn.com"));
        if provider.is_anthropic() && recognised(&interaction.method, &interaction.uri) {
            continue;
        }
        if provider.is_anthropic() || image_get {
            // Legacy /v1/complete and the image download: no record at all, bytes untouched.
            never += 1;
            let (exchange, tower) = support::records_via_tower(interaction, &[97]).await;
            support::check_exchange(&mut fails, interaction, &exchange, "tower [97]");
            let (exchange, reqwest) = support::records_via_reqwest(interaction).await;
            support::check_exchange(&mut fails, interaction, &exchange, "reqwest");
            fails.eq(
                tower.len(),
                0,
                format!(
                    "{}: records via tower (endpoints {:?})",
                    interaction.name(),
                    tower.iter().map(|c| c.endpoint).collect::<Vec<_>>()
                ),
            );
            fails.eq(
                reqwest.len(),
                0,
                format!("{}: records via reqwest", interaction.name()),
            );
        } else if !provider.is_binary() {
            // Other providers: whatever else the crate makes of them, not an Anthropic record.
            others += 1;
            let (exchange, tower) = support::records_via_tower(interaction, &[97]).await;
            support::check_exchange(&mut fails, interaction, &exchange, "tower [97]");
            for call in &tower {
                fails.ok(
                    call.endpoint != Endpoint::AnthropicMessages,
                    format!("{}: recorded as Anthropic Messages", interaction.name()),
                );
            }
        }
    }
    fails.ok(
        never >= 9,
        format!("expected the 8 /v1/complete calls and the image GET, saw {never}"),
    );

    let request = json!({"model": "claude-sonnet-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]});
    let message = r#"{"id":"msg_01","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"text","text":"Hello"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":8,"output_tokens":2}}"#;
    let json = "application/json";
    let not_recognised = [
        synthetic(
            "POST",
            "https://api.anthropic.com/v1/messages/count_tokens",
            request.clone(),
            200,
            json,
            r#"{"input_tokens":8}"#,
        ),
        synthetic(
            "POST",
            "https://api.anthropic.com/v1/messages/count_tokens?beta=true",
            request.clone(),
            200,
            json,
            r#"{"input_tokens":8}"#,
        ),
        synthetic(
            "POST",
            "https://api.anthropic.com/v1/messages/batches",
            json!({"requests": []}),
            200,
            json,
            r#"{"id":"msgbatch_01","type":"message_batch"}"#,
        ),
        synthetic(
            "GET",
            "https://api.anthropic.com/v1/messages",
            Value::Null,
            200,
            json,
            message,
        ),
        synthetic(
            "GET",
            "https://api.anthropic.com/v1/models",
            Value::Null,
            200,
            json,
            r#"{"data":[]}"#,
        ),
        synthetic(
            "POST",
            "https://api.anthropic.com/v1/complete",
            json!({"model": "claude-2.1", "prompt": "\n\nHuman: hi\n\nAssistant:", "max_tokens_to_sample": 8}),
            200,
            json,
            r#"{"type":"completion","completion":" Hello","stop_reason":"stop_sequence","model":"claude-2.1"}"#,
        ),
    ];
    for interaction in &not_recognised {
        let (exchange, tower) = support::records_via_tower(interaction, &[7]).await;
        support::check_exchange(&mut fails, interaction, &exchange, "tower [7]");
        fails.eq(
            tower.len(),
            0,
            format!("{}: records via tower", interaction.name()),
        );
    }
    // And the other side of the rule: any prefix before /v1/messages, and a query, are fine.
    let recognised_calls = [
        synthetic(
            "POST",
            "https://gateway.example/anthropic/v1/messages",
            request.clone(),
            200,
            json,
            message,
        ),
        synthetic(
            "POST",
            "http://127.0.0.1:8080/v1/messages?beta=true",
            request.clone(),
            200,
            json,
            message,
        ),
    ];
    for interaction in &recognised_calls {
        let want = expected(interaction);
        let (exchange, tower) = support::records_via_tower(interaction, &[7]).await;
        support::check_exchange(&mut fails, interaction, &exchange, "tower [7]");
        fails.eq(
            tower.len(),
            1,
            format!("{}: records via tower", interaction.name()),
        );
        if let Some(call) = tower.first() {
            check(&mut fails, interaction, &want, call, "tower [7]");
        }
    }
    eprintln!("conformance_anthropic: {never} Anthropic/GET interactions never recorded, {others} other-provider interactions not recorded as Anthropic");
    fails.finish("not_anthropic_messages_is_not_recorded");
}

fn sse(events: &[(&str, Value)]) -> String {
    events
        .iter()
        .map(|(name, data)| format!("event: {name}\ndata: {data}\n\n"))
        .collect()
}

fn stream_request() -> Value {
    json!({"model": "claude-sonnet-4-5", "max_tokens": 1024, "stream": true,
           "messages": [{"role": "user", "content": "Tell me about the weather"}]})
}

fn message_start(usage: Value) -> Value {
    json!({"type": "message_start", "message": {"id": "msg_synthetic", "type": "message", "role": "assistant",
           "model": "claude-sonnet-4-5-20250929", "content": [], "stop_reason": null, "stop_sequence": null,
           "usage": usage}})
}

#[tokio::test]
async fn mid_stream_error_event_is_an_error_with_the_partial_text() {
    let body = sse(&[
        (
            "message_start",
            message_start(json!({"input_tokens": 10, "output_tokens": 1})),
        ),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        ("ping", json!({"type": "ping"})),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Partial "}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "answer"}}),
        ),
        (
            "error",
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        ),
    ]);
    let interaction = synthetic(
        "POST",
        "https://api.anthropic.com/v1/messages",
        stream_request(),
        200,
        "text/event-stream; charset=utf-8",
        &body,
    );
    let want = expected(&interaction);
    assert_eq!(want.status, CallStatus::Error, "the test's own expectation");
    let mut fails = Failures::default();
    let mut records = Vec::new();
    for sizes in STREAM_SPLITS {
        let label = format!("tower {sizes:?}");
        let (exchange, calls) = support::records_via_tower(&interaction, sizes).await;
        support::check_exchange(&mut fails, &interaction, &exchange, &label);
        fails.eq(calls.len(), 1, format!("{label}: records"));
        records.extend(calls.into_iter().map(|c| (label.clone(), c)));
    }
    let (exchange, calls) = support::records_via_reqwest(&interaction).await;
    support::check_exchange(&mut fails, &interaction, &exchange, "reqwest");
    fails.eq(calls.len(), 1, "reqwest: records");
    records.extend(calls.into_iter().map(|c| ("reqwest".to_owned(), c)));
    for (label, call) in &records {
        check(&mut fails, &interaction, &want, call, label);
        fails.eq(call.status, CallStatus::Error, format!("{label}: status"));
        let error = call.error.as_ref();
        fails.eq(
            error.and_then(|e| e.kind.as_deref()),
            Some("overloaded_error"),
            format!("{label}: error kind"),
        );
        fails.eq(
            error.and_then(|e| e.message.as_deref()),
            Some("Overloaded"),
            format!("{label}: error message"),
        );
        let text = call
            .response
            .as_ref()
            .and_then(|r| r.value()["content"][0]["text"].as_str().map(str::to_owned));
        fails.eq(
            text.as_deref(),
            Some("Partial answer"),
            format!("{label}: partial text kept in response content"),
        );
        fails.ok(
            call.timing.time_to_first_token_ms.is_some(),
            format!("{label}: time_to_first_token_ms"),
        );
    }
    fails.finish("mid_stream_error_event_is_an_error_with_the_partial_text");
}

#[tokio::test]
async fn http_error_bodies_are_errors_with_their_type_and_message() {
    let request = json!({"model": "claude-sonnet-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]});
    let cases = [
        (400, "invalid_request_error", "max_tokens: Field required"),
        (529, "overloaded_error", "Overloaded"),
        (
            429,
            "rate_limit_error",
            "Number of request tokens has exceeded your per-minute rate limit",
        ),
    ];
    let mut fails = Failures::default();
    for (status, kind, message) in cases {
        let body =
            json!({"type": "error", "error": {"type": kind, "message": message}}).to_string();
        let interaction = synthetic(
            "POST",
            "https://api.anthropic.com/v1/messages",
            request.clone(),
            status,
            "application/json",
            &body,
        );
        let want = expected(&interaction);
        let (exchange, tower) = support::records_via_tower(&interaction, &[7]).await;
        support::check_exchange(&mut fails, &interaction, &exchange, "tower [7]");
        let (exchange, reqwest) = support::records_via_reqwest(&interaction).await;
        support::check_exchange(&mut fails, &interaction, &exchange, "reqwest");
        for (label, calls) in [("tower [7]", &tower), ("reqwest", &reqwest)] {
            fails.eq(calls.len(), 1, format!("{status} via {label}: records"));
            for call in calls.iter() {
                check(&mut fails, &interaction, &want, call, label);
                let error = call.error.as_ref();
                fails.eq(
                    error.and_then(|e| e.kind.as_deref()),
                    Some(kind),
                    format!("{status} via {label}: error kind"),
                );
                fails.eq(
                    error.and_then(|e| e.message.as_deref()),
                    Some(message),
                    format!("{status} via {label}: error message"),
                );
            }
        }
    }
    fails.finish("http_error_bodies_are_errors_with_their_type_and_message");
}

/// Block kinds the recordings lack or have only partly: `redacted_thinking`, a `tool_use`
/// without `input_json_delta` fragments, usage whose cache fields arrive in `message_delta`.
#[tokio::test]
async fn synthetic_stream_with_every_block_kind() {
    let body = sse(&[
        (
            "message_start",
            message_start(
                json!({"input_tokens": 5, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 1}),
            ),
        ),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "The user wants "}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "the weather."}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"}}),
        ),
        (
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP"}}),
        ),
        (
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 1}),
        ),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 2, "content_block": {"type": "text", "text": ""}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 2, "delta": {"type": "text_delta", "text": "Let me check."}}),
        ),
        (
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 2}),
        ),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 3, "content_block": {"type": "tool_use", "id": "toolu_01A", "name": "get_time", "input": {}}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 3, "delta": {"type": "input_json_delta", "partial_json": ""}}),
        ),
        (
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 3}),
        ),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 4, "content_block": {"type": "tool_use", "id": "toolu_01B", "name": "get_weather", "input": {}}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 4, "delta": {"type": "input_json_delta", "partial_json": "{\"locat"}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 4, "delta": {"type": "input_json_delta", "partial_json": "ion\": \"Paris\", \"unit\": \"c\"}"}}),
        ),
        (
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 4}),
        ),
        (
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 9}}),
        ),
        (
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"cache_read_input_tokens": 100, "cache_creation_input_tokens": 20, "output_tokens": 42}}),
        ),
        ("message_stop", json!({"type": "message_stop"})),
    ]);
    let interaction = synthetic(
        "POST",
        "https://api.anthropic.com/v1/messages",
        stream_request(),
        200,
        "text/event-stream",
        &body,
    );
    let want = expected(&interaction);
    // The test's own reading, spelled out.
    assert_eq!(
        want.usage,
        Some(Tokens {
            input: Some(125),
            output: Some(42),
            total: Some(167),
            cache_read: Some(100),
            cache_creation: Some(20),
            reasoning: None,
        })
    );
    assert_eq!(want.content[3]["input"], json!({}));
    assert_eq!(
        want.content[4]["input"],
        json!({"location": "Paris", "unit": "c"})
    );
    assert_eq!(want.finish_reasons, vec!["tool_use".to_owned()]);
    let mut fails = Failures::default();
    let mut first: Option<Arc<LlmCall>> = None;
    for sizes in STREAM_SPLITS {
        let label = format!("tower {sizes:?}");
        let (exchange, calls) = support::records_via_tower(&interaction, sizes).await;
        support::check_exchange(&mut fails, &interaction, &exchange, &label);
        fails.eq(calls.len(), 1, format!("{label}: records"));
        if let Some(call) = calls.first() {
            check(&mut fails, &interaction, &want, call, &label);
            match &first {
                None => first = Some(call.clone()),
                Some(a) => support::same_record(&mut fails, "synthetic stream", a, call, &label),
            }
        }
    }
    let (exchange, calls) = support::records_via_reqwest(&interaction).await;
    support::check_exchange(&mut fails, &interaction, &exchange, "reqwest");
    fails.eq(calls.len(), 1, "reqwest: records");
    if let Some(call) = calls.first() {
        check(&mut fails, &interaction, &want, call, "reqwest");
    }
    fails.finish("synthetic_stream_with_every_block_kind");
}
