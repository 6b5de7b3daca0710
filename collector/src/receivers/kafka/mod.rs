//! `kafka`: reads OTLP requests from Kafka topics as a member of a consumer
//! group, as otelcol-contrib's receiver does. Each message is validated and
//! indexed like an OTLP request and handed to the pipeline; a refusal that
//! may pass (a full queue, the memory limiter) is retried with backoff, so
//! consumption pauses and the backlog waits in Kafka instead of being
//! dropped. Offsets are stored when a message is marked (before it is
//! handed over, or after with `message_marking.after`) and committed by
//! the client.

mod config;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use exporters::kafka::client::{parse_with_client, ClientConfig, Encoding};
use pipeline::component::Context;
use pipeline::{Batch, BoxConsumer, ConsumeError, Request, Signal};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message};
use tokio::task::JoinHandle;

pub use config::ReceiverKeys;

use super::{ReceiverBuilder, ReceiverFactory, ReceiverMetrics, SignalConsumers, Stop};

/// The registry entry.
pub fn factory() -> ReceiverFactory {
    ReceiverFactory {
        type_name: "kafka",
        signals: &Signal::ALL,
        parse: |v| {
            let (client, keys) = parse_with_client(v)?;
            Ok(Arc::new(KafkaReceiverConfig { client, keys }))
        },
    }
}

/// The whole receiver config.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaReceiverConfig {
    /// Brokers, auth, TLS.
    pub client: ClientConfig,
    /// The rest.
    pub keys: ReceiverKeys,
}

/// The decoded size one message may reach, as the OTLP receiver's default
/// admission limit.
const MAX_DECODED: u64 = 128 << 20;

/// Backoff between attempts to hand over a refused message.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// How long shutdown waits for the last commit and for leaving the group.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where each topic's messages go.
struct Route {
    signal: Signal,
    encoding: Encoding,
    next: BoxConsumer,
}

#[async_trait]
impl ReceiverBuilder for KafkaReceiverConfig {
    async fn start(
        &self,
        consumers: SignalConsumers,
        ctx: &Context,
        stop: Stop,
    ) -> Result<Vec<JoinHandle<()>>, String> {
        let mut routes: BTreeMap<String, Route> = BTreeMap::new();
        for signal in Signal::ALL {
            let Some(next) = consumers.get(signal).cloned() else {
                continue;
            };
            let (topic, encoding) = self.keys.topic_of(signal);
            if let Some(other) = routes.get(&topic) {
                return Err(format!(
                    "{} and {} both read topic {topic:?}: give each signal its own topic ({}.topic)",
                    other.signal.as_str(),
                    signal.as_str(),
                    signal.as_str()
                ));
            }
            routes.insert(
                topic,
                Route {
                    signal,
                    encoding,
                    next,
                },
            );
        }
        if routes.is_empty() {
            return Ok(Vec::new());
        }
        let mut props = self.client.properties();
        self.keys.consumer_properties(&mut props);
        let consumer: StreamConsumer = props
            .create()
            .map_err(|e| format!("creating the Kafka consumer: {e}"))?;
        let topics: Vec<&str> = routes.keys().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|e| format!("subscribing to {topics:?}: {e}"))?;
        let reader = Reader {
            id: ctx.id.clone(),
            routes,
            metrics: ReceiverMetrics::new(&ctx.metrics, &ctx.id, "kafka"),
            after: self.keys.message_marking.after,
            autocommit: self.keys.autocommit.enable,
        };
        Ok(vec![tokio::spawn(reader.run(consumer, stop))])
    }
}

struct Reader {
    id: String,
    routes: BTreeMap<String, Route>,
    metrics: ReceiverMetrics,
    after: bool,
    autocommit: bool,
}

/// What became of one message.
enum Outcome {
    /// Taken, or passed over for good: its offset may be marked.
    Done,
    /// Shutting down before the pipeline took it: not marked.
    Stopped,
}

