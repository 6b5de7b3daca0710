//! `tail_sampling`: holds each trace for `decision_wait` from its first
//! span, then applies the policies once and sends all its held spans on
//! together, or drops them (counted). Spans are held as positions in the
//! requests they came in (shared, never decoded); attribute policies read
//! span bytes in place.
//!
//! Late spans follow the cached decision (`decision_cache`); without a
//! cache entry they start a new trace. At `num_traces` (or past
//! `maximum_held_bytes` of held spans) the oldest trace is decided early, as
//! is a trace over `maximum_trace_size_bytes`; all are counted, never
//! silently dropped.

mod config;
mod held;
mod idtable;
mod policy;
mod ring;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

pub use config::{HeldCompression, PolicyConfig, TailSamplingConfig};
use held::HeldRequests;
pub use policy::{
    final_decision, salted_hash, trace_state_has, AttrTests, Policy, SpanRef, Summary, Tally,
    TraceView, Verdict,
};
use ring::{Held, Traces};

use crate::batch::{Batch, Request, Signal};
use crate::component::{parse_config, Context, ProcessorBuilder, ProcessorFactory};
use crate::consumer::{deliver, BoxConsumer, ConsumeError, Consumer};
use crate::fasthash::{FastMap, FastSet};
use crate::scan::SpanEntry;
use crate::split::select_spans;
use crate::telemetry::{Counter, Registry};

/// Decided spans waiting to be sent on; past it receivers are told to retry.
#[cfg(not(test))]
const OUT_SPANS: usize = 1 << 18;
/// Small enough for a test to reach without generating 10^5 spans.
#[cfg(test)]
const OUT_SPANS: usize = 1_000;
/// A decided span: the request it came in and its position there.
type SpanAt = (Arc<Request>, u32);
/// Requests compressed between yields (~1 ms of a core each at 200 KB):
/// the sampler's task shares its worker with receivers.
const PACK_ROUND: usize = 4;

/// Traces decided under one hold of the lock, so receivers wait little.
const DECISION_ROUND: usize = 2048;

/// The registry entry.
pub fn factory() -> ProcessorFactory {
    ProcessorFactory {
        type_name: "tail_sampling",
        signals: &[Signal::Traces],
        parse: |v| Ok(Arc::new(parse_config::<TailSamplingConfig>(v)?)),
    }
}

/// A bounded set that forgets its oldest member.
struct Remembered {
    set: FastSet<[u8; 16]>,
    order: VecDeque<[u8; 16]>,
    cap: usize,
}

impl Remembered {
    fn new(cap: usize) -> Remembered {
        Remembered {
            set: FastSet::default(),
            order: VecDeque::new(),
            cap,
        }
    }

    fn insert(&mut self, id: [u8; 16]) {
        if self.cap == 0 || !self.set.insert(id) {
            return;
        }
        self.order.push_back(id);
        if self.order.len() > self.cap {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }
}

/// The spans of one trace within one request.
#[derive(Clone, Copy)]
struct Group {
    id: [u8; 16],
    bytes: u32,
    hits: u64,
    /// Its spans' count, times and statuses.
    summary: Summary,
    first: u32,
    last: u32,
}

/// A request's spans grouped by trace id, keeping their order.
#[derive(Default)]
struct Groups {
    of: FastMap<[u8; 16], u32>,
    list: Vec<Group>,
    /// The next span of the same group, per span; `u32::MAX` ends a group.
    next: Vec<u32>,
}

impl Groups {
    fn clear(&mut self) {
        self.of.clear();
        self.list.clear();
        self.next.clear();
    }

    fn add(&mut self, entry: &SpanEntry, span: u32, hits: u64) {
        let id = entry.trace_id;
        let bytes = entry.range.1 - entry.range.0;
        self.next.push(u32::MAX);
        let list = &mut self.list;
        let g = *self.of.entry(id).or_insert_with(|| {
            list.push(Group {
                id,
                bytes: 0,
                hits: 0,
                summary: Summary::default(),
                first: span,
                last: span,
            });
            (list.len() - 1) as u32
        });
        let g = &mut self.list[g as usize];
        if g.summary.spans > 0 {
            self.next[g.last as usize] = span;
            g.last = span;
        }
        g.bytes += bytes;
        g.hits |= hits;
        g.summary.add(entry);
    }

