//! Credentials out of error messages: an upstream that echoes the API key it was sent (a 401
//! body, a gateway's error text) must not put that key into the record.

use std::borrow::Cow;

use http::{HeaderMap, HeaderValue};
use smallvec::SmallVec;

use crate::json::Json;
use crate::payload::LlmCall;

/// What replaces a credential.
const REDACTED: &str = "[redacted]";

/// Header values shorter than this are not looked for (`true`, `gzip`, a short id).
const MIN_SECRET: usize = 12;

/// Standard headers that carry no credential (and often long values).
const NOT_SECRET: [http::HeaderName; 10] = [
    http::header::HOST,
    http::header::CONTENT_TYPE,
    http::header::CONTENT_LENGTH,
    http::header::USER_AGENT,
    http::header::ACCEPT,
    http::header::ACCEPT_ENCODING,
    http::header::ACCEPT_LANGUAGE,
    http::header::CONNECTION,
    http::header::TRANSFER_ENCODING,
    http::header::TE,
];

/// Parts of header or query parameter names that say the value is a credential.
const SECRET_NAME_PARTS: [&str; 6] = ["auth", "token", "key", "secret", "password", "cookie"];

/// Whether a header or query parameter named `name` carries a credential (`Authorization`,
/// `Proxy-Authorization`, `api-key`, `x-api-key`, `Cookie`, anything with auth, token, key,
/// secret or password in its name): such a value is never recorded.
pub(crate) fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_NAME_PARTS.iter().any(|part| name.contains(part))
}

/// Query parameter values shorter than this are not looked for.
const MIN_QUERY_SECRET: usize = 6;

/// The values of the request's headers that the record must never repeat: every header value
/// the layer does not record (and, of an `Authorization`-style value, its token alone), and
/// the values of query parameters named like credentials (`?api_key=...`, `?token=...`).
#[derive(Debug, Default)]
pub(crate) struct Secrets(SmallVec<[HeaderValue; 4]>);

impl Secrets {
    /// The values of `headers` long enough to be credentials, except those of `recorded`
    /// headers (the application chose to record them), and those of `uri`'s query parameters
    /// whose names say they are credentials.
    pub(crate) fn from_headers<'a>(
        headers: &HeaderMap,
        uri: &http::Uri,
        recorded: impl Iterator<Item = &'a http::HeaderName> + Clone,
    ) -> Self {
        let mut secrets = SmallVec::new();
        for (name, value) in headers {
            if value.len() >= MIN_SECRET
                && !NOT_SECRET.contains(name)
                && !recorded.clone().any(|r| r == name)
            {
                secrets.push(value.clone());
            }
            // A cookie's value is echoed without its name: each one is a secret of its own.
            if name == http::header::COOKIE {
                let cookies = value.to_str().unwrap_or_default().split(';');
                for (_, cookie) in cookies.filter_map(|c| c.split_once('=')) {
                    if cookie.trim().len() >= MIN_QUERY_SECRET {
                        if let Ok(cookie) = HeaderValue::from_str(cookie.trim()) {
                            secrets.push(cookie);
                        }
                    }
                }
            }
        }
        for pair in uri.query().into_iter().flat_map(|q| q.split('&')) {
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            if value.len() >= MIN_QUERY_SECRET && is_secret_name(name) {
                if let Ok(value) = HeaderValue::from_str(value) {
                    secrets.push(value);
                }
            }
        }
        Secrets(secrets)
    }

    /// Removes credentials a failed call's error message or error body may echo (an
    /// upstream's 401 that quotes the key it was sent).
    pub(crate) fn scrub_call(&self, call: &mut LlmCall) {
        if let Some(message) = call.error.as_mut().and_then(|e| e.message.as_mut()) {
            if let Cow::Owned(scrubbed) = self.scrub(message) {
                *message = scrubbed;
            }
        }
        let Some(response) = &call.response else {
            return;
        };
        if let Cow::Owned(scrubbed) = self.scrub(response.text()) {
            // Still JSON unless a secret straddled an escape; then the body is not kept.
            call.response = serde_json::from_str::<&serde_json::value::RawValue>(&scrubbed)
                .ok()
                .map(Json::from_raw);
        }
    }

    /// `text` with every known secret, every `Bearer`/`Basic` credential and every
    /// `sk-`-shaped key replaced by `[redacted]`.
    pub(crate) fn scrub<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let mut text = Cow::Borrowed(text);
        for value in &self.0 {
            let Ok(value) = value.to_str() else { continue };
            // A whole value was long enough when it was taken; its token part must be too.
            for secret in [value, token_of(value)] {
                if (secret.len() == value.len() || secret.len() >= MIN_SECRET)
                    && text.contains(secret)
                {
                    text = Cow::Owned(text.replace(secret, REDACTED));
                }
            }
        }
        match scrub_patterns(&text) {
            Cow::Borrowed(_) => text,
            Cow::Owned(scrubbed) => Cow::Owned(scrubbed),
        }
    }
}

