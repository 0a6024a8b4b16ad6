//! Folds an Ollama `/api/chat` or `/api/generate` NDJSON stream into the response the same call
//! returns unstreamed.
//!
//! Every line is one JSON object: `message.content` (chat) or `response` (generate) text is
//! appended, `message.thinking` / `thinking` is appended as reasoning, `message.tool_calls` come
//! whole (one or more per line) and are kept in order. The last line says `"done": true` and
//! carries `done_reason`, the token counts (`prompt_eval_count` may be absent) and the
//! durations in nanoseconds. An error is a line `{"error": "..."}`. A `"stream": false` body is
//! one such line: when the first line is already the last word, it is kept as it came.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::json::Json;
use crate::payload::Usage;
use crate::wire::assemble::{Folded, StreamFold};
use crate::wire::budget::{
    append_opt, fitted, small_tree, ContentBudget, ENTRY_COST, MAX_ENTRIES_PER_EVENT,
};
use crate::wire::read::{raw_string, read_json, Capped, Text};
use crate::wire::summary::{error_from_value, ResponseSummary};
use crate::wire::Event;

/// The counts and durations of a final line, in the order Ollama writes them.
pub(crate) const FINAL_FIELDS: [&str; 6] = [
    "total_duration",
    "load_duration",
    "prompt_eval_count",
    "prompt_eval_duration",
    "eval_count",
    "eval_duration",
];

/// One NDJSON line of a chat or generate stream.
#[derive(Deserialize)]
struct Line<'a> {
    #[serde(default, borrow)]
    model: Option<&'a RawValue>,
    #[serde(default, borrow)]
    created_at: Option<&'a RawValue>,
    #[serde(default, borrow)]
    message: Option<Message<'a>>,
    /// Generate: the text of this line.
    #[serde(default, borrow)]
    response: Option<Text<'a>>,
    /// Generate: the reasoning of this line.
    #[serde(default, borrow)]
    thinking: Option<Text<'a>>,
    #[serde(default)]
    done: Option<bool>,
    #[serde(default, borrow)]
    done_reason: Option<&'a RawValue>,
    /// Generate: the context tokens, on the final line.
    #[serde(default, borrow)]
    context: Option<&'a RawValue>,
    #[serde(default)]
    total_duration: Option<u64>,
    #[serde(default)]
    load_duration: Option<u64>,
    #[serde(default)]
    prompt_eval_count: Option<u64>,
    #[serde(default)]
    prompt_eval_duration: Option<u64>,
    #[serde(default)]
    eval_count: Option<u64>,
    #[serde(default)]
    eval_duration: Option<u64>,
    #[serde(default, borrow)]
    error: Option<&'a RawValue>,
}

/// A chat line's `message`.
#[derive(Deserialize)]
struct Message<'a> {
    #[serde(default, borrow)]
    role: Option<&'a RawValue>,
    #[serde(default, borrow)]
    content: Option<Text<'a>>,
    #[serde(default, borrow)]
    thinking: Option<Text<'a>>,
    #[serde(default, borrow)]
    tool_calls: Option<Capped<&'a RawValue, Vec<&'a RawValue>, MAX_ENTRIES_PER_EVENT>>,
    #[serde(default, borrow)]
    images: Option<&'a RawValue>,
}

/// Which response shape a fold rebuilds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Shape {
    /// `/api/chat`: `{model, created_at, message, done, ...}`.
    #[default]
    Chat,
    /// `/api/generate`: `{model, created_at, response, thinking?, done, ...}`.
    Generate,
}

/// Fold state of one Ollama chat or generate stream.
#[derive(Debug, Default)]
pub(crate) struct OllamaFold {
    shape: Shape,
    lines: u64,
    model: Option<String>,
    created_at: Option<String>,
    role: Option<String>,
    content: String,
    thinking: Option<String>,
    tool_calls: Vec<Box<RawValue>>,
    images: Option<Box<RawValue>>,
    done: bool,
    done_reason: Option<String>,
    context: Option<Box<RawValue>>,
    /// The counts and durations of the final line ([`FINAL_FIELDS`] order).
    counts: [Option<u64>; 6],
    error: Option<Value>,
    /// The first line, when it was already the stream's last word (a `"stream": false` body, or
    /// an error): the response as it came.
    whole: Option<String>,
}

impl OllamaFold {
    /// A fold rebuilding the `shape` response.
    pub(crate) fn new(shape: Shape) -> Self {
        OllamaFold {
            shape,
            ..OllamaFold::default()
        }
    }

