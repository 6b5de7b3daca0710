//! The Arrow layout of the archive, built from decoded OTLP requests: one
//! row per span or log record, ids as fixed-size binary, times as UTC
//! nanosecond timestamps, attributes as `map<string, string>` (strings as
//! they are, other values as JSON), span events and links as JSON text.

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
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use pipeline::wire::hex;
use serde_json::json;

use crate::values::{attributes, text};

type Map = MapBuilder<StringBuilder, StringBuilder>;

fn map() -> Map {
    MapBuilder::new(None, StringBuilder::new(), StringBuilder::new())
}

fn put_map(m: &mut Map, kvs: &[KeyValue]) -> Result<(), ArrowError> {
    for kv in kvs {
        m.keys().append_value(&kv.key);
        m.values().append_value(text(kv.value.as_ref()));
    }
    m.append(true)
}

fn time() -> TimestampNanosecondBuilder {
    TimestampNanosecondBuilder::new().with_timezone("UTC")
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

/// Columns shared by both signals: who sent the row.
struct Origin {
    service: StringBuilder,
    resource: Map,
    scope_name: StringBuilder,
    scope_version: StringBuilder,
}

impl Origin {
    fn new() -> Origin {
        Origin {
            service: StringBuilder::new(),
            resource: map(),
            scope_name: StringBuilder::new(),
            scope_version: StringBuilder::new(),
        }
    }

    fn put(
        &mut self,
        resource: Option<&Resource>,
        scope: Option<&InstrumentationScope>,
    ) -> Result<(), ArrowError> {
        let attrs = resource.map_or(&[][..], |r| r.attributes.as_slice());
        let service = attrs
            .iter()
            .rev()
            .find(|kv| kv.key == "service.name")
            .map(|kv| text(kv.value.as_ref()));
        self.service.append_option(service);
        put_map(&mut self.resource, attrs)?;
        self.scope_name
            .append_value(scope.map_or("", |s| s.name.as_str()));
        self.scope_version
            .append_value(scope.map_or("", |s| s.version.as_str()));
        Ok(())
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

/// One row per span.
pub fn spans(req: &ExportTraceServiceRequest) -> Result<RecordBatch, ArrowError> {
    let mut trace_id = FixedSizeBinaryBuilder::new(16);
    let mut span_id = FixedSizeBinaryBuilder::new(8);
    let mut parent = FixedSizeBinaryBuilder::new(8);
    let (mut state, mut name) = (StringBuilder::new(), StringBuilder::new());
    let mut kind = Int32Builder::new();
    let (mut start, mut end) = (time(), time());
    let mut duration = Int64Builder::new();
    let mut code = Int32Builder::new();
    let mut message = StringBuilder::new();
    let mut flags = UInt32Builder::new();
    let mut attrs = map();
    let (mut events, mut links) = (StringBuilder::new(), StringBuilder::new());
    let mut origin = Origin::new();
    for rs in &req.resource_spans {
        for ss in &rs.scope_spans {
            for s in &ss.spans {
                origin.put(rs.resource.as_ref(), ss.scope.as_ref())?;
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
                let ev: Vec<_> = s
                    .events
                    .iter()
                    .map(|e| json!({"time_unix_nano": e.time_unix_nano, "name": e.name, "attributes": attributes(&e.attributes)}))
                    .collect();
                events.append_value(serde_json::Value::Array(ev).to_string());
                let ln: Vec<_> = s
                    .links
                    .iter()
                    .map(|l| json!({"trace_id": hex(&l.trace_id), "span_id": hex(&l.span_id), "trace_state": l.trace_state, "attributes": attributes(&l.attributes)}))
                    .collect();
                links.append_value(serde_json::Value::Array(ln).to_string());
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
    let (mut t, mut observed) = (time(), time());
    let mut number = Int32Builder::new();
    let (mut severity, mut body, mut event) = (
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
    );
    let mut trace_id = FixedSizeBinaryBuilder::new(16);
    let mut span_id = FixedSizeBinaryBuilder::new(8);
    let mut flags = UInt32Builder::new();
    let mut attrs = map();
    let mut origin = Origin::new();
    for rl in &req.resource_logs {
        for sl in &rl.scope_logs {
            for r in &sl.log_records {
                origin.put(rl.resource.as_ref(), sl.scope.as_ref())?;
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
