//! SIGTERM stops receivers, drains pipelines and flushes exporters: data
//! accepted before the signal is exported even when its batch had not
//! filled, and the process exits 0.

mod common;

use common::*;
use pipeline::generate::{Generator, GeneratorOptions};
use pipeline::Signal;
use prost::Message;

#[tokio::test]
async fn sigterm_drains_everything_accepted() {
    // A 60 s batch timeout: without draining, nothing would be written.
    let c = Collector::start(&FILE_CONFIG.replace("timeout: 100ms", "timeout: 60s"));
    let mut mk = Generator::new(GeneratorOptions::default());
    for _ in 0..10 {
        grpc_send(c.grpc, Signal::Traces, mk.spans(50).encode_to_vec(), None)
            .await
            .unwrap();
    }
    grpc_send(c.grpc, Signal::Logs, mk.logs(9).encode_to_vec(), None)
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        std::fs::read_to_string(c.path("traces.jsonl")).unwrap_or_default(),
        "",
        "batch held the data"
    );
    let mut c = c;
    let code = c.terminate();
    assert_eq!(code, 0, "{}", c.logs());
    let traces = std::fs::read_to_string(c.path("traces.jsonl")).unwrap();
    let lines: Vec<String> = traces.lines().map(str::to_string).collect();
    assert_eq!(count_spans(&lines), 500);
    let logs: Vec<String> = std::fs::read_to_string(c.path("logs.jsonl"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(count_logs(&logs), 9);
    assert!(c.logs().contains("Shutdown complete."), "{}", c.logs());
}

#[tokio::test]
async fn health_is_503_while_shutting_down() {
    // An exporter that cannot deliver keeps the drain going; meanwhile the
    // health check must say the collector is not available.
    let template = r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:@GRPC@
exporters:
  otlp:
    endpoint: 127.0.0.1:@DEAD@
    tls:
      insecure: true
    retry_on_failure:
      initial_interval: 100ms
      max_elapsed_time: 3s
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [otlp]
"#;
    let mut c = Collector::start_with(template, &[("DEAD", free_port().to_string())]);
    grpc_send(
        c.grpc,
        Signal::Traces,
        Generator::new(GeneratorOptions::default())
            .spans(5)
            .encode_to_vec(),
        None,
    )
    .await
    .unwrap();
    let pid = c.child.id().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(http_get(c.health, "/").map(|r| r.0), Some(503));
    assert_eq!(c.terminate(), 0);
    // The exporter gave up after max_elapsed_time and said so.
    assert!(
        c.logs().contains("export failed; data dropped"),
        "{}",
        c.logs()
    );
}
