//! `kafka` receiver config: otelcol-contrib's keys and defaults (the client
//! keys are the exporter's, in `exporters::kafka::client`).

use std::time::Duration;

use exporters::kafka::client::{resolve, Encoding, SignalTopic};
use pipeline::component::{ConfigError, Validate};
use pipeline::Signal;
use serde::Deserialize;

/// The receiver's own keys.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ReceiverKeys {
    /// Older, all signals: the topic (per-signal `topic` wins).
    pub topic: Option<String>,
    /// Older, all signals: the encoding.
    pub encoding: Option<Encoding>,
    /// Traces' topic and encoding.
    pub traces: SignalTopic,
    /// Metrics' topic and encoding.
    pub metrics: SignalTopic,
    /// Logs' topic and encoding.
    pub logs: SignalTopic,
    /// The consumer group.
    pub group_id: String,
    /// Static membership id (optional).
    pub group_instance_id: String,
    /// `latest` or `earliest`: where a group without committed offsets starts.
    pub initial_offset: String,
    /// `range` or `roundrobin`.
    pub group_rebalance_strategy: String,
    /// The group coordinator drops a member silent this long.
    #[serde(with = "pipeline::duration")]
    pub session_timeout: Duration,
    /// How often the member tells the coordinator it is alive.
    #[serde(with = "pipeline::duration")]
    pub heartbeat_interval: Duration,
    /// Fewest bytes a fetch waits for.
    pub min_fetch_size: i32,
    /// Bytes fetched per partition per request.
    pub default_fetch_size: i32,
    /// Most bytes per fetch response (0: the client's default).
    pub max_fetch_size: i32,
    /// Longest a fetch waits for `min_fetch_size`.
    #[serde(with = "pipeline::duration")]
    pub max_fetch_wait: Duration,
    /// Committing marked offsets.
    pub autocommit: AutoCommit,
    /// When a message's offset is marked (and so committed).
    pub message_marking: MessageMarking,
}

impl Default for ReceiverKeys {
    fn default() -> Self {
        ReceiverKeys {
            topic: None,
            encoding: None,
            traces: SignalTopic::default(),
            metrics: SignalTopic::default(),
            logs: SignalTopic::default(),
            group_id: "otel-collector".into(),
            group_instance_id: String::new(),
            initial_offset: "latest".into(),
            group_rebalance_strategy: "range".into(),
            session_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(3),
            min_fetch_size: 1,
            default_fetch_size: 1_048_576,
            max_fetch_size: 0,
            max_fetch_wait: Duration::from_millis(250),
            autocommit: AutoCommit::default(),
            message_marking: MessageMarking::default(),
        }
    }
}

/// `autocommit`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AutoCommit {
    /// Commit marked offsets every `interval` (else after each message).
    pub enable: bool,
    /// How often.
    #[serde(with = "pipeline::duration")]
    pub interval: Duration,
}

impl Default for AutoCommit {
    fn default() -> Self {
        AutoCommit {
            enable: true,
            interval: Duration::from_secs(1),
        }
    }
}

/// `message_marking`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MessageMarking {
    /// Mark once the pipeline took the message (false: before handing it
    /// over, otelcol's default, which a crash can turn into a loss).
    pub after: bool,
    // otelcol's `on_error` / `on_permanent_error` are not accepted: Kafka
    // commits a position, so a message refused for good is passed over
    // once a later one is marked whatever they say; refusals that may
    // pass are retried here instead of marked.
}

