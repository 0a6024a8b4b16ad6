//! Folds an Anthropic Messages event stream into the Message the same call returns unstreamed.
//!
//! Events (`message_start`, `content_block_start`, `content_block_delta`, `content_block_stop`,
//! `message_delta`, `message_stop`, `ping`, `error`) are read by their `type` into borrowed
//! structs; only deltas are appended. Content blocks are kept by their `index`, whatever order
//! they arrive in: `text` (with `citations_delta`), `tool_use` and `server_tool_use` (their
//! `input` parsed from the `input_json_delta` fragments at the end), `thinking` with its
//! `signature`, and every other block (`redacted_thinking`, server-tool results) as sent.
//! Usage arrives twice: `message_start.message.usage`, then the cumulative
//! `message_delta.usage`, which overrides it field by field.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::response::{merge_usage, usage_from_value};
use crate::json::Json;
use crate::wire::assemble::{Folded, StreamFold};
use crate::wire::budget::{fitted, small_tree, ContentBudget, FragmentedInputs, ENTRY_COST};
use crate::wire::indexed::{Indexed, Keyed};
use crate::wire::read::{raw_string, read_json, Text};
use crate::wire::summary::{error_from_value, ResponseSummary};
use crate::wire::Event;

#[derive(Deserialize)]
struct StreamEvent<'a> {
    #[serde(rename = "type", borrow)]
    kind: Text<'a>,
    #[serde(default, borrow)]
    message: Option<&'a RawValue>,
    #[serde(default)]
    index: Option<u32>,
    #[serde(default, borrow)]
    content_block: Option<&'a RawValue>,
    #[serde(default, borrow)]
    delta: Option<Delta<'a>>,
    #[serde(default, borrow)]
    usage: Option<&'a RawValue>,
    #[serde(default, borrow)]
    error: Option<&'a RawValue>,
}

/// A `content_block_delta`'s or a `message_delta`'s `delta`.
#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<Text<'a>>,
    #[serde(default, borrow)]
    text: Option<Text<'a>>,
    #[serde(default, borrow)]
    partial_json: Option<Text<'a>>,
    #[serde(default, borrow)]
    thinking: Option<Text<'a>>,
    #[serde(default, borrow)]
    signature: Option<Text<'a>>,
    #[serde(default, borrow)]
    citation: Option<&'a RawValue>,
    #[serde(default, borrow)]
    stop_reason: Option<&'a RawValue>,
    #[serde(default, borrow)]
    stop_sequence: Option<&'a RawValue>,
}

/// `message_start.message`: the Message without content yet.
#[derive(Deserialize)]
struct MessageStart<'a> {
    #[serde(default, borrow)]
    id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    model: Option<&'a RawValue>,
    #[serde(default, borrow)]
    role: Option<&'a RawValue>,
    #[serde(default, borrow)]
    usage: Option<&'a RawValue>,
    #[serde(default, borrow)]
    stop_reason: Option<&'a RawValue>,
    #[serde(default, borrow)]
    stop_sequence: Option<&'a RawValue>,
}

/// A `content_block_start`'s block: its type, and for tool calls the `input` it opens with.
#[derive(Deserialize)]
struct BlockStart<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<Text<'a>>,
}

/// The longest `stop_reason` or `stop_sequence` kept (as JSON text): stop sequences are short
/// strings the client chose.
const MAX_STOP_TEXT: usize = 4096;

/// One content block being assembled.
#[derive(Debug, Default)]
struct BlockState {
    index: u32,
    /// The block as `content_block_start` sent it (small for the blocks that stream deltas;
    /// server-tool results come whole here).
    start: Option<Box<RawValue>>,
    kind: String,
    /// `text` or `thinking` deltas, appended.
    text: String,
    /// `input_json_delta` fragments, appended; parsed once at the end.
    partial_json: String,
    signature: Option<String>,
    citations: Vec<Box<RawValue>>,
    /// Deltas arrived for a block never started: its type is inferred from them.
    started: bool,
}

impl Keyed for BlockState {
    fn key(&self) -> u32 {
        self.index
    }
}

/// Fold state of one Anthropic Messages stream.
#[derive(Debug, Default)]
pub(crate) struct MessageFold {
    id: Option<String>,
    model: Option<String>,
    role: Option<String>,
    stop_reason: Option<String>,
    stop_sequence: Option<String>,
    /// `message_start.message.usage` with every later `message_delta.usage` field put over it.
    usage: Option<Map<String, Value>>,
    blocks: Indexed<BlockState>,
    error: Option<Value>,
    started: bool,
    /// Tool inputs rebuilt from their fragments.
    inputs: FragmentedInputs,
}

