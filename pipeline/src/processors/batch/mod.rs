//! `batch`: holds items until `send_batch_size` or `timeout`, then sends them
//! on as one batch, split at `send_batch_max_size`. Batching moves request
//! bytes; nothing is decoded.

mod config;

use std::collections::VecDeque;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio::time::Instant;

pub use config::BatchConfig;

use crate::batch::{Batch, Request, Signal};
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
            pending: VecDeque::new(),
            pending_items: 0,
            by_size: sends("size"),
            by_timeout: sends("timeout"),
            dropped: ctx.metrics.counter(
                &format!("observatory_processor_dropped_{}_total", signal.item_name()),
                "Items a processor dropped (refused permanently downstream).",
                &labels[..1],
            ),
        };
        ctx.tasks.add(&ctx.id, tokio::spawn(task.run(rx)));
        Arc::new(BatchInput { tx })
    }
}

struct BatchInput {
    tx: mpsc::Sender<Batch>,
}

#[async_trait]
impl Consumer for BatchInput {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
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

struct Batcher {
    cfg: BatchConfig,
    signal: Signal,
    next: BoxConsumer,
    pending: VecDeque<Request>,
    pending_items: usize,
    by_size: Counter,
    by_timeout: Counter,
    dropped: Counter,
}

impl Batcher {
    async fn run(mut self, mut rx: mpsc::Receiver<Batch>) {
        let mut deadline: Option<Instant> = None;
        loop {
            let timer = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(batch) => {
                        for r in batch.requests {
                            self.pending_items += r.items;
                            self.pending.push_back(r);
                        }
                        let by_size = self.cfg.timeout.is_zero() || self.pending_items >= self.cfg.send_batch_size.max(1);
                        if by_size {
                            while self.pending_items > 0
                                && (self.cfg.timeout.is_zero() || self.pending_items >= self.cfg.send_batch_size.max(1))
                            {
                                self.by_size.add(1);
                                self.send_one().await;
                            }
                            deadline = None;
                        }
                        if self.pending_items > 0 && deadline.is_none() {
                            deadline = Some(Instant::now() + self.cfg.timeout);
                        }
                    }
                    None => {
                        while self.pending_items > 0 {
                            self.send_one().await;
                        }
                        return;
                    }
                },
                _ = timer => {
                    self.by_timeout.add(1);
                    while self.pending_items > 0 {
                        self.send_one().await;
                    }
                    deadline = None;
                }
            }
        }
    }

    /// Sends one batch of at most `send_batch_max_size` items from the front.
    async fn send_one(&mut self) {
        let max = match self.cfg.send_batch_max_size {
            0 => usize::MAX,
            m => m,
        };
        let mut out = Vec::new();
        let mut items = 0;
        while let Some(first) = self.pending.front() {
            if items + first.items <= max {
                items += first.items;
                out.extend(self.pending.pop_front());
            } else {
                let (head, rest) = split_request(self.signal, first, max - items);
                items += head.items;
                out.push(head);
                self.pending[0] = rest;
                break;
            }
        }
        self.pending_items -= items;
        let batch = Batch {
            signal: self.signal,
            requests: out,
        };
        deliver(&self.next, batch, &self.dropped, "batch").await;
    }
}

#[cfg(test)]
mod tests;
