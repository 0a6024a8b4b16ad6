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

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use smallvec::SmallVec;

use super::response::{error_from_value, usage_from_raw};
use crate::json::Json;
use crate::wire::assemble::{Folded, StreamFold};
use crate::wire::budget::{fitted, ContentBudget, ENTRY_COST, MAX_ENTRIES_PER_EVENT};
use crate::wire::indexed::{Indexed, Keyed};
use crate::wire::read::{raw_string, read_json, Capped, Text};
use crate::wire::summary::ResponseSummary;
use crate::wire::Event;

/// The most fields read from one object of a chunk (the rest are skipped, the record says
/// truncated).
const MAX_FIELDS: usize = 256;

/// What keeping one part costs, beyond its strings.
const PART_COST: usize = 32;

/// Scratch text kept between chunks up to this capacity.
const SCRATCH_KEPT: usize = 64 << 10;

// ---------------------------------------------------------------------------------------------
// Reading a chunk
//
// A chunk is read whole before anything of it is folded (one that does not decode leaves the
// fold as it was), into `Op`s: what it says, in order, borrowed from its text, written to a
// buffer on the stack (a struct per level, returned and moved, cost more than the reading).
// It is read in one pass when it has the usual shape: candidates (an array) of objects whose
// `content` is an object of `role` and `parts`, each part plain text — `text` (unescaped into
// the scratch string when it has escapes), `thought`, `thoughtSignature`. When a part is
// something else (a `functionCall`, `inlineData`, ...) it must be kept as sent: the chunk is
// read again with each part borrowed as raw JSON, read on its own when it is folded. A chunk
// of any other shape (`candidates` that is not an array, a candidate that is not an object, a
// `content` that does not read as one) is read level by level — each object's fields as raw
// JSON, each level read from them — which ignores what does not read and keeps the rest.
// Where a faster reading succeeds it records what the slower ones would (a test folds
// generated chunks all three ways).

/// What a chunk says, in the order it says it.
enum Op<'a> {
    /// A top-level field other than `candidates` (`usageMetadata`, `modelVersion`,
    /// `responseId`, `error`, `promptFeedback`, ...).
    Field(Text<'a>, &'a RawValue),
    /// A `candidates` array; `skipped`: it had more than [`MAX_ENTRIES_PER_EVENT`] elements.
    Candidates { skipped: bool },
    /// A candidate (an object) at `position` in the `candidates` array that is the chunk's
    /// field number `field`; its first `index` as sent. Its fields follow.
    Candidate {
        field: usize,
        position: usize,
        index: Option<&'a RawValue>,
        skipped: bool,
    },
    /// A candidate's field other than `index` and `content` (`finishReason`, `safetyRatings`,
    /// ...).
    CandidateField(Text<'a>, &'a RawValue),
    /// A candidate's `content` (one that reads as one); its parts follow.
    Content {
        role: Option<&'a RawValue>,
        skipped: bool,
    },
    /// A part as sent, read when it is folded.
    Part(&'a RawValue),
    /// A plain text part, read with its chunk.
    TextPart {
        text: Span<'a>,
        thought: Option<bool>,
        signature: Option<Text<'a>>,
    },
}

impl Op<'_> {
    /// Whether the op belongs to the candidate before it.
    fn in_candidate(&self) -> bool {
        matches!(
            self,
            Op::CandidateField(..) | Op::Content { .. } | Op::Part(_) | Op::TextPart { .. }
        )
    }
}

/// A chunk's ops: a typical chunk (a candidate with one part and its fields, usage, model
/// version and id) needs no heap.
type Ops<'a> = SmallVec<[Op<'a>; 8]>;

/// A string of a chunk: borrowed from it, or unescaped into the scratch string.
#[derive(Clone, Copy)]
enum Span<'a> {
    Borrowed(&'a str),
    Scratch(usize, usize),
}

impl<'a> Span<'a> {
    fn get<'s>(self, scratch: &'s str) -> &'s str
    where
        'a: 's,
    {
        match self {
            Span::Borrowed(text) => text,
            Span::Scratch(from, to) => scratch.get(from..to).unwrap_or(""),
        }
    }
}

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

