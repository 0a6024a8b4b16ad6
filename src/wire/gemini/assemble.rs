//! Folds a Gemini `streamGenerateContent` stream — SSE events (`?alt=sse`) or the elements of
//! one streamed JSON array, each a `GenerateContentResponse` chunk — into the
//! `GenerateContentResponse` the same call returns unstreamed.
//!
//! Candidates are merged by `index` (their position in the chunk when it names none). Their
//! parts are kept in order: consecutive text parts of one kind (thought or not) are merged into
//! one (their `thoughtSignature` kept), every other part (`functionCall` with its `args`,
//! `executableCode`, `codeExecutionResult`, `inlineData`, ...) as sent. Other candidate fields
//! (`finishReason`, `safetyRatings`, `citationMetadata`, ...) and top-level fields
//! (`usageMetadata`, `modelVersion`, `responseId`, `promptFeedback`, a mid-stream `error`) are
//! replaced by each chunk that carries them: the last one wins.

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::response::{error_from_raw, usage_from_raw};
use crate::json::Json;
use crate::wire::assemble::{Folded, StreamFold};
use crate::wire::budget::{fitted, small_tree, ContentBudget, ENTRY_COST, MAX_ENTRIES_PER_EVENT};
use crate::wire::indexed::{Indexed, Keyed};
use crate::wire::read::{raw_string, read_json, Capped, Text};
use crate::wire::summary::ResponseSummary;
use crate::wire::Event;

/// The most fields read from one object of a chunk (the rest are skipped, the record says
/// truncated).
const MAX_FIELDS: usize = 256;

/// What keeping one part costs, beyond its strings.
const PART_COST: usize = 32;

/// An object's fields as borrowed raw values, at most [`MAX_FIELDS`] of them.
struct Fields<'a> {
    fields: Vec<(Text<'a>, &'a RawValue)>,
    skipped: bool,
}

impl<'de: 'a, 'a> Deserialize<'de> for Fields<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldsVisitor;
        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Fields<'de>, M::Error> {
                let mut fields = Vec::new();
                let mut skipped = false;
                while let Some(key) = map.next_key::<Text<'de>>()? {
                    if fields.len() < MAX_FIELDS {
                        fields.push((key, map.next_value::<&'de RawValue>()?));
                    } else {
                        map.next_value::<IgnoredAny>()?;
                        skipped = true;
                    }
                }
                Ok(Fields { fields, skipped })
            }
        }
        deserializer.deserialize_map(FieldsVisitor)
    }
}

/// A candidate's `content`.
#[derive(Deserialize)]
struct WireContent<'a> {
    #[serde(default, borrow)]
    role: Option<&'a RawValue>,
    #[serde(default, borrow)]
    parts: Option<Capped<&'a RawValue, Vec<&'a RawValue>, MAX_ENTRIES_PER_EVENT>>,
}

/// A part, as far as merging needs it.
#[derive(Default)]
struct WirePart<'a> {
    text: Option<Text<'a>>,
    thought: Option<bool>,
    thought_signature: Option<Text<'a>>,
    function_call: bool,
}

/// One part being assembled.
#[derive(Debug)]
enum PartState {
    /// Consecutive text parts of one kind, merged.
    Text {
        text: String,
        thought: bool,
        signature: Option<String>,
    },
    /// Any other part, as sent.
    Other(Box<RawValue>),
}

/// One candidate being assembled.
#[derive(Debug, Default)]
struct CandidateState {
    index: u32,
    /// The chunks named the index (the unstreamed response then does too).
    index_sent: bool,
    role: Option<String>,
    parts: Vec<PartState>,
    /// Other fields (`finishReason`, `safetyRatings`, ...), the last of each.
    fields: Vec<(String, Box<RawValue>)>,
    finish_reason: Option<String>,
}

impl Keyed for CandidateState {
    fn key(&self) -> u32 {
        self.index
    }
}

/// Sets `name` to `value` in `fields`, replacing an earlier value, within the budget.
fn replace_field(
    fields: &mut Vec<(String, Box<RawValue>)>,
    name: &str,
    value: &RawValue,
    budget: &mut ContentBudget,
) {
    let Some(value) = budget.small_value(value) else {
        return;
    };
    if let Some(slot) = fields.iter_mut().find(|(n, _)| n == name) {
        slot.1 = value;
    } else if budget.charge(name.len() + value.get().len()) {
        fields.push((name.to_owned(), value));
    }
}

