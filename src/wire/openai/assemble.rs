//! Folds a stream's events into the response the endpoint would have returned without
//! streaming: `chat.completion`, `text_completion`, or the final Responses API `Response`.
//!
//! Each `data:` payload is decoded into borrowed structs (strings without escapes are not
//! copied) and only the deltas are appended, so memory grows with the assembled content, not
//! with the raw stream.
//!
//! Reasoning text that OpenAI-compatible servers stream in a chat delta is assembled under the
//! name the server used, so the message is what the same server returns unstreamed:
//! `reasoning_content` (DeepSeek, vLLM before 0.10) and `reasoning` (vLLM since, OpenRouter,
//! Ollama's `/v1`) each into the message field of that name. Reasoning deltas are content (the
//! first one is the call's first token).

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

use super::response::{decode_json_response, usage_from_value};
use crate::json::Json;
use crate::wire::assemble::{Folded, StreamFold};
use crate::wire::budget::TREE_LIMIT;
use crate::wire::budget::{
    append_opt, fitted, small_tree, ContentBudget, ENTRY_COST, MAX_ENTRIES_PER_EVENT,
};
use crate::wire::endpoint::Endpoint;
use crate::wire::indexed::{Indexed, Keyed};
use crate::wire::read::{read_json, Capped, Text};
use crate::wire::summary::{error_from_value, ResponseSummary};
use crate::wire::Event;

/// The OpenAI fold: chat and legacy completion chunks, or Responses API events.
#[derive(Debug)]
pub(crate) enum OpenAiFold {
    /// `chat.completion.chunk` (or `text_completion` when `legacy`) chunks.
    Chat { chat: ChatAssembly, legacy: bool },
    /// Responses API events.
    Responses(ResponsesAssembly),
}

impl OpenAiFold {
    /// The fold for a stream of `endpoint`.
    pub(crate) fn new(endpoint: Endpoint) -> Self {
        match endpoint {
            Endpoint::Responses => OpenAiFold::Responses(ResponsesAssembly::default()),
            other => OpenAiFold::Chat {
                chat: ChatAssembly::default(),
                legacy: other == Endpoint::Completions,
            },
        }
    }
}

impl StreamFold for OpenAiFold {
    #[inline]
    fn push(
        &mut self,
        event: Event<'_>,
        budget: &mut ContentBudget,
    ) -> Result<Folded, serde_json::Error> {
        if event.data == b"[DONE]" {
            return Ok(Folded::END);
        }
        match self {
            OpenAiFold::Responses(responses) => {
                let content = responses.push(event, budget)?;
                Ok(Folded {
                    content,
                    ended: responses.terminal,
                })
            }
            OpenAiFold::Chat { chat, .. } => chat.push(event.data, budget).map(Folded::content),
        }
    }

    fn into_summary(self) -> ResponseSummary {
        match self {
            OpenAiFold::Responses(responses) => responses.into_summary(),
            OpenAiFold::Chat { chat, legacy } => chat.into_summary(legacy),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Chat completions and legacy completions chunks

/// Chunks carry one choice almost always: no heap for that. (Tool-call deltas, in fewer chunks,
/// are in a `Vec`: held inline they made every chunk's delta struct 96 bytes larger to move.)
type Few<T> = smallvec::SmallVec<[T; 1]>;

#[derive(Deserialize)]
struct ChatChunk<'a> {
    #[serde(default, borrow)]
    id: Option<Text<'a>>,
    #[serde(default, borrow)]
    model: Option<Text<'a>>,
    #[serde(default)]
    created: Option<i64>,
    #[serde(default, borrow)]
    system_fingerprint: Option<Text<'a>>,
    #[serde(default, borrow)]
    choices: Option<Capped<ChunkChoice<'a>, Few<ChunkChoice<'a>>, MAX_ENTRIES_PER_EVENT>>,
    /// Kept as sent (it comes once per stream), so fields we do not model survive.
    #[serde(default, borrow)]
    usage: Option<&'a RawValue>,
    #[serde(default, borrow)]
    error: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ChunkChoice<'a> {
    #[serde(default)]
    index: u32,
    #[serde(default, borrow)]
    delta: Option<ChunkDelta<'a>>,
    /// Legacy completions stream `text` instead of a delta.
    #[serde(default, borrow)]
    text: Option<Text<'a>>,
    #[serde(default, borrow)]
    finish_reason: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct ChunkDelta<'a> {
    #[serde(default, borrow)]
    role: Option<Text<'a>>,
    #[serde(default, borrow)]
    content: Option<Text<'a>>,
    // The three rare text fields are borrowed as raw JSON and read only when present: each as
    // a `Text` would make the delta larger than 128 bytes, which LLVM moves with `memcpy`
    // calls instead of registers (+270 instructions an event, measured by callgrind).
    #[serde(default, borrow)]
    refusal: Option<&'a RawValue>,
    /// DeepSeek and older vLLM stream reasoning here.
    #[serde(default, borrow)]
    reasoning_content: Option<&'a RawValue>,
    /// vLLM (since 0.10), OpenRouter and Ollama's `/v1` stream reasoning here.
    #[serde(default, borrow)]
    reasoning: Option<&'a RawValue>,
    #[serde(default, borrow)]
    tool_calls: Option<Capped<ToolCallDelta<'a>, Vec<ToolCallDelta<'a>>, MAX_ENTRIES_PER_EVENT>>,
}

#[derive(Deserialize)]
struct ToolCallDelta<'a> {
    #[serde(default)]
    index: u32,
    #[serde(default, borrow)]
    id: Option<Text<'a>>,
    #[serde(default, borrow, rename = "type")]
    kind: Option<Text<'a>>,
    #[serde(default, borrow)]
    function: Option<FunctionDelta<'a>>,
}

#[derive(Deserialize)]
struct FunctionDelta<'a> {
    #[serde(default, borrow)]
    name: Option<Text<'a>>,
    #[serde(default, borrow)]
    arguments: Option<Text<'a>>,
}

