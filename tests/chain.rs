//! An `otlp` / `otlphttp` exporter feeding a second Observatory: what the
//! first receives arrives at the second's file exporter unchanged; a backend
//! that comes up late still gets everything; headers and compression reach
//! the wire.

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
    let sent_spans = r#"observatory_exporter_sent_spans_total{exporter="otlp/back"}"#;
    assert_eq!(f.metric_when(sent_spans, 428.0).await, Some(428.0));
}

#[tokio::test]
async fn otlp_grpc_exporter_round_trip_with_zstd_and_none() {
    for codec in ["zstd", "none"] {
        let back = Collector::start(FILE_CONFIG);
        let f = Collector::start(&front(&format!(
            "  otlp/back:\n    endpoint: 127.0.0.1:{}\n    tls:\n      insecure: true\n    compression: {codec}\n",
            back.grpc
        )));
        let sent = send_all(f.grpc).await;
        check_back(&back, &sent);
    }
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

/// Accepts one HTTP/1.1 request, answers 200 with an empty protobuf body,
/// and returns the request's header block and body.
async fn capture_one(listener: tokio::net::TcpListener) -> (String, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut sock, _) = listener.accept().await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    let (head, body_start, len) = loop {
        let n = sock.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed before a full request");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..pos]).to_string();
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .expect("content-length");
            break (head, pos + 4, len);
        }
    };
    while buf.len() < body_start + len {
        let n = sock.read(&mut chunk).await.unwrap();
        buf.extend_from_slice(&chunk[..n]);
    }
    sock.write_all(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n",
    )
    .await
    .unwrap();
    (head, buf[body_start..body_start + len].to_vec())
}

#[tokio::test]
async fn otlphttp_sends_headers_compression_and_the_request_bytes() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let f = Collector::start(&front(&format!(
        "  otlphttp/tempo:\n    endpoint: http://127.0.0.1:{port}\n    headers:\n      X-Scope-OrgID: tenant-a\n"
    )));
    let sent = Generator::new(GeneratorOptions::default()).spans(20);
    grpc_send(f.grpc, Signal::Traces, sent.encode_to_vec(), None)
        .await
        .unwrap();
    let (head, body) =
        tokio::time::timeout(std::time::Duration::from_secs(10), capture_one(listener))
            .await
            .unwrap();
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("post /v1/traces http/1.1"), "{head}");
    assert!(head.contains("x-scope-orgid: tenant-a"), "{head}");
    assert!(
        head.contains("content-type: application/x-protobuf"),
        "{head}"
    );
    assert!(head.contains("content-encoding: gzip"), "{head}");
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut raw).unwrap();
    let got = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(
        &raw[..],
    )
    .unwrap();
    assert_rows_eq(&span_rows(&got), &span_rows(&sent));
}

/// One gRPC export as it crossed the wire: request headers and the
/// length-prefixed message (5-byte gRPC frame header included).
struct GrpcCall {
    path: String,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

/// A minimal Tempo-like OTLP/gRPC endpoint over h2c: records each call and
/// answers with an empty `ExportTraceServiceResponse` and `grpc-status: 0`
/// in the trailers, as a gRPC server does.
async fn grpc_capture() -> (u16, tokio::sync::mpsc::UnboundedReceiver<GrpcCall>) {
    use axum::body::Body;
    use http_body_util::BodyExt;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let tx = tx.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = body.collect().await.unwrap().to_bytes().to_vec();
            let _ = tx.send(GrpcCall {
                path: parts.uri.path().to_string(),
                headers: parts.headers,
                body,
            });
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
            let frames = futures::stream::iter([
                Ok::<_, std::convert::Infallible>(http_body::Frame::data(
                    bytes::Bytes::from_static(&[0, 0, 0, 0, 0]),
                )),
                Ok(http_body::Frame::trailers(trailers)),
            ]);
            http::Response::builder()
                .header("content-type", "application/grpc")
                .body(Body::new(http_body_util::StreamBody::new(frames)))
                .unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (port, rx)
}

#[tokio::test]
async fn otlp_grpc_to_tempo_sends_the_tenant_header_gzip_and_every_span_field() {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    let (port, mut calls) = grpc_capture().await;
    let f = Collector::start(&front(&format!(
        "  otlp/tempo:\n    endpoint: 127.0.0.1:{port}\n    tls:\n      insecure: true\n    compression: gzip\n    headers:\n      X-Scope-OrgID: tenant-a\n"
    )));
    let sent = Generator::new(GeneratorOptions::default()).spans(120);
    grpc_send(f.grpc, Signal::Traces, sent.encode_to_vec(), None)
        .await
        .unwrap();
    let mut got = ExportTraceServiceRequest::default();
    while span_rows(&got).len() < 120 {
        let call = tokio::time::timeout(std::time::Duration::from_secs(10), calls.recv())
            .await
            .expect("an export within 10s")
            .unwrap();
        assert_eq!(
            call.path,
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
        );
        let h = |k: &str| call.headers.get(k).map(|v| v.to_str().unwrap().to_string());
        assert_eq!(h("x-scope-orgid").as_deref(), Some("tenant-a"));
        assert_eq!(h("content-type").as_deref(), Some("application/grpc"));
        assert_eq!(h("grpc-encoding").as_deref(), Some("gzip"));
        // The gRPC frame: compressed flag 1, then the gzip stream's length.
        let b = &call.body;
        assert_eq!(b[0], 1, "the message is marked compressed");
        let len = u32::from_be_bytes(b[1..5].try_into().unwrap()) as usize;
        assert_eq!(b.len(), 5 + len);
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&b[5..]), &mut raw).unwrap();
        let part = ExportTraceServiceRequest::decode(&raw[..]).unwrap();
        got.resource_spans.extend(part.resource_spans);
    }
    assert_rows_eq(&span_rows(&got), &span_rows(&sent));
}
