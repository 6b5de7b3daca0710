//! Routing keys other than the trace id: the bytes hashed onto the ring
//! for a service, a resource, a metric, a stream, or listed attributes, and
//! the split of decoded logs and metrics by owner.
//!
//! `service` and `traceID` hash the same bytes as otelcol (the name, the 16
//! raw id bytes). `resource`, `streamID` and `attributes` hash our own
//! canonical text (sorted `key=value|` pairs), so they are stable across
//! Observatory instances but are not otelcol's identity hashes: in a fleet
//! that mixes the two, route those keys from one kind only.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::{Metric, ResourceMetrics, ScopeMetrics};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::config::RoutingKey;
use super::ring::Ring;
use crate::values::text;

/// What a key is built from: the resource, the scope, and the item's own
/// attributes (span, log record or data point).
pub struct Source<'a> {
    /// The item's resource.
    pub resource: Option<&'a Resource>,
    /// The item's scope.
    pub scope: Option<&'a InstrumentationScope>,
    /// The item's own attributes.
    pub item: &'a [KeyValue],
}

/// `service.name` of a resource, as bytes (empty when absent).
pub fn service(resource: Option<&Resource>) -> Vec<u8> {
    resource
        .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
        .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
            Value::StringValue(s) => Some(s.clone().into_bytes()),
            _ => None,
        })
        .unwrap_or_default()
}

/// Attributes as sorted `key=value|` text.
fn canonical(out: &mut String, kvs: &[KeyValue]) {
    let mut sorted: Vec<&KeyValue> = kvs.iter().collect();
    sorted.sort_by(|a, b| a.key.cmp(&b.key));
    for kv in sorted {
        out.push_str(&kv.key);
        out.push('=');
        out.push_str(&text(kv.value.as_ref()));
        out.push('|');
    }
}

/// The resource's identity: all its attributes, sorted.
pub fn resource(r: Option<&Resource>) -> Vec<u8> {
    let mut s = String::new();
    canonical(&mut s, r.map_or(&[], |r| &r.attributes));
    s.into_bytes()
}

/// `routing_attributes` in order, each looked up on the resource, then the
/// scope, then the item (the first that has it); a missing one is `name=|`.
pub fn attributes(names: &[String], src: &Source) -> Vec<u8> {
    let mut s = String::new();
    for name in names {
        let found = src
            .resource
            .and_then(|r| pipeline::actions::attribute(&r.attributes, name))
            .or_else(|| {
                src.scope
                    .and_then(|sc| pipeline::actions::attribute(&sc.attributes, name))
            })
            .or_else(|| pipeline::actions::attribute(src.item, name));
        s.push_str(name);
        s.push('=');
        if let Some(v) = found {
            s.push_str(&text(Some(
                &opentelemetry_proto::tonic::common::v1::AnyValue {
                    value: Some(v.clone()),
                },
            )));
        }
        s.push('|');
    }
    s.into_bytes()
}

/// A data point's stream: resource, scope, metric name and the point's
/// attributes.
fn stream(src: &Source, metric: &str) -> Vec<u8> {
    let mut s = String::from_utf8(resource(src.resource)).unwrap_or_default();
    if let Some(sc) = src.scope {
        s.push_str(&format!("scope={}@{}|", sc.name, sc.version));
    }
    s.push_str(&format!("metric={metric}|"));
    canonical(&mut s, src.item);
    s.into_bytes()
}

/// Whether `key` decides per resource (so a resource goes whole).
fn per_resource(key: RoutingKey) -> bool {
    matches!(key, RoutingKey::Service | RoutingKey::Resource)
}

fn resource_key(key: RoutingKey, r: Option<&Resource>) -> Vec<u8> {
    match key {
        RoutingKey::Service => service(r),
        _ => resource(r),
    }
}

/// Logs by owner: whole resources for `service`/`resource`; record by
/// record for `traceID` (the record's trace id) and `attributes`.
pub fn split_logs(
    ring: &Ring,
    key: RoutingKey,
    names: &[String],
    d: ExportLogsServiceRequest,
) -> BTreeMap<usize, ExportLogsServiceRequest> {
    let mut out: BTreeMap<usize, ExportLogsServiceRequest> = BTreeMap::new();
    for rl in d.resource_logs {
        if per_resource(key) {
            if let Some(o) = ring.owner(&resource_key(key, rl.resource.as_ref())) {
                out.entry(o).or_default().resource_logs.push(rl);
            }
            continue;
        }
        let mut mine: BTreeMap<usize, ResourceLogs> = BTreeMap::new();
        for sl in &rl.scope_logs {
            let mut by: BTreeMap<usize, ScopeLogs> = BTreeMap::new();
            for lr in &sl.log_records {
                let k = match key {
                    RoutingKey::TraceId => lr.trace_id.clone(),
                    _ => attributes(
                        names,
                        &Source {
                            resource: rl.resource.as_ref(),
                            scope: sl.scope.as_ref(),
                            item: &lr.attributes,
                        },
                    ),
                };
                let Some(o) = ring.owner(&k) else { continue };
                by.entry(o)
                    .or_insert_with(|| ScopeLogs {
                        scope: sl.scope.clone(),
                        log_records: Vec::new(),
                        schema_url: sl.schema_url.clone(),
                    })
                    .log_records
                    .push(lr.clone());
            }
            for (o, part) in by {
                mine.entry(o)
                    .or_insert_with(|| ResourceLogs {
                        resource: rl.resource.clone(),
                        scope_logs: Vec::new(),
                        schema_url: rl.schema_url.clone(),
                    })
                    .scope_logs
                    .push(part);
            }
        }
        for (o, part) in mine {
            out.entry(o).or_default().resource_logs.push(part);
        }
    }
    out
}

