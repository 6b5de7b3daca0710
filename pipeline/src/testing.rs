//! Test doubles shared by the crates' tests: a consumer that records what it
//! is given and answers as told.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;

use crate::batch::Batch;
use crate::consumer::{ConsumeError, Consumer};

/// Records every batch; refuses the first `refuse` calls as retryable.
#[derive(Default)]
pub struct Sink {
    /// Batches taken, in order.
    pub batches: Mutex<Vec<Batch>>,
    /// Calls still to refuse.
    pub refuse: Mutex<usize>,
}

impl Sink {
    /// Items in every batch taken, in order.
    pub fn sizes(&self) -> Vec<usize> {
        self.batches
            .lock()
            .unwrap()
            .iter()
            .map(|b| b.items())
            .collect()
    }
}

#[async_trait]
impl Consumer for Sink {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        {
            let mut r = self.refuse.lock().unwrap();
            if *r > 0 {
                *r -= 1;
                return Err(ConsumeError::Retryable("test refusal".into()));
            }
        }
        self.batches.lock().unwrap().push(batch);
        Ok(())
    }
}

/// Counts the items it takes and keeps nothing (for benches).
#[derive(Default)]
pub struct CountItems(pub AtomicUsize);

#[async_trait]
impl Consumer for CountItems {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        self.0.fetch_add(batch.items(), Ordering::Relaxed);
        Ok(())
    }
}
