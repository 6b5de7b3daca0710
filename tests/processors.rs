//! Processors through the real binary: per-receiver source tagging with
//! `resource`, two receivers feeding one exporter; `llm_cost` with its
//! built-in table; `filter` dropping and refusing.

mod common;

use std::collections::HashMap;

use common::*;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use pipeline::generate::{Generator, GeneratorOptions};
use pipeline::Signal;
use prost::Message;

const TAGGED: &str = r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:@GRPC@
  otlp/claude:
    protocols:
      grpc:
        endpoint: 127.0.0.1:@CLAUDE@
processors:
  resource/app:
    attributes:
      - key: telemetry.source
        value: app
        action: upsert
  resource/claude:
    attributes:
      - key: telemetry.source
        value: claude
        action: upsert
      - key: host.name
        action: hash
exporters:
  file:
    path: @DIR@/traces.jsonl
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [resource/app]
      exporters: [file]
    traces/claude:
      receivers: [otlp/claude]
      processors: [resource/claude]
      exporters: [file]
"#;

#[tokio::test]
async fn each_receiver_tags_its_own_source() {
    let claude = free_port();
    let c = Collector::start_with(TAGGED, &[("CLAUDE", claude.to_string())]);
    let app_req = Generator::new(GeneratorOptions {
        seed: 1,
        ..Default::default()
    })
    .spans(10);
    let claude_req = Generator::new(GeneratorOptions {
        seed: 2,
        ..Default::default()
    })
    .spans(15);
    grpc_send(c.grpc, Signal::Traces, app_req.encode_to_vec(), None)
        .await
        .unwrap();
    grpc_send(claude, Signal::Traces, claude_req.encode_to_vec(), None)
        .await
        .unwrap();

    let lines = wait_for_lines(&c.path("traces.jsonl"), count_spans, 25);
    let got = traces_from(&lines);
    let mut source_of: HashMap<Vec<u8>, (String, String)> = HashMap::new();
    for rs in &got.resource_spans {
        let attrs = &rs.resource.as_ref().unwrap().attributes;
        let text = |k: &str| match attrs
            .iter()
            .find(|a| a.key == k)
            .and_then(|a| a.value.as_ref()?.value.clone())
        {
            Some(Value::StringValue(s)) => s,
            other => panic!("{k}: {other:?}"),
        };
        for s in rs.scope_spans.iter().flat_map(|ss| &ss.spans) {
            source_of.insert(
                s.span_id.clone(),
                (text("telemetry.source"), text("host.name")),
            );
        }
    }
    for (req, want) in [(&app_req, "app"), (&claude_req, "claude")] {
        for rs in &req.resource_spans {
            for s in rs.scope_spans.iter().flat_map(|ss| &ss.spans) {
                let (source, host) = &source_of[&s.span_id];
                assert_eq!(source, want);
                // Only the claude pipeline hashes host.name (SHA-1 hex).
                assert_eq!(
                    host.len() == 40 && !host.contains('-'),
                    want == "claude",
                    "{host}"
                );
            }
        }
    }
    // The spans themselves are untouched.
    let strip =
        |r: &opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest| {
            let mut v: Vec<_> = r
                .resource_spans
                .iter()
                .flat_map(|rs| rs.scope_spans.iter().flat_map(|ss| ss.spans.clone()))
                .collect();
            v.sort_by(|a, b| a.span_id.cmp(&b.span_id));
            v
        };
    let mut sent = app_req.clone();
    sent.resource_spans
        .extend(claude_req.resource_spans.clone());
    assert_eq!(strip(&got), strip(&sent));
}

const PRICED: &str = r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:@HTTP@
processors:
  llm_cost:
exporters:
  file:
    path: @DIR@/traces.jsonl
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [llm_cost]
      exporters: [file]
"#;