    /// The spans of group `g`, in request order.
    fn members(&self, g: usize) -> impl Iterator<Item = u32> + '_ {
        let mut at = self.list[g].first;
        std::iter::from_fn(move || {
            let this = at;
            at = *self.next.get(this as usize)?;
            Some(this)
        })
    }
}

struct Metrics {
    sampled: Vec<Counter>,
    not_sampled: Vec<Counter>,
    traces_sampled: Counter,
    traces_not_sampled: Counter,
    early_num_traces: Counter,
    early_size: Counter,
    early_held_bytes: Counter,
    late_spans: Counter,
    dropped: Counter,
}

impl Metrics {
    fn new(reg: &Registry, id: &str, names: &[String]) -> Metrics {
        let per_policy = |decision: &str| {
            names
                .iter()
                .map(|n| {
                    reg.counter(
                        "observatory_processor_tail_sampling_policy_decisions_total",
                        "Traces each policy would sample or not (counted even when another policy decides).",
                        &[("processor", id), ("policy", n), ("decision", decision)],
                    )
                })
                .collect()
        };
        let traces = |decision: &str| {
            reg.counter(
                "observatory_processor_tail_sampling_traces_total",
                "Traces decided, by the final decision.",
                &[("processor", id), ("decision", decision)],
            )
        };
        let early = |reason: &str| {
            reg.counter(
                "observatory_processor_tail_sampling_early_decisions_total",
                "Traces decided before decision_wait, by reason.",
                &[("processor", id), ("reason", reason)],
            )
        };
        Metrics {
            sampled: per_policy("sampled"),
            not_sampled: per_policy("not_sampled"),
            traces_sampled: traces("sampled"),
            traces_not_sampled: traces("not_sampled"),
            early_num_traces: early("num_traces"),
            early_size: early("maximum_trace_size_bytes"),
            early_held_bytes: early("maximum_held_bytes"),
            late_spans: reg.counter(
                "observatory_processor_tail_sampling_late_spans_total",
                "Spans of already decided traces, handled by the cached decision.",
                &[("processor", id)],
            ),
            dropped: reg.counter(
                "observatory_processor_dropped_spans_total",
                "Items a processor dropped (refused permanently downstream).",
                &[("processor", id)],
            ),
        }
    }
}

/// What receivers' tasks add to and the sampler's task decides from.
struct Sampler {
    cfg: TailSamplingConfig,
    policies: Vec<Policy>,
    /// Whether a policy reads span bytes when deciding.
    reads_spans: bool,
    tests: AttrTests,
    traces: Traces,
    /// The requests held spans lie in.
    held: HeldRequests,
    /// Encoded bytes of every held span (counted uncompressed).
    held_bytes: usize,
    sampled: Remembered,
    not_sampled: Remembered,
    out: Vec<SpanAt>,
    /// Reused between requests by `ingest`.
    groups: Groups,
    metrics: Metrics,
    /// Rate-limiting policies count spans per second of this clock.
    clock: Instant,
}