impl CandidateState {
    /// Folds one part; returns whether it carried content.
    fn push_part(&mut self, raw: &RawValue, budget: &mut ContentBudget) -> bool {
        let fields = serde_json::from_str::<Fields<'_>>(raw.get()).ok();
        let mut part = WirePart::default();
        let mut only_text = fields.as_ref().is_some_and(|f| !f.skipped);
        for (name, value) in fields.iter().flat_map(|f| &f.fields) {
            match &**name {
                "text" => part.text = serde_json::from_str(value.get()).ok(),
                "thought" => part.thought = serde_json::from_str(value.get()).ok(),
                "thoughtSignature" => {
                    part.thought_signature = serde_json::from_str(value.get()).ok()
                }
                "functionCall" => {
                    part.function_call = true;
                    only_text = false;
                }
                _ => only_text = false,
            }
        }
        if !only_text || part.text.is_none() {
            // Not a plain text part: kept as sent.
            let content = part.function_call || part.text.as_deref().is_some_and(|t| !t.is_empty());
            if budget.charge(raw.get().len() + PART_COST) {
                self.parts.push(PartState::Other(raw.to_owned()));
            }
            return content;
        }
        let text = part.text.as_deref().unwrap_or("");
        let thought = part.thought.unwrap_or(false);
        let signature = part.thought_signature.filter(|s| !s.is_empty());
        if text.is_empty() && signature.is_none() && !thought {
            // An empty text part (a stream's closing chunk) adds nothing.
            return false;
        }
        let merge = match self.parts.last() {
            Some(PartState::Text {
                thought: was_thought,
                signature: was_signed,
                ..
            }) => *was_thought == thought && !(was_signed.is_some() && signature.is_some()),
            _ => false,
        };
        if !merge {
            if !budget.charge(PART_COST) {
                return !text.is_empty();
            }
            self.parts.push(PartState::Text {
                text: String::new(),
                thought,
                signature: None,
            });
        }
        if let Some(PartState::Text {
            text: kept,
            signature: kept_signature,
            ..
        }) = self.parts.last_mut()
        {
            budget.append(kept, text);
            if let Some(signature) = signature {
                budget.set_if_empty(kept_signature, Some(signature));
            }
        }
        !text.is_empty()
    }

    fn part_value(part: PartState) -> Value {
        match part {
            PartState::Text {
                text,
                thought,
                signature,
            } => {
                let mut fields = Map::new();
                fields.insert("text".into(), fitted(text).into());
                if thought {
                    fields.insert("thought".into(), true.into());
                }
                if let Some(signature) = signature {
                    fields.insert("thoughtSignature".into(), signature.into());
                }
                Value::Object(fields)
            }
            PartState::Other(raw) => small_tree(&raw).unwrap_or(Value::Null),
        }
    }

    fn into_value(self) -> Value {
        let mut fields = Map::new();
        let mut content = Map::new();
        let parts: Vec<Value> = self.parts.into_iter().map(Self::part_value).collect();
        content.insert("parts".into(), Value::Array(parts));
        content.insert(
            "role".into(),
            self.role.unwrap_or_else(|| "model".to_owned()).into(),
        );
        fields.insert("content".into(), Value::Object(content));
        for (name, value) in self.fields {
            if let Some(value) = small_tree(&value) {
                fields.insert(name, value);
            }
        }
        if self.index_sent {
            fields.insert("index".into(), self.index.into());
        }
        Value::Object(fields)
    }
}

/// Fold state of one Gemini stream.
#[derive(Debug, Default)]
pub(crate) struct GenerateContentFold {
    candidates: Indexed<CandidateState>,
    /// Top-level fields other than `candidates`, the last of each.
    fields: Vec<(String, Box<RawValue>)>,
    started: bool,
}

