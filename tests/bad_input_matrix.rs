//! The bad-input matrix: every case gets its expected status (and a message
//! naming the problem), the very next good request on the same transport
//! still succeeds, and the process stays under `memory_limiter`'s limit
//! throughout, bombs and amplifiers included.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, ArrayValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use pipeline::generate::{Generator, GeneratorOptions};
use pipeline::rpc_status::RpcStatus;
use pipeline::Signal;
use prost::Message;
use tonic::codec::CompressionEncoding;
use tonic::Code;

const MATRIX: &str = r#"
receivers:
  otlp:
    admission:
      request_limit_mib: 16
    protocols:
      grpc:
        endpoint: 127.0.0.1:@GRPC@
      http:
        endpoint: 127.0.0.1:@HTTP@
        max_request_body_size: 4194304
processors:
  memory_limiter:
    check_interval: 100ms
    limit_mib: 300
    spike_limit_mib: 60
  batch:
    timeout: 100ms
exporters:
  file:
    path: @DIR@/traces.jsonl
  file/logs:
    path: @DIR@/logs.jsonl
  file/metrics:
    path: @DIR@/metrics.jsonl
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [memory_limiter, batch]
      exporters: [file]
    logs:
      receivers: [otlp]
      processors: [memory_limiter, batch]
      exporters: [file/logs]
    metrics:
      receivers: [otlp]
      processors: [memory_limiter, batch]
      exporters: [file/metrics]
"#;

const PB: &str = "application/x-protobuf";
const JSON: &str = "application/json";

fn good() -> Vec<u8> {
    Generator::new(GeneratorOptions::default())
        .spans(3)
        .encode_to_vec()
}

fn one_span(span: Span) -> Vec<u8> {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![span],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

fn ids() -> Span {
    Span {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        name: "s".into(),
        ..Default::default()
    }
}

/// An attribute whose value is arrays nested `levels` deep.
fn deep(levels: usize) -> Vec<u8> {
    let mut v = AnyValue {
        value: Some(Value::IntValue(1)),
    };
    for _ in 0..levels {
        v = AnyValue {
            value: Some(Value::ArrayValue(ArrayValue { values: vec![v] })),
        };
    }
    one_span(Span {
        attributes: vec![KeyValue {
            key: "deep".into(),
            value: Some(v),
            ..Default::default()
        }],
        ..ids()
    })
}

fn field(number: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 8);
    prost::encoding::encode_key(number, prost::encoding::WireType::LengthDelimited, &mut out);
    prost::encoding::encode_varint(body.len() as u64, &mut out);
    out.extend_from_slice(body);
    out
}

/// As [`deep`], framed by hand: prost's own encoder (and the drop of the
/// nested value) would overflow the test's stack at this depth.
fn deep_raw(levels: usize) -> Vec<u8> {
    let mut v = vec![0x18, 0x01]; // AnyValue { int_value: 1 }
    for _ in 0..levels {
        v = field(5, &field(1, &v)); // AnyValue { array_value { values: [v] } }
    }
    let mut kv = field(1, b"deep");
    kv.extend(field(2, &v));
    let mut span = field(1, &[1; 16]);
    span.extend(field(2, &[2; 8]));
    span.extend(field(9, &kv));
    field(1, &field(2, &field(2, &span)))
}

fn many_attributes(n: usize) -> Vec<u8> {
    one_span(Span {
        attributes: (0..n)
            .map(|i| KeyValue {
                key: format!("k{i}"),
                value: Some(AnyValue {
                    value: Some(Value::IntValue(i as i64)),
                }),
                ..Default::default()
            })
            .collect(),
        ..ids()
    })
}

/// `n` empty spans in one ScopeSpans: 2 bytes each on the wire.
fn empty_spans(n: usize) -> Vec<u8> {
    let spans: Vec<u8> = [0x12, 0x00].repeat(n);
    field(1, &field(2, &spans))
}

fn bad_utf8() -> Vec<u8> {
    let mut b = one_span(Span {
        name: "abc".into(),
        ..ids()
    });
    let at = b.windows(3).position(|w| w == b"abc").unwrap();
    b[at] = 0xff;
    b
}

fn zstd_bomb(n: usize) -> Vec<u8> {
    zstd::bulk::compress(&vec![0u8; n], 19).unwrap()
}

fn deflate_bomb(n: usize) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(&vec![0u8; n]).unwrap();
    e.finish().unwrap()
}

