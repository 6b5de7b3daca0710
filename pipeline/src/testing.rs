//! Test doubles shared by the crates' tests: a consumer that records what it
//! is given and answers as told.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;

use crate::batch::Batch;
use crate::consumer::{ConsumeError, Consumer};

/// A component context for tests: fresh metrics, no storage.
pub fn context(id: &str) -> crate::component::Context {
    crate::component::Context {
        id: id.into(),
        metrics: crate::telemetry::Registry::new(),
        tasks: Default::default(),
        storage: Default::default(),
        auth: Default::default(),
        local: Default::default(),
    }
}

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

/// A processor built from its YAML config in front of a [`Sink`], as
/// processor tests drive one.
pub struct Rig {
    /// The processor's input.
    pub p: crate::consumer::BoxConsumer,
    /// What it passed on.
    pub sink: std::sync::Arc<Sink>,
    /// Its self-metrics.
    pub metrics: std::sync::Arc<crate::telemetry::Registry>,
    id: String,
}

impl Rig {
    /// Builds `factory`'s processor, with component id `id`, for `signal`.
    pub fn new(
        factory: crate::component::ProcessorFactory,
        id: &str,
        yaml: &str,
        signal: crate::batch::Signal,
    ) -> Rig {
        let builder = (factory.parse)(serde_yaml::from_str(yaml).expect("YAML")).expect("config");
        let ctx = crate::component::Context {
            id: id.into(),
            metrics: crate::telemetry::Registry::new(),
            tasks: crate::component::Tasks::default(),
            storage: Default::default(),
            auth: Default::default(),
            local: Default::default(),
        };
        let sink = std::sync::Arc::new(Sink::default());
        Rig {
            p: builder.build(signal, sink.clone(), &ctx),
            sink,
            metrics: ctx.metrics,
            id: id.into(),
        }
    }

    /// Every request passed on, in order.
    pub fn taken(&self) -> Vec<crate::batch::Request> {
        let batches = self.sink.batches.lock().unwrap();
        batches.iter().flat_map(|b| b.requests.clone()).collect()
    }

    /// A counter of this processor (0 if never registered).
    pub fn counter(&self, name: &str) -> f64 {
        self.metrics
            .value(name, &[("processor", self.id.as_str())])
            .unwrap_or(0.0)
    }
}
