//! Folds a Converse event stream (`converse-stream`) into the Converse response the same call
//! returns unstreamed.
//!
//! Events, named by their frame's `:event-type`: `messageStart` (`role`), `contentBlockStart`
//! (a `toolUse` block's `toolUseId` and `name`), `contentBlockDelta` (`text`, `toolUse.input`
//! fragments, `reasoningContent` `text` / `signature` / `redactedContent`), `contentBlockStop`,
//! `messageStop` (`stopReason`), `metadata` (`usage`, `metrics`, `trace`: the last word).
//! Every payload carries a `"p"` padding field, ignored. An exception frame
//! (`exception:{type}`) ends the stream as an error, its payload's `message` the message.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

use super::response::{error_from_payload, usage_from_value};
use crate::json::Json;
use crate::payload::CallError;
use crate::wire::assemble::{Folded, StreamFold};
use crate::wire::budget::{fitted, small_tree, ContentBudget, FragmentedInputs, ENTRY_COST};
use crate::wire::indexed::{Indexed, Keyed};
use crate::wire::read::{read_json, Text};
use crate::wire::summary::ResponseSummary;
use crate::wire::Event;

/// Any event's payload: the fields of every event type, each optional.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload<'a> {
    #[serde(default, borrow)]
    role: Option<Text<'a>>,
    #[serde(default)]
    content_block_index: Option<u32>,
    #[serde(default, borrow)]
    start: Option<BlockStart<'a>>,
    #[serde(default, borrow)]
    delta: Option<Delta<'a>>,
    #[serde(default, borrow)]
    stop_reason: Option<Text<'a>>,
    #[serde(default, borrow)]
    usage: Option<&'a RawValue>,
    #[serde(default, borrow)]
    metrics: Option<&'a RawValue>,
    #[serde(default, borrow)]
    trace: Option<&'a RawValue>,
    #[serde(default, borrow)]
    additional_model_response_fields: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockStart<'a> {
    #[serde(default, borrow)]
    tool_use: Option<ToolUseStart<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolUseStart<'a> {
    #[serde(default, borrow)]
    tool_use_id: Option<Text<'a>>,
    #[serde(default, borrow)]
    name: Option<Text<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Delta<'a> {
    #[serde(default, borrow)]
    text: Option<Text<'a>>,
    #[serde(default, borrow)]
    tool_use: Option<ToolUseDelta<'a>>,
    #[serde(default, borrow)]
    reasoning_content: Option<ReasoningDelta<'a>>,
}

#[derive(Deserialize)]
struct ToolUseDelta<'a> {
    #[serde(default, borrow)]
    input: Option<Text<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReasoningDelta<'a> {
    #[serde(default, borrow)]
    text: Option<Text<'a>>,
    #[serde(default, borrow)]
    signature: Option<Text<'a>>,
    #[serde(default, borrow)]
    redacted_content: Option<Text<'a>>,
}

/// What a block is, from its start or its first delta.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Kind {
    #[default]
    Text,
    ToolUse,
    Reasoning,
}

/// One content block being assembled.
#[derive(Debug, Default)]
struct BlockState {
    index: u32,
    kind: Kind,
    /// Whether the kind is known (from a start or a delta).
    typed: bool,
    /// `text` or reasoning text, appended.
    text: String,
    /// `toolUse.input` fragments, appended; parsed once at the end.
    input: String,
    tool_use_id: Option<String>,
    name: Option<String>,
    signature: Option<String>,
    redacted: Option<String>,
}

impl Keyed for BlockState {
    fn key(&self) -> u32 {
        self.index
    }
}

/// Fold state of one Converse stream.
#[derive(Debug, Default)]
pub(crate) struct ConverseFold {
    role: Option<String>,
    stop_reason: Option<String>,
    usage: Option<Box<RawValue>>,
    metrics: Option<Box<RawValue>>,
    trace: Option<Box<RawValue>>,
    additional: Option<Box<RawValue>>,
    blocks: Indexed<BlockState>,
    error: Option<CallError>,
    started: bool,
    /// Tool inputs rebuilt from their fragments.
    inputs: FragmentedInputs,
}

