//! The response-side decoder fed by the body tee: chooses the framing — JSON or SSE — from the
//! headers (or, when they say nothing useful, from the first bytes), undoes any
//! `Content-Encoding`, and hands the body to the call's wire format, which turns it into a
//! [`ResponseSummary`]. Nothing here knows an API family.

use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use http::HeaderMap;

use super::assemble::{EventEffect, StreamAssembler};
use super::endpoint::Endpoint;
use super::format_of;
use super::framing::{Framer, Framing};
use super::summary::ResponseSummary;
use crate::capture::BytesCapture;
use crate::decompress::{DecompressError, Decompressor};

/// What the decoder made of a whole response body.
#[derive(Debug, Default)]
pub(crate) struct DecodedResponse {
    pub summary: ResponseSummary,
    /// A capture limit cut the recorded response short.
    pub truncated: bool,
    /// Why (part of) the body could not be decoded.
    pub error: Option<String>,
}

/// How many leading bytes are enough to tell an event stream from JSON.
const SNIFF_BYTES: usize = 16;

// One per observed call, inside the call's own box: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum State {
    /// The headers did not say; waiting for the first non-blank bytes. An event stream is
    /// SSE; anything else is JSON, or, when the wire format streams in another framing, that.
    Sniffing(BytesCapture, Option<Framing>),
    Json(BytesCapture),
    /// A stream, cut into events by its framing and folded by the call's wire format.
    Stream {
        framer: Framer,
        assembler: StreamAssembler,
    },
    /// Bytes we cannot decode (an unsupported encoding); nothing is kept.
    Opaque(String),
}

/// Decoder state for one response body.
#[derive(Debug)]
pub(crate) struct ResponseDecoder {
    endpoint: Endpoint,
    limit: usize,
    state: State,
    /// Undoes `Content-Encoding` before decoding (the wire keeps the compressed bytes).
    decompressor: Option<Decompressor>,
    /// Decompression failed: nothing after that point is decoded (the bytes that follow are
    /// still compressed, or corrupt; they are never read as text).
    decompress_error: Option<DecompressError>,
    /// The response id a header gave ([`WireFormat::response_id_header`]).
    ///
    /// [`WireFormat::response_id_header`]: super::WireFormat::response_id_header
    id_header: Option<String>,
    /// The error type a header gave ([`WireFormat::error_type_header`]).
    ///
    /// [`WireFormat::error_type_header`]: super::WireFormat::error_type_header
    error_type_header: Option<String>,
}

impl ResponseDecoder {
    /// A decoder for a response of `endpoint` with these headers; `limit` bounds both the JSON
    /// capture and the assembled stream content.
    pub(crate) fn new(endpoint: Endpoint, headers: &HeaderMap, limit: usize) -> Self {
        let encoding = headers
            .get(CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|e| !e.is_empty() && !e.eq_ignore_ascii_case("identity"));
        let content_type = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let decompressor = encoding.and_then(|e| Decompressor::for_encoding(e, limit));
        // A framing the wire format streams in whatever the content type says — but SSE, and a
        // plain JSON object where the stream would be binary frames or an array: such calls
        // answer errors so (see `plain_json`), so a JSON content type is sniffed.
        let declared = format_of(endpoint).stream_framing(endpoint);
        let sniff_for_json = content_type.contains("json")
            && matches!(declared, Some(Framing::EventStream | Framing::JsonArray));
        let header = |name: Option<&'static str>| {
            headers
                .get(name?)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let id_header = header(format_of(endpoint).response_id_header(endpoint));
        let error_type_header = header(format_of(endpoint).error_type_header(endpoint))
            .and_then(|v| v.split(':').next().map(str::trim).map(str::to_owned))
            .filter(|v| !v.is_empty());
        let state = if let (Some(encoding), None) = (encoding, &decompressor) {
            State::Opaque(format!(
                "response body has Content-Encoding {encoding:?}, which is not decoded; it was passed through untouched"
            ))
        } else if content_type.starts_with("text/event-stream") {
            Self::stream_state(endpoint, Framing::Sse, limit)
        } else if let (Some(framing), false, false) =
            (declared, content_type.is_empty(), sniff_for_json)
        {
            Self::stream_state(endpoint, framing, limit)
        } else if content_type.contains("json") && !sniff_for_json {
            State::Json(BytesCapture::new(limit))
        } else {
            State::Sniffing(BytesCapture::new(limit), declared)
        };
        ResponseDecoder {
            endpoint,
            limit,
            state,
            decompressor,
            decompress_error: None,
            id_header,
            error_type_header,
        }
    }

