//! `kafka`: writes each batch to a Kafka topic as otelcol-contrib's
//! exporter does, so an otelcol `kafka` receiver (or ours) reads it back.
//! `otlp_proto` messages are the requests' bytes as they are (no decode);
//! `partition_traces_by_id` cuts traces apart from the span index and puts
//! each on otelcol's partition for its id. Requests larger than
//! `producer.max_message_bytes` are split until they fit.

pub mod client;
mod config;
pub mod partition;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use pipeline::batch::{log_count, point_count};
use pipeline::component::{ConfigError, Context};
use pipeline::split::{select_spans_merged, split_request};
use pipeline::{Batch, BoxConsumer, Request, Signal};
use prost::Message;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

pub use config::{ExporterKeys, KafkaExporterConfig, ProducerConfig, RECORD_OVERHEAD};

use crate::engine::{self, ExportError, Exporter, Sent};
use crate::{ExporterBuilder, ExporterFactory};
use client::Encoding;

/// The registry entry.
pub fn factory() -> ExporterFactory {
    ExporterFactory {
        type_name: "kafka",
        signals: &Signal::ALL,
        parse: |v| {
            let (client, keys) = client::parse_with_client(v)?;
            Ok(Arc::new(KafkaExporterConfig { client, keys }))
        },
    }
}

impl ExporterBuilder for KafkaExporterConfig {
    fn build(&self, ctx: &Context) -> Result<BoxConsumer, ConfigError> {
        let mut props = self.client.properties();
        self.keys.producer_properties(&mut props);
        let producer: FutureProducer = props.create().map_err(|e| {
            ConfigError::new("brokers", format!("creating the Kafka producer: {e}"))
        })?;
        let exporter = KafkaExporter {
            producer,
            keys: self.keys.clone(),
            partitions: Mutex::new(HashMap::new()),
        };
        engine::start(ctx, self.keys.engine(), Arc::new(exporter))
    }
}

struct KafkaExporter {
    producer: FutureProducer,
    keys: ExporterKeys,
    /// Partition counts by topic, and when they were learned.
    partitions: Mutex<HashMap<String, (i32, Instant)>>,
}

/// How long a topic's partition count is trusted.
const PARTITIONS_TTL: Duration = Duration::from_secs(30);

/// One message to send: its key (for keyed partitioning) and the request
/// it carries, kept to resend what failed.
struct Outgoing {
    key: Option<Vec<u8>>,
    request: Request,
}

impl KafkaExporter {
    /// The messages of a batch, before size splitting.
    fn messages(&self, batch: &Batch) -> Result<Vec<Outgoing>, ExportError> {
        let k = &self.keys;
        let keyed = match batch.signal {
            Signal::Traces => k.partition_traces_by_id,
            Signal::Logs => k.partition_logs_by_resource_attributes,
            Signal::Metrics => k.partition_metrics_by_resource_attributes,
        };
        if !keyed {
            return Ok(packed(&batch.requests, self.room(None))
                .into_iter()
                .map(|request| Outgoing { key: None, request })
                .collect());
        }
        match batch.signal {
            Signal::Traces => Ok(by_trace_id(&batch.requests)),
            signal => by_resource(signal, &batch.requests).map_err(ExportError::Permanent),
        }
    }

    /// Bytes a message's value may take beside `key`.
    fn room(&self, key: Option<&[u8]>) -> usize {
        let used = key.map_or(0, <[u8]>::len) + RECORD_OVERHEAD;
        self.keys.producer.max_message_bytes.saturating_sub(used)
    }

    /// The encoded value of a message: `None` for `otlp_proto`, whose value
    /// is the request's own bytes.
    fn value(&self, signal: Signal, req: &Request) -> Result<Option<Vec<u8>>, ExportError> {
        match self.keys.topic_of(signal).1 {
            Encoding::OtlpProto => Ok(None),
            Encoding::OtlpJson => crate::otlphttp::json_body(&Batch::new(signal, req.clone()))
                .map(|(v, _)| Some(v))
                .map_err(ExportError::Permanent),
        }
    }

    /// Messages cut so each fits `max_message_bytes`; items that cannot
    /// fit alone are counted in `too_large`.
    fn fit(
        &self,
        signal: Signal,
        out: Outgoing,
        fitted: &mut Vec<(Outgoing, Option<Vec<u8>>)>,
        too_large: &mut usize,
    ) -> Result<(), ExportError> {
        let value = self.value(signal, &out.request)?;
        let size = value.as_ref().map_or(out.request.bytes.len(), Vec::len);
        if size <= self.room(out.key.as_deref()) {
            fitted.push((out, value));
            return Ok(());
        }
        if out.request.items <= 1 {
            *too_large += out.request.items.max(1);
            return Ok(());
        }
        let whole = if signal == Signal::Traces && out.request.index.is_none() {
            Request::parse(signal, out.request.bytes.clone())
                .map_err(|e| ExportError::Permanent(format!("re-scanning a merged request: {e}")))?
        } else {
            out.request
        };
        let (head, rest) = split_request(signal, &whole, whole.items / 2);
        for request in [head, rest] {
            let part = Outgoing {
                key: out.key.clone(),
                request,
            };
            self.fit(signal, part, fitted, too_large)?;
        }
        Ok(())
    }

