//! `PostgresSink`: each call as one row of a documented table, with typed columns for the
//! questions people ask of their LLM traffic and the whole payload as `jsonb`.

use std::fmt::Write as _;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use serde_json::Value;
use tokio_postgres::config::SslMode;
use tokio_postgres::types::ToSql;
use tokio_postgres::NoTls;

use super::{Sink, SinkError};
use crate::payload::LlmCall;

/// The table's columns after `id`, in insert order, with their SQL types. `payload` is last.
const COLUMNS: &[(&str, &str)] = &[
    ("start_time", "timestamptz"),
    ("end_time", "timestamptz"),
    ("endpoint", "text"),
    ("operation", "text"),
    ("provider", "text"),
    ("model", "text"),
    ("response_model", "text"),
    ("status", "text"),
    ("http_status", "integer"),
    ("error_type", "text"),
    ("stream", "boolean"),
    ("input_tokens", "bigint"),
    ("output_tokens", "bigint"),
    ("total_tokens", "bigint"),
    ("cached_input_tokens", "bigint"),
    ("cache_creation_input_tokens", "bigint"),
    ("reasoning_tokens", "bigint"),
    ("cost_usd", "double precision"),
    ("duration_ms", "double precision"),
    ("ttft_ms", "double precision"),
    ("user_id", "text"),
    ("session_id", "text"),
    ("trace_id", "text"),
    ("span_id", "text"),
    ("parent_span_id", "text"),
    ("server_address", "text"),
    ("payload", "jsonb"),
];

/// Parameters of one row: `id` and [`COLUMNS`].
const PARAMS_PER_ROW: usize = 1 + COLUMNS.len();

/// Rows per `INSERT` statement, well under PostgreSQL's 65 535 bind parameters.
const ROWS_PER_STATEMENT: usize = 1000;

/// The table [`PostgresSink`] writes to unless told otherwise.
pub const DEFAULT_TABLE: &str = "llm_calls";

/// Why a [`PostgresSink`] could not be built or set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PostgresError {
    /// The connection string is not a valid `postgres://` URL or `key=value` string.
    #[error("invalid PostgreSQL connection string")]
    Url(#[source] tokio_postgres::Error),
    /// The connection string asks for TLS (`sslmode=require`), which this sink does not speak.
    #[error("the PostgreSQL connection string asks for TLS (sslmode=require), which PostgresSink does not support: use a local or tunnelled connection")]
    TlsUnsupported,
    /// The table name is not `name` or `schema.name` made of letters, digits and `_`.
    #[error("invalid table name {0:?}: use letters, digits and _ (optionally schema.table)")]
    Table(String),
    /// The pool could not be built.
    #[error("cannot build the PostgreSQL connection pool")]
    Pool(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Connecting or creating the table failed.
    #[error("cannot set up the PostgreSQL table: {}", .0.chain())]
    Setup(#[source] SinkError),
}

/// Writes each call as one row of a PostgreSQL table: typed columns for time, model,
/// provider, status, tokens, cost, duration, time to first token, user, session and trace,
/// and the whole [`LlmCall`] as `jsonb` in `payload`.
///
/// - **The table is created and migrated by the sink** (on [`connect`](Self::connect), or
///   before its first batch): `CREATE TABLE IF NOT EXISTS`, then `ADD COLUMN IF NOT EXISTS`
///   for each column (so a table from an older version gains the new ones), then the indexes,
///   in one transaction under an advisory lock (several processes may start at once). See the
///   README for the table and the queries it is indexed for (spend by model, user and day;
///   the slowest calls; the error rate).
/// - **A batch is delivered when its transaction has committed.** Each batch is one
///   transaction of multi-row `INSERT ... ON CONFLICT (id) DO NOTHING`: the call id is the
///   primary key, so a batch delivered twice (a commit whose answer was lost, then a retry)
///   leaves one row per call.
/// - **Restarts are survived.** Connections come from a pool (deadpool) and are checked
///   before use; a lost connection, a server shutting down or starting up, a serialization
///   failure or a deadlock is a transient error that the dispatcher retries with backoff on a
///   fresh connection. Errors in the data (which retrying cannot fix) are permanent.
/// - **No TLS**: connect over loopback, a private network or a tunnel; a connection string
///   with `sslmode=require` is refused when the sink is built.
///
/// Strings holding a NUL character (which PostgreSQL text and `jsonb` cannot store) are
/// stored with U+FFFD in its place.
///
/// ```no_run
/// # async fn run() -> Result<(), llm_observability::PostgresError> {
/// let sink = llm_observability::PostgresSink::connect("postgres://app@127.0.0.1/observability").await?;
/// # Ok(()) }
/// ```
pub struct PostgresSink {
    pool: Pool,
    /// The table, quoted for SQL.
    table: String,
    /// The table name unquoted, without its schema: the stem of the index names.
    stem: String,
    schema_ready: AtomicBool,
}

impl std::fmt::Debug for PostgresSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSink")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

/// Builder of [`PostgresSink`] (see [`PostgresSink::builder`]).
#[derive(Debug)]
pub struct PostgresSinkBuilder {
    url: String,
    table: String,
    pool_size: usize,
    timeout: Duration,
}

impl PostgresSinkBuilder {
    /// The table to write to: `name` or `schema.name` (default [`DEFAULT_TABLE`]).
    pub fn table(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self
    }

    /// Connections in the pool (default 2: batches of one sink are exported one at a time).
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size.max(1);
        self
    }

    /// How long connecting, or waiting for a pooled connection, may take (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Checks the settings and builds the pool, without connecting: the table is created
    /// before the first batch. [`connect`](Self::connect) connects at once.
    pub fn build(self) -> Result<PostgresSink, PostgresError> {
        let mut config = tokio_postgres::Config::from_str(&self.url).map_err(PostgresError::Url)?;
        if config.get_ssl_mode() == SslMode::Require {
            return Err(PostgresError::TlsUnsupported);
        }
        config.ssl_mode(SslMode::Disable);
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(self.timeout);
        }
        if config.get_application_name().is_none() {
            config.application_name("llm-observability");
        }
        let (table, stem) = quote_table(&self.table)?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(self.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(self.timeout))
            .create_timeout(Some(self.timeout))
            .recycle_timeout(Some(self.timeout))
            .build()
            .map_err(|e| PostgresError::Pool(Box::new(e)))?;
        Ok(PostgresSink {
            pool,
            table,
            stem,
            schema_ready: AtomicBool::new(false),
        })
    }

    /// Builds the sink, connects, and creates or migrates the table: an unreachable server or
    /// a user without the rights to create the table is reported here, at start-up.
    pub async fn connect(self) -> Result<PostgresSink, PostgresError> {
        let sink = self.build()?;
        sink.ensure_schema().await.map_err(PostgresError::Setup)?;
        Ok(sink)
    }
}

