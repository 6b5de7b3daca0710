//! `memory_limiter` against a flood while the exporter cannot deliver (so
//! everything accepted stays in memory): the process stays under
//! `limit_mib`, every request is either accepted or refused as retryable,
//! and the collector's own counts agree with the client's.

mod common;

use common::*;
use pipeline::generate::{Generator, GeneratorOptions};
use pipeline::Signal;
use prost::Message;
use tonic::Code;

const LIMITED: &str = r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:@GRPC@
processors:
  memory_limiter:
    check_interval: 20ms
    limit_mib: 150
    spike_limit_mib: 50
exporters:
  otlp:
    endpoint: 127.0.0.1:@DEAD@
    tls:
      insecure: true
    retry_on_failure:
      initial_interval: 60s
    sending_queue:
      num_consumers: 1
      queue_size: 100000
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [memory_limiter]
      exporters: [otlp]
"#;

fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kb / 1024.0
}

#[tokio::test]
async fn a_flood_stays_under_the_limit_and_every_span_is_accounted_for() {
    let c = Collector::start_with(LIMITED, &[("DEAD", free_port().to_string())]);
    // 40 distinct ~0.9 MB requests, sent 400 times: ~370 MB offered.
    let mut g = Generator::new(GeneratorOptions::default());
    let bodies: Vec<Vec<u8>> = (0..40).map(|_| g.spans(2000).encode_to_vec()).collect();
    let (mut accepted, mut refused) = (0u64, 0u64);
    for i in 0..400 {
        match grpc_send(
            c.grpc,
            Signal::Traces,
            bodies[i % bodies.len()].clone(),
            None,
        )
        .await
        {
            Ok(_) => accepted += 2000,
            Err(e) => {
                assert_eq!(e.code(), Code::Unavailable, "{e:?}");
                assert!(e.message().contains("memory_limiter"), "{}", e.message());
                refused += 2000;
            }
        }
    }
    assert_eq!(accepted + refused, 800_000);
    assert!(
        refused > 0,
        "the limiter never refused: the test offered too little"
    );
    assert!(
        accepted > 40_000,
        "the limiter refused nearly everything: {accepted}"
    );
    let peak = peak_rss_mib(c.child.id());
    eprintln!("memory_limiter flood: accepted {accepted} spans, refused {refused}, peak RSS {peak:.1} MiB (limit 150, soft 100)");
    assert!(peak < 150.0, "peak RSS {peak:.1} MiB over limit_mib 150");
    let labels = "{receiver=\"otlp\",transport=\"grpc\"}";
    assert_eq!(
        c.metric(&format!(
            "observatory_receiver_accepted_spans_total{labels}"
        )),
        Some(accepted as f64)
    );
    assert_eq!(
        c.metric(&format!("observatory_receiver_refused_spans_total{labels}")),
        Some(refused as f64)
    );
    assert_eq!(
        c.metric("observatory_processor_refused_spans_total{processor=\"memory_limiter\"}"),
        Some(refused as f64)
    );
    // Accepted data is still held (queued for the exporter), not dropped.
    assert_eq!(
        c.metric("observatory_exporter_send_failed_spans_total{exporter=\"otlp\"}"),
        Some(0.0)
    );
}
