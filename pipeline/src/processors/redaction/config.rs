//! `redaction` config: otelcol's keys, plus presets and the GenAI switch.

use serde::Deserialize;

use crate::component::{ConfigError, Validate};

/// `redaction` processor config.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RedactionConfig {
    /// Keep every attribute key (otherwise only `allowed_keys` survive).
    pub allow_all_keys: bool,
    /// Keys kept when `allow_all_keys` is false; empty removes every attribute.
    pub allowed_keys: Vec<String>,
    /// Keys passed through untouched: never removed, never masked.
    pub ignored_keys: Vec<String>,
    /// Regexes on keys: values of matching keys are masked whole.
    pub blocked_key_patterns: Vec<String>,
    /// Regexes on values: the matching parts are masked.
    pub blocked_values: Vec<String>,
    /// Regexes on values: values matching one are never masked.
    pub allowed_values: Vec<String>,
    /// Built-in value detectors by name (see the docs).
    pub blocked_value_presets: Vec<String>,
    /// Replace masked parts by their hash: `sha256` (default), `sha1`, `md5`,
    /// `sha3` (SHA3-256); `none` masks with `****`.
    pub hash_function: String,
    /// Summary attributes added to changed items: `debug`, `info`, `silent`.
    pub summary: String,
    /// Remove GenAI prompt and completion content (attributes and events).
    pub drop_genai_content: bool,
}

impl Default for RedactionConfig {
    fn default() -> Self {
        RedactionConfig {
            allow_all_keys: false,
            allowed_keys: Vec::new(),
            ignored_keys: Vec::new(),
            blocked_key_patterns: Vec::new(),
            blocked_values: Vec::new(),
            allowed_values: Vec::new(),
            blocked_value_presets: Vec::new(),
            hash_function: "sha256".into(),
            summary: "silent".into(),
            drop_genai_content: false,
        }
    }
}

impl Validate for RedactionConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        super::Redactor::new(self).map(|_| ())
    }
}
