//! `loadbalancing` exporter config: otelcol-contrib's keys. What this build
//! cannot honour yet is refused by name.

use std::time::Duration;

use pipeline::component::{parse_config, ConfigError, Validate};
use pipeline::Signal;
use serde::Deserialize;

use crate::engine::{EngineSettings, QueueConfig, RetryConfig};
use crate::otlp::OtlpConfig;

/// What picks the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoutingKey {
    /// The trace id (traces' default).
    TraceId,
    /// The resource's `service.name` (logs' and metrics' default).
    Service,
    /// All of the resource's attributes (logs, metrics).
    Resource,
    /// The metric's name (metrics).
    Metric,
    /// Resource, scope, metric name and data point attributes (metrics).
    StreamId,
    /// The values of `routing_attributes` (every signal).
    Attributes,
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
    /// `traceID`, `service`, `resource`, `metric`, `streamID` or
    /// `attributes`; which signals take which is otelcol's table.
    #[serde(default)]
    pub routing_key: Option<String>,
    /// For `routing_key: attributes`: the attributes whose values route.
    #[serde(default)]
    pub routing_attributes: Vec<String>,
    /// How backends are reached.
    pub protocol: ProtocolConfig,
    /// Where the backends are.
    pub resolver: ResolverConfig,
    /// Top-level queue, before routing: off unless the section is given
    /// (otelcol's default). Its retries go through the ring again.
    #[serde(default)]
    pub sending_queue: Option<QueueConfig>,
    /// Top-level retries: off unless the section is given.
    #[serde(default)]
    pub retry_on_failure: Option<RetryConfig>,
    /// Top-level time for one routing attempt (all backends); 0 = none.
    #[serde(default, with = "pipeline::duration")]
    pub timeout: Duration,
    /// This instance on the ring (ours; for the one-tier layout).
    #[serde(default)]
    pub local: Option<LocalConfig>,
}

impl LoadBalancingConfig {
    /// The routing for `signal` (otelcol's defaults: trace id for traces,
    /// service for the others; otelcol's table of which key fits which
    /// signal).
    pub fn routing(&self, signal: Signal) -> Result<RoutingKey, ConfigError> {
        let key = match self.routing_key.as_deref() {
            None if signal == Signal::Traces => return Ok(RoutingKey::TraceId),
            None => return Ok(RoutingKey::Service),
            Some(k) => k,
        };
        let (parsed, fits): (RoutingKey, &[Signal]) = match key {
            "traceID" => (RoutingKey::TraceId, &[Signal::Traces, Signal::Logs]),
            "service" => (RoutingKey::Service, &Signal::ALL),
            "resource" => (RoutingKey::Resource, &[Signal::Logs, Signal::Metrics]),
            "metric" => (RoutingKey::Metric, &[Signal::Metrics]),
            "streamID" => (RoutingKey::StreamId, &[Signal::Metrics]),
            "attributes" => (RoutingKey::Attributes, &Signal::ALL),
            other => {
                return Err(ConfigError::new(
                    "routing_key",
                    format!("unknown routing key {other:?}: use traceID, service, resource, metric, streamID or attributes"),
                ))
            }
        };
        if !fits.contains(&signal) {
            let names: Vec<String> = fits.iter().map(|s| s.to_string()).collect();
            return Err(ConfigError::new(
                "routing_key",
                format!(
                    "{key} routes {} only, and this exporter is in a {signal} pipeline",
                    names.join(" and ")
                ),
            ));
        }
        Ok(parsed)
    }

    /// The top-level engine, when any of its keys turns it on.
    pub fn top_level(&self) -> Option<EngineSettings> {
        let queue = self.sending_queue.clone().unwrap_or(QueueConfig {
            enabled: false,
            ..QueueConfig::default()
        });
        let retry = self.retry_on_failure.clone().unwrap_or(RetryConfig {
            enabled: false,
            ..RetryConfig::default()
        });
        (queue.enabled || retry.enabled || !self.timeout.is_zero()).then_some(EngineSettings {
            timeout: self.timeout,
            retry,
            queue,
        })
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
        // An unknown key is refused here; one that does not fit the
        // pipeline's signal when the pipeline is built.
        if !Signal::ALL.iter().any(|s| self.routing(*s).is_ok()) {
            self.routing(Signal::Metrics)?;
            self.routing(Signal::Traces)?;
        }
        let by_attributes = self.routing_key.as_deref() == Some("attributes");
        if by_attributes && self.routing_attributes.is_empty() {
            return Err(ConfigError::new(
                "routing_attributes",
                "routing_key: attributes needs at least one attribute name",
            ));
        }
        if !by_attributes && !self.routing_attributes.is_empty() {
            return Err(ConfigError::new(
                "routing_attributes",
                "is used only with routing_key: attributes",
            ));
        }
        if let Some(top) = self.top_level() {
            top.validate()?;
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
        let any = match (&r.static_list, &r.dns) {
            (Some(s), _) => s.hostnames.first().cloned(),
            (_, Some(d)) => Some(format!("{}:{}", d.hostname, d.port)),
            _ => None,
        };
        if let Some(b) = any.and_then(|e| self.backend(&e).ok()) {
            if b.sending_queue.storage.is_some() {
                return Err(ConfigError::new(
                    "protocol.otlp.sending_queue.storage",
                    "a backend's own persistent queue would strand its data when it leaves the ring while this instance is down: put storage on the top-level sending_queue, whose batches are routed again on replay",
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
