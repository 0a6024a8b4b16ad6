//! `llm-observability-proxy`: an observability proxy for any OpenAI-compatible server and for
//! Anthropic's Messages API. Put it in front of the API and every call is recorded, without
//! touching the code that makes the calls.
//!
//! ```text
//! cargo install llm-observability --features proxy     # or, from a checkout: cargo install --path . --features proxy
//! llm-observability-proxy --listen 127.0.0.1:8080 --upstream https://api.openai.com --jsonl calls.jsonl
//! llm-observability-proxy --listen 127.0.0.1:8081 --upstream https://api.anthropic.com --jsonl calls.jsonl
//! ```
//!
//! Every request that is not refused is forwarded — method, path and query, headers except
//! hop-by-hop ones, body streamed — over a pooled HTTP/1.1 + HTTP/2 (TLS or plain) client, and the
//! response is streamed back unchanged. Each LLM call (OpenAI-shaped, or Anthropic
//! `POST .../v1/messages`) appends one `LlmCall` JSON line
//! to the JSONL file (within the sink's 200 ms batch interval). On SIGINT or SIGTERM the proxy
//! stops accepting, lets calls in flight finish (up to `--shutdown-timeout`), writes every pending
//! record and exits 0.
//! Calls still open when the deadline passes are cut off and recorded as `cancelled` before the
//! records are written; the proxy then logs how many calls it observed and what became of them.
//!
//! It defends itself against slow or hostile clients (see the flags in `--help`): a header-read
//! timeout that also covers the HTTP/1-or-2 detection, an idle (keep-alive) timeout, a
//! request-body timeout with a minimum rate, a limit on concurrent connections, a backoff when
//! `accept` fails; and it refuses `CONNECT` and paths not in normal form or that would reach an
//! LLM endpoint unrecorded (`path.rs`). A response still in flight is never timed out.
//!
//! On startup it prints `listening on ADDR` on stdout (the bound address, useful with port 0);
//! diagnostics — the library's warnings about sinks and dropped records among them — go to stderr
//! through a `tracing_subscriber::fmt` subscriber filtered by `RUST_LOG`.
//! `llm-observability-proxy --help` explains each flag.
//!
//! The code, one concern per file: `server.rs` (accept loop, shutdown of connections),
//! `accept.rs` (connection limit, backoff), `connection.rs` (header-read and idle watchdog),
//! `tasks.rs` (tasks awaited and aborted on shutdown), `guard.rs` with `path.rs` (what is
//! refused), `body_timeout.rs`, `answer.rs` (the proxy's own error answers) and `forward.rs`.

mod accept;
mod answer;
mod body_timeout;
mod connection;
mod cost_flags;
mod forward;
mod guard;
mod metrics_flags;
mod otlp_flags;
mod path;
mod presets_flags;
mod server;
mod storage_flags;
mod streamusage_flags;
mod tasks;
mod weave_flags;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use forward::{BoxError, Forward, ProxyBody, Upstream};
use http::{Request, Response, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use llm_observability::{DispatcherStats, JsonlSink, LlmObservabilityLayer};
use tower::util::BoxCloneService;
use tower::ServiceBuilder;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::accept::Acceptor;
use crate::body_timeout::{BodyLimits, TimedBody};
use crate::connection::ConnectionLimits;
use crate::guard::Guard;

/// The log filter when `RUST_LOG` is unset or empty: the library's and the proxy's own events
/// from `info` up, everything else from `warn` up.
const DEFAULT_LOG_FILTER: &str = "warn,llm_observability=info,llm_observability_proxy=info";

/// The `--help` text above the options (`-h` shows `about` only).
const LONG_ABOUT: &str = "\
Observability proxy for OpenAI-compatible APIs and Anthropic's Messages API:
forwards every request unchanged and records each LLM call as one JSON line.

Point your client's base URL at --listen (for example http://127.0.0.1:8080/v1
instead of https://api.openai.com/v1, or http://127.0.0.1:8080 instead of
https://api.anthropic.com). Every request not refused (see below) is
forwarded to --upstream: method, path and query, headers except hop-by-hop
ones, the body streamed. The
response, streams (SSE) included, comes back unchanged. The client's
Authorization and x-api-key headers are passed on and never recorded.

What gets recorded: each POST whose path ends in /chat/completions,
/completions, /embeddings or /responses (OpenAI and compatible servers, Azure
OpenAI) or in /v1/messages (Anthropic Messages; not /v1/messages/count_tokens)
appends one LlmCall JSON line to
--jsonl, within about 200 ms of the call's end: the request, the response (a
stream assembled into one), token usage, timings (time to first token
included), the status (success, error or cancelled) and any error. Other
requests are forwarded without a record. An unreachable upstream is answered
with 502 and an OpenAI-style JSON error (code upstream_unreachable), and
recorded as an error of type transport.

