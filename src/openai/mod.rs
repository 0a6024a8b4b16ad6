//! OpenAI wire formats: which calls, request decoding, response decoding, SSE parsing and the
//! stream assembler.

pub(crate) mod assemble;
pub(crate) mod decoder;
pub(crate) mod endpoint;
pub(crate) mod include_usage;
pub(crate) mod indexed;
pub(crate) mod request;
pub(crate) mod response;
pub(crate) mod sse;
pub(crate) mod wire;