impl PostgresSink {
    /// A sink for the database at `url` (`postgres://user:password@host:port/database` or
    /// `host=... user=...`), writing to [`DEFAULT_TABLE`].
    pub fn builder(url: impl Into<String>) -> PostgresSinkBuilder {
        PostgresSinkBuilder {
            url: url.into(),
            table: DEFAULT_TABLE.to_owned(),
            pool_size: 2,
            timeout: Duration::from_secs(10),
        }
    }

    /// `PostgresSink::builder(url).connect().await`.
    pub async fn connect(url: impl Into<String>) -> Result<PostgresSink, PostgresError> {
        Self::builder(url).connect().await
    }

    /// The SQL that creates (or migrates) the table and its indexes.
    pub fn schema_sql(&self) -> String {
        let (table, stem) = (&self.table, &self.stem);
        let mut sql = String::new();
        let _ = write!(
            sql,
            "SELECT pg_advisory_xact_lock(hashtext('llm_observability.migrate'));\n\
             CREATE TABLE IF NOT EXISTS {table} (\n    id text PRIMARY KEY"
        );
        for (name, kind) in COLUMNS {
            let not_null = match *name {
                "start_time" | "end_time" | "endpoint" | "operation" | "provider" | "status"
                | "stream" | "duration_ms" | "trace_id" | "span_id" | "payload" => " NOT NULL",
                _ => "",
            };
            let _ = write!(sql, ",\n    {name} {kind}{not_null}");
        }
        sql.push_str(",\n    inserted_at timestamptz NOT NULL DEFAULT now()\n);\n");
        for (name, kind) in COLUMNS {
            let _ = writeln!(
                sql,
                "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {name} {kind};"
            );
        }
        for (suffix, columns) in [
            ("start_time", "(start_time)"),
            ("model_time", "(model, start_time)"),
            ("user_time", "(user_id, start_time)"),
            ("status_time", "(status, start_time)"),
            ("duration", "(duration_ms DESC)"),
            ("trace", "(trace_id)"),
        ] {
            let _ = writeln!(
                sql,
                "CREATE INDEX IF NOT EXISTS \"{stem}_{suffix}_idx\" ON {table} {columns};"
            );
        }
        let _ = writeln!(
            sql,
            "COMMENT ON TABLE {table} IS 'LLM calls recorded by llm-observability: typed columns and the LlmCall JSON (schema version {}) in payload';",
            crate::payload::SCHEMA_VERSION
        );
        sql
    }

