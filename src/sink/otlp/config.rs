//! Where an [`OtlpSink`](super::OtlpSink)'s settings come from: the builder, else the standard
//! `OTEL_EXPORTER_OTLP_*` environment variables, else the OTLP defaults.

use std::time::Duration;

use http::{HeaderName, HeaderValue};

use super::{OtlpError, OtlpSinkBuilder};

/// The OTLP/HTTP traces endpoint used when neither the builder nor the environment names one.
pub const DEFAULT_ENDPOINT: &str = "http://localhost:4318/v1/traces";

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The resolved settings of a sink.
#[derive(Debug)]
pub(super) struct Settings {
    pub(super) endpoint: String,
    pub(super) headers: Vec<(HeaderName, HeaderValue)>,
    pub(super) gzip: bool,
    pub(super) timeout: Duration,
}

/// `key=value,key2=value2` with percent-encoded values (the `OTEL_*_HEADERS` and
/// `OTEL_RESOURCE_ATTRIBUTES` format); malformed entries are skipped.
pub(super) fn parse_pairs(text: &str) -> Vec<(String, String)> {
    text.split(',')
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            let key = key.trim();
            (!key.is_empty()).then(|| (key.to_owned(), percent_decode(value.trim())))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(byte) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn first(
    env: &dyn Fn(&str) -> Option<String>,
    names: [&'static str; 2],
) -> Option<(&'static str, String)> {
    names
        .into_iter()
        .find_map(|name| env(name).map(|value| (name, value)))
}

fn check_endpoint(endpoint: &str) -> Result<(), OtlpError> {
    let invalid = |reason: &str| OtlpError::InvalidEndpoint {
        endpoint: endpoint.to_owned(),
        reason: reason.to_owned(),
    };
    let uri: http::Uri = endpoint
        .parse()
        .map_err(|e: http::uri::InvalidUri| invalid(&e.to_string()))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err(invalid("expected an http:// or https:// URL")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid("no host"));
    }
    Ok(())
}

pub(super) fn resolve(
    builder: &OtlpSinkBuilder,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings, OtlpError> {
    let endpoint = match &builder.endpoint {
        Some(endpoint) => endpoint.trim().to_owned(),
        None => match env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            Some(endpoint) => endpoint.trim().to_owned(),
            None => match env("OTEL_EXPORTER_OTLP_ENDPOINT") {
                Some(base) => format!("{}/v1/traces", base.trim().trim_end_matches('/')),
                None => DEFAULT_ENDPOINT.to_owned(),
            },
        },
    };
    check_endpoint(&endpoint)?;

    let mut pairs = Vec::new();
    if let Some((_, text)) = first(
        env,
        [
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
            "OTEL_EXPORTER_OTLP_HEADERS",
        ],
    ) {
        pairs.extend(parse_pairs(&text));
    }
    pairs.extend(builder.headers.iter().cloned());
    let mut headers: Vec<(HeaderName, HeaderValue)> = Vec::with_capacity(pairs.len());
    for (name, value) in pairs {
        let invalid = || OtlpError::InvalidHeader { name: name.clone() };
        let header = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| invalid())?;
        let mut value = HeaderValue::from_str(value.trim()).map_err(|_| invalid())?;
        value.set_sensitive(true);
        // A later setting (the builder's) replaces an earlier one (the environment's).
        headers.retain(|(existing, _)| *existing != header);
        headers.push((header, value));
    }

    let gzip = match builder.gzip {
        Some(gzip) => gzip,
        None => match first(
            env,
            [
                "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
                "OTEL_EXPORTER_OTLP_COMPRESSION",
            ],
        ) {
            Some((_, value)) if value.trim().eq_ignore_ascii_case("gzip") => true,
            Some((_, value)) if value.trim().eq_ignore_ascii_case("none") => false,
            Some((variable, value)) => {
                return Err(OtlpError::InvalidEnvironment { variable, value })
            }
            None => false,
        },
    };

    let timeout = match builder.timeout {
        Some(timeout) => timeout,
        None => match first(
            env,
            [
                "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
                "OTEL_EXPORTER_OTLP_TIMEOUT",
            ],
        ) {
            Some((variable, value)) => match value.trim().parse::<u64>() {
                Ok(ms) => Duration::from_millis(ms),
                Err(_) => return Err(OtlpError::InvalidEnvironment { variable, value }),
            },
            None => DEFAULT_TIMEOUT,
        },
    };

    Ok(Settings {
        endpoint,
        headers,
        gzip,
        timeout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::otlp::OtlpSink;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| vars.get(name).cloned()
    }

    #[test]
    fn defaults_and_environment() {
        let none = env(&[]);
        let settings = resolve(&OtlpSink::builder(), &none).unwrap();
        assert_eq!(settings.endpoint, DEFAULT_ENDPOINT);
        assert!(!settings.gzip);
        assert_eq!(settings.timeout, DEFAULT_TIMEOUT);
        assert!(settings.headers.is_empty());

        let vars = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4318/"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "authorization=Basic%20abc, x-team = ml ",
            ),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
        ]);
        let settings = resolve(&OtlpSink::builder().header("x-team", "search"), &vars).unwrap();
        assert_eq!(settings.endpoint, "https://collector:4318/v1/traces");
        assert!(settings.gzip);
        assert_eq!(settings.timeout, Duration::from_millis(2500));
        let headers: Vec<(String, String)> = settings
            .headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        assert_eq!(
            headers,
            [
                ("authorization".to_owned(), "Basic abc".to_owned()),
                ("x-team".to_owned(), "search".to_owned())
            ]
        );

        let traces = env(&[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://a:1/custom"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://b:2"),
        ]);
        assert_eq!(
            resolve(&OtlpSink::builder(), &traces).unwrap().endpoint,
            "http://a:1/custom"
        );
        // The builder wins over the environment.
        let settings = resolve(
            &OtlpSink::builder()
                .endpoint("http://c:3/v1/traces")
                .gzip(false)
                .timeout(Duration::from_secs(1)),
            &vars,
        )
        .unwrap();
        assert_eq!(settings.endpoint, "http://c:3/v1/traces");
        assert!(!settings.gzip);
        assert_eq!(settings.timeout, Duration::from_secs(1));
    }

    #[test]
    fn refuses_bad_settings() {
        let none = env(&[]);
        for bad in [
            "localhost:4318",
            "ftp://x/v1/traces",
            "http://",
            "not a url",
        ] {
            assert!(
                matches!(
                    resolve(&OtlpSink::builder().endpoint(bad), &none),
                    Err(OtlpError::InvalidEndpoint { .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            resolve(&OtlpSink::builder().header("bad name", "x"), &none),
            Err(OtlpError::InvalidHeader { .. })
        ));
        assert!(matches!(
            resolve(
                &OtlpSink::builder(),
                &env(&[("OTEL_EXPORTER_OTLP_TIMEOUT", "soon")])
            ),
            Err(OtlpError::InvalidEnvironment { .. })
        ));
        assert!(matches!(
            resolve(
                &OtlpSink::builder(),
                &env(&[("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd")])
            ),
            Err(OtlpError::InvalidEnvironment { .. })
        ));
    }

    #[test]
    fn pairs() {
        assert_eq!(
            parse_pairs("a=1,broken,b=x%2Cy,c=%zz"),
            [
                ("a".to_owned(), "1".to_owned()),
                ("b".to_owned(), "x,y".to_owned()),
                ("c".to_owned(), "%zz".to_owned())
            ]
        );
    }
}
