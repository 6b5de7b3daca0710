//! What the live page and `observatory top` show, computed from the
//! snapshot ring: one JSON document per refresh.

use std::collections::BTreeMap;
use std::time::SystemTime;

use pipeline::Signal;
use serde_json::{json, Value};

use super::history::Reading;
use crate::config::PipelinePlan;

/// Queue fill above which a node turns amber.
pub const AMBER_FILL: f64 = 0.5;

/// The readings, looked up by name and labels.
pub struct Readings<'a>(pub &'a [Reading]);

fn label<'r>(r: &'r Reading, key: &str) -> Option<&'r str> {
    r.info
        .labels
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

impl Readings<'_> {
    /// Readings named `name` whose labels include every pair of `want`.
    fn matching<'s>(
        &'s self,
        name: &'s str,
        want: &'s [(&'s str, &'s str)],
    ) -> impl Iterator<Item = &'s Reading> + 's {
        self.0.iter().filter(move |r| {
            r.info.name == name && want.iter().all(|(k, v)| label(r, k) == Some(*v))
        })
    }

    fn sum(&self, name: &str, want: &[(&str, &str)], f: impl Fn(&Reading) -> f64) -> f64 {
        // An empty f64 sum is -0.0, which prints as "-0".
        self.matching(name, want).map(f).sum::<f64>() + 0.0
    }

    fn rate(&self, name: &str, want: &[(&str, &str)]) -> f64 {
        self.sum(name, want, |r| r.rate)
    }

    fn value(&self, name: &str, want: &[(&str, &str)]) -> Option<f64> {
        let mut it = self.matching(name, want).peekable();
        it.peek()?;
        Some(it.map(|r| r.value).sum())
    }

    /// The rate summed over the three item kinds of `prefix…_total`.
    fn items_rate(&self, prefix: &str, want: &[(&str, &str)]) -> f64 {
        Signal::ALL
            .iter()
            .map(|s| self.rate(&format!("{prefix}_{}_total", s.item_name()), want))
            .sum()
    }
}

fn state(refused: f64, fill: Option<f64>) -> &'static str {
    if refused > 0.0 {
        "red"
    } else if fill.is_some_and(|f| f > AMBER_FILL) {
        "amber"
    } else {
        "ok"
    }
}

fn seconds_since(t: SystemTime) -> f64 {
    SystemTime::now()
        .duration_since(t)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Inputs of one view besides the readings.
pub struct Extra<'a> {
    /// The pipelines as configured.
    pub pipelines: &'a [PipelinePlan],
    /// Each component's last error: (id, text, when).
    pub notes: Vec<(String, String, SystemTime)>,
    /// The registry's tables by name.
    pub tables: Vec<(String, Vec<Value>)>,
    /// The trace link pattern, with `{trace_id}`.
    pub trace_link: Option<&'a str>,
    /// Seconds since the collector started.
    pub uptime: f64,
}

