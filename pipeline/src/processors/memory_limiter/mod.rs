//! `memory_limiter`: measures the process's resident memory every
//! `check_interval` and, while it is above the soft limit (limit − spike),
//! refuses new data with the retryable error so clients back off. Data
//! already accepted is never dropped by the limiter.
//!
//! It measures RSS, not allocator statistics: RSS is what a container limit
//! and the OOM killer see, and it includes every buffer (sockets, queues,
//! allocator slack). An allocator that keeps freed pages makes RSS read high,
//! which errs on the side of refusing early, never late.

mod config;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use async_trait::async_trait;

pub use config::MemoryLimiterConfig;

use crate::batch::{Batch, Signal};
use crate::component::{parse_config, Context, ProcessorBuilder, ProcessorFactory};
use crate::consumer::{BoxConsumer, ConsumeError, Consumer};
use crate::telemetry::{proc_status_bytes, total_memory_bytes, Counter};

/// Reads the memory in use, in bytes.
pub type MemoryProbe = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The registry entry.
pub fn factory() -> ProcessorFactory {
    ProcessorFactory {
        type_name: "memory_limiter",
        signals: &Signal::ALL,
        parse: |v| Ok(Arc::new(parse_config::<MemoryLimiterConfig>(v)?)),
    }
}

struct State {
    refusing: AtomicBool,
    used: AtomicU64,
}

struct Limiter {
    next: BoxConsumer,
    state: Arc<State>,
    soft: u64,
    refused: Counter,
}

#[async_trait]
impl Consumer for Limiter {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        if self.state.refusing.load(Ordering::Relaxed) {
            self.refused.add(batch.items() as u64);
            return Err(ConsumeError::Retryable(format!(
                "memory_limiter: using {} MiB, over the soft limit of {} MiB; retry later",
                self.state.used.load(Ordering::Relaxed) >> 20,
                self.soft >> 20
            )));
        }
        self.next.consume(batch).await
    }
}

impl MemoryLimiterConfig {
    /// Builds the limiter with a given memory probe (tests use a fake one).
    pub fn build_with_probe(
        &self,
        signal: Signal,
        next: BoxConsumer,
        ctx: &Context,
        probe: MemoryProbe,
    ) -> BoxConsumer {
        let (hard, soft) = self.limits(total_memory_bytes());
        let state = Arc::new(State {
            refusing: AtomicBool::new(false),
            used: AtomicU64::new(0),
        });
        let check = {
            let (probe, id) = (probe.clone(), ctx.id.clone());
            move |state: &State| {
                let used = probe();
                state.used.store(used, Ordering::Relaxed);
                let over = used > soft;
                if state.refusing.swap(over, Ordering::Relaxed) != over {
                    if over {
                        tracing::warn!(processor = %id, used_mib = used >> 20, soft_limit_mib = soft >> 20, hard_limit_mib = hard >> 20, "memory over the soft limit: refusing new data");
                    } else {
                        tracing::info!(processor = %id, used_mib = used >> 20, "memory back under the soft limit: accepting data");
                    }
                }
            }
        };
        check(&state);
        let weak: Weak<State> = Arc::downgrade(&state);
        let interval = self.check_interval;
        // The monitor ends once the limiter is gone (its pipeline shut down).
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(state) = weak.upgrade() else { return };
                check(&state);
            }
        });
        let labels = [("processor", ctx.id.as_str())];
        let used_probe = Arc::downgrade(&state);
        ctx.metrics.gauge(
            "observatory_processor_memory_limiter_used_bytes",
            "Memory in use at the limiter's last check.",
            &[("processor", ctx.id.as_str()), ("signal", signal.as_str())],
            move || {
                used_probe
                    .upgrade()
                    .map_or(0.0, |s| s.used.load(Ordering::Relaxed) as f64)
            },
        );
        Arc::new(Limiter {
            next,
            state,
            soft,
            refused: ctx.metrics.counter(
                &format!("observatory_processor_refused_{}_total", signal.item_name()),
                "Items a processor refused with a retryable error (the client was told to retry).",
                &labels,
            ),
        })
    }
}

impl ProcessorBuilder for MemoryLimiterConfig {
    fn build(&self, signal: Signal, next: BoxConsumer, ctx: &Context) -> BoxConsumer {
        self.build_with_probe(signal, next, ctx, Arc::new(|| proc_status_bytes("VmRSS")))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use prost::Message;

    use super::*;
    use crate::component::Tasks;
    use crate::generate::{Generator, GeneratorOptions};
    use crate::telemetry::Registry;
    use crate::testing::Sink;

    #[tokio::test(start_paused = true)]
    async fn refuses_above_the_soft_limit_and_recovers_below_it() {
        let used = Arc::new(AtomicU64::new(10 << 20));
        let probe_used = used.clone();
        let cfg = MemoryLimiterConfig {
            check_interval: Duration::from_secs(1),
            limit_mib: 100,
            spike_limit_mib: 20,
            ..Default::default()
        };
        let ctx = Context {
            id: "memory_limiter".into(),
            metrics: Registry::new(),
            tasks: Tasks::default(),
            storage: Default::default(),
        };
        let sink = Arc::new(Sink::default());
        let input = cfg.build_with_probe(
            Signal::Traces,
            sink.clone(),
            &ctx,
            Arc::new(move || probe_used.load(Ordering::Relaxed)),
        );
        let mut gen = Generator::new(GeneratorOptions::default());
        let mut batch =
            || Batch::parse(Signal::Traces, gen.spans(7).encode_to_vec().into()).unwrap();

        input.consume(batch()).await.unwrap();
        used.store(81 << 20, Ordering::Relaxed);
        // Not refused until the next check notices.
        input.consume(batch()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1001)).await;
        let err = input.consume(batch()).await.unwrap_err();
        assert!(err.is_retryable());
        assert!(
            err.to_string()
                .contains("using 81 MiB, over the soft limit of 80 MiB"),
            "{err}"
        );
        used.store(79 << 20, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(1000)).await;
        input.consume(batch()).await.unwrap();

        assert_eq!(sink.sizes(), vec![7, 7, 7]);
        let refused = ctx.metrics.value(
            "observatory_processor_refused_spans_total",
            &[("processor", "memory_limiter")],
        );
        assert_eq!(refused, Some(7.0));
    }
}
