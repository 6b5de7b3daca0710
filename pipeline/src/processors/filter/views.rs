//! What conditions read, per context. Spans are read in place from the
//! request bytes (their resource and scope are decoded once, on first use);
//! span events, logs and metrics are read from decoded messages.

use std::cell::OnceCell;

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::Metric;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::Event;

use super::ottl::{Path, Val, View};
use crate::inplace::{find_raw_attribute, span_scalars, AttrValue, SpanScalars};
use crate::rewrite::decode_field;
use crate::scan::{SpanEntry, SpanIndex};

const COMPOSITE: &str = "a map, array or bytes value";

/// A decoded value as a condition sees it.
pub fn any(v: Option<&AnyValue>) -> Val<'_> {
    match v.and_then(|v| v.value.as_ref()) {
        None => Val::Nil,
        Some(Value::StringValue(s)) => Val::Str(s),
        Some(Value::IntValue(i)) => Val::Int(*i),
        Some(Value::DoubleValue(d)) => Val::Double(*d),
        Some(Value::BoolValue(b)) => Val::Bool(*b),
        Some(Value::ArrayValue(_)) => Val::Other("an array"),
        Some(Value::KvlistValue(_)) => Val::Other("a map"),
        Some(Value::BytesValue(_)) => Val::Other("bytes"),
        Some(Value::StringValueStrindex(_)) => Val::Other("a string table reference"),
    }
}

/// The first attribute named `key`, as OTTL's map lookup.
fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Val<'a> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .map_or(Val::Nil, |kv| any(kv.value.as_ref()))
}

/// An item's resource and scope, for the paths every context shares.
#[derive(Clone, Copy, Default)]
pub struct Around<'a> {
    /// The item's resource.
    pub resource: Option<&'a Resource>,
    /// The item's instrumentation scope.
    pub scope: Option<&'a InstrumentationScope>,
}

impl<'a> Around<'a> {
    /// The value of a shared path, or `None` if `path` is not one.
    fn get(&self, path: &Path) -> Option<Val<'a>> {
        Some(match path {
            Path::ResourceAttr(k) => self.resource.map_or(Val::Nil, |r| attr(&r.attributes, k)),
            Path::ScopeName => self.scope.map_or(Val::Nil, |s| Val::Str(&s.name)),
            Path::ScopeVersion => self.scope.map_or(Val::Nil, |s| Val::Str(&s.version)),
            Path::ScopeAttr(k) => self.scope.map_or(Val::Nil, |s| attr(&s.attributes, k)),
            _ => return None,
        })
    }
}

/// A traces request's resources and scopes, decoded on first use.
pub struct TraceParts<'a> {
    bytes: &'a [u8],
    index: &'a SpanIndex,
    resources: Vec<OnceCell<Option<Resource>>>,
    scopes: Vec<OnceCell<Option<InstrumentationScope>>>,
}

impl<'a> TraceParts<'a> {
    /// Nothing decoded yet.
    pub fn new(bytes: &'a [u8], index: &'a SpanIndex) -> TraceParts<'a> {
        TraceParts {
            bytes,
            index,
            resources: (0..index.resources.len())
                .map(|_| OnceCell::new())
                .collect(),
            scopes: (0..index.scopes.len()).map(|_| OnceCell::new()).collect(),
        }
    }

    /// The resource and scope of the scope at `scope`.
    pub fn around(&self, scope: u32) -> Around<'_> {
        let s = &self.index.scopes[scope as usize];
        let r = s.resource as usize;
        Around {
            resource: self.resources[r]
                .get_or_init(|| decode_field(self.bytes, self.index.resources[r].resource))
                .as_ref(),
            scope: self.scopes[scope as usize]
                .get_or_init(|| decode_field(self.bytes, s.scope))
                .as_ref(),
        }
    }
}

/// A span read in place from its whole `spans` field.
pub struct RawSpan<'a> {
    /// The request's resources and scopes.
    pub parts: &'a TraceParts<'a>,
    /// Its index entry.
    pub entry: &'a SpanEntry,
    /// Its bytes.
    pub field: &'a [u8],
    /// Name, kind and status message, read when a condition first needs one.
    pub scalars: OnceCell<SpanScalars<'a>>,
}

impl View for RawSpan<'_> {
    fn get(&self, path: &Path) -> Val<'_> {
        let scalars = || self.scalars.get_or_init(|| span_scalars(self.field));
        match path {
            Path::Name => Val::Str(scalars().name),
            Path::Kind => Val::Int(scalars().kind),
            Path::StatusMessage => Val::Str(scalars().status_message),
            Path::StatusCode => Val::Int(i64::from(self.entry.status_code)),
            Path::StartTime => Val::Int(self.entry.start_time_unix_nano as i64),
            Path::EndTime => Val::Int(self.entry.end_time_unix_nano as i64),
            Path::Attr(k) => match find_raw_attribute(self.field, k.as_bytes()) {
                None => Val::Nil,
                Some(v) => match v.get() {
                    AttrValue::Str(s) => Val::Str(s),
                    AttrValue::Int(i) => Val::Int(i),
                    AttrValue::Double(d) => Val::Double(d),
                    AttrValue::Bool(b) => Val::Bool(b),
                    AttrValue::Other if v.is_empty() => Val::Nil,
                    AttrValue::Other => Val::Other(COMPOSITE),
                },
            },
            other => self
                .parts
                .around(self.entry.scope)
                .get(other)
                .unwrap_or(Val::Nil),
        }
    }

    fn is_root(&self) -> bool {
        self.entry.parent_span_id == [0; 8]
    }
}

