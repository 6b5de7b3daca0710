//! The one exporter engine: sending queue, retry with backoff, per-attempt
//! timeout and self-metrics live here once; an exporter supplies only
//! `export` and the class of each failure.

pub mod config;
mod persistent;
pub mod wal;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use async_trait::async_trait;
use pipeline::component::{ConfigError, Context};
use pipeline::telemetry::{Counter, Note, Registry};
use pipeline::{Batch, BoxConsumer, ConsumeError, Consumer, Signal};
use rand::Rng;

pub use config::{EngineSettings, QueueConfig, RetryConfig, Sizer};

/// How an export attempt failed; decides retry or drop.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ExportError {
    /// Try again with backoff (network error, 502/503/504, UNAVAILABLE).
    #[error("{0}")]
    Retryable(String),
    /// Try again, not before `after` (429/503 with Retry-After, RetryInfo).
    #[error("{message} (retry after {after:?})")]
    Throttled {
        /// The server's requested delay.
        after: Duration,
        /// What the server said.
        message: String,
    },
    /// Never retry (400, INVALID_ARGUMENT): the data is counted as failed.
    #[error("{0}")]
    Permanent(String),
    /// Part of the batch went out; `left` failed with `error` and is what
    /// a retry sends (an exporter that fans out, like `loadbalancing`, so
    /// the parts that arrived are not sent twice).
    #[error("{error} ({} items not sent yet)", left.items())]
    Partly {
        /// What was not sent.
        left: Box<Batch>,
        /// Why.
        error: Box<ExportError>,
        /// Items of the batch refused for good in this attempt: counted as
        /// failed, neither sent nor retried.
        given_up: usize,
    },
}

/// A successful export; `rejected` items were refused by a partial success.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sent {
    /// Items the backend said it rejected.
    pub rejected: usize,
    /// The backend's explanation for a partial success.
    pub message: String,
}

/// The part each exporter writes.
#[async_trait]
pub trait Exporter: Send + Sync + 'static {
    /// Sends one batch once.
    async fn export(&self, batch: &Batch) -> Result<Sent, ExportError>;

    /// Called once at shutdown, after the last export: write out anything
    /// held back (an exporter that buffers, like `parquet`).
    async fn shutdown(&self) {}
}

/// Per-signal self-metrics of one exporter.
#[derive(Clone)]
pub struct ExporterMetrics {
    sent: [Counter; 3],
    failed: [Counter; 3],
    enqueue_failed: [Counter; 3],
    /// Attempts that failed, by class: retryable, throttled, permanent, timeout.
    errors: [Counter; 4],
    retries: Counter,
    in_flight: Arc<AtomicU64>,
    last_error: Note,
}

/// The classes attempts fail in, as `errors` counts them.
const ERROR_CLASSES: [&str; 4] = ["retryable", "throttled", "permanent", "timeout"];

fn class_slot(e: &ExportError) -> usize {
    match e {
        ExportError::Retryable(m) if m.starts_with(TIMED_OUT) => 3,
        ExportError::Retryable(_) => 0,
        ExportError::Throttled { .. } => 1,
        ExportError::Permanent(_) => 2,
        ExportError::Partly { error, .. } => class_slot(error),
    }
}

/// How an attempt that ran out of `timeout` is worded (and recognised).
const TIMED_OUT: &str = "export timed out after";

fn slot(s: Signal) -> usize {
    s as usize
}