#[derive(Debug, Default)]
pub(crate) struct ChatAssembly {
    id: Option<String>,
    model: Option<String>,
    created: Option<i64>,
    system_fingerprint: Option<String>,
    choices: Indexed<ChoiceState>,
    usage: Option<Box<RawValue>>,
    error: Option<Box<RawValue>>,
}

#[derive(Debug, Default)]
struct ChoiceState {
    index: u32,
    role: Option<String>,
    content: Option<String>,
    refusal: Option<String>,
    /// `delta.reasoning_content`, assembled.
    reasoning_content: Option<String>,
    /// `delta.reasoning`, assembled.
    reasoning: Option<String>,
    text: Option<String>,
    tool_calls: Indexed<ToolCallState>,
    finish_reason: Option<String>,
}

impl Keyed for ChoiceState {
    fn key(&self) -> u32 {
        self.index
    }
}

#[derive(Debug, Default)]
struct ToolCallState {
    index: u32,
    id: Option<String>,
    kind: Option<String>,
    name: String,
    arguments: String,
}

impl Keyed for ToolCallState {
    fn key(&self) -> u32 {
        self.index
    }
}

/// Appends a JSON string read from `raw` to `slot`; returns whether it was not empty. Fails
/// (the event is undecodable) when `raw` is not a string.
fn append_raw_text(
    budget: &mut ContentBudget,
    slot: &mut Option<String>,
    raw: &RawValue,
) -> Result<bool, serde_json::Error> {
    let text: Text<'_> = serde_json::from_str(raw.get())?;
    append_opt(budget, slot, &text);
    Ok(!text.is_empty())
}