    fn stream_state(endpoint: Endpoint, framing: Framing, limit: usize) -> State {
        State::Stream {
            framer: Framer::new(framing, limit),
            assembler: StreamAssembler::new(format_of(endpoint).stream_fold(endpoint), limit),
        }
    }

    /// Feeds one data frame as it came over the wire; returns whether it carried stream content
    /// (the caller keeps the first time it sees `true`).
    pub(crate) fn feed(&mut self, frame: &Bytes) -> bool {
        if self.decompress_error.is_some() {
            return false;
        }
        let Some(decompressor) = &mut self.decompressor else {
            return self.feed_plain(frame);
        };
        match decompressor.feed(frame) {
            Ok(plain) => !plain.is_empty() && self.feed_plain(&plain),
            Err(error) => {
                self.stop_decompressing(error);
                false
            }
        }
    }

    fn stop_decompressing(&mut self, error: crate::decompress::DecompressError) {
        self.decompressor = None;
        self.decompress_error = Some(error);
    }

    fn feed_plain(&mut self, frame: &Bytes) -> bool {
        match &mut self.state {
            State::Json(capture) => {
                capture.push(frame);
                false
            }
            State::Stream { framer, assembler } => {
                let mut content = false;
                framer.feed(frame, &mut |event| {
                    content |= assembler.push(event) == EventEffect::Content;
                });
                content
            }
            State::Opaque(_) => false,
            State::Sniffing(capture, declared) => {
                capture.push(frame);
                match (sniff(capture), *declared) {
                    (Some(true), _) => self.replay_as(Framing::Sse),
                    (Some(false), Some(framing)) if !plain_json(framing, capture) => {
                        self.replay_as(framing)
                    }
                    (Some(false), _) => {
                        let capture = std::mem::replace(capture, BytesCapture::new(0));
                        self.state = State::Json(capture);
                        false
                    }
                    (None, _) => false,
                }
            }
        }
    }

    /// Decodes what a [`State::Sniffing`] captured as a stream of `framing`, and goes on so.
    fn replay_as(&mut self, framing: Framing) -> bool {
        let State::Sniffing(capture, _) =
            std::mem::replace(&mut self.state, State::Opaque(String::new()))
        else {
            return false;
        };
        self.state = Self::stream_state(self.endpoint, framing, self.limit);
        let mut content = false;
        for part in capture.parts() {
            content |= self.feed_plain(part);
        }
        content
    }

    /// Whether the body is a stream that has already said its last word.
    pub(crate) fn stream_ended(&self) -> bool {
        matches!(&self.state, State::Stream { assembler, .. } if assembler.ended())
    }

    /// Ends the body and decodes what it said.
    pub(crate) fn finish(mut self) -> DecodedResponse {
        let headers = (self.id_header.take(), self.error_type_header.take());
        with_headers(self.finish_body(), headers)
    }

    fn finish_body(mut self) -> DecodedResponse {
        if let Some(mut decompressor) = self.decompressor.take() {
            match decompressor.finish() {
                Ok(plain) if !plain.is_empty() => {
                    self.feed_plain(&plain);
                }
                Ok(_) => {}
                Err(error) => self.stop_decompressing(error),
            }
        }
        let decompress_error = self.decompress_error.take();
        let mut decoded = self.decode();
        decoded.truncated |= decoded.summary.truncated;
        if let Some(error) = decoded.summary.decode_error.take() {
            decoded.error = Some(match decoded.error {
                Some(other) => format!("{other}; {error}"),
                None => error,
            });
        }
        if let Some(error) = decompress_error {
            // Past the expansion limit the record is cut short, not wrong.
            decoded.truncated |= matches!(error, DecompressError::TooLarge(_));
            let error = format!(
                "{error}; decoding stopped there (the bytes were passed through untouched)"
            );
            decoded.error = Some(match decoded.error {
                Some(other) => format!("{error}; {other}"),
                None => error,
            });
        }
        decoded
    }

