//! The `loki` exporter through the real binary against a local server that
//! decodes Loki's wire format (snappy + protobuf, and JSON): streams,
//! labels, lines, structured metadata, order, tenant and auth headers;
//! 429 retried after Retry-After, 400 counted and dropped.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::loki::{self, FakeLoki, Line};
use common::*;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use pipeline::Signal;
use prost::Message;

const CONFIG: &str = r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:@GRPC@
exporters:
  loki:
    endpoint: http://127.0.0.1:@LOKI@
    @EXTRA@
    retry_on_failure:
      initial_interval: 100ms
service:
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [loki]
"#;

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

/// Two services; records out of time order, different severities.
fn request() -> ExportLogsServiceRequest {
    let record = |t: u64, sev: i32, body: &str, attrs: Vec<KeyValue>, trace: u8| LogRecord {
        time_unix_nano: t,
        severity_number: sev,
        severity_text: if sev >= 17 {
            "ERROR".into()
        } else {
            "INFO".into()
        },
        body: Some(AnyValue {
            value: Some(Value::StringValue(body.into())),
        }),
        attributes: attrs,
        trace_id: vec![trace; 16],
        span_id: vec![trace + 1; 8],
        ..Default::default()
    };
    let resource = |service: &str| Resource {
        attributes: vec![
            kv("service.name", service),
            kv("deployment.environment", "prod"),
            kv("host.name", "node-7"),
        ],
        ..Default::default()
    };
    ExportLogsServiceRequest {
        resource_logs: vec![
            ResourceLogs {
                resource: Some(resource("checkout")),
                scope_logs: vec![ScopeLogs {
                    log_records: vec![
                        record(3_000, 9, "cart saved", vec![kv("cart.id", "c-9")], 1),
                        record(1_000, 9, "cart opened", vec![], 2),
                        record(
                            2_000,
                            17,
                            "card declined",
                            vec![kv("gen_ai.request.model", "gpt-4o")],
                            3,
                        ),
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            },
            ResourceLogs {
                resource: Some(resource("search")),
                scope_logs: vec![ScopeLogs {
                    log_records: vec![record(5_000, 9, "query \"shoes\"", vec![], 4)],
                    ..Default::default()
                }],
                ..Default::default()
            },
        ],
    }
}

fn labels(list: &[(&str, &str)]) -> BTreeMap<String, String> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn line(t: u64, text: &str, meta: &[(&str, String)]) -> Line {
    Line {
        time_ns: t,
        line: text.into(),
        metadata: meta
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    }
}

async fn wait_for(loki: &FakeLoki, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while loki.count() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(loki.count(), n, "lines received");
    assert!(
        loki.errors.lock().unwrap().is_empty(),
        "{:?}",
        loki.errors.lock().unwrap()
    );
}

fn start(loki: &FakeLoki, extra: &str) -> Collector {
    Collector::start_with(
        CONFIG,
        &[
            ("LOKI", loki.port.to_string()),
            ("EXTRA", extra.replace('\n', "\n    ")),
        ],
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn protobuf_pushes_carry_streams_labels_metadata_in_order() {
    let loki = loki::start(vec![]).await;
    let col = start(&loki, "tenant_id: acme\nbearer_token: s3cret");
    grpc_send(col.grpc, Signal::Logs, request().encode_to_vec(), None)
        .await
        .unwrap();
    wait_for(&loki, 4).await;
    let pushes = loki.pushes.lock().unwrap().clone();
    for p in &pushes {
        assert_eq!(p.headers["x-scope-orgid"], "acme");
        assert_eq!(p.headers["authorization"], "Bearer s3cret");
        assert_eq!(p.headers["content-type"], "application/x-protobuf");
    }
    let mut streams = loki.streams();
    streams.sort_by(|a, b| a.labels.cmp(&b.labels));
    let ids = |t: u8| {
        [
            ("trace_id", format!("{:02x}", t).repeat(16)),
            ("span_id", format!("{:02x}", t + 1).repeat(8)),
        ]
    };
    let meta = |attrs: &[(&'static str, &str)], t: u8, sev: &str| -> Vec<(&'static str, String)> {
        let mut m: Vec<(&'static str, String)> =
            attrs.iter().map(|(k, v)| (*k, v.to_string())).collect();
        m.push(("host_name", "node-7".into()));
        m.extend(ids(t));
        m.push(("severity_text", sev.into()));
        m
    };
    let got: Vec<(BTreeMap<String, String>, Vec<Line>)> =
        streams.into_iter().map(|s| (s.labels, s.lines)).collect();
    let env = ("deployment_environment", "prod");
    assert_eq!(
        got,
        vec![
            (
                labels(&[env, ("level", "error"), ("service_name", "checkout")]),
                vec![line(
                    2_000,
                    "card declined",
                    &meta(&[("gen_ai_request_model", "gpt-4o")], 3, "ERROR")
                )],
            ),
            (
                labels(&[env, ("level", "info"), ("service_name", "checkout")]),
                vec![
                    line(1_000, "cart opened", &meta(&[], 2, "INFO")),
                    line(3_000, "cart saved", &meta(&[("cart_id", "c-9")], 1, "INFO")),
                ],
            ),
            (
                labels(&[env, ("level", "info"), ("service_name", "search")]),
                vec![line(5_000, "query \"shoes\"", &meta(&[], 4, "INFO"))],
            ),
        ]
    );
    let sent = r#"observatory_exporter_sent_log_records_total{exporter="loki"}"#;
    assert_eq!(col.metric_when(sent, 4.0).await, Some(4.0));
}

#[tokio::test(flavor = "multi_thread")]
async fn json_pushes_with_basic_auth_and_the_attributes_in_a_logfmt_line() {
    let loki = loki::start(vec![]).await;
    let col = start(
        &loki,
        "format: json\nbasic_auth: {username: u, password: p}\nstructured_metadata: false\nline_format: logfmt\nlabels: [service.name]",
    );
    grpc_send(col.grpc, Signal::Logs, request().encode_to_vec(), None)
        .await
        .unwrap();
    wait_for(&loki, 4).await;
    let pushes = loki.pushes.lock().unwrap().clone();
    // "u:p" in base64.
    assert_eq!(pushes[0].headers["authorization"], "Basic dTpw");
    assert_eq!(pushes[0].headers["content-type"], "application/json");
    let mut streams = loki.streams();
    streams.sort_by(|a, b| a.labels.cmp(&b.labels));
    assert_eq!(streams[0].labels, labels(&[("service_name", "checkout")]));
    let lines: Vec<&str> = streams[0].lines.iter().map(|l| l.line.as_str()).collect();
    let ids = |t: u8| {
        format!(
            "traceid={} spanid={}",
            format!("{t:02x}").repeat(16),
            format!("{:02x}", t + 1).repeat(8)
        )
    };
    let res = "resource_deployment_environment=prod resource_host_name=node-7";
    assert_eq!(
        lines,
        [
            format!("body=\"cart opened\" severity=info {} {res}", ids(2)),
            format!("body=\"card declined\" severity=error {} attribute_gen_ai_request_model=gpt-4o {res}", ids(3)),
            format!("body=\"cart saved\" severity=info {} attribute_cart_id=c-9 {res}", ids(1)),
        ]
    );
    assert!(streams[0].lines.iter().all(|l| l.metadata.is_empty()));
    assert_eq!(
        streams[1].lines[0].line,
        format!(r#"body="query \"shoes\"" severity=info {} {res}"#, ids(4))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_is_retried_after_retry_after_and_bad_requests_are_dropped_and_counted() {
    // First push: 429 with Retry-After: 1. It must come back, once, no
    // sooner than a second later.
    let loki = loki::start(vec![(429, Some("1"), "slow down")]).await;
    let col = start(&loki, "");
    let sent = Instant::now();
    grpc_send(col.grpc, Signal::Logs, request().encode_to_vec(), None)
        .await
        .unwrap();
    wait_for(&loki, 4).await;
    assert!(
        sent.elapsed() >= Duration::from_secs(1),
        "{:?}",
        sent.elapsed()
    );
    assert_eq!(*loki.refused.lock().unwrap(), 1);

    // A 400 (entries too old) is not retried: one attempt, counted as failed.
    let loki = loki::start(vec![(400, None, "entry for stream has timestamp too old")]).await;
    let col = start(&loki, "");
    grpc_send(col.grpc, Signal::Logs, request().encode_to_vec(), None)
        .await
        .unwrap();
    let series = r#"observatory_exporter_send_failed_log_records_total{exporter="loki"}"#;
    assert_eq!(col.metric_when(series, 4.0).await, Some(4.0));
    // Well past the 100 ms retry interval: still the one attempt.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(*loki.refused.lock().unwrap(), 1);
    assert_eq!(loki.count(), 0);
    assert!(col.logs().contains("timestamp too old"), "{}", col.logs());
}
