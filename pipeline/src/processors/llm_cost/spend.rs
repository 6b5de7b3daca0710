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
    /// Unix minute it was priced in.
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
    calls: Counter,
    input: Counter,
    output: Counter,
    usd: FloatCounter,
    seconds: FloatCounter,
}

/// A trace's cost so far in one minute, and its costliest call's model.
#[derive(Clone)]
struct TraceCost {
    usd: f64,
    model: Arc<str>,
    costliest: f64,
}

struct Minute {
    at: u64,
    traces: FastMap<[u8; 16], TraceCost>,
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
    let mut costs: Vec<f64> = traces.values().map(|t| t.usd).collect();
    costs.sort_unstable_by(|a, b| b.total_cmp(a));
    let floor = costs[n - 1];
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

    fn row(&self, model: &str, source: &str) -> Row {
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

    /// Counts a priced call.
    pub fn record(&self, call: &Call, origin: &Origin) {
        // (model, NUL, source) names the row, built on the stack: this runs
        // for every priced span. Longer pairs count as `other`.
        let mut buf = [0u8; KEY_BYTES];
        let len = call.model.len() + 1 + origin.source.len();
        let key: &[u8] = if len <= KEY_BYTES {
            buf[..call.model.len()].copy_from_slice(call.model);
            buf[call.model.len() + 1..len].copy_from_slice(origin.source);
            &buf[..len]
        } else {
            OTHER.as_bytes()
        };
        let row = {
            let mut rows = self.rows.lock().unwrap_or_else(|e| e.into_inner());
            match rows.get(key) {
                Some(r) => r.clone(),
                None => {
                    let other = rows.len() >= MAX_PAIRS || key == OTHER.as_bytes();
                    let (k, row) = if other {
                        (OTHER.as_bytes(), self.row(OTHER, OTHER))
                    } else {
                        (key, self.row(&text(call.model), &text(origin.source)))
                    };
                    rows.entry(k.into())
                        .or_insert_with(|| Arc::new(row))
                        .clone()
                }
            }
        };
        row.calls.add(1);
        row.input.add(call.input.max(0.0) as u64);
        row.output.add(call.output.max(0.0) as u64);
        row.usd.add(call.usd);
        row.seconds.add(origin.seconds);
        if call.usd > 0.0 && origin.trace_id != [0; 16] {
            self.add_trace(call, origin);
        }
    }

    fn add_trace(&self, call: &Call, origin: &Origin) {
        let mut minutes = self.minutes.lock().unwrap_or_else(|e| e.into_inner());
        if minutes.back().is_none_or(|m| m.at != origin.minute) {
            if let Some(done) = minutes.back_mut() {
                keep_top(&mut done.traces, TOP_PER_MINUTE);
            }
            minutes.push_back(Minute {
                at: origin.minute,
                traces: FastMap::default(),
            });
            while minutes.len() as u64 > MINUTES {
                minutes.pop_front();
            }
        }
        let now = minutes.back_mut().expect("pushed above");
        match now.traces.get_mut(&origin.trace_id) {
            Some(t) => {
                t.usd += call.usd;
                if call.usd > t.costliest {
                    t.costliest = call.usd;
                    t.model = text(call.model).into();
                }
            }
            None => {
                if now.traces.len() >= TRACES_PER_MINUTE {
                    keep_top(&mut now.traces, TRACES_PER_MINUTE / 8);
                }
                now.traces.insert(
                    origin.trace_id,
                    TraceCost {
                        usd: call.usd,
                        model: text(call.model).into(),
                        costliest: call.usd,
                    },
                );
            }
        }
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
                            s.model = t.model.clone();
                        }
                    })
                    .or_insert_with(|| t.clone());
            }
        }
        drop(minutes);
        let mut rows: Vec<([u8; 16], TraceCost)> = sum.into_iter().collect();
        rows.sort_by(|a, b| b.1.usd.total_cmp(&a.1.usd).then(a.0.cmp(&b.0)));
        rows.truncate(TOP_ROWS);
        rows.into_iter()
            .map(|(id, t)| {
                serde_json::json!({
                    "trace_id": hex(&id),
                    "model": &*t.model,
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
