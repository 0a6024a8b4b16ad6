//! Which request targets the proxy forwards: paths in normal form only, and no path that a
//! server of any recorded API family could route to an LLM endpoint while the layer would not
//! record it. Only the path is checked: the query (Anthropic's `?beta=true`) is forwarded as sent.
//!
//! Rules, checked before anything is forwarded:
//!
//! 1. Normal form (every request): the path starts with `/`; it has no `.` or `..` segment
//!    (nor `..;x`), no empty segment (`//`; one trailing `/` is fine), no backslash, and no
//!    percent-escape that is malformed or encodes an unreserved character (`A-Z a-z 0-9 - . _ ~`),
//!    `/`, `\` or a control character — those must be sent as they are. One exception: a
//!    Bedrock model id may hold an encoded `/` (`%2F`: an inference-profile ARN), in the
//!    segment right after `model` of a path recorded as a Bedrock Converse call
//!    (`.../model/arn%3Aaws%3A...%2Fabc/converse`), as long as none of the pieces it separates
//!    is empty, `.` or `..`.
//! 2. No unrecorded LLM endpoint: a request whose method is, or could be taken for, `POST`
//!    (`post`, or an `X-HTTP-Method-Override`-style header saying `POST`) is refused when a
//!    lenient server — one that percent-decodes (repeatedly), ignores case and `;parameters`, and
//!    treats `\` as `/` — would route it to an LLM endpoint that
//!    [`Endpoint::classify`] does not see in the path as sent. `POST /V1/chat/completions`
//!    and `POST /v1/CHAT/completions` pass (recorded: the classifier ignores case);
//!    `POST /v1/chat/completions;x=1` and `POST /v1/chat/%2563ompletions` are refused.

use http::{HeaderMap, Method};
use llm_observability::Endpoint;

/// Headers some frameworks read to let a `GET` or `PUT` act as another method.
const METHOD_OVERRIDE_HEADERS: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Why a path is refused (answered with 400, never forwarded).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// `*`, or anything else that is not `/...`.
    #[error("the request target must be a path starting with '/'")]
    NotOriginForm,
    /// A `.` or `..` segment.
    #[error("the path has a '.' or '..' segment; send it normalised")]
    DotSegment,
    /// `//` inside the path.
    #[error("the path has an empty segment ('//')")]
    EmptySegment,
    /// A raw `\`.
    #[error("the path has a backslash")]
    Backslash,
    /// `%` not followed by two hex digits.
    #[error("the path has a malformed percent-escape")]
    MalformedEscape,
    /// A percent-escape that a server decodes into something routing depends on.
    #[error("the path percent-encodes {0:?}; send that character unencoded")]
    EncodedCharacter(char),
    /// The request could reach an LLM endpoint the layer would not record.
    #[error("the request could reach {endpoint} but is not sent as an LLM call would be; send POST {suggested}")]
    UnrecordedLlmEndpoint {
        /// The endpoint a lenient server would route to.
        endpoint: Endpoint,
        /// The path that endpoint is recorded under.
        suggested: String,
    },
}

/// Checks `path` (without the query) of a request with `method` and `headers`.
pub fn check(method: &Method, headers: &HeaderMap, path: &str) -> Result<(), PathError> {
    let (plain, encoded_slash) = check_normal_form(path)?;
    if encoded_slash
        && !matches!(
            Endpoint::classify(&Method::POST, path),
            Some(Endpoint::BedrockConverse | Endpoint::BedrockConverseStream)
        )
    {
        return Err(PathError::EncodedCharacter('/'));
    }
    if !could_be_post(method, headers) || (plain && method == Method::POST) {
        return Ok(());
    }
    let lenient = lenient_view(path);
    match Endpoint::classify(&Method::POST, &lenient) {
        Some(endpoint) if Endpoint::classify(method, path) != Some(endpoint) => {
            Err(PathError::UnrecordedLlmEndpoint {
                endpoint,
                suggested: lenient,
            })
        }
        _ => Ok(()),
    }
}

