//! What the `kafka` exporter and receiver share: otelcol-contrib's client
//! keys (`brokers`, `client_id`, `auth`, `tls`, `metadata`, …) turned into
//! librdkafka properties.

use std::time::Duration;

use pipeline::component::{parse_config, ConfigError, Validate};
use pipeline::secret::Secret;
use rdkafka::ClientConfig as Properties;
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// The connection keys of otelcol-contrib's `configkafka.ClientConfig`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClientConfig {
    /// Bootstrap brokers, `host:port`.
    pub brokers: Vec<String>,
    /// Resolve each broker name to its canonical name first (Kerberos setups).
    pub resolve_canonical_bootstrap_servers_only: bool,
    /// The oldest broker version spoken to. From 0.10.0 brokers list their
    /// API versions and librdkafka uses the highest both know (what Sarama
    /// does from that version on); older ones are spoken to as this version.
    pub protocol_version: String,
    /// Sent with every request, for the broker's logs and quotas.
    pub client_id: String,
    /// The client's rack, for fetching from the closest replica.
    pub rack_id: String,
    /// SASL (and the older `auth.tls`).
    pub auth: AuthConfig,
    /// TLS to the brokers; absent: plaintext.
    pub tls: Option<TlsConfig>,
    /// Metadata refresh.
    pub metadata: MetadataConfig,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            brokers: vec!["localhost:9092".into()],
            resolve_canonical_bootstrap_servers_only: false,
            protocol_version: "2.1.0".into(),
            client_id: "otel-collector".into(),
            rack_id: String::new(),
            auth: AuthConfig::default(),
            tls: None,
            metadata: MetadataConfig::default(),
        }
    }
}

/// `auth`: SASL, the deprecated `plain_text`, and the older place of `tls`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// SASL username and password.
    pub sasl: Option<SaslConfig>,
    /// Deprecated in otelcol: SASL/PLAIN.
    pub plain_text: Option<PlainText>,
    /// Deprecated in otelcol: the top-level `tls`, here.
    pub tls: Option<TlsConfig>,
}

/// `auth.sasl`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SaslConfig {
    /// User name.
    pub username: String,
    /// Password.
    pub password: Secret,
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: String,
    // otelcol's `version` (the SASL handshake) is not accepted: librdkafka
    // uses the one the broker offers.
}

/// `auth.plain_text`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PlainText {
    /// User name.
    pub username: String,
    /// Password.
    pub password: Secret,
}

/// `tls`: otelcol's client TLS keys that librdkafka (OpenSSL) can honour.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Plaintext after all (otelcol: a `tls` block with `insecure: true`).
    pub insecure: bool,
    /// Do not verify the brokers' certificates.
    pub insecure_skip_verify: bool,
    /// CA bundle that signs the brokers' certificates.
    pub ca_file: Option<String>,
    /// The same, inline.
    pub ca_pem: Option<String>,
    /// Client certificate (mutual TLS).
    pub cert_file: Option<String>,
    /// The same, inline.
    pub cert_pem: Option<String>,
    /// The client certificate's key.
    pub key_file: Option<String>,
    /// The same, inline.
    pub key_pem: Option<Secret>,
}

/// `metadata`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetadataConfig {
    /// Keep metadata of every topic, not only those in use.
    pub full: bool,
    /// How often metadata is refreshed.
    #[serde(with = "pipeline::duration")]
    pub refresh_interval: Duration,
}

impl Default for MetadataConfig {
    fn default() -> Self {
        MetadataConfig {
            full: true,
            refresh_interval: Duration::from_secs(600),
        }
    }
}

/// The keys of [`ClientConfig`], which sit beside each component's own.
const CLIENT_KEYS: [&str; 8] = [
    "brokers",
    "resolve_canonical_bootstrap_servers_only",
    "protocol_version",
    "client_id",
    "rack_id",
    "auth",
    "tls",
    "metadata",
];

/// Parses a component config whose client keys sit beside its own keys
/// `T` (serde cannot both flatten and refuse unknown keys): the client
/// keys become a [`ClientConfig`], the rest a `T`.
pub fn parse_with_client<T: DeserializeOwned + Validate>(
    value: serde_yaml::Value,
) -> Result<(ClientConfig, T), ConfigError> {
    let mut client = serde_yaml::Mapping::new();
    let mut own = serde_yaml::Mapping::new();
    if let serde_yaml::Value::Mapping(m) = value {
        for (k, v) in m {
            let is_client = k.as_str().is_some_and(|k| CLIENT_KEYS.contains(&k));
            if is_client {
                client.insert(k, v);
            } else {
                own.insert(k, v);
            }
        }
    }
    Ok((
        parse_config(serde_yaml::Value::Mapping(client))?,
        parse_config(serde_yaml::Value::Mapping(own))?,
    ))
}

