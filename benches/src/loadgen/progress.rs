//! What loadgen reports each second: on a terminal, one line rewritten in
//! place (rate, accepted, refusals by status, p50/p99 of the last second,
//! elapsed / total); otherwise a line per second on stderr; with `--json`,
//! a JSON object per second and the summary as one on stdout.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};

use serde_json::json;

/// One second's view of the run.
pub struct Tick<'a> {
    /// Seconds since the start.
    pub elapsed: f64,
    /// The planned length, when the run has one.
    pub total: Option<f64>,
    /// Items accepted so far.
    pub accepted: u64,
    /// Items accepted in the last second.
    pub per_sec: u64,
    /// Items refused so far.
    pub refused: u64,
    /// Refused requests by status so far.
    pub refused_by: &'a BTreeMap<String, u64>,
    /// Latencies of the last second's requests, microseconds, sorted.
    pub recent_us: &'a [u64],
}

/// Where ticks go.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// A line rewritten in place on stderr.
    Live,
    /// A line per second on stderr (a pipe or a file).
    Lines,
    /// A JSON object per line on stdout.
    Json,
}

impl Style {
    /// JSON when asked, else live on a terminal, else lines.
    pub fn pick(json: bool) -> Style {
        if json {
            Style::Json
        } else if std::io::stderr().is_terminal() {
            Style::Live
        } else {
            Style::Lines
        }
    }
}

/// The value at quantile `p` of `sorted` microseconds, in milliseconds.
pub fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn by_status(refused_by: &BTreeMap<String, u64>) -> String {
    if refused_by.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = refused_by.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(" [{}]", parts.join(" "))
}

/// Reports one tick.
pub fn report(style: Style, t: &Tick) {
    let (p50, p99) = (percentile(t.recent_us, 0.5), percentile(t.recent_us, 0.99));
    match style {
        Style::Json => {
            let line = json!({
                "type": "progress",
                "elapsed_s": (t.elapsed * 10.0).round() / 10.0,
                "total_s": t.total,
                "accepted": t.accepted,
                "accepted_per_sec": t.per_sec,
                "refused": t.refused,
                "refused_by": t.refused_by,
                "p50_ms": p50,
                "p99_ms": p99,
            });
            println!("{line}");
        }
        Style::Lines => eprintln!(
            "[{:>4.0}s] accepted {:>10} ({:>8}/s)  refused {:>8}",
            t.elapsed, t.accepted, t.per_sec, t.refused
        ),
        Style::Live => {
            let of = t.total.map_or(String::new(), |s| format!(" / {s:.0}s"));
            let mut err = std::io::stderr().lock();
            let _ = write!(
                err,
                "\r\x1b[2K{:>5.0}s{of}  {:>9}/s  accepted {:>11}  refused {:>8}{}  p50 {p50:.1} ms  p99 {p99:.1} ms",
                t.elapsed,
                t.per_sec,
                t.accepted,
                t.refused,
                by_status(t.refused_by)
            );
            let _ = err.flush();
        }
    }
}

/// Ends the live line so the summary starts on its own.
pub fn finish(style: Style) {
    if style == Style::Live {
        eprintln!();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_sorted_latencies() {
        let us: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(percentile(&us, 0.5), 51.0);
        assert_eq!(percentile(&us, 0.99), 99.0);
        assert_eq!(percentile(&[], 0.99), 0.0);
    }

    #[test]
    fn refusals_are_listed_by_status() {
        let mut m = BTreeMap::new();
        assert_eq!(by_status(&m), "");
        m.insert("grpc:Unavailable".to_string(), 3);
        m.insert("http:429".to_string(), 1);
        assert_eq!(by_status(&m), " [grpc:Unavailable=3 http:429=1]");
    }
}
