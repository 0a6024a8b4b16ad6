//! Answers the proxy gives itself, in OpenAI's error shape:
//! `{"error": {"message", "type", "param", "code"}}`.

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use crate::forward::{openai_error, ProxyBody};

/// 405 for `CONNECT`: this is a reverse proxy for one upstream, not a forward proxy.
pub fn connect_refused() -> Response<ProxyBody> {
    let mut response = openai_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request_error",
        "method_not_allowed",
        &"CONNECT is not supported: this proxy forwards requests to its upstream only",
    );
    response.headers_mut().insert(
        header::ALLOW,
        HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
    );
    response
}

/// 400 for a path the proxy does not forward (see `path.rs`).
pub fn path_refused(reason: &crate::path::PathError) -> Response<ProxyBody> {
    openai_error(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        "invalid_path",
        reason,
    )
}

/// 408 for a request body the client sent too slowly.
pub fn body_timeout(reason: &dyn std::fmt::Display) -> Response<ProxyBody> {
    let mut response = openai_error(
        StatusCode::REQUEST_TIMEOUT,
        "invalid_request_error",
        "request_body_timeout",
        reason,
    );
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
