//! The redaction processor: what of a call's content reaches the sinks.
//!
//! Three policies ([`Redaction`]):
//! - [`keep_all`](Redaction::keep_all): everything, except base64 data (images, audio) cut to a
//!   short marker;
//! - [`content`](Redaction::content): no message or output text — every string of the
//!   messages, prompt, input, instructions, tool definitions, response and error message
//!   becomes `"[redacted: N chars]"` — while roles, content-part types, tool and function
//!   names, ids, finish reasons, lengths, token counts, cost, timing, status and metadata stay;
//! - [`custom`](Redaction::custom): your closure (after the data cut).
//!
//! Give the layer one with
//! [`LlmObservabilityLayerBuilder::redact`](crate::LlmObservabilityLayerBuilder::redact): its
//! policy runs once, as the call ends — before the call's span records the error message and
//! before any processor or sink sees the call — on success, error, streamed and cancelled calls
//! alike; its base64 cut runs off the request path, as the first processor. A `Redaction` is
//! also a [processor](crate::process): in a sink's
//! [`SinkConfig::processor`](crate::SinkConfig::processor) it works on that sink's own copy, and
//! can only remove more (it sees what the layer's left).
//!
//! Per request, the application can ask for more with the [`Redact`] extension: this call's
//! content redacted (as [`Redaction::content`]) whatever the processors, and/or the call kept
//! out of named sinks — as LiteLLM's `turn_off_message_logging` does.
//!
//! ```
//! use llm_observability::process::redact::Redaction;
//! use llm_observability::{Endpoint, LlmCall, Processor};
//!
//! let mut call = LlmCall::new(Endpoint::ChatCompletions);
//! call.request.messages = Some(serde_json::json!(
//!     [{"role": "user", "content": "my card is 4111 1111 1111 1111"}]).into());
//! Redaction::content().process(&mut call).unwrap();
//! let messages = call.request.messages.unwrap();
//! assert_eq!(messages[0]["role"], "user");
//! assert_eq!(messages[0]["content"], "[redacted: 30 chars]");
//! ```

use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use crate::json::Json;
use crate::payload::LlmCall;
use crate::process::{ProcessError, Processor};

/// Base64 data longer than this many bytes is cut by default.
pub const DEFAULT_DATA_LIMIT: usize = 256;

/// Object keys whose string values describe a call's structure, not its content: kept by
/// [`Redaction::content`].
const STRUCTURE_KEYS: &[&str] = &[
    "role",
    "type",
    "name",
    "id",
    "tool_call_id",
    "call_id",
    "object",
    "model",
    "finish_reason",
    "status",
    "code",
    "param",
    "format",
    "detail",
    "system_fingerprint",
    "service_tier",
    "previous_response_id",
];

type Custom = Arc<dyn Fn(&mut LlmCall) -> Result<(), ProcessError> + Send + Sync>;

#[derive(Clone)]
enum Policy {
    KeepAll,
    Content,
    Custom(Custom),
}

/// The redaction processor. See the [module docs](self).
///
/// ```
/// use llm_observability::process::redact::Redaction;
/// use llm_observability::{LlmObservabilityLayer, MemorySink, SinkConfig};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let layer = LlmObservabilityLayer::builder()
///     .processor(Redaction::keep_all()) // images cut to a marker, everything else kept
///     .sink(MemorySink::new())
///     // this sink never sees prompts or outputs
///     .sink_with(MemorySink::new(), SinkConfig::new().processor(Redaction::content()))
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Redaction {
    policy: Policy,
    data_limit: Option<usize>,
}

impl fmt::Debug for Redaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let policy = match self.policy {
            Policy::KeepAll => "keep_all",
            Policy::Content => "content",
            Policy::Custom(_) => "custom",
        };
        f.debug_struct("Redaction")
            .field("policy", &policy)
            .field("data_limit", &self.data_limit)
            .finish()
    }
}

impl Redaction {
    /// Keeps all content; base64 data over [`DEFAULT_DATA_LIMIT`] bytes is cut to a marker.
    pub fn keep_all() -> Self {
        Redaction {
            policy: Policy::KeepAll,
            data_limit: Some(DEFAULT_DATA_LIMIT),
        }
    }

    /// Drops message and output content, keeping roles, tool names, lengths, token counts,
    /// cost and timing (see [`redact_content`]).
    pub fn content() -> Self {
        Redaction {
            policy: Policy::Content,
            data_limit: Some(DEFAULT_DATA_LIMIT),
        }
    }

    /// Runs `redact` on each call, after base64 data is cut. An error (or a panic) removes
    /// the call's content, as for every processor.
    pub fn custom(
        redact: impl Fn(&mut LlmCall) -> Result<(), ProcessError> + Send + Sync + 'static,
    ) -> Self {
        Redaction {
            policy: Policy::Custom(Arc::new(redact)),
            data_limit: Some(DEFAULT_DATA_LIMIT),
        }
    }