What is refused, never forwarded (OpenAI-style JSON error, no record):
CONNECT (405, code method_not_allowed); paths not in normal form (400, code
invalid_path): '.' or '..' segments, '//', a backslash, a malformed
percent-escape, or one that encodes a letter, digit, '-', '.', '_', '~', '/',
'\\' or a control character; and any request a lenient server could route to
an LLM endpoint that would not be recorded: a POST (or 'post', or any request
with X-HTTP-Method-Override: POST) whose path, once percent-decoded, lowercased and
stripped of ';parameters', ends in one of the paths above while the path as sent
does not (e.g. /v1/chat/completions;x=1, /v1/chat/%2563ompletions).

Limits against slow or hostile clients (see the flags below): a connection
must complete its first request head within --header-read-timeout (the wait
while the proxy tells HTTP/1 from HTTP/2 included), and each later HTTP/1 head
within the same time of its first byte; a connection with no request in flight
is closed after --idle-timeout; a request body that keeps the upstream waiting
(see --request-body-timeout) is answered 408 (code request_body_timeout, recorded
as a transport error for an LLM call); at most --max-connections are served at
once, and further connections wait in the listen backlog until one closes. A
response in flight is never timed out, however long it streams. When accept()
fails (e.g. out of file descriptors) the proxy retries after 10 ms, doubling up
to 1 s, and logs at most one line every 5 s.

On startup the proxy prints `listening on ADDR` on stdout, ADDR being the bound
address (useful with port 0). Diagnostics go to stderr, filtered by RUST_LOG
(default: info for llm_observability, warn for everything else); among them are
the warnings about records a sink failed to write or had to drop.

Shutdown: on SIGINT (Ctrl-C) or SIGTERM the proxy stops accepting connections,
lets the calls in flight finish (for up to --shutdown-timeout seconds), then
cuts off those still open (each is recorded as cancelled, with its partial
output), writes every pending record, logs how many calls it observed and, per
sink, how many were delivered, dropped, failed or filtered out, then the cost
per model (see --pricing), and exits 0.
It exits 1 when it cannot start (--upstream not http(s)://HOST..., --jsonl not
writable, address in use) or could not write every record in time, and 2 on a
malformed command line.";