    async fn ensure_schema(&self) -> Result<(), SinkError> {
        if self.schema_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut client = self.pool.get().await.map_err(pool_error)?;
        let transaction = client.transaction().await.map_err(|e| self.sql_error(e))?;
        transaction
            .batch_execute(&self.schema_sql())
            .await
            .map_err(|e| self.sql_error(e))?;
        transaction.commit().await.map_err(|e| self.sql_error(e))?;
        self.schema_ready.store(true, Ordering::Release);
        Ok(())
    }

    fn insert_sql(&self, rows: usize) -> String {
        let mut sql = format!("INSERT INTO {} (id", self.table);
        for (name, _) in COLUMNS {
            sql.push_str(", ");
            sql.push_str(name);
        }
        sql.push_str(") VALUES ");
        for row in 0..rows {
            sql.push_str(if row == 0 { "(" } else { ", (" });
            for column in 0..PARAMS_PER_ROW {
                let n = row * PARAMS_PER_ROW + column + 1;
                let _ = match (column, COLUMNS.get(column.wrapping_sub(1))) {
                    (0, _) => write!(sql, "${n}"),
                    (_, Some(("payload", _))) => write!(sql, ", ${n}::text::jsonb"),
                    _ => write!(sql, ", ${n}"),
                };
            }
            sql.push(')');
        }
        sql.push_str(" ON CONFLICT (id) DO NOTHING");
        sql
    }

    /// Maps a database error: connection trouble and the server's transient states are
    /// retried; a missing table is created again before the retry; the rest is permanent.
    fn sql_error(&self, error: tokio_postgres::Error) -> SinkError {
        let Some(state) = error.code() else {
            // No SQL state: the connection failed or closed (or a value did not convert,
            // which the rows built here never do).
            return SinkError::transient("lost the connection to PostgreSQL").with_source(error);
        };
        let code = state.code();
        let transient = ["08", "53", "57", "58", "40"]
            .iter()
            .any(|class| code.starts_with(class));
        if code == "42P01" || code == "3F000" {
            self.schema_ready.store(false, Ordering::Release);
            return SinkError::transient("the PostgreSQL table is missing; creating it again")
                .with_source(error);
        }
        let message = format!("PostgreSQL refused the batch (SQLSTATE {code})");
        if transient {
            SinkError::transient(message).with_source(error)
        } else {
            SinkError::permanent(message).with_source(error)
        }
    }
}

#[async_trait]
impl Sink for PostgresSink {
    fn name(&self) -> &str {
        "postgres"
    }

    async fn export(&self, batch: &[Arc<LlmCall>]) -> Result<(), SinkError> {
        if batch.is_empty() {
            return Ok(());
        }
        let rows = batch
            .iter()
            .map(|call| Row::of(call))
            .collect::<Result<Vec<_>, _>>()?;
        self.ensure_schema().await?;
        let mut client = self.pool.get().await.map_err(pool_error)?;
        let transaction = client.transaction().await.map_err(|e| self.sql_error(e))?;
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let sql = self.insert_sql(chunk.len());
            let mut params: Vec<&(dyn ToSql + Sync)> =
                Vec::with_capacity(chunk.len() * PARAMS_PER_ROW);
            for row in chunk {
                row.push_params(&mut params);
            }
            transaction
                .execute(sql.as_str(), &params)
                .await
                .map_err(|e| self.sql_error(e))?;
        }
        transaction.commit().await.map_err(|e| self.sql_error(e))?;
        Ok(())
    }

    async fn shutdown(&self) -> Result<(), SinkError> {
        self.pool.close();
        Ok(())
    }
}

fn pool_error(error: PoolError) -> SinkError {
    match error {
        PoolError::Backend(error) => {
            SinkError::transient("cannot connect to PostgreSQL").with_source(error)
        }
        PoolError::Timeout(_) => {
            SinkError::transient("timed out waiting for a PostgreSQL connection")
        }
        PoolError::Closed => SinkError::permanent("the PostgreSQL sink has shut down"),
        other => SinkError::transient("cannot get a PostgreSQL connection").with_source(other),
    }
}

