//! What recorded provider traffic (`shared/fixtures/provider-recorded`) says, read the plain
//! way — SSE split on blank lines, AWS event-stream frames by their length prefixes, NDJSON by
//! lines, and `serde_json::Value` walking — apart from the crate's framers, decoders and
//! folds. One module per API family: each folds a recorded response into the response the same
//! call returns unstreamed, and reads such a response in provider-neutral terms
//! ([`Reading`]). The conformance suites compare the crate's records with these folds; the
//! backend suites (through `support::calls`) compare what each backend stored with the
//! readings.

use serde_json::{json, Map, Value};

/// Token counts in the crate's terms: `input` counts every input token (cache reads and
/// writes included), `output` every output token (reasoning included); each `None` when the
/// recording does not report it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    pub input: Option<u64>,
    pub output: Option<u64>,
    pub total: Option<u64>,
    pub cache_read: Option<u64>,
    pub cache_creation: Option<u64>,
    pub reasoning: Option<u64>,
}

impl Tokens {
    /// A record's usage, to compare with a reading.
    pub fn of(usage: &llm_observability::Usage) -> Tokens {
        Tokens {
            input: usage.input_tokens,
            output: usage.output_tokens,
            total: usage.total_tokens,
            cache_read: usage.cached_input_tokens,
            cache_creation: usage.cache_creation_input_tokens,
            reasoning: usage.reasoning_tokens,
        }
    }
}

/// A tool call: id (empty when the API gives none), name and arguments (parsed JSON).
pub type ToolCall = (String, String, Value);

/// What a response says, whatever its API family.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reading {
    /// The response id the body carries (none in a Converse or Ollama body).
    pub id: Option<String>,
    /// The model that answered, as the body names it (none in a Converse body).
    pub model: Option<String>,
    pub tokens: Option<Tokens>,
    /// The answer's text, its text parts joined.
    pub text: String,
    /// The reasoning (thinking) text, joined.
    pub reasoning: String,
    pub tool_calls: Vec<ToolCall>,
    pub finish_reason: Option<String>,
}

fn str_of(v: &Value) -> String {
    v.as_str().unwrap_or("").to_owned()
}

/// Anthropic Messages: SSE events (`message_start`, `content_block_*`, `message_delta`, ...)
/// or one JSON Message.
pub mod anthropic {
    use super::*;
    use std::collections::BTreeMap;

    /// A Messages SSE stream folded.
    #[derive(Debug, Clone)]
    pub struct Stream {
        /// The Message the stream makes: `message_start`'s message with the assembled content
        /// blocks (tool inputs parsed from their joined `input_json_delta` fragments, thinking
        /// with its signature), the last `stop_reason` and `stop_sequence`, and `usage`.
        pub message: Value,
        /// `message_start`'s usage with the last `message_delta` usage's fields laid over it
        /// (the delta's alone when the start has none).
        pub usage: Option<Value>,
        /// The `error` event's error, if the stream has one.
        pub error: Option<Value>,
        /// At least one `content_block_delta` carried content.
        pub has_content_delta: bool,
    }

    /// The body is an SSE stream (not one JSON Message).
    pub fn is_stream(body: &str) -> bool {
        let body = body.trim_start();
        body.starts_with("event:") || body.starts_with("data:")
    }

