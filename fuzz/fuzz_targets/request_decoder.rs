//! The request decoder on arbitrary bytes: no panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    llm_observability::fuzzing::request(input);
});
