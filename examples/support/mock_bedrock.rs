//! The Bedrock Runtime part of the mock upstream (Converse API shapes, as recorded in
//! `../shared/fixtures/provider-recorded`):
//!
//! - `POST /model/{modelId}/converse`: a Converse response (`output.message.content`,
//!   `stopReason`, `usage`, `metrics`);
//! - `POST /model/{modelId}/converse-stream`: `application/vnd.amazon.eventstream`, one binary
//!   frame per event (`messageStart`, `contentBlockStart`, `contentBlockDelta`,
//!   `contentBlockStop`, `messageStop`, `metadata`), each with its CRCs and a `p` padding field
//!   as AWS sends them;
//! - with `toolConfig.tools`, a `toolUse` block of the first tool whose `input` streams in
//!   pieces after a short text;
//! - `x-amzn-requestid` on every answer; model `does-not-exist`: a 400 `ValidationException`
//!   (in the `x-amzn-errortype` header and the body's `message`).

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{json, Value};

use super::{answer_pieces, answer_pieces_for_tool, argument_pieces, frames_apart, stop_reason};
use super::{text_of, tool_call_for, words};

/// The request id of every answer.
const REQUEST_ID: &str = "0b4c2b7e-0000-4d5e-9a6b-mock00000001";

/// `POST /model/{modelId}/{converse | converse-stream}`.
pub async fn model(Path((model_id, operation)): Path<(String, String)>, body: Bytes) -> Response {
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return validation_error(
            "Malformed input request, please reformat your input and try again.",
        );
    };
    if model_id == "does-not-exist" {
        return validation_error("The provided model identifier is invalid.");
    }
    let answer = Answer::from_request(&request);
    let request_id = [("x-amzn-requestid", REQUEST_ID.to_owned())];
    match operation.as_str() {
        "converse" => (
            [
                ("x-amzn-requestid", REQUEST_ID),
                ("content-type", "application/json"),
            ],
            answer.whole().to_string(),
        )
            .into_response(),
        "converse-stream" => {
            let frames: Vec<Vec<u8>> = (answer.events().into_iter())
                .map(|(kind, payload)| event_frame(kind, &payload))
                .collect();
            frames_apart("application/vnd.amazon.eventstream", frames, request_id)
        }
        _ => (StatusCode::NOT_FOUND, "").into_response(),
    }
}

/// What a Converse call answers.
struct Answer {
    text_pieces: Vec<String>,
    /// `(tool name, input JSON)` when the request offered tools.
    tool_use: Option<(String, String)>,
    input_tokens: u64,
}

impl Answer {
    fn from_request(request: &Value) -> Answer {
        let messages = request["messages"].as_array().into_iter().flatten();
        let prompt = (messages.clone().rev())
            .find(|message| message["role"] == "user")
            .map(|message| text_of(&message["content"]))
            .unwrap_or_default();
        let tool_use = (request["toolConfig"]["tools"].as_array())
            .and_then(|tools| tools.first())
            .and_then(|tool| {
                let spec = &tool["toolSpec"];
                tool_call_for(&spec["name"], &spec["inputSchema"]["json"], &prompt)
            });
        let text_pieces = match &tool_use {
            Some(_) => answer_pieces_for_tool(&prompt),
            None => answer_pieces(&prompt),
        };
        let system = request["system"].as_array().into_iter().flatten();
        let input_tokens = (messages.map(|m| &m["content"]).chain(system))
            .map(|content| words(&text_of(content)))
            .sum::<u64>();
        Answer {
            text_pieces,
            tool_use,
            input_tokens: input_tokens.max(1),
        }
    }

    fn output_tokens(&self) -> u64 {
        let tool = (self.tool_use.as_ref()).map_or(0, |(name, input)| {
            words(name) + argument_pieces(input).len() as u64
        });
        self.text_pieces.len() as u64 + tool
    }

    fn stop_reason(&self) -> &'static str {
        stop_reason(self.tool_use.is_some())
    }

    fn usage(&self) -> Value {
        let output = self.output_tokens();
        json!({"inputTokens": self.input_tokens, "outputTokens": output,
               "totalTokens": self.input_tokens + output})
    }

    /// The unstreamed Converse response.
    fn whole(&self) -> Value {
        let mut content = vec![json!({"text": self.text_pieces.concat()})];
        if let Some((name, input)) = &self.tool_use {
            let input: Value = serde_json::from_str(input).unwrap_or_default();
            content.push(
                json!({"toolUse": {"toolUseId": "tooluse_mock0001", "name": name,
                                            "input": input}}),
            );
        }
        json!({"output": {"message": {"role": "assistant", "content": content}},
               "stopReason": self.stop_reason(), "usage": self.usage(),
               "metrics": {"latencyMs": 42}})
    }

    /// The streamed events, `(event type, payload)`, as Converse sends them.
    fn events(&self) -> Vec<(&'static str, Value)> {
        let mut events = vec![("messageStart", json!({"role": "assistant"}))];
        for piece in &self.text_pieces {
            events.push((
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"text": piece}}),
            ));
        }
        events.push(("contentBlockStop", json!({"contentBlockIndex": 0})));
        if let Some((name, input)) = &self.tool_use {
            events.push((
                "contentBlockStart",
                json!({"contentBlockIndex": 1, "start": {"toolUse": {
                    "toolUseId": "tooluse_mock0001", "name": name}}}),
            ));
            for piece in argument_pieces(input) {
                events.push((
                    "contentBlockDelta",
                    json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": piece}}}),
                ));
            }
            events.push(("contentBlockStop", json!({"contentBlockIndex": 1})));
        }
        events.push(("messageStop", json!({"stopReason": self.stop_reason()})));
        events.push((
            "metadata",
            json!({"usage": self.usage(), "metrics": {"latencyMs": 42}}),
        ));
        events
    }
}

/// One event-stream frame of an `event` (string headers `:event-type`, `:content-type`,
/// `:message-type`), its payload padded with `p` as AWS pads it.
fn event_frame(kind: &str, payload: &Value) -> Vec<u8> {
    let mut payload = payload.clone();
    payload["p"] = json!("abcdefghijklmnopqrstuvwxyzABCDEFGHIJ"[..(kind.len() % 20 + 4)]);
    let payload = payload.to_string();
    let mut headers = Vec::new();
    for (name, value) in [
        (":event-type", kind),
        (":content-type", "application/json"),
        (":message-type", "event"),
    ] {
        headers.push(name.len() as u8);
        headers.extend_from_slice(name.as_bytes());
        headers.push(7); // string
        headers.extend_from_slice(&(value.len() as u16).to_be_bytes());
        headers.extend_from_slice(value.as_bytes());
    }
    let total = 12 + headers.len() + payload.len() + 4;
    let mut frame = Vec::with_capacity(total);
    frame.extend_from_slice(&(total as u32).to_be_bytes());
    frame.extend_from_slice(&(headers.len() as u32).to_be_bytes());
    let prelude_crc = crc32fast::hash(&frame);
    frame.extend_from_slice(&prelude_crc.to_be_bytes());
    frame.extend_from_slice(&headers);
    frame.extend_from_slice(payload.as_bytes());
    let message_crc = crc32fast::hash(&frame);
    frame.extend_from_slice(&message_crc.to_be_bytes());
    frame
}

/// A 400 `ValidationException`, typed in the header as Bedrock types it.
fn validation_error(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        [
            ("x-amzn-requestid", REQUEST_ID),
            (
                "x-amzn-errortype",
                "ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/",
            ),
            ("content-type", "application/json"),
        ],
        json!({ "message": message }).to_string(),
    )
        .into_response()
}
