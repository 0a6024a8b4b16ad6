//! Incremental splitter of one JSON array written piece by piece (Gemini's
//! `streamGenerateContent` without `alt=sse`): one event per element.
//!
//! Fed arbitrary chunks, it follows only the array's top level — strings (with their escapes)
//! and nesting depth — and keeps the bytes of the element being read. An element longer than the
//! limit is skipped (and counted) up to its end; bytes after the closing `]`, or a body that is
//! not an array, stop the splitting (said by [`ArraySplitter::malformed`]); an array that never
//! closes yields the elements that did, and when the body ended by itself that is said too.

use super::framing::reserve_within;
use super::Event;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    /// Before the opening `[` (blanks and a BOM allowed).
    Start,
    /// Between elements: blanks, `,`, or the closing `]`.
    Between,
    /// Inside an element.
    Element,
    /// After the closing `]`: only blanks may follow.
    End,
    /// Not a JSON array (or bytes after its end): nothing more is split.
    Malformed,
}

/// Splitter state carried across chunks.
#[derive(Debug)]
pub(crate) struct ArraySplitter {
    position: Position,
    /// Nesting depth inside the current element (0: its top level).
    depth: u32,
    in_string: bool,
    /// The previous byte in a string was a `\`.
    escaped: bool,
    /// The current element's bytes so far, when it spans chunks.
    element: Vec<u8>,
    /// The current element grew past `max_element`: it is followed to its end, not kept.
    skipping: bool,
    max_element: usize,
    oversized: u64,
    /// How many bytes of a leading BOM were matched.
    bom_matched: usize,
    /// The body ended by itself before the array closed: how.
    cut: Option<&'static str>,
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Why (part of) the body was not split.
mod why {
    pub(super) const NOT_AN_ARRAY: &str =
        "streamed body is not one JSON array; splitting stopped there";
    pub(super) const UNCLOSED: &str = "streamed JSON array ended before its closing `]`";
    pub(super) const CUT_ELEMENT: &str =
        "streamed JSON array ended inside an element, before its closing `]`; that element was not decoded";
}

impl ArraySplitter {
    /// A splitter that skips (and counts) any element longer than `max_element` bytes.
    pub(crate) fn new(max_element: usize) -> Self {
        ArraySplitter {
            position: Position::Start,
            depth: 0,
            in_string: false,
            escaped: false,
            element: Vec::new(),
            skipping: false,
            max_element,
            oversized: 0,
            bom_matched: 0,
            cut: None,
        }
    }

    /// Elements that exceeded the size limit and were skipped.
    pub(crate) fn oversized(&self) -> u64 {
        self.oversized
    }

    /// Why the body was not split whole, if it was not: it was not one JSON array (or had
    /// bytes after it), or it ended before the array closed.
    pub(crate) fn malformed(&self) -> Option<&'static str> {
        match self.position {
            Position::Malformed => Some(why::NOT_AN_ARRAY),
            _ => self.cut,
        }
    }

