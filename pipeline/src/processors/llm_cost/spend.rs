//! What `llm_cost` priced, for the live page and `/metrics`: calls, tokens,
//! cost and time per (model, source), and the costliest traces of the last
//! 15 minutes. Bounded: at most [`MAX_PAIRS`] label pairs (the rest are
//! counted as `other`) and [`TOP_PER_MINUTE`] traces kept per minute.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use crate::fasthash::FastMap;
use crate::telemetry::{Counter, FloatCounter, Registry};
use crate::wire::hex;

/// Distinct (model, source) pairs given their own series.
pub const MAX_PAIRS: usize = 200;
/// Traces summed per minute before the cheapest are let go.
const TRACES_PER_MINUTE: usize = 4096;
/// Traces kept of each finished minute.
pub const TOP_PER_MINUTE: usize = 50;
/// Minutes the top traces cover.
const MINUTES: u64 = 15;
/// Rows the top-traces table shows.
pub const TOP_ROWS: usize = 20;
/// The longest (model, source) key given its own row.
const KEY_BYTES: usize = 256;
/// The label of everything beyond [`MAX_PAIRS`].
const OTHER: &str = "other";

/// Where a priced call came from.
#[derive(Debug, Clone, Copy, Default)]
pub struct Origin<'a> {
    /// The resource's `service.name` (empty if none).
    pub source: &'a [u8],
    /// The span's trace id.
    pub trace_id: [u8; 16],
    /// The span's duration in seconds.
    pub seconds: f64,
    /// Unix minute it was priced in (used by [`Spend::record`] only; a
    /// [`Tally`] is flushed with its batch's minute).
    pub minute: u64,
}

/// One priced call.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// The model as the span names it.
    pub model: &'a [u8],
    /// Input tokens.
    pub input: f64,
    /// Output tokens.
    pub output: f64,
    /// Cost in USD.
    pub usd: f64,
}

struct Row {
    /// The row's number: what a trace's costliest model is kept as (a
    /// plain copy, where a shared name would be an atomic count per trace).
    id: u32,
    /// The model label.
    model: String,
    calls: Counter,
    input: Counter,
    output: Counter,
    usd: FloatCounter,
    seconds: FloatCounter,
}

/// A trace's cost so far in one minute, and its costliest call's row
/// (whose model names the trace).
#[derive(Clone, Copy)]
struct TraceCost {
    usd: f64,
    row: u32,
    costliest: f64,
}

struct Minute {
    at: u64,
    traces: FastMap<[u8; 16], TraceCost>,
}

/// The newest minute, started (and the one before closed down to its
/// costliest traces) when `minute` is new.
fn current_minute(minutes: &mut VecDeque<Minute>, minute: u64) -> &mut Minute {
    if minutes.back().is_none_or(|m| m.at != minute) {
        if let Some(done) = minutes.back_mut() {
            keep_top(&mut done.traces, TOP_PER_MINUTE);
        }
        minutes.push_back(Minute {
            at: minute,
            traces: FastMap::default(),
        });
        while minutes.len() as u64 > MINUTES {
            minutes.pop_front();
        }
    }
    minutes.back_mut().expect("pushed above")
}

impl Minute {
    /// Adds a trace's calls of one batch.
    fn add(&mut self, t: &TraceSum, row: u32) {
        match self.traces.get_mut(&t.id) {
            Some(c) => {
                c.usd += t.usd;
                if t.costliest > c.costliest {
                    c.costliest = t.costliest;
                    c.row = row;
                }
            }
            None => {
                if self.traces.len() >= TRACES_PER_MINUTE {
                    keep_top(&mut self.traces, TRACES_PER_MINUTE / 8);
                }
                self.traces.insert(
                    t.id,
                    TraceCost {
                        usd: t.usd,
                        row,
                        costliest: t.costliest,
                    },
                );
            }
        }
    }
}

/// One (model, source) pair's calls in a batch.
struct PairSum {
    /// model, NUL, source.
    key: Vec<u8>,
    model_len: usize,
    calls: u64,
    input: f64,
    output: f64,
    usd: f64,
    seconds: f64,
}

/// One trace's calls in a batch (consecutive spans of a trace merge).
struct TraceSum {
    id: [u8; 16],
    usd: f64,
    /// The pair of its costliest call, in [`Tally::pairs`].
    pair: usize,
    costliest: f64,
}

/// What one batch priced, summed before it reaches the shared counters.
#[derive(Default)]
pub struct Tally {
    pairs: Vec<PairSum>,
    traces: Vec<TraceSum>,
}

