//! Tail sampling policies, evaluated on a held trace's span index entries
//! and, for attribute policies, on the span bytes read in place.

use regex::Regex;

use super::config::PolicyConfig;
use crate::component::ConfigError;
use crate::inplace::{for_each_raw_attribute, AttrValue};
use crate::scan::SpanEntry;

/// A held trace as policies see it.
pub struct TraceView<'a> {
    /// The trace id.
    pub trace_id: [u8; 16],
    /// Each span's index entry and whole encoded field.
    pub spans: Vec<(&'a SpanEntry, &'a [u8])>,
}

impl TraceView<'_> {
    fn any_attribute(&self, key: &str, mut test: impl FnMut(AttrValue) -> bool) -> bool {
        let mut hit = false;
        for (_, field) in &self.spans {
            for_each_raw_attribute(field, |k, v| {
                if !hit && k == key.as_bytes() && test(v.get()) {
                    hit = true;
                }
            });
            if hit {
                return true;
            }
        }
        false
    }
}

/// What a policy says about a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Keep it.
    Sampled,
    /// This policy would not keep it.
    NotSampled,
    /// A `drop` policy matched: never keep it.
    Dropped,
}

/// A checked policy.
#[derive(Debug, Clone)]
pub enum Policy {
    /// Keep everything.
    AlwaysSample,
    /// Trace duration in [min, max] (max 0 = unbounded), nanoseconds.
    Latency(u64, u64),
    /// Any span with one of these status codes.
    StatusCode(Vec<u8>),
    /// Any span whose numeric attribute is in range.
    Numeric(String, f64, f64, bool),
    /// Any span whose string attribute matches.
    Str(String, Vec<Regex>, Vec<String>, bool),
    /// Any span whose boolean attribute has the value.
    Bool(String, bool, bool),
    /// Trace-id hash under a threshold (otelcol's FNV-1a 64 with salt).
    Probabilistic(String, u64),
    /// Span count in [min, max] (max 0 = unbounded).
    SpanCount(usize, usize),
    /// Every sub-policy samples.
    And(Vec<Policy>),
    /// Every sub-policy samples: then the trace is dropped.
    Drop(Vec<Policy>),
}