impl MessageFold {
    fn block(&mut self, index: u32, budget: &mut ContentBudget) -> Option<&mut BlockState> {
        self.blocks.entry(
            index,
            || budget.charge(ENTRY_COST),
            || BlockState {
                index,
                ..BlockState::default()
            },
        )
    }

    fn message_start(&mut self, message: &RawValue, budget: &mut ContentBudget) {
        let Ok(start) = serde_json::from_str::<MessageStart<'_>>(message.get()) else {
            return;
        };
        self.started = true;
        let mut keep = |slot: &mut Option<String>, raw: Option<&RawValue>| {
            if let Some(value) = raw.and_then(raw_string) {
                if slot.is_none() && budget.charge(value.len()) {
                    *slot = Some(value);
                }
            }
        };
        keep(&mut self.id, start.id);
        keep(&mut self.model, start.model);
        keep(&mut self.role, start.role);
        keep(&mut self.stop_reason, start.stop_reason);
        keep(&mut self.stop_sequence, start.stop_sequence);
        if let Some(usage) = start.usage {
            self.merge_usage(usage, budget);
        }
    }

    fn merge_usage(&mut self, usage: &RawValue, budget: &mut ContentBudget) {
        let Some(Value::Object(update)) = budget.small_value(usage).as_deref().and_then(small_tree)
        else {
            return;
        };
        match &mut self.usage {
            Some(usage) => merge_usage(usage, update),
            None => self.usage = Some(update),
        }
    }

    fn block_start(&mut self, index: u32, block: &RawValue, budget: &mut ContentBudget) {
        let kind = serde_json::from_str::<BlockStart<'_>>(block.get())
            .ok()
            .and_then(|b| b.kind)
            .map(Text::into_owned)
            .unwrap_or_default();
        // Charged whole: a server-tool result arrives here with all its content.
        if !budget.charge(block.get().len()) {
            return;
        }
        let Some(state) = self.block(index, budget) else {
            return;
        };
        state.started = true;
        state.kind = kind;
        state.start = Some(block.to_owned());
    }

    /// Folds a `content_block_delta`; returns whether it carried content.
    fn block_delta(&mut self, index: u32, delta: Delta<'_>, budget: &mut ContentBudget) -> bool {
        let kind = delta.kind.as_deref().unwrap_or("");
        let Some(state) = self.block(index, budget) else {
            // Past the budget: still content, for the first-token time.
            return [&delta.text, &delta.thinking, &delta.partial_json]
                .iter()
                .any(|t| t.as_deref().is_some_and(|t| !t.is_empty()));
        };
        let infer = |state: &mut BlockState, kind: &str| {
            if !state.started && state.kind.is_empty() {
                state.kind = kind.to_owned();
            }
        };
        match kind {
            "text_delta" => {
                infer(state, "text");
                let text = delta.text.as_deref().unwrap_or("");
                budget.append(&mut state.text, text);
                !text.is_empty()
            }
            "thinking_delta" => {
                infer(state, "thinking");
                let text = delta.thinking.as_deref().unwrap_or("");
                budget.append(&mut state.text, text);
                !text.is_empty()
            }
            "input_json_delta" => {
                infer(state, "tool_use");
                let json = delta.partial_json.as_deref().unwrap_or("");
                budget.append(&mut state.partial_json, json);
                !json.is_empty()
            }
            "signature_delta" => {
                infer(state, "thinking");
                if let Some(signature) = delta.signature {
                    let slot = state.signature.get_or_insert_with(String::new);
                    budget.append(slot, &signature);
                }
                false
            }
            "citations_delta" => {
                if let Some(citation) = delta.citation {
                    if budget.charge(citation.get().len()) {
                        state.citations.push(citation.to_owned());
                    }
                }
                false
            }
            _ => false,
        }
    }

    fn message_delta(&mut self, event: &StreamEvent<'_>, budget: &mut ContentBudget) {
        if let Some(delta) = &event.delta {
            // Replaced, not accumulated, and short: kept even when the content was cut, so a
            // truncated record still says how the message ended. `null` clears nothing.
            let set = |slot: &mut Option<String>, raw: Option<&RawValue>| {
                if let Some(value) = raw.filter(|r| r.get().len() <= MAX_STOP_TEXT) {
                    if let Some(value) = raw_string(value) {
                        *slot = Some(value);
                    }
                }
            };
            set(&mut self.stop_reason, delta.stop_reason);
            set(&mut self.stop_sequence, delta.stop_sequence);
        }
        if let Some(usage) = event.usage {
            self.merge_usage(usage, budget);
        }
    }
}

