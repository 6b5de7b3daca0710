//! The Arrow layout of the archive, built from decoded OTLP requests: one
//! row per span or log record, ids as fixed-size binary, times as UTC
//! nanosecond timestamps, attributes as `map<string, string>` (strings as
//! they are, other values as JSON), resource attributes, span events and
//! links as JSON text.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, FixedSizeBinaryBuilder, Int32Builder, MapBuilder, StringBuilder,
    TimestampNanosecondBuilder, UInt32Builder,
};
use arrow::datatypes::{Field, Schema};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;

use crate::values::{attributes, text};

pub(super) type Map = MapBuilder<StringBuilder, StringBuilder>;

/// What a map column will hold, so its builders are sized once rather
/// than grown row by row.
#[derive(Debug, Default, Clone, Copy)]
struct Size {
    rows: usize,
    entries: usize,
    keys: usize,
    values: usize,
}

impl Size {
    fn add(&mut self, kvs: &[KeyValue]) {
        self.rows += 1;
        self.entries += kvs.len();
        for kv in kvs {
            self.keys += kv.key.len();
            self.values += match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Any::StringValue(s)) => s.len(),
                _ => 16,
            };
        }
    }
}

fn map(s: Size) -> Map {
    MapBuilder::with_capacity(
        None,
        StringBuilder::with_capacity(s.entries, s.keys),
        StringBuilder::with_capacity(s.entries, s.values),
        s.rows,
    )
}

fn put_map(m: &mut Map, kvs: &[KeyValue]) -> Result<(), ArrowError> {
    for kv in kvs {
        m.keys().append_value(&kv.key);
        m.values().append_value(text(kv.value.as_ref()));
    }
    m.append(true)
}

pub(super) fn time(n: usize) -> TimestampNanosecondBuilder {
    TimestampNanosecondBuilder::with_capacity(n).with_timezone("UTC")
}

pub(super) fn strings(n: usize, bytes: usize) -> StringBuilder {
    StringBuilder::with_capacity(n, bytes)
}

/// An id of `n` bytes, or null when it is empty (unset) or malformed.
pub(super) fn put_id(
    b: &mut FixedSizeBinaryBuilder,
    id: &[u8],
    n: usize,
) -> Result<(), ArrowError> {
    if id.len() == n {
        b.append_value(id)
    } else {
        b.append_null();
        Ok(())
    }
}

/// A resource as every one of its rows shows it, worked out once per
/// resource: repeating its attributes as a map on every row cost a quarter
/// of the exporter's time (criterion `parquet`), a repeated JSON string
/// costs next to nothing once dictionary-encoded.
pub(super) struct Who {
    service: Option<String>,
    json: String,
}

impl Who {
    pub(super) fn new(resource: Option<&Resource>) -> Who {
        let attrs = resource.map_or(&[][..], |r| r.attributes.as_slice());
        Who {
            service: attrs
                .iter()
                .rev()
                .find(|kv| kv.key == "service.name")
                .map(|kv| text(kv.value.as_ref()).into_owned()),
            json: attributes(attrs).to_string(),
        }
    }
}

/// Columns shared by both signals: who sent the row.
pub(super) struct Origin {
    service: StringBuilder,
    resource: StringBuilder,
    scope_name: StringBuilder,
    scope_version: StringBuilder,
}

impl Origin {
    pub(super) fn new(n: usize, resource_bytes: usize) -> Origin {
        Origin {
            service: strings(n, n * 16),
            resource: strings(n, resource_bytes),
            scope_name: strings(n, n * 24),
            scope_version: strings(n, n * 8),
        }
    }

    pub(super) fn put(&mut self, who: &Who, scope: Option<&InstrumentationScope>) {
        self.service.append_option(who.service.as_deref());
        self.resource.append_value(&who.json);
        self.scope_name
            .append_value(scope.map_or("", |s| s.name.as_str()));
        self.scope_version
            .append_value(scope.map_or("", |s| s.version.as_str()));
    }

    pub(super) fn finish(mut self) -> [(&'static str, ArrayRef, bool); 4] {
        [
            ("service_name", Arc::new(self.service.finish()), true),
            (
                "resource_attributes",
                Arc::new(self.resource.finish()),
                false,
            ),
            ("scope_name", Arc::new(self.scope_name.finish()), false),
            (
                "scope_version",
                Arc::new(self.scope_version.finish()),
                false,
            ),
        ]
    }
}

pub(super) fn batch(
    columns: Vec<(&'static str, ArrayRef, bool)>,
) -> Result<RecordBatch, ArrowError> {
    let schema = Schema::new(
        columns
            .iter()
            .map(|(name, a, nullable)| Field::new(*name, a.data_type().clone(), *nullable))
            .collect::<Vec<_>>(),
    );
    RecordBatch::try_new(
        Arc::new(schema),
        columns.into_iter().map(|(_, a, _)| a).collect(),
    )
}

/// One row per log record.
pub fn logs(req: &ExportLogsServiceRequest) -> Result<RecordBatch, ArrowError> {
    let (mut attr_size, mut res_bytes) = (Size::default(), 0);
    let mut who = Vec::with_capacity(req.resource_logs.len());
    for rl in &req.resource_logs {
        let n: usize = rl.scope_logs.iter().map(|sl| sl.log_records.len()).sum();
        who.push(Who::new(rl.resource.as_ref()));
        res_bytes += who.last().unwrap().json.len() * n;
        for r in rl.scope_logs.iter().flat_map(|sl| &sl.log_records) {
            attr_size.add(&r.attributes);
        }
    }
    let n = attr_size.rows;
    let (mut t, mut observed) = (time(n), time(n));
    let mut number = Int32Builder::with_capacity(n);
    let (mut severity, mut body, mut event) =
        (strings(n, n * 5), strings(n, n * 64), strings(n, 0));
    let mut trace_id = FixedSizeBinaryBuilder::with_capacity(n, 16);
    let mut span_id = FixedSizeBinaryBuilder::with_capacity(n, 8);
    let mut flags = UInt32Builder::with_capacity(n);
    let mut attrs = map(attr_size);
    let mut origin = Origin::new(n, res_bytes);
    for (rl, who) in req.resource_logs.iter().zip(&who) {
        for sl in &rl.scope_logs {
            for r in &sl.log_records {
                origin.put(who, sl.scope.as_ref());
                t.append_value(r.time_unix_nano as i64);
                observed.append_value(r.observed_time_unix_nano as i64);
                number.append_value(r.severity_number);
                severity.append_value(&r.severity_text);
                body.append_value(text(r.body.as_ref()));
                event.append_value(&r.event_name);
                put_id(&mut trace_id, &r.trace_id, 16)?;
                put_id(&mut span_id, &r.span_id, 8)?;
                flags.append_value(r.flags);
                put_map(&mut attrs, &r.attributes)?;
            }
        }
    }
    let mut cols: Vec<(&'static str, ArrayRef, bool)> = vec![
        ("time", Arc::new(t.finish()), false),
        ("observed_time", Arc::new(observed.finish()), false),
        ("severity_number", Arc::new(number.finish()), false),
        ("severity_text", Arc::new(severity.finish()), false),
        ("body", Arc::new(body.finish()), false),
        ("event_name", Arc::new(event.finish()), false),
        ("trace_id", Arc::new(trace_id.finish()), true),
        ("span_id", Arc::new(span_id.finish()), true),
        ("flags", Arc::new(flags.finish()), false),
        ("attributes", Arc::new(attrs.finish()), false),
    ];
    cols.extend(origin.finish());
    batch(cols)
}
