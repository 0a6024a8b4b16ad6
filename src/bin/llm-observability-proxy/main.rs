//! An observability proxy for any OpenAI-compatible server: put it in front of the API and every
//! call is recorded, without touching the code that makes the calls.
//!
//! ```text
//! cargo run --release --example proxy -- --listen 127.0.0.1:8080 --upstream https://api.example.com --jsonl calls.jsonl
//! ```
//!
//! Every request is forwarded — method, path and query, headers except hop-by-hop ones, body
//! streamed — over a pooled HTTP/1.1 + HTTP/2 (TLS or plain) client, and the response is streamed
//! back unchanged. Each OpenAI-shaped call appends one `LlmCall` JSON line to the JSONL file
//! (within the sink's 200 ms batch interval). On SIGINT or SIGTERM the proxy stops accepting, lets
//! calls in flight finish (up to `--shutdown-timeout`), writes every pending record and exits 0.
//! On startup it prints `listening on ADDR` (the bound address, useful with port 0).

mod forward;

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
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use llm_observability::{JsonlSink, LlmObservabilityLayer};
use tower::util::BoxCloneService;
use tower::ServiceBuilder;

/// Command line of the proxy.
#[derive(Debug, Parser)]
#[command(
    about = "Observability proxy for OpenAI-compatible APIs: forwards every request unchanged and records each LLM call as a JSON line"
)]
struct Args {
    /// Address to listen on (port 0 picks a free port; the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Base URL of the upstream API, http or https (a path prefix is kept: requests to /x go to
    /// UPSTREAM/x).
    #[arg(long)]
    upstream: Uri,
    /// JSONL file that receives one line per LLM call (appended).
    #[arg(long, default_value = "llm-calls.jsonl")]
    jsonl: PathBuf,
    /// Forward only, with the observability layer off (for overhead comparisons).
    #[arg(long)]
    no_observe: bool,
    /// Seconds to wait, on SIGINT/SIGTERM, for calls in flight and for pending records.
    #[arg(long, default_value_t = 10)]
    shutdown_timeout: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("proxy: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), BoxError> {
    let upstream = Upstream::parse(&args.upstream)?;
    let forward = Forward::new(upstream)?;
    let layer = if args.no_observe {
        None
    } else {
        let sink = JsonlSink::create(&args.jsonl)
            .map_err(|e| format!("cannot open {}: {e}", args.jsonl.display()))?;
        Some(LlmObservabilityLayer::builder().sink(sink).build()?)
    };
    let service = proxy_service(forward, layer.clone());
    // Listen for the signals before announcing the address, so a signal sent right after start-up
    // is not lost (a background job of a script starts with SIGINT ignored).
    let mut stop = std::pin::pin!(shutdown_signal()?);

    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("listening on {}", listener.local_addr()?);
    let server = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        eprintln!("proxy: accept failed: {error}");
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let connection = server.serve_connection_with_upgrades(
                    TokioIo::new(stream),
                    TowerToHyperService::new(service.clone()),
                );
                let connection = graceful.watch(connection.into_owned());
                tokio::spawn(async move {
                    let _ = connection.await;
                });
            }
            () = &mut stop => break,
        }
    }
    drop(listener);
    let deadline = Duration::from_secs(args.shutdown_timeout);
    eprintln!("proxy: shutting down; waiting up to {deadline:?} for calls in flight");
    if tokio::time::timeout(deadline, graceful.shutdown())
        .await
        .is_err()
    {
        eprintln!("proxy: calls still in flight after {deadline:?}; closing them");
    }
    if let Some(layer) = layer {
        layer.dispatcher().shutdown(deadline).await?;
        let stats = layer.dispatcher().stats();
        eprintln!(
            "proxy: {} call(s) observed, sinks: {:?}",
            stats.observed, stats.sinks
        );
    }
    Ok(())
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

/// The whole proxy as one tower service: unreachable-upstream mapping outside, the layer (when
/// observing) inside it, so a connection failure is recorded as a transport error and answered
/// with a 502.
fn proxy_service(
    forward: Forward,
    layer: Option<LlmObservabilityLayer>,
) -> BoxCloneService<Request<Incoming>, Response<ProxyBody>, NotReady> {
    match layer {
        Some(layer) => BoxCloneService::new(
            ServiceBuilder::new()
                .map_result(answer_502_on_error)
                .layer(layer)
                .service(forward),
        ),
        None => BoxCloneService::new(
            ServiceBuilder::new()
                .map_result(answer_502_on_error)
                .service(forward),
        ),
    }
}

/// The proxy service's only error: the forwarder was not ready (it always is). Calls never fail:
/// an error from below becomes a 502 answer.
#[derive(Debug, thiserror::Error)]
#[error("forwarder not ready: {0}")]
struct NotReady(#[from] BoxError);

fn answer_502_on_error<B, E>(
    result: Result<Response<B>, E>,
) -> Result<Response<ProxyBody>, NotReady>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    E: std::fmt::Display,
{
    Ok(match result {
        Ok(response) => response.map(|body| body.map_err(Into::into).boxed_unsync()),
        Err(error) => forward::bad_gateway(&error),
    })
}
