//! OTLP values as JSON, for exporters that write them into other formats
//! (Loki lines, TimescaleDB `jsonb` columns).

use std::borrow::Cow;

use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use pipeline::wire::hex;
use serde_json::Value;

/// A value as JSON.
pub fn json(v: Option<&AnyValue>) -> Value {
    match v.and_then(|v| v.value.as_ref()) {
        None => Value::Null,
        Some(Any::StringValue(s)) => Value::String(s.clone()),
        Some(Any::IntValue(i)) => Value::from(*i),
        Some(Any::DoubleValue(d)) => Value::from(*d),
        Some(Any::BoolValue(b)) => Value::Bool(*b),
        Some(Any::BytesValue(b)) => Value::String(hex(b)),
        Some(Any::ArrayValue(a)) => Value::Array(a.values.iter().map(|x| json(Some(x))).collect()),
        Some(Any::KvlistValue(l)) => Value::Object(
            l.values
                .iter()
                .map(|kv| (kv.key.clone(), json(kv.value.as_ref())))
                .collect(),
        ),
        // A profiles-only dictionary reference: nothing to show.
        Some(Any::StringValueStrindex(_)) => Value::Null,
    }
}

/// Attributes as one JSON object (a repeated key keeps its last value).
pub fn attributes(kvs: &[KeyValue]) -> Value {
    Value::Object(
        kvs.iter()
            .map(|kv| (kv.key.clone(), json(kv.value.as_ref())))
            .collect(),
    )
}

/// Text borrowed from the decoded request where it can be.
pub type Text<'a> = Cow<'a, str>;

/// A value as text: strings as they are (borrowed), other scalars
/// printed, arrays and maps as JSON.
pub fn text(v: Option<&AnyValue>) -> Text<'_> {
    match v.and_then(|v| v.value.as_ref()) {
        Some(Any::StringValue(s)) => Cow::Borrowed(s),
        Some(Any::IntValue(i)) => Cow::Owned(i.to_string()),
        Some(Any::DoubleValue(d)) => Cow::Owned(d.to_string()),
        Some(Any::BoolValue(b)) => Cow::Borrowed(if *b { "true" } else { "false" }),
        Some(Any::BytesValue(b)) => Cow::Owned(hex(b)),
        None => Cow::Borrowed(""),
        Some(_) => Cow::Owned(json(v).to_string()),
    }
}
