//! The keys every queued exporter shares: `timeout`, `retry_on_failure`,
//! `sending_queue`, with otelcol's defaults.

use std::time::Duration;

use pipeline::component::{ConfigError, Validate};
use serde::Deserialize;

/// The per-attempt timeout otelcol's HTTP exporters default to.
pub fn thirty_seconds() -> Duration {
    Duration::from_secs(30)
}

/// `retry_on_failure`: exponential backoff for retryable failures.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Retry at all.
    pub enabled: bool,
    /// Wait before the first retry.
    #[serde(with = "pipeline::duration")]
    pub initial_interval: Duration,
    /// Jitter: each wait is drawn from interval × (1 ± this).
    pub randomization_factor: f64,
    /// Growth of the wait after each retry.
    pub multiplier: f64,
    /// Cap on one wait.
    #[serde(with = "pipeline::duration")]
    pub max_interval: Duration,
    /// Give up (and count the data as failed) after this long; `0` = never.
    #[serde(with = "pipeline::duration")]
    pub max_elapsed_time: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            enabled: true,
            initial_interval: Duration::from_secs(5),
            randomization_factor: 0.5,
            multiplier: 1.5,
            max_interval: Duration::from_secs(30),
            max_elapsed_time: Duration::from_secs(300),
        }
    }
}

impl Validate for RetryConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if !(0.0..=1.0).contains(&self.randomization_factor) {
            return Err(ConfigError::new(
                "randomization_factor",
                "must be between 0 and 1",
            ));
        }
        if self.multiplier < 1.0 {
            return Err(ConfigError::new("multiplier", "must be at least 1"));
        }
        Ok(())
    }
}

/// What `queue_size` counts (otelcol's `sizer`).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Sizer {
    /// Batches (otelcol's default).
    #[default]
    Requests,
    /// Spans, data points or log records.
    Items,
    /// Encoded bytes.
    Bytes,
}

/// `sending_queue`: a bounded in-memory queue drained by `num_consumers`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Queue at all; without it the caller waits for the export.
    pub enabled: bool,
    /// Concurrent exports.
    pub num_consumers: usize,
    /// What the queue holds, in `sizer` units; when full, receivers answer
    /// "retry later".
    pub queue_size: usize,
    /// The unit of `queue_size`.
    pub sizer: Sizer,
    /// Persistent queue: the `file_storage` extension whose directory holds
    /// this exporter's write-ahead log.
    pub storage: Option<String>,
    /// Encoded bytes the queue may hold whatever the sizer (ours; otelcol
    /// bounds only by `queue_size`): in memory, queued and in flight
    /// (default 256); with `storage`, on disk (default 512).
    pub max_size_mib: Option<u64>,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            enabled: true,
            num_consumers: 10,
            queue_size: 1000,
            sizer: Sizer::Requests,
            storage: None,
            max_size_mib: None,
        }
    }
}

impl QueueConfig {
    /// The byte cap in effect.
    pub fn max_bytes(&self) -> u64 {
        let mib = self
            .max_size_mib
            .unwrap_or(if self.storage.is_some() { 512 } else { 256 });
        mib << 20
    }
}

impl Validate for QueueConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.max_size_mib == Some(0) {
            return Err(ConfigError::new("max_size_mib", "must be at least 1"));
        }
        if self.enabled && self.num_consumers == 0 {
            return Err(ConfigError::new("num_consumers", "must be at least 1"));
        }
        if self.enabled && self.queue_size == 0 {
            return Err(ConfigError::new("queue_size", "must be at least 1"));
        }
        if let Some(id) = &self.storage {
            if id.split('/').next() != Some("file_storage") {
                return Err(ConfigError::new(
                    "storage",
                    format!("{id:?} is not a storage extension; use file_storage or file_storage/<name>"),
                ));
            }
            if !self.enabled {
                return Err(ConfigError::new(
                    "storage",
                    "a persistent queue needs the queue: remove storage or set enabled: true",
                ));
            }
            if self.sizer != Sizer::Requests {
                return Err(ConfigError::new(
                    "sizer",
                    "the persistent queue counts requests (queue_size) and bytes on disk (max_size_mib); items and bytes sizers are for the in-memory queue",
                ));
            }
        }
        Ok(())
    }
}

/// The engine settings one exporter runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineSettings {
    /// Per-attempt timeout; zero = none.
    pub timeout: Duration,
    /// Backoff.
    pub retry: RetryConfig,
    /// Queue.
    pub queue: QueueConfig,
}

impl EngineSettings {
    /// Validates both sub-configs, naming the offending key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.retry
            .validate()
            .map_err(|e| e.under("retry_on_failure"))?;
        self.queue.validate().map_err(|e| e.under("sending_queue"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipeline::component::parse_config;

    fn queue(yaml: &str) -> Result<QueueConfig, ConfigError> {
        parse_config(serde_yaml::from_str(yaml).unwrap())
    }

    #[test]
    fn sizers_and_the_byte_cap_have_otelcols_names_and_our_defaults() {
        let d = queue("{}").unwrap();
        assert_eq!((d.sizer, d.queue_size), (Sizer::Requests, 1000));
        assert_eq!(d.max_bytes(), 256 << 20);
        let disk = queue("storage: file_storage").unwrap();
        assert_eq!(disk.max_bytes(), 512 << 20);
        let items = queue("sizer: items\nqueue_size: 100000\nmax_size_mib: 64").unwrap();
        assert_eq!((items.sizer, items.max_bytes()), (Sizer::Items, 64 << 20));
        assert_eq!(queue("sizer: bytes").unwrap().sizer, Sizer::Bytes);
        assert!(queue("sizer: pages").is_err());
        assert_eq!(queue("max_size_mib: 0").unwrap_err().path, "max_size_mib");
        assert_eq!(
            queue("storage: file_storage\nsizer: items")
                .unwrap_err()
                .path,
            "sizer"
        );
    }
}