/// A candidate's `content`, read level by level.
#[derive(Deserialize)]
struct WireContent<'a> {
    #[serde(default, borrow)]
    role: Option<&'a RawValue>,
    #[serde(default, borrow)]
    parts: Option<Capped<&'a RawValue, Vec<&'a RawValue>, MAX_ENTRIES_PER_EVENT>>,
}

/// Capped raw elements of an array.
type RawItems<'a> = Capped<&'a RawValue, Vec<&'a RawValue>, MAX_ENTRIES_PER_EVENT>;

/// How a chunk is read: the fastest reading that succeeds, or (to test that they agree) one
/// reading and the slower ones after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
// Only tests start with a slower reading.
#[cfg_attr(not(test), allow(dead_code))]
enum Reading {
    /// One pass, plain text parts read with the chunk.
    OnePass,
    /// One pass, parts borrowed as sent.
    PartsAsSent,
    /// Level by level.
    ByLevel,
}

/// Reads `data` into `ops` (cleared first), starting with `reading`; returns whether the chunk
/// had more than [`MAX_FIELDS`] fields.
fn read_chunk<'a>(
    data: &'a [u8],
    ops: &mut Ops<'a>,
    scratch: &mut String,
    reading: Reading,
) -> Result<bool, serde_json::Error> {
    let one_pass: &[bool] = match reading {
        Reading::OnePass => &[false, true],
        Reading::PartsAsSent => &[true],
        Reading::ByLevel => &[],
    };
    if let Ok(text) = std::str::from_utf8(data) {
        for &parts_as_sent in one_pass {
            ops.clear();
            scratch.clear();
            let mut reader = Reader {
                ops: &mut *ops,
                scratch: &mut *scratch,
                parts_as_sent,
                not_plain: false,
            };
            let mut de = serde_json::Deserializer::from_str(text);
            match ChunkSeed(&mut reader)
                .deserialize(&mut de)
                .and_then(|skipped| de.end().map(|()| skipped))
            {
                Ok(skipped) if !reader.not_plain => return Ok(skipped),
                // A part is not plain text: read again, parts as sent.
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
    ops.clear();
    scratch.clear();
    read_chunk_by_level(data, ops)
}

/// Reads `data` level by level into `ops`, ignoring what does not read.
fn read_chunk_by_level<'a>(data: &'a [u8], ops: &mut Ops<'a>) -> Result<bool, serde_json::Error> {
    let chunk: Fields<'a> = read_json(data)?;
    for (field, (name, value)) in chunk.fields.into_iter().enumerate() {
        if &*name != "candidates" {
            ops.push(Op::Field(name, value));
            continue;
        }
        let Ok(candidates) = serde_json::from_str::<RawItems<'a>>(value.get()) else {
            continue;
        };
        ops.push(Op::Candidates {
            skipped: candidates.skipped,
        });
        for (position, candidate) in candidates.items.into_iter().enumerate() {
            let Ok(candidate) = serde_json::from_str::<Fields<'a>>(candidate.get()) else {
                continue;
            };
            let index = candidate.fields.iter().find(|(k, _)| &**k == "index");
            ops.push(Op::Candidate {
                field,
                position,
                index: index.map(|(_, v)| *v),
                skipped: candidate.skipped,
            });
            for (name, value) in candidate.fields {
                match &*name {
                    "index" => {}
                    "content" => {
                        let Ok(wire) = serde_json::from_str::<WireContent<'a>>(value.get()) else {
                            continue;
                        };
                        let (parts, skipped) = wire
                            .parts
                            .map_or((Vec::new(), false), |p| (p.items, p.skipped));
                        ops.push(Op::Content {
                            role: wire.role,
                            skipped,
                        });
                        ops.extend(parts.into_iter().map(Op::Part));
                    }
                    _ => ops.push(Op::CandidateField(name, value)),
                }
            }
        }
    }
    Ok(chunk.skipped)
}

/// The raw text of candidate `position` of the chunk's field number `field`.
fn candidate_raw(data: &[u8], field: usize, position: usize) -> Option<&RawValue> {
    let chunk: Fields<'_> = read_json(data).ok()?;
    let (_, candidates) = chunk.fields.get(field)?;
    let candidates = serde_json::from_str::<RawItems<'_>>(candidates.get()).ok()?;
    candidates.items.get(position).copied()
}

