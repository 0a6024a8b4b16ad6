//! Memory the layer adds to a call, measured with a counting global allocator (no timing):
//!
//! - a ~10 MiB chat-completions event stream (token-sized deltas), and one carrying 10 MiB of
//!   assembled content (1 KiB deltas): the layer adds less than 2x the assembled content to the
//!   call's peak heap, and the payload holds the whole content;
//! - a 100 MiB non-stream JSON body in 64 KiB frames: the layer adds at most its response
//!   capture cap plus 1 MiB, and the payload says `truncated` with a capture-limit decode error.
//!
//! Each call is driven in process through a tower service on a current-thread runtime, its
//! body generated frame by frame and dropped by the client frame by frame; the layer's share is
//! the peak with the layer minus the peak of the same call without it, in the same process.
//! Every call also checks that the client got exactly the bytes served (count, frames and a
//! checksum) and that exactly one payload arrived. All measurements run in this one test, so
//! nothing else allocates meanwhile. Scenario code: `tests/support/memory_scenarios.rs`, shared
//! with `benches/memory.rs`.

#[path = "support/alloc_meter.rs"]
mod alloc_meter;
#[path = "support/memory_scenarios.rs"]
mod memory_scenarios;
mod support;

use memory_scenarios::Measured;

fn check_traffic_and_payload(row: &Measured) {
    let name = row.scenario.name;
    let call = row.checked_payload();
    if row.scenario.is_stream() {
        assert!(
            !call.truncated,
            "{name}: content cut short: {:?}",
            call.decode_errors
        );
        assert!(
            call.decode_errors.is_empty(),
            "{name}: {:?}",
            call.decode_errors
        );
        assert_eq!(call.finish_reasons, ["stop"], "{name}");
        let content = row.payload_content().expect("assembled message content");
        let mut digest = memory_scenarios::Digest::default();
        digest.update(content.as_bytes());
        let served = row.with_layer.first().content;
        assert_eq!(
            (digest.bytes, digest.hash()),
            (served.bytes, served.hash()),
            "{name}: the payload does not hold the whole content"
        );
    } else {
        assert!(call.truncated, "{name}: payload not flagged truncated");
        assert!(
            call.response.is_none(),
            "{name}: an over-cap body is not decoded"
        );
        assert!(
            call.decode_errors
                .iter()
                .any(|e| e.contains("exceeded the capture limit")),
            "{name}: {:?}",
            call.decode_errors
        );
    }
}

#[test]
fn layer_memory_stays_within_its_bounds() {
    let runtime = memory_scenarios::runtime();
    let rows: Vec<Measured> = memory_scenarios::scenarios()
        .iter()
        .map(|scenario| memory_scenarios::measure(&runtime, scenario))
        .collect();
    eprintln!("\n{}", memory_scenarios::table(&rows));

    for row in &rows {
        check_traffic_and_payload(row);
    }
    let over: Vec<String> = rows
        .iter()
        .filter(|row| !row.within_bound())
        .map(|row| {
            let relation = if row.scenario.is_stream() {
                "< 2 x assembled content"
            } else {
                "<= capture cap + 1 MiB"
            };
            format!(
                "{}: the layer adds {} bytes at its peak, not {relation} = {} bytes \
                 (peak without the layer {}, with {})",
                row.scenario.name,
                row.layer_peak(),
                row.bound(),
                row.without_layer.heap.peak,
                row.with_layer.heap.peak,
            )
        })
        .collect();
    assert!(over.is_empty(), "over the bound:\n{}", over.join("\n"));
}
