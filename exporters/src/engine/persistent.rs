//! The sending queue on disk (`sending_queue.storage`): the receiver's
//! success means the batch is in the exporter's write-ahead log (fsynced
//! when the storage says so); a record leaves the log only once the backend
//! took it or it was given up on and counted.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pipeline::component::{ConfigError, Context, StorageSpec};
use pipeline::{Batch, BoxConsumer, ConsumeError, Consumer, Signal};

use super::wal::{AppendError, Options, Wal};
use super::Shared;

/// How long an export already under way may finish after shutdown begins;
/// past that it is left in the log and sent again at the next start.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Segments are this big at most; smaller for a small queue so that
/// finished data is freed in steps of an eighth of it.
const SEGMENT_MAX: u64 = 64 << 20;

/// The exporter's directory inside the storage: otelcol-style, one per id.
fn queue_dir(root: &Path, exporter: &str) -> std::path::PathBuf {
    let name: String = exporter
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    root.join(format!("exporter_{name}"))
}

struct Persistent {
    wal: Arc<Wal>,
    shared: Arc<Shared>,
}

#[async_trait]
impl Consumer for Persistent {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        let (signal, items) = (batch.signal, batch.items());
        let wal = self.wal.clone();
        // Writes (and fsyncs) block, so they leave the async workers.
        let appended = tokio::task::spawn_blocking(move || wal.append(&batch))
            .await
            .unwrap_or_else(|e| Err(AppendError::Io(std::io::Error::other(e))));
        let Err(e) = appended else {
            return Ok(());
        };
        self.shared.metrics.enqueue_failed[signal as usize].add(items as u64);
        let id = &self.shared.id;
        Err(match e {
            AppendError::Full(why) => {
                ConsumeError::Retryable(format!("sending queue of exporter {id} is full: it {why}"))
            }
            AppendError::TooBig(_) => ConsumeError::Permanent(format!("exporter {id}: {e}")),
            AppendError::Io(_) => {
                tracing::error!(exporter = %id, error = %e, "persistent queue write failed");
                ConsumeError::Retryable(format!("exporter {id}: {e}"))
            }
            AppendError::Closed => ConsumeError::Retryable("collector is shutting down".into()),
        })
    }
}

impl Drop for Persistent {
    // The last pipeline let go: stop handing out records; what is left
    // stays in the log for the next start.
    fn drop(&mut self) {
        self.wal.close();
    }
}

/// Opens the exporter's log in `spec`'s directory and starts its consumers.
pub(super) fn start(
    ctx: &Context,
    shared: Arc<Shared>,
    spec: &StorageSpec,
) -> Result<BoxConsumer, ConfigError> {
    let q = &shared.settings.queue;
    let max_bytes = q.max_bytes();
    let labels = [("exporter", ctx.id.as_str())];
    let corrupt = ctx.metrics.counter(
        "observatory_exporter_queue_corrupt_records_total",
        "Persistent-queue records skipped because their checksum failed (torn by a crash, or damaged on disk).",
        &labels,
    );
    let (wal, rec) = Wal::open(Options {
        dir: queue_dir(&spec.directory, &ctx.id),
        fsync: spec.fsync,
        max_bytes,
        max_records: q.queue_size,
        segment_bytes: (max_bytes / 8).clamp(1 << 20, SEGMENT_MAX),
        lock_timeout: spec.lock_timeout,
        corrupt,
        cache_bytes: (max_bytes / 4).min(SEGMENT_MAX),
    })
    .map_err(|e| ConfigError::new("sending_queue.storage", e))?;
    for s in Signal::ALL {
        let (item, i) = (s.item_name(), s as usize);
        ctx.metrics
            .counter(
                &format!("observatory_exporter_queue_recovered_{item}_total"),
                "Items found unfinished in the persistent queue at start, sent again.",
                &labels,
            )
            .add(rec.items[i]);
        ctx.metrics
            .counter(
                &format!("observatory_exporter_queue_redelivered_{item}_total"),
                "Recovered items that had already been handed to the exporter: the backend may receive them twice.",
                &labels,
            )
            .add(rec.redelivered[i]);
    }
    if rec.batches > 0 || rec.corrupt > 0 {
        tracing::warn!(exporter = %ctx.id, batches = rec.batches, items = ?rec.items, possibly_duplicated = ?rec.redelivered, corrupt = rec.corrupt, discarded_bytes = rec.discarded_bytes, "persistent queue: sending what the last run left unfinished");
    }
    let capacity = q.queue_size as f64;
    ctx.metrics.gauge(
        "observatory_exporter_queue_capacity",
        "Batches the sending queue can hold.",
        &labels,
        move || capacity,
    );
    // Weak: the registry must not keep the log (and its lock) open.
    let probe = Arc::downgrade(&wal);
    ctx.metrics.gauge(
        "observatory_exporter_queue_size",
        "Batches in the sending queue.",
        &labels,
        move || probe.upgrade().map_or(0.0, |w| w.len() as f64),
    );
    let probe = Arc::downgrade(&wal);
    ctx.metrics.gauge(
        "observatory_exporter_queue_bytes",
        "Bytes the persistent queue's files take on disk.",
        &labels,
        move || probe.upgrade().map_or(0.0, |w| w.bytes() as f64),
    );
    let consumers: Vec<_> = (0..q.num_consumers)
        .map(|_| tokio::spawn(drain(wal.clone(), shared.clone())))
        .collect();
    super::after(ctx, &shared, futures::future::join_all(consumers));
    Ok(Arc::new(Persistent { wal, shared }))
}

async fn drain(wal: Arc<Wal>, shared: Arc<Shared>) {
    while let Some(taken) = wal.next().await {
        let finished = {
            let send = shared.send(&taken.batch);
            tokio::pin!(send);
            tokio::select! {
                _ = &mut send => true,
                _ = wal.closed() => tokio::time::timeout(SHUTDOWN_GRACE, &mut send).await.is_ok(),
            }
        };
        if !finished {
            return;
        }
        // Sent, or given up on and counted as failed by `send`.
        wal.finish(taken);
    }
}