/// The credential of an `Authorization`-style value (`Bearer X` gives `X`), or the value.
fn token_of(value: &str) -> &str {
    match value.split_once(' ') {
        Some((_scheme, token)) => token.trim(),
        None => value,
    }
}

/// Which bytes a credential is made of.
type PartOf = fn(u8) -> bool;

/// Bytes of an `sk-` key.
fn is_key_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_')
}

/// Bytes of a `Bearer` or `Basic` credential (base64, base64url, JWT).
fn is_token_byte(byte: u8) -> bool {
    is_key_byte(byte) || matches!(byte, b'.' | b'~' | b'+' | b'/' | b'=')
}

/// Replaces `sk-...` keys (OpenAI, Anthropic, OpenRouter shapes) and the credential after
/// `Bearer ` or `Basic ` (any case).
fn scrub_patterns(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut at = 0;
    while at < bytes.len() {
        let Some((start, part_of)) = credential_start(bytes, at) else {
            at += 1;
            continue;
        };
        let mut end = start + bytes[start..].iter().take_while(|b| part_of(**b)).count();
        // A sentence's full stop is not part of the credential.
        while end > start && bytes[end - 1] == b'.' {
            end -= 1;
        }
        if end - start < 8 {
            at = start;
            continue;
        }
        let out = out.get_or_insert_with(|| String::with_capacity(text.len()));
        out.push_str(&text[copied..start]);
        out.push_str(REDACTED);
        copied = end;
        at = end;
    }
    match out {
        Some(mut out) => {
            out.push_str(&text[copied..]);
            Cow::Owned(out)
        }
        None => Cow::Borrowed(text),
    }
}

/// Whether a credential prefix starts at `at` (not inside a longer word): the index just past
/// the prefix, and which bytes the credential is made of.
fn credential_start(bytes: &[u8], at: usize) -> Option<(usize, PartOf)> {
    if at > 0 && is_token_byte(bytes[at - 1]) {
        return None;
    }
    let rest = &bytes[at..];
    let prefixes: [(&[u8], PartOf); 3] = [
        (b"sk-", is_key_byte),
        (b"bearer ", is_token_byte),
        (b"basic ", is_token_byte),
    ];
    for (prefix, part_of) in prefixes {
        if rest.len() >= prefix.len() && rest[..prefix.len()].eq_ignore_ascii_case(prefix) {
            return Some((at + prefix.len(), part_of));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn echoed_header_values_and_key_shapes_are_redacted() {
        let sent = headers(&[
            ("authorization", "Bearer gw-0123456789abcdef"),
            ("x-custom-key", "custom-secret-value-42"),
            ("x-user-id", "user-recorded-on-purpose"),
            ("accept", "*/*"),
        ]);
        let recorded = [http::HeaderName::from_static("x-user-id")];
        let uri: http::Uri = "/v1/chat/completions?api-version=2024-06-01&api_key=qk-98765"
            .parse()
            .unwrap();
        let secrets = Secrets::from_headers(&sent, &uri, recorded.iter());
        let message = "Incorrect API key provided: gw-0123456789abcdef (also custom-secret-value-42, \
                       sk-proj-AbCdEf0123456789 and BEARER eyJhbGc.eyJzdWIi.SflKxw); user user-recorded-on-purpose; */*. \
                       Key: sk-fake-key. URL ?api-version=2024-06-01&api_key=qk-98765";
        assert_eq!(
            secrets.scrub(message),
            "Incorrect API key provided: [redacted] (also [redacted], \
             sk-[redacted] and BEARER [redacted]); user user-recorded-on-purpose; */*. \
             Key: sk-[redacted]. URL ?api-version=2024-06-01&api_key=[redacted]"
        );
        assert!(is_secret_name("Proxy-Authorization"));
        assert!(is_secret_name("x-api-key"));
        assert!(is_secret_name("Cookie"));
        assert!(is_secret_name("X-Refresh-Token"));
        assert!(!is_secret_name("x-user-id"));
    }

    #[test]
    fn ordinary_text_is_not_touched_or_copied() {
        let secrets = Secrets::default();
        for text in [
            "Rate limit reached for gpt-4o-mini",
            "task-manager and risk-free basic mode",
            "sk-short",
        ] {
            assert!(matches!(secrets.scrub(text), Cow::Borrowed(t) if t == text));
        }
    }
}
