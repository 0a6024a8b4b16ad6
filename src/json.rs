//! [`Json`]: a JSON value kept as compact text, parsed only when someone looks inside.
//!
//! Messages, tools and responses are recorded as they came over the wire. Keeping them as text
//! (instead of a `serde_json::Value` tree) saves the tree's allocations on the request path, and
//! lets a JSON writer copy them out verbatim.

use std::fmt;
use std::ops::Deref;
use std::sync::OnceLock;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::Value;

/// A JSON value of the payload (messages, tools, a response, ...), kept in the form it was made
/// in: the compact JSON text that came over the wire, or the tree a stream was assembled into.
/// The other form is made on first use.
///
/// It dereferences to a [`serde_json::Value`], so it reads like one:
///
/// ```
/// use llm_observability::Json;
/// let messages: Json = serde_json::from_str(r#"[{"role": "user", "content": "hi"}]"#)?;
/// assert_eq!(messages[0]["content"], "hi");
/// assert_eq!(messages.text(), r#"[{"content":"hi","role":"user"}]"#);
/// # Ok::<(), serde_json::Error>(())
/// ```
///
/// The text never contains a line break outside a string, so a JSON line stays one line.
/// `serde_json` writes the text verbatim; other serde formats see `serde_json`'s raw-value
/// wrapper for it, so serialize [`value`](Self::value) with those.
pub struct Json {
    text: OnceLock<Box<RawValue>>,
    tree: OnceLock<Value>,
}

impl Json {
    /// Keeps a copy of `raw`, with the whitespace between tokens removed if it had line breaks.
    pub(crate) fn from_raw(raw: &RawValue) -> Json {
        if has_line_break(raw.get()) {
            Json::from_valid_text(raw.get())
        } else {
            Json::from_text(raw.to_owned())
        }
    }

    /// Keeps a copy of `text`, which has been checked to be one JSON value, with the whitespace
    /// between tokens removed if it had line breaks.
    pub(crate) fn from_valid_text(text: &str) -> Json {
        let kept = if has_line_break(text) {
            compact(text)
        } else {
            text.to_owned()
        };
        match RawValue::from_string(kept) {
            Ok(raw) => Json::from_text(raw),
            // Unreachable for valid JSON; the tree is right for any input.
            Err(_) => Json::from(serde_json::from_str::<Value>(text).unwrap_or(Value::Null)),
        }
    }

    fn from_text(text: Box<RawValue>) -> Json {
        Json {
            text: OnceLock::from(text),
            tree: OnceLock::new(),
        }
    }

    /// The compact JSON text.
    pub fn text(&self) -> &str {
        self.text
            .get_or_init(|| {
                // A `Value` always serializes (its map keys are strings).
                serde_json::value::to_raw_value(self.value())
                    .unwrap_or_else(|_| RawValue::NULL.to_owned())
            })
            .get()
    }

    /// The value.
    pub fn value(&self) -> &Value {
        self.tree.get_or_init(|| self.parse_text())
    }

    fn parse_text(&self) -> Value {
        match self.text.get() {
            // The text is valid JSON by construction.
            Some(text) => serde_json::from_str(text.get()).unwrap_or(Value::Null),
            None => Value::Null,
        }
    }

    /// The value, to change in place (for [processors](crate::process)); the text is made
    /// anew from it when next needed.
    ///
    /// ```
    /// use llm_observability::Json;
    /// let mut message: Json = serde_json::from_str(r#"{"role":"user","content":"my card is 4111"}"#)?;
    /// message.value_mut()["content"] = "[redacted]".into();
    /// assert_eq!(message.text(), r#"{"content":"[redacted]","role":"user"}"#);
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn value_mut(&mut self) -> &mut Value {
        let value = self.tree.take().unwrap_or_else(|| self.parse_text());
        self.text = OnceLock::new();
        let _ = self.tree.set(value);
        match self.tree.get_mut() {
            Some(value) => value,
            None => unreachable!("the tree was set just above"),
        }
    }

