//! `PostgresSink` against a real PostgreSQL server (`scripts/backends/postgres.sh`, a fresh
//! cluster on 127.0.0.1): rows read back equal the payloads, in `jsonb` and in the typed
//! columns; a batch delivered twice leaves one row per call; an older table is migrated; the
//! README's queries answer what the calls say; and a server restart in the middle of a run
//! loses nothing that was acknowledged, with the dispatcher's accounting intact.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use llm_observability::{
    CallStatus, DispatcherConfig, LlmCall, LlmObservabilityLayer, PostgresSink, Sink, SinkConfig,
    SinkError,
};
use support::backend::Backend;
use support::storage::{quick_dispatch, sample_calls};
use tokio_postgres::NoTls;

const READY: Duration = Duration::from_secs(120);

/// One server for the tests that do not restart it.
fn shared() -> &'static Backend {
    static SERVER: OnceLock<Backend> = OnceLock::new();
    SERVER.get_or_init(|| Backend::start("postgres", READY))
}

fn url(backend: &Backend) -> String {
    format!("postgres://postgres@127.0.0.1:{}/postgres", backend.port)
}

async fn client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("connect to the test server");
    tokio::spawn(connection);
    client
}

fn table() -> String {
    format!("calls_{}", uuid::Uuid::new_v4().simple())
}

fn layer(sink: PostgresSink, config: DispatcherConfig) -> LlmObservabilityLayer {
    LlmObservabilityLayer::builder()
        .sink_with(sink, SinkConfig::new().dispatch(config))
        .build()
        .unwrap()
}

/// Every row of `table`: the payload read back from `jsonb`, by id.
async fn payloads(client: &tokio_postgres::Client, table: &str) -> BTreeMap<String, LlmCall> {
    client
        .query(&format!("SELECT id, payload::text FROM {table}"), &[])
        .await
        .unwrap()
        .iter()
        .map(|row| {
            let payload: String = row.get(1);
            (
                row.get(0),
                serde_json::from_str(&payload).expect("an LlmCall"),
            )
        })
        .collect()
}

fn by_id(calls: &[Arc<LlmCall>]) -> BTreeMap<String, LlmCall> {
    calls
        .iter()
        .map(|c| (c.id.clone(), LlmCall::clone(c)))
        .collect()
}

