//! The hostile bodies of issue #12 at full size, each through a whole in-process call with the
//! default limits, without and with the layer: the peak heap the layer adds, wall and process
//! CPU time both ways, and whether the payload says `truncated` (scenarios in
//! `tests/support/memory_scenarios.rs`; `tests/hostile.rs` asserts the memory bounds on
//! smaller bodies). Then the response decoder alone on the same frames, to attribute the peak.
//!
//! `cargo bench --bench hostile` prints the tables; it asserts nothing.

#[path = "../tests/support/alloc_meter.rs"]
mod alloc_meter;
#[path = "../tests/support/memory_scenarios.rs"]
mod memory_scenarios;
#[path = "../tests/support/mod.rs"]
#[allow(unused)]
mod support;

use memory_scenarios::Size;

fn mib(bytes: usize) -> String {
    format!("{:.2} MiB", bytes as f64 / (1 << 20) as f64)
}

fn main() {
    let runtime = memory_scenarios::runtime();
    let scenarios = memory_scenarios::hostile_scenarios(Size::Full);
    let mut rows = Vec::new();
    for scenario in &scenarios {
        let row = memory_scenarios::measure(&runtime, scenario);
        let traffic_ok = row.without_layer.intact() && row.with_layer.intact();
        eprintln!(
            "{}: measured; bytes out == bytes in: {traffic_ok}; payloads: {}",
            scenario.name,
            row.with_layer.payloads.len()
        );
        rows.push(row);
    }
    println!("whole calls, without and with the layer (default limits, memory sink):");
    println!("{}", memory_scenarios::hostile_table(&rows));
    for row in &rows {
        let traffic_ok = row.without_layer.intact() && row.with_layer.intact();
        let errors = row
            .with_layer
            .payloads
            .first()
            .map(|call| call.decode_errors.join("; "))
            .unwrap_or_default();
        println!(
            "{:<42} bytes out == bytes in: {traffic_ok}; payloads: {}, dropped and counted: {}; \
             decode errors: {errors:.160}",
            row.scenario.name,
            row.with_layer.payloads.len(),
            row.with_layer.dropped,
        );
    }

    println!("\nthe response decoder alone, fed the same frames (one call):");
    println!(
        "{:<42} {:>14} {:>14} {:>14} {:>14}",
        "scenario", "peak streaming", "kept at end", "peak w/ finish", "result kept"
    );
    for scenario in scenarios.iter().filter(|s| s.calls == 1) {
        let (fed, finished) = memory_scenarios::decoder_only(scenario);
        println!(
            "{:<42} {:>14} {:>14} {:>14} {:>14}",
            scenario.name,
            mib(fed.peak),
            mib(fed.retained),
            mib(finished.peak),
            mib(finished.retained)
        );
    }
}