impl ChatAssembly {
    /// Returns whether the chunk carried content.
    fn push(&mut self, data: &[u8], budget: &mut ContentBudget) -> Result<bool, serde_json::Error> {
        let chunk: ChatChunk<'_> = read_json(data)?;
        budget.set_if_empty(&mut self.id, chunk.id);
        budget.set_if_empty(&mut self.model, chunk.model);
        budget.set_if_empty(&mut self.system_fingerprint, chunk.system_fingerprint);
        if self.created.is_none() {
            self.created = chunk.created.filter(|c| *c != 0);
        }
        if let Some(usage) = chunk.usage {
            self.usage = budget.small_value(usage);
        }
        if let Some(error) = chunk.error.filter(|e| e.get() != "null") {
            self.error = budget.small_value(error);
        }
        let mut content = false;
        // Elements past the cap were never read: the record is cut after the ones that were.
        let mut skipped = false;
        let choices = chunk.choices.map(|capped| {
            skipped |= capped.skipped;
            capped.items
        });
        for choice in choices.into_iter().flatten() {
            let Some(state) = self.choices.entry(
                choice.index,
                || budget.charge(ENTRY_COST),
                || ChoiceState {
                    index: choice.index,
                    ..ChoiceState::default()
                },
            ) else {
                continue;
            };
            if let Some(text) = choice.text {
                content |= !text.is_empty();
                append_opt(budget, &mut state.text, &text);
            }
            if let Some(delta) = choice.delta {
                budget.set_if_empty(&mut state.role, delta.role);
                if let Some(text) = delta.content {
                    content |= !text.is_empty();
                    append_opt(budget, &mut state.content, &text);
                }
                if let Some(raw) = delta.refusal {
                    content |= append_raw_text(budget, &mut state.refusal, raw)?;
                }
                if let Some(raw) = delta.reasoning_content {
                    content |= append_raw_text(budget, &mut state.reasoning_content, raw)?;
                }
                if let Some(raw) = delta.reasoning {
                    content |= append_raw_text(budget, &mut state.reasoning, raw)?;
                }
                let calls = delta.tool_calls.map(|capped| {
                    skipped |= capped.skipped;
                    capped.items
                });
                for call in calls.into_iter().flatten() {
                    content = true;
                    let Some(slot) = state.tool_calls.entry(
                        call.index,
                        || budget.charge(ENTRY_COST),
                        || ToolCallState {
                            index: call.index,
                            ..ToolCallState::default()
                        },
                    ) else {
                        continue;
                    };
                    budget.set_if_empty(&mut slot.id, call.id);
                    budget.set_if_empty(&mut slot.kind, call.kind);
                    if let Some(function) = call.function {
                        if let Some(name) = function.name {
                            budget.append(&mut slot.name, &name);
                        }
                        if let Some(arguments) = function.arguments {
                            budget.append(&mut slot.arguments, &arguments);
                        }
                    }
                }
            }
            if let Some(reason) = choice.finish_reason {
                if state.finish_reason.as_deref() != Some(&*reason) && budget.charge(reason.len()) {
                    state.finish_reason = Some(reason.into_owned());
                }
            }
        }
        budget.exceeded |= skipped;
        Ok(content)
    }

    /// The response in `chat.completion` (or `text_completion`) shape. The assembled strings
    /// are moved into it, not copied: a long answer is held once.
    fn into_summary(self, legacy: bool) -> ResponseSummary {
        let usage = self.usage.as_deref().and_then(small_tree);
        let error = self.error.as_deref().and_then(small_tree);
        let choices = self.choices.into_sorted();
        let (usage_read, reported_cost) = usage.as_ref().map(usage_from_value).unwrap_or_default();
        let summary = ResponseSummary {
            response: None,
            usage: usage_read,
            reported_cost,
            finish_reasons: choices
                .iter()
                .filter_map(|c| c.finish_reason.clone())
                .collect(),
            error: error.as_ref().and_then(error_from_value),
            model: self.model.clone(),
            id: self.id.clone(),
            // The assembler's budget says whether the stream was cut.
            truncated: false,
            decode_error: None,
        };
        let choices = choices
            .into_iter()
            .map(|choice| choice.into_value(legacy))
            .collect();
        let mut response = Map::new();
        response.insert("id".into(), self.id.into());
        let object = if legacy {
            "text_completion"
        } else {
            "chat.completion"
        };
        response.insert("object".into(), object.into());
        response.insert("created".into(), self.created.into());
        response.insert("model".into(), self.model.into());
        response.insert("choices".into(), Value::Array(choices));
        if let Some(fingerprint) = self.system_fingerprint {
            response.insert("system_fingerprint".into(), fingerprint.into());
        }
        if let Some(usage) = usage {
            response.insert("usage".into(), usage);
        }
        if let Some(error) = error {
            response.insert("error".into(), error);
        }
        ResponseSummary {
            response: Some(Json::from(Value::Object(response))),
            ..summary
        }
    }
}

