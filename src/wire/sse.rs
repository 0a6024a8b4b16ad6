//! Incremental Server-Sent Events parser (WHATWG event-stream rules).
//!
//! Fed with arbitrary chunks of a byte stream, it keeps only the unfinished tail line and the data
//! of the event being built, and calls back once per complete event. Line ends may be `\n`,
//! `\r\n` or `\r`, including a `\r\n` split across two chunks; a leading UTF-8 BOM, comments,
//! `id:`/`retry:` fields and unknown fields are skipped; multi-line `data:` is joined with `\n`.

use super::Event;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Parser state carried across chunks.
#[derive(Debug)]
pub(crate) struct SseParser {
    /// Bytes of a line whose end has not arrived yet.
    tail: Vec<u8>,
    /// `data:` of the event being built, each line followed by `\n`.
    data: Vec<u8>,
    /// `event:` of the event being built.
    event: Vec<u8>,
    /// Whether any `data:` line was seen for the event being built.
    has_data: bool,
    /// The previous chunk ended in `\r`: a `\n` opening the next chunk belongs to it.
    pending_cr: bool,
    /// How many bytes of a leading BOM were matched (until the stream has started).
    bom_matched: usize,
    started: bool,
    /// Current line grew past `max_line`: its remaining bytes are skipped up to its end.
    skipping_line: bool,
    max_line: usize,
    oversized_lines: u64,
}

impl SseParser {
    /// A parser that skips (and counts) any line or event longer than `max_line` bytes, so
    /// memory stays bounded on hostile input.
    pub(crate) fn new(max_line: usize) -> Self {
        SseParser {
            tail: Vec::new(),
            data: Vec::new(),
            event: Vec::new(),
            has_data: false,
            pending_cr: false,
            bom_matched: 0,
            started: false,
            skipping_line: false,
            max_line,
            oversized_lines: 0,
        }
    }

    /// Lines (or events) that exceeded the size limit and were skipped.
    pub(crate) fn oversized_lines(&self) -> u64 {
        self.oversized_lines
    }

    /// Feeds one chunk, calling `on_event` for every event it completes.
    pub(crate) fn feed(&mut self, mut chunk: &[u8], on_event: &mut impl FnMut(Event<'_>)) {
        if !self.started {
            chunk = self.strip_bom(chunk);
            if chunk.is_empty() {
                return;
            }
        }
        if self.pending_cr {
            self.pending_cr = false;
            if chunk.first() == Some(&b'\n') {
                chunk = &chunk[1..];
            }
        }
        let mut start = 0;
        while let Some(offset) = memchr::memchr2(b'\n', b'\r', &chunk[start..]) {
            let end = start + offset;
            let line_end = end;
            let mut next = end + 1;
            if chunk[end] == b'\r' {
                match chunk.get(next) {
                    Some(b'\n') => next += 1,
                    Some(_) => {}
                    None => self.pending_cr = true,
                }
            }
            if self.skipping_line {
                self.skipping_line = false;
                self.tail.clear();
            } else if self.tail.is_empty() {
                // The whole line is in this chunk: no copy, but the same limit as a line that
                // spans chunks (found by the `framers` fuzz target: the record must not depend
                // on where the frames were cut).
                if line_end - start > self.max_line {
                    self.oversized_lines += 1;
                } else {
                    self.process_line(&chunk[start..line_end], on_event);
                }
            } else {
                let mut line = std::mem::take(&mut self.tail);
                line.extend_from_slice(&chunk[start..line_end]);
                if line.len() > self.max_line {
                    self.oversized_lines += 1;
                } else {
                    self.process_line(&line, on_event);
                }
                line.clear();
                self.tail = line;
            }
            start = next;
        }
        let rest = &chunk[start..];
        if !rest.is_empty() && !self.skipping_line {
            if self.tail.len() + rest.len() > self.max_line {
                self.tail.clear();
                self.tail.shrink_to(self.max_line.min(4096));
                self.skipping_line = true;
                self.oversized_lines += 1;
            } else {
                self.tail.extend_from_slice(rest);
            }
        }
    }

    /// Ends the stream: an unterminated last line is processed and a pending event dispatched,
    /// so that a stream cut short still yields what it said.
    pub(crate) fn finish(&mut self, on_event: &mut impl FnMut(Event<'_>)) {
        if !self.tail.is_empty() && !self.skipping_line {
            let line = std::mem::take(&mut self.tail);
            self.process_line(&line, on_event);
        }
        self.process_line(b"", on_event);
    }

    fn strip_bom<'c>(&mut self, chunk: &'c [u8]) -> &'c [u8] {
        let mut consumed = 0;
        while self.bom_matched < BOM.len() && consumed < chunk.len() {
            if chunk[consumed] != BOM[self.bom_matched] {
                // Not a BOM after all: what matched so far is ordinary line content.
                self.tail.extend_from_slice(&BOM[..self.bom_matched]);
                self.bom_matched = BOM.len();
                self.started = true;
                return &chunk[consumed..];
            }
            self.bom_matched += 1;
            consumed += 1;
        }
        if self.bom_matched == BOM.len() {
            self.started = true;
        }
        &chunk[consumed..]
    }

