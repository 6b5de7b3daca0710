//! A gateway in front of a sink slower than its intake: memory stays under
//! the bound the queue caps give (docs/reliability.md), the senders are
//! told to retry, and once the sink catches up every span has arrived.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use pipeline::generate::{Generator, GeneratorOptions};
use pipeline::Signal;
use prost::Message;

/// A sink that takes 40,000 spans a second (otelcol's `ratelimit` keys:
/// 429 / RESOURCE_EXHAUSTED with a retry delay beyond that).
const SINK: &str = r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:@GRPC@
processors:
  ratelimit:
    strategy: records
    rate: 40000
    burst: 40000
exporters:
  nop: {}
service:
  pipelines:
    traces: {receivers: [otlp], processors: [ratelimit], exporters: [nop]}
"#;

/// The default pipeline shape with the sending queue's byte cap lowered
/// from 256 MiB to 8 so the test needs 100 MB, not gigabytes.
const GATEWAY: &str = r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:@GRPC@
processors:
  batch: {}
exporters:
  otlp:
    endpoint: 127.0.0.1:@SINK@
    tls: {insecure: true}
    compression: none
    sending_queue: {max_size_mib: 8}
service:
  pipelines:
    traces: {receivers: [otlp], processors: [batch], exporters: [otlp]}
"#;

const REQUESTS: usize = 500;
const SPANS: usize = 512;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_sink_keeps_the_gateway_under_its_memory_bound_and_loses_nothing() {
    let sink = Collector::start(SINK);
    let gateway = Collector::start_with(GATEWAY, &[("SINK", sink.grpc.to_string())]);
    let mut g = Generator::new(GeneratorOptions::default());
    let bodies: Arc<Vec<Vec<u8>>> =
        Arc::new((0..16).map(|_| g.spans(SPANS).encode_to_vec()).collect());
    let request_bytes = bodies[0].len();
    // Warm up (the first request sizes buffers), then read the baseline.
    grpc_send(gateway.grpc, Signal::Traces, bodies[0].clone(), None)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let base = gateway.status_mib("VmRSS");

    let refused = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let bad_code = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::new();
    for t in 0..4 {
        let (bodies, refused, bad_code) = (bodies.clone(), refused.clone(), bad_code.clone());
        let port = gateway.grpc;
        senders.push(tokio::spawn(async move {
            for i in (t..REQUESTS).step_by(4) {
                let body = bodies[i % bodies.len()].clone();
                loop {
                    match grpc_send(port, Signal::Traces, body.clone(), None).await {
                        Ok(_) => break,
                        Err(s) => {
                            refused.fetch_add(1, Ordering::Relaxed);
                            // Retryable per the OTLP spec, or the data is lost.
                            if !matches!(
                                s.code(),
                                tonic::Code::Unavailable | tonic::Code::ResourceExhausted
                            ) {
                                bad_code.store(true, Ordering::Relaxed);
                            }
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
            }
        }));
    }
    let started = Instant::now();
    for s in senders {
        s.await.unwrap();
    }
    let sent_for = started.elapsed();
    let total = (REQUESTS + 1) * SPANS;
    let accepted =
        "observatory_receiver_accepted_spans_total{receiver=\"otlp\",transport=\"grpc\"}";
    let deadline = Instant::now() + Duration::from_secs(60);
    while sink.metric(accepted) != Some(total as f64) {
        assert!(
            Instant::now() < deadline,
            "sink has {:?} of {total}:\n{}",
            sink.metric(accepted),
            gateway.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let peak = gateway.status_mib("VmHWM");
    let mib = |b: usize| b as f64 / (1 << 20) as f64;
    // The bound docs/reliability.md states: the exporter's queue cap plus
    // the one batch let into an empty queue, twice (gRPC encodes a copy of
    // each batch in flight); batch's 64 queued requests and its pending
    // batch; the requests in flight at the receiver (4 senders), charged at
    // 4x their wire size while they are read and scanned.
    let batch_bytes = 8192.0 / SPANS as f64 * mib(request_bytes);
    let bound = base
        + 2.0 * (8.0 + batch_bytes)
        + (64.0 * mib(request_bytes) + batch_bytes)
        + 4.0 * 4.0 * mib(request_bytes);
    let data = mib(REQUESTS * request_bytes);
    eprintln!(
        "sent {data:.0} MiB in {sent_for:?}; {} refusals; gateway RSS base {base:.1} MiB, peak {peak:.1} MiB, bound {bound:.1} MiB",
        refused.load(Ordering::Relaxed)
    );
    assert!(
        !bad_code.load(Ordering::Relaxed),
        "a refusal was not retryable"
    );
    assert!(
        refused.load(Ordering::Relaxed) > 0,
        "the sink was not slower than the intake"
    );
    assert!(
        data > 2.0 * (bound - base),
        "the test sends more than the bound holds"
    );
    assert!(
        peak <= bound,
        "peak RSS {peak:.1} MiB over the bound {bound:.1} MiB"
    );
    let failed = gateway.metric("observatory_exporter_send_failed_spans_total{exporter=\"otlp\"}");
    assert_eq!(failed, Some(0.0));
}
