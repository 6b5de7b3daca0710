//! `loadbalancing` exporter config: otelcol-contrib's keys. What this build
//! cannot honour yet is refused by name.

use std::time::Duration;

use pipeline::component::{parse_config, ConfigError, Validate};
use pipeline::Signal;
use serde::Deserialize;

use crate::otlp::OtlpConfig;

/// What picks the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoutingKey {
    /// The trace id (traces' default).
    TraceId,
    /// The resource's `service.name` (logs' and metrics' default).
    Service,
}

/// `resolver.static`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StaticResolver {
    /// Backends, exactly as written (no default port is added).
    pub hostnames: Vec<String>,
}

/// `resolver.dns`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DnsResolver {
    /// The name whose A/AAAA answers are the backends.
    pub hostname: String,
    /// The backends' port (a string in otelcol; a number is taken too).
    #[serde(default = "default_port", deserialize_with = "string_or_number")]
    pub port: String,
    /// How often the name is resolved again.
    #[serde(default = "five_seconds", with = "pipeline::duration")]
    pub interval: Duration,
    /// Time a resolution may take.
    #[serde(default = "one_second", with = "pipeline::duration")]
    pub timeout: Duration,
    /// A DNS server (`ip:port`) to ask instead of the system resolver (ours).
    #[serde(default)]
    pub nameserver: Option<std::net::SocketAddr>,
}

fn string_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match serde_yaml::Value::deserialize(d)? {
        serde_yaml::Value::String(s) => Ok(s),
        serde_yaml::Value::Number(n) => Ok(n.to_string()),
        other => Err(serde::de::Error::custom(format!(
            "expected a port, found {other:?}"
        ))),
    }
}

fn default_port() -> String {
    "4317".into()
}

fn five_seconds() -> Duration {
    Duration::from_secs(5)
}

fn one_second() -> Duration {
    Duration::from_secs(1)
}

/// `resolver`: exactly one of `static` and `dns`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ResolverConfig {
    /// A fixed list.
    #[serde(rename = "static", default)]
    pub static_list: Option<StaticResolver>,
    /// A DNS name, resolved every `interval`.
    #[serde(default)]
    pub dns: Option<DnsResolver>,
    /// Not available: refused.
    #[serde(default)]
    pub k8s: Option<serde_yaml::Value>,
    /// Not available: refused.
    #[serde(default)]
    pub aws_cloud_map: Option<serde_yaml::Value>,
}

/// `protocol`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProtocolConfig {
    /// The `otlp` exporter's keys, without `endpoint`.
    #[serde(default)]
    pub otlp: serde_yaml::Mapping,
}

/// `local` (ours): which ring entry is this instance, and the receiver
/// whose pipelines take its own share in-process.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LocalConfig {
    /// This instance's endpoint as the resolver lists it (`10.0.0.1:4319`).
    pub endpoint: String,
    /// The receiver peers send to (`otlp/peer`); data this instance owns
    /// goes to its pipelines without a network hop.
    pub receiver: String,
}

/// `loadbalancing` config.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LoadBalancingConfig {
    /// `traceID`, `service` (supported); `resource`, `metric`, `streamID`,
    /// `attributes` are refused for now.
    #[serde(default)]
    pub routing_key: Option<String>,
    /// For `routing_key: attributes` (refused for now).
    #[serde(default)]
    pub routing_attributes: Vec<String>,
    /// How backends are reached.
    pub protocol: ProtocolConfig,
    /// Where the backends are.
    pub resolver: ResolverConfig,
    /// Top-level queue (refused for now: each backend has its own, from
    /// `protocol.otlp.sending_queue`).
    #[serde(default)]
    pub sending_queue: Option<serde_yaml::Value>,
    /// Top-level retries (refused for now; see `sending_queue`).
    #[serde(default)]
    pub retry_on_failure: Option<serde_yaml::Value>,
    /// Top-level timeout (refused for now; `protocol.otlp.timeout` applies).
    #[serde(default)]
    pub timeout: Option<serde_yaml::Value>,
    /// This instance on the ring (ours; for the one-tier layout).
    #[serde(default)]
    pub local: Option<LocalConfig>,
}

const NOT_YET_TOP_LEVEL: &str = "the top-level queue is not available yet: set sending_queue / retry_on_failure / timeout under protocol.otlp (one queue per backend)";