    /// The partition count of `topic`, from metadata at most
    /// [`PARTITIONS_TTL`] old.
    async fn partition_count(&self, topic: &str) -> Result<i32, ExportError> {
        if let Some((n, at)) = self.partitions.lock().unwrap().get(topic) {
            if at.elapsed() < PARTITIONS_TTL {
                return Ok(*n);
            }
        }
        let (producer, name) = (self.producer.clone(), topic.to_string());
        let timeout = self.keys.timeout;
        let n = tokio::task::spawn_blocking(move || {
            let md = producer
                .client()
                .fetch_metadata(Some(&name), timeout)
                .map_err(|e| format!("reading metadata of topic {name}: {e}"))?;
            let t = md.topics().iter().find(|t| t.name() == name);
            match t {
                Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                    Ok(t.partitions().len() as i32)
                }
                Some(t) => Err(format!(
                    "topic {name} has no partitions yet ({:?})",
                    t.error()
                )),
                None => Err(format!("topic {name} is not in the broker's metadata")),
            }
        })
        .await
        .map_err(|e| ExportError::Retryable(e.to_string()))?
        .map_err(ExportError::Retryable)?;
        self.partitions
            .lock()
            .unwrap()
            .insert(topic.to_string(), (n, Instant::now()));
        Ok(n)
    }
}

/// Consecutive requests packed into as few messages of at most `room`
/// bytes as their order allows: encoded requests concatenate into one
/// valid request, so a message is one copy and no re-encoding. A request
/// larger than `room` alone goes as it is, for [`KafkaExporter::fit`] to
/// split. Packed traces lose their index; `fit` scans again the rare one
/// that must be split (an `otlp_json` value larger than the proto).
fn packed(reqs: &[Request], room: usize) -> Vec<Request> {
    let mut out = Vec::new();
    let mut group: Vec<&Request> = Vec::new();
    let mut size = 0;
    let flush = |group: &mut Vec<&Request>, out: &mut Vec<Request>| match group.len() {
        0 => {}
        1 => out.push(group.pop().expect("one").clone()),
        _ => {
            let mut bytes = Vec::with_capacity(group.iter().map(|r| r.bytes.len()).sum());
            for r in group.iter() {
                bytes.extend_from_slice(&r.bytes);
            }
            out.push(Request {
                bytes: bytes.into(),
                items: group.iter().map(|r| r.items).sum(),
                index: None,
                client: group[0].client.clone(),
            });
            group.clear();
        }
    };
    for r in reqs {
        if !group.is_empty() && size + r.bytes.len() > room {
            flush(&mut group, &mut out);
            size = 0;
        }
        size += r.bytes.len();
        group.push(r);
    }
    flush(&mut group, &mut out);
    out
}

/// One message per trace id, keyed by the id in hex (otelcol's key).
fn by_trace_id(reqs: &[Request]) -> Vec<Outgoing> {
    // Per trace: (request, positions of its spans there), in first-seen order.
    let mut order: Vec<[u8; 16]> = Vec::new();
    let mut picks: HashMap<[u8; 16], Vec<(usize, Vec<u32>)>> = HashMap::new();
    let mut out = Vec::new();
    for (ri, req) in reqs.iter().enumerate() {
        let Some(index) = req.index.as_ref() else {
            // Every traces request is indexed at intake; one that is not is
            // sent whole, unkeyed, rather than lost.
            out.push(Outgoing {
                key: None,
                request: req.clone(),
            });
            continue;
        };
        for (i, s) in index.spans.iter().enumerate() {
            let list = picks.entry(s.trace_id).or_insert_with(|| {
                order.push(s.trace_id);
                Vec::new()
            });
            match list.last_mut() {
                Some((r, p)) if *r == ri => p.push(i as u32),
                _ => list.push((ri, vec![i as u32])),
            }
        }
    }
    for id in order {
        let list = &picks[&id];
        let group: Vec<(&Request, &[u32])> = list
            .iter()
            .map(|(ri, p)| (&reqs[*ri], p.as_slice()))
            .collect();
        out.push(Outgoing {
            key: Some(pipeline::wire::hex(&id).into_bytes()),
            request: select_spans_merged(&group),
        });
    }
    out
}