impl Tally {
    /// Adds a priced call.
    pub fn add(&mut self, call: &Call, origin: &Origin) {
        // A batch names a handful of pairs: a scan beats hashing.
        let pair = match self.pairs.iter().position(|p| {
            p.model_len == call.model.len()
                && p.key[..p.model_len] == *call.model
                && p.key[p.model_len + 1..] == *origin.source
        }) {
            Some(i) => i,
            None => {
                let mut key = Vec::with_capacity(call.model.len() + 1 + origin.source.len());
                key.extend_from_slice(call.model);
                key.push(0);
                key.extend_from_slice(origin.source);
                self.pairs.push(PairSum {
                    key,
                    model_len: call.model.len(),
                    calls: 0,
                    input: 0.0,
                    output: 0.0,
                    usd: 0.0,
                    seconds: 0.0,
                });
                self.pairs.len() - 1
            }
        };
        let p = &mut self.pairs[pair];
        p.calls += 1;
        p.input += call.input;
        p.output += call.output;
        p.usd += call.usd;
        p.seconds += origin.seconds;
        if call.usd <= 0.0 || origin.trace_id == [0; 16] {
            return;
        }
        match self.traces.last_mut() {
            Some(t) if t.id == origin.trace_id => {
                t.usd += call.usd;
                if call.usd > t.costliest {
                    t.costliest = call.usd;
                    t.pair = pair;
                }
            }
            _ => self.traces.push(TraceSum {
                id: origin.trace_id,
                usd: call.usd,
                pair,
                costliest: call.usd,
            }),
        }
    }
}

/// The spend of one `llm_cost` processor.
pub struct Spend {
    reg: Arc<Registry>,
    id: String,
    rows: Mutex<FastMap<Box<[u8]>, Arc<Row>>>,
    minutes: Mutex<VecDeque<Minute>>,
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Keeps the `n` costliest of `traces`.
fn keep_top(traces: &mut FastMap<[u8; 16], TraceCost>, n: usize) {
    if traces.len() <= n {
        return;
    }
    // The n-th costliest, without sorting the rest: this runs every few
    // dozen batches on a full minute.
    let mut costs: Vec<f64> = traces.values().map(|t| t.usd).collect();
    let (_, &mut floor, _) = costs.select_nth_unstable_by(n - 1, |a, b| b.total_cmp(a));
    traces.retain(|_, t| t.usd >= floor);
    // Ties at the floor may leave a few more: cut by id order then.
    if traces.len() > n {
        let mut ids: Vec<[u8; 16]> = traces
            .iter()
            .filter(|(_, t)| t.usd == floor)
            .map(|(k, _)| *k)
            .collect();
        ids.sort_unstable();
        for id in ids.into_iter().take(traces.len() - n) {
            traces.remove(&id);
        }
    }
}

impl Spend {
    /// Registers processor `id`'s spend and offers its top traces as the
    /// table `llm_cost_top_traces/<id>`.
    pub fn new(reg: &Arc<Registry>, id: &str) -> Arc<Spend> {
        let spend = Arc::new(Spend {
            reg: reg.clone(),
            id: id.to_string(),
            rows: Mutex::new(FastMap::default()),
            minutes: Mutex::new(VecDeque::new()),
        });
        let weak = Arc::downgrade(&spend);
        reg.table(&format!("llm_cost_top_traces/{id}"), move || {
            weak.upgrade()
                .map_or_else(Vec::new, |s| s.top_traces(now_minute()))
        });
        spend
    }

