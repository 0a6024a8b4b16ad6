//! What a stream assembler may keep, and the small helpers every family's assembler shares.
//!
//! Memory of a streamed call grows with its assembled content, never with its raw bytes: each
//! family's fold appends deltas through one [`ContentBudget`], which cuts the record at a clean
//! prefix (and marks it truncated) when a limit is reached.

use serde_json::value::RawValue;
use serde_json::Value;

use super::read::Text;

/// The largest JSON text read into a `Value` tree: a tree takes up to ~16 times its text
/// (`[0,0,...]`), so larger texts are kept as text.
pub(crate) const TREE_LIMIT: usize = 1 << 20;

/// The largest `usage` or `error` value kept from a stream (they are replaced, not
/// accumulated), or read into a tree out of a large body.
pub(crate) const SMALL_VALUE: usize = 64 << 10;

/// What a stream may keep: assembled text (`content`), and everything else — per-index state,
/// ids, roles, finish reasons, output items, usage (`state`). Past either, nothing more is kept
/// anywhere, so the record is a clean prefix of the stream, marked truncated.
#[derive(Debug)]
pub(crate) struct ContentBudget {
    content: usize,
    state: usize,
    /// Something was not kept: the record is cut short.
    pub(crate) exceeded: bool,
}

/// What keeping one choice, tool call or output item costs, beyond its strings.
pub(crate) const ENTRY_COST: usize = 256;
/// The most choices (or tool calls of one delta) read from one event: more than the state
/// budget can keep at the default limit. The rest are skipped unread and the record says
/// truncated.
pub(crate) const MAX_ENTRIES_PER_EVENT: usize = 4096;

impl ContentBudget {
    pub(crate) fn new(max_content: usize) -> Self {
        ContentBudget {
            content: max_content,
            state: (max_content / 8).max(64 << 10),
            exceeded: false,
        }
    }

    /// Appends `delta`, or as much of it as fits (cut at a character boundary).
    #[inline]
    pub(crate) fn append(&mut self, target: &mut String, delta: &str) {
        if self.exceeded {
            return;
        }
        if delta.len() <= self.content {
            self.content -= delta.len();
            target.push_str(delta);
            return;
        }
        let mut cut = self.content;
        while !delta.is_char_boundary(cut) {
            cut -= 1;
        }
        target.push_str(&delta[..cut]);
        self.content = 0;
        self.exceeded = true;
    }

    /// Charges `bytes` of kept state; `false` (and nothing more is kept) when they do not fit.
    #[inline]
    pub(crate) fn charge(&mut self, bytes: usize) -> bool {
        if self.exceeded {
            return false;
        }
        if bytes <= self.state {
            self.state -= bytes;
            return true;
        }
        self.state = 0;
        self.exceeded = true;
        false
    }

    /// Sets `slot` to `value` if it is empty and `value` is not, within the budget.
    #[inline]
    pub(crate) fn set_if_empty(&mut self, slot: &mut Option<String>, value: Option<Text<'_>>) {
        if slot.is_none() {
            if let Some(value) = value.filter(|v| !v.is_empty()) {
                if self.charge(value.len()) {
                    *slot = Some(value.into_owned());
                }
            }
        }
    }

    /// A copy of a value that is replaced rather than accumulated (usage, an error), if it is
    /// small; a larger one is not kept, and the record says truncated.
    pub(crate) fn small_value(&mut self, raw: &RawValue) -> Option<Box<RawValue>> {
        self.small_enough(raw).then(|| raw.to_owned())
    }

    /// Whether a value that is replaced rather than accumulated is small enough to keep (see
    /// [`small_value`](Self::small_value)); a larger one marks the record truncated.
    pub(crate) fn small_enough(&mut self, raw: &RawValue) -> bool {
        if raw.get().len() <= SMALL_VALUE {
            return true;
        }
        self.exceeded = true;
        false
    }
}

/// Appends `delta` to an optional string, creating it on first use.
#[inline]
pub(crate) fn append_opt(budget: &mut ContentBudget, slot: &mut Option<String>, delta: &str) {
    budget.append(slot.get_or_insert_with(String::new), delta);
}

/// An assembled string without the spare capacity its growth left.
pub(crate) fn fitted(mut text: String) -> String {
    text.shrink_to_fit();
    text
}

/// A kept value as a tree (kept values are small: see [`ContentBudget::small_value`]).
pub(crate) fn small_tree(raw: &RawValue) -> Option<Value> {
    serde_json::from_str(raw.get()).ok()
}

/// Tool-call inputs rebuilt from streamed JSON fragments (Anthropic's `input_json_delta`,
/// Bedrock's `toolUse.input`), and how many of them could only be kept as text.
#[derive(Debug, Default)]
pub(crate) struct FragmentedInputs {
    /// Fragments that were not complete JSON at the end.
    unparsed: u32,
    /// Complete JSON too large to hold as a tree.
    large: u32,
}

impl FragmentedInputs {
    /// The JSON the fragments make, or — when they are not complete JSON, or larger than
    /// [`TREE_LIMIT`] — their text, counted. Checked before a tree is built: a tree of a cut or
    /// hostile text would cost many times the text.
    pub(crate) fn parse(&mut self, fragments: String) -> Value {
        let complete = serde_json::from_str::<serde::de::IgnoredAny>(&fragments).is_ok();
        if complete && fragments.len() <= TREE_LIMIT {
            if let Ok(input) = serde_json::from_str::<Value>(&fragments) {
                return input;
            }
        }
        if complete {
            self.large += 1;
        } else {
            self.unparsed += 1;
        }
        Value::String(fitted(fragments))
    }

    /// What the record says when an input was kept as text; `what` names the inputs (e.g.
    /// `tool_use inputs streamed as input_json_delta`).
    pub(crate) fn decode_error(&self, what: &str) -> Option<String> {
        match (self.unparsed, self.large) {
            (0, 0) => None,
            (unparsed, large) => Some(format!(
                "of the {what}, {unparsed} are not complete JSON and {large} are larger than \
                 {TREE_LIMIT} bytes; those are kept as text"
            )),
        }
    }
}