/// The longest `stopReason` kept.
const MAX_STOP_TEXT: usize = 4096;

impl ConverseFold {
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

    fn keep_raw(
        slot: &mut Option<Box<RawValue>>,
        raw: Option<&RawValue>,
        budget: &mut ContentBudget,
    ) {
        if let Some(raw) = raw.filter(|r| r.get() != "null") {
            if let Some(kept) = budget.small_value(raw) {
                *slot = Some(kept);
            }
        }
    }

    fn block_start(&mut self, index: u32, start: BlockStart<'_>, budget: &mut ContentBudget) {
        let Some(tool) = start.tool_use else {
            return;
        };
        let Some(state) = self.block(index, budget) else {
            return;
        };
        state.kind = Kind::ToolUse;
        state.typed = true;
        budget.set_if_empty(&mut state.tool_use_id, tool.tool_use_id);
        budget.set_if_empty(&mut state.name, tool.name);
    }

    /// Folds a `contentBlockDelta`; returns whether it carried content.
    fn block_delta(&mut self, index: u32, delta: Delta<'_>, budget: &mut ContentBudget) -> bool {
        let Some(state) = self.block(index, budget) else {
            // Past the budget: still content, for the first-token time.
            let reasoning = delta
                .reasoning_content
                .as_ref()
                .and_then(|r| r.text.as_deref());
            let input = delta.tool_use.as_ref().and_then(|t| t.input.as_deref());
            return [delta.text.as_deref(), reasoning, input]
                .iter()
                .any(|t| t.is_some_and(|t| !t.is_empty()));
        };
        let mut infer = |kind: Kind| {
            if !state.typed {
                state.kind = kind;
                state.typed = true;
            }
        };
        if let Some(text) = delta.text {
            infer(Kind::Text);
            budget.append(&mut state.text, &text);
            return !text.is_empty();
        }
        if let Some(tool) = delta.tool_use {
            infer(Kind::ToolUse);
            let input = tool.input.as_deref().unwrap_or("");
            budget.append(&mut state.input, input);
            return !input.is_empty();
        }
        if let Some(reasoning) = delta.reasoning_content {
            infer(Kind::Reasoning);
            if let Some(signature) = reasoning.signature {
                let slot = state.signature.get_or_insert_with(String::new);
                budget.append(slot, &signature);
            }
            if let Some(redacted) = reasoning.redacted_content {
                let slot = state.redacted.get_or_insert_with(String::new);
                budget.append(slot, &redacted);
            }
            if let Some(text) = reasoning.text {
                budget.append(&mut state.text, &text);
                return !text.is_empty();
            }
        }
        false
    }
}

impl StreamFold for ConverseFold {
    fn push(
        &mut self,
        event: Event<'_>,
        budget: &mut ContentBudget,
    ) -> Result<Folded, serde_json::Error> {
        if let Some(kind) = event.name.strip_prefix(b"exception:") {
            let payload = std::str::from_utf8(event.data).unwrap_or("");
            let kind = (!kind.is_empty()).then(|| String::from_utf8_lossy(kind).into_owned());
            if payload.len() <= crate::wire::budget::SMALL_VALUE {
                self.error = Some(error_from_payload(kind, payload));
            } else {
                self.error = Some(CallError {
                    kind,
                    code: None,
                    message: None,
                });
            }
            // Nothing follows an exception.
            return Ok(Folded::END);
        }
        if let Some(code) = event.name.strip_prefix(b"error:") {
            let message = String::from_utf8_lossy(&event.data[..event.data.len().min(4096)]);
            self.error = Some(CallError {
                kind: (!code.is_empty()).then(|| String::from_utf8_lossy(code).into_owned()),
                code: None,
                message: (!message.is_empty()).then(|| message.into_owned()),
            });
            return Ok(Folded::END);
        }
        let payload: Payload<'_> = read_json(event.data)?;
        let index = payload.content_block_index.unwrap_or(0);
        match event.name {
            b"messageStart" => {
                self.started = true;
                budget.set_if_empty(&mut self.role, payload.role);
            }
            b"contentBlockStart" => {
                if let Some(start) = payload.start {
                    self.block_start(index, start, budget);
                }
            }
            b"contentBlockDelta" => {
                if let Some(delta) = payload.delta {
                    return Ok(Folded::content(self.block_delta(index, delta, budget)));
                }
            }
            b"messageStop" => {
                // Short and replaced: kept even when content was cut.
                if let Some(reason) = payload.stop_reason.filter(|r| r.len() <= MAX_STOP_TEXT) {
                    self.stop_reason = Some(reason.into_owned());
                }
                Self::keep_raw(
                    &mut self.additional,
                    payload.additional_model_response_fields,
                    budget,
                );
            }
            b"metadata" => {
                Self::keep_raw(&mut self.usage, payload.usage, budget);
                Self::keep_raw(&mut self.metrics, payload.metrics, budget);
                Self::keep_raw(&mut self.trace, payload.trace, budget);
                return Ok(Folded::END);
            }
            // `contentBlockStop` and event types added later carry nothing we keep.
            _ => {}
        }
        Ok(Folded::content(false))
    }

