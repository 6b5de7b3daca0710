//! A fleet behind a real load balancer: HAProxy (Debian's package) spreads
//! OTLP/gRPC requests over three Observatory instances per request (h2 on
//! both sides). Each instance runs the one-tier layout: what it receives
//! goes through `loadbalancing` to the instance owning the trace (itself
//! included), and each owner runs `tail_sampling` on whole traces behind a
//! separate peer receiver that never re-routes. Spans of one trace are sent
//! in separate requests over time, so the balancer really splits them.
//! Every kept trace must arrive whole, exactly once across the fleet; every
//! dropped trace must leave no span anywhere.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use pipeline::generate::{Generator, GeneratorOptions};
use pipeline::split::select_spans;
use pipeline::{Request, Signal};
use prost::Message;

const INSTANCE: &str = r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:@GRPC@
      http:
        endpoint: 127.0.0.1:@HTTP@
  otlp/peer:
    protocols:
      grpc:
        endpoint: 127.0.0.1:@PEER@
processors:
  tail_sampling:
    decision_wait: 2s
    policies:
      - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}
exporters:
  loadbalancing:
    protocol:
      otlp:
        tls: {insecure: true}
        compression: none
    resolver:
      static:
        hostnames: [@PEERS@]
    local:
      endpoint: 127.0.0.1:@PEER@
      receiver: otlp/peer
  file/kept:
    path: @DIR@/kept.jsonl
service:
  pipelines:
    traces/in:
      receivers: [otlp]
      exporters: [loadbalancing]
    traces/own:
      receivers: [otlp/peer]
      processors: [tail_sampling]
      exporters: [file/kept]
"#;

/// Debian installs HAProxy under /usr/sbin, which a user's PATH may lack.
fn haproxy_bin() -> &'static str {
    if std::path::Path::new("/usr/sbin/haproxy").exists() {
        "/usr/sbin/haproxy"
    } else {
        "haproxy"
    }
}

/// HAProxy on `deploy/fleet/haproxy.cfg`, used as is: its addresses come
/// from the environment. Listens for gRPC on `port`, in front of the
/// instances at `(gRPC, HTTP)` addresses.
fn haproxy(port: u16, http_port: u16, instances: &[(String, String)]) -> Child {
    let cfg = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/fleet/haproxy.cfg");
    let mut env = vec![
        ("LB_GRPC".to_string(), format!("127.0.0.1:{port}")),
        ("LB_HTTP".to_string(), format!("127.0.0.1:{http_port}")),
    ];
    for (i, (grpc, http)) in instances.iter().enumerate() {
        env.push((format!("OBS_{}", i + 1), grpc.clone()));
        env.push((format!("OBS_HTTP_{}", i + 1), http.clone()));
    }
    let check = Command::new(haproxy_bin())
        .arg("-c")
        .arg("-f")
        .arg(&cfg)
        .envs(env.clone())
        .output()
        .expect("haproxy is not installed (scripts/test.sh installs Debian's haproxy)");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let mut child = Command::new(haproxy_bin())
        .arg("-db")
        .arg("-f")
        .arg(&cfg)
        .envs(env)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return child;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("haproxy did not listen on {port}");
}

struct Stop(Child);

