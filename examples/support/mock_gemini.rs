//! The Gemini API part of the mock upstream (`generativelanguage.googleapis.com` shapes, as
//! recorded in `../shared/fixtures/provider-recorded`):
//!
//! - `POST /v1beta/models/{model}:generateContent`: one `GenerateContentResponse`;
//! - `POST /v1beta/models/{model}:streamGenerateContent?alt=sse`: SSE, one
//!   `GenerateContentResponse` chunk per `data:` line (`\r\n\r\n` apart, as Google writes them),
//!   and without `alt=sse` the same chunks as one JSON array written piece by piece;
//! - with `tools[].functionDeclarations`, a `functionCall` part of the first function (its
//!   `args` whole, in one chunk, as Gemini sends them) after a short text;
//! - with `generationConfig.thinkingConfig.includeThoughts`, a thought summary part first
//!   (`"thought": true`), counted in `thoughtsTokenCount`;
//! - `usageMetadata` on every chunk, the final counts on the last one with `finishReason`;
//! - model `does-not-exist`: a 404 in Google's error shape (`status: NOT_FOUND`).

use axum::extract::{Path, RawQuery};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde_json::{json, Value};

use super::{answer_pieces, answer_pieces_for_tool, frames_apart, text_of, tool_call_for};
use super::{topic_of, words};

/// `POST /v1beta/models/{model}:{method}`: `model_method` is the last path segment.
pub async fn models(
    Path(model_method): Path<String>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let Some((model, method)) = model_method.split_once(':') else {
        return google_error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such method");
    };
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        let message = "Invalid JSON payload received.";
        return google_error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message);
    };
    if model == "does-not-exist" {
        let message = "models/does-not-exist is not found for API version v1beta, or is not \
                       supported for generateContent.";
        return google_error(StatusCode::NOT_FOUND, "NOT_FOUND", message);
    }
    let answer = Answer::from_request(model, &request);
    let sse = (query.as_deref().unwrap_or("").split('&')).any(|pair| pair == "alt=sse");
    match method {
        "generateContent" => Json(answer.whole()).into_response(),
        "streamGenerateContent" if sse => {
            let events = (answer.chunks().iter())
                .map(|chunk| format!("data: {chunk}\r\n\r\n"))
                .collect();
            frames_apart("text/event-stream", events, [])
        }
        "streamGenerateContent" => {
            // `[{...}`, then `,\r\n{...}` per chunk, then `]`: a JSON array written as it goes.
            let chunks = answer.chunks();
            let last = chunks.len().saturating_sub(1);
            let pieces = (chunks.iter().enumerate())
                .map(|(i, chunk)| {
                    let open = if i == 0 { "[" } else { ",\r\n" };
                    let close = if i == last { "]" } else { "" };
                    format!("{open}{chunk}{close}")
                })
                .collect();
            frames_apart("application/json; charset=UTF-8", pieces, [])
        }
        _ => google_error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such method"),
    }
}

/// What a `generateContent` call answers.
struct Answer {
    model: String,
    thought: Option<String>,
    text_pieces: Vec<String>,
    /// `(function name, args)` when the request declared functions.
    function_call: Option<(String, Value)>,
    prompt_tokens: u64,
}

impl Answer {
    fn from_request(model: &str, request: &Value) -> Answer {
        let prompt = last_user_text(request);
        let function_call = (request["tools"].as_array().into_iter().flatten())
            .filter_map(|tool| tool["functionDeclarations"].as_array()?.first())
            .next()
            .and_then(|function| {
                let (name, args) =
                    tool_call_for(&function["name"], &function["parameters"], &prompt)?;
                Some((name, serde_json::from_str(&args).ok()?))
            });
        let thinks = request["generationConfig"]["thinkingConfig"]["includeThoughts"] == true;
        let text_pieces = match &function_call {
            Some(_) => answer_pieces_for_tool(&prompt),
            None => answer_pieces(&prompt),
        };
        let contents = request["contents"].as_array().into_iter().flatten();
        let parts = contents.flat_map(|c| c["parts"].as_array().into_iter().flatten());
        let system = request["systemInstruction"]["parts"].as_array();
        let prompt_tokens = (parts.chain(system.into_iter().flatten()))
            .map(|part| words(part["text"].as_str().unwrap_or("")))
            .sum::<u64>();
        Answer {
            model: model.to_owned(),
            thought: thinks.then(|| format!("**Answering** about {}.", topic_of(&prompt))),
            text_pieces,
            function_call,
            prompt_tokens: prompt_tokens.max(1),
        }
    }

