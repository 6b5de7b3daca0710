//! Self-metrics: counters and gauges rendered in the Prometheus text format.
//!
//! Names follow `observatory_<component kind>_<what>_total`; every series
//! carries the component id as a label.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A monotonically increasing count.
#[derive(Debug, Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// Adds `n`.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A monotonically increasing fractional count (a cost in USD), kept in
/// billionths so adding stays one atomic instruction.
#[derive(Debug, Clone, Default)]
pub struct FloatCounter(Counter);

/// Billionths per unit in a [`FloatCounter`].
const FLOAT_SCALE: f64 = 1e9;

impl FloatCounter {
    /// Adds `x` (negative values are ignored: counters only grow).
    #[inline]
    pub fn add(&self, x: f64) {
        if x > 0.0 {
            self.0.add((x * FLOAT_SCALE).round() as u64);
        }
    }

    /// The current value.
    pub fn get(&self) -> f64 {
        self.0.get() as f64 / FLOAT_SCALE
    }
}

/// The last thing that went wrong in a component, and when: shown on the
/// live page, not exported to Prometheus (text is not a metric).
#[derive(Debug, Clone, Default)]
pub struct Note(Arc<Mutex<Option<(String, std::time::SystemTime)>>>);

impl Note {
    /// Records `text` as of now.
    pub fn set(&self, text: impl Into<String>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((text.into(), std::time::SystemTime::now()));
    }

    /// The text and its time, if anything was recorded.
    pub fn get(&self) -> Option<(String, std::time::SystemTime)> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Rows a component offers the live page (top traces by cost), read when
/// the page asks.
pub type TableFn = Box<dyn Fn() -> Vec<serde_json::Value> + Send + Sync>;

type GaugeFn = Box<dyn Fn() -> f64 + Send + Sync>;

enum Source {
    Counter(Counter),
    Float(FloatCounter),
    Gauge(GaugeFn),
}

impl Source {
    fn read(&self) -> f64 {
        match self {
            Source::Counter(c) => c.get() as f64,
            Source::Float(c) => c.get(),
            Source::Gauge(f) => f(),
        }
    }
}

/// One series as the live page sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesInfo {
    /// Metric name.
    pub name: String,
    /// Label pairs in registration order.
    pub labels: Vec<(String, String)>,
    /// Whether it only grows (so a rate means something).
    pub counter: bool,
}

struct Series {
    name: String,
    help: &'static str,
    labels: String,
    pairs: Vec<(String, String)>,
    source: Source,
}

/// All self-metrics of one collector.
#[derive(Default)]
pub struct Registry {
    series: Mutex<Vec<Series>>,
    notes: Mutex<Vec<(String, Note)>>,
    tables: Mutex<Vec<(String, TableFn)>>,
}

fn owned(labels: &[(&str, &str)]) -> Vec<(String, String)> {
    labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn render_labels(labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{v}\"")
        })
        .collect();
    format!("{{{}}}", parts.join(","))
}

impl Registry {
    /// A new, empty registry.
    pub fn new() -> Arc<Registry> {
        Arc::new(Registry::default())
    }

    /// The counter `name{labels}`, created on first use.
    pub fn counter(&self, name: &str, help: &'static str, pairs: &[(&str, &str)]) -> Counter {
        self.find_or_add(
            name,
            help,
            pairs,
            |s| match s {
                Source::Counter(c) => Some(c.clone()),
                _ => None,
            },
            || {
                let c = Counter::default();
                (c.clone(), Source::Counter(c))
            },
        )
    }

    /// The fractional counter `name{labels}`, created on first use.
    pub fn float_counter(
        &self,
        name: &str,
        help: &'static str,
        pairs: &[(&str, &str)],
    ) -> FloatCounter {
        self.find_or_add(
            name,
            help,
            pairs,
            |s| match s {
                Source::Float(c) => Some(c.clone()),
                _ => None,
            },
            || {
                let c = FloatCounter::default();
                (c.clone(), Source::Float(c))
            },
        )
    }

    /// The series `name{pairs}` that `pick` accepts, else a new one from
    /// `make`; under one lock, so two callers never make it twice.
    fn find_or_add<T>(
        &self,
        name: &str,
        help: &'static str,
        pairs: &[(&str, &str)],
        pick: impl Fn(&Source) -> Option<T>,
        make: impl FnOnce() -> (T, Source),
    ) -> T {
        let labels = render_labels(pairs);
        let mut series = self.series.lock().unwrap();
        let found = series
            .iter()
            .filter(|s| s.name == name && s.labels == labels)
            .find_map(|s| pick(&s.source));
        found.unwrap_or_else(|| {
            let (t, source) = make();
            series.push(Series {
                name: name.to_string(),
                help,
                labels,
                pairs: owned(pairs),
                source,
            });
            t
        })
    }

    fn add(&self, name: &str, help: &'static str, pairs: &[(&str, &str)], source: Source) {
        self.series.lock().unwrap().push(Series {
            name: name.to_string(),
            help,
            labels: render_labels(pairs),
            pairs: owned(pairs),
            source,
        });
    }

