//! Client settings the OTLP exporters share: compression, TLS, endpoints, and
//! reading partial-success responses.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use pipeline::component::ConfigError;
use pipeline::Signal;
use prost::Message;
use serde::{Deserialize, Deserializer};

use crate::engine::Sent;

/// Request body compression; gzip by default, as otelcol.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Compression {
    /// No compression (`none` or empty).
    None,
    /// gzip.
    #[default]
    Gzip,
    /// zstd.
    Zstd,
}

impl<'de> Deserialize<'de> for Compression {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match String::deserialize(d)?.as_str() {
            "" | "none" => Ok(Compression::None),
            "gzip" => Ok(Compression::Gzip),
            "zstd" => Ok(Compression::Zstd),
            other => Err(serde::de::Error::custom(format!(
                "unsupported compression {other:?}: use gzip, zstd or none"
            ))),
        }
    }
}

/// `tls`: only plaintext connections are available so far.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Connect without TLS.
    pub insecure: bool,
    /// Skip certificate checks (TLS only).
    pub insecure_skip_verify: bool,
    /// CA bundle (TLS only).
    pub ca_file: Option<String>,
    /// Client certificate (TLS only).
    pub cert_file: Option<String>,
    /// Client key (TLS only).
    pub key_file: Option<String>,
}

/// Resolves an exporter endpoint to an `http://` URL, refusing TLS (which
/// this build cannot do yet) with a message that says how to proceed.
pub fn plaintext_url(endpoint: &str, tls: &TlsConfig) -> Result<String, ConfigError> {
    if endpoint.is_empty() {
        return Err(ConfigError::new("endpoint", "is required"));
    }
    if endpoint.starts_with("https://") {
        return Err(ConfigError::new(
            "endpoint",
            "TLS (https) is not supported yet; use an http:// endpoint",
        ));
    }
    if endpoint.starts_with("http://") {
        return Ok(endpoint.trim_end_matches('/').to_string());
    }
    if !tls.insecure {
        return Err(ConfigError::new(
            "tls.insecure",
            "TLS is not supported yet: set tls.insecure: true (or an http:// endpoint) for a plaintext connection",
        ));
    }
    Ok(format!("http://{}", endpoint.trim_end_matches('/')))
}

/// Reads a `Retry-After` header given in seconds.
pub fn retry_after(resp: &reqwest::Response) -> Option<std::time::Duration> {
    let v = resp
        .headers()
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?;
    v.trim()
        .parse::<u64>()
        .ok()
        .map(std::time::Duration::from_secs)
}

/// Reads a protobuf Export response's partial success.
pub fn partial_success(signal: Signal, body: &[u8]) -> Sent {
    let (rejected, message) = match signal {
        Signal::Traces => ExportTraceServiceResponse::decode(body)
            .ok()
            .and_then(|r| r.partial_success)
            .map(|p| (p.rejected_spans, p.error_message)),
        Signal::Metrics => ExportMetricsServiceResponse::decode(body)
            .ok()
            .and_then(|r| r.partial_success)
            .map(|p| (p.rejected_data_points, p.error_message)),
        Signal::Logs => ExportLogsServiceResponse::decode(body)
            .ok()
            .and_then(|r| r.partial_success)
            .map(|p| (p.rejected_log_records, p.error_message)),
    }
    .unwrap_or_default();
    Sent {
        rejected: rejected.max(0) as usize,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_resolve_or_explain() {
        let insecure = TlsConfig {
            insecure: true,
            ..Default::default()
        };
        assert_eq!(
            plaintext_url("tempo:4317", &insecure).unwrap(),
            "http://tempo:4317"
        );
        assert_eq!(
            plaintext_url("http://tempo:4318/", &TlsConfig::default()).unwrap(),
            "http://tempo:4318"
        );
        assert_eq!(
            plaintext_url("tempo:4317", &TlsConfig::default())
                .unwrap_err()
                .path,
            "tls.insecure"
        );
        assert_eq!(plaintext_url("", &insecure).unwrap_err().path, "endpoint");
    }
}
