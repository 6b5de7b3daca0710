//! `otlp` exporter config: otelcol's keys and defaults.

use std::collections::BTreeMap;
use std::time::Duration;

use pipeline::component::{ConfigError, Validate};
use serde::Deserialize;

use crate::client::Compression;
use crate::engine::{EngineSettings, QueueConfig, RetryConfig};
use crate::tls::client::{ClientTlsConfig, Target};

/// Sends OTLP over gRPC.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    /// `host:port` of the receiving end (or an `http://` URL).
    pub endpoint: String,
    /// Connection security.
    #[serde(default)]
    pub tls: ClientTlsConfig,
    /// The auth extension that authenticates every request
    /// (`bearertokenauth`, `basicauth`, `headers_setter`).
    #[serde(default)]
    pub auth: Option<pipeline::auth::AuthConfig>,
    /// Metadata sent with every request (e.g. `X-Scope-OrgID` for Tempo).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Request compression: gzip (default), zstd or none.
    #[serde(default)]
    pub compression: Compression,
    /// Per-attempt timeout.
    #[serde(default = "five_seconds", with = "pipeline::duration")]
    pub timeout: Duration,
    /// Backoff for retryable failures.
    #[serde(default)]
    pub retry_on_failure: RetryConfig,
    /// The bounded queue in front of the exporter.
    #[serde(default)]
    pub sending_queue: QueueConfig,
}

fn five_seconds() -> Duration {
    Duration::from_secs(5)
}

impl OtlpConfig {
    /// Where to connect, and whether over TLS.
    pub fn target(&self) -> Result<Target, ConfigError> {
        self.tls.resolve("endpoint", &self.endpoint)
    }

    /// The engine part of the config.
    pub fn engine(&self) -> EngineSettings {
        EngineSettings {
            timeout: self.timeout,
            retry: self.retry_on_failure.clone(),
            queue: self.sending_queue.clone(),
        }
    }
}

impl Validate for OtlpConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.target()?;
        for (k, v) in &self.headers {
            let name_ok = tonic::metadata::MetadataKey::<tonic::metadata::Ascii>::from_bytes(
                k.to_ascii_lowercase().as_bytes(),
            )
            .is_ok();
            if !name_ok || tonic::metadata::MetadataValue::try_from(v.as_str()).is_err() {
                return Err(ConfigError::new(
                    format!("headers.{k}"),
                    "is not a valid gRPC metadata entry",
                ));
            }
        }
        self.engine().validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipeline::component::parse_config;

    #[test]
    fn documented_example_parses_with_otelcol_defaults() {
        let yaml =
            "endpoint: tempo:4317\ntls:\n  insecure: true\nheaders:\n  X-Scope-OrgID: acme\n";
        let cfg: OtlpConfig = parse_config(serde_yaml::from_str(yaml).unwrap()).unwrap();
        assert_eq!(cfg.compression, Compression::Gzip);
        assert_eq!(cfg.timeout, Duration::from_secs(5));
        assert_eq!(cfg.retry_on_failure, RetryConfig::default());
        assert_eq!(cfg.sending_queue.queue_size, 1000);
        assert_eq!(cfg.sending_queue.num_consumers, 10);
        assert_eq!(cfg.headers["X-Scope-OrgID"], "acme");
    }

    #[test]
    fn bad_values_are_named() {
        let err = parse_config::<OtlpConfig>(
            serde_yaml::from_str(
                "endpoint: a:1\ntls: {insecure: true}\nsending_queue: {queue_size: 0}",
            )
            .unwrap(),
        )
        .unwrap_err();
        assert_eq!(err.path, "sending_queue.queue_size");
        let err = parse_config::<OtlpConfig>(
            serde_yaml::from_str("endpoint: a:1\ncompression: lzma").unwrap(),
        )
        .unwrap_err();
        assert_eq!(err.path, "compression");
    }
}
