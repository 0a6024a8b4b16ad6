//! `--postgres`, `--archive` and `--webhook`: where the proxy keeps calls besides its JSONL file.

use std::time::Duration;

use llm_observability::{
    ArchiveSink, DispatcherConfig, LlmObservabilityLayerBuilder, PostgresSink, SinkConfig,
    WebhookFormat, WebhookSink,
};

use crate::forward::BoxError;

/// Storage sinks, each switched on by its URL.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Storage")]
pub(crate) struct StorageFlags {
    /// Also write each call as a row of a PostgreSQL table (postgres://user@host:port/db).
    ///
    /// The table (--postgres-table) and its indexes are created or migrated at start-up; an
    /// unreachable server makes the proxy exit 1. No TLS: connect over loopback, a private
    /// network or a tunnel.
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
    /// The table for --postgres: name or schema.name.
    #[arg(long, value_name = "NAME", default_value = "llm_calls")]
    postgres_table: String,
    /// Also archive calls as NDJSON objects: s3://bucket/prefix (settings from AWS_* variables,
    /// e.g. AWS_ENDPOINT and AWS_ALLOW_HTTP=true for an S3-compatible store) or file:///dir.
    ///
    /// Objects are named prefix/yyyy/mm/dd/hh/UUID.jsonl[.gz] and written once they hold
    /// --archive-max-bytes or their first call is --archive-max-age old, and at shutdown.
    #[arg(long, value_name = "URL")]
    archive: Option<String>,
    /// Compress archive objects with gzip (.jsonl.gz).
    #[arg(long)]
    archive_gzip: bool,
    /// Seconds a call may wait in the archive buffer before its object is written.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    archive_max_age: u64,
    /// Bytes of NDJSON after which an archive object is written.
    #[arg(long, value_name = "BYTES", default_value_t = 8 << 20)]
    archive_max_bytes: usize,
    /// Also POST each batch of calls to this URL (http or https).
    ///
    /// 2xx delivers; 408, 429, 5xx, timeouts and connection errors are retried with backoff
    /// (honouring Retry-After); other statuses count the batch failed.
    #[arg(long, value_name = "URL")]
    webhook: Option<String>,
    /// A header for --webhook, "Name: value" (repeatable), e.g. "Authorization: Bearer TOKEN".
    #[arg(long, value_name = "HEADER")]
    webhook_header: Vec<String>,
    /// Body of --webhook requests: a JSON array of calls, or NDJSON.
    #[arg(long, value_name = "FORMAT", default_value = "json", value_parser = ["json", "ndjson"])]
    webhook_format: String,
    /// Compress --webhook bodies with gzip.
    #[arg(long)]
    webhook_gzip: bool,
    /// Seconds one --webhook request may take.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    webhook_timeout: u64,
}

/// Retries that ride out a backend restart of a minute or so.
fn patient() -> SinkConfig {
    SinkConfig::new().dispatch(
        DispatcherConfig::builder()
            .max_retries(10)
            .max_backoff(Duration::from_secs(15))
            .build(),
    )
}

/// Adds the sinks whose flags are set.
pub(crate) async fn add_sinks(
    flags: &StorageFlags,
    mut builder: LlmObservabilityLayerBuilder,
) -> Result<LlmObservabilityLayerBuilder, BoxError> {
    if let Some(url) = &flags.postgres {
        let sink = PostgresSink::builder(url.as_str())
            .table(flags.postgres_table.as_str())
            .connect()
            .await
            .map_err(|e| format!("--postgres: {e}"))?;
        builder = builder.sink_with(sink, patient());
    }
    if let Some(url) = &flags.archive {
        let sink = ArchiveSink::builder_from_url(url)
            .map_err(|e| format!("--archive: {e}"))?
            .gzip(flags.archive_gzip)
            .max_age(Duration::from_secs(flags.archive_max_age))
            .max_bytes(flags.archive_max_bytes)
            .build();
        builder = builder.sink_with(sink, patient());
    }
    if let Some(url) = &flags.webhook {
        let format = match flags.webhook_format.as_str() {
            "ndjson" => WebhookFormat::Ndjson,
            _ => WebhookFormat::JsonArray,
        };
        let mut sink = WebhookSink::builder(url.as_str())
            .format(format)
            .gzip(flags.webhook_gzip)
            .timeout(Duration::from_secs(flags.webhook_timeout));
        for header in &flags.webhook_header {
            let (name, value) = header
                .split_once(':')
                .ok_or_else(|| format!("--webhook-header {header:?}: expected \"Name: value\""))?;
            sink = sink.header(name.trim(), value.trim());
        }
        let sink = sink.build().map_err(|e| format!("--webhook: {e}"))?;
        builder = builder.sink_with(sink, patient());
    }
    Ok(builder)
}