/// A span event.
pub struct EventView<'a> {
    /// The event.
    pub event: &'a Event,
    /// Its span's resource and scope.
    pub around: Around<'a>,
}

impl View for EventView<'_> {
    fn get(&self, path: &Path) -> Val<'_> {
        match path {
            Path::Name => Val::Str(&self.event.name),
            Path::StartTime => Val::Int(self.event.time_unix_nano as i64),
            Path::Attr(k) => attr(&self.event.attributes, k),
            other => self.around.get(other).unwrap_or(Val::Nil),
        }
    }
}

/// A log record.
pub struct LogView<'a> {
    /// The record.
    pub log: &'a LogRecord,
    /// Its resource and scope.
    pub around: Around<'a>,
}

impl View for LogView<'_> {
    fn get(&self, path: &Path) -> Val<'_> {
        let log = self.log;
        match path {
            Path::Body => any(log.body.as_ref()),
            Path::SeverityNumber => Val::Int(i64::from(log.severity_number)),
            Path::SeverityText => Val::Str(&log.severity_text),
            Path::Name => Val::Str(&log.event_name),
            Path::StartTime => Val::Int(log.time_unix_nano as i64),
            Path::Attr(k) => attr(&log.attributes, k),
            other => self.around.get(other).unwrap_or(Val::Nil),
        }
    }
}

/// `METRIC_DATA_TYPE_*` of a metric.
pub fn metric_type(m: &Metric) -> i64 {
    match m.data {
        None => 0,
        Some(Data::Gauge(_)) => 1,
        Some(Data::Sum(_)) => 2,
        Some(Data::Histogram(_)) => 3,
        Some(Data::ExponentialHistogram(_)) => 4,
        Some(Data::Summary(_)) => 5,
    }
}

/// The metric-level paths, shared by the metric and data point contexts.
fn metric_path<'a>(m: &'a Metric, kind: i64, path: &Path) -> Option<Val<'a>> {
    Some(match path {
        Path::Name => Val::Str(&m.name),
        Path::Description => Val::Str(&m.description),
        Path::Unit => Val::Str(&m.unit),
        Path::MetricType => Val::Int(kind),
        _ => return None,
    })
}

/// A metric.
pub struct MetricView<'a> {
    /// The metric.
    pub metric: &'a Metric,
    /// Its resource and scope.
    pub around: Around<'a>,
}

impl View for MetricView<'_> {
    fn get(&self, path: &Path) -> Val<'_> {
        metric_path(self.metric, metric_type(self.metric), path)
            .or_else(|| self.around.get(path))
            .unwrap_or(Val::Nil)
    }

    fn point_attr(&self, key: &str, value: Option<&str>) -> bool {
        macro_rules! any_point {
            ($d:expr) => {
                $d.data_points
                    .iter()
                    .any(|p| match attr(&p.attributes, key) {
                        Val::Nil => false,
                        Val::Str(s) => value.is_none_or(|v| v == s),
                        _ => value.is_none(),
                    })
            };
        }
        match &self.metric.data {
            None => false,
            Some(Data::Gauge(d)) => any_point!(d),
            Some(Data::Sum(d)) => any_point!(d),
            Some(Data::Histogram(d)) => any_point!(d),
            Some(Data::ExponentialHistogram(d)) => any_point!(d),
            Some(Data::Summary(d)) => any_point!(d),
        }
    }
}

/// A data point: its attributes and time, and its metric.
pub struct PointView<'a> {
    /// The point's attributes.
    pub attributes: &'a [KeyValue],
    /// The point's time.
    pub time_unix_nano: u64,
    /// Its metric's name, description and unit (its points are being
    /// filtered, so the view holds a copy without them).
    pub metric: &'a Metric,
    /// Its metric's `METRIC_DATA_TYPE_*`.
    pub kind: i64,
    /// Its resource and scope.
    pub around: Around<'a>,
}

impl View for PointView<'_> {
    fn get(&self, path: &Path) -> Val<'_> {
        match path {
            Path::Attr(k) => attr(self.attributes, k),
            Path::StartTime => Val::Int(self.time_unix_nano as i64),
            other => metric_path(self.metric, self.kind, other)
                .or_else(|| self.around.get(other))
                .unwrap_or(Val::Nil),
        }
    }
}
