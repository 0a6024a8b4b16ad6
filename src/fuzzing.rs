//! Entry points for the fuzz targets in `fuzz/` (compiled only with `--cfg fuzzing`, which
//! `cargo fuzz` sets). Each panics when a property is broken, so the fuzzer reports it.

use bytes::Bytes;

use crate::internals::BodyDecoder;
use crate::wire::endpoint::Endpoint;

const ENDPOINTS: [Endpoint; 4] = [
    Endpoint::ChatCompletions,
    Endpoint::Completions,
    Endpoint::Embeddings,
    Endpoint::Responses,
];

/// Feeds `body` to the response decoder (SSE, JSON or sniffed, by `selector`) split at
/// `cuts`, and checks that the result equals the one-frame result: decoding never depends on
/// how the bytes were chunked, and never panics.
pub fn response_in_any_chunking(selector: u8, body: &[u8], cuts: &[u8]) {
    let endpoint = ENDPOINTS[usize::from(selector) % ENDPOINTS.len()];
    decoded_alike_in_any_chunking(endpoint, selector / 4, body, cuts);
}

/// As [`response_in_any_chunking`], for Anthropic Messages responses: an SSE stream of
/// `message_start` / `content_block_*` / `message_delta` / `ping` / `error` events, or a JSON
/// Message, with the content type chosen by `selector`.
pub fn anthropic_response_in_any_chunking(selector: u8, body: &[u8], cuts: &[u8]) {
    decoded_alike_in_any_chunking(Endpoint::AnthropicMessages, selector, body, cuts);
}

fn decoded_alike_in_any_chunking(endpoint: Endpoint, selector: u8, body: &[u8], cuts: &[u8]) {
    let content_type = match selector % 3 {
        0 => Some("text/event-stream"),
        1 => Some("application/json"),
        _ => None,
    };
    let limit = 1 << 16;
    let whole = {
        let mut decoder = BodyDecoder::new(endpoint, content_type, limit);
        decoder.feed(&Bytes::copy_from_slice(body));
        decoder.0.finish()
    };
    let split = {
        let mut decoder = BodyDecoder::new(endpoint, content_type, limit);
        let mut rest = body;
        for &cut in cuts {
            let at = usize::from(cut).min(rest.len());
            let (frame, tail) = rest.split_at(at);
            decoder.feed(&Bytes::copy_from_slice(frame));
            rest = tail;
        }
        decoder.feed(&Bytes::copy_from_slice(rest));
        decoder.0.finish()
    };
    assert_eq!(whole.summary, split.summary, "summary depends on chunking");
    assert_eq!(
        whole.truncated, split.truncated,
        "truncation depends on chunking"
    );
    assert_eq!(
        whole.error.is_some(),
        split.error.is_some(),
        "errors depend on chunking"
    );
}

/// Decodes arbitrary bytes as a request of every wire format; must never panic.
pub fn request(body: &[u8]) {
    for endpoint in [Endpoint::ChatCompletions, Endpoint::AnthropicMessages] {
        let _ = crate::wire::format_of(endpoint).decode_request(endpoint, body);
    }
}

/// Cuts `body` into events with the framing `selector` picks (SSE, NDJSON, a streamed JSON
/// array, AWS event-stream frames), whole and split at `cuts`, and checks that the events, the
/// skipped units and a stop are the same: framing never depends on chunking, and never panics.
pub fn framer_in_any_chunking(selector: u8, body: &[u8], cuts: &[u8]) {
    use crate::wire::framing::{Framer, Framing};
    let framing = match selector % 4 {
        0 => Framing::Sse,
        1 => Framing::Ndjson,
        2 => Framing::JsonArray,
        _ => Framing::EventStream,
    };
    let limit = 1 << 12;
    let run = |pieces: &[&[u8]]| {
        let mut framer = Framer::new(framing, limit);
        let mut events = Vec::new();
        let mut push = |event: crate::wire::Event<'_>| {
            events.push((event.name.to_vec(), event.data.to_vec()));
        };
        for piece in pieces {
            framer.feed(piece, &mut push);
        }
        framer.finish(true, &mut push);
        (events, framer.oversized(), framer.malformed().is_some())
    };
    let whole = run(&[body]);
    let mut pieces = Vec::new();
    let mut rest = body;
    for &cut in cuts {
        let at = usize::from(cut).min(rest.len());
        let (piece, tail) = rest.split_at(at);
        pieces.push(piece);
        rest = tail;
    }
    pieces.push(rest);
    assert_eq!(whole, run(&pieces), "framing depends on chunking");
}
