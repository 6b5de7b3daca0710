//! The interface between pipeline stages, and fan-out to several consumers.

use std::sync::Arc;

use async_trait::async_trait;

use crate::batch::Batch;

/// Why a stage did not take a batch; the class decides what the client hears.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsumeError {
    /// Try again later (a full queue, shutting down): HTTP 503 / gRPC UNAVAILABLE.
    #[error("{0}")]
    Retryable(String),
    /// The data will never be taken: HTTP 400 / gRPC INVALID_ARGUMENT.
    #[error("{0}")]
    Permanent(String),
    /// The sender is over its rate: HTTP 429 / gRPC RESOURCE_EXHAUSTED,
    /// both saying when to retry.
    #[error("{message}")]
    Throttled {
        /// Why, naming the limit.
        message: String,
        /// When the sender may try again.
        retry_after: std::time::Duration,
    },
}

impl ConsumeError {
    /// Whether the sender may retry.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ConsumeError::Retryable(_) | ConsumeError::Throttled { .. }
        )
    }
}

/// A stage that takes batches. `consume` returns once the stage holds the
/// batch (in a bounded queue it owns) or has refused it; it never waits for
/// room, so backpressure reaches clients as a retryable error.
#[async_trait]
pub trait Consumer: Send + Sync {
    /// Takes `batch` or says why not.
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError>;
}

/// A shared, type-erased consumer.
pub type BoxConsumer = Arc<dyn Consumer>;

/// Hands each batch to several consumers: clones for all but the last, which
/// gets the original (clones share the request bytes).
pub struct Fanout {
    consumers: Vec<BoxConsumer>,
}

impl Fanout {
    /// A fan-out; with one consumer, prefer using it directly.
    pub fn new(consumers: Vec<BoxConsumer>) -> Fanout {
        Fanout { consumers }
    }

    /// The consumer to use for `consumers`: itself when alone, else a fan-out.
    pub fn of(mut consumers: Vec<BoxConsumer>) -> BoxConsumer {
        if consumers.len() == 1 {
            consumers.pop().unwrap()
        } else {
            Arc::new(Fanout::new(consumers))
        }
    }
}

#[async_trait]
impl Consumer for Fanout {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        let Some((last, rest)) = self.consumers.split_last() else {
            return Ok(());
        };
        // Every consumer gets the batch even if one refuses; the worst answer
        // (retryable beats permanent, so the client retries) goes back.
        let mut worst: Option<ConsumeError> = None;
        let mut note = |r: Result<(), ConsumeError>| {
            if let Err(e) = r {
                if worst.as_ref().is_none_or(|w| !w.is_retryable()) {
                    worst = Some(e);
                }
            }
        };
        for c in rest {
            note(c.consume(batch.clone()).await);
        }
        note(last.consume(batch).await);
        worst.map_or(Ok(()), Err)
    }
}

/// Hands a batch on from a stage that owns a task, waiting out retryable
/// refusals: while it waits, that stage's input queue fills and receivers
/// refuse new data, so pressure reaches clients instead of data being
/// dropped here. A permanent refusal is counted in `dropped` and logged.
pub async fn deliver(
    next: &BoxConsumer,
    batch: Batch,
    dropped: &crate::telemetry::Counter,
    stage: &str,
) {
    let mut wait = std::time::Duration::from_millis(5);
    loop {
        match next.consume(batch.clone()).await {
            Ok(()) => return,
            Err(ConsumeError::Retryable(_)) => {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(std::time::Duration::from_millis(500));
            }
            Err(ConsumeError::Throttled { retry_after, .. }) => {
                tokio::time::sleep(retry_after.min(std::time::Duration::from_secs(1))).await;
            }
            Err(ConsumeError::Permanent(reason)) => {
                dropped.add(batch.items() as u64);
                tracing::warn!(processor = stage, %reason, items = batch.items(), "downstream refused a batch permanently; dropped");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{Request, Signal};
    use std::sync::Mutex;

    struct Recorder {
        seen: Mutex<usize>,
        answer: Result<(), ConsumeError>,
    }

    #[async_trait]
    impl Consumer for Recorder {
        async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
            *self.seen.lock().unwrap() += batch.items();
            self.answer.clone()
        }
    }

    fn rec(answer: Result<(), ConsumeError>) -> Arc<Recorder> {
        Arc::new(Recorder {
            seen: Mutex::new(0),
            answer,
        })
    }

    #[tokio::test]
    async fn fanout_delivers_to_all_and_reports_retryable_first() {
        let a = rec(Err(ConsumeError::Permanent("bad".into())));
        let b = rec(Err(ConsumeError::Retryable("full".into())));
        let c = rec(Ok(()));
        let f = Fanout::new(vec![a.clone(), b.clone(), c.clone()]);
        let batch = Batch::new(
            Signal::Logs,
            Request {
                bytes: Default::default(),
                items: 7,
                index: None,
                client: None,
            },
        );
        let err = f.consume(batch).await.unwrap_err();
        assert_eq!(err, ConsumeError::Retryable("full".into()));
        for r in [a, b, c] {
            assert_eq!(*r.seen.lock().unwrap(), 7);
        }
    }
}
