//! `tail_sampling`: holds each trace for `decision_wait` from its first
//! span, then applies the policies once and sends all its held spans on
//! together, or drops them (counted). Spans are held as positions in the
//! requests they came in (shared, never decoded); attribute policies read
//! span bytes in place.
//!
//! Late spans follow the cached decision (`decision_cache`); without a
//! cache entry they start a new trace. At `num_traces` the oldest trace is
//! decided early, as is a trace over `maximum_trace_size_bytes`; both are
//! counted, never silently dropped.

mod config;
mod policy;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio::time::Instant;

pub use config::{PolicyConfig, TailSamplingConfig};
pub use policy::{
    final_decision, salted_hash, trace_state_has, AttrTests, Policy, SpanRef, Tally, TraceView,
    Verdict,
};

use crate::batch::{Batch, Request, Signal};
use crate::component::{parse_config, Context, ProcessorBuilder, ProcessorFactory};
use crate::consumer::{deliver, BoxConsumer, ConsumeError, Consumer};
use crate::fasthash::{FastMap, FastSet};
use crate::split::select_spans;
use crate::telemetry::{Counter, Registry};

/// Requests waiting for the sampler's task; past it receivers are told to retry.
const QUEUE_REQUESTS: usize = 64;
/// Traces decided in one go before input is looked at again.
const DECISION_ROUND: usize = 2048;
/// Span slots reserved when a trace is first seen.
const TYPICAL_TRACE_SPANS: usize = 8;

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

struct Held {
    spans: Vec<(Arc<Request>, u32)>,
    first: Instant,
    bytes: usize,
    /// Attribute-test bits its spans and their resources passed.
    hits: u64,
}

/// The spans of one trace within one request.
#[derive(Clone, Copy)]
struct Group {
    id: [u8; 16],
    count: u64,
    bytes: u32,
    hits: u64,
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

    fn add(&mut self, id: [u8; 16], span: u32, bytes: u32, hits: u64) {
        self.next.push(u32::MAX);
        let list = &mut self.list;
        let g = *self.of.entry(id).or_insert_with(|| {
            list.push(Group {
                id,
                count: 0,
                bytes: 0,
                hits: 0,
                first: span,
                last: span,
            });
            (list.len() - 1) as u32
        });
        let g = &mut self.list[g as usize];
        if g.count > 0 {
            self.next[g.last as usize] = span;
            g.last = span;
        }
        g.count += 1;
        g.bytes += bytes;
        g.hits |= hits;
    }

    /// Appends the spans of group `g` of `req` to `to`, in request order.
    fn push_members(&self, g: usize, req: &Arc<Request>, to: &mut Vec<(Arc<Request>, u32)>) {
        let group = &self.list[g];
        to.reserve(group.count as usize);
        let mut at = group.first;
        while at != u32::MAX {
            to.push((req.clone(), at));
            at = self.next[at as usize];
        }
    }
}