/// Command line of the proxy.
#[derive(Debug, Parser)]
#[command(
    name = "llm-observability-proxy",
    version,
    about = "Observability proxy for OpenAI-compatible APIs and Anthropic Messages: forwards every request unchanged and records each LLM call as one JSON line",
    long_about = LONG_ABOUT
)]
struct Args {
    /// Address to listen on, IP:PORT.
    ///
    /// Port 0 picks a free port. The bound address is printed on stdout as `listening on ADDR`.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Base URL of the upstream API (OpenAI-compatible or Anthropic), http or https.
    ///
    /// A path prefix is kept: with --upstream https://host/prefix, a request to /v1/x goes to
    /// https://host/prefix/v1/x. TLS uses the bundled webpki roots. Its host is recorded as
    /// every call's server_address.
    #[arg(long, value_name = "URL")]
    upstream: Uri,
    /// File that receives one LlmCall JSON line per LLM call.
    ///
    /// Created if missing, appended to otherwise. Each line reaches the file within about 200 ms
    /// of the call's end, and every pending line is written before the proxy exits. Not opened
    /// with --no-observe.
    #[arg(long, value_name = "PATH", default_value = "llm-calls.jsonl")]
    jsonl: PathBuf,
    /// Forward only: no recording, no JSONL file.
    ///
    /// The same proxy with the observability layer left out, to measure the layer's overhead
    /// against a bare forwarder.
    #[arg(long)]
    no_observe: bool,
    #[command(flatten)]
    storage: storage_flags::StorageFlags,
    /// Seconds to wait on SIGINT/SIGTERM, for calls in flight and then for pending records.
    ///
    /// Calls still open when it runs out are cut off and recorded as cancelled. Writing the
    /// pending records then gets up to the same time again.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    shutdown_timeout: u64,
    /// Seconds a connection has to complete a request head.
    ///
    /// Counted from accept for the first request (the HTTP/1-or-2 detection included), and
    /// from its first byte for each later HTTP/1 request head. The connection is closed when
    /// the time runs out.
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    header_read_timeout: u64,
    /// Seconds a connection may stay open with no request in flight (keep-alive).
    ///
    /// Counted from the end of its last response. Responses are never cut, however long they
    /// stream.
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    idle_timeout: u64,
    /// Seconds a request body may keep the upstream waiting for its next bytes.
    ///
    /// A body that sends nothing for this long, or that falls under --request-body-min-rate,
    /// fails: the upstream request is aborted and the client answered 408. Only waiting on the
    /// client counts, never the upstream's own pace.
    #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    request_body_timeout: u64,
    /// Bytes per second a request body must average once it has made the upstream wait
    /// --request-body-timeout seconds in all (0: no minimum).
    ///
    /// Each byte sent earns 1/RATE s more of waiting: a trickle such as one byte every five
    /// seconds fails, a large body on a slow link does not.
    #[arg(long, value_name = "BYTES", default_value_t = 500)]
    request_body_min_rate: u64,
    /// Connections served at once; further ones wait in the listen backlog until one closes.
    ///
    /// Each connection uses one file descriptor, plus one per upstream connection: keep this
    /// well under the open-file limit (ulimit -n).
    #[arg(long, value_name = "N", default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: u64,
    #[command(flatten)]
    weave: weave_flags::WeaveFlags,
    #[command(flatten)]
    metrics: metrics_flags::MetricsFlags,
    #[command(flatten)]
    cost: cost_flags::CostFlags,
    #[command(flatten)]
    otlp: otlp_flags::OtlpFlags,
    #[command(flatten)]
    stream_usage: streamusage_flags::StreamUsageFlags,
    #[command(flatten)]
    presets: presets_flags::PresetFlags,
}

impl Args {
    fn connection_limits(&self) -> ConnectionLimits {
        ConnectionLimits {
            header_read: Duration::from_secs(self.header_read_timeout),
            idle: Duration::from_secs(self.idle_timeout),
        }
    }

    fn body_limits(&self) -> BodyLimits {
        BodyLimits {
            stall: Duration::from_secs(self.request_body_timeout),
            min_rate: self.request_body_min_rate,
        }
    }
}