    fn keep(budget: &mut ContentBudget, slot: &mut Option<String>, raw: Option<&RawValue>) {
        if let Some(value) = raw.and_then(raw_string) {
            if budget.charge(value.len()) {
                *slot = Some(value);
            }
        }
    }

    /// Folds a chat line's `message`; whether it carried content.
    fn message(&mut self, message: Message<'_>, budget: &mut ContentBudget) -> bool {
        let mut content = false;
        if self.role.is_none() {
            Self::keep(budget, &mut self.role, message.role);
        }
        if let Some(text) = message.content.as_deref().filter(|t| !t.is_empty()) {
            budget.append(&mut self.content, text);
            content = true;
        }
        if let Some(text) = message.thinking.as_deref().filter(|t| !t.is_empty()) {
            append_opt(budget, &mut self.thinking, text);
            content = true;
        }
        if let Some(calls) = message.tool_calls {
            content |= !calls.items.is_empty();
            for call in calls.items {
                if budget.charge(call.get().len() + ENTRY_COST) {
                    self.tool_calls.push(call.to_owned());
                }
            }
            // Past the most read from one line: the rest were skipped unread.
            if calls.skipped {
                budget.exceeded = true;
            }
        }
        if let Some(images) = message.images.filter(|i| i.get() != "null") {
            if self.images.is_none() && budget.charge(images.get().len()) {
                self.images = Some(images.to_owned());
            }
        }
        content
    }

    fn final_line(&mut self, line: &Line<'_>, budget: &mut ContentBudget) {
        self.done = true;
        if let Some(reason) = line.done_reason.and_then(raw_string) {
            self.done_reason = Some(reason);
        }
        if let Some(context) = line.context.filter(|c| c.get() != "null") {
            self.context = budget.small_value(context);
        }
        let counts = [
            line.total_duration,
            line.load_duration,
            line.prompt_eval_count,
            line.prompt_eval_duration,
            line.eval_count,
            line.eval_duration,
        ];
        for (slot, value) in self.counts.iter_mut().zip(counts) {
            if value.is_some() {
                *slot = value;
            }
        }
    }

    fn usage(&self) -> Option<Usage> {
        let input = self.counts[2];
        let output = self.counts[4];
        if input.is_none() && output.is_none() {
            return None;
        }
        Some(Usage {
            input_tokens: input,
            output_tokens: output,
            total_tokens: input.zip(output).map(|(i, o)| i.saturating_add(o)),
            ..Usage::default()
        })
    }

    /// The response as the same call returns it unstreamed.
    fn rebuild(&mut self) -> Value {
        let mut out = Map::new();
        out.insert("model".into(), self.model.clone().into());
        out.insert("created_at".into(), self.created_at.take().into());
        let content = fitted(std::mem::take(&mut self.content));
        let thinking = self.thinking.take().map(fitted);
        match self.shape {
            Shape::Chat => {
                let mut message = Map::new();
                let role = self.role.take().unwrap_or_else(|| "assistant".to_owned());
                message.insert("role".into(), role.into());
                message.insert("content".into(), content.into());
                if let Some(thinking) = thinking {
                    message.insert("thinking".into(), thinking.into());
                }
                if !self.tool_calls.is_empty() {
                    let calls = self.tool_calls.iter().filter_map(|c| small_tree(c));
                    message.insert("tool_calls".into(), Value::Array(calls.collect()));
                }
                if let Some(images) = self.images.as_deref().and_then(small_tree) {
                    message.insert("images".into(), images);
                }
                out.insert("message".into(), Value::Object(message));
            }
            Shape::Generate => {
                out.insert("response".into(), content.into());
                if let Some(thinking) = thinking {
                    out.insert("thinking".into(), thinking.into());
                }
            }
        }
        out.insert("done".into(), self.done.into());
        if let Some(reason) = &self.done_reason {
            out.insert("done_reason".into(), reason.clone().into());
        }
        if let Some(context) = self.context.as_deref().and_then(small_tree) {
            out.insert("context".into(), context);
        }
        for (name, value) in FINAL_FIELDS.iter().zip(self.counts) {
            if let Some(value) = value {
                out.insert((*name).into(), value.into());
            }
        }
        Value::Object(out)
    }
}

