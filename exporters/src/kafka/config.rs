//! `kafka` exporter config: otelcol-contrib's keys and defaults (the client
//! keys live in [`super::client`]).

use std::time::Duration;

use pipeline::component::{ConfigError, Validate};
use pipeline::Signal;
use serde::Deserialize;

use super::client::{resolve, ClientConfig, Encoding, SignalTopic};
use crate::engine::{EngineSettings, QueueConfig, RetryConfig};

/// The exporter's own keys.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExporterKeys {
    /// Older, all signals: the topic (per-signal `topic` wins).
    #[serde(default)]
    pub topic: Option<String>,
    /// Older, all signals: the encoding (per-signal `encoding` wins).
    #[serde(default)]
    pub encoding: Option<Encoding>,
    /// Traces' topic and encoding.
    #[serde(default)]
    pub traces: SignalTopic,
    /// Metrics' topic and encoding.
    #[serde(default)]
    pub metrics: SignalTopic,
    /// Logs' topic and encoding.
    #[serde(default)]
    pub logs: SignalTopic,
    /// One message per trace, keyed by its id in hex, on the partition
    /// otelcol's exporter picks for that key.
    #[serde(default)]
    pub partition_traces_by_id: bool,
    /// One message per resource, keyed by its attributes.
    #[serde(default)]
    pub partition_metrics_by_resource_attributes: bool,
    /// One message per resource, keyed by its attributes.
    #[serde(default)]
    pub partition_logs_by_resource_attributes: bool,
    /// Producer settings.
    #[serde(default)]
    pub producer: ProducerConfig,
    /// How long a message may take to be acknowledged.
    #[serde(default = "five_seconds", with = "pipeline::duration")]
    pub timeout: Duration,
    /// Backoff for retryable failures.
    #[serde(default)]
    pub retry_on_failure: RetryConfig,
    /// The bounded queue in front of the exporter.
    #[serde(default)]
    pub sending_queue: QueueConfig,
}

fn five_seconds() -> Duration {
    Duration::from_secs(5)
}

/// `producer`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProducerConfig {
    /// The largest message sent; larger requests are split to fit.
    pub max_message_bytes: usize,
    /// 0 (no acknowledgement), 1 (the leader's) or -1 (every in-sync replica's).
    pub required_acks: i32,
    /// `none`, `gzip`, `snappy`, `lz4` or `zstd`.
    pub compression: String,
    /// `level` of the compression codec.
    pub compression_params: CompressionParams,
    /// Messages per produce request at most (0: the client's default).
    pub flush_max_messages: usize,
    /// Let the broker create a missing topic.
    pub allow_auto_topic_creation: bool,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            max_message_bytes: 1_000_000,
            required_acks: 1,
            compression: "none".into(),
            compression_params: CompressionParams::default(),
            flush_max_messages: 0,
            allow_auto_topic_creation: true,
        }
    }
}

/// `producer.compression_params`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CompressionParams {
    /// Codec level (codec's default when absent).
    #[serde(default)]
    pub level: Option<i32>,
}

/// The whole exporter config.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaExporterConfig {
    /// Brokers, auth, TLS.
    pub client: ClientConfig,
    /// The rest.
    pub keys: ExporterKeys,
}

/// Record overhead budgeted beside key and value (Kafka's record and batch
/// headers), so a message split to `max_message_bytes` is accepted.
pub const RECORD_OVERHEAD: usize = 128;

impl Validate for ExporterKeys {
    fn validate(&self) -> Result<(), ConfigError> {
        let p = &self.producer;
        if !matches!(p.required_acks, -1..=1) {
            return Err(ConfigError::new(
                "producer.required_acks",
                "must be 0, 1 or -1 (all in-sync replicas)",
            ));
        }
        if !matches!(
            p.compression.as_str(),
            "none" | "" | "gzip" | "snappy" | "lz4" | "zstd"
        ) {
            return Err(ConfigError::new(
                "producer.compression",
                format!(
                    "{:?} is not one of none, gzip, snappy, lz4, zstd",
                    p.compression
                ),
            ));
        }
        if p.max_message_bytes < 4096 || p.max_message_bytes > 1_000_000_000 {
            return Err(ConfigError::new(
                "producer.max_message_bytes",
                "must be from 4096 to 1000000000",
            ));
        }
        if self.timeout < Duration::from_millis(100) {
            return Err(ConfigError::new("timeout", "must be at least 100ms"));
        }
        for s in Signal::ALL {
            if self.topic_of(s).0.is_empty() {
                return Err(ConfigError::new(
                    format!("{}.topic", s.as_str()),
                    "must not be empty",
                ));
            }
        }
        self.engine().validate()
    }
}