/// Rule 1, in one pass over the bytes (this runs for every request). Returns whether the path
/// is plain — no `%`, `;` or uppercase letter — so that its lenient view is the path itself,
/// and whether it holds a Bedrock model id's encoded `/` (allowed only in a Converse path:
/// the caller checks that).
fn check_normal_form(path: &str) -> Result<(bool, bool), PathError> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotOriginForm);
    }
    let mut plain = true;
    let mut encoded_slash = false;
    let mut slash_in_segment = false;
    // Where the previous segment began (`model` before a model id).
    let mut previous_start = 0;
    let mut segment_start = 1;
    // Where the segment's `;parameters` begin.
    let mut parameters: Option<usize> = None;
    let mut i = 1;
    while i <= bytes.len() {
        let byte = bytes.get(i).copied();
        match byte {
            None | Some(b'/') => {
                let name = &bytes[segment_start..parameters.unwrap_or(i)];
                if name == b"." || name == b".." {
                    return Err(PathError::DotSegment);
                }
                // One trailing '/' (an empty last segment) is fine.
                if i == segment_start && byte.is_some() {
                    return Err(PathError::EmptySegment);
                }
                if slash_in_segment {
                    check_model_id(&path[segment_start..i])?;
                    slash_in_segment = false;
                }
                previous_start = segment_start;
                segment_start = i + 1;
                parameters = None;
            }
            Some(b'\\') => return Err(PathError::Backslash),
            Some(b'%') => {
                let decoded = bytes
                    .get(i + 1..i + 3)
                    .and_then(decode_hex_pair)
                    .ok_or(PathError::MalformedEscape)?;
                if decoded == b'/' && bytes.get(previous_start..segment_start) == Some(b"model/") {
                    encoded_slash = true;
                    slash_in_segment = true;
                } else if must_not_be_encoded(decoded) {
                    return Err(PathError::EncodedCharacter(char::from(decoded)));
                }
                plain = false;
                i += 3;
                continue;
            }
            Some(b';') => {
                plain = false;
                parameters.get_or_insert(i);
            }
            Some(b'A'..=b'Z') => plain = false,
            Some(_) => {}
        }
        i += 1;
    }
    Ok((plain, encoded_slash))
}

/// A model id segment with encoded `/`s: none of the pieces they separate may be empty, `.`
/// or `..` (a server that decodes them would resolve those).
fn check_model_id(segment: &str) -> Result<(), PathError> {
    let mut rest = segment;
    loop {
        let cut = match (rest.find("%2F"), rest.find("%2f")) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let piece = cut.map_or(rest, |at| &rest[..at]);
        let name = piece.split(';').next().unwrap_or_default();
        if name == "." || name == ".." {
            return Err(PathError::DotSegment);
        }
        if piece.is_empty() {
            return Err(PathError::EmptySegment);
        }
        match cut {
            Some(at) => rest = &rest[at + 3..],
            None => return Ok(()),
        }
    }
}

/// Unreserved characters (RFC 3986 §2.3), separators and control characters.
fn must_not_be_encoded(byte: u8) -> bool {
    byte.is_ascii_alphanumeric()
        || matches!(byte, b'-' | b'.' | b'_' | b'~' | b'/' | b'\\')
        || byte.is_ascii_control()
}

/// Whether a server could treat this request as a `POST`.
fn could_be_post(method: &Method, headers: &HeaderMap) -> bool {
    method.as_str().eq_ignore_ascii_case("POST")
        || METHOD_OVERRIDE_HEADERS.iter().any(|name| {
            headers
                .get_all(*name)
                .iter()
                .any(|value| value.as_bytes().trim_ascii().eq_ignore_ascii_case(b"POST"))
        })
}

/// The path as the most lenient server would route it: percent-decoded until nothing changes
/// (three rounds at most), lowercase, `\` as `/`, each segment cut at `;` or a control
/// character and trimmed, empty and `.` segments dropped, `..` resolved.
fn lenient_view(path: &str) -> String {
    let mut decoded = path.to_owned();
    for _ in 0..3 {
        let next = percent_decode(&decoded);
        if next == decoded {
            break;
        }
        decoded = next;
    }
    let decoded = decoded.to_ascii_lowercase().replace('\\', "/");
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        let name = segment
            .split(|c: char| c == ';' || c.is_control())
            .next()
            .unwrap_or_default()
            .trim();
        match name {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            name => segments.push(name),
        }
    }
    format!("/{}", segments.join("/"))
}

