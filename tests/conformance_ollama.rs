//! Conformance over real recorded Ollama traffic (`shared/fixtures/provider-recorded`): every
//! Ollama interaction (`/api/chat`, `/api/generate`, `/api/embeddings`) is replayed through the
//! tower layer under several frame splits and through the reqwest middleware; the bytes must
//! pass untouched, each call must make one record, and each record must say what the recording
//! implies. Expected values are computed from the recorded bodies with plain
//! `serde_json::Value` walking (`support::provider_expect::ollama`) — independently of the
//! crate's NDJSON framer and fold.
//!
//! Failures are collected and reported together.

mod support;

use std::sync::Arc;

use bytes::Bytes;
use llm_observability::{CallStatus, Endpoint, LlmCall};
use serde_json::{json, Map, Value};
use support::provider_expect::ollama::{self, FINAL_FIELDS};
use support::{Failures, Interaction};

/// Frame splits every interaction is replayed under (`support::split` cycles them).
const SPLITS: &[&[usize]] = &[&[1], &[7], &[97], &[4096], &[usize::MAX]];

/// What a recorded Ollama interaction implies about its record.
#[derive(Debug)]
struct Expected {
    endpoint: Endpoint,
    operation: &'static str,
    model: Option<String>,
    stream: bool,
    /// The body has more than one line.
    streamed: bool,
    status: CallStatus,
    error_message: Option<String>,
    response_model: Option<String>,
    /// (input, output, total).
    usage: Option<(Option<u64>, Option<u64>, Option<u64>)>,
    finish_reasons: Vec<String>,
    content: String,
    thinking: Option<String>,
    tool_calls: Vec<Value>,
    /// The final line's counts and durations.
    counts: Map<String, Value>,
    /// A one-line body: the response must be it.
    body: Option<Value>,
    /// A final `done: true` line arrived.
    done: bool,
    /// Embeddings: the number of vectors and their length.
    vectors: Option<(usize, usize)>,
    has_content: bool,
}

fn string(v: &Value) -> Option<String> {
    v.as_str().map(str::to_owned)
}

fn endpoint_of(uri: &str) -> Option<(Endpoint, &'static str)> {
    let path = uri.split('?').next().unwrap_or(uri);
    [
        ("/api/chat", Endpoint::OllamaChat, "chat"),
        ("/api/generate", Endpoint::OllamaGenerate, "text_completion"),
        ("/api/embed", Endpoint::OllamaEmbed, "embeddings"),
        ("/api/embeddings", Endpoint::OllamaEmbeddings, "embeddings"),
    ]
    .into_iter()
    .find(|(suffix, ..)| path.ends_with(suffix))
    .map(|(_, endpoint, operation)| (endpoint, operation))
}

