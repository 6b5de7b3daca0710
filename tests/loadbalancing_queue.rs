//! The `loadbalancing` exporter's top-level `sending_queue` /
//! `retry_on_failure` (otelcol's fix for data lost on membership changes):
//! the backends' own queues and retries are off, so a part a backend
//! refuses comes back to the top-level queue, and each retry is routed over
//! the ring as it is then. Only the refused part is retried (no span twice),
//! and with `storage` the same holds across a restart of the router.

mod common;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::backends::*;
use common::dns::DnsServer;
use common::*;
use exporters::loadbalancing::Ring;
use pipeline::generate::{Generator, GeneratorOptions};
use pipeline::{Request, Signal};
use prost::Message;

const IPS: [Ipv4Addr; 3] = [
    Ipv4Addr::new(127, 0, 0, 1),
    Ipv4Addr::new(127, 0, 0, 2),
    Ipv4Addr::new(127, 0, 0, 3),
];

/// The router: DNS membership, the top-level queue (on disk when `queue`
/// is given), backends without queue or retries of their own.
fn router(dns: &DnsServer, port: u16, queue: Option<&Path>) -> Collector {
    let storage = queue.map_or(String::new(), |_| {
        "\n      storage: file_storage/queue".to_string()
    });
    let template = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:@GRPC@
extensions:
  file_storage/queue:
    directory: @QUEUE@
exporters:
  load_balancing:
    sending_queue:
      num_consumers: 2{storage}
    retry_on_failure:
      initial_interval: 100ms
      max_interval: 200ms
      max_elapsed_time: 0s
    timeout: 5s
    protocol:
      otlp:
        tls: {{insecure: true}}
        compression: none
        timeout: 1s
        sending_queue: {{enabled: false}}
        retry_on_failure: {{enabled: false}}
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
      exporters: [load_balancing]
"#,
        dns.addr
    );
    let dir = queue.map_or_else(|| "/nonexistent".into(), |q| q.display().to_string());
    let mut vars = vec![("QUEUE", dir)];
    if queue.is_some() {
        vars.push(("EXTENSIONS", ", file_storage/queue".into()));
    }
    Collector::start_with(&template, &vars)
}

/// (trace id, span id in hex) of each span sent.
type Ids = Vec<([u8; 16], String)>;

/// 300 spans; their ids and how many the third member owns.
fn traffic(port: u16) -> (Vec<u8>, Ids, usize) {
    let body = Generator::new(GeneratorOptions {
        seed: 47,
        ..Default::default()
    })
    .spans(300)
    .encode_to_vec();
    let req = Request::parse(Signal::Traces, body.clone().into()).unwrap();
    let ids: Ids = req
        .index
        .as_ref()
        .unwrap()
        .spans
        .iter()
        .map(|s| (s.trace_id, hex(&s.span_id)))
        .collect();
    let ring = Ring::new(&IPS.map(|ip| format!("{ip}:{port}")));
    let third = format!("{}:{port}", IPS[2]);
    let stranded = ids
        .iter()
        .filter(|(t, _)| ring.owner_endpoint(t) == Some(third.as_str()))
        .count();
    assert!(stranded > 0 && stranded < ids.len());
    (body, ids, stranded)
}