    /// The note of component `id` (one per id), created on first use.
    pub fn note(&self, id: &str) -> Note {
        let mut notes = self.notes.lock().unwrap();
        if let Some((_, n)) = notes.iter().find(|(i, _)| i == id) {
            return n.clone();
        }
        let n = Note::default();
        notes.push((id.to_string(), n.clone()));
        n
    }

    /// Every note that holds something: (component id, text, time).
    pub fn notes(&self) -> Vec<(String, String, std::time::SystemTime)> {
        let notes = self.notes.lock().unwrap();
        notes
            .iter()
            .filter_map(|(id, n)| n.get().map(|(t, at)| (id.clone(), t, at)))
            .collect()
    }

    /// Offers the rows `f` returns under `name` (one table per name).
    pub fn table(
        &self,
        name: &str,
        f: impl Fn() -> Vec<serde_json::Value> + Send + Sync + 'static,
    ) {
        let mut tables = self.tables.lock().unwrap();
        tables.retain(|(n, _)| n != name);
        tables.push((name.to_string(), Box::new(f)));
    }

    /// The tables' rows now, by name.
    pub fn tables(&self) -> Vec<(String, Vec<serde_json::Value>)> {
        let tables = self.tables.lock().unwrap();
        tables.iter().map(|(n, f)| (n.clone(), f())).collect()
    }

    /// Every series registered so far, in registration order (the order
    /// [`Registry::values`] reads them in; new series only append).
    pub fn describe(&self) -> Vec<SeriesInfo> {
        let series = self.series.lock().unwrap();
        series
            .iter()
            .map(|s| SeriesInfo {
                name: s.name.clone(),
                labels: s.pairs.clone(),
                counter: !matches!(s.source, Source::Gauge(_)),
            })
            .collect()
    }

    /// Every series' value now, in registration order.
    pub fn values(&self) -> Vec<f64> {
        let series = self.series.lock().unwrap();
        series.iter().map(|s| s.source.read()).collect()
    }

    /// A gauge read from `f` at every scrape.
    pub fn gauge(
        &self,
        name: &str,
        help: &'static str,
        labels: &[(&str, &str)],
        f: impl Fn() -> f64 + Send + Sync + 'static,
    ) {
        self.add(name, help, labels, Source::Gauge(Box::new(f)));
    }

    /// The value of a series, for tests and the load generator's summary.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let labels = render_labels(labels);
        let series = self.series.lock().unwrap();
        series
            .iter()
            .find(|s| s.name == name && s.labels == labels)
            .map(|s| s.source.read())
    }

    /// Every series in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let series = self.series.lock().unwrap();
        let mut order: Vec<&Series> = series.iter().collect();
        order.sort_by(|a, b| a.name.cmp(&b.name));
        let mut out = String::new();
        let mut last = "";
        for s in order {
            if s.name != last {
                let kind = match s.source {
                    Source::Counter(_) | Source::Float(_) => "counter",
                    Source::Gauge(_) => "gauge",
                };
                let _ = writeln!(
                    out,
                    "# HELP {} {}\n# TYPE {} {}",
                    s.name, s.help, s.name, kind
                );
                last = &s.name;
            }
            let v = s.source.read();
            let _ = writeln!(out, "{}{} {}", s.name, s.labels, v);
        }
        out
    }
}

/// A memory field of `/proc/self/status` in bytes (`VmRSS`, `VmHWM`); 0 if
/// unreadable.
pub fn proc_status_bytes(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Memory this machine or container may use: the cgroup v2 limit when one
/// is set, else the machine's total.
pub fn total_memory_bytes() -> u64 {
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok());
    let machine = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024);
    match cgroup {
        Some(limit) if limit < machine => limit,
        _ => machine,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_shared_by_name_and_labels_and_rendered() {
        let r = Registry::new();
        let a = r.counter(
            "observatory_receiver_accepted_spans_total",
            "Spans taken.",
            &[("receiver", "otlp")],
        );
        let b = r.counter(
            "observatory_receiver_accepted_spans_total",
            "Spans taken.",
            &[("receiver", "otlp")],
        );
        let c = r.counter(
            "observatory_receiver_accepted_spans_total",
            "Spans taken.",
            &[("receiver", "otlp/b\"x")],
        );
        a.add(2);
        b.add(3);
        c.add(1);
        r.gauge(
            "observatory_exporter_queue_size",
            "Batches queued.",
            &[],
            || 4.0,
        );
        let text = r.render();
        assert!(
            text.contains("observatory_receiver_accepted_spans_total{receiver=\"otlp\"} 5\n"),
            "{text}"
        );
        assert!(text.contains("{receiver=\"otlp/b\\\"x\"} 1\n"), "{text}");
        assert!(text.contains(
            "# TYPE observatory_exporter_queue_size gauge\nobservatory_exporter_queue_size 4\n"
        ));
        assert_eq!(
            text.matches("# TYPE observatory_receiver_accepted_spans_total")
                .count(),
            1
        );
    }
}
