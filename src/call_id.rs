//! [`CallId`]: the id of a call, handed to the application while the call is still going.

use std::fmt;

use crate::trace_context::TraceContext;

/// The id of the call a request or response belongs to: [`LlmCall::id`](crate::LlmCall::id)
/// and its [`TraceContext`], known from the moment the call starts.
///
/// The layer inserts it as an extension into the request (a server handler can read it) and
/// into the response (a client can read it, e.g. to attach feedback to the call later).
///
/// ```
/// use llm_observability::CallId;
/// async fn handler(request: http::Request<axum::body::Body>) -> String {
///     match request.extensions().get::<CallId>() {
///         Some(call) => format!("call {call} in trace {}", call.trace().trace_id),
///         None => "not an observed call".to_owned(),
///     }
/// }
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallId {
    /// A hyphenated UUID, ASCII.
    id: [u8; uuid::fmt::Hyphenated::LENGTH],
    trace: TraceContext,
}

impl CallId {
    /// A new id (a UUID v7, time-ordered) for a call in `trace`.
    pub(crate) fn new(trace: TraceContext) -> Self {
        let mut id = [0; uuid::fmt::Hyphenated::LENGTH];
        uuid::Uuid::now_v7().hyphenated().encode_lower(&mut id);
        CallId { id, trace }
    }

    /// The id, as in [`LlmCall::id`](crate::LlmCall::id).
    pub fn as_str(&self) -> &str {
        // A hyphenated UUID is ASCII.
        std::str::from_utf8(&self.id).unwrap_or_default()
    }

    /// The call's trace context, as in [`LlmCall::trace`](crate::LlmCall::trace).
    pub fn trace(&self) -> &TraceContext {
        &self.trace
    }
}

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CallId").field(&self.as_str()).finish()
    }
}
