//! `batch`: holds items until `send_batch_size` or `timeout`, then sends them
//! on as one batch, split at `send_batch_max_size`. Batching moves request
//! bytes; nothing is decoded. With `metadata_keys`, requests whose clients
//! differ in those keys' values are batched apart (one shard each).

mod config;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio::time::Instant;

pub use config::BatchConfig;

use crate::batch::{Batch, Request, Signal};
use crate::client::ClientInfo;
use crate::component::{parse_config, Context, ProcessorBuilder, ProcessorFactory};
use crate::consumer::{deliver, BoxConsumer, ConsumeError, Consumer};
use crate::split::split_request;
use crate::telemetry::Counter;

/// Requests waiting for the batcher task; past this the receiver is told to
/// retry. Small on purpose: the task only appends, so a full queue means the
/// exporters downstream are pushing back.
const QUEUE_REQUESTS: usize = 64;

/// The registry entry.
pub fn factory() -> ProcessorFactory {
    ProcessorFactory {
        type_name: "batch",
        signals: &Signal::ALL,
        parse: |v| Ok(Arc::new(parse_config::<BatchConfig>(v)?)),
    }
}

impl ProcessorBuilder for BatchConfig {
    fn build(&self, signal: Signal, next: BoxConsumer, ctx: &Context) -> BoxConsumer {
        let (tx, rx) = mpsc::channel(QUEUE_REQUESTS);
        let labels = [("processor", ctx.id.as_str()), ("signal", signal.as_str())];
        let sends = |trigger: &str| {
            let mut l = labels.to_vec();
            l.push(("trigger", trigger));
            ctx.metrics.counter(
                "observatory_processor_batch_sends_total",
                "Batches sent on, by what triggered the send.",
                &l,
            )
        };
        let task = Batcher {
            cfg: self.clone(),
            signal,
            next,
            shards: HashMap::new(),
            by_size: sends("size"),
            by_timeout: sends("timeout"),
            dropped: ctx.metrics.counter(
                &format!("observatory_processor_dropped_{}_total", signal.item_name()),
                "Items a processor dropped (refused permanently downstream).",
                &labels[..1],
            ),
        };
        ctx.tasks.add(&ctx.id, tokio::spawn(task.run(rx)));
        Arc::new(BatchInput {
            tx,
            keys: self.metadata_keys.clone(),
            seen: Mutex::new(HashSet::new()),
            limit: self.metadata_cardinality_limit,
        })
    }
}

/// The values of `keys` in a request's client context: its shard.
type ShardKey = Vec<Vec<String>>;

fn shard_key(keys: &[String], r: &Request) -> ShardKey {
    keys.iter()
        .map(|k| {
            r.client
                .as_ref()
                .map_or_else(Vec::new, |c| c.metadata(k).to_vec())
        })
        .collect()
}

struct BatchInput {
    tx: mpsc::Sender<Batch>,
    keys: Vec<String>,
    /// Shards ever opened (only with `metadata_keys`).
    seen: Mutex<HashSet<ShardKey>>,
    limit: usize,
}

impl BatchInput {
    /// Refuses a request that would open a shard past the cardinality limit.
    fn check_cardinality(&self, batch: &Batch) -> Result<(), ConsumeError> {
        if self.keys.is_empty() {
            return Ok(());
        }
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        for r in &batch.requests {
            let k = shard_key(&self.keys, r);
            if !seen.contains(&k) {
                if seen.len() >= self.limit {
                    return Err(ConsumeError::Permanent(format!(
                        "batch: more than metadata_cardinality_limit ({}) combinations of metadata_keys values",
                        self.limit
                    )));
                }
                seen.insert(k);
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Consumer for BatchInput {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        self.check_cardinality(&batch)?;
        self.tx.try_send(batch).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                ConsumeError::Retryable("batch processor queue is full".into())
            }
            mpsc::error::TrySendError::Closed(_) => {
                ConsumeError::Retryable("collector is shutting down".into())
            }
        })
    }
}

/// Requests waiting to go out together.
#[derive(Default)]
struct Shard {
    pending: VecDeque<Request>,
    items: usize,
    deadline: Option<Instant>,
}