impl Sampler {
    fn ingest(&mut self, batch: Batch) {
        let now = Instant::now();
        for req in batch.requests {
            let req = Arc::new(req);
            let Some(index) = req.index.clone() else {
                continue;
            };
            let bytes = &req.bytes[..];
            let slice = |r: crate::scan::Span32| &bytes[r.0 as usize..r.1 as usize];
            let resource_hits: Vec<u64> = if self.tests.is_empty() {
                Vec::new()
            } else {
                let tests = &self.tests;
                index
                    .resources
                    .iter()
                    .map(|r| tests.resource(slice(r.resource)))
                    .collect()
            };
            // Spans of one trace in a request are grouped first, so the big
            // maps (cache misses among ~10^5 traces) are probed once per
            // trace and request instead of once per span.
            let mut groups = std::mem::take(&mut self.groups);
            groups.clear();
            // Taken on the first held span; intake's own reference keeps it
            // while an early decision releases the spans before it.
            let mut slot = None;
            for (i, span) in index.spans.iter().enumerate() {
                let hits = if self.tests.is_empty() {
                    0
                } else {
                    let resource = index.scopes[span.scope as usize].resource as usize;
                    self.tests.span(slice(span.range)) | resource_hits[resource]
                };
                groups.add(span, i as u32, hits);
            }
            // Every lookup the loop below makes, first, in a pass where
            // none waits on another: their cache misses overlap, and the
            // loop then finds the lines in the cache. (`|`, not `||`, so
            // each id is looked up in all three.)
            let known = groups.list.iter().filter(|g| {
                self.sampled.set.contains(&g.id)
                    | self.not_sampled.set.contains(&g.id)
                    | self.traces.has_entry(&g.id)
            });
            std::hint::black_box(known.count());
            for g in 0..groups.list.len() {
                let Group {
                    id,
                    bytes,
                    hits,
                    summary,
                    ..
                } = groups.list[g];
                let count = summary.spans;
                if self.sampled.set.contains(&id) {
                    self.metrics.late_spans.add(count);
                    self.out.extend(groups.members(g).map(|i| (req.clone(), i)));
                    continue;
                }
                if self.not_sampled.set.contains(&id) {
                    self.metrics.late_spans.add(count);
                    self.metrics.dropped.add(count);
                    continue;
                }
                let at = *slot.get_or_insert_with(|| self.held.add(req.clone(), now));
                self.held.retain(at, count as u32);
                let held = self.traces.entry(id, now);
                held.spans.reserve(count as usize);
                for i in groups.members(g) {
                    held.spans.push((at, i));
                }
                held.bytes += bytes as usize;
                self.held_bytes += bytes as usize;
                held.hits |= hits;
                held.summary.merge(&summary);
                let over = self.cfg.maximum_trace_size_bytes > 0
                    && held.bytes > self.cfg.maximum_trace_size_bytes;
                if over {
                    self.metrics.early_size.add(1);
                    self.decide(id);
                }
            }
            self.groups = groups;
            if let Some(at) = slot {
                self.held.release(at, 1);
            }
            while self.traces.len() > self.cfg.num_traces {
                if !self.decide_oldest() {
                    break;
                }
                self.metrics.early_num_traces.add(1);
            }
            let cap = self.cfg.maximum_held_bytes;
            while cap > 0 && self.held_bytes > cap {
                if !self.decide_oldest() {
                    break;
                }
                self.metrics.early_held_bytes.add(1);
            }
        }
    }

    /// Decides traces whose wait is over (every held one when `all`), at
    /// most `limit` of them; returns whether more are due.
    fn decide_due(&mut self, all: bool, limit: usize) -> bool {
        let now = Instant::now();
        // Deciding in its turn probes no map (see `ring`), so traces are
        // simply taken from the ring's front one by one.
        for _ in 0..limit {
            let Some(first) = self.traces.oldest() else {
                return false;
            };
            if !all && first + self.cfg.decision_wait > now {
                return false;
            }
            if let Some(held) = self.traces.pop_oldest() {
                self.decide_held(held);
            }
        }
        // At the limit: more are due if the oldest left is.
        self.traces
            .oldest()
            .is_some_and(|first| all || first + self.cfg.decision_wait <= now)
    }

    /// Decides the oldest held trace early; false when none is held.
    fn decide_oldest(&mut self) -> bool {
        match self.traces.pop_oldest() {
            Some(held) => {
                self.decide_held(held);
                true
            }
            None => false,
        }
    }

    fn decide(&mut self, id: [u8; 16]) {
        if let Some(held) = self.traces.remove(&id) {
            self.decide_held(held);
        }
    }

    /// Decides a trace already taken out of `traces`.
    fn decide_held(&mut self, held: Held) {
        let id = held.id;
        self.held_bytes -= held.bytes;
        // Without a policy that reads span bytes (and then nothing is
        // compressed), the summary folded at intake is all policies need.
        let spans: Vec<_> = if !self.reads_spans {
            Vec::new()
        } else {
            held.spans
                .iter()
                .map(|&(slot, i)| {
                    let req = self.held.request(slot);
                    let index = req.index.as_ref().expect("traces requests carry an index");
                    let entry = &index.spans[i as usize];
                    let resource = index.resources
                        [index.scopes[entry.scope as usize].resource as usize]
                        .resource;
                    let bytes = &req.bytes[..];
                    let part = |r: crate::scan::Span32| bytes.get(r.0 as usize..r.1 as usize);
                    SpanRef {
                        entry,
                        field: part(entry.range).unwrap_or_default(),
                        resource: part(resource).unwrap_or_default(),
                    }
                })
                .collect()
        };
        let view = TraceView {
            trace_id: id,
            spans,
            summary: held.summary,
            second: self.clock.elapsed().as_secs(),
            hits: Some(held.hits),
        };
        let mut tally = Tally::default();
        for (i, p) in self.policies.iter_mut().enumerate() {
            let v = p.evaluate(&view);
            // A matching drop policy counts as "sampled" by that policy.
            if v.samples() || v == Verdict::Dropped {
                self.metrics.sampled[i].add(1);
            } else {
                self.metrics.not_sampled[i].add(1);
            }
            tally.add(v);
        }
        drop(view);
        if tally.keep() {
            self.metrics.traces_sampled.add(1);
            self.sampled.insert(id);
            for &(slot, i) in held.spans.iter() {
                match self.held.plain(slot) {
                    Some(req) => self.out.push((req, i)),
                    None => {
                        tracing::error!(
                            "tail_sampling: a held request did not inflate; its span is dropped"
                        );
                        self.metrics.dropped.add(1);
                    }
                }
            }
        } else {
            self.metrics.traces_not_sampled.add(1);
            self.not_sampled.insert(id);
            self.metrics.dropped.add(held.spans.len() as u64);
        }
        for &(slot, _) in held.spans.iter() {
            self.held.release(slot, 1);
        }
    }
}

