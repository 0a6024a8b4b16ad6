//! Usage for streamed calls that did not report it: [`StreamUsage`].

/// What the layer does about streamed chat completions that do not ask for their usage.
///
/// OpenAI reports a stream's token usage only when the request sets
/// `stream_options.include_usage: true`; many clients do not, and their payloads then have no
/// token counts (`usage_source: "missing"`). Two remedies, both opt-in, set with
/// [`LlmObservabilityLayerBuilder::stream_usage`](crate::LlmObservabilityLayerBuilder::stream_usage):
///
/// | | [`Ask`](StreamUsage::Ask) | [`Estimate`](StreamUsage::Estimate) |
/// |---|---|---|
/// | counts | the provider's, exact (cached and reasoning tokens included) | tokenizer counts, within a few tokens for text; no reasoning tokens, images or audio |
/// | bytes on the wire | the request changes (see below); the client's response bytes are restored | untouched |
/// | request path | the request body is held until it has arrived whole | untouched: counted on the dispatcher's worker |
/// | needs | nothing | the `estimate-usage` cargo feature |
///
/// ```
/// use llm_observability::{LlmObservabilityLayer, MemorySink, StreamUsage};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let layer = LlmObservabilityLayer::builder()
///     .sink(MemorySink::new())
///     .stream_usage(StreamUsage::Ask)
///     .build()?;
/// # let _ = layer; Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StreamUsage {
    /// Leave streams as they are: a stream that did not ask for usage has none in its payload.
    /// The layer never changes a byte.
    #[default]
    Off,
    /// Ask the provider. A streamed chat-completion request (`"stream": true`) without
    /// `stream_options.include_usage` is sent on with `"include_usage": true` added
    /// (`Content-Length` fixed); a request that sets `include_usage` itself — `true`, or `false`
    /// the client chose — goes as it is. The response the client receives is the one it would
    /// have received without the option: the final usage chunk (`choices: []` with `usage`)
    /// is removed and so is the `"usage":null` member the option adds to every chunk; the
    /// payload gets the provider's usage (`usage_source: "provider"`).
    ///
    /// The trade-offs: it is the one setting that changes bytes on the wire (the upstream sees
    /// the option, the client a re-framed stream: whole events, as they complete — an
    /// incomplete event is held back until its end, nothing more); to rewrite the request,
    /// the layer reads the whole request body (up to the request capture limit; a larger one
    /// goes unchanged) before calling the inner service, so the upstream request starts when
    /// the client has finished sending, not while it sends — for chat requests of a few KiB
    /// that is one more in-memory copy and no measurable delay; and the payload records the
    /// request as the client sent it. A stream whose shape is not the expected one (not
    /// `data:` events, a compressed body, an error status) is passed through unchanged.
    /// Applies to chat completions only (`/chat/completions`).
    Ask,
    /// Estimate: count the tokens of the request's messages and of the assembled output with
    /// the model's tokenizer (tiktoken: `o200k_base` for gpt-4o, gpt-4.1, gpt-5 and the o-series,
    /// `cl100k_base` for gpt-4, gpt-3.5 and the embedding models; `o200k_base` for other models),
    /// OpenAI's per-message overhead included, for every call that ended (successfully or
    /// cancelled) without usage. Runs as the first processor, on the dispatcher's worker,
    /// never on the request path; the tokenizer is loaded once, on first use. The bytes are
    /// untouched. Counts land within a few tokens of the provider's for text; images, audio,
    /// hidden reasoning tokens and other providers' tokenizers are not counted
    /// (`usage_source: "estimated"`). Needs the `estimate-usage` feature: without it,
    /// [`build`](crate::LlmObservabilityLayerBuilder::build) fails with
    /// [`BuildError::FeatureDisabled`](crate::BuildError::FeatureDisabled).
    Estimate,
}

#[cfg(feature = "estimate-usage")]
pub(crate) mod estimate;
