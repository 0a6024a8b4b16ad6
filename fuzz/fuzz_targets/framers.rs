//! Every stream framing (SSE, NDJSON, streamed JSON array, AWS event-stream) fed arbitrary
//! bytes in arbitrary chunkings: no panic, and the same events whatever the chunking. Input: a
//! selector byte (the framing), a cut count, the cuts, then the body.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Some((&cut_count, rest)) = rest.split_first() else {
        return;
    };
    let cut_count = usize::from(cut_count % 16).min(rest.len());
    let (cuts, body) = rest.split_at(cut_count);
    llm_observability::fuzzing::framer_in_any_chunking(selector, body, cuts);
});
