//! `otlp` receiver config: otelcol's keys and defaults.

use std::time::Duration;

use pipeline::component::{ConfigError, Validate};
use serde::{Deserialize, Deserializer};

use crate::receivers::admission::AdmissionConfig;
use crate::receivers::tls::ServerTlsConfig;
use pipeline::auth::AuthConfig;

/// Open connections per listener unless configured (ours): far above what a
/// gateway behind a load balancer sees, far below a process's descriptors.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

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
    /// Open connections at most (ours; otelcol has no cap); 0 = no cap.
    /// Beyond it a new connection is closed at once.
    pub max_connections: usize,
    /// TLS (and mTLS with `client_ca_file`); absent = plaintext.
    pub tls: Option<ServerTlsConfig>,
    /// The auth extension that checks every request.
    pub auth: Option<AuthConfig>,
    /// Keep each request's headers in its client context (for
    /// `from_context`, `batch` `metadata_keys`, `ratelimit`).
    pub include_metadata: bool,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        GrpcConfig {
            endpoint: "localhost:4317".into(),
            transport: "tcp".into(),
            max_recv_msg_size_mib: 4,
            max_concurrent_streams: 0,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            tls: None,
            auth: None,
            include_metadata: false,
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
    /// Time a client has to send a request's headers (otelcol: 1m); also
    /// the time a new connection (HTTP/1 or h2c) has for its first bytes.
    #[serde(with = "pipeline::duration")]
    pub read_header_timeout: Duration,
    /// Time for a whole request, headers and body; 0 = none (otelcol's default).
    #[serde(with = "pipeline::duration")]
    pub read_timeout: Duration,
    /// Time from a request's headers to its answer (otelcol: 30s); a
    /// pipeline that has not taken the data by then gets the client a 503.
    #[serde(with = "pipeline::duration")]
    pub write_timeout: Duration,
    /// A connection with no request in progress for this long is closed
    /// (otelcol: 1m); 0 = never.
    #[serde(with = "pipeline::duration")]
    pub idle_timeout: Duration,
    /// Time to read a request's body once its headers are in (ours: otelcol
    /// has none, so a client trickling a body holds a connection forever).
    #[serde(with = "pipeline::duration")]
    pub body_read_timeout: Duration,
    /// Open connections at most (ours; otelcol has no cap); 0 = no cap.
    pub max_connections: usize,
    /// TLS (and mTLS with `client_ca_file`); absent = plaintext.
    pub tls: Option<ServerTlsConfig>,
    /// The auth extension that checks every request.
    pub auth: Option<AuthConfig>,
    /// Keep each request's headers in its client context (for
    /// `from_context`, `batch` `metadata_keys`, `ratelimit`).
    pub include_metadata: bool,
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
            read_header_timeout: Duration::from_secs(60),
            read_timeout: Duration::ZERO,
            write_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            body_read_timeout: Duration::from_secs(60),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            tls: None,
            auth: None,
            include_metadata: false,
        }
    }
}

/// ALPN offered by the gRPC listener.
pub const GRPC_ALPN: &[&[u8]] = &[b"h2"];
/// ALPN offered by the HTTP listener.
pub const HTTP_ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

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
    /// The budget of decoded bytes shared by both protocols (ours).
    #[serde(default)]
    pub admission: AdmissionConfig,
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
        self.admission.validate()?;
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
            if let Some(t) = &g.tls {
                t.build("protocols.grpc.tls", GRPC_ALPN)?;
            }
        }
        if let Some(h) = &p.http {
            if !h.endpoint.contains(':') {
                return Err(ConfigError::new(
                    "protocols.http.endpoint",
                    "must be host:port",
                ));
            }
            if let Some(t) = &h.tls {
                t.build("protocols.http.tls", HTTP_ALPN)?;
            }
            if h.max_request_body_size == 0 {
                return Err(ConfigError::new(
                    "protocols.http.max_request_body_size",
                    "must be at least 1",
                ));
            }
            for (key, d) in [
                ("read_header_timeout", h.read_header_timeout),
                ("write_timeout", h.write_timeout),
                ("body_read_timeout", h.body_read_timeout),
            ] {
                if d.is_zero() {
                    return Err(ConfigError::new(
                        format!("protocols.http.{key}"),
                        "must be more than 0: without it a slow client holds a connection forever",
                    ));
                }
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

    #[test]
    fn tls_mistakes_are_named_under_their_protocol() {
        let parse = |yaml: &str| {
            parse_config::<OtlpReceiverConfig>(serde_yaml::from_str(yaml).unwrap()).unwrap_err()
        };
        let e =
            parse("protocols:\n  grpc:\n    tls: {cert_file: /nonexistent.pem, key_file: /k}\n");
        assert_eq!(e.path, "protocols.grpc.tls.cert_file");
        assert!(e.message.contains("/nonexistent.pem"), "{e}");
        let e = parse("protocols:\n  http:\n    tls: {min_version: '1.1'}\n");
        assert_eq!(e.path, "protocols.http.tls.min_version");
        let e = parse("protocols:\n  http:\n    tls: {}\n");
        assert_eq!(e.path, "protocols.http.tls.cert_file");
        let e = parse("protocols:\n  http:\n    tls: {ca_file: /x}\n");
        assert_eq!(e.path, "protocols.http.tls.ca_file");
    }
}
