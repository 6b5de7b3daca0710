//! The Kafka layout otelcol users run: a gateway's `kafka` exporter writes
//! to a real Kafka-protocol broker (tansu on PostgreSQL), a second
//! instance's `kafka` receiver reads as a consumer group and writes files.
//! Messages are also read back by kafka-python, which shares no code with
//! our client, to check keys, partitions and encodings.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use common::tansu::Tansu;
use common::*;
use exporters::kafka::partition::sarama_partition;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use pipeline::generate::{Generator, GeneratorOptions};
use pipeline::Signal;
use prost::Message;

const GATEWAY: &str = r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:@GRPC@
exporters:
  kafka:
    brokers: [@BROKER@]
    partition_traces_by_id: true
    traces: {topic: @PREFIX@_spans}
    metrics: {topic: @PREFIX@_metrics}
    logs: {topic: @PREFIX@_logs, encoding: otlp_json}
service:
  pipelines:
    traces: {receivers: [otlp], exporters: [kafka]}
    metrics: {receivers: [otlp], exporters: [kafka]}
    logs: {receivers: [otlp], exporters: [kafka]}
"#;

/// Marks after the pipeline took a message, and the `file` exporters write
/// before they return: a crash re-reads, it does not lose.
const PROCESSOR: &str = r#"
receivers:
  kafka:
    brokers: [@BROKER@]
    group_id: @PREFIX@-processors
    initial_offset: earliest
    session_timeout: 6s
    heartbeat_interval: 1s
    message_marking: {after: true}
    traces: {topic: @PREFIX@_spans}
    metrics: {topic: @PREFIX@_metrics}
    logs: {topic: @PREFIX@_logs, encoding: otlp_json}
exporters:
  file/traces: {path: @DIR@/traces.jsonl}
  file/metrics: {path: @DIR@/metrics.jsonl}
  file/logs: {path: @DIR@/logs.jsonl}
service:
  pipelines:
    traces: {receivers: [kafka], exporters: [file/traces]}
    metrics: {receivers: [kafka], exporters: [file/metrics]}
    logs: {receivers: [kafka], exporters: [file/logs]}
"#;

const PARTITIONS: u32 = 4;

fn start(template: &str, kafka: &Tansu, prefix: &str) -> Collector {
    Collector::start_with(
        template,
        &[("BROKER", kafka.broker()), ("PREFIX", prefix.to_string())],
    )
}

async fn with_topics(prefix: &str) -> Tansu {
    let kafka = Tansu::start().await;
    for s in ["spans", "metrics", "logs"] {
        kafka.create_topic(&format!("{prefix}_{s}"), PARTITIONS);
    }
    kafka
}

/// Every message of `topic` as kafka-python reads it: (partition, key,
/// value), from the start, without a group.
fn read_with_kafka_python(
    kafka: &Tansu,
    topic: &str,
    want: usize,
) -> Vec<(i32, Option<Vec<u8>>, Vec<u8>)> {
    const SCRIPT: &str = r#"
import base64, json, sys
from kafka import KafkaConsumer
c = KafkaConsumer(sys.argv[2], bootstrap_servers=sys.argv[1], auto_offset_reset="earliest",
                  enable_auto_commit=False, consumer_timeout_ms=8000)
n, want = 0, int(sys.argv[3])
for m in c:
    print(json.dumps({"p": m.partition, "k": None if m.key is None else base64.b64encode(m.key).decode(),
                      "v": base64.b64encode(m.value).decode()}))
    n += 1
    if n >= want:
        break
"#;
    let out = Command::new("python3")
        .args(["-c", SCRIPT, &kafka.broker(), topic, &want.to_string()])
        .output()
        .expect("python3 with kafka-python (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "kafka-python: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["p"].as_i64().unwrap() as i32,
                v["k"].as_str().map(|k| b64.decode(k).unwrap()),
                b64.decode(v["v"].as_str().unwrap()).unwrap(),
            )
        })
        .collect()
}

