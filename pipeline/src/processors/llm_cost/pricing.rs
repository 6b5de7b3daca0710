//! The built-in pricing table, used when a config gives none (and consulted
//! after the config's entries otherwise). USD per million tokens, as the
//! providers published them; override or extend it in the config.

use super::config::Price;

/// When the built-in prices were taken from the providers' price lists.
pub const PRICES_AS_OF: &str = "2024-12";

/// (provider, model glob, input, output, cached input) per million tokens.
const TABLE: &[(&str, &str, f64, f64, Option<f64>)] = &[
    ("openai", "gpt-4o-mini*", 0.15, 0.60, Some(0.075)),
    ("openai", "gpt-4o*", 2.50, 10.00, Some(1.25)),
    ("openai", "gpt-4-turbo*", 10.00, 30.00, None),
    ("openai", "gpt-4", 30.00, 60.00, None),
    ("openai", "gpt-4-0613", 30.00, 60.00, None),
    ("openai", "gpt-3.5-turbo*", 0.50, 1.50, None),
    ("openai", "o1-mini*", 3.00, 12.00, Some(1.50)),
    ("openai", "o1*", 15.00, 60.00, Some(7.50)),
    ("openai", "text-embedding-3-small", 0.02, 0.0, None),
    ("openai", "text-embedding-3-large", 0.13, 0.0, None),
    ("anthropic", "claude-3-5-sonnet*", 3.00, 15.00, Some(0.30)),
    ("anthropic", "claude-3-5-haiku*", 0.80, 4.00, Some(0.08)),
    ("anthropic", "claude-3-opus*", 15.00, 75.00, Some(1.50)),
    ("anthropic", "claude-3-haiku*", 0.25, 1.25, Some(0.03)),
    ("gemini", "gemini-1.5-pro*", 1.25, 5.00, None),
    ("gemini", "gemini-1.5-flash*", 0.075, 0.30, None),
    (
        "aws.bedrock",
        "amazon.titan-text-express-v1",
        0.20,
        0.60,
        None,
    ),
];

/// The built-in table as config entries.
pub fn defaults() -> Vec<Price> {
    TABLE
        .iter()
        .map(|&(provider, model, input, output, cached)| Price {
            model: model.to_string(),
            provider: Some(provider.to_string()),
            input_per_million: input,
            output_per_million: output,
            cached_input_per_million: cached,
        })
        .collect()
}
