//! How a response stream is cut into events, whatever the API family: SSE, NDJSON lines or the
//! elements of a streamed JSON array. A wire format says which one its streams use
//! ([`WireFormat::stream_framing`](super::WireFormat::stream_framing)); SSE is the default.

use super::eventstream::EventStreamSplitter;
use super::json_array::ArraySplitter;
use super::ndjson::NdjsonSplitter;
use super::sse::SseParser;
use super::Event;

/// Makes room in a framer's buffer for `additional` more bytes: by doubling, as a `Vec` grows,
/// but never past `max`, the unit limit (the caller has checked that the unit stays within it),
/// so a unit held up to the limit never takes twice the limit.
pub(crate) fn reserve_within(buffer: &mut Vec<u8>, additional: usize, max: usize) {
    let needed = buffer.len().saturating_add(additional);
    if needed > buffer.capacity() {
        let target = needed
            .max(buffer.capacity().saturating_mul(2))
            .min(max.max(needed));
        buffer.reserve_exact(target - buffer.len());
    }
}

/// A stream framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// Server-sent events (`text/event-stream`).
    Sse,
    /// One JSON value per line (`application/x-ndjson`).
    Ndjson,
    /// One JSON array, written element by element.
    JsonArray,
    /// AWS event-stream binary frames (`application/vnd.amazon.eventstream`).
    EventStream,
}

/// A framer: the incremental splitter of one framing.
#[derive(Debug)]
pub(crate) enum Framer {
    Sse(SseParser),
    Ndjson(NdjsonSplitter),
    JsonArray(ArraySplitter),
    EventStream(EventStreamSplitter),
}

impl Framer {
    /// A framer for `framing` that skips (and counts) any unit longer than `limit` bytes.
    pub(crate) fn new(framing: Framing, limit: usize) -> Self {
        match framing {
            Framing::Sse => Framer::Sse(SseParser::new(limit)),
            Framing::Ndjson => Framer::Ndjson(NdjsonSplitter::new(limit)),
            Framing::JsonArray => Framer::JsonArray(ArraySplitter::new(limit)),
            Framing::EventStream => Framer::EventStream(EventStreamSplitter::new(limit)),
        }
    }

    /// Feeds one chunk, calling `on_event` for every event it completes.
    #[inline]
    pub(crate) fn feed(&mut self, chunk: &[u8], on_event: &mut impl FnMut(Event<'_>)) {
        match self {
            Framer::Sse(parser) => parser.feed(chunk, on_event),
            Framer::Ndjson(splitter) => splitter.feed(chunk, on_event),
            Framer::JsonArray(splitter) => splitter.feed(chunk, on_event),
            Framer::EventStream(splitter) => splitter.feed(chunk, on_event),
        }
    }

    /// The body ended: hands on what a last, unterminated unit completes. `complete` says the
    /// body ended by itself; then a framing left unfinished (a frame cut short, an array never
    /// closed) is said by [`malformed`](Self::malformed). A body cut short by a cancel or an
    /// error is not: the call's status already says so.
    pub(crate) fn finish(&mut self, complete: bool, on_event: &mut impl FnMut(Event<'_>)) {
        match self {
            Framer::Sse(parser) => parser.finish(on_event),
            Framer::Ndjson(splitter) => splitter.finish(on_event),
            Framer::JsonArray(splitter) => splitter.finish(complete, on_event),
            Framer::EventStream(splitter) => splitter.finish(complete, on_event),
        }
    }

    /// Units skipped as longer than the limit.
    pub(crate) fn oversized(&self) -> u64 {
        match self {
            Framer::Sse(parser) => parser.oversized_lines(),
            Framer::Ndjson(splitter) => splitter.oversized(),
            Framer::JsonArray(splitter) => splitter.oversized(),
            // A frame past the limit stops decoding: said by `malformed`, and `stopped_at_limit`.
            Framer::EventStream(_) => 0,
        }
    }

    /// Whether decoding stopped at a unit past the limit (what followed was not read): the
    /// record is cut short, as by a skipped unit.
    pub(crate) fn stopped_at_limit(&self) -> bool {
        matches!(self, Framer::EventStream(splitter) if splitter.stopped_at_limit())
    }

    /// What the framing's units are called, for messages (`SSE line(s)`, ...).
    pub(crate) fn unit(&self) -> &'static str {
        match self {
            Framer::Sse(_) => "SSE line(s)",
            Framer::Ndjson(_) => "NDJSON line(s)",
            Framer::JsonArray(_) => "JSON array element(s)",
            Framer::EventStream(_) => "event-stream frame(s)",
        }
    }

    /// What its events are called (`SSE events`, ...).
    pub(crate) fn events(&self) -> &'static str {
        match self {
            Framer::Sse(_) => "SSE events",
            Framer::Ndjson(_) => "NDJSON lines",
            Framer::JsonArray(_) => "JSON array elements",
            Framer::EventStream(_) => "event-stream frames",
        }
    }

    /// Why (part of) the body could not be framed, if so: it is not of this framing (bytes after
    /// an array's `]`), a unit is bad (an event-stream frame's CRC, lengths or headers), or the
    /// body ended by itself with a unit unfinished.
    pub(crate) fn malformed(&self) -> Option<&'static str> {
        match self {
            Framer::JsonArray(splitter) => splitter.malformed(),
            Framer::EventStream(splitter) => splitter.malformed(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_grown_to_the_limit_holds_no_more_than_the_limit() {
        let max = 8 << 20;
        // 65,000 x 2^7 is just under 8 MiB: plain doubling would then reserve 16 MiB.
        let piece = [b'x'; 65_000];
        let mut buffer = Vec::new();
        while buffer.len() + piece.len() <= max {
            reserve_within(&mut buffer, piece.len(), max);
            buffer.extend_from_slice(&piece);
            assert!(
                buffer.capacity() <= max,
                "{} at {}",
                buffer.capacity(),
                buffer.len()
            );
        }
        // Still by doubling: a handful of reallocations, not one a piece.
        let mut buffer = Vec::new();
        let mut grown = 0;
        for _ in 0..100 {
            let before = buffer.capacity();
            reserve_within(&mut buffer, piece.len(), max);
            buffer.extend_from_slice(&piece);
            grown += usize::from(buffer.capacity() != before);
        }
        assert!(grown <= 8, "{grown} reallocations");
    }
}
