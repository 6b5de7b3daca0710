//! An `otlp` / `otlphttp` exporter feeding a second Observatory: what the
//! first receives arrives at the second's file exporter unchanged; a backend
//! that comes up late still gets everything.

mod common;

use common::*;
use pipeline::generate::{Generator, GeneratorOptions};
use pipeline::Signal;
use prost::Message;

fn front(exporter: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:@GRPC@
processors:
  batch:
    timeout: 100ms
    send_batch_size: 100
    send_batch_max_size: 150
exporters:
{exporter}
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [fwd]
    logs:
      receivers: [otlp]
      processors: [batch]
      exporters: [fwd]
    metrics:
      receivers: [otlp]
      processors: [batch]
      exporters: [fwd]
"#
    )
    .replace(
        "fwd]",
        &format!("{}]", exporter.trim().split(':').next().unwrap()),
    )
}

async fn send_all(port: u16) -> (Vec<String>, Vec<String>, Vec<String>) {
    let mut g = Generator::new(GeneratorOptions {
        seed: 5,
        error_rate: 0.2,
        slow_rate: 0.2,
    });
    let mut traces =
        opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::default();
    for n in [120, 7, 300, 1] {
        let r = g.spans(n);
        grpc_send(port, Signal::Traces, r.encode_to_vec(), None)
            .await
            .unwrap();
        traces.resource_spans.extend(r.resource_spans);
    }
    let logs = g.logs(42);
    grpc_send(port, Signal::Logs, logs.encode_to_vec(), None)
        .await
        .unwrap();
    let metrics = g.metrics(31);
    grpc_send(port, Signal::Metrics, metrics.encode_to_vec(), None)
        .await
        .unwrap();
    (span_rows(&traces), log_rows(&logs), metric_rows(&metrics))
}

fn check_back(back: &Collector, sent: &(Vec<String>, Vec<String>, Vec<String>)) {
    let lines = wait_for_lines(&back.path("traces.jsonl"), count_spans, 428);
    assert_rows_eq(&span_rows(&traces_from(&lines)), &sent.0);
    let lines = wait_for_lines(&back.path("logs.jsonl"), count_logs, 42);
    assert_rows_eq(&log_rows(&logs_from(&lines)), &sent.1);
    let lines = wait_for_lines(&back.path("metrics.jsonl"), count_points, 31);
    assert_rows_eq(&metric_rows(&metrics_from(&lines)), &sent.2);
}

#[tokio::test]
async fn otlp_grpc_exporter_round_trip() {
    let back = Collector::start(FILE_CONFIG);
    let f = Collector::start(&front(&format!(
        "  otlp/back:\n    endpoint: 127.0.0.1:{}\n    tls:\n      insecure: true\n    headers:\n      X-Scope-OrgID: tenant-a\n",
        back.grpc
    )));
    let sent = send_all(f.grpc).await;
    check_back(&back, &sent);
    // send_batch_max_size split the 300-span request; every part arrived.
    let sent_spans = f.metric("observatory_exporter_sent_spans_total{exporter=\"otlp/back\"}");
    assert_eq!(sent_spans, Some(428.0));
}

#[tokio::test]
async fn otlphttp_exporter_round_trip_in_proto_and_json() {
    for encoding in ["proto", "json"] {
        let back = Collector::start(FILE_CONFIG);
        let f = Collector::start(&front(&format!(
            "  otlphttp/back:\n    endpoint: http://127.0.0.1:{}\n    encoding: {encoding}\n",
            back.http
        )));
        let sent = send_all(f.grpc).await;
        check_back(&back, &sent);
    }
}

#[tokio::test]
async fn a_backend_that_starts_late_still_gets_everything() {
    // Reserve the back end's ports, start the front first, then the back.
    let (bg, bh) = (free_port(), free_port());
    let f = Collector::start(&front(&format!(
        "  otlp/back:\n    endpoint: 127.0.0.1:{bg}\n    tls:\n      insecure: true\n    retry_on_failure:\n      initial_interval: 200ms\n      max_interval: 500ms\n"
    )));
    let sent = send_all(f.grpc).await;
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let template = FILE_CONFIG
        .replace("@GRPC@", &bg.to_string())
        .replace("@HTTP@", &bh.to_string());
    let back = Collector::start(&template);
    check_back(&back, &sent);
    assert_eq!(
        f.metric("observatory_exporter_send_failed_spans_total{exporter=\"otlp/back\"}"),
        Some(0.0)
    );
}
