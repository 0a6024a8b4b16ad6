//! [`StreamUsage::Ask`](crate::StreamUsage::Ask): a streamed chat completion that did not ask
//! for its usage is sent upstream with `stream_options.include_usage: true`, and the client is
//! given the bytes it would have received without it.
//!
//! The option changes a stream in two ways, both undone here event by event: every chunk gets a
//! `"usage":null` member, and one more chunk — `choices: []` and the `usage` object — comes
//! before `[DONE]`. The call's decoder sees the stream as the provider sent it, so the payload
//! has the provider's usage.

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

/// `stream_options` member added to a request that has none.
const ADDED_OPTIONS: &[u8] = br#","stream_options":{"include_usage":true}"#;
/// `stream_options` value put in place of `null`.
const OPTIONS_OBJECT: &[u8] = br#"{"include_usage":true}"#;
/// Member added to a `stream_options` object that lacks `include_usage`.
const INCLUDE_USAGE: &[u8] = br#""include_usage":true"#;

/// Deserializes a member's raw text, `null` included (a plain `Option` would turn `null`
/// into `None`, and its place in the body would be lost).
fn raw_even_null<'de, D>(deserializer: D) -> Result<Option<&'de RawValue>, D::Error>
where
    D: Deserializer<'de>,
{
    <&'de RawValue>::deserialize(deserializer).map(Some)
}

#[derive(Deserialize)]
struct ChatRequestProbe<'a> {
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default, borrow, deserialize_with = "raw_even_null")]
    stream_options: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct StreamOptionsProbe<'a> {
    #[serde(default, borrow, deserialize_with = "raw_even_null")]
    include_usage: Option<&'a RawValue>,
}

/// Where `raw` (borrowed from `body`) starts in `body`.
fn offset_in(body: &[u8], raw: &RawValue) -> Option<usize> {
    let start = (raw.get().as_ptr() as usize).checked_sub(body.as_ptr() as usize)?;
    (start + raw.get().len() <= body.len()).then_some(start)
}

fn is_json_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r')
}

/// The request body with `stream_options.include_usage: true` added, or `None` when it is left
/// as it is: not a JSON object, not `"stream": true`, or `include_usage` already present —
/// `true`, or `false` (or `null`) that the client chose and gets on the wire.
///
/// Only bytes are inserted (or `null` replaced); the client's own bytes stay as they were.
pub(crate) fn add_include_usage(body: &[u8]) -> Option<Vec<u8>> {
    let first = body.iter().position(|b| !is_json_space(*b))?;
    let last = body.iter().rposition(|b| !is_json_space(*b))?;
    if body[first] != b'{' || body[last] != b'}' {
        return None;
    }
    // Duplicate members, wrong types and malformed JSON are errors: such a body goes as it is.
    let probe: ChatRequestProbe<'_> = serde_json::from_slice(body).ok()?;
    if probe.stream != Some(true) {
        return None;
    }
    let (at, insert, replace_len): (usize, &[u8], usize) = match probe.stream_options {
        None => (last, ADDED_OPTIONS, 0),
        Some(raw) if raw.get() == "null" => (offset_in(body, raw)?, OPTIONS_OBJECT, 4),
        Some(raw) if raw.get().starts_with('{') => {
            let options: StreamOptionsProbe<'_> = serde_json::from_str(raw.get()).ok()?;
            if options.include_usage.is_some() {
                return None;
            }
            let open = offset_in(body, raw)?;
            let empty = raw.get()[1..].trim_start_matches([' ', '\t', '\n', '\r']) == "}";
            let mut rewritten = Vec::with_capacity(body.len() + INCLUDE_USAGE.len() + 1);
            rewritten.extend_from_slice(&body[..=open]);
            rewritten.extend_from_slice(INCLUDE_USAGE);
            if !empty {
                rewritten.push(b',');
            }
            rewritten.extend_from_slice(&body[open + 1..]);
            return Some(rewritten);
        }
        // Not an object: the upstream will refuse it; not ours to change.
        Some(_) => return None,
    };
    let mut rewritten = Vec::with_capacity(body.len() + insert.len());
    rewritten.extend_from_slice(&body[..at]);
    rewritten.extend_from_slice(insert);
    rewritten.extend_from_slice(&body[at + replace_len..]);
    Some(rewritten)
}