    fn process_line(&mut self, line: &[u8], on_event: &mut impl FnMut(Event<'_>)) {
        if line.is_empty() {
            if self.has_data {
                let data = self.data.strip_suffix(b"\n").unwrap_or(&self.data);
                on_event(Event {
                    name: &self.event,
                    data,
                });
            }
            self.data.clear();
            self.event.clear();
            self.has_data = false;
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if self.data.len() + value.len() + 1 > self.max_line {
                    self.oversized_lines += 1;
                    return;
                }
                self.data.extend_from_slice(value);
                self.data.push(b'\n');
                self.has_data = true;
            }
            b"event" => {
                self.event.clear();
                self.event.extend_from_slice(value);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_chunks(chunks: &[&[u8]]) -> Vec<(String, String)> {
        let mut parser = SseParser::new(1 << 20);
        let mut out = Vec::new();
        let mut push = |ev: Event<'_>| {
            out.push((
                String::from_utf8_lossy(ev.name).into_owned(),
                String::from_utf8_lossy(ev.data).into_owned(),
            ))
        };
        for chunk in chunks {
            parser.feed(chunk, &mut push);
        }
        parser.finish(&mut push);
        out
    }

    #[test]
    fn a_long_line_is_skipped_whether_or_not_it_spans_chunks() {
        let long = format!("data: {}\n\ndata: short\n\n", "x".repeat(100));
        let run = |pieces: &[&[u8]]| {
            let mut parser = SseParser::new(64);
            let mut out = Vec::new();
            for piece in pieces {
                parser.feed(piece, &mut |e: Event<'_>| out.push(e.data.to_vec()));
            }
            parser.finish(&mut |e: Event<'_>| out.push(e.data.to_vec()));
            (out, parser.oversized_lines())
        };
        let whole = run(&[long.as_bytes()]);
        assert_eq!(whole, (vec![b"short".to_vec()], 1));
        for cut in 0..long.len() {
            let (a, b) = long.as_bytes().split_at(cut);
            assert_eq!(run(&[a, b]), whole, "cut at {cut}");
        }
    }

    fn pair(event: &str, data: &str) -> (String, String) {
        (event.to_owned(), data.to_owned())
    }

    #[test]
    fn splits_events_on_blank_lines_with_any_line_ending() {
        let want = vec![pair("", "a"), pair("", "b"), pair("", "c")];
        assert_eq!(
            parse_chunks(&[b"data: a\n\ndata: b\r\n\r\ndata: c\r\r"]),
            want
        );
        assert_eq!(
            parse_chunks(&[b"data: a\r", b"\n\r", b"\ndata: b\n\n", b"data: c\n\n"]),
            want
        );
    }

    #[test]
    fn split_crlf_does_not_create_a_blank_line() {
        // "data: a\r" + "\n" + "data: b\n\n" must be ONE line break between a and the next field.
        let got = parse_chunks(&[b"data: a\r", b"\ndata: b\n\n"]);
        assert_eq!(got, vec![pair("", "a\nb")]);
    }

    #[test]
    fn multi_line_data_comments_event_names_and_bom() {
        let got = parse_chunks(&[
            b"\xEF\xBB",
            b"\xBF: keep-alive\nevent: response.created\ndata: {\"a\":\ndata: 1}\nid: 7\nretry: 10\n\n",
            b"data:no-space\n\n",
        ]);
        assert_eq!(
            got,
            vec![
                pair("response.created", "{\"a\":\n1}"),
                pair("", "no-space")
            ]
        );
    }

    #[test]
    fn a_broken_bom_is_kept_as_content() {
        let got = parse_chunks(&[b"\xEF", b"data: x\n\n"]);
        // The stray byte joins the first line, whose field name is then not `data`.
        assert_eq!(got, vec![]);
        assert_eq!(parse_chunks(&[b"data: x\n\n"]), vec![pair("", "x")]);
    }

    #[test]
    fn unterminated_final_event_is_dispatched_at_finish() {
        assert_eq!(parse_chunks(&[b"data: [DONE]"]), vec![pair("", "[DONE]")]);
    }

    #[test]
    fn oversized_lines_are_skipped_and_counted() {
        let mut parser = SseParser::new(16);
        let mut out = Vec::new();
        let mut push = |ev: Event<'_>| out.push(ev.data.to_vec());
        parser.feed(b"data: 0123456789", &mut push);
        parser.feed(b"0123456789abcdef", &mut push);
        parser.feed(b"xyz\n\ndata: ok\n\n", &mut push);
        parser.finish(&mut push);
        assert_eq!(out, vec![b"ok".to_vec()]);
        assert_eq!(parser.oversized_lines(), 1);
    }
}