struct Batcher {
    cfg: BatchConfig,
    signal: Signal,
    next: BoxConsumer,
    shards: HashMap<ShardKey, Shard>,
    by_size: Counter,
    by_timeout: Counter,
    dropped: Counter,
}

impl Batcher {
    async fn run(mut self, mut rx: mpsc::Receiver<Batch>) {
        loop {
            let first_deadline = self.shards.values().filter_map(|s| s.deadline).min();
            let timer = async {
                match first_deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(batch) => {
                        for r in batch.requests {
                            self.hold(r);
                        }
                        self.send_full().await;
                    }
                    None => {
                        self.send_due(None).await;
                        return;
                    }
                },
                _ = timer => {
                    self.by_timeout.add(1);
                    self.send_due(Some(Instant::now())).await;
                }
            }
        }
    }

    /// Puts a request in its shard, carrying on only the context `batch`
    /// passes: its `metadata_keys` values, or nothing.
    fn hold(&mut self, mut r: Request) {
        let key = shard_key(&self.cfg.metadata_keys, &r);
        r.client = if self.cfg.metadata_keys.is_empty() {
            None
        } else {
            let kept = r.client.as_ref().map_or_else(ClientInfo::default, |c| {
                c.only_metadata(&self.cfg.metadata_keys)
            });
            Some(Arc::new(kept))
        };
        let shard = self.shards.entry(key).or_default();
        shard.items += r.items;
        shard.pending.push_back(r);
        if shard.deadline.is_none() {
            shard.deadline = Some(Instant::now() + self.cfg.timeout);
        }
    }

    /// Sends every shard that reached `send_batch_size`.
    async fn send_full(&mut self) {
        let size = self.cfg.send_batch_size.max(1);
        let immediate = self.cfg.timeout.is_zero();
        let full: Vec<ShardKey> = self
            .shards
            .iter()
            .filter(|(_, s)| s.items > 0 && (immediate || s.items >= size))
            .map(|(k, _)| k.clone())
            .collect();
        for key in full {
            while let Some(shard) = self.shards.get_mut(&key) {
                if shard.items == 0 || !(immediate || shard.items >= size) {
                    break;
                }
                self.by_size.add(1);
                let batch = send_one(self.signal, &self.cfg, shard);
                deliver(&self.next, batch, &self.dropped, "batch").await;
            }
            self.settle(&key);
        }
    }

    /// Sends all of every shard due by `now` (every shard when `None`).
    async fn send_due(&mut self, now: Option<Instant>) {
        let due: Vec<ShardKey> = self
            .shards
            .iter()
            .filter(|(_, s)| now.is_none_or(|n| s.deadline.is_some_and(|d| d <= n)))
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            while let Some(shard) = self.shards.get_mut(&key).filter(|s| s.items > 0) {
                let batch = send_one(self.signal, &self.cfg, shard);
                deliver(&self.next, batch, &self.dropped, "batch").await;
            }
            self.settle(&key);
        }
    }

    /// An emptied shard goes; one with items left waits a new timeout.
    fn settle(&mut self, key: &ShardKey) {
        let Some(shard) = self.shards.get_mut(key) else {
            return;
        };
        if shard.items == 0 {
            self.shards.remove(key);
        } else {
            shard.deadline = Some(Instant::now() + self.cfg.timeout);
        }
    }
}

/// Takes one batch of at most `send_batch_max_size` items from the front.
fn send_one(signal: Signal, cfg: &BatchConfig, shard: &mut Shard) -> Batch {
    let max = match cfg.send_batch_max_size {
        0 => usize::MAX,
        m => m,
    };
    let mut out = Vec::new();
    let mut items = 0;
    while let Some(first) = shard.pending.front() {
        if items + first.items <= max {
            items += first.items;
            out.extend(shard.pending.pop_front());
        } else {
            let (head, rest) = split_request(signal, first, max - items);
            items += head.items;
            out.push(head);
            shard.pending[0] = rest;
            break;
        }
    }
    shard.items -= items;
    Batch {
        signal,
        requests: out,
    }
}

#[cfg(test)]
mod tests;
