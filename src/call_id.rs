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
    /// A new id for a call in `trace` that started at `started`: a UUID v7 from the start's
    /// millisecond and random bits. (Not `Uuid::now_v7`, which reads the clock again and takes
    /// a process-wide lock for its counter; ids of one millisecond are not ordered.)
    pub(crate) fn new(trace: TraceContext, started: time::OffsetDateTime) -> Self {
        let millis = u64::try_from(started.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
        let uuid = uuid::Builder::from_unix_timestamp_millis(millis, &rand::random()).into_uuid();
        let mut id = [0; uuid::fmt::Hyphenated::LENGTH];
        uuid.hyphenated().encode_lower(&mut id);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_uuid_v7_of_the_start_millisecond() {
        let started = time::OffsetDateTime::from_unix_timestamp_nanos(1_764_000_000_123_456_789)
            .expect("in range");
        let a = CallId::new(TraceContext::root(), started);
        let b = CallId::new(TraceContext::root(), started);
        assert_ne!(a.as_str(), b.as_str());
        let uuid = uuid::Uuid::parse_str(a.as_str()).expect("a UUID");
        assert_eq!(uuid.get_version_num(), 7);
        let (seconds, nanos) = uuid.get_timestamp().expect("v7 has a timestamp").to_unix();
        assert_eq!((seconds, nanos), (1_764_000_000, 123_000_000));
        assert_eq!(a.to_string(), a.as_str());
    }
}
