//! `ratelimit` config: the keys of Elastic's `ratelimit` processor (local
//! type), plus `resource_attribute` and `max_keys` of ours.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::component::{ConfigError, Validate};

/// What a token stands for.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// One per request.
    #[default]
    Requests,
    /// One per span, data point or log record.
    Records,
    /// One per encoded byte.
    Bytes,
}

/// What happens to data over the rate.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ThrottleBehavior {
    /// Refuse at once: HTTP 429 / gRPC RESOURCE_EXHAUSTED with a retry delay.
    #[default]
    Error,
    /// Hold the request until its tokens are there (at most 5 s; longer
    /// waits are refused as with `error`).
    Delay,
}

/// A per-key rate and burst.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Override {
    /// Tokens per second.
    pub rate: Option<f64>,
    /// Bucket size.
    pub burst: Option<u64>,
    /// Gubernator only: refused.
    pub throttle_interval: Option<serde_yaml::Value>,
}

/// `ratelimit` config.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Client context keys whose values pick the bucket: metadata keys
    /// (`x-tenant`, `metadata.x-tenant`), `auth.<attribute>`,
    /// `client.address`.
    #[serde(default)]
    pub metadata_keys: Vec<String>,
    /// A resource attribute whose value also picks the bucket (ours), e.g.
    /// `telemetry.source`; a request's resources are charged separately.
    #[serde(default)]
    pub resource_attribute: Option<String>,
    /// What a token stands for.
    #[serde(default)]
    pub strategy: Strategy,
    /// Tokens added per second.
    pub rate: f64,
    /// Tokens a bucket holds at most.
    pub burst: u64,
    /// What to do over the rate.
    #[serde(default)]
    pub throttle_behavior: ThrottleBehavior,
    /// Gubernator only: refused.
    #[serde(default)]
    pub throttle_interval: Option<serde_yaml::Value>,
    /// Only `local`.
    #[serde(default = "local", rename = "type")]
    pub kind: String,
    /// Rate and burst per bucket key (`x-tenant:acme`; several keys joined
    /// by `;` in `metadata_keys` order, the resource attribute last).
    #[serde(default)]
    pub overrides: BTreeMap<String, Override>,
    /// Buckets kept at most (ours); a refilled bucket is dropped first, and
    /// keys beyond share one bucket, `_overflow`.
    #[serde(default = "max_keys")]
    pub max_keys: usize,
}

fn local() -> String {
    "local".into()
}

fn max_keys() -> usize {
    10_000
}

fn check_rate(at: &str, rate: f64, burst: u64) -> Result<(), ConfigError> {
    if !(rate.is_finite() && rate > 0.0) {
        return Err(ConfigError::new(format!("{at}rate"), "must be more than 0"));
    }
    if burst == 0 {
        return Err(ConfigError::new(format!("{at}burst"), "must be at least 1"));
    }
    Ok(())
}

const GUBERNATOR_ONLY: &str =
    "applies only to type: gubernator, which this build does not have (it limits locally)";

impl Validate for RateLimitConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        check_rate("", self.rate, self.burst)?;
        if self.kind != "local" {
            return Err(ConfigError::new(
                "type",
                format!("{:?} is not available: only local", self.kind),
            ));
        }
        if self.throttle_interval.is_some() {
            return Err(ConfigError::new("throttle_interval", GUBERNATOR_ONLY));
        }
        if self.max_keys == 0 {
            return Err(ConfigError::new("max_keys", "must be at least 1"));
        }
        if self.metadata_keys.iter().any(String::is_empty) {
            return Err(ConfigError::new(
                "metadata_keys",
                "must not hold an empty key",
            ));
        }
        for (k, o) in &self.overrides {
            let at = format!("overrides.{k}.");
            check_rate(
                &at,
                o.rate.unwrap_or(self.rate),
                o.burst.unwrap_or(self.burst),
            )?;
            if o.throttle_interval.is_some() {
                return Err(ConfigError::new(
                    format!("{at}throttle_interval"),
                    GUBERNATOR_ONLY,
                ));
            }
        }
        Ok(())
    }
}