struct Metrics {
    sampled: Vec<Counter>,
    not_sampled: Vec<Counter>,
    traces_sampled: Counter,
    traces_not_sampled: Counter,
    early_num_traces: Counter,
    early_size: Counter,
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

struct Sampler {
    cfg: TailSamplingConfig,
    policies: Vec<Policy>,
    tests: AttrTests,
    traces: FastMap<[u8; 16], Held>,
    arrivals: VecDeque<([u8; 16], Instant)>,
    sampled: Remembered,
    not_sampled: Remembered,
    out: Vec<(Arc<Request>, u32)>,
    /// Reused between requests by `ingest`.
    groups: Groups,
    metrics: Metrics,
    next: BoxConsumer,
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
            for (i, span) in index.spans.iter().enumerate() {
                let hits = if self.tests.is_empty() {
                    0
                } else {
                    let resource = index.scopes[span.scope as usize].resource as usize;
                    self.tests.span(slice(span.range)) | resource_hits[resource]
                };
                groups.add(span.trace_id, i as u32, span.range.1 - span.range.0, hits);
            }
            for g in 0..groups.list.len() {
                let Group {
                    id,
                    count,
                    bytes,
                    hits,
                    ..
                } = groups.list[g];
                if self.sampled.set.contains(&id) {
                    self.metrics.late_spans.add(count);
                    groups.push_members(g, &req, &mut self.out);
                    continue;
                }
                if self.not_sampled.set.contains(&id) {
                    self.metrics.late_spans.add(count);
                    self.metrics.dropped.add(count);
                    continue;
                }
                let held = self.traces.entry(id).or_insert_with(|| {
                    self.arrivals.push_back((id, now));
                    Held {
                        // Most traces have a handful of spans: one
                        // allocation instead of growing from one.
                        spans: Vec::with_capacity(TYPICAL_TRACE_SPANS.max(count as usize)),
                        first: now,
                        bytes: 0,
                        hits: 0,
                    }
                });
                groups.push_members(g, &req, &mut held.spans);
                held.bytes += bytes as usize;
                held.hits |= hits;
                let over = self.cfg.maximum_trace_size_bytes > 0
                    && held.bytes > self.cfg.maximum_trace_size_bytes;
                if over {
                    self.metrics.early_size.add(1);
                    self.decide(id);
                }
            }
            self.groups = groups;
            while self.traces.len() > self.cfg.num_traces {
                let Some((oldest, at)) = self.arrivals.pop_front() else {
                    break;
                };
                if self.traces.get(&oldest).is_some_and(|h| h.first == at) {
                    self.metrics.early_num_traces.add(1);
                    self.decide(oldest);
                }
            }
        }
    }

    /// Decides every trace whose wait is over (all of them when `all`).
    /// Decides due traces, at most `limit` of them; returns whether more
    /// are due.
    fn decide_due(&mut self, all: bool, limit: usize) -> bool {
        let now = Instant::now();
        let mut decided = 0;
        while let Some(&(id, at)) = self.arrivals.front() {
            if !all && at + self.cfg.decision_wait > now {
                return false;
            }
            if decided == limit {
                return true;
            }
            self.arrivals.pop_front();
            if self.traces.get(&id).is_some_and(|h| h.first == at) {
                self.decide(id);
                decided += 1;
            }
        }
        false
    }

    fn decide(&mut self, id: [u8; 16]) {
        let Some(held) = self.traces.remove(&id) else {
            return;
        };
        let spans: Vec<_> = held
            .spans
            .iter()
            .map(|(req, i)| {
                let index = req.index.as_ref().expect("traces requests carry an index");
                let entry = &index.spans[*i as usize];
                let resource =
                    index.resources[index.scopes[entry.scope as usize].resource as usize].resource;
                let bytes = &req.bytes[..];
                SpanRef {
                    entry,
                    field: &bytes[entry.range.0 as usize..entry.range.1 as usize],
                    resource: &bytes[resource.0 as usize..resource.1 as usize],
                }
            })
            .collect();
        let view = TraceView {
            trace_id: id,
            spans,
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
            self.out.extend(held.spans);
        } else {
            self.metrics.traces_not_sampled.add(1);
            self.not_sampled.insert(id);
            self.metrics.dropped.add(held.spans.len() as u64);
        }
    }

    /// Sends the decided spans on, one request per source request.
    async fn flush(&mut self) {
        if self.out.is_empty() {
            return;
        }
        let mut groups: Vec<(Arc<Request>, Vec<u32>)> = Vec::new();
        // Keyed by the request's address: spans of one request go out together.
        let mut slot: FastMap<usize, usize> = FastMap::default();
        for (req, i) in self.out.drain(..) {
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
        deliver(&self.next, batch, &self.metrics.dropped, "tail_sampling").await;
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Batch>) {
        // Decisions are made at most this long after they are due. Short
        // ticks keep each round of decisions small: a second's worth of
        // traces decided at once stalls intake long enough to fill the
        // input queue and refuse clients.
        let tick = (self.cfg.decision_wait / 100)
            .clamp(Duration::from_millis(10), Duration::from_millis(100));
        let mut ticker = tokio::time::interval(tick);
        let mut backlog = false;
        loop {
            // A burst of due traces (all arrived together) is decided in
            // rounds, between which requests are taken in, so intake never
            // stalls for long. The branches are polled in random order, so
            // neither starves the other.
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(batch) => self.ingest(batch),
                    None => {
                        // Shutting down: decide everything held now.
                        self.decide_due(true, usize::MAX);
                        self.flush().await;
                        return;
                    }
                },
                _ = ticker.tick() => backlog = self.decide_due(false, DECISION_ROUND),
                _ = std::future::ready(()), if backlog => {
                    backlog = self.decide_due(false, DECISION_ROUND);
                }
            }
            self.flush().await;
        }
    }
}

struct Input {
    tx: mpsc::Sender<Batch>,
}

#[async_trait]
impl Consumer for Input {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        self.tx.try_send(batch).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                ConsumeError::Retryable("tail_sampling queue is full".into())
            }
            mpsc::error::TrySendError::Closed(_) => {
                ConsumeError::Retryable("collector is shutting down".into())
            }
        })
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
        let (tx, rx) = mpsc::channel(QUEUE_REQUESTS);
        let sampler = Sampler {
            cfg: self.clone(),
            policies,
            tests,
            traces: FastMap::default(),
            arrivals: VecDeque::new(),
            sampled: Remembered::new(self.decision_cache.sampled_cache_size),
            not_sampled: Remembered::new(self.decision_cache.non_sampled_cache_size),
            out: Vec::new(),
            groups: Groups::default(),
            metrics: Metrics::new(&ctx.metrics, &ctx.id, &names),
            next,
            clock: Instant::now(),
        };
        ctx.tasks.add(&ctx.id, tokio::spawn(sampler.run(rx)));
        Arc::new(Input { tx })
    }
}

#[cfg(test)]
mod tests;
