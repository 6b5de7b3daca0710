//! Span rows read straight from the encoded requests and their span index:
//! decoding a batch with prost allocated every key and value, and the
//! allocations cost more than building the rows (profile of the e2e bench).
//! Resources and scopes, once each, and spans with events or links are
//! still decoded; those are few.

use std::fmt::Write;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, FixedSizeBinaryBuilder, Int32Builder, Int64Builder, StringBuilder,
    TimestampNanosecondBuilder, UInt32Builder,
};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::Span;
use pipeline::inplace::{for_each_raw_attribute_noting_events, span_scalars, AttrValue, RawValue};
use pipeline::rewrite::decode_field;
use pipeline::scan::{scan_traces, SpanIndex};
use pipeline::wire::{hex, Reader};
use pipeline::Batch;
use prost::Message;
use serde_json::json;

use super::schema::{batch, put_id, strings, time, Map, Origin, Who};
use crate::values::{attributes, text};

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

/// An id from the index, where absent is all zeros (not a valid id either).
fn set(id: &[u8]) -> &[u8] {
    if id.iter().all(|b| *b == 0) {
        &[]
    } else {
        id
    }
}

/// One attribute value as the map column shows it: as
/// [`crate::values::text`] would, without decoding the common kinds.
fn put_value(m: &mut Map, v: RawValue<'_>, scratch: &mut String) {
    let values = m.values();
    match v.get() {
        AttrValue::Str(s) => values.append_value(s),
        AttrValue::Bool(b) => values.append_value(if b { "true" } else { "false" }),
        AttrValue::Int(i) => values.append_value(itoa::Buffer::new().format(i)),
        AttrValue::Double(d) => {
            scratch.clear();
            let _ = write!(scratch, "{d}");
            values.append_value(&scratch);
        }
        AttrValue::Other if v.is_empty() => values.append_value(""),
        AttrValue::Other => {
            let any = AnyValue::decode(v.encoded()).ok();
            values.append_value(text(any.as_ref()));
        }
    }
}

/// The columns of span rows, filled request by request.
struct Columns {
    trace_id: FixedSizeBinaryBuilder,
    span_id: FixedSizeBinaryBuilder,
    parent: FixedSizeBinaryBuilder,
    state: StringBuilder,
    name: StringBuilder,
    kind: Int32Builder,
    start: TimestampNanosecondBuilder,
    end: TimestampNanosecondBuilder,
    duration: Int64Builder,
    code: Int32Builder,
    message: StringBuilder,
    flags: UInt32Builder,
    attrs: Map,
    events: StringBuilder,
    links: StringBuilder,
    origin: Origin,
}

impl Columns {
    /// Sized for `n` spans of `bytes` encoded bytes in all: no column holds
    /// more text than the spans' bytes.
    fn new(n: usize, bytes: usize) -> Columns {
        Columns {
            trace_id: FixedSizeBinaryBuilder::with_capacity(n, 16),
            span_id: FixedSizeBinaryBuilder::with_capacity(n, 8),
            parent: FixedSizeBinaryBuilder::with_capacity(n, 8),
            state: strings(n, 0),
            name: strings(n, n * 24),
            kind: Int32Builder::with_capacity(n),
            start: time(n),
            end: time(n),
            duration: Int64Builder::with_capacity(n),
            code: Int32Builder::with_capacity(n),
            message: strings(n, 0),
            flags: UInt32Builder::with_capacity(n),
            attrs: Map::with_capacity(
                None,
                strings(n * 12, bytes / 3),
                strings(n * 12, bytes / 2),
                n,
            ),
            events: strings(n, n * 2),
            links: strings(n, n * 2),
            origin: Origin::new(n, n * 256),
        }
    }

