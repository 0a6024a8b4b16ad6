//! Incremental AWS event-stream framer (Bedrock's `converse-stream`): binary frames of
//!
//! ```text
//! total length (u32 BE) | headers length (u32 BE) | prelude CRC32 | headers | payload | message CRC32
//! ```
//!
//! Headers are `name length (u8) | name | type (u8) | value`, the value's size set by its type
//! (0 true, 1 false, 2 byte, 3 short, 4 int, 5 long, 6 bytes and 7 string with a u16 length,
//! 8 timestamp, 9 uuid). Fed arbitrary chunks (a frame split anywhere, the prelude included), it
//! keeps only the unfinished frame. Every frame is checked — both CRCs, the lengths, the header
//! types — before anything of it is handed on: a bad frame, one larger than the limit, or a
//! flood of headers stops decoding there (what follows is never read, so nothing is forged),
//! and [`EventStreamSplitter::malformed`] says why.
//!
//! Each frame becomes one [`Event`]: `name` is its `:event-type`; an `:message-type exception`
//! frame is named `exception:{:exception-type}` and an `:message-type error` frame
//! `error:{:error-code}` (its data the `:error-message` when the payload is empty).

use super::Event;

/// Prelude: total length, headers length, prelude CRC.
const PRELUDE: usize = 12;
/// Prelude plus the message CRC: the smallest frame.
const MIN_FRAME: usize = PRELUDE + 4;
/// The largest frame AWS sends (16 MiB); a larger claim is refused whatever the limit.
const MAX_FRAME: usize = 16 << 20;
/// The largest headers section AWS sends (128 KiB).
const MAX_HEADERS: usize = 128 << 10;
/// The most headers read from one frame (real frames carry three or four).
const MAX_HEADER_COUNT: usize = 256;

/// The CRC-32 (IEEE 802.3, reflected, as zlib's) of `bytes`. (`crc32fast`, already linked
/// through `flate2`, folds 16 bytes at a step or uses the CPU's carry-less multiply: the
/// byte-at-a-time table this replaces cost a quarter of a Bedrock event's decoding.)
pub(crate) fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

fn be32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

/// Why decoding stopped.
mod why {
    pub(super) const PRELUDE_CRC: &str =
        "event-stream frame with a bad prelude CRC; decoding stopped there";
    pub(super) const MESSAGE_CRC: &str =
        "event-stream frame with a bad message CRC; decoding stopped there";
    pub(super) const LENGTHS: &str =
        "event-stream frame with inconsistent lengths; decoding stopped there";
    pub(super) const TOO_LARGE: &str =
        "event-stream frame larger than the decode limit; decoding stopped there";
    pub(super) const HEADERS: &str =
        "event-stream frame with malformed or too many headers; decoding stopped there";
    pub(super) const CUT: &str = "event-stream body ended inside a frame";
}

/// Framer state carried across chunks.
#[derive(Debug)]
pub(crate) struct EventStreamSplitter {
    /// Bytes of a frame whose end has not arrived yet.
    partial: Vec<u8>,
    /// The largest frame accepted.
    max_frame: usize,
    /// Why decoding stopped, once it has: nothing more is read.
    stopped: Option<&'static str>,
    /// Scratch for an exception's or error's event name.
    name: Vec<u8>,
}

impl EventStreamSplitter {
    /// A framer that stops at any frame longer than `max_frame` bytes (or 16 MiB).
    pub(crate) fn new(max_frame: usize) -> Self {
        EventStreamSplitter {
            partial: Vec::new(),
            max_frame: max_frame.clamp(MIN_FRAME, MAX_FRAME),
            stopped: None,
            name: Vec::new(),
        }
    }