#[tokio::test]
async fn an_empty_llm_cost_config_prices_with_the_built_in_table() {
    use opentelemetry_proto::tonic::common::v1::KeyValue;
    use opentelemetry_proto::tonic::trace::v1::Span;
    let c = Collector::start(PRICED);
    let kv = |k: &str, v: Value| KeyValue {
        key: k.into(),
        value: Some(opentelemetry_proto::tonic::common::v1::AnyValue { value: Some(v) }),
        ..Default::default()
    };
    let mut req = Generator::new(GeneratorOptions::default()).spans(1);
    // One gpt-4o-mini call: 10,000 input and 2,000 output tokens cost
    // 10,000 × 0.15 + 2,000 × 0.60 per million = 0.0027 USD.
    req.resource_spans[0].scope_spans[0].spans = vec![Span {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        name: "chat gpt-4o-mini".into(),
        attributes: vec![
            kv("gen_ai.system", Value::StringValue("openai".into())),
            kv(
                "gen_ai.request.model",
                Value::StringValue("gpt-4o-mini".into()),
            ),
            kv("gen_ai.usage.input_tokens", Value::IntValue(10_000)),
            kv("gen_ai.usage.output_tokens", Value::IntValue(2_000)),
        ],
        ..Default::default()
    }];
    let (status, _, _) = http_post(
        c.http,
        "/v1/traces",
        "application/json",
        None,
        serde_json::to_vec(&req).unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let lines = wait_for_lines(&c.path("traces.jsonl"), count_spans, 1);
    let got = traces_from(&lines);
    let span = &got.resource_spans[0].scope_spans[0].spans[0];
    let cost = span
        .attributes
        .iter()
        .find(|a| a.key == "gen_ai.usage.cost")
        .and_then(|a| a.value.as_ref()?.value.clone());
    match cost {
        Some(Value::DoubleValue(usd)) => assert!((usd - 0.0027).abs() < 1e-12, "{usd}"),
        other => panic!("no cost: {other:?}"),
    }
    assert_eq!(
        c.metric("observatory_processor_llm_cost_priced_spans_total{processor=\"llm_cost\"}"),
        Some(1.0)
    );
}

const FILTERED: &str = r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:@GRPC@
      http:
        endpoint: 127.0.0.1:@HTTP@
processors:
  filter:
    traces:
      span:
        - 'name == "vectordb.search"'
        - 'IsMatch(attributes["payload"], "x")'
    logs:
      log_record:
        - 'severity_number < SEVERITY_NUMBER_WARN'
exporters:
  file:
    path: @DIR@/out.jsonl
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [filter]
      exporters: [file]
    logs:
      receivers: [otlp]
      processors: [filter]
      exporters: [file]
"#;

#[tokio::test]
async fn filter_drops_what_its_conditions_match_and_refuses_what_it_cannot_evaluate() {
    let c = Collector::start(FILTERED);
    let traces = Generator::new(GeneratorOptions::default()).traces(10);
    grpc_send(c.grpc, Signal::Traces, traces.encode_to_vec(), None)
        .await
        .unwrap();
    let logs = Generator::new(GeneratorOptions {
        error_rate: 0.5,
        ..Default::default()
    })
    .logs(40);
    let errors = logs.resource_logs[0].scope_logs[0]
        .log_records
        .iter()
        .filter(|l| l.severity_number >= 13)
        .count();
    let (status, _, _) = http_post(
        c.http,
        "/v1/logs",
        "application/x-protobuf",
        None,
        logs.encode_to_vec(),
    )
    .await;
    assert_eq!(status, 200);
    let lines = wait_for_lines(
        &c.path("out.jsonl"),
        |l| count_spans(l) + count_logs(l),
        40 + errors,
    );
    let spans: Vec<String> = traces_from(&lines)
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .map(|s| s.name.clone())
        .collect();
    assert!(spans.iter().all(|n| n != "vectordb.search"), "{spans:?}");
    assert_eq!(
        c.metric("observatory_processor_dropped_spans_total{processor=\"filter\"}"),
        Some(10.0)
    );
    assert_eq!(
        c.metric("observatory_processor_dropped_log_records_total{processor=\"filter\"}"),
        Some((40 - errors) as f64)
    );

    // A map where IsMatch needs a string: error_mode propagate (the
    // default) refuses the request, naming the condition.
    let mut bad = Generator::new(GeneratorOptions::default()).traces(1);
    bad.resource_spans[0].scope_spans[0].spans[0]
        .attributes
        .push(opentelemetry_proto::tonic::common::v1::KeyValue {
            key: "payload".into(),
            value: Some(opentelemetry_proto::tonic::common::v1::AnyValue {
                value: Some(Value::KvlistValue(Default::default())),
            }),
            ..Default::default()
        });
    let err = grpc_send(c.grpc, Signal::Traces, bad.encode_to_vec(), None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("IsMatch: target is a map"),
        "{err:?}"
    );
}
