//! `memory_limiter`: every `check_interval` it reads the memory in use and,
//! while that is above the soft limit (limit − spike), refuses new data with
//! the retryable error so clients back off. Data already accepted is never
//! dropped by the limiter.
//!
//! It decides on the allocator's live bytes, as otelcol decides on Go's
//! live heap, not on RSS: glibc keeps freed pages mapped, so after a burst
//! RSS stayed at ~400 MiB with nothing held, and a limiter reading RSS
//! refused every client for minutes. RSS stays a backstop, since it is what
//! a container limit and the OOM killer see: when RSS is over the soft limit
//! but live bytes are not, the limiter asks the allocator to hand its free
//! pages back (`malloc_trim`), and it refuses while RSS stays over the hard
//! limit even so. Where no allocator statistics are installed (another
//! allocator, or a library user), it decides on RSS alone.

mod config;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use async_trait::async_trait;

pub use config::MemoryLimiterConfig;

use crate::batch::{Batch, Signal};
use crate::component::{parse_config, Context, ProcessorBuilder, ProcessorFactory};
use crate::consumer::{BoxConsumer, ConsumeError, Consumer};
use crate::telemetry::{proc_status_bytes, total_memory_bytes, Counter};

/// One reading of the process's memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reading {
    /// Resident set size, bytes.
    pub rss: u64,
    /// Bytes the allocator has handed out and not had back, if it says.
    pub live: Option<u64>,
}

/// Reads the memory in use.
pub type MemoryProbe = Arc<dyn Fn() -> Reading + Send + Sync>;

/// Asks the allocator to return free pages to the system.
pub type Trim = Arc<dyn Fn() + Send + Sync>;

/// The allocator's statistics and trim, installed once by the binary (it
/// knows which allocator it runs on; this crate has no unsafe code).
pub struct AllocatorHooks {
    /// Live bytes.
    pub live: fn() -> u64,
    /// Returns free pages to the system.
    pub trim: fn(),
}

static HOOKS: OnceLock<AllocatorHooks> = OnceLock::new();

/// Installs the allocator hooks every limiter built afterwards uses.
pub fn install_allocator_hooks(hooks: AllocatorHooks) {
    let _ = HOOKS.set(hooks);
}

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
    rss: AtomicU64,
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
                "memory_limiter: using {} MiB (RSS {} MiB), over the soft limit of {} MiB; retry later",
                self.state.used.load(Ordering::Relaxed) >> 20,
                self.state.rss.load(Ordering::Relaxed) >> 20,
                self.soft >> 20
            )));
        }
        self.next.consume(batch).await
    }
}

/// What one check decides: the bytes it counts as used, and whether to refuse.
fn decide(probe: &MemoryProbe, trim: Option<&Trim>, soft: u64, hard: u64) -> (Reading, u64, bool) {
    let mut r = probe();
    if let (Some(live), Some(trim)) = (r.live, trim) {
        if r.rss > soft && live <= soft {
            // The gap is freed memory the allocator kept: give it back.
            trim();
            r = probe();
        }
    }
    let used = r.live.unwrap_or(r.rss);
    (r, used, used > soft || r.rss > hard)
}

/// Reads RSS, and the allocator's live bytes only while RSS is over
/// `soft`. Under it there is nothing to refuse, and live bytes that are
/// not resident are not yet memory in use; reading them walks every free
/// chunk of the heap with the allocator locked (`mallinfo2`: ~4 ms a
/// check, 1.4 % of the full chain's CPU in perf, holding every thread's
/// allocations that long).
fn probe_over(
    rss: impl Fn() -> u64 + Send + Sync + 'static,
    live: Option<fn() -> u64>,
    soft: u64,
) -> MemoryProbe {
    Arc::new(move || {
        let rss = rss();
        Reading {
            rss,
            live: live.filter(|_| rss > soft).map(|f| f()),
        }
    })
}