    fn into_summary(mut self) -> ResponseSummary {
        let blocks = std::mem::take(&mut self.blocks).into_sorted();
        if !self.started && blocks.is_empty() && self.error.is_none() && self.usage.is_none() {
            return ResponseSummary::default();
        }
        let content: Vec<Value> = blocks
            .into_iter()
            .map(|block| self.block_value(block))
            .collect();
        let role = self.role.take().unwrap_or_else(|| "assistant".to_owned());
        let mut response = Map::new();
        response.insert(
            "output".into(),
            json!({"message": {"role": role, "content": content}}),
        );
        response.insert("stopReason".into(), self.stop_reason.clone().into());
        let usage = self.usage.as_deref().and_then(small_tree);
        for (key, value) in [
            ("usage", usage.clone()),
            ("metrics", self.metrics.as_deref().and_then(small_tree)),
            ("trace", self.trace.as_deref().and_then(small_tree)),
            (
                "additionalModelResponseFields",
                self.additional.as_deref().and_then(small_tree),
            ),
        ] {
            if let Some(value) = value {
                response.insert(key.into(), value);
            }
        }
        let decode_error = self
            .inputs
            .decode_error("toolUse inputs streamed as fragments");
        ResponseSummary {
            response: Some(Json::from(Value::Object(response))),
            usage: usage.as_ref().and_then(usage_from_value),
            reported_cost: None,
            finish_reasons: self.stop_reason.into_iter().collect(),
            error: self.error,
            model: None,
            id: None,
            truncated: false,
            decode_error,
        }
    }
}