    /// Cuts base64 data (data URLs, `input_audio.data`, `b64_json`, ...) longer than `bytes`
    /// to a marker (default [`DEFAULT_DATA_LIMIT`]).
    pub fn data_limit(mut self, bytes: usize) -> Self {
        self.data_limit = Some(bytes);
        self
    }

    /// Keeps base64 data whole.
    pub fn keep_data(mut self) -> Self {
        self.data_limit = None;
        self
    }
}

impl Processor for Redaction {
    fn name(&self) -> &str {
        "redaction"
    }

    fn process(&self, call: &mut LlmCall) -> Result<(), ProcessError> {
        if let Some(limit) = self.data_limit {
            cut_data(call, limit);
        }
        match &self.policy {
            Policy::KeepAll => Ok(()),
            Policy::Content => {
                redact_content(call);
                Ok(())
            }
            Policy::Custom(redact) => redact(call),
        }
    }
}

impl Redaction {
    /// The policy alone (no data cut), and the data limit: the layer runs the policy as the
    /// call ends and the data cut off the request path.
    pub(crate) fn split(self) -> (Redaction, Option<DataCut>) {
        let cut = self.data_limit.map(DataCut);
        (
            Redaction {
                policy: self.policy,
                data_limit: None,
            },
            cut,
        )
    }
}

/// The base64 data cut of a [`Redaction`], as a processor of its own.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DataCut(usize);

impl Processor for DataCut {
    fn name(&self) -> &str {
        "redaction (base64 data)"
    }

    fn process(&self, call: &mut LlmCall) -> Result<(), ProcessError> {
        cut_data(call, self.0);
        Ok(())
    }
}

/// What the application asks of one call, as a request extension (tower:
/// `request.extensions_mut().insert(..)`; reqwest-middleware: `RequestBuilder::with_extension`).
///
/// ```
/// use llm_observability::process::redact::Redact;
/// let mut request = http::Request::new(());
/// // this call's prompt and output are redacted, and it never reaches the sink named "langfuse"
/// request.extensions_mut().insert(Redact::content().skip_sink("langfuse"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Redact {
    pub(crate) content: bool,
    pub(crate) skip_sinks: Vec<String>,
}

impl Redact {
    /// Redacts this call's content ([`redact_content`]), before any processor or sink sees it.
    pub fn content() -> Self {
        Redact {
            content: true,
            skip_sinks: Vec::new(),
        }
    }

    /// Nothing more than the layer's settings (add [`skip_sink`](Self::skip_sink)s).
    pub fn none() -> Self {
        Redact::default()
    }

    /// Keeps this call out of the sink named `name` ([`Sink::name`](crate::Sink::name));
    /// it is counted there as `filtered`.
    pub fn skip_sink(mut self, name: impl Into<String>) -> Self {
        self.skip_sinks.push(name.into());
        self
    }
}

/// The marker that replaces a redacted string of `chars` characters.
fn marker(chars: usize) -> Value {
    Value::String(format!("[redacted: {chars} chars]"))
}

/// Removes what a call said or was told, keeping its shape: every string in the request's
/// messages, prompt, input, instructions, tools and response format, in the response and in
/// the error message becomes `"[redacted: N chars]"`, except the values of structural keys
/// (`role`, `type`, `name`, `id`, `tool_call_id`, `finish_reason`, `status`, `model`, ...).
/// Numbers, booleans and the usage, cost, timing, status and metadata are untouched.
pub fn redact_content(call: &mut LlmCall) {
    let request = &mut call.request;
    for json in [
        &mut request.messages,
        &mut request.prompt,
        &mut request.input,
        &mut request.instructions,
        &mut request.tools,
        &mut request.response_format,
        &mut call.response,
    ]
    .into_iter()
    .flatten()
    {
        json.map(|value| redact_value(value, false));
    }
    if let Some(message) = call.error.as_mut().and_then(|e| e.message.as_mut()) {
        if let Value::String(redacted) = marker(message.chars().count()) {
            *message = redacted;
        }
    }
}

fn redact_value(value: &mut Value, structural: bool) {
    match value {
        Value::String(text) if !structural => *value = marker(text.chars().count()),
        Value::Array(items) => items.iter_mut().for_each(|v| redact_value(v, false)),
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                redact_value(v, STRUCTURE_KEYS.contains(&key.as_str()));
            }
        }
        _ => {}
    }
}

/// Cuts base64 data longer than `limit` bytes in the request's messages, prompt and input and
/// in the response to a marker that keeps a data URL's media type.
pub fn cut_data(call: &mut LlmCall, limit: usize) {
    let request = &mut call.request;
    for json in [
        &mut request.messages,
        &mut request.input,
        &mut request.prompt,
        &mut call.response,
    ]
    .into_iter()
    .flatten()
    {
        if may_hold_data(json, limit) {
            json.map(|value| cut_value(value, limit, false));
        }
    }
}

