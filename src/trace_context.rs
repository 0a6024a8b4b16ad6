//! Where a call's trace and span ids come from, in order: the caller's OpenTelemetry context
//! (feature `opentelemetry`), a W3C `traceparent` header on the request, or fresh random ids.
//!
//! The ids go into the payload ([`LlmCall::trace`](crate::LlmCall::trace)), so every exporter can
//! parent its span under the caller's trace, and optionally out on the request as `traceparent`.

use std::fmt;
use std::str::FromStr;

use http::{HeaderMap, HeaderValue};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The W3C Trace Context request header.
pub const TRACEPARENT: &str = "traceparent";

/// A 16-byte trace id, written as 32 lowercase hex digits. Never all zeros.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId([u8; 16]);

/// An 8-byte span id, written as 16 lowercase hex digits. Never all zeros.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanId([u8; 8]);

/// Why a trace or span id could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Not the right number of hex digits, or not hex.
    #[error("expected {expected} lowercase hex digits")]
    NotHex {
        /// How many digits the id has.
        expected: usize,
    },
    /// All zeros, which W3C Trace Context reserves for "invalid".
    #[error("an id of all zeros is invalid")]
    Zero,
}

macro_rules! hex_id {
    ($name:ident, $len:literal) => {
        impl $name {
            /// The id from its bytes; `None` when they are all zeros.
            pub fn from_bytes(bytes: [u8; $len]) -> Option<Self> {
                (bytes != [0; $len]).then_some($name(bytes))
            }

            /// The id's bytes.
            pub fn to_bytes(self) -> [u8; $len] {
                self.0
            }

            /// A fresh random id.
            pub fn random() -> Self {
                loop {
                    if let Some(id) = Self::from_bytes(rand::random()) {
                        return id;
                    }
                }
            }
        }

        impl FromStr for $name {
            type Err = IdError;

            fn from_str(text: &str) -> Result<Self, IdError> {
                let mut bytes = [0u8; $len];
                decode_hex(text, &mut bytes)?;
                Self::from_bytes(bytes).ok_or(IdError::Zero)
            }
        }

        impl $name {
            /// The id as lowercase hex digits, without allocating.
            fn encode_hex<'a>(&self, out: &'a mut [u8; $len * 2]) -> &'a str {
                encode_hex(&self.0, out)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.encode_hex(&mut [0; $len * 2]))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({self})", stringify!($name))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.encode_hex(&mut [0; $len * 2]))
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

hex_id!(TraceId, 16);
hex_id!(SpanId, 8);

/// Writes `bytes` as lowercase hex into `out` (twice as long) and returns it as text.
fn encode_hex<'a>(bytes: &[u8], out: &'a mut [u8]) -> &'a str {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0xf)];
    }
    // Only ASCII digits were written.
    std::str::from_utf8(out).unwrap_or_default()
}

fn decode_hex(text: &str, out: &mut [u8]) -> Result<(), IdError> {
    let error = IdError::NotHex {
        expected: out.len() * 2,
    };
    let digits = text.as_bytes();
    if digits.len() != out.len() * 2 {
        return Err(error);
    }
    let value = |digit: u8| match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    };
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        match (value(pair[0]), value(pair[1])) {
            (Some(high), Some(low)) => *byte = high << 4 | low,
            _ => return Err(error),
        }
    }
    Ok(())
}

/// Where a call sits in a distributed trace: its trace, its own span (the `gen_ai` span) and
/// that span's parent.
///
/// ```
/// use llm_observability::TraceContext;
/// let parent = TraceContext::from_traceparent(
///     "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
/// ).unwrap();
/// let call = parent.child();
/// assert_eq!(call.trace_id, parent.trace_id);
/// assert_eq!(call.parent_span_id, Some(parent.span_id));
/// assert!(call.traceparent().starts_with("00-0af7651916cd43dd8448eb211c80319c-"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TraceContext {
    /// The trace the call belongs to.
    pub trace_id: TraceId,
    /// The call's own span.
    pub span_id: SpanId,
    /// The span the call's span is a child of; `None` for a root span.
    pub parent_span_id: Option<SpanId>,
    /// Whether the trace is sampled (the `traceparent` flag); payloads read back without it
    /// count as sampled.
    #[serde(default = "sampled_by_default", skip_serializing)]
    pub sampled: bool,
}

