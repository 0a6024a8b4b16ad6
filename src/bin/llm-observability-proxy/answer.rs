//! Answers the proxy gives itself — a refused request, an unreachable upstream, a request body
//! sent too slowly — each in the error shape of the API the client called, so its SDK reads
//! the error as it reads the API's own:
//!
//! - OpenAI (and everything else): `{"error": {"message", "type", "param", "code"}}`;
//! - Anthropic: `{"type": "error", "error": {"type", "message"}}`;
//! - Gemini and Vertex AI: `{"error": {"code", "message", "status"}}`;
//! - Bedrock: `{"message"}`, the exception's name in `x-amzn-errortype`;
//! - Ollama: `{"error": "message"}`.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use llm_observability::Endpoint;
use serde_json::json;

use crate::forward::ProxyBody;
use crate::path::PathError;

/// The error shape a client of some API expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorShape {
    OpenAi,
    Anthropic,
    Google,
    Bedrock,
    Ollama,
}

impl ErrorShape {
    /// The shape of the API a request with `method` and `path` calls (OpenAI's when it calls
    /// no API the proxy knows).
    pub fn of(method: &Method, path: &str) -> Self {
        Endpoint::classify(method, path).map_or(ErrorShape::OpenAi, ErrorShape::of_endpoint)
    }

    fn of_endpoint(endpoint: Endpoint) -> Self {
        match endpoint.api() {
            "anthropic" => ErrorShape::Anthropic,
            "gemini" => ErrorShape::Google,
            "bedrock" => ErrorShape::Bedrock,
            "ollama" => ErrorShape::Ollama,
            _ => ErrorShape::OpenAi,
        }
    }
}

/// What went wrong, in the words each shape needs.
struct ProxyError<'a> {
    status: StatusCode,
    /// OpenAI's `code` (the proxy's own name for the error).
    code: &'a str,
    message: &'a dyn std::fmt::Display,
}

impl ProxyError<'_> {
    fn answer(&self, shape: ErrorShape) -> Response<ProxyBody> {
        let message = self.message.to_string();
        let status = self.status;
        let client_error = status.is_client_error();
        let (body, exception) = match shape {
            ErrorShape::OpenAi => {
                let kind = if client_error {
                    "invalid_request_error"
                } else {
                    "proxy_error"
                };
                let error = json!({"message": message, "type": kind, "param": null,
                                   "code": self.code});
                (json!({ "error": error }), None)
            }
            ErrorShape::Anthropic => {
                let kind = if client_error {
                    "invalid_request_error"
                } else {
                    "api_error"
                };
                let error = json!({"type": kind, "message": message});
                (json!({"type": "error", "error": error}), None)
            }
            ErrorShape::Google => {
                let kind = match status {
                    StatusCode::REQUEST_TIMEOUT => "DEADLINE_EXCEEDED",
                    StatusCode::METHOD_NOT_ALLOWED => "UNIMPLEMENTED",
                    _ if client_error => "INVALID_ARGUMENT",
                    _ => "UNAVAILABLE",
                };
                let error = json!({"code": status.as_u16(), "message": message, "status": kind});
                (json!({ "error": error }), None)
            }
            ErrorShape::Bedrock => {
                let exception = match status {
                    StatusCode::REQUEST_TIMEOUT => "RequestTimeoutException",
                    _ if client_error => "ValidationException",
                    _ => "ServiceUnavailableException",
                };
                (json!({ "message": message }), Some(exception))
            }
            ErrorShape::Ollama => (json!({ "error": message }), None),
        };
        let mut response = Response::new(
            Full::new(Bytes::from(body.to_string()))
                .map_err(|never| match never {})
                .boxed_unsync(),
        );
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(exception) = exception {
            headers.insert("x-amzn-errortype", HeaderValue::from_static(exception));
        }
        response
    }
}

/// 405 for `CONNECT`: this is a reverse proxy for one upstream, not a forward proxy.
pub fn connect_refused() -> Response<ProxyBody> {
    let error = ProxyError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        code: "method_not_allowed",
        message: &"CONNECT is not supported: this proxy forwards requests to its upstream only",
    };
    let mut response = error.answer(ErrorShape::OpenAi);
    response.headers_mut().insert(
        header::ALLOW,
        HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
    );
    response
}

