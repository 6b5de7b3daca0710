use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, KeyValueList};
use opentelemetry_proto::tonic::trace::v1::span::Event;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

use super::ottl::{compare, parse, Context as C, Op, Val};
use super::*;
use crate::generate::{Generator, GeneratorOptions};
use crate::scan::{scan_traces, SpanIndex};
use crate::testing::Rig;

fn config_error(yaml: &str) -> ConfigError {
    parse_config::<FilterConfig>(serde_yaml::from_str(yaml).unwrap()).unwrap_err()
}

fn rig(signal: Signal, yaml: &str) -> Rig {
    Rig::new(factory(), "filter", yaml, signal)
}

fn span_names(bytes: &[u8]) -> Vec<String> {
    ExportTraceServiceRequest::decode(bytes)
        .unwrap()
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .map(|s| s.name.clone())
        .collect()
}

/// Sends `traces` traces through a span filter and returns what came out.
async fn filter_traces(yaml: &str, traces: usize) -> (Rig, Request, Request) {
    let sent = Generator::new(GeneratorOptions {
        error_rate: 0.3,
        ..Default::default()
    })
    .traces(traces);
    let batch = Batch::parse(Signal::Traces, sent.encode_to_vec().into()).unwrap();
    let original = batch.requests[0].clone();
    let r = rig(Signal::Traces, yaml);
    r.p.consume(batch).await.unwrap();
    let out = r.taken().remove(0);
    (r, original, out)
}

#[tokio::test]
async fn spans_matching_any_condition_are_dropped_and_the_rest_keep_their_bytes() {
    let yaml = r#"
traces:
  span:
    - 'name == "rag.embed"'
    - 'attributes["db.system"] == "qdrant" and kind == SPAN_KIND_SERVER'
"#;
    let (r, original, out) = filter_traces(yaml, 20).await;
    let names = span_names(&out.bytes);
    assert_eq!(names.len(), 60, "{names:?}");
    assert!(names
        .iter()
        .all(|n| n != "rag.embed" && n != "vectordb.search"));
    assert_eq!(r.counter("observatory_processor_dropped_spans_total"), 40.0);
    // The index is what a scan of the new bytes finds, and every kept span
    // is byte for byte the span that came in.
    let mut scanned = SpanIndex::default();
    scan_traces(&out.bytes, &mut scanned).unwrap();
    assert_eq!(out.index.as_deref(), Some(&scanned));
    let old = original.index.as_ref().unwrap();
    let slice =
        |b: &[u8], s: &crate::scan::SpanEntry| b[s.range.0 as usize..s.range.1 as usize].to_vec();
    let kept: Vec<Vec<u8>> = scanned.spans.iter().map(|s| slice(&out.bytes, s)).collect();
    let originals: Vec<Vec<u8>> = old
        .spans
        .iter()
        .map(|s| slice(&original.bytes, s))
        .collect();
    assert!(kept.iter().all(|k| originals.contains(k)));
    // A resource whose spans all went is gone: vectordb's only span was
    // vectordb.search.
    let got = ExportTraceServiceRequest::decode(out.bytes.clone()).unwrap();
    assert_eq!(got.resource_spans.len(), 2);
}

