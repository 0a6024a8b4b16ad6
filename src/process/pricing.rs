//! The pricing processor: what each call cost, in US dollars, from its token usage and a table
//! of model prices ([`LlmCall::cost`]).
//!
//! Prices come from, in order of precedence: prices set in code ([`Pricing::with_price`]), a
//! LiteLLM `model_prices_and_context_window.json` loaded with [`Pricing::load_litellm`] (the file
//! many teams already keep current), and the built-in table of OpenAI models
//! ([`BUILT_IN_AS_OF`]).
//!
//! The rules:
//! - the model is the response's (`response_model`, e.g. a dated snapshot), else the
//!   requested one; each is looked up as it is, then without a date suffix, then without a
//!   provider prefix (`openai/`, `azure/`, ...), then without both (`gpt-4o-mini-2024-07-18` -> `gpt-4o-mini`,
//!   `gpt-3.5-turbo-0125` -> `gpt-3.5-turbo`);
//! - input tokens read from the prompt cache are priced at the cached-input rate (at the input
//!   rate when the model has none), the rest of the input at the input rate;
//! - output tokens at the output rate; reasoning tokens are already part of OpenAI's output
//!   count and are never added again;
//! - embeddings are priced by their input tokens;
//! - a cost the provider reported itself (OpenRouter's `usage.cost`, `pricing_source`
//!   `provider`) is kept: the processor does not price such a call from the table;
//! - an unknown model or missing usage leaves `cost` null, with the reason in
//!   [`LlmCall::processing_errors`]: never a guess.
//!
//! ```
//! use llm_observability::process::pricing::Pricing;
//! use llm_observability::{Endpoint, LlmCall, Processor, Usage};
//!
//! let pricing = Pricing::built_in();
//! let mut call = LlmCall::new(Endpoint::ChatCompletions);
//! call.request.model = Some("gpt-4o-mini".into());
//! call.response_model = Some("gpt-4o-mini-2024-07-18".into());
//! call.usage = Some(Usage::new(1_000_000, 1_000_000));
//! pricing.process(&mut call).unwrap();
//! let cost = call.cost.unwrap();
//! assert_eq!(cost.pricing_source, "built-in");
//! assert!((cost.total_usd - (0.15 + 0.60)).abs() < 1e-9);
//! ```

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use crate::payload::{Cost, LlmCall};
use crate::process::{ProcessError, Processor};

/// The [`Cost::pricing_source`] of a cost the provider reported in its response (OpenRouter's
/// `usage.cost`), which a [`Pricing`] processor keeps.
pub const PROVIDER_SOURCE: &str = "provider";

/// The date of the built-in price table: OpenAI's list prices (Standard tier) at that date, as
/// published on <https://openai.com/api/pricing/> (per 1M tokens).
pub const BUILT_IN_AS_OF: &str = "2025-08-07";

/// The built-in table: `(model, input, cached input, output)` in USD per 1M tokens, from
/// <https://openai.com/api/pricing/> as of [`BUILT_IN_AS_OF`]. `None` for cached input: the
/// model has no cached-input price. Embeddings have no output price (0).
const BUILT_IN: &[(&str, f64, Option<f64>, f64)] = &[
    ("gpt-5", 1.25, Some(0.125), 10.00),
    ("gpt-5-mini", 0.25, Some(0.025), 2.00),
    ("gpt-5-nano", 0.05, Some(0.005), 0.40),
    ("gpt-4.1", 2.00, Some(0.50), 8.00),
    ("gpt-4.1-mini", 0.40, Some(0.10), 1.60),
    ("gpt-4.1-nano", 0.10, Some(0.025), 0.40),
    ("gpt-4o", 2.50, Some(1.25), 10.00),
    ("gpt-4o-2024-05-13", 5.00, None, 15.00),
    ("gpt-4o-mini", 0.15, Some(0.075), 0.60),
    ("o1", 15.00, Some(7.50), 60.00),
    ("o1-mini", 1.10, Some(0.55), 4.40),
    ("o3", 2.00, Some(0.50), 8.00),
    ("o3-mini", 1.10, Some(0.55), 4.40),
    ("o4-mini", 1.10, Some(0.275), 4.40),
    ("gpt-4-turbo", 10.00, None, 30.00),
    ("gpt-4", 30.00, None, 60.00),
    ("gpt-3.5-turbo", 0.50, None, 1.50),
    ("text-embedding-3-small", 0.02, None, 0.0),
    ("text-embedding-3-large", 0.13, None, 0.0),
    ("text-embedding-ada-002", 0.10, None, 0.0),
];