/// Splits `points` by the owner of each one's key.
fn group<T>(points: Vec<T>, mut owner: impl FnMut(&T) -> Option<usize>) -> BTreeMap<usize, Vec<T>> {
    let mut by: BTreeMap<usize, Vec<T>> = BTreeMap::new();
    for p in points {
        if let Some(o) = owner(&p) {
            by.entry(o).or_default().push(p);
        }
    }
    by
}

/// One metric split by the owner of each data point.
fn split_points(
    m: Metric,
    mut owner: impl FnMut(&[KeyValue]) -> Option<usize>,
) -> BTreeMap<usize, Metric> {
    let Metric {
        name,
        description,
        unit,
        metadata,
        data,
    } = m;
    let mut out = BTreeMap::new();
    // Each kind of data holds its points the same way: group them, and
    // give each owner the kind's settings with its points.
    macro_rules! by_point {
        ($kind:ident, $d:expr) => {{
            let mut d = $d;
            for (o, pts) in group(std::mem::take(&mut d.data_points), |p| owner(&p.attributes)) {
                let mut part = d.clone();
                part.data_points = pts;
                let metric = Metric {
                    name: name.clone(),
                    description: description.clone(),
                    unit: unit.clone(),
                    metadata: metadata.clone(),
                    data: Some(Data::$kind(part)),
                };
                out.insert(o, metric);
            }
        }};
    }
    match data {
        None => {}
        Some(Data::Gauge(d)) => by_point!(Gauge, d),
        Some(Data::Sum(d)) => by_point!(Sum, d),
        Some(Data::Histogram(d)) => by_point!(Histogram, d),
        Some(Data::ExponentialHistogram(d)) => by_point!(ExponentialHistogram, d),
        Some(Data::Summary(d)) => by_point!(Summary, d),
    }
    out
}

/// Metrics by owner: whole resources for `service`/`resource`; metric by
/// metric for `metric` (its name); data point by data point for
/// `streamID` and `attributes`.
pub fn split_metrics(
    ring: &Ring,
    key: RoutingKey,
    names: &[String],
    d: ExportMetricsServiceRequest,
) -> BTreeMap<usize, ExportMetricsServiceRequest> {
    let mut out: BTreeMap<usize, ExportMetricsServiceRequest> = BTreeMap::new();
    for rm in d.resource_metrics {
        if per_resource(key) {
            if let Some(o) = ring.owner(&resource_key(key, rm.resource.as_ref())) {
                out.entry(o).or_default().resource_metrics.push(rm);
            }
            continue;
        }
        let mut mine: BTreeMap<usize, ResourceMetrics> = BTreeMap::new();
        for sm in &rm.scope_metrics {
            let mut by: BTreeMap<usize, ScopeMetrics> = BTreeMap::new();
            for m in &sm.metrics {
                let parts = match key {
                    RoutingKey::Metric => ring
                        .owner(m.name.as_bytes())
                        .map(|o| BTreeMap::from([(o, m.clone())]))
                        .unwrap_or_default(),
                    _ => split_points(m.clone(), |attrs| {
                        let src = Source {
                            resource: rm.resource.as_ref(),
                            scope: sm.scope.as_ref(),
                            item: attrs,
                        };
                        let k = match key {
                            RoutingKey::StreamId => stream(&src, &m.name),
                            _ => attributes(names, &src),
                        };
                        ring.owner(&k)
                    }),
                };
                for (o, part) in parts {
                    by.entry(o)
                        .or_insert_with(|| ScopeMetrics {
                            scope: sm.scope.clone(),
                            metrics: Vec::new(),
                            schema_url: sm.schema_url.clone(),
                        })
                        .metrics
                        .push(part);
                }
            }
            for (o, part) in by {
                mine.entry(o)
                    .or_insert_with(|| ResourceMetrics {
                        resource: rm.resource.clone(),
                        scope_metrics: Vec::new(),
                        schema_url: rm.schema_url.clone(),
                    })
                    .scope_metrics
                    .push(part);
            }
        }
        for (o, part) in mine {
            out.entry(o).or_default().resource_metrics.push(part);
        }
    }
    out
}
