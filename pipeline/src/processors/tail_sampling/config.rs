//! `tail_sampling` config: otelcol's keys; `decision_wait` defaults to 10 s.

use std::time::Duration;

use serde::Deserialize;

use crate::component::{ConfigError, Validate};

/// `decision_cache`: decisions remembered for spans that arrive late.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DecisionCache {
    /// Sampled trace ids remembered.
    pub sampled_cache_size: usize,
    /// Not-sampled trace ids remembered.
    pub non_sampled_cache_size: usize,
}

/// `latency` policy.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Latency {
    /// Sample traces lasting at least this long (first start to last end).
    pub threshold_ms: i64,
    /// And at most this long, when non-zero.
    pub upper_threshold_ms: i64,
}

/// `status_code` policy.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StatusCode {
    /// `OK`, `ERROR`, `UNSET`.
    pub status_codes: Vec<String>,
}

/// `numeric_attribute` policy.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NumericAttribute {
    /// Attribute key.
    pub key: String,
    /// Inclusive lower bound (none when absent).
    pub min_value: Option<f64>,
    /// Inclusive upper bound (none when absent).
    pub max_value: Option<f64>,
    /// Sample traces with no span in range instead.
    pub invert_match: bool,
}

/// `string_attribute` policy.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StringAttribute {
    /// Attribute key.
    pub key: String,
    /// Values (or regexes, with `enabled_regex_matching`).
    pub values: Vec<String>,
    /// Treat `values` as regexes.
    pub enabled_regex_matching: bool,
    /// With regexes: how many values' match results are cached (0 = none).
    pub cache_max_size: usize,
    /// Sample traces with no matching span instead.
    pub invert_match: bool,
}

/// `boolean_attribute` policy.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BooleanAttribute {
    /// Attribute key.
    pub key: String,
    /// Required value.
    pub value: bool,
    /// Sample traces with no matching span instead.
    pub invert_match: bool,
}

/// `probabilistic` policy.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Probabilistic {
    /// Share of traces sampled, 0–100.
    pub sampling_percentage: f64,
    /// Salt for the trace-id hash (otelcol's default salt).
    pub hash_salt: String,
}

impl Default for Probabilistic {
    fn default() -> Self {
        Probabilistic {
            sampling_percentage: 0.0,
            hash_salt: "default-hash-seed".into(),
        }
    }
}

/// `span_count` policy.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SpanCount {
    /// At least this many spans.
    pub min_spans: usize,
    /// At most this many, when non-zero.
    pub max_spans: usize,
}

/// `and` policy: every sub-policy must sample.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct And {
    /// The sub-policies.
    pub and_sub_policy: Vec<PolicyConfig>,
}

/// `drop` policy: when every sub-policy matches, the trace is dropped
/// whatever other policies say.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Drop {
    /// The sub-policies.
    pub drop_sub_policy: Vec<PolicyConfig>,
}

/// `rate_limiting` policy.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimiting {
    /// Spans sampled per second (a trace is taken whole or not at all).
    pub spans_per_second: i64,
}

/// `trace_state` policy.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TraceState {
    /// The tracestate key.
    pub key: String,
    /// Values that sample.
    pub values: Vec<String>,
}

/// One `rate_allocation` entry of a `composite` policy.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RateAllocation {
    /// The sub-policy's name.
    pub policy: String,
    /// Its share of `max_total_spans_per_second`, in percent.
    pub percent: f64,
}

/// `composite` policy.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Composite {
    /// Spans per second the whole policy may sample.
    pub max_total_spans_per_second: i64,
    /// Sub-policy names in evaluation order.
    pub policy_order: Vec<String>,
    /// The sub-policies.
    pub composite_sub_policy: Vec<PolicyConfig>,
    /// Each sub-policy's share of the rate.
    pub rate_allocation: Vec<RateAllocation>,
}

/// One policy as written in the config.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Name, used in self-metrics.
    pub name: String,
    /// Policy type.
    #[serde(rename = "type")]
    pub kind: String,
    /// `latency` settings.
    pub latency: Option<Latency>,
    /// `status_code` settings.
    pub status_code: Option<StatusCode>,
    /// `numeric_attribute` settings.
    pub numeric_attribute: Option<NumericAttribute>,
    /// `string_attribute` settings.
    pub string_attribute: Option<StringAttribute>,
    /// `boolean_attribute` settings.
    pub boolean_attribute: Option<BooleanAttribute>,
    /// `probabilistic` settings.
    pub probabilistic: Option<Probabilistic>,
    /// `span_count` settings.
    pub span_count: Option<SpanCount>,
    /// `and` settings.
    pub and: Option<And>,
    /// `drop` settings.
    pub drop: Option<Drop>,
    /// `rate_limiting` settings.
    pub rate_limiting: Option<RateLimiting>,
    /// `trace_state` settings.
    pub trace_state: Option<TraceState>,
    /// `composite` settings.
    pub composite: Option<Composite>,
}