    fn decode(mut self) -> DecodedResponse {
        if let State::Sniffing(capture, declared) = &mut self.state {
            match (sniff(capture), *declared) {
                (Some(true), _) => {
                    self.replay_as(Framing::Sse);
                }
                (Some(false), Some(framing)) if !plain_json(framing, capture) => {
                    self.replay_as(framing);
                }
                _ => {
                    let capture = std::mem::replace(capture, BytesCapture::new(0));
                    self.state = State::Json(capture);
                }
            }
        }
        match self.state {
            State::Json(capture) => {
                let decoded = decode_captured_json(self.endpoint, &capture);
                if decoded.error.is_none() || capture.truncated() || sniff(&capture) != Some(true) {
                    return decoded;
                }
                // An event stream served with a JSON content type: decode it as what it is.
                let mut stream = ResponseDecoder {
                    endpoint: self.endpoint,
                    limit: self.limit,
                    state: Self::stream_state(self.endpoint, Framing::Sse, self.limit),
                    decompressor: None,
                    decompress_error: None,
                    id_header: None,
                    error_type_header: None,
                };
                for part in capture.parts() {
                    stream.feed_plain(part);
                }
                stream.decode()
            }
            State::Stream {
                mut framer,
                mut assembler,
            } => {
                framer.finish(&mut |event| {
                    assembler.push(event);
                });
                let oversized = framer.oversized();
                if assembler.events() == 0 {
                    let error = match (&framer, framer.malformed()) {
                        (_, Some(malformed)) => malformed.to_owned(),
                        (Framer::Sse(_), None) => {
                            "event-stream response carried no events".to_owned()
                        }
                        (_, None) => format!("streamed response carried no {}", framer.events()),
                    };
                    return DecodedResponse {
                        error: Some(error),
                        truncated: oversized > 0,
                        ..DecodedResponse::default()
                    };
                }
                let mut error = assembler.decode_error(framer.events());
                if oversized > 0 {
                    error = Some(format!(
                        "{oversized} {} longer than {} bytes were skipped{}",
                        framer.unit(),
                        self.limit,
                        error.map(|e| format!("; {e}")).unwrap_or_default()
                    ));
                }
                if let Some(malformed) = framer.malformed() {
                    error = Some(match error {
                        Some(error) => format!("{malformed}; {error}"),
                        None => malformed.to_owned(),
                    });
                }
                DecodedResponse {
                    truncated: assembler.truncated() || oversized > 0,
                    summary: assembler.into_summary(),
                    error,
                }
            }
            State::Opaque(reason) => DecodedResponse {
                error: Some(reason),
                ..DecodedResponse::default()
            },
            State::Sniffing(..) => DecodedResponse::default(),
        }
    }

    /// The summary of what arrived so far, for a body that ended early (error or cancel).
    pub(crate) fn finish_partial(mut self) -> DecodedResponse {
        let headers = (self.id_header.take(), self.error_type_header.take());
        with_headers(self.finish_partial_body(), headers)
    }

    fn finish_partial_body(self) -> DecodedResponse {
        match self.state {
            // A cut JSON body would only yield a parse error; say what happened instead.
            State::Json(ref capture) | State::Sniffing(ref capture, _) if capture.len() > 0 => {
                let mut decoded = decode_captured_json(self.endpoint, capture);
                if decoded.error.is_some() {
                    decoded.error = Some(format!(
                        "response body ended after {} bytes, before it was complete",
                        capture.len()
                    ));
                }
                decoded
            }
            _ => self.finish(),
        }
    }
}

/// `decoded` with what the response headers said where its body did not: the response id,
/// and the type of an error reported without one.
fn with_headers(
    mut decoded: DecodedResponse,
    (id, error_type): (Option<String>, Option<String>),
) -> DecodedResponse {
    let summary = &mut decoded.summary;
    if summary.id.is_none() {
        summary.id = id;
    }
    if let Some(error) = summary.error.as_mut().filter(|e| e.kind.is_none()) {
        error.kind = error_type;
    }
    decoded
}