    fn row(&self, id: u32, model: &str, source: &str) -> Row {
        let labels = [
            ("processor", self.id.as_str()),
            ("model", model),
            ("source", source),
        ];
        let c = |what: &str, help: &'static str| {
            self.reg.counter(
                &format!("observatory_processor_llm_cost_{what}_total"),
                help,
                &labels,
            )
        };
        let f = |what: &str, help: &'static str| {
            self.reg.float_counter(
                &format!("observatory_processor_llm_cost_{what}_total"),
                help,
                &labels,
            )
        };
        Row {
            id,
            model: model.into(),
            calls: c(
                "calls",
                "Priced LLM calls (spans), by model and source (service.name).",
            ),
            input: c("input_tokens", "Input tokens of priced calls."),
            output: c("output_tokens", "Output tokens of priced calls."),
            usd: f("cost_usd", "Cost in USD of priced calls."),
            seconds: f(
                "duration_seconds",
                "Summed duration of priced calls (divide by calls for the mean latency).",
            ),
        }
    }

    /// Counts one priced call at once (tests; the processor sums a
    /// batch's calls in a [`Tally`] first).
    #[cfg(test)]
    pub fn record(&self, call: &Call, origin: &Origin) {
        let mut t = Tally::default();
        t.add(call, origin);
        self.flush(&mut t, origin.minute);
    }

    /// The row of (model, source) `key`, created on first use; `other`
    /// beyond [`MAX_PAIRS`] or for keys over [`KEY_BYTES`].
    fn row_of(
        &self,
        rows: &mut FastMap<Box<[u8]>, Arc<Row>>,
        key: &[u8],
        model_len: usize,
    ) -> Arc<Row> {
        if let Some(r) = rows.get(key) {
            return r.clone();
        }
        let other = rows.len() >= MAX_PAIRS || key.len() > KEY_BYTES;
        // Rows are never removed, so their count numbers the next one.
        let id = rows.len() as u32;
        let (k, row) = if other {
            (OTHER.as_bytes(), self.row(id, OTHER, OTHER))
        } else {
            let (model, source) = (&key[..model_len], &key[model_len + 1..]);
            (key, self.row(id, &text(model), &text(source)))
        };
        rows.entry(k.into())
            .or_insert_with(|| Arc::new(row))
            .clone()
    }

    /// Adds what `tally` summed to the counters and the minute's traces,
    /// and empties it: one lock each per batch, not per call, since every
    /// core prices spans at once.
    pub fn flush(&self, tally: &mut Tally, minute: u64) {
        if tally.pairs.is_empty() {
            return;
        }
        let rows: Vec<Arc<Row>> = {
            let mut rows = self.rows.lock().unwrap_or_else(|e| e.into_inner());
            tally
                .pairs
                .iter()
                .map(|p| self.row_of(&mut rows, &p.key, p.model_len))
                .collect()
        };
        for (p, row) in tally.pairs.iter().zip(&rows) {
            row.calls.add(p.calls);
            row.input.add(p.input.max(0.0) as u64);
            row.output.add(p.output.max(0.0) as u64);
            row.usd.add(p.usd);
            row.seconds.add(p.seconds);
        }
        if !tally.traces.is_empty() {
            let mut minutes = self.minutes.lock().unwrap_or_else(|e| e.into_inner());
            let now = current_minute(&mut minutes, minute);
            for t in &tally.traces {
                now.add(t, rows[t.pair].id);
            }
        }
        tally.pairs.clear();
        tally.traces.clear();
    }

    /// The costliest traces of the 15 minutes up to `minute`, costliest
    /// first: `{trace_id, model, cost_usd}`.
    pub fn top_traces(&self, minute: u64) -> Vec<serde_json::Value> {
        let minutes = self.minutes.lock().unwrap_or_else(|e| e.into_inner());
        let mut sum: FastMap<[u8; 16], TraceCost> = FastMap::default();
        for m in minutes.iter().filter(|m| m.at + MINUTES > minute) {
            for (id, t) in &m.traces {
                sum.entry(*id)
                    .and_modify(|s| {
                        s.usd += t.usd;
                        if t.costliest > s.costliest {
                            s.costliest = t.costliest;
                            s.row = t.row;
                        }
                    })
                    .or_insert(*t);
            }
        }
        drop(minutes);
        let mut top: Vec<([u8; 16], TraceCost)> = sum.into_iter().collect();
        top.sort_by(|a, b| b.1.usd.total_cmp(&a.1.usd).then(a.0.cmp(&b.0)));
        top.truncate(TOP_ROWS);
        let rows = self.rows.lock().unwrap_or_else(|e| e.into_inner());
        // Row ids number the rows in the order made, none removed.
        let mut models = vec![""; rows.len()];
        for r in rows.values() {
            models[r.id as usize] = &r.model;
        }
        top.into_iter()
            .map(|(id, t)| {
                serde_json::json!({
                    "trace_id": hex(&id),
                    "model": models[t.row as usize],
                    "cost_usd": t.usd,
                })
            })
            .collect()
    }
}

