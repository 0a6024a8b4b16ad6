//! What the Langfuse and Phoenix presets share: attributes whose names are built per call
//! (`llm.input_messages.0.message.role`), and the call metadata they read (user, session,
//! tags).

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::Value;

use crate::genai::AttributeValue;
use crate::payload::LlmCall;

/// Where a preset builder reads its environment variables (the process environment, or a
/// test's lookup).
pub(crate) type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// One attribute a preset adds to a call's span. Unlike [`crate::genai::Attribute`]
/// its name may be built for the call (indexed message attributes).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PresetAttribute<'a> {
    /// The attribute name.
    pub key: Cow<'static, str>,
    /// The value.
    pub value: AttributeValue<'a>,
}

impl<'a> PresetAttribute<'a> {
    pub(crate) fn new(key: impl Into<Cow<'static, str>>, value: AttributeValue<'a>) -> Self {
        PresetAttribute {
            key: key.into(),
            value,
        }
    }

    pub(crate) fn str(key: impl Into<Cow<'static, str>>, value: impl Into<Cow<'a, str>>) -> Self {
        Self::new(key, AttributeValue::Str(value.into()))
    }

    #[cfg_attr(not(feature = "phoenix"), allow(dead_code))]
    pub(crate) fn int(key: impl Into<Cow<'static, str>>, value: u64) -> Self {
        Self::new(
            key,
            AttributeValue::Int(i64::try_from(value).unwrap_or(i64::MAX)),
        )
    }

    #[cfg_attr(not(feature = "phoenix"), allow(dead_code))]
    pub(crate) fn float(key: impl Into<Cow<'static, str>>, value: f64) -> Self {
        Self::new(key, AttributeValue::Float(value))
    }

    /// As an OpenTelemetry `KeyValue`, for the [span attributes hook](super::OtlpSinkBuilder::span_attributes).
    pub fn into_key_value(self) -> opentelemetry::KeyValue {
        let mut pair = super::key_value(crate::genai::Attribute {
            key: "",
            value: self.value,
        });
        pair.key = match self.key {
            Cow::Borrowed(key) => opentelemetry::Key::from_static_str(key),
            Cow::Owned(key) => opentelemetry::Key::from(key),
        };
        pair
    }

    /// A JSON value as its compact text.
    pub(crate) fn json(key: impl Into<Cow<'static, str>>, value: &Value) -> Self {
        Self::str(key, value.to_string())
    }
}

/// The value of the attribute named `key`, if `attributes` has one.
pub fn find_attribute<'a, 'b>(
    attributes: &'b [PresetAttribute<'a>],
    key: &str,
) -> Option<&'b AttributeValue<'a>> {
    attributes.iter().find(|a| a.key == key).map(|a| &a.value)
}

/// Metadata keys the presets read (set with [`CallMetadata`](crate::CallMetadata) or
/// [`capture_header`](crate::LlmObservabilityLayerBuilder::capture_header)).
pub mod metadata_keys {
    /// The end user the call was made for (falls back to the request's `user`).
    pub const USER_ID: &str = "user_id";
    /// The conversation or session the call belongs to.
    pub const SESSION_ID: &str = "session_id";
    /// Tags: an array of strings, or one string of comma-separated tags.
    pub const TAGS: &str = "tags";
    /// The trace's name (Langfuse `langfuse.trace.name`).
    pub const TRACE_NAME: &str = "trace_name";
}

/// The keys above, which the presets map to their own attributes rather than to generic
/// metadata.
pub(crate) const RESERVED_METADATA: [&str; 4] = [
    metadata_keys::USER_ID,
    metadata_keys::SESSION_ID,
    metadata_keys::TAGS,
    metadata_keys::TRACE_NAME,
];

/// A metadata entry as text: strings as they are, numbers and booleans printed; `None` for
/// anything else or an empty string.
pub(crate) fn metadata_text<'a>(call: &'a LlmCall, key: &str) -> Option<Cow<'a, str>> {
    match call.metadata.get(key)? {
        Value::String(s) if !s.is_empty() => Some(Cow::Borrowed(s.as_str())),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Bool(b) => Some(Cow::Owned(b.to_string())),
        _ => None,
    }
}

/// The call's end user: metadata `user_id`, else the request's `user`.
pub(crate) fn user_id(call: &LlmCall) -> Option<Cow<'_, str>> {
    metadata_text(call, metadata_keys::USER_ID).or_else(|| {
        call.request
            .user
            .as_deref()
            .filter(|u| !u.is_empty())
            .map(Cow::Borrowed)
    })
}

/// The call's session: metadata `session_id`.
pub(crate) fn session_id(call: &LlmCall) -> Option<Cow<'_, str>> {
    metadata_text(call, metadata_keys::SESSION_ID)
}

/// The call's tags: metadata `tags` as an array of strings, or a comma-separated string.
pub(crate) fn tags(call: &LlmCall) -> Vec<Cow<'_, str>> {
    match call.metadata.get(metadata_keys::TAGS) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|item| item.as_str())
            .map(str::trim)
            .filter(|tag| !tag.is_empty())
            .map(Cow::Borrowed)
            .collect(),
        Some(Value::String(list)) => list
            .split(',')
            .map(str::trim)
            .filter(|tag| !tag.is_empty())
            .map(Cow::Borrowed)
            .collect(),
        _ => Vec::new(),
    }
}

/// The model that answered (the response's), else the one asked for.
pub(crate) fn model(call: &LlmCall) -> Option<&str> {
    call.response_model
        .as_deref()
        .filter(|m| !m.is_empty())
        .or(call.requested_model())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Endpoint, LlmCall};
    use serde_json::json;

    #[test]
    fn user_session_and_tags_come_from_metadata() {
        let mut call = LlmCall::new(Endpoint::ChatCompletions);
        call.request.user = Some("from-request".into());
        assert_eq!(user_id(&call).as_deref(), Some("from-request"));
        call.metadata.insert("user_id".into(), json!("u-1"));
        call.metadata.insert("session_id".into(), json!(42));
        call.metadata
            .insert("tags".into(), json!(["a", " b ", "", 3]));
        assert_eq!(user_id(&call).as_deref(), Some("u-1"));
        assert_eq!(session_id(&call).as_deref(), Some("42"));
        assert_eq!(tags(&call), vec!["a", "b"]);
        call.metadata.insert("tags".into(), json!("x, y,,"));
        assert_eq!(tags(&call), vec!["x", "y"]);
    }

    #[test]
    fn model_prefers_the_response() {
        let mut call = LlmCall::new(Endpoint::ChatCompletions);
        assert_eq!(model(&call), None);
        call.request.model = Some("gpt-4o".into());
        assert_eq!(model(&call), Some("gpt-4o"));
        call.response_model = Some(String::new());
        assert_eq!(model(&call), Some("gpt-4o"));
        call.response_model = Some("gpt-4o-2024-08-06".into());
        assert_eq!(model(&call), Some("gpt-4o-2024-08-06"));
    }
}