/// `maximum_held_bytes` by default: 1 GiB of encoded spans, above the
/// ~640 MB a 10 s hold of 150k LLM spans/s takes.
pub const DEFAULT_MAXIMUM_HELD_BYTES: usize = 1 << 30;

/// How requests held past `compress_after` are kept (ours).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum HeldCompression {
    /// LZ4 block format: the cheapest to compress.
    Lz4,
    /// zstd at level 1: smaller, dearer.
    Zstd,
    /// Kept as received.
    None,
}

/// `tail_sampling` processor config.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TailSamplingConfig {
    /// How long a trace is held from its first span before it is decided.
    #[serde(with = "crate::duration")]
    pub decision_wait: Duration,
    /// Traces held at once; past it the oldest is decided early.
    pub num_traces: usize,
    /// Sizing hint, as in otelcol: the held-trace map starts with room for
    /// this many × `decision_wait` (at most `num_traces`).
    pub expected_new_traces_per_sec: usize,
    /// Decisions remembered for late spans.
    pub decision_cache: DecisionCache,
    /// A trace holding more encoded bytes than this is decided early; 0 = no cap.
    pub maximum_trace_size_bytes: usize,
    /// Ours: encoded span bytes held across all traces; past it the oldest
    /// traces are decided early, so the hold's memory has a bound in bytes
    /// as well as in traces. 0 = no cap.
    pub maximum_held_bytes: usize,
    /// Ours: the codec for held requests older than `compress_after`
    /// (only traces that are kept are inflated again). Unset: `lz4`, or
    /// `none` when a policy reads span bytes at decision time.
    pub held_compression: Option<HeldCompression>,
    /// Ours: how long a request is held as received before it is compressed.
    #[serde(with = "crate::duration")]
    pub compress_after: Duration,
    /// The policies.
    pub policies: Vec<PolicyConfig>,
}

impl Default for TailSamplingConfig {
    fn default() -> Self {
        TailSamplingConfig {
            decision_wait: Duration::from_secs(10),
            num_traces: 50_000,
            expected_new_traces_per_sec: 0,
            decision_cache: DecisionCache::default(),
            maximum_trace_size_bytes: 0,
            maximum_held_bytes: DEFAULT_MAXIMUM_HELD_BYTES,
            held_compression: None,
            compress_after: Duration::from_secs(1),
            policies: Vec::new(),
        }
    }
}

impl TailSamplingConfig {
    /// The codec held requests get with these policies (their attribute
    /// tests assigned): `none` when one reads span bytes at decision time.
    pub fn held_codec(&self, policies: &[super::policy::Policy]) -> HeldCompression {
        if policies.iter().any(super::policy::Policy::reads_span_bytes) {
            HeldCompression::None
        } else {
            self.held_compression.unwrap_or(HeldCompression::Lz4)
        }
    }

    /// Traces the held map has room for from the start: what
    /// `expected_new_traces_per_sec` brings in during `decision_wait`, at
    /// most `num_traces` (growing a map of a million entries rehashes it).
    pub fn initial_capacity(&self) -> usize {
        (self.expected_new_traces_per_sec as f64 * self.decision_wait.as_secs_f64())
            .min(self.num_traces as f64) as usize
    }
}

impl Validate for TailSamplingConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.decision_wait.is_zero() {
            return Err(ConfigError::new(
                "decision_wait",
                "must be greater than zero",
            ));
        }
        if self.num_traces == 0 {
            return Err(ConfigError::new("num_traces", "must be at least 1"));
        }
        if self.policies.is_empty() {
            return Err(ConfigError::new(
                "policies",
                "must list at least one policy",
            ));
        }
        let mut policies = Vec::new();
        for (i, p) in self.policies.iter().enumerate() {
            policies.push(super::policy::Policy::new(p, &format!("policies.{i}"))?);
        }
        super::policy::AttrTests::assign(&mut policies);
        let asked = self.held_compression.unwrap_or(HeldCompression::None);
        if asked != HeldCompression::None && self.held_codec(&policies) == HeldCompression::None {
            return Err(ConfigError::new(
                "held_compression",
                "cannot apply: a policy reads span bytes when deciding (trace_state, or an attribute test past the 64th), which would inflate every held request again; remove held_compression or set it to none",
            ));
        }
        Ok(())
    }
}