    /// Folds a Messages SSE stream; panics (naming `label`) on a delta type it does not know.
    pub fn fold(body: &str, label: &str) -> Stream {
        let mut message = json!({});
        let mut start_usage: Option<Value> = None;
        let mut last_delta_usage: Option<Value> = None;
        let mut blocks: BTreeMap<u64, Value> = BTreeMap::new();
        let mut fragments: BTreeMap<u64, String> = BTreeMap::new();
        let mut error = None;
        let mut has_content_delta = false;
        for (event, data) in crate::support::sse_events(body) {
            let chunk: Value = serde_json::from_str(&data).expect("recorded event is JSON");
            let kind = chunk["type"].as_str().unwrap_or(event.as_str()).to_owned();
            match kind.as_str() {
                "message_start" => {
                    message = chunk["message"].clone();
                    start_usage = message.get("usage").cloned();
                }
                "content_block_start" => {
                    let index = chunk["index"].as_u64().expect("block index");
                    blocks.insert(index, chunk["content_block"].clone());
                }
                "content_block_delta" => {
                    let index = chunk["index"].as_u64().expect("block index");
                    let delta = &chunk["delta"];
                    let block = blocks.entry(index).or_insert_with(|| json!({}));
                    let append = |block: &mut Value, field: &str, piece: &str| {
                        let so_far = block[field].as_str().unwrap_or("").to_owned();
                        block[field] = Value::String(so_far + piece);
                    };
                    match delta["type"].as_str().unwrap_or("") {
                        "text_delta" => {
                            let piece = delta["text"].as_str().unwrap_or("");
                            has_content_delta |= !piece.is_empty();
                            append(block, "text", piece);
                        }
                        "input_json_delta" => {
                            let piece = delta["partial_json"].as_str().unwrap_or("");
                            has_content_delta |= !piece.is_empty();
                            fragments.entry(index).or_default().push_str(piece);
                        }
                        "thinking_delta" => {
                            let piece = delta["thinking"].as_str().unwrap_or("");
                            has_content_delta |= !piece.is_empty();
                            append(block, "thinking", piece);
                        }
                        "signature_delta" => {
                            block["signature"] = delta["signature"].clone();
                        }
                        other => panic!("{label}: unknown delta {other}"),
                    }
                }
                "message_delta" => {
                    message["stop_reason"] = chunk["delta"]["stop_reason"].clone();
                    message["stop_sequence"] = chunk["delta"]["stop_sequence"].clone();
                    if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
                        last_delta_usage = Some(usage.clone());
                    }
                }
                "error" => error = Some(chunk["error"].clone()),
                _ => {}
            }
        }
        for (index, block) in blocks.iter_mut() {
            if block["type"] == "tool_use" {
                let fragments = fragments.get(index).map(String::as_str).unwrap_or("");
                block["input"] = if fragments.is_empty() {
                    json!({})
                } else {
                    serde_json::from_str(fragments).expect("tool input fragments join to JSON")
                };
            }
        }
        message["content"] = Value::Array(blocks.into_values().collect());
        let mut usage = start_usage;
        if let (Some(Value::Object(merged)), Some(Value::Object(delta))) =
            (usage.as_mut(), last_delta_usage.as_ref())
        {
            for (k, v) in delta {
                merged.insert(k.clone(), v.clone());
            }
        } else if usage.is_none() {
            usage = last_delta_usage;
        }
        match &usage {
            Some(usage) => message["usage"] = usage.clone(),
            None => {
                message.as_object_mut().map(|m| m.remove("usage"));
            }
        }
        Stream {
            message,
            usage,
            error,
            has_content_delta,
        }
    }

    /// The Message a recorded body says: the JSON body, or the SSE stream folded.
    pub fn message(body: &str) -> Value {
        if is_stream(body) {
            fold(body, "recorded Messages stream").message
        } else {
            serde_json::from_str(body).expect("a JSON Message")
        }
    }

    /// A Messages `usage` object's counts: Anthropic's `input_tokens` leaves the cache reads
    /// and writes out; the crate's input counts them.
    pub fn tokens(u: &Value) -> Option<Tokens> {
        if !u.is_object() {
            return None;
        }
        let cache_read = u["cache_read_input_tokens"].as_u64();
        let cache_creation = u["cache_creation_input_tokens"].as_u64();
        let input = u["input_tokens"]
            .as_u64()
            .map(|i| i + cache_read.unwrap_or(0) + cache_creation.unwrap_or(0));
        let output = u["output_tokens"].as_u64();
        Some(Tokens {
            input,
            output,
            total: input.zip(output).map(|(i, o)| i + o),
            cache_read,
            cache_creation,
            reasoning: None,
        })
    }

    /// A Message in neutral terms: `text` and `thinking` blocks joined, `tool_use` blocks as
    /// tool calls, `stop_reason` as the finish reason.
    pub fn reading(message: &Value) -> Reading {
        let blocks = message["content"].as_array().cloned().unwrap_or_default();
        let joined = |kind: &str, field: &str| -> String {
            blocks
                .iter()
                .filter(|b| b["type"] == kind)
                .filter_map(|b| b[field].as_str())
                .collect()
        };
        Reading {
            id: message["id"].as_str().map(str::to_owned),
            model: message["model"].as_str().map(str::to_owned),
            tokens: tokens(&message["usage"]),
            text: joined("text", "text"),
            reasoning: joined("thinking", "thinking"),
            tool_calls: blocks
                .iter()
                .filter(|b| b["type"] == "tool_use")
                .map(|b| (str_of(&b["id"]), str_of(&b["name"]), b["input"].clone()))
                .collect(),
            finish_reason: message["stop_reason"].as_str().map(str::to_owned),
        }
    }

    /// The request's tools: `(name, input_schema)`.
    pub fn tools(request: &Value) -> Vec<(String, Value)> {
        request["tools"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| (str_of(&t["name"]), t["input_schema"].clone()))
            .collect()
    }
}