impl StreamFold for MessageFold {
    fn push(
        &mut self,
        event: Event<'_>,
        budget: &mut ContentBudget,
    ) -> Result<Folded, serde_json::Error> {
        let parsed: StreamEvent<'_> = read_json(event.data)?;
        let index = parsed.index.unwrap_or(0);
        match &*parsed.kind {
            "message_start" => {
                if let Some(message) = parsed.message {
                    self.message_start(message, budget);
                }
            }
            "content_block_start" => {
                if let Some(block) = parsed.content_block {
                    self.block_start(index, block, budget);
                }
            }
            "content_block_delta" => {
                if let Some(delta) = parsed.delta {
                    return Ok(Folded::content(self.block_delta(index, delta, budget)));
                }
            }
            "message_delta" => self.message_delta(&parsed, budget),
            "message_stop" => return Ok(Folded::END),
            "error" => {
                let error = parsed
                    .error
                    .filter(|e| e.get() != "null")
                    .and_then(|e| budget.small_value(e))
                    .and_then(|e| small_tree(&e));
                self.error = error.or(self.error.take());
                // Nothing follows an error event.
                return Ok(Folded::END);
            }
            // `ping`, `content_block_stop` and event types added later carry nothing we keep.
            _ => {}
        }
        Ok(Folded::content(false))
    }

    fn into_summary(mut self) -> ResponseSummary {
        let blocks = std::mem::take(&mut self.blocks).into_sorted();
        if !self.started && blocks.is_empty() && self.error.is_none() {
            return ResponseSummary::default();
        }
        let content: Vec<Value> = blocks
            .into_iter()
            .map(|block| self.block_value(block))
            .collect();
        let usage = self.usage.map(Value::Object);
        let mut message = Map::new();
        message.insert("id".into(), self.id.clone().into());
        message.insert("type".into(), "message".into());
        let role = self.role.unwrap_or_else(|| "assistant".to_owned());
        message.insert("role".into(), role.into());
        message.insert("model".into(), self.model.clone().into());
        message.insert("content".into(), Value::Array(content));
        message.insert("stop_reason".into(), self.stop_reason.clone().into());
        message.insert("stop_sequence".into(), self.stop_sequence.into());
        if let Some(usage) = &usage {
            message.insert("usage".into(), usage.clone());
        }
        let decode_error = self
            .inputs
            .decode_error("tool_use inputs streamed as input_json_delta");
        ResponseSummary {
            response: Some(Json::from(Value::Object(message))),
            usage: usage.as_ref().and_then(usage_from_value),
            reported_cost: None,
            finish_reasons: self.stop_reason.into_iter().collect(),
            error: self.error.as_ref().and_then(error_from_value),
            model: self.model,
            id: self.id,
            truncated: false,
            decode_error,
        }
    }
}