impl ExporterMetrics {
    /// Registers the series for exporter `id`.
    pub fn new(metrics: &Registry, id: &str) -> ExporterMetrics {
        let mk = |what: &str, help: &'static str| {
            Signal::ALL.map(|s| {
                metrics.counter(
                    &format!("observatory_exporter_{what}_{}_total", s.item_name()),
                    help,
                    &[("exporter", id)],
                )
            })
        };
        let in_flight = Arc::new(AtomicU64::new(0));
        let probe = in_flight.clone();
        metrics.gauge(
            "observatory_exporter_in_flight_requests",
            "Export attempts under way (waits between retries included).",
            &[("exporter", id)],
            move || probe.load(Ordering::Relaxed) as f64,
        );
        ExporterMetrics {
            errors: ERROR_CLASSES.map(|class| {
                metrics.counter(
                    "observatory_exporter_send_errors_total",
                    "Export attempts that failed, by class (each retry counts again).",
                    &[("exporter", id), ("class", class)],
                )
            }),
            retries: metrics.counter(
                "observatory_exporter_retries_total",
                "Export attempts made again after a failure.",
                &[("exporter", id)],
            ),
            in_flight,
            last_error: metrics.note(id),
            sent: mk("sent", "Items the backend accepted."),
            failed: mk(
                "send_failed",
                "Items given up on: refused permanently or out of retries.",
            ),
            enqueue_failed: mk(
                "enqueue_failed",
                "Items refused because the sending queue was full (the client was told to retry).",
            ),
        }
    }

    /// Counts items the backend took.
    pub fn sent(&self, s: Signal, n: usize) {
        self.sent[slot(s)].add(n as u64);
    }

    /// Counts items given up on.
    pub fn failed(&self, s: Signal, n: usize) {
        self.failed[slot(s)].add(n as u64);
    }
}

struct Shared {
    id: String,
    exporter: Arc<dyn Exporter>,
    settings: EngineSettings,
    metrics: ExporterMetrics,
}

impl Shared {
    /// Exports with retries; returns the failure that ended it, if any.
    /// After a partial success only what is left is tried again.
    async fn send(&self, batch: &Batch) -> Result<(), ExportError> {
        let in_flight = &self.metrics.in_flight;
        in_flight.fetch_add(1, Ordering::Relaxed);
        let result = self.send_with_retries(batch).await;
        in_flight.fetch_sub(1, Ordering::Relaxed);
        result
    }

    async fn send_with_retries(&self, batch: &Batch) -> Result<(), ExportError> {
        let started = Instant::now();
        let retry = &self.settings.retry;
        let mut interval = retry.initial_interval;
        let mut left: Option<Batch> = None;
        loop {
            let current = left.as_ref().unwrap_or(batch);
            let items = current.items();
            let attempt = self.exporter.export(current);
            let result = if self.settings.timeout.is_zero() {
                attempt.await
            } else {
                tokio::time::timeout(self.settings.timeout, attempt)
                    .await
                    .unwrap_or_else(|_| {
                        Err(ExportError::Retryable(format!(
                            "{TIMED_OUT} {:?}",
                            self.settings.timeout
                        )))
                    })
            };
            let (err, rest) = match result {
                Ok(sent) => {
                    self.metrics
                        .sent(batch.signal, items - sent.rejected.min(items));
                    if sent.rejected > 0 {
                        self.metrics.failed(batch.signal, sent.rejected.min(items));
                        tracing::warn!(exporter = %self.id, rejected = sent.rejected, message = %sent.message, "backend partially rejected a batch");
                    }
                    return Ok(());
                }
                Err(ExportError::Partly {
                    left,
                    error,
                    given_up,
                }) => {
                    let given_up = given_up.min(items.saturating_sub(left.items()));
                    self.metrics
                        .sent(batch.signal, items.saturating_sub(left.items()) - given_up);
                    if given_up > 0 {
                        self.metrics.failed(batch.signal, given_up);
                    }
                    (*error, Some(*left))
                }
                Err(e) => (e, None),
            };
            if let Some(rest) = rest {
                left = Some(rest);
            }
            self.metrics.errors[class_slot(&err)].add(1);
            self.metrics.last_error.set(err.to_string());
            let items = left.as_ref().unwrap_or(batch).items();
            let wait = match &err {
                ExportError::Permanent(_) => None,
                _ if !retry.enabled => None,
                ExportError::Retryable(_)
                | ExportError::Throttled { .. }
                | ExportError::Partly { .. } => {
                    let jitter = retry.randomization_factor;
                    let factor = if jitter > 0.0 {
                        rand::rng().random_range(1.0 - jitter..=1.0 + jitter)
                    } else {
                        1.0
                    };
                    let mut wait = interval.mul_f64(factor);
                    if let ExportError::Throttled { after, .. } = &err {
                        wait = wait.max(*after);
                    }
                    let over = !retry.max_elapsed_time.is_zero()
                        && started.elapsed() + wait > retry.max_elapsed_time;
                    (!over).then_some(wait)
                }
            };
            match wait {
                Some(wait) => {
                    tracing::debug!(exporter = %self.id, error = %err, ?wait, "export failed; retrying");
                    tokio::time::sleep(wait).await;
                    self.metrics.retries.add(1);
                    interval = interval.mul_f64(retry.multiplier).min(retry.max_interval);
                }
                None => {
                    self.metrics.failed(batch.signal, items);
                    if self.settings.queue.enabled {
                        tracing::error!(exporter = %self.id, error = %err, items, "export failed; data dropped");
                    } else {
                        // Without a queue the caller has the batch and the
                        // error (a receiver answers its client, `kafka`
                        // retries the message).
                        tracing::warn!(exporter = %self.id, error = %err, items, "export failed; the error goes back to the sender");
                    }
                    return Err(err);
                }
            }
        }
    }
}

