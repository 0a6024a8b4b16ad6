//! Incremental newline-delimited JSON splitter (Ollama's streams): one event per line.
//!
//! Fed arbitrary chunks, it keeps only the unfinished tail line. Line ends may be `\n` or
//! `\r\n`; blank lines are skipped; a line longer than the limit is skipped (and counted) up to
//! its end, so memory stays bounded on hostile input.

use super::framing::reserve_within;
use super::Event;

/// Splitter state carried across chunks.
#[derive(Debug)]
pub(crate) struct NdjsonSplitter {
    /// Bytes of a line whose end has not arrived yet.
    tail: Vec<u8>,
    /// The current line grew past `max_line`: its remaining bytes are skipped up to its end.
    skipping_line: bool,
    max_line: usize,
    oversized_lines: u64,
}

impl NdjsonSplitter {
    /// A splitter that skips (and counts) any line longer than `max_line` bytes.
    pub(crate) fn new(max_line: usize) -> Self {
        NdjsonSplitter {
            tail: Vec::new(),
            skipping_line: false,
            max_line,
            oversized_lines: 0,
        }
    }

    /// Lines that exceeded the size limit and were skipped.
    pub(crate) fn oversized(&self) -> u64 {
        self.oversized_lines
    }

    /// Feeds one chunk, calling `on_event` for every line it completes.
    pub(crate) fn feed(&mut self, chunk: &[u8], on_event: &mut impl FnMut(Event<'_>)) {
        let mut start = 0;
        while let Some(offset) = memchr::memchr(b'\n', &chunk[start..]) {
            let end = start + offset;
            let part = &chunk[start..end];
            if self.skipping_line {
                // The end of a line already skipped.
            } else if self.tail.is_empty() && part.len() <= self.max_line {
                // The whole line is in this chunk: no copy.
                emit(part, on_event);
            } else if self.keep(part) {
                let line = std::mem::take(&mut self.tail);
                emit(&line, on_event);
                self.tail = line;
                self.tail.clear();
            }
            // The line ended here, whether it was kept or skipped.
            self.skipping_line = false;
            start = end + 1;
        }
        if !self.skipping_line {
            self.keep(&chunk[start..]);
        }
    }

    /// The body ended: a last line without a line end is a line too.
    pub(crate) fn finish(&mut self, on_event: &mut impl FnMut(Event<'_>)) {
        if !self.skipping_line && !self.tail.is_empty() {
            let line = std::mem::take(&mut self.tail);
            emit(&line, on_event);
        }
        self.skipping_line = false;
    }

    /// Appends part of a line to the tail; `false` (and the line is skipped from here on) when
    /// it would grow past the limit.
    fn keep(&mut self, part: &[u8]) -> bool {
        if self.tail.len() + part.len() > self.max_line {
            self.tail = Vec::new();
            self.skipping_line = true;
            self.oversized_lines += 1;
            return false;
        }
        reserve_within(&mut self.tail, part.len(), self.max_line);
        self.tail.extend_from_slice(part);
        true
    }
}

/// Hands a line on without its `\r` and surrounding blanks; blank lines are not events.
fn emit(line: &[u8], on_event: &mut impl FnMut(Event<'_>)) {
    let line = line.trim_ascii();
    if !line.is_empty() {
        on_event(Event {
            name: b"",
            data: line,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(chunks: &[&[u8]], max: usize) -> (Vec<String>, u64) {
        let mut splitter = NdjsonSplitter::new(max);
        let mut out = Vec::new();
        let mut push =
            |event: Event<'_>| out.push(String::from_utf8_lossy(event.data).into_owned());
        for chunk in chunks {
            splitter.feed(chunk, &mut push);
        }
        splitter.finish(&mut push);
        (out, splitter.oversized())
    }

    #[test]
    fn lines_in_any_chunking() {
        let body = b"{\"a\":1}\r\n\n{\"b\":2}\n  \n{\"c\":3}";
        let whole = lines(&[body], 1 << 10);
        assert_eq!(whole.0, ["{\"a\":1}", "{\"b\":2}", "{\"c\":3}"]);
        for cut in 0..body.len() {
            assert_eq!(
                lines(&[&body[..cut], &body[cut..]], 1 << 10),
                whole,
                "cut {cut}"
            );
        }
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(lines(&bytes, 1 << 10), whole);
    }

    #[test]
    fn a_line_held_up_to_the_limit_takes_no_more_than_the_limit() {
        let max = 1 << 20;
        let mut splitter = NdjsonSplitter::new(max);
        let mut seen = 0;
        // 8,000 x 2^7 is just under 1 MiB: plain doubling would reserve 2 MiB at the end.
        let piece = [b'x'; 8_000];
        for _ in 0..max / piece.len() {
            splitter.feed(&piece, &mut |_| seen += 1);
            assert!(
                splitter.tail.capacity() <= max,
                "{}",
                splitter.tail.capacity()
            );
        }
        // Past the limit: let go, and the rest of the line skipped unkept.
        splitter.feed(&piece, &mut |_| seen += 1);
        assert_eq!((splitter.tail.capacity(), splitter.oversized()), (0, 1));
        splitter.feed(b"xx\n{}\n", &mut |_| seen += 1);
        assert_eq!(seen, 1);
    }

    #[test]
    fn an_oversized_line_is_skipped_to_its_end_and_counted() {
        let long = format!("{{\"x\":\"{}\"}}", "y".repeat(100));
        let body = format!("{{\"a\":1}}\n{long}\n{{\"b\":2}}\n");
        for size in [1, 7, 64, body.len()] {
            let chunks: Vec<&[u8]> = body.as_bytes().chunks(size).collect();
            let (out, oversized) = lines(&chunks, 32);
            assert_eq!(out, ["{\"a\":1}", "{\"b\":2}"], "chunks of {size}");
            assert_eq!(oversized, 1);
        }
    }
}
