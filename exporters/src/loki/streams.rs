//! Turning OTLP log records into Loki streams: labels from a list of
//! attributes (sanitized to Loki's label rules), the rest as structured
//! metadata or written into the line, entries ordered per stream.

use std::borrow::Cow;
use std::collections::HashMap;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use pipeline::wire::hex;

pub use crate::values::{json, text, Text};
use serde_json::{Map, Value};

use super::config::{LineFormat, LokiConfig};

/// One entry of a stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry<'a> {
    /// Nanoseconds since the Unix epoch.
    pub time_ns: u64,
    /// The log line.
    pub line: Text<'a>,
    /// Structured metadata, in a stable order.
    pub metadata: Vec<(Text<'a>, Text<'a>)>,
}

/// Entries that share one label set.
#[derive(Debug, Clone, PartialEq)]
pub struct Stream<'a> {
    /// Label names (sanitized) and values, sorted by name.
    pub labels: Vec<(Text<'a>, Text<'a>)>,
    /// Entries, oldest first.
    pub entries: Vec<Entry<'a>>,
}

impl Stream<'_> {
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

/// The `level` of a record: its severity number's range, else its
/// severity text in lower case; `None` when it has neither.
pub fn level(r: &LogRecord) -> Option<Text<'_>> {
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
        return Some(Cow::Borrowed(by_number));
    }
    (!r.severity_text.is_empty()).then(|| Cow::Owned(r.severity_text.to_lowercase()))
}

/// Attribute keys and their label-safe names.
pub type Names<'a> = HashMap<&'a str, String>;

/// The sanitized name of every attribute key in a request: keys repeat
/// from record to record, so each is sanitized once.
pub fn names(req: &ExportLogsServiceRequest) -> Names<'_> {
    let mut names = Names::new();
    for rl in &req.resource_logs {
        let resource = rl.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
        let records = rl.scope_logs.iter().flat_map(|sl| &sl.log_records);
        for a in resource.iter().chain(records.flat_map(|r| &r.attributes)) {
            if !names.contains_key(a.key.as_str()) {
                names.insert(&a.key, sanitize(&a.key));
            }
        }
    }
    names
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

    /// The streams of a request, in order of first appearance; `names`
    /// is [`names`] of the same request.
    pub fn streams<'a>(
        &'a self,
        req: &'a ExportLogsServiceRequest,
        names: &'a Names<'a>,
        now_ns: u64,
    ) -> Vec<Stream<'a>> {
        let mut streams: Vec<Stream<'a>> = Vec::new();
        let mut by_labels: HashMap<Vec<(Text<'a>, Text<'a>)>, usize> = HashMap::new();
        let mut labels: Vec<(Text<'a>, Text<'a>)> = Vec::new();
        let mut used: Vec<&'a str> = Vec::new();
        for rl in &req.resource_logs {
            let resource = rl.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
            for sl in &rl.scope_logs {
                for r in &sl.log_records {
                    self.labels_of(r, resource, &mut labels, &mut used);
                    let entry = self.entry(r, resource, &used, names, now_ns);
                    let at = match by_labels.get(&labels) {
                        Some(at) => *at,
                        None => {
                            by_labels.insert(labels.clone(), streams.len());
                            streams.push(Stream {
                                labels: labels.clone(),
                                entries: Vec::new(),
                            });
                            streams.len() - 1
                        }
                    };
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

    /// Fills `labels` with the record's labels (sorted) and `used` with the
    /// attribute keys they came from.
    fn labels_of<'a>(
        &'a self,
        r: &'a LogRecord,
        resource: &'a [KeyValue],
        labels: &mut Vec<(Text<'a>, Text<'a>)>,
        used: &mut Vec<&'a str>,
    ) {
        labels.clear();
        used.clear();
        for (key, name) in &self.labels {
            if labels.iter().any(|(n, _)| n == name) {
                continue;
            }
            let attr = || {
                find(&r.attributes, key)
                    .or_else(|| find(resource, key))
                    .map(|a| text(a.value.as_ref()))
            };
            let value = if key == "level" {
                level(r).or_else(attr)
            } else {
                attr()
            };
            if let Some(v) = value.filter(|v| !v.is_empty()) {
                labels.push((Cow::Borrowed(name), v));
                used.push(key);
            }
        }
        if labels.is_empty() {
            // Loki refuses a stream without labels; its own OTLP intake
            // uses this one.
            labels.push((
                Cow::Borrowed("service_name"),
                Cow::Borrowed("unknown_service"),
            ));
        }
        labels.sort();
    }

    fn entry<'a>(
        &self,
        r: &'a LogRecord,
        resource: &'a [KeyValue],
        used: &[&str],
        names: &'a Names<'a>,
        now_ns: u64,
    ) -> Entry<'a> {
        let time_ns = [r.time_unix_nano, r.observed_time_unix_nano]
            .into_iter()
            .find(|t| *t > 0)
            .unwrap_or(now_ns);
        let unused = |a: &&KeyValue| !used.contains(&a.key.as_str());
        let ids = [("trace_id", &r.trace_id), ("span_id", &r.span_id)];
        if self.structured_metadata {
            let mut metadata: Vec<(Text<'a>, Text<'a>)> =
                Vec::with_capacity(r.attributes.len() + resource.len() + 3);
            for a in r.attributes.iter().chain(resource).filter(unused) {
                let name = names.get(a.key.as_str()).map_or_else(
                    || Cow::Owned(sanitize(&a.key)),
                    |n| Cow::Borrowed(n.as_str()),
                );
                if !metadata.iter().any(|(n, _)| *n == name) {
                    metadata.push((name, text(a.value.as_ref())));
                }
            }
            for (name, id) in ids {
                if !id.is_empty() {
                    metadata.push((Cow::Borrowed(name), Cow::Owned(hex(id))));
                }
            }
            if !r.severity_text.is_empty() {
                metadata.push((
                    Cow::Borrowed("severity_text"),
                    Cow::Borrowed(&r.severity_text),
                ));
            }
            return Entry {
                time_ns,
                line: text(r.body.as_ref()),
                metadata,
            };
        }
        let attrs: Vec<&KeyValue> = r.attributes.iter().filter(unused).collect();
        let res: Vec<&KeyValue> = resource.iter().filter(unused).collect();
        let severity = level(r).unwrap_or_default().into_owned();
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
                let mut pairs = vec![("body".to_string(), text(r.body.as_ref()).into_owned())];
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
                            text(a.value.as_ref()).into_owned(),
                        ));
                    }
                }
                logfmt(&pairs)
            }
        };
        Entry {
            time_ns,
            line: Cow::Owned(line),
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
