//! Turning OTLP log records into Loki streams: labels from a list of
//! attributes (sanitized to Loki's label rules), the rest as structured
//! metadata or written into the line, entries ordered per stream.

use std::collections::HashMap;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use pipeline::wire::hex;
use serde_json::{Map, Value};

use super::config::{LineFormat, LokiConfig};

/// One entry of a stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Nanoseconds since the Unix epoch.
    pub time_ns: u64,
    /// The log line.
    pub line: String,
    /// Structured metadata, in a stable order.
    pub metadata: Vec<(String, String)>,
}

/// Entries that share one label set.
#[derive(Debug, Clone, PartialEq)]
pub struct Stream {
    /// Label names (sanitized) and values, sorted by name.
    pub labels: Vec<(String, String)>,
    /// Entries, oldest first.
    pub entries: Vec<Entry>,
}

impl Stream {
    /// The label set as a LogQL selector: `{a="x", b="y"}`.
    pub fn selector(&self) -> String {
        let mut s = String::from("{");
        for (i, (k, v)) in self.labels.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            s.push_str(k);
            s.push_str("=\"");
            for c in v.chars() {
                match c {
                    '\\' => s.push_str("\\\\"),
                    '"' => s.push_str("\\\""),
                    '\n' => s.push_str("\\n"),
                    c => s.push(c),
                }
            }
            s.push('"');
        }
        s.push('}');
        s
    }
}

/// A name Loki accepts as a label: `[a-zA-Z_][a-zA-Z0-9_]*`; anything
/// else becomes `_` (so `service.name` is `service_name`).
pub fn sanitize(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// A value as text: strings as they are, other scalars printed, arrays
/// and maps as JSON.
pub fn text(v: Option<&AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        Some(Any::StringValue(s)) => s.clone(),
        Some(Any::IntValue(i)) => i.to_string(),
        Some(Any::DoubleValue(d)) => d.to_string(),
        Some(Any::BoolValue(b)) => b.to_string(),
        Some(Any::BytesValue(b)) => hex(b),
        None => String::new(),
        Some(_) => json(v).to_string(),
    }
}

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

/// The `level` of a record: its severity number's range, else its
/// severity text in lower case; `None` when it has neither.
pub fn level(r: &LogRecord) -> Option<String> {
    let by_number = match r.severity_number {
        1..=4 => "trace",
        5..=8 => "debug",
        9..=12 => "info",
        13..=16 => "warn",
        17..=20 => "error",
        21..=24 => "fatal",
        _ => "",
    };
    if !by_number.is_empty() {
        return Some(by_number.into());
    }
    (!r.severity_text.is_empty()).then(|| r.severity_text.to_lowercase())
}

fn find<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a KeyValue> {
    attrs.iter().find(|a| a.key == key)
}

/// Turns requests into streams as a config says.
pub struct Shaper {
    /// (attribute key, label name) in config order.
    labels: Vec<(String, String)>,
    structured_metadata: bool,
    line_format: LineFormat,
}

impl Shaper {
    /// The shaper for a config.
    pub fn new(cfg: &LokiConfig) -> Shaper {
        Shaper {
            labels: cfg
                .labels
                .iter()
                .map(|k| (k.clone(), sanitize(k)))
                .collect(),
            structured_metadata: cfg.structured_metadata,
            line_format: cfg.line_format,
        }
    }

    /// The streams of a request, in order of first appearance.
    pub fn streams(&self, req: &ExportLogsServiceRequest, now_ns: u64) -> Vec<Stream> {
        let mut streams: Vec<Stream> = Vec::new();
        let mut by_labels: HashMap<Vec<(String, String)>, usize> = HashMap::new();
        for rl in &req.resource_logs {
            let resource: &[KeyValue] = rl.resource.as_ref().map_or(&[], |r| &r.attributes);
            for sl in &rl.scope_logs {
                for r in &sl.log_records {
                    let (labels, used) = self.labels_of(r, resource);
                    let entry = self.entry(r, resource, &used, now_ns);
                    let at = *by_labels.entry(labels.clone()).or_insert_with(|| {
                        streams.push(Stream {
                            labels,
                            entries: Vec::new(),
                        });
                        streams.len() - 1
                    });
                    streams[at].entries.push(entry);
                }
            }
        }
        for s in &mut streams {
            // Loki refuses entries older than the newest of their stream
            // unless out-of-order writes are on; send each stream in order.
            s.entries.sort_by_key(|e| e.time_ns);
        }
        streams
    }

