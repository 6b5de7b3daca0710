//! `otlp` receiver config: otelcol's keys and defaults.

use pipeline::component::{ConfigError, Validate};
use serde::{Deserialize, Deserializer};

/// `protocols.grpc`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    /// `host:port` to listen on.
    pub endpoint: String,
    /// Only `tcp`.
    pub transport: String,
    /// Largest message accepted, in MiB, after decompression.
    pub max_recv_msg_size_mib: u64,
    /// Streams per connection; 0 = no limit.
    pub max_concurrent_streams: u32,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        GrpcConfig {
            endpoint: "localhost:4317".into(),
            transport: "tcp".into(),
            max_recv_msg_size_mib: 4,
            max_concurrent_streams: 0,
        }
    }
}

/// `protocols.http`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// `host:port` to listen on.
    pub endpoint: String,
    /// Largest body accepted, in bytes, both as sent and after decompression.
    pub max_request_body_size: u64,
    /// Path for traces.
    pub traces_url_path: String,
    /// Path for metrics.
    pub metrics_url_path: String,
    /// Path for logs.
    pub logs_url_path: String,
    /// Headers added to every response.
    pub response_headers: std::collections::BTreeMap<String, String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            endpoint: "localhost:4318".into(),
            max_request_body_size: 20 * 1024 * 1024,
            traces_url_path: "/v1/traces".into(),
            metrics_url_path: "/v1/metrics".into(),
            logs_url_path: "/v1/logs".into(),
            response_headers: Default::default(),
        }
    }
}

/// `protocols`: a key present with no value (`grpc:`) enables it with defaults.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Protocols {
    /// OTLP/gRPC.
    #[serde(default, deserialize_with = "present")]
    pub grpc: Option<GrpcConfig>,
    /// OTLP/HTTP.
    #[serde(default, deserialize_with = "present")]
    pub http: Option<HttpConfig>,
}

fn present<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(
    d: D,
) -> Result<Option<T>, D::Error> {
    Ok(Some(Option::<T>::deserialize(d)?.unwrap_or_default()))
}

/// `otlp` receiver config.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OtlpReceiverConfig {
    /// Which protocols to serve.
    #[serde(default)]
    pub protocols: Protocols,
}

fn check_path(key: &str, p: &str) -> Result<(), ConfigError> {
    if !p.starts_with('/') {
        return Err(ConfigError::new(
            format!("protocols.http.{key}"),
            "must start with /",
        ));
    }
    Ok(())
}

impl Validate for OtlpReceiverConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let p = &self.protocols;
        if p.grpc.is_none() && p.http.is_none() {
            return Err(ConfigError::new(
                "protocols",
                "must enable at least one of grpc and http",
            ));
        }
        if let Some(g) = &p.grpc {
            if g.transport != "tcp" {
                return Err(ConfigError::new(
                    "protocols.grpc.transport",
                    "only tcp is supported",
                ));
            }
            if g.max_recv_msg_size_mib == 0 {
                return Err(ConfigError::new(
                    "protocols.grpc.max_recv_msg_size_mib",
                    "must be at least 1",
                ));
            }
            if !g.endpoint.contains(':') {
                return Err(ConfigError::new(
                    "protocols.grpc.endpoint",
                    "must be host:port",
                ));
            }
        }
        if let Some(h) = &p.http {
            if !h.endpoint.contains(':') {
                return Err(ConfigError::new(
                    "protocols.http.endpoint",
                    "must be host:port",
                ));
            }
            if h.max_request_body_size == 0 {
                return Err(ConfigError::new(
                    "protocols.http.max_request_body_size",
                    "must be at least 1",
                ));
            }
            check_path("traces_url_path", &h.traces_url_path)?;
            check_path("metrics_url_path", &h.metrics_url_path)?;
            check_path("logs_url_path", &h.logs_url_path)?;
            for (k, v) in &h.response_headers {
                if http::HeaderName::try_from(k.as_str()).is_err()
                    || http::HeaderValue::try_from(v.as_str()).is_err()
                {
                    return Err(ConfigError::new(
                        format!("protocols.http.response_headers.{k}"),
                        "is not a valid HTTP header",
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipeline::component::parse_config;

    #[test]
    fn bare_protocol_keys_enable_defaults() {
        let cfg: OtlpReceiverConfig =
            parse_config(serde_yaml::from_str("protocols:\n  grpc:\n  http:\n").unwrap()).unwrap();
        assert_eq!(cfg.protocols.grpc, Some(GrpcConfig::default()));
        assert_eq!(
            cfg.protocols.http.as_ref().unwrap().max_request_body_size,
            20 << 20
        );
        let only_grpc: OtlpReceiverConfig = parse_config(
            serde_yaml::from_str("protocols:\n  grpc:\n    endpoint: 0.0.0.0:4319\n").unwrap(),
        )
        .unwrap();
        assert!(only_grpc.protocols.http.is_none());
        assert_eq!(only_grpc.protocols.grpc.unwrap().endpoint, "0.0.0.0:4319");
    }

    #[test]
    fn no_protocol_and_bad_keys_are_named() {
        let err =
            parse_config::<OtlpReceiverConfig>(serde_yaml::from_str("protocols: {}").unwrap())
                .unwrap_err();
        assert_eq!(err.path, "protocols");
        let err = parse_config::<OtlpReceiverConfig>(
            serde_yaml::from_str("protocols:\n  http:\n    endpointt: x\n").unwrap(),
        )
        .unwrap_err();
        assert_eq!(err.path, "protocols.http.endpointt");
    }
}
