//! `filter`: drops spans, span events, metrics, data points and log records
//! that match any of their OTTL conditions, with otelcol's keys and
//! `error_mode`. Span conditions read the span index and the span's bytes in
//! place: dropped spans are cut out by re-framing, kept spans leave as their
//! original bytes, and only spans with events are decoded when span event
//! conditions are set. Logs and metrics are decoded.

pub mod ottl;
mod views;

use std::cell::OnceCell;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::Metric;
use prost::Message;
use serde::Deserialize;

use crate::batch::{log_count, metric_points, point_count, Batch, Request, Signal};
use crate::component::{
    parse_config, ConfigError, Context, ProcessorBuilder, ProcessorFactory, Validate,
};
use crate::consumer::{BoxConsumer, ConsumeError, Consumer};
use crate::inplace::has_events_or_links;
use crate::rewrite::{edit_span, replace_spans, Reach};
use crate::split::filter_spans;
use crate::telemetry::Counter;
use ottl::{Expr, View};
use views::{metric_type, Around, EventView, LogView, MetricView, PointView, RawSpan, TraceParts};

/// `traces` conditions.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TracesConditions {
    /// Span context: a span matching any is dropped.
    pub span: Vec<String>,
    /// Span event context: an event matching any is dropped.
    pub spanevent: Vec<String>,
}

/// `metrics` conditions.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConditions {
    /// Metric context: a metric matching any is dropped.
    pub metric: Vec<String>,
    /// Data point context: a point matching any is dropped.
    pub datapoint: Vec<String>,
    /// The legacy form; refused with a pointer to OTTL.
    pub include: Option<serde_yaml::Value>,
    /// The legacy form; refused with a pointer to OTTL.
    pub exclude: Option<serde_yaml::Value>,
}

/// `logs` conditions.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogsConditions {
    /// Log context: a record matching any is dropped.
    pub log_record: Vec<String>,
    /// The legacy form; refused with a pointer to OTTL.
    pub include: Option<serde_yaml::Value>,
    /// The legacy form; refused with a pointer to OTTL.
    pub exclude: Option<serde_yaml::Value>,
}

/// `filter` config, as otelcol's.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FilterConfig {
    /// What a condition that cannot be evaluated does: `propagate` (the
    /// request is refused), `ignore` (logged, taken as false) or `silent`.
    pub error_mode: String,
    /// Span and span event conditions.
    pub traces: TracesConditions,
    /// Metric and data point conditions.
    pub metrics: MetricsConditions,
    /// Log record conditions.
    pub logs: LogsConditions,
    /// The legacy span form; refused with a pointer to OTTL.
    pub spans: Option<serde_yaml::Value>,
}

impl Default for FilterConfig {
    fn default() -> Self {
        FilterConfig {
            error_mode: "propagate".into(),
            traces: TracesConditions::default(),
            metrics: MetricsConditions::default(),
            logs: LogsConditions::default(),
            spans: None,
        }
    }
}

impl Validate for FilterConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let legacy = [
            ("spans", self.spans.is_some(), "traces.span"),
            (
                "metrics.include",
                self.metrics.include.is_some(),
                "metrics.metric",
            ),
            (
                "metrics.exclude",
                self.metrics.exclude.is_some(),
                "metrics.metric",
            ),
            (
                "logs.include",
                self.logs.include.is_some(),
                "logs.log_record",
            ),
            (
                "logs.exclude",
                self.logs.exclude.is_some(),
                "logs.log_record",
            ),
        ];
        if let Some((key, _, instead)) = legacy.iter().find(|l| l.1) {
            return Err(ConfigError::new(
                *key,
                format!(
                    "the legacy include/exclude form is not supported; write OTTL \
                     conditions under {instead} (see docs/components/filter.md)"
                ),
            ));
        }
        Compiled::new(self).map(|_| ())
    }
}

/// How evaluation errors are handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ErrorMode {
    Propagate,
    Ignore,
    Silent,
}

/// One condition and its text, for messages.
struct Condition {
    text: String,
    expr: Expr,
}

/// Parsed conditions, per context.
struct Compiled {
    mode: ErrorMode,
    span: Vec<Condition>,
    spanevent: Vec<Condition>,
    metric: Vec<Condition>,
    datapoint: Vec<Condition>,
    log: Vec<Condition>,
}

fn compile(at: &str, list: &[String], ctx: ottl::Context) -> Result<Vec<Condition>, ConfigError> {
    list.iter()
        .enumerate()
        .map(|(i, text)| {
            ottl::parse(text, ctx)
                .map(|expr| Condition {
                    text: text.clone(),
                    expr,
                })
                .map_err(|e| ConfigError::new(format!("{at}.{i}"), format!("{text:?}: {e}")))
        })
        .collect()
}

