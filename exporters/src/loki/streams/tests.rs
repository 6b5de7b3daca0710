use super::*;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValueList};
use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use pipeline::component::parse_config;

fn s(v: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(Any::StringValue(v.into())),
    })
}

fn kv(k: &str, v: Option<AnyValue>) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: v,
        ..Default::default()
    }
}

fn cfg(yaml: &str) -> LokiConfig {
    parse_config(serde_yaml::from_str(&format!("endpoint: http://loki:3100\n{yaml}")).unwrap())
        .unwrap()
}

fn record(t: u64, body: &str, severity: i32, attrs: Vec<KeyValue>) -> LogRecord {
    LogRecord {
        time_unix_nano: t,
        body: s(body),
        severity_number: severity,
        attributes: attrs,
        trace_id: vec![0xab; 16],
        span_id: vec![0xcd; 8],
        ..Default::default()
    }
}

fn request(service: &str, records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv("service.name", s(service)), kv("host.name", s("node-1"))],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn pairs(list: &[(&str, &str)]) -> Vec<(Text<'static>, Text<'static>)> {
    list.iter()
        .map(|(k, v)| (Cow::Owned(k.to_string()), Cow::Owned(v.to_string())))
        .collect()
}

#[test]
fn names_follow_loki_label_rules_and_selectors_escape_values() {
    assert_eq!(sanitize("service.name"), "service_name");
    assert_eq!(sanitize("k8s-pod/name"), "k8s_pod_name");
    assert_eq!(sanitize("3xx"), "_3xx");
    assert_eq!(sanitize("ok_Name9"), "ok_Name9");
    let stream = Stream {
        labels: pairs(&[("a", "x"), ("b", "say \"hi\"\\\n")]),
        entries: vec![],
    };
    assert_eq!(stream.selector(), r#"{a="x", b="say \"hi\"\\\n"}"#);
}

#[test]
fn level_comes_from_the_severity_number_then_the_text() {
    let mut r = LogRecord::default();
    assert_eq!(level(&r), None);
    r.severity_text = "WARNING".into();
    assert_eq!(level(&r).as_deref(), Some("warning"));
    for (n, want) in [
        (1, "trace"),
        (8, "debug"),
        (9, "info"),
        (13, "warn"),
        (17, "error"),
        (24, "fatal"),
    ] {
        r.severity_number = n;
        assert_eq!(level(&r).as_deref(), Some(want), "{n}");
    }
}

#[test]
fn records_become_ordered_streams_with_labels_and_metadata() {
    let shaper = Shaper::new(&cfg(""));
    let mut req = request(
        "checkout",
        vec![
            record(300, "third", 9, vec![kv("order.id", s("o-1"))]),
            record(100, "first", 9, vec![]),
            record(
                200,
                "oops",
                17,
                vec![kv("deployment.environment", s("prod"))],
            ),
            record(150, "second", 9, vec![]),
        ],
    );
    // A record with no time falls back to its observed time.
    let mut observed = record(0, "observed", 9, vec![]);
    observed.observed_time_unix_nano = 250;
    req.resource_logs[0].scope_logs[0]
        .log_records
        .push(observed);
    let names = names(&req);
    let streams = shaper.streams(&req, &names, 999);
    assert_eq!(streams.len(), 2, "{streams:#?}");
    let info = &streams[0];
    assert_eq!(
        info.labels,
        pairs(&[("level", "info"), ("service_name", "checkout")])
    );
    let lines: Vec<(&str, u64)> = info.entries.iter().map(|e| (&*e.line, e.time_ns)).collect();
    assert_eq!(
        lines,
        [
            ("first", 100),
            ("second", 150),
            ("observed", 250),
            ("third", 300)
        ]
    );
    // Attributes not used as labels, the resource's other attributes and
    // the ids go to structured metadata.
    assert_eq!(
        info.entries[3].metadata,
        pairs(&[
            ("order_id", "o-1"),
            ("host_name", "node-1"),
            ("trace_id", &"ab".repeat(16)),
            ("span_id", &"cd".repeat(8)),
        ])
    );
    // A record attribute can be a label too.
    assert_eq!(
        streams[1].labels,
        pairs(&[
            ("deployment_environment", "prod"),
            ("level", "error"),
            ("service_name", "checkout")
        ])
    );
    assert!(!streams[1].entries[0]
        .metadata
        .iter()
        .any(|(k, _)| k.starts_with("deployment")));
    // Nothing to label with: Loki's fallback label.
    let bare = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord::default()],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let bare_names = super::names(&bare);
    let streams = shaper.streams(&bare, &bare_names, 999);
    assert_eq!(
        streams[0].labels,
        pairs(&[("service_name", "unknown_service")])
    );
    assert_eq!(streams[0].entries[0].time_ns, 999, "no time at all: now");
}