/// Gemini (Gemini API and Vertex AI) `generateContent` / `streamGenerateContent`: SSE
/// (`?alt=sse`) or JSON-array chunks of `GenerateContentResponse`, or one JSON response.
pub mod gemini {
    use super::*;
    use std::collections::BTreeMap;

    /// A non-empty string, owned.
    pub fn string(v: &Value) -> Option<String> {
        v.as_str().filter(|s| !s.is_empty()).map(str::to_owned)
    }

    fn add(a: Option<u64>, b: Option<u64>) -> Option<u64> {
        match (a, b) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
        }
    }

    /// A `usageMetadata` object's counts: input is the prompt plus the tool-use prompt, output
    /// the candidates plus the thoughts; the total as reported (else their sum).
    pub fn tokens(u: &Value) -> Option<Tokens> {
        if !u.is_object() {
            return None;
        }
        let input = add(
            u["promptTokenCount"].as_u64(),
            u["toolUsePromptTokenCount"].as_u64(),
        );
        let output = add(
            u["candidatesTokenCount"].as_u64(),
            u["thoughtsTokenCount"].as_u64(),
        );
        let total = u["totalTokenCount"]
            .as_u64()
            .or_else(|| input.zip(output).map(|(i, o)| i + o));
        Some(Tokens {
            input,
            output,
            total,
            cache_read: u["cachedContentTokenCount"].as_u64(),
            cache_creation: None,
            reasoning: u["thoughtsTokenCount"].as_u64(),
        })
    }

    /// The stream's chunks: SSE `data:` payloads, or a JSON array's elements.
    pub fn chunks(body: &str) -> Option<Vec<Value>> {
        let trimmed = body.trim_start();
        if trimmed.starts_with("data:") {
            return Some(
                crate::support::sse_events(body)
                    .into_iter()
                    .map(|(_, data)| serde_json::from_str(&data).expect("recorded chunk is JSON"))
                    .collect(),
            );
        }
        if trimmed.starts_with('[') {
            return serde_json::from_str::<Vec<Value>>(trimmed).ok();
        }
        None
    }

    fn is_text_part(part: &Value) -> bool {
        part.as_object().is_some_and(|p| {
            p.get("text").is_some_and(Value::is_string)
                && p.keys()
                    .all(|k| matches!(k.as_str(), "text" | "thought" | "thoughtSignature"))
        })
    }

    /// A candidate being folded: its other fields, its parts, whether the chunks named its
    /// index.
    type CandidateSoFar = (Map<String, Value>, Vec<Value>, bool);

    /// Chunks folded as the contract says: candidates by index, consecutive text parts of one
    /// kind merged (at most one signature each), other parts as sent, other fields last wins.
    /// Also says whether any chunk carried content (text or a function call).
    pub fn fold(chunks: &[Value]) -> (Value, bool) {
        let mut candidates: BTreeMap<u64, CandidateSoFar> = Default::default();
        let mut top = Map::new();
        let mut has_content = false;
        for chunk in chunks {
            for (key, value) in chunk.as_object().expect("chunk is an object") {
                if key != "candidates" {
                    top.insert(key.clone(), value.clone());
                    continue;
                }
                for (position, candidate) in value.as_array().into_iter().flatten().enumerate() {
                    let index = candidate["index"].as_u64().unwrap_or(position as u64);
                    let entry = candidates.entry(index).or_default();
                    entry.2 |= candidate.get("index").is_some();
                    for (field, value) in candidate.as_object().expect("candidate object") {
                        match field.as_str() {
                            "index" => {}
                            "content" => {
                                if let Some(role) = string(&value["role"]) {
                                    entry.0.entry("role").or_insert(json!(role));
                                }
                                for part in value["parts"].as_array().into_iter().flatten() {
                                    let text = part["text"].as_str().unwrap_or("");
                                    has_content |=
                                        !text.is_empty() || part.get("functionCall").is_some();
                                    if !is_text_part(part) {
                                        entry.1.push(part.clone());
                                        continue;
                                    }
                                    let thought = part["thought"].as_bool().unwrap_or(false);
                                    let signature = part.get("thoughtSignature").and_then(string);
                                    if text.is_empty() && signature.is_none() && !thought {
                                        continue;
                                    }
                                    let merge = entry.1.last().is_some_and(|last| {
                                        is_text_part(last)
                                            && last["thought"].as_bool().unwrap_or(false) == thought
                                            && !(last.get("thoughtSignature").is_some()
                                                && signature.is_some())
                                    });
                                    if !merge {
                                        let mut fresh = json!({"text": ""});
                                        if thought {
                                            fresh["thought"] = json!(true);
                                        }
                                        entry.1.push(fresh);
                                    }
                                    let last = entry.1.last_mut().expect("a text part");
                                    let so_far = last["text"].as_str().unwrap_or("").to_owned();
                                    last["text"] = json!(so_far + text);
                                    if let Some(signature) = signature {
                                        last.as_object_mut()
                                            .expect("part")
                                            .entry("thoughtSignature")
                                            .or_insert(json!(signature));
                                    }
                                }
                            }
                            other => {
                                entry.0.insert(other.to_owned(), value.clone());
                            }
                        }
                    }
                }
            }
        }
        let mut response = Map::new();
        let candidates: Vec<Value> = candidates
            .into_iter()
            .map(|(index, (mut fields, parts, index_sent))| {
                let role = fields.remove("role").unwrap_or(json!("model"));
                fields.insert("content".into(), json!({"parts": parts, "role": role}));
                if index_sent {
                    fields.insert("index".into(), json!(index));
                }
                Value::Object(fields)
            })
            .collect();
        if !(candidates.is_empty() && top.contains_key("error")) {
            response.insert("candidates".into(), Value::Array(candidates));
        }
        response.extend(top);
        (Value::Object(response), has_content)
    }

    /// The response a recorded `generateContent` / `streamGenerateContent` body says: a
    /// stream's chunks folded, else the JSON body.
    pub fn response(body: &str) -> Value {
        match chunks(body) {
            Some(chunks) => fold(&chunks).0,
            None => serde_json::from_str(body).expect("a JSON response"),
        }
    }

    /// A `GenerateContentResponse` in neutral terms (its first candidate): text and thought
    /// parts joined apart, `functionCall` parts as tool calls, `finishReason`.
    pub fn reading(response: &Value) -> Reading {
        let candidate = &response["candidates"][0];
        let parts = candidate["content"]["parts"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let joined = |thought: bool| -> String {
            parts
                .iter()
                .filter(|p| p["thought"].as_bool().unwrap_or(false) == thought)
                .filter_map(|p| p["text"].as_str())
                .collect()
        };
        Reading {
            id: string(&response["responseId"]),
            model: string(&response["modelVersion"]),
            tokens: tokens(&response["usageMetadata"]),
            text: joined(false),
            reasoning: joined(true),
            tool_calls: parts
                .iter()
                .filter_map(|p| p.get("functionCall"))
                .map(|c| (str_of(&c["id"]), str_of(&c["name"]), c["args"].clone()))
                .collect(),
            finish_reason: string(&candidate["finishReason"]),
        }
    }

    /// The request's function declarations: `(name, parameters)`.
    pub fn tools(request: &Value) -> Vec<(String, Value)> {
        request["tools"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["functionDeclarations"].as_array())
            .flatten()
            .map(|d| (str_of(&d["name"]), d["parameters"].clone()))
            .collect()
    }
}