impl Validate for ReceiverKeys {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.group_id.is_empty() {
            return Err(ConfigError::new("group_id", "must not be empty"));
        }
        if !matches!(self.initial_offset.as_str(), "latest" | "earliest") {
            return Err(ConfigError::new(
                "initial_offset",
                format!("{:?} is not latest or earliest", self.initial_offset),
            ));
        }
        if !matches!(
            self.group_rebalance_strategy.as_str(),
            "range" | "roundrobin"
        ) {
            return Err(ConfigError::new(
                "group_rebalance_strategy",
                format!(
                    "{:?} is not supported: use range or roundrobin (librdkafka has no eager sticky assignor)",
                    self.group_rebalance_strategy
                ),
            ));
        }
        if self.heartbeat_interval >= self.session_timeout {
            return Err(ConfigError::new(
                "heartbeat_interval",
                "must be shorter than session_timeout",
            ));
        }
        if self.min_fetch_size < 1 || self.default_fetch_size < 1 || self.max_fetch_size < 0 {
            return Err(ConfigError::new(
                "default_fetch_size",
                "fetch sizes must be positive (max_fetch_size 0: no limit)",
            ));
        }
        for s in Signal::ALL {
            if self.topic_of(s).0.is_empty() {
                return Err(ConfigError::new(
                    format!("{}.topic", s.as_str()),
                    "must not be empty",
                ));
            }
        }
        Ok(())
    }
}

impl ReceiverKeys {
    /// The topic and encoding of `signal`.
    pub fn topic_of(&self, signal: Signal) -> (String, Encoding) {
        let per = match signal {
            Signal::Traces => &self.traces,
            Signal::Metrics => &self.metrics,
            Signal::Logs => &self.logs,
        };
        resolve(signal, per, &self.topic, &self.encoding)
    }

    /// Consumer properties beside the client's.
    pub fn consumer_properties(&self, p: &mut rdkafka::ClientConfig) {
        let ms = |d: Duration| d.as_millis().to_string();
        p.set("group.id", &self.group_id);
        if !self.group_instance_id.is_empty() {
            p.set("group.instance.id", &self.group_instance_id);
        }
        p.set("auto.offset.reset", &self.initial_offset);
        p.set(
            "partition.assignment.strategy",
            &self.group_rebalance_strategy,
        );
        p.set("session.timeout.ms", ms(self.session_timeout));
        p.set("heartbeat.interval.ms", ms(self.heartbeat_interval));
        p.set("fetch.min.bytes", self.min_fetch_size.to_string());
        p.set(
            "max.partition.fetch.bytes",
            self.default_fetch_size.to_string(),
        );
        if self.max_fetch_size > 0 {
            p.set("fetch.max.bytes", self.max_fetch_size.to_string());
        }
        p.set("fetch.wait.max.ms", ms(self.max_fetch_wait));
        // Offsets are stored by us when a message is marked; the client
        // commits what was stored.
        p.set("enable.auto.offset.store", "false");
        p.set("enable.auto.commit", self.autocommit.enable.to_string());
        p.set("auto.commit.interval.ms", ms(self.autocommit.interval));
        // The client's prefetch is the receiver's one queue: bound it.
        p.set("queued.max.messages.kbytes", "16384");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use exporters::kafka::client::{parse_with_client, ClientConfig};

    fn parse(yaml: &str) -> Result<(ClientConfig, ReceiverKeys), ConfigError> {
        parse_with_client(serde_yaml::from_str(yaml).unwrap())
    }

    #[test]
    fn otelcol_defaults() {
        let (_, k) = parse("brokers: [k:9092]").unwrap();
        assert_eq!(k.group_id, "otel-collector");
        assert_eq!(k.initial_offset, "latest");
        assert!(!k.message_marking.after);
        assert!(k.autocommit.enable);
        assert_eq!(k.topic_of(Signal::Traces).0, "otlp_spans");
        let mut p = rdkafka::ClientConfig::new();
        k.consumer_properties(&mut p);
        assert_eq!(p.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(p.get("session.timeout.ms"), Some("10000"));
    }

    #[test]
    fn what_cannot_be_honoured_is_refused_by_name() {
        let path = |yaml: &str| parse(yaml).unwrap_err().path;
        assert_eq!(path("initial_offset: oldest"), "initial_offset");
        assert_eq!(
            path("group_rebalance_strategy: sticky"),
            "group_rebalance_strategy"
        );
        let e = parse("header_extraction: {extract_headers: true}").unwrap_err();
        assert!(e.to_string().contains("header_extraction"), "{e}");
    }
}