impl GenerateContentFold {
    /// Folds one candidate object (at `position` in its chunk); returns whether it carried
    /// content.
    fn candidate(&mut self, position: u32, raw: &RawValue, budget: &mut ContentBudget) -> bool {
        let Ok(fields) = serde_json::from_str::<Fields<'_>>(raw.get()) else {
            return false;
        };
        if fields.skipped {
            budget.exceeded = true;
        }
        let sent = fields
            .fields
            .iter()
            .find(|(k, _)| &**k == "index")
            .and_then(|(_, v)| serde_json::from_str::<u32>(v.get()).ok());
        let index = sent.unwrap_or(position);
        let Some(state) = self.candidates.entry(
            index,
            || budget.charge(ENTRY_COST),
            || CandidateState {
                index,
                ..CandidateState::default()
            },
        ) else {
            // Past the budget: still content, for the first-token time.
            return raw.get().contains("\"text\"") || raw.get().contains("\"functionCall\"");
        };
        state.index_sent |= sent.is_some();
        let mut content = false;
        for (name, value) in fields.fields {
            match &*name {
                "index" => {}
                "content" => {
                    let Ok(wire) = serde_json::from_str::<WireContent<'_>>(value.get()) else {
                        continue;
                    };
                    if let Some(role) = wire.role.and_then(raw_string) {
                        if state.role.is_none() && budget.charge(role.len()) {
                            state.role = Some(role);
                        }
                    }
                    if let Some(parts) = wire.parts {
                        if parts.skipped {
                            budget.exceeded = true;
                        }
                        for part in parts.items {
                            content |= state.push_part(part, budget);
                        }
                    }
                }
                name => {
                    if name == "finishReason" {
                        if let Some(reason) = raw_string(value).filter(|r| r.len() <= 256) {
                            state.finish_reason = Some(reason);
                        }
                    }
                    replace_field(&mut state.fields, name, value, budget);
                }
            }
        }
        content
    }
}