impl Validate for ClientConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.brokers.is_empty() || self.brokers.iter().any(|b| b.trim().is_empty()) {
            return Err(ConfigError::new(
                "brokers",
                "must list at least one host:port",
            ));
        }
        let version_ok = self
            .protocol_version
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        if !version_ok || self.protocol_version.split('.').count() < 2 {
            return Err(ConfigError::new(
                "protocol_version",
                format!(
                    "{:?} is not a Kafka version like 2.1.0",
                    self.protocol_version
                ),
            ));
        }
        if self.tls.is_some() && self.auth.tls.is_some() {
            return Err(ConfigError::new(
                "auth.tls",
                "give tls in one place: tls (or the older auth.tls)",
            ));
        }
        if let Some(s) = &self.auth.sasl {
            if !matches!(
                s.mechanism.as_str(),
                "PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512"
            ) {
                return Err(ConfigError::new(
                    "auth.sasl.mechanism",
                    format!(
                        "{:?} is not supported: use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
                        s.mechanism
                    ),
                ));
            }
        }
        if self.auth.sasl.is_some() && self.auth.plain_text.is_some() {
            return Err(ConfigError::new(
                "auth.plain_text",
                "give one of auth.sasl and auth.plain_text",
            ));
        }
        if let Some(t) = self.tls() {
            if t.ca_file.is_some() && t.ca_pem.is_some() {
                return Err(ConfigError::new(
                    "tls.ca_pem",
                    "give ca_file or ca_pem, not both",
                ));
            }
            let cert = t.cert_file.is_some() || t.cert_pem.is_some();
            let key = t.key_file.is_some() || t.key_pem.is_some();
            if cert != key {
                return Err(ConfigError::new(
                    "tls.key_file",
                    "a client certificate needs its key, and a key its certificate",
                ));
            }
        }
        Ok(())
    }
}

impl ClientConfig {
    /// `protocol_version` when it is older than 0.10.0, as librdkafka names
    /// those versions.
    fn pre_0_10(&self) -> Option<&'static str> {
        let mut parts = self
            .protocol_version
            .split('.')
            .map(|p| p.parse::<u32>().unwrap_or(0));
        match (parts.next(), parts.next(), parts.next()) {
            (Some(0), Some(8), Some(0)) => Some("0.8.0"),
            (Some(0), Some(8), Some(1)) => Some("0.8.1"),
            (Some(0), Some(8), _) => Some("0.8.2"),
            (Some(0), Some(9), _) => Some("0.9.0"),
            (Some(0), Some(m), _) if m < 8 => Some("0.8.0"),
            _ => None,
        }
    }

    fn tls(&self) -> Option<&TlsConfig> {
        self.tls.as_ref().or(self.auth.tls.as_ref())
    }

    /// The librdkafka properties for these keys.
    pub fn properties(&self) -> Properties {
        let mut p = Properties::new();
        p.set("bootstrap.servers", self.brokers.join(","));
        p.set("client.id", &self.client_id);
        p.set(
            "topic.metadata.refresh.interval.ms",
            self.metadata.refresh_interval.as_millis().to_string(),
        );
        p.set(
            "topic.metadata.refresh.sparse",
            (!self.metadata.full).to_string(),
        );
        if let Some(old) = self.pre_0_10() {
            // These brokers cannot say which versions they speak.
            p.set("api.version.request", "false");
            p.set("broker.version.fallback", old);
        }
        if self.resolve_canonical_bootstrap_servers_only {
            p.set(
                "client.dns.lookup",
                "resolve_canonical_bootstrap_servers_only",
            );
        }
        if !self.rack_id.is_empty() {
            p.set("client.rack", &self.rack_id);
        }
        let tls = self.tls().filter(|t| !t.insecure);
        let sasl = match (&self.auth.sasl, &self.auth.plain_text) {
            (Some(s), _) => Some((s.mechanism.as_str(), &s.username, &s.password)),
            (None, Some(p)) => Some(("PLAIN", &p.username, &p.password)),
            _ => None,
        };
        let protocol = match (tls.is_some(), sasl.is_some()) {
            (false, false) => "plaintext",
            (true, false) => "ssl",
            (false, true) => "sasl_plaintext",
            (true, true) => "sasl_ssl",
        };
        p.set("security.protocol", protocol);
        if let Some((mechanism, user, password)) = sasl {
            p.set("sasl.mechanism", mechanism);
            p.set("sasl.username", user);
            p.set("sasl.password", password.expose());
        }
        if let Some(t) = tls {
            let pairs = [
                ("ssl.ca.location", t.ca_file.as_deref()),
                ("ssl.ca.pem", t.ca_pem.as_deref()),
                ("ssl.certificate.location", t.cert_file.as_deref()),
                ("ssl.certificate.pem", t.cert_pem.as_deref()),
                ("ssl.key.location", t.key_file.as_deref()),
                ("ssl.key.pem", t.key_pem.as_ref().map(Secret::expose)),
            ];
            for (k, v) in pairs {
                if let Some(v) = v {
                    p.set(k, v);
                }
            }
            if t.insecure_skip_verify {
                p.set("enable.ssl.certificate.verification", "false");
                p.set("ssl.endpoint.identification.algorithm", "none");
            }
        }
        p
    }
}

