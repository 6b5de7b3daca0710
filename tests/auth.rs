//! Authentication on the real binary: wrong or missing credentials get
//! HTTP 401 / gRPC UNAUTHENTICATED and are counted; the identity reaches
//! processors through `from_context`, replacing what the client claims;
//! exporters authenticate to the next hop (bearer token, headers from the
//! context); per-source rate limits keep one noisy tenant from the
//! others' capacity; and no secret shows in logs, debug output, metrics or
//! `validate`.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use exporters::grpc_codec::{export_path, RawCodec};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use pipeline::generate::{Generator, GeneratorOptions};
use pipeline::Signal;
use prost::Message;

const ALICE_PASSWORD: &str = "pw-7f3a9c2e1d";
const ACME_KEY: &str = "key-acme-5b8e0d41";
const TOKEN: &str = "tok-91c4e7a2f0";

/// Spans whose resources claim `telemetry.source: forged`.
fn forged(n: usize, seed: u64) -> ExportTraceServiceRequest {
    let mut r = Generator::new(GeneratorOptions {
        seed,
        ..Default::default()
    })
    .spans(n);
    for rs in &mut r.resource_spans {
        rs.resource.as_mut().unwrap().attributes.push(KeyValue {
            key: "telemetry.source".into(),
            value: Some(AnyValue {
                value: Some(Value::StringValue("forged".into())),
            }),
            ..Default::default()
        });
    }
    r
}

