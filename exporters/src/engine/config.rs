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

/// `sending_queue`: a bounded in-memory queue drained by `num_consumers`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Queue at all; without it the caller waits for the export.
    pub enabled: bool,
    /// Concurrent exports.
    pub num_consumers: usize,
    /// Batches the queue holds; when full, receivers answer "retry later".
    pub queue_size: usize,
    /// Persistent queue: the `file_storage` extension whose directory holds
    /// this exporter's write-ahead log.
    pub storage: Option<String>,
    /// With `storage`: bytes the log may take on disk before receivers are
    /// told to retry (ours; otelcol bounds only by `queue_size`).
    pub max_size_mib: u64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            enabled: true,
            num_consumers: 10,
            queue_size: 1000,
            storage: None,
            max_size_mib: 512,
        }
    }
}

impl Validate for QueueConfig {
    fn validate(&self) -> Result<(), ConfigError> {
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
            if self.max_size_mib == 0 {
                return Err(ConfigError::new("max_size_mib", "must be at least 1"));
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
