//! Newline-delimited JSON: the one encoding of calls as JSON lines, shared by the sinks that
//! write them (JSONL files, and the webhook and archive sinks to come).

use std::sync::Arc;

use crate::payload::LlmCall;

/// Appends each call of `batch` to `out` as one line of JSON (the [`LlmCall`] schema) ending
/// in `\n`. A call's JSON never contains a raw line break, so one call is always one line.
///
/// ```
/// use std::sync::Arc;
/// use llm_observability::{sink::ndjson, Endpoint, LlmCall};
/// let batch = vec![Arc::new(LlmCall::new(Endpoint::ChatCompletions)); 2];
/// let mut lines = Vec::new();
/// ndjson::encode(&batch, &mut lines)?;
/// assert_eq!(lines.iter().filter(|b| **b == b'\n').count(), 2);
/// let first: LlmCall = serde_json::from_slice(lines.split(|b| *b == b'\n').next().unwrap())?;
/// assert_eq!(first, *batch[0]);
/// # Ok::<(), serde_json::Error>(())
/// ```
pub fn encode(batch: &[Arc<LlmCall>], out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    out.reserve(batch.len() * 1024);
    for call in batch {
        serde_json::to_writer(&mut *out, call.as_ref())?;
        out.push(b'\n');
    }
    Ok(())
}