fn resource_values(lines: &[String], key: &str) -> Vec<String> {
    let t = traces_from(lines);
    let mut v: Vec<String> = t
        .resource_spans
        .iter()
        .filter_map(|rs| {
            rs.resource
                .as_ref()?
                .attributes
                .iter()
                .find(|a| a.key == key)
                .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
                    Value::StringValue(s) => Some(s.clone()),
                    _ => None,
                })
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Sends one traces request over gRPC with `headers` as metadata.
async fn grpc_with(
    port: u16,
    headers: &[(&'static str, &str)],
    body: Vec<u8>,
) -> Result<(), tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let mut req = tonic::Request::new(vec![Bytes::from(body)]);
    for (k, v) in headers {
        req.metadata_mut().insert(*k, v.parse().unwrap());
    }
    let path = http::uri::PathAndQuery::from_static(export_path(Signal::Traces));
    grpc.unary(req, path, RawCodec).await.map(|_| ())
}

async fn http_with(port: u16, auth: Option<(&str, &str)>, body: Vec<u8>) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(body);
    if let Some((u, p)) = auth {
        req = req.basic_auth(u, Some(p));
    }
    req.send().await.unwrap()
}

const GATE: &str = r#"
extensions:
  basicauth/in:
    htpasswd:
      inline: |
        alice:${env:ALICE_PASSWORD}
  api_key:
    keys:
      - {key: "${env:ACME_KEY}", tenant: acme, source: chatbot}
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:@GRPC@
        auth: {authenticator: api_key}
        include_metadata: true
      http:
        endpoint: 127.0.0.1:@HTTP@
        auth: {authenticator: basicauth/in}
processors:
  resource:
    attributes:
      - {key: telemetry.source, from_context: auth.tenant, action: upsert}
      - {key: auth.user, from_context: auth.username, action: upsert}
      - {key: client.team, from_context: metadata.x-team, action: upsert}
  batch:
    timeout: 100ms
exporters:
  file/traces:
    path: @DIR@/traces.jsonl
  debug:
    verbosity: detailed
service:
  telemetry:
    logs:
      level: debug
  pipelines:
    traces:
      receivers: [otlp]
      processors: [resource, batch]
      exporters: [file/traces, debug]
"#;

fn start_gate() -> Collector {
    // The secrets reach the config through the environment, as documented.
    std::env::set_var("ALICE_PASSWORD", ALICE_PASSWORD);
    std::env::set_var("ACME_KEY", ACME_KEY);
    Collector::start_with(GATE, &[("EXTENSIONS", ", basicauth/in, api_key".into())])
}

#[tokio::test]
async fn credentials_are_checked_and_the_identity_replaces_what_the_client_claims() {
    let c = start_gate();
    let body = || forged(3, 1).encode_to_vec();

    // HTTP: none or wrong → 401 with an UNAUTHENTICATED status; right → 200.
    for auth in [
        None,
        Some(("alice", "wrong")),
        Some(("mallory", ALICE_PASSWORD)),
    ] {
        let r = http_with(c.http, auth, body()).await;
        assert_eq!(r.status().as_u16(), 401, "{auth:?}");
        let st = pipeline::rpc_status::RpcStatus::decode(r.bytes().await.unwrap()).unwrap();
        assert_eq!(st.code, 16);
    }
    assert_eq!(
        http_with(c.http, Some(("alice", ALICE_PASSWORD)), body())
            .await
            .status()
            .as_u16(),
        200
    );

    // gRPC: missing or unknown key → UNAUTHENTICATED; the right key → OK.
    let e = grpc_with(c.grpc, &[], body()).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    let e = grpc_with(c.grpc, &[("x-api-key", "nope")], body())
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    let headers = [("x-api-key", ACME_KEY), ("x-team", "search")];
    grpc_with(c.grpc, &headers, forged(4, 2).encode_to_vec())
        .await
        .unwrap();

    let lines = wait_for_lines(&c.path("traces.jsonl"), count_spans, 7);
    assert_eq!(count_spans(&lines), 7, "only authenticated spans arrive");
    // gRPC's spans carry the key's tenant, not the forged claim; HTTP's
    // (basic auth has no tenant) keep the claim and carry the user.
    assert_eq!(
        resource_values(&lines, "telemetry.source"),
        ["acme", "forged"]
    );
    assert_eq!(resource_values(&lines, "auth.user"), ["alice"]);
    assert_eq!(resource_values(&lines, "client.team"), ["search"]);

    let unauth = |t: &str| {
        c.metric(&format!(
            "observatory_receiver_unauthenticated_requests_total{{receiver=\"otlp\",transport=\"{t}\"}}"
        ))
    };
    assert_eq!(unauth("http"), Some(3.0));
    assert_eq!(unauth("grpc"), Some(2.0));

    // No secret anywhere the collector writes: its log (debug level, with
    // the debug exporter's detailed output), /metrics, and validate.
    std::thread::sleep(Duration::from_millis(300));
    let (_, metrics) = http_get(c.metrics, "/metrics").unwrap();
    let validate = std::process::Command::new(binary())
        .arg("validate")
        .arg("--config")
        .arg(c.path("config.yaml"))
        .output()
        .unwrap();
    let validate = format!(
        "{}{}",
        String::from_utf8_lossy(&validate.stdout),
        String::from_utf8_lossy(&validate.stderr)
    );
    let logs = c.logs();
    assert!(
        logs.contains("\"name\":\"rag.query\""),
        "debug output missing:\n{logs}"
    );
    for secret in [ALICE_PASSWORD, ACME_KEY] {
        for (what, text) in [
            ("log", &logs),
            ("metrics", &metrics),
            ("validate", &validate),
        ] {
            assert!(!text.contains(secret), "{what} shows a secret:\n{text}");
        }
    }
}

#[tokio::test]
async fn exporters_authenticate_to_the_next_hop() {
    std::env::set_var("TOKEN", TOKEN);
    let back = Collector::start_with(
        r#"
extensions:
  bearertokenauth/in:
    token: "${env:TOKEN}"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:@GRPC@
        auth: {authenticator: bearertokenauth/in}
      http:
        endpoint: 127.0.0.1:@HTTP@
        include_metadata: true
processors:
  resource:
    attributes:
      - {key: org, from_context: metadata.x-scope-orgid, action: upsert}
exporters:
  file/traces:
    path: @DIR@/traces.jsonl
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [resource]
      exporters: [file/traces]
"#,
        &[("EXTENSIONS", ", bearertokenauth/in".into())],
    );
    std::env::set_var("ACME_KEY", ACME_KEY);
    let front = Collector::start_with(
        &format!(
            r#"
extensions:
  bearertokenauth/out:
    token: "${{env:TOKEN}}"
  headers_setter:
    headers:
      - {{key: X-Scope-OrgID, from_context: auth.tenant}}
  api_key:
    keys:
      - {{key: "${{env:ACME_KEY}}", tenant: acme}}
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:@GRPC@
        auth: {{authenticator: api_key}}
exporters:
  otlp:
    endpoint: 127.0.0.1:{grpc}
    tls: {{insecure: true}}
    auth: {{authenticator: bearertokenauth/out}}
  otlphttp:
    endpoint: http://127.0.0.1:{http}
    auth: {{authenticator: headers_setter}}
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [otlp, otlphttp]
"#,
            grpc = back.grpc,
            http = back.http
        ),
        &[(
            "EXTENSIONS",
            ", bearertokenauth/out, headers_setter, api_key".into(),
        )],
    );
    grpc_with(
        front.grpc,
        &[("x-api-key", ACME_KEY)],
        forged(5, 3).encode_to_vec(),
    )
    .await
    .unwrap();
    let lines = wait_for_lines(&back.path("traces.jsonl"), count_spans, 10);
    assert_eq!(count_spans(&lines), 10, "both exporters got through");
    assert_eq!(resource_values(&lines, "org"), ["acme"]);
    // Without the token the back end refuses.
    let e = grpc_with(back.grpc, &[], forged(1, 4).encode_to_vec())
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    assert!(!front.logs().contains(TOKEN) && !back.logs().contains(TOKEN));
}

#[tokio::test]
async fn a_noisy_tenant_is_throttled_and_the_quiet_one_loses_nothing() {
    std::env::set_var("NOISY_KEY", "key-noisy-1");
    std::env::set_var("QUIET_KEY", "key-quiet-2");
    let c = Collector::start_with(
        r#"
extensions:
  api_key:
    keys:
      - {key: "${env:NOISY_KEY}", tenant: noisy}
      - {key: "${env:QUIET_KEY}", tenant: quiet}
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:@GRPC@
        auth: {authenticator: api_key}
      http:
        endpoint: 127.0.0.1:@HTTP@
        auth: {authenticator: api_key}
processors:
  ratelimit:
    metadata_keys: [auth.tenant]
    strategy: records
    rate: 200
    burst: 200
  batch:
    timeout: 100ms
exporters:
  file/traces:
    path: @DIR@/traces.jsonl
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [ratelimit, batch]
      exporters: [file/traces]
"#,
        &[("EXTENSIONS", ", api_key".into())],
    );
    let client = reqwest::Client::new();
    let post = |key: &'static str, n: usize, seed: u64| {
        client
            .post(format!("http://127.0.0.1:{}/v1/traces", c.http))
            .header("content-type", "application/x-protobuf")
            .header("x-api-key", key)
            .body(forged(n, seed).encode_to_vec())
            .send()
    };
    // Three seconds: noisy sends 2,000 spans/s (ten times its 200/s),
    // quiet 100/s.
    let (mut quiet_sent, mut noisy_ok, mut noisy_429, mut retry_after) = (0, 0, 0, None);
    let start = Instant::now();
    let mut seed = 0;
    while start.elapsed() < Duration::from_secs(3) {
        seed += 1;
        let r = post("key-noisy-1", 200, seed).await.unwrap();
        match r.status().as_u16() {
            200 => noisy_ok += 200,
            429 => {
                noisy_429 += 1;
                retry_after = r
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_string());
            }
            s => panic!("noisy got {s}"),
        }
        if seed % 10 == 0 {
            let r = post("key-quiet-2", 10, seed + 50_000).await.unwrap();
            assert_eq!(r.status().as_u16(), 200, "the quiet tenant was refused");
            quiet_sent += 10;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(noisy_429 > 0 && quiet_sent > 0);
    // Over gRPC the same refusal is RESOURCE_EXHAUSTED with RetryInfo,
    // which OTLP clients retry.
    let mut throttled_grpc = None;
    for s in 0..5 {
        match grpc_with(
            c.grpc,
            &[("x-api-key", "key-noisy-1")],
            forged(200, 90_000 + s).encode_to_vec(),
        )
        .await
        {
            Ok(()) => noisy_ok += 200,
            Err(st) => {
                throttled_grpc = Some(st);
                break;
            }
        }
    }
    let st = throttled_grpc.expect("gRPC was never throttled");
    assert_eq!(st.code(), tonic::Code::ResourceExhausted, "{st:?}");
    use tonic_types::StatusExt;
    assert!(
        st.get_details_retry_info()
            .and_then(|r| r.retry_delay)
            .is_some(),
        "{st:?}"
    );
    noisy_429 += 1;
    assert_eq!(retry_after.as_deref(), Some("1"));
    let lines = wait_for_lines(&c.path("traces.jsonl"), count_spans, quiet_sent + noisy_ok);
    assert_eq!(count_spans(&lines), quiet_sent + noisy_ok);
    let throttled = c
        .metric("observatory_processor_ratelimit_requests_total{processor=\"ratelimit\",signal=\"traces\",key=\"auth.tenant:noisy\",decision=\"throttled\"}")
        .unwrap();
    assert_eq!(throttled, noisy_429 as f64);
    assert_eq!(
        c.metric("observatory_processor_ratelimit_requests_total{processor=\"ratelimit\",signal=\"traces\",key=\"auth.tenant:quiet\",decision=\"throttled\"}"),
        Some(0.0)
    );
}