/// What the one-pass reading of a chunk writes to.
struct Reader<'r, 'a> {
    ops: &'r mut Ops<'a>,
    scratch: &'r mut String,
    /// Parts are borrowed as sent (else read, if plain text).
    parts_as_sent: bool,
    /// A part was not plain text (when parts are read).
    not_plain: bool,
}

/// A chunk in one pass; its value says whether fields were skipped.
struct ChunkSeed<'x, 'r, 'a>(&'x mut Reader<'r, 'a>);

impl<'de> DeserializeSeed<'de> for ChunkSeed<'_, '_, 'de> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ChunkSeed<'_, '_, 'de> {
    type Value = bool;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a GenerateContentResponse chunk")
    }
    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<bool, M::Error> {
        let mut read = 0;
        let mut skipped = false;
        while let Some(name) = map.next_key::<Text<'de>>()? {
            if read == MAX_FIELDS {
                map.next_value::<IgnoredAny>()?;
                skipped = true;
                continue;
            }
            let field = read;
            read += 1;
            if &*name == "candidates" {
                let at = self.0.ops.len();
                self.0.ops.push(Op::Candidates { skipped: false });
                let skipped = map.next_value_seed(CandidatesSeed(&mut *self.0, field))?;
                self.0.ops[at] = Op::Candidates { skipped };
            } else {
                let value = map.next_value()?;
                self.0.ops.push(Op::Field(name, value));
            }
        }
        Ok(skipped)
    }
}

/// A `candidates` array (the chunk's field number `.1`) in one pass; its value says whether
/// elements were skipped.
struct CandidatesSeed<'x, 'r, 'a>(&'x mut Reader<'r, 'a>, usize);

impl<'de> DeserializeSeed<'de> for CandidatesSeed<'_, '_, 'de> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for CandidatesSeed<'_, '_, 'de> {
    type Value = bool;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array of candidates")
    }
    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<bool, S::Error> {
        for position in 0..MAX_ENTRIES_PER_EVENT {
            let candidate = CandidateSeed(&mut *self.0, self.1, position);
            if seq.next_element_seed(candidate)?.is_none() {
                return Ok(false);
            }
        }
        let mut skipped = false;
        while seq.next_element::<IgnoredAny>()?.is_some() {
            skipped = true;
        }
        Ok(skipped)
    }
}

/// A candidate object (field number `.1`, position `.2`) in one pass.
struct CandidateSeed<'x, 'r, 'a>(&'x mut Reader<'r, 'a>, usize, usize);

impl<'de> DeserializeSeed<'de> for CandidateSeed<'_, '_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for CandidateSeed<'_, '_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a candidate")
    }
    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<(), M::Error> {
        let CandidateSeed(reader, field, position) = self;
        let at = reader.ops.len();
        let mut index = None;
        let mut read = 0;
        let mut skipped = false;
        reader.ops.push(Op::Candidate {
            field,
            position,
            index: None,
            skipped: false,
        });
        while let Some(name) = map.next_key::<Text<'de>>()? {
            if read == MAX_FIELDS {
                map.next_value::<IgnoredAny>()?;
                skipped = true;
                continue;
            }
            read += 1;
            match &*name {
                "index" => {
                    let value = map.next_value()?;
                    index = index.or(Some(value));
                }
                "content" => {
                    let content = reader.ops.len();
                    reader.ops.push(Op::Content {
                        role: None,
                        skipped: false,
                    });
                    let (role, skipped) = map.next_value_seed(ContentSeed(&mut *reader))?;
                    reader.ops[content] = Op::Content { role, skipped };
                }
                _ => {
                    let value = map.next_value()?;
                    reader.ops.push(Op::CandidateField(name, value));
                }
            }
        }
        reader.ops[at] = Op::Candidate {
            field,
            position,
            index,
            skipped,
        };
        Ok(())
    }
}

/// A `content` object in one pass: its `role` and whether parts were skipped. (Level by level,
/// a content is a derived struct: a second `role` or `parts` fails it, as here.)
struct ContentSeed<'x, 'r, 'a>(&'x mut Reader<'r, 'a>);

