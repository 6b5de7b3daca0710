//! Slow and idle clients cannot hold the ports: header, body and idle
//! timeouts close their connections, a connection cap keeps a flood of them
//! from exhausting file descriptors, and well-behaved clients are served
//! throughout.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use pipeline::generate::{Generator, GeneratorOptions};
use pipeline::Signal;
use prost::Message;

const TIGHT: &str = r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:@GRPC@
        max_connections: 8
      http:
        endpoint: 127.0.0.1:@HTTP@
        read_header_timeout: 1s
        body_read_timeout: 1s
        idle_timeout: 1s
        max_connections: 8
exporters:
  file:
    path: @DIR@/traces.jsonl
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file]
"#;

fn spans(n: usize) -> Vec<u8> {
    Generator::new(GeneratorOptions::default())
        .spans(n)
        .encode_to_vec()
}

/// Waits until the server closes `s` (EOF or reset); returns how long it took.
fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return None
            }
            Err(_) => return Some(started.elapsed()),
        }
    }
}

fn connect(port: u16) -> TcpStream {
    TcpStream::connect(("127.0.0.1", port)).unwrap()
}

#[tokio::test]
async fn half_sent_headers_idle_connections_and_trickled_bodies_are_cut_off() {
    let c = Collector::start(TIGHT);

    // Half a request line, then nothing (slowloris): closed by the
    // first-bytes deadline (read_header_timeout).
    let mut half = connect(c.http);
    half.write_all(b"POST /v1/tr").unwrap();
    let t =
        closed_within(&mut half, Duration::from_secs(10)).expect("half-sent request line closed");
    assert!(t < Duration::from_secs(5), "{t:?}");

    // Whole request line and some headers, never the blank line: hyper's
    // header-read timeout.
    let mut headers = connect(c.http);
    headers
        .write_all(
            b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n",
        )
        .unwrap();
    assert!(closed_within(&mut headers, Duration::from_secs(10)).is_some());

    // Headers promising a body that never comes: 408 after body_read_timeout.
    let mut body = connect(c.http);
    body.write_all(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: 1000\r\n\r\n\x0a")
        .unwrap();
    body.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = [0u8; 64];
    let n = body.read(&mut answer).unwrap();
    let head = String::from_utf8_lossy(&answer[..n]).to_string();
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");

    // A keep-alive connection left idle after a request: closed by idle_timeout.
    let mut idle = connect(c.http);
    let req = spans(2);
    idle.write_all(
        format!(
            "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\n\r\n",
            req.len()
        )
        .as_bytes(),
    )
    .unwrap();
    idle.write_all(&req).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let n = idle.read(&mut answer).unwrap();
    assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 200"));
    assert!(closed_within(&mut idle, Duration::from_secs(10)).is_some());

    // gRPC: a connection that never sends the HTTP/2 preface is closed too.
    let mut silent = connect(c.grpc);
    let t =
        closed_within(&mut silent, Duration::from_secs(20)).expect("silent gRPC connection closed");
    assert!(t < Duration::from_secs(15), "{t:?}");

    let (s, _, _) = http_post(
        c.http,
        "/v1/traces",
        "application/x-protobuf",
        None,
        spans(3),
    )
    .await;
    assert_eq!(s, 200);
    wait_for_lines(&c.path("traces.jsonl"), count_spans, 5);
}

#[tokio::test]
async fn a_connection_flood_is_capped_and_others_are_served_when_it_ends() {
    let c = Collector::start(TIGHT);
    for (port, transport) in [(c.http, "http"), (c.grpc, "grpc")] {
        // Eight slow connections fill the cap (each sent a little, so they
        // are held until their deadline), the ninth is closed at once.
        let mut held: Vec<TcpStream> = (0..8)
            .map(|_| {
                let mut s = connect(port);
                s.write_all(b"PRI").unwrap();
                s
            })
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        let mut extra = connect(port);
        let t = closed_within(&mut extra, Duration::from_secs(3))
            .expect("connection over the cap closed");
        assert!(t < Duration::from_secs(1), "{t:?}");
        let series = format!(
            "observatory_receiver_refused_connections_total{{receiver=\"otlp\",transport=\"{transport}\"}}"
        );
        assert!(c.metric_when(&series, 1.0).await.unwrap() >= 1.0);
        held.clear();
    }
    // Once the flood is gone, clients on both transports are served.
    let mut ok = false;
    for _ in 0..50 {
        let (s, _, _) = http_post(
            c.http,
            "/v1/traces",
            "application/x-protobuf",
            None,
            spans(1),
        )
        .await;
        if s == 200
            && grpc_send(c.grpc, Signal::Traces, spans(1), None)
                .await
                .is_ok()
        {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "served after the flood");
}