/// The current Unix minute.
pub fn now_minute() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(model: &str, usd: f64) -> Call<'_> {
        Call {
            model: model.as_bytes(),
            input: 100.0,
            output: 10.0,
            usd,
        }
    }

    fn origin(source: &str, trace: u8, minute: u64) -> Origin<'_> {
        Origin {
            source: source.as_bytes(),
            trace_id: [trace; 16],
            seconds: 0.5,
            minute,
        }
    }

    #[test]
    fn counts_per_model_and_source_and_sums_traces() {
        let reg = Registry::new();
        let s = Spend::new(&reg, "llm_cost");
        s.record(&call("embed", 0.125), &origin("chat", 1, 100));
        s.record(&call("gpt-4o", 0.25), &origin("chat", 1, 100));
        s.record(&call("gpt-4o", 0.5), &origin("chat", 1, 100));
        s.record(&call("claude", 2.0), &origin("agent", 2, 101));
        let labels = [
            ("processor", "llm_cost"),
            ("model", "gpt-4o"),
            ("source", "chat"),
        ];
        assert_eq!(
            reg.value("observatory_processor_llm_cost_calls_total", &labels),
            Some(2.0)
        );
        assert_eq!(
            reg.value("observatory_processor_llm_cost_input_tokens_total", &labels),
            Some(200.0)
        );
        assert_eq!(
            reg.value("observatory_processor_llm_cost_cost_usd_total", &labels),
            Some(0.75)
        );
        assert_eq!(
            reg.value(
                "observatory_processor_llm_cost_duration_seconds_total",
                &labels
            ),
            Some(1.0)
        );
        let top = s.top_traces(101);
        assert_eq!(top.len(), 2);
        assert_eq!(top[0]["model"], "claude");
        // A trace is named by its costliest call's model.
        assert_eq!(top[1]["cost_usd"], 0.875);
        assert_eq!(top[1]["model"], "gpt-4o");
        assert_eq!(top[1]["trace_id"], "01".repeat(16));
        // 15 minutes on, the first trace's minute is out of the window.
        assert_eq!(s.top_traces(115).len(), 1);
        let tables = reg.tables();
        assert_eq!(tables[0].0, "llm_cost_top_traces/llm_cost");
    }

    #[test]
    fn a_batch_tally_counts_as_its_calls_one_by_one() {
        let calls = [
            (call("a", 0.5), origin("x", 1, 5)),
            (call("a", 0.25), origin("x", 1, 5)),
            (call("b", 2.0), origin("x", 2, 5)),
            (call("a", 1.0), origin("y", 1, 5)),
        ];
        let (one, batched) = (Registry::new(), Registry::new());
        let s1 = Spend::new(&one, "p");
        let s2 = Spend::new(&batched, "p");
        let mut t = Tally::default();
        for (c, o) in &calls {
            s1.record(c, o);
            t.add(c, o);
        }
        s2.flush(&mut t, 5);
        assert!(t.pairs.is_empty() && t.traces.is_empty());
        assert_eq!(one.render(), batched.render());
        assert_eq!(s1.top_traces(5), s2.top_traces(5));
        assert_eq!(s2.top_traces(5)[0]["cost_usd"], 2.0);
        assert_eq!(s2.top_traces(5)[1]["cost_usd"], 1.75);
    }

    #[test]
    fn pairs_beyond_the_cap_are_counted_as_other() {
        let reg = Registry::new();
        let s = Spend::new(&reg, "p");
        let names: Vec<String> = (0..MAX_PAIRS + 5).map(|i| format!("m{i}")).collect();
        for n in &names {
            s.record(&call(n, 0.0), &origin("x", 0, 1));
        }
        let other = [("processor", "p"), ("model", OTHER), ("source", OTHER)];
        assert_eq!(
            reg.value("observatory_processor_llm_cost_calls_total", &other),
            Some(5.0)
        );
        let calls = reg
            .describe()
            .iter()
            .filter(|s| s.name == "observatory_processor_llm_cost_calls_total")
            .count();
        assert_eq!(calls, MAX_PAIRS + 1);
    }

    #[test]
    fn a_minute_keeps_only_its_costliest_traces() {
        let reg = Registry::new();
        let s = Spend::new(&reg, "p");
        for i in 0..(TRACES_PER_MINUTE + 10) {
            let mut o = origin("x", 0, 7);
            o.trace_id[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
            s.record(&call("m", i as f64), &o);
        }
        let top = s.top_traces(7);
        assert_eq!(top.len(), TOP_ROWS);
        assert_eq!(top[0]["cost_usd"], (TRACES_PER_MINUTE + 9) as f64);
        // The next minute closes this one down to its top 50.
        s.record(&call("m", 0.5), &origin("x", 9, 8));
        assert_eq!(s.minutes.lock().unwrap()[0].traces.len(), TOP_PER_MINUTE);
    }
}
