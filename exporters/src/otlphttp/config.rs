//! `otlphttp` exporter config: otelcol's keys and defaults.

use std::collections::BTreeMap;
use std::time::Duration;

use pipeline::component::{ConfigError, Validate};
use pipeline::Signal;
use serde::Deserialize;

use crate::client::Compression;
use crate::engine::{EngineSettings, QueueConfig, RetryConfig};
use crate::tls::client::{ClientTlsConfig, Target};

/// Body encoding.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// `application/x-protobuf` (the request bytes as they are).
    #[default]
    Proto,
    /// `application/json` (OTLP/JSON; decodes and re-encodes).
    Json,
}

/// Sends OTLP over HTTP.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OtlpHttpConfig {
    /// Base URL; `/v1/traces` etc. are appended.
    #[serde(default)]
    pub endpoint: String,
    /// Full URL for traces, overriding `endpoint`.
    pub traces_endpoint: Option<String>,
    /// Full URL for metrics, overriding `endpoint`.
    pub metrics_endpoint: Option<String>,
    /// Full URL for logs, overriding `endpoint`.
    pub logs_endpoint: Option<String>,
    /// Connection security.
    #[serde(default)]
    pub tls: ClientTlsConfig,
    /// The auth extension that authenticates every request
    /// (`bearertokenauth`, `basicauth`, `headers_setter`).
    #[serde(default)]
    pub auth: Option<pipeline::auth::AuthConfig>,
    /// Headers sent with every request (e.g. `X-Scope-OrgID`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Body compression: gzip (default), zstd or none.
    #[serde(default)]
    pub compression: Compression,
    /// Body encoding: proto (default) or json.
    #[serde(default)]
    pub encoding: Encoding,
    /// Per-attempt timeout.
    #[serde(
        default = "crate::engine::config::thirty_seconds",
        with = "pipeline::duration"
    )]
    pub timeout: Duration,
    /// Backoff for retryable failures.
    #[serde(default)]
    pub retry_on_failure: RetryConfig,
    /// The bounded queue in front of the exporter.
    #[serde(default)]
    pub sending_queue: QueueConfig,
}

impl OtlpHttpConfig {
    /// The engine part of the config.
    pub fn engine(&self) -> EngineSettings {
        EngineSettings {
            timeout: self.timeout,
            retry: self.retry_on_failure.clone(),
            queue: self.sending_queue.clone(),
        }
    }

    /// The URL a signal is posted to.
    pub fn url(&self, signal: Signal) -> Result<Target, ConfigError> {
        let explicit = match signal {
            Signal::Traces => &self.traces_endpoint,
            Signal::Metrics => &self.metrics_endpoint,
            Signal::Logs => &self.logs_endpoint,
        };
        match explicit {
            Some(url) => self.tls.resolve(&format!("{signal}_endpoint"), url),
            None => self
                .tls
                .resolve("endpoint", &self.endpoint)
                .map(|t| Target {
                    url: format!("{}/v1/{signal}", t.url),
                    tls: t.tls,
                }),
        }
    }
}

impl Validate for OtlpHttpConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        for s in Signal::ALL {
            self.url(s)?;
        }
        for (k, v) in &self.headers {
            if http::HeaderName::try_from(k.as_str()).is_err()
                || http::HeaderValue::try_from(v.as_str()).is_err()
            {
                return Err(ConfigError::new(
                    format!("headers.{k}"),
                    "is not a valid HTTP header",
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
    fn documented_example_parses_and_builds_urls() {
        let yaml = "endpoint: http://tempo:4318\nheaders:\n  X-Scope-OrgID: acme\nlogs_endpoint: http://loki:3100/otlp/v1/logs\n";
        let cfg: OtlpHttpConfig = parse_config(serde_yaml::from_str(yaml).unwrap()).unwrap();
        assert_eq!(
            cfg.url(Signal::Traces).unwrap().url,
            "http://tempo:4318/v1/traces"
        );
        assert_eq!(
            cfg.url(Signal::Logs).unwrap().url,
            "http://loki:3100/otlp/v1/logs"
        );
        assert_eq!(cfg.timeout, Duration::from_secs(30));
        assert_eq!(cfg.compression, Compression::Gzip);
        assert_eq!(cfg.encoding, Encoding::Proto);
    }
}