/// 400 for a path the proxy does not forward (see `path.rs`), in the shape of the API the
/// request would have reached.
pub fn path_refused(shape: ErrorShape, reason: &PathError) -> Response<ProxyBody> {
    let shape = match reason {
        PathError::UnrecordedLlmEndpoint { endpoint, .. } => ErrorShape::of_endpoint(*endpoint),
        _ => shape,
    };
    let error = ProxyError {
        status: StatusCode::BAD_REQUEST,
        code: "invalid_path",
        message: reason,
    };
    error.answer(shape)
}

/// 408 for a request body the client sent too slowly.
pub fn body_timeout(shape: ErrorShape, reason: &dyn std::fmt::Display) -> Response<ProxyBody> {
    let error = ProxyError {
        status: StatusCode::REQUEST_TIMEOUT,
        code: "request_body_timeout",
        message: reason,
    };
    let mut response = error.answer(shape);
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// 502 for a call whose upstream could not be reached.
pub fn upstream_unreachable(
    shape: ErrorShape,
    error: &dyn std::fmt::Display,
) -> Response<ProxyBody> {
    let error = ProxyError {
        status: StatusCode::BAD_GATEWAY,
        code: "upstream_unreachable",
        message: &format_args!("upstream unreachable: {error}"),
    };
    error.answer(shape)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(response: Response<ProxyBody>) -> serde_json::Value {
        let bytes = response.into_body().collect().await.expect("a body");
        serde_json::from_slice(&bytes.to_bytes()).expect("JSON")
    }

    #[tokio::test]
    async fn each_api_gets_its_own_error_shape() {
        let post = Method::POST;
        let cases = [
            (
                "/v1/chat/completions",
                json!({"error": {"message": "upstream unreachable: refused",
                                 "type": "proxy_error", "param": null,
                                 "code": "upstream_unreachable"}}),
                None,
            ),
            (
                "/v1/messages",
                json!({"type": "error", "error": {"type": "api_error",
                                                  "message": "upstream unreachable: refused"}}),
                None,
            ),
            (
                "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
                json!({"error": {"code": 502, "message": "upstream unreachable: refused",
                                 "status": "UNAVAILABLE"}}),
                None,
            ),
            (
                "/model/amazon.nova-lite-v1:0/converse",
                json!({"message": "upstream unreachable: refused"}),
                Some("ServiceUnavailableException"),
            ),
            (
                "/api/chat",
                json!({"error": "upstream unreachable: refused"}),
                None,
            ),
            (
                "/v1/models",
                json!({"error": {"message": "upstream unreachable: refused",
                                 "type": "proxy_error", "param": null,
                                 "code": "upstream_unreachable"}}),
                None,
            ),
        ];
        for (path, want, exception) in cases {
            let response = upstream_unreachable(ErrorShape::of(&post, path), &"refused");
            assert_eq!(response.status(), StatusCode::BAD_GATEWAY, "{path}");
            assert_eq!(
                (response.headers().get("x-amzn-errortype")).and_then(|v| v.to_str().ok()),
                exception,
                "{path}"
            );
            assert_eq!(body_of(response).await, want, "{path}");
        }
    }

    #[tokio::test]
    async fn client_errors_say_so_in_each_shape() {
        let timeout = |shape| body_timeout(shape, &"too slow");
        let anthropic = body_of(timeout(ErrorShape::Anthropic)).await;
        assert_eq!(anthropic["error"]["type"], "invalid_request_error");
        let google = body_of(timeout(ErrorShape::Google)).await;
        assert_eq!(google["error"]["status"], "DEADLINE_EXCEEDED");
        assert_eq!(google["error"]["code"], 408);
        let bedrock = timeout(ErrorShape::Bedrock);
        assert_eq!(
            bedrock.headers()["x-amzn-errortype"],
            "RequestTimeoutException"
        );
        assert_eq!(bedrock.headers()["connection"], "close");
        let openai = body_of(timeout(ErrorShape::OpenAi)).await;
        assert_eq!(openai["error"]["code"], "request_body_timeout");
        assert_eq!(openai["error"]["type"], "invalid_request_error");
        // A lookalike of a Gemini call is refused in Gemini's shape, whatever the path says.
        let lookalike = PathError::UnrecordedLlmEndpoint {
            endpoint: Endpoint::GeminiGenerateContent,
            suggested: "/v1beta/models/m:generatecontent".to_owned(),
        };
        let refused = body_of(path_refused(ErrorShape::OpenAi, &lookalike)).await;
        assert_eq!(refused["error"]["status"], "INVALID_ARGUMENT");
        assert_eq!(refused["error"]["code"], 400);
    }
}