/// One signal's `topic` and `encoding` (`traces:`, `logs:`, `metrics:`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SignalTopic {
    /// The topic; otelcol's per-signal default when absent.
    pub topic: Option<String>,
    /// The message encoding.
    pub encoding: Option<Encoding>,
}

/// How a message's value is encoded.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// The OTLP export request, protobuf (otelcol's default).
    #[default]
    OtlpProto,
    /// The OTLP export request, OTLP/JSON.
    OtlpJson,
}

/// otelcol's default topics.
pub fn default_topic(signal: pipeline::Signal) -> &'static str {
    match signal {
        pipeline::Signal::Traces => "otlp_spans",
        pipeline::Signal::Metrics => "otlp_metrics",
        pipeline::Signal::Logs => "otlp_logs",
    }
}

/// The topic and encoding of `signal`: the signal's own keys, else the
/// older top-level `topic` / `encoding`, else otelcol's defaults.
pub fn resolve(
    signal: pipeline::Signal,
    per_signal: &SignalTopic,
    topic: &Option<String>,
    encoding: &Option<Encoding>,
) -> (String, Encoding) {
    let t = per_signal
        .topic
        .clone()
        .or_else(|| topic.clone())
        .unwrap_or_else(|| default_topic(signal).to_string());
    let e = per_signal.encoding.or(*encoding).unwrap_or_default();
    (t, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(yaml: &str) -> Properties {
        let c: ClientConfig = parse_config(serde_yaml::from_str(yaml).unwrap()).unwrap();
        c.properties()
    }

    #[test]
    fn defaults_are_otelcols_and_plaintext() {
        let p = props("{}");
        assert_eq!(p.get("bootstrap.servers"), Some("localhost:9092"));
        assert_eq!(p.get("client.id"), Some("otel-collector"));
        assert_eq!(p.get("security.protocol"), Some("plaintext"));
        assert_eq!(p.get("topic.metadata.refresh.interval.ms"), Some("600000"));
        assert_eq!(
            p.get("api.version.request"),
            None,
            "negotiated from 0.10.0 on"
        );
    }

    #[test]
    fn a_pre_0_10_protocol_version_is_spoken_as_such() {
        let p = props("protocol_version: 0.9.0.1");
        assert_eq!(p.get("api.version.request"), Some("false"));
        assert_eq!(p.get("broker.version.fallback"), Some("0.9.0"));
        assert_eq!(
            props("protocol_version: 0.8.2.2").get("broker.version.fallback"),
            Some("0.8.2")
        );
        assert_eq!(
            props("protocol_version: 2.0.0").get("broker.version.fallback"),
            None
        );
    }

    #[test]
    fn sasl_and_tls_choose_the_security_protocol() {
        let p = props(
            "brokers: [a:9093, b:9093]\nauth:\n  sasl: {username: u, password: pw, mechanism: SCRAM-SHA-512}\ntls: {ca_file: /ca.pem}",
        );
        assert_eq!(p.get("bootstrap.servers"), Some("a:9093,b:9093"));
        assert_eq!(p.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(p.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(p.get("sasl.password"), Some("pw"));
        assert_eq!(p.get("ssl.ca.location"), Some("/ca.pem"));
        let old = props(
            "auth:\n  plain_text: {username: u, password: pw}\n  tls: {insecure_skip_verify: true}",
        );
        assert_eq!(old.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(old.get("sasl.mechanism"), Some("PLAIN"));
        assert_eq!(
            old.get("enable.ssl.certificate.verification"),
            Some("false")
        );
        assert_eq!(
            props("tls: {insecure: true}").get("security.protocol"),
            Some("plaintext")
        );
    }

    #[test]
    fn what_cannot_be_honoured_is_refused_by_name() {
        let bad = |yaml: &str| {
            parse_config::<ClientConfig>(serde_yaml::from_str(yaml).unwrap())
                .unwrap_err()
                .path
        };
        assert_eq!(bad("brokers: []"), "brokers");
        assert_eq!(
            bad("auth: {sasl: {username: u, password: p, mechanism: GSSAPI}}"),
            "auth.sasl.mechanism"
        );
        assert_eq!(bad("protocol_version: latest"), "protocol_version");
        let version = parse_config::<ClientConfig>(
            serde_yaml::from_str(
                "auth: {sasl: {username: u, password: p, mechanism: PLAIN, version: 1}}",
            )
            .unwrap(),
        )
        .unwrap_err();
        assert!(version.to_string().contains("version"), "{version}");
        assert_eq!(bad("tls: {cert_file: /c.pem}"), "tls.key_file");
        let unknown =
            parse_config::<ClientConfig>(serde_yaml::from_str("auth: {kerberos: {}}").unwrap())
                .unwrap_err();
        assert!(unknown.to_string().contains("kerberos"), "{unknown}");
    }
}
