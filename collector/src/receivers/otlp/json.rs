//! OTLP/JSON → the protobuf bytes the pipeline carries, converted once at
//! the receiver. Accepts what otelcol accepts beyond the spec's lowerCamelCase
//! form: snake_case field names (`trace_id`) and enum values given by name
//! (`"kind": "SPAN_KIND_SERVER"`). Those need a pass over a JSON tree; the
//! usual form is deserialized straight into the message.

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use pipeline::Signal;
use prost::Message;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Converts an OTLP/JSON body of `signal` to encoded protobuf.
pub fn to_proto(signal: Signal, body: &[u8]) -> Result<Bytes, String> {
    match signal {
        Signal::Traces => convert::<ExportTraceServiceRequest>(body),
        Signal::Metrics => convert::<ExportMetricsServiceRequest>(body),
        Signal::Logs => convert::<ExportLogsServiceRequest>(body),
    }
}

fn convert<T: DeserializeOwned + Message>(body: &[u8]) -> Result<Bytes, String> {
    let msg: T = if needs_normalizing(body) {
        let mut tree: Value = serde_json::from_slice(body).map_err(invalid)?;
        normalize(&mut tree, 0);
        serde_json::from_value(tree).map_err(invalid)?
    } else {
        serde_json::from_slice(body).map_err(invalid)?
    };
    Ok(Bytes::from(msg.encode_to_vec()))
}

/// What deserializing `body` may cost in memory: every JSON object becomes
/// one message ([`pipeline::scan::DECODED_MESSAGE_BYTES`] each), strings are
/// copied, and the protobuf encoding is written beside it. One pass over
/// the bytes, before anything is built.
pub fn decoded_estimate(body: &[u8]) -> u64 {
    let mut objects = 0u64;
    let mut in_string = false;
    let mut escaped = false;
    for &b in body {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
        } else if b == b'{' {
            objects += 1;
        }
    }
    objects * pipeline::scan::DECODED_MESSAGE_BYTES + 2 * body.len() as u64
}

fn invalid(e: serde_json::Error) -> String {
    format!("invalid OTLP/JSON: {e}")
}

/// Enum fields otelcol also takes by name, with the prefix their names share.
const ENUMS: [(&str, &str, &[&str]); 4] = [
    (
        "kind",
        "SPAN_KIND_",
        &[
            "UNSPECIFIED",
            "INTERNAL",
            "SERVER",
            "CLIENT",
            "PRODUCER",
            "CONSUMER",
        ],
    ),
    ("code", "STATUS_CODE_", &["UNSET", "OK", "ERROR"]),
    (
        "aggregationTemporality",
        "AGGREGATION_TEMPORALITY_",
        &["UNSPECIFIED", "DELTA", "CUMULATIVE"],
    ),
    (
        "severityNumber",
        "SEVERITY_NUMBER_",
        &[
            "UNSPECIFIED",
            "TRACE",
            "TRACE2",
            "TRACE3",
            "TRACE4",
            "DEBUG",
            "DEBUG2",
            "DEBUG3",
            "DEBUG4",
            "INFO",
            "INFO2",
            "INFO3",
            "INFO4",
            "WARN",
            "WARN2",
            "WARN3",
            "WARN4",
            "ERROR",
            "ERROR2",
            "ERROR3",
            "ERROR4",
            "FATAL",
            "FATAL2",
            "FATAL3",
            "FATAL4",
        ],
    ),
];

/// Whether any object key has an underscore, or an enum field has a string
/// value: one pass over the bytes, no allocation.
fn needs_normalizing(body: &[u8]) -> bool {
    let mut i = 0;
    while i < body.len() {
        if body[i] != b'"' {
            i += 1;
            continue;
        }
        let start = i + 1;
        let mut j = start;
        let mut underscore = false;
        while j < body.len() && body[j] != b'"' {
            match body[j] {
                b'\\' => j += 1,
                b'_' => underscore = true,
                _ => {}
            }
            j += 1;
        }
        let key = &body[start..j.min(body.len())];
        let mut k = j + 1;
        while k < body.len() && body[k].is_ascii_whitespace() {
            k += 1;
        }
        if body.get(k) == Some(&b':') {
            if underscore {
                return true;
            }
            k += 1;
            while k < body.len() && body[k].is_ascii_whitespace() {
                k += 1;
            }
            if body.get(k) == Some(&b'"') && ENUMS.iter().any(|(f, ..)| f.as_bytes() == key) {
                return true;
            }
        }
        i = j + 1;
    }
    false
}

