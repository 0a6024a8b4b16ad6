//! Internal decoders, exposed for the benchmarks in `benches/`. Not a stable API.

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::HeaderMap;

use crate::payload::RequestRecord;
use crate::wire::decoder::ResponseDecoder;
use crate::wire::endpoint::Endpoint;

/// A response decoder as the body tee drives it.
#[derive(Debug)]
pub struct BodyDecoder(pub(crate) ResponseDecoder);

impl BodyDecoder {
    /// A decoder for a response of `endpoint` with this content type (`None`: no header, the
    /// body is sniffed) and limit.
    pub fn new(endpoint: Endpoint, content_type: Option<&'static str>, limit: usize) -> Self {
        let mut headers = HeaderMap::new();
        if let Some(content_type) = content_type {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        }
        BodyDecoder(ResponseDecoder::new(endpoint, &headers, limit))
    }

    /// Feeds one frame; `true` when it carried stream content.
    pub fn feed(&mut self, frame: &Bytes) -> bool {
        self.0.feed(frame)
    }

    /// Ends the body and returns the assembled response.
    pub fn finish(self) -> Option<crate::Json> {
        self.0.finish().summary.response
    }
}

/// Decodes a request body.
pub fn decode_request(body: &[u8]) -> Result<RequestRecord, serde_json::Error> {
    crate::wire::openai::request::decode_request(body)
}
