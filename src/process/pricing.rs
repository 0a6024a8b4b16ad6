//! The pricing processor: what each call cost, in US dollars, from its token usage and a table
//! of model prices ([`LlmCall::cost`]).
//!
//! Prices come from, in order of precedence: prices set in code ([`Pricing::with_price`]), a
//! LiteLLM `model_prices_and_context_window.json` loaded with [`Pricing::load_litellm`] (the file
//! many teams already keep current), and the built-in tables of OpenAI models
//! ([`BUILT_IN_AS_OF`]) and Anthropic models ([`BUILT_IN_ANTHROPIC_AS_OF`]).
//!
//! The rules:
//! - the model is the one an [alias](Pricing::with_alias) of the response's or the requested
//!   model names (an Azure deployment priced as the model it deploys), else the response's
//!   (`response_model`, e.g. a dated snapshot), else the requested one; each is looked up as
//!   it is, then without a date suffix (or `-latest`), then without a provider prefix
//!   (`openai/`, `azure/`, ...), then without both (`gpt-4o-mini-2024-07-18` -> `gpt-4o-mini`,
//!   `gpt-3.5-turbo-0125` -> `gpt-3.5-turbo`, `claude-sonnet-4-5-20250929` ->
//!   `claude-sonnet-4-5`, `claude-3-5-haiku-latest` -> `claude-3-5-haiku`, `llama3:latest` ->
//!   `llama3`); before any of these, the name LiteLLM gives the model for the provider the
//!   call went to is tried (`gemini/gemini-2.5-pro` for the Gemini API,
//!   `vertex_ai-language-models/...` for Vertex AI, `bedrock_converse/...` for Bedrock,
//!   `ollama/llama3`, `azure/...`), so a provider's own price wins where it differs; a Bedrock
//!   inference profile (`arn:...:inference-profile/us.anthropic.claude-...`) is priced as the
//!   model it names;
//! - a call whose input is over a model's long-context threshold (LiteLLM's
//!   `input_cost_per_token_above_200k_tokens` and the like: Gemini 2.5 Pro, Claude Sonnet 4
//!   with the 1M context) is priced at that tier's rates for all of its tokens, as the
//!   providers bill it;
//! - input tokens read from the prompt cache are priced at the cached-input rate (at the input
//!   rate when the model has none), input tokens written to it (Anthropic's
//!   `cache_creation_input_tokens`) at the cache-write rate (at the input rate when the model
//!   has none; Anthropic's 1-hour cache writes, which cost more, at the 5-minute rate), the rest
//!   of the input at the input rate;
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

use std::collections::{HashMap, HashSet};
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

/// The date of the built-in Anthropic table: Anthropic's list prices (per 1M tokens, cache
/// writes at the 5-minute rate) of the models it holds, as published on
/// <https://docs.claude.com/en/docs/about-claude/pricing>, unchanged since the release of the
/// newest of them (Claude Haiku 4.5) at that date.
pub const BUILT_IN_ANTHROPIC_AS_OF: &str = "2025-10-15";

/// The built-in Anthropic table: `(model, input, cache read, cache write, output)` in USD per
/// 1M tokens, as of [`BUILT_IN_ANTHROPIC_AS_OF`]. Dated ids (`claude-sonnet-4-5-20250929`) and
/// `-latest` aliases resolve to these names.
const BUILT_IN_ANTHROPIC: &[(&str, f64, f64, f64, f64)] = &[
    ("claude-opus-4-1", 15.00, 1.50, 18.75, 75.00),
    ("claude-opus-4", 15.00, 1.50, 18.75, 75.00),
    ("claude-opus-4-0", 15.00, 1.50, 18.75, 75.00),
    ("claude-3-opus", 15.00, 1.50, 18.75, 75.00),
    ("claude-sonnet-4-5", 3.00, 0.30, 3.75, 15.00),
    ("claude-sonnet-4", 3.00, 0.30, 3.75, 15.00),
    ("claude-sonnet-4-0", 3.00, 0.30, 3.75, 15.00),
    ("claude-3-7-sonnet", 3.00, 0.30, 3.75, 15.00),
    ("claude-3-5-sonnet", 3.00, 0.30, 3.75, 15.00),
    ("claude-haiku-4-5", 1.00, 0.10, 1.25, 5.00),
    ("claude-3-5-haiku", 0.80, 0.08, 1.00, 4.00),
    ("claude-3-haiku", 0.25, 0.03, 0.30, 1.25),
];

