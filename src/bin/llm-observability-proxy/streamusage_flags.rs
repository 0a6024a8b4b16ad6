//! `--stream-usage ask|estimate`: usage for streamed chat completions that did not ask for it.

use llm_observability::{LlmObservabilityLayerBuilder, StreamUsage};

/// What the proxy does about streams that do not report their usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StreamUsageFlag {
    /// Add `stream_options.include_usage: true` to streamed chat requests that lack it, and
    /// strip what it adds from the stream the client receives (the final usage chunk and every
    /// `"usage":null`). Exact counts; changes the request sent upstream.
    Ask,
    /// Count tokens with the model's tokenizer after the call; the bytes are untouched.
    Estimate,
}

/// The proxy's flags for stream usage.
#[derive(Debug, clap::Args)]
pub struct StreamUsageFlags {
    /// Usage for streamed chat completions whose client did not ask for it
    /// (`stream_options.include_usage`).
    ///
    /// `ask` adds `"stream_options": {"include_usage": true}` to such requests (a request that
    /// sets include_usage itself, true or false, goes unchanged) and gives the client the
    /// stream it would have received without it: the final usage chunk and the `"usage":null`
    /// of every chunk are removed; the record has the provider's counts. The request body is
    /// read whole before it is forwarded. `estimate` counts the tokens of the messages and of
    /// the output with the model's tokenizer (tiktoken) after the call, and leaves the bytes
    /// alone; the record says `usage_source: "estimated"`. Unset: streams are passed through
    /// untouched and such calls have no usage (`usage_source: "missing"`).
    #[arg(long, value_name = "MODE", value_enum)]
    pub stream_usage: Option<StreamUsageFlag>,
}

impl StreamUsageFlags {
    /// Configures the layer for the chosen mode.
    pub fn apply(&self, builder: LlmObservabilityLayerBuilder) -> LlmObservabilityLayerBuilder {
        match self.stream_usage {
            None => builder,
            Some(StreamUsageFlag::Ask) => builder.stream_usage(StreamUsage::Ask),
            Some(StreamUsageFlag::Estimate) => builder.stream_usage(StreamUsage::Estimate),
        }
    }
}