    /// Feeds one chunk, calling `on_event` for every element it completes.
    pub(crate) fn feed(&mut self, chunk: &[u8], on_event: &mut impl FnMut(Event<'_>)) {
        let mut at = 0;
        // Where the current element starts in this chunk, when it started here (else it goes
        // on from an earlier chunk, from this one's first byte).
        let mut started_here: Option<usize> = None;
        while at < chunk.len() {
            let byte = chunk[at];
            match self.position {
                Position::Start => {
                    if self.bom_matched < BOM.len() && byte == BOM[self.bom_matched] {
                        self.bom_matched += 1;
                    } else if byte == b'[' {
                        self.bom_matched = BOM.len();
                        self.position = Position::Between;
                    } else if !byte.is_ascii_whitespace() {
                        self.position = Position::Malformed;
                    }
                    at += 1;
                }
                Position::Between => {
                    match byte {
                        b']' => self.position = Position::End,
                        b',' => {}
                        _ if byte.is_ascii_whitespace() => {}
                        _ => {
                            self.position = Position::Element;
                            self.depth = 0;
                            started_here = Some(at);
                            continue;
                        }
                    }
                    at += 1;
                }
                Position::Element if self.in_string => {
                    // Jump to the next quote or backslash.
                    if self.escaped {
                        self.escaped = false;
                        at += 1;
                        continue;
                    }
                    match memchr::memchr2(b'"', b'\\', &chunk[at..]) {
                        Some(offset) => {
                            at += offset;
                            if chunk[at] == b'\\' {
                                self.escaped = true;
                            } else {
                                self.in_string = false;
                                if self.depth == 0 {
                                    // A string element ends with its closing quote.
                                    let start = started_here.take();
                                    let element = &chunk[start.unwrap_or(0)..=at];
                                    self.complete(element, start.is_some(), on_event);
                                    self.position = Position::Between;
                                }
                            }
                            at += 1;
                        }
                        None => at = chunk.len(),
                    }
                }
                Position::Element => {
                    let end = match byte {
                        b'"' => {
                            self.in_string = true;
                            None
                        }
                        b'{' | b'[' => {
                            // Saturating: 4 GiB of `[` must not overflow it.
                            self.depth = self.depth.saturating_add(1);
                            None
                        }
                        // An object or array element ends with its closing bracket: handed on
                        // at once, not when the next element's `,` arrives (a stream writes
                        // that with the next chunk, or never, if it is cut there).
                        b'}' | b']' if self.depth > 0 => {
                            self.depth -= 1;
                            (self.depth == 0).then_some((at + 1, Position::Between))
                        }
                        // A number or literal ends before the array's own `]` or `,`.
                        b']' => Some((at, Position::End)),
                        b',' if self.depth == 0 => Some((at, Position::Between)),
                        _ => None,
                    };
                    if let Some((end, next)) = end {
                        let start = started_here.take();
                        let element = &chunk[start.unwrap_or(0)..end];
                        self.complete(element, start.is_some(), on_event);
                        self.position = next;
                    }
                    at += 1;
                }
                Position::End => {
                    if !byte.is_ascii_whitespace() {
                        self.position = Position::Malformed;
                    }
                    at += 1;
                }
                Position::Malformed => return,
            }
        }
        if self.position == Position::Element {
            // The element goes on in the next chunk: keep what this one had of it.
            self.keep(&chunk[started_here.unwrap_or(0)..]);
        }
    }

    /// The body ended. An array that never closed yields nothing more: its last element, if
    /// one was begun, is incomplete. When the body ended by itself (`complete`), that is
    /// remembered for [`malformed`](Self::malformed).
    pub(crate) fn finish(&mut self, complete: bool, _on_event: &mut impl FnMut(Event<'_>)) {
        if complete {
            self.cut = match self.position {
                Position::Between => Some(why::UNCLOSED),
                Position::Element => Some(why::CUT_ELEMENT),
                Position::Start | Position::End | Position::Malformed => None,
            };
        }
        self.element = Vec::new();
        self.skipping = false;
    }

    /// The element ends with `last`: the rest of it, after what earlier chunks kept (all of it
    /// when it started in this chunk, `whole`).
    fn complete(&mut self, last: &[u8], whole: bool, on_event: &mut impl FnMut(Event<'_>)) {
        if whole && self.element.is_empty() && !self.skipping {
            if last.len() <= self.max_element {
                emit(last, on_event);
            } else {
                self.oversized += 1;
            }
        } else if self.keep(last) {
            let element = std::mem::take(&mut self.element);
            emit(&element, on_event);
            self.element = element;
        }
        self.element.clear();
        self.skipping = false;
    }

    /// Keeps part of the current element; `false` (and the element is skipped to its end) past
    /// the limit.
    fn keep(&mut self, part: &[u8]) -> bool {
        if self.skipping {
            return false;
        }
        if self.element.len() + part.len() > self.max_element {
            self.element = Vec::new();
            self.skipping = true;
            self.oversized += 1;
            return false;
        }
        reserve_within(&mut self.element, part.len(), self.max_element);
        self.element.extend_from_slice(part);
        true
    }
}

/// Hands an element on without surrounding blanks.
fn emit(element: &[u8], on_event: &mut impl FnMut(Event<'_>)) {
    let element = element.trim_ascii();
    if !element.is_empty() {
        on_event(Event {
            name: b"",
            data: element,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]], max: usize) -> (Vec<String>, u64, Option<&'static str>) {
        let mut splitter = ArraySplitter::new(max);
        let mut out = Vec::new();
        let mut push =
            |event: Event<'_>| out.push(String::from_utf8_lossy(event.data).into_owned());
        for chunk in chunks {
            splitter.feed(chunk, &mut push);
        }
        splitter.finish(true, &mut push);
        (out, splitter.oversized(), splitter.malformed())
    }

    const BODY: &[u8] = b"\xEF\xBB\xBF[{\"a\": \"x,]}\\\"[\", \"b\": [1, {\"c\": 2}]}\r\n,\r\n{\"d\": \"\\\\\"}\n, 7 ,\"s]\" ]\n";

    #[test]
    fn elements_in_any_chunking() {
        let whole = split(&[BODY], 1 << 10);
        assert_eq!(
            whole.0,
            [
                "{\"a\": \"x,]}\\\"[\", \"b\": [1, {\"c\": 2}]}",
                "{\"d\": \"\\\\\"}",
                "7",
                "\"s]\""
            ]
        );
        assert_eq!(whole.2, None);
        for cut in 0..BODY.len() {
            for second in cut..BODY.len() {
                let chunks = [&BODY[..cut], &BODY[cut..second], &BODY[second..]];
                assert_eq!(split(&chunks, 1 << 10), whole, "cuts {cut} {second}");
            }
        }
    }

    #[test]
    fn oversized_elements_are_skipped_to_their_end() {
        let body = format!(
            "[{{\"a\":1}},{{\"x\":\"{}\"}},{{\"b\":2}}]",
            "y".repeat(100)
        );
        for size in [1, 3, 16, body.len()] {
            let chunks: Vec<&[u8]> = body.as_bytes().chunks(size).collect();
            let (out, oversized, malformed) = split(&chunks, 32);
            assert_eq!(out, ["{\"a\":1}", "{\"b\":2}"], "chunks of {size}");
            assert_eq!((oversized, malformed), (1, None));
        }
    }

    #[test]
    fn not_an_array_trailing_bytes_and_an_array_that_never_closes() {
        assert_eq!(
            split(&[b"{\"a\":1}"], 64),
            (vec![], 0, Some(why::NOT_AN_ARRAY))
        );
        let (out, _, malformed) = split(&[b"[1,2] x [3]"], 64);
        assert_eq!(
            (out, malformed),
            (
                vec!["1".to_owned(), "2".to_owned()],
                Some(why::NOT_AN_ARRAY)
            )
        );
        let (out, _, malformed) = split(&[b"[{\"a\":1},{\"b\":"], 64);
        assert_eq!(
            (out, malformed),
            (vec!["{\"a\":1}".to_owned()], Some(why::CUT_ELEMENT))
        );
    }

    #[test]
    fn an_element_is_handed_on_when_it_closes_not_when_the_next_begins() {
        let mut splitter = ArraySplitter::new(64);
        let mut feed = |bytes: &[u8]| {
            let mut out = Vec::new();
            splitter.feed(bytes, &mut |event: Event<'_>| {
                out.push(String::from_utf8_lossy(event.data).into_owned())
            });
            out
        };
        assert_eq!(feed(b"[{\"a\":"), Vec::<String>::new());
        assert_eq!(feed(b"[1]}"), ["{\"a\":[1]}"]);
        assert_eq!(feed(b"\r\n,\"s\\\"]\""), ["\"s\\\"]\""]);
        // A number is known to end only at the `,` or `]` after it.
        assert_eq!(feed(b",[]\n,7"), ["[]"]);
        assert_eq!(feed(b"]"), ["7"]);
        splitter.finish(true, &mut |_| {});
        assert_eq!(splitter.malformed(), None);
    }

    #[test]
    fn an_array_that_never_closes_is_said_when_the_body_ended_by_itself() {
        let body = b"[{\"a\":1}\r\n,{\"b\":2}\r\n,";
        for cut in 0..=body.len() {
            let (out, _, malformed) = split(&[&body[..cut], &body[cut..]], 64);
            assert_eq!(out, ["{\"a\":1}", "{\"b\":2}"], "cut {cut}");
            assert_eq!(malformed, Some(why::UNCLOSED), "cut {cut}");
        }
        // Closed, or not begun (a blank body): nothing to say.
        assert_eq!(split(&[b"[1]\n"], 64).2, None);
        assert_eq!(split(&[b" \n"], 64).2, None);
        // An element past the limit that never ends: skipped, counted, and the cut said.
        let (out, oversized, malformed) = split(&[b"[1,\"", &[b'y'; 100]], 32);
        assert_eq!(
            (out, oversized, malformed),
            (vec!["1".to_owned()], 1, Some(why::CUT_ELEMENT))
        );
        // A body cut short by a cancel: the call says so; the framer does not.
        let mut splitter = ArraySplitter::new(64);
        let mut seen = 0;
        splitter.feed(b"[{\"a\":1},{\"b\":", &mut |_| seen += 1);
        splitter.finish(false, &mut |_| seen += 1);
        assert_eq!((seen, splitter.malformed()), (1, None));
    }
}