/// AWS Bedrock Converse: `converse` JSON, `converse-stream` AWS event-stream frames.
pub mod bedrock {
    use super::*;
    use std::collections::BTreeMap;

    /// The event-stream frames of a body as the test reads them: `:event-type` and the
    /// payload JSON. No CRC checks here: the recordings' CRCs are valid (README), and the
    /// crate checks them.
    pub fn frames_of(body: &[u8]) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        let mut at = 0;
        while at + 12 <= body.len() {
            let word = |i: usize| {
                u32::from_be_bytes(body[i..i + 4].try_into().expect("four bytes")) as usize
            };
            let (total, headers_len) = (word(at), word(at + 4));
            let mut headers = BTreeMap::new();
            let mut h = at + 12;
            while h < at + 12 + headers_len {
                let name_len = body[h] as usize;
                let name = String::from_utf8_lossy(&body[h + 1..h + 1 + name_len]).into_owned();
                let kind = body[h + 1 + name_len];
                h += 2 + name_len;
                assert_eq!(kind, 7, "the recordings' headers are strings");
                let len = u16::from_be_bytes([body[h], body[h + 1]]) as usize;
                let value = String::from_utf8_lossy(&body[h + 2..h + 2 + len]).into_owned();
                headers.insert(name, value);
                h += 2 + len;
            }
            let payload = &body[at + 12 + headers_len..at + total - 4];
            let name = headers.get(":event-type").cloned().unwrap_or_default();
            out.push((name, serde_json::from_slice(payload).expect("JSON payload")));
            at += total;
        }
        assert_eq!(at, body.len(), "whole frames");
        out
    }

    /// A `converse-stream` body folded into the Converse response: `output.message` (role,
    /// content blocks by index: text joined, tool uses with their input parsed from the joined
    /// fragments), `stopReason`, and the `metadata` event's `usage`, `metrics` and `trace`.
    /// Also says whether any delta carried text or tool input.
    pub fn fold(body: &[u8]) -> (Value, bool) {
        let mut role = json!("assistant");
        let mut blocks: BTreeMap<u64, Map<String, Value>> = BTreeMap::new();
        let mut inputs: BTreeMap<u64, String> = BTreeMap::new();
        let mut stop = Value::Null;
        let mut meta = Map::new();
        let mut content = false;
        for (name, payload) in frames_of(body) {
            let index = payload["contentBlockIndex"].as_u64().unwrap_or(0);
            match name.as_str() {
                "messageStart" => role = payload["role"].clone(),
                "contentBlockStart" => {
                    let tool = &payload["start"]["toolUse"];
                    blocks.entry(index).or_default().insert(
                        "toolUse".into(),
                        json!({"toolUseId": tool["toolUseId"], "name": tool["name"]}),
                    );
                    inputs.entry(index).or_default();
                }
                "contentBlockDelta" => {
                    let delta = &payload["delta"];
                    if let Some(text) = delta["text"].as_str() {
                        content |= !text.is_empty();
                        let block = blocks.entry(index).or_default();
                        let old = block.get("text").and_then(Value::as_str).unwrap_or("");
                        let joined = format!("{old}{text}");
                        block.insert("text".into(), json!(joined));
                    }
                    if let Some(input) = delta["toolUse"]["input"].as_str() {
                        content |= !input.is_empty();
                        inputs.entry(index).or_default().push_str(input);
                    }
                }
                "messageStop" => stop = payload["stopReason"].clone(),
                "metadata" => {
                    for key in ["usage", "metrics", "trace"] {
                        if let Some(value) = payload.get(key) {
                            meta.insert(key.into(), value.clone());
                        }
                    }
                }
                _ => {}
            }
        }
        for (index, input) in inputs {
            let parsed = if input.is_empty() {
                json!({})
            } else {
                serde_json::from_str(&input).expect("tool input JSON")
            };
            blocks.get_mut(&index).expect("started")["toolUse"]["input"] = parsed;
        }
        let content_blocks: Vec<Value> = blocks.into_values().map(Value::Object).collect();
        let mut response = Map::new();
        response.insert(
            "output".into(),
            json!({"message": {"role": role, "content": content_blocks}}),
        );
        response.insert("stopReason".into(), stop);
        response.extend(meta);
        (Value::Object(response), content)
    }

    /// The Converse response a recorded body says: a stream folded, else the JSON body.
    pub fn response(body: &[u8], stream: bool) -> Value {
        if stream {
            fold(body).0
        } else {
            serde_json::from_slice(body).expect("a JSON Converse response")
        }
    }

    /// A Converse `usage` object's counts: `inputTokens` leaves the cache reads and writes
    /// out; the crate's input counts them, and the total is input plus output.
    pub fn tokens(u: &Value) -> Option<Tokens> {
        if !u.is_object() {
            return None;
        }
        let n = |k: &str| u[k].as_u64();
        let (read, write) = (n("cacheReadInputTokens"), n("cacheWriteInputTokens"));
        let input = n("inputTokens").expect("Converse usage has inputTokens")
            + read.unwrap_or(0)
            + write.unwrap_or(0);
        let output = n("outputTokens").expect("Converse usage has outputTokens");
        Some(Tokens {
            input: Some(input),
            output: Some(output),
            total: Some(input + output),
            cache_read: read,
            cache_creation: write,
            reasoning: None,
        })
    }

    /// A Converse response in neutral terms: `text` blocks and `reasoningContent` texts
    /// joined, `toolUse` blocks as tool calls, `stopReason`. The body has no id or model.
    pub fn reading(response: &Value) -> Reading {
        let blocks = response["output"]["message"]["content"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        Reading {
            id: None,
            model: None,
            tokens: tokens(&response["usage"]),
            text: blocks.iter().filter_map(|b| b["text"].as_str()).collect(),
            reasoning: blocks
                .iter()
                .filter_map(|b| b.pointer("/reasoningContent/reasoningText/text"))
                .filter_map(Value::as_str)
                .collect(),
            tool_calls: blocks
                .iter()
                .filter_map(|b| b.get("toolUse"))
                .map(|t| {
                    (
                        str_of(&t["toolUseId"]),
                        str_of(&t["name"]),
                        t["input"].clone(),
                    )
                })
                .collect(),
            finish_reason: response["stopReason"].as_str().map(str::to_owned),
        }
    }

    /// The request's tools: `(name, inputSchema.json)` of each `toolSpec`.
    pub fn tools(request: &Value) -> Vec<(String, Value)> {
        request["toolConfig"]["tools"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.get("toolSpec"))
            .map(|s| (str_of(&s["name"]), s["inputSchema"]["json"].clone()))
            .collect()
    }
}