    /// Adds the spans of one validated request.
    fn request(&mut self, buf: &[u8], index: &SpanIndex) -> Result<(), ArrowError> {
        let who: Vec<Who> = index
            .resources
            .iter()
            .map(|r| Who::new(decode_field::<Resource>(buf, r.resource).as_ref()))
            .collect();
        let scopes: Vec<Option<InstrumentationScope>> = index
            .scopes
            .iter()
            .map(|s| decode_field(buf, s.scope))
            .collect();
        let mut scratch = String::new();
        for e in &index.spans {
            let field = &buf[e.range.0 as usize..e.range.1 as usize];
            let scope = &index.scopes[e.scope as usize];
            self.origin.put(
                &who[scope.resource as usize],
                scopes[e.scope as usize].as_ref(),
            );
            put_id(&mut self.trace_id, set(&e.trace_id), 16)?;
            put_id(&mut self.span_id, set(&e.span_id), 8)?;
            put_id(&mut self.parent, set(&e.parent_span_id), 8)?;
            let s = span_scalars(field);
            self.state.append_value(s.trace_state);
            self.name.append_value(s.name);
            self.kind.append_value(s.kind as i32);
            self.start.append_value(e.start_time_unix_nano as i64);
            self.end.append_value(e.end_time_unix_nano as i64);
            self.duration
                .append_value(e.end_time_unix_nano.saturating_sub(e.start_time_unix_nano) as i64);
            self.code.append_value(i32::from(e.status_code));
            self.message.append_value(s.status_message);
            self.flags.append_value(s.flags);
            let attrs = &mut self.attrs;
            let extras = for_each_raw_attribute_noting_events(field, |k, v| {
                attrs
                    .keys()
                    .append_value(std::str::from_utf8(k).unwrap_or_default());
                put_value(attrs, v, &mut scratch);
            });
            attrs.append(true)?;
            if extras {
                let span = whole_span(field);
                self.events.append_value(events_json(&span.events));
                self.links.append_value(links_json(&span.links));
            } else {
                self.events.append_value("[]");
                self.links.append_value("[]");
            }
        }
        Ok(())
    }

    fn finish(mut self) -> Result<RecordBatch, ArrowError> {
        let mut cols: Vec<(&'static str, ArrayRef, bool)> = vec![
            ("trace_id", Arc::new(self.trace_id.finish()), true),
            ("span_id", Arc::new(self.span_id.finish()), true),
            ("parent_span_id", Arc::new(self.parent.finish()), true),
            ("trace_state", Arc::new(self.state.finish()), false),
            ("name", Arc::new(self.name.finish()), false),
            ("kind", Arc::new(self.kind.finish()), false),
            ("start_time", Arc::new(self.start.finish()), false),
            ("end_time", Arc::new(self.end.finish()), false),
            ("duration_ns", Arc::new(self.duration.finish()), false),
            ("status_code", Arc::new(self.code.finish()), false),
            ("status_message", Arc::new(self.message.finish()), false),
            ("flags", Arc::new(self.flags.finish()), false),
            ("attributes", Arc::new(self.attrs.finish()), false),
            ("events", Arc::new(self.events.finish()), false),
            ("links", Arc::new(self.links.finish()), false),
        ];
        cols.extend(self.origin.finish());
        batch(cols)
    }
}

/// A span given as a whole `spans` field, decoded.
fn whole_span(field: &[u8]) -> Span {
    let mut r = Reader::new(field, 0, field.len(), "ScopeSpans");
    match r.next_field() {
        Ok(Some(f)) => Span::decode(&field[f.body.0..f.body.1]).unwrap_or_default(),
        _ => Span::default(),
    }
}