    /// The record's labels, and which attribute keys they used.
    fn labels_of(
        &self,
        r: &LogRecord,
        resource: &[KeyValue],
    ) -> (Vec<(String, String)>, Vec<String>) {
        let mut labels: Vec<(String, String)> = Vec::new();
        let mut used = Vec::new();
        for (key, name) in &self.labels {
            if labels.iter().any(|(n, _)| n == name) {
                continue;
            }
            let value = if key == "level" {
                level(r).or_else(|| {
                    find(&r.attributes, key)
                        .or_else(|| find(resource, key))
                        .map(|a| text(a.value.as_ref()))
                })
            } else {
                find(&r.attributes, key)
                    .or_else(|| find(resource, key))
                    .map(|a| text(a.value.as_ref()))
            };
            if let Some(v) = value.filter(|v| !v.is_empty()) {
                labels.push((name.clone(), v));
                used.push(key.clone());
            }
        }
        if labels.is_empty() {
            // Loki refuses a stream without labels; its own OTLP intake
            // uses this one.
            labels.push(("service_name".into(), "unknown_service".into()));
        }
        labels.sort();
        (labels, used)
    }

    fn entry(&self, r: &LogRecord, resource: &[KeyValue], used: &[String], now_ns: u64) -> Entry {
        let time_ns = [r.time_unix_nano, r.observed_time_unix_nano]
            .into_iter()
            .find(|t| *t > 0)
            .unwrap_or(now_ns);
        let unused = |a: &&KeyValue| !used.contains(&a.key);
        let attrs: Vec<&KeyValue> = r.attributes.iter().filter(unused).collect();
        let res: Vec<&KeyValue> = resource.iter().filter(unused).collect();
        let ids = [("trace_id", &r.trace_id), ("span_id", &r.span_id)];
        if self.structured_metadata {
            let mut metadata: Vec<(String, String)> = Vec::new();
            for a in attrs.iter().chain(&res) {
                let name = sanitize(&a.key);
                if !metadata.iter().any(|(n, _)| *n == name) {
                    metadata.push((name, text(a.value.as_ref())));
                }
            }
            for (name, id) in ids {
                if !id.is_empty() {
                    metadata.push((name.into(), hex(id)));
                }
            }
            if !r.severity_text.is_empty() {
                metadata.push(("severity_text".into(), r.severity_text.clone()));
            }
            return Entry {
                time_ns,
                line: text(r.body.as_ref()),
                metadata,
            };
        }
        let severity = level(r).unwrap_or_default();
        let line = match self.line_format {
            LineFormat::Json => {
                let mut o = Map::new();
                o.insert("body".into(), json(r.body.as_ref()));
                if !severity.is_empty() {
                    o.insert("severity".into(), Value::String(severity));
                }
                for (name, id) in ids {
                    if !id.is_empty() {
                        o.insert(name.replace('_', ""), Value::String(hex(id)));
                    }
                }
                for (key, list) in [("attributes", &attrs), ("resources", &res)] {
                    if !list.is_empty() {
                        let m = list
                            .iter()
                            .map(|a| (a.key.clone(), json(a.value.as_ref())))
                            .collect();
                        o.insert(key.into(), Value::Object(m));
                    }
                }
                Value::Object(o).to_string()
            }
            LineFormat::Logfmt => {
                let mut pairs = vec![("body".to_string(), text(r.body.as_ref()))];
                if !severity.is_empty() {
                    pairs.push(("severity".into(), severity));
                }
                for (name, id) in ids {
                    if !id.is_empty() {
                        pairs.push((name.replace('_', ""), hex(id)));
                    }
                }
                for (prefix, list) in [("attribute_", &attrs), ("resource_", &res)] {
                    for a in list.iter() {
                        pairs.push((
                            format!("{prefix}{}", sanitize(&a.key)),
                            text(a.value.as_ref()),
                        ));
                    }
                }
                logfmt(&pairs)
            }
        };
        Entry {
            time_ns,
            line,
            metadata: Vec::new(),
        }
    }
}

/// `k=v k2="v 2"`: values with spaces, quotes, `=` or nothing are quoted.
pub fn logfmt(pairs: &[(String, String)]) -> String {
    let mut s = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(k);
        s.push('=');
        let quote = v.is_empty()
            || v.chars()
                .any(|c| c <= ' ' || c == '"' || c == '=' || c == '\\');
        if !quote {
            s.push_str(v);
            continue;
        }
        s.push('"');
        for c in v.chars() {
            match c {
                '"' => s.push_str("\\\""),
                '\\' => s.push_str("\\\\"),
                '\n' => s.push_str("\\n"),
                '\t' => s.push_str("\\t"),
                c => s.push(c),
            }
        }
        s.push('"');
    }
    s
}

#[cfg(test)]
mod tests;