/// Ollama `/api/chat`, `/api/generate`, `/api/embed(dings)`: NDJSON lines (the last one
/// `done: true` with the counts) or one JSON object.
pub mod ollama {
    use super::*;

    /// The counts and durations of a final line.
    pub const FINAL_FIELDS: [&str; 6] = [
        "total_duration",
        "load_duration",
        "prompt_eval_count",
        "prompt_eval_duration",
        "eval_count",
        "eval_duration",
    ];

    fn string(v: &Value) -> Option<String> {
        v.as_str().map(str::to_owned)
    }

    /// A body's JSON lines.
    pub fn lines(body: &str) -> Vec<Value> {
        body.split('\n')
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_str(l).expect("recorded line is JSON"))
            .collect()
    }

    /// What a body's lines say, folded.
    #[derive(Debug, Clone, Default)]
    pub struct Read {
        /// A line carried `error`.
        pub errored: bool,
        pub error_message: Option<String>,
        /// The first line's `model`.
        pub response_model: Option<String>,
        /// `message.content` (chat) or `response` (generate), joined.
        pub content: String,
        /// `thinking`, joined; `None` when no line had any.
        pub thinking: Option<String>,
        /// Every line's `message.tool_calls`, in order.
        pub tool_calls: Vec<Value>,
        /// The final line's `done_reason`.
        pub finish_reasons: Vec<String>,
        /// The final line's counts and durations.
        pub counts: Map<String, Value>,
        /// `prompt_eval_count` as input, `eval_count` as output; the total is their sum
        /// (embeddings: the input).
        pub usage: Option<Tokens>,
        /// Embeddings: the number of vectors and their length.
        pub vectors: Option<(usize, usize)>,
        /// A line had text, thinking or tool calls.
        pub has_content: bool,
    }

    /// Folds the lines of one response (`embeddings`: of an embeddings call, whose one line
    /// is final without `done`).
    pub fn read(lines: &[Value], embeddings: bool) -> Read {
        let mut out = Read::default();
        for line in lines {
            if let Some(error) = line.get("error") {
                out.errored = true;
                out.error_message = string(error);
                continue;
            }
            if out.response_model.is_none() {
                out.response_model = string(&line["model"]);
            }
            if embeddings {
                let vectors: Vec<&Value> = match (&line["embeddings"], &line["embedding"]) {
                    (Value::Array(many), _) => many.iter().collect(),
                    (_, one @ Value::Array(_)) => vec![one],
                    _ => Vec::new(),
                };
                out.vectors = vectors
                    .first()
                    .map(|v| (vectors.len(), v.as_array().map_or(0, Vec::len)));
            }
            let message = &line["message"];
            let text = message["content"]
                .as_str()
                .or(line["response"].as_str())
                .unwrap_or("");
            let thinking = message["thinking"]
                .as_str()
                .or(line["thinking"].as_str())
                .unwrap_or("");
            let calls = message["tool_calls"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            out.has_content |= !text.is_empty() || !thinking.is_empty() || !calls.is_empty();
            out.content.push_str(text);
            if !thinking.is_empty() {
                out.thinking
                    .get_or_insert_with(String::new)
                    .push_str(thinking);
            }
            out.tool_calls.extend(calls);
            if line["done"] == true || embeddings {
                if let Some(reason) = string(&line["done_reason"]) {
                    out.finish_reasons = vec![reason];
                }
                for field in FINAL_FIELDS {
                    if let Some(value) = line.get(field) {
                        out.counts.insert(field.to_owned(), value.clone());
                    }
                }
                let input = line["prompt_eval_count"].as_u64();
                let output = line["eval_count"].as_u64();
                if input.is_some() || output.is_some() {
                    let total = if embeddings {
                        input
                    } else {
                        input.zip(output).map(|(i, o)| i + o)
                    };
                    out.usage = Some(Tokens {
                        input,
                        output,
                        total,
                        ..Tokens::default()
                    });
                }
            }
        }
        out
    }

    /// A chat or generate stream's lines folded into the object the same call returns
    /// unstreamed: the first line's `model`, the text, thinking and tool calls joined into
    /// `message` (chat; role `assistant`) or `response` and `thinking` (generate), `done`,
    /// the final line's `done_reason` and its counts and durations.
    pub fn fold(lines: &[Value]) -> Value {
        let read = read(lines, false);
        let mut response = Map::new();
        if let Some(model) = &read.response_model {
            response.insert("model".into(), json!(model));
        }
        if lines.iter().any(|line| line.get("message").is_some()) {
            let mut message = Map::new();
            message.insert("role".into(), json!("assistant"));
            message.insert("content".into(), json!(read.content));
            if let Some(thinking) = &read.thinking {
                message.insert("thinking".into(), json!(thinking));
            }
            if !read.tool_calls.is_empty() {
                message.insert("tool_calls".into(), json!(read.tool_calls));
            }
            response.insert("message".into(), Value::Object(message));
        } else {
            response.insert("response".into(), json!(read.content));
            if let Some(thinking) = &read.thinking {
                response.insert("thinking".into(), json!(thinking));
            }
        }
        response.insert("done".into(), json!(true));
        if let Some(reason) = read.finish_reasons.first() {
            response.insert("done_reason".into(), json!(reason));
        }
        response.extend(read.counts);
        Value::Object(response)
    }

    /// The object a recorded chat or generate body says: its one line, or its lines folded.
    pub fn response(body: &str) -> Value {
        match lines(body).as_slice() {
            [one] => one.clone(),
            lines => fold(lines),
        }
    }

    /// A chat or generate response (the unstreamed object) in neutral terms: the text,
    /// thinking, tool calls (`function.name`, `function.arguments`), `done_reason`, and
    /// `prompt_eval_count` / `eval_count` as the counts. The body has no id.
    pub fn reading(response: &Value) -> Reading {
        let read = read(std::slice::from_ref(response), false);
        Reading {
            id: None,
            model: read.response_model,
            tokens: read.usage,
            text: read.content,
            reasoning: read.thinking.unwrap_or_default(),
            tool_calls: read
                .tool_calls
                .iter()
                .map(|c| {
                    let function = &c["function"];
                    (
                        str_of(&c["id"]),
                        str_of(&function["name"]),
                        function["arguments"].clone(),
                    )
                })
                .collect(),
            finish_reason: read.finish_reasons.first().cloned(),
        }
    }

    /// The request's tools: `(name, parameters)` of each function.
    pub fn tools(request: &Value) -> Vec<(String, Value)> {
        request["tools"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                (
                    str_of(&t["function"]["name"]),
                    t["function"]["parameters"].clone(),
                )
            })
            .collect()
    }
}
