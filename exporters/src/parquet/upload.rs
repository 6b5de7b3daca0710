//! Putting finished files into the store under the exporter's `timeout`
//! and `retry_on_failure`, whoever closes the file (an export, the age-out
//! timer, shutdown): each put is bounded by `timeout`; a refused file waits
//! its backoff before it is tried again, and is given up (its rows counted
//! in `observatory_exporter_parquet_rows_dropped_total`) when retries are
//! off or `max_elapsed_time` has passed.

use std::sync::Arc;
use std::time::Duration;

use object_store::path::Path;
use object_store::{ObjectStore, PutPayload};
use pipeline::telemetry::Counter;
use rand::Rng;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::engine::RetryConfig;

/// A closed file on its way to the store.
pub struct Finished {
    path: Path,
    /// Shared, so keeping it for a retry costs no copy.
    bytes: bytes::Bytes,
    rows: usize,
    failures: u32,
    first_failure: Option<Instant>,
    next_try: Instant,
}

impl Finished {
    /// A file not tried yet.
    pub fn new(path: Path, bytes: bytes::Bytes, rows: usize) -> Finished {
        Finished {
            path,
            bytes,
            rows,
            failures: 0,
            first_failure: None,
            next_try: Instant::now(),
        }
    }
}

/// The store and the files it refused.
pub struct Uploads {
    /// The exporter's id, for logs.
    pub id: String,
    /// Where files go.
    pub store: Arc<dyn ObjectStore>,
    /// Time one put may take; zero = none.
    pub timeout: Duration,
    /// Backoff and giving up for refused files.
    pub retry: RetryConfig,
    /// Refused files waiting for their next try.
    pub pending: Mutex<Vec<Finished>>,
    /// Files written.
    pub files: Counter,
    /// Rows in files given up on.
    pub dropped: Counter,
}

impl Uploads {
    /// Puts `f`; a refusal keeps it for a later try or gives it up.
    pub async fn put(&self, f: Finished) {
        let attempt = self.store.put(&f.path, PutPayload::from(f.bytes.clone()));
        let result = if self.timeout.is_zero() {
            attempt.await.map_err(|e| e.to_string())
        } else {
            match tokio::time::timeout(self.timeout, attempt).await {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(_) => Err(format!("timed out after {:?}", self.timeout)),
            }
        };
        match result {
            Ok(_) => {
                self.files.add(1);
                tracing::debug!(exporter = %self.id, path = %f.path, rows = f.rows, "parquet file written");
            }
            Err(e) => self.refused(f, &e).await,
        }
    }

    async fn refused(&self, mut f: Finished, error: &str) {
        let now = Instant::now();
        let first = *f.first_failure.get_or_insert(now);
        let r = &self.retry;
        let mut wait = r
            .initial_interval
            .mul_f64(r.multiplier.powi(f.failures as i32))
            .min(r.max_interval);
        if r.randomization_factor > 0.0 {
            let j = r.randomization_factor;
            wait = wait.mul_f64(rand::rng().random_range(1.0 - j..=1.0 + j));
        }
        f.failures += 1;
        let over = !r.max_elapsed_time.is_zero() && (now + wait) - first > r.max_elapsed_time;
        if !r.enabled || over {
            self.give_up(&f, error);
            return;
        }
        tracing::warn!(exporter = %self.id, path = %f.path, rows = f.rows, error, ?wait, "parquet file not written; will try again");
        f.next_try = now + wait;
        self.pending.lock().await.push(f);
    }

    fn give_up(&self, f: &Finished, error: &str) {
        self.dropped.add(f.rows as u64);
        tracing::error!(exporter = %self.id, path = %f.path, rows = f.rows, error, "parquet file given up; its rows are lost");
    }

