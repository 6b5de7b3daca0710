//! `batch` processor config: otelcol's keys and defaults.

use std::time::Duration;

use serde::Deserialize;

use crate::component::{ConfigError, Validate};

/// Groups items into batches by count and time.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Send a batch after this long even if it is not full (`0` = send each
    /// request as it comes).
    #[serde(with = "crate::duration")]
    pub timeout: Duration,
    /// Send as soon as this many spans / data points / log records are held.
    pub send_batch_size: usize,
    /// Upper bound on a batch; larger ones are split. `0` = no bound.
    pub send_batch_max_size: usize,
    /// Client metadata keys whose values keep requests in separate batches;
    /// those values (only) travel on with each batch. Empty: the client
    /// context is dropped here, as in otelcol.
    pub metadata_keys: Vec<String>,
    /// Distinct combinations of `metadata_keys` values at most; a request
    /// bringing one more is refused (otelcol: 1000).
    pub metadata_cardinality_limit: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            timeout: Duration::from_millis(200),
            send_batch_size: 8192,
            send_batch_max_size: 0,
            metadata_keys: Vec::new(),
            metadata_cardinality_limit: 1000,
        }
    }
}

impl Validate for BatchConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.send_batch_max_size > 0 && self.send_batch_max_size < self.send_batch_size {
            return Err(ConfigError::new(
                "send_batch_max_size",
                "must be greater than or equal to send_batch_size",
            ));
        }
        if !self.metadata_keys.is_empty() && self.metadata_cardinality_limit == 0 {
            return Err(ConfigError::new(
                "metadata_cardinality_limit",
                "must be at least 1 with metadata_keys",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::component::parse_config;

    #[test]
    fn documented_example_parses() {
        let yaml = "timeout: 5s\nsend_batch_size: 1000\nsend_batch_max_size: 2000\n";
        let cfg: BatchConfig = parse_config(serde_yaml::from_str(yaml).unwrap()).unwrap();
        assert_eq!(cfg.timeout, Duration::from_secs(5));
        assert_eq!((cfg.send_batch_size, cfg.send_batch_max_size), (1000, 2000));
        let d: BatchConfig = parse_config(serde_yaml::Value::Null).unwrap();
        assert_eq!(d, BatchConfig::default());
    }

    #[test]
    fn bad_keys_are_named() {
        let err =
            parse_config::<BatchConfig>(serde_yaml::from_str("timeoutt: 1s").unwrap()).unwrap_err();
        assert!(err.message.contains("unknown field `timeoutt`"), "{err}");
        let err =
            parse_config::<BatchConfig>(serde_yaml::from_str("timeout: 5").unwrap()).unwrap_err();
        assert_eq!(err.path, "timeout");
        let err =
            parse_config::<BatchConfig>(serde_yaml::from_str("send_batch_max_size: 5").unwrap())
                .unwrap_err();
        assert_eq!(err.path, "send_batch_max_size");
    }
}