/// One row per span of a traces batch.
pub fn spans(b: &Batch) -> Result<RecordBatch, ArrowError> {
    let n = b.items();
    let mut cols = Columns::new(n, b.encoded_len());
    let mut scanned = SpanIndex::default();
    for req in &b.requests {
        let index = match &req.index {
            Some(i) => i.as_ref(),
            None => {
                scan_traces(&req.bytes, &mut scanned)
                    .map_err(|e| ArrowError::ParseError(e.to_string()))?;
                &scanned
            }
        };
        cols.request(&req.bytes, index)?;
    }
    cols.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Int32Type, Int64Type, TimestampNanosecondType, UInt32Type};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValue, KeyValueList};
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Status};
    use pipeline::batch::Request;
    use pipeline::Signal;

    fn kv(key: &str, value: Option<Any>) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value }),
            ..KeyValue::default()
        }
    }

    /// Every kind of attribute value, including an `AnyValue` with nothing
    /// set and a `KeyValue` with no value at all.
    fn every_kind() -> Vec<KeyValue> {
        vec![
            kv("s", Some(Any::StringValue("héllo".into()))),
            kv("i", Some(Any::IntValue(-42))),
            kv("big", Some(Any::IntValue(i64::MAX))),
            kv("d", Some(Any::DoubleValue(0.1 + 0.2))),
            kv("whole", Some(Any::DoubleValue(3.0))),
            kv("b", Some(Any::BoolValue(true))),
            kv("raw", Some(Any::BytesValue(vec![0, 0xff, 7]))),
            kv(
                "arr",
                Some(Any::ArrayValue(ArrayValue {
                    values: vec![AnyValue {
                        value: Some(Any::IntValue(1)),
                    }],
                })),
            ),
            kv(
                "map",
                Some(Any::KvlistValue(KeyValueList {
                    values: vec![kv("k", Some(Any::StringValue("v".into())))],
                })),
            ),
            kv("unset", None),
            KeyValue {
                key: "none".into(),
                value: None,
                ..KeyValue::default()
            },
        ]
    }

    fn request(seed: u8) -> ExportTraceServiceRequest {
        let span = |n: u8, parent: bool| Span {
            trace_id: vec![seed; 16],
            span_id: vec![n; 8],
            parent_span_id: if parent { vec![9; 8] } else { vec![] },
            trace_state: if n.is_multiple_of(2) {
                "k=v".into()
            } else {
                String::new()
            },
            name: format!("op-{seed}-{n}"),
            kind: i32::from(n % 6),
            start_time_unix_nano: 1_700_000_000_000_000_000 + u64::from(n),
            end_time_unix_nano: 1_700_000_000_500_000_000 + u64::from(n),
            attributes: if n == 1 { every_kind() } else { vec![] },
            events: if n == 2 {
                vec![Event {
                    time_unix_nano: 5,
                    name: "ev".into(),
                    attributes: vec![kv("x", Some(Any::IntValue(1)))],
                    dropped_attributes_count: 0,
                }]
            } else {
                vec![]
            },
            links: if n == 3 {
                vec![Link {
                    trace_id: vec![1; 16],
                    span_id: vec![2; 8],
                    trace_state: "a=b".into(),
                    attributes: vec![kv("y", Some(Any::BoolValue(false)))],
                    ..Link::default()
                }]
            } else {
                vec![]
            },
            status: (n > 1).then(|| Status {
                message: if n == 2 { "boom".into() } else { String::new() },
                code: i32::from(n % 3),
            }),
            flags: u32::from(n) * 0x101,
            ..Span::default()
        };
        ExportTraceServiceRequest {
            resource_spans: vec![
                ResourceSpans {
                    resource: Some(Resource {
                        attributes: vec![
                            kv("service.name", Some(Any::StringValue(format!("svc{seed}")))),
                            kv("host.cpus", Some(Any::IntValue(8))),
                        ],
                        ..Resource::default()
                    }),
                    scope_spans: vec![
                        ScopeSpans {
                            scope: Some(InstrumentationScope {
                                name: "lib".into(),
                                version: "1.2".into(),
                                ..InstrumentationScope::default()
                            }),
                            spans: vec![span(1, false), span(2, true)],
                            ..ScopeSpans::default()
                        },
                        ScopeSpans {
                            scope: None,
                            spans: vec![span(3, true)],
                            ..ScopeSpans::default()
                        },
                    ],
                    ..ResourceSpans::default()
                },
                ResourceSpans {
                    resource: None,
                    scope_spans: vec![ScopeSpans {
                        spans: vec![span(4, true)],
                        ..ScopeSpans::default()
                    }],
                    ..ResourceSpans::default()
                },
            ],
        }
    }

    /// Each span as the row should show it, worked out from the decoded
    /// request.
    fn expected(req: &ExportTraceServiceRequest) -> Vec<String> {
        let id = |b: &[u8]| if b.is_empty() { "null".into() } else { hex(b) };
        let mut out = Vec::new();
        for rs in &req.resource_spans {
            let res = rs.resource.clone().unwrap_or_default();
            let service = res
                .attributes
                .iter()
                .find(|kv| kv.key == "service.name")
                .map(|kv| text(kv.value.as_ref()).into_owned());
            for ss in &rs.scope_spans {
                let scope = ss.scope.clone().unwrap_or_default();
                for s in &ss.spans {
                    let st = s.status.clone().unwrap_or_default();
                    let attrs: Vec<String> = s
                        .attributes
                        .iter()
                        .map(|kv| format!("{}={}", kv.key, text(kv.value.as_ref())))
                        .collect();
                    out.push(format!(
                        "{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{:?}|{}|{}|{}",
                        id(&s.trace_id),
                        id(&s.span_id),
                        id(&s.parent_span_id),
                        s.trace_state,
                        s.name,
                        s.kind,
                        s.start_time_unix_nano,
                        s.end_time_unix_nano,
                        s.end_time_unix_nano - s.start_time_unix_nano,
                        st.code,
                        st.message,
                        s.flags,
                        attrs.join(","),
                        events_json(&s.events),
                        links_json(&s.links),
                        service,
                        attributes(&res.attributes),
                        scope.name,
                        scope.version,
                    ));
                }
            }
        }
        out
    }

    fn rows(b: &RecordBatch) -> Vec<String> {
        let col = |n: &str| b.column_by_name(n).unwrap();
        let id = |n: &str, i: usize| {
            let a = col(n).as_fixed_size_binary();
            if a.is_null(i) {
                "null".to_string()
            } else {
                hex(a.value(i))
            }
        };
        let s = |n: &str, i: usize| col(n).as_string::<i32>().value(i).to_string();
        let i32s = |n: &str, i: usize| col(n).as_primitive::<Int32Type>().value(i);
        let t = |n: &str, i: usize| col(n).as_primitive::<TimestampNanosecondType>().value(i);
        (0..b.num_rows())
            .map(|i| {
                let m = col("attributes").as_map().value(i);
                let (k, v) = (
                    m.column(0).as_string::<i32>(),
                    m.column(1).as_string::<i32>(),
                );
                let attrs: Vec<String> = (0..m.len())
                    .map(|j| format!("{}={}", k.value(j), v.value(j)))
                    .collect();
                let service = col("service_name").as_string::<i32>();
                format!(
                    "{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{:?}|{}|{}|{}",
                    id("trace_id", i),
                    id("span_id", i),
                    id("parent_span_id", i),
                    s("trace_state", i),
                    s("name", i),
                    i32s("kind", i),
                    t("start_time", i),
                    t("end_time", i),
                    col("duration_ns").as_primitive::<Int64Type>().value(i),
                    i32s("status_code", i),
                    s("status_message", i),
                    col("flags").as_primitive::<UInt32Type>().value(i),
                    attrs.join(","),
                    s("events", i),
                    s("links", i),
                    (!service.is_null(i)).then(|| service.value(i).to_string()),
                    s("resource_attributes", i),
                    s("scope_name", i),
                    s("scope_version", i),
                )
            })
            .collect()
    }

    #[test]
    fn rows_from_the_wire_match_the_decoded_request_field_by_field() {
        let (a, b) = (request(1), request(2));
        let scanned = Request::parse(Signal::Traces, a.encode_to_vec().into()).unwrap();
        // A request without its index (as some processors leave it) is
        // scanned by the exporter.
        let unscanned = Request {
            bytes: b.encode_to_vec().into(),
            items: 4,
            index: None,
            client: None,
        };
        let batch = Batch {
            signal: Signal::Traces,
            requests: vec![scanned, unscanned],
        };
        let got = rows(&spans(&batch).unwrap());
        let mut want = expected(&a);
        want.extend(expected(&b));
        assert_eq!(got.len(), 8);
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g, w);
        }
        // The expectations are not vacuous: every kind was written as text.
        assert!(got[0].contains("s=héllo,i=-42,big=9223372036854775807,d=0.30000000000000004,whole=3,b=true,raw=00ff07,arr=[1],map={\"k\":\"v\"},unset=,none="), "{}", got[0]);
        assert!(got[1].contains("\"name\":\"ev\""), "{}", got[1]);
        assert!(got[2].contains("\"trace_state\":\"a=b\""), "{}", got[2]);
    }
}