fn tokens(n: Option<u64>) -> Option<i64> {
    n.map(|n| n as i64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_read_back_equal_the_payloads() {
    let backend = shared();
    let table = table();
    let sink = PostgresSink::builder(url(backend))
        .table(&table)
        .connect()
        .await
        .unwrap();
    let calls = sample_calls(25);
    let layer = layer(sink, quick_dispatch(10));
    for call in &calls {
        layer.dispatcher().dispatch(call.clone());
    }
    let stats = support::assert_accounted(&layer, 25).await;
    assert_eq!((stats.sinks[0].delivered, stats.sinks[0].failed), (25, 0));

    let client = client(&url(backend)).await;
    assert_eq!(payloads(&client, &table).await, by_id(&calls));

    let rows = client
        .query(
            &format!(
                "SELECT id, start_time, end_time, endpoint, operation, provider, model,
                        response_model, status, http_status, error_type, stream, input_tokens,
                        output_tokens, total_tokens, cached_input_tokens, reasoning_tokens,
                        cost_usd, duration_ms, ttft_ms, user_id, session_id, trace_id, span_id,
                        parent_span_id, server_address
                 FROM {table} ORDER BY start_time"
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), calls.len());
    for (row, call) in rows.iter().zip(&calls) {
        let usage = call.usage.unwrap_or_default();
        assert_eq!(row.get::<_, String>("id"), call.id);
        assert_eq!(
            row.get::<_, time::OffsetDateTime>("start_time"),
            call.timing.start_time
        );
        assert_eq!(
            row.get::<_, time::OffsetDateTime>("end_time"),
            call.timing.end_time
        );
        assert_eq!(row.get::<_, String>("endpoint"), "chat.completions");
        assert_eq!(row.get::<_, String>("operation"), "chat");
        assert_eq!(row.get::<_, String>("provider"), call.provider);
        assert_eq!(row.get::<_, Option<String>>("model"), call.request.model);
        assert_eq!(
            row.get::<_, Option<String>>("response_model"),
            call.response_model
        );
        assert_eq!(row.get::<_, String>("status"), call.status.as_str());
        assert_eq!(
            row.get::<_, Option<i32>>("http_status"),
            call.http_status.map(i32::from)
        );
        assert_eq!(row.get::<_, Option<String>>("error_type"), call.error_type);
        assert_eq!(row.get::<_, bool>("stream"), call.request.stream);
        assert_eq!(
            row.get::<_, Option<i64>>("input_tokens"),
            tokens(usage.input_tokens)
        );
        assert_eq!(
            row.get::<_, Option<i64>>("output_tokens"),
            tokens(usage.output_tokens)
        );
        assert_eq!(
            row.get::<_, Option<i64>>("total_tokens"),
            tokens(usage.total_tokens)
        );
        assert_eq!(
            row.get::<_, Option<i64>>("cached_input_tokens"),
            tokens(usage.cached_input_tokens)
        );
        assert_eq!(
            row.get::<_, Option<i64>>("reasoning_tokens"),
            tokens(usage.reasoning_tokens)
        );
        assert_eq!(
            row.get::<_, Option<f64>>("cost_usd"),
            call.cost.as_ref().map(|c| c.total_usd)
        );
        assert_eq!(row.get::<_, f64>("duration_ms"), call.timing.duration_ms);
        assert_eq!(
            row.get::<_, Option<f64>>("ttft_ms"),
            call.timing.time_to_first_token_ms
        );
        assert_eq!(
            row.get::<_, Option<String>>("user_id").as_deref(),
            call.metadata["user_id"].as_str()
        );
        assert_eq!(
            row.get::<_, Option<String>>("session_id").as_deref(),
            call.metadata["session_id"].as_str()
        );
        assert_eq!(
            row.get::<_, String>("trace_id"),
            call.trace.trace_id.to_string()
        );
        assert_eq!(
            row.get::<_, String>("span_id"),
            call.trace.span_id.to_string()
        );
        assert_eq!(
            row.get::<_, Option<String>>("parent_span_id"),
            call.trace.parent_span_id.map(|s| s.to_string())
        );
        assert_eq!(
            row.get::<_, Option<String>>("server_address"),
            call.server_address
        );
    }

    // The payload is queryable as jsonb.
    let first = &calls[0];
    let content: String = client
        .query_one(
            &format!(
                "SELECT payload #>> '{{request,messages,0,content}}' FROM {table} WHERE id = $1"
            ),
            &[&first.id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        content,
        first.request.messages.as_ref().unwrap()[0]["content"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_delivered_twice_leaves_one_row_per_call() {
    let backend = shared();
    let table = table();
    let sink = PostgresSink::builder(url(backend))
        .table(&table)
        .build()
        .unwrap();
    let calls = sample_calls(6);
    sink.export(&calls).await.unwrap();
    sink.export(&calls[2..]).await.unwrap();
    sink.export(&calls).await.unwrap();
    let client = client(&url(backend)).await;
    assert_eq!(payloads(&client, &table).await, by_id(&calls));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_table_gains_the_new_columns_and_indexes() {
    let backend = shared();
    let table = table();
    let client = client(&url(backend)).await;
    client
        .batch_execute(&format!(
            "CREATE TABLE {table} (id text PRIMARY KEY, start_time timestamptz NOT NULL,
             payload jsonb NOT NULL, inserted_at timestamptz NOT NULL DEFAULT now())"
        ))
        .await
        .unwrap();
    let sink = PostgresSink::builder(url(backend))
        .table(&table)
        .connect()
        .await
        .unwrap();
    let calls = sample_calls(3);
    sink.export(&calls).await.unwrap();
    assert_eq!(payloads(&client, &table).await, by_id(&calls));
    let models: Vec<Option<String>> = client
        .query(
            &format!("SELECT model FROM {table} ORDER BY start_time"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let expected: Vec<Option<String>> = calls.iter().map(|c| c.request.model.clone()).collect();
    assert_eq!(models, expected);
    let mut indexes: Vec<String> = client
        .query(
            "SELECT indexname FROM pg_indexes WHERE tablename = $1",
            &[&table],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    indexes.sort();
    let mut wanted: Vec<String> = [
        "duration_idx",
        "model_time_idx",
        "pkey",
        "start_time_idx",
        "status_time_idx",
        "trace_idx",
        "user_time_idx",
    ]
    .iter()
    .map(|suffix| format!("{table}_{suffix}"))
    .collect();
    wanted.sort();
    assert_eq!(indexes, wanted);
}

/// The three queries of the README, as written there (with the table renamed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_queries_answer_from_the_rows() {
    let backend = shared();
    let table = table();
    let sink = PostgresSink::builder(url(backend))
        .table(&table)
        .connect()
        .await
        .unwrap();
    let calls = sample_calls(30);
    sink.export(&calls).await.unwrap();
    let client = client(&url(backend)).await;
    let readme = include_str!("../README.md");
    let queries: Vec<String> = readme
        .split("```sql\n")
        .skip(1)
        .map(|rest| {
            rest.split("```")
                .next()
                .unwrap()
                .replace("llm_calls", &table)
        })
        .collect();
    assert_eq!(queries.len(), 3, "the README shows three SQL queries");

    // Spend by model, user and day: calls, tokens and cost summed.
    let rows = client.query(&queries[0], &[]).await.unwrap();
    let mut expected: BTreeMap<(String, String, String), (i64, i64, i64)> = BTreeMap::new();
    let mut spend: BTreeMap<(String, String, String), Option<f64>> = BTreeMap::new();
    for call in &calls {
        let key = (
            call.timing.start_time.date().to_string(),
            call.request.model.clone().unwrap(),
            call.metadata["user_id"].as_str().unwrap().to_owned(),
        );
        let usage = call.usage.unwrap_or_default();
        let cost = spend.entry(key.clone()).or_default();
        if let Some(c) = &call.cost {
            *cost = Some(cost.unwrap_or(0.0) + c.total_usd);
        }
        let entry = expected.entry(key).or_default();
        entry.0 += 1;
        entry.1 += usage.input_tokens.unwrap_or(0) as i64;
        entry.2 += usage.output_tokens.unwrap_or(0) as i64;
    }
    let got: BTreeMap<(String, String, String), (i64, i64, i64)> = rows
        .iter()
        .map(|row| {
            let day: time::Date = row.get("day");
            (
                (day.to_string(), row.get("model"), row.get("user_id")),
                (
                    row.get("calls"),
                    row.get("input_tokens"),
                    row.get("output_tokens"),
                ),
            )
        })
        .collect();
    assert_eq!(got, expected);
    assert!(spend.values().any(Option::is_some));
    for row in &rows {
        let day: time::Date = row.get("day");
        let key = (day.to_string(), row.get("model"), row.get("user_id"));
        let got: Option<f64> = row.get("cost_usd");
        match (got, spend[&key]) {
            (Some(got), Some(want)) => assert!((got - want).abs() < 1e-12, "{key:?}: {got} {want}"),
            (got, want) => assert_eq!(got, want, "{key:?}"),
        }
    }

    // The slowest calls, slowest first.
    let rows = client.query(&queries[1], &[]).await.unwrap();
    let mut slowest: Vec<&Arc<LlmCall>> = calls.iter().collect();
    slowest.sort_by(|a, b| b.timing.duration_ms.total_cmp(&a.timing.duration_ms));
    let got: Vec<String> = rows.iter().map(|row| row.get("id")).collect();
    let want: Vec<String> = slowest
        .iter()
        .take(rows.len())
        .map(|c| c.id.clone())
        .collect();
    assert_eq!(rows.len(), 20);
    assert_eq!(got, want);

    // The error rate per day and model.
    let rows = client.query(&queries[2], &[]).await.unwrap();
    let mut expected: BTreeMap<(String, String), (i64, i64)> = BTreeMap::new();
    for call in &calls {
        let entry = expected
            .entry((
                call.timing.start_time.date().to_string(),
                call.request.model.clone().unwrap(),
            ))
            .or_default();
        entry.0 += 1;
        entry.1 += i64::from(call.status == CallStatus::Error);
    }
    assert!(expected.values().any(|(_, errors)| *errors > 0));
    let got: BTreeMap<(String, String), (i64, i64)> = rows
        .iter()
        .map(|row| {
            let day: time::Date = row.get("day");
            (
                (day.to_string(), row.get("model")),
                (row.get("calls"), row.get("errors")),
            )
        })
        .collect();
    assert_eq!(got, expected);
    for row in &rows {
        let (calls, errors): (i64, i64) = (row.get("calls"), row.get("errors"));
        let rate: f64 = row.get("error_rate");
        assert!((rate - errors as f64 / calls as f64).abs() < 1e-9);
    }
}

/// Counts the exports that failed (the sink is the real one).
struct CountingFailures {
    inner: PostgresSink,
    failures: Arc<AtomicU64>,
}

#[async_trait]
impl Sink for CountingFailures {
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn export(&self, batch: &[Arc<LlmCall>]) -> Result<(), SinkError> {
        let result = self.inner.export(batch).await;
        if let Err(error) = &result {
            assert!(
                error.is_retryable(),
                "a restart is transient: {}",
                error.chain()
            );
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        result
    }
    async fn shutdown(&self) -> Result<(), SinkError> {
        self.inner.shutdown().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_loses_nothing_acknowledged() {
    let backend = Arc::new(std::sync::Mutex::new(Backend::start("postgres", READY)));
    let url = url(&backend.lock().unwrap());
    let table = table();
    let failures = Arc::new(AtomicU64::new(0));
    let sink = CountingFailures {
        inner: PostgresSink::builder(&url)
            .table(&table)
            .timeout(Duration::from_secs(2))
            .connect()
            .await
            .unwrap(),
        failures: failures.clone(),
    };
    let config = DispatcherConfig::builder()
        .batch_size(5)
        .batch_interval(Duration::from_millis(20))
        .initial_backoff(Duration::from_millis(50))
        .max_backoff(Duration::from_millis(500))
        .max_retries(200)
        .export_timeout(Duration::from_secs(10))
        .build();
    let layer = LlmObservabilityLayer::builder()
        .sink_with(sink, SinkConfig::new().dispatch(config))
        .build()
        .unwrap();
    let calls = sample_calls(60);

    // Before: delivered and committed.
    for call in &calls[..20] {
        layer.dispatcher().dispatch(call.clone());
    }
    layer
        .dispatcher()
        .flush(Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(layer.dispatcher().stats().sinks[0].delivered, 20);

    // During: the server stops (fast shutdown: the pool's connections are cut), calls keep
    // coming and fail to export, then it starts again on the same data directory.
    let stopped = {
        let backend = backend.clone();
        tokio::task::spawn_blocking(move || backend.lock().unwrap().stop())
    };
    stopped.await.unwrap();
    for call in &calls[20..40] {
        layer.dispatcher().dispatch(call.clone());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::timeout(Duration::from_secs(30), async {
        while failures.load(Ordering::Relaxed) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("an export failed while the server was down");
    let restarted = {
        let backend = backend.clone();
        tokio::task::spawn_blocking(move || backend.lock().unwrap().serve_again(READY))
    };
    restarted.await.unwrap();

    // After.
    for call in &calls[40..] {
        layer.dispatcher().dispatch(call.clone());
    }
    let stats = support::assert_accounted(&layer, 60).await;
    let sink = &stats.sinks[0];
    assert_eq!(
        (sink.delivered, sink.failed, sink.dropped),
        (60, 0, 0),
        "{sink:?}"
    );
    assert!(
        failures.load(Ordering::Relaxed) > 0,
        "the restart was never seen by the sink"
    );

    let client = client(&url).await;
    let rows = payloads(&client, &table).await;
    assert_eq!(
        rows,
        by_id(&calls),
        "every acknowledged call is in the table, once"
    );
    let total: i64 = client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(total, 60);
}

/// Recorded calls of every API family (Anthropic: streamed tool calls, streamed thinking, a
/// cache write, a cache read; a streamed Gemini call with function calls and reasoning tokens;
/// a Bedrock converse-stream with a tool use; a streamed Ollama chat with thinking) land as
/// rows with their endpoint, operation and provider, the models, the token columns the
/// recordings report (input with the cache included, cache reads and writes apart, reasoning
/// apart and within the output) and the response in the payload, read as the recording reads
/// (id, counts, text, reasoning, tool calls, finish reason).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_calls_of_every_family_land_with_their_token_columns() {
    let Some(cases) = support::calls::provider_cases() else {
        return;
    };
    let backend = shared();
    let table = table();
    let sink = PostgresSink::builder(url(backend))
        .table(&table)
        .connect()
        .await
        .unwrap();
    let memory = llm_observability::MemorySink::new();
    let layer = LlmObservabilityLayer::builder()
        .sink_with(sink, SinkConfig::new().dispatch(quick_dispatch(10)))
        .sink(memory.clone())
        .build()
        .unwrap();
    let sent = support::calls::send_each(&layer, &memory, &cases).await;
    let stats = support::assert_accounted(&layer, cases.len() as u64).await;
    assert_eq!(stats.sinks[0].delivered, cases.len() as u64);
    let client = client(&url(backend)).await;
    for (case, call) in sent {
        let (label, expect) = (case.name, &case.expect);
        let row = client
            .query_one(
                &format!(
                    "SELECT endpoint, operation, provider, model, response_model, stream,
                            input_tokens, output_tokens, total_tokens, cached_input_tokens,
                            cache_creation_input_tokens, reasoning_tokens, status,
                            payload::text AS payload
                     FROM {table} WHERE id = $1"
                ),
                &[&call.id],
            )
            .await
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        let n = |v: u64| Some(v as i64);
        let column = |name: &str| row.get::<_, Option<i64>>(name);
        assert_eq!(row.get::<_, String>("endpoint"), case.endpoint, "{label}");
        assert_eq!(row.get::<_, String>("operation"), case.operation, "{label}");
        assert_eq!(row.get::<_, String>("provider"), case.provider, "{label}");
        assert_eq!(
            row.get::<_, Option<String>>("model").as_deref(),
            Some(expect.request_model.as_str()),
            "{label}"
        );
        assert_eq!(
            row.get::<_, Option<String>>("response_model"),
            expect.response_model,
            "{label}"
        );
        assert_eq!(row.get::<_, bool>("stream"), case.streamed, "{label}");
        assert_eq!(row.get::<_, String>("status"), "success");
        assert_eq!(column("input_tokens"), n(expect.input_tokens), "{label}");
        assert_eq!(column("output_tokens"), n(expect.output_tokens), "{label}");
        assert_eq!(column("total_tokens"), n(expect.total_tokens), "{label}");
        assert_eq!(
            column("cached_input_tokens"),
            expect.cache_read.map(|v| v as i64),
            "{label}"
        );
        assert_eq!(
            column("cache_creation_input_tokens"),
            expect.cache_creation.map(|v| v as i64),
            "{label}"
        );
        assert_eq!(
            column("reasoning_tokens"),
            expect.reasoning_tokens.map(|v| v as i64),
            "{label}"
        );
        let payload: serde_json::Value =
            serde_json::from_str(&row.get::<_, String>("payload")).unwrap();
        assert_eq!(
            payload["response_id"].as_str(),
            expect.id.as_deref(),
            "{label}"
        );
        assert_eq!(
            payload["finish_reasons"],
            serde_json::json!([expect.finish_reason]),
            "{label}"
        );
        case.assert_response(&payload["response"], label);
    }
}