fn sampled_by_default() -> bool {
    true
}

impl TraceContext {
    /// A root span in a new trace, with random ids.
    pub fn root() -> Self {
        TraceContext {
            trace_id: TraceId::random(),
            span_id: SpanId::random(),
            parent_span_id: None,
            sampled: true,
        }
    }

    /// Explicit ids (e.g. those of an OpenTelemetry span).
    pub fn new(trace_id: TraceId, span_id: SpanId, parent_span_id: Option<SpanId>) -> Self {
        TraceContext {
            trace_id,
            span_id,
            parent_span_id,
            sampled: true,
        }
    }

    /// A new span (random id) that is a child of this one, in the same trace.
    pub fn child(&self) -> Self {
        TraceContext {
            trace_id: self.trace_id,
            span_id: SpanId::random(),
            parent_span_id: Some(self.span_id),
            sampled: self.sampled,
        }
    }

    /// Reads a W3C `traceparent` value (`{version}-{trace-id}-{parent-id}-{flags}`); the
    /// result's `span_id` is the sender's span. `None` when it is not a valid header: an
    /// unknown version is read by its first four fields, as the specification asks; version
    /// `ff`, all-zero ids and malformed fields are refused.
    pub fn from_traceparent(value: &str) -> Option<Self> {
        let mut fields = value.trim().split('-');
        let version = fields.next()?;
        let trace_id = fields.next()?;
        let span_id = fields.next()?;
        let flags = fields.next()?;
        let mut version_byte = [0u8; 1];
        decode_hex(version, &mut version_byte).ok()?;
        if version_byte[0] == 0xff || (version_byte[0] == 0 && fields.next().is_some()) {
            return None;
        }
        let mut flags_byte = [0u8; 1];
        decode_hex(flags, &mut flags_byte).ok()?;
        Some(TraceContext {
            trace_id: trace_id.parse().ok()?,
            span_id: span_id.parse().ok()?,
            parent_span_id: None,
            sampled: flags_byte[0] & 1 == 1,
        })
    }

    /// The context a request's `traceparent` header carries, if it has a valid one.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let value = headers.get(TRACEPARENT)?.to_str().ok()?;
        Self::from_traceparent(value)
    }

    /// This span as a `traceparent` value, for a request made inside it.
    pub fn traceparent(&self) -> String {
        let mut out = String::with_capacity(55);
        out.push_str("00-");
        out.push_str(self.trace_id.encode_hex(&mut [0; 32]));
        out.push('-');
        out.push_str(self.span_id.encode_hex(&mut [0; 16]));
        out.push_str(if self.sampled { "-01" } else { "-00" });
        out
    }

    /// Sets `traceparent` on outgoing request headers to this span.
    pub(crate) fn inject(&self, headers: &mut HeaderMap) {
        if let Ok(value) = HeaderValue::from_str(&self.traceparent()) {
            headers.insert(TRACEPARENT, value);
        }
    }
}

#[cfg(feature = "opentelemetry")]
mod otel {
    use opentelemetry::trace::{SpanContext, TraceContextExt, TraceFlags, TraceState};
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    use super::{SpanId, TraceContext, TraceId};

    fn ids(context: &SpanContext) -> Option<(TraceId, SpanId)> {
        if !context.is_valid() {
            return None;
        }
        Some((
            TraceId::from_bytes(context.trace_id().to_bytes())?,
            SpanId::from_bytes(context.span_id().to_bytes())?,
        ))
    }

    /// The caller's OpenTelemetry span: the active OpenTelemetry context, or (with context
    /// activation off) the current `tracing` span's.
    fn caller() -> Option<SpanContext> {
        let active = opentelemetry::Context::current()
            .span()
            .span_context()
            .clone();
        if active.is_valid() {
            return Some(active);
        }
        let current = tracing::Span::current()
            .context()
            .span()
            .span_context()
            .clone();
        current.is_valid().then_some(current)
    }

