//! Conformance over real recorded OpenAI traffic (`shared/fixtures/openai-recorded`): every
//! interaction is replayed through the tower layer and through the reqwest middleware, and each
//! payload must say what the recording implies. Expected values are computed here from the
//! recorded bodies with plain `serde_json::Value` walking — independently of the crate's
//! borrowed-struct decoder and SSE parser.

mod support;

use std::collections::BTreeMap;

use llm_observability::{CallStatus, Endpoint, LlmCall};
use serde_json::Value;
use support::{Exchange, Interaction};

/// (input, output, total, cached input) tokens.
type Tokens = (Option<u64>, Option<u64>, Option<u64>, Option<u64>);

/// What a recorded interaction implies about its payload.
#[derive(Debug, Default)]
struct Expected {
    endpoint: Option<Endpoint>,
    model: Option<String>,
    stream: bool,
    status: Option<CallStatus>,
    error_code: Option<String>,
    error_message: Option<String>,
    response_model: Option<String>,
    /// Per choice index: assembled text (chat content or completion text).
    contents: BTreeMap<u64, Option<String>>,
    /// Per choice index: tool calls as (id, name, arguments), ordered by tool index.
    tool_calls: BTreeMap<u64, Vec<(String, String, String)>>,
    finish_reasons: Vec<String>,
    usage: Option<Tokens>,
    /// Responses API: the final output text.
    output_text: Option<String>,
    embeddings: Option<usize>,
}