/// The longest incomplete event held back before giving up on rewriting (the stream is then
/// passed through as it comes).
const MAX_HELD_EVENT: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Nothing seen yet.
    Start,
    /// Rewriting event by event.
    Events,
    /// Not a stream of the expected shape: everything passes as it comes.
    PassThrough,
}

/// Undoes what `include_usage` added to a chat-completion stream, event by event, on any
/// framing. Holds back only the incomplete event at the end of what arrived (which a client
/// could not use yet); complete events go out at once, untouched unless they are the usage
/// chunk (dropped) or carry `"usage":null` (removed from the chunk).
#[derive(Debug)]
pub(crate) struct UsageStrip {
    mode: Mode,
    tail: BytesMut,
}

/// What becomes of one complete event.
enum Rewrite {
    Keep,
    Drop,
    /// Remove these bytes (relative to the event's start).
    Cut(usize, usize),
}

impl Default for UsageStrip {
    fn default() -> Self {
        Self::new()
    }
}

impl UsageStrip {
    pub(crate) fn new() -> Self {
        UsageStrip {
            mode: Mode::Start,
            tail: BytesMut::new(),
        }
    }

    /// Whether bytes are held back, waiting for the end of their event.
    pub(crate) fn holds_bytes(&self) -> bool {
        !self.tail.is_empty()
    }

    /// A data frame arrived: the bytes the client gets now (possibly none).
    pub(crate) fn frame(&mut self, data: Bytes) -> Bytes {
        if self.mode == Mode::Start {
            match data.iter().find(|b| !is_json_space(**b)) {
                None => return data,
                // A JSON body (an error served with 200, say) is not a stream.
                Some(b'{' | b'[') => self.mode = Mode::PassThrough,
                Some(_) => self.mode = Mode::Events,
            }
        }
        if self.mode == Mode::PassThrough {
            return data;
        }
        if self.tail.is_empty() {
            let (events_end, cuts) = scan(&data, false);
            if cuts.is_empty() {
                self.tail.extend_from_slice(&data[events_end..]);
                return self.checked(data.slice(..events_end));
            }
            let out = apply(&data[..events_end], &cuts);
            self.tail.extend_from_slice(&data[events_end..]);
            return self.checked(out);
        }
        self.tail.extend_from_slice(&data);
        let (events_end, cuts) = scan(&self.tail, false);
        let done = self.tail.split_to(events_end).freeze();
        let out = if cuts.is_empty() {
            done
        } else {
            apply(&done, &cuts)
        };
        self.checked(out)
    }

    /// The body ended: what is left for the client.
    pub(crate) fn finish(&mut self) -> Bytes {
        let rest = std::mem::take(&mut self.tail);
        if self.mode != Mode::Events || rest.is_empty() {
            return rest.freeze();
        }
        let (events_end, cuts) = scan(&rest, true);
        let mut out = BytesMut::from(&apply(&rest[..events_end], &cuts)[..]);
        out.extend_from_slice(&rest[events_end..]);
        out.freeze()
    }

    /// Gives up on an event that grows past [`MAX_HELD_EVENT`]: it and what follows pass
    /// through.
    fn checked(&mut self, out: Bytes) -> Bytes {
        if self.tail.len() <= MAX_HELD_EVENT {
            return out;
        }
        self.mode = Mode::PassThrough;
        let mut all = BytesMut::from(&out[..]);
        all.extend_from_slice(&std::mem::take(&mut self.tail));
        all.freeze()
    }
}

/// The bytes of `events` less the `cuts` (sorted, disjoint ranges).
fn apply(events: &[u8], cuts: &[(usize, usize)]) -> Bytes {
    let removed: usize = cuts.iter().map(|(a, b)| b - a).sum();
    let mut out = BytesMut::with_capacity(events.len() - removed);
    let mut at = 0;
    for &(start, end) in cuts {
        out.extend_from_slice(&events[at..start]);
        at = end;
    }
    out.extend_from_slice(&events[at..]);
    out.freeze()
}