    /// Changes the value with `change`.
    ///
    /// ```
    /// use llm_observability::Json;
    /// let mut messages = Json::from(serde_json::json!([{"role": "user", "content": "hi"}]));
    /// messages.map(|value| {
    ///     for message in value.as_array_mut().into_iter().flatten() {
    ///         message["content"] = "[redacted]".into();
    ///     }
    /// });
    /// assert_eq!(messages[0]["content"], "[redacted]");
    /// ```
    pub fn map(&mut self, change: impl FnOnce(&mut Value)) {
        change(self.value_mut());
    }

    /// Replaces the value.
    pub fn replace(&mut self, value: Value) {
        *self = Json::from(value);
    }

    /// About how many bytes the value holds: its text's length, or for a tree the length of
    /// its strings plus a little per node. Cheap: no text is made.
    pub(crate) fn approx_len(&self) -> usize {
        match self.text.get() {
            Some(text) => text.get().len(),
            None => tree_len(self.value()),
        }
    }

    /// The value, owned.
    pub fn into_value(mut self) -> Value {
        self.tree.take().unwrap_or_else(|| self.parse_text())
    }
}

/// Keeps the tree; the text is made when someone asks for it.
impl From<Value> for Json {
    fn from(value: Value) -> Json {
        Json {
            text: OnceLock::new(),
            tree: OnceLock::from(value),
        }
    }
}

impl Deref for Json {
    type Target = Value;

    fn deref(&self) -> &Value {
        self.value()
    }
}

impl Clone for Json {
    fn clone(&self) -> Json {
        match self.text.get() {
            Some(text) => Json::from_text(text.clone()),
            None => Json::from(self.value().clone()),
        }
    }
}

/// Equal when the values are equal, whatever the key order or number spelling.
impl PartialEq for Json {
    fn eq(&self, other: &Json) -> bool {
        let same_text =
            matches!((self.text.get(), other.text.get()), (Some(a), Some(b)) if a.get() == b.get());
        same_text || self.value() == other.value()
    }
}

impl PartialEq<Value> for Json {
    fn eq(&self, other: &Value) -> bool {
        self.value() == other
    }
}

impl fmt::Debug for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.text.get() {
            Some(text) => f.write_str(text.get()),
            None => write!(f, "{}", self.value()),
        }
    }
}

impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl Serialize for Json {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.text.get() {
            Some(text) => text.serialize(serializer),
            None => self.value().serialize(serializer),
        }
    }
}

/// Reads any self-describing format (through a `Value`).
impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Json, D::Error> {
        Value::deserialize(deserializer).map(Json::from)
    }
}

fn tree_len(value: &Value) -> usize {
    const NODE: usize = 16;
    match value {
        Value::String(text) => NODE + text.len(),
        Value::Array(items) => NODE + items.iter().map(tree_len).sum::<usize>(),
        Value::Object(fields) => {
            NODE + fields
                .iter()
                .map(|(key, value)| key.len() + tree_len(value))
                .sum::<usize>()
        }
        _ => NODE,
    }
}

/// Valid JSON `text` without whitespace outside its strings.
fn compact(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b' ' | b'\t' | b'\n' | b'\r' => at += 1,
            b'"' => {
                let end = string_end(bytes, at + 1);
                out.extend_from_slice(&bytes[at..end]);
                at = end;
            }
            other => {
                out.push(other);
                at += 1;
            }
        }
    }
    // Only ASCII whitespace was left out, so this is still UTF-8.
    String::from_utf8(out).unwrap_or_else(|_| text.to_owned())
}

/// How deep a kept JSON value may nest. A record holds its values two levels down, and
/// `serde_json` reads at most 128 levels: deeper, a record could be written but not read back.
pub(crate) const MAX_DEPTH: usize = 100;