impl Drop for Stop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Three one-tier instances on `config` (a static ring of their peer
/// ports) behind HAProxy; returns them, HAProxy, and its gRPC port.
fn one_tier_fleet(config: &str) -> (Vec<Collector>, Stop, u16) {
    let peers: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let list = peers
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(", ");
    let fleet: Vec<Collector> = peers
        .iter()
        .map(|p| Collector::start_with(config, &[("PEER", p.to_string()), ("PEERS", list.clone())]))
        .collect();
    let addrs: Vec<(String, String)> = fleet
        .iter()
        .map(|c| {
            (
                format!("127.0.0.1:{}", c.grpc),
                format!("127.0.0.1:{}", c.http),
            )
        })
        .collect();
    let lb_port = free_port();
    let lb = Stop(haproxy(lb_port, free_port(), &addrs));
    (fleet, lb, lb_port)
}

#[tokio::test(flavor = "multi_thread")]
async fn behind_haproxy_every_kept_trace_arrives_whole_and_exactly_once() {
    let (fleet, _lb, lb_port) = one_tier_fleet(INSTANCE);

    // 120 traces, a fifth of them with an error; each request carries a
    // third of the spans of 40 traces, and the thirds go out 200 ms apart.
    let mut g = Generator::new(GeneratorOptions {
        seed: 23,
        error_rate: 0.2,
        slow_rate: 0.0,
    });
    let mut kept: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut dropped: BTreeSet<String> = BTreeSet::new();
    let mut all_spans = 0;
    for round in 0..3 {
        let body = g.spans(200).encode_to_vec();
        let req = Request::parse(Signal::Traces, body.clone().into()).unwrap();
        let decoded =
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(
                &body[..],
            )
            .unwrap();
        let mut error_traces = BTreeSet::new();
        let mut spans_of: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for s in decoded
            .resource_spans
            .iter()
            .flat_map(|r| r.scope_spans.iter().flat_map(|ss| ss.spans.iter()))
        {
            let t = hex(&s.trace_id);
            if s.status.as_ref().is_some_and(|st| st.code == 2) {
                error_traces.insert(t.clone());
            }
            spans_of.entry(t).or_default().insert(hex(&s.span_id));
            all_spans += 1;
        }
        for (t, spans) in spans_of {
            if error_traces.contains(&t) {
                kept.insert(t, spans);
            } else {
                dropped.insert(t);
            }
        }
        let n = req.index.as_ref().unwrap().spans.len() as u32;
        for third in 0..3 {
            let part = select_spans(&req, &(0..n).filter(|i| i % 3 == third).collect::<Vec<_>>());
            // A new connection per request, as separate services would open.
            grpc_send(lb_port, Signal::Traces, part.bytes.to_vec(), None)
                .await
                .unwrap_or_else(|e| panic!("round {round} part {third}: {e}"));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let kept_spans: usize = kept.values().map(BTreeSet::len).sum();
    assert!(!kept.is_empty() && !dropped.is_empty());

    // Decisions come 2 s after a trace's first span; wait for every kept span.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut got: BTreeMap<String, Vec<String>> = BTreeMap::new();
    while std::time::Instant::now() < deadline {
        got.clear();
        for c in &fleet {
            for (t, s) in span_ids_in(&c.path("kept.jsonl")) {
                got.entry(t).or_default().push(s);
            }
        }
        if got.values().map(Vec::len).sum::<usize>() >= kept_spans {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (mut whole, mut duplicated) = (0, 0);
    for (t, spans) in &kept {
        let arrived = got.get(t).cloned().unwrap_or_default();
        let unique: BTreeSet<String> = arrived.iter().cloned().collect();
        duplicated += arrived.len() - unique.len();
        assert_eq!(&unique, spans, "kept trace {t} did not arrive whole");
        whole += 1;
    }
    for t in &dropped {
        assert!(
            !got.contains_key(t),
            "dropped trace {t} has spans somewhere"
        );
    }
    assert_eq!(duplicated, 0);
    // Every instance took part (the balancer spread the requests), and
    // each handed its own share to its sampler in-process: its peer
    // receiver took only what the other two sent it.
    let (mut local, mut over_network) = (0.0, 0.0);
    for c in &fleet {
        let m = |s: &str| c.metric(s).unwrap_or(0.0);
        assert!(
            m("observatory_receiver_accepted_spans_total{receiver=\"otlp\",transport=\"grpc\"}")
                > 0.0
        );
        let l = m("observatory_exporter_loadbalancing_routed_spans_total{exporter=\"loadbalancing\",to=\"local\"}");
        let b = m("observatory_exporter_loadbalancing_routed_spans_total{exporter=\"loadbalancing\",to=\"backend\"}");
        assert!(l > 0.0, "nothing routed in-process");
        local += l;
        over_network += b;
    }
    let peer_in: f64 = fleet
        .iter()
        .map(|c| {
            c.metric("observatory_receiver_accepted_spans_total{receiver=\"otlp/peer\",transport=\"grpc\"}")
                .unwrap_or(0.0)
        })
        .sum();
    assert_eq!(
        peer_in, over_network,
        "only the other instances' shares crossed the network"
    );
    assert_eq!((local + over_network) as usize, all_spans);
    println!(
        "fleet: {} traces sent ({all_spans} spans), {} kept, {whole} whole, 0 lost, {duplicated} duplicated, {} dropped; {local} spans routed in-process, {over_network} over the network",
        kept.len() + dropped.len(),
        kept.len(),
        dropped.len()
    );
}

const DNS_INSTANCE: &str = r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: @IP@:@G@
      http:
        endpoint: @IP@:@H@
  otlp/peer:
    protocols:
      grpc:
        endpoint: @IP@:@P@
processors:
  tail_sampling:
    decision_wait: 1s
    policies:
      - {name: all, type: always_sample}
exporters:
  loadbalancing:
    protocol:
      otlp:
        tls: {insecure: true}
        compression: none
        timeout: 1s
        retry_on_failure:
          initial_interval: 100ms
          max_interval: 200ms
          max_elapsed_time: 0s
    resolver:
      dns:
        hostname: fleet.test
        port: @P@
        interval: 200ms
        nameserver: @DNS@
    local:
      endpoint: @IP@:@P@
      receiver: otlp/peer
  file/kept:
    path: @DIR@/kept.jsonl
service:
  pipelines:
    traces/in:
      receivers: [otlp]
      exporters: [loadbalancing]
    traces/own:
      receivers: [otlp/peer]
      processors: [tail_sampling]
      exporters: [file/kept]
"#;

/// Every span id in an instance's file (duplicates kept).
fn kept_spans(c: &Collector) -> Vec<String> {
    span_ids_in(&c.path("kept.jsonl"))
        .into_iter()
        .map(|(_, s)| s)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_stopped_mid_run_loses_nothing_it_or_its_peers_accepted() {
    use std::net::Ipv4Addr;
    let ips = [
        Ipv4Addr::new(127, 0, 0, 1),
        Ipv4Addr::new(127, 0, 0, 2),
        Ipv4Addr::new(127, 0, 0, 3),
    ];
    let (g, h, p) = (free_port(), free_port(), free_port());
    let dns = common::dns::DnsServer::start(&ips).await;
    let mut fleet: Vec<Collector> = ips
        .iter()
        .map(|ip| {
            Collector::start_with(
                DNS_INSTANCE,
                &[
                    ("IP", ip.to_string()),
                    ("G", g.to_string()),
                    ("H", h.to_string()),
                    ("P", p.to_string()),
                    ("DNS", dns.addr.to_string()),
                ],
            )
        })
        .collect();
    // HAProxy on deploy/fleet/haproxy.cfg, the instances on their addresses.
    let addrs: Vec<(String, String)> = ips
        .iter()
        .map(|ip| (format!("{ip}:{g}"), format!("{ip}:{h}")))
        .collect();
    let lb_port = free_port();
    let _lb = Stop(haproxy(lb_port, free_port(), &addrs));
    tokio::time::sleep(Duration::from_millis(600)).await; // first health checks

    let mut g_ = Generator::new(GeneratorOptions {
        seed: 41,
        ..Default::default()
    });
    let mut sent: BTreeSet<String> = BTreeSet::new();
    for round in 0..10 {
        if round == 3 {
            // The third instance is told to stop while traces are half
            // sent; a round (~450 ms) later DNS stops listing it, as
            // Kubernetes takes a terminating pod out of a headless Service.
            let pid = fleet[2].child.id().to_string();
            Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        }
        if round == 4 {
            dns.set(&ips[..2]);
        }
        let req = Request::parse(Signal::Traces, g_.spans(60).encode_to_vec().into()).unwrap();
        let n = req.index.as_ref().unwrap().spans.len() as u32;
        for third in 0..3 {
            let part = select_spans(&req, &(0..n).filter(|i| i % 3 == third).collect::<Vec<_>>());
            // As an SDK does: retry what the fleet refuses (an instance
            // going away mid-request).
            let mut tries = 0;
            loop {
                match grpc_send(lb_port, Signal::Traces, part.bytes.to_vec(), None).await {
                    Ok(_) => break,
                    Err(e) if tries < 30 => {
                        tries += 1;
                        let _ = e;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(e) => panic!("round {round}: refused 30 times: {e}"),
                }
            }
            for s in &part.index.as_ref().unwrap().spans {
                sent.insert(hex(&s.span_id));
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }
    // The stopped instance drained and exited.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while fleet[2].child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        fleet[2].child.try_wait().unwrap().is_some(),
        "the stopped instance did not exit"
    );
    // Everything accepted arrives somewhere (decisions come 1 s after a
    // trace's first span).
    let mut arrived: Vec<String> = Vec::new();
    while std::time::Instant::now() < deadline + Duration::from_secs(10) {
        arrived = fleet.iter().flat_map(kept_spans).collect();
        let unique: BTreeSet<&String> = arrived.iter().collect();
        if unique.len() >= sent.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let unique: BTreeSet<String> = arrived.iter().cloned().collect();
    let lost: Vec<&String> = sent.difference(&unique).collect();
    let duplicated = arrived.len() - unique.len();
    println!(
        "fleet restart: {} spans sent, {} arrived, {} lost, {duplicated} duplicated (around the stop)",
        sent.len(),
        unique.len(),
        lost.len()
    );
    assert!(
        lost.is_empty(),
        "{} spans lost, e.g. {:?}",
        lost.len(),
        lost.iter().take(3).collect::<Vec<_>>()
    );
    assert!(unique.is_subset(&sent));
    // What the survivors held for the stopped one went to its traces' new
    // owners.
    let rerouted: f64 = fleet[..2]
        .iter()
        .map(|c| {
            c.metric("observatory_exporter_loadbalancing_rerouted_spans_total{exporter=\"loadbalancing\"}")
                .unwrap_or(0.0)
        })
        .sum();
    println!("fleet restart: {rerouted} spans re-routed by the survivors");
    assert!(
        rerouted > 0.0,
        "nothing was waiting for the stopped instance: the test missed the window"
    );
    fleet.truncate(2);
}

#[tokio::test(flavor = "multi_thread")]
async fn loadgen_spread_traces_each_arrive_whole_at_one_instance() {
    // Every trace is kept, so what arrives must be exactly what loadgen
    // had accepted: each trace whole (5 spans) at one instance, no span
    // twice. loadgen sends each trace in three requests 300 ms apart, each
    // over HAProxy, which spreads requests over the instances.
    let config = INSTANCE.replace(
        "{name: errors, type: status_code, status_code: {status_codes: [ERROR]}}",
        "{name: all, type: always_sample}",
    );
    assert_ne!(config, INSTANCE, "the policy was not replaced");
    let (fleet, _lb, lb_port) = one_tier_fleet(&config);
    let out = Command::new(loadgen_bin())
        .args([
            "--endpoint",
            &format!("127.0.0.1:{lb_port}"),
            "--rate",
            "3000",
            "--duration",
            "3s",
            "--batch-size",
            "300",
            "--concurrency",
            "2",
            "--pool",
            "4",
            "--spread",
            "3",
            "--spread-delay",
            "300ms",
            "--retry",
        ])
        .output()
        .unwrap();
    let summary = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "loadgen: {summary}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |name: &str| -> usize {
        summary
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name}= in {summary}"))
    };
    let (accepted, refused) = (field("accepted"), field("refused"));
    assert_eq!(refused, 0, "{summary}");
    assert!(accepted >= 6000, "{summary}");

    // Decisions come 2 s after a trace's first span.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let count = || -> usize {
        fleet
            .iter()
            .map(|c| span_ids_in(&c.path("kept.jsonl")).len())
            .sum()
    };
    while std::time::Instant::now() < deadline && count() < accepted {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Anything more (a duplicate) would arrive right after.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let per_instance: Vec<Vec<(String, String)>> = fleet
        .iter()
        .map(|c| span_ids_in(&c.path("kept.jsonl")))
        .collect();
    let mut spans_of: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut instances_of: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
    let mut arrived = 0;
    for (i, spans) in per_instance.iter().enumerate() {
        for (t, s) in spans {
            spans_of.entry(t.clone()).or_default().insert(s.clone());
            instances_of.entry(t.clone()).or_default().insert(i);
            arrived += 1;
        }
    }
    let unique: usize = spans_of.values().map(BTreeSet::len).sum();
    let whole = spans_of.values().filter(|s| s.len() == 5).count();
    let split = instances_of.values().filter(|i| i.len() > 1).count();
    println!(
        "fleet loadgen: {accepted} spans accepted, {} traces, {whole} whole, {split} split over instances, {} lost, {} duplicated",
        spans_of.len(),
        accepted.saturating_sub(unique),
        arrived - unique
    );
    assert_eq!(unique, accepted, "spans lost or foreign spans arrived");
    assert_eq!(arrived, unique, "a span arrived twice");
    assert_eq!(whole, spans_of.len(), "a trace arrived in pieces");
    assert_eq!(split, 0, "a trace was sampled on two instances");
    for c in &fleet {
        assert!(
            c.metric(
                "observatory_receiver_accepted_spans_total{receiver=\"otlp\",transport=\"grpc\"}"
            )
            .unwrap_or(0.0)
                > 0.0,
            "the balancer left an instance out"
        );
    }
}
