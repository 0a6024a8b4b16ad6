//! How a response stream is cut into events, whatever the API family: SSE, NDJSON lines or the
//! elements of a streamed JSON array. A wire format says which one its streams use
//! ([`WireFormat::stream_framing`](super::WireFormat::stream_framing)); SSE is the default.

use super::eventstream::EventStreamSplitter;
use super::json_array::ArraySplitter;
use super::ndjson::NdjsonSplitter;
use super::sse::SseParser;
use super::Event;

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

    /// The body ended: hands on what a last, unterminated unit completes.
    pub(crate) fn finish(&mut self, on_event: &mut impl FnMut(Event<'_>)) {
        match self {
            Framer::Sse(parser) => parser.finish(on_event),
            Framer::Ndjson(splitter) => splitter.finish(on_event),
            Framer::JsonArray(splitter) => splitter.finish(on_event),
            Framer::EventStream(splitter) => splitter.finish(on_event),
        }
    }

    /// Units skipped as longer than the limit.
    pub(crate) fn oversized(&self) -> u64 {
        match self {
            Framer::Sse(parser) => parser.oversized_lines(),
            Framer::Ndjson(splitter) => splitter.oversized(),
            Framer::JsonArray(splitter) => splitter.oversized(),
            // A frame past the limit stops decoding: said by `malformed`.
            Framer::EventStream(_) => 0,
        }
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

    /// Why the body could not be framed at all, if it could not.
    pub(crate) fn malformed(&self) -> Option<&'static str> {
        match self {
            Framer::JsonArray(splitter) if splitter.malformed() => {
                Some("streamed body is not one JSON array; splitting stopped there")
            }
            Framer::EventStream(splitter) => splitter.malformed(),
            _ => None,
        }
    }
}