/// Whether valid JSON `text` nests arrays and objects deeper than [`MAX_DEPTH`].
pub(crate) fn nested_too_deep(text: &[u8]) -> bool {
    // Fewer openers than the limit cannot nest deeper: one fast count settles most bodies.
    if memchr::memchr2_iter(b'[', b'{', text).count() <= MAX_DEPTH {
        return false;
    }
    let mut depth = 0usize;
    let mut at = 0;
    while at < text.len() {
        match text[at] {
            b'"' => {
                at = string_end(text, at + 1);
                continue;
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        at += 1;
    }
    false
}

/// The error for a body nested too deep to be kept.
pub(crate) fn too_deep_error(what: &str) -> serde_json::Error {
    serde::de::Error::custom(format!(
        "{what} nests deeper than {MAX_DEPTH} levels; not kept (a record could not be read back)"
    ))
}

/// In valid JSON a line break can only be whitespace between tokens.
fn has_line_break(text: &str) -> bool {
    memchr::memchr2(b'\n', b'\r', text.as_bytes()).is_some()
}

/// The index just past the closing quote of a string whose contents start at `from`.
fn string_end(bytes: &[u8], mut from: usize) -> usize {
    while let Some(offset) = memchr::memchr2(b'"', b'\\', &bytes[from..]) {
        let at = from + offset;
        if bytes[at] == b'"' {
            return at + 1;
        }
        from = at + 2; // skip the escaped character
        if from >= bytes.len() {
            break;
        }
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn raw(text: &str) -> Box<RawValue> {
        serde_json::from_str(text).expect("valid JSON")
    }

    #[test]
    fn depth_is_measured_outside_strings() {
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert!(nested_too_deep(deep.as_bytes()));
        let at_limit = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(!nested_too_deep(at_limit.as_bytes()));
        let wide = format!("[{}]", vec!["[]"; 5000].join(","));
        assert!(!nested_too_deep(wide.as_bytes()));
        let in_strings = format!("[\"{}\"]", "[{".repeat(500));
        assert!(!nested_too_deep(in_strings.as_bytes()));
    }

    #[test]
    fn compact_text_is_kept_verbatim() {
        let text = r#"{"b": 1, "a": [true, null, "x y"]}"#;
        assert_eq!(Json::from_raw(&raw(text)).text(), text);
    }

    #[test]
    fn pretty_text_loses_its_line_breaks_not_its_strings() {
        let text = "{\n  \"a b\": \"line\\nbreak \\\" \\\\\",\r\n\t\"c\": [ 1 , 2 ]\n}";
        let json = Json::from_raw(&raw(text));
        assert_eq!(json.text(), r#"{"a b":"line\nbreak \" \\","c":[1,2]}"#);
        assert_eq!(json["a b"], "line\nbreak \" \\");
    }

    #[test]
    fn a_tree_is_written_without_a_text_copy_and_gives_its_text_on_demand() {
        let json = Json::from(json!({"b": [1, "x"], "a": null}));
        assert!(json.text.get().is_none());
        assert_eq!(
            serde_json::to_string(&json).unwrap(),
            r#"{"a":null,"b":[1,"x"]}"#
        );
        assert!(json.text.get().is_none());
        assert_eq!(json.text(), r#"{"a":null,"b":[1,"x"]}"#);
        assert_eq!(json.clone(), json);
    }

    #[test]
    fn values_compare_by_content() {
        let json = Json::from_raw(&raw(r#"{"b":1,"a":2}"#));
        assert_eq!(json, Json::from(json!({"a": 2, "b": 1})));
        assert_eq!(json, json!({"a": 2, "b": 1}));
    }

    #[test]
    fn writes_verbatim_inside_a_record() {
        let record = json!({"x": Json::from_raw(&raw("[1,  2]"))});
        assert_eq!(record.to_string(), r#"{"x":[1,2]}"#);
        let line = serde_json::to_string(&vec![Json::from_raw(&raw("[1,  2]"))]).unwrap();
        assert_eq!(line, "[[1,  2]]");
    }

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "[ -~\\n\\t\"\\\\é]{0,12}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
                prop::collection::btree_map("[ -~\"\\\\]{0,6}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn compacting_pretty_json_gives_the_compact_json(value in any_json()) {
            let pretty = serde_json::to_string_pretty(&value).unwrap();
            let json = Json::from_raw(&raw(&pretty));
            prop_assert_eq!(json.text(), value.to_string());
        }
    }
}
