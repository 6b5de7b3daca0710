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

/// A JSON value as an OTLP value.
fn any(v: &Value) -> AnyValue {
    let value = match v {
        Value::Null => None,
        Value::Bool(b) => Some(Any::BoolValue(*b)),
        Value::Number(n) => Some(match n.as_i64() {
            Some(i) => Any::IntValue(i),
            None => Any::DoubleValue(n.as_f64().unwrap_or(0.0)),
        }),
        Value::String(s) => Some(Any::StringValue(s.clone())),
        Value::Array(a) => Some(Any::ArrayValue(ArrayValue {
            values: a.iter().map(any).collect(),
        })),
        Value::Object(m) => Some(Any::KvlistValue(KeyValueList { values: kvs(m) })),
    };
    AnyValue { value }
}

fn kvs(m: &Map<String, Value>) -> Vec<KeyValue> {
    m.iter()
        .map(|(k, v)| KeyValue {
            key: k.clone(),
            value: Some(any(v)),
            ..Default::default()
        })
        .collect()
}

/// The request's bytes.
pub fn encode(entries: &[Entry]) -> Vec<u8> {
    let observed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut groups: Vec<(&Map<String, Value>, Vec<LogRecord>)> = Vec::new();
    for e in entries {
        let record = LogRecord {
            time_unix_nano: e.timestamp.unwrap_or(0),
            observed_time_unix_nano: observed,
            severity_number: e.severity,
            severity_text: e.severity_text.clone(),
            body: (!e.body.is_null()).then(|| any(&e.body)),
            attributes: kvs(&e.attributes),
            ..Default::default()
        };
        match groups.iter_mut().find(|(r, _)| **r == e.resource) {
            Some((_, records)) => records.push(record),
            None => groups.push((&e.resource, vec![record])),
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
