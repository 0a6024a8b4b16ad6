//! [`EstimateUsage`]: token counts for calls whose response reported none.

use std::sync::OnceLock;

use serde_json::Value;
use tiktoken_rs::CoreBPE;

use crate::payload::{CallStatus, LlmCall, Usage, UsageSource};
use crate::process::{ProcessError, Processor};
use crate::wire::endpoint::Endpoint;

/// Tokens every chat message costs beyond its content (`<|start|>{role}<|message|>` ...
/// `<|end|>`, as OpenAI's cookbook counts them for current models).
const TOKENS_PER_MESSAGE: u64 = 3;
/// Tokens a message's `name` costs beyond its text.
const TOKENS_PER_NAME: u64 = 1;
/// Tokens of framing around a tool call the model writes (`to=functions.NAME` and the
/// message's delimiters), measured on recorded calls.
const TOOL_CALL_FRAMING: u64 = 7;
/// Tokens that prime the reply (`<|start|>assistant<|message|>`).
const REPLY_PRIMING: u64 = 3;

/// Processor that fills in [`LlmCall::usage`] when the response reported none (a stream
/// without `stream_options.include_usage`), counting tokens with the model's tokenizer, and
/// sets [`usage_source`](LlmCall::usage_source) to `"estimated"`.
///
/// What is counted: chat messages (text content, names, tool calls) with OpenAI's per-message
/// overhead, tool definitions (the cookbook's formula), legacy prompts, embedding inputs,
/// Responses API input and instructions; and the assembled output (message content, tool
/// calls, text). Not counted: images, audio, files, and the hidden reasoning tokens of
/// reasoning models — for those the estimate is low. Calls that failed are left alone, as are
/// calls with provider usage.
///
/// Usually added with [`StreamUsage::Estimate`](crate::StreamUsage::Estimate), which runs it
/// before every other processor (so that pricing sees the counts).
///
/// ```
/// use llm_observability::{EstimateUsage, Endpoint, LlmCall, Processor, UsageSource};
/// let mut call = LlmCall::new(Endpoint::ChatCompletions);
/// call.request.model = Some("gpt-4o-mini".into());
/// call.request.messages = Some(serde_json::json!([{"role": "user", "content": "Hello!"}]).into());
/// call.response = Some(serde_json::json!({"choices": [{"index": 0,
///     "message": {"role": "assistant", "content": "Hi there!"}}]}).into());
/// EstimateUsage::new().process(&mut call)?;
/// assert_eq!(call.usage_source, UsageSource::Estimated);
/// assert_eq!(call.usage.unwrap().input_tokens, Some(9));
/// assert_eq!(call.usage.unwrap().output_tokens, Some(3));
/// # Ok::<(), llm_observability::ProcessError>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct EstimateUsage {
    _private: (),
}

impl EstimateUsage {
    /// The processor.
    pub fn new() -> Self {
        EstimateUsage::default()
    }
}

impl Processor for EstimateUsage {
    fn name(&self) -> &str {
        "estimate-usage"
    }

    fn process(&self, call: &mut LlmCall) -> Result<(), ProcessError> {
        if call.usage.is_some() || call.status == CallStatus::Error {
            return Ok(());
        }
        let model = call
            .response_model
            .as_deref()
            .or(call.requested_model())
            .unwrap_or_default();
        let Some(bpe) = Encoding::for_model(model).bpe() else {
            return Err(ProcessError::new(
                "the tokenizer's data could not be loaded",
            ));
        };
        let counter = Counter { bpe, model };
        let Some((input, output)) = counter.estimate(call) else {
            return Ok(());
        };
        call.usage = Some(Usage::new(input, output));
        call.usage_source = UsageSource::Estimated;
        Ok(())
    }
}

/// The tokenizers the estimate knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    O200k,
    Cl100k,
}

impl Encoding {
    /// The encoding of `model` (a provider prefix such as `openai/` and a date suffix do not
    /// matter); models it does not know get `o200k_base`, today's OpenAI encoding.
    fn for_model(model: &str) -> Encoding {
        let model = model.to_ascii_lowercase();
        let model = model.rsplit('/').next().unwrap_or_default();
        let cl100k = [
            "gpt-4-",
            "gpt-3.5",
            "gpt-35",
            "text-embedding-",
            "davinci-002",
            "babbage-002",
        ];
        if model == "gpt-4" || cl100k.iter().any(|prefix| model.starts_with(prefix)) {
            Encoding::Cl100k
        } else {
            Encoding::O200k
        }
    }

