//! `timescaledb` exporter config: a PostgreSQL URL, the schema the tables
//! live in, the pool, and what to set up when the TimescaleDB extension is
//! there. The queue, retry and timeout keys are the shared engine's.

use std::time::Duration;

use pipeline::component::{ConfigError, Validate};
use serde::Deserialize;

use crate::engine::{EngineSettings, QueueConfig, RetryConfig};

/// What to set up when the TimescaleDB extension is available.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TimescaleSettings {
    /// Make every table a hypertable with chunks this long.
    #[serde(with = "pipeline::duration")]
    pub chunk_time_interval: Duration,
    /// Compress chunks older than this; `0` = never.
    #[serde(with = "pipeline::duration")]
    pub compress_after: Duration,
    /// Drop chunks older than this; `0` = keep everything.
    #[serde(with = "pipeline::duration")]
    pub retention: Duration,
    /// Keep 1-minute and 1-hour rollups of `llm_calls` as continuous
    /// aggregates (on plain PostgreSQL they are ordinary views).
    pub continuous_aggregates: bool,
}

impl Default for TimescaleSettings {
    fn default() -> Self {
        TimescaleSettings {
            chunk_time_interval: Duration::from_secs(86_400),
            compress_after: Duration::from_secs(7 * 86_400),
            retention: Duration::from_secs(30 * 86_400),
            continuous_aggregates: true,
        }
    }
}

/// `tls` on `timescaledb`: the subset of otelcol's client keys libpq has.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PgTlsConfig {
    /// `sslmode=disable`: plaintext.
    pub insecure: bool,
    /// `sslmode=require`: TLS without checking the server's certificate.
    pub insecure_skip_verify: bool,
    /// `sslmode=verify-full` with this CA (`sslrootcert`).
    pub ca_file: Option<String>,
    /// Client certificate (`sslcert`).
    pub cert_file: Option<String>,
    /// Client key (`sslkey`).
    pub key_file: Option<String>,
}

/// libpq's URL parameters that name a file, and the key they are checked as.
const URL_FILES: [(&str, &str); 3] = [
    ("sslrootcert", "endpoint (sslrootcert)"),
    ("sslcert", "endpoint (sslcert)"),
    ("sslkey", "endpoint (sslkey)"),
];

/// Writes metrics, and LLM call rows derived from GenAI spans, to
/// PostgreSQL / TimescaleDB.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TimescaleConfig {
    /// `postgres://user:password@host:5432/db` (use `${env:…}` for the password).
    pub endpoint: String,
    /// Schema of the tables; created when missing.
    #[serde(default = "default_schema")]
    pub schema: String,
    /// Connections in the pool.
    #[serde(default = "default_pool")]
    pub pool_size: u32,
    /// Refuse to start on plain PostgreSQL instead of warning.
    #[serde(default)]
    pub require_timescaledb: bool,
    /// Hypertables, compression, retention and rollups.
    #[serde(default)]
    pub timescaledb: TimescaleSettings,
    /// TLS to the database, in otelcol's keys (mapped onto libpq's
    /// `sslmode`, `sslrootcert`, `sslcert`, `sslkey`, which the endpoint
    /// URL may also carry).
    #[serde(default)]
    pub tls: PgTlsConfig,
    /// Per-attempt timeout (connect and write).
    #[serde(
        default = "crate::engine::config::thirty_seconds",
        with = "pipeline::duration"
    )]
    pub timeout: Duration,
    /// Backoff for retryable failures (database down, restarting, busy).
    #[serde(default)]
    pub retry_on_failure: RetryConfig,
    /// The bounded queue in front of the exporter.
    #[serde(default)]
    pub sending_queue: QueueConfig,
}

fn default_schema() -> String {
    "observatory".into()
}

fn default_pool() -> u32 {
    4
}

/// Whether `s` can be written into SQL unquoted as a schema name.
fn plain_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && s.len() <= 63
}