fn expected(interaction: &Interaction) -> Expected {
    let (endpoint, operation) = endpoint_of(&interaction.uri).expect("an Ollama path");
    let embeddings = operation == "embeddings";
    let request = interaction.request_json().unwrap_or(Value::Null);
    let lines = ollama::lines(&interaction.response_body);
    let read = ollama::read(&lines, embeddings);
    Expected {
        endpoint,
        operation,
        model: string(&request["model"]),
        stream: !embeddings && request["stream"].as_bool().unwrap_or(true),
        streamed: lines.len() > 1,
        status: if read.errored || interaction.status >= 400 {
            CallStatus::Error
        } else {
            CallStatus::Success
        },
        error_message: read.error_message,
        response_model: read.response_model,
        usage: read.usage.map(|u| (u.input, u.output, u.total)),
        finish_reasons: read.finish_reasons,
        content: read.content,
        thinking: read.thinking,
        tool_calls: read.tool_calls,
        counts: read.counts,
        body: (lines.len() == 1 && !embeddings).then(|| lines[0].clone()),
        vectors: read.vectors,
        has_content: read.has_content,
        done: lines.iter().any(|line| line["done"] == true),
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
    fails.eq(call.endpoint, want.endpoint, format!("{at}: endpoint"));
    fails.eq(
        call.operation.as_str(),
        want.operation,
        format!("{at}: operation"),
    );
    fails.eq(call.provider.as_str(), "ollama", format!("{at}: provider"));
    fails.eq(
        &call.request_model,
        &want.model,
        format!("{at}: request_model"),
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
        let error = call.error.as_ref();
        fails.eq(
            error.and_then(|e| e.message.clone()),
            want.error_message.clone(),
            format!("{at}: error message"),
        );
        fails.eq(
            call.error_type.clone(),
            Some(interaction.status.to_string()),
            format!("{at}: error_type (the HTTP status: the body names no type)"),
        );
    } else if want.status == CallStatus::Success {
        fails.ok(
            call.error.is_none(),
            format!("{at}: unexpected error {:?}", call.error),
        );
    }
    fails.eq(&call.response_id, &None, format!("{at}: response_id"));
    fails.eq(
        &call.response_model,
        &want.response_model,
        format!("{at}: response_model"),
    );
    let usage = call
        .usage
        .map(|u| (u.input_tokens, u.output_tokens, u.total_tokens));
    fails.eq(
        usage,
        want.usage,
        format!("{at}: usage (input, output, total)"),
    );
    fails.eq(
        &call.finish_reasons,
        &want.finish_reasons,
        format!("{at}: finish_reasons"),
    );
    fails.eq(
        call.timing.time_to_first_token_ms.is_some(),
        want.streamed && want.has_content,
        format!("{at}: time_to_first_token_ms present"),
    );
    let Some(response) = call.response.as_ref().map(|r| r.value()) else {
        fails.ok(false, format!("{at}: no response"));
        return;
    };
    if let Some((count, dimensions)) = want.vectors {
        fails.eq(
            (&response["embedding_count"], &response["dimensions"]),
            (&json!(count), &json!(dimensions)),
            format!("{at}: embedding count and dimensions"),
        );
        fails.ok(
            response.get("embedding").is_none() && response.get("embeddings").is_none(),
            format!("{at}: vectors kept"),
        );
        return;
    }
    if let Some(body) = &want.body {
        fails.eq(
            response,
            body,
            format!("{at}: response (the recorded body)"),
        );
        return;
    }
    // An assembled stream: the unstreamed shape.
    let (text, thinking, calls) = match want.endpoint {
        Endpoint::OllamaChat => {
            let message = &response["message"];
            fails.eq(&message["role"], &json!("assistant"), format!("{at}: role"));
            (
                &message["content"],
                &message["thinking"],
                &message["tool_calls"],
            )
        }
        _ => (&response["response"], &response["thinking"], &Value::Null),
    };
    fails.eq(
        text,
        &json!(want.content),
        format!("{at}: assembled content"),
    );
    fails.eq(
        thinking,
        &want.thinking.clone().map_or(Value::Null, Value::String),
        format!("{at}: assembled thinking"),
    );
    let want_calls = if want.tool_calls.is_empty() {
        Value::Null
    } else {
        Value::Array(want.tool_calls.clone())
    };
    fails.eq(calls, &want_calls, format!("{at}: tool calls"));
    fails.eq(&response["done"], &json!(want.done), format!("{at}: done"));
    fails.eq(
        string(&response["done_reason"]),
        want.finish_reasons.first().cloned(),
        format!("{at}: done_reason"),
    );
    fails.eq(
        string(&response["model"]),
        want.response_model.clone(),
        format!("{at}: model"),
    );
    for field in FINAL_FIELDS {
        fails.eq(
            response.get(field),
            want.counts.get(field),
            format!("{at}: response {field}"),
        );
    }
}

/// The test's own reading against `INDEX.tsv` (written by whoever indexed the recordings).
fn self_check(fails: &mut Failures, provider: &support::ProviderInteraction, want: &Expected) {
    let name = provider.interaction.name();
    let Some(row) = &provider.index_row else {
        fails.ok(false, format!("SELF-CHECK {name}: no INDEX.tsv row"));
        return;
    };
    let column = |key: &str| row.get(key).map(String::as_str).unwrap_or("");
    fails.eq(
        want.response_model.as_deref().unwrap_or(""),
        column("response_model"),
        format!("SELF-CHECK {name}: response model"),
    );
    fails.eq(
        want.finish_reasons.join(","),
        column("stop_reasons").to_owned(),
        format!("SELF-CHECK {name}: stop reasons"),
    );
    fails.eq(
        want.error_message.as_deref().unwrap_or(""),
        column("error"),
        format!("SELF-CHECK {name}: error"),
    );
    fails.eq(
        !want.tool_calls.is_empty(),
        column("has_tool_use") == "yes",
        format!("SELF-CHECK {name}: has_tool_use"),
    );
    fails.eq(
        want.thinking.is_some(),
        column("has_thinking") == "yes",
        format!("SELF-CHECK {name}: has_thinking"),
    );
    let reported: Value = serde_json::from_str(column("usage_as_reported")).unwrap_or(Value::Null);
    let counts = reported
        .get("body")
        .or_else(|| reported.get("final line"))
        .cloned()
        .unwrap_or(Value::Null);
    let input = counts["prompt_eval_count"].as_u64();
    let output = counts["eval_count"].as_u64();
    fails.eq(
        want.usage.map(|u| (u.0, u.1)),
        (input.is_some() || output.is_some()).then_some((input, output)),
        format!("SELF-CHECK {name}: usage vs usage_as_reported"),
    );
}

#[tokio::test]
async fn recorded_ollama_under_every_chunking_and_through_reqwest() {
    let (Some(all), Some(index)) = (
        support::load_provider_interactions(),
        support::load_provider_index(),
    ) else {
        return;
    };
    let indexed = index
        .iter()
        .filter(|row| row.get("family").map(String::as_str) == Some("ollama"))
        .count();
    let mut fails = Failures::default();
    let (mut seen, mut recorded, mut streams, mut replays, mut legacy) = (0, 0, 0, 0, 0);
    for provider in all.iter().filter(|p| p.family() == Some("ollama")) {
        let interaction = &provider.interaction;
        fails.ok(
            interaction.method == "POST" && endpoint_of(&interaction.uri).is_some(),
            format!("{}: not a POST to an Ollama API path", interaction.name()),
        );
        if endpoint_of(&interaction.uri).is_none() {
            continue;
        }
        seen += 1;
        if legacy_embeddings(&interaction.uri) {
            // See `recorded_ollama_legacy_embeddings`.
            legacy += 1;
            continue;
        }
        let want = expected(interaction);
        self_check(&mut fails, provider, &want);
        streams += usize::from(want.streamed);
        let mut first: Option<(String, Arc<LlmCall>)> = None;
        for sizes in SPLITS {
            let label = format!("tower {sizes:?}");
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
                None => {
                    recorded += 1;
                    first = Some((label, call.clone()));
                }
                Some((first_label, first_call)) => support::same_record(
                    &mut fails,
                    &interaction.name(),
                    first_call,
                    call,
                    &format!("{first_label} vs {label}"),
                ),
            }
        }
        let (exchange, calls) = support::records_via_reqwest(interaction).await;
        support::check_exchange(&mut fails, interaction, &exchange, "reqwest");
        fails.eq(
            calls.len(),
            1,
            format!("{}: records via reqwest", interaction.name()),
        );
        if let Some(call) = calls.first() {
            check(&mut fails, interaction, &want, call, "reqwest");
            if let Some((label, first_call)) = &first {
                support::same_record(
                    &mut fails,
                    &interaction.name(),
                    first_call,
                    call,
                    &format!("{label} vs reqwest"),
                );
            }
        }
    }
    eprintln!(
        "conformance_ollama: {seen} Ollama interactions ({streams} streamed), {recorded} \
         recorded, {replays} chunked replays; INDEX.tsv lists {indexed}"
    );
    fails.eq(
        seen,
        indexed,
        "Ollama interactions vs INDEX.tsv (family ollama)",
    );
    fails.eq(
        recorded + legacy,
        indexed,
        "recorded Ollama calls (and legacy embeddings) vs INDEX.tsv",
    );
    fails.ok(
        indexed >= 43,
        format!("expected 43 Ollama interactions, INDEX.tsv has {indexed}"),
    );
    fails.finish("recorded_ollama_under_every_chunking_and_through_reqwest");
}