/// One model's prices, in USD per token.
///
/// ```
/// use llm_observability::process::pricing::ModelPrice;
/// let price = ModelPrice::per_million(2.50, Some(1.25), 10.00);
/// assert_eq!(price.input_per_token, 2.5e-6);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct ModelPrice {
    /// Price of one input token.
    pub input_per_token: f64,
    /// Price of one output token (reasoning tokens included).
    pub output_per_token: f64,
    /// Price of one input token read from the prompt cache; `None`: the input price.
    pub cache_read_per_token: Option<f64>,
}

impl ModelPrice {
    /// Prices in USD per token.
    pub fn per_token(input: f64, cache_read: Option<f64>, output: f64) -> Self {
        ModelPrice {
            input_per_token: input,
            output_per_token: output,
            cache_read_per_token: cache_read,
        }
    }

    /// Prices in USD per 1M tokens, as price pages list them.
    pub fn per_million(input: f64, cache_read: Option<f64>, output: f64) -> Self {
        ModelPrice::per_token(input / 1e6, cache_read.map(|p| p / 1e6), output / 1e6)
    }

    fn is_valid(&self) -> bool {
        let ok = |p: f64| p.is_finite() && p >= 0.0;
        ok(self.input_per_token)
            && ok(self.output_per_token)
            && self.cache_read_per_token.is_none_or(ok)
    }
}

/// Why a price file could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PricingError {
    /// The file could not be read.
    #[error("cannot read price file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a JSON object of models in LiteLLM's format.
    #[error("price file {source_name} is not in LiteLLM's format: {source}")]
    Format {
        /// The file (or the name given to the text).
        source_name: String,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// A model's price is negative or not a number.
    #[error("price file {source_name}: model {model:?} has an invalid price")]
    InvalidPrice {
        /// The file (or the name given to the text).
        source_name: String,
        /// The model.
        model: String,
    },
    /// The file holds no model with an input price.
    #[error("price file {0} holds no model with input_cost_per_token")]
    Empty(String),
}

/// One entry of LiteLLM's `model_prices_and_context_window.json`; other fields are ignored.
#[derive(Deserialize)]
struct LiteLlmEntry {
    input_cost_per_token: Option<f64>,
    output_cost_per_token: Option<f64>,
    cache_read_input_token_cost: Option<f64>,
    litellm_provider: Option<String>,
    mode: Option<String>,
}

#[derive(Debug, Clone)]
struct Entry {
    price: ModelPrice,
    source: String,
}

/// The pricing processor: sets [`LlmCall::cost`] from the call's usage and a price table. See
/// the [module docs](self) for the rules.
///
/// Add it with [`LlmObservabilityLayerBuilder::processor`](crate::LlmObservabilityLayerBuilder::processor);
/// it runs once per call, off the request path.
#[derive(Debug, Clone, Default)]
pub struct Pricing {
    overrides: HashMap<String, Entry>,
    file: HashMap<String, Entry>,
    built_in: HashMap<String, Entry>,
}

impl Pricing {
    /// The built-in table of OpenAI models (dated [`BUILT_IN_AS_OF`]).
    pub fn built_in() -> Self {
        let built_in = BUILT_IN
            .iter()
            .map(|&(model, input, cached, output)| {
                let entry = Entry {
                    price: ModelPrice::per_million(input, cached, output),
                    source: "built-in".to_owned(),
                };
                (model.to_owned(), entry)
            })
            .collect();
        Pricing {
            built_in,
            ..Pricing::default()
        }
    }

    /// No prices at all: only what is loaded or set.
    pub fn empty() -> Self {
        Pricing::default()
    }