impl StreamFold for GenerateContentFold {
    fn push(
        &mut self,
        event: Event<'_>,
        budget: &mut ContentBudget,
    ) -> Result<Folded, serde_json::Error> {
        let chunk: Fields<'_> = read_json(event.data)?;
        if chunk.skipped {
            budget.exceeded = true;
        }
        self.started = true;
        let mut content = false;
        let mut ended = false;
        for (name, value) in chunk.fields {
            match &*name {
                "candidates" => {
                    type Candidates<'a> =
                        Capped<&'a RawValue, Vec<&'a RawValue>, MAX_ENTRIES_PER_EVENT>;
                    let Ok(candidates) = serde_json::from_str::<Candidates<'_>>(value.get()) else {
                        continue;
                    };
                    if candidates.skipped {
                        budget.exceeded = true;
                    }
                    for (position, candidate) in candidates.items.into_iter().enumerate() {
                        let position = u32::try_from(position).unwrap_or(u32::MAX);
                        content |= self.candidate(position, candidate, budget);
                    }
                }
                name => {
                    // Nothing follows an error.
                    ended |= name == "error" && value.get() != "null";
                    replace_field(&mut self.fields, name, value, budget);
                }
            }
        }
        Ok(Folded { content, ended })
    }

    fn into_summary(self) -> ResponseSummary {
        let candidates = self.candidates.into_sorted();
        if !self.started {
            return ResponseSummary::default();
        }
        let raw = |name: &str| {
            self.fields
                .iter()
                .rev()
                .find(|(n, _)| n == name)
                .map(|(_, v)| &**v)
        };
        let usage = raw("usageMetadata").and_then(usage_from_raw);
        let error = raw("error").and_then(error_from_raw);
        let model = raw("modelVersion").and_then(raw_string);
        let id = raw("responseId").and_then(raw_string);
        let finish_reasons = candidates
            .iter()
            .filter_map(|c| c.finish_reason.clone())
            .collect();
        let mut response = Map::new();
        let only_error = candidates.is_empty() && error.is_some();
        if !only_error {
            let candidates = candidates.into_iter().map(CandidateState::into_value);
            response.insert("candidates".into(), Value::Array(candidates.collect()));
        }
        for (name, value) in &self.fields {
            if let Some(value) = small_tree(value) {
                response.insert(name.clone(), value);
            }
        }
        ResponseSummary {
            response: Some(Json::from(Value::Object(response))),
            usage,
            reported_cost: None,
            finish_reasons,
            error,
            model,
            id,
            truncated: false,
            decode_error: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fold(chunks: &[Value]) -> (ResponseSummary, Vec<bool>, bool) {
        let mut fold = GenerateContentFold::default();
        let mut budget = ContentBudget::new(1 << 20);
        let mut content = Vec::new();
        for chunk in chunks {
            let data = chunk.to_string();
            let folded = fold
                .push(
                    Event {
                        name: b"",
                        data: data.as_bytes(),
                    },
                    &mut budget,
                )
                .unwrap();
            content.push(folded.content);
        }
        (fold.into_summary(), content, budget.exceeded)
    }

    #[test]
    fn parts_merge_by_kind_and_the_last_usage_wins() {
        let usage = |out: u64| json!({"promptTokenCount": 3, "candidatesTokenCount": out, "thoughtsTokenCount": 2, "totalTokenCount": 5 + out});
        let chunks = [
            json!({"candidates": [{"content": {"parts": [{"text": "Let me ", "thought": true}], "role": "model"}}],
                   "usageMetadata": usage(0), "modelVersion": "gemini-2.5-flash", "responseId": "r1"}),
            json!({"candidates": [{"content": {"parts": [{"text": "think.", "thought": true}, {"text": "Hel"}], "role": "model"}}],
                   "usageMetadata": usage(1), "modelVersion": "gemini-2.5-flash", "responseId": "r1"}),
            json!({"candidates": [{"content": {"parts": [{"text": "lo", "thoughtSignature": "c2ln"}], "role": "model"}}],
                   "usageMetadata": usage(2)}),
            json!({"candidates": [{"content": {"parts": [{"functionCall": {"name": "f", "args": {"a": 1}}}], "role": "model"}}]}),
            json!({"candidates": [{"content": {"parts": [{"text": ""}], "role": "model"}, "finishReason": "STOP"}],
                   "usageMetadata": usage(4)}),
        ];
        let (summary, content, exceeded) = fold(&chunks);
        assert_eq!(content, vec![true, true, true, true, false]);
        assert!(!exceeded);
        assert_eq!(summary.id.as_deref(), Some("r1"));
        assert_eq!(summary.model.as_deref(), Some("gemini-2.5-flash"));
        assert_eq!(summary.finish_reasons, vec!["STOP"]);
        let tokens = summary.usage.unwrap();
        assert_eq!(
            (
                tokens.input_tokens,
                tokens.output_tokens,
                tokens.total_tokens
            ),
            (Some(3), Some(6), Some(9))
        );
        assert_eq!(tokens.reasoning_tokens, Some(2));
        assert_eq!(
            summary.response.unwrap().value(),
            &json!({
                "candidates": [{"content": {"role": "model", "parts": [
                    {"text": "Let me think.", "thought": true},
                    {"text": "Hello", "thoughtSignature": "c2ln"},
                    {"functionCall": {"name": "f", "args": {"a": 1}}}
                ]}, "finishReason": "STOP"}],
                "usageMetadata": usage(4), "modelVersion": "gemini-2.5-flash", "responseId": "r1"
            })
        );
    }

    #[test]
    fn candidates_by_index_and_a_mid_stream_error() {
        let chunks = [
            json!({"candidates": [{"index": 1, "content": {"parts": [{"text": "b"}]}},
                                  {"index": 0, "content": {"parts": [{"text": "a"}]}}]}),
            json!({"candidates": [{"index": 0, "content": {"parts": [{"text": "a"}]}, "finishReason": "MAX_TOKENS"}]}),
            json!({"error": {"code": 500, "message": "Internal", "status": "INTERNAL"}}),
        ];
        let mut fold = GenerateContentFold::default();
        let mut budget = ContentBudget::new(1 << 20);
        let mut last = Folded::default();
        for chunk in &chunks {
            let data = chunk.to_string();
            last = fold
                .push(
                    Event {
                        name: b"",
                        data: data.as_bytes(),
                    },
                    &mut budget,
                )
                .unwrap();
        }
        assert!(last.ended);
        let summary = fold.into_summary();
        assert_eq!(summary.finish_reasons, vec!["MAX_TOKENS"]);
        let error = summary.error.unwrap();
        assert_eq!(error.kind.as_deref(), Some("INTERNAL"));
        assert_eq!(error.code.as_deref(), Some("500"));
        let response = summary.response.unwrap().into_value();
        assert_eq!(
            response["candidates"][0]["content"]["parts"],
            json!([{"text": "aa"}])
        );
        assert_eq!(
            response["candidates"][1]["content"]["parts"],
            json!([{"text": "b"}])
        );
    }

    #[test]
    fn hostile_chunks_are_bounded() {
        let many: Vec<Value> = (0..10_000).map(|_| json!({})).collect();
        let (summary, _, exceeded) = fold(&[json!({ "candidates": many })]);
        assert!(exceeded);
        let kept = summary.response.unwrap().into_value()["candidates"]
            .as_array()
            .map_or(0, Vec::len);
        assert!(kept <= MAX_ENTRIES_PER_EVENT);
        let mut fold = GenerateContentFold::default();
        let mut budget = ContentBudget::new(1000);
        let big = json!({"candidates": [{"content": {"parts": [{"text": "x".repeat(5000)}]}}]})
            .to_string();
        fold.push(
            Event {
                name: b"",
                data: big.as_bytes(),
            },
            &mut budget,
        )
        .unwrap();
        assert!(budget.exceeded);
        assert!(fold
            .push(
                Event {
                    name: b"",
                    data: b"[1"
                },
                &mut budget
            )
            .is_err());
    }
}
