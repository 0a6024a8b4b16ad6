//! Opt-in message content in the GenAI conventions' (v1.41) parts format: the request's
//! messages, the system instructions, the tool definitions and the output, each as one JSON
//! string, for exporters that send content (`OtlpSink` with `message_content(true)`, and its
//! presets).
//!
//! ```
//! use llm_observability::genai;
//! use llm_observability::{Endpoint, LlmCall};
//!
//! let mut call = LlmCall::new(Endpoint::ChatCompletions);
//! call.request.messages = Some(serde_json::json!([
//!     {"role": "system", "content": "Be brief."},
//!     {"role": "user", "content": "Hi"},
//! ]).into());
//! assert_eq!(
//!     genai::input_messages(&call).unwrap(),
//!     serde_json::json!([{"role": "user", "parts": [{"type": "text", "content": "Hi"}]}]),
//! );
//! assert_eq!(
//!     genai::system_instructions(&call).unwrap(),
//!     serde_json::json!([{"type": "text", "content": "Be brief."}]),
//! );
//! ```

use std::borrow::Cow;

use serde_json::Value;

use super::{Attribute, AttributeValue};
use crate::payload::LlmCall;
use crate::wire::format_of;

/// `gen_ai.input.messages`: the messages sent to the model (system instructions apart), as a
/// JSON array of `{role, parts}`.
pub const GEN_AI_INPUT_MESSAGES: &str = "gen_ai.input.messages";
/// `gen_ai.output.messages`: the model's answer, as a JSON array of
/// `{role, parts, finish_reason}`, one per choice.
pub const GEN_AI_OUTPUT_MESSAGES: &str = "gen_ai.output.messages";
/// `gen_ai.system_instructions`: system (and developer) instructions, as a JSON array of parts.
pub const GEN_AI_SYSTEM_INSTRUCTIONS: &str = "gen_ai.system_instructions";
/// `gen_ai.tool.definitions`: the tools offered to the model, as a JSON array of
/// `{type, name, description, parameters}`.
pub const GEN_AI_TOOL_DEFINITIONS: &str = "gen_ai.tool.definitions";

/// The four content attributes of a call (those it has), each a JSON string.
pub fn content_attributes(call: &LlmCall) -> Vec<Attribute<'static>> {
    let values = [
        (GEN_AI_SYSTEM_INSTRUCTIONS, system_instructions(call)),
        (GEN_AI_INPUT_MESSAGES, input_messages(call)),
        (GEN_AI_OUTPUT_MESSAGES, output_messages(call)),
        (GEN_AI_TOOL_DEFINITIONS, tool_definitions(call)),
    ];
    values
        .into_iter()
        .filter_map(|(key, value)| {
            Some(Attribute {
                key,
                value: AttributeValue::Str(Cow::Owned(value?.to_string())),
            })
        })
        .collect()
}

/// The messages sent to the model, system instructions apart, in the call's wire format's
/// terms; `None` when the request had none (or the content was removed).
pub fn input_messages(call: &LlmCall) -> Option<Value> {
    format_of(call.endpoint).input_messages(call)
}

/// The system (and developer) instructions, as parts; `None` when there are none.
pub fn system_instructions(call: &LlmCall) -> Option<Value> {
    format_of(call.endpoint).system_instructions(call)
}

/// The model's answer: one assistant message per choice (a Responses API response or an
/// Anthropic message is one message with all its output); `None` when nothing was decoded.
pub fn output_messages(call: &LlmCall) -> Option<Value> {
    format_of(call.endpoint).output_messages(call)
}

/// The tools offered to the model, as `{type, name, description, parameters}`; `None` when
/// the request offered none.
pub fn tool_definitions(call: &LlmCall) -> Option<Value> {
    format_of(call.endpoint).tool_definitions(call)
}

/// The request as its provider's JSON, rebuilt from the record: parameters under the API's own
/// names (`max_output_tokens` for the Responses API, `system` and `stop_sequences` for
/// Anthropic), `stream` only when set.
pub fn native_request(call: &LlmCall) -> Value {
    format_of(call.endpoint).native_request(call)
}

/// What the model was given, in its provider's own shape (OpenAI chat messages, an Anthropic
/// `system` + `messages`, ...): what UIs that render a provider's format show as input.
pub fn native_input(call: &LlmCall) -> Option<Value> {
    format_of(call.endpoint).native_input(call)
}