/// Builds the view.
pub fn build(rs: &Readings, x: &Extra) -> Value {
    let mut receivers: BTreeMap<&str, Vec<&PipelinePlan>> = BTreeMap::new();
    let mut exporters: BTreeMap<&str, Vec<&PipelinePlan>> = BTreeMap::new();
    for p in x.pipelines {
        for r in &p.receivers {
            receivers.entry(r).or_default().push(p);
        }
        for e in &p.exporters {
            exporters.entry(e).or_default().push(p);
        }
    }
    let mut nodes = Vec::new();
    for (id, ps) in &receivers {
        let want = [("receiver", *id)];
        let refused = rs.items_rate("observatory_receiver_refused", &want)
            + rs.rate("observatory_receiver_malformed_requests_total", &want)
            + rs.rate("observatory_receiver_unauthenticated_requests_total", &want);
        let rate = rs.items_rate("observatory_receiver_accepted", &want);
        nodes.push(json!({
            "id": format!("receiver:{id}"), "kind": "receiver", "name": id,
            "pipelines": ps.iter().map(|p| &p.id).collect::<Vec<_>>(),
            "in_rate": rate, "out_rate": rate, "refused_rate": refused,
            "queue_fill": null, "state": state(refused, None),
        }));
    }
    let mut edges = Vec::new();
    for p in x.pipelines {
        let pl = [("pipeline", p.id.as_str())];
        let mut from: Vec<String> = p
            .receivers
            .iter()
            .map(|r| format!("receiver:{r}"))
            .collect();
        let mut from_rates: Vec<f64> = p
            .receivers
            .iter()
            .map(|r| {
                let item = p.signal.item_name();
                rs.rate(
                    &format!("observatory_receiver_accepted_{item}_total"),
                    &[("receiver", r)],
                )
            })
            .collect();
        for pid in &p.processors {
            let node = format!("processor:{}:{pid}", p.id);
            let want = [("processor", pid.as_str()), ("pipeline", p.id.as_str())];
            let (inr, outr) = (
                rs.rate("observatory_processor_incoming_items_total", &want),
                rs.rate("observatory_processor_outgoing_items_total", &want),
            );
            let me = [("processor", pid.as_str())];
            let refused = rs.items_rate("observatory_processor_refused", &me);
            let dropped = rs.items_rate("observatory_processor_dropped", &me);
            nodes.push(json!({
                "id": node, "kind": "processor", "name": pid, "pipelines": [&p.id],
                "in_rate": inr, "out_rate": outr, "refused_rate": refused,
                "dropped_rate": dropped, "queue_fill": null, "state": state(refused, None),
            }));
            for (f, r) in from.iter().zip(&from_rates) {
                edges.push(json!({"pipeline": &p.id, "from": f, "to": &node, "rate": r}));
            }
            from = vec![node];
            from_rates = vec![outr];
        }
        let out = rs.rate("observatory_pipeline_outgoing_items_total", &pl);
        for e in &p.exporters {
            let to = format!("exporter:{e}");
            for (f, r) in from.iter().zip(&from_rates) {
                // Without processors the receivers' rates are the edge's.
                let rate = if p.processors.is_empty() { *r } else { out };
                edges.push(json!({"pipeline": &p.id, "from": f, "to": &to, "rate": rate}));
            }
        }
    }
    let mut exporter_rows = Vec::new();
    for (id, ps) in &exporters {
        let want = [("exporter", *id)];
        let inr: f64 = ps
            .iter()
            .map(|p| {
                rs.rate(
                    "observatory_pipeline_outgoing_items_total",
                    &[("pipeline", &p.id)],
                )
            })
            .sum();
        let sent = rs.items_rate("observatory_exporter_sent", &want);
        let refused = rs.items_rate("observatory_exporter_enqueue_failed", &want);
        let failed = rs.items_rate("observatory_exporter_send_failed", &want);
        let size = rs.value("observatory_exporter_queue_size", &want);
        let cap = rs.value("observatory_exporter_queue_capacity", &want);
        let fill = match (size, cap) {
            (Some(s), Some(c)) if c > 0.0 => Some(s / c),
            _ => None,
        };
        let bytes = rs.value("observatory_exporter_queue_bytes", &want);
        let bytes_cap = rs.value("observatory_exporter_queue_bytes_capacity", &want);
        let fill = match (fill, bytes, bytes_cap) {
            (f, Some(b), Some(c)) if c > 0.0 => Some(f.unwrap_or(0.0).max(b / c)),
            (f, ..) => f,
        };
        let failures: BTreeMap<&str, Value> = rs
            .matching("observatory_exporter_send_errors_total", &want)
            .filter_map(|r| {
                let class = label(r, "class")?;
                Some((
                    class,
                    json!({"rate": r.rate, "last_15m": r.increase[2], "total": r.value}),
                ))
            })
            .collect();
        let note = x.notes.iter().find(|(n, ..)| n == id);
        nodes.push(json!({
            "id": format!("exporter:{id}"), "kind": "exporter", "name": id,
            "pipelines": ps.iter().map(|p| &p.id).collect::<Vec<_>>(),
            "in_rate": inr, "out_rate": sent, "refused_rate": refused, "failed_rate": failed,
            "queue_fill": fill, "state": state(refused + failed, fill),
        }));
        exporter_rows.push(json!({
            "id": id,
            "queue_size": size, "queue_capacity": cap, "queue_bytes": bytes,
            "queue_bytes_capacity": bytes_cap, "queue_fill": fill,
            "in_flight": rs.value("observatory_exporter_in_flight_requests", &want),
            "sent_rate": sent,
            "refused_rate": refused,
            "failed_rate": failed,
            "retries_rate": rs.rate("observatory_exporter_retries_total", &want),
            "failures": failures,
            "last_error": note.map(|n| &n.1),
            "last_error_age_s": note.map(|n| seconds_since(n.2)),
        }));
    }
    json!({
        "uptime_s": x.uptime,
        "process": {
            "rss_bytes": rs.value("observatory_process_memory_rss_bytes", &[]),
            "cpu_percent": rs.rate("observatory_process_cpu_seconds", &[]) * 100.0,
        },
        "pipelines": x.pipelines.iter().map(|p| json!({
            "id": &p.id, "signal": p.signal.as_str(), "receivers": &p.receivers,
            "processors": &p.processors, "exporters": &p.exporters,
        })).collect::<Vec<_>>(),
        "nodes": nodes,
        "edges": edges,
        "exporters": exporter_rows,
        "tail_sampling": tail_sampling(rs),
        "memory_limiter": memory_limiter(rs),
        "redaction": redaction(rs),
        "llm": llm(rs, x),
    })
}

/// Distinct values of `key` among readings named `name`.
fn ids(rs: &Readings, name: &str, key: &str) -> Vec<String> {
    let mut v: Vec<String> = rs
        .matching(name, &[])
        .filter_map(|r| label(r, key).map(str::to_string))
        .collect();
    v.sort();
    v.dedup();
    v
}