/// Whether `json` may hold base64 data over `limit`: cheap, on the text, before any tree is
/// built.
fn may_hold_data(json: &Json, limit: usize) -> bool {
    let text = json.text();
    text.len() > limit
        && (text.contains("base64,") || text.contains("\"data\"") || text.contains("b64_json"))
}

fn cut_value(value: &mut Value, limit: usize, data_key: bool) {
    match value {
        Value::String(text) if text.len() > limit => {
            if let Some(cut) = cut_string(text, data_key) {
                *text = cut;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| cut_value(v, limit, false)),
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                cut_value(v, limit, matches!(key.as_str(), "data" | "b64_json"));
            }
        }
        _ => {}
    }
}

/// The marker for `text` when it is a base64 data URL, or raw base64 under a data key.
fn cut_string(text: &str, data_key: bool) -> Option<String> {
    if let Some(rest) = text.strip_prefix("data:") {
        let (media, data) = rest.split_once(";base64,")?;
        if media.len() > 100 {
            return None;
        }
        return Some(format!("data:{media};base64,[{} bytes cut]", data.len()));
    }
    let base64 =
        |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'-' | b'_');
    if data_key && text.as_bytes().iter().all(base64) {
        return Some(format!("[{} bytes of base64 cut]", text.len()));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::CallError;
    use crate::Endpoint;
    use serde_json::json;

    #[test]
    fn content_policy_keeps_the_shape() {
        let mut call = LlmCall::new(Endpoint::ChatCompletions);
        call.request.messages = Some(
            json!([
                {"role": "system", "content": "be terse"},
                {"role": "user", "content": [{"type": "text", "text": "hello"},
                    {"type": "image_url", "image_url": {"url": "https://x/cat.png", "detail": "low"}}]},
                {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function",
                    "function": {"name": "lookup", "arguments": "{\"q\":\"secret\"}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "42"}
            ])
            .into(),
        );
        call.response = Some(json!({"id": "chatcmpl-1", "choices": [{"index": 0, "finish_reason": "stop",
            "message": {"role": "assistant", "content": "secret answer"}}], "usage": {"prompt_tokens": 9}}).into());
        call.error = Some(CallError::new("invalid_request_error", "you said: hello"));
        redact_content(&mut call);
        let messages = call.request.messages.as_ref().unwrap().value().clone();
        assert_eq!(
            messages,
            json!([
                {"role": "system", "content": "[redacted: 8 chars]"},
                {"role": "user", "content": [{"type": "text", "text": "[redacted: 5 chars]"},
                    {"type": "image_url", "image_url": {"url": "[redacted: 17 chars]", "detail": "low"}}]},
                {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function",
                    "function": {"name": "lookup", "arguments": "[redacted: 14 chars]"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "[redacted: 2 chars]"}
            ])
        );
        let response = call.response.as_ref().unwrap().text().to_owned();
        assert!(!response.contains("secret"), "{response}");
        assert!(response.contains("\"prompt_tokens\":9"));
        assert_eq!(
            call.error.unwrap().message.as_deref(),
            Some("[redacted: 15 chars]")
        );
    }

    #[test]
    fn base64_data_is_cut_to_a_marker() {
        let image = format!("data:image/png;base64,{}", "iVBORw0K".repeat(100));
        let audio = "UklGRiQ".repeat(100);
        let mut call = LlmCall::new(Endpoint::ChatCompletions);
        call.request.messages = Some(
            json!([{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": image}},
                {"type": "input_audio", "input_audio": {"data": audio, "format": "wav"}},
                {"type": "text", "text": "x".repeat(1000)}
            ]}])
            .into(),
        );
        Redaction::keep_all().process(&mut call).unwrap();
        let messages = call.request.messages.as_ref().unwrap();
        assert_eq!(
            messages[0]["content"][0]["image_url"]["url"],
            "data:image/png;base64,[800 bytes cut]"
        );
        assert_eq!(
            messages[0]["content"][1]["input_audio"]["data"],
            "[700 bytes of base64 cut]"
        );
        assert_eq!(
            messages[0]["content"][2]["text"],
            "x".repeat(1000),
            "text is not base64 data"
        );
        let mut kept = LlmCall::new(Endpoint::ChatCompletions);
        kept.request.messages = Some(json!([{"content": [{"image_url": {"url": image}}]}]).into());
        Redaction::keep_all()
            .keep_data()
            .process(&mut kept)
            .unwrap();
        assert_eq!(
            kept.request.messages.unwrap()[0]["content"][0]["image_url"]["url"],
            image
        );
    }
}