impl MessageFold {
    /// A block as the unstreamed Message has it.
    fn block_value(&mut self, block: BlockState) -> Value {
        let mut fields = match block.start.as_deref().and_then(small_tree) {
            Some(Value::Object(fields)) => fields,
            _ => Map::new(),
        };
        let kind = if block.kind.is_empty() {
            "text".to_owned()
        } else {
            block.kind
        };
        fields.insert("type".into(), kind.clone().into());
        match kind.as_str() {
            "text" => {
                fields.insert("text".into(), fitted(block.text).into());
                if !block.citations.is_empty() {
                    let citations = block.citations.iter().filter_map(|c| small_tree(c));
                    fields.insert("citations".into(), Value::Array(citations.collect()));
                }
            }
            "thinking" => {
                fields.insert("thinking".into(), fitted(block.text).into());
                if let Some(signature) = block.signature {
                    fields.insert("signature".into(), signature.into());
                }
            }
            "tool_use" | "server_tool_use" | "mcp_tool_use" => {
                if !block.partial_json.is_empty() {
                    let input = self.inputs.parse(block.partial_json);
                    fields.insert("input".into(), input);
                } else if !fields.contains_key("input") {
                    fields.insert("input".into(), Value::Object(Map::new()));
                }
            }
            _ => {}
        }
        Value::Object(fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::assemble::{EventEffect, Fold, StreamAssembler};
    use serde_json::json;

    fn assembler(limit: usize) -> StreamAssembler {
        StreamAssembler::new(Fold::Anthropic(Box::default()), limit)
    }

    fn run(events: &[(&str, Value)]) -> (ResponseSummary, Vec<EventEffect>, bool) {
        let mut assembler = assembler(1 << 20);
        let texts: Vec<(String, String)> = events
            .iter()
            .map(|(name, data)| (name.to_string(), data.to_string()))
            .collect();
        let effects = texts
            .iter()
            .map(|(name, data)| {
                assembler.push(Event {
                    name: name.as_bytes(),
                    data: data.as_bytes(),
                })
            })
            .collect();
        let ended = assembler.ended();
        (assembler.into_summary(), effects, ended)
    }

    fn start() -> (&'static str, Value) {
        (
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_1", "type": "message",
                "role": "assistant", "model": "claude-sonnet-4-5", "content": [],
                "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 12, "cache_creation_input_tokens": 100,
                          "cache_read_input_tokens": 50, "output_tokens": 1}}}),
        )
    }

    #[test]
    fn text_thinking_and_two_tool_calls_in_order() {
        let (summary, effects, ended) = run(&[
            start(),
            (
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Let me "}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "think."}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "sig=="}}),
            ),
            (
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 0}),
            ),
            ("ping", json!({"type": "ping"})),
            (
                "content_block_start",
                json!({"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Checking."}}),
            ),
            (
                "content_block_start",
                json!({"type": "content_block_start", "index": 3, "content_block": {"type": "tool_use", "id": "toolu_b", "name": "g", "input": {}}}),
            ),
            (
                "content_block_start",
                json!({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_a", "name": "f", "input": {}}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{\"city\": \"Pa"}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 3, "delta": {"type": "input_json_delta", "partial_json": ""}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "ris\"}"}}),
            ),
            (
                "message_delta",
                json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 87}}),
            ),
            ("message_stop", json!({"type": "message_stop"})),
        ]);
        assert!(ended);
        let response = summary.response.unwrap().into_value();
        assert_eq!(
            response["content"],
            json!([
                {"type": "thinking", "thinking": "Let me think.", "signature": "sig=="},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_a", "name": "f", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_b", "name": "g", "input": {}},
            ])
        );
        assert_eq!(response["stop_reason"], "tool_use");
        assert_eq!(response["usage"]["output_tokens"], 87);
        assert_eq!(response["usage"]["cache_read_input_tokens"], 50);
        assert_eq!(summary.finish_reasons, vec!["tool_use"]);
        assert_eq!(summary.id.as_deref(), Some("msg_1"));
        let usage = summary.usage.unwrap();
        assert_eq!(usage.input_tokens, Some(162));
        assert_eq!(usage.output_tokens, Some(87));
        assert_eq!(usage.cached_input_tokens, Some(50));
        assert_eq!(usage.cache_creation_input_tokens, Some(100));
        // Thinking text is the first content; a signature, a ping, an empty fragment are not.
        assert_eq!(effects[1], EventEffect::NoContent);
        assert_eq!(effects[2], EventEffect::Content);
        assert_eq!(effects[4], EventEffect::NoContent);
        assert_eq!(effects[6], EventEffect::NoContent);
        assert_eq!(effects[12], EventEffect::NoContent);
    }

    #[test]
    fn a_mid_stream_error_keeps_the_partial_text() {
        let (summary, _, ended) = run(&[
            start(),
            (
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hal"}}),
            ),
            (
                "error",
                json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
            ),
        ]);
        assert!(ended);
        let error = summary.error.unwrap();
        assert_eq!(error.kind.as_deref(), Some("overloaded_error"));
        assert_eq!(error.message.as_deref(), Some("Overloaded"));
        assert_eq!(summary.response.unwrap()["content"][0]["text"], "Hal");
    }

    #[test]
    fn an_input_that_never_closes_is_kept_as_text_and_said() {
        let (summary, _, _) = run(&[
            start(),
            (
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "t", "name": "f", "input": {}}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{\"a\": [1, 2"}}),
            ),
        ]);
        assert_eq!(
            summary.response.unwrap()["content"][0]["input"],
            "{\"a\": [1, 2"
        );
        assert!(summary
            .decode_error
            .unwrap()
            .contains("1 are not complete JSON and 0 are larger"));
        assert!(summary.finish_reasons.is_empty());
    }

    #[test]
    fn blocks_out_of_order_and_past_the_budget_stay_bounded() {
        let mut assembler = assembler(64 << 10);
        for index in (0..100_000u32).rev() {
            let data = format!(
                r#"{{"type":"content_block_delta","index":{index},"delta":{{"type":"text_delta","text":"x"}}}}"#
            );
            assembler.push(Event {
                name: b"content_block_delta",
                data: data.as_bytes(),
            });
        }
        assert!(assembler.truncated());
        let summary = assembler.into_summary();
        let blocks = summary.response.unwrap()["content"]
            .as_array()
            .unwrap()
            .len();
        assert!(blocks > 0 && blocks < 1024, "{blocks} blocks kept");
    }

    #[test]
    fn pings_and_unknown_events_are_no_content() {
        let (summary, effects, ended) = run(&[
            ("ping", json!({"type": "ping"})),
            ("future_event", json!({"type": "future_event", "x": 1})),
        ]);
        assert_eq!(
            effects,
            vec![EventEffect::NoContent, EventEffect::NoContent]
        );
        assert!(!ended);
        assert!(summary.response.is_none());
    }
}