impl StreamFold for OllamaFold {
    fn push(
        &mut self,
        event: Event<'_>,
        budget: &mut ContentBudget,
    ) -> Result<Folded, serde_json::Error> {
        let mut line: Line<'_> = read_json(event.data)?;
        self.lines += 1;
        if self.model.is_none() {
            Self::keep(budget, &mut self.model, line.model);
        }
        if let Some(at) = line.created_at.and_then(raw_string) {
            // The last line's time, as the unstreamed response has it; short.
            if at.len() <= 64 {
                self.created_at = Some(at);
            }
        }
        if let Some(error) = line.error.filter(|e| e.get() != "null") {
            let error = budget.small_value(error).and_then(|e| small_tree(&e));
            self.error = error.or(self.error.take());
            self.remember_whole(event.data, budget);
            return Ok(Folded::END);
        }
        let mut content = false;
        if let Some(message) = line.message.take() {
            content |= self.message(message, budget);
        }
        if let Some(text) = line.response.as_deref().filter(|t| !t.is_empty()) {
            budget.append(&mut self.content, text);
            content = true;
        }
        if let Some(text) = line.thinking.as_deref().filter(|t| !t.is_empty()) {
            append_opt(budget, &mut self.thinking, text);
            content = true;
        }
        if line.done == Some(true) {
            self.final_line(&line, budget);
            self.remember_whole(event.data, budget);
            // A first line that is also the last is an unstreamed body: no first token.
            return Ok(Folded {
                content: content && self.lines > 1,
                ended: true,
            });
        }
        Ok(Folded::content(content))
    }

    fn into_summary(mut self) -> ResponseSummary {
        if self.lines == 0 {
            return ResponseSummary::default();
        }
        let usage = self.usage();
        let finish_reasons = self.done_reason.clone().into_iter().collect();
        let error = self.error.as_ref().and_then(error_from_value);
        let response = match self.whole.take() {
            Some(text) if self.lines == 1 => Json::from_valid_text(&text),
            _ if self.error.is_some() && self.content.is_empty() && !self.done => {
                Json::from(serde_json::json!({ "error": self.error.take() }))
            }
            _ => Json::from(self.rebuild()),
        };
        ResponseSummary {
            response: Some(response),
            usage,
            reported_cost: None,
            finish_reasons,
            error,
            model: self.model,
            id: None,
            truncated: false,
            decode_error: None,
        }
    }
}

