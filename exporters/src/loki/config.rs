//! `loki` exporter config. otelcol's own `loki` exporter is gone (Loki takes
//! OTLP now); these keys follow its last version and Loki's push API.

use std::collections::BTreeMap;
use std::time::Duration;

use pipeline::component::{ConfigError, Validate};
use serde::Deserialize;

use crate::engine::{EngineSettings, QueueConfig, RetryConfig};
use crate::tls::client::{ClientTlsConfig, Target};

/// The push path appended to an endpoint given without one.
pub const PUSH_PATH: &str = "/loki/api/v1/push";

/// The attributes that become stream labels unless `labels` says otherwise.
pub const DEFAULT_LABELS: [&str; 5] = [
    "service.name",
    "service.namespace",
    "deployment.environment",
    "telemetry.source",
    "level",
];

/// Body of a push.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `logproto.PushRequest`, snappy block compressed (Loki's native form).
    #[default]
    Protobuf,
    /// Loki's JSON push body, for proxies that need it.
    Json,
}

/// How attributes are written into the line when structured metadata is off.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LineFormat {
    /// One JSON object: body, severity, attributes, resources, ids.
    #[default]
    Json,
    /// `key=value` pairs.
    Logfmt,
}

/// `basic_auth`: HTTP basic authentication.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// User name.
    pub username: String,
    /// Password (use `${env:…}`).
    #[serde(default)]
    pub password: pipeline::secret::Secret,
}

/// Pushes logs to Loki.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LokiConfig {
    /// Loki's URL; `/loki/api/v1/push` is added when it has no path.
    #[serde(default)]
    pub endpoint: String,
    /// Connection security.
    #[serde(default)]
    pub tls: ClientTlsConfig,
    /// The auth extension that authenticates every request
    /// (`bearertokenauth`, `basicauth`, `headers_setter`).
    #[serde(default)]
    pub auth: Option<pipeline::auth::AuthConfig>,
    /// Sent as `X-Scope-OrgID` (Loki's tenant).
    pub tenant_id: Option<String>,
    /// Headers sent with every push.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// HTTP basic authentication.
    pub basic_auth: Option<BasicAuth>,
    /// A bearer token (`Authorization: Bearer …`).
    pub bearer_token: Option<pipeline::secret::Secret>,
    /// Push body: protobuf (default) or json.
    #[serde(default)]
    pub format: Format,
    /// Attributes (log record first, then resource) that become stream
    /// labels; `level` is the record's severity.
    #[serde(default = "default_labels")]
    pub labels: Vec<String>,
    /// Put the other attributes and the trace/span ids in structured
    /// metadata (Loki 3); off writes them into the line.
    #[serde(default = "yes")]
    pub structured_metadata: bool,
    /// The line's layout when `structured_metadata` is off.
    #[serde(default)]
    pub line_format: LineFormat,
    /// Per-attempt timeout.
    #[serde(
        default = "crate::engine::config::thirty_seconds",
        with = "pipeline::duration"
    )]
    pub timeout: Duration,
    /// Backoff for retryable failures (429, 5xx, network).
    #[serde(default)]
    pub retry_on_failure: RetryConfig,
    /// The bounded queue in front of the exporter.
    #[serde(default)]
    pub sending_queue: QueueConfig,
}

fn default_labels() -> Vec<String> {
    DEFAULT_LABELS.iter().map(|s| s.to_string()).collect()
}

fn yes() -> bool {
    true
}

impl LokiConfig {
    /// The engine part of the config.
    pub fn engine(&self) -> EngineSettings {
        EngineSettings {
            timeout: self.timeout,
            retry: self.retry_on_failure.clone(),
            queue: self.sending_queue.clone(),
        }
    }

    /// The URL pushes go to.
    pub fn url(&self) -> Result<Target, ConfigError> {
        let mut t = self.tls.resolve("endpoint", &self.endpoint)?;
        let has_path = t
            .url
            .split_once("://")
            .is_some_and(|(_, rest)| rest.contains('/'));
        if !has_path {
            t.url.push_str(PUSH_PATH);
        }
        Ok(t)
    }
}

impl Validate for LokiConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.url()?;
        let mut headers: Vec<(String, &str)> = self
            .headers
            .iter()
            .map(|(k, v)| (format!("headers.{k}"), v.as_str()))
            .collect();
        if let Some(t) = &self.tenant_id {
            headers.push(("tenant_id".into(), t));
        }
        if let Some(t) = &self.bearer_token {
            headers.push(("bearer_token".into(), t.expose()));
        }
        for (path, v) in headers {
            let name_ok = !path.starts_with("headers.")
                || http::HeaderName::try_from(&path["headers.".len()..]).is_ok();
            if !name_ok || http::HeaderValue::try_from(v).is_err() {
                return Err(ConfigError::new(path, "is not a valid HTTP header"));
            }
        }
        if self.basic_auth.is_some() && self.bearer_token.is_some() {
            return Err(ConfigError::new(
                "bearer_token",
                "set either basic_auth or bearer_token, not both",
            ));
        }
        if self.labels.is_empty() {
            return Err(ConfigError::new(
                "labels",
                "needs at least one attribute: Loki refuses streams without labels",
            ));
        }
        self.engine().validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipeline::component::parse_config;

    fn parse(yaml: &str) -> Result<LokiConfig, ConfigError> {
        parse_config(serde_yaml::from_str(yaml).unwrap())
    }

    #[test]
    fn defaults_and_urls() {
        let cfg = parse("endpoint: http://loki:3100\n").unwrap();
        assert_eq!(cfg.url().unwrap().url, "http://loki:3100/loki/api/v1/push");
        assert_eq!(cfg.format, Format::Protobuf);
        assert_eq!(cfg.labels, default_labels());
        assert!(cfg.structured_metadata);
        assert_eq!(cfg.line_format, LineFormat::Json);
        assert_eq!(cfg.timeout, Duration::from_secs(30));
        let cfg = parse("endpoint: http://gw:8080/custom/push\nformat: json\n").unwrap();
        assert_eq!(cfg.url().unwrap().url, "http://gw:8080/custom/push");
        assert_eq!(cfg.format, Format::Json);
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            ("endpoint: http://l\nlabelz: [a]\n", "labelz"),
            ("endpoint: http://l\nformat: xml\n", "format"),
            ("endpoint: http://l\nlabels: []\n", "labels"),
            ("endpoint: http://l\ntenant_id: \"a\\nb\"\n", "tenant_id"),
            (
                "endpoint: http://l\nbearer_token: t\nbasic_auth: {username: u}\n",
                "bearer_token",
            ),
            (
                "endpoint: http://l\nheaders: {\"bad header\": x}\n",
                "headers.bad header",
            ),
            ("labels: [a]\n", "endpoint"),
        ];
        for (yaml, path) in cases {
            let err = parse(yaml).unwrap_err();
            assert!(
                err.path == path || err.to_string().contains(path),
                "{yaml}: {err}"
            );
        }
    }
}
