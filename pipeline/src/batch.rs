//! What travels through a pipeline: encoded OTLP requests, never decoded on
//! the way, with a span index for traces.

use std::fmt;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::Metric;
use prost::Message;

use crate::scan::{scan_traces, SpanIndex};
use crate::wire::WireError;

/// The three OTLP signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Signal {
    /// Spans.
    Traces,
    /// Metric data points.
    Metrics,
    /// Log records.
    Logs,
}

impl Signal {
    /// All signals, in config order.
    pub const ALL: [Signal; 3] = [Signal::Traces, Signal::Metrics, Signal::Logs];

    /// The name used in configs and URLs (`traces`).
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
        }
    }

    /// What one item is called in self-metrics (`spans`).
    pub fn item_name(self) -> &'static str {
        match self {
            Signal::Traces => "spans",
            Signal::Metrics => "metric_points",
            Signal::Logs => "log_records",
        }
    }

    /// Parses a pipeline signal name.
    pub fn parse(s: &str) -> Option<Signal> {
        Signal::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One encoded export request as a client sent it (or a split of one).
#[derive(Debug, Clone)]
pub struct Request {
    /// The encoded `Export*ServiceRequest`.
    pub bytes: Bytes,
    /// Spans, data points or log records in it.
    pub items: usize,
    /// For traces: where every span lies in `bytes`.
    pub index: Option<Arc<SpanIndex>>,
}

/// Why a request body was refused.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The protobuf wire structure is broken.
    #[error("{0}")]
    Wire(#[from] WireError),
    /// prost refused the message.
    #[error("invalid protobuf: {0}")]
    Prost(#[from] prost::DecodeError),
}

/// Data points in one metric.
pub fn metric_points(m: &Metric) -> usize {
    match &m.data {
        Some(Data::Gauge(g)) => g.data_points.len(),
        Some(Data::Sum(s)) => s.data_points.len(),
        Some(Data::Histogram(h)) => h.data_points.len(),
        Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(Data::Summary(s)) => s.data_points.len(),
        None => 0,
    }
}

/// Calls `f` with the attributes of every data point in `m` (one metric).
pub fn each_point_attributes(
    m: &mut Metric,
    mut f: impl FnMut(&mut Vec<opentelemetry_proto::tonic::common::v1::KeyValue>),
) {
    macro_rules! points {
        ($d:expr) => {
            for p in &mut $d.data_points {
                f(&mut p.attributes);
            }
        };
    }
    match &mut m.data {
        Some(Data::Gauge(d)) => points!(d),
        Some(Data::Sum(d)) => points!(d),
        Some(Data::Histogram(d)) => points!(d),
        Some(Data::ExponentialHistogram(d)) => points!(d),
        Some(Data::Summary(d)) => points!(d),
        None => {}
    }
}

/// Log records in a decoded logs request.
pub fn log_count(req: &ExportLogsServiceRequest) -> usize {
    req.resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len())
        .sum()
}

/// Data points in a decoded metrics request.
pub fn point_count(req: &ExportMetricsServiceRequest) -> usize {
    req.resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(metric_points)
        .sum()
}

/// Spans in a decoded traces request.
pub fn span_count(req: &ExportTraceServiceRequest) -> usize {
    req.resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum()
}

impl Request {
    /// Validates an encoded request of `signal` and counts its items. Traces
    /// are scanned in place; logs and metrics are checked with prost for now.
    pub fn parse(signal: Signal, bytes: Bytes) -> Result<Request, DecodeError> {
        match signal {
            Signal::Traces => {
                let mut index = SpanIndex::default();
                scan_traces(&bytes, &mut index)?;
                Ok(Request {
                    items: index.spans.len(),
                    bytes,
                    index: Some(Arc::new(index)),
                })
            }
            Signal::Logs => {
                let items = log_count(&ExportLogsServiceRequest::decode(bytes.clone())?);
                Ok(Request {
                    bytes,
                    items,
                    index: None,
                })
            }
            Signal::Metrics => {
                let items = point_count(&ExportMetricsServiceRequest::decode(bytes.clone())?);
                Ok(Request {
                    bytes,
                    items,
                    index: None,
                })
            }
        }
    }
}

/// A unit of work in a pipeline: one or more requests of one signal.
///
/// Concatenated encoded requests form a valid request (repeated fields
/// append), so a batch is exported as its requests' bytes back to back.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The signal of every request in it.
    pub signal: Signal,
    /// The requests, in arrival order.
    pub requests: Vec<Request>,
}

impl Batch {
    /// A batch holding one request.
    pub fn new(signal: Signal, request: Request) -> Batch {
        Batch {
            signal,
            requests: vec![request],
        }
    }

    /// Parses one encoded request into a batch.
    pub fn parse(signal: Signal, bytes: Bytes) -> Result<Batch, DecodeError> {
        Ok(Batch::new(signal, Request::parse(signal, bytes)?))
    }

    /// Spans, data points or log records in the batch.
    pub fn items(&self) -> usize {
        self.requests.iter().map(|r| r.items).sum()
    }

    /// Encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        self.requests.iter().map(|r| r.bytes.len()).sum()
    }

    /// The batch as one encoded request; copies only when it holds several.
    pub fn to_bytes(&self) -> Bytes {
        if let [one] = self.requests.as_slice() {
            return one.bytes.clone();
        }
        let mut out = BytesMut::with_capacity(self.encoded_len());
        for r in &self.requests {
            out.extend_from_slice(&r.bytes);
        }
        out.freeze()
    }

    /// Decodes a traces batch (for exporters that convert).
    pub fn decode_traces(&self) -> Result<ExportTraceServiceRequest, prost::DecodeError> {
        ExportTraceServiceRequest::decode(self.to_bytes())
    }

    /// Decodes a metrics batch.
    pub fn decode_metrics(&self) -> Result<ExportMetricsServiceRequest, prost::DecodeError> {
        ExportMetricsServiceRequest::decode(self.to_bytes())
    }

    /// Decodes a logs batch.
    pub fn decode_logs(&self) -> Result<ExportLogsServiceRequest, prost::DecodeError> {
        ExportLogsServiceRequest::decode(self.to_bytes())
    }
}