/// Makes ring the process's rustls crypto provider. The upstream client names ring itself, but
/// some exporters' HTTP clients ask rustls for the process default, and with the storage sinks
/// both ring and aws-lc-rs (which reqwest and object_store bring) are compiled in, so rustls
/// cannot pick one by itself (issue 25: one TLS stack, nothing installed process-wide).
fn install_crypto_provider() {
    // An error means a provider is installed already, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[tokio::main]
async fn main() -> ExitCode {
    install_crypto_provider();
    let args = Args::parse();
    init_logging();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Not through tracing: a RUST_LOG that hides it must not make a failed start silent.
            eprintln!("llm-observability-proxy: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Diagnostics to stderr (stdout carries only the `listening on` line), filtered by `RUST_LOG`
/// or else [`DEFAULT_LOG_FILTER`]. Events only: the callsites of spans, the per-call `gen_ai`
/// span among them, are never enabled, so a call costs what it cost with no subscriber at all.
fn init_logging() {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => {
            EnvFilter::builder().parse_lossy(directives)
        }
        _ => EnvFilter::new(DEFAULT_LOG_FILTER),
    };
    // Colours on a terminal only, and never with NO_COLOR set (https://no-color.org).
    let ansi = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
    let events_only = tracing_subscriber::filter::filter_fn(|metadata| metadata.is_event());
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(ansi)
                .with_filter(filter)
                .with_filter(events_only),
        )
        .init();
}

async fn run(args: Args) -> Result<(), BoxError> {
    let upstream = Upstream::parse(&args.upstream)?;
    let forward = Forward::new(upstream)?;
    let mut totals = None;
    let layer = if args.no_observe {
        None
    } else {
        let (builder, cost) = args.cost.apply(LlmObservabilityLayer::builder())?;
        totals = Some(cost);
        let sink = JsonlSink::create(&args.jsonl)
            .map_err(|e| format!("cannot open {}: {e}", args.jsonl.display()))?;
        let builder = args.weave.add_sink(builder.sink(sink))?;
        let builder = args.presets.add_sinks(args.otlp.apply(builder)?)?;
        let builder = args.stream_usage.apply(builder);
        let mut builder = storage_flags::add_sinks(&args.storage, builder).await?;
        // The upstream, not whatever Host header a client sent.
        if let Some(host) = args.upstream.host() {
            // server.address is the host alone: an IPv6 address without its brackets.
            builder = builder.server_address(host.trim_start_matches('[').trim_end_matches(']'));
        }
        let (builder, metrics) = args.metrics.apply(builder)?;
        let layer = builder.build()?;
        metrics_flags::serve(metrics, &layer).await?;
        Some(layer)
    };
    let service = proxy_service(forward, layer.clone(), args.body_limits());
    // Listen for the signals before announcing the address, so a signal sent right after start-up
    // is not lost (a background job of a script starts with SIGINT ignored).
    let stop = shutdown_signal()?;

    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("listening on {}", listener.local_addr()?);
    let max_connections = usize::try_from(args.max_connections).unwrap_or(usize::MAX);
    let acceptor = Acceptor::new(listener, max_connections);
    let tasks = server::serve_until(acceptor, service, args.connection_limits(), stop).await;
    let deadline = Duration::from_secs(args.shutdown_timeout);
    server::drain(&tasks, deadline).await;
    let Some(layer) = layer else {
        tracing::info!("shut down");
        return Ok(());
    };
    let drained = layer.dispatcher().shutdown(deadline).await;
    report(&layer.dispatcher().stats());
    totals.iter().for_each(cost_flags::CostTotals::report);
    Ok(drained?)
}

/// Logs the final accounting: calls observed, and what each sink did with them.
fn report(stats: &DispatcherStats) {
    for sink in &stats.sinks {
        tracing::info!(
            "sink {}: {} delivered, {} dropped, {} failed, {} filtered out",
            sink.name,
            sink.delivered,
            sink.dropped,
            sink.failed,
            sink.filtered,
        );
        if sink.accounted() != stats.observed {
            tracing::warn!(
                "sink {} accounted for {} of {} calls: it did not finish within the deadline",
                sink.name,
                sink.accounted(),
                stats.observed,
            );
        }
    }
    tracing::info!("shut down: {} call(s) observed", stats.observed);
}

/// Resolves on SIGINT or SIGTERM (Ctrl-C elsewhere). The handlers are installed when this is
/// called, not when the future is first polled.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

/// The service of each request: the guard outside (refusals, body timeout, and the answer to a
/// call that failed: 502, or 408 for a body the client sent too slowly, in the shape of the API
/// called), then the layer (when observing), so a failed call is recorded as a transport error.
fn proxy_service(
    forward: Forward,
    layer: Option<LlmObservabilityLayer>,
    body_limits: BodyLimits,
) -> ProxyService {
    let inner: BoxCloneService<Request<TimedBody<Incoming>>, Response<ProxyBody>, BoxError> =
        match layer {
            Some(layer) => BoxCloneService::new(
                ServiceBuilder::new()
                    .map_response(box_body)
                    .layer(layer)
                    .service(forward),
            ),
            None => BoxCloneService::new(
                ServiceBuilder::new()
                    .map_response(box_body)
                    .service(forward),
            ),
        };
    BoxCloneService::new(Guard::new(inner, body_limits))
}

/// The service every connection shares.
type ProxyService = BoxCloneService<Request<Incoming>, Response<ProxyBody>, NotReady>;

/// The proxy service's only error: the forwarder was not ready (it always is). Calls never fail:
/// an error from below becomes a 502 (or 408) answer.
#[derive(Debug, thiserror::Error)]
#[error("forwarder not ready: {0}")]
pub struct NotReady(#[from] BoxError);

fn box_body<B>(response: Response<B>) -> Response<ProxyBody>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    response.map(|body| body.map_err(Into::into).boxed_unsync())
}