/// One call's column values.
struct Row {
    id: String,
    start_time: time::OffsetDateTime,
    end_time: time::OffsetDateTime,
    endpoint: String,
    operation: String,
    provider: String,
    model: Option<String>,
    response_model: Option<String>,
    status: &'static str,
    http_status: Option<i32>,
    error_type: Option<String>,
    stream: bool,
    input_tokens: Option<i64>,
    output_tokens: Option<i64>,
    total_tokens: Option<i64>,
    cached_input_tokens: Option<i64>,
    cache_creation_input_tokens: Option<i64>,
    reasoning_tokens: Option<i64>,
    cost_usd: Option<f64>,
    duration_ms: f64,
    ttft_ms: Option<f64>,
    user_id: Option<String>,
    session_id: Option<String>,
    trace_id: String,
    span_id: String,
    parent_span_id: Option<String>,
    server_address: Option<String>,
    payload: String,
}

impl Row {
    fn of(call: &LlmCall) -> Result<Row, SinkError> {
        let usage = call.usage.unwrap_or_default();
        let tokens = |n: Option<u64>| n.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
        let text = |s: &Option<String>| s.as_deref().map(no_nul);
        let endpoint = serde_json::to_value(call.endpoint)?;
        Ok(Row {
            id: no_nul(&call.id),
            start_time: call.timing.start_time,
            end_time: call.timing.end_time,
            endpoint: endpoint.as_str().map(no_nul).unwrap_or_default(),
            operation: no_nul(&call.operation),
            provider: no_nul(&call.provider),
            model: call.requested_model().map(no_nul),
            response_model: text(&call.response_model),
            status: call.status.as_str(),
            http_status: call.http_status.map(i32::from),
            error_type: text(&call.error_type),
            stream: call.request.stream,
            input_tokens: tokens(usage.input_tokens),
            output_tokens: tokens(usage.output_tokens),
            total_tokens: tokens(usage.total_tokens),
            cached_input_tokens: tokens(usage.cached_input_tokens),
            cache_creation_input_tokens: tokens(usage.cache_creation_input_tokens),
            reasoning_tokens: tokens(usage.reasoning_tokens),
            cost_usd: cost_usd(call),
            duration_ms: call.timing.duration_ms,
            ttft_ms: call.timing.time_to_first_token_ms,
            user_id: metadata_text(call, &["user_id", "user"]).or_else(|| text(&call.request.user)),
            session_id: metadata_text(call, &["session_id", "session"]),
            trace_id: call.trace.trace_id.to_string(),
            span_id: call.trace.span_id.to_string(),
            parent_span_id: call.trace.parent_span_id.map(|id| id.to_string()),
            server_address: text(&call.server_address),
            payload: payload_json(call)?,
        })
    }

    fn push_params<'a>(&'a self, params: &mut Vec<&'a (dyn ToSql + Sync)>) {
        params.extend_from_slice(&[
            &self.id,
            &self.start_time,
            &self.end_time,
            &self.endpoint,
            &self.operation,
            &self.provider,
            &self.model,
            &self.response_model,
            &self.status,
            &self.http_status,
            &self.error_type,
            &self.stream,
            &self.input_tokens,
            &self.output_tokens,
            &self.total_tokens,
            &self.cached_input_tokens,
            &self.cache_creation_input_tokens,
            &self.reasoning_tokens,
            &self.cost_usd,
            &self.duration_ms,
            &self.ttft_ms,
            &self.user_id,
            &self.session_id,
            &self.trace_id,
            &self.span_id,
            &self.parent_span_id,
            &self.server_address,
            &self.payload,
        ]);
    }
}

/// The call's cost in US dollars, when a pricing processor has set one.
fn cost_usd(call: &LlmCall) -> Option<f64> {
    call.cost.as_ref().map(|cost| cost.total_usd)
}

/// A metadata value under the first of `keys` present, as text (a string as it is, a number
/// or a boolean spelled out).
fn metadata_text(call: &LlmCall, keys: &[&str]) -> Option<String> {
    keys.iter()
        .find_map(|key| call.metadata.get(*key))
        .and_then(|value| match value {
            Value::String(s) => Some(no_nul(s)),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        })
}

/// `text` with each NUL replaced by U+FFFD (PostgreSQL text cannot hold NUL).
fn no_nul(text: &str) -> String {
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}")
    } else {
        text.to_owned()
    }
}

