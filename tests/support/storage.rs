//! Calls with every field the storage sinks care about filled in, varied from call to call.

use std::sync::Arc;
use std::time::Duration;

use llm_observability::{
    CallError, CallStatus, Cost, DispatcherConfig, Endpoint, LlmCall, Timing, Usage,
};
use serde_json::json;

/// `count` calls: models, providers, statuses, users, sessions and costs vary; times are whole
/// microseconds (what PostgreSQL keeps) an hour apart at most.
pub fn sample_calls(count: usize) -> Vec<Arc<LlmCall>> {
    // 2026-03-04T05:06:07.123456Z
    let base = time::OffsetDateTime::from_unix_timestamp_nanos(1_772_600_767_123_456_000)
        .expect("a valid time");
    (0..count)
        .map(|i| {
            let mut call = LlmCall::new(Endpoint::ChatCompletions);
            call.request.model = Some(["gpt-4o-mini", "gpt-4o", "o3-mini"][i % 3].to_owned());
            call.response_model = call.request.model.as_ref().map(|m| format!("{m}-2025"));
            call.provider = ["openai", "azure.ai.openai"][i % 2].to_owned();
            call.request.stream = i % 2 == 0;
            call.request.messages = Some(
                json!([{"role": "user", "content": format!("question {i} with \"quotes\", \\ and é")}])
                    .into(),
            );
            call.response = Some(json!({"choices": [{"message": {"content": format!("answer {i}")}}]}).into());
            let start = base + Duration::from_secs(61 * i as u64);
            let end = start + Duration::from_millis(100 + 37 * i as u64);
            call.timing = Timing::new(start, end);
            call.timing.time_to_first_token_ms = (i % 2 == 0).then_some(12.5 + i as f64);
            if i % 5 == 4 {
                call.status = CallStatus::Error;
                call.http_status = Some(429);
                call.error = Some(CallError::new("rate_limit_error", "slow down"));
                call.error_type = Some("rate_limit_error".to_owned());
            } else {
                let mut usage = Usage::new(100 + i as u64, 20 + i as u64);
                usage.cached_input_tokens = Some(i as u64);
                usage.reasoning_tokens = (i % 3 == 2).then_some(7);
                call.usage = Some(usage);
                call.finish_reasons = vec!["stop".to_owned()];
                // Priced, except every seventh call (a model without a price). Binary
                // fractions: serde_json (without `float_roundtrip`) reads some decimals back
                // one unit in the last place off, which would hide what these tests check.
                if i % 7 != 6 {
                    call.cost = Some(Cost::new(
                        (i + 1) as f64 / 4096.0,
                        i as f64 / 65536.0,
                        (i % 4) as f64 / 1024.0,
                        "built-in",
                    ));
                }
            }
            call.metadata.insert("user_id".into(), json!(format!("user-{}", i % 4)));
            call.metadata.insert("session_id".into(), json!(format!("session-{}", i % 3)));
            call.metadata.insert("tags".into(), json!(["a", i]));
            Arc::new(call)
        })
        .collect()
}

/// A dispatcher configuration for tests: batches of `batch_size`, quick retries.
pub fn quick_dispatch(batch_size: usize) -> DispatcherConfig {
    DispatcherConfig::builder()
        .batch_size(batch_size)
        .batch_interval(Duration::from_millis(50))
        .initial_backoff(Duration::from_millis(20))
        .max_backoff(Duration::from_secs(2))
        .max_retries(5)
        .export_timeout(Duration::from_secs(10))
        .build()
}