/// One model's prices, in USD per token.
///
/// ```
/// use llm_observability::process::pricing::ModelPrice;
/// let price = ModelPrice::per_million(2.50, Some(1.25), 10.00);
/// assert_eq!(price.input_per_token, 2.5e-6);
/// // Anthropic's Claude Sonnet 4.5: input, cache read, cache write, output.
/// let sonnet = ModelPrice::per_million_with_cache_write(3.00, Some(0.30), Some(3.75), 15.00);
/// assert_eq!(sonnet.cache_write_per_token, Some(3.75e-6));
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
    /// Price of one input token written to the prompt cache (Anthropic's cache writes);
    /// `None`: the input price.
    pub cache_write_per_token: Option<f64>,
}

impl ModelPrice {
    /// Prices in USD per token (cache writes at the input price).
    pub fn per_token(input: f64, cache_read: Option<f64>, output: f64) -> Self {
        ModelPrice::per_token_with_cache_write(input, cache_read, None, output)
    }

    /// Prices in USD per 1M tokens, as price pages list them (cache writes at the input price).
    pub fn per_million(input: f64, cache_read: Option<f64>, output: f64) -> Self {
        ModelPrice::per_million_with_cache_write(input, cache_read, None, output)
    }

    /// Prices in USD per token, with a price for tokens written to the prompt cache.
    pub fn per_token_with_cache_write(
        input: f64,
        cache_read: Option<f64>,
        cache_write: Option<f64>,
        output: f64,
    ) -> Self {
        ModelPrice {
            input_per_token: input,
            output_per_token: output,
            cache_read_per_token: cache_read,
            cache_write_per_token: cache_write,
        }
    }

    /// Prices in USD per 1M tokens, with a price for tokens written to the prompt cache (as
    /// Anthropic's price page lists them: input, cache hits, cache writes, output).
    pub fn per_million_with_cache_write(
        input: f64,
        cache_read: Option<f64>,
        cache_write: Option<f64>,
        output: f64,
    ) -> Self {
        let per_token = |p: f64| p / 1e6;
        ModelPrice::per_token_with_cache_write(
            per_token(input),
            cache_read.map(per_token),
            cache_write.map(per_token),
            per_token(output),
        )
    }