impl OllamaFold {
    /// Keeps the first line's text when it is also the last (checked JSON: it was parsed).
    fn remember_whole(&mut self, data: &[u8], budget: &mut ContentBudget) {
        if self.lines != 1 {
            return;
        }
        if let Ok(text) = std::str::from_utf8(data) {
            if budget.charge(text.len()) {
                self.whole = Some(text.to_owned());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::assemble::{EventEffect, Fold, StreamAssembler};
    use serde_json::json;

    fn run(shape: Shape, lines: &[Value], limit: usize) -> (ResponseSummary, Vec<EventEffect>) {
        let mut assembler =
            StreamAssembler::new(Fold::Ollama(Box::new(OllamaFold::new(shape))), limit);
        let effects = lines
            .iter()
            .map(|line| {
                let data = line.to_string();
                assembler.push(Event {
                    name: b"",
                    data: data.as_bytes(),
                })
            })
            .collect();
        (assembler.into_summary(), effects)
    }

    #[test]
    fn chat_stream_with_thinking_and_tool_calls() {
        let lines = [
            json!({"model": "qwen3", "created_at": "t0", "message": {"role": "assistant", "content": "", "thinking": "Hm"}, "done": false}),
            json!({"model": "qwen3", "created_at": "t1", "message": {"role": "assistant", "content": "", "thinking": "m."}, "done": false}),
            json!({"model": "qwen3", "created_at": "t2", "message": {"role": "assistant", "content": "Hi"}, "done": false}),
            json!({"model": "qwen3", "created_at": "t3", "message": {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}]}, "done": false}),
            json!({"model": "qwen3", "created_at": "t4", "message": {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "g", "arguments": {}}}]}, "done": false}),
            json!({"model": "qwen3", "created_at": "t5", "message": {"role": "assistant", "content": ""}, "done": true, "done_reason": "stop",
                   "total_duration": 5, "load_duration": 1, "prompt_eval_count": 21, "prompt_eval_duration": 2, "eval_count": 9, "eval_duration": 3}),
        ];
        let (summary, effects) = run(Shape::Chat, &lines, 1 << 20);
        assert_eq!(effects[..5], [EventEffect::Content; 5]);
        assert_eq!(effects[5], EventEffect::NoContent);
        assert_eq!(summary.model.as_deref(), Some("qwen3"));
        assert_eq!(summary.id, None);
        assert_eq!(summary.finish_reasons, vec!["stop"]);
        let usage = summary.usage.unwrap();
        assert_eq!(
            (usage.input_tokens, usage.output_tokens, usage.total_tokens),
            (Some(21), Some(9), Some(30))
        );
        assert_eq!(
            summary.response.unwrap().value(),
            &json!({"model": "qwen3", "created_at": "t5",
                "message": {"role": "assistant", "content": "Hi", "thinking": "Hmm.",
                    "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}},
                                   {"function": {"name": "g", "arguments": {}}}]},
                "done": true, "done_reason": "stop", "total_duration": 5, "load_duration": 1,
                "prompt_eval_count": 21, "prompt_eval_duration": 2, "eval_count": 9, "eval_duration": 3})
        );
    }

    #[test]
    fn generate_stream_without_prompt_count() {
        let lines = [
            json!({"model": "llama3", "created_at": "a", "response": "A", "done": false}),
            json!({"model": "llama3", "created_at": "b", "response": " joke", "done": false}),
            json!({"model": "llama3", "created_at": "c", "response": "", "done": true, "done_reason": "stop",
                   "context": [1, 2], "total_duration": 10, "eval_count": 2}),
        ];
        let (summary, _) = run(Shape::Generate, &lines, 1 << 20);
        let usage = summary.usage.unwrap();
        assert_eq!(
            (usage.input_tokens, usage.output_tokens, usage.total_tokens),
            (None, Some(2), None)
        );
        let response = summary.response.unwrap();
        assert_eq!(response["response"], "A joke");
        assert_eq!(response["context"], json!([1, 2]));
        assert_eq!(response["done"], true);
        assert!(response.get("message").is_none());
    }

    #[test]
    fn a_single_final_line_is_kept_as_it_came() {
        let body = r#"{"model":"m","created_at":"x","message":{"role":"assistant","content":"Hi"},"done_reason":"stop","done":true,"eval_count":3,"extra":1}"#;
        let mut fold = OllamaFold::new(Shape::Chat);
        let mut budget = ContentBudget::new(1 << 20);
        let folded = fold
            .push(
                Event {
                    name: b"",
                    data: body.as_bytes(),
                },
                &mut budget,
            )
            .unwrap();
        assert!(folded.ended && !folded.content);
        let summary = fold.into_summary();
        assert_eq!(summary.response.unwrap().text(), body);
    }

    #[test]
    fn an_error_line() {
        let (summary, effects) = run(
            Shape::Chat,
            &[json!({"error": "model 'x' not found"})],
            1 << 20,
        );
        assert_eq!(effects, vec![EventEffect::NoContent]);
        let error = summary.error.unwrap();
        assert_eq!(error.kind, None);
        assert_eq!(error.message.as_deref(), Some("model 'x' not found"));
        assert_eq!(
            summary.response.unwrap().value(),
            &json!({"error": "model 'x' not found"})
        );
        assert!(summary.finish_reasons.is_empty() && summary.usage.is_none());
    }

    #[test]
    fn many_tool_calls_stay_bounded() {
        let calls: Vec<Value> = (0..10_000)
            .map(|i| json!({"function": {"name": format!("f{i}"), "arguments": {}}}))
            .collect();
        let line = json!({"model": "m", "message": {"role": "assistant", "content": "", "tool_calls": calls}, "done": false});
        let mut assembler = StreamAssembler::new(
            Fold::Ollama(Box::new(OllamaFold::new(Shape::Chat))),
            64 << 10,
        );
        let data = line.to_string();
        assembler.push(Event {
            name: b"",
            data: data.as_bytes(),
        });
        assert!(assembler.truncated());
        let summary = assembler.into_summary();
        let kept = summary.response.unwrap()["message"]["tool_calls"]
            .as_array()
            .unwrap()
            .len();
        assert!(kept > 0 && kept < 1000, "{kept} kept");
    }

    #[test]
    fn not_json_is_an_error() {
        let mut fold = OllamaFold::new(Shape::Chat);
        let mut budget = ContentBudget::new(1 << 20);
        assert!(fold
            .push(
                Event {
                    name: b"",
                    data: b"<html>"
                },
                &mut budget
            )
            .is_err());
        assert!(fold.into_summary().response.is_none());
    }
}
