//! Per-request metadata supplied by the application.

use serde_json::{Map, Value};

/// Metadata for one call (user id, session id, tags, ...), copied into
/// [`LlmCall::metadata`](crate::LlmCall::metadata).
///
/// Put it in the request's extensions (tower: `request.extensions_mut().insert(..)`;
/// reqwest-middleware: `RequestBuilder::with_extension(..)`).
///
/// ```
/// use llm_observability::CallMetadata;
/// let metadata = CallMetadata::new().with("user_id", "u-42").with("tags", ["beta", "eu"]);
/// let mut request = http::Request::new(());
/// request.extensions_mut().insert(metadata);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallMetadata(Map<String, Value>);

impl CallMetadata {
    /// Empty metadata.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) one entry.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.insert(key, value);
        self
    }

    /// Adds (or replaces) one entry in place.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<Value>) {
        self.0.insert(key.into(), value.into());
    }

    /// The entries.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }
}

impl From<Map<String, Value>> for CallMetadata {
    fn from(map: Map<String, Value>) -> Self {
        CallMetadata(map)
    }
}
