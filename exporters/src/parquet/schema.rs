//! The Arrow layout of the archive, built from decoded OTLP requests: one
//! row per span or log record, ids as fixed-size binary, times as UTC
//! nanosecond timestamps, attributes as `map<string, string>` (strings as
//! they are, other values as JSON), resource attributes, span events and
//! links as JSON text.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, FixedSizeBinaryBuilder, Int32Builder, Int64Builder, MapBuilder, StringBuilder,
    TimestampNanosecondBuilder, UInt32Builder,
};
use arrow::datatypes::{Field, Schema};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use pipeline::wire::hex;
use serde_json::json;

use crate::values::{attributes, text};

type Map = MapBuilder<StringBuilder, StringBuilder>;

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

fn time(n: usize) -> TimestampNanosecondBuilder {
    TimestampNanosecondBuilder::with_capacity(n).with_timezone("UTC")
}

fn strings(n: usize, bytes: usize) -> StringBuilder {
    StringBuilder::with_capacity(n, bytes)
}

/// An id of `n` bytes, or null when it is empty (unset) or malformed.
fn put_id(b: &mut FixedSizeBinaryBuilder, id: &[u8], n: usize) -> Result<(), ArrowError> {
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
struct Who {
    service: Option<String>,
    json: String,
}

impl Who {
    fn new(resource: Option<&Resource>) -> Who {
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
struct Origin {
    service: StringBuilder,
    resource: StringBuilder,
    scope_name: StringBuilder,
    scope_version: StringBuilder,
}

impl Origin {
    fn new(n: usize, resource_bytes: usize) -> Origin {
        Origin {
            service: strings(n, n * 16),
            resource: strings(n, resource_bytes),
            scope_name: strings(n, n * 24),
            scope_version: strings(n, n * 8),
        }
    }

    fn put(&mut self, who: &Who, scope: Option<&InstrumentationScope>) {
        self.service.append_option(who.service.as_deref());
        self.resource.append_value(&who.json);
        self.scope_name
            .append_value(scope.map_or("", |s| s.name.as_str()));
        self.scope_version
            .append_value(scope.map_or("", |s| s.version.as_str()));
    }

    fn finish(mut self) -> [(&'static str, ArrayRef, bool); 4] {
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

fn batch(columns: Vec<(&'static str, ArrayRef, bool)>) -> Result<RecordBatch, ArrowError> {
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

/// Span events as a JSON array (`[]` without building anything).
fn events_json(events: &[Event]) -> String {
    if events.is_empty() {
        return "[]".into();
    }
    let ev: Vec<_> = events
        .iter()
        .map(|e| json!({"time_unix_nano": e.time_unix_nano, "name": e.name, "attributes": attributes(&e.attributes)}))
        .collect();
    serde_json::Value::Array(ev).to_string()
}

/// Span links as a JSON array.
fn links_json(links: &[Link]) -> String {
    if links.is_empty() {
        return "[]".into();
    }
    let ln: Vec<_> = links
        .iter()
        .map(|l| json!({"trace_id": hex(&l.trace_id), "span_id": hex(&l.span_id), "trace_state": l.trace_state, "attributes": attributes(&l.attributes)}))
        .collect();
    serde_json::Value::Array(ln).to_string()
}

/// One row per span.
pub fn spans(req: &ExportTraceServiceRequest) -> Result<RecordBatch, ArrowError> {
    let (mut attr_size, mut res_bytes, mut names) = (Size::default(), 0, 0);
    let mut who = Vec::with_capacity(req.resource_spans.len());
    for rs in &req.resource_spans {
        let n: usize = rs.scope_spans.iter().map(|ss| ss.spans.len()).sum();
        who.push(Who::new(rs.resource.as_ref()));
        res_bytes += who.last().unwrap().json.len() * n;
        for s in rs.scope_spans.iter().flat_map(|ss| &ss.spans) {
            attr_size.add(&s.attributes);
            names += s.name.len();
        }
    }
    let n = attr_size.rows;
    let mut trace_id = FixedSizeBinaryBuilder::with_capacity(n, 16);
    let mut span_id = FixedSizeBinaryBuilder::with_capacity(n, 8);
    let mut parent = FixedSizeBinaryBuilder::with_capacity(n, 8);
    let (mut state, mut name) = (strings(n, 0), strings(n, names));
    let mut kind = Int32Builder::with_capacity(n);
    let (mut start, mut end) = (time(n), time(n));
    let mut duration = Int64Builder::with_capacity(n);
    let mut code = Int32Builder::with_capacity(n);
    let mut message = strings(n, 0);
    let mut flags = UInt32Builder::with_capacity(n);
    let mut attrs = map(attr_size);
    let (mut events, mut links) = (strings(n, n * 2), strings(n, n * 2));
    let mut origin = Origin::new(n, res_bytes);
    for (rs, who) in req.resource_spans.iter().zip(&who) {
        for ss in &rs.scope_spans {
            for s in &ss.spans {
                origin.put(who, ss.scope.as_ref());
                put_id(&mut trace_id, &s.trace_id, 16)?;
                put_id(&mut span_id, &s.span_id, 8)?;
                put_id(&mut parent, &s.parent_span_id, 8)?;
                state.append_value(&s.trace_state);
                name.append_value(&s.name);
                kind.append_value(s.kind);
                start.append_value(s.start_time_unix_nano as i64);
                end.append_value(s.end_time_unix_nano as i64);
                duration.append_value(
                    s.end_time_unix_nano.saturating_sub(s.start_time_unix_nano) as i64
                );
                code.append_value(s.status.as_ref().map_or(0, |st| st.code));
                message.append_value(s.status.as_ref().map_or("", |st| st.message.as_str()));
                flags.append_value(s.flags);
                put_map(&mut attrs, &s.attributes)?;
                events.append_value(events_json(&s.events));
                links.append_value(links_json(&s.links));
            }
        }
    }
    let mut cols: Vec<(&'static str, ArrayRef, bool)> = vec![
        ("trace_id", Arc::new(trace_id.finish()), true),
        ("span_id", Arc::new(span_id.finish()), true),
        ("parent_span_id", Arc::new(parent.finish()), true),
        ("trace_state", Arc::new(state.finish()), false),
        ("name", Arc::new(name.finish()), false),
        ("kind", Arc::new(kind.finish()), false),
        ("start_time", Arc::new(start.finish()), false),
        ("end_time", Arc::new(end.finish()), false),
        ("duration_ns", Arc::new(duration.finish()), false),
        ("status_code", Arc::new(code.finish()), false),
        ("status_message", Arc::new(message.finish()), false),
        ("flags", Arc::new(flags.finish()), false),
        ("attributes", Arc::new(attrs.finish()), false),
        ("events", Arc::new(events.finish()), false),
        ("links", Arc::new(links.finish()), false),
    ];
    cols.extend(origin.finish());
    batch(cols)
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