#[tokio::test]
async fn resource_scope_status_regex_and_root_conditions() {
    let cases = [
        // (condition, spans of 20 traces expected to remain)
        (
            r#"resource.attributes["service.name"] == "llm-gateway""#,
            80,
        ),
        (
            r#"instrumentation_scope.name == "vectordb.instrumentation""#,
            80,
        ),
        (r#"IsRootSpan()"#, 80),
        (r#"IsMatch(name, "^rag\\.")"#, 40),
        (r#"IsMatch(attributes["db.system"], "^qd")"#, 80),
        // Ints match as their decimal text: the embed spans' port 443.
        (r#"IsMatch(attributes["server.port"], "^44")"#, 80),
        (r#"span.status.code != STATUS_CODE_ERROR"#, 0),
        (r#"not (name == "rag.query")"#, 20),
    ];
    for (cond, remaining) in cases {
        let yaml = format!("traces:\n  span: ['{}']\n", cond.replace('\'', "''"));
        let (_, _, out) = Box::pin(filter_traces(&yaml, 20)).await;
        let kept = span_names(&out.bytes);
        if remaining == 0 {
            // Only error spans remain (30% of traces have two).
            assert!(
                kept.iter()
                    .all(|n| n == "rag.query" || n == "llm.chat_completion"),
                "{cond}"
            );
            assert!(!kept.is_empty(), "{cond}");
        } else {
            assert_eq!(kept.len(), remaining, "{cond}: {kept:?}");
        }
    }
}

#[tokio::test]
async fn a_request_filtered_to_nothing_is_not_passed_on() {
    let r = rig(Signal::Traces, "traces:\n  span: ['true']\n");
    let sent = Generator::new(GeneratorOptions::default()).traces(3);
    r.p.consume(Batch::parse(Signal::Traces, sent.encode_to_vec().into()).unwrap())
        .await
        .unwrap();
    assert!(r.sink.batches.lock().unwrap().is_empty());
    assert_eq!(r.counter("observatory_processor_dropped_spans_total"), 15.0);
}

fn kv(key: &str, v: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn with_events(events: &[&str]) -> ExportTraceServiceRequest {
    let mut req = Generator::new(GeneratorOptions::default()).traces(1);
    let span: &mut Span = &mut req.resource_spans[0].scope_spans[0].spans[0];
    span.events = events
        .iter()
        .map(|n| Event {
            name: n.to_string(),
            attributes: vec![kv("exception.type", Value::StringValue("Timeout".into()))],
            ..Default::default()
        })
        .collect();
    req
}

#[tokio::test]
async fn span_events_are_dropped_and_their_span_stays() {
    let r = rig(
        Signal::Traces,
        r#"traces: {spanevent: ['name == "gen_ai.content.prompt"', 'attributes["exception.type"] == "Nope"']}"#,
    );
    let sent = with_events(&[
        "gen_ai.content.prompt",
        "exception",
        "gen_ai.content.prompt",
    ]);
    r.p.consume(Batch::parse(Signal::Traces, sent.encode_to_vec().into()).unwrap())
        .await
        .unwrap();
    let out = r.taken().remove(0);
    let got = ExportTraceServiceRequest::decode(out.bytes.clone()).unwrap();
    let mut want = sent.clone();
    want.resource_spans[0].scope_spans[0].spans[0]
        .events
        .retain(|e| e.name == "exception");
    assert_eq!(got, want);
    assert_eq!(
        r.counter("observatory_processor_dropped_span_events_total"),
        2.0
    );
    assert_eq!(r.counter("observatory_processor_dropped_spans_total"), 0.0);

    // Dropping every event keeps the span.
    let r = rig(Signal::Traces, "traces: {spanevent: ['true']}");
    r.p.consume(Batch::parse(Signal::Traces, sent.encode_to_vec().into()).unwrap())
        .await
        .unwrap();
    assert_eq!(r.taken()[0].items, 5);
}

#[tokio::test]
async fn error_mode_decides_what_an_evaluation_error_does() {
    let mut sent = Generator::new(GeneratorOptions::default()).traces(2);
    sent.resource_spans[0].scope_spans[0].spans[0]
        .attributes
        .push(kv("payload", Value::KvlistValue(KeyValueList::default())));
    let cond = r#"'IsMatch(attributes["payload"], "x")'"#;
    let bytes: Bytes = sent.encode_to_vec().into();

    let r = rig(Signal::Traces, &format!("traces: {{span: [{cond}]}}"));
    let err =
        r.p.consume(Batch::parse(Signal::Traces, bytes.clone()).unwrap())
            .await
            .unwrap_err();
    assert!(!err.is_retryable());
    assert!(
        err.to_string().contains("IsMatch: target is a map"),
        "{err}"
    );
    assert!(r.sink.batches.lock().unwrap().is_empty());

    for mode in ["ignore", "silent"] {
        let r = rig(
            Signal::Traces,
            &format!("error_mode: {mode}\ntraces: {{span: [{cond}, 'name == \"rag.embed\"']}}"),
        );
        r.p.consume(Batch::parse(Signal::Traces, bytes.clone()).unwrap())
            .await
            .unwrap();
        // The failing condition is false; the next one still drops.
        assert_eq!(r.taken()[0].items, 8, "{mode}");
    }
}

#[tokio::test]
async fn log_records_by_severity_body_and_attribute() {
    let sent = Generator::new(GeneratorOptions {
        error_rate: 0.25,
        ..Default::default()
    })
    .logs(200);
    let errors = sent.resource_logs[0].scope_logs[0]
        .log_records
        .iter()
        .filter(|l| l.severity_number >= 17)
        .count();
    let r = rig(
        Signal::Logs,
        r#"logs: {log_record: ['severity_number < SEVERITY_NUMBER_WARN and IsMatch(body, "^answered")', 'attributes["code.function"] == "never"']}"#,
    );
    r.p.consume(Batch::parse(Signal::Logs, sent.encode_to_vec().into()).unwrap())
        .await
        .unwrap();
    let out = r.taken().remove(0);
    assert_eq!(out.items, errors);
    let got = ExportLogsServiceRequest::decode(out.bytes.clone()).unwrap();
    assert_eq!(log_count(&got), errors);
    assert!(got.resource_logs[0].scope_logs[0]
        .log_records
        .iter()
        .all(|l| l.severity_text == "ERROR"));
    assert_eq!(
        r.counter("observatory_processor_dropped_log_records_total"),
        (200 - errors) as f64
    );
}

#[tokio::test]
async fn metrics_and_data_points() {
    let sent = Generator::new(GeneratorOptions::default()).metrics(12);
    let bytes: Bytes = sent.encode_to_vec().into();
    let names = |req: &Request| -> Vec<(String, usize)> {
        let m = ExportMetricsServiceRequest::decode(req.bytes.clone()).unwrap();
        m.resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .map(|m| (m.name.clone(), metric_points(m)))
            .collect()
    };
    // A whole metric by type; points by attribute; a metric whose points
    // all go is dropped too.
    let r = rig(
        Signal::Metrics,
        r#"
metrics:
  metric: ['type == METRIC_DATA_TYPE_HISTOGRAM']
  datapoint:
    - 'attributes["gen_ai.request.model"] == "gpt-4o"'
    - 'metric.name == "gen_ai.server.queue.depth"'
"#,
    );
    r.p.consume(Batch::parse(Signal::Metrics, bytes.clone()).unwrap())
        .await
        .unwrap();
    let out = r.taken().remove(0);
    let got = names(&out);
    assert_eq!(
        got,
        vec![("gen_ai.client.token.usage.total".to_string(), 3)]
    );
    assert_eq!(out.items, 3);
    assert_eq!(
        r.counter("observatory_processor_dropped_metric_points_total"),
        9.0
    );

    // Each of the three metrics has a point for every model (models cycle
    // by point index): a model that is there drops all of them, one that
    // is not drops none.
    for (model, dropped) in [("claude-3-5-sonnet", 12.0), ("no-such-model", 0.0)] {
        let r = rig(
            Signal::Metrics,
            &format!(
                r#"metrics: {{metric: ['HasAttrOnDatapoint("gen_ai.request.model", "{model}") and unit != "never"']}}"#
            ),
        );
        r.p.consume(Batch::parse(Signal::Metrics, bytes.clone()).unwrap())
            .await
            .unwrap();
        assert_eq!(
            r.counter("observatory_processor_dropped_metric_points_total"),
            dropped,
            "{model}"
        );
        let passed: usize = r.taken().iter().map(|q| q.items).sum();
        assert_eq!(passed as f64, 12.0 - dropped, "{model}");
    }
}

#[test]
fn unsupported_ottl_is_refused_with_the_reason() {
    let cases = [
        (
            "traces: {span: ['Len(name) > 3']}",
            "traces.span.0",
            "unsupported OTTL function `Len`",
        ),
        (
            "traces: {span: ['end_time_unix_nano - 1 > 0']}",
            "traces.span.0",
            "arithmetic (\'-\' at column 20) is not in the supported OTTL subset",
        ),
        (
            "traces: {span: ['foo == 1']}",
            "traces.span.0",
            "unsupported path `foo`",
        ),
        (
            "traces: {span: ['attributes[\"a\"][\"b\"] == 1']}",
            "traces.span.0",
            "nested map keys",
        ),
        (
            "traces: {span: ['name']}",
            "traces.span.0",
            "a value alone is not a condition",
        ),
        (
            "traces: {span: ['name == SPAN_KIND_SERVERR']}",
            "traces.span.0",
            "unknown enum",
        ),
        (
            "traces: {span: ['IsMatch(name, \"(\")']}",
            "traces.span.0",
            "invalid regex",
        ),
        (
            "traces: {span: ['name == \"x\"', 'name = \"x\"']}",
            "traces.span.1",
            "unexpected '='",
        ),
        (
            "logs: {log_record: ['IsRootSpan()']}",
            "logs.log_record.0",
            "unsupported OTTL function `IsRootSpan` in the log context",
        ),
        (
            "metrics: {metric: ['attributes[\"a\"] == 1']}",
            "metrics.metric.0",
            "unsupported path `attributes`",
        ),
        (
            "spans: {include: {match_type: strict, span_names: [x]}}",
            "spans",
            "legacy include/exclude",
        ),
        (
            "logs: {exclude: {match_type: strict}}",
            "logs.exclude",
            "legacy include/exclude",
        ),
        (
            "error_mode: loud",
            "error_mode",
            "use propagate, ignore or silent",
        ),
        ("traces: {spans: ['true']}", "traces.spans", "unknown field"),
    ];
    for (yaml, path, msg) in cases {
        let e = config_error(yaml);
        assert_eq!(e.path, path, "{yaml}: {e}");
        assert!(e.message.contains(msg), "{yaml}: {e}");
    }
    // otelcol's documented examples parse.
    for (ctx, cond) in [
        (
            C::Span,
            r#"attributes["container.name"] == "app_container_1""#,
        ),
        (
            C::Span,
            r#"resource.attributes["host.name"] == "localhost""#,
        ),
        (C::SpanEvent, r#"name == "grpc.timeout""#),
        (
            C::Metric,
            r#"name == "my.metric" and resource.attributes["my_label"] == "abc123""#,
        ),
        (C::Metric, r#"type == METRIC_DATA_TYPE_HISTOGRAM"#),
        (C::DataPoint, r#"metric.type == METRIC_DATA_TYPE_SUMMARY"#),
        (C::Log, r#"IsMatch(body, ".*password.*")"#),
        (C::Log, r#"severity_number < SEVERITY_NUMBER_WARN"#),
        (
            C::Log,
            r#"severity_number != nil and severity_number <= SEVERITY_NUMBER_INFO4"#,
        ),
    ] {
        parse(cond, ctx).unwrap_or_else(|e| panic!("{cond}: {e}"));
    }
}

#[test]
fn comparisons_follow_ottl() {
    assert!(compare(Val::Int(3), Op::Eq, Val::Double(3.0)));
    assert!(compare(Val::Int(3), Op::Lt, Val::Double(3.5)));
    assert!(!compare(Val::Str("3"), Op::Eq, Val::Int(3)));
    assert!(compare(Val::Str("3"), Op::Ne, Val::Int(3)));
    assert!(!compare(Val::Str("3"), Op::Lt, Val::Int(4)));
    assert!(compare(Val::Str("abc"), Op::Lt, Val::Str("abd")));
    assert!(compare(Val::Nil, Op::Eq, Val::Nil));
    assert!(!compare(Val::Nil, Op::Eq, Val::Str("")));
    assert!(compare(Val::Bool(true), Op::Ne, Val::Bool(false)));
    assert!(!compare(Val::Bool(true), Op::Gt, Val::Bool(false)));
    // Severity enums: WARN is 13, INFO4 is 12, FATAL4 is 24.
    let sev = |name: &str| match parse(&format!("severity_number == {name}"), C::Log).unwrap() {
        Expr::Cmp(_, _, ottl::Operand::Lit(l)) => format!("{l:?}"),
        other => panic!("{other:?}"),
    };
    assert!(sev("SEVERITY_NUMBER_WARN").contains("Int(13)"));
    assert!(sev("SEVERITY_NUMBER_INFO4").contains("Int(12)"));
    assert!(sev("SEVERITY_NUMBER_FATAL4").contains("Int(24)"));
}