impl LoadBalancingConfig {
    /// The routing for `signal` (otelcol's defaults: trace id for traces,
    /// service for the others).
    pub fn routing(&self, signal: Signal) -> Result<RoutingKey, ConfigError> {
        match (self.routing_key.as_deref(), signal) {
            (None | Some("traceID"), Signal::Traces) => Ok(RoutingKey::TraceId),
            (None | Some("service"), _) => Ok(RoutingKey::Service),
            (Some("traceID"), s) => Err(ConfigError::new(
                "routing_key",
                format!("traceID routes traces only, and this exporter is in a {s} pipeline"),
            )),
            (Some(k @ ("resource" | "metric" | "streamID" | "attributes")), _) => {
                Err(ConfigError::new(
                    "routing_key",
                    format!("{k:?} is not available yet: use traceID or service"),
                ))
            }
            (Some(other), _) => Err(ConfigError::new(
                "routing_key",
                format!("unknown routing key {other:?}: use traceID or service"),
            )),
        }
    }

    /// The `otlp` exporter config for one backend.
    pub fn backend(&self, endpoint: &str) -> Result<OtlpConfig, ConfigError> {
        let mut m = self.protocol.otlp.clone();
        m.insert("endpoint".into(), endpoint.into());
        parse_config::<OtlpConfig>(serde_yaml::Value::Mapping(m))
            .map_err(|e| e.under("protocol.otlp"))
    }
}

impl Validate for LoadBalancingConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.protocol.otlp.contains_key("endpoint") {
            return Err(ConfigError::new(
                "protocol.otlp.endpoint",
                "is set by the resolver: leave it out",
            ));
        }
        if let Some(k) = &self.routing_key {
            // Any signal's rule refuses an unknown key; traceID is checked
            // per pipeline when built.
            if k != "traceID" {
                self.routing(Signal::Logs)?;
            }
        }
        if !self.routing_attributes.is_empty() {
            return Err(ConfigError::new(
                "routing_attributes",
                "routing_key: attributes is not available yet",
            ));
        }
        for (key, set) in [
            ("sending_queue", self.sending_queue.is_some()),
            ("retry_on_failure", self.retry_on_failure.is_some()),
            ("timeout", self.timeout.is_some()),
        ] {
            if set {
                return Err(ConfigError::new(key, NOT_YET_TOP_LEVEL));
            }
        }
        if let Some(l) = &self.local {
            if l.endpoint.is_empty() || l.receiver.is_empty() {
                return Err(ConfigError::new(
                    "local",
                    "needs both endpoint and receiver",
                ));
            }
        }
        let r = &self.resolver;
        for (key, set) in [
            ("resolver.k8s", r.k8s.is_some()),
            ("resolver.aws_cloud_map", r.aws_cloud_map.is_some()),
        ] {
            if set {
                return Err(ConfigError::new(
                    key,
                    "is not available: use resolver.static or resolver.dns",
                ));
            }
        }
        match (&r.static_list, &r.dns) {
            (Some(s), None) => {
                if s.hostnames.is_empty() {
                    return Err(ConfigError::new(
                        "resolver.static.hostnames",
                        "must list at least one backend",
                    ));
                }
                for (i, h) in s.hostnames.iter().enumerate() {
                    self.backend(h).map_err(|e| {
                        ConfigError::new(format!("resolver.static.hostnames[{i}]"), e.to_string())
                    })?;
                }
            }
            (None, Some(d)) => {
                if d.hostname.is_empty() {
                    return Err(ConfigError::new("resolver.dns.hostname", "is required"));
                }
                if d.port.parse::<u16>().is_err() {
                    return Err(ConfigError::new(
                        "resolver.dns.port",
                        "must be a port number",
                    ));
                }
                if d.interval.is_zero() || d.timeout.is_zero() {
                    return Err(ConfigError::new(
                        "resolver.dns.interval",
                        "interval and timeout must be more than 0",
                    ));
                }
                self.backend(&format!("{}:{}", d.hostname, d.port))?;
            }
            _ => {
                return Err(ConfigError::new(
                    "resolver",
                    "set exactly one of static and dns",
                ))
            }
        }
        Ok(())
    }
}
