//! Byte transparency as a property: any split of any recorded response body into frames comes
//! out of the layer byte-identical, and the payload does not depend on the split.

mod support;

use std::sync::OnceLock;

use llm_observability::{LlmCall, Timing, TraceContext};
use proptest::prelude::*;
use support::Interaction;

fn interactions() -> &'static [Interaction] {
    static ALL: OnceLock<Vec<Interaction>> = OnceLock::new();
    ALL.get_or_init(|| support::load_interactions().unwrap_or_default())
}

/// The payload without what legitimately differs between two runs (id and clock readings).
fn comparable(call: &LlmCall) -> LlmCall {
    let mut call = call.clone();
    call.id = String::new();
    call.trace =
        TraceContext::from_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
            .expect("valid traceparent");
    let epoch = time::OffsetDateTime::UNIX_EPOCH;
    let mut timing = Timing::new(epoch, epoch);
    timing.time_to_first_token_ms = call.timing.time_to_first_token_ms.map(|_| 0.0);
    timing.time_to_response_head_ms = call.timing.time_to_response_head_ms.map(|_| 0.0);
    call.timing = timing;
    call
}

/// Replays one interaction with the given frames; returns the bytes the client got and the
/// payload (if the call is an LLM call).
fn replay(interaction: &Interaction, frames: Vec<bytes::Bytes>) -> (bytes::Bytes, Option<LlmCall>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let (layer, memory) = support::memory_layer();
        let exchange = support::replay_tower(&layer, interaction, frames).await;
        let calls = support::flushed(&layer, &memory).await;
        assert!(calls.len() <= 1, "at most one payload per call");
        (exchange.response_body, calls.first().map(|c| comparable(c)))
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn any_split_is_byte_identical_and_gives_the_same_payload(
        pick in any::<prop::sample::Index>(),
        sizes in prop::collection::vec(1usize..400, 1..24),
    ) {
        let all = interactions();
        if all.is_empty() {
            return Ok(());
        }
        let interaction = &all[pick.index(all.len())];
        let body = interaction.response_body.as_bytes();
        let (whole_bytes, whole_call) = replay(interaction, vec![bytes::Bytes::copy_from_slice(body)]);
        let (split_bytes, split_call) = replay(interaction, support::split(body, &sizes));
        prop_assert_eq!(&whole_bytes[..], body);
        prop_assert_eq!(&split_bytes[..], body);
        prop_assert_eq!(whole_call, split_call, "payload depends on the split of {}", interaction.name());
    }
}

#[test]
fn every_recording_split_into_single_bytes() {
    // The harshest split, for every recording: one byte per frame (CRLF and UTF-8 sequences
    // torn apart everywhere).
    for interaction in interactions() {
        let body = interaction.response_body.as_bytes();
        let (whole_bytes, whole_call) =
            replay(interaction, vec![bytes::Bytes::copy_from_slice(body)]);
        let (split_bytes, split_call) = replay(interaction, support::split(body, &[1]));
        assert_eq!(&whole_bytes[..], body);
        assert_eq!(&split_bytes[..], body, "{}", interaction.name());
        assert_eq!(whole_call, split_call, "{}", interaction.name());
    }
}

fn compress(encoding: &str, body: &[u8]) -> Vec<u8> {
    use std::io::Write;
    match encoding {
        "gzip" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(body).unwrap();
            e.finish().unwrap()
        }
        "deflate" => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(body).unwrap();
            e.finish().unwrap()
        }
        "br" => {
            let mut out = Vec::new();
            let mut e = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
            e.write_all(body).unwrap();
            drop(e);
            out
        }
        other => panic!("{other}"),
    }
}

#[test]
fn compressed_recordings_pass_through_compressed_and_decode_to_the_same_payload() {
    for interaction in interactions() {
        let (_, plain_call) = replay(
            interaction,
            vec![bytes::Bytes::copy_from_slice(
                interaction.response_body.as_bytes(),
            )],
        );
        for encoding in ["gzip", "deflate", "br"] {
            let compressed = compress(encoding, interaction.response_body.as_bytes());
            let mut served = interaction.clone();
            served.serve_encoding = Some(encoding.to_owned());
            let (bytes, call) = replay(&served, support::split(&compressed, &[13, 200, 1]));
            assert_eq!(
                &bytes[..],
                &compressed[..],
                "{} {encoding}: wire bytes",
                interaction.name()
            );
            assert_eq!(
                call,
                plain_call,
                "{} {encoding}: payload",
                interaction.name()
            );
        }
    }
}