    /// Why decoding stopped, if it did.
    pub(crate) fn malformed(&self) -> Option<&'static str> {
        self.stopped
    }

    /// Feeds one chunk, calling `on_event` for every frame it completes.
    pub(crate) fn feed(&mut self, mut chunk: &[u8], on_event: &mut impl FnMut(Event<'_>)) {
        while !chunk.is_empty() && self.stopped.is_none() {
            if self.partial.is_empty() {
                // Whole frames in the chunk are read where they are: no copy.
                if chunk.len() < PRELUDE {
                    self.partial.extend_from_slice(chunk);
                    return;
                }
                let total = match self.check_prelude(&chunk[..PRELUDE]) {
                    Some(total) => total,
                    None => return,
                };
                if chunk.len() >= total {
                    let (frame, rest) = chunk.split_at(total);
                    self.frame(frame, on_event);
                    chunk = rest;
                    continue;
                }
                self.partial.reserve_exact(total);
                self.partial.extend_from_slice(chunk);
                return;
            }
            // Complete the prelude first, then the frame it announces.
            if self.partial.len() < PRELUDE {
                let take = (PRELUDE - self.partial.len()).min(chunk.len());
                self.partial.extend_from_slice(&chunk[..take]);
                chunk = &chunk[take..];
                if self.partial.len() < PRELUDE {
                    return;
                }
                let prelude: [u8; PRELUDE] =
                    self.partial[..PRELUDE].try_into().unwrap_or([0; PRELUDE]);
                let Some(total) = self.check_prelude(&prelude) else {
                    self.partial = Vec::new();
                    return;
                };
                self.partial.reserve_exact(total - PRELUDE);
            }
            let total = be32(&self.partial) as usize;
            let take = (total - self.partial.len()).min(chunk.len());
            self.partial.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
            if self.partial.len() == total {
                let frame = std::mem::take(&mut self.partial);
                self.frame(&frame, on_event);
                // Keep the allocation for the next split frame.
                self.partial = frame;
                self.partial.clear();
                if self.partial.capacity() > 64 << 10 {
                    self.partial = Vec::new();
                }
            }
        }
    }

    /// The body ended: a frame cut short is never handed on, and is said when the body ended
    /// by itself (`complete`; a cancelled or failed call says it was cut short).
    pub(crate) fn finish(&mut self, complete: bool, _on_event: &mut impl FnMut(Event<'_>)) {
        if complete && !self.partial.is_empty() && self.stopped.is_none() {
            self.stopped = Some(why::CUT);
        }
        self.partial = Vec::new();
    }

    /// Whether decoding stopped at a frame larger than the limit.
    pub(crate) fn stopped_at_limit(&self) -> bool {
        self.stopped == Some(why::TOO_LARGE)
    }

    fn stop(&mut self, why: &'static str) {
        self.stopped = Some(why);
        self.partial = Vec::new();
    }

    /// The frame's total length, if its prelude is sound.
    fn check_prelude(&mut self, prelude: &[u8]) -> Option<usize> {
        if crc32(&prelude[..8]) != be32(&prelude[8..]) {
            self.stop(why::PRELUDE_CRC);
            return None;
        }
        let total = be32(prelude) as usize;
        let headers = be32(&prelude[4..]) as usize;
        if total < MIN_FRAME || headers > total - MIN_FRAME {
            self.stop(why::LENGTHS);
            return None;
        }
        if total > self.max_frame {
            self.stop(why::TOO_LARGE);
            return None;
        }
        if headers > MAX_HEADERS {
            self.stop(why::HEADERS);
            return None;
        }
        Some(total)
    }

    /// Checks one whole frame (prelude already checked) and hands it on.
    fn frame(&mut self, frame: &[u8], on_event: &mut impl FnMut(Event<'_>)) {
        let total = frame.len();
        if crc32(&frame[..total - 4]) != be32(&frame[total - 4..]) {
            self.stop(why::MESSAGE_CRC);
            return;
        }
        let headers_len = be32(&frame[4..]) as usize;
        let headers = &frame[PRELUDE..PRELUDE + headers_len];
        let payload = &frame[PRELUDE + headers_len..total - 4];
        let Some(found) = read_headers(headers) else {
            self.stop(why::HEADERS);
            return;
        };
        let name: &[u8] = match found.message_type {
            Some(b"exception") => {
                self.name.clear();
                self.name.extend_from_slice(b"exception:");
                self.name
                    .extend_from_slice(found.exception_type.unwrap_or(b""));
                &self.name
            }
            Some(b"error") => {
                self.name.clear();
                self.name.extend_from_slice(b"error:");
                self.name.extend_from_slice(found.error_code.unwrap_or(b""));
                &self.name
            }
            _ => found.event_type.unwrap_or(b""),
        };
        let data = match (found.message_type, found.error_message) {
            (Some(b"error"), Some(message)) if payload.is_empty() => message,
            _ => payload,
        };
        on_event(Event { name, data });
    }
}

/// The headers a frame's event is made of.
#[derive(Default)]
struct Headers<'a> {
    event_type: Option<&'a [u8]>,
    message_type: Option<&'a [u8]>,
    exception_type: Option<&'a [u8]>,
    error_code: Option<&'a [u8]>,
    error_message: Option<&'a [u8]>,
}

/// Reads a headers section; `None` when it is malformed (a value running past the end, an
/// unknown type) or holds more than [`MAX_HEADER_COUNT`] headers.
fn read_headers(mut bytes: &[u8]) -> Option<Headers<'_>> {
    let mut found = Headers::default();
    let mut count = 0;
    while !bytes.is_empty() {
        count += 1;
        if count > MAX_HEADER_COUNT {
            return None;
        }
        let name_len = *bytes.first()? as usize;
        let name = bytes.get(1..1 + name_len)?;
        let kind = *bytes.get(1 + name_len)?;
        bytes = &bytes[2 + name_len..];
        let (value, size) = match kind {
            0 | 1 => (None, 0),
            2 => (None, 1),
            3 => (None, 2),
            4 => (None, 4),
            5 | 8 => (None, 8),
            9 => (None, 16),
            6 | 7 => {
                let len = u16::from_be_bytes([*bytes.first()?, *bytes.get(1)?]) as usize;
                (Some(bytes.get(2..2 + len)?), 2 + len)
            }
            _ => return None,
        };
        if bytes.len() < size {
            return None;
        }
        bytes = &bytes[size..];
        if kind == 7 {
            let slot = match name {
                b":event-type" => &mut found.event_type,
                b":message-type" => &mut found.message_type,
                b":exception-type" => &mut found.exception_type,
                b":error-code" => &mut found.error_code,
                b":error-message" => &mut found.error_message,
                _ => continue,
            };
            *slot = value;
        }
    }
    Some(found)
}