fn endpoint_of(uri: &str, method: &str) -> Option<Endpoint> {
    if method != "POST" {
        return None;
    }
    let path = uri.split('?').next().unwrap_or(uri);
    if path.ends_with("/chat/completions") {
        Some(Endpoint::ChatCompletions)
    } else if path.ends_with("/completions") {
        Some(Endpoint::Completions)
    } else if path.ends_with("/embeddings") {
        Some(Endpoint::Embeddings)
    } else if path.ends_with("/responses") {
        Some(Endpoint::Responses)
    } else {
        None
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn usage_of(u: &Value) -> Option<Tokens> {
    if !u.is_object() {
        return None;
    }
    let input = u["prompt_tokens"].as_u64().or(u["input_tokens"].as_u64());
    let output = u["completion_tokens"]
        .as_u64()
        .or(u["output_tokens"].as_u64());
    let cached = u["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .or(u["input_tokens_details"]["cached_tokens"].as_u64());
    Some((input, output, u["total_tokens"].as_u64(), cached))
}

fn expected(interaction: &Interaction) -> Expected {
    let mut want = Expected {
        endpoint: endpoint_of(&interaction.uri, &interaction.method),
        ..Expected::default()
    };
    let Some(endpoint) = want.endpoint else {
        return want;
    };
    let request = interaction.request_json().unwrap_or(Value::Null);
    want.model = request["model"].as_str().map(str::to_owned);
    want.stream = request["stream"].as_bool().unwrap_or(false);
    let body = interaction.response_body.trim_start();
    let streamed = body.starts_with("data:") || body.starts_with("event:");
    let mut error = None;
    if streamed {
        let mut last_finish: BTreeMap<u64, String> = BTreeMap::new();
        for (event, data) in support::sse_events(body) {
            if data == "[DONE]" {
                continue;
            }
            let chunk: Value = serde_json::from_str(&data).expect("recorded chunk is JSON");
            if endpoint == Endpoint::Responses {
                if event == "response.completed" || chunk["type"] == "response.completed" {
                    let response = &chunk["response"];
                    want.usage = usage_of(&response["usage"]);
                    want.response_model = response["model"].as_str().map(str::to_owned);
                    want.finish_reasons = vec![response["status"].as_str().unwrap().to_owned()];
                    let mut out = String::new();
                    for item in response["output"].as_array().into_iter().flatten() {
                        for part in item["content"].as_array().into_iter().flatten() {
                            out.push_str(part["text"].as_str().unwrap_or(""));
                        }
                    }
                    want.output_text = Some(out);
                }
                continue;
            }
            if !chunk["error"].is_null() && chunk.get("error").is_some() {
                error = Some(chunk["error"].clone());
            }
            if want.response_model.is_none() {
                want.response_model = chunk["model"]
                    .as_str()
                    .filter(|m| !m.is_empty())
                    .map(str::to_owned);
            }
            if let Some(u) = usage_of(&chunk["usage"]) {
                want.usage = Some(u);
            }
            for choice in chunk["choices"].as_array().into_iter().flatten() {
                let index = choice["index"].as_u64().unwrap_or(0);
                let delta = &choice["delta"];
                let piece = if endpoint == Endpoint::Completions {
                    choice["text"].as_str()
                } else {
                    delta["content"].as_str()
                };
                let content = want.contents.entry(index).or_default();
                if let Some(piece) = piece {
                    content.get_or_insert_with(String::new).push_str(piece);
                }
                let calls = want.tool_calls.entry(index).or_default();
                for call in delta["tool_calls"].as_array().into_iter().flatten() {
                    let at = call["index"].as_u64().unwrap() as usize;
                    if calls.len() <= at {
                        calls.resize(at + 1, Default::default());
                    }
                    let slot = &mut calls[at];
                    if let Some(id) = call["id"].as_str() {
                        slot.0 = id.to_owned();
                    }
                    slot.1
                        .push_str(call["function"]["name"].as_str().unwrap_or(""));
                    slot.2
                        .push_str(call["function"]["arguments"].as_str().unwrap_or(""));
                }
                if let Some(reason) = choice["finish_reason"].as_str() {
                    last_finish.insert(index, reason.to_owned());
                }
            }
        }
        if endpoint != Endpoint::Responses {
            // The last non-null finish reason of each choice, in choice order.
            want.finish_reasons = last_finish.into_values().collect();
        }
    } else if let Ok(response) = serde_json::from_str::<Value>(body) {
        if response.get("error").is_some_and(|e| !e.is_null()) {
            error = Some(response["error"].clone());
        }
        want.response_model = response["model"].as_str().map(str::to_owned);
        want.usage = usage_of(&response["usage"]);
        for choice in response["choices"].as_array().into_iter().flatten() {
            let index = choice["index"].as_u64().unwrap_or(0);
            let content = if endpoint == Endpoint::Completions {
                choice["text"].as_str()
            } else {
                choice["message"]["content"].as_str()
            };
            want.contents.insert(index, content.map(str::to_owned));
            let calls = choice["message"]["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| {
                    (
                        c["id"].as_str().unwrap().to_owned(),
                        c["function"]["name"].as_str().unwrap().to_owned(),
                        c["function"]["arguments"].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            want.tool_calls.insert(index, calls);
            if let Some(reason) = choice["finish_reason"].as_str() {
                want.finish_reasons.push(reason.to_owned());
            }
        }
        if endpoint == Endpoint::Embeddings {
            want.embeddings = response["data"].as_array().map(Vec::len);
        }
    }
    let failed = interaction.status >= 400 || error.is_some();
    want.status = Some(if failed {
        CallStatus::Error
    } else {
        CallStatus::Success
    });
    if let Some(error) = error {
        want.error_code = text(&error["code"]);
        want.error_message = text(&error["message"]);
    }
    want
}

fn check(interaction: &Interaction, want: &Expected, call: &LlmCall, transport: &str) {
    let at = format!("{} via {transport}", interaction.name());
    assert_eq!(Some(call.endpoint), want.endpoint, "{at}: endpoint");
    assert_eq!(call.request.model, want.model, "{at}: request model");
    assert_eq!(call.request.stream, want.stream, "{at}: request stream");
    assert_eq!(Some(call.status), want.status, "{at}: status");
    assert_eq!(
        call.http_status,
        Some(interaction.status),
        "{at}: http status"
    );
    assert!(
        call.decode_errors.is_empty(),
        "{at}: decode errors {:?}",
        call.decode_errors
    );
    assert!(!call.truncated, "{at}: truncated");
    if want.status == Some(CallStatus::Error) {
        let error = call
            .error
            .as_ref()
            .unwrap_or_else(|| panic!("{at}: error missing"));
        if want.error_message.is_some() {
            assert_eq!(error.code, want.error_code, "{at}: error code");
            assert_eq!(
                error.message,
                want.error_message.as_deref().map(without_keys),
                "{at}: error message"
            );
        } else {
            assert_eq!(
                error.code,
                Some(interaction.status.to_string()),
                "{at}: http code"
            );
        }
        return;
    }
    assert!(
        call.error.is_none(),
        "{at}: unexpected error {:?}",
        call.error
    );
    let response = call
        .response
        .as_ref()
        .unwrap_or_else(|| panic!("{at}: no response"));
    let usage = call.usage.map(|u| {
        (
            u.input_tokens,
            u.output_tokens,
            u.total_tokens,
            u.cached_input_tokens,
        )
    });
    assert_eq!(usage, want.usage, "{at}: usage");
    assert_eq!(
        call.finish_reasons, want.finish_reasons,
        "{at}: finish reasons"
    );
    assert_eq!(
        response["model"].as_str().map(str::to_owned),
        want.response_model,
        "{at}: response model"
    );
    assert_eq!(
        call.response_model, want.response_model,
        "{at}: the payload's response_model"
    );
    if let Some(text) = &want.output_text {
        let mut out = String::new();
        for item in response["output"].as_array().into_iter().flatten() {
            for part in item["content"].as_array().into_iter().flatten() {
                out.push_str(part["text"].as_str().unwrap_or(""));
            }
        }
        assert_eq!(&out, text, "{at}: responses output text");
    }
    if let Some(count) = want.embeddings {
        let data = response["data"].as_array().expect("embeddings data");
        assert_eq!(data.len(), count, "{at}: embeddings count");
        assert!(
            data.iter().all(|d| d.get("embedding").is_none()),
            "{at}: vectors dropped"
        );
    }
    for (index, content) in &want.contents {
        let choice = response["choices"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["index"].as_u64() == Some(*index)))
            .unwrap_or_else(|| panic!("{at}: choice {index} missing"));
        let got = if want.endpoint == Some(Endpoint::Completions) {
            choice["text"].as_str()
        } else {
            choice["message"]["content"].as_str()
        };
        assert_eq!(got, content.as_deref(), "{at}: content of choice {index}");
        let calls: Vec<(String, String, String)> = choice["message"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                (
                    c["id"].as_str().unwrap_or("").to_owned(),
                    c["function"]["name"].as_str().unwrap_or("").to_owned(),
                    c["function"]["arguments"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect();
        assert_eq!(
            &calls, &want.tool_calls[index],
            "{at}: tool calls of choice {index}"
        );
    }
}

fn check_exchange(interaction: &Interaction, exchange: &Exchange, transport: &str) {
    assert_eq!(
        exchange.status.as_u16(),
        interaction.status,
        "{transport}: status"
    );
    assert_eq!(
        exchange.response_body,
        interaction.response_body.as_bytes(),
        "{}: response bytes changed via {transport}",
        interaction.name()
    );
    assert_eq!(
        exchange.upstream_request_body,
        interaction.request_body.as_bytes(),
        "{}: request bytes changed via {transport}",
        interaction.name()
    );
}

#[tokio::test]
async fn recorded_traffic_through_tower_and_reqwest() {
    let Some(interactions) = support::load_interactions() else {
        return;
    };
    let mut llm_calls = 0;
    let mut non_llm = 0;
    for interaction in &interactions {
        let want = expected(interaction);
        // Tower: frames of 97 bytes, so events and lines straddle frame boundaries.
        let (layer, memory) = support::memory_layer();
        let frames = support::split(interaction.response_body.as_bytes(), &[97]);
        let exchange = support::replay_tower(&layer, interaction, frames).await;
        check_exchange(interaction, &exchange, "tower");
        let tower_calls = support::flushed(&layer, &memory).await;

        let (layer, memory) = support::memory_layer();
        let exchange = support::replay_reqwest(&layer, interaction).await;
        check_exchange(interaction, &exchange, "reqwest");
        let reqwest_calls = support::flushed(&layer, &memory).await;

        if want.endpoint.is_none() {
            non_llm += 1;
            assert!(
                tower_calls.is_empty(),
                "{}: non-LLM call recorded",
                interaction.name()
            );
            assert!(
                reqwest_calls.is_empty(),
                "{}: non-LLM call recorded",
                interaction.name()
            );
            continue;
        }
        llm_calls += 1;
        assert_eq!(
            tower_calls.len(),
            1,
            "{}: one payload via tower",
            interaction.name()
        );
        assert_eq!(
            reqwest_calls.len(),
            1,
            "{}: one payload via reqwest",
            interaction.name()
        );
        check(interaction, &want, &tower_calls[0], "tower");
        check(interaction, &want, &reqwest_calls[0], "reqwest");
        // Same payload either way, but for what differs by nature (id, times, address).
        assert_eq!(tower_calls[0].response, reqwest_calls[0].response);
        assert_eq!(tower_calls[0].request, reqwest_calls[0].request);
        assert_eq!(tower_calls[0].usage, reqwest_calls[0].usage);
        assert_eq!(tower_calls[0].error, reqwest_calls[0].error);
    }
    eprintln!("conformance: {llm_calls} LLM interactions and {non_llm} non-LLM interaction(s) replayed through tower and reqwest");
    assert!(
        llm_calls >= 45,
        "expected the 45 recorded LLM interactions, saw {llm_calls}"
    );
    assert_eq!(non_llm, 1, "the recorded telemetry POST");
}

/// A recorded error message as the record keeps it: an `sk-` key the upstream echoed (8 or
/// more key characters) is redacted.
fn without_keys(message: &str) -> String {
    let mut out = String::new();
    let mut rest = message;
    while let Some(at) = rest.find("sk-") {
        out.push_str(&rest[..at + 3]);
        let after = &rest[at + 3..];
        let len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            .unwrap_or(after.len());
        out.push_str(if len >= 8 {
            "[redacted]"
        } else {
            &after[..len]
        });
        rest = &after[len..];
    }
    out.push_str(rest);
    out
}