fn decode_captured_json(endpoint: Endpoint, capture: &BytesCapture) -> DecodedResponse {
    if capture.truncated() {
        return DecodedResponse {
            truncated: true,
            error: Some(format!(
                "response body exceeded the capture limit of {} bytes; it was passed through but not decoded",
                capture.limit()
            )),
            ..DecodedResponse::default()
        };
    }
    let body = capture.contiguous();
    if body.iter().all(u8::is_ascii_whitespace) {
        return DecodedResponse {
            error: Some("response body was empty".to_owned()),
            ..DecodedResponse::default()
        };
    }
    match format_of(endpoint).decode_response(endpoint, &body) {
        Ok(summary) => DecodedResponse {
            summary,
            ..DecodedResponse::default()
        },
        Err(error) => DecodedResponse {
            error: Some(format!("response body is not valid JSON: {error}")),
            ..DecodedResponse::default()
        },
    }
}

/// Whether a body sniffed as not SSE is one JSON object rather than a stream of `framing`: an
/// event-stream frame opens with its length and a streamed array with `[`, never with `{`;
/// an error body does. (NDJSON lines are objects: never asked.)
fn plain_json(framing: Framing, capture: &BytesCapture) -> bool {
    matches!(framing, Framing::EventStream | Framing::JsonArray)
        && capture
            .parts()
            .iter()
            .flat_map(|part| part.iter())
            .find(|b| !b.is_ascii_whitespace())
            == Some(&b'{')
}

