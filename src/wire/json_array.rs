//! Incremental splitter of one JSON array written piece by piece (Gemini's
//! `streamGenerateContent` without `alt=sse`): one event per element.
//!
//! Fed arbitrary chunks, it follows only the array's top level — strings (with their escapes)
//! and nesting depth — and keeps the bytes of the element being read. An element longer than the
//! limit is skipped (and counted) up to its end; bytes after the closing `]`, or a body that is
//! not an array, stop the splitting (said by [`ArraySplitter::malformed`]); an array that never
//! closes yields the elements that did.

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
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

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
        }
    }

    /// Elements that exceeded the size limit and were skipped.
    pub(crate) fn oversized(&self) -> u64 {
        self.oversized
    }

    /// Whether the body was not one JSON array (or had bytes after it).
    pub(crate) fn malformed(&self) -> bool {
        self.position == Position::Malformed
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
                            }
                            at += 1;
                        }
                        None => at = chunk.len(),
                    }
                }
                Position::Element => {
                    let ends_here = match byte {
                        b'"' => {
                            self.in_string = true;
                            false
                        }
                        b'{' | b'[' => {
                            self.depth += 1;
                            false
                        }
                        b'}' | b']' if self.depth > 0 => {
                            self.depth -= 1;
                            false
                        }
                        // The array's own `]` or `,`, at the element's top level.
                        b']' | b',' => self.depth == 0,
                        _ => false,
                    };
                    if ends_here {
                        let start = started_here.take();
                        self.complete(&chunk[start.unwrap_or(0)..at], start.is_some(), on_event);
                        self.position = if byte == b']' {
                            Position::End
                        } else {
                            Position::Between
                        };
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

    /// The body ended. An array that never closed yields nothing more: its last element is
    /// incomplete.
    pub(crate) fn finish(&mut self, _on_event: &mut impl FnMut(Event<'_>)) {
        self.element = Vec::new();
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

    fn split(chunks: &[&[u8]], max: usize) -> (Vec<String>, u64, bool) {
        let mut splitter = ArraySplitter::new(max);
        let mut out = Vec::new();
        let mut push =
            |event: Event<'_>| out.push(String::from_utf8_lossy(event.data).into_owned());
        for chunk in chunks {
            splitter.feed(chunk, &mut push);
        }
        splitter.finish(&mut push);
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
        assert!(!whole.2);
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
            assert_eq!((oversized, malformed), (1, false));
        }
    }

    #[test]
    fn not_an_array_trailing_bytes_and_an_array_that_never_closes() {
        assert_eq!(split(&[b"{\"a\":1}"], 64), (vec![], 0, true));
        let (out, _, malformed) = split(&[b"[1,2] x [3]"], 64);
        assert_eq!(
            (out, malformed),
            (vec!["1".to_owned(), "2".to_owned()], true)
        );
        let (out, _, malformed) = split(&[b"[{\"a\":1},{\"b\":"], 64);
        assert_eq!((out, malformed), (vec!["{\"a\":1}".to_owned()], false));
    }
}
