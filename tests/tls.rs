//! TLS on the real binary with certificates the test makes: HTTPS and
//! gRPC over TLS; mTLS refuses a client without a certificate; TLS 1.1 is
//! refused; an exporter with the wrong CA fails, says why, retries and
//! counts; certificates reloaded under load lose nothing.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::pki::Pki;
use common::*;
use exporters::grpc_codec::{export_path, RawCodec};
use exporters::tls::client::ClientTlsConfig;
use pipeline::generate::{Generator, GeneratorOptions};
use pipeline::Signal;
use prost::Message;

fn spans(n: usize, seed: u64) -> Vec<u8> {
    Generator::new(GeneratorOptions {
        seed,
        ..Default::default()
    })
    .spans(n)
    .encode_to_vec()
}

const RECEIVER: &str = r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:@GRPC@
        tls:
          cert_file: @PKI@/server.pem
          key_file: @PKI@/server.key
          client_ca_file: @PKI@/ca.pem
      http:
        endpoint: 127.0.0.1:@HTTP@
        tls:
          cert_file: @PKI@/server.pem
          key_file: @PKI@/server.key
          reload_interval: 200ms
processors:
  batch:
    timeout: 100ms
exporters:
  file/traces:
    path: @DIR@/traces.jsonl
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [file/traces]
"#;

fn pki_vars(pki: &Pki) -> Vec<(&'static str, String)> {
    vec![("PKI", pki.dir.to_str().unwrap().to_string())]
}

/// Sends one traces request over gRPC with TLS as `tls` says.
async fn grpc_tls_send(port: u16, tls: &ClientTlsConfig, body: Vec<u8>) -> Result<(), String> {
    let target = tls
        .resolve("endpoint", &format!("localhost:{port}"))
        .map_err(|e| e.to_string())?;
    let channel = exporters::tls::connect::grpc_channel(tls, &target).map_err(|e| e.to_string())?;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| format!("{e:?}"))?;
    let path = http::uri::PathAndQuery::from_static(export_path(Signal::Traces));
    grpc.unary(tonic::Request::new(vec![Bytes::from(body)]), path, RawCodec)
        .await
        .map(|_| ())
        .map_err(|s| format!("{s:?}"))
}

fn https_client(ca: Option<&str>) -> reqwest::Client {
    let mut b = reqwest::Client::builder().timeout(Duration::from_secs(5));
    if let Some(pem) = ca {
        b = b
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap());
    }
    b.build().unwrap()
}

async fn https_post(client: &reqwest::Client, port: u16, body: Vec<u8>) -> Result<u16, String> {
    client
        .post(format!("https://localhost:{port}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| format!("{e:?}"))
}

/// A TLS 1.1 ClientHello (no supported_versions extension), as an old
/// client sends it.
fn tls11_client_hello() -> Vec<u8> {
    let mut hello = vec![0x03, 0x02]; // client_version TLS 1.1
    hello.extend_from_slice(&[7u8; 32]); // random
    hello.push(0); // no session id
    hello.extend_from_slice(&[0x00, 0x04, 0xc0, 0x13, 0x00, 0x2f]); // two CBC suites
    hello.extend_from_slice(&[0x01, 0x00]); // null compression
    let mut hs = vec![0x01, 0, 0, hello.len() as u8];
    hs.extend_from_slice(&hello);
    let mut record = vec![0x16, 0x03, 0x01, 0, hs.len() as u8];
    record.extend_from_slice(&hs);
    record
}

#[tokio::test]
async fn receivers_speak_tls_and_mtls_refuses_clients_without_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::write(dir.path());
    let c = Collector::start_with(RECEIVER, &pki_vars(&pki));
    let failures =
        "observatory_receiver_tls_handshake_failures_total{receiver=\"otlp\",transport=\"grpc\"}";

    // HTTPS with the CA: accepted.
    let ok = https_post(&https_client(Some(&pki.ca.pem)), c.http, spans(3, 1)).await;
    assert_eq!(ok, Ok(200));
    // Without it (system roots only) the client refuses the server...
    let e = https_post(&https_client(None), c.http, spans(3, 2))
        .await
        .unwrap_err();
    assert!(
        e.contains("UnknownIssuer") || e.contains("certificate"),
        "{e}"
    );
    // ...and plaintext HTTP on the TLS port gets no answer.
    let plain = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/v1/traces", c.http))
        .header("content-type", "application/x-protobuf")
        .body(spans(1, 3))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.is_err(), "{plain:?}");

    // gRPC under mTLS: with the client certificate, accepted.
    let with_cert = ClientTlsConfig {
        ca_file: Some(pki.path("ca.pem")),
        cert_file: Some(pki.path("client.pem")),
        key_file: Some(pki.path("client.key")),
        ..Default::default()
    };
    grpc_tls_send(c.grpc, &with_cert, spans(4, 4))
        .await
        .unwrap();
    let before = c.metric(failures).unwrap();
    // Without one, refused at the handshake and counted.
    let no_cert = ClientTlsConfig {
        ca_file: Some(pki.path("ca.pem")),
        ..Default::default()
    };
    let e = grpc_tls_send(c.grpc, &no_cert, spans(2, 5))
        .await
        .unwrap_err();
    assert!(!e.is_empty());
    assert_eq!(
        c.metric_when(failures, before + 1.0).await,
        Some(before + 1.0),
        "{e}"
    );

    // A TLS 1.1 client gets a fatal alert (rustls sends handshake_failure,
    // 40: no version in common) and the connection is counted.
    let http_failures = failures.replace("grpc", "http");
    let before = c.metric(&http_failures).unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", c.http))
        .await
        .unwrap();
    s.write_all(&tls11_client_hello()).await.unwrap();
    let mut reply = [0u8; 7];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut reply))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (reply[0], reply[5]),
        (0x15, 2),
        "not a fatal alert: {reply:?}"
    );
    assert!([40, 70].contains(&reply[6]), "{reply:?}");
    assert_eq!(
        c.metric_when(&http_failures, before + 1.0).await,
        Some(before + 1.0)
    );

    // What was accepted arrived; nothing else did.
    let lines = wait_for_lines(&c.path("traces.jsonl"), count_spans, 7);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(count_spans(&lines), 7);
    assert_eq!(
        count_spans(&wait_for_lines(&c.path("traces.jsonl"), count_spans, 7)),
        7
    );
}

