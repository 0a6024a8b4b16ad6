//! Cost and privacy flags: `--redact content`, `--pricing FILE`, `--model-alias
//! DEPLOYMENT=MODEL`, and the cost totals per model printed at shutdown.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use llm_observability::{
    LlmCall, LlmObservabilityLayerBuilder, Pricing, ProcessError, Processor, Redaction,
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What `--redact` removes from the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum RedactWhat {
    /// Message and output text (roles, tool names, lengths, token counts, cost and timing stay).
    Content,
}

/// Cost and privacy flags.
#[derive(Debug, clap::Args)]
pub(crate) struct CostFlags {
    /// Remove content from every record: with `content`, each string of the messages, prompt,
    /// input, tool definitions, response and error message becomes "[redacted: N chars]".
    ///
    /// Roles, content-part types, tool and function names, ids, finish reasons, token counts,
    /// cost, timing and status stay. Without this flag, content is kept, but base64 data
    /// (images, audio) over 256 bytes is always cut to a short marker.
    #[arg(long, value_enum, value_name = "WHAT")]
    redact: Option<RedactWhat>,
    /// Model prices in LiteLLM's model_prices_and_context_window.json format.
    ///
    /// Its prices take precedence over the built-in table of OpenAI models. Each record's
    /// `cost` (USD) is computed from its usage; a call whose model has no price, or that
    /// reported no usage, gets `cost: null` and a note in `processing_errors`. The totals per
    /// model are logged at shutdown.
    #[arg(long, value_name = "FILE")]
    pricing: Option<PathBuf>,
    /// Price calls to DEPLOYMENT as MODEL (repeatable), e.g. an Azure deployment:
    /// `--model-alias my-gpt4o=gpt-4o`.
    ///
    /// DEPLOYMENT is matched whole, in any case, against the requested and the response's
    /// model; MODEL is looked up in the prices like any model name (a dated snapshot, a
    /// provider prefix).
    #[arg(long = "model-alias", value_name = "DEPLOYMENT=MODEL", value_parser = parse_alias)]
    model_aliases: Vec<(String, String)>,
}

/// `DEPLOYMENT=MODEL`: one `=`, both names non-empty (spaces around them trimmed).
fn parse_alias(text: &str) -> Result<(String, String), String> {
    let Some((alias, model)) = text.split_once('=') else {
        return Err("expected DEPLOYMENT=MODEL (e.g. my-gpt4o=gpt-4o)".to_owned());
    };
    let (alias, model) = (alias.trim(), model.trim());
    if alias.is_empty() || model.is_empty() {
        return Err("expected DEPLOYMENT=MODEL with both names non-empty".to_owned());
    }
    if model.contains('=') {
        return Err("expected one '=' between DEPLOYMENT and MODEL".to_owned());
    }
    Ok((alias.to_owned(), model.to_owned()))
}

impl CostFlags {
    /// Adds redaction, pricing and the cost totals to the layer.
    pub(crate) fn apply(
        &self,
        builder: LlmObservabilityLayerBuilder,
    ) -> Result<(LlmObservabilityLayerBuilder, CostTotals), BoxError> {
        let redaction = match self.redact {
            Some(RedactWhat::Content) => Redaction::content(),
            None => Redaction::keep_all(),
        };
        let mut pricing = Pricing::built_in();
        if let Some(path) = &self.pricing {
            pricing = pricing.load_litellm(path)?;
        }
        let totals = CostTotals::default();
        let mut builder = builder
            .redact(redaction)
            .pricing(pricing)
            .processor(totals.clone());
        for (alias, model) in &self.model_aliases {
            builder = builder.model_alias(alias, model);
        }
        Ok((builder, totals))
    }
}

/// Per model: calls, calls with a cost, and their total in USD.
#[derive(Debug, Default, Clone, Copy)]
struct ModelTotal {
    calls: u64,
    priced: u64,
    usd: f64,
}

/// Sums each call's cost per model (the response's model, else the requested one).
#[derive(Debug, Default, Clone)]
pub(crate) struct CostTotals(Arc<Mutex<BTreeMap<String, ModelTotal>>>);

impl Processor for CostTotals {
    fn name(&self) -> &str {
        "cost totals"
    }

    fn process(&self, call: &mut LlmCall) -> Result<(), ProcessError> {
        let model = call
            .response_model
            .as_deref()
            .or(call.requested_model())
            .unwrap_or("(unknown model)")
            .to_owned();
        let mut totals = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let total = totals.entry(model).or_default();
        total.calls += 1;
        if let Some(cost) = &call.cost {
            total.priced += 1;
            total.usd += cost.total_usd;
        }
        Ok(())
    }
}

impl CostTotals {
    /// Logs one line per model and the sum: `cost gpt-4o-mini: $0.000123 for 2 of 2 calls`.
    pub(crate) fn report(&self) {
        let totals = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut sum = 0.0;
        for (model, total) in totals.iter() {
            sum += total.usd;
            tracing::info!(
                "cost {model}: ${:.6} for {} of {} calls",
                total.usd,
                total.priced,
                total.calls
            );
        }
        tracing::info!("cost total: ${sum:.6}");
    }
}
