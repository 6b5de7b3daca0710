//! The `loadbalancing` exporter on the real binary: a front instance
//! routes to three back instances; every span arrives exactly once, each
//! trace whole at the one backend that otelcol's ring names for it (the
//! ring computed here with the same endpoint strings), even when its spans
//! came in separate requests; logs go by service.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::backends::*;
use common::*;
use exporters::loadbalancing::Ring;
use pipeline::generate::{Generator, GeneratorOptions};
use pipeline::split::select_spans;
use pipeline::{Request, Signal};
use prost::Message;

fn front(endpoints: &[String], type_name: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:@GRPC@
exporters:
  {type_name}:
    protocol:
      otlp:
        tls: {{insecure: true}}
        compression: none
        timeout: 2s
    resolver:
      static:
        hostnames: [{}]
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [{type_name}]
    logs:
      receivers: [otlp]
      exporters: [{type_name}]
"#,
        endpoints.join(", ")
    )
}

#[tokio::test]
async fn every_trace_arrives_whole_at_the_backend_the_ring_names() {
    let backs: Vec<Collector> = (0..3).map(|_| Collector::start(BACK)).collect();
    let endpoints: Vec<String> = backs
        .iter()
        .map(|b| format!("127.0.0.1:{}", b.grpc))
        .collect();
    let f = Collector::start(&front(&endpoints, "loadbalancing"));
    let ring = Ring::new(&endpoints);

    // 60 traces of 5 spans; each trace's spans go out in three separate
    // requests, as spans of one trace come from several services.
    let body = Generator::new(GeneratorOptions {
        seed: 17,
        ..Default::default()
    })
    .spans(300)
    .encode_to_vec();
    let whole = Request::parse(Signal::Traces, body.into()).unwrap();
    let n = whole.index.as_ref().unwrap().spans.len();
    let mut want: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in &whole.index.as_ref().unwrap().spans {
        let owner = ring.owner_endpoint(&s.trace_id).unwrap().to_string();
        want.entry(owner).or_default().insert(hex(&s.span_id));
    }
    for part in 0..3u32 {
        let positions: Vec<u32> = (0..n as u32).filter(|i| i % 3 == part).collect();
        let req = select_spans(&whole, &positions);
        grpc_send(f.grpc, Signal::Traces, req.bytes.to_vec(), None)
            .await
            .unwrap();
    }
    assert!(
        want.len() == 3,
        "the test needs every backend to own traces: {want:?}"
    );
    let mut total = 0;
    for (b, e) in backs.iter().zip(&endpoints) {
        let expect = &want[e];
        let lines = wait_for_lines(&b.path("traces.jsonl"), count_spans, expect.len());
        let got: BTreeSet<String> = span_ids_in(&b.path("traces.jsonl"))
            .into_iter()
            .map(|(_, s)| s)
            .collect();
        assert_eq!(count_spans(&lines), expect.len(), "{e}: a span twice");
        assert_eq!(&got, expect, "{e} holds other spans than the ring gives it");
        total += got.len();
    }
    assert_eq!(total, n);

    // Logs go by service.name: each service's records at its owner.
    let logs = Generator::new(GeneratorOptions::default()).logs(40);
    let mut per_owner: BTreeMap<String, usize> = BTreeMap::new();
    for rl in &logs.resource_logs {
        let svc = rl
            .resource
            .as_ref()
            .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
            .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
                opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s) => {
                    Some(s.clone())
                }
                _ => None,
            })
            .unwrap_or_default();
        let owner = ring.owner_endpoint(svc.as_bytes()).unwrap().to_string();
        *per_owner.entry(owner).or_default() += rl
            .scope_logs
            .iter()
            .map(|s| s.log_records.len())
            .sum::<usize>();
    }
    grpc_send(f.grpc, Signal::Logs, logs.encode_to_vec(), None)
        .await
        .unwrap();
    for (b, e) in backs.iter().zip(&endpoints) {
        if let Some(&n) = per_owner.get(e) {
            let lines = wait_for_lines(&b.path("logs.jsonl"), count_logs, n);
            assert_eq!(count_logs(&lines), n, "{e}");
        }
    }
    assert_eq!(
        f.metric("observatory_exporter_loadbalancing_members{exporter=\"loadbalancing\"}"),
        Some(3.0)
    );
    let sent: f64 = endpoints
        .iter()
        .map(|e| {
            f.metric(&format!(
                "observatory_exporter_sent_spans_total{{exporter=\"loadbalancing/{e}\"}}"
            ))
            .unwrap_or(0.0)
        })
        .sum();
    assert_eq!(sent, n as f64, "per-backend counts");
}