/// `POST .../api/embeddings`: the crate asks the OpenAI wire format first, and its
/// `.../embeddings` rule takes these paths (recorded as OpenAI embeddings, provider `openai`).
fn legacy_embeddings(uri: &str) -> bool {
    uri.split('?')
        .next()
        .unwrap_or(uri)
        .ends_with("/api/embeddings")
}

/// The three recorded `/api/embeddings` calls, checked as every other Ollama call (Ollama's
/// route is asked before OpenAI's `.../embeddings` suffix).
#[tokio::test]
async fn recorded_ollama_legacy_embeddings() {
    let Some(all) = support::load_provider_interactions() else {
        return;
    };
    let mut fails = Failures::default();
    let mut seen = 0;
    for provider in all.iter().filter(|p| p.family() == Some("ollama")) {
        let interaction = &provider.interaction;
        if !legacy_embeddings(&interaction.uri) {
            continue;
        }
        seen += 1;
        let want = expected(interaction);
        self_check(&mut fails, provider, &want);
        for sizes in [&[97][..], &[usize::MAX]] {
            let (exchange, calls) = support::records_via_tower(interaction, sizes).await;
            support::check_exchange(&mut fails, interaction, &exchange, "tower");
            fails.eq(calls.len(), 1, format!("{}: records", interaction.name()));
            if let Some(call) = calls.first() {
                check(
                    &mut fails,
                    interaction,
                    &want,
                    call,
                    &format!("tower {sizes:?}"),
                );
            }
        }
        let (exchange, calls) = support::records_via_reqwest(interaction).await;
        support::check_exchange(&mut fails, interaction, &exchange, "reqwest");
        if let Some(call) = calls.first() {
            check(&mut fails, interaction, &want, call, "reqwest");
        }
    }
    fails.eq(seen, 3, "recorded /api/embeddings calls");
    fails.finish("recorded_ollama_legacy_embeddings");
}

