//! Traces, metrics and logs sent over gRPC, HTTP/protobuf, HTTP/JSON and
//! compressed arrive at the `file` exporter equal to what was sent.

mod common;

use common::*;
use pipeline::generate::{Generator, GeneratorOptions};
use pipeline::Signal;
use prost::Message;
use tonic::codec::CompressionEncoding;

fn gen(seed: u64) -> Generator {
    Generator::new(GeneratorOptions {
        seed,
        error_rate: 0.3,
        slow_rate: 0.1,
    })
}

#[tokio::test]
async fn traces_arrive_equal_over_every_transport_and_encoding() {
    let c = Collector::start(FILE_CONFIG);
    let mut sent = Vec::new();
    let mut next = |seed| {
        let r = gen(seed).spans(37);
        sent.push(r.clone());
        r
    };
    grpc_send(c.grpc, Signal::Traces, next(1).encode_to_vec(), None)
        .await
        .unwrap();
    grpc_send(
        c.grpc,
        Signal::Traces,
        next(2).encode_to_vec(),
        Some(CompressionEncoding::Gzip),
    )
    .await
    .unwrap();
    grpc_send(
        c.grpc,
        Signal::Traces,
        next(3).encode_to_vec(),
        Some(CompressionEncoding::Zstd),
    )
    .await
    .unwrap();
    let (s, h, body) = http_post(
        c.http,
        "/v1/traces",
        "application/x-protobuf",
        None,
        next(4).encode_to_vec(),
    )
    .await;
    assert_eq!(
        (s, h["content-type"].to_str().unwrap(), body.len()),
        (200, "application/x-protobuf", 0)
    );
    let (s, h, body) = http_post(
        c.http,
        "/v1/traces",
        "application/json",
        None,
        serde_json::to_vec(&next(5)).unwrap(),
    )
    .await;
    assert_eq!(
        (s, h["content-type"].to_str().unwrap(), &body[..]),
        (200, "application/json", &b"{}"[..])
    );
    let (s, _, _) = http_post(
        c.http,
        "/v1/traces",
        "application/x-protobuf",
        Some("gzip"),
        gzip(&next(6).encode_to_vec()),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _, _) = http_post(
        c.http,
        "/v1/traces",
        "application/json",
        Some("zstd"),
        zstd::encode_all(&serde_json::to_vec(&next(7)).unwrap()[..], 3).unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    let mut deflate = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut deflate, &next(8).encode_to_vec()).unwrap();
    let (s, _, _) = http_post(
        c.http,
        "/v1/traces",
        "application/x-protobuf",
        Some("deflate"),
        deflate.finish().unwrap(),
    )
    .await;
    assert_eq!(s, 200);

    let mut expected =
        opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::default();
    for r in sent {
        expected.resource_spans.extend(r.resource_spans);
    }
    let lines = wait_for_lines(&c.path("traces.jsonl"), count_spans, 8 * 37);
    assert_rows_eq(&span_rows(&traces_from(&lines)), &span_rows(&expected));
    assert_eq!(
        c.metric("observatory_receiver_accepted_spans_total{receiver=\"otlp\",transport=\"grpc\"}"),
        Some(3.0 * 37.0)
    );
    assert_eq!(
        c.metric("observatory_receiver_accepted_spans_total{receiver=\"otlp\",transport=\"http\"}"),
        Some(5.0 * 37.0)
    );
    assert_eq!(
        c.metric("observatory_exporter_sent_spans_total{exporter=\"file/traces\"}"),
        Some(8.0 * 37.0)
    );
}

