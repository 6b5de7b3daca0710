//! `parquet` exporter config: where the archive goes (a directory or an
//! `s3://` URL), when a file is rolled, and the S3 keys (so MinIO works).

use std::time::Duration;

use pipeline::component::{ConfigError, Validate};
use serde::Deserialize;

use crate::engine::{EngineSettings, QueueConfig, RetryConfig};

/// Column compression inside the Parquet files.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// zstd (default): small files, fast to read.
    #[default]
    Zstd,
    /// snappy: faster to write, larger.
    Snappy,
    /// none.
    None,
}

/// S3 settings; unset keys come from the usual `AWS_*` environment
/// variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
/// `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// Region.
    pub region: Option<String>,
    /// Endpoint URL for S3-compatible stores (MinIO: `http://minio:9000`).
    pub endpoint: Option<String>,
    /// Access key id.
    pub access_key_id: Option<String>,
    /// Secret access key (use `${env:…}`).
    pub secret_access_key: Option<pipeline::secret::Secret>,
    /// Allow a plain-HTTP endpoint.
    pub allow_http: bool,
    /// TLS to the store (HTTPS always, unless `allow_http`).
    pub tls: S3TlsConfig,
}

/// `s3.tls`: the client keys the S3 client can honour.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct S3TlsConfig {
    /// CA bundle trusted in addition to the system's roots.
    pub ca_file: Option<String>,
    /// Accept any server certificate.
    pub insecure_skip_verify: bool,
}

/// Archives traces and logs as Parquet files.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ParquetConfig {
    /// A local directory, or `s3://bucket/prefix`.
    pub endpoint: String,
    /// S3 keys (with an `s3://` endpoint).
    #[serde(default)]
    pub s3: S3Config,
    /// Roll a file once it holds this many MiB (encoded).
    #[serde(default = "default_size")]
    pub max_file_size_mib: u64,
    /// Roll a file this long after its first row.
    #[serde(default = "default_age", with = "pipeline::duration")]
    pub max_file_age: Duration,
    /// Column compression.
    #[serde(default)]
    pub compression: Compression,
    /// Per-attempt timeout (writing a file).
    #[serde(
        default = "crate::engine::config::thirty_seconds",
        with = "pipeline::duration"
    )]
    pub timeout: Duration,
    /// Backoff when the store refuses a write.
    #[serde(default)]
    pub retry_on_failure: RetryConfig,
    /// The bounded queue in front of the exporter.
    #[serde(default)]
    pub sending_queue: QueueConfig,
}

fn default_size() -> u64 {
    64
}

fn default_age() -> Duration {
    Duration::from_secs(60)
}

impl ParquetConfig {
    /// The engine part of the config.
    pub fn engine(&self) -> EngineSettings {
        EngineSettings {
            timeout: self.timeout,
            retry: self.retry_on_failure.clone(),
            queue: self.sending_queue.clone(),
        }
    }

    /// Whether the archive is on S3.
    pub fn is_s3(&self) -> bool {
        self.endpoint.starts_with("s3://")
    }
}

impl Validate for ParquetConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.endpoint.is_empty() {
            return Err(ConfigError::new(
                "endpoint",
                "needs a directory or an s3://bucket/prefix URL",
            ));
        }
        if self.endpoint.contains("://") && !self.is_s3() {
            return Err(ConfigError::new(
                "endpoint",
                "only local directories and s3:// URLs are supported",
            ));
        }
        if !self.is_s3() && self.s3 != S3Config::default() {
            return Err(ConfigError::new("s3", "applies only to an s3:// endpoint"));
        }
        if let Some(ca) = &self.s3.tls.ca_file {
            crate::tls::PemSource {
                key: "s3.tls.ca".into(),
                file: Some(ca),
                pem: None,
            }
            .certs()?;
        }
        if self.max_file_size_mib == 0 || self.max_file_size_mib > 1024 {
            return Err(ConfigError::new(
                "max_file_size_mib",
                "must be between 1 and 1024 (a file is built in memory)",
            ));
        }
        if self.max_file_age < Duration::from_secs(1) {
            return Err(ConfigError::new("max_file_age", "must be at least 1s"));
        }
        self.engine().validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipeline::component::parse_config;

    fn parse(yaml: &str) -> Result<ParquetConfig, ConfigError> {
        parse_config(serde_yaml::from_str(yaml).unwrap())
    }

    #[test]
    fn defaults_and_named_mistakes() {
        let c = parse("endpoint: ./data/archive\n").unwrap();
        assert_eq!(c.max_file_size_mib, 64);
        assert_eq!(c.max_file_age, Duration::from_secs(60));
        assert_eq!(c.compression, Compression::Zstd);
        assert!(!c.is_s3());
        let c = parse(
            "endpoint: s3://bucket/otel\ns3: {endpoint: 'http://minio:9000', allow_http: true}\n",
        )
        .unwrap();
        assert!(c.is_s3() && c.s3.allow_http);
        for (yaml, path) in [
            ("endpoint: ''\n", "endpoint"),
            ("endpoint: gs://b/x\n", "endpoint"),
            ("endpoint: /x\ns3: {region: eu-west-1}\n", "s3"),
            ("endpoint: /x\nmax_file_size_mib: 0\n", "max_file_size_mib"),
            ("endpoint: /x\nmax_file_age: 10ms\n", "max_file_age"),
            ("endpoint: /x\ncompression: lz4\n", "compression"),
            ("endpoint: /x\nrow_group_size: 3\n", ""),
        ] {
            let e = parse(yaml).unwrap_err();
            assert!(e.path.starts_with(path), "{yaml}: {e}");
        }
    }
}