    fn remote_parent(remote: &TraceContext) -> opentelemetry::Context {
        let flags = if remote.sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        let context = SpanContext::new(
            opentelemetry::trace::TraceId::from_bytes(remote.trace_id.to_bytes()),
            opentelemetry::trace::SpanId::from_bytes(remote.span_id.to_bytes()),
            flags,
            true,
            TraceState::default(),
        );
        opentelemetry::Context::new().with_remote_span_context(context)
    }

    /// The ids of `span` as `tracing-opentelemetry` exports it, and of its parent. When the
    /// caller has no OpenTelemetry trace of its own, `remote` (an incoming `traceparent`)
    /// becomes the span's parent first, so the exported span and the payload agree. When the
    /// `gen_ai` span itself is not exported (filtered out), the call is still placed under the
    /// caller's span. `None` when no OpenTelemetry layer sees either.
    pub(super) fn context_of(
        span: &tracing::Span,
        remote: Option<&TraceContext>,
    ) -> Option<(TraceContext, bool)> {
        let caller = caller();
        let parent = match (&caller, remote) {
            (Some(caller), _) => ids(caller),
            (None, Some(remote)) => {
                // An error means no OpenTelemetry layer sees the span: nothing to align.
                let _ = span.set_parent(remote_parent(remote));
                Some((remote.trace_id, remote.span_id))
            }
            (None, None) => None,
        };
        let own = span.context().span().span_context().clone();
        if let Some((trace_id, span_id)) = ids(&own) {
            let context = TraceContext {
                trace_id,
                span_id,
                parent_span_id: parent
                    .filter(|(parent_trace, _)| *parent_trace == trace_id)
                    .map(|(_, parent_span)| parent_span),
                sampled: own.is_sampled(),
            };
            return Some((context, true));
        }
        let caller = caller?;
        let (trace_id, parent_span) = ids(&caller)?;
        let context = TraceContext {
            trace_id,
            span_id: SpanId::random(),
            parent_span_id: Some(parent_span),
            sampled: caller.is_sampled(),
        };
        Some((context, false))
    }
}

/// The trace context of a call whose span is `span`, on a request with `headers`, and whether
/// an OpenTelemetry layer exports the span.
pub(crate) fn for_call(span: &tracing::Span, headers: &HeaderMap) -> (TraceContext, bool) {
    let remote = TraceContext::from_headers(headers);
    #[cfg(feature = "opentelemetry")]
    if let Some(found) = otel::context_of(span, remote.as_ref()) {
        return found;
    }
    #[cfg(not(feature = "opentelemetry"))]
    let _ = span;
    let context = match remote {
        Some(remote) => remote.child(),
        None => TraceContext::root(),
    };
    (context, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_traceparent() {
        let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let context = TraceContext::from_traceparent(header).expect("valid");
        assert_eq!(
            context.trace_id.to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(context.span_id.to_string(), "00f067aa0ba902b7");
        assert!(context.sampled);
        assert_eq!(context.traceparent(), header);
        let unsampled = TraceContext::from_traceparent(&header.replace("-01", "-00")).unwrap();
        assert!(!unsampled.sampled);
        // A later version may add fields; its first four are still read.
        assert!(TraceContext::from_traceparent(&format!("cc{}-extra", &header[2..])).is_some());
    }

    #[test]
    fn refuses_invalid_traceparent() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
            "0é-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::from_traceparent(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn fresh_ids_are_valid_and_distinct() {
        let a = TraceContext::root();
        let b = TraceContext::root();
        assert_ne!(a.trace_id, b.trace_id);
        assert_ne!(a.span_id, b.span_id);
        assert_eq!(a.parent_span_id, None);
        let round_trip = TraceContext::from_traceparent(&a.traceparent()).unwrap();
        assert_eq!(
            (round_trip.trace_id, round_trip.span_id),
            (a.trace_id, a.span_id)
        );
    }

    #[test]
    fn serializes_as_hex() {
        let context = TraceContext::from_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .unwrap()
        .child();
        let json = serde_json::to_value(context).unwrap();
        assert_eq!(json["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(json["parent_span_id"], "00f067aa0ba902b7");
        assert_eq!(json.as_object().unwrap().len(), 3);
        let back: TraceContext = serde_json::from_value(json).unwrap();
        assert_eq!(back, context);
        assert!(serde_json::from_str::<TraceId>("\"00000000000000000000000000000000\"").is_err());
    }
}