impl<'de> DeserializeSeed<'de> for ContentSeed<'_, '_, 'de> {
    type Value = (Option<&'de RawValue>, bool);
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ContentSeed<'_, '_, 'de> {
    type Value = (Option<&'de RawValue>, bool);
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a content object")
    }
    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
        use serde::de::Error;
        let mut role: Option<Option<&'de RawValue>> = None;
        let mut parts: Option<bool> = None;
        while let Some(name) = map.next_key::<Text<'de>>()? {
            match &*name {
                "role" if role.is_some() => return Err(M::Error::duplicate_field("role")),
                "role" => role = Some(map.next_value()?),
                "parts" if parts.is_some() => return Err(M::Error::duplicate_field("parts")),
                "parts" => parts = Some(map.next_value_seed(PartsSeed(&mut *self.0))?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok((role.flatten(), parts.unwrap_or(false)))
    }
}

/// A content's `parts` (or `null`) in one pass; its value says whether elements were skipped.
struct PartsSeed<'x, 'r, 'a>(&'x mut Reader<'r, 'a>);

impl<'de> DeserializeSeed<'de> for PartsSeed<'_, '_, 'de> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for PartsSeed<'_, '_, 'de> {
    type Value = bool;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array of parts")
    }
    fn visit_none<E>(self) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_seq(self)
    }
    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<bool, S::Error> {
        let reader = self.0;
        for _ in 0..MAX_ENTRIES_PER_EVENT {
            if reader.parts_as_sent {
                match seq.next_element()? {
                    Some(part) => reader.ops.push(Op::Part(part)),
                    None => return Ok(false),
                }
                continue;
            }
            let Some(part) = seq.next_element_seed(PartSeed(&mut *reader.scratch))? else {
                return Ok(false);
            };
            match part {
                WirePart {
                    text: Some(text),
                    thought,
                    thought_signature,
                    only_text: true,
                    ..
                } => reader.ops.push(Op::TextPart {
                    text,
                    thought,
                    signature: thought_signature,
                }),
                _ => reader.not_plain = true,
            }
        }
        let mut skipped = false;
        while seq.next_element::<IgnoredAny>()?.is_some() {
            skipped = true;
        }
        Ok(skipped)
    }
}

/// A part, as far as merging needs it.
struct WirePart<'a> {
    text: Option<Span<'a>>,
    thought: Option<bool>,
    thought_signature: Option<Text<'a>>,
    function_call: bool,
    /// Only `text`, `thought` and `thoughtSignature` fields, all of them read.
    only_text: bool,
}

/// A `thought` value: `true` or `false`, else `None`.
fn flag(raw: &RawValue) -> Option<bool> {
    match raw.get() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// A part object whose `text` and `thoughtSignature` are strings (else an error). A `text`
/// with escapes is unescaped onto the end of the scratch string.
struct PartSeed<'s>(&'s mut String);

impl<'de> DeserializeSeed<'de> for PartSeed<'_> {
    type Value = WirePart<'de>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for PartSeed<'_> {
    type Value = WirePart<'de>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a part")
    }
    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<WirePart<'de>, M::Error> {
        use serde::de::Error;
        let mut part = WirePart {
            text: None,
            thought: None,
            thought_signature: None,
            function_call: false,
            only_text: true,
        };
        let mut read = 0;
        while let Some(name) = map.next_key::<Text<'de>>()? {
            if read == MAX_FIELDS {
                map.next_value::<IgnoredAny>()?;
                part.only_text = false;
                continue;
            }
            read += 1;
            match &*name {
                "text" => {
                    let text = string_span(map.next_value()?, &mut *self.0);
                    part.text = Some(text.ok_or_else(|| M::Error::custom("text is not a string"))?);
                }
                "thought" => part.thought = flag(map.next_value()?),
                "thoughtSignature" => part.thought_signature = Some(map.next_value()?),
                other => {
                    map.next_value::<IgnoredAny>()?;
                    part.function_call |= other == "functionCall";
                    part.only_text = false;
                }
            }
        }
        Ok(part)
    }
}