impl ConverseFold {
    /// A block as the unstreamed response has it.
    fn block_value(&mut self, block: BlockState) -> Value {
        match block.kind {
            Kind::Text => json!({"text": fitted(block.text)}),
            Kind::ToolUse => {
                let input = if block.input.is_empty() {
                    Value::Object(Map::new())
                } else {
                    self.inputs.parse(block.input)
                };
                json!({"toolUse": {"toolUseId": block.tool_use_id, "name": block.name,
                                   "input": input}})
            }
            Kind::Reasoning => {
                let mut reasoning = Map::new();
                if !block.text.is_empty() || block.signature.is_some() {
                    let mut text = Map::new();
                    text.insert("text".into(), fitted(block.text).into());
                    if let Some(signature) = block.signature {
                        text.insert("signature".into(), signature.into());
                    }
                    reasoning.insert("reasoningText".into(), Value::Object(text));
                }
                if let Some(redacted) = block.redacted {
                    reasoning.insert("redactedContent".into(), redacted.into());
                }
                json!({ "reasoningContent": reasoning })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::assemble::{EventEffect, Fold, StreamAssembler};

    fn run(events: &[(&str, Value)]) -> (ResponseSummary, Vec<EventEffect>, bool) {
        let mut assembler = StreamAssembler::new(Fold::Bedrock(Box::default()), 1 << 20);
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

    #[test]
    fn text_reasoning_and_tool_use_in_order() {
        let (summary, effects, ended) = run(&[
            ("messageStart", json!({"p": "abc", "role": "assistant"})),
            (
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "Hmm, "}}, "p": "a"}),
            ),
            (
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "weather."}}, "p": "a"}),
            ),
            (
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "sig=="}}, "p": "a"}),
            ),
            (
                "contentBlockStop",
                json!({"contentBlockIndex": 0, "p": "a"}),
            ),
            (
                "contentBlockDelta",
                json!({"contentBlockIndex": 1, "delta": {"text": "Checking"}, "p": "ab"}),
            ),
            (
                "contentBlockStart",
                json!({"contentBlockIndex": 2, "p": "x", "start": {"toolUse": {"name": "get_weather", "toolUseId": "tooluse_1"}}}),
            ),
            (
                "contentBlockDelta",
                json!({"contentBlockIndex": 2, "delta": {"toolUse": {"input": ""}}, "p": "a"}),
            ),
            (
                "contentBlockDelta",
                json!({"contentBlockIndex": 2, "delta": {"toolUse": {"input": "{\"location\": \"Bar"}}, "p": "a"}),
            ),
            (
                "contentBlockDelta",
                json!({"contentBlockIndex": 2, "delta": {"toolUse": {"input": "celona\"}"}}, "p": "a"}),
            ),
            ("messageStop", json!({"p": "abc", "stopReason": "tool_use"})),
            (
                "metadata",
                json!({"metrics": {"latencyMs": 1176}, "p": "abc",
                       "usage": {"inputTokens": 236, "outputTokens": 58, "totalTokens": 294,
                                 "cacheReadInputTokens": 4, "cacheWriteInputTokens": 6}}),
            ),
        ]);
        assert!(ended);
        let response = summary.response.unwrap().into_value();
        assert_eq!(
            response["output"]["message"]["content"],
            json!([
                {"reasoningContent": {"reasoningText": {"text": "Hmm, weather.", "signature": "sig=="}}},
                {"text": "Checking"},
                {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather",
                             "input": {"location": "Barcelona"}}},
            ])
        );
        assert_eq!(response["stopReason"], "tool_use");
        assert_eq!(response["metrics"]["latencyMs"], 1176);
        assert_eq!(summary.finish_reasons, vec!["tool_use"]);
        let usage = summary.usage.unwrap();
        assert_eq!(usage.input_tokens, Some(246));
        assert_eq!(usage.output_tokens, Some(58));
        assert_eq!(usage.cached_input_tokens, Some(4));
        assert_eq!(usage.cache_creation_input_tokens, Some(6));
        assert_eq!(effects[0], EventEffect::NoContent);
        assert_eq!(effects[1], EventEffect::Content);
        assert_eq!(effects[3], EventEffect::NoContent);
        assert_eq!(effects[7], EventEffect::NoContent);
    }

    #[test]
    fn an_exception_ends_the_stream_as_an_error_keeping_the_text() {
        let (summary, _, ended) = run(&[
            ("messageStart", json!({"role": "assistant"})),
            (
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"text": "Hal"}}),
            ),
            (
                "exception:throttlingException",
                json!({"message": "Too many requests, please wait."}),
            ),
        ]);
        assert!(ended);
        let error = summary.error.unwrap();
        assert_eq!(error.kind.as_deref(), Some("throttlingException"));
        assert_eq!(
            error.message.as_deref(),
            Some("Too many requests, please wait.")
        );
        assert_eq!(
            summary.response.unwrap()["output"]["message"]["content"][0]["text"],
            "Hal"
        );
    }

    #[test]
    fn an_input_that_never_closes_is_kept_as_text_and_said() {
        let (summary, _, ended) = run(&[
            (
                "contentBlockStart",
                json!({"contentBlockIndex": 0, "start": {"toolUse": {"name": "f", "toolUseId": "t"}}}),
            ),
            (
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": "{\"a\": [1"}}}),
            ),
        ]);
        assert!(!ended);
        let response = summary.response.unwrap();
        assert_eq!(
            response["output"]["message"]["content"][0]["toolUse"]["input"],
            "{\"a\": [1"
        );
        assert!(summary.decode_error.unwrap().contains("1 are not complete"));
    }
}