impl TimescaleConfig {
    /// Connection options: the endpoint URL with `tls` applied over it.
    pub fn connect_options(&self) -> Result<sqlx::postgres::PgConnectOptions, ConfigError> {
        use sqlx::postgres::PgSslMode;
        let mut o = self
            .endpoint
            .parse::<sqlx::postgres::PgConnectOptions>()
            .map_err(|e| {
                ConfigError::new("endpoint", format!("is not a valid postgres URL: {e}"))
            })?;
        let t = &self.tls;
        let verify = t.ca_file.is_some() && !t.insecure_skip_verify;
        if t.insecure && (verify || t.cert_file.is_some() || t.insecure_skip_verify) {
            return Err(ConfigError::new(
                "tls.insecure",
                "turns TLS off (sslmode=disable), so the other tls keys cannot apply",
            ));
        }
        if t.insecure {
            o = o.ssl_mode(PgSslMode::Disable);
        } else if t.insecure_skip_verify {
            o = o.ssl_mode(PgSslMode::Require);
        } else if verify {
            o = o.ssl_mode(PgSslMode::VerifyFull);
        }
        if let Some(ca) = &t.ca_file {
            crate::tls::PemSource {
                key: "tls.ca".into(),
                file: Some(ca),
                pem: None,
            }
            .certs()?;
            o = o.ssl_root_cert(ca);
        }
        let cert = crate::tls::PemSource {
            key: "tls.cert".into(),
            file: t.cert_file.as_deref(),
            pem: None,
        };
        let key = crate::tls::PemSource {
            key: "tls.key".into(),
            file: t.key_file.as_deref(),
            pem: None,
        };
        let provider = crate::tls::provider("tls", &[])?;
        if crate::tls::identity("tls", cert, key, &provider)?.is_some() {
            o = o
                .ssl_client_cert(t.cert_file.as_deref().unwrap_or_default())
                .ssl_client_key(t.key_file.as_deref().unwrap_or_default());
        }
        for (param, key) in URL_FILES {
            let file = self
                .endpoint
                .split_once('?')
                .into_iter()
                .flat_map(|(_, q)| q.split('&'))
                .find_map(|kv| kv.strip_prefix(param)?.strip_prefix('='));
            if let Some(f) = file {
                std::fs::metadata(f)
                    .map_err(|e| ConfigError::new(key, format!("cannot read {f}: {e}")))?;
            }
        }
        Ok(o)
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

impl Validate for TimescaleConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let scheme_ok = ["postgres://", "postgresql://"]
            .iter()
            .any(|p| self.endpoint.starts_with(p));
        if !scheme_ok {
            return Err(ConfigError::new(
                "endpoint",
                "must be a URL like postgres://user:password@host:5432/database",
            ));
        }
        self.connect_options()?;
        if !plain_identifier(&self.schema) {
            return Err(ConfigError::new(
                "schema",
                "must be lower-case letters, digits and _ (not starting with a digit), at most 63",
            ));
        }
        if self.pool_size == 0 {
            return Err(ConfigError::new("pool_size", "must be at least 1"));
        }
        if self.timescaledb.chunk_time_interval < Duration::from_secs(60) {
            return Err(ConfigError::new(
                "timescaledb.chunk_time_interval",
                "must be at least 1m",
            ));
        }
        self.engine().validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipeline::component::parse_config;

    fn parse(yaml: &str) -> Result<TimescaleConfig, ConfigError> {
        parse_config(serde_yaml::from_str(yaml).unwrap())
    }

    #[test]
    fn defaults() {
        let c = parse("endpoint: postgres://u:p@db:5432/telemetry\n").unwrap();
        assert_eq!(c.schema, "observatory");
        assert_eq!(c.pool_size, 4);
        assert!(!c.require_timescaledb);
        assert_eq!(c.timescaledb, TimescaleSettings::default());
        assert_eq!(c.timeout, Duration::from_secs(30));
        assert!(c.sending_queue.enabled);
    }

    #[test]
    fn mistakes_are_named() {
        for (yaml, path) in [
            ("endpoint: mysql://db/x\n", "endpoint"),
            ("endpoint: postgres://db/x\nschema: \"x; drop\"\n", "schema"),
            ("endpoint: postgres://db/x\nschema: Metrics\n", "schema"),
            ("endpoint: postgres://db/x\npool_size: 0\n", "pool_size"),
            (
                "endpoint: postgres://db/x\ntimescaledb: {chunk_time_interval: 1s}\n",
                "timescaledb.chunk_time_interval",
            ),
            (
                "endpoint: postgres://db/x\ntimescaledb: {retension: 1d}\n",
                "timescaledb",
            ),
            ("endpoint: postgres://db/x\npassword: x\n", ""),
            (
                "endpoint: postgres://db/x\ntls: {ca_file: /nonexistent.pem}\n",
                "tls.ca_file",
            ),
            (
                "endpoint: postgres://db/x\ntls: {insecure: true, insecure_skip_verify: true}\n",
                "tls.insecure",
            ),
            (
                "endpoint: postgres://db/x\ntls: {min_version: '1.3'}\n",
                "tls",
            ),
            (
                "endpoint: postgres://db/x?sslrootcert=/nonexistent.pem\n",
                "endpoint",
            ),
        ] {
            let e = parse(yaml).unwrap_err();
            assert!(e.path.starts_with(path), "{yaml}: {e}");
            assert!(!e.to_string().is_empty());
        }
    }
}