/// A JSON string `raw` (as sent, quoted) borrowed when it has no escapes, else unescaped onto
/// the end of `scratch`; `None` when `raw` is not a string. (Read as raw JSON and unescaped
/// here, a string costs no allocation: serde_json unescapes into a buffer of its own, new for
/// each chunk.)
fn string_span<'a>(raw: &'a RawValue, scratch: &mut String) -> Option<Span<'a>> {
    let text = raw.get().strip_prefix('"')?.strip_suffix('"')?;
    if memchr::memchr(b'\\', text.as_bytes()).is_none() {
        return Some(Span::Borrowed(text));
    }
    let from = scratch.len();
    let mut rest = text;
    while let Some(at) = memchr::memchr(b'\\', rest.as_bytes()) {
        scratch.push_str(&rest[..at]);
        let unescaped = match rest.as_bytes().get(at + 1) {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            // `\uXXXX` (surrogate pairs too): left to serde_json.
            _ => {
                scratch.truncate(from);
                scratch.push_str(&serde_json::from_str::<Text<'_>>(raw.get()).ok()?);
                return Some(Span::Scratch(from, scratch.len()));
            }
        };
        scratch.push(unescaped);
        rest = &rest[at + 2..];
    }
    scratch.push_str(rest);
    Some(Span::Scratch(from, scratch.len()))
}

// ---------------------------------------------------------------------------------------------
// Folding

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
    /// Other fields (`finishReason`, `safetyRatings`, ...), the last of each, as JSON text.
    fields: Vec<(String, String)>,
    finish_reason: Option<String>,
}

impl Keyed for CandidateState {
    fn key(&self) -> u32 {
        self.index
    }
}

/// Sets `name` to `value` (kept as JSON text) in `fields`, replacing an earlier value, within
/// the budget. A replaced value reuses its string.
fn replace_field(
    fields: &mut Vec<(String, String)>,
    name: &str,
    value: &RawValue,
    budget: &mut ContentBudget,
) {
    if !budget.small_enough(value) {
        return;
    }
    let value = value.get();
    if let Some(slot) = fields.iter_mut().find(|(n, _)| n == name) {
        if slot.1 != value {
            slot.1.clear();
            slot.1.push_str(value);
        }
    } else if budget.charge(name.len() + value.len()) {
        fields.push((name.to_owned(), value.to_owned()));
    }
}

/// A kept value (JSON text) as a tree.
fn tree(json: &str) -> Option<Value> {
    serde_json::from_str(json).ok()
}

impl CandidateState {
    /// Folds a part as sent; returns whether it carried content.
    fn push_part(&mut self, raw: &RawValue, budget: &mut ContentBudget) -> bool {
        let mut unescaped = String::new();
        let mut de = serde_json::Deserializer::from_str(raw.get());
        let read = PartSeed(&mut unescaped)
            .deserialize(&mut de)
            .and_then(|part| de.end().map(|()| part));
        let (text, signature, part) = match read {
            Ok(mut part) => (
                part.text.map(|t| t.get(&unescaped)),
                part.thought_signature.take(),
                part,
            ),
            // Not an object, or a `text` or `thoughtSignature` that does not read as a string:
            // its fields read one by one.
            Err(_) => {
                let fields = serde_json::from_str::<Fields<'_>>(raw.get()).ok();
                let mut text: Option<Text<'_>> = None;
                let mut signature: Option<Text<'_>> = None;
                let mut part = WirePart {
                    text: None,
                    thought: None,
                    thought_signature: None,
                    function_call: false,
                    only_text: fields.as_ref().is_some_and(|f| !f.skipped),
                };
                for (name, value) in fields.iter().flat_map(|f| &f.fields) {
                    match &**name {
                        "text" => text = serde_json::from_str(value.get()).ok(),
                        "thought" => part.thought = flag(value),
                        "thoughtSignature" => signature = serde_json::from_str(value.get()).ok(),
                        "functionCall" => {
                            part.function_call = true;
                            part.only_text = false;
                        }
                        _ => part.only_text = false,
                    }
                }
                let sent = text.is_some();
                unescaped = text.map(Text::into_owned).unwrap_or_default();
                (sent.then_some(unescaped.as_str()), signature, part)
            }
        };
        match text {
            Some(text) if part.only_text => {
                self.push_text(text, part.thought, signature.as_deref(), budget)
            }
            _ => {
                // Not a plain text part: kept as sent.
                let content = part.function_call || text.is_some_and(|t| !t.is_empty());
                if budget.charge(raw.get().len() + PART_COST) {
                    self.parts.push(PartState::Other(raw.to_owned()));
                }
                content
            }
        }
    }