    /// The tokenizer, loaded once on first use (`None` if its built-in data failed to load).
    fn bpe(self) -> Option<&'static CoreBPE> {
        static O200K: OnceLock<Option<CoreBPE>> = OnceLock::new();
        static CL100K: OnceLock<Option<CoreBPE>> = OnceLock::new();
        let cell = match self {
            Encoding::O200k => &O200K,
            Encoding::Cl100k => &CL100K,
        };
        cell.get_or_init(|| {
            let loaded = match self {
                Encoding::O200k => tiktoken_rs::o200k_base(),
                Encoding::Cl100k => tiktoken_rs::cl100k_base(),
            };
            match loaded {
                Ok(bpe) => Some(bpe),
                Err(error) => {
                    tracing::warn!(
                        target: "llm_observability",
                        %error,
                        "cannot load a tokenizer; usage is not estimated"
                    );
                    None
                }
            }
        })
        .as_ref()
    }
}

struct Counter<'a> {
    bpe: &'static CoreBPE,
    model: &'a str,
}

impl Counter<'_> {
    fn text(&self, text: &str) -> u64 {
        self.bpe.encode_ordinary(text).len() as u64
    }

    /// Tokens of a JSON value that is text, or of its compact JSON otherwise.
    fn value(&self, value: &Value) -> u64 {
        match value {
            Value::Null => 0,
            Value::String(text) => self.text(text),
            other => self.text(&other.to_string()),
        }
    }

    /// Input and output tokens of `call`, `None` for an endpoint it cannot count (only OpenAI
    /// streams can end without usage).
    fn estimate(&self, call: &LlmCall) -> Option<(u64, u64)> {
        let request = &call.request;
        let response = call.response.as_deref();
        match call.endpoint {
            Endpoint::ChatCompletions => {
                let messages = request.messages.as_deref()?.as_array()?;
                let mut input = REPLY_PRIMING;
                input += messages.iter().map(|m| self.message(m)).sum::<u64>();
                if let Some(tools) = request.tools.as_deref().and_then(Value::as_array) {
                    input += self.tools(tools);
                }
                let output = choices(response)
                    .map(|choice| {
                        let message = &choice["message"];
                        self.value(&message["content"])
                            + self.value(&message["refusal"])
                            + self.tool_calls(&message["tool_calls"])
                    })
                    .sum();
                Some((input, output))
            }
            Endpoint::Completions => {
                let input = match request.prompt.as_deref()? {
                    Value::Array(prompts) => prompts.iter().map(|p| self.value(p)).sum(),
                    prompt => self.value(prompt),
                };
                let output = choices(response)
                    .map(|choice| self.value(&choice["text"]))
                    .sum();
                Some((input, output))
            }
            Endpoint::Embeddings => {
                let input = match request.input.as_deref()? {
                    // One string, a list of strings, a list of token ids, or lists of them.
                    Value::Array(items) if items.iter().all(Value::is_number) => items.len() as u64,
                    Value::Array(items) => items
                        .iter()
                        .map(|item| match item {
                            Value::Array(ids) => ids.len() as u64,
                            other => self.value(other),
                        })
                        .sum(),
                    one => self.value(one),
                };
                Some((input, 0))
            }
            Endpoint::Responses => {
                let mut input = REPLY_PRIMING;
                if let Some(instructions) = request.instructions.as_deref() {
                    input += TOKENS_PER_MESSAGE + self.text("system") + self.value(instructions);
                }
                input += match request.input.as_deref()? {
                    Value::Array(items) => items.iter().map(|m| self.message(m)).sum(),
                    text => TOKENS_PER_MESSAGE + self.text("user") + self.value(text),
                };
                let output = response
                    .and_then(|r| r["output"].as_array())
                    .into_iter()
                    .flatten()
                    .map(|item| match item["type"].as_str() {
                        Some("message") => self.content(&item["content"]),
                        Some("function_call") => {
                            self.value(&item["name"]) + self.value(&item["arguments"])
                        }
                        _ => 0,
                    })
                    .sum();
                Some((input, output))
            }
            // Other families always report usage: nothing to estimate.
            _ => None,
        }
    }

    /// One chat message: overhead, role, content, name and tool calls.
    fn message(&self, message: &Value) -> u64 {
        let mut tokens = TOKENS_PER_MESSAGE;
        tokens += self.value(&message["role"]);
        tokens += self.content(&message["content"]);
        if let Some(name) = message["name"].as_str() {
            tokens += TOKENS_PER_NAME + self.text(name);
        }
        // In the prompt, each earlier tool call counts on its own (no parallel wrapper).
        tokens += message["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|call| {
                let function = &call["function"];
                TOOL_CALL_FRAMING
                    + self.value(&function["name"])
                    + self.value(&function["arguments"])
            })
            .sum::<u64>();
        if let Some(id) = message["tool_call_id"].as_str() {
            tokens += self.text(id);
        }
        tokens
    }

    /// Message content: text, or the text parts of a list of parts (images and audio are not
    /// counted).
    fn content(&self, content: &Value) -> u64 {
        match content {
            Value::Array(parts) => parts
                .iter()
                .map(|part| match &part["text"] {
                    Value::String(text) => self.text(text),
                    _ => 0,
                })
                .sum(),
            other => self.value(other),
        }
    }

    /// Tool calls of a message. One call is its function's name and arguments plus a few
    /// tokens of framing; several are written by the model as one `multi_tool_use.parallel`
    /// call whose argument lists each call's name and parameters.
    fn tool_calls(&self, calls: &Value) -> u64 {
        let calls = calls.as_array().map(Vec::as_slice).unwrap_or_default();
        match calls {
            [] => 0,
            [call] => {
                let function = &call["function"];
                TOOL_CALL_FRAMING
                    + self.value(&function["name"])
                    + self.value(&function["arguments"])
            }
            several => {
                let uses: Vec<Value> = several
                    .iter()
                    .map(|call| {
                        let function = &call["function"];
                        let name = function["name"].as_str().unwrap_or_default();
                        let arguments = function["arguments"].as_str().unwrap_or_default();
                        let parameters = serde_json::from_str(arguments)
                            .unwrap_or_else(|_| Value::String(arguments.to_owned()));
                        serde_json::json!({
                            "recipient_name": format!("functions.{name}"),
                            "parameters": parameters,
                        })
                    })
                    .collect();
                let wrapper = serde_json::json!({ "tool_uses": uses });
                TOOL_CALL_FRAMING
                    + self.text("multi_tool_use.parallel")
                    + self.text(&wrapper.to_string())
            }
        }
    }

    /// Tool definitions, by the formula of OpenAI's cookbook ("How to count tokens with
    /// tiktoken", function calling section).
    fn tools(&self, tools: &[Value]) -> u64 {
        let o200k = Encoding::for_model(self.model) == Encoding::O200k;
        let (func_init, prop_init, prop_key, enum_item, func_end): (i64, i64, i64, i64, i64) =
            if o200k {
                (7, 3, 3, 3, 12)
            } else {
                (10, 3, 3, 3, 12)
            };
        let enum_init: i64 = -3;
        let mut tokens: i64 = 0;
        for tool in tools {
            let function = &tool["function"];
            tokens += func_init;
            let name = function["name"].as_str().unwrap_or_default();
            let description = function["description"].as_str().unwrap_or_default();
            let description = description.strip_suffix('.').unwrap_or(description);
            tokens += self.text(&format!("{name}:{description}")) as i64;
            let Some(properties) = function["parameters"]["properties"].as_object() else {
                continue;
            };
            if properties.is_empty() {
                continue;
            }
            tokens += prop_init;
            for (key, property) in properties {
                tokens += prop_key;
                if let Some(items) = property["enum"].as_array() {
                    tokens += enum_init;
                    for item in items {
                        tokens += enum_item + self.value(item) as i64;
                    }
                }
                let kind = property["type"].as_str().unwrap_or_default();
                let description = property["description"].as_str().unwrap_or_default();
                let description = description.strip_suffix('.').unwrap_or(description);
                tokens += self.text(&format!("{key}:{kind}:{description}")) as i64;
            }
        }
        if !tools.is_empty() {
            tokens += func_end;
        }
        u64::try_from(tokens).unwrap_or(0)
    }
}