/// Deepest tree normalized; serde_json refuses deeper input before this.
const MAX_DEPTH: usize = 256;

/// Renames snake_case keys to lowerCamelCase and enum names to numbers.
/// OTLP has no map fields: every object key is a field name, so renaming
/// every key is safe (attribute keys are values, not object keys).
fn normalize(v: &mut Value, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    match v {
        Value::Array(items) => items.iter_mut().for_each(|i| normalize(i, depth + 1)),
        Value::Object(map) => {
            let old = std::mem::take(map);
            for (k, mut val) in old {
                let k = if k.contains('_') { camel(&k) } else { k };
                if let Some((_, prefix, names)) = ENUMS.iter().find(|(f, ..)| *f == k) {
                    if let Some(n) = val.as_str().and_then(|s| enum_number(s, prefix, names)) {
                        val = Value::from(n);
                    }
                }
                normalize(&mut val, depth + 1);
                map.insert(k, val);
            }
        }
        _ => {}
    }
}

fn enum_number(s: &str, prefix: &str, names: &[&str]) -> Option<usize> {
    let name = s.strip_prefix(prefix)?;
    names.iter().position(|n| *n == name)
}

fn camel(k: &str) -> String {
    let mut out = String::with_capacity(k.len());
    let mut upper = false;
    for c in k.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spans(body: &str) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest::decode(to_proto(Signal::Traces, body.as_bytes()).unwrap())
            .unwrap()
    }

    #[test]
    fn snake_case_and_enum_names_decode_as_otelcol_does() {
        let camel = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","name":"x","kind":2,"startTimeUnixNano":"5","status":{"code":2},"attributes":[{"key":"gen_ai.system","value":{"stringValue":"openai"}}]}]}]}]}"#;
        let snake = r#"{"resource_spans":[{"scope_spans":[{"spans":[{"trace_id":"0102030405060708090a0b0c0d0e0f10","span_id":"0102030405060708","name":"x","kind":"SPAN_KIND_SERVER","start_time_unix_nano":"5","status":{"code":"STATUS_CODE_ERROR"},"attributes":[{"key":"gen_ai.system","value":{"string_value":"openai"}}]}]}]}]}"#;
        assert!(!needs_normalizing(camel.as_bytes()));
        assert!(needs_normalizing(snake.as_bytes()));
        let (a, b) = (spans(camel), spans(snake));
        assert_eq!(a, b);
        let span = &b.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!((span.kind, span.start_time_unix_nano), (2, 5));
        // Attribute keys are values: "gen_ai.system" keeps its underscore.
        assert_eq!(span.attributes[0].key, "gen_ai.system");
    }

    #[test]
    fn log_and_metric_enums_by_name() {
        let logs = r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"severityNumber":"SEVERITY_NUMBER_WARN2","body":{"stringValue":"m"}}]}]}]}"#;
        let got =
            ExportLogsServiceRequest::decode(to_proto(Signal::Logs, logs.as_bytes()).unwrap())
                .unwrap();
        assert_eq!(
            got.resource_logs[0].scope_logs[0].log_records[0].severity_number,
            14
        );
        let metrics = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"m","sum":{"aggregationTemporality":"AGGREGATION_TEMPORALITY_CUMULATIVE","isMonotonic":true,"dataPoints":[{"asInt":"3"}]}}]}]}]}"#;
        let got = ExportMetricsServiceRequest::decode(
            to_proto(Signal::Metrics, metrics.as_bytes()).unwrap(),
        )
        .unwrap();
        use opentelemetry_proto::tonic::metrics::v1::metric::Data;
        let m = &got.resource_metrics[0].scope_metrics[0].metrics[0];
        let Some(Data::Sum(sum)) = &m.data else {
            panic!("{m:?}")
        };
        assert_eq!(sum.aggregation_temporality, 2);
    }

    #[test]
    fn the_estimate_counts_objects_outside_strings() {
        let body = br#"{"a":[{},{}],"s":"{{{\"{"}"#;
        assert_eq!(decoded_estimate(body), 3 * 64 + 2 * body.len() as u64);
    }

    #[test]
    fn unknown_enum_names_are_refused() {
        let e = to_proto(
            Signal::Traces,
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"kind":"SPAN_KIND_NOPE"}]}]}]}"#,
        )
        .unwrap_err();
        assert!(e.starts_with("invalid OTLP/JSON"), "{e}");
    }
}