/// What the model answered, in its provider's own shape (an OpenAI assistant message, an
/// Anthropic message's content blocks, ...); `None` for embeddings or when nothing was decoded.
pub fn native_output(call: &LlmCall) -> Option<Value> {
    format_of(call.endpoint).native_output(call)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Endpoint;
    use serde_json::json;

    #[test]
    fn chat_roundtrip_of_every_part_kind() {
        let mut call = LlmCall::new(Endpoint::ChatCompletions);
        call.request.messages = Some(
            json!([
                {"role": "developer", "content": [{"type": "text", "text": "Use tools."}]},
                {"role": "user", "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}},
                    {"type": "image_url", "image_url": {"url": "https://x/cat.png"}}
                ]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function",
                     "function": {"name": "look", "arguments": "{\"q\":\"cat\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "a cat"}
            ])
            .into(),
        );
        call.request.tools = Some(
            json!([{"type": "function", "function": {"name": "look", "description": "Looks",
                     "parameters": {"type": "object"}}}])
            .into(),
        );
        call.response = Some(
            json!({"choices": [{"index": 0, "finish_reason": "stop",
                    "message": {"role": "assistant", "content": "A cat."}}]})
            .into(),
        );
        assert_eq!(
            system_instructions(&call).unwrap(),
            json!([{"type": "text", "content": "Use tools."}])
        );
        assert_eq!(
            input_messages(&call).unwrap(),
            json!([
                {"role": "user", "parts": [
                    {"type": "text", "content": "What is this?"},
                    {"type": "blob", "modality": "image", "mime_type": "image/png", "content": "iVBO"},
                    {"type": "uri", "modality": "image", "uri": "https://x/cat.png"}
                ]},
                {"role": "assistant", "parts": [
                    {"type": "tool_call", "id": "call_1", "name": "look", "arguments": {"q": "cat"}}
                ]},
                {"role": "tool", "parts": [
                    {"type": "tool_call_response", "id": "call_1", "response": "a cat"}
                ]}
            ])
        );
        assert_eq!(
            output_messages(&call).unwrap(),
            json!([{"role": "assistant", "parts": [{"type": "text", "content": "A cat."}],
                    "finish_reason": "stop"}])
        );
        assert_eq!(
            tool_definitions(&call).unwrap(),
            json!([{"type": "function", "name": "look", "description": "Looks",
                    "parameters": {"type": "object"}}])
        );
        let keys: Vec<_> = content_attributes(&call).iter().map(|a| a.key).collect();
        assert_eq!(
            keys,
            [
                GEN_AI_SYSTEM_INSTRUCTIONS,
                GEN_AI_INPUT_MESSAGES,
                GEN_AI_OUTPUT_MESSAGES,
                GEN_AI_TOOL_DEFINITIONS
            ]
        );
    }

    #[test]
    fn responses_and_completions() {
        let mut call = LlmCall::new(Endpoint::Responses);
        call.request.instructions = Some(json!("Be terse.").into());
        call.request.input = Some(
            json!([
                {"role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
                {"type": "function_call", "call_id": "fc_1", "name": "weather", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "fc_1", "output": "sunny"}
            ])
            .into(),
        );
        call.finish_reasons = vec!["completed".into()];
        call.response = Some(
            json!({"output": [{"type": "message", "role": "assistant",
                    "content": [{"type": "output_text", "text": "Sunny."}]}]})
            .into(),
        );
        assert_eq!(
            system_instructions(&call).unwrap(),
            json!([{"type": "text", "content": "Be terse."}])
        );
        assert_eq!(
            input_messages(&call).unwrap(),
            json!([
                {"role": "user", "parts": [{"type": "text", "content": "Weather?"}]},
                {"role": "assistant", "parts": [{"type": "tool_call", "id": "fc_1", "name": "weather", "arguments": {}}]},
                {"role": "tool", "parts": [{"type": "tool_call_response", "id": "fc_1", "response": "sunny"}]}
            ])
        );
        assert_eq!(
            output_messages(&call).unwrap(),
            json!([{"role": "assistant", "parts": [{"type": "text", "content": "Sunny."}],
                    "finish_reason": "completed"}])
        );

        let mut call = LlmCall::new(Endpoint::Completions);
        call.request.prompt = Some(json!("Say hi").into());
        call.response =
            Some(json!({"choices": [{"text": "hi", "finish_reason": "length"}]}).into());
        assert_eq!(
            input_messages(&call).unwrap(),
            json!([{"role": "user", "parts": [{"type": "text", "content": "Say hi"}]}])
        );
        assert_eq!(
            output_messages(&call).unwrap(),
            json!([{"role": "assistant", "parts": [{"type": "text", "content": "hi"}], "finish_reason": "length"}])
        );
        assert!(system_instructions(&call).is_none());
        assert!(tool_definitions(&call).is_none());
    }

    #[test]
    fn removed_content_gives_nothing() {
        let mut call = LlmCall::new(Endpoint::ChatCompletions);
        call.request.messages = Some(json!([{"role": "user", "content": "x"}]).into());
        call.remove_content();
        assert!(content_attributes(&call).is_empty());
    }
}