/// Sends decided spans on, one request per source request.
async fn flush(out: Vec<SpanAt>, next: &BoxConsumer, dropped: &Counter) {
    if out.is_empty() {
        return;
    }
    let mut groups: Vec<(Arc<Request>, Vec<u32>)> = Vec::new();
    // Keyed by the request's address: spans of one request go out together.
    let mut slot: FastMap<usize, usize> = FastMap::default();
    for (req, i) in out {
        let key = Arc::as_ptr(&req) as usize;
        let g = *slot.entry(key).or_insert_with(|| {
            groups.push((req.clone(), Vec::new()));
            groups.len() - 1
        });
        groups[g].1.push(i);
    }
    let requests = groups
        .into_iter()
        .map(|(req, mut positions)| {
            positions.sort_unstable();
            select_spans(&req, &positions)
        })
        .collect();
    let batch = Batch {
        signal: Signal::Traces,
        requests,
    };
    deliver(next, batch, dropped, "tail_sampling").await;
}

/// The state, shared by the receivers' tasks (which take requests in) and
/// the sampler's own task (which decides and sends on).
struct Shared {
    sampler: Mutex<Sampler>,
    /// Woken when decided spans wait and the task may be asleep.
    ready: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Sampler> {
        // A panic while holding the lock leaves plain data, still usable.
        self.sampler.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Decides due traces (all when `all`), at most a round; returns the
    /// spans to send and whether more are due.
    fn take_due(&self, all: bool) -> (Vec<SpanAt>, bool) {
        let mut s = self.lock();
        let more = s.decide_due(all, if all { usize::MAX } else { DECISION_ROUND });
        (std::mem::take(&mut s.out), more)
    }

    /// Compresses the requests held past `compress_after`, a round at a
    /// time; the lock is not held while compressing.
    async fn pack_due(&self, scratch: &mut Vec<u8>) {
        loop {
            let (todo, codec) = {
                let mut s = self.lock();
                let after = s.cfg.compress_after;
                (
                    s.held.due(Instant::now(), after, PACK_ROUND),
                    s.held.codec(),
                )
            };
            if todo.is_empty() {
                return;
            }
            let packed: Vec<_> = todo
                .iter()
                .map(|t| HeldRequests::compress(codec, &t.req.bytes, scratch))
                .collect();
            // A request that did not compress stays as received.
            {
                let mut s = self.lock();
                for (t, p) in todo.into_iter().zip(packed) {
                    if let Some(p) = p {
                        s.held.store(t, p);
                    }
                }
            }
            tokio::task::yield_now().await;
        }
    }

    async fn run(self: Arc<Self>, next: BoxConsumer, mut closed: oneshot::Receiver<()>) {
        // Decisions are made at most this long after they are due. Short
        // ticks keep each round of decisions small: a second's worth of
        // traces decided at once would hold the lock, and so the receivers,
        // for long.
        let (tick, dropped) = {
            let s = self.lock();
            let tick = (s.cfg.decision_wait / 100)
                .clamp(Duration::from_millis(10), Duration::from_millis(100));
            (tick, s.metrics.dropped.clone())
        };
        let mut ticker = tokio::time::interval(tick);
        let mut backlog = false;
        let mut scratch = Vec::new();
        loop {
            // A burst of due traces (all arrived together) is decided in
            // rounds, between which the receivers get the lock, so intake
            // never stalls for long.
            tokio::select! {
                _ = &mut closed => {
                    // Shutting down: decide everything held now.
                    let (out, _) = self.take_due(true);
                    flush(out, &next, &dropped).await;
                    return;
                }
                _ = ticker.tick() => {}
                _ = self.ready.notified() => {}
                _ = std::future::ready(()), if backlog => {}
            }
            let (out, more) = self.take_due(false);
            backlog = more;
            flush(out, &next, &dropped).await;
            self.pack_due(&mut scratch).await;
        }
    }
}

/// The receivers' side: requests are taken in on the caller's task, under
/// the lock, so no request crosses to another core just to be held.
struct Input {
    shared: Arc<Shared>,
    /// Dropped with the last handle, which tells the task to finish.
    _alive: oneshot::Sender<()>,
}

#[async_trait]
impl Consumer for Input {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        let mut s = self.shared.lock();
        // The task is waiting on the next stage: stop taking data in.
        if s.out.len() > OUT_SPANS {
            return Err(ConsumeError::Retryable(
                "tail_sampling is waiting for its next stage".into(),
            ));
        }
        let waiting = s.out.len();
        s.ingest(batch);
        let wake = waiting == 0 && !s.out.is_empty();
        drop(s);
        // Late spans of sampled traces, and early decisions, go out now
        // rather than at the next tick.
        if wake {
            self.shared.ready.notify_one();
        }
        Ok(())
    }
}