#[tokio::test]
async fn an_oversized_line_is_skipped_and_said() {
    // One hostile line of 9 MiB (past the default 8 MiB response limit) between real lines.
    let huge = format!(
        "{{\"model\":\"m\",\"message\":{{\"role\":\"assistant\",\"content\":\"{}\"}},\"done\":false}}",
        "x".repeat(9 << 20)
    );
    let body = format!(
        "{{\"model\":\"m\",\"message\":{{\"role\":\"assistant\",\"content\":\"Hi\"}},\"done\":false}}\n{huge}\n\
         {{\"model\":\"m\",\"message\":{{\"role\":\"assistant\",\"content\":\"\"}},\"done\":true,\"done_reason\":\"stop\",\"eval_count\":2}}\n"
    );
    let interaction = Interaction {
        file: "synthetic oversized NDJSON line".to_owned(),
        index: 0,
        method: "POST".to_owned(),
        uri: "http://127.0.0.1:11434/api/chat".to_owned(),
        request_body: json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
            .to_string(),
        status: 200,
        content_type: "application/x-ndjson".to_owned(),
        response_body: body,
        serve_encoding: None,
    };
    let (exchange, calls) = support::records_via_tower(&interaction, &[65536]).await;
    assert!(exchange.response_body == interaction.response_body.as_bytes());
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert!(call.truncated);
    assert!(
        call.decode_errors.iter().any(|e| e.contains("NDJSON line")),
        "{:?}",
        call.decode_errors
    );
    let response = call.response.as_ref().expect("partial response").value();
    assert_eq!(response["message"]["content"], "Hi");
    assert_eq!(call.finish_reasons, vec!["stop"]);
    assert_eq!(call.usage.and_then(|u| u.output_tokens), Some(2));
}

/// The recorded Ollama chat and generate interactions (legacy embeddings apart) with what each
/// implies.
fn recorded() -> Option<Vec<(Interaction, Expected)>> {
    let all = support::load_provider_interactions()?;
    Some(
        all.into_iter()
            .filter(|p| p.family() == Some("ollama"))
            .map(|p| p.interaction)
            .filter(|i| endpoint_of(&i.uri).is_some() && !legacy_embeddings(&i.uri))
            .map(|i| {
                let want = expected(&i);
                (i, want)
            })
            .collect(),
    )
}

