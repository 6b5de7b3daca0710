//! Entries as one OTLP logs request: one `ResourceLogs` per distinct
//! resource, in the order they first appear.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, KeyValueList};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use serde_json::{Map, Value};

use super::field::Entry;

/// A JSON value as an OTLP value, moved (no string is copied).
fn any(v: Value) -> AnyValue {
    let value = match v {
        Value::Null => None,
        Value::Bool(b) => Some(Any::BoolValue(b)),
        Value::Number(n) => Some(match n.as_i64() {
            Some(i) => Any::IntValue(i),
            None => Any::DoubleValue(n.as_f64().unwrap_or(0.0)),
        }),
        Value::String(s) => Some(Any::StringValue(s)),
        Value::Array(a) => Some(Any::ArrayValue(ArrayValue {
            values: a.into_iter().map(any).collect(),
        })),
        Value::Object(m) => Some(Any::KvlistValue(KeyValueList { values: kvs(m) })),
    };
    AnyValue { value }
}

fn kvs(m: Map<String, Value>) -> Vec<KeyValue> {
    m.into_iter()
        .map(|(key, v)| KeyValue {
            key,
            value: Some(any(v)),
            ..Default::default()
        })
        .collect()
}

/// A hash of a resource map, to group entries without comparing maps or
/// writing them out for every entry.
fn hash_of(m: &Map<String, Value>) -> u64 {
    use std::hash::{Hash, Hasher};
    fn walk(v: &Value, h: &mut impl Hasher) {
        match v {
            Value::Null => 0u8.hash(h),
            Value::Bool(b) => (1u8, b).hash(h),
            Value::Number(n) => (2u8, n.to_string()).hash(h),
            Value::String(s) => (3u8, s).hash(h),
            Value::Array(a) => {
                (4u8, a.len()).hash(h);
                a.iter().for_each(|v| walk(v, h));
            }
            Value::Object(o) => {
                (5u8, o.len()).hash(h);
                for (k, v) in o {
                    k.hash(h);
                    walk(v, h);
                }
            }
        }
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    m.len().hash(&mut h);
    for (k, v) in m {
        k.hash(&mut h);
        walk(v, &mut h);
    }
    h.finish()
}

/// The request's bytes.
pub fn encode(entries: Vec<Entry>) -> Vec<u8> {
    let observed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut groups: Vec<(Map<String, Value>, Vec<LogRecord>)> = Vec::new();
    // Groups by hash, then by equality within a hash (collisions).
    let mut by_hash: std::collections::HashMap<u64, Vec<usize>> = Default::default();
    for e in entries {
        let record = LogRecord {
            time_unix_nano: e.timestamp.unwrap_or(0),
            observed_time_unix_nano: observed,
            severity_number: e.severity,
            severity_text: e.severity_text,
            body: (!e.body.is_null()).then(|| any(e.body)),
            attributes: kvs(e.attributes),
            ..Default::default()
        };
        let same = by_hash.entry(hash_of(&e.resource)).or_default();
        match same.iter().find(|&&i| groups[i].0 == e.resource) {
            Some(&i) => groups[i].1.push(record),
            None => {
                same.push(groups.len());
                groups.push((e.resource, vec![record]));
            }
        }
    }
    ExportLogsServiceRequest {
        resource_logs: groups
            .into_iter()
            .map(|(resource, log_records)| ResourceLogs {
                resource: Some(Resource {
                    attributes: kvs(resource),
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    log_records,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    }
    .encode_to_vec()
}