impl Reader {
    async fn run(self, consumer: StreamConsumer, stop: Stop) {
        let stopping = stop.clone().wait();
        tokio::pin!(stopping);
        loop {
            let msg = tokio::select! {
                _ = &mut stopping => break,
                m = consumer.recv() => m,
            };
            let msg = match msg {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(receiver = %self.id, "kafka: {e}");
                    tokio::time::sleep(BACKOFF_FIRST).await;
                    continue;
                }
            };
            if !self.after {
                self.mark(&consumer, &msg);
            }
            if let Outcome::Stopped = self.handle(&msg, &stop).await {
                break;
            }
            if self.after {
                self.mark(&consumer, &msg);
            }
        }
        // What was marked is committed before the group is left; both wait
        // on the brokers, which may be gone: the wait is bounded.
        let id = self.id.clone();
        let closing = tokio::task::spawn_blocking(move || {
            if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
                tracing::debug!(receiver = %id, "kafka: final commit: {e}");
            }
            drop(consumer);
        });
        if tokio::time::timeout(CLOSE_TIMEOUT, closing).await.is_err() {
            tracing::warn!(
                receiver = %self.id,
                "kafka: the brokers did not answer within {CLOSE_TIMEOUT:?} at shutdown; messages marked since the last commit will be read again"
            );
        }
    }

    fn mark(&self, consumer: &StreamConsumer, msg: &BorrowedMessage<'_>) {
        if let Err(e) = consumer.store_offset_from_message(msg) {
            // A partition taken away by a rebalance: its new owner reads on
            // from the last commit.
            tracing::debug!(receiver = %self.id, "kafka: storing offset: {e}");
            return;
        }
        if !self.autocommit {
            if let Err(e) = consumer.commit_message(msg, CommitMode::Async) {
                tracing::warn!(receiver = %self.id, "kafka: committing: {e}");
            }
        }
    }

    /// Decodes one message and hands it to its pipeline, retrying refusals.
    async fn handle(&self, msg: &BorrowedMessage<'_>, stop: &Stop) -> Outcome {
        let Some(route) = self.routes.get(msg.topic()) else {
            return Outcome::Done;
        };
        let payload = msg.payload().unwrap_or_default();
        let request = decode(route, payload);
        let request = match request {
            Ok(r) => r,
            Err(why) => {
                self.metrics.malformed();
                tracing::warn!(
                    receiver = %self.id,
                    topic = msg.topic(),
                    partition = msg.partition(),
                    offset = msg.offset(),
                    "kafka: message passed over: {why}"
                );
                return Outcome::Done;
            }
        };
        if request.items == 0 {
            return Outcome::Done;
        }
        let batch = Batch::new(route.signal, request);
        let mut backoff = BACKOFF_FIRST;
        loop {
            match self.metrics.deliver(&route.next, batch.clone()).await {
                Ok(()) => return Outcome::Done,
                Err(ConsumeError::Permanent(why)) => {
                    tracing::warn!(receiver = %self.id, "kafka: the pipeline refused a message for good: {why}");
                    return Outcome::Done;
                }
                Err(ConsumeError::Retryable(why)) => {
                    tracing::debug!(receiver = %self.id, "kafka: refused, retrying in {backoff:?}: {why}");
                }
                Err(ConsumeError::Throttled {
                    message,
                    retry_after,
                }) => {
                    tracing::debug!(receiver = %self.id, "kafka: throttled for {retry_after:?}: {message}");
                    backoff = backoff.max(retry_after);
                }
            }
            tokio::select! {
                _ = stop.clone().wait() => return Outcome::Stopped,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }
}

/// A message's value as a validated, indexed request.
fn decode(route: &Route, payload: &[u8]) -> Result<Request, String> {
    let bytes = match route.encoding {
        Encoding::OtlpProto => Bytes::copy_from_slice(payload),
        Encoding::OtlpJson => super::otlp::json::to_proto(route.signal, payload)?,
    };
    Request::parse_within(route.signal, bytes, MAX_DECODED).map_err(|e| e.to_string())
}