/// What the in-memory queue holds: `units` in the sizer's unit, queued
/// only (as otelcol counts `queue_size`), and encoded `bytes`, queued and
/// in flight (what the memory bound is about).
#[derive(Default)]
struct Fill {
    units: AtomicU64,
    bytes: AtomicU64,
}

/// A batch's size in `sizer` units.
fn units(sizer: Sizer, batch: &Batch) -> u64 {
    match sizer {
        Sizer::Requests => 1,
        Sizer::Items => batch.items() as u64,
        Sizer::Bytes => batch.encoded_len() as u64,
    }
}

/// The engine's input when queueing.
struct Queued {
    tx: async_channel::Sender<Batch>,
    shared: Arc<Shared>,
    fill: Arc<Fill>,
}

impl Queued {
    fn refuse(&self, signal: Signal, items: usize, why: String) -> ConsumeError {
        self.shared.metrics.enqueue_failed[slot(signal)].add(items as u64);
        ConsumeError::Retryable(why)
    }
}

#[async_trait]
impl Consumer for Queued {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        let (signal, items) = (batch.signal, batch.items());
        let q = &self.shared.settings.queue;
        let (u, b) = (units(q.sizer, &batch), batch.encoded_len() as u64);
        let before_u = self.fill.units.fetch_add(u, Ordering::SeqCst);
        let before_b = self.fill.bytes.fetch_add(b, Ordering::SeqCst);
        // One batch larger than the caps is let into an empty queue, so it
        // is not refused for ever; otherwise both caps hold.
        let empty = before_u == 0 && before_b == 0;
        let full_units = before_u + u > q.queue_size as u64;
        let full_bytes = before_b + b > q.max_bytes();
        if !empty && (full_units || full_bytes) {
            self.fill.units.fetch_sub(u, Ordering::SeqCst);
            self.fill.bytes.fetch_sub(b, Ordering::SeqCst);
            let what = if full_units {
                "is full"
            } else {
                "holds its max_size_mib of data"
            };
            return Err(self.refuse(
                signal,
                items,
                format!("sending queue of exporter {} {what}", self.shared.id),
            ));
        }
        if self.tx.try_send(batch).is_err() {
            self.fill.units.fetch_sub(u, Ordering::SeqCst);
            self.fill.bytes.fetch_sub(b, Ordering::SeqCst);
            return Err(self.refuse(signal, items, "collector is shutting down".into()));
        }
        Ok(())
    }
}

/// The engine's input without a queue: the caller waits for the export.
/// Dropping it (the last pipeline let go) releases the shutdown task.
struct Direct(
    Arc<Shared>,
    #[allow(dead_code)] tokio::sync::oneshot::Sender<()>,
);