    /// Adds the prices of a LiteLLM `model_prices_and_context_window.json` file; they take
    /// precedence over the built-in table. Costs priced from it say `file:<path>`.
    pub fn load_litellm(self, path: impl AsRef<Path>) -> Result<Self, PricingError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| PricingError::Read {
            path: path.display().to_string(),
            source,
        })?;
        self.litellm_json(&text, &format!("file:{}", path.display()))
    }

    /// Like [`load_litellm`](Self::load_litellm), from the file's text; `source` is what
    /// [`Cost::pricing_source`] will say.
    pub fn litellm_json(mut self, text: &str, source: &str) -> Result<Self, PricingError> {
        let entries: HashMap<String, serde_json::Value> =
            serde_json::from_str(text).map_err(|e| PricingError::Format {
                source_name: source.to_owned(),
                source: e,
            })?;
        let mut loaded = 0usize;
        for (model, value) in entries {
            // `sample_spec` documents the format; entries of other shapes are not prices.
            let Ok(entry) = serde_json::from_value::<LiteLlmEntry>(value) else {
                continue;
            };
            let Some(input) = entry.input_cost_per_token else {
                continue;
            };
            let embedding = entry.mode.as_deref() == Some("embedding");
            let output = if embedding {
                0.0
            } else {
                match entry.output_cost_per_token {
                    Some(output) => output,
                    None => continue,
                }
            };
            let price = ModelPrice::per_token(input, entry.cache_read_input_token_cost, output);
            if !price.is_valid() {
                return Err(PricingError::InvalidPrice {
                    source_name: source.to_owned(),
                    model,
                });
            }
            let entry_of = || Entry {
                price,
                source: source.to_owned(),
            };
            // `gpt-4o` of provider `azure` is also found as `azure/gpt-4o`.
            if let Some(provider) = &entry.litellm_provider {
                if !model.contains('/') {
                    self.file
                        .entry(format!("{provider}/{model}"))
                        .or_insert_with(entry_of);
                }
            }
            self.file.insert(model, entry_of());
            loaded += 1;
        }
        if loaded == 0 {
            return Err(PricingError::Empty(source.to_owned()));
        }
        Ok(self)
    }

    /// Sets `model`'s price (USD per token); it takes precedence over files and the built-in
    /// table, and costs priced from it say `override`.
    pub fn with_price(mut self, model: impl Into<String>, price: ModelPrice) -> Self {
        self.overrides.insert(
            model.into(),
            Entry {
                price,
                source: "override".to_owned(),
            },
        );
        self
    }

    /// The price of `model` (the name as a call gives it) and the table entry it resolved to:
    /// the name as it is, then without a date suffix, then without a provider prefix, then
    /// without both.
    ///
    /// ```
    /// use llm_observability::process::pricing::Pricing;
    /// let pricing = Pricing::built_in();
    /// assert_eq!(pricing.resolve("openai/gpt-4o-mini-2024-07-18").unwrap().0, "gpt-4o-mini");
    /// assert_eq!(pricing.resolve("gpt-4o-2024-05-13").unwrap().0, "gpt-4o-2024-05-13");
    /// assert!(pricing.resolve("my-fine-tune").is_none());
    /// ```
    pub fn resolve(&self, model: &str) -> Option<(String, ModelPrice)> {
        self.lookup(model).map(|(name, e)| (name, e.price))
    }

    fn lookup(&self, model: &str) -> Option<(String, &Entry)> {
        for name in candidates(model) {
            for table in [&self.overrides, &self.file, &self.built_in] {
                if let Some(entry) = table.get(&name) {
                    return Some((name, entry));
                }
            }
        }
        None
    }

    /// What `call` cost, or why it cannot be said.
    pub fn cost_of(&self, call: &LlmCall) -> Result<Cost, String> {
        let mut models: Vec<&str> = [call.response_model.as_deref(), call.requested_model()]
            .into_iter()
            .flatten()
            .filter(|m| !m.is_empty())
            .collect();
        models.dedup();
        if models.is_empty() {
            return Err("no cost: the call names no model".to_owned());
        }
        let Some(entry) = models.iter().find_map(|m| self.lookup(m)).map(|(_, e)| e) else {
            return Err(format!(
                "no cost: no price for model {}",
                models
                    .iter()
                    .map(|m| format!("{m:?}"))
                    .collect::<Vec<_>>()
                    .join(" or ")
            ));
        };
        let usage = call
            .usage
            .as_ref()
            .ok_or("no cost: the call reported no token usage")?;
        let input = usage
            .input_tokens
            .ok_or("no cost: the usage has no input token count")?;
        let embeddings = call.operation == "embeddings";
        let output = match (embeddings, usage.output_tokens) {
            (true, output) => output.unwrap_or(0),
            (_, Some(output)) => output,
            (_, None) => return Err("no cost: the usage has no output token count".to_owned()),
        };
        let cached = usage.cached_input_tokens.unwrap_or(0).min(input);
        let price = entry.price;
        let cache_rate = price.cache_read_per_token.unwrap_or(price.input_per_token);
        let output_usd = if embeddings {
            0.0
        } else {
            output as f64 * price.output_per_token
        };
        Ok(Cost::new(
            (input - cached) as f64 * price.input_per_token,
            cached as f64 * cache_rate,
            output_usd,
            entry.source.clone(),
        ))
    }
}