#[test]
fn without_structured_metadata_the_line_carries_everything() {
    let mut r = record(5, "payment failed", 17, vec![kv("order.id", s("o 1"))]);
    r.body = Some(AnyValue {
        value: Some(Any::KvlistValue(KeyValueList {
            values: vec![
                kv("msg", s("payment failed")),
                kv(
                    "codes",
                    Some(AnyValue {
                        value: Some(Any::ArrayValue(ArrayValue {
                            values: vec![AnyValue {
                                value: Some(Any::IntValue(402)),
                            }],
                        })),
                    }),
                ),
            ],
        })),
    });
    let req = request("pay", vec![r]);
    let names = names(&req);
    let line = |yaml: &str| {
        let shaper = Shaper::new(&cfg(yaml));
        let e = &shaper.streams(&req, &names, 0)[0].entries[0];
        (e.line.to_string(), e.metadata.len())
    };
    let json_entry = line("structured_metadata: false\n");
    assert_eq!(json_entry.1, 0, "no metadata");
    let got: Value = serde_json::from_str(&json_entry.0).unwrap();
    assert_eq!(
        got,
        serde_json::json!({
            "body": {"msg": "payment failed", "codes": [402]},
            "severity": "error",
            "traceid": "ab".repeat(16),
            "spanid": "cd".repeat(8),
            "attributes": {"order.id": "o 1"},
            "resources": {"host.name": "node-1"},
        })
    );
    let logfmt_entry = line("structured_metadata: false\nline_format: logfmt\n");
    assert_eq!(
        logfmt_entry.0,
        format!(
            r#"body="{{\"codes\":[402],\"msg\":\"payment failed\"}}" severity=error traceid={} spanid={} attribute_order_id="o 1" resource_host_name=node-1"#,
            "ab".repeat(16),
            "cd".repeat(8)
        )
    );
    // With structured metadata, a map body is its JSON.
    let plain = line("");
    assert_eq!(plain.0, r#"{"codes":[402],"msg":"payment failed"}"#);
}

#[test]
fn bodies_encode_as_loki_reads_them() {
    let streams = vec![Stream {
        labels: pairs(&[("service_name", "a")]),
        entries: vec![Entry {
            time_ns: 1_700_000_000_123_456_789,
            line: Cow::Borrowed("hello"),
            metadata: pairs(&[("trace_id", "ab")]),
        }],
    }];
    let body: Value = serde_json::from_slice(&crate::loki::json_body(&streams)).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"streams": [{"stream": {"service_name": "a"},
            "values": [["1700000000123456789", "hello", {"trace_id": "ab"}]]}]})
    );
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&crate::loki::protobuf_body(&streams).unwrap())
        .unwrap();
    let req: crate::loki::push::messages::PushRequest =
        prost::Message::decode(raw.as_slice()).unwrap();
    let e = &req.streams[0].entries[0];
    assert_eq!(req.streams[0].labels, r#"{service_name="a"}"#);
    let ts = e.timestamp.as_ref().unwrap();
    assert_eq!((ts.seconds, ts.nanos), (1_700_000_000, 123_456_789));
    assert_eq!(e.structured_metadata[0].name, "trace_id");
}
