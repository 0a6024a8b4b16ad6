//! Peak heap the layer adds to one whole call, against the same call without it in the same
//! run, measured with a counting global allocator: a ~10 MiB chat SSE stream of token deltas,
//! a stream of 10 MiB assembled content, and a 100 MiB non-stream JSON body (the scenarios of
//! `tests/memory.rs`, from `tests/support/memory_scenarios.rs`). Then the response decoder
//! alone on the same frames, to attribute the layer's peak to the stream (state kept while the
//! body flows) or its end (building the assembled response).
//!
//! `cargo bench --bench memory` prints the tables; it asserts nothing (`tests/memory.rs` does).

#[path = "../tests/support/alloc_meter.rs"]
mod alloc_meter;
#[path = "../tests/support/memory_scenarios.rs"]
mod memory_scenarios;
#[path = "../tests/support/mod.rs"]
#[allow(unused)]
mod support;

fn mib(bytes: usize) -> String {
    format!("{:.2} MiB", bytes as f64 / (1 << 20) as f64)
}

fn main() {
    let runtime = memory_scenarios::runtime();
    let scenarios = memory_scenarios::scenarios();
    let rows: Vec<_> = scenarios
        .iter()
        .map(|scenario| memory_scenarios::measure(&runtime, scenario))
        .collect();
    println!("whole call, without and with the layer (memory sink):");
    println!("{}", memory_scenarios::table(&rows));
    for row in &rows {
        let payloads = row.with_layer.payloads.len();
        let traffic_ok = row.without_layer.intact() && row.with_layer.intact();
        println!(
            "{:<34} bytes out == bytes in: {traffic_ok}; payloads: {payloads}; within bound ({}): {}",
            row.scenario.name,
            mib(row.bound()),
            row.within_bound()
        );
    }

    println!("\nthe response decoder alone, fed the same frames:");
    println!(
        "{:<34} {:>14} {:>14} {:>14} {:>14}",
        "scenario", "peak streaming", "kept at end", "peak w/ finish", "result kept"
    );
    for scenario in &scenarios {
        let (fed, finished) = memory_scenarios::decoder_only(scenario);
        println!(
            "{:<34} {:>14} {:>14} {:>14} {:>14}",
            scenario.name,
            mib(fed.peak),
            mib(fed.retained),
            mib(finished.peak),
            mib(finished.retained)
        );
    }
}