/// A raw HTTP/1.1 exchange: writes `head` and `body`, half-closes when
/// asked, and returns the status line's code (0 if the server closed
/// without answering).
fn raw(port: u16, head: &str, body: &[u8], half_close: bool) -> u16 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let _ = s.write_all(head.as_bytes());
    let _ = s.write_all(body);
    if half_close {
        let _ = s.shutdown(std::net::Shutdown::Write);
    }
    let mut buf = [0u8; 256];
    match s.read(&mut buf) {
        Ok(n) if n > 12 => String::from_utf8_lossy(&buf[9..12]).parse().unwrap_or(0),
        _ => 0,
    }
}

enum Case {
    /// OTLP/HTTP: path, content type, content encoding, body; status and a
    /// message the google.rpc.Status must contain.
    Http(
        &'static str,
        &'static str,
        Option<&'static str>,
        Vec<u8>,
        u16,
        &'static str,
    ),
    /// OTLP/gRPC: signal, body, compression; code and message part.
    Grpc(
        Signal,
        Vec<u8>,
        Option<CompressionEncoding>,
        Code,
        &'static str,
    ),
    /// Raw HTTP/1.1 bytes: head, body, half-close; acceptable statuses (0:
    /// closed without an answer).
    Raw(String, Vec<u8>, bool, &'static [u16]),
    /// HTTP/2 rapid reset against the gRPC port: streams opened and reset.
    RapidReset(usize),
}

fn cases() -> Vec<(&'static str, Case)> {
    use Case::*;
    let mut json_objects = b"{\"resourceSpans\":[".to_vec();
    for i in 0..300_000 {
        if i > 0 {
            json_objects.push(b',');
        }
        json_objects.extend_from_slice(b"{}");
    }
    json_objects.extend_from_slice(b"]}");
    let deep_json = |levels: usize| {
        format!(
            "{{\"resourceSpans\":[{{\"scopeSpans\":[{{\"spans\":[{{\"traceId\":\"0102030405060708090a0b0c0d0e0f10\",\"spanId\":\"0102030405060708\",\"attributes\":[{{\"key\":\"d\",\"value\":{}{{\"intValue\":\"1\"}}{}}}]}}]}}]}}]}}",
            "{\"arrayValue\":{\"values\":[".repeat(levels),
            "]}}".repeat(levels)
        )
        .into_bytes()
    };
    let logs_deep = {
        use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
        use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
        let mut v = AnyValue {
            value: Some(Value::IntValue(1)),
        };
        for _ in 0..60 {
            v = AnyValue {
                value: Some(Value::ArrayValue(ArrayValue { values: vec![v] })),
            };
        }
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![LogRecord {
                        body: Some(v),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
        .encode_to_vec()
    };
    let good_len = good().len();
    vec![
        ("truncated length prefix", Http("/v1/traces", PB, None, b"\x0a\xff\xff\xff\x0f".to_vec(), 400, "length")),
        ("length prefix claiming 2 GiB", Http("/v1/traces", PB, None, b"\x0a\x80\x80\x80\x80\x08\x00".to_vec(), 400, "invalid protobuf")),
        ("11-byte varint", Http("/v1/traces", PB, None, b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01".to_vec(), 400, "invalid protobuf")),
        ("invalid UTF-8 span name", Http("/v1/traces", PB, None, bad_utf8(), 400, "not valid UTF-8")),
        ("5-byte trace id", Http("/v1/traces", PB, None, one_span(Span { trace_id: vec![1; 5], ..ids() }), 400, "trace id must be 16 bytes")),
        ("9-byte span id", Http("/v1/traces", PB, None, one_span(Span { span_id: vec![1; 9], ..ids() }), 400, "span id must be 8 bytes")),
        ("arrays nested 60 deep (protobuf)", Http("/v1/traces", PB, None, deep(60), 400, "nested more than 100 deep")),
        ("arrays nested 5000 deep (protobuf)", Http("/v1/traces", PB, None, deep_raw(5000), 400, "nested more than 100 deep")),
        ("logs nested 60 deep", Http("/v1/logs", PB, None, logs_deep, 400, "recursion limit")),
        ("metrics garbage", Http("/v1/metrics", PB, None, b"\x0a\x03\x0a\x01".to_vec(), 400, "invalid protobuf")),
        ("a million empty spans", Http("/v1/traces", PB, None, empty_spans(1_000_000), 413, "too large once decoded")),
        ("a million empty spans, gzip", Http("/v1/traces", PB, Some("gzip"), gzip(&empty_spans(1_000_000)), 413, "too large once decoded")),
        ("200,000 attributes in one span", Http("/v1/traces", PB, None, many_attributes(200_000), 413, "too large once decoded")),
        ("body over max_request_body_size", Http("/v1/traces", PB, None, vec![0u8; 5 << 20], 413, "max_request_body_size")),
        ("gzip bomb (64 MiB of zeros)", Http("/v1/traces", PB, Some("gzip"), gzip(&vec![0u8; 64 << 20]), 413, "max_request_body_size")),
        ("zstd bomb (64 MiB of zeros)", Http("/v1/traces", PB, Some("zstd"), zstd_bomb(64 << 20), 413, "max_request_body_size")),
        ("deflate bomb (64 MiB of zeros)", Http("/v1/traces", PB, Some("deflate"), deflate_bomb(64 << 20), 413, "max_request_body_size")),
        ("not gzip at all", Http("/v1/traces", PB, Some("gzip"), b"plain".to_vec(), 400, "invalid gzip body")),
        ("not zstd at all", Http("/v1/traces", PB, Some("zstd"), b"plain".to_vec(), 400, "zstd")),
        ("unsupported Content-Encoding", Http("/v1/traces", PB, Some("br"), good(), 400, "unsupported Content-Encoding")),
        ("unsupported Content-Type", Http("/v1/traces", "text/plain", None, good(), 415, "unsupported Content-Type")),
        ("protobuf sent as JSON", Http("/v1/traces", JSON, None, good(), 400, "invalid OTLP/JSON")),
        ("malformed JSON", Http("/v1/traces", JSON, None, b"{\"resourceSpans\": [".to_vec(), 400, "invalid OTLP/JSON")),
        ("JSON of the wrong shape", Http("/v1/logs", JSON, None, b"{\"resourceLogs\": 7}".to_vec(), 400, "invalid OTLP/JSON")),
        ("JSON bad hex trace id", Http("/v1/traces", JSON, None, br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz","spanId":"0102030405060708"}]}]}]}"#.to_vec(), 400, "invalid OTLP/JSON")),
        ("JSON invalid UTF-8", Http("/v1/traces", JSON, None, b"{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"name\":\"\xff\"}]}]}]}".to_vec(), 400, "invalid OTLP/JSON")),
        ("JSON nested 60 deep", Http("/v1/traces", JSON, None, deep_json(60), 400, "recursion limit")),
        ("JSON nested past serde's limit", Http("/v1/traces", JSON, None, deep_json(5000), 400, "recursion limit")),
        ("JSON of 300,000 objects", Http("/v1/traces", JSON, None, json_objects, 413, "too large once decoded")),
        ("JSON unknown enum name", Http("/v1/traces", JSON, None, br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"kind":"SPAN_KIND_NOPE"}]}]}]}"#.to_vec(), 400, "invalid OTLP/JSON")),
        ("unknown path", Http("/v1/spans", PB, None, good(), 404, "no OTLP endpoint")),
        ("Content-Length shorter than the body sent", Raw(format!("POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: {PB}\r\nContent-Length: 5\r\n\r\n"), good(), false, &[400])),
        ("Content-Length longer than the body sent", Raw(format!("POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: {PB}\r\nContent-Length: {}\r\n\r\n", good_len + 100), good(), true, &[400, 0])),
        ("Content-Length not a number", Raw(format!("POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: {PB}\r\nContent-Length: lots\r\n\r\n"), good(), false, &[400, 0])),
        ("a 1 MiB header", Raw(format!("POST /v1/traces HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nContent-Type: {PB}\r\nContent-Length: 0\r\n\r\n", "a".repeat(1 << 20)), Vec::new(), false, &[431, 0])),
        ("GET on an OTLP path", Raw("GET /v1/traces HTTP/1.1\r\nHost: x\r\n\r\n".into(), Vec::new(), false, &[405])),
        ("not HTTP at all", Raw("\x16\x03\x01\x02\x00\x01\x00\x01\x7c\x03\x03 hello, TLS\r\n\r\n".into(), Vec::new(), false, &[400, 0])),
        ("gRPC: truncated protobuf", Grpc(Signal::Traces, b"\x0a\xff\xff\xff\x0f".to_vec(), None, Code::InvalidArgument, "invalid protobuf")),
        ("gRPC: logs garbage", Grpc(Signal::Logs, b"\x0a\x02\x0a\x80".to_vec(), None, Code::InvalidArgument, "")),
        ("gRPC: invalid UTF-8", Grpc(Signal::Traces, bad_utf8(), None, Code::InvalidArgument, "UTF-8")),
        ("gRPC: arrays nested 60 deep", Grpc(Signal::Traces, deep(60), None, Code::InvalidArgument, "nested more than 100 deep")),
        ("gRPC: over max_recv_msg_size_mib", Grpc(Signal::Traces, vec![0u8; 5 << 20], None, Code::ResourceExhausted, "")),
        ("gRPC: gzip bomb", Grpc(Signal::Traces, vec![0u8; 32 << 20], Some(CompressionEncoding::Gzip), Code::ResourceExhausted, "")),
        ("gRPC: zstd bomb", Grpc(Signal::Traces, vec![0u8; 32 << 20], Some(CompressionEncoding::Zstd), Code::ResourceExhausted, "")),
        ("gRPC: a million empty spans", Grpc(Signal::Traces, empty_spans(1_000_000), None, Code::ResourceExhausted, "too large once decoded")),
        ("gRPC: 200,000 attributes", Grpc(Signal::Traces, many_attributes(200_000), Some(CompressionEncoding::Gzip), Code::ResourceExhausted, "too large once decoded")),
        ("gRPC: HTTP/2 rapid reset, 2,000 streams", RapidReset(2000)),
    ]
}

async fn rapid_reset(port: u16, streams: usize) {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let Ok((client, conn)) = h2::client::handshake(tcp).await else {
        return;
    };
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut client = client;
    for _ in 0..streams {
        let Ok(ready) = client.ready().await else {
            return; // the server sent GOAWAY: that is an acceptable answer
        };
        client = ready;
        let req = http::Request::post(format!(
            "http://127.0.0.1:{port}/opentelemetry.proto.collector.trace.v1.TraceService/Export"
        ))
        .header("content-type", "application/grpc")
        .body(())
        .unwrap();
        let Ok((_resp, mut stream)) = client.send_request(req, false) else {
            return;
        };
        stream.send_reset(h2::Reason::CANCEL);
    }
}

#[tokio::test]
async fn every_bad_input_gets_its_answer_and_the_next_good_request_succeeds() {
    let c = Collector::start(MATRIX);
    let cases = cases();
    let mut good_sent = 0;
    for (name, case) in cases.iter().map(|(n, c)| (*n, c)) {
        let over_grpc = matches!(case, Case::Grpc(..) | Case::RapidReset(_));
        match case {
            Case::Http(path, ct, enc, body, status, part) => {
                let (s, _, b) = http_post(c.http, path, ct, *enc, body.clone()).await;
                assert_eq!(s, *status, "{name}: {}", String::from_utf8_lossy(&b));
                let msg = if *ct == JSON && s != 404 && s != 415 {
                    serde_json::from_slice::<RpcStatus>(&b)
                        .map(|st| st.message)
                        .unwrap_or_else(|_| String::from_utf8_lossy(&b).into_owned())
                } else {
                    RpcStatus::decode(b.as_ref())
                        .map(|st| st.message)
                        .unwrap_or_default()
                };
                assert!(msg.contains(part), "{name}: {msg}");
            }
            Case::Grpc(signal, body, comp, code, part) => {
                let err = grpc_send(c.grpc, *signal, body.clone(), *comp)
                    .await
                    .unwrap_err();
                assert_eq!(err.code(), *code, "{name}: {err:?}");
                assert!(err.message().contains(part), "{name}: {}", err.message());
            }
            Case::Raw(head, body, half, statuses) => {
                let (port, head, body, half) = (c.http, head.clone(), body.clone(), *half);
                let s = tokio::task::spawn_blocking(move || raw(port, &head, &body, half))
                    .await
                    .unwrap();
                assert!(
                    statuses.contains(&s),
                    "{name}: got {s}, want one of {statuses:?}"
                );
            }
            Case::RapidReset(n) => rapid_reset(c.grpc, *n).await,
        }
        // The next good request on the same transport succeeds.
        if over_grpc {
            grpc_send(c.grpc, Signal::Traces, good(), None)
                .await
                .unwrap_or_else(|e| panic!("good request after {name}: {e:?}"));
        } else {
            let (s, _, _) = http_post(c.http, "/v1/traces", PB, None, good()).await;
            assert_eq!(s, 200, "good request after {name}");
        }
        good_sent += 3;
    }
    wait_for_lines(&c.path("traces.jsonl"), count_spans, good_sent);
    let peak = c.status_mib("VmHWM");
    eprintln!(
        "bad-input matrix: {} cases, peak RSS {peak:.0} MiB (memory_limiter limit_mib 300)",
        cases.len()
    );
    assert!(cases.len() >= 40);
    assert!(peak < 300.0, "peak RSS {peak:.0} MiB over limit_mib 300");
    assert_eq!(http_get(c.health, "/").unwrap().0, 200);
}