impl MemoryLimiterConfig {
    /// Builds the limiter with a given memory probe and trim (tests use fakes).
    pub fn build_with_probe(
        &self,
        signal: Signal,
        next: BoxConsumer,
        ctx: &Context,
        probe: MemoryProbe,
        trim: Option<Trim>,
    ) -> BoxConsumer {
        let (hard, soft) = self.limits(total_memory_bytes());
        let state = Arc::new(State {
            refusing: AtomicBool::new(false),
            used: AtomicU64::new(0),
            rss: AtomicU64::new(0),
        });
        let check = {
            let id = ctx.id.clone();
            move |state: &State| {
                let (r, used, over) = decide(&probe, trim.as_ref(), soft, hard);
                state.used.store(used, Ordering::Relaxed);
                state.rss.store(r.rss, Ordering::Relaxed);
                if state.refusing.swap(over, Ordering::Relaxed) != over {
                    if over {
                        tracing::warn!(processor = %id, used_mib = used >> 20, rss_mib = r.rss >> 20, soft_limit_mib = soft >> 20, hard_limit_mib = hard >> 20, "memory over the soft limit: refusing new data");
                    } else {
                        tracing::info!(processor = %id, used_mib = used >> 20, rss_mib = r.rss >> 20, "memory back under the soft limit: accepting data");
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
        let labels = [("processor", ctx.id.as_str()), ("signal", signal.as_str())];
        for (name, help, rss) in [
            (
                "observatory_processor_memory_limiter_used_bytes",
                "Memory in use at the limiter's last check (allocator live bytes while RSS is over the soft limit, else RSS).",
                false,
            ),
            (
                "observatory_processor_memory_limiter_rss_bytes",
                "Resident memory at the limiter's last check.",
                true,
            ),
        ] {
            let probe = Arc::downgrade(&state);
            ctx.metrics.gauge(name, help, &labels, move || {
                probe.upgrade().map_or(0.0, |s| {
                    let v = if rss { &s.rss } else { &s.used };
                    v.load(Ordering::Relaxed) as f64
                })
            });
        }
        for (name, help, v) in [
            (
                "observatory_processor_memory_limiter_limit_bytes",
                "The hard limit (limit_mib or limit_percentage).",
                hard,
            ),
            (
                "observatory_processor_memory_limiter_soft_limit_bytes",
                "The soft limit (the hard limit less the spike limit): above it data is refused.",
                soft,
            ),
        ] {
            ctx.metrics.gauge(name, help, &labels, move || v as f64);
        }
        Arc::new(Limiter {
            next,
            state,
            soft,
            refused: ctx.metrics.counter(
                &format!("observatory_processor_refused_{}_total", signal.item_name()),
                "Items a processor refused with a retryable error (the client was told to retry).",
                &[("processor", ctx.id.as_str())],
            ),
        })
    }
}

impl ProcessorBuilder for MemoryLimiterConfig {
    fn build(&self, signal: Signal, next: BoxConsumer, ctx: &Context) -> BoxConsumer {
        let hooks = HOOKS.get();
        let (_, soft) = self.limits(total_memory_bytes());
        let probe = probe_over(|| proc_status_bytes("VmRSS"), hooks.map(|h| h.live), soft);
        let trim = hooks.map(|h| Arc::new(h.trim) as Trim);
        self.build_with_probe(signal, next, ctx, probe, trim)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use prost::Message;

    use super::*;
    use crate::generate::{Generator, GeneratorOptions};
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
        let ctx = crate::testing::context("memory_limiter");
        let sink = Arc::new(Sink::default());
        let input = cfg.build_with_probe(
            Signal::Traces,
            sink.clone(),
            &ctx,
            Arc::new(move || Reading {
                rss: probe_used.load(Ordering::Relaxed),
                live: None,
            }),
            None,
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
                .contains("using 81 MiB (RSS 81 MiB), over the soft limit of 80 MiB"),
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

    #[test]
    fn live_bytes_are_read_only_while_rss_is_over_the_soft_limit() {
        static READS: AtomicU64 = AtomicU64::new(0);
        fn live() -> u64 {
            READS.fetch_add(1, Ordering::Relaxed);
            70 << 20
        }
        let rss = Arc::new(AtomicU64::new(50 << 20));
        let r = rss.clone();
        let probe = probe_over(move || r.load(Ordering::Relaxed), Some(live), 80 << 20);
        assert_eq!(
            probe(),
            Reading {
                rss: 50 << 20,
                live: None
            }
        );
        assert_eq!(READS.load(Ordering::Relaxed), 0);
        rss.store(90 << 20, Ordering::Relaxed);
        assert_eq!(
            probe(),
            Reading {
                rss: 90 << 20,
                live: Some(70 << 20)
            }
        );
        assert_eq!(READS.load(Ordering::Relaxed), 1);
        // Under the soft limit the decision is the same either way: accept.
        let (_, used, over) = decide(
            &probe_over(|| 50 << 20, Some(live), 80 << 20),
            None,
            80 << 20,
            100 << 20,
        );
        assert_eq!((used, over), (50 << 20, false));
    }

    #[tokio::test(start_paused = true)]
    async fn decides_on_live_bytes_trims_kept_pages_and_keeps_rss_as_a_backstop() {
        // The attack: after a burst glibc kept ~400 MiB resident with
        // nothing live, and a limiter reading RSS stayed shut for minutes.
        let rss = Arc::new(AtomicU64::new(400 << 20));
        let live = Arc::new(AtomicU64::new(30 << 20));
        let trims = Arc::new(AtomicU64::new(0));
        let (r, l) = (rss.clone(), live.clone());
        let probe: MemoryProbe = Arc::new(move || Reading {
            rss: r.load(Ordering::Relaxed),
            live: Some(l.load(Ordering::Relaxed)),
        });
        let (t, r2) = (trims.clone(), rss.clone());
        // This allocator hands back all but 100 MiB of what it kept.
        let trim: Trim = Arc::new(move || {
            t.fetch_add(1, Ordering::Relaxed);
            r2.store(100 << 20, Ordering::Relaxed);
        });
        let cfg = MemoryLimiterConfig {
            check_interval: Duration::from_secs(1),
            limit_mib: 300,
            spike_limit_mib: 60,
            ..Default::default()
        };
        let ctx = crate::testing::context("memory_limiter");
        let sink = Arc::new(Sink::default());
        let input = cfg.build_with_probe(Signal::Traces, sink.clone(), &ctx, probe, Some(trim));
        let mut gen = Generator::new(GeneratorOptions::default());
        let mut batch =
            || Batch::parse(Signal::Traces, gen.spans(3).encode_to_vec().into()).unwrap();
        // RSS 400 > soft 240 but only 30 MiB live: trimmed, and accepted.
        input.consume(batch()).await.unwrap();
        assert_eq!(trims.load(Ordering::Relaxed), 1);
        assert_eq!(
            ctx.metrics.value(
                "observatory_processor_memory_limiter_rss_bytes",
                &[("processor", "memory_limiter"), ("signal", "traces")]
            ),
            Some((100u64 << 20) as f64)
        );
        // Live over the soft limit: refused, whatever RSS says.
        live.store(250 << 20, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(1001)).await;
        assert!(input.consume(batch()).await.unwrap_err().is_retryable());
        // Live back down: accepted at the next check.
        live.store(50 << 20, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(1000)).await;
        input.consume(batch()).await.unwrap();
        // RSS over the hard limit even after trimming: refused (backstop).
        let r3 = rss.clone();
        r3.store(350 << 20, Ordering::Relaxed);
        let stuck_probe: MemoryProbe = {
            let (r, l) = (rss.clone(), live.clone());
            Arc::new(move || Reading {
                rss: r.load(Ordering::Relaxed),
                live: Some(l.load(Ordering::Relaxed)),
            })
        };
        let no_op: Trim = Arc::new(|| {});
        let input2 =
            cfg.build_with_probe(Signal::Traces, sink.clone(), &ctx, stuck_probe, Some(no_op));
        assert!(input2.consume(batch()).await.unwrap_err().is_retryable());
        assert_eq!(sink.sizes(), vec![3, 3]);
    }
}