fn generator(seed: u64) -> Generator {
    Generator::new(GeneratorOptions {
        seed,
        ..Default::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_through_kafka_keeps_every_field_and_otelcols_partitions() {
    let kafka = with_topics("rt").await;
    let processor = start(PROCESSOR, &kafka, "rt");
    let gateway = start(GATEWAY, &kafka, "rt");
    let mut g = generator(7);
    let traces = g.spans(600);
    let logs = g.logs(200);
    let metrics = g.metrics(100);
    for (signal, body) in [
        (Signal::Traces, traces.encode_to_vec()),
        (Signal::Logs, logs.encode_to_vec()),
        (Signal::Metrics, metrics.encode_to_vec()),
    ] {
        grpc_send(gateway.grpc, signal, body, None).await.unwrap();
    }
    let got = wait_for_lines(&processor.path("traces.jsonl"), count_spans, 600);
    assert_rows_eq(&span_rows(&traces_from(&got)), &span_rows(&traces));
    let got = wait_for_lines(&processor.path("logs.jsonl"), count_logs, 200);
    assert_rows_eq(&log_rows(&logs_from(&got)), &log_rows(&logs));
    let want_points = pipeline::batch::point_count(&metrics);
    let got = wait_for_lines(&processor.path("metrics.jsonl"), count_points, want_points);
    assert_rows_eq(&metric_rows(&metrics_from(&got)), &metric_rows(&metrics));

    // One message per trace, keyed by its id in hex, on Sarama's partition.
    let ids: BTreeSet<Vec<u8>> = traces
        .resource_spans
        .iter()
        .flat_map(|rs| rs.scope_spans.iter().flat_map(|ss| ss.spans.iter()))
        .map(|s| s.trace_id.clone())
        .collect();
    let messages = read_with_kafka_python(&kafka, "rt_spans", ids.len());
    assert_eq!(messages.len(), ids.len(), "one message per trace");
    let mut seen = BTreeSet::new();
    let mut partitions = BTreeSet::new();
    for (partition, key, value) in &messages {
        let key = key.as_ref().expect("keyed by trace id");
        let req = ExportTraceServiceRequest::decode(value.as_slice()).unwrap();
        for s in req
            .resource_spans
            .iter()
            .flat_map(|rs| rs.scope_spans.iter().flat_map(|ss| ss.spans.iter()))
        {
            assert_eq!(hex(&s.trace_id).as_bytes(), key.as_slice());
            seen.insert(s.trace_id.clone());
        }
        assert_eq!(
            *partition,
            sarama_partition(key, PARTITIONS as i32),
            "partition of {}",
            String::from_utf8_lossy(key)
        );
        partitions.insert(*partition);
    }
    assert_eq!(seen, ids);
    assert_eq!(
        partitions.len(),
        PARTITIONS as usize,
        "traces spread over every partition"
    );

    // Logs went as OTLP/JSON, unkeyed.
    let logs_messages = read_with_kafka_python(&kafka, "rt_logs", 1);
    let (_, key, value) = &logs_messages[0];
    assert!(key.is_none());
    let v: serde_json::Value = serde_json::from_slice(value).expect("otlp_json value");
    assert!(v["resourceLogs"].is_array(), "{v}");
}

/// Sends `requests` traces requests of `spans` each, paced, returning the
/// (trace id, span id) pairs sent.
async fn send_traces(
    port: u16,
    seed: u64,
    requests: usize,
    spans: usize,
    pause: Duration,
) -> BTreeSet<(String, String)> {
    let mut g = generator(seed);
    let mut sent = BTreeSet::new();
    for _ in 0..requests {
        let r = g.spans(spans);
        for s in r
            .resource_spans
            .iter()
            .flat_map(|rs| rs.scope_spans.iter().flat_map(|ss| ss.spans.iter()))
        {
            sent.insert((hex(&s.trace_id), hex(&s.span_id)));
        }
        grpc_send(port, Signal::Traces, r.encode_to_vec(), None)
            .await
            .unwrap();
        tokio::time::sleep(pause).await;
    }
    sent
}

/// Waits until the files hold every sent span; returns (missing, duplicates).
fn wait_all(
    files: &[std::path::PathBuf],
    sent: &BTreeSet<(String, String)>,
    within: Duration,
) -> (usize, usize) {
    let deadline = Instant::now() + within;
    loop {
        let got: Vec<(String, String)> = files.iter().flat_map(|f| span_ids_in(f)).collect();
        let unique: BTreeSet<_> = got.iter().cloned().collect();
        let missing = sent.difference(&unique).count();
        if missing == 0 || Instant::now() > deadline {
            return (missing, got.len() - unique.len());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processor_killed_mid_stream_and_restarted_loses_nothing() {
    let kafka = with_topics("kill").await;
    let mut first = start(PROCESSOR, &kafka, "kill");
    let gateway = start(GATEWAY, &kafka, "kill");
    let port = gateway.grpc;
    let sender = tokio::spawn(send_traces(port, 11, 60, 100, Duration::from_millis(50)));
    // Kill it once it has written part of the stream.
    let deadline = Instant::now() + Duration::from_secs(30);
    while span_ids_in(&first.path("traces.jsonl")).len() < 1000 {
        assert!(
            Instant::now() < deadline,
            "nothing arrived:\n{}",
            first.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let before = span_ids_in(&first.path("traces.jsonl")).len();
    let second = start(PROCESSOR, &kafka, "kill");
    let sent = sender.await.unwrap();
    let files = [first.path("traces.jsonl"), second.path("traces.jsonl")];
    let (missing, duplicates) = wait_all(&files, &sent, Duration::from_secs(60));
    assert_eq!(
        missing,
        0,
        "of {} spans; second instance:\n{}",
        sent.len(),
        second.logs()
    );
    assert!(
        before < sent.len(),
        "the kill came mid-stream ({before} of {})",
        sent.len()
    );
    eprintln!(
        "killed after {before} of {} spans; re-read after the restart: {duplicates}",
        sent.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_for_30s_the_exporter_retries_and_nothing_is_lost() {
    let mut kafka = with_topics("down").await;
    let processor = start(PROCESSOR, &kafka, "down");
    let gateway = start(GATEWAY, &kafka, "down");
    let mut sent = send_traces(gateway.grpc, 21, 10, 100, Duration::from_millis(20)).await;
    wait_all(
        &[processor.path("traces.jsonl")],
        &sent,
        Duration::from_secs(30),
    );
    kafka.down();
    // The gateway keeps accepting: its sending queue holds the batches
    // while the exporter retries.
    sent.extend(send_traces(gateway.grpc, 22, 10, 100, Duration::from_millis(20)).await);
    tokio::time::sleep(Duration::from_secs(30)).await;
    let retries = gateway
        .metric("observatory_exporter_retries_total{exporter=\"kafka\"}")
        .unwrap_or(0.0);
    assert!(
        retries >= 1.0,
        "the exporter retried while the broker was down"
    );
    kafka.up();
    let (missing, duplicates) = wait_all(
        &[processor.path("traces.jsonl")],
        &sent,
        Duration::from_secs(90),
    );
    assert_eq!(
        missing,
        0,
        "of {} spans; gateway:\n{}\nprocessor:\n{}",
        sent.len(),
        gateway.logs(),
        processor.logs()
    );
    let failed = gateway.metric("observatory_exporter_send_failed_spans_total{exporter=\"kafka\"}");
    assert_eq!(failed, Some(0.0));
    eprintln!("broker down 30 s: {retries} retries, {duplicates} spans written twice");
}

/// The processor's next hop refuses (it is down, and the exporter neither
/// queues nor retries): the receiver keeps retrying the same message, so
/// the backlog waits in Kafka, and all of it arrives once the hop is up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_pipeline_pauses_consumption_and_drops_nothing() {
    const FORWARDER: &str = r#"
receivers:
  kafka:
    brokers: [@BROKER@]
    group_id: @PREFIX@-forwarders
    initial_offset: earliest
    message_marking: {after: true}
    traces: {topic: @PREFIX@_spans}
exporters:
  otlp:
    endpoint: 127.0.0.1:@NEXT@
    tls: {insecure: true}
    sending_queue: {enabled: false}
    retry_on_failure: {enabled: false}
service:
  pipelines:
    traces: {receivers: [kafka], exporters: [otlp]}
"#;
    let kafka = with_topics("pause").await;
    let next_port = free_port();
    let forwarder = Collector::start_with(
        FORWARDER,
        &[
            ("BROKER", kafka.broker()),
            ("PREFIX", "pause".to_string()),
            ("NEXT", next_port.to_string()),
        ],
    );
    let gateway = start(GATEWAY, &kafka, "pause");
    let sent = send_traces(gateway.grpc, 31, 10, 100, Duration::from_millis(10)).await;
    let refused =
        "observatory_receiver_refused_spans_total{receiver=\"kafka\",transport=\"kafka\"}";
    let deadline = Instant::now() + Duration::from_secs(20);
    while forwarder.metric(refused).unwrap_or(0.0) < 10.0 {
        assert!(
            Instant::now() < deadline,
            "no refusals seen:\n{}",
            forwarder.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The next hop comes up on the port the forwarder sends to.
    let next = Collector::start_with(&FILE_CONFIG.replace("@GRPC@", &next_port.to_string()), &[]);
    let (missing, _) = wait_all(&[next.path("traces.jsonl")], &sent, Duration::from_secs(60));
    assert_eq!(
        missing,
        0,
        "of {}; forwarder:\n{}",
        sent.len(),
        forwarder.logs()
    );
    let accepted =
        "observatory_receiver_accepted_spans_total{receiver=\"kafka\",transport=\"kafka\"}";
    assert_eq!(
        forwarder.metric(accepted),
        Some(sent.len() as f64),
        "each message taken once"
    );
}

/// With the broker frozen (connections open, no answers), both tiers still
/// stop on SIGTERM: the receiver's last commit and goodbye to the group and
/// the producer's flush wait for brokers, and those waits are bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_tiers_stop_promptly_when_the_broker_hangs() {
    let kafka = with_topics("stop").await;
    let mut processor = start(PROCESSOR, &kafka, "stop");
    let mut gateway = start(GATEWAY, &kafka, "stop");
    let sent = send_traces(gateway.grpc, 41, 3, 100, Duration::ZERO).await;
    wait_all(
        &[processor.path("traces.jsonl")],
        &sent,
        Duration::from_secs(30),
    );
    kafka.freeze();
    let started = Instant::now();
    assert_eq!(processor.terminate(), 0, "{}", processor.logs());
    assert_eq!(gateway.terminate(), 0, "{}", gateway.logs());
    let took = started.elapsed();
    assert!(took < Duration::from_secs(20), "took {took:?}");
}

/// SASL/SCRAM-SHA-512 (the mechanism tansu implements) on both tiers; a
/// wrong password is an error the exporter counts, not a silent loss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_scram_authenticates_both_tiers_and_a_wrong_password_is_counted() {
    let mut kafka = with_topics("sasl").await;
    kafka.require_authentication(&[("gateway", "gw-secret"), ("processor", "pr-secret")]);
    let auth = |user: &str, password: &str| {
        format!("\n    auth:\n      sasl: {{username: {user}, password: {password}, mechanism: SCRAM-SHA-512}}")
    };
    let with_auth = |template: &str, auth: String| {
        template.replacen(
            "    brokers: [@BROKER@]",
            &format!("    brokers: [@BROKER@]{auth}"),
            1,
        )
    };
    let processor = start(
        &with_auth(PROCESSOR, auth("processor", "pr-secret")),
        &kafka,
        "sasl",
    );
    let gateway = start(
        &with_auth(GATEWAY, auth("gateway", "gw-secret")),
        &kafka,
        "sasl",
    );
    let sent = send_traces(gateway.grpc, 51, 3, 100, Duration::ZERO).await;
    let (missing, _) = wait_all(
        &[processor.path("traces.jsonl")],
        &sent,
        Duration::from_secs(30),
    );
    assert_eq!(
        missing,
        0,
        "gateway:\n{}\nprocessor:\n{}",
        gateway.logs(),
        processor.logs()
    );

    let wrong = start(
        &with_auth(GATEWAY, auth("gateway", "not-it")).replace(
            "partition_traces_by_id: true",
            "partition_traces_by_id: true\n    timeout: 2s\n    retry_on_failure: {max_elapsed_time: 3s}",
        ),
        &kafka,
        "sasl",
    );
    send_traces(wrong.grpc, 52, 1, 100, Duration::ZERO).await;
    let failed = wrong
        .metric_when(
            "observatory_exporter_send_failed_spans_total{exporter=\"kafka\"}",
            100.0,
        )
        .await;
    assert_eq!(failed, Some(100.0), "{}", wrong.logs());
    assert!(wrong.logs().contains("uthentication"), "{}", wrong.logs());
}