#[tokio::test]
async fn exporters_speak_tls_and_a_wrong_ca_fails_named_retried_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::write(dir.path());
    let back = Collector::start_with(RECEIVER, &pki_vars(&pki));
    let front_cfg = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:@GRPC@
exporters:
  otlp/good:
    endpoint: localhost:{grpc}
    tls:
      ca_file: @PKI@/ca.pem
      cert_file: @PKI@/client.pem
      key_file: @PKI@/client.key
  otlphttp/good:
    endpoint: https://localhost:{http}
    tls:
      ca_file: @PKI@/ca.pem
  otlp/wrong_ca:
    endpoint: localhost:{grpc}
    tls:
      ca_file: @PKI@/other-ca.pem
      cert_file: @PKI@/client.pem
      key_file: @PKI@/client.key
    retry_on_failure:
      initial_interval: 50ms
      max_elapsed_time: 1s
service:
  telemetry:
    logs:
      level: debug
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [otlp/good, otlphttp/good, otlp/wrong_ca]
"#,
        grpc = back.grpc,
        http = back.http
    );
    let front = Collector::start_with(&front_cfg, &pki_vars(&pki));
    grpc_send(front.grpc, Signal::Traces, spans(5, 9), None)
        .await
        .unwrap();
    // Both good exporters delivered: five spans each.
    let lines = wait_for_lines(&back.path("traces.jsonl"), count_spans, 10);
    assert_eq!(count_spans(&lines), 10);
    let failed = "observatory_exporter_send_failed_spans_total{exporter=\"otlp/wrong_ca\"}";
    assert_eq!(front.metric_when(failed, 5.0).await, Some(5.0));
    let sent = "observatory_exporter_sent_spans_total{exporter=\"otlp/good\"}";
    assert_eq!(front.metric(sent), Some(5.0));
    let logs = front.logs();
    assert!(logs.contains("UnknownIssuer"), "{logs}");
    assert!(
        logs.matches("export failed; retrying").count() >= 2,
        "not retried:\n{logs}"
    );
}

#[tokio::test]
async fn certificates_reloaded_under_load_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::write(dir.path());
    let c = Collector::start_with(RECEIVER, &pki_vars(&pki));
    let ca = pki.ca.pem.clone();
    let port = c.http;
    // A sender on fresh connections (each handshake sees the config of
    // the moment) and one on a kept-alive connection.
    let load = tokio::spawn(async move {
        let kept = https_client(Some(&ca));
        let mut sent = 0usize;
        let until = Instant::now() + Duration::from_secs(3);
        let mut seed = 100;
        while Instant::now() < until {
            seed += 1;
            assert_eq!(https_post(&kept, port, spans(2, seed)).await, Ok(200));
            assert_eq!(
                https_post(&https_client(Some(&ca)), port, spans(2, seed + 10_000)).await,
                Ok(200)
            );
            sent += 4;
        }
        sent
    });
    // Renew the server certificate mid-load (same CA, new key).
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (cert, key) = pki.ca.leaf("server-renewed", &["localhost", "127.0.0.1"]);
    std::fs::write(dir.path().join("server.key.new"), &key).unwrap();
    std::fs::write(dir.path().join("server.pem.new"), &cert).unwrap();
    std::fs::rename(
        dir.path().join("server.key.new"),
        dir.path().join("server.key"),
    )
    .unwrap();
    std::fs::rename(
        dir.path().join("server.pem.new"),
        dir.path().join("server.pem"),
    )
    .unwrap();
    let sent = load.await.unwrap();
    // The renewed certificate is what new connections get now.
    let served = served_certificate(port, &pki.ca.pem).await;
    assert_eq!(served, pem_der(&cert));
    let lines = wait_for_lines(&c.path("traces.jsonl"), count_spans, sent);
    assert_eq!(count_spans(&lines), sent);
    assert!(
        c.logs().contains("TLS certificates reloaded"),
        "{}",
        c.logs()
    );
}

fn pem_der(pem: &str) -> Vec<u8> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

/// The leaf certificate a TLS listener serves now.
async fn served_certificate(port: u16, ca: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca).unwrap();
    let cfg = ClientTlsConfig {
        ca_file: Some(dir.path().join("ca.pem").to_str().unwrap().to_string()),
        ..Default::default()
    };
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg.rustls(&[]).unwrap()));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let tls = connector
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}