impl Processor for Pricing {
    fn name(&self) -> &str {
        "pricing"
    }

    /// Sets `call.cost`, or leaves it null with a note in `processing_errors`. Never fails.
    /// A cost the provider reported (`pricing_source` [`PROVIDER_SOURCE`]) is kept as it is.
    fn process(&self, call: &mut LlmCall) -> Result<(), ProcessError> {
        if call
            .cost
            .as_ref()
            .is_some_and(|c| c.pricing_source == PROVIDER_SOURCE)
        {
            return Ok(());
        }
        match self.cost_of(call) {
            Ok(cost) => call.cost = Some(cost),
            Err(reason) => {
                call.cost = None;
                call.processing_errors.push(reason);
            }
        }
        Ok(())
    }
}

/// The names to look `model` up by, most specific first: as given, lowercased, without a
/// date suffix but with its provider prefix, without the prefix, without both.
fn candidates(model: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::with_capacity(4);
    let mut push = |name: &str| {
        if !name.is_empty() && !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
    };
    let lower = model.trim().to_ascii_lowercase();
    push(model);
    push(&lower);
    // A provider's own entry (`azure/gpt-4.1-mini`) before the plain one.
    if lower.contains('/') {
        if let Some(undated) = strip_date(&lower) {
            push(undated);
        }
    }
    let unprefixed = lower.rsplit_once('/').map_or(lower.as_str(), |(_, m)| m);
    push(unprefixed);
    if let Some(undated) = strip_date(unprefixed) {
        push(undated);
    }
    names
}

/// `name` without a trailing `-YYYY-MM-DD` or `-MMDD` snapshot date.
fn strip_date(name: &str) -> Option<&str> {
    let bytes = name.as_bytes();
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    let n = bytes.len();
    if n > 11 {
        let tail = &bytes[n - 11..];
        if tail[0] == b'-'
            && digits(&tail[1..5])
            && tail[5] == b'-'
            && digits(&tail[6..8])
            && tail[8] == b'-'
            && digits(&tail[9..11])
        {
            return Some(&name[..n - 11]);
        }
    }
    if n > 5 {
        let tail = &bytes[n - 5..];
        if tail[0] == b'-' && digits(&tail[1..]) {
            return Some(&name[..n - 5]);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_and_prefix_names_resolve() {
        let pricing = Pricing::built_in();
        for (name, want) in [
            ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
            ("openai/gpt-4o", "gpt-4o"),
            ("azure/gpt-4.1-mini-2025-04-14", "gpt-4.1-mini"),
            ("GPT-4o", "gpt-4o"),
            ("gpt-3.5-turbo-0125", "gpt-3.5-turbo"),
            ("o4-mini-2025-04-16", "o4-mini"),
            ("gpt-4o-2024-05-13", "gpt-4o-2024-05-13"),
            ("gpt-4o-2024-08-06", "gpt-4o"),
        ] {
            assert_eq!(
                pricing.resolve(name).map(|r| r.0).as_deref(),
                Some(want),
                "{name}"
            );
        }
        for unknown in [
            "ft:gpt-4o-mini-2024-07-18:org::x1",
            "davinci-002",
            "",
            "2024-07-18",
            "-0125",
        ] {
            assert!(pricing.resolve(unknown).is_none(), "{unknown}");
        }
    }

    #[test]
    fn every_built_in_price_is_valid() {
        for (model, entry) in &Pricing::built_in().built_in {
            assert!(entry.price.is_valid(), "{model}");
        }
    }
}