impl ProcessorBuilder for TailSamplingConfig {
    fn build(&self, _signal: Signal, next: BoxConsumer, ctx: &Context) -> BoxConsumer {
        let mut policies: Vec<Policy> = self
            .policies
            .iter()
            .enumerate()
            .map(|(i, p)| Policy::new(p, &format!("policies.{i}")).expect("validated"))
            .collect();
        let tests = AttrTests::assign(&mut policies);
        let codec = self.held_codec(&policies);
        let names: Vec<String> = self
            .policies
            .iter()
            .enumerate()
            .map(|(i, p)| {
                if p.name.is_empty() {
                    format!("policy{i}")
                } else {
                    p.name.clone()
                }
            })
            .collect();
        let sampler = Sampler {
            cfg: self.clone(),
            reads_spans: policies.iter().any(Policy::reads_span_bytes),
            policies,
            tests,
            traces: Traces::with_capacity(self.initial_capacity()),
            held: HeldRequests::new(codec),
            held_bytes: 0,
            sampled: Remembered::new(self.decision_cache.sampled_cache_size),
            not_sampled: Remembered::new(self.decision_cache.non_sampled_cache_size),
            out: Vec::new(),
            groups: Groups::default(),
            metrics: Metrics::new(&ctx.metrics, &ctx.id, &names),
            clock: Instant::now(),
        };
        let shared = Arc::new(Shared {
            sampler: Mutex::new(sampler),
            ready: Notify::new(),
        });
        let probe = Arc::downgrade(&shared);
        // Read at scrape time under the lock: once a second at most.
        ctx.metrics.gauge(
            "observatory_processor_tail_sampling_traces_held",
            "Traces held, waiting for their decision.",
            &[("processor", ctx.id.as_str())],
            move || {
                probe
                    .upgrade()
                    .map_or(0.0, |s| s.lock().traces.len() as f64)
            },
        );
        let probe = Arc::downgrade(&shared);
        ctx.metrics.gauge(
            "observatory_processor_tail_sampling_held_bytes",
            "Encoded bytes of the spans held (maximum_held_bytes caps it).",
            &[("processor", ctx.id.as_str())],
            move || probe.upgrade().map_or(0.0, |s| s.lock().held_bytes as f64),
        );
        let probe = Arc::downgrade(&shared);
        ctx.metrics.gauge(
            "observatory_processor_tail_sampling_compressed_bytes",
            "Bytes of the held requests kept compressed (held_compression).",
            &[("processor", ctx.id.as_str())],
            move || {
                probe
                    .upgrade()
                    .map_or(0.0, |s| s.lock().held.packed_bytes as f64)
            },
        );
        let (alive, closed) = oneshot::channel();
        ctx.tasks
            .add(&ctx.id, tokio::spawn(shared.clone().run(next, closed)));
        Arc::new(Input {
            shared,
            _alive: alive,
        })
    }
}

#[cfg(test)]
mod tests;