/// Finds the complete events in `buf`: returns where the last one ends and the byte ranges to
/// remove from them. `at_end`: the body is over, a final `\r` ends its line.
fn scan(buf: &[u8], at_end: bool) -> (usize, Vec<(usize, usize)>) {
    let mut cuts = Vec::new();
    let mut event_start = 0;
    let mut line_start = 0;
    let mut at = 0;
    let mut events_end = 0;
    while let Some(found) = memchr::memchr2(b'\n', b'\r', &buf[at..]) {
        let i = at + found;
        let terminator = if buf[i] == b'\r' {
            match buf.get(i + 1) {
                Some(b'\n') => 2,
                Some(_) => 1,
                // A `\r` that may yet be followed by `\n`: wait for the next byte.
                None if !at_end => break,
                None => 1,
            }
        } else {
            1
        };
        let next = i + terminator;
        if i == line_start {
            // A blank line: the event is complete.
            match rewrite(&buf[event_start..next]) {
                Rewrite::Keep => {}
                Rewrite::Drop => cuts.push((event_start, next)),
                Rewrite::Cut(a, b) => cuts.push((event_start + a, event_start + b)),
            }
            event_start = next;
            events_end = next;
        }
        line_start = next;
        at = next;
    }
    (events_end, cuts)
}

/// What to do with one complete event (its bytes up to and including the blank line).
fn rewrite(event: &[u8]) -> Rewrite {
    // Only an event that is one `data:` line is a chunk; comments, `event:` lines, ids and
    // multi-line data pass as they are.
    let Some(line_end) = memchr::memchr2(b'\n', b'\r', event) else {
        return Rewrite::Keep;
    };
    let line = &event[..line_end];
    let rest = &event[line_end..];
    if rest.iter().any(|b| !matches!(b, b'\n' | b'\r')) || rest.len() > 4 {
        return Rewrite::Keep;
    }
    let Some(value) = line.strip_prefix(b"data:") else {
        return Rewrite::Keep;
    };
    let json_start = 5 + usize::from(value.first() == Some(&b' '));
    let json = &event[json_start..line_end];
    if memchr::memmem::find(json, b"\"usage\"").is_none() {
        return Rewrite::Keep;
    }
    let Some(members) = top_level_members(json) else {
        return Rewrite::Keep;
    };
    let Some(usage) = members.iter().position(|m| m.key == b"\"usage\"") else {
        return Rewrite::Keep;
    };
    let value = &json[members[usage].value.0..members[usage].value.1];
    if value == b"null" {
        let (start, end) = match (usage.checked_sub(1), members.get(usage + 1)) {
            // `,"usage":null` after the previous member's value.
            (Some(previous), _) => (members[previous].value.1, members[usage].value.1),
            // The first member: `"usage":null,` up to the next key.
            (None, Some(next)) => (members[usage].start, next.start),
            (None, None) => (members[usage].start, members[usage].value.1),
        };
        return Rewrite::Cut(json_start + start, json_start + end);
    }
    let empty_choices = members.iter().any(|m| {
        m.key == b"\"choices\""
            && json[m.value.0..m.value.1]
                .iter()
                .filter(|b| !is_json_space(**b))
                .eq(b"[]".iter())
    });
    if value.first() == Some(&b'{') && empty_choices {
        return Rewrite::Drop;
    }
    Rewrite::Keep
}

/// One member of a JSON object: where it starts (its key's quote), its key's raw bytes, and
/// its value's span.
struct Member<'a> {
    start: usize,
    key: &'a [u8],
    value: (usize, usize),
}

/// The members of the top-level object `json`, or `None` when it is not one (well formed as
/// far as this scan can tell; anything odd is left alone by the caller).
fn top_level_members(json: &[u8]) -> Option<Vec<Member<'_>>> {
    let mut members = Vec::new();
    let skip_space = |mut i: usize| {
        while json.get(i).is_some_and(|b| is_json_space(*b)) {
            i += 1;
        }
        i
    };
    let mut i = skip_space(0);
    if json.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_space(i + 1);
    if json.get(i) == Some(&b'}') {
        return Some(members);
    }
    loop {
        let start = i;
        if json.get(i) != Some(&b'"') {
            return None;
        }
        let key_end = string_end(json, i)?;
        i = skip_space(key_end);
        if json.get(i) != Some(&b':') {
            return None;
        }
        let value_start = skip_space(i + 1);
        let value_end = value_end(json, value_start)?;
        members.push(Member {
            start,
            key: &json[start..key_end],
            value: (value_start, value_end),
        });
        i = skip_space(value_end);
        match json.get(i) {
            Some(b',') => i = skip_space(i + 1),
            Some(b'}') => return Some(members),
            _ => return None,
        }
    }
}