/// One round of percent-decoding; malformed escapes stay as they are, invalid UTF-8 is
/// replaced.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes
            .get(i + 1..i + 3)
            .filter(|_| bytes[i] == b'%')
            .and_then(decode_hex_pair)
        {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn decode_hex_pair(pair: &[u8]) -> Option<u8> {
    let digit = |b: u8| char::from(b).to_digit(16);
    match pair {
        [high, low] => Some((digit(*high)? * 16 + digit(*low)?) as u8),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(path: &str) -> Result<(), PathError> {
        check(&Method::POST, &HeaderMap::new(), path)
    }

    #[test]
    fn forwards_paths_in_normal_form() {
        for path in [
            "/",
            "/v1/chat/completions",
            "/v1/chat/completions/",
            "/V1/chat/completions",
            "/openai/deployments/GPT-4o/chat/completions",
            "/v1/models",
            "/v1/files/my%20file",
            "/v1/a%3Ab",
            "/v1/chat/completions/chatcmpl-1;x",
            "/v1/messages",
            "/v1/messages/",
            "/anthropic/v1/messages",
            "/v1/messages/count_tokens",
            "/v1/messages/batches",
            "/v1/complete",
        ] {
            assert_eq!(post(path), Ok(()), "{path}");
        }
        let get = check(&Method::GET, &HeaderMap::new(), "/v1/chat/completions");
        assert_eq!(get, Ok(()), "listing stored chat completions is not a call");
    }

    #[test]
    fn refuses_paths_not_in_normal_form() {
        let cases = [
            ("*", PathError::NotOriginForm),
            ("v1/models", PathError::NotOriginForm),
            ("/v1/../admin", PathError::DotSegment),
            ("/..", PathError::DotSegment),
            ("/v1/./models", PathError::DotSegment),
            ("/v1/..;x/admin", PathError::DotSegment),
            ("/v1//models", PathError::EmptySegment),
            ("//", PathError::EmptySegment),
            ("/.;x", PathError::DotSegment),
            ("/v1/%2e", PathError::EncodedCharacter('.')),
            ("/v1\\models", PathError::Backslash),
            ("/v1/%zz", PathError::MalformedEscape),
            ("/v1/%4", PathError::MalformedEscape),
            ("/v1/chat/%63ompletions", PathError::EncodedCharacter('c')),
            ("/v1/%2e%2e/admin", PathError::EncodedCharacter('.')),
            ("/v1/chat%2Fcompletions", PathError::EncodedCharacter('/')),
            ("/v1/chat%5ccompletions", PathError::EncodedCharacter('\\')),
            ("/v1/chat/completions%00", PathError::EncodedCharacter('\0')),
            ("/v1/%6Dessages", PathError::EncodedCharacter('m')),
        ];
        for (path, want) in cases {
            assert_eq!(post(path), Err(want), "{path}");
        }
    }

    #[test]
    fn refuses_llm_endpoints_the_classifier_would_miss() {
        for (path, endpoint) in [
            ("/v1/chat/completions;x=1", Endpoint::ChatCompletions),
            ("/v1/chat;x/completions", Endpoint::ChatCompletions),
            ("/v1/chat/%2563ompletions", Endpoint::ChatCompletions),
            ("/v1/chat/completions%3Bx", Endpoint::ChatCompletions),
            ("/v1/responses%2500", Endpoint::Responses),
            ("/v1/messages;x=1", Endpoint::AnthropicMessages),
            ("/v1/messages%3Bbeta", Endpoint::AnthropicMessages),
            ("/v1/%256dessages", Endpoint::AnthropicMessages),
        ] {
            match post(path) {
                Err(PathError::UnrecordedLlmEndpoint { endpoint: got, .. }) => {
                    assert_eq!(got, endpoint, "{path}")
                }
                other => panic!("{path}: {other:?}"),
            }
        }
    }

    #[test]
    fn refuses_lookalikes_of_the_other_families_calls() {
        let unrecorded = |endpoint, suggested: &str| PathError::UnrecordedLlmEndpoint {
            endpoint,
            suggested: suggested.to_owned(),
        };
        for (path, error) in [
            (
                "/v1beta/models/gemini-2.5-flash%3AgenerateContent",
                unrecorded(
                    Endpoint::GeminiGenerateContent,
                    "/v1beta/models/gemini-2.5-flash:generatecontent",
                ),
            ),
            (
                "/v1beta/models/gemini-2.5-flash:streamGenerateContent;x",
                unrecorded(
                    Endpoint::GeminiStreamGenerateContent,
                    "/v1beta/models/gemini-2.5-flash:streamgeneratecontent",
                ),
            ),
            (
                "/v1beta/models%2Fgemini-2.5-flash:generateContent",
                PathError::EncodedCharacter('/'),
            ),
            (
                "/model/amazon.nova-lite-v1:0/Converse",
                unrecorded(
                    Endpoint::BedrockConverse,
                    "/model/amazon.nova-lite-v1:0/converse",
                ),
            ),
            ("/api/chat;x", unrecorded(Endpoint::OllamaChat, "/api/chat")),
            ("/api/%63hat", PathError::EncodedCharacter('c')),
        ] {
            assert_eq!(post(path), Err(error), "{path}");
        }
        // As the clients send them: forwarded (and recorded).
        for path in [
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
            "/v1/projects/p/locations/us-central1/publishers/google/models/gemini-2.5-pro:generateContent",
            "/model/us.amazon.nova-2-lite-v1%3A0/converse-stream",
            "/model/us.amazon.nova-2-lite-v1:0/converse",
            "/api/chat",
        ] {
            assert_eq!(post(path), Ok(()), "{path}");
        }
    }

    #[test]
    fn refuses_methods_that_may_be_taken_for_post() {
        let lowercase = Method::from_bytes(b"post").expect("extension method");
        assert!(check(&lowercase, &HeaderMap::new(), "/v1/chat/completions").is_err());
        for name in METHOD_OVERRIDE_HEADERS {
            let mut headers = HeaderMap::new();
            headers.insert(name, http::HeaderValue::from_static(" post"));
            assert!(
                check(&Method::GET, &headers, "/v1/chat/completions").is_err(),
                "{name}"
            );
            assert_eq!(check(&Method::GET, &headers, "/v1/models"), Ok(()));
        }
    }

    #[test]
    fn bedrock_model_ids_may_hold_an_encoded_slash() {
        let arn = "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aapplication-inference-profile%2Fabc/converse";
        assert_eq!(post(arn), Ok(()));
        assert_eq!(post(&format!("{arn}-stream")), Ok(()));
        assert_eq!(post("/model/a%2fb%2Fc/converse-stream"), Ok(()));
        // Only in a Converse path's model segment, and never hiding a dot or empty segment.
        for (path, want) in [
            ("/model/a%2Fb/invoke", PathError::EncodedCharacter('/')),
            ("/v1/model/a%2Fb", PathError::EncodedCharacter('/')),
            ("/models/a%2Fb/converse", PathError::EncodedCharacter('/')),
            ("/model/a/b%2Fc/converse", PathError::EncodedCharacter('/')),
            ("/model/a%2F..%2Fb/converse", PathError::DotSegment),
            ("/model/a%2F.;x%2Fb/converse", PathError::DotSegment),
            ("/model/a%2F%2Fb/converse", PathError::EmptySegment),
            ("/model/%2Fb/converse", PathError::EmptySegment),
            ("/model/b%2F/converse", PathError::EmptySegment),
        ] {
            assert_eq!(post(path), Err(want), "{path}");
        }
        // A lenient server would route this one to chat completions: still refused.
        assert!(post("/model/x%2F..%2Fv1%2Fchat%2Fcompletions/converse").is_err());
    }

    #[test]
    fn lenient_view_decodes_and_resolves() {
        assert_eq!(lenient_view("/a/%2563/B;x/./c/../d"), "/a/c/b/d");
        assert_eq!(lenient_view("/a%2fb"), "/a/b");
        assert_eq!(lenient_view("/%ff"), "/\u{fffd}");
    }
}
