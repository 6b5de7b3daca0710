//! Metric data points → rows of the five point tables.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value as NumValue;
use opentelemetry_proto::tonic::metrics::v1::Exemplar;

use super::rows::{attributes_field, scope_field, Rows};

/// The COPY statement of each point table, in [`Points`] order.
pub const COPY: [(&str, &str); 5] = [
    ("metric_gauge", "time, start_time, metric, unit, service, resource, scope, attributes, flags, value, exemplar_trace_ids"),
    ("metric_sum", "time, start_time, metric, unit, service, resource, scope, attributes, flags, value, is_monotonic, temporality, exemplar_trace_ids"),
    ("metric_histogram", "time, start_time, metric, unit, service, resource, scope, attributes, flags, count, sum, min, max, bucket_counts, explicit_bounds, temporality, exemplar_trace_ids"),
    ("metric_exp_histogram", "time, start_time, metric, unit, service, resource, scope, attributes, flags, count, sum, min, max, scale, zero_count, zero_threshold, positive_offset, positive_bucket_counts, negative_offset, negative_bucket_counts, temporality, exemplar_trace_ids"),
    ("metric_summary", "time, start_time, metric, unit, service, resource, scope, attributes, flags, count, sum, quantiles, quantile_values"),
];

/// Rows per point table: gauge, sum, histogram, exponential histogram, summary.
#[derive(Debug, Default)]
pub struct Points(pub [Rows; 5]);

/// `service.name` among resource attributes.
pub fn service(attrs: &[KeyValue]) -> Option<&str> {
    attrs
        .iter()
        .rev()
        .find(|kv| kv.key == "service.name")
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            Any::StringValue(s) => Some(s.as_str()),
            _ => None,
        })
}

fn number(v: &Option<NumValue>) -> Option<f64> {
    match v {
        Some(NumValue::AsDouble(d)) => Some(*d),
        Some(NumValue::AsInt(i)) => Some(*i as f64),
        None => None,
    }
}

fn trace_ids(ex: &[Exemplar]) -> impl Iterator<Item = &[u8]> {
    ex.iter().map(|e| e.trace_id.as_slice())
}

impl Points {
    /// Appends the points in `req`, one row each.
    pub fn add_request(&mut self, req: &ExportMetricsServiceRequest) {
        let p = self;
        for rm in &req.resource_metrics {
            let attrs = rm
                .resource
                .as_ref()
                .map_or(&[][..], |r| r.attributes.as_slice());
            let resource = attributes_field(attrs);
            let svc = service(attrs);
            for sm in &rm.scope_metrics {
                let scope = scope_field(sm.scope.as_ref());
                for m in &sm.metrics {
                    // The columns every point table starts with.
                    macro_rules! head {
                        ($rows:expr, $pt:expr) => {
                            $rows
                                .begin()
                                .time($pt.time_unix_nano)
                                .opt_time($pt.start_time_unix_nano)
                                .text(&m.name)
                                .text(&m.unit)
                                .opt_text(svc)
                                .raw(&resource)
                                .raw(&scope)
                                .attributes(&$pt.attributes)
                                .int(i64::from($pt.flags))
                        };
                    }
                    let [gauge, sum, hist, exp, summary] = &mut p.0;
                    match &m.data {
                        Some(Data::Gauge(g)) => {
                            for pt in &g.data_points {
                                head!(gauge, pt)
                                    .opt_float(number(&pt.value))
                                    .hex_ids(trace_ids(&pt.exemplars))
                                    .end();
                            }
                        }
                        Some(Data::Sum(s)) => {
                            for pt in &s.data_points {
                                head!(sum, pt)
                                    .opt_float(number(&pt.value))
                                    .boolean(s.is_monotonic)
                                    .int(i64::from(s.aggregation_temporality))
                                    .hex_ids(trace_ids(&pt.exemplars))
                                    .end();
                            }
                        }
                        Some(Data::Histogram(h)) => {
                            for pt in &h.data_points {
                                head!(hist, pt)
                                    .int(pt.count as i64)
                                    .opt_float(pt.sum)
                                    .opt_float(pt.min)
                                    .opt_float(pt.max)
                                    .ints(pt.bucket_counts.iter().map(|c| *c as i64))
                                    .floats(&pt.explicit_bounds)
                                    .int(i64::from(h.aggregation_temporality))
                                    .hex_ids(trace_ids(&pt.exemplars))
                                    .end();
                            }
                        }
                        Some(Data::ExponentialHistogram(h)) => {
                            for pt in &h.data_points {
                                let (po, pc) = pt.positive.as_ref().map_or((0, &[][..]), |b| {
                                    (b.offset, b.bucket_counts.as_slice())
                                });
                                let (no, nc) = pt.negative.as_ref().map_or((0, &[][..]), |b| {
                                    (b.offset, b.bucket_counts.as_slice())
                                });
                                head!(exp, pt)
                                    .int(pt.count as i64)
                                    .opt_float(pt.sum)
                                    .opt_float(pt.min)
                                    .opt_float(pt.max)
                                    .int(i64::from(pt.scale))
                                    .int(pt.zero_count as i64)
                                    .float(pt.zero_threshold)
                                    .int(i64::from(po))
                                    .ints(pc.iter().map(|c| *c as i64))
                                    .int(i64::from(no))
                                    .ints(nc.iter().map(|c| *c as i64))
                                    .int(i64::from(h.aggregation_temporality))
                                    .hex_ids(trace_ids(&pt.exemplars))
                                    .end();
                            }
                        }
                        Some(Data::Summary(s)) => {
                            for pt in &s.data_points {
                                let q: Vec<f64> =
                                    pt.quantile_values.iter().map(|q| q.quantile).collect();
                                let v: Vec<f64> =
                                    pt.quantile_values.iter().map(|q| q.value).collect();
                                head!(summary, pt)
                                    .int(pt.count as i64)
                                    .float(pt.sum)
                                    .floats(&q)
                                    .floats(&v)
                                    .end();
                            }
                        }
                        None => {}
                    }
                }
            }
        }
    }
}
