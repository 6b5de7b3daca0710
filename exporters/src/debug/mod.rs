//! `debug`: writes what passes to the collector's log, at `basic` (counts),
//! `normal` (a line per item) or `detailed` (every field, as OTLP/JSON).

use std::sync::Arc;

use async_trait::async_trait;
use pipeline::component::{parse_config, ConfigError, Context, Validate};
use pipeline::{Batch, BoxConsumer, ConsumeError, Consumer, Signal};
use serde::Deserialize;

use crate::engine::ExporterMetrics;
use crate::otlphttp::json_body;
use crate::{ExporterBuilder, ExporterFactory};
use pipeline::wire::hex;

/// How much to write.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Verbosity {
    /// One line per batch with its item count.
    #[default]
    Basic,
    /// One line per span, data point or log record.
    Normal,
    /// The whole batch as OTLP/JSON.
    Detailed,
}

/// `debug` exporter config.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DebugConfig {
    /// How much to write.
    pub verbosity: Verbosity,
}

impl Validate for DebugConfig {}

/// The registry entry.
pub fn factory() -> ExporterFactory {
    ExporterFactory {
        type_name: "debug",
        signals: &Signal::ALL,
        parse: |v| Ok(Arc::new(parse_config::<DebugConfig>(v)?)),
    }
}

impl ExporterBuilder for DebugConfig {
    fn build(&self, ctx: &Context) -> Result<BoxConsumer, ConfigError> {
        Ok(Arc::new(Debug(Arc::new(Printer {
            id: ctx.id.clone(),
            verbosity: self.verbosity,
            metrics: ExporterMetrics::new(&ctx.metrics, &ctx.id),
        }))))
    }
}

/// Above `basic` every batch is decoded, so printing runs on tokio's
/// blocking pool, off the async workers that receivers run on.
struct Debug(Arc<Printer>);

struct Printer {
    id: String,
    verbosity: Verbosity,
    metrics: ExporterMetrics,
}

/// One line per item, for `normal`.
fn lines(batch: &Batch) -> Vec<String> {
    let mut out = Vec::new();
    match batch.signal {
        Signal::Traces => {
            for rs in batch.decode_traces_each().request.resource_spans {
                for s in rs.scope_spans.iter().flat_map(|ss| &ss.spans) {
                    out.push(format!(
                        "{} trace_id={} span_id={} duration={}ns status={}",
                        s.name,
                        hex(&s.trace_id),
                        hex(&s.span_id),
                        s.end_time_unix_nano.saturating_sub(s.start_time_unix_nano),
                        s.status.as_ref().map_or(0, |st| st.code)
                    ));
                }
            }
        }
        Signal::Logs => {
            for rl in batch.decode_logs_each().request.resource_logs {
                for l in rl.scope_logs.iter().flat_map(|sl| &sl.log_records) {
                    let body = l
                        .body
                        .as_ref()
                        .and_then(|b| serde_json::to_string(b).ok())
                        .unwrap_or_default();
                    out.push(format!("{} {}", l.severity_text, body));
                }
            }
        }
        Signal::Metrics => {
            for rm in batch.decode_metrics_each().request.resource_metrics {
                for m in rm.scope_metrics.iter().flat_map(|sm| &sm.metrics) {
                    out.push(format!(
                        "{} {} points={}",
                        m.name,
                        m.unit,
                        pipeline::batch::metric_points(m)
                    ));
                }
            }
        }
    }
    out
}

#[async_trait]
impl Consumer for Debug {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        if self.0.verbosity == Verbosity::Basic {
            return self.0.print(&batch);
        }
        let p = self.0.clone();
        tokio::task::spawn_blocking(move || p.print(&batch))
            .await
            .unwrap_or_else(|e| Err(ConsumeError::Retryable(format!("debug exporter: {e}"))))
    }
}

impl Printer {
    fn print(&self, batch: &Batch) -> Result<(), ConsumeError> {
        let items = batch.items();
        tracing::info!(exporter = %self.id, signal = %batch.signal, items, "{}", batch.signal.item_name());
        match self.verbosity {
            Verbosity::Basic => {}
            Verbosity::Normal => {
                for line in lines(batch) {
                    tracing::info!(exporter = %self.id, "{line}");
                }
            }
            Verbosity::Detailed => {
                let (json, _) = json_body(batch).map_err(ConsumeError::Permanent)?;
                tracing::info!(exporter = %self.id, "{}", String::from_utf8_lossy(&json));
            }
        }
        self.metrics.sent(batch.signal, items);
        Ok(())
    }
}