    fn thoughts_tokens(&self) -> u64 {
        self.thought.as_deref().map_or(0, words)
    }

    fn candidates_tokens(&self) -> u64 {
        let call = (self.function_call.as_ref())
            .map_or(0, |(name, args)| words(name) + words(&args.to_string()));
        self.text_pieces.len() as u64 + call
    }

    fn finish_reason(&self) -> &'static str {
        "STOP"
    }

    /// `usageMetadata` so far: `done` counts everything, else the prompt alone.
    fn usage(&self, done: bool) -> Value {
        let (candidates, thoughts) = if done {
            (self.candidates_tokens(), self.thoughts_tokens())
        } else {
            (0, 0)
        };
        let mut usage = json!({"promptTokenCount": self.prompt_tokens,
            "candidatesTokenCount": candidates,
            "totalTokenCount": self.prompt_tokens + candidates + thoughts,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": self.prompt_tokens}]});
        if thoughts > 0 {
            usage["thoughtsTokenCount"] = json!(thoughts);
        }
        usage
    }

    fn chunk(&self, parts: Vec<Value>, done: bool) -> Value {
        let mut candidate = json!({"content": {"parts": parts, "role": "model"}, "index": 0});
        if done {
            candidate["finishReason"] = json!(self.finish_reason());
        }
        json!({"candidates": [candidate], "usageMetadata": self.usage(done),
               "modelVersion": self.model, "responseId": "mockGeminiResp0001"})
    }

    fn function_call_part(&self) -> Option<Value> {
        let (name, args) = self.function_call.as_ref()?;
        Some(json!({"functionCall": {"name": name, "args": args}}))
    }

    /// The streamed chunks: the thought, each text piece, the function call; the last one
    /// carries `finishReason` and the final usage.
    fn chunks(&self) -> Vec<Value> {
        let mut parts: Vec<Value> = Vec::new();
        if let Some(thought) = &self.thought {
            parts.push(json!({"text": thought, "thought": true}));
        }
        parts.extend(self.text_pieces.iter().map(|piece| json!({"text": piece})));
        parts.extend(self.function_call_part());
        let last = parts.len().saturating_sub(1);
        (parts.into_iter().enumerate())
            .map(|(i, part)| self.chunk(vec![part], i == last))
            .collect()
    }

    /// The unstreamed response: the same parts, text merged.
    fn whole(&self) -> Value {
        let mut parts = Vec::new();
        if let Some(thought) = &self.thought {
            parts.push(json!({"text": thought, "thought": true}));
        }
        parts.push(json!({"text": self.text_pieces.concat()}));
        parts.extend(self.function_call_part());
        self.chunk(parts, true)
    }
}

/// The text of the last `user` turn of `contents`.
fn last_user_text(request: &Value) -> String {
    (request["contents"].as_array().into_iter().flatten())
        .rev()
        .find(|content| content["role"] == "user" || content.get("role").is_none())
        .map(|content| text_of(&content["parts"]))
        .unwrap_or_default()
}

/// `{"error": {code, message, status}}` with `status`.
fn google_error(status: StatusCode, kind: &str, message: &str) -> Response {
    let body = json!({"error": {"code": status.as_u16(), "message": message, "status": kind}});
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=UTF-8")],
        body.to_string(),
    )
        .into_response()
}
