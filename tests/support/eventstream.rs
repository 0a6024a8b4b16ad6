//! AWS event-stream frames (Bedrock's `converse-stream`), written here from the spec: for the
//! Bedrock conformance tests and the hostile bodies of `memory_scenarios.rs`, independently of
//! the crate's framer.

use serde_json::Value;

/// CRC-32 (IEEE 802.3, reflected, as zlib's), bit by bit.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= byte as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A prelude (total length, headers length, prelude CRC) claiming `total` and `headers` bytes,
/// its CRC right.
pub fn prelude(total: u32, headers: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(12);
    out.extend_from_slice(&total.to_be_bytes());
    out.extend_from_slice(&headers.to_be_bytes());
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// One frame of string headers (type 7) and `payload`, both CRCs right.
pub fn frame(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut head = Vec::new();
    for (name, value) in headers {
        head.push(name.len() as u8);
        head.extend_from_slice(name.as_bytes());
        head.push(7);
        head.extend_from_slice(&(value.len() as u16).to_be_bytes());
        head.extend_from_slice(value.as_bytes());
    }
    let total = 16 + head.len() + payload.len();
    let mut out = prelude(total as u32, head.len() as u32);
    out.extend_from_slice(&head);
    out.extend_from_slice(payload);
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// One `:message-type event` frame of `kind` (`messageStart`, `contentBlockDelta`, ...) with a
/// JSON payload, as Bedrock sends them.
pub fn event(kind: &str, payload: Value) -> Vec<u8> {
    frame(
        &[
            (":event-type", kind),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        payload.to_string().as_bytes(),
    )
}
