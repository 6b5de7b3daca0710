use super::*;

fn load(yaml: &str) -> Result<Checked, LoadError> {
    Sources::from_text("config.yaml", yaml)
        .load_with_env(&|k| (k == "TEMPO_HOST").then(|| "tempo".to_string()))
}

fn err(yaml: &str) -> String {
    match load(yaml) {
        Ok(_) => panic!("config should have been refused"),
        Err(e) => e.to_string(),
    }
}

const MINIMAL: &str = "receivers:\n  otlp:\n    protocols:\n      grpc:\nexporters:\n  nop:\nservice:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [nop]\n";

#[test]
fn the_default_config_is_valid() {
    let text = include_str!("../../../config.yaml");
    let c = load(text).unwrap();
    assert_eq!(c.pipelines.len(), 3);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn the_llm_gateway_example_is_valid() {
    let text = include_str!("../../../examples/llm-gateway.yaml");
    let c = load(text).unwrap();
    assert_eq!(
        c.pipelines[0].processors,
        [
            "memory_limiter",
            "redaction",
            "llm_cost",
            "tail_sampling",
            "batch"
        ]
    );
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

/// Configs as otelcol users write them (from otelcol's and Tempo's docs'
/// shapes), using only components Observatory has: they load unchanged.
#[test]
fn otelcol_configs_load_unchanged() {
    let gateway = r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 0.0.0.0:4317
        max_recv_msg_size_mib: 16
      http:
        endpoint: 0.0.0.0:4318
        max_request_body_size: 10485760
processors:
  batch:
  batch/big:
    send_batch_size: 10000
    send_batch_max_size: 11000
    timeout: 10s
exporters:
  otlp/tempo:
    endpoint: ${env:TEMPO_HOST}:4317
    tls:
      insecure: true
    headers:
      X-Scope-OrgID: tenant-a
    sending_queue:
      num_consumers: 4
      queue_size: 100
    retry_on_failure:
      enabled: true
      initial_interval: 1s
      max_interval: 10s
      max_elapsed_time: 60s
  otlphttp:
    endpoint: http://collector:4318
    compression: zstd
  debug:
    verbosity: detailed
extensions:
  health_check:
service:
  extensions: [health_check]
  telemetry:
    logs:
      level: debug
      encoding: json
    metrics:
      level: detailed
      address: 0.0.0.0:8888
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch/big]
      exporters: [otlp/tempo, debug]
    metrics:
      receivers: [otlp]
      processors: [batch]
      exporters: [otlphttp]
    logs/debug:
      receivers: [otlp]
      exporters: [debug]
"#;
    let c = load(gateway).unwrap();
    assert_eq!(
        c.pipelines
            .iter()
            .map(|p| p.id.as_str())
            .collect::<Vec<_>>(),
        ["logs/debug", "metrics", "traces"]
    );
    assert_eq!(c.pipelines[0].signal, pipeline::Signal::Logs);
    assert_eq!(c.exporters.len(), 3);
    assert!(c.warnings.is_empty());
}

#[test]
fn unknown_keys_name_their_yaml_path_and_line() {
    let e = err("receivers:\n  otlp:\n    protocols:\n      grpc:\nprocessors:\n  batch:\n    timeoutt: 1s\nexporters:\n  nop:\nservice:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      processors: [batch]\n      exporters: [nop]\n");
    assert!(
        e.starts_with("config.yaml:7: processors.batch.timeoutt: unknown field `timeoutt`"),
        "{e}"
    );
}

#[test]
fn bad_durations_and_wrong_types_are_named() {
    let e = err(&MINIMAL.replace(
        "exporters:\n  nop:\n",
        "exporters:\n  nop:\nprocessors:\n  batch:\n    timeout: 5 seconds\n",
    ));
    assert!(
        e.contains("processors.batch.timeout: invalid duration \"5 seconds\""),
        "{e}"
    );
    let e = err(&MINIMAL.replace(
        "      grpc:\n",
        "      grpc:\n        max_recv_msg_size_mib: lots\n",
    ));
    assert!(
        e.contains(
            "config.yaml:5: receivers.otlp.protocols.grpc.max_recv_msg_size_mib: invalid type"
        ),
        "{e}"
    );
}

#[test]
fn graph_errors_are_named() {
    let e = err(&MINIMAL.replace("exporters: [nop]", "exporters: [nop, otlp/missing]"));
    assert!(
        e.contains(
            "service.pipelines.traces.exporters: \"otlp/missing\" is not defined in exporters"
        ),
        "{e}"
    );
    let e = err(&MINIMAL.replace("      exporters: [nop]\n", ""));
    assert!(
        e.contains("service.pipelines.traces.exporters: must list at least one exporter"),
        "{e}"
    );
    let e = err(&MINIMAL.replace("      receivers: [otlp]\n", "      receivers: []\n"));
    assert!(
        e.contains("service.pipelines.traces.receivers: must list at least one receiver"),
        "{e}"
    );
    let e = err(&MINIMAL.replace("    traces:", "    spans:"));
    assert!(
        e.contains("service.pipelines.spans: pipeline ids are traces, metrics or logs"),
        "{e}"
    );
    let e = err(&MINIMAL
        .replace("  nop:\n", "  nopp:\n")
        .replace("[nop]", "[nopp]"));
    assert!(e.contains("exporters.nopp: unknown type \"nopp\""), "{e}");
    let e = err(&MINIMAL.replace(
        "service:\n",
        "service:\n  telemetry:\n    logs:\n      level: loud\n",
    ));
    assert!(
        e.contains("service.telemetry.logs.level: must be debug, info, warn or error"),
        "{e}"
    );
}

#[test]
fn a_processor_in_a_pipeline_of_another_signal_is_refused() {
    let yaml = MINIMAL
        .replace(
            "exporters:\n  nop:\n",
            "exporters:\n  nop:\nprocessors:\n  llm_cost:\n",
        )
        .replace(
            "    traces:\n      receivers: [otlp]\n",
            "    logs:\n      receivers: [otlp]\n      processors: [llm_cost]\n",
        );
    let e = err(&yaml);
    assert!(
        e.contains("service.pipelines.logs.processors: \"llm_cost\" does not support logs"),
        "{e}"
    );
}

#[test]
fn a_routing_key_that_does_not_fit_the_pipeline_is_refused_by_name() {
    let yaml = MINIMAL
        .replace(
            "exporters:\n  nop:\n",
            "exporters:\n  loadbalancing:\n    routing_key: traceID\n    protocol: {otlp: {tls: {insecure: true}}}\n    resolver: {static: {hostnames: [a:4317]}}\n",
        )
        .replace(
            "    traces:\n      receivers: [otlp]\n      exporters: [nop]\n",
            "    metrics:\n      receivers: [otlp]\n      exporters: [loadbalancing]\n",
        );
    let e = err(&yaml);
    assert!(
        e.contains("exporters.loadbalancing.routing_key: traceID routes traces and logs only, and this exporter is in a metrics pipeline"),
        "{e}"
    );
}

#[test]
fn unused_components_are_warnings() {
    let c = load(&MINIMAL.replace("  nop:\n", "  nop:\n  debug:\n")).unwrap();
    assert_eq!(
        c.warnings,
        vec!["exporters.debug is defined but not used in any pipeline"]
    );
    assert!(!c.exporters.contains_key("debug"));
}

#[test]
fn later_files_merge_over_earlier_ones() {
    let base = Sources {
        files: vec![
            ("a.yaml".into(), MINIMAL.to_string()),
            ("b.yaml".into(), "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 0.0.0.0:5555\nexporters:\n  debug:\nservice:\n  pipelines:\n    traces:\n      exporters: [debug]\n".into()),
        ],
    };
    let c = base.load_with_env(&|_| None).unwrap();
    assert_eq!(c.pipelines[0].exporters, vec!["debug"]);
    assert_eq!(c.pipelines[0].receivers, vec!["otlp"]);
    assert_eq!(
        c.warnings,
        vec!["exporters.nop is defined but not used in any pipeline"]
    );
}