/// The end (exclusive) of the string starting with the quote at `start`.
fn string_end(json: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    loop {
        match *json.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
}

/// The end (exclusive) of the value starting at `start`.
fn value_end(json: &[u8], start: usize) -> Option<usize> {
    match *json.get(start)? {
        b'"' => string_end(json, start),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = start;
            loop {
                match *json.get(i)? {
                    b'"' => {
                        i = string_end(json, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        _ => {
            let len = json[start..]
                .iter()
                .position(|b| matches!(b, b',' | b'}' | b']') || is_json_space(*b))
                .unwrap_or(json.len() - start);
            (len > 0).then_some(start + len)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn added(body: &str) -> Option<String> {
        add_include_usage(body.as_bytes()).map(|b| String::from_utf8(b).unwrap())
    }

    #[test]
    fn request_gets_include_usage_only_when_it_lacks_it() {
        assert_eq!(
            added(r#"{"model":"m","stream":true}"#).as_deref(),
            Some(r#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#)
        );
        assert_eq!(
            added("{\"stream\": true }\n").as_deref(),
            Some("{\"stream\": true ,\"stream_options\":{\"include_usage\":true}}\n")
        );
        assert_eq!(
            added(r#"{"stream":true,"stream_options":null}"#).as_deref(),
            Some(r#"{"stream":true,"stream_options":{"include_usage":true}}"#)
        );
        assert_eq!(
            added(r#"{"stream":true,"stream_options":{ }}"#).as_deref(),
            Some(r#"{"stream":true,"stream_options":{"include_usage":true }}"#)
        );
        assert_eq!(
            added(r#"{"stream":true,"stream_options":{"include_obfuscation":false}}"#).as_deref(),
            Some(
                r#"{"stream":true,"stream_options":{"include_usage":true,"include_obfuscation":false}}"#
            )
        );
        for unchanged in [
            r#"{"stream":true,"stream_options":{"include_usage":true}}"#,
            r#"{"stream":true,"stream_options":{"include_usage":false}}"#,
            r#"{"stream":false}"#,
            r#"{"model":"m"}"#,
            r#"{"stream":true,"stream":true}"#,
            r#"{"stream":"yes"}"#,
            r#"[{"stream":true}]"#,
            r#"{"stream":true"#,
            "not json",
        ] {
            assert_eq!(added(unchanged), None, "{unchanged}");
        }
    }

    fn strip_all(frames: &[&[u8]]) -> Vec<u8> {
        let mut strip = UsageStrip::new();
        let mut out = Vec::new();
        for frame in frames {
            out.extend_from_slice(&strip.frame(Bytes::copy_from_slice(frame)));
        }
        out.extend_from_slice(&strip.finish());
        out
    }

    #[test]
    fn usage_null_members_and_the_usage_chunk_go() {
        let with = b"data: {\"id\":\"a\",\"choices\":[{\"delta\":{\"content\":\"usage\"}}],\"usage\":null,\"o\":\"x\"}\r\n\r\n\
data: {\"usage\":null,\"choices\":[]}\n\n\
data: {\"id\":\"a\",\"choices\":[],\"usage\":{\"prompt_tokens\":1}}\n\n\
data: [DONE]\n\n";
        let without = b"data: {\"id\":\"a\",\"choices\":[{\"delta\":{\"content\":\"usage\"}}],\"o\":\"x\"}\r\n\r\n\
data: {\"choices\":[]}\n\n\
data: [DONE]\n\n";
        assert_eq!(strip_all(&[with]), without);
        for cut in 0..with.len() {
            assert_eq!(
                strip_all(&[&with[..cut], &with[cut..]]),
                without,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn other_events_and_json_bodies_pass() {
        let events = b": comment\n\nevent: error\ndata: {\"usage\":null}\n\ndata: {\"choices\":[{}],\"usage\":{\"a\":1}}\n\n";
        assert_eq!(strip_all(&[events]), events);
        let json = b"{\"error\":{\"message\":\"x\"},\"usage\":null}\n\n";
        assert_eq!(strip_all(&[json]), json);
        let nested = b"data: {\"choices\":[{\"usage\":null}]}\n\n";
        assert_eq!(strip_all(&[nested]), nested);
    }
}