/// `"stream": false` answered pretty-printed (a JSON object over many lines, as some Ollama
/// servers and proxies write it): each recorded one-line chat and generate body, re-indented
/// with `serde_json::to_string_pretty` and served as `application/json` and without a content
/// type, in several frame splits and through reqwest, is recorded exactly as the same value on
/// one line is (the response's text too) and as the recording implies.
#[tokio::test]
async fn an_unstreamed_answer_pretty_printed_is_recorded_as_the_one_line_body() {
    let Some(recorded) = recorded() else {
        return;
    };
    let mut fails = Failures::default();
    let mut pretty_bodies = 0;
    for (interaction, want) in &recorded {
        let (Some(body), Endpoint::OllamaChat | Endpoint::OllamaGenerate) =
            (&want.body, want.endpoint)
        else {
            continue;
        };
        pretty_bodies += 1;
        for content_type in ["application/json; charset=utf-8", ""] {
            let mut compact = interaction.clone();
            compact.content_type = content_type.to_owned();
            compact.response_body = serde_json::to_string(body).expect("JSON");
            let mut pretty = compact.clone();
            pretty.response_body = serde_json::to_string_pretty(body).expect("JSON");
            fails.ok(
                pretty.response_body.lines().count() >= 3,
                format!("{}: not pretty-printed", interaction.name()),
            );
            let (_, compact_calls) = support::records_via_tower(&compact, &[usize::MAX]).await;
            let Some(one_line) = compact_calls.first() else {
                fails.ok(
                    false,
                    format!("{}: no record of the one-line body", interaction.name()),
                );
                continue;
            };
            let mut runs = Vec::new();
            for sizes in SPLITS {
                let (exchange, calls) = support::records_via_tower(&pretty, sizes).await;
                runs.push((
                    format!("pretty {content_type:?}, tower {sizes:?}"),
                    exchange,
                    calls,
                ));
            }
            let (exchange, calls) = support::records_via_reqwest(&pretty).await;
            runs.push((format!("pretty {content_type:?}, reqwest"), exchange, calls));
            for (label, exchange, calls) in runs {
                support::check_exchange(&mut fails, &pretty, &exchange, &label);
                fails.eq(
                    calls.len(),
                    1,
                    format!("{} via {label}: records", interaction.name()),
                );
                let Some(call) = calls.first() else { continue };
                check(&mut fails, &pretty, want, call, &label);
                support::same_record(&mut fails, &interaction.name(), one_line, call, &label);
                fails.eq(
                    call.response.as_ref().map(|r| r.text()),
                    one_line.response.as_ref().map(|r| r.text()),
                    format!("{} via {label}: response text", interaction.name()),
                );
            }
        }
    }
    fails.ok(
        pretty_bodies >= 20,
        format!("only {pretty_bodies} one-line chat and generate bodies pretty-printed"),
    );
    fails.finish("an_unstreamed_answer_pretty_printed_is_recorded_as_the_one_line_body");
}

/// A client that drops a recorded NDJSON stream half-way (after half its lines) still makes one
/// record: `cancelled` (error type `cancelled`), HTTP 200, with the text, thinking and tool
/// calls of the lines it read assembled, no final counts, and no decode error.
#[tokio::test]
async fn a_cancelled_stream_keeps_the_partial_output() {
    let Some(recorded) = recorded() else {
        return;
    };
    let mut fails = Failures::default();
    let mut cancelled = 0;
    for (interaction, whole) in &recorded {
        let lines: Vec<&str> = interaction
            .response_body
            .split_inclusive('\n')
            .filter(|l| !l.trim().is_empty())
            .collect();
        if !whole.streamed || whole.status != CallStatus::Success || lines.len() < 4 {
            continue;
        }
        let read = lines.len() / 2;
        // What the client read, as a recording of its own: the expectation.
        let mut partial = interaction.clone();
        partial.response_body = lines[..read].concat();
        let mut want = expected(&partial);
        want.status = CallStatus::Cancelled;
        let at = format!("dropped after {read} of {} lines", lines.len());
        let (layer, memory) = support::memory_layer();
        let request = http::Request::post(interaction.uri.as_str())
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(Bytes::from(
                interaction.request_body.clone(),
            )))
            .expect("request");
        let headers: &[(&str, &str)] = match interaction.content_type.as_str() {
            "" => &[],
            content_type => &[("content-type", content_type)],
        };
        let (mut body, frames) = support::open_stream(&layer, request, headers).await;
        let pieces: Vec<Bytes> = lines[..read]
            .iter()
            .map(|line| Bytes::copy_from_slice(line.as_bytes()))
            .collect();
        support::relay(&mut body, &frames, &pieces).await;
        drop(body);
        let calls = support::flushed(&layer, &memory).await;
        support::shut_down(&layer).await;
        let named = format!("{} {at}", interaction.name());
        let Some(call) = support::cancelled_record(&mut fails, &calls, &named) else {
            continue;
        };
        check(&mut fails, &partial, &want, call, &at);
        fails.eq(
            (call.usage, call.finish_reasons.is_empty()),
            (None, true),
            format!("{} {at}: no final counts", interaction.name()),
        );
        cancelled += 1;
    }
    fails.ok(
        cancelled >= 10,
        format!("only {cancelled} recorded streams dropped half-way"),
    );
    fails.finish("a_cancelled_stream_keeps_the_partial_output");
}