impl ChoiceState {
    /// The choice as a non-streamed response has it: `message` (chat) or `text` (legacy).
    fn into_value(self, legacy: bool) -> Value {
        let mut choice = Map::new();
        choice.insert("index".into(), self.index.into());
        choice.insert("logprobs".into(), Value::Null);
        choice.insert("finish_reason".into(), self.finish_reason.into());
        if legacy {
            choice.insert("text".into(), fitted(self.text.unwrap_or_default()).into());
            return Value::Object(choice);
        }
        let mut message = Map::new();
        let role = self.role.unwrap_or_else(|| "assistant".to_owned());
        message.insert("role".into(), role.into());
        message.insert(
            "content".into(),
            self.content.or(self.text).map(fitted).into(),
        );
        message.insert("refusal".into(), self.refusal.into());
        if let Some(reasoning) = self.reasoning_content {
            message.insert("reasoning_content".into(), fitted(reasoning).into());
        }
        if let Some(reasoning) = self.reasoning {
            message.insert("reasoning".into(), fitted(reasoning).into());
        }
        if !self.tool_calls.is_empty() {
            let calls = self.tool_calls.into_sorted().into_iter();
            let calls = calls.map(ToolCallState::into_value).collect();
            message.insert("tool_calls".into(), Value::Array(calls));
        }
        choice.insert("message".into(), Value::Object(message));
        Value::Object(choice)
    }
}

impl ToolCallState {
    fn into_value(self) -> Value {
        let mut function = Map::new();
        function.insert("name".into(), self.name.into());
        function.insert("arguments".into(), fitted(self.arguments).into());
        let mut call = Map::new();
        call.insert("id".into(), self.id.into());
        let kind = self.kind.unwrap_or_else(|| "function".to_owned());
        call.insert("type".into(), kind.into());
        call.insert("function".into(), Value::Object(function));
        Value::Object(call)
    }
}

// ---------------------------------------------------------------------------------------------
// Responses API events

#[derive(Deserialize)]
struct ResponsesEvent<'a> {
    #[serde(rename = "type", borrow)]
    kind: Text<'a>,
    #[serde(default, borrow)]
    response: Option<&'a RawValue>,
    #[serde(default)]
    output_index: Option<u32>,
    #[serde(default, borrow)]
    delta: Option<Text<'a>>,
    #[serde(default, borrow)]
    item: Option<&'a RawValue>,
    #[serde(default, borrow)]
    code: Option<&'a RawValue>,
    #[serde(default, borrow)]
    message: Option<&'a RawValue>,
    #[serde(default, borrow)]
    error: Option<&'a RawValue>,
}

#[derive(Debug, Default)]
pub(crate) struct ResponsesAssembly {
    /// Latest full response object (`response.created` ... `response.completed`), as sent:
    /// it is replaced by each, and read only at the end.
    response: Option<Box<RawValue>>,
    /// A terminal event (`completed`, `failed`, `incomplete`) delivered the final response.
    terminal: bool,
    items: Indexed<OutputItemState>,
    error: Option<Value>,
}

#[derive(Debug, Default)]
struct OutputItemState {
    output_index: u32,
    item: Option<Box<RawValue>>,
    text: String,
    arguments: String,
    done: bool,
}

impl Keyed for OutputItemState {
    fn key(&self) -> u32 {
        self.output_index
    }
}

/// A JSON value's text is not `null`.
fn not_null(raw: &&RawValue) -> bool {
    raw.get() != "null"
}

impl ResponsesAssembly {
    fn push(
        &mut self,
        event: Event<'_>,
        budget: &mut ContentBudget,
    ) -> Result<bool, serde_json::Error> {
        let parsed: ResponsesEvent<'_> = read_json(event.data)?;
        let kind: &str = &parsed.kind;
        match kind {
            "response.created" | "response.in_progress" | "response.queued" if !self.terminal => {
                if let Some(response) = parsed.response {
                    // Replaced, not accumulated: bounded by the longest event.
                    self.response = Some(response.to_owned());
                }
            }
            "response.completed" | "response.failed" | "response.incomplete" => {
                if let Some(response) = parsed.response {
                    self.response = Some(response.to_owned());
                    self.terminal = true;
                }
            }
            "error" => {
                let mut small = |raw: Option<&RawValue>| {
                    raw.filter(not_null)
                        .and_then(|raw| budget.small_value(raw))
                        .and_then(|raw| small_tree(&raw))
                };
                let error = match parsed.error.filter(not_null) {
                    Some(error) => small(Some(error)),
                    None => Some(json!({
                        "type": "error",
                        "code": small(parsed.code),
                        "message": small(parsed.message),
                    })),
                };
                self.error = error.or(self.error.take());
            }
            "response.output_item.added" | "response.output_item.done" => {
                let done = kind.ends_with("done");
                let Some(state) = self.item(parsed.output_index.unwrap_or(0), budget) else {
                    return Ok(false);
                };
                if let Some(item) = parsed.item {
                    // Replacing an item charges the new one whole: a bound, not an account.
                    if budget.charge(item.get().len()) {
                        state.item = Some(item.to_owned());
                    }
                }
                state.done |= done;
            }
            _ if kind.ends_with(".delta") => {
                let Some(delta) = parsed.delta else {
                    return Ok(false);
                };
                let Some(state) = self.item(parsed.output_index.unwrap_or(0), budget) else {
                    return Ok(!delta.is_empty());
                };
                match kind {
                    "response.output_text.delta" | "response.refusal.delta" => {
                        budget.append(&mut state.text, &delta)
                    }
                    "response.function_call_arguments.delta" => {
                        budget.append(&mut state.arguments, &delta)
                    }
                    _ => {}
                }
                return Ok(!delta.is_empty());
            }
            _ => {}
        }
        Ok(false)
    }