    /// Folds a plain text part; returns whether it carried content.
    fn push_text(
        &mut self,
        text: &str,
        thought: Option<bool>,
        signature: Option<&str>,
        budget: &mut ContentBudget,
    ) -> bool {
        let thought = thought.unwrap_or(false);
        let signature = signature.filter(|s| !s.is_empty());
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
                if kept_signature.is_none() && budget.charge(signature.len()) {
                    *kept_signature = Some(signature.to_owned());
                }
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
            PartState::Other(raw) => tree(raw.get()).unwrap_or(Value::Null),
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
            if let Some(value) = tree(&value) {
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
    /// Top-level fields other than `candidates`, the last of each, as JSON text.
    fields: Vec<(String, String)>,
    started: bool,
    /// Where a chunk's texts with escapes are unescaped (kept between chunks for its
    /// capacity).
    scratch: String,
}

impl GenerateContentFold {
    /// Folds one chunk read as `reading` says.
    fn fold_chunk(
        &mut self,
        event: Event<'_>,
        budget: &mut ContentBudget,
        reading: Reading,
    ) -> Result<Folded, serde_json::Error> {
        let mut scratch = std::mem::take(&mut self.scratch);
        let mut ops = Ops::new();
        let read = read_chunk(event.data, &mut ops, &mut scratch, reading);
        let folded = read.map(|skipped| {
            if skipped {
                budget.exceeded = true;
            }
            self.started = true;
            let mut folded = Folded::default();
            let mut ops = ops.drain(..).peekable();
            while let Some(op) = ops.next() {
                match op {
                    Op::Field(name, value) => {
                        // Nothing follows an error.
                        folded.ended |= &*name == "error" && value.get() != "null";
                        replace_field(&mut self.fields, &name, value, budget);
                    }
                    Op::Candidates { skipped } => {
                        if skipped {
                            budget.exceeded = true;
                        }
                    }
                    op => {
                        let chunk = (event.data, scratch.as_str());
                        folded.content |= self.candidate(op, &mut ops, chunk, budget);
                    }
                }
            }
            folded
        });
        if scratch.capacity() <= SCRATCH_KEPT {
            self.scratch = scratch;
        }
        folded
    }

    /// Folds the candidate `op` (an [`Op::Candidate`]) and the ops of its fields from `ops`;
    /// returns whether it carried content.
    fn candidate<'a>(
        &mut self,
        op: Op<'a>,
        ops: &mut std::iter::Peekable<impl Iterator<Item = Op<'a>>>,
        (data, scratch): (&[u8], &str),
        budget: &mut ContentBudget,
    ) -> bool {
        let Op::Candidate {
            field,
            position,
            index,
            skipped,
        } = op
        else {
            return false;
        };
        if skipped {
            budget.exceeded = true;
        }
        let sent = index.and_then(|v| serde_json::from_str::<u32>(v.get()).ok());
        let index = sent.unwrap_or(u32::try_from(position).unwrap_or(u32::MAX));
        let Some(state) = self.candidates.entry(
            index,
            || budget.charge(ENTRY_COST),
            || CandidateState {
                index,
                ..CandidateState::default()
            },
        ) else {
            while ops.next_if(Op::in_candidate).is_some() {}
            // Past the budget: still content, for the first-token time.
            return candidate_raw(data, field, position).is_some_and(|raw| {
                raw.get().contains("\"text\"") || raw.get().contains("\"functionCall\"")
            });
        };
        state.index_sent |= sent.is_some();
        let mut content = false;
        while let Some(op) = ops.next_if(Op::in_candidate) {
            match op {
                Op::Content { role, skipped } => {
                    if state.role.is_none() {
                        if let Some(role) = role.and_then(raw_string) {
                            if budget.charge(role.len()) {
                                state.role = Some(role);
                            }
                        }
                    }
                    if skipped {
                        budget.exceeded = true;
                    }
                }
                Op::Part(raw) => content |= state.push_part(raw, budget),
                Op::TextPart {
                    text,
                    thought,
                    signature,
                } => {
                    let text = text.get(scratch);
                    content |= state.push_text(text, thought, signature.as_deref(), budget);
                }
                Op::CandidateField(name, value) => {
                    if &*name == "finishReason" {
                        if let Some(reason) = raw_string(value).filter(|r| r.len() <= 256) {
                            state.finish_reason = Some(reason);
                        }
                    }
                    replace_field(&mut state.fields, &name, value, budget);
                }
                Op::Field(..) | Op::Candidates { .. } | Op::Candidate { .. } => {}
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
        self.fold_chunk(event, budget, Reading::OnePass)
    }

    fn into_summary(self) -> ResponseSummary {
        let candidates = self.candidates.into_sorted();
        if !self.started {
            return ResponseSummary::default();
        }
        let usage = self
            .fields
            .iter()
            .find(|(name, _)| name == "usageMetadata")
            .and_then(|(_, value)| usage_from_raw(value));
        let finish_reasons = candidates
            .iter()
            .filter_map(|c| c.finish_reason.clone())
            .collect();
        // Each kept field read once, as a tree; the error, model and id are read from it.
        let mut response = Map::new();
        for (name, value) in self.fields {
            if let Some(value) = tree(&value) {
                response.insert(name, value);
            }
        }
        let error = response.get("error").and_then(error_from_value);
        let text = |name: &str| {
            let text = response.get(name).and_then(Value::as_str);
            text.filter(|t| !t.is_empty()).map(str::to_owned)
        };
        let model = text("modelVersion");
        let id = text("responseId");
        let only_error = candidates.is_empty() && error.is_some();
        if !only_error {
            let candidates = candidates.into_iter().map(CandidateState::into_value);
            response.insert("candidates".into(), Value::Array(candidates.collect()));
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

    #[test]
    fn strings_unescape_as_serde_json_does() {
        let strings = [
            r#""plain""#,
            r#""""#,
            r#""\" \\ \/ \b \f \n \r \t""#,
            r#""end\\""#,
            r#""caf\u00e9 \ud83d\ude00 and \n""#,
            r#""lone \ud800""#,
            "\"caf\u{e9} \u{1f600}\"",
        ];
        let mut scratch = String::from("kept");
        for json in strings {
            let raw: &RawValue = serde_json::from_str(json).unwrap();
            let want = serde_json::from_str::<String>(json).ok();
            let got = string_span(raw, &mut scratch).map(|s| s.get(&scratch).to_owned());
            assert_eq!(got, want, "{json}");
        }
        assert!(scratch.starts_with("kept"));
        for json in ["1", "null", "[\"a\"]", "{}"] {
            let raw: &RawValue = serde_json::from_str(json).unwrap();
            assert!(string_span(raw, &mut scratch).is_none(), "{json}");
        }
    }

    /// A small generator of chunks, usual and odd: candidates, contents and parts of every
    /// shape, escapes, numbers out of range, duplicate keys, cut or non-UTF-8 chunks.
    struct Chunks(u64);

    impl Chunks {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
        fn pick(&mut self, from: &[&str]) -> String {
            from[self.below(from.len() as u64) as usize].to_owned()
        }
        fn string(&mut self) -> String {
            self.pick(&[
                r#""""#,
                r#""Hello""#,
                r#""a\nb \"q\" \/ \t \\""#,
                r#""say \"text""#,
                r#""\u00e9t\u00e9 \ud83d\ude00""#,
                r#""lone \ud800""#,
                r#""text""#,
            ])
        }
        fn odd(&mut self) -> String {
            match self.below(6) {
                0 => self.pick(&["null", "true", "1e400", "-3"]),
                1 => r#"[1, {"text": "in"}]"#.to_owned(),
                2 => r#"{"a": {"b": [1e400]}}"#.to_owned(),
                _ => self.string(),
            }
        }
        fn object(&mut self, fields: Vec<(&str, String)>) -> String {
            let space = self.pick(&["", "", " ", "\n "]);
            let fields: Vec<String> = fields
                .into_iter()
                .map(|(k, v)| format!("\"{k}\":{space}{v}"))
                .collect();
            format!("{{{space}{}}}", fields.join(&format!(",{space}")))
        }
        fn part(&mut self) -> String {
            if self.below(12) == 0 {
                return self.odd();
            }
            let mut fields = Vec::new();
            for _ in 0..1 + self.below(3) {
                let field = match self.below(11) {
                    0..=4 => (
                        "text",
                        if self.below(8) == 0 {
                            self.odd()
                        } else {
                            self.string()
                        },
                    ),
                    5 | 6 => ("thought", self.pick(&["true", "false", "1", "null"])),
                    7 => ("thoughtSignature", self.pick(&[r#""c2ln""#, r#""""#, "3"])),
                    8 => (
                        "functionCall",
                        self.pick(&[r#"{"name": "f", "args": {"a": 1}}"#, "null"]),
                    ),
                    9 => ("te\\u0078t", self.string()),
                    _ => ("inlineData", self.odd()),
                };
                fields.push(field);
            }
            self.object(fields)
        }
        fn parts(&mut self) -> String {
            let parts: Vec<String> = (0..self.below(4)).map(|_| self.part()).collect();
            format!("[{}]", parts.join(","))
        }
        fn content(&mut self) -> String {
            match self.below(14) {
                0 => self.odd(),
                1 => format!(r#"["model", {}]"#, self.parts()),
                2 => r#"["model", null, 1]"#.to_owned(),
                _ => {
                    let mut fields = Vec::new();
                    for _ in 0..1 + self.below(3) {
                        let field = match self.below(6) {
                            0 => ("role", self.pick(&[r#""model""#, r#""""#, "null", "3"])),
                            1 => ("parts", self.pick(&["null", "{}", "1e400"])),
                            2 => ("other", self.odd()),
                            _ => ("parts", self.parts()),
                        };
                        fields.push(field);
                    }
                    self.object(fields)
                }
            }
        }
        fn candidate(&mut self) -> String {
            if self.below(14) == 0 {
                return self.odd();
            }
            let mut fields = Vec::new();
            for _ in 0..1 + self.below(4) {
                let field = match self.below(9) {
                    0 | 1 => (
                        "index",
                        self.pick(&["0", "1", r#""0""#, "-1", "4294967296"]),
                    ),
                    2 => ("finishReason", self.pick(&[r#""STOP""#, r#""""#, "null"])),
                    3 => ("safetyRatings", self.odd()),
                    _ => ("content", self.content()),
                };
                fields.push(field);
            }
            self.object(fields)
        }
        fn chunk(&mut self) -> Vec<u8> {
            let mut fields = Vec::new();
            for _ in 0..1 + self.below(5) {
                let field = match self.below(10) {
                    0..=4 if self.below(12) == 0 => ("candidates", self.odd()),
                    0..=4 => {
                        let all: Vec<String> =
                            (0..1 + self.below(3)).map(|_| self.candidate()).collect();
                        ("candidates", format!("[{}]", all.join(",")))
                    }
                    5 => (
                        "usageMetadata",
                        self.pick(&[r#"{"promptTokenCount": 3, "x": [{"y": 1}]}"#, "5"]),
                    ),
                    6 => ("modelVersion", self.string()),
                    7 => ("responseId", self.string()),
                    8 => (
                        "error",
                        self.pick(&["null", r#"{"code": 500, "status": "INTERNAL"}"#]),
                    ),
                    _ => ("promptFeedback", self.odd()),
                };
                fields.push(field);
            }
            let mut chunk = self.object(fields).into_bytes();
            match self.below(40) {
                0 => chunk.truncate(self.below(chunk.len() as u64) as usize),
                1 => chunk.extend_from_slice(b" \xff"),
                _ => {}
            }
            chunk
        }
    }

    /// Everything a fold of `chunks` (read as `reading` says) records.
    fn record(chunks: &[Vec<u8>], limit: usize, reading: Reading) -> String {
        let mut fold = GenerateContentFold::default();
        let mut budget = ContentBudget::new(limit);
        let mut record = String::new();
        for data in chunks {
            let event = Event { name: b"", data };
            let folded = fold.fold_chunk(event, &mut budget, reading);
            let folded = folded.map_err(|e| e.to_string());
            record += &format!("{folded:?} {}\n", budget.exceeded);
        }
        record + &format!("{:?}", fold.into_summary())
    }

    #[test]
    fn the_three_readings_record_the_same() {
        let mut chunks = Chunks(0x9e37_79b9_7f4a_7c15);
        for _ in 0..5000 {
            let stream: Vec<Vec<u8>> = (0..1 + chunks.below(4)).map(|_| chunks.chunk()).collect();
            let limit = [0, 8, 1 << 20][chunks.below(3) as usize];
            let one_pass = record(&stream, limit, Reading::OnePass);
            for reading in [Reading::PartsAsSent, Reading::ByLevel] {
                let other = record(&stream, limit, reading);
                let stream: Vec<_> = stream.iter().map(|c| String::from_utf8_lossy(c)).collect();
                assert_eq!(one_pass, other, "{reading:?} of {stream:#?}");
            }
        }
    }
}