    /// Tries the refused files whose backoff is over; true when none wait.
    pub async fn retry_due(&self) -> bool {
        let now = Instant::now();
        let due: Vec<Finished> = {
            let mut pending = self.pending.lock().await;
            let (due, later) = std::mem::take(&mut *pending)
                .into_iter()
                .partition(|f| f.next_try <= now);
            *pending = later;
            due
        };
        for f in due {
            self.put(f).await;
        }
        self.pending.lock().await.is_empty()
    }

    /// Files waiting for another try.
    pub async fn waiting(&self) -> usize {
        self.pending.lock().await.len()
    }

    /// At shutdown: keeps trying refused files on their backoff for at
    /// most `budget`, then gives up what is left.
    pub async fn drain(&self, budget: Duration) {
        let end = Instant::now() + budget;
        while !self.retry_due().await {
            let next = self.pending.lock().await.iter().map(|f| f.next_try).min();
            match next {
                Some(t) if t < end => tokio::time::sleep_until(t).await,
                _ => break,
            }
        }
        for f in std::mem::take(&mut *self.pending.lock().await) {
            self.give_up(&f, "still refused at shutdown");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Local storage under `root`, where a plain file named `blocked`
    /// stands in the way of every path under `blocked/`.
    fn uploads(root: &std::path::Path, retry: RetryConfig) -> Uploads {
        Uploads {
            id: "parquet".into(),
            store: Arc::new(object_store::local::LocalFileSystem::new_with_prefix(root).unwrap()),
            timeout: Duration::from_secs(5),
            retry,
            pending: Mutex::new(Vec::new()),
            files: Counter::default(),
            dropped: Counter::default(),
        }
    }

    fn retry(initial_ms: u64, max_elapsed_ms: u64) -> RetryConfig {
        RetryConfig {
            initial_interval: Duration::from_millis(initial_ms),
            randomization_factor: 0.0,
            multiplier: 2.0,
            max_elapsed_time: Duration::from_millis(max_elapsed_ms),
            ..RetryConfig::default()
        }
    }

    fn file() -> Finished {
        Finished::new(
            Path::from("blocked/x.parquet"),
            bytes::Bytes::from_static(b"PAR1"),
            5,
        )
    }

    #[tokio::test]
    async fn a_refused_file_waits_its_backoff_then_lands() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("blocked"), b"").unwrap();
        let u = uploads(dir.path(), retry(150, 0));
        u.put(file()).await;
        assert_eq!(u.waiting().await, 1);
        // Not due yet: not tried again.
        assert!(!u.retry_due().await);
        assert_eq!(u.pending.lock().await[0].failures, 1);
        std::fs::remove_file(dir.path().join("blocked")).unwrap();
        assert!(!u.retry_due().await, "tried before its backoff");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(u.retry_due().await);
        assert_eq!(u.files.get(), 1);
        assert_eq!(u.dropped.get(), 0);
        assert!(dir.path().join("blocked/x.parquet").exists());
    }

    #[tokio::test]
    async fn without_retries_or_past_max_elapsed_time_the_rows_are_counted_dropped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("blocked"), b"").unwrap();
        let off = uploads(
            dir.path(),
            RetryConfig {
                enabled: false,
                ..retry(10, 0)
            },
        );
        off.put(file()).await;
        assert_eq!((off.waiting().await, off.dropped.get()), (0, 5));

        // 100 ms, then 200 ms: the second wait would end past 150 ms.
        let short = uploads(dir.path(), retry(100, 150));
        short.put(file()).await;
        assert_eq!(short.waiting().await, 1);
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(short.retry_due().await);
        assert_eq!(short.dropped.get(), 5);
    }

    #[tokio::test]
    async fn shutdown_retries_within_its_budget_then_gives_up() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("blocked"), b"").unwrap();
        let u = uploads(dir.path(), retry(50, 0));
        u.put(file()).await;
        let t = Instant::now();
        u.drain(Duration::from_millis(300)).await;
        assert!(t.elapsed() < Duration::from_secs(2));
        assert_eq!((u.waiting().await, u.dropped.get()), (0, 5));
        assert!(u.pending.lock().await.is_empty());
    }
}