fn tail_sampling(rs: &Readings) -> Vec<Value> {
    ids(
        rs,
        "observatory_processor_tail_sampling_traces_held",
        "processor",
    )
    .iter()
    .map(|id| {
        let me = [("processor", id.as_str())];
        let decisions: Vec<Value> = rs
            .matching(
                "observatory_processor_tail_sampling_policy_decisions_total",
                &me,
            )
            .map(|r| {
                json!({"policy": label(r, "policy"), "decision": label(r, "decision"),
                           "rate": r.rate, "last_15m": r.increase[2]})
            })
            .collect();
        let traces: BTreeMap<&str, f64> = rs
            .matching("observatory_processor_tail_sampling_traces_total", &me)
            .filter_map(|r| Some((label(r, "decision")?, r.rate)))
            .collect();
        json!({
            "id": id,
            "traces_held": rs.value("observatory_processor_tail_sampling_traces_held", &me),
            "traces_rate": traces,
            "decisions": decisions,
            "late_spans_rate": rs.rate("observatory_processor_tail_sampling_late_spans_total", &me),
        })
    })
    .collect()
}

fn memory_limiter(rs: &Readings) -> Vec<Value> {
    ids(
        rs,
        "observatory_processor_memory_limiter_limit_bytes",
        "processor",
    )
    .iter()
    .map(|id| {
        let me = [("processor", id.as_str())];
        // One limiter per pipeline it is in: all read the same process.
        let first = |n: &str| rs.matching(n, &me).map(|r| r.value).next();
        json!({
            "id": id,
            "used_bytes": first("observatory_processor_memory_limiter_used_bytes"),
            "rss_bytes": first("observatory_processor_memory_limiter_rss_bytes"),
            "soft_limit_bytes": first("observatory_processor_memory_limiter_soft_limit_bytes"),
            "limit_bytes": first("observatory_processor_memory_limiter_limit_bytes"),
            "refused_rate": rs.items_rate("observatory_processor_refused", &me),
        })
    })
    .collect()
}

fn redaction(rs: &Readings) -> Vec<Value> {
    let masked = "observatory_processor_redaction_masked_total";
    let removed = "observatory_processor_redaction_removed_total";
    let mut ps = ids(rs, masked, "processor");
    ps.extend(ids(rs, removed, "processor"));
    ps.sort();
    ps.dedup();
    ps.iter()
        .map(|id| {
            let me = [("processor", id.as_str())];
            let rows = |name: &'static str, key: &'static str| -> Vec<Value> {
                rs.matching(name, &me)
                    .map(|r| json!({key: label(r, key), "rate": r.rate, "total": r.value}))
                    .collect()
            };
            json!({"id": id, "masked": rows(masked, "rule"), "removed": rows(removed, "reason")})
        })
        .collect()
}

fn llm(rs: &Readings, x: &Extra) -> Value {
    let names = [
        "calls",
        "input_tokens",
        "output_tokens",
        "cost_usd",
        "duration_seconds",
    ];
    // (model, source) → per window, per measure.
    let mut rows: BTreeMap<(String, String), [[f64; 5]; 3]> = BTreeMap::new();
    for (m, what) in names.iter().enumerate() {
        let name = format!("observatory_processor_llm_cost_{what}_total");
        for r in rs.matching(&name, &[]) {
            let key = (
                label(r, "model").unwrap_or("").to_string(),
                label(r, "source").unwrap_or("").to_string(),
            );
            let row = rows.entry(key).or_default();
            for (window, grew) in row.iter_mut().zip(r.increase) {
                window[m] += grew;
            }
        }
    }
    let window = |w: usize| -> Vec<Value> {
        let mut v: Vec<(&(String, String), &[f64; 5])> = rows
            .iter()
            .map(|(k, r)| (k, &r[w]))
            .filter(|(_, r)| r[0] > 0.0)
            .collect();
        v.sort_by(|a, b| b.1[3].total_cmp(&a.1[3]).then(b.1[0].total_cmp(&a.1[0])));
        v.into_iter()
            .map(|((model, source), r)| {
                json!({
                    "model": model, "source": source, "calls": r[0],
                    "input_tokens": r[1], "output_tokens": r[2], "cost_usd": r[3],
                    "mean_latency_ms": r[4] / r[0] * 1000.0,
                })
            })
            .collect()
    };
    let mut top: Vec<Value> = x
        .tables
        .iter()
        .filter(|(n, _)| n.starts_with("llm_cost_top_traces/"))
        .flat_map(|(_, rows)| rows.iter().cloned())
        .collect();
    top.sort_by(|a, b| {
        let c = |v: &Value| v["cost_usd"].as_f64().unwrap_or(0.0);
        c(b).total_cmp(&c(a))
    });
    top.truncate(20);
    for t in &mut top {
        if let (Some(link), Some(id)) = (x.trace_link, t["trace_id"].as_str()) {
            t["link"] = json!(link.replace("{trace_id}", id));
        }
    }
    json!({"1m": window(0), "5m": window(1), "15m": window(2), "top_traces": top})
}