#[tokio::test]
async fn the_recent_spelling_and_the_otlp_grpc_name_work_too() {
    let back = Collector::start(BACK);
    let endpoints = vec![format!("127.0.0.1:{}", back.grpc)];
    let f = Collector::start(&front(&endpoints, "load_balancing"));
    grpc_send(
        f.grpc,
        Signal::Traces,
        Generator::new(GeneratorOptions::default())
            .spans(10)
            .encode_to_vec(),
        None,
    )
    .await
    .unwrap();
    let lines = wait_for_lines(&back.path("traces.jsonl"), count_spans, 10);
    assert_eq!(count_spans(&lines), 10);
    let out = std::process::Command::new(binary())
        .arg("components")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    for name in ["loadbalancing", "load_balancing", "otlp_grpc", "otlp_http"] {
        assert!(
            out.contains(&format!("  - {name}\n")),
            "{name} missing:\n{out}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_that_leaves_has_its_queue_routed_to_the_new_owners() {
    use std::net::Ipv4Addr;
    let ips = [
        Ipv4Addr::new(127, 0, 0, 1),
        Ipv4Addr::new(127, 0, 0, 2),
        Ipv4Addr::new(127, 0, 0, 3),
    ];
    let port = free_port();
    let mut backs: Vec<Collector> = ips
        .iter()
        .map(|ip| back_at(&ip.to_string(), port))
        .collect();
    let dns = common::dns::DnsServer::start(&ips).await;
    let front_cfg = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:@GRPC@
exporters:
  loadbalancing:
    protocol:
      otlp:
        tls: {{insecure: true}}
        compression: none
        timeout: 1s
        retry_on_failure:
          initial_interval: 100ms
          max_interval: 200ms
          max_elapsed_time: 0s
    resolver:
      dns:
        hostname: fleet.test
        port: {port}
        interval: 200ms
        nameserver: {}
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [loadbalancing]
"#,
        dns.addr
    );
    let f = Collector::start(&front_cfg);
    let members = "observatory_exporter_loadbalancing_members{exporter=\"loadbalancing\"}";
    assert_eq!(f.metric_when(members, 3.0).await, Some(3.0));

    // The third backend goes away, still listed: its share waits (retried),
    // as for a backend that is only briefly down.
    let gone = format!("127.0.0.3:{port}");
    backs[2].terminate();
    let body = Generator::new(GeneratorOptions {
        seed: 31,
        ..Default::default()
    })
    .spans(300);
    let ring3 = Ring::new(&ips.map(|ip| format!("{ip}:{port}")));
    let whole = Request::parse(Signal::Traces, body.encode_to_vec().into()).unwrap();
    let ids: Vec<([u8; 16], String)> = whole
        .index
        .as_ref()
        .unwrap()
        .spans
        .iter()
        .map(|s| (s.trace_id, hex(&s.span_id)))
        .collect();
    let stranded = ids
        .iter()
        .filter(|(t, _)| ring3.owner_endpoint(t) == Some(gone.as_str()))
        .count();
    assert!(
        stranded > 0,
        "the test needs traces owned by the backend that leaves"
    );
    grpc_send(f.grpc, Signal::Traces, body.encode_to_vec(), None)
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let at = spans_at;
    let before: usize = backs[..2].iter().map(|b| at(b).len()).sum();
    assert_eq!(
        before,
        ids.len() - stranded,
        "the gone backend's share must wait, not move, while it is listed"
    );

    // DNS drops it: its queue is routed to the new owners; nothing is lost
    // and nothing arrives twice.
    dns.set(&ips[..2]);
    assert_eq!(f.metric_when(members, 2.0).await, Some(2.0));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut got: Vec<String> = Vec::new();
    while std::time::Instant::now() < deadline {
        got = backs[..2].iter().flat_map(at).collect();
        if got.len() >= ids.len() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let unique: BTreeSet<String> = got.iter().cloned().collect();
    assert_eq!(got.len(), unique.len(), "a span arrived twice");
    assert_eq!(
        unique,
        ids.iter().map(|(_, s)| s.clone()).collect::<BTreeSet<_>>()
    );
    let rerouted = f
        .metric(
            "observatory_exporter_loadbalancing_rerouted_spans_total{exporter=\"loadbalancing\"}",
        )
        .unwrap();
    assert_eq!(rerouted as usize, stranded);
    // Each re-routed trace is whole at its new owner.
    let ring2 = Ring::new(
        &ips[..2]
            .iter()
            .map(|ip| format!("{ip}:{port}"))
            .collect::<Vec<_>>(),
    );
    for (i, b) in backs[..2].iter().enumerate() {
        let here: BTreeSet<String> = at(b).into_iter().collect();
        let owner = format!("{}:{port}", ips[i]);
        for (t, s) in &ids {
            if ring3.owner_endpoint(t) == Some(gone.as_str())
                && ring2.owner_endpoint(t) == Some(owner.as_str())
            {
                assert!(
                    here.contains(s),
                    "re-routed span {s} not at its new owner {owner}"
                );
            }
        }
    }
}

#[tokio::test]
async fn a_dead_backends_full_queue_reaches_the_client_as_retry_later() {
    // Nothing listens on the backend's port: its queue (2 batches) fills,
    // and then the client is told to retry; nothing is dropped silently.
    let dead = format!("127.0.0.1:{}", free_port());
    let f = Collector::start(&format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:@GRPC@
exporters:
  loadbalancing:
    protocol:
      otlp:
        tls: {{insecure: true}}
        timeout: 1s
        sending_queue: {{queue_size: 2, num_consumers: 1}}
        retry_on_failure: {{initial_interval: 1s, max_elapsed_time: 0s}}
    resolver:
      static:
        hostnames: [{dead}]
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [loadbalancing]
"#
    ));
    let mut refused = None;
    let mut accepted = 0;
    for seed in 0..10 {
        let body = Generator::new(GeneratorOptions {
            seed,
            ..Default::default()
        })
        .spans(5)
        .encode_to_vec();
        match grpc_send(f.grpc, Signal::Traces, body, None).await {
            Ok(_) => accepted += 1,
            Err(s) => {
                refused = Some(s);
                break;
            }
        }
    }
    let s = refused.expect("a dead backend's queue never filled");
    assert_eq!(s.code(), tonic::Code::Unavailable, "{s:?}");
    use tonic_types::StatusExt;
    assert!(s.get_details_retry_info().is_some(), "no RetryInfo: {s:?}");
    assert!(
        accepted <= 3,
        "{accepted} accepted into a 2-batch queue (+1 in flight)"
    );
    let failed = f
        .metric(&format!(
            "observatory_exporter_enqueue_failed_spans_total{{exporter=\"loadbalancing/{dead}\"}}"
        ))
        .unwrap();
    assert_eq!(failed, 5.0, "the refused request's spans are counted");
}
