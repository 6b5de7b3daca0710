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

type GaugeFn = Box<dyn Fn() -> f64 + Send + Sync>;

enum Source {
    Counter(Counter),
    Gauge(GaugeFn),
}

struct Series {
    name: String,
    help: &'static str,
    labels: String,
    source: Source,
}

/// All self-metrics of one collector.
#[derive(Default)]
pub struct Registry {
    series: Mutex<Vec<Series>>,
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
    pub fn counter(&self, name: &str, help: &'static str, labels: &[(&str, &str)]) -> Counter {
        let labels = render_labels(labels);
        let mut series = self.series.lock().unwrap();
        for s in series.iter() {
            if let (true, Source::Counter(c)) = (s.name == name && s.labels == labels, &s.source) {
                return c.clone();
            }
        }
        let c = Counter::default();
        series.push(Series {
            name: name.to_string(),
            help,
            labels,
            source: Source::Counter(c.clone()),
        });
        c
    }

    /// A gauge read from `f` at every scrape.
    pub fn gauge(
        &self,
        name: &str,
        help: &'static str,
        labels: &[(&str, &str)],
        f: impl Fn() -> f64 + Send + Sync + 'static,
    ) {
        self.series.lock().unwrap().push(Series {
            name: name.to_string(),
            help,
            labels: render_labels(labels),
            source: Source::Gauge(Box::new(f)),
        });
    }

    /// The value of a series, for tests and the load generator's summary.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let labels = render_labels(labels);
        let series = self.series.lock().unwrap();
        series
            .iter()
            .find(|s| s.name == name && s.labels == labels)
            .map(|s| match &s.source {
                Source::Counter(c) => c.get() as f64,
                Source::Gauge(f) => f(),
            })
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
                    Source::Counter(_) => "counter",
                    Source::Gauge(_) => "gauge",
                };
                let _ = writeln!(
                    out,
                    "# HELP {} {}\n# TYPE {} {}",
                    s.name, s.help, s.name, kind
                );
                last = &s.name;
            }
            let v = match &s.source {
                Source::Counter(c) => c.get() as f64,
                Source::Gauge(f) => f(),
            };
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