/// otelcol's tail-sampling hash: FNV-1a 64 over the salt, then the id.
pub fn salted_hash(salt: &str, id: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in salt.as_bytes().iter().chain(id) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn need<T: Clone>(v: &Option<T>, at: &str, kind: &str) -> Result<T, ConfigError> {
    v.clone().ok_or_else(|| {
        ConfigError::new(
            format!("{at}.{kind}"),
            format!("is required for type {kind}"),
        )
    })
}

impl Policy {
    /// Checks a policy config at `at` (`policies.2`).
    pub fn new(p: &PolicyConfig, at: &str) -> Result<Policy, ConfigError> {
        let kind = p.kind.as_str();
        Ok(match kind {
            "always_sample" => Policy::AlwaysSample,
            "latency" => {
                let l = need(&p.latency, at, kind)?;
                if l.threshold_ms < 0
                    || l.upper_threshold_ms < 0
                    || (l.upper_threshold_ms > 0 && l.upper_threshold_ms < l.threshold_ms)
                {
                    return Err(ConfigError::new(
                        format!("{at}.latency"),
                        "thresholds must be non-negative and upper ≥ lower",
                    ));
                }
                Policy::Latency(
                    l.threshold_ms as u64 * 1_000_000,
                    l.upper_threshold_ms as u64 * 1_000_000,
                )
            }
            "status_code" => {
                let s = need(&p.status_code, at, kind)?;
                let codes = s
                    .status_codes
                    .iter()
                    .map(|c| match c.as_str() {
                        "UNSET" => Ok(0),
                        "OK" => Ok(1),
                        "ERROR" => Ok(2),
                        other => Err(ConfigError::new(
                            format!("{at}.status_code.status_codes"),
                            format!("unknown status {other:?}: use OK, ERROR or UNSET"),
                        )),
                    })
                    .collect::<Result<Vec<u8>, _>>()?;
                if codes.is_empty() {
                    return Err(ConfigError::new(
                        format!("{at}.status_code.status_codes"),
                        "must list at least one status",
                    ));
                }
                Policy::StatusCode(codes)
            }
            "numeric_attribute" => {
                let n = need(&p.numeric_attribute, at, kind)?;
                if n.min_value.is_none() && n.max_value.is_none() {
                    return Err(ConfigError::new(
                        format!("{at}.numeric_attribute"),
                        "set min_value, max_value or both",
                    ));
                }
                Policy::Numeric(
                    n.key,
                    n.min_value.unwrap_or(f64::NEG_INFINITY),
                    n.max_value.unwrap_or(f64::INFINITY),
                    n.invert_match,
                )
            }
            "string_attribute" => {
                let s = need(&p.string_attribute, at, kind)?;
                let regexes = if s.enabled_regex_matching {
                    s.values
                        .iter()
                        .map(|v| {
                            Regex::new(v).map_err(|e| {
                                ConfigError::new(
                                    format!("{at}.string_attribute.values"),
                                    format!("invalid regex: {e}"),
                                )
                            })
                        })
                        .collect::<Result<_, _>>()?
                } else {
                    Vec::new()
                };
                let exact = if s.enabled_regex_matching {
                    Vec::new()
                } else {
                    s.values
                };
                Policy::Str(s.key, regexes, exact, s.invert_match)
            }
            "boolean_attribute" => {
                let b = need(&p.boolean_attribute, at, kind)?;
                Policy::Bool(b.key, b.value, b.invert_match)
            }
            "probabilistic" => {
                let pr = need(&p.probabilistic, at, kind)?;
                if !(0.0..=100.0).contains(&pr.sampling_percentage) {
                    return Err(ConfigError::new(
                        format!("{at}.probabilistic.sampling_percentage"),
                        "must be between 0 and 100",
                    ));
                }
                let threshold = (pr.sampling_percentage / 100.0 * u64::MAX as f64) as u64;
                Policy::Probabilistic(pr.hash_salt, threshold)
            }
            "span_count" => {
                let c = need(&p.span_count, at, kind)?;
                Policy::SpanCount(c.min_spans, c.max_spans)
            }
            "and" => {
                let a = need(&p.and, at, kind)?;
                Policy::And(subs(
                    &a.and_sub_policy,
                    &format!("{at}.and.and_sub_policy"),
                )?)
            }
            "drop" => {
                let d = need(&p.drop, at, kind)?;
                Policy::Drop(subs(
                    &d.drop_sub_policy,
                    &format!("{at}.drop.drop_sub_policy"),
                )?)
            }
            "rate_limiting"
            | "bytes_limiting"
            | "trace_state"
            | "composite"
            | "ottl_condition"
            | "trace_flags"
            | "boolean_attribute_all" => {
                return Err(ConfigError::new(
                    format!("{at}.type"),
                    format!("policy type {kind:?} is not available yet"),
                ))
            }
            other => {
                return Err(ConfigError::new(
                    format!("{at}.type"),
                    format!("unknown policy type {other:?}"),
                ))
            }
        })
    }

    fn matches(&self, t: &TraceView) -> bool {
        match self {
            Policy::AlwaysSample => true,
            Policy::Latency(min, max) => {
                let start = t
                    .spans
                    .iter()
                    .map(|(e, _)| e.start_time_unix_nano)
                    .min()
                    .unwrap_or(0);
                let end = t
                    .spans
                    .iter()
                    .map(|(e, _)| e.end_time_unix_nano)
                    .max()
                    .unwrap_or(0);
                let d = end.saturating_sub(start);
                d >= *min && (*max == 0 || d <= *max)
            }
            Policy::StatusCode(codes) => {
                t.spans.iter().any(|(e, _)| codes.contains(&e.status_code))
            }
            Policy::Numeric(key, min, max, invert) => {
                t.any_attribute(key, |v| v.number().is_some_and(|n| n >= *min && n <= *max))
                    != *invert
            }
            Policy::Str(key, regexes, exact, invert) => {
                t.any_attribute(key, |v| match v {
                    AttrValue::Str(s) => {
                        exact.iter().any(|e| e == s) || regexes.iter().any(|r| r.is_match(s))
                    }
                    _ => false,
                }) != *invert
            }
            Policy::Bool(key, want, invert) => {
                t.any_attribute(key, |v| v == AttrValue::Bool(*want)) != *invert
            }
            Policy::Probabilistic(salt, threshold) => salted_hash(salt, &t.trace_id) <= *threshold,
            Policy::SpanCount(min, max) => {
                t.spans.len() >= *min && (*max == 0 || t.spans.len() <= *max)
            }
            Policy::And(subs) | Policy::Drop(subs) => subs.iter().all(|p| p.matches(t)),
        }
    }

    /// The policy's verdict on a trace.
    pub fn evaluate(&self, t: &TraceView) -> Verdict {
        match (self, self.matches(t)) {
            (Policy::Drop(_), true) => Verdict::Dropped,
            (Policy::Drop(_), false) | (_, false) => Verdict::NotSampled,
            (_, true) => Verdict::Sampled,
        }
    }
}

fn subs(list: &[PolicyConfig], at: &str) -> Result<Vec<Policy>, ConfigError> {
    if list.is_empty() {
        return Err(ConfigError::new(at, "must list at least one sub-policy"));
    }
    list.iter()
        .enumerate()
        .map(|(i, p)| Policy::new(p, &format!("{at}.{i}")))
        .collect()
}