/// Test and fuzz support: one well-formed frame of string headers and `payload`.
#[cfg(test)]
pub(crate) fn encode_frame(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut head = Vec::new();
    for (name, value) in headers {
        head.push(name.len() as u8);
        head.extend_from_slice(name.as_bytes());
        head.push(7);
        head.extend_from_slice(&(value.len() as u16).to_be_bytes());
        head.extend_from_slice(value.as_bytes());
    }
    let total = MIN_FRAME + head.len() + payload.len();
    let mut frame = Vec::with_capacity(total);
    frame.extend_from_slice(&(total as u32).to_be_bytes());
    frame.extend_from_slice(&(head.len() as u32).to_be_bytes());
    let prelude_crc = crc32(&frame);
    frame.extend_from_slice(&prelude_crc.to_be_bytes());
    frame.extend_from_slice(&head);
    frame.extend_from_slice(payload);
    let crc = crc32(&frame);
    frame.extend_from_slice(&crc.to_be_bytes());
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, payload: &str) -> Vec<u8> {
        encode_frame(
            &[
                (":event-type", kind),
                (":content-type", "application/json"),
                (":message-type", "event"),
            ],
            payload.as_bytes(),
        )
    }

    fn events(chunks: &[&[u8]], limit: usize) -> (Vec<(String, String)>, Option<&'static str>) {
        let mut splitter = EventStreamSplitter::new(limit);
        let mut out = Vec::new();
        let mut push = |event: Event<'_>| {
            out.push((
                String::from_utf8_lossy(event.name).into_owned(),
                String::from_utf8_lossy(event.data).into_owned(),
            ))
        };
        for chunk in chunks {
            splitter.feed(chunk, &mut push);
        }
        splitter.finish(true, &mut push);
        (out, splitter.malformed())
    }

    fn body() -> Vec<u8> {
        let mut body = event("messageStart", r#"{"p":"abc","role":"assistant"}"#);
        body.extend(event(
            "contentBlockDelta",
            r#"{"contentBlockIndex":0,"delta":{"text":"Hi"},"p":"ab"}"#,
        ));
        body.extend(event("messageStop", r#"{"p":"a","stopReason":"end_turn"}"#));
        body
    }

    #[test]
    fn crc32_is_ieee() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn frames_in_every_chunking() {
        let body = body();
        let whole = events(&[&body], 1 << 20);
        assert_eq!(whole.1, None);
        assert_eq!(whole.0.len(), 3);
        assert_eq!(whole.0[1].0, "contentBlockDelta");
        assert!(whole.0[2].1.contains("end_turn"));
        for cut in 0..=body.len() {
            assert_eq!(events(&[&body[..cut], &body[cut..]], 1 << 20), whole);
            for second in (cut..=body.len()).step_by(7) {
                let chunks = [&body[..cut], &body[cut..second], &body[second..]];
                assert_eq!(events(&chunks, 1 << 20), whole, "cuts {cut} {second}");
            }
        }
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(events(&bytes, 1 << 20), whole);
    }

    #[test]
    fn a_bad_crc_stops_decoding_and_nothing_after_is_read() {
        let body = body();
        let first = event("messageStart", r#"{"p":"abc","role":"assistant"}"#).len();
        // A payload byte of the second frame changed: its message CRC no longer matches.
        let mut bad = body.clone();
        bad[first + 60] ^= 1;
        let (out, why) = events(&[&bad], 1 << 20);
        assert_eq!(out.len(), 1);
        assert_eq!(why, Some(why::MESSAGE_CRC));
        for size in [1, 5, 13] {
            let chunks: Vec<&[u8]> = bad.chunks(size).collect();
            assert_eq!(events(&chunks, 1 << 20), (out.clone(), why));
        }
        // The prelude's length changed: its CRC no longer matches.
        let mut bad = body.clone();
        bad[first + 3] ^= 1;
        let (out, why) = events(&[&bad], 1 << 20);
        assert_eq!((out.len(), why), (1, Some(why::PRELUDE_CRC)));
    }

    #[test]
    fn a_frame_claiming_4_gib_stops_without_buffering() {
        let mut prelude = Vec::new();
        prelude.extend_from_slice(&u32::MAX.to_be_bytes());
        prelude.extend_from_slice(&0u32.to_be_bytes());
        let crc = crc32(&prelude);
        prelude.extend_from_slice(&crc.to_be_bytes());
        let mut splitter = EventStreamSplitter::new(1 << 20);
        let mut seen = 0;
        splitter.feed(&prelude, &mut |_| seen += 1);
        for _ in 0..100 {
            splitter.feed(&[0u8; 4096], &mut |_| seen += 1);
        }
        assert_eq!(seen, 0);
        assert_eq!(splitter.malformed(), Some(why::TOO_LARGE));
        assert!(splitter.stopped_at_limit());
        assert!(splitter.partial.capacity() == 0);
    }

    #[test]
    fn a_header_flood_is_refused() {
        let names: Vec<String> = (0..1000).map(|i| format!("h{i}")).collect();
        let headers: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
        let flood = encode_frame(&headers, b"{}");
        let (out, why) = events(&[&flood], 1 << 20);
        assert!(out.is_empty());
        assert_eq!(why, Some(why::HEADERS));
        // An unknown header type is malformed too.
        let mut odd = encode_frame(&[(":event-type", "x")], b"{}");
        odd[PRELUDE + 12] = 42;
        let total = odd.len();
        let crc = crc32(&odd[..total - 4]);
        odd[total - 4..].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(events(&[&odd], 1 << 20).1, Some(why::HEADERS));
    }

    #[test]
    fn exceptions_are_named_and_cut_frames_said() {
        let exception = encode_frame(
            &[
                (":exception-type", "throttlingException"),
                (":content-type", "application/json"),
                (":message-type", "exception"),
            ],
            br#"{"message":"Too many requests"}"#,
        );
        let (out, why) = events(&[&exception], 1 << 20);
        assert_eq!(out[0].0, "exception:throttlingException");
        assert_eq!(why, None);
        let body = body();
        let (out, why) = events(&[&body[..body.len() - 3]], 1 << 20);
        assert_eq!((out.len(), why), (2, Some(why::CUT)));
        // Cut short by a cancel: the call says so; the framer does not.
        let mut splitter = EventStreamSplitter::new(1 << 20);
        let mut seen = 0;
        splitter.feed(&body[..body.len() - 3], &mut |_| seen += 1);
        splitter.finish(false, &mut |_| seen += 1);
        assert_eq!((seen, splitter.malformed()), (2, None));
    }
}
