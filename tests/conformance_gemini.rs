//! Conformance over real recorded Gemini traffic (`shared/fixtures/provider-recorded`): every
//! `generateContent`, `streamGenerateContent`, `embedContent` and `batchEmbedContents`
//! interaction is replayed through the tower layer (streams under several frame splits) and
//! through the reqwest middleware, and each payload must say what the recording implies;
//! `interactions` and `cachedContents` calls must pass through unrecorded. A streamed JSON array
//! (the framing without `?alt=sse`, absent from the recordings) is built from each recorded SSE
//! stream's chunks and must be recorded as the SSE stream is. Expected values are computed with
//! plain `serde_json::Value` walking (the chunk fold is `support::provider_expect::gemini`'s),
//! independently of the crate's decoders.

mod support;

use bytes::Bytes;
use llm_observability::{CallStatus, Endpoint, LlmCall};
use serde_json::{json, Value};
use support::provider_expect::gemini::{chunks, fold, string, tokens};
use support::provider_expect::Tokens;
use support::{Failures, Interaction};

const STREAM_SPLITS: &[&[usize]] = &[&[1], &[7], &[97], &[4096]];
const JSON_SPLITS: &[&[usize]] = &[&[usize::MAX], &[7]];

/// The contract: `POST .../models/{m}:{method}` for the four methods; the model and method.
fn recognised(method: &str, uri: &str) -> Option<(String, String)> {
    let path = uri.split('?').next().unwrap_or(uri);
    let path = path
        .split("://")
        .nth(1)
        .map_or(path, |rest| rest.find('/').map_or("", |at| &rest[at..]));
    let (rest, last) = path.rsplit_once('/')?;
    let (model, call) = last.split_once(':')?;
    let known = [
        "generateContent",
        "streamGenerateContent",
        "embedContent",
        "batchEmbedContents",
    ];
    (method == "POST" && rest.ends_with("/models") && known.contains(&call))
        .then(|| (model.to_owned(), call.to_owned()))
}

#[derive(Debug)]
struct Expected {
    model: String,
    method: String,
    provider: &'static str,
    streamed: bool,
    status: CallStatus,
    error: Option<(Option<String>, Option<String>)>,
    response_id: Option<String>,
    response_model: Option<String>,
    usage: Option<Tokens>,
    finish_reasons: Vec<String>,
    response: Option<Value>,
    has_content: bool,
}

fn expected(provider: &support::ProviderInteraction) -> Option<Expected> {
    let interaction = &provider.interaction;
    let (model, method) = recognised(&interaction.method, &interaction.uri)?;
    let vertex = interaction.uri.contains("/publishers/google/models/")
        || provider.host.ends_with("aiplatform.googleapis.com");
    let mut want = Expected {
        model,
        provider: if vertex {
            "gcp.vertex_ai"
        } else {
            "gcp.gemini"
        },
        streamed: method == "streamGenerateContent",
        method,
        status: CallStatus::Success,
        error: None,
        response_id: None,
        response_model: None,
        usage: None,
        finish_reasons: Vec::new(),
        response: None,
        has_content: false,
    };
    let body = &interaction.response_body;
    let response = if want.streamed {
        let (response, has_content) = fold(&chunks(body).expect("a recorded stream"));
        want.has_content = has_content;
        response
    } else {
        let mut response: Value = serde_json::from_str(body).expect("recorded body is JSON");
        if want.method.contains("mbed") {
            for item in response["embeddings"].as_array_mut().into_iter().flatten() {
                item.as_object_mut().map(|i| i.remove("values"));
            }
            if let Some(one) = response.get_mut("embedding").and_then(Value::as_object_mut) {
                one.remove("values");
            }
        }
        response
    };
    want.response_id = string(&response["responseId"]);
    want.response_model = string(&response["modelVersion"]);
    want.usage = tokens(&response["usageMetadata"]);
    want.finish_reasons = response["candidates"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| string(&c["finishReason"]))
        .collect();
    if let Some(error) = response.get("error").filter(|e| !e.is_null()) {
        want.error = Some((string(&error["status"]), string(&error["message"])));
    }
    if interaction.status >= 400 || want.error.is_some() {
        want.status = CallStatus::Error;
    }
    want.response = Some(response);
    Some(want)
}

