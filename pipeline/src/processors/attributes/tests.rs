use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message;

use super::*;
use crate::component::Tasks;
use crate::generate::{Generator, GeneratorOptions};
use crate::telemetry::Registry;
use crate::testing::Sink;

fn run(yaml: &str, signal: Signal, bytes: Vec<u8>) -> (Batch, Batch) {
    let builder = (factory().parse)(serde_yaml::from_str(yaml).unwrap()).unwrap();
    let sink = Arc::new(Sink::default());
    let ctx = Context {
        id: "attributes".into(),
        metrics: Registry::new(),
        tasks: Tasks::default(),
        storage: Default::default(),
        auth: Default::default(),
        local: Default::default(),
    };
    let p = builder.build(signal, sink.clone(), &ctx);
    let input = Batch::parse(signal, bytes.into()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(p.consume(input.clone())).unwrap();
    let out = sink.batches.lock().unwrap()[0].clone();
    (input, out)
}

fn has(attrs: &[KeyValue], key: &str) -> Option<Value> {
    attrs
        .iter()
        .find(|a| a.key == key)?
        .value
        .as_ref()?
        .value
        .clone()
}

fn spans(
    r: &ExportTraceServiceRequest,
) -> Vec<(String, String, opentelemetry_proto::tonic::trace::v1::Span)> {
    r.resource_spans
        .iter()
        .flat_map(|rs| {
            let svc = match has(&rs.resource.as_ref().unwrap().attributes, "service.name") {
                Some(Value::StringValue(s)) => s,
                _ => String::new(),
            };
            rs.scope_spans.iter().flat_map(move |ss| {
                let lib = ss
                    .scope
                    .as_ref()
                    .map(|s| s.name.clone())
                    .unwrap_or_default();
                let svc = svc.clone();
                ss.spans
                    .iter()
                    .map(move |s| (svc.clone(), lib.clone(), s.clone()))
            })
        })
        .collect()
}

#[test]
fn include_by_service_and_span_name_changes_only_matching_spans() {
    let sent = Generator::new(GeneratorOptions::default()).traces(6);
    let yaml = r#"
include:
  match_type: strict
  services: [rag-api]
  span_names: [rag.query, rag.embed]
actions:
  - {key: tier, value: gold, action: insert}
  - {key: user.id, action: hash}
"#;
    let (input, out) = run(yaml, Signal::Traces, sent.encode_to_vec());
    let got = out.decode_traces().unwrap();
    let mut changed = 0;
    for ((svc, _, before), (_, _, after)) in spans(&sent).iter().zip(spans(&got)) {
        let wanted = svc == "rag-api" && (before.name == "rag.query" || before.name == "rag.embed");
        if wanted {
            changed += 1;
            assert_eq!(
                has(&after.attributes, "tier"),
                Some(Value::StringValue("gold".into()))
            );
        } else {
            assert_eq!(&after, before, "{} changed", before.name);
        }
    }
    assert_eq!(changed, 12);
    // Spans nobody changed kept their exact bytes.
    let (a, b) = (&input.requests[0], &out.requests[0]);
    let (ia, ib) = (a.index.as_ref().unwrap(), b.index.as_ref().unwrap());
    let untouched = ia
        .spans
        .iter()
        .zip(&ib.spans)
        .filter(|(x, y)| {
            a.bytes[x.range.0 as usize..x.range.1 as usize]
                == b.bytes[y.range.0 as usize..y.range.1 as usize]
        })
        .count();
    assert_eq!(untouched, 30 - 12);
}

#[test]
fn exclude_by_attribute_regexp_and_libraries() {
    let sent = Generator::new(GeneratorOptions::default()).traces(20);
    let yaml = r#"
exclude:
  match_type: regexp
  attributes:
    - {key: gen_ai.request.model, value: "^gpt-4o"}
include:
  match_type: regexp
  libraries:
    - {name: "llm-gateway\\..*"}
actions:
  - {key: reviewed, value: true, action: upsert}
"#;
    let (_, out) = run(yaml, Signal::Traces, sent.encode_to_vec());
    let mut outcomes = (0, 0);
    for (_, lib, s) in spans(&out.decode_traces().unwrap()) {
        let model = match has(&s.attributes, "gen_ai.request.model") {
            Some(Value::StringValue(m)) => m,
            _ => String::new(),
        };
        let want = lib.starts_with("llm-gateway.") && !model.starts_with("gpt-4o");
        assert_eq!(
            has(&s.attributes, "reviewed").is_some(),
            want,
            "{lib} {model}"
        );
        if lib.starts_with("llm-gateway.") {
            if want {
                outcomes.0 += 1;
            } else {
                outcomes.1 += 1;
            }
        }
    }
    assert!(
        outcomes.0 > 0 && outcomes.1 > 0,
        "both outcomes exercised: {outcomes:?}"
    );
}

#[test]
fn log_records_and_data_points_get_actions_too() {
    let mut g = Generator::new(GeneratorOptions::default());
    let yaml = "include:\n  match_type: strict\n  services: [rag-api]\nactions:\n  - {key: user.id, action: delete}\n";
    let (_, out) = run(yaml, Signal::Logs, g.logs(5).encode_to_vec());
    let logs = out.decode_logs().unwrap();
    for rec in &logs.resource_logs[0].scope_logs[0].log_records {
        assert!(has(&rec.attributes, "user.id").is_none());
    }
    // The metrics come from service llm-gateway: excluded by the include.
    let metrics = g.metrics(6);
    let (input, out) = run(yaml, Signal::Metrics, metrics.encode_to_vec());
    assert_eq!(
        input.requests[0].bytes, out.requests[0].bytes,
        "nothing matched, nothing re-encoded"
    );
    let yaml = "actions:\n  - {key: gen_ai.system, value: azure, action: update}\n";
    let (_, out) = run(yaml, Signal::Metrics, metrics.encode_to_vec());
    let text = format!("{:?}", out.decode_metrics().unwrap());
    assert!(text.contains("azure") && !text.contains("\"openai\""));
}

#[test]
fn bad_blocks_are_named() {
    let err = |yaml: &str| {
        crate::component::parse_config::<AttributesConfig>(serde_yaml::from_str(yaml).unwrap())
            .unwrap_err()
    };
    assert_eq!(
        err("include: {match_type: fuzzy, services: [a]}\nactions: [{key: a, action: delete}]")
            .path,
        "include.match_type"
    );
    assert_eq!(
        err("include: {match_type: strict}\nactions: [{key: a, action: delete}]").path,
        "include"
    );
    assert_eq!(
        err("exclude: {match_type: regexp, services: ['(']}\nactions: [{key: a, action: delete}]")
            .path,
        "exclude.services"
    );
    assert_eq!(err("actions: []").path, "actions");
}