/// `Some(true)` for an event stream, `Some(false)` for anything else, `None` when the bytes so
/// far are all blank (or a BOM) and more are needed.
fn sniff(capture: &BytesCapture) -> Option<bool> {
    let mut head = Vec::with_capacity(SNIFF_BYTES);
    for part in capture.parts() {
        head.extend_from_slice(&part[..part.len().min(SNIFF_BYTES - head.len())]);
        if head.len() == SNIFF_BYTES {
            break;
        }
    }
    let head = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&head);
    let start = head.iter().position(|b| !b.is_ascii_whitespace())?;
    let head = &head[start..];
    const SSE_FIELDS: [&[u8]; 5] = [b"data:", b"event:", b":", b"id:", b"retry:"];
    if SSE_FIELDS.iter().any(|f| head.starts_with(f)) {
        return Some(true);
    }
    // A prefix of a field name: wait for more bytes unless we already have plenty.
    if head.len() < 6 && SSE_FIELDS.iter().any(|f| f.starts_with(head)) && !capture.truncated() {
        return None;
    }
    Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(content_type: Option<&'static str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(ct) = content_type {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(ct));
        }
        headers
    }

    const STREAM: &str =
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n";

    const FORGED: &str =
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"FORGED\"}}]}\n\n";

    fn gzip(text: &[u8]) -> Bytes {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(text).expect("in memory");
        Bytes::from(encoder.finish().expect("in memory"))
    }

    fn gzip_sse(limit: usize) -> ResponseDecoder {
        let mut headers = headers(Some("text/event-stream"));
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        ResponseDecoder::new(Endpoint::ChatCompletions, &headers, limit)
    }

    fn content_of(decoded: &DecodedResponse) -> String {
        decoded
            .summary
            .response
            .as_ref()
            .map(|r| r.text().to_owned())
            .unwrap_or_default()
    }

    #[test]
    fn bytes_after_a_corrupt_gzip_stream_are_never_read_as_text() {
        let mut decoder = gzip_sse(1 << 20);
        let first = gzip(STREAM.split("data: [DONE]").next().unwrap_or("").as_bytes());
        // A gzip member cut short, then plain text that would decode as an event.
        decoder.feed(&first.slice(..first.len() - 8));
        decoder.feed(&Bytes::from_static(b"\x00\xffnot gzip at all"));
        decoder.feed(&Bytes::from_static(FORGED.as_bytes()));
        let decoded = decoder.finish();
        assert!(!content_of(&decoded).contains("FORGED"), "{decoded:?}");
        let error = decoded.error.as_deref().unwrap_or("");
        assert!(error.contains("decoding stopped there"), "{error}");
        assert!(!decoded.truncated);
    }

    #[test]
    fn a_frame_past_the_expansion_limit_ends_decoding_and_marks_truncated() {
        let mut decoder = gzip_sse(256);
        let big = format!(
            "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{}\"}}}}]}}\n\n",
            "x".repeat(4096)
        );
        decoder.feed(&gzip(big.as_bytes()));
        decoder.feed(&Bytes::from_static(FORGED.as_bytes()));
        let decoded = decoder.finish();
        assert!(!content_of(&decoded).contains("FORGED"), "{decoded:?}");
        assert!(decoded.truncated);
        assert!(decoded
            .error
            .as_deref()
            .is_some_and(|e| e.contains("expands past the capture limit")));
    }

    #[test]
    fn a_json_error_object_on_a_streamed_array_endpoint_is_json() {
        let body = br#"{"error": {"code": 404, "message": "models/x is not found", "status": "NOT_FOUND"}}"#;
        for content_type in [Some("application/json; charset=UTF-8"), None] {
            let mut decoder = ResponseDecoder::new(
                Endpoint::GeminiStreamGenerateContent,
                &headers(content_type),
                1 << 20,
            );
            for piece in body.chunks(7) {
                decoder.feed(&Bytes::copy_from_slice(piece));
            }
            let decoded = decoder.finish();
            assert_eq!(decoded.error, None, "{content_type:?}");
            let error = decoded.summary.error.expect("the error");
            assert_eq!(error.kind.as_deref(), Some("NOT_FOUND"));
            assert_eq!(error.message.as_deref(), Some("models/x is not found"));
        }
    }

    #[test]
    fn sniffs_an_event_stream_without_content_type() {
        let mut decoder = ResponseDecoder::new(Endpoint::ChatCompletions, &headers(None), 1 << 20);
        let mut first = false;
        for piece in [&STREAM[..2], &STREAM[2..9], &STREAM[9..]] {
            first |= decoder.feed(&Bytes::copy_from_slice(piece.as_bytes()));
        }
        assert!(first);
        let decoded = decoder.finish();
        assert_eq!(
            decoded.summary.response.unwrap()["choices"][0]["message"]["content"],
            "hi"
        );
    }

    #[test]
    fn json_without_content_type() {
        let mut decoder = ResponseDecoder::new(Endpoint::Embeddings, &headers(None), 1 << 20);
        decoder.feed(&Bytes::from_static(b"  {\"object\":\"list\",\"data\":[]}"));
        let decoded = decoder.finish();
        assert_eq!(decoded.summary.response.unwrap()["object"], "list");
    }

    #[test]
    fn over_the_limit_json_is_flagged_not_decoded() {
        let mut decoder = ResponseDecoder::new(
            Endpoint::ChatCompletions,
            &headers(Some("application/json")),
            8,
        );
        decoder.feed(&Bytes::from_static(b"{\"id\":\"0123456789\"}"));
        let decoded = decoder.finish();
        assert!(decoded.truncated);
        assert!(decoded.error.unwrap().contains("capture limit"));
    }

    fn with_encoding(content_type: &'static str, encoding: &'static str) -> HeaderMap {
        let mut h = headers(Some(content_type));
        h.insert(CONTENT_ENCODING, HeaderValue::from_static(encoding));
        h
    }

    #[test]
    fn gzip_bodies_are_decoded_for_the_payload() {
        use std::io::Write as _;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(STREAM.as_bytes()).unwrap();
        let compressed = gz.finish().unwrap();
        let h = with_encoding("text/event-stream", "gzip");
        let mut decoder = ResponseDecoder::new(Endpoint::ChatCompletions, &h, 1 << 20);
        for piece in compressed.chunks(5) {
            decoder.feed(&Bytes::copy_from_slice(piece));
        }
        let decoded = decoder.finish();
        assert_eq!(decoded.error, None);
        assert_eq!(
            decoded.summary.response.unwrap()["choices"][0]["message"]["content"],
            "hi"
        );
    }

    #[test]
    fn unsupported_or_corrupt_encodings_are_reported() {
        let h = with_encoding("application/json", "zstd");
        let mut decoder = ResponseDecoder::new(Endpoint::ChatCompletions, &h, 1 << 20);
        decoder.feed(&Bytes::from_static(b"\x28\xb5\x2f\xfd"));
        assert!(decoder
            .finish()
            .error
            .unwrap()
            .contains("\"zstd\", which is not decoded"));

        let h = with_encoding("application/json", "gzip");
        let mut decoder = ResponseDecoder::new(Endpoint::ChatCompletions, &h, 1 << 20);
        decoder.feed(&Bytes::from_static(b"{\"not\": \"gzip\"}"));
        let error = decoder.finish().error.unwrap();
        assert!(error.starts_with("body is not valid gzip"), "{error}");
    }
}
