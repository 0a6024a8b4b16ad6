//! Anthropic Messages responses (streams and JSON) in any chunking: never a panic, and the same
//! record whatever the frame boundaries. Input: a selector byte (content type), a cut count,
//! the cuts, then the body.
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
    llm_observability::fuzzing::anthropic_response_in_any_chunking(selector, body, cuts);
});
