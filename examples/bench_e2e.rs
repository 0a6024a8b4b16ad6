//! End-to-end load tooling for `scripts/bench-e2e.sh` (127.0.0.1 only, bounded runs).
//!
//! ```text
//! cargo run --release --example bench_e2e -- upstream --listen 127.0.0.1:9000 --events 100
//! cargo run --release --example bench_e2e -- load --url http://127.0.0.1:9000/v1/chat/completions \
//!     --concurrency 32 --seconds 10 [--stream] [--label name]
//! ```
//!
//! `upstream` answers `POST .../chat/completions` at once: a `chat.completion` JSON, or with
//! `"stream": true` an SSE stream of `--events` content chunks (one frame each), a usage chunk and
//! `[DONE]`. `load` keeps `--concurrency` requests in flight for `--seconds`, reads every body to
//! its end, and prints one JSON line: requests/s, latency p50/p90/p99 and time to first body byte.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, Subcommand};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// An instant OpenAI-compatible upstream.
    Upstream {
        #[arg(long, default_value = "127.0.0.1:9000")]
        listen: SocketAddr,
        /// Content chunks in a streamed answer.
        #[arg(long, default_value_t = 100)]
        events: usize,
    },
    /// A fixed-concurrency load run against one URL.
    Load {
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Ask for a streamed answer.
        #[arg(long)]
        stream: bool,
        /// Name of this row in the output.
        #[arg(long, default_value = "run")]
        label: String,
        /// Model name to send.
        #[arg(long, default_value = "gpt-4o-mini")]
        model: String,
    },
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match args.command {
            Command::Upstream { listen, events } => upstream(listen, events).await,
            Command::Load {
                url,
                concurrency,
                seconds,
                stream,
                label,
                model,
            } => {
                load(
                    &url,
                    concurrency,
                    Duration::from_secs(seconds),
                    stream,
                    &label,
                    &model,
                )
                .await
            }
        }
    })
}

/// The precomputed answers.
struct Answers {
    json: Bytes,
    events: Vec<Bytes>,
}

fn answers(events: usize) -> Answers {
    let chunk = |delta: serde_json::Value, finish: serde_json::Value| {
        let chunk = json!({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1_760_000_000,
            "model": "gpt-4o-mini-2024-07-18", "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
        Bytes::from(format!("data: {chunk}\n\n"))
    };
    let mut stream = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        json!(null),
    )];
    stream
        .extend((0..events).map(|i| chunk(json!({"content": format!("token{i} ")}), json!(null))));
    stream.push(chunk(json!({}), json!("stop")));
    let usage =
        json!({"prompt_tokens": 12, "completion_tokens": events, "total_tokens": 12 + events});
    stream.push(Bytes::from(format!(
        "data: {}\n\n",
        json!({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "model": "gpt-4o-mini-2024-07-18", "choices": [], "usage": usage})
    )));
    stream.push(Bytes::from_static(b"data: [DONE]\n\n"));
    let text: String = (0..events).map(|i| format!("token{i} ")).collect();
    let json = json!({"id": "chatcmpl-bench", "object": "chat.completion", "created": 1_760_000_000, "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}], "usage": usage});
    Answers {
        json: Bytes::from(json.to_string()),
        events: stream,
    }
}

type AnswerBody = http_body_util::Either<
    Full<Bytes>,
    StreamBody<futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>,
>;

async fn upstream(listen: SocketAddr, events: usize) -> Result<(), BoxError> {
    let answers = Arc::new(answers(events));
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (socket, _) = listener.accept().await?;
        let _ = socket.set_nodelay(true);
        let answers = answers.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(
                move |request: hyper::Request<hyper::body::Incoming>| {
                    let answers = answers.clone();
                    async move {
                        let body = request
                            .into_body()
                            .collect()
                            .await
                            .map(|c| c.to_bytes())
                            .unwrap_or_default();
                        let stream = memchr::memmem::find(&body, b"\"stream\":true").is_some()
                            || memchr::memmem::find(&body, b"\"stream\": true").is_some();
                        let response = if stream {
                            let frames: Vec<_> = answers
                                .events
                                .iter()
                                .cloned()
                                .map(|b| Ok(Frame::data(b)))
                                .collect();
                            hyper::Response::builder()
                                .header("content-type", "text/event-stream")
                                .body(http_body_util::Either::Right(StreamBody::new(
                                    futures_util::stream::iter(frames),
                                )))
                        } else {
                            hyper::Response::builder()
                                .header("content-type", "application/json")
                                .body(http_body_util::Either::Left(Full::new(
                                    answers.json.clone(),
                                )))
                        };
                        response as Result<hyper::Response<AnswerBody>, http::Error>
                    }
                },
            );
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(socket), service)
                .await;
        });
    }
}

async fn load(
    url: &str,
    concurrency: usize,
    duration: Duration,
    stream: bool,
    label: &str,
    model: &str,
) -> Result<(), BoxError> {
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(concurrency)
        .build(connector);
    let body = Bytes::from(
        json!({"model": model, "stream": stream, "stream_options": {"include_usage": stream},
            "messages": [{"role": "user", "content": "benchmark me"}]})
        .to_string(),
    );
    let uri: http::Uri = url.parse()?;
    let started = Instant::now();
    let deadline = started + duration;
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let client = client.clone();
            let body = body.clone();
            let uri = uri.clone();
            tokio::spawn(async move {
                let mut samples = Vec::new();
                let mut errors = 0u64;
                while Instant::now() < deadline {
                    let request = http::Request::post(uri.clone())
                        .header("content-type", "application/json")
                        .header("authorization", "Bearer sk-bench")
                        .body(Full::new(body.clone()))
                        .expect("request");
                    let sent = Instant::now();
                    let Ok(response) = client.request(request).await else {
                        errors += 1;
                        continue;
                    };
                    let ok = response.status().is_success();
                    let mut body = response.into_body();
                    let mut first_byte = None;
                    let mut failed = !ok;
                    while let Some(frame) = body.frame().await {
                        match frame {
                            Ok(frame) if frame.is_data() => {
                                first_byte.get_or_insert_with(|| sent.elapsed());
                            }
                            Ok(_) => {}
                            Err(_) => failed = true,
                        }
                    }
                    if failed {
                        errors += 1;
                        continue;
                    }
                    samples.push((sent.elapsed(), first_byte.unwrap_or_default()));
                }
                (samples, errors)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut ttfb = Vec::new();
    let mut errors = 0;
    for worker in workers {
        let (samples, failed) = worker.await?;
        errors += failed;
        for (latency, first) in samples {
            latencies.push(latency.as_secs_f64() * 1e3);
            ttfb.push(first.as_secs_f64() * 1e3);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    ttfb.sort_by(f64::total_cmp);
    let pct = |v: &[f64], p: f64| {
        if v.is_empty() {
            f64::NAN
        } else {
            v[((v.len() - 1) as f64 * p).round() as usize]
        }
    };
    println!(
        "{}",
        json!({
            "label": label, "stream": stream, "concurrency": concurrency, "requests": latencies.len(), "errors": errors,
            "rps": (latencies.len() as f64 / elapsed * 10.0).round() / 10.0,
            "p50_ms": (pct(&latencies, 0.5) * 1000.0).round() / 1000.0,
            "p90_ms": (pct(&latencies, 0.9) * 1000.0).round() / 1000.0,
            "p99_ms": (pct(&latencies, 0.99) * 1000.0).round() / 1000.0,
            "ttfb_p50_ms": (pct(&ttfb, 0.5) * 1000.0).round() / 1000.0,
        })
    );
    Ok(())
}