/// The call's JSON for the `payload` column. `jsonb` refuses `\u0000`; a payload that has one
/// (rare: it takes a NUL in a prompt or a response) goes through a tree with U+FFFD instead.
fn payload_json(call: &LlmCall) -> Result<String, SinkError> {
    let text = serde_json::to_string(call)?;
    if !text.contains("\\u0000") {
        return Ok(text);
    }
    let mut tree: Value = serde_json::from_str(&text)?;
    replace_nul(&mut tree);
    Ok(serde_json::to_string(&tree)?)
}

fn replace_nul(value: &mut Value) {
    match value {
        Value::String(s) if s.contains('\0') => *s = s.replace('\0', "\u{FFFD}"),
        Value::Array(items) => items.iter_mut().for_each(replace_nul),
        Value::Object(map) => {
            let keys: Vec<String> = map.keys().filter(|k| k.contains('\0')).cloned().collect();
            for key in keys {
                if let Some(v) = map.remove(&key) {
                    map.insert(no_nul(&key), v);
                }
            }
            map.values_mut().for_each(replace_nul);
        }
        _ => {}
    }
}

/// `name` or `schema.name` quoted for SQL, and the bare name.
fn quote_table(table: &str) -> Result<(String, String), PostgresError> {
    let parts: Vec<&str> = table.split('.').collect();
    let valid = |part: &&str| {
        !part.is_empty()
            && part.len() <= 50
            && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !part.starts_with(|c: char| c.is_ascii_digit())
    };
    if parts.is_empty() || parts.len() > 2 || !parts.iter().all(valid) {
        return Err(PostgresError::Table(table.to_owned()));
    }
    let quoted = parts
        .iter()
        .map(|part| format!("\"{part}\""))
        .collect::<Vec<_>>()
        .join(".");
    let stem = parts.last().map(|s| s.to_string()).unwrap_or_default();
    Ok((quoted, stem))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Endpoint;

    #[test]
    fn table_names_are_checked_and_quoted() {
        assert_eq!(
            quote_table("llm_calls").unwrap(),
            ("\"llm_calls\"".to_owned(), "llm_calls".to_owned())
        );
        assert_eq!(
            quote_table("obs.Calls2").unwrap(),
            ("\"obs\".\"Calls2\"".to_owned(), "Calls2".to_owned())
        );
        for bad in ["", "a.b.c", "x;drop table y", "a\"b", "1abc", "a."] {
            assert!(quote_table(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn insert_sql_numbers_every_parameter() {
        let sink = PostgresSink::builder("postgres://u@127.0.0.1/db")
            .build()
            .unwrap();
        let sql = sink.insert_sql(2);
        assert!(sql.starts_with("INSERT INTO \"llm_calls\" (id, start_time,"));
        assert!(sql.contains(&format!("${}::text::jsonb)", PARAMS_PER_ROW)));
        assert!(sql.contains(&format!("(${}, ", PARAMS_PER_ROW + 1)));
        assert!(sql.ends_with(&format!(
            "${}::text::jsonb) ON CONFLICT (id) DO NOTHING",
            2 * PARAMS_PER_ROW
        )));
        let mut params = Vec::new();
        let row = Row::of(&LlmCall::new(Endpoint::ChatCompletions)).unwrap();
        row.push_params(&mut params);
        assert_eq!(params.len(), PARAMS_PER_ROW);
    }

    #[test]
    fn tls_urls_and_bad_urls_are_refused() {
        assert!(matches!(
            PostgresSink::builder("postgres://u@h/db?sslmode=require").build(),
            Err(PostgresError::TlsUnsupported)
        ));
        assert!(matches!(
            PostgresSink::builder("mysql://nope").build(),
            Err(PostgresError::Url(_))
        ));
    }

    #[test]
    fn nul_characters_are_replaced() {
        let mut call = LlmCall::new(Endpoint::ChatCompletions);
        call.request.model = Some("gpt\0x".into());
        call.request.messages =
            Some(serde_json::json!([{"content": "a\u{0}b", "k\u{0}": 1}]).into());
        let row = Row::of(&call).unwrap();
        assert_eq!(row.model.as_deref(), Some("gpt\u{FFFD}x"));
        assert!(!row.payload.contains("\\u0000"));
        let back: Value = serde_json::from_str(&row.payload).unwrap();
        assert_eq!(back["request"]["messages"][0]["content"], "a\u{FFFD}b");
        assert_eq!(back["request"]["messages"][0]["k\u{FFFD}"], 1);
    }
}