#[tokio::test]
async fn logs_and_metrics_arrive_equal() {
    let c = Collector::start(FILE_CONFIG);
    let logs_a = gen(10).logs(25);
    let logs_b = gen(11).logs(13);
    grpc_send(
        c.grpc,
        Signal::Logs,
        logs_a.encode_to_vec(),
        Some(CompressionEncoding::Gzip),
    )
    .await
    .unwrap();
    let (s, _, _) = http_post(
        c.http,
        "/v1/logs",
        "application/json",
        None,
        serde_json::to_vec(&logs_b).unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    let metrics_a = gen(12).metrics(30);
    let metrics_b = gen(13).metrics(7);
    grpc_send(c.grpc, Signal::Metrics, metrics_a.encode_to_vec(), None)
        .await
        .unwrap();
    let (s, _, _) = http_post(
        c.http,
        "/v1/metrics",
        "application/x-protobuf",
        Some("gzip"),
        gzip(&metrics_b.encode_to_vec()),
    )
    .await;
    assert_eq!(s, 200);

    let mut logs = logs_a.clone();
    logs.resource_logs.extend(logs_b.resource_logs);
    let lines = wait_for_lines(&c.path("logs.jsonl"), count_logs, 38);
    assert_rows_eq(&log_rows(&logs_from(&lines)), &log_rows(&logs));

    let mut metrics = metrics_a.clone();
    metrics.resource_metrics.extend(metrics_b.resource_metrics);
    let lines = wait_for_lines(&c.path("metrics.jsonl"), count_points, 37);
    assert_rows_eq(&metric_rows(&metrics_from(&lines)), &metric_rows(&metrics));
}

#[tokio::test]
async fn an_empty_request_succeeds() {
    let c = Collector::start(FILE_CONFIG);
    grpc_send(c.grpc, Signal::Traces, Vec::new(), None)
        .await
        .unwrap();
    let (s, _, _) = http_post(
        c.http,
        "/v1/logs",
        "application/x-protobuf",
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _, body) = http_post(
        c.http,
        "/v1/metrics",
        "application/json",
        None,
        b"{}".to_vec(),
    )
    .await;
    assert_eq!((s, &body[..]), (200, &b"{}"[..]));
}

#[tokio::test]
async fn several_named_receivers_listen_on_their_own_ports() {
    let template = FILE_CONFIG.replace(
        "processors:\n",
        "  otlp/claude:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:@CLAUDE_GRPC@\n      http:\n        endpoint: 127.0.0.1:@CLAUDE_HTTP@\nprocessors:\n",
    )
    .replace("      receivers: [otlp]\n      processors: [batch]\n      exporters: [file/traces]", "      receivers: [otlp, otlp/claude]\n      processors: [batch]\n      exporters: [file/traces]");
    let (g, h) = (free_port(), free_port());
    let c = Collector::start_with(
        &template,
        &[
            ("CLAUDE_GRPC", g.to_string()),
            ("CLAUDE_HTTP", h.to_string()),
        ],
    );
    grpc_send(g, Signal::Traces, gen(20).spans(5).encode_to_vec(), None)
        .await
        .unwrap();
    let (s, _, _) = http_post(
        h,
        "/v1/traces",
        "application/x-protobuf",
        None,
        gen(21).spans(6).encode_to_vec(),
    )
    .await;
    assert_eq!(s, 200);
    grpc_send(
        c.grpc,
        Signal::Traces,
        gen(22).spans(7).encode_to_vec(),
        None,
    )
    .await
    .unwrap();
    wait_for_lines(&c.path("traces.jsonl"), count_spans, 18);
    assert_eq!(c.metric("observatory_receiver_accepted_spans_total{receiver=\"otlp/claude\",transport=\"grpc\"}"), Some(5.0));
    assert_eq!(c.metric("observatory_receiver_accepted_spans_total{receiver=\"otlp/claude\",transport=\"http\"}"), Some(6.0));
}

#[tokio::test]
async fn debug_exporter_logs_at_each_verbosity() {
    for (verbosity, expect) in [
        ("basic", "items=5"),
        ("normal", "llm.chat_completion trace_id="),
        ("detailed", "\"name\":\"llm.chat_completion\""),
    ] {
        let template = FILE_CONFIG
            .replace(
                "exporters:\n",
                &format!("exporters:\n  debug:\n    verbosity: {verbosity}\n"),
            )
            .replace(
                "exporters: [file/traces]",
                "exporters: [file/traces, debug]",
            );
        let c = Collector::start(&template);
        grpc_send(
            c.grpc,
            Signal::Traces,
            gen(30).spans(5).encode_to_vec(),
            None,
        )
        .await
        .unwrap();
        wait_for_lines(&c.path("traces.jsonl"), count_spans, 5);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !c.logs().contains(expect) && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(
            c.logs().contains(expect),
            "{verbosity}: {expect:?} not in:\n{}",
            c.logs()
        );
    }
}
