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
    let peak = c.status_mib("VmHWM");
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

const DECODING: &str = r#"
receivers:
  otlp:
    # Each request is ~150 MiB decoded; the receiver's budget lets them in
    # so that the limiter is what the test exercises.
    admission:
      request_limit_mib: 2048
    protocols:
      http:
        endpoint: 127.0.0.1:@HTTP@
processors:
  memory_limiter:
    check_interval: 100ms
    limit_mib: 200
    spike_limit_mib: 40
  batch:
    timeout: 200ms
exporters:
  file:
    path: @DIR@/traces.jsonl
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [memory_limiter, batch]
      exporters: [file]
"#;

/// One span with `n` int attributes: a few MiB on the wire, several times
/// that once the file exporter decodes it.
fn wide_span(n: usize) -> Vec<u8> {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    let attributes = (0..n)
        .map(|i| KeyValue {
            key: format!("k{i}"),
            value: Some(AnyValue {
                value: Some(Value::IntValue(i as i64)),
            }),
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: vec![7; 16],
                    span_id: vec![8; 8],
                    name: "wide".into(),
                    attributes,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

#[tokio::test]
async fn the_limiter_opens_again_within_seconds_after_a_burst_is_gone() {
    // The attack: concurrent requests of one span with a million
    // attributes each, decoded by the file exporter, left RSS at ~400 MiB
    // with nothing held, and a limiter reading RSS refused every client for
    // minutes. Now it decides on live bytes and trims what glibc kept.
    let c = Collector::start(DECODING);
    let body = wide_span(1_000_000);
    let sends = (0..8).map(|_| {
        let b = body.clone();
        let port = c.http;
        tokio::spawn(async move {
            http_post(port, "/v1/traces", "application/x-protobuf", None, b)
                .await
                .0
        })
    });
    let mut statuses = Vec::new();
    for s in sends {
        statuses.push(s.await.unwrap());
    }
    // Each is either taken or refused as retryable.
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 503),
        "{statuses:?}"
    );
    assert!(statuses.contains(&200), "{statuses:?}");
    // The burst is over once the exporter has written what was taken.
    // (Decoding and writing millions of attributes takes a debug build on a
    // busy 2-core machine well over metric_when's 10 s.)
    let taken = statuses.iter().filter(|s| **s == 200).count() as f64;
    let series = "observatory_exporter_sent_spans_total{exporter=\"file\"}";
    let written = std::time::Instant::now();
    while c.metric(series) != Some(taken) && written.elapsed() < std::time::Duration::from_secs(180)
    {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(c.metric(series), Some(taken));
    let peak = c.status_mib("VmHWM");
    let after = c.status_mib("VmRSS");
    let burst_over = std::time::Instant::now();
    let mut reopened = None;
    while burst_over.elapsed() < std::time::Duration::from_secs(20) {
        let (s, _, _) = http_post(
            c.http,
            "/v1/traces",
            "application/x-protobuf",
            None,
            Generator::new(GeneratorOptions::default())
                .spans(3)
                .encode_to_vec(),
        )
        .await;
        if s == 200 {
            reopened = Some(burst_over.elapsed());
            break;
        }
        assert_eq!(s, 503);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    eprintln!(
        "memory_limiter after a burst: statuses {statuses:?}, peak RSS {peak:.0} MiB, RSS after {after:.0} MiB, reopened after {reopened:?}"
    );
    let reopened = reopened.expect("limiter still shut 20 s after the burst");
    assert!(reopened < std::time::Duration::from_secs(5), "{reopened:?}");
}