impl Compiled {
    fn new(cfg: &FilterConfig) -> Result<Compiled, ConfigError> {
        use ottl::Context as C;
        Ok(Compiled {
            mode: match cfg.error_mode.as_str() {
                "propagate" => ErrorMode::Propagate,
                "ignore" => ErrorMode::Ignore,
                "silent" => ErrorMode::Silent,
                other => {
                    return Err(ConfigError::new(
                        "error_mode",
                        format!("unknown {other:?}: use propagate, ignore or silent"),
                    ))
                }
            },
            span: compile("traces.span", &cfg.traces.span, C::Span)?,
            spanevent: compile("traces.spanevent", &cfg.traces.spanevent, C::SpanEvent)?,
            metric: compile("metrics.metric", &cfg.metrics.metric, C::Metric)?,
            datapoint: compile("metrics.datapoint", &cfg.metrics.datapoint, C::DataPoint)?,
            log: compile("logs.log_record", &cfg.logs.log_record, C::Log)?,
        })
    }

    /// Whether any condition holds for `item`. Under `propagate` the first
    /// evaluation error is returned; otherwise a failing condition is false.
    fn any(&self, conds: &[Condition], item: &dyn View) -> Result<bool, String> {
        for c in conds {
            match c.expr.eval(item) {
                Ok(true) => return Ok(true),
                Ok(false) => {}
                Err(e) => {
                    let e = format!("filter: condition {:?}: {e}", c.text);
                    match self.mode {
                        ErrorMode::Propagate => return Err(e),
                        ErrorMode::Ignore => tracing::warn!("{e}; taken as false"),
                        ErrorMode::Silent => {}
                    }
                }
            }
        }
        Ok(false)
    }
}

/// The registry entry.
pub fn factory() -> ProcessorFactory {
    ProcessorFactory {
        type_name: "filter",
        signals: &Signal::ALL,
        parse: |v| {
            let cfg: FilterConfig = parse_config(v)?;
            Ok(Arc::new(Builder(Arc::new(Compiled::new(&cfg)?))))
        },
    }
}

struct Builder(Arc<Compiled>);

impl ProcessorBuilder for Builder {
    fn build(&self, signal: Signal, next: BoxConsumer, ctx: &Context) -> BoxConsumer {
        let labels = [("processor", ctx.id.as_str())];
        Arc::new(Filter {
            c: self.0.clone(),
            signal,
            next,
            dropped: ctx.metrics.counter(
                &format!("observatory_processor_dropped_{}_total", signal.item_name()),
                "Items a processor dropped (refused permanently downstream).",
                &labels,
            ),
            dropped_events: ctx.metrics.counter(
                "observatory_processor_dropped_span_events_total",
                "Span events a processor dropped.",
                &labels,
            ),
        })
    }
}

struct Filter {
    c: Arc<Compiled>,
    signal: Signal,
    next: BoxConsumer,
    dropped: Counter,
    dropped_events: Counter,
}

/// A request after filtering: `None` when nothing changed.
type Outcome = Result<Option<Request>, String>;

impl Filter {
    fn traces(&self, req: &Request) -> Outcome {
        let c = &self.c;
        let Some(index) = req.index.as_deref() else {
            return Ok(None);
        };
        let mut out = None;
        if !c.span.is_empty() {
            let parts = TraceParts::new(&req.bytes, index);
            let mut drop = Vec::with_capacity(index.spans.len());
            for entry in &index.spans {
                let view = RawSpan {
                    parts: &parts,
                    entry,
                    field: &req.bytes[entry.range.0 as usize..entry.range.1 as usize],
                    scalars: OnceCell::new(),
                };
                drop.push(c.any(&c.span, &view)?);
            }
            // filter_spans offers the spans in index order.
            let mut verdicts = drop.into_iter();
            out = filter_spans(req, |_| !verdicts.next().unwrap_or(false));
        }
        if !c.spanevent.is_empty() {
            let base = out.as_ref().unwrap_or(req);
            let Some(index) = base.index.as_deref() else {
                return Ok(out);
            };
            let parts = TraceParts::new(&base.bytes, index);
            let mut failed = None;
            let mut events = 0;
            // Event removal leaves ids, times and status as they were.
            let edited = replace_spans(base, Reach::AttributesOnly, |entry, field, buf| {
                if failed.is_some() || !has_events_or_links(field) {
                    return false;
                }
                let around = parts.around(entry.scope);
                edit_span(field, buf, |span| {
                    let before = span.events.len();
                    span.events.retain(|event| {
                        match c.any(&c.spanevent, &EventView { event, around }) {
                            Ok(drop) => !drop,
                            Err(e) => {
                                failed.get_or_insert(e);
                                true
                            }
                        }
                    });
                    events += before - span.events.len();
                    span.events.len() != before
                })
            });
            if let Some(e) = failed {
                return Err(e);
            }
            self.dropped_events.add(events as u64);
            if edited.is_some() {
                out = edited;
            }
        }
        Ok(out)
    }