    fn is_valid(&self) -> bool {
        let ok = |p: f64| p.is_finite() && p >= 0.0;
        ok(self.input_per_token)
            && ok(self.output_per_token)
            && self.cache_read_per_token.is_none_or(ok)
            && self.cache_write_per_token.is_none_or(ok)
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

/// One entry of LiteLLM's `model_prices_and_context_window.json`: the fields read by name,
/// and the rest, where the long-context tiers (`input_cost_per_token_above_200k_tokens`, ...)
/// are found.
#[derive(Deserialize)]
struct LiteLlmEntry {
    input_cost_per_token: Option<f64>,
    output_cost_per_token: Option<f64>,
    cache_read_input_token_cost: Option<f64>,
    cache_creation_input_token_cost: Option<f64>,
    litellm_provider: Option<String>,
    mode: Option<String>,
    #[serde(flatten)]
    other: HashMap<String, serde_json::Value>,
}

impl LiteLlmEntry {
    /// The entry's long-context tiers, lowest threshold first: for each `above_{N}k_tokens`
    /// suffix with an input price, the prices that apply to a whole call whose input is over
    /// `N` thousand tokens (LiteLLM's and the providers' rule); a tier price the file does not
    /// give is the base price. Tiers of other service classes (`..._priority`, `..._batches`)
    /// are not tiers of this price.
    fn tiers(&self, base: ModelPrice) -> Vec<(u64, ModelPrice)> {
        const INPUT: &str = "input_cost_per_token_above_";
        let mut tiers: Vec<(u64, ModelPrice)> = self
            .other
            .iter()
            .filter_map(|(key, value)| {
                let suffix = key.strip_prefix(INPUT)?;
                let thousands: u64 = suffix.strip_suffix("k_tokens")?.parse().ok()?;
                let rate = |field: &str| {
                    self.other
                        .get(&format!("{field}_above_{suffix}"))
                        .and_then(serde_json::Value::as_f64)
                };
                let price = ModelPrice {
                    input_per_token: value.as_f64()?,
                    output_per_token: rate("output_cost_per_token")
                        .unwrap_or(base.output_per_token),
                    cache_read_per_token: rate("cache_read_input_token_cost")
                        .or(base.cache_read_per_token),
                    cache_write_per_token: rate("cache_creation_input_token_cost")
                        .or(base.cache_write_per_token),
                };
                Some((thousands.checked_mul(1000)?, price))
            })
            .collect();
        tiers.sort_by_key(|&(threshold, _)| threshold);
        tiers
    }
}

#[derive(Debug, Clone)]
struct Entry {
    price: ModelPrice,
    /// Long-context prices: `(threshold, price)`, lowest threshold first; the price of the
    /// highest threshold a call's input is over applies to the whole call.
    tiers: Vec<(u64, ModelPrice)>,
    source: String,
}

impl Entry {
    fn new(price: ModelPrice, source: &str) -> Self {
        Entry {
            price,
            tiers: Vec::new(),
            source: source.to_owned(),
        }
    }

    /// The price of a call with `input` input tokens (the cache included).
    fn price_for(&self, input: u64) -> ModelPrice {
        self.tiers
            .iter()
            .rev()
            .find(|&&(threshold, _)| input > threshold)
            .map_or(self.price, |&(_, price)| price)
    }
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
    /// Lowercased alias -> the model it is priced as.
    aliases: HashMap<String, String>,
    /// The provider prefixes (`gemini`, `azure`, ...) of the price file's keys: a call's
    /// provider's own entry is only looked for under a prefix the file holds.
    file_prefixes: HashSet<String>,
}

impl Pricing {
    /// The built-in tables of OpenAI models (dated [`BUILT_IN_AS_OF`]) and Anthropic models
    /// (dated [`BUILT_IN_ANTHROPIC_AS_OF`]).
    pub fn built_in() -> Self {
        let entry = |price| Entry::new(price, "built-in");
        let openai = BUILT_IN.iter().map(|&(model, input, cached, output)| {
            let price = ModelPrice::per_million(input, cached, output);
            (model.to_owned(), entry(price))
        });
        let anthropic =
            BUILT_IN_ANTHROPIC
                .iter()
                .map(|&(model, input, cache_read, cache_write, output)| {
                    let price = ModelPrice::per_million_with_cache_write(
                        input,
                        Some(cache_read),
                        Some(cache_write),
                        output,
                    );
                    (model.to_owned(), entry(price))
                });
        let built_in = openai.chain(anthropic).collect();
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
            let price = ModelPrice::per_token_with_cache_write(
                input,
                entry.cache_read_input_token_cost,
                entry.cache_creation_input_token_cost,
                output,
            );
            let tiers = entry.tiers(price);
            if !price.is_valid() || tiers.iter().any(|(_, tier)| !tier.is_valid()) {
                return Err(PricingError::InvalidPrice {
                    source_name: source.to_owned(),
                    model,
                });
            }
            let entry_of = || Entry {
                price,
                tiers: tiers.clone(),
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
        self.file_prefixes = (self.file.keys())
            .filter_map(|key| Some(key.split_once('/')?.0.to_owned()))
            .collect();
        Ok(self)
    }

    /// Sets `model`'s price (USD per token); it takes precedence over files and the built-in
    /// table, and costs priced from it say `override`.
    pub fn with_price(mut self, model: impl Into<String>, price: ModelPrice) -> Self {
        self.overrides
            .insert(model.into(), Entry::new(price, "override"));
        self
    }

    /// Prices calls that name `alias` (an Azure deployment, a gateway's route name) as
    /// `model`: an alias of the requested or the response's model wins over the response's
    /// own name. `model` resolves by the usual rules (a dated snapshot, a provider prefix);
    /// `alias` is matched whole, in any case.
    ///
    /// ```
    /// use llm_observability::process::pricing::Pricing;
    /// let pricing = Pricing::built_in().with_alias("my-gpt4o", "gpt-4o");
    /// assert_eq!(pricing.resolve("My-GPT4o").unwrap().0, "gpt-4o");
    /// ```
    pub fn with_alias(mut self, alias: impl Into<String>, model: impl Into<String>) -> Self {
        let alias = alias.into().trim().to_ascii_lowercase();
        self.aliases.insert(alias, model.into());
        self
    }

    /// The price of `model` (the name as a call gives it) and the table entry it resolved to:
    /// the model it is an [alias](Self::with_alias) of, else the name as it is, then without a
    /// date suffix, then without a provider prefix, then without both.
    ///
    /// ```
    /// use llm_observability::process::pricing::Pricing;
    /// let pricing = Pricing::built_in();
    /// assert_eq!(pricing.resolve("openai/gpt-4o-mini-2024-07-18").unwrap().0, "gpt-4o-mini");
    /// assert_eq!(pricing.resolve("gpt-4o-2024-05-13").unwrap().0, "gpt-4o-2024-05-13");
    /// assert_eq!(pricing.resolve("claude-sonnet-4-5-20250929").unwrap().0, "claude-sonnet-4-5");
    /// assert!(pricing.resolve("my-fine-tune").is_none());
    /// ```
    pub fn resolve(&self, model: &str) -> Option<(String, ModelPrice)> {
        self.alias_of(model)
            .and_then(|target| self.lookup(target))
            .or_else(|| self.lookup(model))
            .map(|(name, e)| (name, e.price))
    }

    /// The model `name` is an alias of.
    fn alias_of(&self, name: &str) -> Option<&str> {
        if self.aliases.is_empty() {
            return None;
        }
        let key = name.trim().to_ascii_lowercase();
        self.aliases.get(&key).map(String::as_str)
    }

    fn lookup(&self, model: &str) -> Option<(String, &Entry)> {
        lookup_in(&[&self.overrides, &self.file, &self.built_in], model)
    }

    /// `model`'s entry in the price file under the name LiteLLM gives it for a provider
    /// (`gemini/gemini-2.5-pro` for the Gemini API, `vertex_ai-language-models/gemini-2.5-pro`
    /// for Vertex AI): as it is, lowercased, or without a date suffix. A model already named
    /// with a prefix is not prefixed again. (The built-in tables name no provider.)
    fn lookup_as_served_by(&self, prefixes: &[&str], model: &str) -> Option<(String, &Entry)> {
        let mut held = prefixes
            .iter()
            .filter(|prefix| self.file_prefixes.contains(**prefix))
            .peekable();
        if held.peek().is_none() || model.contains('/') {
            return None;
        }
        let lower = model.trim().to_ascii_lowercase();
        let undated = strip_date(&lower);
        let mut name = String::with_capacity(64);
        held.find_map(|prefix| {
            let names = [Some(model.trim()), Some(lower.as_str()), undated];
            names.into_iter().flatten().find_map(|model| {
                name.clear();
                name.push_str(prefix);
                name.push('/');
                name.push_str(model);
                self.file.get(&name).map(|entry| (name.clone(), entry))
            })
        })
    }

    /// What `call` cost by this table, or why it cannot be said.
    pub fn cost_of(&self, call: &LlmCall) -> Result<Cost, String> {
        let named = [call.response_model.as_deref(), call.requested_model()];
        let named = named.into_iter().flatten().filter(|m| !m.is_empty());
        // An alias is the user's word on what a name is: it goes first.
        let aliased = named.clone().filter_map(|m| self.alias_of(m));
        let mut models: Vec<&str> = Vec::with_capacity(2);
        for model in aliased.chain(named) {
            if !models.contains(&model) {
                models.push(model);
            }
        }
        if models.is_empty() {
            return Err("no cost: the call names no model".to_owned());
        }
        // A price set in code first, then the provider's own entry, then any.
        let prefixes = litellm_prefixes(&call.provider);
        let Some(entry) = models
            .iter()
            .filter(|_| !self.overrides.is_empty())
            .find_map(|m| lookup_in(&[&self.overrides], m))
            .or_else(|| {
                models
                    .iter()
                    .find_map(|m| self.lookup_as_served_by(prefixes, m))
            })
            .or_else(|| models.iter().find_map(|m| self.lookup(m)))
            .map(|(_, e)| e)
        else {
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
        // Either says so (a record made by hand may set only its endpoint).
        let embeddings =
            call.operation == "embeddings" || call.endpoint.operation() == "embeddings";
        let output = match (embeddings, usage.output_tokens) {
            (true, output) => output.unwrap_or(0),
            (_, Some(output)) => output,
            (_, None) => return Err("no cost: the usage has no output token count".to_owned()),
        };
        // Both cache counts are part of `input`; a count past what is left is cut, so no
        // part is ever negative.
        let cache_read = usage.cached_input_tokens.unwrap_or(0).min(input);
        let cache_write = usage
            .cache_creation_input_tokens
            .unwrap_or(0)
            .min(input - cache_read);
        let uncached = input - cache_read - cache_write;
        let price = entry.price_for(input);
        let read_rate = price.cache_read_per_token.unwrap_or(price.input_per_token);
        let write_rate = price.cache_write_per_token.unwrap_or(price.input_per_token);
        let output_usd = if embeddings {
            0.0
        } else {
            output as f64 * price.output_per_token
        };
        Ok(Cost::with_cache_write(
            uncached as f64 * price.input_per_token,
            cache_read as f64 * read_rate,
            cache_write as f64 * write_rate,
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

/// `model`'s entry in the first of `tables` that holds one of its [`candidates`], most
/// specific name first.
fn lookup_in<'a>(
    tables: &[&'a HashMap<String, Entry>],
    model: &str,
) -> Option<(String, &'a Entry)> {
    for name in candidates(model) {
        for table in tables {
            if let Some(entry) = table.get(&name) {
                return Some((name, entry));
            }
        }
    }
    None
}

/// The `litellm_provider` names (prefixes of LiteLLM's keys) of the provider a call went to,
/// the provider's own price first: the Gemini API and Vertex AI price some models differently,
/// Azure and OpenAI too.
fn litellm_prefixes(provider: &str) -> &'static [&'static str] {
    match provider {
        "gcp.gemini" => &["gemini"],
        "gcp.vertex_ai" => &["vertex_ai-language-models", "vertex_ai"],
        "aws.bedrock" => &["bedrock_converse", "bedrock"],
        "azure.ai.openai" => &["azure"],
        "ollama" => &["ollama", "ollama_chat"],
        "anthropic" => &["anthropic"],
        "openai" => &["openai"],
        _ => &[],
    }
}

/// The names to look `model` up by, most specific first: as given, lowercased, without a
/// date suffix (or `-latest`) but with its provider prefix, without the prefix, without both.
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

/// `name` without a trailing `-YYYY-MM-DD`, `-YYYYMMDD` (Anthropic) or `-MMDD` snapshot
/// date, or a trailing `-latest` (or Ollama's `:latest` tag).
fn strip_date(name: &str) -> Option<&str> {
    let latest = name
        .strip_suffix("-latest")
        .or_else(|| name.strip_suffix(":latest"));
    if let Some(base) = latest.filter(|b| !b.is_empty()) {
        return Some(base);
    }
    let bytes = name.as_bytes();
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    let n = bytes.len();
    if n > 9 && bytes[n - 9] == b'-' && digits(&bytes[n - 8..]) {
        return Some(&name[..n - 9]);
    }
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
            ("claude-3-5-haiku-20241022", "claude-3-5-haiku"),
            ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
            ("claude-3-7-sonnet-20250219", "claude-3-7-sonnet"),
            ("claude-3-haiku-20240307", "claude-3-haiku"),
            ("claude-opus-4-1-20250805", "claude-opus-4-1"),
            ("claude-opus-4-20250514", "claude-opus-4"),
            ("claude-haiku-4-5", "claude-haiku-4-5"),
            ("claude-3-5-sonnet-latest", "claude-3-5-sonnet"),
            ("anthropic/claude-3-opus-20240229", "claude-3-opus"),
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
            "-latest",
            "-20250929",
        ] {
            assert!(pricing.resolve(unknown).is_none(), "{unknown}");
        }
    }

    #[test]
    fn every_built_in_price_is_valid() {
        let pricing = Pricing::built_in();
        assert_eq!(
            pricing.built_in.len(),
            BUILT_IN.len() + BUILT_IN_ANTHROPIC.len(),
            "no name twice"
        );
        for (model, entry) in &pricing.built_in {
            let price = entry.price;
            assert!(price.is_valid(), "{model}");
            assert!(price.input_per_token > 0.0, "{model}");
            // A cache read never costs more than input, nor a cache write less.
            let read = price.cache_read_per_token.unwrap_or(price.input_per_token);
            let write = price.cache_write_per_token.unwrap_or(price.input_per_token);
            assert!(read <= price.input_per_token, "{model}");
            assert!(write >= price.input_per_token, "{model}");
        }
        for &(model, input, read, write, output) in BUILT_IN_ANTHROPIC {
            // Anthropic's multipliers, as its page rounds them (Claude 3 Haiku: 0.03, 0.30):
            // reads 0.1x input, 5-minute writes 1.25x input.
            assert!((read / (input * 0.1) - 1.0).abs() < 0.25, "{model}");
            assert!((write / (input * 1.25) - 1.0).abs() < 0.05, "{model}");
            assert!(output > input, "{model}");
        }
    }

    fn anthropic_call(model: &str, input: u64, read: u64, write: u64, output: u64) -> LlmCall {
        let mut call = LlmCall::new(crate::Endpoint::ChatCompletions);
        call.request_model = Some(model.into());
        let mut usage = crate::Usage::new(input, output);
        usage.cached_input_tokens = Some(read);
        usage.cache_creation_input_tokens = Some(write);
        call.usage = Some(usage);
        call
    }

    #[test]
    fn cache_writes_are_priced_at_the_write_rate_and_no_part_is_negative() {
        let pricing = Pricing::built_in();
        // claude-sonnet-4-5: 3 / 0.30 read / 3.75 write / 15 per 1M. 10_000 input tokens of
        // which 6_000 read and 3_000 written: 1_000 uncached.
        let call = anthropic_call("claude-sonnet-4-5-20250929", 10_000, 6_000, 3_000, 500);
        let cost = pricing.cost_of(&call).unwrap();
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        assert!(close(cost.input_usd, 0.003), "{cost:?}");
        assert!(close(cost.cache_read_usd, 0.0018), "{cost:?}");
        assert!(close(cost.cache_write_usd, 0.01125), "{cost:?}");
        assert!(close(cost.output_usd, 0.0075), "{cost:?}");
        assert!(close(cost.total_usd, 0.02355), "{cost:?}");
        // Counts past the input (a provider's inconsistency) are cut, never negative.
        let odd = anthropic_call("claude-3-haiku", 100, 80, 80, 0);
        let cost = pricing.cost_of(&odd).unwrap();
        assert_eq!(cost.input_usd, 0.0);
        assert!(close(cost.cache_read_usd, 80.0 * 0.03e-6));
        assert!(close(cost.cache_write_usd, 20.0 * 0.30e-6));
        // No write price: writes at the input price.
        let plain = Pricing::empty().with_price("m", ModelPrice::per_million(1.0, None, 2.0));
        let cost = plain
            .cost_of(&anthropic_call("m", 1000, 0, 400, 0))
            .unwrap();
        assert!(close(cost.input_usd + cost.cache_write_usd, 0.001));
    }

    #[test]
    fn aliases_win_over_the_response_model_and_resolve_by_the_usual_rules() {
        let pricing = Pricing::built_in()
            .with_alias("My-GPT4o", "gpt-4o-2024-08-06")
            .with_alias("cheap", "no-such-model");
        let mut call = LlmCall::new(crate::Endpoint::ChatCompletions);
        call.request_model = Some("my-gpt4o".into());
        call.response_model = Some("gpt-4o-mini-2024-07-18".into());
        call.usage = Some(crate::Usage::new(1_000_000, 0));
        assert_eq!(pricing.cost_of(&call).unwrap().total_usd, 2.50);
        // An alias without a price falls back to the names the call gives.
        call.request_model = Some("cheap".into());
        assert_eq!(pricing.cost_of(&call).unwrap().total_usd, 0.15);
        call.response_model = None;
        let error = pricing.cost_of(&call).unwrap_err();
        assert!(error.contains("\"no-such-model\" or \"cheap\""), "{error}");
    }

    #[test]
    fn a_provider_reported_cost_is_kept() {
        let mut call = anthropic_call("gpt-4o", 1000, 0, 0, 10);
        call.cost = Some(Cost::new(0.0, 0.0, 0.0, PROVIDER_SOURCE));
        call.cost.as_mut().unwrap().total_usd = 0.42;
        Pricing::built_in().process(&mut call).unwrap();
        assert_eq!(call.cost.as_ref().unwrap().total_usd, 0.42);
        assert!(call.processing_errors.is_empty());
        // Any other cost is replaced by the table's.
        call.cost.as_mut().unwrap().pricing_source = "override".into();
        Pricing::built_in().process(&mut call).unwrap();
        assert_eq!(call.cost.unwrap().pricing_source, "built-in");
    }
}
