//! The README's first command, `cargo run --example demo`: it runs offline, records every call
//! it makes (OpenAI, Anthropic, Gemini, Bedrock) and writes them to `llm-calls.jsonl`.
//!
//! `cargo test` builds the examples before it runs any test; this runs the built binary in a
//! fresh folder and checks what it printed and what it wrote.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

/// `target/<profile>/examples/demo`, next to this test's `target/<profile>/deps/demo-*`.
fn demo_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let profile = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let demo = profile
        .join("examples")
        .join(format!("demo{}", std::env::consts::EXE_SUFFIX));
    assert!(
        demo.exists(),
        "{} is missing: run the tests with `cargo test` (which builds the examples), not `--test demo` alone",
        demo.display()
    );
    demo
}

#[test]
fn the_demo_records_every_call_of_each_provider_and_writes_them_as_jsonl() {
    let dir = std::env::temp_dir().join(format!("llm-obs-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp folder");
    let output = Command::new(demo_binary())
        .current_dir(&dir)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the demo runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the demo failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("All 10 calls recorded as expected."),
        "{stdout}"
    );
    let jsonl = std::fs::read_to_string(dir.join("llm-calls.jsonl")).expect("llm-calls.jsonl");
    let records: Vec<Value> = jsonl
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect();
    let mut providers: Vec<(&str, &str)> = records
        .iter()
        .map(|r| {
            (
                r["provider"].as_str().unwrap_or("?"),
                r["endpoint"].as_str().unwrap_or("?"),
            )
        })
        .collect();
    providers.sort();
    assert_eq!(
        providers,
        [
            ("anthropic", "anthropic.messages"),
            ("aws.bedrock", "bedrock.converse_stream"),
            ("gcp.gemini", "gemini.stream_generate_content"),
            ("openai", "chat.completions"),
            ("openai", "chat.completions"),
            ("openai", "chat.completions"),
            ("openai", "chat.completions"),
            ("openai", "completions"),
            ("openai", "embeddings"),
            ("openai", "responses"),
        ]
    );
    // Credentials of every provider stay out of the records.
    assert!(
        !jsonl.contains("never-recorded"),
        "a credential was recorded"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