/// Waits until the backends together hold `want` spans (or 20 s pass).
async fn collected(backs: &[Collector], want: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got: Vec<String> = backs.iter().flat_map(spans_at).collect();
        if got.len() >= want || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Each backend holds exactly the spans the two-member ring gives it.
fn assert_owned_by_two_member_ring(backs: &[Collector], ids: &[([u8; 16], String)], port: u16) {
    let ring = Ring::new(
        &IPS[..2]
            .iter()
            .map(|ip| format!("{ip}:{port}"))
            .collect::<Vec<_>>(),
    );
    for (i, b) in backs.iter().enumerate() {
        let here: BTreeSet<String> = spans_at(b).into_iter().collect();
        let me = format!("{}:{port}", IPS[i]);
        let want: BTreeSet<String> = ids
            .iter()
            .filter(|(t, _)| ring.owner_endpoint(t) == Some(me.as_str()))
            .map(|(_, s)| s.clone())
            .collect();
        assert_eq!(
            here, want,
            "backend {me} holds spans the ring did not give it"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_part_is_retried_alone_and_follows_the_ring_when_its_owner_leaves() {
    let port = free_port();
    // The third member is listed but nothing listens there.
    let backs: Vec<Collector> = IPS[..2]
        .iter()
        .map(|ip| back_at(&ip.to_string(), port))
        .collect();
    let dns = DnsServer::start(&IPS).await;
    let r = router(&dns, port, None);
    let members = "observatory_exporter_loadbalancing_members{exporter=\"load_balancing\"}";
    assert_eq!(r.metric_when(members, 3.0).await, Some(3.0));

    let (body, ids, stranded) = traffic(port);
    grpc_send(r.grpc, Signal::Traces, body, None).await.unwrap();
    // While the third is listed its part waits (retried), and the parts
    // that arrived are not sent again by those retries.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let early: Vec<String> = backs.iter().flat_map(spans_at).collect();
    assert_eq!(
        early.len(),
        ids.len() - stranded,
        "a part arrived twice or went elsewhere"
    );

    dns.set(&IPS[..2]);
    let got = collected(&backs, ids.len()).await;
    let unique: BTreeSet<String> = got.iter().cloned().collect();
    assert_eq!(got.len(), unique.len(), "a span arrived twice");
    assert_eq!(unique.len(), ids.len(), "spans lost");
    assert_owned_by_two_member_ring(&backs, &ids, port);
    let sent = r
        .metric("observatory_exporter_sent_spans_total{exporter=\"load_balancing\"}")
        .unwrap();
    assert_eq!(sent as usize, ids.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_top_level_queue_on_disk_routes_its_batches_again_after_a_restart() {
    let port = free_port();
    let backs: Vec<Collector> = IPS[..2]
        .iter()
        .map(|ip| back_at(&ip.to_string(), port))
        .collect();
    let queue = tempfile::tempdir().unwrap();
    let dns = DnsServer::start(&IPS).await;
    let mut r = router(&dns, port, Some(queue.path()));
    let members = "observatory_exporter_loadbalancing_members{exporter=\"load_balancing\"}";
    assert_eq!(r.metric_when(members, 3.0).await, Some(3.0));
    let (body, ids, stranded) = traffic(port);
    grpc_send(r.grpc, Signal::Traces, body, None).await.unwrap();
    let early = collected(&backs, ids.len() - stranded).await.len();
    assert_eq!(early, ids.len() - stranded);

    // Stopped while the third member's part is still retried: the batch
    // stays in the log. The member leaves while the router is down.
    assert_eq!(r.terminate(), 0, "{}", r.logs());
    dns.set(&IPS[..2]);
    let r2 = router(&dns, port, Some(queue.path()));
    let got = collected(&backs, ids.len() + early).await;
    let unique: BTreeSet<String> = got.iter().cloned().collect();
    assert_eq!(unique.len(), ids.len(), "spans lost across the restart");
    // The log keeps whole batches, so the parts sent before the restart
    // are sent once more (at least once across a restart), each to its
    // owner on the new ring; nothing more than that.
    assert_eq!(got.len(), ids.len() + early, "unexpected duplicates");
    let ring = Ring::new(
        &IPS[..2]
            .iter()
            .map(|ip| format!("{ip}:{port}"))
            .collect::<Vec<_>>(),
    );
    let third = format!("{}:{port}", IPS[2]);
    let ring3 = Ring::new(&IPS.map(|ip| format!("{ip}:{port}")));
    for (t, s) in &ids {
        if ring3.owner_endpoint(t) == Some(third.as_str()) {
            let owner = ring.owner_endpoint(t).unwrap();
            let i = IPS
                .iter()
                .position(|ip| owner == format!("{ip}:{port}"))
                .unwrap();
            assert!(
                spans_at(&backs[i]).contains(s),
                "span {s} not at its new owner {owner}"
            );
        }
    }
    drop(r2);
}