/// One message per resource (same attributes, same message), keyed by the
/// resource's attributes as sorted `key=value|` text.
fn by_resource(signal: Signal, reqs: &[Request]) -> Result<Vec<Outgoing>, String> {
    let mut logs: BTreeMap<Vec<u8>, ExportLogsServiceRequest> = BTreeMap::new();
    let mut metrics: BTreeMap<Vec<u8>, ExportMetricsServiceRequest> = BTreeMap::new();
    for req in reqs {
        if signal == Signal::Logs {
            let d =
                ExportLogsServiceRequest::decode(req.bytes.clone()).map_err(|e| e.to_string())?;
            for rl in d.resource_logs {
                let key = crate::loadbalancing::keys::resource(rl.resource.as_ref());
                logs.entry(key).or_default().resource_logs.push(rl);
            }
        } else {
            let d = ExportMetricsServiceRequest::decode(req.bytes.clone())
                .map_err(|e| e.to_string())?;
            for rm in d.resource_metrics {
                let key = crate::loadbalancing::keys::resource(rm.resource.as_ref());
                metrics.entry(key).or_default().resource_metrics.push(rm);
            }
        }
    }
    let client = reqs.first().and_then(|r| r.client.clone());
    let mk = |key: Vec<u8>, bytes: Vec<u8>, items: usize| Outgoing {
        key: Some(key),
        request: Request {
            bytes: bytes.into(),
            items,
            index: None,
            client: client.clone(),
        },
    };
    Ok(logs
        .into_iter()
        .map(|(k, r)| mk(k, r.encode_to_vec(), log_count(&r)))
        .chain(
            metrics
                .into_iter()
                .map(|(k, r)| mk(k, r.encode_to_vec(), point_count(&r))),
        )
        .collect())
}

/// Whether resending can help.
fn classify(e: &KafkaError) -> ExportError {
    let code = e.rdkafka_error_code();
    let permanent = matches!(
        code,
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::ClusterAuthorizationFailed
                | RDKafkaErrorCode::InvalidTopic
                | RDKafkaErrorCode::MessageBatchTooLarge
        )
    );
    if permanent {
        ExportError::Permanent(format!("kafka: {e}"))
    } else {
        ExportError::Retryable(format!("kafka: {e}"))
    }
}

#[async_trait]
impl Exporter for KafkaExporter {
    async fn export(&self, batch: &Batch) -> Result<Sent, ExportError> {
        let signal = batch.signal;
        let (topic, _) = self.keys.topic_of(signal);
        let mut fitted = Vec::new();
        let mut too_large = 0;
        for m in self.messages(batch)? {
            self.fit(signal, m, &mut fitted, &mut too_large)?;
        }
        let count = if fitted.iter().any(|(m, _)| m.key.is_some()) {
            Some(self.partition_count(&topic).await?)
        } else {
            None
        };
        let mut pending = Vec::with_capacity(fitted.len());
        let mut failed: Vec<(Request, ExportError)> = Vec::new();
        for (m, value) in &fitted {
            let payload: &[u8] = value.as_deref().unwrap_or(&m.request.bytes);
            let mut record = FutureRecord::<Vec<u8>, [u8]>::to(&topic).payload(payload);
            if let (Some(key), Some(n)) = (&m.key, count) {
                record = record
                    .key(key)
                    .partition(partition::sarama_partition(key, n));
            }
            match self.producer.send_result(record) {
                Ok(delivery) => pending.push((m, delivery)),
                Err((e, _)) => failed.push((m.request.clone(), classify(&e))),
            }
        }
        let mut delivered = 0usize;
        for (m, delivery) in pending {
            match delivery.await {
                Ok(Ok(_)) => delivered += 1,
                Ok(Err((e, _))) => failed.push((m.request.clone(), classify(&e))),
                Err(_) => failed.push((
                    m.request.clone(),
                    ExportError::Retryable("kafka: the producer dropped the message".into()),
                )),
            }
        }
        if failed.is_empty() {
            let message = if too_large > 0 {
                format!(
                    "{too_large} items are each larger than producer.max_message_bytes ({}) on their own",
                    self.keys.producer.max_message_bytes
                )
            } else {
                String::new()
            };
            return Ok(Sent {
                rejected: too_large,
                message,
            });
        }
        // Only the retryable failures are sent again; what was refused for
        // good (or cannot fit) is counted as failed.
        let (retry, given_up): (Vec<_>, Vec<_>) = failed
            .into_iter()
            .partition(|(_, e)| !matches!(e, ExportError::Permanent(_)));
        let given_up_items = too_large + given_up.iter().map(|(r, _)| r.items).sum::<usize>();
        let Some(error) = retry.first().map(|(_, e)| e.clone()) else {
            let (_, why) = &given_up[0];
            if delivered == 0 && too_large == 0 {
                return Err(why.clone());
            }
            return Ok(Sent {
                rejected: given_up_items,
                message: why.to_string(),
            });
        };
        if delivered == 0 && given_up_items == 0 {
            return Err(error);
        }
        Err(ExportError::Partly {
            left: Box::new(Batch {
                signal,
                requests: retry.into_iter().map(|(r, _)| r).collect(),
            }),
            error: Box::new(error),
            given_up: given_up_items,
        })
    }

    async fn shutdown(&self) {
        // Every export waited for its acknowledgements, so nothing is
        // outstanding; flushing is bounded all the same.
        let p = self.producer.clone();
        let _ = tokio::task::spawn_blocking(move || p.flush(Duration::from_secs(5))).await;
    }
}

#[cfg(test)]
mod tests;
