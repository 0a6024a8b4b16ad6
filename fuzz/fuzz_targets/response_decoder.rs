//! SSE parser + stream assembler + JSON decoder, fed arbitrary bytes in arbitrary chunkings:
//! no panic, and the result never depends on the chunking.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    // Layout: [selector][number of cuts n][n cut sizes][body...]
    let Some((&selector, rest)) = input.split_first() else { return };
    let Some((&count, rest)) = rest.split_first() else { return };
    let count = usize::from(count % 16).min(rest.len());
    let (cuts, body) = rest.split_at(count);
    llm_observability::fuzzing::response_in_any_chunking(selector, body, cuts);
});
