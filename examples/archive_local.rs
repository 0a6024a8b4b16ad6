//! Archives a few calls as NDJSON objects on local disk with `ArchiveSink` (feature
//! `object-store`), then lists the objects it wrote. Offline:
//!
//! ```text
//! cargo run --example archive_local --features object-store [DIR]
//! ```
//!
//! With `s3://bucket/prefix` instead of `file://DIR` (and `AWS_*` settings) the same code
//! archives to S3.

use std::sync::Arc;
use std::time::Duration;

use llm_observability::{ArchiveSink, Endpoint, LlmCall, LlmObservabilityLayer, Usage};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("llm-observability-archive"));
    let sink = ArchiveSink::builder_from_url(&format!("file://{}", dir.display()))?
        .gzip(true)
        .build();
    let layer = LlmObservabilityLayer::builder().sink(sink).build()?;
    for model in ["gpt-4o-mini", "gpt-4o", "o3-mini"] {
        let mut call = LlmCall::new(Endpoint::ChatCompletions);
        call.request.model = Some(model.to_owned());
        call.usage = Some(Usage::new(42, 7));
        layer.dispatcher().dispatch(Arc::new(call));
    }
    // Shutdown writes the buffer as one object.
    layer.dispatcher().shutdown(Duration::from_secs(10)).await?;
    let stats = layer.dispatcher().stats();
    println!("archive: {} calls delivered", stats.sinks[0].delivered);
    let mut pending = vec![dir.clone()];
    while let Some(path) = pending.pop() {
        for entry in std::fs::read_dir(&path)? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                println!(
                    "{} ({} bytes)",
                    path.display(),
                    std::fs::metadata(&path)?.len()
                );
            }
        }
    }
    Ok(())
}