/// The choices of a chat or legacy completion response.
fn choices(response: Option<&Value>) -> impl Iterator<Item = &Value> {
    response
        .and_then(|r| r["choices"].as_array())
        .into_iter()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_pick_their_encoding() {
        for model in [
            "gpt-4o-mini-2024-07-18",
            "openai/gpt-4.1",
            "o3-mini",
            "gpt-5",
            "x",
        ] {
            assert_eq!(Encoding::for_model(model), Encoding::O200k, "{model}");
        }
        for model in [
            "gpt-4",
            "gpt-4-0613",
            "gpt-3.5-turbo-0125",
            "azure/gpt-35-turbo",
            "text-embedding-3-small",
        ] {
            assert_eq!(Encoding::for_model(model), Encoding::Cl100k, "{model}");
        }
    }

    #[test]
    fn errors_and_provider_usage_are_left_alone() {
        let mut call = LlmCall::new(Endpoint::ChatCompletions);
        call.request.messages = Some(serde_json::json!([{"role": "user", "content": "hi"}]).into());
        call.status = CallStatus::Error;
        EstimateUsage::new().process(&mut call).unwrap();
        assert_eq!(call.usage, None);
        call.status = CallStatus::Success;
        call.usage = Some(Usage::new(1, 2));
        call.usage_source = UsageSource::Provider;
        EstimateUsage::new().process(&mut call).unwrap();
        assert_eq!(call.usage, Some(Usage::new(1, 2)));
        assert_eq!(call.usage_source, UsageSource::Provider);
    }
}
