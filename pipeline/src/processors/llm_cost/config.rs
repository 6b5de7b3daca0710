//! `llm_cost` config: a pricing table and where to write the cost.

use serde::Deserialize;

use crate::component::{ConfigError, Validate};

/// One row of the pricing table.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Model name, or a glob with `*` and `?` (`gpt-4o*`).
    pub model: String,
    /// Only for spans whose `gen_ai.system` / `gen_ai.provider.name` is this.
    #[serde(default)]
    pub provider: Option<String>,
    /// USD per million input tokens.
    pub input_per_million: f64,
    /// USD per million output tokens.
    pub output_per_million: f64,
    /// USD per million cached input tokens; without it they cost as input.
    #[serde(default)]
    pub cached_input_per_million: Option<f64>,
}

/// `llm_cost` processor config.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LlmCostConfig {
    /// Prices, consulted before the built-in table.
    pub pricing: Vec<Price>,
    /// Also consult the built-in table (after `pricing`).
    pub use_default_pricing: bool,
    /// The span attribute the cost (USD, double) is written to.
    pub cost_attribute: String,
}

impl Default for LlmCostConfig {
    fn default() -> Self {
        LlmCostConfig {
            pricing: Vec::new(),
            use_default_pricing: true,
            cost_attribute: "gen_ai.usage.cost".into(),
        }
    }
}

impl Validate for LlmCostConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        for (i, p) in self.pricing.iter().enumerate() {
            let at = |k: &str| format!("pricing.{i}.{k}");
            if p.model.is_empty() {
                return Err(ConfigError::new(at("model"), "is required"));
            }
            for (k, v) in [
                ("input_per_million", Some(p.input_per_million)),
                ("output_per_million", Some(p.output_per_million)),
                ("cached_input_per_million", p.cached_input_per_million),
            ] {
                if v.is_some_and(|v| !v.is_finite() || v < 0.0) {
                    return Err(ConfigError::new(at(k), "must be a non-negative number"));
                }
            }
        }
        if self.pricing.is_empty() && !self.use_default_pricing {
            return Err(ConfigError::new(
                "pricing",
                "is empty and use_default_pricing is false: nothing could be priced",
            ));
        }
        if self.cost_attribute.is_empty() {
            return Err(ConfigError::new("cost_attribute", "must not be empty"));
        }
        Ok(())
    }
}