    fn logs(&self, req: &Request) -> Outcome {
        let c = &self.c;
        if c.log.is_empty() {
            return Ok(None);
        }
        let mut decoded =
            ExportLogsServiceRequest::decode(req.bytes.clone()).map_err(|e| e.to_string())?;
        let mut failed = None;
        for rl in &mut decoded.resource_logs {
            for sl in &mut rl.scope_logs {
                let around = Around {
                    resource: rl.resource.as_ref(),
                    scope: sl.scope.as_ref(),
                };
                sl.log_records
                    .retain(|log| keep(c.any(&c.log, &LogView { log, around }), &mut failed));
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        let items = log_count(&decoded);
        if items == req.items {
            return Ok(None);
        }
        for rl in &mut decoded.resource_logs {
            rl.scope_logs.retain(|s| !s.log_records.is_empty());
        }
        decoded.resource_logs.retain(|r| !r.scope_logs.is_empty());
        Ok(Some(Request {
            bytes: Bytes::from(decoded.encode_to_vec()),
            items,
            index: None,
            client: req.client.clone(),
        }))
    }

    fn metrics(&self, req: &Request) -> Outcome {
        let c = &self.c;
        if c.metric.is_empty() && c.datapoint.is_empty() {
            return Ok(None);
        }
        let mut decoded =
            ExportMetricsServiceRequest::decode(req.bytes.clone()).map_err(|e| e.to_string())?;
        let mut failed = None;
        for rm in &mut decoded.resource_metrics {
            for sm in &mut rm.scope_metrics {
                let around = Around {
                    resource: rm.resource.as_ref(),
                    scope: sm.scope.as_ref(),
                };
                sm.metrics.retain_mut(|metric| {
                    if !keep(
                        c.any(&c.metric, &MetricView { metric, around }),
                        &mut failed,
                    ) {
                        return false;
                    }
                    if c.datapoint.is_empty() || metric_points(metric) == 0 {
                        return true;
                    }
                    self.points(metric, around, &mut failed);
                    // A metric whose every point was dropped goes too.
                    metric_points(metric) > 0
                });
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        let items = point_count(&decoded);
        let emptied = decoded
            .resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .any(|s| s.metrics.is_empty());
        if items == req.items && !emptied {
            return Ok(None);
        }
        for rm in &mut decoded.resource_metrics {
            rm.scope_metrics.retain(|s| !s.metrics.is_empty());
        }
        decoded
            .resource_metrics
            .retain(|r| !r.scope_metrics.is_empty());
        Ok(Some(Request {
            bytes: Bytes::from(decoded.encode_to_vec()),
            items,
            index: None,
            client: req.client.clone(),
        }))
    }

    /// Drops the data points of `metric` that match.
    fn points(&self, metric: &mut Metric, around: Around, failed: &mut Option<String>) {
        let c = &self.c;
        let kind = metric_type(metric);
        let header = Metric {
            name: metric.name.clone(),
            description: metric.description.clone(),
            unit: metric.unit.clone(),
            ..Default::default()
        };
        macro_rules! retain {
            ($d:expr) => {
                $d.data_points.retain(|p| {
                    let view = PointView {
                        attributes: &p.attributes,
                        time_unix_nano: p.time_unix_nano,
                        metric: &header,
                        kind,
                        around,
                    };
                    keep(c.any(&c.datapoint, &view), failed)
                })
            };
        }
        match &mut metric.data {
            Some(Data::Gauge(d)) => retain!(d),
            Some(Data::Sum(d)) => retain!(d),
            Some(Data::Histogram(d)) => retain!(d),
            Some(Data::ExponentialHistogram(d)) => retain!(d),
            Some(Data::Summary(d)) => retain!(d),
            None => {}
        }
    }
}

/// Whether to keep an item given its verdict; an error keeps it and is
/// remembered (only `propagate` returns errors).
fn keep(verdict: Result<bool, String>, failed: &mut Option<String>) -> bool {
    match verdict {
        Ok(drop) => !drop,
        Err(e) => {
            failed.get_or_insert(e);
            true
        }
    }
}

#[async_trait]
impl Consumer for Filter {
    async fn consume(&self, mut batch: Batch) -> Result<(), ConsumeError> {
        let mut dropped = 0;
        for req in &mut batch.requests {
            let outcome = match self.signal {
                Signal::Traces => self.traces(req),
                Signal::Logs => self.logs(req),
                Signal::Metrics => self.metrics(req),
            };
            if let Some(new) = outcome.map_err(ConsumeError::Permanent)? {
                dropped += req.items - new.items;
                *req = new;
            }
        }
        self.dropped.add(dropped as u64);
        batch.requests.retain(|r| r.items > 0);
        if batch.requests.is_empty() {
            return Ok(());
        }
        self.next.consume(batch).await
    }
}

#[cfg(test)]
mod tests;