    fn item(
        &mut self,
        output_index: u32,
        budget: &mut ContentBudget,
    ) -> Option<&mut OutputItemState> {
        self.items.entry(
            output_index,
            || budget.charge(ENTRY_COST),
            || OutputItemState {
                output_index,
                ..OutputItemState::default()
            },
        )
    }

    /// Output items rebuilt from deltas, for a stream that ended before its final response.
    fn into_partial_output(items: Indexed<OutputItemState>) -> Vec<Value> {
        items
            .into_sorted()
            .into_iter()
            .map(|state| {
                let mut item = state
                    .item
                    .as_deref()
                    .and_then(small_tree)
                    .unwrap_or_else(|| Value::Object(Map::new()));
                if !state.done {
                    if let Some(fields) = item.as_object_mut() {
                        match fields.get("type").and_then(Value::as_str) {
                            Some("function_call") => {
                                fields.insert("arguments".into(), fitted(state.arguments).into());
                            }
                            _ if !state.text.is_empty() => {
                                let mut part = Map::new();
                                part.insert("type".into(), "output_text".into());
                                part.insert("text".into(), fitted(state.text).into());
                                part.insert("annotations".into(), Value::Array(Vec::new()));
                                fields.insert(
                                    "content".into(),
                                    Value::Array(vec![Value::Object(part)]),
                                );
                            }
                            _ => {}
                        }
                    }
                }
                item
            })
            .collect()
    }