fn check(
    fails: &mut Failures,
    interaction: &Interaction,
    want: &Expected,
    call: &LlmCall,
    at: &str,
) {
    let at = format!("{} via {at}", interaction.name());
    let (endpoint, operation) = match want.method.as_str() {
        "generateContent" => (Endpoint::GeminiGenerateContent, "generate_content"),
        "streamGenerateContent" => (Endpoint::GeminiStreamGenerateContent, "generate_content"),
        "embedContent" => (Endpoint::GeminiEmbedContent, "embeddings"),
        _ => (Endpoint::GeminiBatchEmbedContents, "embeddings"),
    };
    fails.eq(call.endpoint, endpoint, format!("{at}: endpoint"));
    fails.eq(
        call.operation.as_str(),
        operation,
        format!("{at}: operation"),
    );
    fails.eq(
        call.provider.as_str(),
        want.provider,
        format!("{at}: provider"),
    );
    fails.eq(
        call.request_model.as_deref(),
        Some(want.model.as_str()),
        format!("{at}: request_model"),
    );
    fails.eq(
        call.request.stream,
        want.streamed,
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
    match (&call.error, &want.error) {
        (Some(error), Some((kind, message))) => {
            fails.eq(&error.kind, kind, format!("{at}: error kind"));
            fails.eq(&error.message, message, format!("{at}: error message"));
        }
        (None, Some(_)) => fails.ok(false, format!("{at}: error missing")),
        (Some(error), None) if want.status == CallStatus::Success => {
            fails.ok(false, format!("{at}: unexpected error {error:?}"))
        }
        _ => {}
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
    fails.eq(usage, want.usage, format!("{at}: usage"));
    fails.eq(
        &call.finish_reasons,
        &want.finish_reasons,
        format!("{at}: finish_reasons"),
    );
    if want.streamed && want.has_content {
        fails.ok(
            call.timing.time_to_first_token_ms.is_some(),
            format!("{at}: time_to_first_token_ms missing"),
        );
    }
    if !want.streamed {
        fails.eq(
            call.timing.time_to_first_token_ms,
            None,
            format!("{at}: time_to_first_token_ms on a JSON response"),
        );
    }
    fails.eq(
        call.response.as_ref().map(|r| r.value()),
        want.response.as_ref(),
        format!("{at}: response"),
    );
}

/// The Gemini and Vertex interactions. Cassettes recorded by async clients spell the method
/// `post`; on the wire it is `POST`, and so it is replayed.
fn gemini_interactions() -> Option<Vec<support::ProviderInteraction>> {
    Some(
        support::load_provider_interactions()?
            .into_iter()
            .filter(|p| {
                matches!(p.family(), Some("gemini" | "vertex"))
                    || p.host.ends_with("googleapis.com")
            })
            .map(|mut p| {
                p.interaction.method = p.interaction.method.to_ascii_uppercase();
                p
            })
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_recorded_gemini_call_is_recorded_exactly() {
    let Some(interactions) = gemini_interactions() else {
        return;
    };
    let mut fails = Failures::default();
    let mut recorded = 0;
    let mut passed_through = 0;
    for provider in &interactions {
        let interaction = &provider.interaction;
        let Some(want) = expected(provider) else {
            let (exchange, calls) = support::records_via_tower(interaction, &[usize::MAX]).await;
            support::check_exchange(&mut fails, interaction, &exchange, "tower");
            fails.eq(
                calls.len(),
                0,
                format!("{}: records of an unrecognised call", interaction.name()),
            );
            passed_through += 1;
            continue;
        };
        recorded += 1;
        let splits = if want.streamed {
            STREAM_SPLITS
        } else {
            JSON_SPLITS
        };
        for sizes in splits {
            let at = format!("tower {sizes:?}");
            let (exchange, calls) = support::records_via_tower(interaction, sizes).await;
            support::check_exchange(&mut fails, interaction, &exchange, &at);
            fails.eq(
                calls.len(),
                1,
                format!("{}: records via {at}", interaction.name()),
            );
            if let Some(call) = calls.first() {
                check(&mut fails, interaction, &want, call, &at);
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
        }
    }
    fails.ok(
        recorded >= 28,
        format!("only {recorded} Gemini calls replayed"),
    );
    fails.ok(
        passed_through >= 11,
        format!("only {passed_through} unrecorded calls replayed"),
    );
    fails.finish("every_recorded_gemini_call_is_recorded_exactly");
}

/// Without `?alt=sse`, `streamGenerateContent` answers one JSON array written piece by piece:
/// each recorded SSE stream's chunks joined as `[chunk,\r\nchunk]` must be recorded as the SSE
/// stream is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_json_array_is_recorded_as_its_sse_twin() {
    let Some(interactions) = gemini_interactions() else {
        return;
    };
    let mut fails = Failures::default();
    let mut twins = 0;
    for provider in &interactions {
        let Some(want) = expected(provider).filter(|w| w.streamed) else {
            continue;
        };
        let sse = &provider.interaction;
        let data: Vec<String> = support::sse_events(&sse.response_body)
            .into_iter()
            .map(|(_, data)| data)
            .collect();
        let mut array = sse.clone();
        array.response_body = format!("[{}]", data.join(",\r\n"));
        array.content_type = "application/json; charset=UTF-8".into();
        array.uri = sse.uri.replace("?alt=sse", "").replace("&alt=sse", "");
        twins += 1;
        for sizes in STREAM_SPLITS {
            let at = format!("JSON array, tower {sizes:?}");
            let (exchange, calls) = support::records_via_tower(&array, sizes).await;
            support::check_exchange(&mut fails, &array, &exchange, &at);
            fails.eq(
                calls.len(),
                1,
                format!("{}: records via {at}", array.name()),
            );
            if let Some(call) = calls.first() {
                check(&mut fails, &array, &want, call, &at);
            }
        }
        let (_, calls) = support::records_via_reqwest(&array).await;
        fails.eq(
            calls.len(),
            1,
            format!("{}: records via reqwest (array)", array.name()),
        );
        if let Some(call) = calls.first() {
            check(&mut fails, &array, &want, call, "JSON array, reqwest");
        }
    }
    fails.ok(
        twins >= 9,
        format!("only {twins} SSE streams turned into arrays"),
    );
    fails.finish("a_streamed_json_array_is_recorded_as_its_sse_twin");
}

/// An error answered to `streamGenerateContent` without `?alt=sse`, as a JSON array of one
/// error chunk: recorded with Google's status and message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_error_in_a_json_array_is_recorded() {
    let error = json!({"error": {"code": 404, "message": "models/gemini-x is not found", "status": "NOT_FOUND"}});
    let mut fails = Failures::default();
    for body in [format!("[{error}]"), format!("[\n{error:#}\n]\n")] {
        let interaction = Interaction {
            file: "synthetic".into(),
            index: 0,
            method: "POST".into(),
            uri: "https://generativelanguage.googleapis.com/v1beta/models/gemini-x:streamGenerateContent".into(),
            request_body: r#"{"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}"#.into(),
            status: 404,
            content_type: "application/json; charset=UTF-8".into(),
            response_body: body.clone(),
            serve_encoding: None,
        };
        for sizes in STREAM_SPLITS {
            let (exchange, calls) = support::records_via_tower(&interaction, sizes).await;
            let at = format!("{body:?} {sizes:?}");
            support::check_exchange(&mut fails, &interaction, &exchange, &at);
            fails.eq(calls.len(), 1, format!("{at}: records"));
            let Some(call) = calls.first() else { continue };
            fails.eq(call.status, CallStatus::Error, format!("{at}: status"));
            let error = call.error.as_ref();
            fails.eq(
                error.and_then(|e| e.kind.as_deref()),
                Some("NOT_FOUND"),
                format!("{at}: error kind"),
            );
            fails.eq(
                error.and_then(|e| e.message.as_deref()),
                Some("models/gemini-x is not found"),
                format!("{at}: error message"),
            );
        }
    }
    fails.finish("a_stream_error_in_a_json_array_is_recorded");
}

/// A client that drops a recorded stream half-way — SSE (`?alt=sse`) after half its events; the
/// same chunks as a streamed JSON array after half its elements (before the `,` that would
/// follow: an element is whole at its closing brace), and after half its elements and part of
/// the next — still makes one record: `cancelled` (error type `cancelled`), with what the chunks
/// it read fold to (response, usage, ids) and no decode error (a cut element is the cancel's,
/// not the body's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_stream_keeps_the_partial_output() {
    let Some(interactions) = gemini_interactions() else {
        return;
    };
    let mut fails = Failures::default();
    let mut cancelled = 0;
    for provider in &interactions {
        let Some(whole) = expected(provider).filter(|w| w.streamed) else {
            continue;
        };
        let data: Vec<String> = support::sse_events(&provider.interaction.response_body)
            .into_iter()
            .map(|(_, data)| data)
            .collect();
        if whole.status != CallStatus::Success || data.len() < 2 {
            continue;
        }
        let read = data.len() / 2;
        let events: Vec<String> = data.iter().map(|d| format!("data: {d}\r\n\r\n")).collect();
        // What the client read, as a recording of its own: the expectation.
        let mut partial = provider.clone();
        partial.interaction.response_body = events[..read].concat();
        let Some(mut want) = expected(&partial) else {
            continue;
        };
        want.status = CallStatus::Cancelled;
        let sse: Vec<Bytes> = events[..read].iter().cloned().map(Bytes::from).collect();
        let elements: Vec<Bytes> = data[..read]
            .iter()
            .enumerate()
            .map(|(i, d)| Bytes::from(format!("{}{d}", if i == 0 { "[" } else { "\r\n," })))
            .collect();
        let next = &data[read];
        let mut cut = elements.clone();
        cut.push(Bytes::from(format!("\r\n,{}", &next[..next.len() / 2])));
        let array_uri = partial
            .interaction
            .uri
            .replace("?alt=sse", "")
            .replace("&alt=sse", "");
        let json = "application/json; charset=UTF-8";
        for (framing, uri, content_type, pieces) in [
            ("SSE", &partial.interaction.uri, "text/event-stream", &sse),
            ("JSON array, whole elements", &array_uri, json, &elements),
            ("JSON array, inside an element", &array_uri, json, &cut),
        ] {
            let mut interaction = partial.interaction.clone();
            interaction.uri = uri.clone();
            let at = format!("{framing}, dropped after {read} of {} chunks", data.len());
            let (layer, memory) = support::memory_layer();
            let request = http::Request::post(uri.as_str())
                .header("content-type", "application/json")
                .body(http_body_util::Full::new(Bytes::from(
                    interaction.request_body.clone(),
                )))
                .expect("request");
            let (mut body, frames) =
                support::open_stream(&layer, request, &[("content-type", content_type)]).await;
            support::relay(&mut body, &frames, pieces).await;
            drop(body);
            let calls = support::flushed(&layer, &memory).await;
            support::shut_down(&layer).await;
            let named = format!("{} {at}", interaction.name());
            let Some(call) = support::cancelled_record(&mut fails, &calls, &named) else {
                continue;
            };
            check(&mut fails, &interaction, &want, call, &at);
        }
        cancelled += 1;
    }
    fails.ok(
        cancelled >= 6,
        format!("only {cancelled} recorded streams dropped half-way"),
    );
    fails.finish("a_cancelled_stream_keeps_the_partial_output");
}