impl ExporterKeys {
    /// The topic and encoding of `signal`.
    pub fn topic_of(&self, signal: Signal) -> (String, Encoding) {
        let per = match signal {
            Signal::Traces => &self.traces,
            Signal::Metrics => &self.metrics,
            Signal::Logs => &self.logs,
        };
        resolve(signal, per, &self.topic, &self.encoding)
    }

    /// The engine part: librdkafka gives up on a message after `timeout`
    /// (so we learn which messages failed); the engine's own deadline
    /// comes a little later.
    pub fn engine(&self) -> EngineSettings {
        EngineSettings {
            timeout: self.timeout + Duration::from_secs(2),
            retry: self.retry_on_failure.clone(),
            queue: self.sending_queue.clone(),
        }
    }

    /// Producer properties beside the client's.
    pub fn producer_properties(&self, props: &mut rdkafka::ClientConfig) {
        let p = &self.producer;
        props.set("message.max.bytes", p.max_message_bytes.to_string());
        props.set("acks", p.required_acks.to_string());
        let codec = if p.compression.is_empty() {
            "none"
        } else {
            &p.compression
        };
        props.set("compression.type", codec);
        if let Some(level) = p.compression_params.level {
            props.set("compression.level", level.to_string());
        }
        if p.flush_max_messages > 0 {
            props.set("batch.num.messages", p.flush_max_messages.to_string());
        }
        props.set(
            "allow.auto.create.topics",
            p.allow_auto_topic_creation.to_string(),
        );
        props.set("message.timeout.ms", self.timeout.as_millis().to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::client::parse_with_client;

    fn parse(yaml: &str) -> Result<(ClientConfig, ExporterKeys), ConfigError> {
        parse_with_client(serde_yaml::from_str(yaml).unwrap())
    }

    #[test]
    fn otelcol_defaults() {
        let (client, keys) = parse("brokers: [k:9092]").unwrap();
        assert_eq!(client.brokers, ["k:9092"]);
        assert_eq!(keys.topic_of(Signal::Traces).0, "otlp_spans");
        assert_eq!(keys.topic_of(Signal::Metrics).0, "otlp_metrics");
        assert_eq!(keys.topic_of(Signal::Logs).0, "otlp_logs");
        assert_eq!(keys.topic_of(Signal::Logs).1, Encoding::OtlpProto);
        assert_eq!(keys.producer.max_message_bytes, 1_000_000);
        assert_eq!(keys.producer.required_acks, 1);
        assert_eq!(keys.timeout, Duration::from_secs(5));
        assert!(!keys.partition_traces_by_id);
    }

    #[test]
    fn per_signal_keys_win_over_the_older_top_level_ones() {
        let (_, keys) = parse(
            "topic: all\nencoding: otlp_json\ntraces: {topic: spans}\nlogs: {encoding: otlp_proto}",
        )
        .unwrap();
        assert_eq!(
            keys.topic_of(Signal::Traces),
            ("spans".into(), Encoding::OtlpJson)
        );
        assert_eq!(
            keys.topic_of(Signal::Logs),
            ("all".into(), Encoding::OtlpProto)
        );
    }

    #[test]
    fn bad_values_are_named() {
        let path = |yaml: &str| parse(yaml).unwrap_err().path;
        assert_eq!(
            path("producer: {required_acks: 2}"),
            "producer.required_acks"
        );
        assert_eq!(
            path("producer: {compression: brotli}"),
            "producer.compression"
        );
        assert_eq!(path("encoding: otlp_avro"), "encoding");
        let unknown = parse("topic_from_attribute: x").unwrap_err();
        assert!(
            unknown.to_string().contains("topic_from_attribute"),
            "{unknown}"
        );
    }
}
