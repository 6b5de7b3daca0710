//! Every kind of bad input gets the OTLP specification's status and a
//! message naming the problem; a full queue is a retryable refusal; the
//! collector stays up throughout.

mod common;

use common::*;
use pipeline::generate::{Generator, GeneratorOptions};
use pipeline::rpc_status::RpcStatus;
use pipeline::Signal;
use prost::Message;
use tonic::codec::CompressionEncoding;
use tonic::Code;
use tonic_types::StatusExt;

fn spans(n: usize) -> Vec<u8> {
    Generator::new(GeneratorOptions::default())
        .spans(n)
        .encode_to_vec()
}

fn status_of(body: &[u8]) -> RpcStatus {
    RpcStatus::decode(body).expect("error body is a google.rpc.Status")
}

/// A request whose span name is not UTF-8: well-framed, still malformed.
fn bad_utf8_request() -> Vec<u8> {
    let mut b = spans(5);
    let at = b.windows(9).position(|w| w == b"rag.query").unwrap();
    b[at] = 0xff;
    b
}

#[tokio::test]
async fn http_bad_input_gets_spec_statuses() {
    let c = Collector::start(FILE_CONFIG);
    let p = c.http;

    let (s, h, body) = http_post(
        p,
        "/v1/traces",
        "application/x-protobuf",
        None,
        b"\x0a\xff\xff\xff\x0f".to_vec(),
    )
    .await;
    assert_eq!(
        (s, h["content-type"].to_str().unwrap()),
        (400, "application/x-protobuf")
    );
    let st = status_of(&body);
    assert_eq!(st.code, 3);
    assert!(
        st.message
            .contains("invalid protobuf: length exceeds message"),
        "{}",
        st.message
    );

    let (s, _, body) = http_post(
        p,
        "/v1/traces",
        "application/x-protobuf",
        None,
        bad_utf8_request(),
    )
    .await;
    assert_eq!(s, 400);
    assert!(status_of(&body)
        .message
        .contains("string is not valid UTF-8 in Span"));

    let (s, h, body) = http_post(
        p,
        "/v1/logs",
        "application/json",
        None,
        b"{\"resourceLogs\": 7}".to_vec(),
    )
    .await;
    assert_eq!(
        (s, h["content-type"].to_str().unwrap()),
        (400, "application/json")
    );
    let st: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(
        st["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid OTLP/JSON"),
        "{st}"
    );

    let (s, _, body) = http_post(p, "/v1/traces", "text/plain", None, spans(1)).await;
    assert_eq!(s, 415);
    assert!(status_of(&body)
        .message
        .contains("unsupported Content-Type \"text/plain\""));

    let (s, _, body) = http_post(
        p,
        "/v1/traces",
        "application/x-protobuf",
        None,
        vec![0u8; 2 << 20],
    )
    .await;
    assert_eq!(s, 413);
    assert!(status_of(&body)
        .message
        .contains("max_request_body_size (1048576 bytes)"));

    // 4 MiB of zeros gzips to a few KiB: the limit applies after decompression.
    let (s, _, _) = http_post(
        p,
        "/v1/traces",
        "application/x-protobuf",
        Some("gzip"),
        gzip(&vec![0u8; 4 << 20]),
    )
    .await;
    assert_eq!(s, 413);

    let (s, _, body) = http_post(
        p,
        "/v1/traces",
        "application/x-protobuf",
        Some("gzip"),
        b"not gzip at all".to_vec(),
    )
    .await;
    assert_eq!(s, 400);
    assert!(status_of(&body).message.contains("invalid gzip body"));

    let (s, _, body) = http_post(
        p,
        "/v1/traces",
        "application/x-protobuf",
        Some("br"),
        spans(1),
    )
    .await;
    assert_eq!(s, 400);
    assert!(status_of(&body)
        .message
        .contains("unsupported Content-Encoding \"br\""));

    let (s, _) = http_get(p, "/v1/traces").unwrap();
    assert_eq!(s, 405);
    let (s, _, _) = http_post(p, "/v1/spans", "application/x-protobuf", None, spans(1)).await;
    assert_eq!(s, 404);

    // Nothing above reached the pipeline, and the collector is still up.
    assert_eq!(http_get(c.health, "/").unwrap().0, 200);
    let (s, _, _) = http_post(p, "/v1/traces", "application/x-protobuf", None, spans(3)).await;
    assert_eq!(s, 200);
    wait_for_lines(&c.path("traces.jsonl"), count_spans, 3);
    assert_eq!(
        c.metric(
            "observatory_receiver_malformed_requests_total{receiver=\"otlp\",transport=\"http\"}"
        ),
        Some(8.0)
    );
}

#[tokio::test]
async fn grpc_bad_input_gets_spec_statuses() {
    let c = Collector::start(&FILE_CONFIG.replace(
        "      grpc:\n",
        "      grpc:\n        max_recv_msg_size_mib: 1\n",
    ));
    let err = grpc_send(
        c.grpc,
        Signal::Traces,
        b"\x0a\xff\xff\xff\x0f".to_vec(),
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("invalid protobuf"),
        "{}",
        err.message()
    );
    let err = grpc_send(c.grpc, Signal::Logs, b"\x0a\x02\x0a\x80".to_vec(), None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    let err = grpc_send(c.grpc, Signal::Traces, spans(4000), None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.get_details_retry_info().is_none());
    let err = grpc_send(
        c.grpc,
        Signal::Traces,
        spans(4000),
        Some(CompressionEncoding::Gzip),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");

    grpc_send(c.grpc, Signal::Traces, spans(2), None)
        .await
        .unwrap();
    wait_for_lines(&c.path("traces.jsonl"), count_spans, 2);
}

/// A pipeline whose only exporter cannot reach its backend and has room for
/// one batch: further data is refused as retryable, never dropped.
const STUCK: &str = r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:@GRPC@
      http:
        endpoint: 127.0.0.1:@HTTP@
exporters:
  otlp:
    endpoint: 127.0.0.1:@DEAD@
    tls:
      insecure: true
    retry_on_failure:
      initial_interval: 30s
    sending_queue:
      num_consumers: 1
      queue_size: 1
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [otlp]
"#;

#[tokio::test]
async fn a_full_queue_is_refused_as_retryable_on_both_transports() {
    let c = Collector::start_with(STUCK, &[("DEAD", free_port().to_string())]);
    let mut refused = None;
    for _ in 0..5 {
        let (s, h, body) = http_post(
            c.http,
            "/v1/traces",
            "application/x-protobuf",
            None,
            spans(10),
        )
        .await;
        if s != 200 {
            refused = Some((
                s,
                h.get("retry-after")
                    .map(|v| v.to_str().unwrap().to_string()),
                status_of(&body),
            ));
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (s, retry_after, st) = refused.expect("a full queue refuses");
    assert_eq!((s, retry_after.as_deref(), st.code), (503, Some("1"), 14));
    assert!(
        st.message
            .contains("sending queue of exporter otlp is full"),
        "{}",
        st.message
    );

    let err = grpc_send(c.grpc, Signal::Traces, spans(10), None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert!(err
        .get_details_retry_info()
        .and_then(|r| r.retry_delay)
        .is_some());
    assert!(
        c.metric("observatory_receiver_refused_spans_total{receiver=\"otlp\",transport=\"grpc\"}")
            .unwrap()
            >= 10.0
    );
    assert!(
        c.metric("observatory_exporter_enqueue_failed_spans_total{exporter=\"otlp\"}")
            .unwrap()
            >= 20.0
    );
}