    fn into_summary(self) -> ResponseSummary {
        let stream_error = self.error.as_ref().and_then(error_from_value);
        // The final response is read as a non-streamed body is: kept as text, no tree.
        if let (true, Some(response)) = (self.terminal, &self.response) {
            let mut summary = decode_json_response(Endpoint::Responses, response.get().as_bytes())
                .unwrap_or_default();
            // The final response's own error, else one the stream reported.
            summary.error = summary.error.or(stream_error);
            return summary;
        }
        let mut summary = ResponseSummary::default();
        let mut response = match self.response.as_deref() {
            // A tree is made of the in-progress response: only of one of bounded size.
            Some(response) if response.get().len() <= TREE_LIMIT => {
                decode_json_response(Endpoint::Responses, response.get().as_bytes())
                    .ok()
                    .and_then(|s| s.response)
                    .map(Json::into_value)
                    .filter(Value::is_object)
                    .unwrap_or_else(|| json!({"object": "response"}))
            }
            Some(_) => json!({"object": "response"}),
            None if self.items.is_empty() && self.error.is_none() => return summary,
            None => json!({"object": "response"}),
        };
        if let Some(fields) = response.as_object_mut() {
            let output = Self::into_partial_output(self.items);
            fields.insert("output".into(), Value::Array(output));
            (summary.usage, summary.reported_cost) = fields
                .get("usage")
                .map(usage_from_value)
                .unwrap_or_default();
            summary.model = fields
                .get("model")
                .and_then(Value::as_str)
                .map(str::to_owned);
            summary.id = fields.get("id").and_then(Value::as_str).map(str::to_owned);
        }
        summary.error = stream_error;
        summary.response = Some(Json::from(response));
        summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::assemble::{EventEffect, Fold, StreamAssembler};
    use serde_json::json;

    #[test]
    fn a_chunk_delta_is_moved_in_registers() {
        // Past 128 bytes, LLVM moves the delta with `memcpy` calls: +270 instructions an event.
        assert!(std::mem::size_of::<ChunkDelta<'_>>() <= 128);
    }

    fn assembler(endpoint: Endpoint, limit: usize) -> StreamAssembler {
        StreamAssembler::new(Fold::OpenAi(OpenAiFold::new(endpoint)), limit)
    }

    fn assemble(endpoint: Endpoint, events: &[&str]) -> (ResponseSummary, Vec<EventEffect>) {
        let mut assembler = assembler(endpoint, 1 << 20);
        let effects = events
            .iter()
            .map(|data| {
                assembler.push(Event {
                    name: b"",
                    data: data.as_bytes(),
                })
            })
            .collect();
        (assembler.into_summary(), effects)
    }

    #[test]
    fn parallel_tool_calls_merge_by_index() {
        let (summary, effects) = assemble(
            Endpoint::ChatCompletions,
            &[
                r#"{"id":"c1","model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"f","arguments":""}}]}}]}"#,
                r#"{"id":"c1","model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"g","arguments":"{\"y\""}}]}}]}"#,
                r#"{"id":"c1","model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"x\":1}"}}]}}]}"#,
                r#"{"id":"c1","model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":":2}"}}]}}]}"#,
                r#"{"id":"c1","model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
                r#"{"id":"c1","model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#,
                "[DONE]",
            ],
        );
        let response = summary.response.unwrap();
        let calls = &response["choices"][0]["message"]["tool_calls"];
        assert_eq!(calls[0]["id"], "call_a");
        assert_eq!(calls[0]["function"]["arguments"], "{\"x\":1}");
        assert_eq!(calls[1]["id"], "call_b");
        assert_eq!(calls[1]["function"]["name"], "g");
        assert_eq!(calls[1]["function"]["arguments"], "{\"y\":2}");
        assert_eq!(response["choices"][0]["message"]["content"], Value::Null);
        assert_eq!(summary.finish_reasons, vec!["stop"]);
        assert_eq!(summary.usage.unwrap().total_tokens, Some(7));
        assert_eq!(effects[0], EventEffect::Content);
        assert_eq!(effects[4], EventEffect::NoContent);
    }

    #[test]
    fn reasoning_is_assembled_under_the_name_the_server_used() {
        // vLLM (since 0.10), OpenRouter, Ollama's /v1: `delta.reasoning`; OpenRouter sends
        // `"reasoning": null` beside the answer's deltas.
        let (summary, effects) = assemble(
            Endpoint::ChatCompletions,
            &[
                r#"{"id":"g1","model":"qwen3","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
                r#"{"id":"g1","model":"qwen3","choices":[{"index":0,"delta":{"reasoning":"Let me"}}]}"#,
                r#"{"id":"g1","model":"qwen3","choices":[{"index":0,"delta":{"reasoning":" think."}}]}"#,
                r#"{"id":"g1","model":"qwen3","choices":[{"index":0,"delta":{"content":"4","reasoning":null}}]}"#,
                r#"{"id":"g1","model":"qwen3","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
                "[DONE]",
            ],
        );
        let message = &summary.response.unwrap()["choices"][0]["message"];
        assert_eq!(message["reasoning"], "Let me think.");
        assert_eq!(message["content"], "4");
        assert!(message.get("reasoning_content").is_none(), "{message}");
        // The first reasoning delta is the first token.
        assert_eq!(
            effects[..4],
            [
                EventEffect::NoContent,
                EventEffect::Content,
                EventEffect::Content,
                EventEffect::Content
            ]
        );

        // DeepSeek, older vLLM: `delta.reasoning_content`, kept under that name.
        let (summary, effects) = assemble(
            Endpoint::ChatCompletions,
            &[
                r#"{"id":"d1","model":"deepseek-reasoner","choices":[{"index":0,"delta":{"role":"assistant","content":null,"reasoning_content":"Hm"}}]}"#,
                r#"{"id":"d1","model":"deepseek-reasoner","choices":[{"index":0,"delta":{"content":null,"reasoning_content":"m."}}]}"#,
                r#"{"id":"d1","model":"deepseek-reasoner","choices":[{"index":0,"delta":{"content":"Yes","reasoning_content":null},"finish_reason":"stop"}]}"#,
            ],
        );
        let message = &summary.response.unwrap()["choices"][0]["message"];
        assert_eq!(message["reasoning_content"], "Hmm.");
        assert_eq!(message["content"], "Yes");
        assert!(message.get("reasoning").is_none(), "{message}");
        assert_eq!(effects[0], EventEffect::Content);

        // A server that sends both keeps both, each as sent.
        let (summary, _) = assemble(
            Endpoint::ChatCompletions,
            &[
                r#"{"choices":[{"index":0,"delta":{"reasoning":"a","reasoning_content":"a"}}]}"#,
                r#"{"choices":[{"index":0,"delta":{"reasoning":"b","reasoning_content":"b"}}]}"#,
            ],
        );
        let message = &summary.response.unwrap()["choices"][0]["message"];
        assert_eq!(
            (&message["reasoning"], &message["reasoning_content"]),
            (&json!("ab"), &json!("ab"))
        );
    }

    #[test]
    fn a_cost_reported_in_the_usage_chunk_is_kept_and_read() {
        // OpenRouter: `usage.cost` (USD) and `cost_details` in the last chunk.
        let (summary, _) = assemble(
            Endpoint::ChatCompletions,
            &[
                &content_event("hi"),
                r#"{"id":"gen-1","model":"openai/gpt-4o-mini","choices":[],"usage":{"prompt_tokens":10,"completion_tokens":2,"total_tokens":12,"cost":0.0000027,"is_byok":false,"cost_details":{"upstream_inference_cost":null,"upstream_inference_prompt_cost":0.0000015,"upstream_inference_completions_cost":0.0000012}}}"#,
                "[DONE]",
            ],
        );
        let cost = summary.reported_cost.expect("a reported cost");
        assert_eq!(cost.total_usd, 0.0000027);
        assert_eq!((cost.input_usd, cost.output_usd), (0.0000015, 0.0000012));
        assert_eq!(cost.pricing_source, "provider");
        assert_eq!(summary.usage.unwrap().input_tokens, Some(10));
        let usage = &summary.response.unwrap()["usage"];
        assert_eq!(usage["cost"], 0.0000027);
        assert_eq!(
            usage["cost_details"]["upstream_inference_prompt_cost"],
            0.0000015
        );
        assert_eq!(usage["is_byok"], false);
    }

    #[test]
    fn azure_empty_first_chunk_does_not_hide_id_and_model() {
        let (summary, effects) = assemble(
            Endpoint::ChatCompletions,
            &[
                r#"{"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[]}"#,
                r#"{"choices":[{"delta":{"content":"","role":"assistant"},"finish_reason":null,"index":0}],"created":5,"id":"x","model":"gpt-35","object":"chat.completion.chunk"}"#,
                r#"{"choices":[{"delta":{"content":"Hi \"you\""},"finish_reason":null,"index":0}],"created":5,"id":"x","model":"gpt-35"}"#,
            ],
        );
        assert_eq!(summary.id.as_deref(), Some("x"));
        assert_eq!(summary.model.as_deref(), Some("gpt-35"));
        let response = summary.response.unwrap();
        assert_eq!(response["created"], 5);
        assert_eq!(response["choices"][0]["message"]["content"], "Hi \"you\"");
        assert_eq!(
            effects,
            vec![
                EventEffect::NoContent,
                EventEffect::NoContent,
                EventEffect::Content
            ]
        );
        assert!(summary.usage.is_none());
    }

    #[test]
    fn legacy_completion_text() {
        let (summary, _) = assemble(
            Endpoint::Completions,
            &[
                r#"{"id":"cmpl","object":"text_completion","model":"davinci","choices":[{"text":"Hel","index":0,"finish_reason":null}]}"#,
                r#"{"id":"cmpl","object":"text_completion","model":"davinci","choices":[{"text":"lo","index":0,"finish_reason":"length"}]}"#,
            ],
        );
        let response = summary.response.unwrap();
        assert_eq!(response["object"], "text_completion");
        assert_eq!(response["choices"][0]["text"], "Hello");
        assert_eq!(summary.finish_reasons, vec!["length"]);
    }

    #[test]
    fn responses_partial_output_when_cut_short() {
        let (summary, _) = assemble(
            Endpoint::Responses,
            &[
                r#"{"type":"response.created","response":{"id":"resp_1","object":"response","status":"in_progress","model":"gpt-4.1","output":[],"usage":null}}"#,
                r#"{"type":"response.output_item.added","output_index":0,"item":{"id":"msg_1","type":"message","role":"assistant","content":[]}}"#,
                r#"{"type":"response.output_text.delta","output_index":0,"content_index":0,"delta":"Once"}"#,
                r#"{"type":"response.output_text.delta","output_index":0,"content_index":0,"delta":" upon"}"#,
            ],
        );
        let response = summary.response.unwrap();
        assert_eq!(response["id"], "resp_1");
        assert_eq!(response["output"][0]["content"][0]["text"], "Once upon");
        assert!(summary.finish_reasons.is_empty());
        assert!(summary.usage.is_none());
    }

    #[test]
    fn stream_error_chunk_is_reported() {
        let (summary, effects) = assemble(
            Endpoint::ChatCompletions,
            &[
                r#"{"error":{"message":"overloaded","type":"server_error","code":502}}"#,
                "not json",
            ],
        );
        let error = summary.error.unwrap();
        assert_eq!(error.code.as_deref(), Some("502"));
        assert_eq!(effects[1], EventEffect::Undecodable);
    }

    fn push_all(assembler: &mut StreamAssembler, events: &[String]) {
        for data in events {
            assembler.push(Event {
                name: b"",
                data: data.as_bytes(),
            });
        }
    }

    fn content_event(text: &str) -> String {
        json!({"choices": [{"index": 0, "delta": {"content": text}}]}).to_string()
    }

    #[test]
    fn content_past_the_budget_is_a_clean_prefix() {
        let mut assembler = assembler(Endpoint::ChatCompletions, 10);
        // 6 bytes fit; of the next 6 only 4 do; nothing after that, not even what would fit.
        let events = ["abcdef", "ghijkl", "m", "é"].map(content_event);
        push_all(&mut assembler, &events);
        assert!(assembler.truncated());
        let response = assembler.into_summary().response.unwrap();
        assert_eq!(response["choices"][0]["message"]["content"], "abcdefghij");
    }

    #[test]
    fn a_cut_never_splits_a_character() {
        let mut assembler = assembler(Endpoint::ChatCompletions, 4);
        push_all(
            &mut assembler,
            &["aéé".to_owned()].map(|t| content_event(&t)),
        );
        let response = assembler.into_summary().response.unwrap();
        assert_eq!(response["choices"][0]["message"]["content"], "aé");
    }

    #[test]
    fn descending_indices_cost_linear_time_and_stay_within_the_state_budget() {
        let choices: Vec<Value> = (0..20_000u32)
            .rev()
            .map(|i| json!({"index": i, "delta": {"content": "x"}, "finish_reason": "stop"}))
            .collect();
        let event = json!({"id": "c", "model": "m", "choices": choices}).to_string();
        let mut assembler = assembler(Endpoint::ChatCompletions, 1 << 20);
        push_all(&mut assembler, &[event]);
        assert!(
            assembler.truncated(),
            "20k choices do not fit 128 KiB of state"
        );
        let summary = assembler.into_summary();
        let response = summary.response.unwrap();
        let kept = response["choices"].as_array().unwrap();
        assert!(!kept.is_empty() && kept.len() < 1000, "{}", kept.len());
        let indices: Vec<u64> = kept.iter().map(|c| c["index"].as_u64().unwrap()).collect();
        assert!(indices.windows(2).all(|w| w[0] < w[1]), "in index order");
        assert_eq!(summary.finish_reasons.len(), kept.len());
    }

    #[test]
    fn long_finish_reasons_ids_and_roles_are_charged() {
        let huge = "r".repeat(40 << 10);
        let events: Vec<String> = (0..10u32)
            .map(|i| {
                json!({"id": huge, "choices": [{"index": i, "delta": {"role": huge}, "finish_reason": huge}]})
                    .to_string()
            })
            .collect();
        let mut assembler = assembler(Endpoint::ChatCompletions, 256 << 10);
        push_all(&mut assembler, &events);
        assert!(assembler.truncated());
        let summary = assembler.into_summary();
        let kept: usize = summary
            .finish_reasons
            .iter()
            .map(String::len)
            .sum::<usize>()
            + summary.id.map_or(0, |id| id.len());
        assert!(kept <= 64 << 10, "{kept}");
    }

    #[test]
    fn a_huge_usage_value_is_not_kept() {
        let zeros = vec![0; 100_000];
        let events = [
            content_event("hi"),
            json!({"choices": [], "usage": {"prompt_tokens": 1, "extra": zeros}}).to_string(),
        ];
        let mut assembler = assembler(Endpoint::ChatCompletions, 1 << 20);
        push_all(&mut assembler, &events);
        assert!(assembler.truncated());
        let summary = assembler.into_summary();
        assert!(summary.usage.is_none());
        assert_eq!(
            summary.response.unwrap()["choices"][0]["message"]["content"],
            "hi"
        );
    }
}