#[async_trait]
impl Consumer for Direct {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        self.0.send(&batch).await.map_err(|e| match e {
            ExportError::Permanent(m) => ConsumeError::Permanent(m),
            other => ConsumeError::Retryable(other.to_string()),
        })
    }
}

/// Registers the exporter's end for the shutdown drain: once `done` (its
/// consumers finished, or its input was dropped), the exporter flushes.
fn after(ctx: &Context, shared: &Arc<Shared>, done: impl std::future::Future + Send + 'static) {
    let exporter = shared.exporter.clone();
    ctx.tasks.add(
        &ctx.id,
        tokio::spawn(async move {
            done.await;
            exporter.shutdown().await;
        }),
    );
}

/// Starts an exporter under the engine and returns its input. Fails when
/// the persistent queue's storage is missing or cannot be opened.
pub fn start(
    ctx: &Context,
    settings: EngineSettings,
    exporter: Arc<dyn Exporter>,
) -> Result<BoxConsumer, ConfigError> {
    let shared = Arc::new(Shared {
        id: ctx.id.clone(),
        exporter,
        metrics: ExporterMetrics::new(&ctx.metrics, &ctx.id),
        settings,
    });
    if !shared.settings.queue.enabled {
        let (closed, on_close) = tokio::sync::oneshot::channel();
        after(ctx, &shared, async move {
            let _ = on_close.await;
        });
        return Ok(Arc::new(Direct(shared, closed)));
    }
    if let Some(id) = &shared.settings.queue.storage {
        let spec = ctx.storage.get(id).ok_or_else(|| {
            ConfigError::new(
                "sending_queue.storage",
                format!("extension {id:?} is not defined or not listed in service.extensions"),
            )
        })?;
        return persistent::start(ctx, shared.clone(), spec);
    }
    // Unbounded as a channel: `Fill` bounds it, in the sizer's unit and
    // in bytes.
    let (tx, rx) = async_channel::unbounded::<Batch>();
    let fill = Arc::new(Fill::default());
    let labels = [("exporter", ctx.id.as_str())];
    let q = &shared.settings.queue;
    let (capacity, max_bytes) = (q.queue_size as f64, q.max_bytes() as f64);
    ctx.metrics.gauge(
        "observatory_exporter_queue_capacity",
        "What the sending queue can hold, in its sizer's unit (batches by default).",
        &labels,
        move || capacity,
    );
    let probe = fill.clone();
    ctx.metrics.gauge(
        "observatory_exporter_queue_size",
        "What the sending queue holds, in its sizer's unit (batches by default).",
        &labels,
        move || probe.units.load(Ordering::Relaxed) as f64,
    );
    ctx.metrics.gauge(
        "observatory_exporter_queue_bytes_capacity",
        "Encoded bytes the sending queue may hold, queued and in flight (max_size_mib).",
        &labels,
        move || max_bytes,
    );
    let probe = fill.clone();
    ctx.metrics.gauge(
        "observatory_exporter_queue_bytes",
        "Encoded bytes in the sending queue, queued and in flight.",
        &labels,
        move || probe.bytes.load(Ordering::Relaxed) as f64,
    );
    let sizer = q.sizer;
    let consumers: Vec<_> = (0..q.num_consumers)
        .map(|_| {
            let (rx, shared, fill) = (rx.clone(), shared.clone(), fill.clone());
            tokio::spawn(async move {
                while let Ok(batch) = rx.recv().await {
                    fill.units.fetch_sub(units(sizer, &batch), Ordering::SeqCst);
                    let _ = shared.send(&batch).await;
                    fill.bytes
                        .fetch_sub(batch.encoded_len() as u64, Ordering::SeqCst);
                }
            })
        })
        .collect();
    after(ctx, &shared, futures::future::join_all(consumers));
    Ok(Arc::new(Queued { tx, shared, fill }))
}

#[cfg(test)]
mod tests;
